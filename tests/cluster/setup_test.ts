/**
 * clusterNames() and ensureResources() against real nats-servers: every name carries the cluster
 * prefix; buckets and streams are created with explicit limits, idempotently (twice, or from two
 * nodes at once), updated where NATS allows it, refused with one line where it does not; two
 * prefixes on one server keep disjoint resources; replicas 3 on a 3-server 2.10 cluster.
 */
import assert from "node:assert/strict";
import { Kvm } from "@nats-io/kv";
import { Objm } from "@nats-io/obj";
import { nanos } from "@nats-io/transport-node";
import { connectCluster } from "../../cluster/connection.ts";
import { isCasConflict } from "../../cluster/errors.ts";
import { clusterNames } from "../../cluster/names.ts";
import { ensureResources, RESOURCE_DEFAULTS } from "../../cluster/setup.ts";
import type { ClusterConnection, ClusterNames } from "../../cluster/types.ts";
import { assertInvalid, isPrisnError } from "../_helpers.ts";
import { nats210Bin, type NatsServer, NO_NATS, startNats, startNatsCluster } from "./_nats.ts";

if (NO_NATS) console.log(`SKIP NATS setup tests: ${NO_NATS}`);
const NO_NATS_210 = nats210Bin() ? undefined : "no nats-server 2.10 (run tools/nats_2_10.sh)";
if (!NO_NATS && NO_NATS_210) console.log(`SKIP replicated setup test: ${NO_NATS_210}`);

/** Every bucket and stream name of `names`, as the JetStream streams behind them. */
function streamsOf(names: ClusterNames): string[] {
  return [
    ...Object.values(names.kv).map((b) => `KV_${b}`),
    `OBJ_${names.objectStore.artifacts}`,
    ...Object.values(names.streams),
  ];
}

/** Runs `fn` with a server and connections to it (one per cluster name), all closed afterwards. */
async function withServer(
  clusters: string[],
  fn: (conns: ClusterConnection[], server: NatsServer) => Promise<void>,
): Promise<void> {
  const server = await startNats();
  const conns: ClusterConnection[] = [];
  try {
    for (const cluster of clusters) {
      conns.push(await connectCluster({ servers: [server.url], cluster }));
    }
    await fn(conns, server);
  } finally {
    await Promise.all(conns.map((c) => c.close()));
    await server.stop();
  }
}

Deno.test("clusterNames() prefixes every bucket, stream and subject with the cluster name", () => {
  const n = clusterNames("blue");
  assert.deepEqual(n.kv, {
    desired: "blue-desired",
    cron: "blue-cron",
    lease: "blue-lease",
    heartbeats: "blue-heartbeats",
    placement: "blue-placement",
    runs: "blue-runs",
    tokens: "blue-tokens",
  });
  assert.deepEqual(n.objectStore, { artifacts: "blue-artifacts" });
  assert.deepEqual(n.streams, { work: "blue-work", logs: "blue-logs", events: "blue-events" });
  assert.deepEqual(n.subjects, {
    work: "blue.work.>",
    logs: "blue.logs.>",
    events: "blue.events.>",
  });
  assert.equal(n.workSubject("backup"), "blue.work.backup");
  assert.equal(n.logSubject("api", "api-0"), "blue.logs.api.api-0");
  assert.equal(n.logSubject("backup", "run-1a2b3c4d"), "blue.logs.backup.run-1a2b3c4d");
  assert.equal(n.logFilter("api"), "blue.logs.api.>");
  assert.equal(n.eventSubject("api"), "blue.events.api");
  // A deployment's key (NAMESPACE/NAME) is one token: '/' splits nothing in NATS.
  assert.equal(n.logSubject("team-b/api", "api-0"), "blue.logs.team-b/api.api-0");
  assert.equal(n.workSubject("team-b/backup"), "blue.work.team-b/backup");
  assert.equal(clusterNames().cluster, "prisn");
  assert.equal(clusterNames().kv.lease, "prisn-lease");
});

Deno.test("clusterNames() refuses a bad cluster name and subject tokens that would split", () => {
  for (const bad of ["", "Prisn", "a.b", "a_b", "-a", "a-", "x".repeat(33), "a*"]) {
    assertInvalid(() => clusterNames(bad), /^cluster name ".*" is not valid: use 1-32 lowercase/);
  }
  clusterNames("x".repeat(32));
  const n = clusterNames("p");
  assertInvalid(() => n.workSubject("a.b"), /^deployment "a\.b" cannot be part of a NATS subject/);
  assertInvalid(
    () => n.logSubject("api", "*"),
    /^log stream "\*" cannot be part of a NATS subject/,
  );
  assertInvalid(() => n.eventSubject(""), /cannot be part of a NATS subject/);
});

Deno.test("names of two cluster names never meet, even when one name extends the other", () => {
  const a = streamsOf(clusterNames("a"));
  for (const other of ["a-lease", "a-desired", "a-work", "b"]) {
    const b = new Set(streamsOf(clusterNames(other)));
    assert.deepEqual(a.filter((s) => b.has(s)), [], other);
  }
});

Deno.test({
  name:
    "ensureResources() creates everything with explicit limits, and a second run changes nothing",
  ignore: !!NO_NATS,
  fn: () =>
    withServer(["prisn"], async ([conn]) => {
      const first = await ensureResources(conn);
      assert.equal(first.length, 11);
      assert.deepEqual(first.filter((r) => r.action !== "created"), []);
      assert.deepEqual(first.map((r) => r.stream).sort(), streamsOf(conn.names).sort());
      const second = await ensureResources(conn);
      assert.deepEqual(second.filter((r) => r.action !== "unchanged"), []);

      const { kv, objectStore, streams } = conn.names;
      const cfg = async (name: string) => (await conn.jsm.streams.info(name)).config;
      const lease = await cfg(`KV_${kv.lease}`);
      assert.equal(lease.max_age, nanos(15_000));
      assert.equal(lease.max_msgs_per_subject, 1);
      assert.equal(lease.max_msg_size, 1024 * 1024);
      assert.equal(lease.num_replicas, 1);
      assert.equal((await cfg(`KV_${kv.heartbeats}`)).max_age, nanos(15_000));
      const desired = await cfg(`KV_${kv.desired}`);
      assert.equal(desired.max_msgs_per_subject, 5);
      assert.equal(desired.max_age, 0);
      const work = await cfg(streams.work);
      assert.equal(work.retention, "workqueue");
      assert.equal(work.discard, "new");
      assert.equal(work.duplicate_window, nanos(120_000));
      assert.deepEqual(work.subjects, ["prisn.work.>"]);
      const logs = await cfg(streams.logs);
      assert.equal(logs.retention, "limits");
      assert.equal(logs.max_age, nanos(RESOURCE_DEFAULTS.logsMaxAgeMs));
      assert.equal(logs.max_bytes, RESOURCE_DEFAULTS.logsMaxBytes);
      const events = await cfg(streams.events);
      assert.equal(events.max_age, nanos(RESOURCE_DEFAULTS.eventsMaxAgeMs));
      assert.equal(events.max_bytes, RESOURCE_DEFAULTS.eventsMaxBytes);
      assert.equal((await cfg(`OBJ_${objectStore.artifacts}`)).discard, "new");
    }),
});

Deno.test({
  name: "ensureResources() from two nodes at once, with the same settings, both succeed",
  ignore: !!NO_NATS,
  fn: () =>
    withServer(["prisn", "prisn"], async ([a, b]) => {
      const [ra, rb] = await Promise.all([ensureResources(a), ensureResources(b)]);
      assert.equal(ra.length, 11);
      assert.equal(rb.length, 11);
      assert.deepEqual((await ensureResources(a)).filter((r) => r.action !== "unchanged"), []);
    }),
});

Deno.test({
  name: "ensureResources() from two nodes at once, with different limits, both succeed",
  ignore: !!NO_NATS,
  fn: () =>
    withServer(["prisn", "prisn"], async ([a, b]) => {
      const MiB = 1024 * 1024;
      await Promise.all([
        ensureResources(a, { logsMaxBytes: 32 * MiB }),
        ensureResources(b, { logsMaxBytes: 48 * MiB }),
      ]);
      const logs = (await a.jsm.streams.info(a.names.streams.logs)).config;
      assert.ok([32 * MiB, 48 * MiB].includes(logs.max_bytes), String(logs.max_bytes));
    }),
});

Deno.test({
  name: "buckets made by ensureResources() open with Kvm and Objm, and compare-and-set holds",
  ignore: !!NO_NATS,
  fn: () =>
    withServer(["prisn"], async ([conn]) => {
      await ensureResources(conn);
      const desired = await new Kvm(conn.js).open(conn.names.kv.desired);
      const rev = await desired.create("deployments.api", "v1");
      await assert.rejects(desired.create("deployments.api", "v2"), isCasConflict);
      await assert.rejects(desired.update("deployments.api", "v2", rev + 7), isCasConflict);
      await desired.update("deployments.api", "v2", rev);
      assert.equal((await desired.get("deployments.api"))?.string(), "v2");
      const artifacts = await new Objm(conn.js).open(conn.names.objectStore.artifacts);
      await artifacts.putBlob({ name: "api/v-12345678.tar.gz" }, new Uint8Array([1, 2, 3]));
      assert.deepEqual([...(await artifacts.getBlob("api/v-12345678.tar.gz"))!], [1, 2, 3]);
    }),
});

Deno.test({
  name: "two cluster names on one NATS get disjoint buckets and streams",
  ignore: !!NO_NATS,
  fn: () =>
    withServer(["blue", "green"], async ([blue, green]) => {
      await Promise.all([ensureResources(blue), ensureResources(green)]);
      const all: string[] = [];
      for await (const name of blue.jsm.streams.names()) all.push(name);
      const b = streamsOf(blue.names);
      const g = streamsOf(green.names);
      assert.deepEqual(all.sort(), [...b, ...g].sort());
      assert.deepEqual(b.filter((s) => g.includes(s)), []);
      assert.ok(b.every((s) => s.includes("blue-")) && g.every((s) => s.includes("green-")));

      const kvBlue = await new Kvm(blue.js).open(blue.names.kv.lease);
      const kvGreen = await new Kvm(green.js).open(green.names.kv.lease);
      await kvBlue.create("leader", "node-1");
      await kvGreen.create("leader", "node-9"); // not taken: another cluster's lease
      assert.equal((await kvBlue.get("leader"))?.string(), "node-1");
      await blue.js.publish(blue.names.workSubject("job"), "t1");
      assert.equal((await blue.jsm.streams.info(blue.names.streams.work)).state.messages, 1);
      assert.equal((await green.jsm.streams.info(green.names.streams.work)).state.messages, 0);
    }),
});

Deno.test({
  name:
    "ensureResources() updates changed limits in place and refuses, in one line, what NATS cannot do",
  ignore: !!NO_NATS,
  fn: () =>
    withServer(["prisn"], async ([conn]) => {
      await ensureResources(conn);
      const changed = await ensureResources(conn, {
        logsMaxBytes: 64 * 1024 * 1024,
        leaseTtlMs: 20_000,
      });
      assert.deepEqual(
        changed.filter((r) => r.action === "updated").map((r) => r.name).sort(),
        ["prisn-lease", "prisn-logs"],
      );
      const logs = (await conn.jsm.streams.info("prisn-logs")).config;
      assert.equal(logs.max_bytes, 64 * 1024 * 1024);
      assert.equal((await conn.jsm.streams.info("KV_prisn-lease")).config.max_age, nanos(20_000));

      await assert.rejects(
        ensureResources(conn, { logsMaxBytes: 2 ** 50 }),
        isPrisnError(
          "UNAVAILABLE",
          /^NATS has not enough JetStream resources for stream prisn-logs \(NATS stream prisn-logs\) \(1 replicas, max bytes 1125899906842624\): lower/,
        ),
      );

      // A work queue someone made with the wrong retention cannot be converted.
      await conn.jsm.streams.delete("prisn-work");
      await conn.jsm.streams.add({ name: "prisn-work", subjects: ["prisn.work.>"] });
      await assert.rejects(
        ensureResources(conn),
        isPrisnError(
          "CONFLICT",
          "NATS stream prisn-work (stream prisn-work) exists with another retention (limits, prisn needs workqueue), which NATS cannot change: remove it (nats stream rm prisn-work) if its data may go, or use another --cluster name",
        ),
      );
      await assert.rejects(
        ensureResources(conn, { logsMaxAgeMs: 0 }),
        isPrisnError("INVALID", /^NATS resource limit logsMaxAgeMs 0 is not valid/),
      );
    }),
});

Deno.test({
  name: "ensureResources() with replicas 3 on a 3-server NATS 2.10 cluster replicates everything",
  ignore: !!NO_NATS_210,
  fn: async () => {
    const servers = await startNatsCluster();
    let conn: ClusterConnection | undefined;
    try {
      conn = await connectCluster({ servers: servers!.map((s) => s.url), replicas: 3 });
      const results = await ensureResources(conn);
      assert.deepEqual(results.filter((r) => r.action !== "created"), []);
      for (const r of results) {
        const info = await conn.jsm.streams.info(r.stream);
        assert.equal(info.config.num_replicas, 3, r.stream);
        assert.equal(info.cluster?.replicas?.length, 2, r.stream);
      }
      assert.deepEqual((await ensureResources(conn)).filter((r) => r.action !== "unchanged"), []);
    } finally {
      await conn?.close();
      await Promise.all((servers ?? []).map((s) => s.stop()));
    }
  },
});
