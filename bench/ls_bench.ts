/**
 * `prisn ls` latency with 200 deployments and 10,000 runs recorded, against a warm agent.
 *
 * Populating: 200 real deployments through the agent API (180 jobs, 15 cronjobs on a weekly
 * schedule, 5 python services with one replica each; each job runs once on deploy), then, with the
 * agent stopped, runs inserted through `Records` until 10,000 are recorded (spread over 7 days, 12%
 * failed; the projects keep 60 successful and 20 failed runs, so prisn could hold them all). The
 * agent is then started on that home, and `prisn ls`, `prisn status`, `prisn get jobs --limit 20`
 * and the bare CLI floor (`prisn --version`) are timed round-robin, RUNS times each (default 30).
 * The same API calls are also timed in-process, to show what the agent itself takes.
 *
 *   ./denow run -A bench/ls_bench.ts
 *
 * Prints figures; never fails on a time.
 */
import { join } from "node:path";
import { Records } from "../core/records.ts";
import type { RunRecord, RunStatus } from "../core/types.ts";
import { AgentClient } from "../runtime/client.ts";
import { newRunId } from "../runtime/run.ts";
import type { StatusView } from "../runtime/views.ts";
import {
  BenchHome,
  freePort,
  machineLine,
  ms,
  printTable,
  PRISN,
  pythonHttpServer,
  sleep,
  type Stats,
  stats,
  STATS_HEADERS,
  statsRow,
  timed,
} from "./_util.ts";

const RUNS = Number(Deno.env.get("BENCH_RUNS") ?? 30);
const DEPLOYMENTS = { job: 180, cronjob: 15, service: 5 };
const TOTAL_RUNS = 10_000;
const HISTORY_TOML = "[history]\nsuccessful = 60\nfailed = 20\n";

async function writeProjects(dir: string): Promise<{ job: string; service: string }> {
  const job = join(dir, "job");
  const service = join(dir, "service");
  await Deno.mkdir(job, { recursive: true });
  await Deno.mkdir(service, { recursive: true });
  await Deno.writeTextFile(join(job, "main.sh"), '#!/usr/bin/env bash\necho "report done"\n');
  await Deno.writeTextFile(join(job, "prisn.toml"), HISTORY_TOML);
  await Deno.writeTextFile(
    join(service, "main.py"),
    pythonHttpServer('"ok"'),
  );
  return { job, service };
}

/** Deploys through the agent API (what the CLI does, minus its start-up), `parallel` at a time. */
async function deployAll(client: AgentClient, dir: string): Promise<void> {
  const { job, service } = await writeProjects(dir);
  const requests: Array<{ source: string; flags: Record<string, string> }> = [];
  for (let i = 0; i < DEPLOYMENTS.job; i++) {
    requests.push({ source: job, flags: { name: `job-${pad(i)}` } });
  }
  for (let i = 0; i < DEPLOYMENTS.cronjob; i++) {
    requests.push({ source: job, flags: { name: `cron-${pad(i)}`, schedule: "0 3 * * 0" } });
  }
  for (let i = 0; i < DEPLOYMENTS.service; i++) {
    requests.push({ source: service, flags: { name: `svc-${pad(i)}`, port: String(freePort()) } });
  }
  const parallel = 4;
  let next = 0;
  await Promise.all(
    Array.from({ length: parallel }, async () => {
      while (next < requests.length) {
        const request = requests[next++];
        let error: unknown;
        await client.stream("POST", "/v1/deploy", request, (line) => {
          if (line.error) error = line.error;
        });
        if (error) throw new Error(`deploy ${request.flags.name}: ${JSON.stringify(error)}`);
      }
    }),
  );
}

function pad(i: number): string {
  return String(i).padStart(3, "0");
}

/** Adds finished runs (spread over the last 7 days) until `total` runs are recorded. */
function insertRuns(db: string, node: string, total: number): number {
  const records = new Records(db);
  try {
    const existing = Number(
      (records.db.prepare("SELECT COUNT(*) AS n FROM runs").get() as { n: number }).n,
    );
    const targets = records.listDeployments().filter((d) => d.type !== "service");
    const now = Date.now();
    const week = 7 * 86_400_000;
    let added = 0;
    records.transaction(() => {
      for (let i = 0; existing + added < total; i++) {
        const d = targets[i % targets.length];
        // ~2% in the last hour (what `status` counts), the rest over the week.
        const created = i % 50 === 0
          ? now - Math.floor(Math.random() * 3_600_000)
          : now - 3_600_000 - Math.floor(Math.random() * week);
        const status: RunStatus = i % 8 === 0 ? "failed" : "completed";
        const started = created + 5 + Math.floor(Math.random() * 40);
        const run: RunRecord = {
          id: newRunId(),
          deployment: d.name,
          version: d.version,
          status,
          trigger: d.type === "cronjob" ? "schedule" : i % 3 === 0 ? "deploy" : "manual",
          node,
          attempt: 1,
          scheduledAt: d.type === "cronjob" ? created : undefined,
          startedAt: started,
          finishedAt: started + 20 + Math.floor(Math.random() * 5_000),
          exitCode: status === "failed" ? 1 : 0,
          pid: 10_000 + (i % 50_000),
        };
        records.putRun(run, created);
        added++;
      }
    });
    return existing + added;
  } finally {
    records.close();
  }
}

async function main(): Promise<void> {
  console.log(
    `prisn ls/status/get jobs latency (${machineLine()}): ${
      DEPLOYMENTS.job + DEPLOYMENTS.cronjob + DEPLOYMENTS.service
    } deployments, ${TOTAL_RUNS} runs, ${RUNS} runs per command`,
  );
  await using h = new BenchHome("prisn-bench-ls-");

  const t0 = performance.now();
  await h.ok("ls"); // starts the agent
  let client = new AgentClient(h.paths);
  try {
    await deployAll(client, join(h.dir, "src"));
    // Let the deploy-triggered job runs finish before the agent goes down.
    for (let i = 0; i < 600; i++) {
      const s = await client.call<StatusView>("GET", "/v1/status");
      if (s.runs.lastHour.running + s.runs.lastHour.pending === 0) break;
      await sleep(100);
    }
  } finally {
    client.close();
  }
  const deployed = performance.now() - t0;
  await h.ok("agent", "stop");
  const t1 = performance.now();
  const recorded = insertRuns(h.paths.db, Deno.hostname(), TOTAL_RUNS);
  const inserted = performance.now() - t1;
  const t2 = performance.now();
  await h.ok("ls"); // the agent again, now reading the populated records
  const restarted = performance.now() - t2;
  console.log(
    `populated in ${ms(deployed)} ms (deploys) + ${ms(inserted)} ms (runs); ` +
      `${recorded} runs recorded; agent restart + first ls ${ms(restarted)} ms`,
  );

  client = new AgentClient(h.paths);
  try {
    // The restarted agent brings the services back in the background: measure once they are.
    let s = await client.call<StatusView>("GET", "/v1/status");
    const readyReplicas = () =>
      s.deployments.filter((d) => d.type === "service").reduce((n, d) => n + d.replicas.ready, 0);
    for (let i = 0; i < 300 && readyReplicas() < DEPLOYMENTS.service; i++) {
      await sleep(100);
      s = await client.call<StatusView>("GET", "/v1/status");
    }
    console.log(
      `agent sees ${s.deployments.length} deployments, ${readyReplicas()} service replica(s) ready`,
    );

    const commands: Array<[string, string[]]> = [
      ["prisn --version (floor)", ["--version"]],
      ["prisn ls", ["ls"]],
      ["prisn status", ["status"]],
      ["prisn get jobs --limit 20", ["get", "jobs", "--limit", "20"]],
    ];
    const api: Array<[string, string]> = [
      ["GET /v1/deployments", "/v1/deployments"],
      ["GET /v1/status", "/v1/status"],
      ["GET /v1/runs?limit=20", "/v1/runs?limit=20"],
    ];
    const cli: number[][] = commands.map(() => []);
    const inProcess: number[][] = api.map(() => []);
    for (let i = -3; i < RUNS; i++) { // 3 warm-up rounds, then round-robin
      for (const [k, [label, args]] of commands.entries()) {
        const r = await timed(PRISN, args, { env: h.env });
        if (r.code !== 0) throw new Error(`${label} exited ${r.code}: ${r.stderr.trim()}`);
        if (i >= 0) cli[k].push(r.ms);
      }
      for (const [k, [, path]] of api.entries()) {
        const start = performance.now();
        await client.call("GET", path);
        if (i >= 0) inProcess[k].push(performance.now() - start);
      }
    }

    const floor = stats(cli[0]);
    const ratio = (s: Stats) => `${(s.p50 / floor.p50).toFixed(2)}x`;
    console.log("\nCLI, spawn → exit, warm agent (ms)");
    printTable(
      [...STATS_HEADERS, "p50 / floor"],
      commands.map(([label], k) => {
        const s = stats(cli[k]);
        return [...statsRow(label, s), ratio(s)];
      }),
    );
    console.log("\nthe same answers asked in-process over prisn.sock (agent time + HTTP) (ms)");
    printTable(STATS_HEADERS, api.map(([label], k) => statsRow(label, stats(inProcess[k]))));
  } finally {
    client.close();
  }
}

if (import.meta.main) {
  try {
    await main();
  } catch (e) {
    console.error(`ls_bench: ${(e as Error).stack ?? e}`);
    Deno.exit(1);
  }
}
