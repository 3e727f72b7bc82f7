/**
 * ClusterDispatcher against a real nats-server: two or more "nodes" (each its own connection,
 * SQLite run history and dispatcher) sharing one work-queue stream. ack_wait is short (1 s) so
 * redelivery, keep-alive and max_deliver show within seconds.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { jetstream, jetstreamManager, RetentionPolicy } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { ClusterDispatcher, type ClusterDispatcherOptions } from "../../cluster/dispatch.ts";
import { Records } from "../../core/records.ts";
import type { RunTicket } from "../../core/types.ts";
import { isPrisnError, waitFor } from "../_helpers.ts";
import { type NatsServer, NO_NATS, startNats } from "./_nats.ts";

const STREAM = "PRISN_TEST_RUNS";
/** As cluster/names.ts lays it out: one subject per deployment under the stream's wildcard. */
const SUBJECTS = "prisn-test.work.>";

if (NO_NATS) console.log(`skipping tests/cluster/dispatch_test.ts: ${NO_NATS}`);

type NodeOptions = Partial<Omit<ClusterDispatcherOptions, "records" | "node">>;

interface TestNode {
  name: string;
  nc: NatsConnection;
  records: Records;
  dispatcher: ClusterDispatcher;
  /** Ticket ids this node reported lost. */
  lost: string[];
  /** The same, as onTicketLost listeners heard them. */
  told: string[];
  /** What its consumer recovered from (a pull cut by a restart…). */
  errors: Error[];
}

/** A nats-server, the work-queue stream, and nodes on it; everything goes in `close()`. */
class Cluster {
  readonly nodes: TestNode[] = [];
  #stops: (() => void)[] = [];
  /** The test's own connection, for looking at the stream. */
  admin?: NatsConnection;

  constructor(readonly server: NatsServer, readonly dir: string) {}

  static async start(): Promise<Cluster> {
    const server = await startNats();
    const dir = await Deno.makeTempDir({ prefix: "prisn-cluster-dispatch-" });
    const cluster = new Cluster(server, dir);
    try {
      cluster.admin = await connect({ servers: server.url, maxReconnectAttempts: -1 });
      const jsm = await jetstreamManager(cluster.admin);
      await jsm.streams.add({
        name: STREAM,
        subjects: [SUBJECTS],
        retention: RetentionPolicy.Workqueue,
        duplicate_window: 120 * 1e9,
      });
    } catch (e) {
      await cluster.close();
      throw e;
    }
    return cluster;
  }

  async node(name: string, options: NodeOptions = {}): Promise<TestNode> {
    const nc = await connect({
      servers: this.server.url,
      name,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 100,
    });
    const js = jetstream(nc);
    const jsm = await jetstreamManager(nc);
    const records = new Records(join(this.dir, `${name}.db`));
    const lost: string[] = [];
    const errors: Error[] = [];
    const dispatcher = new ClusterDispatcher({ nc, js, jsm }, {
      stream: STREAM,
      subject: SUBJECTS,
      publishSubject: (t) => `prisn-test.work.${t.deployment}`,
      records,
      node: name,
      isLeader: () => name === "a",
      replicasHere: (_d, desired) => (name === "a" ? desired : 0),
      ackWaitMs: 1_000,
      retryDelayMs: 100,
      pullExpiresMs: 1_000,
      onLost: (id) => lost.push(id),
      onError: (e) => errors.push(e),
      ...options,
    });
    // What the agent listens to (runs/supervisor.ts): the same ticket ids, to every listener.
    const told: string[] = [];
    dispatcher.onTicketLost((id) => told.push(id));
    const node = { name, nc, records, dispatcher, lost, told, errors };
    this.nodes.push(node);
    return node;
  }

  /** consume() whose stop is also called by close(). */
  consume(node: TestNode, handler: (t: RunTicket) => Promise<void>): () => void {
    const stop = node.dispatcher.consume(handler);
    this.#stops.push(stop);
    return stop;
  }

  /** Messages still in the stream. */
  async messages(): Promise<number> {
    const jsm = await jetstreamManager(this.admin!);
    return (await jsm.streams.info(STREAM)).state.messages;
  }

  async close(): Promise<void> {
    for (const stop of this.#stops) stop();
    for (const n of this.nodes) {
      await n.nc.close().catch(() => {});
      n.records.close();
    }
    await this.admin?.close().catch(() => {});
    await this.server.stop();
    await Deno.remove(this.dir, { recursive: true }).catch(() => {});
  }
}

function natsTest(name: string, fn: (cluster: Cluster) => Promise<void>): void {
  Deno.test({
    name,
    ignore: NO_NATS !== undefined,
    async fn() {
      const cluster = await Cluster.start();
      try {
        await fn(cluster);
      } finally {
        await cluster.close();
      }
    },
  });
}

const ticket = (id: string, extra: Partial<RunTicket> = {}): RunTicket => ({
  id,
  deployment: "nightly",
  version: "v-1",
  trigger: "manual",
  attempt: 1,
  ...extra,
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A handler like the supervisor's: the run leaves "pending" once started. */
function starts(node: TestNode, got: { node: string; id: string; at: number }[], delayMs = 0) {
  return async (t: RunTicket) => {
    got.push({ node: node.name, id: t.id, at: Date.now() });
    if (delayMs) await sleep(delayMs);
    node.records.updateRun(t.id, { status: "running", startedAt: Date.now() });
  };
}

/** Resolves never: a handler on a node that dies while it runs. */
const hangs = () => new Promise<void>(() => {});

natsTest(
  "ClusterDispatcher: 20 tickets over two nodes are each handled exactly once",
  async (c) => {
    const a = await c.node("a");
    const b = await c.node("b");
    const got: { node: string; id: string; at: number }[] = [];
    c.consume(a, starts(a, got));
    c.consume(b, starts(b, got));
    const ids = Array.from({ length: 20 }, (_, i) => `run-${String(i).padStart(2, "0")}`);
    for (const [i, id] of ids.entries()) {
      assert.equal(await (i % 2 ? b : a).dispatcher.submit(ticket(id)), true);
    }
    await waitFor(() => got.length >= 20, { what: "20 deliveries" });
    await sleep(1_500); // past ack_wait: nothing comes again
    assert.deepEqual(got.map((g) => g.id).sort(), ids);
    for (const g of got) {
      const node = g.node === "a" ? a : b;
      assert.equal(node.records.getRun(g.id)?.status, "running");
      assert.equal(node.records.getRun(g.id)?.node, g.node);
    }
    await waitFor(async () => (await c.messages()) === 0, { what: "an empty work queue" });
    assert.deepEqual([...a.lost, ...b.lost], []);
  },
);

natsTest(
  "ClusterDispatcher: a node that starts draining while its pull is open hands what comes to the others",
  async (c) => {
    let accepting = true;
    // A long pull, as in the agent (5 s): it is still open on the server when the drain begins.
    const a = await c.node("a", { accepting: () => accepting, pullExpiresMs: 4_000 });
    const b = await c.node("b");
    const got: { node: string; id: string; at: number }[] = [];
    c.consume(a, starts(a, got));
    c.consume(b, starts(b, got));
    // Both pulls are open once a first ticket went through each node.
    for (let i = 0; got.length < 2 || new Set(got.map((g) => g.node)).size < 2; i++) {
      assert.ok(i < 40, "both nodes take tickets before the drain");
      await a.dispatcher.submit(ticket(`run-warm-${i}`));
      await sleep(50);
    }
    accepting = false;
    const before = got.length;
    const ids = Array.from({ length: 8 }, (_, i) => `run-drained-${i}`);
    for (const id of ids) assert.equal(await a.dispatcher.submit(ticket(id)), true);
    await waitFor(() => got.length >= before + ids.length, {
      what: "the tickets submitted during the drain taken",
      timeoutMs: 15_000,
    });
    const drained = got.slice(before);
    assert.deepEqual(drained.map((g) => g.id).sort(), ids);
    assert.deepEqual(drained.filter((g) => g.node === "a").map((g) => g.id), []);
    for (const id of ids) assert.equal(b.records.getRun(id)?.node, "b");
  },
);

natsTest("ClusterDispatcher: the same ticket id submitted twice is one delivery", async (c) => {
  const a = await c.node("a");
  const b = await c.node("b");
  assert.equal(await a.dispatcher.submit(ticket("run-once")), true);
  assert.equal(a.records.getRun("run-once")?.status, "pending");
  assert.equal(await a.dispatcher.submit(ticket("run-once")), false, "known on this node");
  // An old and a new leader publishing the same tick: the stream's duplicate window says no.
  assert.equal(await b.dispatcher.submit(ticket("run-once")), false, "a duplicate publish");
  assert.equal(b.records.getRun("run-once"), undefined);
  // Leadership and placement are the functions given.
  assert.deepEqual([a.dispatcher.isLeader(), b.dispatcher.isLeader()], [true, false]);
  const here = (n: TestNode) => n.dispatcher.replicasHere("api", 3);
  assert.deepEqual([here(a), here(b)], [3, 0]);
  const got: { node: string; id: string; at: number }[] = [];
  c.consume(a, starts(a, got));
  c.consume(b, starts(b, got));
  await waitFor(() => got.length === 1, { what: "the delivery" });
  await sleep(1_500);
  assert.deepEqual(got.map((g) => g.id), ["run-once"]);
});

natsTest("ClusterDispatcher: submit publishes only once `after` settled", async (c) => {
  const a = await c.node("a");
  let advance!: () => void;
  const advanced = new Promise<void>((r) => advance = r);
  const submitted = a.dispatcher.submit(ticket("run-tick"), { after: advanced });
  await sleep(200);
  assert.equal(await c.messages(), 0, "nothing goes out before the tick is advanced");
  assert.equal(a.records.getRun("run-tick"), undefined);
  advance();
  assert.equal(await submitted, true);
  assert.equal(await c.messages(), 1);
  const refused = Promise.reject(new Error("the tick was advanced by another leader"));
  assert.equal(await a.dispatcher.submit(ticket("run-other"), { after: refused }), false);
  assert.equal(await c.messages(), 1);
  assert.equal(a.records.getRun("run-other"), undefined);
});

natsTest(
  "ClusterDispatcher: a handler slower than ack_wait keeps its message with working()",
  async (c) => {
    const a = await c.node("a");
    const b = await c.node("b");
    const got: { node: string; id: string; at: number }[] = [];
    const stopA = c.consume(a, starts(a, got, 3_500));
    await a.dispatcher.submit(ticket("run-slow"));
    await waitFor(() => got.length === 1, { what: "node a taking the ticket" });
    stopA(); // no more pulls from a: a redelivery could only go to b
    c.consume(b, starts(b, got));
    await waitFor(() => a.records.getRun("run-slow")?.status === "running", {
      what: "the slow start",
      timeoutMs: 5_000,
    });
    await waitFor(async () => (await c.messages()) === 0, { what: "the ack" });
    await sleep(1_200);
    assert.deepEqual(got.map((g) => g.node), ["a"], "delivered once in 3.5 s with a 1 s ack_wait");
    assert.deepEqual([...a.lost, ...b.lost], []);
  },
);

natsTest(
  "ClusterDispatcher: a node that dies holding a ticket loses it to the other after ack_wait",
  async (c) => {
    const a = await c.node("a");
    const b = await c.node("b");
    const onA: string[] = [];
    const stopA = c.consume(a, (t) => (onA.push(t.id), hangs()));
    await a.dispatcher.submit(ticket("run-orphan"));
    await waitFor(() => onA.length === 1, { what: "node a taking the ticket" });
    const got: { node: string; id: string; at: number }[] = [];
    c.consume(b, starts(b, got));
    await sleep(1_500);
    assert.equal(got.length, 0, "node a's working() keeps the message while it lives");

    stopA(); // stops pulling; the hanging handler keeps its message …
    await sleep(1_200);
    assert.equal(got.length, 0, "… while the connection lives");
    const died = Date.now();
    await a.nc.close(); // … until the node dies
    await waitFor(() => got.length === 1, { what: "the redelivery to node b", timeoutMs: 5_000 });
    assert.equal(got[0].id, "run-orphan");
    assert.ok(got[0].at - died >= 300, `redelivered ${got[0].at - died} ms after the death`);
    assert.equal(b.records.getRun("run-orphan")?.status, "running");
    // The dead node (had it survived its connection) reports the run lost so it kills it.
    await waitFor(() => a.lost.length === 1, { what: "node a reporting the ticket lost" });
    assert.deepEqual(a.lost, ["run-orphan"]);
    assert.deepEqual(a.told, ["run-orphan"]);
    assert.deepEqual(b.lost, []);
  },
);

natsTest(
  "ClusterDispatcher: past max_deliver the message is terminated and the run recorded failed",
  async (c) => {
    const a = await c.node("a", { maxDeliver: 3 });
    const tries: number[] = [];
    c.consume(a, () => {
      tries.push(Date.now());
      return Promise.reject(new Error("boom"));
    });
    await a.dispatcher.submit(ticket("run-bad"));
    await waitFor(() => a.records.getRun("run-bad")?.status === "failed", { what: "the failure" });
    const run = a.records.getRun("run-bad")!;
    assert.equal(run.reason, "failed on all 3 deliveries: boom");
    assert.ok(run.finishedAt);
    assert.match(a.records.listEvents("nightly")[0].message, /run-bad failed: failed on all 3/);
    await waitFor(async () => (await c.messages()) === 0, { what: "the terminated message gone" });
    await sleep(1_200);
    assert.equal(tries.length, 3);
  },
);

natsTest(
  "ClusterDispatcher: a last delivery whose node died is removed and recorded failed",
  async (c) => {
    const options = { maxDeliver: 1 };
    const a = await c.node("a", options);
    const b = await c.node("b", options);
    const onA: string[] = [];
    c.consume(a, (t) => (onA.push(t.id), hangs()));
    await a.dispatcher.submit(ticket("run-heard"));
    await waitFor(() => onA.length === 1, { what: "node a taking the ticket" });
    const got: { node: string; id: string; at: number }[] = [];
    const stopB = c.consume(b, starts(b, got));
    await a.nc.close(); // dies on the only delivery: the server announces MAX_DELIVERIES to b
    await waitFor(() => b.records.getRun("run-heard")?.status === "failed", {
      what: "node b recording the run failed",
    });
    assert.equal(b.records.getRun("run-heard")?.reason, "not acknowledged after 1 delivery");
    await waitFor(async () => (await c.messages()) === 0, { what: "the message gone" });
    assert.equal(got.length, 0);
    stopB();

    // Nobody listens when the next one expires: the next consumer sweeps it at start.
    const d = await c.node("d", options);
    const onD: string[] = [];
    c.consume(d, (t) => (onD.push(t.id), hangs()));
    await d.dispatcher.submit(ticket("run-unheard"));
    await waitFor(() => onD.length === 1, { what: "node d taking the ticket" });
    await d.nc.close();
    await sleep(1_500); // its ack_wait passes with no node listening
    assert.equal(await c.messages(), 1, "past max_deliver, the message stays");
    const e = await c.node("e", options);
    c.consume(e, starts(e, got));
    await waitFor(() => e.records.getRun("run-unheard")?.status === "failed", {
      what: "node e sweeping it",
    });
    assert.equal(e.records.getRun("run-unheard")?.reason, "not acknowledged after 1 delivery");
    assert.equal(await c.messages(), 0);
    assert.equal(got.length, 0);
  },
);

natsTest(
  "ClusterDispatcher: notBefore holds a ticket until due, here or on the server",
  async (c) => {
    const a = await c.node("a", { holdMs: 1_000 });
    const b = await c.node("b", { holdMs: 1_000 });
    const got: { node: string; id: string; at: number }[] = [];
    const deliveries: Record<string, number> = {};
    const count = (handler: (t: RunTicket) => Promise<void>) => (t: RunTicket) => {
      deliveries[t.id] = (deliveries[t.id] ?? 0) + 1;
      return handler(t);
    };
    const stopA = c.consume(a, count(starts(a, got)));
    const now = Date.now();
    const near = ticket("run-near", { deployment: "near", notBefore: now + 900 });
    const far = ticket("run-far", { deployment: "far", notBefore: now + 2_500 });
    const handed = ticket("run-handed", { deployment: "near", notBefore: now + 1_800 });
    assert.equal(await a.dispatcher.submit(near), true);
    assert.equal(await a.dispatcher.submit(far), true);
    await waitFor(() => a.dispatcher.waiting("near") === 1, { what: "node a holding run-near" });
    assert.equal(a.dispatcher.waiting("far"), 0, "due later than holdMs: back on the server");
    await waitFor(() => got.length === 1, { what: "run-near", timeoutMs: 3_000 });
    assert.equal(got[0].id, "run-near");
    assert.ok(got[0].at >= near.notBefore!, `${got[0].at - near.notBefore!} ms early`);
    assert.equal(a.dispatcher.waiting("near"), 0);

    // A node that stops hands what it holds back: another node runs it when due.
    assert.equal(await a.dispatcher.submit(handed), true);
    await waitFor(() => a.dispatcher.waiting("near") === 1, { what: "node a holding run-handed" });
    stopA();
    assert.equal(a.dispatcher.waiting("near"), 0);
    c.consume(b, count(starts(b, got)));
    await waitFor(() => got.length === 3, { what: "run-handed and run-far", timeoutMs: 5_000 });
    for (const t of [handed, far]) {
      const g = got.find((g) => g.id === t.id)!;
      assert.equal(g.node, "b");
      assert.ok(g.at >= t.notBefore!, `${t.id} ${t.notBefore! - g.at} ms early`);
      assert.ok(g.at - t.notBefore! < 1_500, `${t.id} ${g.at - t.notBefore!} ms late`);
    }
    assert.deepEqual(deliveries, { "run-near": 1, "run-handed": 1, "run-far": 1 });
  },
);

natsTest(
  "ClusterDispatcher: consumers resume after a nats-server restart and lose nothing",
  async (c) => {
    const options = { ackWaitMs: 3_000 };
    const a = await c.node("a", options);
    const b = await c.node("b", options);
    const got: { node: string; id: string; at: number }[] = [];
    c.consume(a, starts(a, got, 300));
    c.consume(b, starts(b, got, 300));
    const ids = Array.from({ length: 20 }, (_, i) => `run-r${String(i).padStart(2, "0")}`);
    for (const id of ids.slice(0, 10)) await a.dispatcher.submit(ticket(id));
    await waitFor(() => got.length >= 2, { what: "the first deliveries" });
    const submitter = await c.node("s", { publishTimeoutMs: 300 });
    await c.server.kill(); // handlers are under way, tickets still queued
    // Unanswered, a submit gives up and records nothing (its publish may still land later).
    await assert.rejects(
      submitter.dispatcher.submit(ticket("run-down")),
      isPrisnError("UNAVAILABLE", /^could not queue run run-down: the NATS work queue did not/),
    );
    assert.equal(submitter.records.getRun("run-down"), undefined);
    await sleep(200);
    await c.server.start();
    for (const [i, id] of ids.slice(10).entries()) {
      assert.equal(await (i % 2 ? b : a).dispatcher.submit(ticket(id)), true);
    }
    // Again, as a caller would, until NATS answers: queued at most once either way.
    await waitFor(async () => (await submitter.dispatcher.submit(ticket("run-down")), true), {
      what: "the submitter reaching NATS again",
    });
    ids.push("run-down");
    await waitFor(() => new Set(got.map((g) => g.id)).size === 21, {
      what: "all 21 tickets handled",
      timeoutMs: 20_000,
    });
    await sleep(1_000);
    assert.deepEqual([...new Set(got.map((g) => g.id))].sort(), ids.sort());
    assert.equal(got.length, 21, `handled twice: ${got.map((g) => g.id).sort()}`);
    await waitFor(async () => (await c.messages()) === 0, { what: "an empty work queue" });
    assert.deepEqual([...a.lost, ...b.lost], []);
  },
);

natsTest(
  "ClusterDispatcher: a cron tick carries the leader's epoch; a node that has seen a higher one refuses it",
  async (c) => {
    // a fired the tick under epoch 5; b has seen epoch 7 since (a was replaced).
    const a = await c.node("a", { epoch: () => 5 });
    const b = await c.node("b", { isStale: (e) => e < 7 });
    const got: { node: string; id: string; at: number }[] = [];
    c.consume(b, starts(b, got));
    const stale = ticket("run-stale", { trigger: "schedule", scheduledAt: Date.now() });
    assert.equal(await a.dispatcher.submit(stale), true);
    // A manual run has no epoch: it is never refused for one.
    assert.equal(await a.dispatcher.submit(ticket("run-manual")), true);
    await waitFor(() => got.some((g) => g.id === "run-manual"), { what: "the manual run" });
    await waitFor(() => b.records.getRun("run-stale")?.status === "failed", {
      what: "the stale tick recorded failed on b",
    });
    assert.deepEqual(got.map((g) => g.id), ["run-manual"], "the stale tick never ran");
    assert.equal(
      b.records.getRun("run-stale")?.reason,
      "refused: fired by a replaced leader (epoch 5)",
    );
    await waitFor(async () => (await c.messages()) === 0, { what: "the queue empty" });
  },
);
