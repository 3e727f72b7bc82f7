import assert from "node:assert/strict";
import { join } from "node:path";
import { jetstream } from "@nats-io/jetstream";
import { type KV, Kvm, type KvWatchEntry } from "@nats-io/kv";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import {
  ClusterDesiredState,
  type ClusterDesiredStateOptions,
} from "../../cluster/desired_state.ts";
import type { DesiredChange, DesiredState } from "../../core/desired_state.ts";
import { LocalDesiredState } from "../../core/local_desired_state.ts";
import { Records } from "../../core/records.ts";
import { bucketKeys } from "../../cluster/_keys.ts";
import type { DeploySpec } from "../../core/spec.ts";
import { isPrisnError, waitFor } from "../_helpers.ts";
import { keysEndEarly, type NatsServer, NO_NATS, startNats } from "./_nats.ts";

if (NO_NATS) console.log(`tests/cluster/desired_state_test.ts: NATS tests skipped: ${NO_NATS}`);

const BUCKET = "prisn-desired";

const spec = (name: string, type: DeploySpec["type"] = "service") =>
  ({
    name,
    type,
    entrypoint: "main.py",
    runtime: "python3",
    args: [],
    env: {},
    replicas: 1,
    ...(type === "cronjob" ? { schedule: "* * * * *" } : {}),
  }) as DeploySpec;

const version = (v: string, name = "api", type: DeploySpec["type"] = "service") => ({
  deployment: name,
  version: v,
  spec: spec(name, type),
  source: { kind: "dir" as const, location: "/src" },
  files: 1,
  bytes: 1,
});

/** Consecutive repeats collapsed: a cluster hears one change per key it applies. */
function collapse(changes: DesiredChange[]): DesiredChange[] {
  return changes.filter((c, i) =>
    i === 0 || c.deployment !== changes[i - 1].deployment ||
    c.revision !== changes[i - 1].revision
  );
}

// --- a node: its own connection, bucket handle, SQLite mirror --------------------------------

interface NodeOptions {
  /** Reuse this folder's prisn.db (a restarted node). */
  dir?: string;
  /** Wraps the bucket handle the node is given (e.g. a watch the test can stall). */
  wrap?: (kv: KV) => KV;
  /** @default 100 */
  reconnectTimeWait?: number;
  /** JetStream request timeout. @default 5000 */
  timeout?: number;
  desired?: ClusterDesiredStateOptions;
}

class Node {
  readonly changes: DesiredChange[] = [];
  constructor(
    readonly nc: NatsConnection,
    readonly kv: KV,
    readonly records: Records,
    readonly desired: ClusterDesiredState,
    readonly dir: string,
  ) {
    desired.watch((c) => this.changes.push(c));
  }

  #closed = false;

  /** Stops the node (once); its folder (and so its mirror) stays for a restart. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.desired.close();
    this.records.close();
    await this.nc.close().catch(() => {});
  }
}

class Harness {
  readonly nodes: Node[] = [];
  readonly dirs: string[] = [];
  constructor(readonly server: NatsServer) {}

  async node(options: NodeOptions = {}): Promise<Node> {
    const dir = options.dir ?? await Deno.makeTempDir({ prefix: "prisn-cluster-desired-" });
    if (!options.dir) this.dirs.push(dir);
    const nc = await connect({
      servers: this.server.url,
      maxReconnectAttempts: -1,
      reconnectTimeWait: options.reconnectTimeWait ?? 100,
      reconnectJitter: 0,
    });
    const opened = await new Kvm(jetstream(nc, { timeout: options.timeout ?? 5000 }))
      .create(BUCKET, { history: 5 });
    const kv = options.wrap ? options.wrap(opened) : opened;
    const records = new Records(join(dir, "prisn.db"));
    const desired = new ClusterDesiredState(kv, records, {
      connection: nc,
      checkIntervalMs: 200,
      ...options.desired,
    });
    const node = new Node(nc, kv, records, desired, dir);
    this.nodes.push(node);
    try {
      await desired.start();
    } catch (e) {
      await node.close();
      throw e;
    }
    return node;
  }

  /** Resolves once every open node's mirror holds everything the bucket holds. */
  async settled(...nodes: Node[]): Promise<void> {
    const last = (await nodes[0].kv.status()).streamInfo.state.last_seq;
    await waitFor(() => nodes.every((n) => n.desired.mirrorRevision >= last), {
      timeoutMs: 10_000,
      intervalMs: 20,
      what: `mirrors at revision ${last}`,
    });
  }

  async close(): Promise<void> {
    for (const n of this.nodes) await n.close();
    for (const d of this.dirs) await Deno.remove(d, { recursive: true }).catch(() => {});
  }
}

/** A test over a fresh nats-server (always stopped, also on failure); skipped without one. */
function natsTest(name: string, fn: (h: Harness) => Promise<void>): void {
  Deno.test({
    name,
    ignore: NO_NATS !== undefined,
    fn: async () => {
      const server = await startNats();
      const h = new Harness(server);
      try {
        await fn(h);
      } finally {
        await h.close();
        await server.stop();
      }
    },
  });
}

/** A bucket handle whose watches the test can make fall silent (no error, no end). */
function stallable() {
  const watches: { stall(): void }[] = [];
  const wrap = (kv: KV): KV => {
    const wrapped = Object.create(kv) as KV;
    wrapped.watch = async (options) => {
      const inner = await kv.watch(options);
      let stalled = false;
      const stopped = Promise.withResolvers<void>();
      const watch = {
        stall() {
          stalled = true;
        },
        stop() {
          inner.stop();
          stopped.resolve();
        },
        async *[Symbol.asyncIterator](): AsyncGenerator<KvWatchEntry> {
          for await (const e of inner) {
            if (stalled) {
              await stopped.promise; // swallows this and everything after it, silently
              return;
            }
            yield e;
          }
        },
      };
      watches.push(watch);
      return watch as unknown as Awaited<ReturnType<KV["watch"]>>;
    };
    return wrapped;
  };
  return { wrap, watches };
}

// --- two nodes over one bucket ---------------------------------------------------------------

natsTest(
  "ClusterDesiredState: a write on one node is read at once there, and read and watched on the other",
  async (h) => {
    const a = await h.node();
    const b = await h.node();
    await a.desired.putVersion(version("v-1"));
    const r1 = await a.desired.activate("api", "v-1", 2, { expect: 0 });
    // The writer's own mirror has it when the write resolves.
    assert.equal(a.desired.getDeployment("api")?.revision, r1);
    assert.equal(a.desired.getVersion("api", "v-1")?.status, "active");

    await h.settled(a, b);
    const d = b.desired.getDeployment("api")!;
    assert.equal(d.revision, r1);
    assert.equal(d.version, "v-1");
    assert.equal(d.replicas, 2);
    assert.equal(d.type, "service");
    assert.equal(d.suspended, false);
    assert.deepEqual(b.desired.getVersion("api", "v-1"), a.desired.getVersion("api", "v-1"));
    assert.deepEqual(b.desired.listDeployments(), a.desired.listDeployments());
    assert.ok(b.changes.some((c) => c.deployment === "api" && c.revision === undefined));
    assert.ok(b.changes.some((c) => c.deployment === "api" && c.revision === r1));

    // And back: the other node's write reaches the first node's watchers.
    const r2 = await b.desired.setReplicas("api", 4, { expect: r1 });
    assert.ok(r2 > r1);
    await h.settled(a, b);
    assert.equal(a.desired.getDeployment("api")?.replicas, 4);
    assert.deepEqual(a.changes.at(-1), { deployment: "api", revision: r2 });
    // The revision is the KV revision of d.api.
    assert.equal((await a.kv.get("d.api"))?.revision, r2);
  },
);

natsTest(
  "ClusterDesiredState: two nodes writing on the same revision: one wins, one CONFLICT, nothing half-written",
  async (h) => {
    const a = await h.node();
    const b = await h.node();
    for (const [i, name] of ["api", "web", "db"].entries()) {
      await a.desired.putVersion(version("v-1", name));
      await a.desired.putVersion(version("v-2", name));
      const r1 = await a.desired.activate(name, "v-1", 1, { expect: 0 });
      await h.settled(a, b);
      // A deploy on one node and a scale on the other, both decided on r1 (in either order).
      const writes = [
        () => a.desired.activate(name, "v-2", 1, { expect: r1 }),
        () => b.desired.setReplicas(name, 5, { expect: r1 }),
      ];
      const order = i % 2 === 0 ? writes : writes.toReversed();
      const settled = await Promise.allSettled(order.map((w) => w()));
      const results = i % 2 === 0 ? settled : settled.toReversed();
      const won = results.filter((r) => r.status === "fulfilled") as PromiseFulfilledResult<
        number
      >[];
      const lost = results.filter((r) => r.status === "rejected") as PromiseRejectedResult[];
      assert.equal(won.length, 1, `${name}: one write wins`);
      assert.equal(lost.length, 1, `${name}: one write loses`);
      const winner = won[0].value;
      assert.throws(
        () => {
          throw lost[0].reason;
        },
        isPrisnError(
          "CONFLICT",
          `${name} changed meanwhile (revision ${winner}, expected ${r1}): look again and retry`,
        ),
      );
      await h.settled(a, b);
      const deployWon = results[0].status === "fulfilled";
      for (const n of [a, b]) {
        const d = n.desired.getDeployment(name)!;
        assert.equal(d.revision, winner);
        assert.equal(d.version, deployWon ? "v-2" : "v-1");
        assert.equal(d.replicas, deployWon ? 1 : 5);
        assert.equal(
          n.desired.getVersion(name, "v-1")?.status,
          deployWon ? "superseded" : "active",
        );
        assert.equal(n.desired.getVersion(name, "v-2")?.status, deployWon ? "active" : "stored");
      }
    }
  },
);

natsTest(
  "ClusterDesiredState: activate supersedes the previous version on both mirrors, and rollback swaps them back",
  async (h) => {
    const a = await h.node();
    const b = await h.node();
    await a.desired.putVersion(version("v-1"), { now: 1000 });
    const r1 = await a.desired.activate("api", "v-1", 1, { expect: 0, now: 1000 });
    await b.desired.putVersion(version("v-2"), { now: 2000 });
    await h.settled(a, b);
    const r2 = await b.desired.activate("api", "v-2", 1, { expect: r1, now: 2000 });
    await h.settled(a, b);
    for (const n of [a, b]) {
      assert.equal(n.desired.getDeployment("api")?.version, "v-2");
      assert.deepEqual(
        n.desired.listVersions("api").map((v) => [v.version, v.status, v.deployedAt]),
        [["v-2", "active", 2000], ["v-1", "superseded", 1000]],
      );
      assert.equal(n.desired.getDeployment("api")?.createdAt, 1000);
    }
    await a.desired.activate("api", "v-1", 1, { expect: r2, now: 3000 }); // a rollback
    await h.settled(a, b);
    for (const n of [a, b]) {
      assert.deepEqual(
        n.desired.listVersions("api").map((v) => [v.version, v.status]),
        [["v-1", "active"], ["v-2", "superseded"]],
      );
    }
  },
);

natsTest(
  "ClusterDesiredState: a delete on one node removes the deployment and its versions everywhere; the name can be deployed again",
  async (h) => {
    const a = await h.node();
    // The deleting node's kv.keys() leaves keys out, as a server's early "none pending" makes it.
    const b = await h.node({ wrap: keysEndEarly });
    await a.desired.putVersion(version("v-1"));
    await a.desired.putVersion(version("v-2"));
    await a.desired.activate("api", "v-1", 1, { expect: 0 });
    const r2 = await a.desired.activate("api", "v-2", 1);
    await a.desired.setLastScheduled("api", 5000);
    await a.desired.putVersion(version("v-1", "web"));
    await a.desired.activate("web", "v-1", 1);
    await h.settled(a, b);

    await assert.rejects(
      b.desired.deleteDeployment("api", { expect: r2 - 1 }),
      isPrisnError(
        "CONFLICT",
        `api changed meanwhile (revision ${r2}, expected ${r2 - 1}): look again and retry`,
      ),
    );
    assert.equal(b.desired.listVersions("api").length, 2, "a refused delete removes nothing");

    await b.desired.deleteDeployment("api", { expect: r2 });
    assert.equal(b.desired.getDeployment("api"), undefined);
    assert.deepEqual(b.desired.listVersions("api"), []);
    await h.settled(a, b);
    assert.equal(a.desired.getDeployment("api"), undefined);
    assert.deepEqual(a.desired.listVersions("api"), []);
    assert.deepEqual(a.changes.at(-1), { deployment: "api", revision: undefined });
    assert.equal(a.desired.getDeployment("web")?.version, "v-1", "other deployments stay");
    // In the bucket: no live key of api is left.
    const live: string[] = [];
    for (const k of await bucketKeys(a.kv)) {
      if ((await a.kv.get(k))?.operation === "PUT") live.push(k);
    }
    assert.deepEqual(live.filter((k) => k.includes("api")), []);

    // Deploying the name again is a create on the deleted key.
    await a.desired.putVersion(version("v-3"));
    const again = await a.desired.activate("api", "v-3", 1, { expect: 0 });
    assert.ok(again > r2);
    await h.settled(a, b);
    assert.equal(b.desired.getDeployment("api")?.version, "v-3");
    assert.equal(b.desired.getDeployment("api")?.lastScheduledAt, undefined);
    assert.deepEqual(b.desired.listVersions("api").map((v) => v.status), ["active"]);
  },
);

natsTest(
  "ClusterDesiredState: cron bookkeeping reaches every node and never bumps the revision",
  async (h) => {
    const a = await h.node();
    const b = await h.node();
    await a.desired.putVersion(version("v-1", "tick", "cronjob"));
    const r1 = await a.desired.activate("tick", "v-1", 1, { expect: 0 });
    assert.equal(await a.desired.setLastScheduled("tick", 60_000), r1);
    assert.equal(a.desired.getDeployment("tick")?.lastScheduledAt, 60_000);
    await h.settled(a, b);
    assert.deepEqual(
      [b.desired.getDeployment("tick")?.lastScheduledAt, b.desired.getDeployment("tick")?.revision],
      [60_000, r1],
    );
    assert.equal(await b.desired.setLastScheduled("tick", 120_000, { expect: r1 }), r1);
    await h.settled(a, b);
    assert.equal(a.desired.getDeployment("tick")?.lastScheduledAt, 120_000);
    // A real change bumps the revision and keeps the tick.
    const r2 = await a.desired.setSuspended("tick", true);
    assert.ok(r2 > r1);
    await h.settled(a, b);
    assert.deepEqual(
      [
        b.desired.getDeployment("tick")?.suspended,
        b.desired.getDeployment("tick")?.lastScheduledAt,
      ],
      [true, 120_000],
    );
    await assert.rejects(
      a.desired.setLastScheduled("tick", 180_000, { expect: r1 }),
      isPrisnError(
        "CONFLICT",
        `tick changed meanwhile (revision ${r2}, expected ${r1}): look again and retry`,
      ),
    );
    await assert.rejects(
      a.desired.setLastScheduled("nope", 1),
      isPrisnError("NOT_FOUND", 'deployment "nope" not found: see prisn ls'),
    );
    assert.equal(await b.desired.setLastScheduled("tick", undefined), r2);
    await h.settled(a, b);
    assert.equal(a.desired.getDeployment("tick")?.lastScheduledAt, undefined);
    assert.equal(a.desired.getDeployment("tick")?.revision, r2);
  },
);

natsTest(
  "ClusterDesiredState: reads keep answering while NATS is down (stale since then) and catch up with the other node's changes after it is back",
  async (h) => {
    // a comes back slowly, b quickly: b writes while a is still away.
    const a = await h.node({ reconnectTimeWait: 1500, timeout: 1000 });
    const b = await h.node();
    await a.desired.putVersion(version("v-1"));
    const r1 = await a.desired.activate("api", "v-1", 2, { expect: 0 });
    await h.settled(a, b);
    assert.equal(a.desired.staleSince(), undefined);

    const down = Date.now();
    await h.server.kill();
    await waitFor(() => a.desired.staleSince() !== undefined, { what: "a marked stale" });
    assert.ok(a.desired.staleSince()! >= down - 50);
    assert.equal(a.desired.getDeployment("api")?.revision, r1);
    assert.equal(a.desired.listDeployments().length, 1);
    assert.equal(a.desired.getVersion("api", "v-1")?.status, "active");
    // A write now cannot be confirmed: one line, and the mirror is unchanged.
    await assert.rejects(
      a.desired.setReplicas("api", 9, { expect: r1 }),
      isPrisnError(
        "UNAVAILABLE",
        /^NATS did not confirm changing api \(.*\): it may still take effect/,
      ),
    );
    assert.equal(a.desired.getDeployment("api")?.replicas, 2);

    await h.server.start();
    const r2 = await waitFor(() => b.desired.setReplicas("api", 4), {
      timeoutMs: 15_000,
      intervalMs: 200,
      what: "b writes once NATS is back",
    });
    await waitFor(() => a.desired.getDeployment("api")?.revision === r2, {
      timeoutMs: 15_000,
      what: "a catches up",
    });
    assert.equal(a.desired.getDeployment("api")?.replicas, 4);
    assert.ok(a.changes.some((c) => c.deployment === "api" && c.revision === r2));
    await waitFor(() => a.desired.staleSince() === undefined, {
      timeoutMs: 10_000,
      what: "a current again",
    });
    // And a writes again.
    const r3 = await a.desired.setReplicas("api", 5);
    await h.settled(a, b);
    assert.equal(b.desired.getDeployment("api")?.revision, r3);
  },
);

natsTest(
  "ClusterDesiredState: a restarted node resumes from the last revision its mirror applied",
  async (h) => {
    const a1 = await h.node();
    const b = await h.node();
    await b.desired.putVersion(version("v-1"));
    await b.desired.activate("api", "v-1", 1, { expect: 0 });
    await h.settled(a1, b);
    const left = a1.desired.mirrorRevision;
    const dir = a1.dir;
    await a1.close();

    const r2 = await b.desired.setReplicas("api", 3);
    await b.desired.putVersion(version("v-1", "web"));
    const web = await b.desired.activate("web", "v-1", 1);
    const saved = new Records(join(dir, "prisn.db"));
    const progress = JSON.parse(saved.getMirrorState(`bucket.${BUCKET}`)!);
    saved.close();
    assert.equal(progress.revision, left, "the last applied revision is on disk");

    const a2 = await h.node({ dir });
    // Caught up when start() resolves...
    assert.equal(a2.desired.getDeployment("api")?.replicas, 3);
    assert.equal(a2.desired.getDeployment("web")?.revision, web);
    assert.equal(a2.desired.staleSince(), undefined);
    // ...having applied only what came after: no replay of api's first revision or of v-1.
    assert.deepEqual(collapse(a2.changes), [
      { deployment: "api", revision: r2 },
      { deployment: "web", revision: undefined },
      { deployment: "web", revision: web },
    ]);
  },
);

natsTest(
  "ClusterDesiredState: a new mirror takes the bucket's snapshot and drops what the bucket does not hold",
  async (h) => {
    const a = await h.node();
    await a.desired.putVersion(version("v-1"));
    const r1 = await a.desired.activate("api", "v-1", 1);
    await a.desired.setLastScheduled("api", 7000);
    await a.desired.setReplicas("api", 2); // d.api is now newer than t.api
    // A node that ran alone before: its own records hold a deployment the cluster never had.
    const dir = await Deno.makeTempDir({ prefix: "prisn-cluster-desired-" });
    h.dirs.push(dir);
    const before = new Records(join(dir, "prisn.db"));
    const alone = new LocalDesiredState(before);
    await alone.putVersion(version("v-9", "ghost"));
    await alone.activate("ghost", "v-9", 1);
    before.close();

    const b = await h.node({ dir });
    assert.equal(b.desired.getDeployment("ghost"), undefined);
    assert.deepEqual(b.desired.listVersions("ghost"), []);
    assert.ok(b.changes.some((c) => c.deployment === "ghost" && c.revision === undefined));
    const d = b.desired.getDeployment("api")!;
    assert.deepEqual([d.replicas, d.lastScheduledAt], [2, 7000]);
    assert.ok(d.revision > r1);
  },
);

natsTest(
  "ClusterDesiredState: a snapshot whose watch says too early that it is done drops nothing the bucket holds",
  async (h) => {
    const a = await h.node();
    for (const name of ["api", "web"]) {
      await a.desired.putVersion(version("v-1", name));
      await a.desired.activate(name, "v-1", 1);
    }
    // A node whose own records hold the same names, and one the cluster never had.
    const dir = await Deno.makeTempDir({ prefix: "prisn-cluster-desired-" });
    h.dirs.push(dir);
    const before = new Records(join(dir, "prisn.db"));
    const alone = new LocalDesiredState(before);
    for (const name of ["api", "web", "ghost"]) {
      await alone.putVersion(version("v-1", name));
      await alone.activate(name, "v-1", 1);
    }
    before.close();

    // Every entry of its watch claims to be past the snapshot (a server's early "none pending").
    const wrap = (kv: KV): KV => {
      const wrapped = Object.create(kv) as KV;
      wrapped.watch = async (options) => {
        const inner = await kv.watch(options);
        const early = {
          stop: () => inner.stop(),
          async *[Symbol.asyncIterator](): AsyncGenerator<KvWatchEntry> {
            for await (const e of inner) yield Object.create(e, { isUpdate: { value: true } });
          },
        };
        return early as unknown as Awaited<ReturnType<KV["watch"]>>;
      };
      return wrapped;
    };
    const b = await h.node({ dir, wrap });
    assert.deepEqual(b.desired.listDeployments().map((d) => d.name).sort(), ["api", "web"]);
    assert.deepEqual(
      b.changes.filter((c) => c.revision === undefined).map((c) => c.deployment),
      ["ghost"],
      "only the deployment the bucket does not hold was ever removed",
    );
  },
);

natsTest(
  "ClusterDesiredState: a watch that falls silent is found behind the bucket and watched again",
  async (h) => {
    const { wrap, watches } = stallable();
    const a = await h.node({ wrap, desired: { checkIntervalMs: 100, stallAfterMs: 300 } });
    const b = await h.node();
    await b.desired.putVersion(version("v-1"));
    await b.desired.activate("api", "v-1", 1, { expect: 0 });
    await h.settled(a, b);
    assert.equal(watches.length, 1);

    watches[0].stall();
    const r2 = await b.desired.setReplicas("api", 7);
    let wasStale = false;
    await waitFor(() => {
      wasStale ||= a.desired.staleSince() !== undefined;
      return a.desired.getDeployment("api")?.revision === r2;
    }, { timeoutMs: 10_000, intervalMs: 10, what: "a re-watches and catches up" });
    assert.ok(wasStale, "stale while behind");
    assert.ok(a.desired.rewatches >= 1);
    assert.ok(watches.length >= 2);
    assert.ok(a.changes.some((c) => c.revision === r2), "the missed change reached a's watchers");
    await waitFor(() => a.desired.staleSince() === undefined, { what: "a current again" });

    // A write of its own resolves once its mirror applied it, stalled or not.
    watches.at(-1)!.stall();
    const r3 = await a.desired.setReplicas("api", 8);
    assert.equal(a.desired.getDeployment("api")?.revision, r3);
    assert.ok(watches.length >= 3);
  },
);

natsTest(
  "ClusterDesiredState: a record over NATS's 1 MiB value limit is refused with one line",
  async (h) => {
    const a = await h.node();
    const big = version("v-1");
    big.spec = { ...big.spec, env: { BIG: "x".repeat(1024 * 1024) } };
    await assert.rejects(
      a.desired.putVersion(big),
      isPrisnError("INVALID", /^the record v\.api\.v-1 would be \d+ bytes, over the 1 MiB/),
    );
    assert.deepEqual(a.desired.listVersions("api"), []);
  },
);

// --- the LocalDesiredState expectations, on both implementations -----------------------------

interface Subject {
  desired: DesiredState;
  /** Lets pending watch calls arrive. */
  settle(): Promise<void>;
}

const implementations: {
  name: string;
  ignore: boolean;
  with(fn: (s: Subject) => Promise<void>): Promise<void>;
}[] = [
  {
    name: "LocalDesiredState",
    ignore: false,
    async with(fn) {
      const dir = await Deno.makeTempDir({ prefix: "prisn-desired-" });
      const records = new Records(join(dir, "prisn.db"));
      try {
        await fn({
          desired: new LocalDesiredState(records),
          settle: () => new Promise((r) => setTimeout(r, 0)),
        });
      } finally {
        records.close();
        await Deno.remove(dir, { recursive: true });
      }
    },
  },
  {
    name: "ClusterDesiredState",
    ignore: NO_NATS !== undefined,
    async with(fn) {
      const server = await startNats();
      const h = new Harness(server);
      try {
        const n = await h.node();
        await fn({ desired: n.desired, settle: () => h.settled(n) });
      } finally {
        await h.close();
        await server.stop();
      }
    },
  },
];

for (const impl of implementations) {
  const test = (name: string, fn: (s: Subject) => Promise<void>) =>
    Deno.test({ name: `${impl.name} ${name}`, ignore: impl.ignore, fn: () => impl.with(fn) });

  test("bumps the revision on every change and tells watchers which deployment changed", async ({ desired: d, settle }) => {
    const seen: DesiredChange[] = [];
    const unwatch = d.watch((c) => seen.push(c));
    await d.putVersion(version("v-1"));
    const r1 = await d.activate("api", "v-1", 2, { expect: 0 });
    assert.ok(r1 >= 1);
    const r2 = await d.setReplicas("api", 3, { expect: r1 });
    assert.ok(r2 > r1);
    const r3 = await d.setSuspended("api", false);
    assert.ok(r3 > r2);
    await settle();
    const before = seen.length;
    assert.equal(await d.setLastScheduled("api", 1000), r3); // bookkeeping: no new revision
    assert.equal(d.getDeployment("api")?.revision, r3);
    assert.equal(d.getDeployment("api")?.lastScheduledAt, 1000);
    await settle();
    assert.ok(seen.length > before, "the tick is told too");
    assert.deepEqual(seen.at(-1), { deployment: "api", revision: r3 });
    await d.deleteDeployment("api");
    assert.equal(d.getDeployment("api"), undefined);
    assert.deepEqual(d.listVersions("api"), []);
    await settle();
    assert.deepEqual(collapse(seen), [
      { deployment: "api", revision: undefined }, // a version of a deployment not yet active
      { deployment: "api", revision: r1 },
      { deployment: "api", revision: r2 },
      { deployment: "api", revision: r3 },
      { deployment: "api", revision: undefined },
    ]);
    unwatch();
  });

  test("refuses a write whose expected revision is stale, and changes nothing", async ({ desired: d }) => {
    await d.putVersion(version("v-1"));
    await d.putVersion(version("v-2"));
    const r1 = await d.activate("api", "v-1", 1, { expect: 0 });
    // Two changes decided on revision r1 (a deploy and a scale at once): the store picks one.
    const results = await Promise.allSettled([
      d.activate("api", "v-2", 1, { expect: r1 }),
      d.setReplicas("api", 5, { expect: r1 }),
    ]);
    const won = results.findIndex((r) => r.status === "fulfilled");
    assert.equal(results.filter((r) => r.status === "fulfilled").length, 1);
    const winner = (results[won] as PromiseFulfilledResult<number>).value;
    assert.throws(
      () => {
        throw (results[1 - won] as PromiseRejectedResult).reason;
      },
      isPrisnError(
        "CONFLICT",
        `api changed meanwhile (revision ${winner}, expected ${r1}): look again and retry`,
      ),
    );
    const now = d.getDeployment("api")!;
    assert.equal(now.revision, winner);
    assert.deepEqual([now.version, now.replicas], won === 0 ? ["v-2", 1] : ["v-1", 5]);
    assert.equal(d.getVersion("api", "v-2")?.status, won === 0 ? "active" : "stored");
    // A new deployment expects revision 0: it must not exist yet.
    await assert.rejects(
      d.activate("api", "v-1", 1, { expect: 0 }),
      isPrisnError("CONFLICT", new RegExp(`revision ${winner}, expected 0`)),
    );
    await assert.rejects(
      d.deleteDeployment("api", { expect: r1 }),
      isPrisnError("CONFLICT", new RegExp(`revision ${winner}, expected ${r1}`)),
    );
    assert.equal(d.getDeployment("api")?.revision, winner);
  });

  test("setReplicas() of a deployment that does not exist is NOT_FOUND", async ({ desired: d }) => {
    await assert.rejects(
      d.setReplicas("nope", 2),
      isPrisnError("NOT_FOUND", 'deployment "nope" not found: see prisn ls'),
    );
    await assert.rejects(
      d.setSuspended("nope", true),
      isPrisnError("NOT_FOUND", 'deployment "nope" not found: see prisn ls'),
    );
  });

  test("activate() of a version that is not recorded is NOT_FOUND, and creates nothing", async ({ desired: d }) => {
    await assert.rejects(
      d.activate("api", "v-9", 1),
      isPrisnError("NOT_FOUND", "version v-9 of api is not recorded"),
    );
    assert.equal(d.getDeployment("api"), undefined);
  });

  test("putVersion() of a recorded version refreshes spec and source but keeps status and times", async ({ desired: d }) => {
    await d.putVersion(version("v-1"), { now: 1000 });
    await d.activate("api", "v-1", 1, { now: 1500 });
    const again = { ...version("v-1"), source: { kind: "dir" as const, location: "/elsewhere" } };
    await d.putVersion(again, { now: 2000 });
    const v = d.getVersion("api", "v-1")!;
    assert.deepEqual(
      [v.status, v.createdAt, v.deployedAt, v.source.location],
      ["active", 1000, 1500, "/elsewhere"],
    );
    await d.setVersionStatus("api", "v-1", "failed");
    assert.equal(d.getVersion("api", "v-1")?.status, "failed");
    await d.setVersionStatus("api", "v-7", "failed"); // not recorded: nothing happens
    assert.equal(d.getVersion("api", "v-7"), undefined);
    await d.putVersion(version("v-2"), { now: 3000 });
    await d.deleteVersion("api", "v-2");
    assert.deepEqual(d.listVersions("api").map((x) => x.version), ["v-1"]);
  });
}
