/**
 * The cluster's tokens (cluster/tokens.ts) against a real nats-server: two nodes' token stores
 * over one bucket, creating at once (compare-and-set redone, nothing lost), each verifying the
 * other's tokens, and a revoke on one closing the token on the other.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { connect } from "@nats-io/transport-node";
import { Kvm } from "@nats-io/kv";
import { ClusterTokens } from "../../cluster/tokens.ts";
import { TokenStore } from "../../runtime/tokens.ts";
import { NO_NATS, withNats } from "./_nats.ts";
import { waitFor } from "../_helpers.ts";

if (NO_NATS) console.log(`SKIP cluster tokens tests: ${NO_NATS}`);

Deno.test({
  name:
    "two nodes' tokens over one bucket: concurrent creates all kept, a revoke anywhere counts everywhere",
  ignore: NO_NATS !== undefined,
  fn: () =>
    withNats(async (scope, server) => {
      const dir = await Deno.makeTempDir({ prefix: "prisn-cluster-tokens-" });
      scope.defer(() => Deno.remove(dir, { recursive: true }));
      const node = async (name: string) => {
        const nc = await connect({ servers: server.url });
        scope.defer(() => nc.close());
        const kv = await new Kvm(nc).create("t-tokens", { history: 1 });
        const home = join(dir, name);
        await Deno.mkdir(home);
        const store = await TokenStore.open(home, new ClusterTokens(kv, "t-tokens"));
        scope.defer(() => store.close());
        return store;
      };
      const [a, b] = [await node("a"), await node("b")];
      const admins = await Promise.all([a.ensureAdmin(), b.ensureAdmin()]);
      assert.equal(admins.filter(Boolean).length, 1, "one admin token for both");
      const secrets = await Promise.all([
        ...[1, 2, 3].map((i) => a.create(`a-${i}`)),
        ...[1, 2, 3].map((i) => b.create(`b-${i}`, { namespaces: ["team-b"] })),
      ]);
      for (const store of [a, b]) {
        await waitFor(() => store.list().length === 7, { what: "all seven tokens on each node" });
        for (const secret of secrets) assert.ok(store.verify(secret), "each opens both nodes");
      }
      assert.deepEqual(a.verify(secrets[3])?.namespaces, ["team-b"]);
      await assert.rejects(a.create("b-1"), /a token named "b-1" exists/);
      await b.revoke("a-1");
      await waitFor(() => a.verify(secrets[0]) === undefined, {
        what: "a to drop the revoked one",
      });
      assert.ok(a.verify(secrets[1]));
    }),
});
