/**
 * Cron firing lateness: how long after its scheduled time each run's process is actually
 * started (runs.started_at − runs.scheduled_at), with 1, 100 and 1,000 every-second cronjobs
 * running `true` side by side on one agent, plus the agent's RSS and CPU at each level.
 *
 *   ./denow run -A bench/cron_bench.ts
 *   CRON_BENCH_SECONDS=10 CRON_BENCH_LEVELS=1,100 ./denow run -A bench/cron_bench.ts
 *
 * Per level, in a fresh temp PRISN_HOME: one cronjob is deployed through the CLI (the real
 * path), the agent is stopped, the other N−1 are recorded straight into the store (a copy of
 * the stored version folder and a version + deployment record each, through core/records.ts)
 * because 1,000 CLI deploys would take minutes, then `prisn agent run` is started and watched
 * for CRON_BENCH_SECONDS (default 60) after a short warm-up. Runs are read from prisn.db
 * (read-only) every second, so history pruning (10 kept per cronjob by default) loses none.
 *
 * Prints figures; never fails on a time.
 */
import { DatabaseSync } from "node:sqlite";
import { join } from "node:path";
import { Records } from "../core/records.ts";
import type { Paths } from "../core/paths.ts";
import { AgentClient } from "../runtime/client.ts";
import {
  agentPid,
  BenchHome,
  envInt,
  envInts,
  machineLine,
  ms,
  percentile,
  printTable,
  PRISN,
  procStatusKiB,
  sleep,
} from "./_util.ts";
import { ResourceControl } from "../runtime/resources.ts";

const SECONDS = envInt("CRON_BENCH_SECONDS", 60);
const LEVELS = envInts("CRON_BENCH_LEVELS", [1, 100, 1000]);
/** Time after the agent answers before the measured window opens (start-up catch-up settles). */
const WARMUP_MS = 3_000;
/** Time after the window closes for its last ticks to start. */
const DRAIN_MS = 5_000;
const POLL_MS = 1_000;
const CLOCK_TICKS = 100; // USER_HZ on Linux

interface LevelResult {
  jobs: number;
  windowSeconds: number;
  expected: number;
  started: number;
  notStarted: number;
  duplicates: number;
  /** Runs that started while an earlier run of the same cronjob was still active (forbid). */
  overlaps: number;
  lateness: number[];
  /** Round trips of GET /v1/ping during the window; failures are timeouts (2 s) or errors. */
  ping: { ms: number[]; failures: number };
  /** Finished children the agent had not reaped yet, at the most at one sample. */
  zombiesMax: number;
  /** RSS every 10 s through the window, MiB. */
  rssSeries: number[];
  events: Record<string, number>;
  rss: { beforeMb: number; meanMb: number; maxMb: number; hwmMb: number };
  cpuPercent: number;
  setupMs: number;
}

interface RunRow {
  id: string;
  deployment: string;
  scheduled_at: number;
  started_at: number | null;
  finished_at: number | null;
}

/** A status field of /proc/PID/status in MiB (VmRSS, VmHWM), or NaN. */
function procMb(pid: number, field: "VmRSS" | "VmHWM"): number {
  return (procStatusKiB(pid, field) ?? NaN) / 1024;
}

/** How many children of `pid` are zombies (exited, not yet reaped). */
function zombieChildren(pid: number): number {
  let n = 0;
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    try {
      const stat = Deno.readTextFileSync(`/proc/${e.name}/stat`);
      const [state, ppid] = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (state === "Z" && Number(ppid) === pid) n++;
    } catch { /* gone */ }
  }
  return n;
}

/** One GET /v1/ping round trip in ms, or undefined when it failed or took over 2 s. */
async function pingMs(paths: Paths): Promise<number | undefined> {
  const client = new AgentClient(paths);
  try {
    const start = performance.now();
    return (await client.ping()) ? performance.now() - start : undefined;
  } finally {
    client.close();
  }
}

/** Runs started while the cronjob's previous run had not finished. */
function countOverlaps(runs: RunRow[]): number {
  const byJob = new Map<string, RunRow[]>();
  for (const r of runs) {
    if (r.started_at === null) continue;
    byJob.set(r.deployment, [...(byJob.get(r.deployment) ?? []), r]);
  }
  let n = 0;
  for (const list of byJob.values()) {
    list.sort((a, b) => a.started_at! - b.started_at!);
    for (let i = 1; i < list.length; i++) {
      const prev = list[i - 1].finished_at;
      if (prev === null || list[i].started_at! < prev) n++;
    }
  }
  return n;
}

/** utime + stime of a process, in seconds. */
function cpuSeconds(pid: number): number {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
  } catch {
    return NaN;
  }
}

function loadAverage(): string {
  try {
    return Deno.readTextFileSync("/proc/loadavg").split(" ").slice(0, 3).join(" ");
  } catch {
    return "?";
  }
}

/** Records cronjobs cron-0001… as copies of cron-0000 (stored folder, version, deployment). */
async function populate(paths: Paths, count: number): Promise<void> {
  const records = new Records(paths.db);
  try {
    const first = records.getDeployment("cron-0000")!;
    const version = records.getVersion("cron-0000", first.version)!;
    const source = join(paths.deployments, "cron-0000", first.version);
    const files: string[] = [];
    for await (const e of Deno.readDir(source)) if (e.isFile) files.push(e.name);
    for (let i = 1; i < count; i++) {
      const name = `cron-${String(i).padStart(4, "0")}`;
      const dir = join(paths.deployments, name, first.version);
      await Deno.mkdir(dir, { recursive: true });
      for (const f of files) await Deno.copyFile(join(source, f), join(dir, f));
      const now = Date.now();
      records.putVersion({
        deployment: name,
        version: first.version,
        spec: { ...version.spec, name },
        source: version.source,
        files: version.files,
        bytes: version.bytes,
      }, now);
      records.activate(name, first.version, 0, now);
    }
  } finally {
    records.close();
  }
}

async function waitForAgent(paths: Paths, timeoutMs: number): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const client = await AgentClient.existing(paths);
    client?.close();
    const pid = client && agentPid(paths);
    if (pid) return pid;
    await sleep(100);
  }
  throw new Error(`the agent did not answer within ${timeoutMs} ms`);
}

/**
 * `prisn agent stop`, and if the agent has not exited 30 s later: SIGKILL to it and to the
 * process groups of the runs it recorded, so nothing it started outlives the benchmark.
 */
async function stopAgent(home: BenchHome, agent: Deno.ChildProcess): Promise<void> {
  await home.cli("agent", "stop").catch(() => undefined);
  const exited = await Promise.race([agent.status.then(() => true), sleep(30_000)]);
  if (exited) return;
  let groups: number[] = [];
  try {
    const db = new DatabaseSync(home.paths.db, { readOnly: true });
    groups = (db.prepare("SELECT pid FROM processes").all() as { pid: number }[]).map((r) => r.pid);
    db.close();
  } catch { /* no records to go by */ }
  try {
    agent.kill("SIGKILL");
  } catch { /* gone */ }
  await agent.status;
  for (const pid of groups) {
    try {
      Deno.kill(-pid, "SIGKILL");
    } catch { /* gone */ }
  }
  // What the killed agent would have removed at its stop: this home's cgroups.
  await new ResourceControl(home.paths.home).cleanup({ removeRoot: true }).catch(() => []);
  console.log(
    `  (the agent did not stop within 30 s: killed it and ${groups.length} run group(s))`,
  );
}

async function runLevel(jobs: number): Promise<LevelResult> {
  const home = new BenchHome("prisn-cron-bench-");
  let agent: Deno.ChildProcess | undefined;
  let db: DatabaseSync | undefined;
  try {
    const setupStart = Date.now();
    const project = join(home.dir, "tick");
    await Deno.mkdir(project);
    await Deno.writeTextFile(join(project, "main.sh"), "#!/bin/bash\ntrue\n");
    await Deno.chmod(join(project, "main.sh"), 0o755);
    await Deno.writeTextFile(
      join(project, "prisn.toml"),
      'schedule = "* * * * * *"\ntimezone = "UTC"\n',
    );
    await home.ok("deploy", project, "--name", "cron-0000");
    await home.ok("agent", "stop");
    await populate(home.paths, jobs);

    agent = new Deno.Command(PRISN, {
      args: ["agent", "run"],
      env: home.env,
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    const pid = await waitForAgent(home.paths, 60_000);
    const setupMs = Date.now() - setupStart;

    const windowStart = Math.ceil((Date.now() + WARMUP_MS) / 1000) * 1000;
    const windowEnd = windowStart + SECONDS * 1000;
    db = new DatabaseSync(home.paths.db, { readOnly: true });
    const select = db.prepare(
      `SELECT id, deployment, scheduled_at, started_at, finished_at FROM runs
       WHERE trigger = 'schedule' AND scheduled_at >= ? AND scheduled_at < ?`,
    );
    const seen = new Map<string, RunRow>();
    const poll = () => {
      for (const row of select.all(windowStart, windowEnd) as unknown as RunRow[]) {
        const known = seen.get(row.id);
        if (!known || known.finished_at === null) seen.set(row.id, row);
      }
    };

    await sleep(windowStart - Date.now());
    const rssBefore = procMb(pid, "VmRSS");
    const cpuStart = cpuSeconds(pid);
    const rss: number[] = [];
    const rssSeries: number[] = [];
    const pings: Promise<number | undefined>[] = [];
    let zombiesMax = 0;
    for (let i = 0; Date.now() < windowEnd + DRAIN_MS; i++) {
      rss.push(procMb(pid, "VmRSS"));
      if (i % 10 === 0 && Date.now() < windowEnd) rssSeries.push(rss[rss.length - 1]);
      if (i % 5 === 0) zombiesMax = Math.max(zombiesMax, zombieChildren(pid));
      pings.push(pingMs(home.paths));
      poll();
      await sleep(POLL_MS);
    }
    poll();
    const pingResults = await Promise.all(pings);
    const cpu = cpuSeconds(pid) - cpuStart;
    const hwm = procMb(pid, "VmHWM");

    const events: Record<string, number> = {};
    const rows = db.prepare(
      `SELECT kind, COUNT(*) AS n FROM events WHERE at >= ? AND at < ? AND kind != 'RunFailed'
       GROUP BY kind`,
    ).all(windowStart, windowEnd + DRAIN_MS) as { kind: string; n: number }[];
    for (const r of rows) events[r.kind] = r.n;

    const runs = [...seen.values()];
    const started = runs.filter((r) => r.started_at !== null);
    const ticks = new Set(runs.map((r) => `${r.deployment}@${r.scheduled_at}`));
    const samples = rss.filter(Number.isFinite);
    return {
      jobs,
      windowSeconds: SECONDS,
      expected: jobs * SECONDS,
      started: started.length,
      notStarted: runs.length - started.length,
      duplicates: runs.length - ticks.size,
      overlaps: countOverlaps(runs),
      ping: {
        ms: pingResults.filter((x): x is number => x !== undefined),
        failures: pingResults.filter((x) => x === undefined).length,
      },
      zombiesMax,
      rssSeries,
      lateness: started.map((r) => r.started_at! - r.scheduled_at),
      events,
      rss: {
        beforeMb: rssBefore,
        meanMb: samples.reduce((a, b) => a + b, 0) / samples.length,
        maxMb: Math.max(...samples),
        hwmMb: hwm,
      },
      cpuPercent: (cpu / ((windowEnd + DRAIN_MS - windowStart) / 1000)) * 100,
      setupMs,
    };
  } finally {
    db?.close();
    if (agent) await stopAgent(home, agent);
    await home.close(); // the temp folder goes (and any agent a CLI call started there)
  }
}

function mb(n: number): string {
  return Number.isFinite(n) ? n.toFixed(1) : "-";
}

console.log(`cron firing lateness — ${machineLine()}, load average ${loadAverage()}`);
console.log(
  `every-second cronjobs running \`true\`; window ${SECONDS} s after a ${WARMUP_MS / 1000} s ` +
    `warm-up; lateness = run started_at − scheduled_at`,
);
const results: LevelResult[] = [];
for (const jobs of LEVELS) {
  console.log(`\n${jobs} cronjob(s): setting up… (load average ${loadAverage()})`);
  const r = await runLevel(jobs);
  results.push(r);
  const l = r.lateness;
  const over = (limit: number) => l.filter((x) => x > limit).length;
  console.log(
    `  set up in ${(r.setupMs / 1000).toFixed(1)} s; runs started ${r.started} of ${r.expected} ` +
      `ticks (${((r.started / r.expected) * 100).toFixed(1)}%), not started ${r.notStarted}, ` +
      `duplicate ticks ${r.duplicates}, overlapping runs of one cronjob ${r.overlaps}`,
  );
  console.log(
    `  lateness ms: min ${ms(Math.min(...l))}, p50 ${ms(percentile(l, 50))}, ` +
      `p99 ${ms(percentile(l, 99))}, max ${ms(Math.max(...l))}; ` +
      `>100 ms ${over(100)}, >1 s ${over(1000)}, >5 s ${over(5000)}`,
  );
  console.log(
    `  agent RSS MiB: before ${mb(r.rss.beforeMb)}, mean ${mb(r.rss.meanMb)}, max ${
      mb(r.rss.maxMb)
    } (VmHWM ${mb(r.rss.hwmMb)}); agent CPU ${r.cpuPercent.toFixed(0)}% of one core`,
  );
  console.log(`  agent RSS every 10 s, MiB: ${r.rssSeries.map(mb).join(" ")}`);
  const p = r.ping.ms;
  console.log(
    `  agent API ping ms (1/s): p50 ${ms(percentile(p, 50))}, max ${ms(Math.max(...p))}, ` +
      `failed (>2 s) ${r.ping.failures} of ${p.length + r.ping.failures}; ` +
      `unreaped exited children, most seen: ${r.zombiesMax}`,
  );
  const events = Object.entries(r.events).map(([k, n]) => `${k} ${n}`).join(", ");
  console.log(`  events in the window: ${events || "none"}`);
}

console.log("");
printTable(
  [
    "cronjobs",
    "ticks",
    "started",
    "p50 ms",
    "p99 ms",
    "max ms",
    "RSS mean MiB",
    "RSS max MiB",
    "agent CPU",
    "ping p50 ms",
  ],
  results.map((r) => [
    String(r.jobs),
    String(r.expected),
    String(r.started),
    ms(percentile(r.lateness, 50)),
    ms(percentile(r.lateness, 99)),
    ms(Math.max(...r.lateness)),
    mb(r.rss.meanMb),
    mb(r.rss.maxMb),
    `${r.cpuPercent.toFixed(0)}%`,
    ms(percentile(r.ping.ms, 50)),
  ]),
);
