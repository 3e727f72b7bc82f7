/**
 * Rolling deploy and rollback of a 3-replica service: time from spawning `prisn deploy` (or
 * `prisn rollback`) until
 *   - every replica runs the new version: the agent API (what `prisn get NAME -o json` shows as
 *     replicas.items) lists exactly 3 replicas, all of that version, all ready, none terminating
 *     (polled every 5 ms from the moment the CLI is spawned);
 *   - the CLI returned (it waits for the rollout to finish).
 * For a Python `http.server` service and a Node `http` service. Each iteration changes the code
 * (a new version), deploys it, then rolls back to the version before.
 *
 *   ./denow run -A bench/rollout_bench.ts            (ROLLOUT_BENCH_ITERATIONS=5 by default)
 *
 * Temporary PRISN_HOME, loopback only, the agent is stopped on the way out (also on Ctrl-C).
 * Prints figures; never fails on a time.
 */
import { join } from "node:path";
import type { DeployResult } from "../runtime/deploy.ts";
import type { ReplicaStatus } from "../runtime/service.ts";
import type { DeploymentDetail } from "../runtime/views.ts";
import { AgentClient } from "../runtime/client.ts";
import {
  BenchHome,
  cliFloor,
  envInt,
  freePort,
  machineLine,
  ms,
  printTable,
  pythonHttpServer,
  sleep,
  stats,
  STATS_HEADERS,
  statsRow,
} from "./_util.ts";

const ITERATIONS = envInt("ROLLOUT_BENCH_ITERATIONS", 5);
const REPLICAS = 3;
const POLL_MS = 5;
const WAIT_LIMIT_MS = 120_000;

interface App {
  label: string;
  entry: string;
  source: (stamp: string) => string;
}

const APPS: App[] = [
  {
    label: "python http.server",
    entry: "main.py",
    source: (stamp) => pythonHttpServer(JSON.stringify(stamp)),
  },
  {
    label: "node http",
    entry: "main.js",
    source: (stamp) =>
      `"use strict";
const http = require("node:http");
const STAMP = "${stamp}";
http.createServer((req, res) => {
  res.writeHead(200, { "content-type": "text/plain" });
  res.end(STAMP + "\\n");
}).listen(Number(process.env.PORT), "127.0.0.1");
`,
  },
];

/** Spawn → all replicas on the target version, and spawn → CLI exit. */
interface Timing {
  all: number;
  cli: number;
}

interface AppResult {
  label: string;
  first: Timing;
  deploys: Timing[];
  rollbacks: Timing[];
}

/** GET / on a new connection to a replica's own port; the body, or undefined. */
async function body(port: number): Promise<string | undefined> {
  try {
    const res = await fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(3_000) });
    const text = await res.text();
    return res.ok ? text.trim() : undefined;
  } catch {
    return undefined;
  }
}

class RolloutBench {
  constructor(readonly h: BenchHome, readonly client: AgentClient) {}

  async replicas(name: string): Promise<ReplicaStatus[]> {
    const d = await this.client.call<DeploymentDetail>(
      "GET",
      `/v1/deployments/${encodeURIComponent(name)}`,
    );
    return d.replicaStatus;
  }

  /**
   * Runs `prisn ARGS` and, from the same instant, polls the replicas every POLL_MS until exactly
   * REPLICAS of them are ready, none terminating, all on one version for which `wanted` holds.
   */
  async timeRollout(
    name: string,
    args: string[],
    wanted: (version: string) => boolean,
  ): Promise<Timing & { version: string; stdout: string }> {
    const t0 = performance.now();
    let stop = false;
    let reached: { ms: number; version: string } | undefined;
    const watcher = (async () => {
      while (!stop && performance.now() - t0 < WAIT_LIMIT_MS) {
        const items = await this.replicas(name).catch(() => []);
        const version = items[0]?.version;
        if (
          items.length === REPLICAS && version && wanted(version) &&
          items.every((r) => r.version === version && r.ready && r.state !== "Terminating")
        ) {
          reached = { ms: performance.now() - t0, version };
          return;
        }
        await sleep(POLL_MS);
      }
    })();
    try {
      const r = await this.h.cli(...args);
      if (r.code !== 0) {
        throw new Error(
          `prisn ${args.join(" ")} exited ${r.code}: ${(r.stderr || r.stdout).trim()}`,
        );
      }
      await watcher;
      if (!reached) throw new Error(`${name}: replicas never all reached the new version`);
      return { all: reached.ms, cli: r.ms, version: reached.version, stdout: r.stdout };
    } finally {
      stop = true;
      await watcher;
    }
  }

  /** Every replica's own port answers with `stamp` (checked after each rollout, not timed). */
  async check(name: string, stamp: string): Promise<void> {
    const items = await this.replicas(name);
    for (const r of items) {
      const got = r.port ? await body(r.port) : undefined;
      if (got !== stamp) {
        throw new Error(`${name}: replica ${r.name} answers ${JSON.stringify(got)}, not ${stamp}`);
      }
    }
  }

  async run(app: App, index: number): Promise<AppResult> {
    const name = `roll-${index}`;
    const dir = join(this.h.dir, "src", name);
    await Deno.mkdir(dir, { recursive: true });
    await Deno.writeTextFile(
      join(dir, "prisn.toml"),
      `name = "${name}"\nentrypoint = "${app.entry}"\nport = ${freePort()}\n` +
        `replicas = ${REPLICAS}\n`,
    );
    const write = (stamp: string) => Deno.writeTextFile(join(dir, app.entry), app.source(stamp));
    const deploy = async (stamp: string, current?: string) => {
      await write(stamp);
      const t = await this.timeRollout(
        name,
        ["deploy", dir, "-o", "json"],
        (v) => v !== current,
      );
      const result = JSON.parse(t.stdout) as DeployResult;
      if (result.version !== t.version) {
        throw new Error(`${name}: deployed ${result.version}, replicas reached ${t.version}`);
      }
      await this.check(name, stamp);
      return t;
    };

    let stamp = `${name}-v0`;
    const first = await deploy(stamp);
    let current = first.version;
    const deploys: Timing[] = [];
    const rollbacks: Timing[] = [];
    for (let i = 1; i <= ITERATIONS; i++) {
      const before = { version: current, stamp };
      stamp = `${name}-v${i}-${crypto.randomUUID().slice(0, 8)}`;
      const d = await deploy(stamp, current);
      deploys.push(d);
      const r = await this.timeRollout(name, ["rollback", name], (v) => v === before.version);
      await this.check(name, before.stamp);
      rollbacks.push(r);
      current = before.version;
      stamp = before.stamp;
    }
    return { label: app.label, first, deploys, rollbacks };
  }
}

async function main(): Promise<void> {
  console.log(
    `prisn rolling deploy / rollback, ${REPLICAS} replicas (${machineLine()}), ` +
      `${ITERATIONS} iterations per app`,
  );
  const floor = await cliFloor({ runs: 10 });
  await using h = new BenchHome("prisn-bench-rollout-");
  await h.ok("ls"); // starts the agent
  const client = new AgentClient(h.paths);
  const results: AppResult[] = [];
  try {
    const bench = new RolloutBench(h, client);
    for (const [i, app] of APPS.entries()) {
      results.push(await bench.run(app, i));
      console.log(`  ${app.label}: done`);
    }
  } finally {
    client.close();
  }

  const row = (label: string, samples: number[]) => {
    const s = stats(samples);
    return [label, String(s.n), ms(s.p50), ms(s.min), ms(s.max)];
  };
  console.log(
    `\nspawn of the CLI → all ${REPLICAS} replicas ready on the target version / CLI returned (ms)`,
  );
  printTable(
    ["app", "case", "n", "p50", "min", "max"],
    results.flatMap((r) => [
      [r.label, ...row("first deploy: all replicas", [r.first.all])],
      [r.label, ...row("deploy: all replicas on new", r.deploys.map((t) => t.all))],
      [r.label, ...row("deploy: CLI returned", r.deploys.map((t) => t.cli))],
      [r.label, ...row("rollback: all replicas on old", r.rollbacks.map((t) => t.all))],
      [r.label, ...row("rollback: CLI returned", r.rollbacks.map((t) => t.cli))],
    ]),
  );
  console.log("\nCLI start floor, for context (no agent involved)");
  printTable(STATS_HEADERS, [statsRow("prisn --version", floor)]);
  console.log(
    "\nA rollout starts one new replica, waits until it is ready (TCP connect to its PORT, " +
      "probed every 100 ms), puts it in rotation, drains and stops one old replica; three " +
      "times. Each deploy changes the code (a new version); each rollback returns to the one " +
      "before. After every rollout each replica's own port is checked to answer with the code " +
      "it should run.",
  );
}

if (import.meta.main) {
  try {
    await main();
  } catch (e) {
    console.error(`rollout_bench: ${(e as Error).stack ?? e}`);
    Deno.exit(1);
  }
}
