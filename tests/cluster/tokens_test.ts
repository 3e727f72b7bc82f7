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

Deno.test({
  name: "a node's own tokens from before it joined are named at start: they open no API there",
  ignore: NO_NATS !== undefined,
  fn: () =>
    withNats(async (scope, server) => {
      const dir = await Deno.makeTempDir({ prefix: "prisn-cluster-tokens-" });
      scope.defer(() => Deno.remove(dir, { recursive: true }));
      const nc = await connect({ servers: server.url });
      scope.defer(() => nc.close());
      const kv = await new Kvm(nc).create("t-tokens", { history: 1 });
      const open = async (home: string) => {
        const store = await TokenStore.open(home, new ClusterTokens(kv, "t-tokens"));
        scope.defer(() => store.close());
        return store;
      };
      // The first node made the cluster's admin token; a shared token made there is the cluster's.
      const first = join(dir, "first");
      await Deno.mkdir(first);
      assert.ok(await (await open(first)).ensureAdmin());
      assert.deepEqual(await (await open(first)).leftBehind(), []);

      // The second ran alone first: its own admin token and two more, in its home's files.
      const alone = join(dir, "alone");
      await Deno.mkdir(alone);
      const single = await TokenStore.open(alone);
      await single.ensureAdmin();
      const ci = await single.create("ci");
      await single.create("laptop", { readOnly: true });
      assert.deepEqual(await single.leftBehind(), [], "alone, its files are the store");

      const joined = await open(alone);
      assert.equal(joined.verify(ci), undefined, "a token from before does not open the cluster");
      assert.deepEqual(await joined.leftBehind(), [
        `${
          join(alone, "tokens.json")
        } holds 3 token(s) the cluster does not (admin, ci, laptop): ` +
        `in a cluster only the tokens in the cluster's t-tokens bucket open the API; make them ` +
        `again with prisn token create`,
        `${join(alone, "admin.token")} is not the cluster's admin token, which opens no API now: ` +
        `the cluster's is in admin.token of the node whose TCP API started first`,
      ]);
    }),
});
