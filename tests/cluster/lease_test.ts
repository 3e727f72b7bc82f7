/**
 * LeaderLease and EpochFence against a real nats-server: one leader among several nodes, epochs
 * that grow from term to term, a paused or cut-off leader that stops acting by TTL/2 (before
 * anyone else can act), a quick hand-over on release(), and 30 concurrent acquisitions on a
 * 3-server NATS 2.10 cluster.
 */
import assert from "node:assert/strict";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { type KV, Kvm } from "@nats-io/kv";
import {
  EpochFence,
  LeaderLease,
  type LeaderLease as LeaseType,
  type LeaderLeaseOptions,
  type Timers,
} from "../../cluster/lease.ts";
import { type NatsServer, NO_NATS, startNats, startNatsCluster } from "./_nats.ts";
import { Scope, waitFor } from "../_helpers.ts";

if (NO_NATS) console.log(`SKIP lease tests: ${NO_NATS}`);

const TTL = 2_000;
const RENEW = 500;
const POLL = 100;
const BUCKET = "lease";

async function withScope(fn: (scope: Scope) => Promise<void>): Promise<void> {
  const scope = new Scope();
  try {
    await fn(scope);
  } finally {
    await scope.close();
  }
}

async function server(scope: Scope): Promise<NatsServer> {
  const s = await startNats();
  scope.defer(() => s.stop());
  return s;
}

/** One node's own connection to `url` and its handle on the lease bucket. */
async function openBucket(
  scope: Scope,
  url: string,
  options: { replicas?: number; open?: boolean } = {},
): Promise<{ nc: NatsConnection; kv: KV }> {
  const nc = await connect({ servers: url, ignoreClusterUpdates: true });
  scope.defer(() => nc.close());
  const kvm = new Kvm(nc);
  const kv = options.open
    ? await kvm.open(BUCKET)
    : await kvm.create(BUCKET, { ttl: TTL, history: 1, replicas: options.replicas ?? 1 });
  return { nc, kv };
}

/** A started lease that records its leadership changes with their times. */
interface Node {
  lease: LeaseType;
  changes: { leader: boolean; epoch: number; at: number }[];
}

async function node(
  scope: Scope,
  kv: KV,
  name: string,
  options: Partial<LeaderLeaseOptions> = {},
): Promise<Node> {
  const lease = new LeaderLease(kv, {
    node: name,
    address: `10.0.0.${name.at(-1)}`,
    renewMs: RENEW,
    pollMs: POLL,
    ...options,
  });
  const changes: Node["changes"] = [];
  lease.onChange((c) => changes.push({ ...c, at: performance.now() }));
  scope.defer(() => lease.stop());
  await lease.start();
  return { lease, changes };
}

function leaders(nodes: Node[]): Node[] {
  return nodes.filter((n) => n.lease.isLeader());
}

/** Timers that hold every callback due while paused, as a stopped process would. */
class PausableTimers implements Timers {
  #paused = false;
  #next = 1;
  #pending = new Map<number, ReturnType<typeof setTimeout>>();
  #held = new Map<number, () => void>();

  setTimeout(callback: () => void, ms: number): number {
    const id = this.#next++;
    this.#pending.set(
      id,
      setTimeout(() => {
        this.#pending.delete(id);
        if (this.#paused) this.#held.set(id, callback);
        else callback();
      }, ms),
    );
    return id;
  }
  clearTimeout(id: unknown): void {
    if (typeof id !== "number") return;
    clearTimeout(this.#pending.get(id));
    this.#pending.delete(id);
    this.#held.delete(id);
  }
  pause(): void {
    this.#paused = true;
  }
  resume(): void {
    this.#paused = false;
    const due = [...this.#held.values()];
    this.#held.clear();
    for (const callback of due) callback();
  }
}

/** A TCP relay to a nats-server whose `cut()` drops every connection and refuses new ones. */
function relay(scope: Scope, port: number): { url: string; cut(): void } {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns = new Set<Deno.Conn>();
  let open = true;
  const cut = () => {
    if (!open) return;
    open = false;
    listener.close();
    for (const c of conns) {
      try {
        c.close();
      } catch { /* closed */ }
    }
  };
  scope.defer(cut);
  (async () => {
    for await (const down of listener) {
      const up = await Deno.connect({ hostname: "127.0.0.1", port });
      conns.add(down).add(up);
      down.readable.pipeTo(up.writable).catch(() => {});
      up.readable.pipeTo(down.writable).catch(() => {});
    }
  })().catch(() => {});
  return { url: `nats://127.0.0.1:${(listener.addr as Deno.NetAddr).port}`, cut };
}

Deno.test("EpochFence refuses epochs lower than the highest it has seen", () => {
  const fence = new EpochFence();
  assert.equal(fence.highest, 0);
  assert.ok(fence.fence(5));
  assert.ok(fence.fence(5), "the current epoch is not stale");
  assert.ok(!fence.fence(3));
  assert.ok(fence.isStale(3));
  assert.ok(fence.fence(9));
  assert.ok(fence.isStale(5));
  assert.ok(!fence.isStale(9));
  assert.equal(fence.highest, 9);
});

Deno.test({
  name: "three leases on a new bucket: exactly one leads, at once (no term before it); after " +
    "its expiry the next leads a renew interval later, with a higher epoch that fences the old one",
  ignore: !!NO_NATS,
  async fn() {
    await withScope(async (scope) => {
      const s = await server(scope);
      const nodes: Node[] = [];
      const started = performance.now();
      for (const name of ["node-1", "node-2", "node-3"]) {
        nodes.push(await node(scope, (await openBucket(scope, s.url)).kv, name));
      }
      const [first] = await waitFor(() => leaders(nodes).length ? leaders(nodes) : undefined, {
        intervalMs: 10,
        what: "a leader",
      });
      const gained = first.changes[0];
      assert.ok(gained.leader);
      assert.ok(
        gained.at - started < RENEW - 20,
        `the first leader of a new bucket acts at once (after ${gained.at - started} ms)`,
      );
      assert.equal(first.lease.epoch, 1, "its term is the bucket's first write");
      // Over a few renewals, never two at once.
      for (let i = 0; i < 40; i++) {
        assert.equal(leaders(nodes).length, 1);
        await new Promise((r) => setTimeout(r, 25));
      }
      const epoch1 = first.lease.epoch;
      assert.equal(gained.epoch, epoch1);
      // The holder's key says it acts (written at once when it starts acting): every node
      // shows it as the acting leader within a poll interval.
      await waitFor(() => nodes.every((n) => n.lease.holder?.acting), {
        timeoutMs: 2_000,
        intervalMs: 10,
        what: "every node seeing the leader acting",
      });
      for (const n of nodes) {
        assert.equal(n.lease.epoch, epoch1, "followers know the leader's epoch");
        assert.equal(n.lease.holder?.node, first.lease.node);
        assert.equal(n.lease.holder?.address, first.lease.address);
      }

      // The leader goes away without a word: another takes the lease once it expires.
      const stopped = performance.now();
      first.lease.stop();
      assert.deepEqual(first.changes.map((c) => c.leader), [true, false]);
      const rest = nodes.filter((n) => n !== first);
      const [second] = await waitFor(() => leaders(rest).length ? leaders(rest) : undefined, {
        timeoutMs: TTL + 3 * RENEW + 1_000,
        intervalMs: 10,
        what: "a second leader",
      });
      const took = performance.now() - stopped;
      // The key expires a TTL after the last renewal was stored, at most a renew interval before
      // the stop; the start delay (one renew interval) comes on top.
      assert.ok(took >= TTL - 20, `took over after ${took} ms: the TTL and the start delay`);
      assert.equal(second.lease.holder?.acting, true);
      assert.equal(leaders(rest).length, 1);
      const epoch2 = second.lease.epoch;
      assert.ok(epoch2 > epoch1, `epoch ${epoch2} > ${epoch1}`);
      await waitFor(() => rest.every((n) => n.lease.epoch === epoch2), { what: "epoch seen" });
      for (const n of rest) {
        assert.ok(n.lease.isStale(epoch1), "the old leader's epoch is stale");
        assert.ok(!n.lease.isStale(epoch2));
        assert.ok(!n.lease.fence(epoch1), "work stamped with the old epoch is refused");
      }
    });
  },
});

Deno.test({
  name: "a node that saw an earlier term waits a renew interval even on a new bucket (made again " +
    "under a running cluster)",
  ignore: !!NO_NATS,
  async fn() {
    await withScope(async (scope) => {
      const s = await server(scope);
      const fence = new EpochFence();
      fence.fence(57); // a term of the bucket as it was before
      const started = performance.now();
      const n = await node(scope, (await openBucket(scope, s.url)).kv, "node-1", { fence });
      await waitFor(() => n.lease.isLeader(), { intervalMs: 10, what: "node-1 leads" });
      const at = n.changes[0].at - started;
      assert.ok(at >= RENEW - 20, `it acted after ${at} ms, not after the start delay`);
    });
  },
});

Deno.test({
  name: "a paused leader is not leader when it runs again, a follower takes over after the TTL, " +
    "and the old epoch is stale",
  ignore: !!NO_NATS,
  async fn() {
    await withScope(async (scope) => {
      const s = await server(scope);
      const timers = new PausableTimers();
      const a = await node(scope, (await openBucket(scope, s.url)).kv, "node-1", { timers });
      await waitFor(() => a.lease.isLeader(), { intervalMs: 10, what: "node-1 leads" });
      const b = await node(scope, (await openBucket(scope, s.url)).kv, "node-2");
      const epochA = a.lease.epoch;
      // Right after a renewal, so the lease lives about a TTL from here.
      await waitFor(() => a.lease.holder && b.lease.epoch === epochA, { what: "b sees a" });

      const paused = performance.now();
      timers.pause();
      // No timer of node-1 fires now; whatever code of it ran would ask isLeader() first.
      const probe = setInterval(() => a.lease.isLeader(), 5);
      scope.defer(() => clearInterval(probe));
      await waitFor(() => b.lease.isLeader(), {
        timeoutMs: TTL + 2 * RENEW + 1_000,
        intervalMs: 10,
        what: "node-2 leads",
      });
      const bActs = b.changes.find((c) => c.leader)!.at;
      assert.ok(bActs - paused >= TTL - RENEW, `node-2 acted ${bActs - paused} ms after the pause`);
      assert.ok(b.lease.epoch > epochA);
      assert.ok(b.lease.isStale(epochA));

      // Still paused: no timer has told node-1 anything, yet it answered from its clock.
      clearInterval(probe);
      assert.deepEqual(a.changes.map((c) => c.leader), [true, false]);
      assert.ok(
        a.changes[1].at - paused <= TTL / 2 + 200,
        `node-1 stepped down ${a.changes[1].at - paused} ms after its pause`,
      );
      assert.ok(a.changes[1].at < bActs);
      timers.resume();
      assert.ok(!a.lease.isLeader());
      await waitFor(() => a.lease.holder?.node === "node-2", { what: "node-1 sees node-2" });
      assert.ok(a.lease.isStale(epochA), "node-1 knows its own epoch is stale");
      assert.equal(a.lease.epoch, b.lease.epoch);
      assert.ok(!a.lease.isLeader());
      assert.ok(b.lease.isLeader());
    });
  },
});

Deno.test({
  name: "a leader that loses its connection steps down by TTL/2, well before a follower acts",
  ignore: !!NO_NATS,
  async fn() {
    await withScope(async (scope) => {
      const s = await server(scope);
      const link = relay(scope, s.port);
      const a = await node(scope, (await openBucket(scope, link.url)).kv, "node-1");
      await waitFor(() => a.lease.isLeader(), { intervalMs: 10, what: "node-1 leads" });
      const b = await node(scope, (await openBucket(scope, s.url)).kv, "node-2");
      const epochA = a.lease.epoch;

      const cut = performance.now();
      link.cut();
      await waitFor(() => b.lease.isLeader(), {
        timeoutMs: TTL + 2 * RENEW + 1_000,
        intervalMs: 10,
        what: "node-2 leads",
      });
      const bActs = b.changes.find((c) => c.leader)!.at;
      const lost = a.changes.find((c) => !c.leader);
      assert.ok(lost, "node-1's listeners were told");
      assert.equal(lost.epoch, epochA);
      assert.ok(lost.at - cut <= TTL / 2 + 200, `stepped down ${lost.at - cut} ms after the cut`);
      assert.ok(
        bActs - lost.at >= TTL / 2,
        `node-2 acted ${bActs - lost.at} ms after node-1 stopped`,
      );
      assert.ok(!a.lease.isLeader());
      assert.ok(b.lease.epoch > epochA);
      assert.ok(b.lease.isStale(epochA));
    });
  },
});

Deno.test({
  name: "release() hands the lease over: another node leads within a second (default poll)",
  ignore: !!NO_NATS,
  async fn() {
    await withScope(async (scope) => {
      const s = await server(scope);
      const nodes: Node[] = [];
      for (const name of ["node-1", "node-2", "node-3"]) {
        nodes.push(
          await node(scope, (await openBucket(scope, s.url)).kv, name, { pollMs: undefined }),
        );
      }
      let epoch = 0;
      for (let round = 0; round < 2; round++) {
        const [leader] = await waitFor(() => leaders(nodes).length ? leaders(nodes) : undefined, {
          timeoutMs: TTL + 3 * RENEW,
          intervalMs: 10,
          what: "a leader",
        });
        assert.ok(leader.lease.epoch > epoch, "each term's epoch is higher");
        epoch = leader.lease.epoch;
        const rest = nodes.filter((n) => n !== leader);
        const released = performance.now();
        assert.equal(await leader.lease.release(), true);
        assert.equal(leader.changes.at(-1)?.leader, false, "it stopped before releasing");
        assert.ok(leader.changes.at(-1)!.at <= performance.now());
        assert.ok(!leader.lease.isLeader());
        const [next] = await waitFor(() => leaders(rest).length ? leaders(rest) : undefined, {
          timeoutMs: 1_500,
          intervalMs: 10,
          what: "a leader after release",
        });
        const took = next.changes.at(-1)!.at - released;
        assert.ok(took <= 1_000, `handed over in ${took} ms`);
        assert.equal(leaders(nodes).length, 1);
        assert.ok(next.lease.epoch > epoch);
        nodes.splice(nodes.indexOf(leader), 1);
      }
      assert.equal(leaders(nodes).length, 1);
    });
  },
});

Deno.test({
  name: "start() refuses a bucket without max age, or a renew interval over a third of the TTL",
  ignore: !!NO_NATS,
  async fn() {
    await withScope(async (scope) => {
      const s = await server(scope);
      const nc = await connect({ servers: s.url });
      scope.defer(() => nc.close());
      const kvm = new Kvm(nc);
      const forever = await kvm.create("forever", { history: 1 });
      await assert.rejects(
        new LeaderLease(forever, { node: "n", address: "a" }).start(),
        /no max age/,
      );
      const short = await kvm.create("short", { ttl: 6_000, history: 1 });
      await assert.rejects(
        new LeaderLease(short, { node: "n", address: "a" }).start(),
        /renew interval 5000 ms is over a third of the TTL 6000 ms/,
      );
      await assert.rejects(
        new LeaderLease(short, { node: "n", address: "a", ttlMs: 15_000 }).start(),
        /does not match the bucket's max age 6000 ms/,
      );
    });
  },
});

Deno.test({
  name: "30 concurrent acquisitions on a 3-server NATS 2.10 cluster give one leader, also on " +
    "each hand-over",
  ignore: !!NO_NATS,
  async fn() {
    const servers = await startNatsCluster();
    if (!servers) {
      console.log("SKIP 3-server lease test: no nats-server 2.10 (run tools/nats_2_10.sh)");
      return;
    }
    await withScope(async (scope) => {
      scope.defer(() => Promise.all(servers.map((s) => s.stop())));
      // Create the replicated bucket once, then 30 nodes, 10 per server, start at once.
      // The servers elect a JetStream meta leader first: retry until the bucket is made.
      const first = await connect({ servers: servers[0].url });
      scope.defer(() => first.close());
      await waitFor(
        () => new Kvm(first).create(BUCKET, { ttl: TTL, history: 1, replicas: 3 }),
        { timeoutMs: 15_000, intervalMs: 200, what: "the replicated bucket" },
      );
      const handles = await Promise.all(
        Array.from({ length: 30 }, (_, i) => openBucket(scope, servers[i % 3].url, { open: true })),
      );
      const nodes = await Promise.all(
        handles.map(({ kv }, i) => node(scope, kv, `node-${i + 1}`)),
      );
      const all = [...nodes];
      const gains = () => all.reduce((n, x) => n + x.changes.filter((c) => c.leader).length, 0);
      for (let round = 0; round < 3; round++) {
        const [leader] = await waitFor(() => leaders(nodes).length ? leaders(nodes) : undefined, {
          timeoutMs: 5_000,
          intervalMs: 10,
          what: `a leader in round ${round}`,
        });
        for (let i = 0; i < 2 * RENEW / 50; i++) {
          assert.equal(leaders(nodes).length, 1);
          await new Promise((r) => setTimeout(r, 50));
        }
        assert.equal(gains(), round + 1, "exactly one node gained the lease each time");
        await leader.lease.release();
        nodes.splice(nodes.indexOf(leader), 1);
      }
    });
  },
});
