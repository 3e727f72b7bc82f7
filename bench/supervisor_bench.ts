/**
 * prisn vs PM2 as process supervisors, on the same apps in the same run:
 *
 *   (a) restart latency after a crash: a Node `http` service that exits on `GET /crash`; time from
 *       sending the crash request to the first HTTP 200 from a new process on the app's own port
 *       (prisn: also through the service port, i.e. via prisn's proxy and readiness probe);
 *   (b) the supervisor's resident memory (VmRSS of the prisn agent / the PM2 God daemon) while it
 *       restarts a script that exits 1 at once, sampled every 1/10th of the restarts.
 *
 *   ./denow run -A bench/supervisor_bench.ts
 *
 * Environment (all optional):
 *   SUPERVISOR_BENCH_PART=a|b|all         which part to run (all)
 *   SUPERVISOR_BENCH_ONLY=prisn|pm2       run one side only (for diagnosis: no ratio then)
 *   SUPERVISOR_BENCH_SAMPLES=20           crashes timed per supervisor in (a), after 2 warm-up ones
 *   SUPERVISOR_BENCH_RESTARTS=10000       restarts to reach in (b)
 *   SUPERVISOR_BENCH_TIME_LIMIT=300       seconds (b) may take per supervisor; past it, it reports
 *                                         how far it got
 *   SUPERVISOR_BENCH_BACKOFF=1ms          prisn restart.backoff_initial (= backoff_max) for both
 *                                         parts: prisn.toml refuses "0ms", so 1 ms is the closest
 *                                         to PM2's default restart_delay of 0
 *   PRISN_BENCH_PM2_DIR=/tmp/prisn-bench-pm2   where `npm i pm2` is cached between runs
 *
 * Every PRISN_HOME and PM2_HOME is a temporary folder; everything listens on 127.0.0.1. The prisn
 * agent (`prisn agent stop`), the PM2 daemon (`pm2 kill`) and any child process are stopped on the
 * way out, also on an error, SIGINT or SIGTERM. Prints figures; never fails on a time.
 */
import { join } from "node:path";
import { type Paths, paths as homePaths } from "../core/paths.ts";
import type { DeploymentDetail } from "../runtime/views.ts";
import { AgentClient } from "../runtime/client.ts";
import {
  agentPid,
  checkExit,
  ensurePm2,
  envInt,
  freePort,
  machineLine,
  mib,
  Pm2Home,
  printTable,
  PRISN,
  procStatusKiB as rssKiB,
  runBench,
  sleep,
  stats,
  STATS_HEADERS,
  statsRow,
  terminate,
  type Timed,
  timed,
  writeProject,
} from "./_util.ts";

const PART = (Deno.env.get("SUPERVISOR_BENCH_PART") ?? "all").toLowerCase();
const ONLY = (Deno.env.get("SUPERVISOR_BENCH_ONLY") ?? "").toLowerCase();
const WITH_PRISN = ONLY !== "pm2";
const WITH_PM2 = ONLY !== "prisn";
const SAMPLES = envInt("SUPERVISOR_BENCH_SAMPLES", 20);
const WARMUP = 2;
const RESTARTS = envInt("SUPERVISOR_BENCH_RESTARTS", 10_000);
const TIME_LIMIT_MS = envInt("SUPERVISOR_BENCH_TIME_LIMIT", 300) * 1000;
const BACKOFF = Deno.env.get("SUPERVISOR_BENCH_BACKOFF") ?? "1ms";

/** Pause between two crashes in (a): above PM2's default min_uptime (1s), so no restart of
 * either supervisor counts as "unstable" and PM2 keeps its defaults. */
const CRASH_GAP_MS = 1_200;
/** Pause between two connection attempts while waiting for the restarted app. */
const POLL_MS = 2;
/** How often (b) reads the restart count and the RSS. */
const CURVE_POLL_MS = 1_000;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

// --- cleanup: one place that stops everything this process started ---------------------------

type Cleanup = () => Promise<void>;

/** Cleanups run newest first, once each, on normal exit, on error and on SIGINT/SIGTERM. */
class Cleanups {
  #stack: Cleanup[] = [];
  #commands = new Set<AbortController>();
  #running?: Promise<void>;

  /** Registers `fn`; the returned function runs it now (once) and forgets it. */
  add(fn: Cleanup): Cleanup {
    let done: Promise<void> | undefined;
    const once = () => {
      done ??= fn().catch((e) => console.error(`cleanup: ${(e as Error).message}`));
      return done;
    };
    this.#stack.push(once);
    // Forgotten only once done, so that `runAll` meanwhile waits for it too.
    return async () => {
      await once();
      this.#stack = this.#stack.filter((f) => f !== once);
    };
  }

  /** Aborts `abort` (which kills its command) in `runAll` unless `done` settled before. */
  track(abort: AbortController, done: Promise<unknown>): void {
    this.#commands.add(abort);
    done.finally(() => this.#commands.delete(abort)).catch(() => {});
  }

  runAll(): Promise<void> {
    this.#running ??= (async () => {
      for (const abort of this.#commands) abort.abort();
      while (this.#stack.length) await this.#stack.pop()!();
    })();
    return this.#running;
  }
}

const cleanups = new Cleanups();

/** Runs a command to completion (`timed`, stdin closed), killed by the cleanup if still running. */
function run(
  command: string,
  args: string[],
  options: { env?: Record<string, string>; cwd?: string } = {},
): Promise<Timed> {
  const abort = new AbortController();
  const done = timed(command, args, { ...options, signal: abort.signal });
  cleanups.track(abort, done);
  return done;
}

// --- measuring ---------------------------------------------------------------------------------

async function readAll(conn: Deno.Conn): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  const buf = new Uint8Array(4096);
  let size = 0;
  try {
    while (true) {
      const n = await conn.read(buf);
      if (n === null) break;
      chunks.push(buf.slice(0, n));
      size += n;
    }
  } finally {
    try {
      conn.close();
    } catch { /* closed */ }
  }
  const all = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    all.set(c, at);
    at += c.length;
  }
  return all;
}

/** One `GET path HTTP/1.0` on a new connection: status and body, or undefined on any failure. */
async function get(
  port: number,
  path: string,
  timeoutMs: number,
): Promise<{ status: number; body: string } | undefined> {
  let conn: Deno.Conn | undefined;
  const timer = setTimeout(() => {
    try {
      conn?.close();
    } catch { /* closed */ }
  }, timeoutMs);
  try {
    conn = await Deno.connect({ hostname: "127.0.0.1", port });
    await conn.write(encoder.encode(`GET ${path} HTTP/1.0\r\nHost: bench\r\n\r\n`));
    const text = decoder.decode(await readAll(conn));
    const head = /^HTTP\/1\.[01] (\d{3})/.exec(text);
    const split = text.indexOf("\r\n\r\n");
    if (!head || split < 0) return undefined;
    return { status: Number(head[1]), body: text.slice(split + 4) };
  } catch {
    return undefined;
  } finally {
    clearTimeout(timer);
  }
}

/** Polls `port` until a process other than `oldPid` answers 200; ms since `t0` and its pid. */
async function firstAnswerFromNewProcess(
  port: number,
  oldPid: string,
  t0: number,
  limitMs: number,
): Promise<{ ms: number; pid: string }> {
  while (performance.now() - t0 < limitMs) {
    const r = await get(port, "/", 7_000);
    const pid = r?.body.trim();
    if (r?.status === 200 && pid && pid !== oldPid) return { ms: performance.now() - t0, pid };
    await sleep(POLL_MS);
  }
  throw new Error(`no new process answered on port ${port} within ${limitMs} ms of the crash`);
}

/** Waits until `port` answers 200; the pid in the body. */
async function waitServing(port: number, limitMs = 30_000): Promise<string> {
  return (await firstAnswerFromNewProcess(port, "", performance.now(), limitMs)).pid;
}

/** The app of part (a): answers its pid; `GET /crash` makes it exit 1 on the spot. */
const CRASH_APP_JS = `"use strict";
const http = require("node:http");
const server = http.createServer((req, res) => {
  if (req.url === "/crash") process.exit(1);
  res.writeHead(200, { "content-type": "text/plain" });
  res.end(String(process.pid));
});
server.listen(Number(process.env.PORT), "127.0.0.1");
`;

/** The script of part (b). */
const EXIT_SH = "#!/usr/bin/env bash\nexit 1\n";

interface RestartSample {
  /** Crash request sent → a new process answered 200 on the app's own port. */
  direct: number;
  /** The same, through prisn's service port (undefined for PM2). */
  proxied?: number;
}

/**
 * Crashes the app `SAMPLES + WARMUP` times (`CRASH_GAP_MS` apart) and times each restart on
 * `appPort` and, when given, `servicePort` (polled at the same time).
 */
async function restartLatency(
  label: string,
  appPort: number,
  servicePort?: number,
): Promise<RestartSample[]> {
  let pid = await waitServing(appPort);
  if (servicePort !== undefined) await waitServing(servicePort);
  const samples: RestartSample[] = [];
  for (let i = 0; i < WARMUP + SAMPLES; i++) {
    await sleep(CRASH_GAP_MS);
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: appPort });
    const t0 = performance.now();
    await conn.write(encoder.encode("GET /crash HTTP/1.0\r\nHost: bench\r\n\r\n"));
    const crashed = readAll(conn).catch(() => undefined); // EOF or reset once it exits
    const [direct, proxied] = await Promise.all([
      firstAnswerFromNewProcess(appPort, pid, t0, 60_000),
      servicePort === undefined
        ? undefined
        : firstAnswerFromNewProcess(servicePort, pid, t0, 60_000),
    ]);
    await crashed;
    if (proxied && proxied.pid !== direct.pid) {
      throw new Error(
        `${label}: the service port answered from pid ${proxied.pid}, not ${direct.pid}`,
      );
    }
    pid = direct.pid;
    if (i >= WARMUP) samples.push({ direct: direct.ms, proxied: proxied?.ms });
  }
  return samples;
}

interface CurvePoint {
  restarts: number;
  rssKiB?: number;
  atMs: number;
}

interface Curve {
  idle?: number;
  points: CurvePoint[];
  /** RSS a few seconds after the crashing app was removed. */
  afterRemoval?: number;
  stoppedBy: "restarts" | "time limit";
  extra?: string;
}

/**
 * Reads the restart count and the supervisor's RSS every `CURVE_POLL_MS`, keeping the first
 * reading and the first at or past every tenth of `RESTARTS`, until `RESTARTS` or the time limit.
 */
async function restartCurve(
  label: string,
  pid: () => number | undefined,
  restarts: () => Promise<number | undefined>,
): Promise<Pick<Curve, "points" | "stoppedBy">> {
  const step = Math.max(1, Math.round(RESTARTS / 10));
  const t0 = performance.now();
  const points: CurvePoint[] = [];
  let next = 0;
  let lastPrinted = 0;
  while (true) {
    const n = await restarts();
    const rss = rssKiB(pid());
    const atMs = performance.now() - t0;
    if (rss === undefined) throw new Error(`${label}: the supervisor process is gone`);
    const overTime = atMs > TIME_LIMIT_MS;
    if (n !== undefined && (n >= next || n >= RESTARTS || overTime)) {
      points.push({ restarts: n, rssKiB: rss, atMs });
      next = (Math.floor(n / step) + 1) * step;
    }
    if (n !== undefined && n >= RESTARTS) return { points, stoppedBy: "restarts" };
    if (overTime) return { points, stoppedBy: "time limit" };
    if (atMs - lastPrinted > 30_000) {
      lastPrinted = atMs;
      console.log(`    ${label}: ${n ?? "?"} restarts after ${(atMs / 1000).toFixed(0)} s`);
    }
    await sleep(CURVE_POLL_MS);
  }
}

// --- prisn -------------------------------------------------------------------------------------

class PrisnSide {
  readonly dir = Deno.makeTempDirSync({ prefix: "prisn-bench-sup-" });
  readonly home = join(this.dir, "home");
  readonly paths: Paths = homePaths(this.home);
  readonly env = { PRISN_HOME: this.home };
  client?: AgentClient;
  readonly close: Cleanup;

  constructor() {
    this.close = cleanups.add(async () => {
      this.client?.close();
      const pid = agentPid(this.paths);
      await run(PRISN, ["agent", "stop"], { env: this.env }).catch(() => undefined);
      // Whatever `prisn agent stop` left running (it failed, or the agent is still going).
      if (pid) await terminate(pid);
      await Deno.remove(this.dir, { recursive: true }).catch(() => {});
    });
  }

  /** Starts the agent (via the CLI, as a user would) and connects to it. */
  async start(): Promise<void> {
    await this.ok("ls");
    this.client = new AgentClient(this.paths);
  }

  async ok(...args: string[]): Promise<Timed> {
    return checkExit(`prisn ${args.join(" ")}`, await run(PRISN, args, { env: this.env }));
  }

  detail(name: string): Promise<DeploymentDetail> {
    return this.client!.call<DeploymentDetail>("GET", `/v1/deployments/${name}`);
  }

  project(name: string, files: Record<string, string>): string {
    return writeProject(join(this.dir, "src", name), files);
  }

  /** "prisn.db 60 KiB + WAL 4 MiB" */
  dbSize(): string {
    const size = (file: string) => {
      try {
        return `${(Deno.statSync(file).size / 1024).toFixed(0)} KiB`;
      } catch {
        return "0 KiB";
      }
    };
    return `prisn.db ${size(this.paths.db)} + WAL ${size(this.paths.db + "-wal")}`;
  }
}

function restartToml(): string {
  return `[restart]\nbackoff_initial = "${BACKOFF}"\nbackoff_max = "${BACKOFF}"\n`;
}

async function prisnLatency(): Promise<RestartSample[]> {
  const p = new PrisnSide();
  try {
    await p.start();
    const port = freePort();
    const dir = p.project("crashy", {
      "main.js": CRASH_APP_JS,
      "prisn.toml": `name = "crashy"\nport = ${port}\nreplicas = 1\n${restartToml()}`,
    });
    await p.ok("deploy", dir);
    const replica = (await p.detail("crashy")).replicaStatus[0];
    if (!replica?.port) throw new Error("prisn: the crashy replica has no port");
    const pid = agentPid(p.paths);
    console.log(`  prisn: agent pid ${pid}, RSS ${mib(rssKiB(pid))} MiB idle`);
    return await restartLatency("prisn", replica.port, port);
  } finally {
    await p.close();
  }
}

async function prisnCurve(): Promise<Curve> {
  const p = new PrisnSide();
  try {
    await p.start();
    const pid = agentPid(p.paths);
    const idle = rssKiB(pid);
    const dbBefore = p.dbSize();
    const dir = p.project("crashloop", {
      "main.sh": EXIT_SH,
      "prisn.toml": `name = "crashloop"\ntype = "service"\nreplicas = 1\n${restartToml()}`,
    });
    await p.ok("deploy", dir);
    const curve = await restartCurve(
      "prisn",
      () => pid,
      async () => (await p.detail("crashloop")).replicaStatus[0]?.restarts,
    );
    const dbAfter = p.dbSize();
    await p.ok("delete", "crashloop");
    await sleep(3_000);
    return {
      idle,
      ...curve,
      afterRemoval: rssKiB(pid),
      extra: `${dbBefore} before, ${dbAfter} after the restarts`,
    };
  } finally {
    await p.close();
  }
}

// --- PM2 ---------------------------------------------------------------------------------------

/** A PM2_HOME whose commands the cleanup kills; `close` closes it (else the cleanup does). */
function pm2Home(bin: string): { p: Pm2Home; close: Cleanup } {
  const p = new Pm2Home(bin, { run });
  return { p, close: cleanups.add(() => p.close()) };
}

/**
 * Writes `files` to the project folder NAME and `pm2 start`s it as one fork-mode app NAME: its
 * first file the script, `app` further PM2 app fields.
 */
async function startApp(
  p: Pm2Home,
  name: string,
  options: { files: Record<string, string>; app: Record<string, unknown> },
): Promise<void> {
  const dir = writeProject(join(p.dir, name), options.files);
  const script = join(dir, Object.keys(options.files)[0]);
  const apps = [{ name, script, cwd: dir, exec_mode: "fork", ...options.app }];
  await p.ok("start", await p.writeEcosystem(apps));
}

async function pm2Latency(bin: string): Promise<RestartSample[]> {
  const { p, close } = pm2Home(bin);
  try {
    const port = freePort();
    // PM2 defaults otherwise: autorestart, restart_delay 0, min_uptime 1s, max_restarts 16.
    await startApp(p, "crashy", {
      files: { "main.js": CRASH_APP_JS },
      app: { instances: 1, env: { PORT: String(port) } },
    });
    await waitServing(port);
    console.log(`  pm2: daemon pid ${p.daemonPid()}, RSS ${mib(rssKiB(p.daemonPid()))} MiB idle`);
    return await restartLatency("pm2", port);
  } finally {
    await close();
  }
}

async function pm2Curve(bin: string): Promise<Curve> {
  const { p, close } = pm2Home(bin);
  try {
    await p.ok("ping"); // starts the daemon
    const pid = p.daemonPid();
    const idle = rssKiB(pid);
    await startApp(p, "crashloop", {
      files: { "main.sh": EXIT_SH },
      app: {
        interpreter: "bash",
        autorestart: true,
        restart_delay: 0,
        // Never "errored": restarts within min_uptime count as unstable, and max_restarts of them
        // stop the app.
        min_uptime: 100,
        max_restarts: 1_000_000_000,
      },
    });
    let status = "";
    const curve = await restartCurve("pm2", () => pid, async () => {
      const app = (await p.jlist()).find((a) => a.name === "crashloop");
      status = app?.pm2_env.status ?? "missing";
      return app?.pm2_env.restart_time;
    });
    await p.ok("delete", "crashloop");
    await sleep(3_000);
    return { idle, ...curve, afterRemoval: rssKiB(pid), extra: `app status last seen: ${status}` };
  } finally {
    await close();
  }
}

// --- report ------------------------------------------------------------------------------------

function printLatency(prisn?: RestartSample[], pm2?: RestartSample[]): void {
  const direct = prisn && stats(prisn.map((s) => s.direct));
  const proxied = prisn && stats(prisn.map((s) => s.proxied!));
  const peer = pm2 && stats(pm2.map((s) => s.direct));
  console.log("\n(a) crash request sent → first HTTP 200 from the new process (ms)");
  printTable(STATS_HEADERS, [
    ...(direct && proxied
      ? [
        statsRow("prisn, app's own PORT", direct),
        statsRow("prisn, service port (proxy)", proxied),
      ]
      : []),
    ...(peer ? [statsRow("pm2, app's port", peer)] : []),
  ]);
  if (direct && proxied && peer) {
    console.log(
      `ratio prisn/pm2 (app's own port): p50 ${(direct.p50 / peer.p50).toFixed(2)}x, ` +
        `p95 ${(direct.p95 / peer.p95).toFixed(2)}x; ` +
        `through prisn's service port: p50 ${(proxied.p50 / peer.p50).toFixed(2)}x, ` +
        `p95 ${(proxied.p95 / peer.p95).toFixed(2)}x`,
    );
  }
}

interface CurveSummary {
  growth: number;
  /** From the first point at or past a tenth of the restarts to the end: the steady slope. */
  lateGrowth: number;
  end: number;
}

function summarize(label: string, c?: Curve): CurveSummary | undefined {
  if (!c || c.points.length === 0) return undefined;
  const first = c.points[0];
  const second = c.points[Math.min(1, c.points.length - 1)];
  const last = c.points[c.points.length - 1];
  const growth = (last.rssKiB ?? 0) - (first.rssKiB ?? 0);
  const lateGrowth = (last.rssKiB ?? 0) - (second.rssKiB ?? 0);
  const peak = Math.max(...c.points.map((p) => p.rssKiB ?? 0));
  const rate = (last.restarts - first.restarts) / ((last.atMs - first.atMs) / 1000 || 1);
  console.log(
    `${label}: ${last.restarts} restarts in ${(last.atMs / 1000).toFixed(0)} s ` +
      `(${rate.toFixed(0)}/s, stopped by ${c.stoppedBy}); RSS ${mib(first.rssKiB)} → ` +
      `${mib(last.rssKiB)} MiB: growth ${mib(growth)} MiB (${mib(lateGrowth)} MiB of it after ` +
      `restart ${second.restarts}), peak ${mib(peak)} MiB, ${mib(c.afterRemoval)} MiB 3 s ` +
      `after the app was removed` + (c.extra ? `; ${c.extra}` : ""),
  );
  return { growth, lateGrowth, end: last.rssKiB ?? 0 };
}

function printCurves(prisn?: Curve, pm2?: Curve): void {
  console.log(
    `\n(b) supervisor RSS (MiB) while it restarts \`exit 1\` (bash), target ${RESTARTS} restarts`,
  );
  const rows: string[][] = [];
  const count = Math.max(prisn?.points.length ?? 0, pm2?.points.length ?? 0);
  const cell = (c: Curve | undefined, i: number) => {
    const pt = c?.points[i];
    return pt ? [String(pt.restarts), mib(pt.rssKiB), (pt.atMs / 1000).toFixed(0)] : ["", "", ""];
  };
  rows.push(["idle", mib(prisn?.idle), "", "", mib(pm2?.idle), ""]);
  for (let i = 0; i < count; i++) rows.push([...cell(prisn, i), ...cell(pm2, i)]);
  rows.push(["removed", mib(prisn?.afterRemoval), "", "", mib(pm2?.afterRemoval), ""]);
  printTable(["prisn restarts", "agent RSS", "s", "pm2 restarts", "daemon RSS", "s"], rows);
  const a = summarize("prisn", prisn);
  const b = summarize("pm2", pm2);
  if (a && b) {
    const ratio = (x: number, y: number) => (x > 0 && y > 0 ? `${(x / y).toFixed(2)}x` : "-");
    console.log(
      `ratio prisn/pm2: RSS growth ${ratio(a.growth, b.growth)}, RSS at the end ` +
        `${ratio(a.end, b.end)}; growth after the first tenth: prisn ${mib(a.lateGrowth)} MiB, ` +
        `pm2 ${mib(b.lateGrowth)} MiB (ratio ${ratio(a.lateGrowth, b.lateGrowth)})`,
    );
  }
}

async function main(): Promise<void> {
  const pm2 = WITH_PM2 ? await ensurePm2(run) : undefined;
  console.log(
    `supervisor bench: ${
      [WITH_PRISN && "prisn", pm2 && `pm2 ${pm2.version}`].filter(Boolean)
        .join(" vs ")
    } (${machineLine()}, node ${await nodeVersion()})`,
  );
  console.log(
    `prisn [restart] backoff_initial = backoff_max = "${BACKOFF}" (prisn.toml refuses "0ms"); ` +
      `pm2 restart_delay 0`,
  );
  if (PART === "a" || PART === "all") {
    console.log(
      `\n(a) restart latency: ${SAMPLES} crashes each (+${WARMUP} warm-up), ` +
        `${CRASH_GAP_MS} ms apart, polling every ${POLL_MS} ms`,
    );
    const prisn = WITH_PRISN ? await prisnLatency() : undefined;
    const peer = pm2 ? await pm2Latency(pm2.bin) : undefined;
    printLatency(prisn, peer);
  }
  if (PART === "b" || PART === "all") {
    console.log(
      `\n(b) crash loop: up to ${RESTARTS} restarts or ${TIME_LIMIT_MS / 1000} s each, ` +
        `sampled every ${CURVE_POLL_MS} ms`,
    );
    let prisn: Curve | undefined;
    let peer: Curve | undefined;
    try {
      if (WITH_PRISN) prisn = await prisnCurve();
      if (pm2) peer = await pm2Curve(pm2.bin);
    } finally {
      printCurves(prisn, peer);
    }
  }
}

async function nodeVersion(): Promise<string> {
  return (await run("node", ["--version"])).stdout.trim();
}

if (import.meta.main) await runBench("supervisor_bench", main, () => cleanups.runAll());
