import assert from "node:assert/strict";
import { join } from "node:path";
import { type ErrorCode, PrisnError } from "../core/errors.ts";
import type { RunRecord } from "../core/types.ts";
import { processAlive } from "../runtime/process.ts";
import { socketsOnPort, tableName } from "../runtime/kernel_balancer.ts";
import { SocketSteering } from "../runtime/socket_steering.ts";

/** Whether a process is alive (not gone, not a zombie). */
export const alive = processAlive;
export { freePort } from "../runtime/context.ts";

const root = new URL("..", import.meta.url).pathname;
const decoder = new TextDecoder();

/** Polls `condition` until it is truthy (returns its value) or fails after `timeoutMs`. */
export async function waitFor<T>(
  condition: () => T | Promise<T>,
  options: { timeoutMs?: number; intervalMs?: number; what?: string } = {},
): Promise<NonNullable<T>> {
  const deadline = Date.now() + (options.timeoutMs ?? 10_000);
  let last: unknown;
  while (true) {
    try {
      const value = await condition();
      if (value) return value as NonNullable<T>;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) {
      throw new Error(
        `timed out waiting for ${options.what ?? "condition"}` +
          (last ? `: ${(last as Error).message}` : ""),
      );
    }
    await new Promise((r) => setTimeout(r, options.intervalMs ?? 100));
  }
}

/**
 * A check for `assert.throws` and `assert.rejects`: the error is a PrisnError with `code` and a
 * one-line message that is `message` (a string) or matches it (a RegExp).
 */
export function isPrisnError(code: ErrorCode, message: string | RegExp): (error: unknown) => true {
  return (error) => {
    assert.ok(error instanceof PrisnError, `not a PrisnError: ${error}`);
    assert.equal(error.code, code, error.message);
    assert.ok(!error.message.includes("\n"), `not one line: ${error.message}`);
    if (typeof message === "string") assert.equal(error.message, message);
    else assert.match(error.message, message);
    return true;
  };
}

/** Asserts that `fn` throws an INVALID PrisnError (see {@link isPrisnError}). */
export function assertInvalid(fn: () => unknown, message: string | RegExp): void {
  assert.throws(fn, isPrisnError("INVALID", message));
}

/** True once a run has ended, either way. */
export function finished(run: RunRecord): boolean {
  return run.status === "completed" || run.status === "failed";
}

/** Settles with `promise`, or rejects after `ms`, so a hung step fails the test instead. */
export async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} took longer than ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** True when `command ARGS…` runs and exits 0 on this host (for skipping tests that need it). */
export async function hasCommand(command: string, args = ["--version"]): Promise<boolean> {
  try {
    return (await new Deno.Command(command, { args, stdout: "null", stderr: "null" }).output())
      .success;
  } catch {
    return false;
  }
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** How long one CLI command may take in a test (a cold env build included). */
const CLI_TIMEOUT_MS = 120_000;

/** A temporary PRISN_HOME with a CLI bound to it; `close()` stops its agent and removes it. */
export class TestHome {
  readonly dir: string;
  readonly home: string;
  /** Extra environment of every CLI call (and so of the agent it starts). */
  readonly env: Record<string, string>;

  constructor(options: { env?: Record<string, string> } = {}) {
    this.dir = Deno.makeTempDirSync({ prefix: "prisn-test-" });
    this.home = join(this.dir, "home");
    this.env = options.env ?? {};
  }

  /**
   * Runs the real CLI (`deno run main.ts …`) against this home, whatever its exit code; fails
   * the test instead of hanging when it takes longer than two minutes.
   */
  async cli(...args: string[]): Promise<CliResult> {
    const out = await within(
      new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", "--quiet", join(root, "main.ts"), ...args],
        env: { ...this.env, PRISN_HOME: this.home },
        stdin: "null",
      }).output(),
      CLI_TIMEOUT_MS,
      `prisn ${args.join(" ")}`,
    );
    return {
      code: out.code,
      stdout: decoder.decode(out.stdout),
      stderr: decoder.decode(out.stderr),
    };
  }

  /** Starts the CLI in the background (e.g. a deploy a test hook holds); its output is piped. */
  spawn(...args: string[]): Deno.ChildProcess {
    return new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--quiet", join(root, "main.ts"), ...args],
      env: { ...this.env, PRISN_HOME: this.home },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
  }

  /** Runs the CLI and fails the test unless it exits 0. */
  async ok(...args: string[]): Promise<string> {
    const r = await this.cli(...args);
    if (r.code !== 0) {
      throw new Error(`prisn ${args.join(" ")} exited ${r.code}: ${r.stderr || r.stdout}`);
    }
    return r.stdout;
  }

  /** Runs the CLI with -o json and parses the answer. */
  async json<T = Record<string, unknown>>(...args: string[]): Promise<T> {
    return JSON.parse(await this.ok(...args, "-o", "json")) as T;
  }

  /** Writes files (path → content; a leading "#!" makes it executable) into a new project folder. */
  project(name: string, files: Record<string, string>): string {
    const dir = join(this.dir, name);
    for (const [path, content] of Object.entries(files)) {
      const file = join(dir, path);
      Deno.mkdirSync(join(file, ".."), { recursive: true });
      Deno.writeTextFileSync(file, content);
      if (content.startsWith("#!")) Deno.chmodSync(file, 0o755);
    }
    return dir;
  }

  agentPid(): number | undefined {
    try {
      return Number(Deno.readTextFileSync(join(this.home, "state", "agent.pid")).trim());
    } catch {
      return undefined;
    }
  }

  /**
   * Stops the agent (and with it every process it runs), then removes the temp folder. A process
   * still running in the folder after that (the replica of an agent that had to be killed) is
   * killed too, so no test leaves an orphan behind.
   */
  async close(): Promise<void> {
    const pid = this.agentPid();
    await this.cli("agent", "stop").catch(() => {});
    if (pid && alive(pid)) {
      try {
        Deno.kill(pid, "SIGKILL");
      } catch { /* gone */ }
    }
    await killProcessesUnder(this.dir);
    await removeKernelTable(this.home);
    await Deno.remove(this.dir, { recursive: true }).catch(() => {});
  }
}

/** Asserts a failed CLI call: non-zero exit and exactly one line on stderr matching `pattern`. */
export function assertOneLineError(r: CliResult, pattern: RegExp, what: string): string {
  assert.notEqual(r.code, 0, `${what}: exits non-zero (stdout: ${r.stdout})`);
  const text = r.stderr.trim();
  assert.equal(text.split("\n").length, 1, `${what}: one line on stderr, got:\n${text}`);
  assert.match(text, pattern, what);
  return text;
}

/** A project folder `dir/name` holding an executable main.sh with `script`. */
export async function scriptProject(dir: string, name: string, script: string): Promise<string> {
  const folder = join(dir, name);
  await Deno.mkdir(folder, { recursive: true });
  await Deno.writeTextFile(join(folder, "main.sh"), script, { mode: 0o755 });
  return folder;
}

/** Pids of processes whose working folder is under `dir` (a replica runs in its version). */
export async function processesUnder(dir: string): Promise<number[]> {
  const pids: number[] = [];
  for await (const e of Deno.readDir("/proc")) {
    if (!/^\d+$/.test(e.name) || Number(e.name) === Deno.pid) continue;
    try {
      if ((await Deno.readLink(`/proc/${e.name}/cwd`)).startsWith(dir + "/")) {
        pids.push(Number(e.name));
      }
    } catch { /* gone, or not ours to read */ }
  }
  return pids;
}

/**
 * Deletes the nftables table of an agent of `home` that was killed before it could (a kill -9 in
 * the cluster tests): left behind, every loopback connection on the machine passes its rules.
 */
export async function removeKernelTable(home: string): Promise<void> {
  try {
    await new Deno.Command("nft", {
      args: ["delete", "table", "ip", tableName(home)],
      stdout: "null",
      stderr: "null",
    }).output();
  } catch {
    // No nft: Deno throws at once, before any promise (and then there is no table either).
  }
}

/** SIGKILL to every process working under `dir`, with its process group (what it forked). */
export async function killProcessesUnder(dir: string): Promise<void> {
  for (const pid of await processesUnder(dir)) {
    try {
      Deno.kill(-pid, "SIGKILL");
    } catch {
      try {
        Deno.kill(pid, "SIGKILL");
      } catch { /* gone */ }
    }
  }
}

/** GET over loopback; the body text, or undefined on any failure. */
export async function httpGet(port: number, path = "/"): Promise<string | undefined> {
  try {
    const res = await fetch(`http://127.0.0.1:${port}${path}`, {
      signal: AbortSignal.timeout(3000),
    });
    const text = await res.text();
    return res.ok ? text : undefined;
  } catch {
    return undefined;
  }
}

/** Everything a test started, stopped in reverse order even when the test fails. */
export class Scope {
  #undo: (() => Promise<unknown> | unknown)[] = [];
  defer(undo: () => Promise<unknown> | unknown): void {
    this.#undo.push(undo);
  }
  async close(): Promise<void> {
    for (const undo of this.#undo.reverse()) {
      try {
        await undo();
      } catch { /* already gone */ }
    }
  }
}

/** Mounts a tmpfs of `size` at `dir`; the reason it cannot when it cannot (not root, no mount). */
export async function mountTmpfs(dir: string, size: string): Promise<string | undefined> {
  if (Deno.uid() !== 0) return "not root";
  await Deno.mkdir(dir, { recursive: true });
  const out = await new Deno.Command("mount", {
    args: ["-t", "tmpfs", "-o", `size=${size},mode=0700`, "tmpfs", dir],
    stderr: "piped",
  }).output();
  return out.success ? undefined : `mount -t tmpfs failed: ${new TextDecoder().decode(out.stderr)}`;
}

/** Writes zeros into `file` until the file system is full; returns the bytes written. */
export async function fill(file: string): Promise<number> {
  using f = await Deno.open(file, { write: true, create: true });
  const chunk = new Uint8Array(64 * 1024);
  let total = 0;
  let size = chunk.byteLength;
  while (size >= 512) {
    try {
      total += await f.write(chunk.subarray(0, size));
    } catch {
      size /= 2; // the last blocks: smaller writes take what is left
    }
  }
  return total;
}

/**
 * Runs `fn` with a small tmpfs of `size` mounted at a new temp folder, unmounted and removed
 * afterwards; prints why and skips `fn` where it cannot mount (not root).
 */
export async function withTmpfs(size: string, fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "prisn-tmpfs-" });
  try {
    const why = await mountTmpfs(dir, size);
    if (why) {
      console.log(`skipped: ${why}`);
      return;
    }
    try {
      await fn(dir);
    } finally {
      await new Deno.Command("umount", { args: ["-l", dir] }).output();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Listening TCP sockets on local `port` (one per SO_REUSEPORT listener), from /proc. */
export function listeners(port: number): number | undefined {
  return socketsOnPort(port, new Set(["0A"]));
}

/** Why this host cannot steer with sk_lookup (found by attaching and detaching), or undefined. */
export function steeringUnavailable(): string | undefined {
  const opened = SocketSteering.open();
  if (!(opened instanceof SocketSteering)) return opened.unavailable;
  opened.close();
  return undefined;
}
