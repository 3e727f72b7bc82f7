/**
 * One node running many replicas (issue "a node that runs 1,000 replicas"): prisn and PM2 with
 * N copies of the same idle Bash script (`echo "up $PRISN_REPLICA"`, then `exec sleep MARK`, MARK
 * a number picked per run), for each N in SCALE_COUNTS, each side in a fresh PRISN_HOME / PM2_HOME:
 *
 *   - start: `prisn deploy DIR --name many --replicas N` against a warm agent, timed until it
 *     returns and until `prisn get many -o json` (polled once it returned) shows N ready replicas;
 *     PM2: one ecosystem app with `instances: N` (fork mode, bash interpreter) against a warm
 *     daemon, `pm2 start` timed until it returns and until `pm2 jlist` shows N online;
 *   - the supervisor process (the prisn agent from $PRISN_HOME/state/agent.pid, the PM2 God daemon
 *     from $PM2_HOME/pm2.pid), idle and with the N replicas: RSS (VmRSS), threads
 *     (/proc/PID/task) and open fds (/proc/PID/fd);
 *   - listing at that count, SCALE_BENCH_RUNS times after 2 warm-up runs: `prisn ls` and
 *     `prisn get many -o json`, `pm2 jlist`;
 *   - stop: `prisn agent stop` / `pm2 kill`, timed until it returns and until no `sleep MARK`
 *     process is left (read from /proc); whatever is left is counted, then killed.
 * At the largest N (when it is 20 or more), the same N replicas spread over N/10 deployments of 10
 * replicas: N/10 `prisn deploy` calls one after another (readiness polled with `prisn ls -o json`);
 * PM2: one ecosystem file with N/10 apps of `instances: 10` (its quickest way to start them).
 *
 *   ./denow run -A bench/scale_bench.ts
 *   SCALE_COUNTS=10,100 ./denow run -A bench/scale_bench.ts
 *
 * Environment (all optional):
 *   SCALE_COUNTS=10,100,1000      replica counts, one case each
 *   SCALE_BENCH_ONLY=prisn|pm2    run one side only (no ratios then)
 *   SCALE_BENCH_SPREAD=0          skip the N/10 deployments × 10 replicas case
 *   SCALE_BENCH_RUNS=10           timed runs of each list command
 *   SCALE_BENCH_LIMIT=600         seconds a start (or a stop) may take before the case moves on
 *                                 with what it has (deploy, pm2 start and the stops run under
 *                                 coreutils `timeout`); once a deploy or pm2 start failed,
 *                                 readiness is polled for 30 s more only
 *   PRISN_BENCH_PM2_DIR=/tmp/prisn-bench-pm2   where `npm i pm2` is cached (as supervisor_bench)
 *
 * Every home is a temporary folder, removed on the way out; the agent, the PM2 daemon and every
 * `sleep MARK` process are stopped then too, also on an error, SIGINT or SIGTERM. Prints figures;
 * never fails on a time: a deploy that fails or replicas that never get ready are printed under
 * their case, with the figures it still got, and the run goes on.
 */
import { join } from "node:path";
import { processAlive } from "../runtime/process.ts";
import {
  agentPid,
  BenchHome,
  ensurePm2,
  envInt,
  envInts,
  machineLine,
  mib,
  ms,
  Pm2Home,
  printTable,
  PRISN,
  procStatusKiB,
  runBench,
  sample,
  sleep,
  type Stats,
  stats,
  type Timed,
  timed,
  writeProject,
} from "./_util.ts";

const COUNTS = envInts("SCALE_COUNTS", [10, 100, 1000]);
const ONLY = (Deno.env.get("SCALE_BENCH_ONLY") ?? "").toLowerCase();
const WITH_PRISN = ONLY !== "pm2";
const WITH_PM2 = ONLY !== "prisn";
const SPREAD = Deno.env.get("SCALE_BENCH_SPREAD") !== "0";
const RUNS = envInt("SCALE_BENCH_RUNS", 10);
const LIMIT_S = envInt("SCALE_BENCH_LIMIT", 600);

/** Replicas per deployment in the spread case. */
const SPREAD_REPLICAS = 10;
/** Pause between two readiness polls (each is a CLI call, itself tens of ms or more). */
const POLL_MS = 50;
/** How long readiness is still polled for once a deploy (or pm2 start) failed. */
const AFTER_FAILURE_MS = 30_000;
/** How long the stopped replicas get to disappear. */
const GONE_LIMIT_MS = 30_000;
/** The replicas' `sleep` argument: marks this run's processes in /proc, for both sides. */
const MARK = String(7_000_000 + Math.floor(Math.random() * 1_000_000));
const MAIN_SH = `#!/usr/bin/env bash\necho "up $PRISN_REPLICA"\nexec sleep ${MARK}\n`;

// --- one case, two sides ------------------------------------------------------------------------

interface Case {
  label: string;
  /** Deployment (PM2: app) names. */
  names: string[];
  /** Replicas of each. */
  replicas: number;
  total: number;
}

function singleCase(n: number): Case {
  return { label: `1 × ${n}`, names: ["many"], replicas: n, total: n };
}

function spreadCase(n: number): Case {
  const count = Math.floor(n / SPREAD_REPLICAS);
  const names = Array.from({ length: count }, (_, i) => `many-${String(i).padStart(3, "0")}`);
  return {
    label: `${count} × ${SPREAD_REPLICAS}`,
    names,
    replicas: SPREAD_REPLICAS,
    total: count * SPREAD_REPLICAS,
  };
}

interface Proc {
  rssKiB?: number;
  threads?: number;
  fds?: number;
}

/** One side's figures for one case; a missing figure was not reached (see `problems`). */
interface Side {
  /** The deploy call(s) / `pm2 start`, first spawned → last returned. */
  startMs?: number;
  /** Each deploy call (spread case, prisn). */
  calls?: Stats;
  /** First spawn → the list showed `total` ready/online replicas. */
  readyMs?: number;
  /** Most ready/online replicas seen. */
  readySeen: number;
  /** `sleep MARK` processes running once ready. */
  running?: number;
  idle: Proc;
  loaded: Proc;
  /** prisn ls / pm2 jlist. */
  list?: Stats;
  /** prisn get many -o json / pm2 jlist (single-deployment cases). */
  detail?: Stats;
  stopMs?: number;
  /** Stop spawned → no `sleep MARK` process left. */
  goneMs?: number;
  /** `sleep MARK` processes left after the stop (and the supervisor, if it is still there 5 s
   * after they went). */
  left?: string;
  problems: string[];
}

function newSide(): Side {
  return { readySeen: 0, idle: {}, loaded: {}, problems: [] };
}

// --- processes ----------------------------------------------------------------------------------

function procFigures(pid: number | undefined): Proc {
  if (!pid) return {};
  const count = (dir: string) => {
    try {
      return [...Deno.readDirSync(dir)].length;
    } catch {
      return undefined;
    }
  };
  return {
    rssKiB: procStatusKiB(pid),
    threads: count(`/proc/${pid}/task`),
    fds: count(`/proc/${pid}/fd`),
  };
}

/** Pids of this run's replicas (`sleep MARK`) still running, whoever started them. */
function markedPids(): number[] {
  const pids: number[] = [];
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    try {
      const argv = Deno.readTextFileSync(`/proc/${entry.name}/cmdline`).split("\0");
      if (argv[1] === MARK && argv[0].endsWith("sleep")) pids.push(Number(entry.name));
    } catch { /* exited meanwhile */ }
  }
  return pids;
}

/** SIGKILLs every `sleep MARK` process; how many there were. */
function killMarked(): number {
  const pids = markedPids();
  for (const pid of pids) {
    try {
      Deno.kill(pid, "SIGKILL");
    } catch { /* gone */ }
  }
  return pids.length;
}

/** Polls `check` every POLL_MS until it holds or `limitMs` passed since `t0`; ms since `t0`. */
async function waitUntil(
  check: () => Promise<boolean> | boolean,
  t0: number,
  limitMs: number,
): Promise<number | undefined> {
  while (true) {
    if (await check()) return performance.now() - t0;
    if (performance.now() - t0 > limitMs) return undefined;
    await sleep(POLL_MS);
  }
}

/** Milliseconds since `t0`, printed. */
function since(t0: number): string {
  return ms(performance.now() - t0);
}

/**
 * Polls `ready` until the case's `total` are up or `limitMs` passed since `t0`, keeping the most
 * seen (else notes `problem("SEEN/TOTAL")`); 1 s later, counts the replicas running and reads the
 * supervisor's figures.
 */
async function awaitReady(side: Side, c: Case, options: {
  ready: () => Promise<number>;
  t0: number;
  limitMs: number;
  supervisor: number | undefined;
  problem: (seen: string) => string;
}): Promise<void> {
  side.readyMs = await waitUntil(
    async () => {
      side.readySeen = Math.max(side.readySeen, await options.ready());
      return side.readySeen >= c.total;
    },
    options.t0,
    options.limitMs,
  );
  if (side.readyMs === undefined) {
    side.problems.push(options.problem(`${side.readySeen}/${c.total}`));
  }
  await sleep(1_000);
  side.running = markedPids().length;
  side.loaded = procFigures(options.supervisor);
}

/** Aborted on the way out: kills every command `run` started that is still running. */
const stopping = new AbortController();
const inFlight = new Set<Promise<Timed>>();

/**
 * Runs and times a command (`timed`); with `bounded`, under coreutils `timeout` (exit 124 past
 * LIMIT_S), which passes a kill on to the command.
 */
function run(
  command: string,
  args: string[],
  options: { env?: Record<string, string>; cwd?: string; bounded?: boolean } = {},
): Promise<Timed> {
  const done = options.bounded
    ? timed("timeout", ["-k", "10", String(LIMIT_S), command, ...args], {
      env: options.env,
      cwd: options.cwd,
      signal: stopping.signal,
    })
    : timed(command, args, { env: options.env, cwd: options.cwd, signal: stopping.signal });
  inFlight.add(done);
  done.finally(() => inFlight.delete(done)).catch(() => {});
  return done;
}

function failure(what: string, r: Timed): string {
  const text = (r.stderr || r.stdout).trim().split("\n").slice(-2).join(" / ");
  return `${what} exited ${r.code}${r.code === 124 ? ` (over ${LIMIT_S} s)` : ""}: ${text}`;
}

/** Times `run()` RUNS times after 2 warm-up calls; undefined (and a problem) if one fails. */
async function timeList(side: Side, what: string, run: () => Promise<Timed>) {
  try {
    return stats(
      await sample(async () => {
        const r = await run();
        if (r.code !== 0) throw new Error(failure(what, r));
        return r.ms;
      }, { runs: RUNS, warmup: 2 }),
    );
  } catch (e) {
    side.problems.push((e as Error).message);
    return undefined;
  }
}

/**
 * Stops a side (`run`, a stop command named `what`) and times it; waits for the replicas to go,
 * records what stayed, kills it.
 */
async function stop(side: Side, options: {
  what: string;
  run: () => Promise<Timed>;
  supervisor: number | undefined;
}): Promise<void> {
  const { supervisor } = options;
  const t0 = performance.now();
  const r = await options.run();
  side.stopMs = r.ms;
  if (r.code !== 0) side.problems.push(failure(options.what, r));
  side.goneMs = await waitUntil(() => markedPids().length === 0, t0, GONE_LIMIT_MS);
  const left = killMarked();
  // The supervisor may still be on its way out when its last replica has gone.
  const exited = await waitUntil(
    () => supervisor === undefined || !processAlive(supervisor),
    performance.now(),
    5_000,
  );
  const stayed = exited === undefined;
  side.left = `${left}${stayed ? " + supervisor" : ""}`;
}

// --- cleanup ------------------------------------------------------------------------------------

/** What is running now, stopped by `cleanUp` on the way out (also on a signal). */
const active: { prisn?: BenchHome; pm2?: Pm2Home } = {};

/**
 * Kills the commands still running, then stops the agent or the PM2 daemon and every replica.
 * The agent's stop is asked for before the first `await`, so that on a signal its replicas are
 * killed before BenchHome's own signal handler (which stops the agent too) exits.
 */
async function cleanUp(): Promise<void> {
  stopping.abort();
  const agentStopped = active.prisn?.close().then(killMarked);
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([
    Promise.allSettled([...inFlight]),
    new Promise((resolve) => timer = setTimeout(resolve, 15_000)),
  ]);
  clearTimeout(timer);
  await agentStopped;
  await active.pm2?.close();
  killMarked();
}

/**
 * Runs one side of a case in `home` (already in `active`): an error becomes one of its problems;
 * then `home` is closed and every replica killed.
 */
async function runSide(
  label: string,
  home: BenchHome | Pm2Home,
  body: (side: Side) => Promise<void>,
): Promise<Side> {
  const side = newSide();
  try {
    await body(side);
  } catch (e) {
    side.problems.push(`${label}: ${(e as Error).message}`);
  } finally {
    await home.close();
    active.prisn = active.pm2 = undefined;
    killMarked();
  }
  return side;
}

// --- prisn --------------------------------------------------------------------------------------

function prisn(h: BenchHome, ...args: string[]): Promise<Timed> {
  return run(PRISN, args, { env: h.env });
}

/** What the readiness poll reads of a `prisn get NAME -o json` / `prisn ls -o json` row. */
interface ReplicaCounts {
  replicas?: { desired: number; ready: number };
}

/** Ready replicas over the case's deployments: `prisn get many -o json`, or `prisn ls -o json`. */
async function prisnReady(h: BenchHome, c: Case): Promise<number> {
  const single = c.names.length === 1;
  const r = await prisn(h, ...(single ? ["get", c.names[0]] : ["ls"]), "-o", "json");
  if (r.code !== 0) return 0;
  const rows = (single ? [JSON.parse(r.stdout)] : JSON.parse(r.stdout)) as ReplicaCounts[];
  return rows.reduce((n, d) => n + (d.replicas?.ready ?? 0), 0);
}

function prisnSide(c: Case): Promise<Side> {
  const h = new BenchHome("prisn-bench-scale-");
  active.prisn = h;
  return runSide("prisn", h, async (side) => {
    const first = await prisn(h, "ls"); // starts the agent
    if (first.code !== 0) throw new Error(failure("prisn ls", first));
    const pid = agentPid(h.paths);
    await sleep(1_000);
    side.idle = procFigures(pid);
    const dir = writeProject(join(h.dir, "src", "many"), { "main.sh": MAIN_SH });

    const t0 = performance.now();
    const calls: number[] = [];
    for (const name of c.names) {
      const r = await run(
        PRISN,
        ["deploy", dir, "--name", name, "--replicas", String(c.replicas)],
        { env: h.env, bounded: true },
      );
      calls.push(r.ms);
      if (r.code !== 0) {
        side.problems.push(failure(`prisn deploy --name ${name}`, r));
        const logs = await prisn(h, "logs", name, "--tail", "5");
        for (const line of logs.stdout.trim().split("\n").filter(Boolean)) {
          side.problems.push(`  prisn logs ${name}: ${line}`);
        }
        if (r.code === 124) break;
      }
    }
    side.startMs = performance.now() - t0;
    if (calls.length > 1) side.calls = stats(calls);
    const limitMs = side.problems.length
      ? performance.now() - t0 + AFTER_FAILURE_MS
      : LIMIT_S * 1000;
    await awaitReady(side, c, {
      ready: () => prisnReady(h, c),
      t0,
      limitMs,
      supervisor: pid,
      problem: (seen) => `${seen} replicas ready ${since(t0)} ms after the first deploy`,
    });

    side.list = await timeList(side, "prisn ls", () => prisn(h, "ls"));
    if (c.names.length === 1) {
      side.detail = await timeList(
        side,
        `prisn get ${c.names[0]} -o json`,
        () => prisn(h, "get", c.names[0], "-o", "json"),
      );
    }

    await stop(side, {
      what: "prisn agent stop",
      run: () => run(PRISN, ["agent", "stop"], { env: h.env, bounded: true }),
      supervisor: pid,
    });
  });
}

// --- PM2 ----------------------------------------------------------------------------------------

/** Online processes of the apps in `names`, from one `pm2 jlist` (0 if it fails). */
async function pm2Online(p: Pm2Home, names: Set<string>): Promise<number> {
  const list = await p.jlist().catch(() => []);
  return list.filter((proc) =>
    names.has(proc.name) && proc.pm2_env.status === "online" && proc.pid > 0
  ).length;
}

function pm2Side(bin: string, c: Case): Promise<Side> {
  const p = new Pm2Home(bin, { prefix: "prisn-bench-scale-pm2-", run });
  active.pm2 = p;
  return runSide("pm2", p, async (side) => {
    const ping = await p.cli("ping"); // starts the daemon
    if (ping.code !== 0) throw new Error(failure("pm2 ping", ping));
    const pid = p.daemonPid();
    await sleep(1_000);
    side.idle = procFigures(pid);
    const dir = writeProject(join(p.dir, "many"), { "main.sh": MAIN_SH });
    const script = join(dir, "main.sh");
    const file = await p.writeEcosystem(c.names.map((name) => ({
      name,
      script,
      interpreter: "bash",
      cwd: dir,
      exec_mode: "fork",
      instances: c.replicas,
      instance_var: "PRISN_REPLICA",
      autorestart: true,
    })));

    const t0 = performance.now();
    const start = await run(bin, ["start", file], { env: p.env, bounded: true });
    side.startMs = start.ms;
    if (start.code !== 0) side.problems.push(failure("pm2 start", start));
    const names = new Set(c.names);
    const limitMs = start.code !== 0 ? start.ms + AFTER_FAILURE_MS : LIMIT_S * 1000;
    await awaitReady(side, c, {
      ready: () => pm2Online(p, names),
      t0,
      limitMs,
      supervisor: pid,
      problem: (seen) => `${seen} processes online ${since(t0)} ms after pm2 start`,
    });

    side.list = await timeList(side, "pm2 jlist", () => p.cli("jlist"));
    if (c.names.length === 1) side.detail = side.list;

    await stop(side, {
      what: "pm2 kill",
      run: () => run(bin, ["kill"], { env: p.env, bounded: true }),
      supervisor: pid,
    });
  });
}

// --- report -------------------------------------------------------------------------------------

function num(n: number | undefined): string {
  return n === undefined ? "-" : String(n);
}

function ratio(a: number | undefined, b: number | undefined): string {
  return a !== undefined && b !== undefined && a > 0 && b > 0 ? `${(a / b).toFixed(2)}x` : "-";
}

/** RSS the replicas added to the supervisor, per replica. */
function perReplicaKiB(s: Side, c: Case): number | undefined {
  const idle = s.idle.rssKiB;
  const loaded = s.loaded.rssKiB;
  return idle === undefined || loaded === undefined ? undefined : (loaded - idle) / c.total;
}

type Row = [string, (s: Side) => number | undefined, (v: number | undefined) => string];

function rowsFor(c: Case): Row[] {
  const msOf = (v: number | undefined) => (v === undefined ? "-" : ms(v));
  const rows: Row[] = [
    [
      c.names.length > 1 ? "deploys / pm2 start returned (ms)" : "start returned (ms)",
      (s) => s.startMs,
      msOf,
    ],
  ];
  if (c.names.length > 1) {
    rows.push(["  one prisn deploy p50 (ms)", (s) => s.calls?.p50, msOf]);
    rows.push(["  one prisn deploy p95 (ms)", (s) => s.calls?.p95, msOf]);
  }
  rows.push(
    [`all ${c.total} ready / online (ms)`, (s) => s.readyMs, msOf],
    ["supervisor RSS idle (MiB)", (s) => s.idle.rssKiB, mib],
    [`supervisor RSS with ${c.total} (MiB)`, (s) => s.loaded.rssKiB, mib],
    [
      "  per replica (KiB)",
      (s) => perReplicaKiB(s, c),
      (v) => v === undefined ? "-" : v.toFixed(1),
    ],
    ["threads idle", (s) => s.idle.threads, num],
    [`threads with ${c.total}`, (s) => s.loaded.threads, num],
    ["open fds idle", (s) => s.idle.fds, num],
    [`open fds with ${c.total}`, (s) => s.loaded.fds, num],
    ["prisn ls | pm2 jlist p50 (ms)", (s) => s.list?.p50, msOf],
    ["prisn ls | pm2 jlist p95 (ms)", (s) => s.list?.p95, msOf],
  );
  if (c.names.length === 1) {
    rows.push(
      [`prisn get ${c.names[0]} -o json | pm2 jlist p50 (ms)`, (s) => s.detail?.p50, msOf],
      [`prisn get ${c.names[0]} -o json | pm2 jlist p95 (ms)`, (s) => s.detail?.p95, msOf],
    );
  }
  rows.push(
    ["agent stop | pm2 kill returned (ms)", (s) => s.stopMs, msOf],
    [`  until no replica left (ms)`, (s) => s.goneMs, msOf],
  );
  return rows;
}

function printCase(c: Case, prisn?: Side, pm2?: Side): void {
  const sides = [prisn && "prisn", pm2 && "pm2"].filter(Boolean) as string[];
  const headers = [`${c.label} replicas`, ...sides, ...(prisn && pm2 ? ["prisn/pm2"] : [])];
  const table = rowsFor(c).map(([label, get, fmt]) => [
    label,
    ...(prisn ? [fmt(get(prisn))] : []),
    ...(pm2 ? [fmt(get(pm2))] : []),
    ...(prisn && pm2 ? [ratio(get(prisn), get(pm2))] : []),
  ]);
  table.push([
    "ready seen / processes running / left after stop",
    ...[prisn, pm2].filter((s): s is Side => s !== undefined).map((s) =>
      `${s.readySeen}/${num(s.running)}/${s.left ?? "-"}`
    ),
  ]);
  console.log();
  printTable(headers, table);
  if (c.names.length > 1) {
    console.log(
      `  (prisn: ${c.names.length} \`prisn deploy\` calls one after another; pm2: one ` +
        `\`pm2 start\` of an ecosystem file with ${c.names.length} apps)`,
    );
  }
  for (const [label, s] of [["prisn", prisn], ["pm2", pm2]] as const) {
    for (const problem of s?.problems ?? []) console.log(`  ${label}: ${problem}`);
  }
}

interface Result {
  c: Case;
  prisn?: Side;
  pm2?: Side;
}

function printSummary(results: Result[]): void {
  console.log("\nsummary (prisn | pm2 | prisn/pm2)");
  const cell = (r: Result, get: (s: Side) => number | undefined, fmt: (v?: number) => string) =>
    [
      r.prisn ? fmt(get(r.prisn)) : "",
      r.pm2 ? fmt(get(r.pm2)) : "",
      ratio(r.prisn && get(r.prisn), r.pm2 && get(r.pm2)),
    ].join(" | ");
  const msOf = (v?: number) => (v === undefined ? "-" : ms(v));
  printTable(
    ["replicas", "all ready ms", "RSS MiB", "threads", "fds", "ls|jlist p50 ms", "stop ms"],
    results.map((r) => [
      r.c.label,
      cell(r, (s) => s.readyMs, msOf),
      cell(r, (s) => s.loaded.rssKiB, mib),
      cell(r, (s) => s.loaded.threads, num),
      cell(r, (s) => s.loaded.fds, num),
      cell(r, (s) => s.list?.p50, msOf),
      cell(r, (s) => s.goneMs, msOf),
    ]),
  );
}

async function main(): Promise<void> {
  const pm2 = WITH_PM2 ? await ensurePm2() : undefined;
  const node = (await timed("node", ["--version"])).stdout.trim();
  console.log(
    `scale bench: ${
      [WITH_PRISN && "prisn", pm2 && `pm2 ${pm2.version}`].filter(Boolean).join(" vs ")
    }` +
      ` (${machineLine()}, node ${node}); replicas run \`exec sleep ${MARK}\` (bash)`,
  );
  const cases = COUNTS.map(singleCase);
  const largest = Math.max(...COUNTS);
  if (SPREAD && largest >= 2 * SPREAD_REPLICAS) cases.push(spreadCase(largest));

  const results: Result[] = [];
  for (const c of cases) {
    if (stopping.signal.aborted) break;
    console.log(`\n--- ${c.label} replicas ---`);
    const left = killMarked();
    if (left) console.log(`  (killed ${left} replicas left from the case before)`);
    const r: Result = { c };
    // Once stopping, no side starts (its home would be made after the cleanup).
    if (WITH_PRISN && !stopping.signal.aborted) r.prisn = await prisnSide(c);
    if (pm2 && !stopping.signal.aborted) r.pm2 = await pm2Side(pm2.bin, c);
    printCase(c, r.prisn, r.pm2);
    results.push(r);
  }
  printSummary(results);
  const problems = results.reduce(
    (n, r) => n + (r.prisn?.problems.length ?? 0) + (r.pm2?.problems.length ?? 0),
    0,
  );
  if (problems) console.log(`\n${problems} problem(s) noted under the cases above`);
}

if (import.meta.main) await runBench("scale_bench", main, cleanUp);
