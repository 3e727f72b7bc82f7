/**
 * Cluster figures, all against one local nats-server and agents on 127.0.0.1/.2/.3 (each its own
 * PRISN_HOME), measured in one run:
 *
 * - runs per second through the work queue (`true` jobs, submitted through the API of every node
 *   in turn), with 3 nodes, 1 node, and a single node without NATS as the peer; dispatch latency
 *   (submitted → started) p50/p99;
 * - leader failover time over BENCH_KILLS kill -9s of the leader (until another node acts);
 * - rescheduling time after kill -9 of a node running a replica (until 3 are ready elsewhere).
 *
 * Env: BENCH_RUNS (default 200), BENCH_KILLS (default 10), BENCH_RESCHEDULES (default 3).
 * Prints figures; never fails on a time.
 */
import { join } from "node:path";
import { AgentClient } from "../runtime/client.ts";
import { killGroup } from "../runtime/process.ts";
import type { RunRecord } from "../core/types.ts";
import type { StatusView } from "../runtime/api_types.ts";
import {
  agentPid,
  BenchHome,
  envInt,
  freePort,
  machineLine,
  ms,
  printTable,
  pythonHttpServer,
  runBench,
  sleep,
  stats,
  STATS_HEADERS,
  statsRow,
  terminate,
  writeProject,
} from "./_util.ts";

const RUNS = envInt("BENCH_RUNS", 200);
const KILLS = envInt("BENCH_KILLS", 10);
const RESCHEDULES = envInt("BENCH_RESCHEDULES", 3);
const CONCURRENCY = 16;

interface Nats {
  url: string;
  stop(): Promise<void>;
}

async function startNats(dir: string): Promise<Nats> {
  const port = freePort();
  const child = new Deno.Command("nats-server", {
    args: ["-js", "-a", "127.0.0.1", "-p", String(port), "-sd", join(dir, "js")],
    stdout: "null",
    stderr: "null",
  }).spawn();
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    try {
      (await Deno.connect({ hostname: "127.0.0.1", port })).close();
      break;
    } catch {
      await sleep(50);
    }
  }
  return {
    url: `nats://127.0.0.1:${port}`,
    async stop() {
      try {
        child.kill("SIGTERM");
      } catch { /* gone */ }
      await child.status;
    },
  };
}

/** A node: a home whose CLI starts its agent in the cluster (or alone, without `nats`). */
function node(i: number, nats: Nats | undefined, cluster: string): BenchHome {
  const h = new BenchHome(`prisn-cluster-bench-${i}-`);
  if (nats) {
    Object.assign(h.env, {
      PRISN_NATS: nats.url,
      PRISN_NODE: `node-${i}`,
      PRISN_ADDRESS: `127.0.0.${i}`,
      PRISN_CLUSTER: cluster,
    });
  }
  return h;
}

async function client(h: BenchHome): Promise<AgentClient> {
  const c = await AgentClient.existing(h.paths);
  if (!c) throw new Error(`no agent for ${h.home}`);
  return c;
}

async function waitFor<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 60_000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const v = await fn().catch(() => undefined);
    if (v) return v;
    await sleep(100);
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** Every node sees `n` nodes, all healthy, and a leader. */
async function clusterReady(nodes: BenchHome[]): Promise<void> {
  for (const h of nodes) {
    await waitFor(`${h.env.PRISN_NODE} seeing ${nodes.length} nodes`, async () => {
      const s: StatusView = await (await client(h)).status();
      return s.cluster?.nodes === nodes.length && s.cluster.notReady.length === 0 &&
        s.cluster.leader;
    });
  }
}

/** Submits RUNS runs of a `true` job through the nodes in turn; runs/s and dispatch latency. */
async function throughput(nodes: BenchHome[], label: string): Promise<string[]> {
  const job = writeProject(join(nodes[0].dir, "truejob"), {
    "main.sh": "true\n",
    "prisn.toml": `history = { successful = ${RUNS * 2} }\n`,
  });
  await nodes[0].ok("deploy", job, "--name", "truejob");
  const clients = await Promise.all(nodes.map(client));
  // The deploy's own run, then the measured ones.
  await waitFor("the deploy's run", async () => {
    const runs = await clients[0].runs({ deployment: "truejob", limit: 5 });
    return runs.length >= 1 && runs.every((r) => r.status === "completed");
  });
  const submitted = new Map<string, number>();
  const wallStart = Date.now();
  let next = 0;
  await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
    while (next < RUNS) {
      const i = next++;
      const at = Date.now();
      const { id } = await clients[i % clients.length].startRun("truejob");
      submitted.set(id, at);
    }
  }));
  const runs = await waitFor("every run completed", async () => {
    const all: RunRecord[] = await clients[0].runs({ deployment: "truejob", limit: RUNS + 10 });
    const mine = all.filter((r) => submitted.has(r.id));
    return mine.length === RUNS && mine.every((r) => r.status === "completed") ? mine : undefined;
  }, 120_000);
  const lastFinished = Math.max(...runs.map((r) => r.finishedAt ?? 0));
  const seconds = (lastFinished - wallStart) / 1000;
  const latency = runs.map((r) => (r.startedAt ?? 0) - submitted.get(r.id)!);
  const s = stats(latency);
  const byNode = new Map<string, number>();
  for (const r of runs) byNode.set(r.node, (byNode.get(r.node) ?? 0) + 1);
  return [
    label,
    String(RUNS),
    (RUNS / seconds).toFixed(1),
    ms(s.p50),
    ms(percentileOf(latency, 99)),
    [...byNode].map(([n, k]) => `${n}:${k}`).sort().join(" "),
  ];
}

function percentileOf(samples: number[], p: number): number {
  const sorted = [...samples].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

/** kill -9 of the leader, KILLS times: ms until another node acts as leader. */
async function failovers(nodes: BenchHome[]): Promise<number[]> {
  const took: number[] = [];
  for (let k = 0; k < KILLS; k++) {
    const leader = await waitFor("a leader", async () => {
      return (await (await client(nodes[0])).status()).cluster?.leader;
    });
    const victim = nodes.find((h) => h.env.PRISN_NODE === leader)!;
    const other = nodes.find((h) => h !== victim)!;
    const otherClient = await client(other);
    Deno.kill(agentPid(victim.paths)!, "SIGKILL");
    const t0 = performance.now();
    await waitFor("a new leader", async () => {
      const l = (await otherClient.status()).cluster?.leader;
      return l && l !== leader;
    });
    took.push(performance.now() - t0);
    console.log(`  kill ${k + 1}: ${leader} → new leader after ${ms(took[k])} ms`);
    await victim.ok("ls"); // starts it again
    await clusterReady(nodes);
  }
  return took;
}

/** kill -9 of a non-leader node with a replica: ms until 3 replicas are ready elsewhere. */
async function reschedules(nodes: BenchHome[]): Promise<number[]> {
  const port = freePort();
  const svc = writeProject(join(nodes[0].dir, "websvc"), {
    // Listening on HOST (its node's address), so other nodes' ports reach it too.
    "main.py": pythonHttpServer('"ok"'),
  });
  await nodes[0].ok("deploy", svc, "--name", "websvc", "--replicas", "3", "--port", String(port));
  const took: number[] = [];
  const items = async (h: BenchHome) =>
    (await (await client(h)).deployment("websvc")).replicaStatus;
  for (let k = 0; k < RESCHEDULES; k++) {
    if (k > 0) { // spread again over the 3 nodes (a restarted node gets none back by itself)
      await nodes[0].ok("scale", "websvc", "0");
      await nodes[0].ok("scale", "websvc", "3");
    }
    // Spread one per node, as every node sees it, before the kill.
    for (const h of nodes) {
      await waitFor("3 ready replicas, one per node", async () => {
        const all = await items(h);
        return all.length === 3 && all.every((r) => r.ready) &&
          new Set(all.map((r) => r.node)).size === 3;
      }).catch(async (e) => {
        const all = await items(h).catch(() => []);
        console.log(
          `  ${h.env.PRISN_NODE} sees: ${
            all.map((r) => `${r.name}@${r.node}:${r.state}`).join(", ")
          }`,
        );
        throw e;
      });
    }
    // A node that runs a replica and does not lead (a restarted node gets none back: placement
    // keeps replicas where they run).
    const leader = (await (await client(nodes[0])).status()).cluster?.leader;
    const running = new Set((await items(nodes[0])).filter((r) => r.ready).map((r) => r.node));
    const victim = nodes.find((h) => h.env.PRISN_NODE !== leader && running.has(h.env.PRISN_NODE));
    if (!victim) {
      console.log(`  kill ${k + 1}: no replica off the leader to kill; skipped`);
      continue;
    }
    const survivor = nodes.find((h) => h !== victim)!;
    const victimName = victim.env.PRISN_NODE;
    const orphans = (await items(victim)).filter((r) => r.node === victimName && r.pid)
      .map((r) => r.pid!);
    Deno.kill(agentPid(victim.paths)!, "SIGKILL");
    for (const pid of orphans) {
      killGroup(pid, "SIGKILL"); // a dead machine's replicas die with it
    }
    const t0 = performance.now();
    await waitFor("3 ready replicas elsewhere", async () => {
      const all = await items(survivor);
      const ready = all.filter((r) => r.ready && r.node !== victimName);
      return ready.length === 3;
    }, 90_000);
    took.push(performance.now() - t0);
    console.log(`  kill ${k + 1}: ${victimName} → 3 ready elsewhere after ${ms(took.at(-1)!)} ms`);
    await victim.ok("ls");
    await clusterReady(nodes);
  }
  return took;
}

const started: BenchHome[] = [];
const servers: Nats[] = [];

await runBench("cluster_bench", async () => {
  console.log(machineLine());
  console.log(`runs: ${RUNS} \`true\` jobs, ${CONCURRENCY} submitting at once, through every node`);
  const scratch = await Deno.makeTempDir({ prefix: "prisn-cluster-bench-" });
  const rows: string[][] = [];
  // A single node without NATS: the peer.
  const alone = node(9, undefined, "");
  started.push(alone);
  await alone.ok("ls");
  rows.push(await throughput([alone], "1 node, no NATS"));
  await alone.close();
  // One node over NATS, then three.
  for (const count of [1, 3]) {
    const nats = await startNats(join(scratch, `nats-${count}`));
    servers.push(nats);
    const nodes = Array.from({ length: count }, (_, i) => node(i + 1, nats, `bench${count}`));
    started.push(...nodes);
    await Promise.all(nodes.map((h) => h.ok("ls")));
    await clusterReady(nodes);
    rows.push(await throughput(nodes, `${count} node${count > 1 ? "s" : ""}, NATS`));
    if (count === 3) {
      printTable(["case", "runs", "runs/s", "p50 ms", "p99 ms", "ran on"], rows);
      const [local, one, three] = rows.map((r) => Number(r[2]));
      console.log(
        `ratios: 3 nodes / 1 node ${(three / one).toFixed(2)}, 1 node NATS / no NATS ${
          (one / local).toFixed(2)
        }, 3 nodes / no NATS ${(three / local).toFixed(2)}`,
      );
      console.log(`\nleader failover, ${KILLS} × kill -9 of the leader (TTL 15 s, renew 5 s):`);
      const f = await failovers(nodes);
      printTable(STATS_HEADERS, [statsRow("failover", stats(f))]);
      console.log(`\nrescheduling, ${RESCHEDULES} × kill -9 of a node with a replica:`);
      const r = await reschedules(nodes);
      printTable(STATS_HEADERS, [statsRow("3 ready elsewhere", stats(r))]);
    }
    await Promise.all(nodes.map((h) => h.close()));
    await nats.stop();
  }
  await Deno.remove(scratch, { recursive: true }).catch(() => {});
}, async () => {
  await Promise.all(started.map((h) => h.close()));
  await Promise.all(servers.map((s) => s.stop()));
  // Replicas of killed agents (this one machine) that outlived them.
  for (const h of started) {
    const pid = agentPid(h.paths);
    if (pid) await terminate(pid);
  }
});
