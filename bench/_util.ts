/**
 * Shared helpers for the benchmarks in bench/: a temporary PRISN_HOME with its CLI, a temporary
 * PM2_HOME with the pm2 CLI, a timed command runner, process figures from /proc, settings from the
 * environment, percentiles and aligned printing. Benchmarks print figures; nothing here fails on a
 * time.
 */
import { join } from "node:path";
import { type Paths, paths as homePaths } from "../core/paths.ts";
import { processAlive } from "../runtime/process.ts";

/** The checkout's root folder. */
export const ROOT: string = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
/** The CLI as a user runs it from a checkout: the `prisn` launcher script. */
export const PRISN: string = join(ROOT, "prisn");

const decoder = new TextDecoder();

export interface Timed {
  code: number;
  stdout: string;
  stderr: string;
  /** Wall time from spawning the process until it exited. */
  ms: number;
}

/** What a command printed and how it exited (a `Timed` without the time). */
export type Output = Omit<Timed, "ms">;

/**
 * Runs a command to completion and times it (spawn → exit), stdin closed. Aborting `signal` kills
 * the command (SIGTERM).
 */
export async function timed(
  command: string,
  args: string[],
  options: { env?: Record<string, string>; cwd?: string; signal?: AbortSignal } = {},
): Promise<Timed> {
  const start = performance.now();
  const out = await new Deno.Command(command, {
    args,
    env: options.env,
    cwd: options.cwd,
    signal: options.signal,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const ms = performance.now() - start;
  return {
    code: out.code,
    stdout: decoder.decode(out.stdout),
    stderr: decoder.decode(out.stderr),
    ms,
  };
}

/**
 * A bench's entry point: runs `main`, then `cleanUp` (which stops everything the bench started),
 * also on SIGINT or SIGTERM (then exits 130). If `main` throws, prints "NAME: its stack" and exits
 * 1 after the cleanup.
 */
export async function runBench(
  name: string,
  main: () => Promise<void>,
  cleanUp: () => Promise<unknown>,
): Promise<void> {
  const removeListeners = onInterrupt(
    `\n${name}: interrupted, stopping everything it started…`,
    cleanUp,
  );
  let failed = false;
  try {
    await main();
  } catch (e) {
    failed = true;
    console.error(`${name}: ${(e as Error).stack ?? e}`);
  } finally {
    await cleanUp();
    removeListeners();
  }
  if (failed) Deno.exit(1);
}

/** How a bench runs its commands: `timed`, or a wrapper that its cleanup can kill. */
export type Runner = (
  command: string,
  args: string[],
  options?: { env?: Record<string, string>; cwd?: string },
) => Promise<Timed>;

/** `r` if the command exited 0; else throws "WHAT exited CODE: its output". */
export function checkExit<T extends Output>(what: string, r: T): T {
  if (r.code !== 0) throw new Error(`${what} exited ${r.code}: ${(r.stderr || r.stdout).trim()}`);
  return r;
}

/**
 * On SIGINT or SIGTERM: prints `message` to stderr, waits for `cleanUp`, exits 130. Returns the
 * function that removes the listeners again.
 */
export function onInterrupt(message: string, cleanUp: () => Promise<unknown>): () => void {
  const listener = () => {
    console.error(message);
    cleanUp().finally(() => Deno.exit(130));
  };
  Deno.addSignalListener("SIGINT", listener);
  Deno.addSignalListener("SIGTERM", listener);
  return () => {
    Deno.removeSignalListener("SIGINT", listener);
    Deno.removeSignalListener("SIGTERM", listener);
  };
}

/**
 * A temporary PRISN_HOME and the CLI bound to it. `close()` (or `await using`) stops the agent the
 * CLI started there and removes the folder, also when the benchmark fails or is interrupted.
 */
export class BenchHome implements AsyncDisposable {
  /** Scratch folder: holds `home/` and whatever the benchmark generates. */
  readonly dir: string;
  readonly home: string;
  readonly paths: Paths;
  readonly env: Record<string, string>;
  #closed?: Promise<void>;
  #removeListeners: () => void;

  constructor(prefix = "prisn-bench-") {
    this.dir = Deno.makeTempDirSync({ prefix });
    this.home = join(this.dir, "home");
    this.paths = homePaths(this.home);
    this.env = { PRISN_HOME: this.home };
    this.#removeListeners = onInterrupt(
      "interrupted: stopping the benchmark's agent and removing its files",
      () => this.close(),
    );
  }

  /** Runs `prisn ARGS` against this home and times it. */
  cli(...args: string[]): Promise<Timed> {
    return timed(PRISN, args, { env: this.env });
  }

  /** Runs `prisn ARGS` and throws unless it exits 0; returns the result. */
  async ok(...args: string[]): Promise<Timed> {
    return checkExit(`prisn ${args.join(" ")}`, await this.cli(...args));
  }

  /** Stops this home's agent (and all it runs) and removes the scratch folder. Idempotent. */
  close(): Promise<void> {
    this.#closed ??= (async () => {
      this.#removeListeners();
      const stop = await this.cli("agent", "stop").catch(() => undefined);
      // Last resort when `prisn agent stop` failed: signal the agent pid recorded in this home.
      const pid = stop?.code !== 0 ? agentPid(this.paths) : undefined;
      if (pid) await terminate(pid, 10_000);
      await Deno.remove(this.dir, { recursive: true }).catch(() => {});
    })();
    return this.#closed;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/** A pid written to `file` (a pid file), or undefined when there is none. */
function readPid(file: string): number | undefined {
  try {
    return Number(Deno.readTextFileSync(file).trim()) || undefined;
  } catch {
    return undefined;
  }
}

/** The pid of the agent of a PRISN_HOME, from its state/agent.pid. */
export function agentPid(paths: Paths): number | undefined {
  return readPid(join(paths.state, "agent.pid"));
}

/** SIGTERM, up to `graceMs` to go, then SIGKILL. */
export async function terminate(pid: number, graceMs = 5_000): Promise<void> {
  if (!processAlive(pid)) return;
  try {
    Deno.kill(pid, "SIGTERM");
  } catch {
    return;
  }
  const deadline = Date.now() + graceMs;
  while (Date.now() < deadline && processAlive(pid)) await sleep(50);
  if (processAlive(pid)) {
    try {
      Deno.kill(pid, "SIGKILL");
    } catch { /* gone */ }
  }
}

/**
 * A size field of /proc/PID/status in KiB (VmRSS: resident memory, VmHWM: its peak), or undefined
 * when the process is gone.
 */
export function procStatusKiB(
  pid: number | undefined,
  field: "VmRSS" | "VmHWM" = "VmRSS",
): number | undefined {
  if (!pid) return undefined;
  try {
    const text = Deno.readTextFileSync(`/proc/${pid}/status`);
    const m = new RegExp(`^${field}:\\s+(\\d+)\\s+kB`, "m").exec(text);
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

/** KiB as MiB with one decimal, "-" when unknown. */
export function mib(kib: number | undefined): string {
  return kib === undefined ? "-" : (kib / 1024).toFixed(1);
}

/**
 * Writes `files` (name → text) into `dir`, made if need be; a text that starts with "#!" is made
 * executable. Returns `dir`.
 */
export function writeProject(dir: string, files: Record<string, string>): string {
  Deno.mkdirSync(dir, { recursive: true });
  for (const [file, text] of Object.entries(files)) {
    Deno.writeTextFileSync(join(dir, file), text, { mode: text.startsWith("#!") ? 0o755 : 0o644 });
  }
  return dir;
}

/** What the benches read of a `pm2 jlist` entry. */
export interface Pm2Process {
  name: string;
  pid: number;
  pm2_env: { status: string; restart_time: number };
}

/**
 * A temporary PM2_HOME and the pm2 CLI `bin` bound to it. Commands go through `run` (default
 * `timed`); `close()` kills the daemon and every process left with this PM2_HOME, and removes the
 * folder.
 */
export class Pm2Home {
  /** Scratch folder: holds `pm2-home/` and whatever the benchmark generates. */
  readonly dir: string;
  readonly pm2Home: string;
  readonly env: Record<string, string>;
  readonly #run: Runner;
  #closed?: Promise<void>;

  constructor(
    readonly bin: string,
    options: {
      /** @default "prisn-bench-pm2-" */
      prefix?: string;
      /** @default timed */
      run?: Runner;
    } = {},
  ) {
    this.dir = Deno.makeTempDirSync({ prefix: options.prefix ?? "prisn-bench-pm2-" });
    this.pm2Home = join(this.dir, "pm2-home");
    this.env = { PM2_HOME: this.pm2Home };
    this.#run = options.run ?? timed;
  }

  /** Runs `pm2 ARGS` against this home (cwd: `dir`) and times it. */
  cli(...args: string[]): Promise<Timed> {
    return this.#run(this.bin, args, { env: this.env, cwd: this.dir });
  }

  /** Runs `pm2 ARGS` and throws unless it exits 0; returns the result. */
  async ok(...args: string[]): Promise<Timed> {
    return checkExit(`pm2 ${args.join(" ")}`, await this.cli(...args));
  }

  /** The God daemon's pid, from PM2_HOME/pm2.pid. */
  daemonPid(): number | undefined {
    return readPid(join(this.pm2Home, "pm2.pid"));
  }

  /**
   * Pids of the processes with this PM2_HOME in their environment, all but this one: pm2 CLIs,
   * the daemon (also one still starting, before it wrote pm2.pid) and the apps it started.
   */
  #processes(): number[] {
    const mark = `PM2_HOME=${this.pm2Home}`;
    const pids: number[] = [];
    for (const entry of Deno.readDirSync("/proc")) {
      if (!/^\d+$/.test(entry.name) || Number(entry.name) === Deno.pid) continue;
      try {
        const environ = Deno.readTextFileSync(`/proc/${entry.name}/environ`);
        if (environ.split("\0").includes(mark)) pids.push(Number(entry.name));
      } catch { /* exited meanwhile, or not ours to read */ }
    }
    return pids;
  }

  /** `pm2 jlist`, parsed from its first "[" (pm2 may print other lines before the JSON). */
  async jlist(): Promise<Pm2Process[]> {
    const out = (await this.ok("jlist")).stdout;
    const start = out.indexOf("[");
    if (start < 0) throw new Error(`pm2 jlist printed no list: ${out.slice(0, 200)}`);
    return JSON.parse(out.slice(start)) as Pm2Process[];
  }

  /** Writes `{ apps }` to `dir`/ecosystem.json, for `pm2 start`; returns its path. */
  async writeEcosystem(apps: Record<string, unknown>[]): Promise<string> {
    const file = join(this.dir, "ecosystem.json");
    await Deno.writeTextFile(file, JSON.stringify({ apps }, null, 2));
    return file;
  }

  /**
   * Kills the daemon (`pm2 kill`, then signals) and every process left with this PM2_HOME, and
   * removes the folder. Idempotent. `pm2 kill` runs through `timed`, not `run`: a bench's runner
   * may be killing its commands by then.
   */
  close(): Promise<void> {
    this.#closed ??= (async () => {
      // A pm2 CLI killed halfway through a command may launch a new daemon meanwhile.
      for (let i = 0; i < 3; i++) {
        const pid = this.daemonPid();
        if (pid && processAlive(pid)) {
          await timed(this.bin, ["kill"], { env: this.env, cwd: this.dir }).catch(() => undefined);
          await terminate(pid);
        }
        // Whatever `pm2 kill` left (it failed, was never reached, or the daemon was starting).
        const left = this.#processes();
        if (left.length === 0) break;
        await Promise.all(left.map((p) => terminate(p, 2_000)));
      }
      await Deno.remove(this.dir, { recursive: true }).catch(() => {});
    })();
    return this.#closed;
  }
}

/**
 * The pm2 CLI from `npm i pm2` in $PRISN_BENCH_PM2_DIR (default /tmp/prisn-bench-pm2), installed
 * there on first use (through `run`), then reused.
 */
export async function ensurePm2(run: Runner = timed): Promise<{ bin: string; version: string }> {
  const dir = Deno.env.get("PRISN_BENCH_PM2_DIR") ?? "/tmp/prisn-bench-pm2";
  const bin = join(dir, "node_modules", ".bin", "pm2");
  const pkg = join(dir, "node_modules", "pm2", "package.json");
  const version = () => JSON.parse(Deno.readTextFileSync(pkg)).version as string;
  try {
    Deno.statSync(bin);
    return { bin, version: version() };
  } catch { /* install it */ }
  console.log(`installing pm2 into ${dir} (npm i pm2)…`);
  await Deno.mkdir(dir, { recursive: true });
  try {
    Deno.statSync(join(dir, "package.json"));
  } catch {
    await Deno.writeTextFile(join(dir, "package.json"), '{ "private": true }\n');
  }
  checkExit(
    "npm i pm2",
    await run("npm", ["i", "pm2", "--no-audit", "--no-fund", "--loglevel=error"], { cwd: dir }),
  );
  return { bin, version: version() };
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** A TCP port that was free on 127.0.0.1 a moment ago. */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

/** The p-th percentile (0–100) by nearest rank. */
export function percentile(samples: number[], p: number): number {
  if (samples.length === 0) return NaN;
  const sorted = [...samples].sort((a, b) => a - b);
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))];
}

export interface Stats {
  n: number;
  min: number;
  p50: number;
  p95: number;
  max: number;
  mean: number;
}

export function stats(samples: number[]): Stats {
  return {
    n: samples.length,
    min: Math.min(...samples),
    p50: percentile(samples, 50),
    p95: percentile(samples, 95),
    max: Math.max(...samples),
    mean: samples.reduce((a, b) => a + b, 0) / samples.length,
  };
}

/** Milliseconds with a precision that suits their size: "4.21", "48.3", "1234". */
export function ms(value: number): string {
  if (!Number.isFinite(value)) return "-";
  if (value < 10) return value.toFixed(2);
  if (value < 100) return value.toFixed(1);
  return value.toFixed(0);
}

/**
 * Times `run` `runs` times after `warmup` untimed calls; `run` returns the milliseconds it
 * measured (e.g. a `Timed.ms`).
 */
export async function sample(
  run: () => Promise<number>,
  options: { runs?: number; warmup?: number } = {},
): Promise<number[]> {
  for (let i = 0; i < (options.warmup ?? 2); i++) await run();
  const samples: number[] = [];
  for (let i = 0; i < (options.runs ?? 30); i++) samples.push(await run());
  return samples;
}

/** Left-aligned columns, two spaces apart, printed to stdout. */
export function printTable(headers: string[], rows: string[][]): void {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  for (const row of [headers, ...rows]) {
    console.log(row.map((c, i) => c.padEnd(widths[i])).join("  ").trimEnd());
  }
}

/** A row of `printTable` for a Stats: n, min, p50, p95, max in ms. */
export function statsRow(label: string, s: Stats): string[] {
  return [label, String(s.n), ms(s.min), ms(s.p50), ms(s.p95), ms(s.max)];
}

export const STATS_HEADERS = ["case", "n", "min ms", "p50 ms", "p95 ms", "max ms"];

/** What the figures were measured on: deno version, cores, OS. */
export function machineLine(): string {
  return `deno ${Deno.version.deno}, ${navigator.hardwareConcurrency} cores, ${Deno.build.target}`;
}

/**
 * The CLI start floor: `prisn --version` (no agent, no socket), timed the same way as the
 * commands it is compared with.
 */
export async function cliFloor(options: { runs?: number } = {}): Promise<Stats> {
  const samples = await sample(async () => {
    const r = await timed(PRISN, ["--version"]);
    if (r.code !== 0) throw new Error(`prisn --version exited ${r.code}: ${r.stderr.trim()}`);
    return r.ms;
  }, { runs: options.runs ?? 30, warmup: 3 });
  return stats(samples);
}

/** A whole-number setting from the environment (e.g. a bench's iteration count), else `fallback`. */
export function envInt(name: string, fallback: number): number {
  const text = Deno.env.get(name);
  if (text === undefined || text === "") return fallback;
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1) {
    throw new Error(`${name}="${text}" is not valid: give a whole number of 1 or more`);
  }
  return n;
}

/** A comma-separated list of whole numbers from the environment (like envInt), else `fallback`. */
export function envInts(name: string, fallback: number[]): number[] {
  const text = Deno.env.get(name);
  if (text === undefined || text.trim() === "") return fallback;
  const values = text.split(",").map((s) => Number(s.trim()));
  if (values.some((n) => !Number.isInteger(n) || n < 1)) {
    throw new Error(`${name}="${text}" is not valid: give whole numbers of 1 or more, e.g. 10,100`);
  }
  return values;
}

/**
 * A Python http.server app for benches: listens on $HOST:$PORT and answers every GET with `body`, a
 * Python expression evaluated once at start (after `prelude`, Python statements).
 */
export function pythonHttpServer(body: string, prelude = ""): string {
  return `import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
${prelude}
BODY = (${body} + "\\n").encode()


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)

    def log_message(self, *args):
        pass


ThreadingHTTPServer((os.environ.get("HOST", "127.0.0.1"), int(os.environ["PORT"])), Handler).serve_forever()
`;
}
