/**
 * Shared helpers for the benchmarks in bench/: a temporary PRISN_HOME with its CLI, a timed
 * command runner, percentiles and aligned printing. Benchmarks print figures; nothing here fails
 * on a time.
 */
import { join } from "node:path";
import { type Paths, paths as homePaths } from "../core/paths.ts";
import { processAlive as alive } from "../runtime/process.ts";

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

/** Runs a command to completion and times it (spawn → exit), stdin closed. */
export async function timed(
  command: string,
  args: string[],
  options: { env?: Record<string, string>; cwd?: string } = {},
): Promise<Timed> {
  const start = performance.now();
  const out = await new Deno.Command(command, {
    args,
    env: options.env,
    cwd: options.cwd,
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
  #onSignal = () => {
    console.error("interrupted: stopping the benchmark's agent and removing its files");
    this.close().finally(() => Deno.exit(130));
  };

  constructor(prefix = "prisn-bench-") {
    this.dir = Deno.makeTempDirSync({ prefix });
    this.home = join(this.dir, "home");
    this.paths = homePaths(this.home);
    this.env = { PRISN_HOME: this.home };
    Deno.addSignalListener("SIGINT", this.#onSignal);
    Deno.addSignalListener("SIGTERM", this.#onSignal);
  }

  /** Runs `prisn ARGS` against this home and times it. */
  cli(...args: string[]): Promise<Timed> {
    return timed(PRISN, args, { env: this.env });
  }

  /** Runs `prisn ARGS` and throws unless it exits 0; returns the result. */
  async ok(...args: string[]): Promise<Timed> {
    const r = await this.cli(...args);
    if (r.code !== 0) {
      throw new Error(`prisn ${args.join(" ")} exited ${r.code}: ${(r.stderr || r.stdout).trim()}`);
    }
    return r;
  }

  /** Stops this home's agent (and all it runs) and removes the scratch folder. Idempotent. */
  close(): Promise<void> {
    this.#closed ??= (async () => {
      Deno.removeSignalListener("SIGINT", this.#onSignal);
      Deno.removeSignalListener("SIGTERM", this.#onSignal);
      const stop = await this.cli("agent", "stop").catch(() => undefined);
      if (stop?.code !== 0) await this.#killAgent();
      await Deno.remove(this.dir, { recursive: true }).catch(() => {});
    })();
    return this.#closed;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  /** Last resort when `prisn agent stop` failed: signal the agent pid recorded in this home. */
  async #killAgent(): Promise<void> {
    const text = await Deno.readTextFile(join(this.paths.state, "agent.pid")).catch(() => "");
    const pid = Number(text.trim());
    if (!pid) return;
    try {
      Deno.kill(pid, "SIGTERM");
    } catch {
      return;
    }
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline && alive(pid)) await sleep(50);
    if (alive(pid)) {
      try {
        Deno.kill(pid, "SIGKILL");
      } catch { /* gone */ }
    }
  }
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

/**
 * A Python http.server app for benches: listens on $PORT and answers every GET with `body`, a
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


ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
`;
}
