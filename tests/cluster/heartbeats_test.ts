/**
 * Heartbeats against a real nats-server: nodes listed with their ages and what they run, a node
 * that stops writing down once its heartbeat is a TTL old, stop() removing a node at once,
 * draining, and ages that do not depend on the reader's clock.
 */
import assert from "node:assert/strict";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { type KV, Kvm } from "@nats-io/kv";
import {
  type HeartbeatReport,
  Heartbeats,
  type HeartbeatsOptions,
} from "../../cluster/heartbeats.ts";
import { keysEndEarly, NO_NATS, withNats } from "./_nats.ts";
import { Scope, waitFor } from "../_helpers.ts";

if (NO_NATS) console.log(`SKIP heartbeats tests: ${NO_NATS}`);

const TTL = 1_500;
const INTERVAL = 300;
const BUCKET = "heartbeats";

/** One node's own connection and its handle on the heartbeat bucket. */
async function openBucket(scope: Scope, url: string): Promise<{ nc: NatsConnection; kv: KV }> {
  const nc = await connect({ servers: url });
  scope.defer(() => nc.close());
  return { nc, kv: await new Kvm(nc).create(BUCKET, { ttl: TTL, history: 1 }) };
}

function report(name: string): HeartbeatReport {
  return {
    capacity: { cpu: 4, memoryBytes: 8 * 2 ** 30 },
    load: 0.5,
    replicas: [`${name}-web-1`],
    runs: [`run-${name}`],
  };
}

async function beating(
  scope: Scope,
  kv: KV,
  node: string,
  options: Partial<HeartbeatsOptions> = {},
): Promise<Heartbeats> {
  const hb = new Heartbeats(kv, {
    node,
    address: `10.0.0.${node.at(-1)}`,
    version: "0.1.0",
    intervalMs: INTERVAL,
    report: () => report(node),
    ...options,
  });
  scope.defer(() => hb.stop());
  await hb.start();
  return hb;
}

Deno.test({
  name: "live() lists every node with its heartbeat and its age",
  ignore: !!NO_NATS,
  async fn() {
    await withNats(async (scope, s) => {
      const one = await beating(scope, (await openBucket(scope, s.url)).kv, "node-1");
      await beating(scope, (await openBucket(scope, s.url)).kv, "node-2");
      // Several intervals on, every node is still fresh: the writers keep writing.
      await new Promise((r) => setTimeout(r, 3 * INTERVAL));
      const live = await one.live();
      assert.deepEqual(live.map((n) => n.node), ["node-1", "node-2"]);
      for (const n of live) {
        assert.ok(n.ageMs >= 0 && n.ageMs < INTERVAL + 300, `${n.node} is ${n.ageMs} ms old`);
        assert.equal(n.status, "ready");
        assert.equal(n.address, `10.0.0.${n.node.at(-1)}`);
        assert.deepEqual(n.capacity, { cpu: 4, memoryBytes: 8 * 2 ** 30 });
        assert.equal(n.load, 0.5);
        assert.deepEqual(n.replicas, [`${n.node}-web-1`]);
        assert.deepEqual(n.runs, [`run-${n.node}`]);
        assert.equal(n.version, "0.1.0");
        assert.equal(n.draining, false);
        assert.ok(Math.abs(Date.now() - n.at) < 1_000);
      }
      assert.equal(await one.status("node-2"), "ready");
      assert.equal(await one.status("node-9"), "down", "a node never seen is down");
    });
  },
});

Deno.test({
  name: "the node list does not depend on kv.keys(): a listing that ends early hides no node",
  ignore: !!NO_NATS,
  async fn() {
    await withNats(async (scope, s) => {
      const { kv } = await openBucket(scope, s.url);
      const one = await beating(scope, keysEndEarly(kv), "node-1");
      await beating(scope, (await openBucket(scope, s.url)).kv, "node-2");
      await beating(scope, (await openBucket(scope, s.url)).kv, "node-3");
      assert.deepEqual((await one.live()).map((n) => n.node), ["node-1", "node-2", "node-3"]);
    });
  },
});

Deno.test({
  name: "without a report, a heartbeat gives the host's capacity and load",
  ignore: !!NO_NATS,
  async fn() {
    await withNats(async (scope, s) => {
      const hb = await beating(scope, (await openBucket(scope, s.url)).kv, "node-1", {
        report: undefined,
      });
      const [n] = await hb.live();
      assert.equal(n.capacity.cpu, navigator.hardwareConcurrency);
      assert.equal(n.capacity.memoryBytes, Deno.systemMemoryInfo().total);
      assert.ok(n.load >= 0);
      assert.deepEqual([n.replicas, n.runs], [[], []]);
    });
  },
});

Deno.test({
  name: "a node that stops writing is down once its last heartbeat is a TTL old",
  ignore: !!NO_NATS,
  async fn() {
    await withNats(async (scope, s) => {
      const one = await beating(scope, (await openBucket(scope, s.url)).kv, "node-1");
      const two = await openBucket(scope, s.url);
      await beating(scope, two.kv, "node-2");
      // node-2 dies: its connection goes, nothing is deleted.
      const died = performance.now();
      await two.nc.close();
      assert.equal(await one.status("node-2"), "ready");
      await waitFor(async () => (await one.status("node-2")) === "down", {
        timeoutMs: TTL + 1_000,
        intervalMs: 20,
        what: "node-2 down",
      });
      const after = performance.now() - died;
      assert.ok(after >= TTL - INTERVAL - 100, `down ${after} ms after it stopped`);
      assert.deepEqual((await one.live()).map((n) => n.node), ["node-1"]);
      assert.equal(await one.status("node-1"), "ready");
    });
  },
});

Deno.test({
  name: "status is judged by the heartbeat's age on the server's clock, not the reader's",
  ignore: !!NO_NATS,
  async fn() {
    await withNats(async (scope, s) => {
      await beating(scope, (await openBucket(scope, s.url)).kv, "node-1");
      // A node whose clock runs a minute ahead learns the server's time from its own writes.
      const ahead = () => Date.now() + 60_000;
      const skewed = await beating(scope, (await openBucket(scope, s.url)).kv, "node-2", {
        now: ahead,
      });
      const seen = await skewed.live();
      assert.deepEqual(seen.map((n) => n.node), ["node-1", "node-2"]);
      for (const n of seen) assert.ok(n.ageMs < INTERVAL + 300, `${n.node} ${n.ageMs} ms old`);
      // A reader with no writes of its own to learn from compares ages with its own clock:
      // a heartbeat a TTL old by that clock is down even while its key is still in the bucket.
      const reader = new Heartbeats((await openBucket(scope, s.url)).kv, {
        node: "reader",
        address: "10.0.0.9",
        version: "0.1.0",
        now: () => Date.now() + TTL,
      });
      const all = await reader.nodes();
      assert.deepEqual(all.map((n) => [n.node, n.status]), [["node-1", "down"], [
        "node-2",
        "down",
      ]]);
      assert.ok(all.every((n) => n.ageMs >= TTL));
      assert.deepEqual(await reader.live(), []);
    });
  },
});

Deno.test({
  name: "a draining node says so, and stop() removes a node at once",
  ignore: !!NO_NATS,
  async fn() {
    await withNats(async (scope, s) => {
      const one = await beating(scope, (await openBucket(scope, s.url)).kv, "node-1");
      const two = await beating(scope, (await openBucket(scope, s.url)).kv, "node-2");
      await two.setDraining(true);
      assert.equal(two.draining, true);
      assert.equal(await one.status("node-2"), "draining");
      const live = await one.live();
      assert.deepEqual(live.map((n) => [n.node, n.status, n.draining]), [
        ["node-1", "ready", false],
        ["node-2", "draining", true],
      ]);
      // Still draining after further beats.
      await new Promise((r) => setTimeout(r, 2 * INTERVAL));
      assert.equal(await one.status("node-2"), "draining");
      await two.setDraining(false);
      assert.equal(await one.status("node-2"), "ready");

      assert.equal(await two.stop(), true);
      assert.equal(await one.status("node-2"), "down");
      assert.deepEqual((await one.nodes()).map((n) => n.node), ["node-1"]);
      // And it stays gone: no late write brings it back.
      await new Promise((r) => setTimeout(r, 2 * INTERVAL));
      assert.deepEqual((await one.nodes()).map((n) => n.node), ["node-1"]);
    });
  },
});

Deno.test({
  name: "start() refuses a bucket without max age, or an interval over half the TTL",
  ignore: !!NO_NATS,
  async fn() {
    await withNats(async (scope, s) => {
      const nc = await connect({ servers: s.url });
      scope.defer(() => nc.close());
      const kvm = new Kvm(nc);
      const options = { node: "n", address: "a", version: "0.1.0" };
      await assert.rejects(
        new Heartbeats(await kvm.create("forever", { history: 1 }), options).start(),
        /no max age/,
      );
      await assert.rejects(
        new Heartbeats(await kvm.create("short", { ttl: 8_000 }), options).start(),
        /heartbeat interval 5000 ms is over half the TTL 8000 ms/,
      );
    });
  },
});
