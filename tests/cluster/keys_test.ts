/**
 * bucketKeys against a real nats-server: every key under a filter with an entry, deleted ones
 * included, read from the stream and not through a consumer.
 */
import assert from "node:assert/strict";
import { connect } from "@nats-io/transport-node";
import { type KV, Kvm } from "@nats-io/kv";
import { bucketKeys } from "../../cluster/_keys.ts";
import { keysEndEarly, NO_NATS, withNats } from "./_nats.ts";

if (NO_NATS) console.log(`SKIP bucketKeys tests: ${NO_NATS}`);

Deno.test({
  name: "bucketKeys lists every key under a filter, deleted ones too, and only those",
  ignore: !!NO_NATS,
  async fn() {
    await withNats(async (scope, s) => {
      const nc = await connect({ servers: s.url });
      scope.defer(() => nc.close());
      const kv = await new Kvm(nc).create("keys", { history: 5 });
      for (let i = 0; i < 50; i++) await kv.put(`v.api.v-${i}`, "{}");
      for (let i = 0; i < 50; i += 10) await kv.put(`v.api.v-${i}`, "{}"); // several revisions
      await kv.put("v.web.v-1", "{}");
      await kv.put("d.api", "{}");
      await kv.delete("v.api.v-3");
      await kv.purge("v.api.v-4");

      const api = await bucketKeys(kv, "v.api.*");
      assert.equal(api.length, 50);
      assert.deepEqual(api, Array.from({ length: 50 }, (_, i) => `v.api.v-${i}`).sort());
      assert.deepEqual(await bucketKeys(kv, "v.web.*"), ["v.web.v-1"]);
      assert.deepEqual(await bucketKeys(kv, "v.none.*"), []);
      assert.equal((await bucketKeys(kv)).length, 52);
      // The deleted ones are there to be read as deleted.
      assert.equal((await kv.get("v.api.v-3"))?.operation, "DEL");
      assert.equal((await kv.get("v.api.v-4"))?.operation, "PURGE");

      // It does not go through kv.keys(): a handle whose listing ends early lists the same.
      assert.deepEqual(await bucketKeys(keysEndEarly(kv), "v.api.*"), api);
    });
  },
});

Deno.test("bucketKeys refuses a handle that is not a nats.js bucket", async () => {
  await assert.rejects(bucketKeys({} as KV), /a bucket opened with nats.js's Kvm is needed/);
});
