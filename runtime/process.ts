import type { LimitGroup } from "./limits.ts";
import type { LogSink } from "../core/log_store.ts";
import type { OutputFifos } from "./output_fifos.ts";
import { type RunAs, runAsCommand } from "./run_as.ts";

export interface ExitInfo {
  code: number;
  signal?: Deno.Signal;
}

export interface ProcessSpec {
  command: string;
  args: string[];
  cwd: string;
  /** Added to the agent's own environment. */
  env: Record<string, string>;
  /**
   * `command` and `args` hold `$NAME` / `${NAME}` references (a prisn.toml `command`), expanded
   * from the process's whole environment right before each start (see TaskRunner).
   * @default false
   */
  expand?: boolean;
  /**
   * Who the program runs as (prisn.toml `user`): it is started through setpriv, innermost, after
   * the wrappers that join its limit group and open its output (see runtime/run_as.ts).
   * @default the agent's own user
   */
  runAs?: RunAs;
}

/**
 * A supervised process in its own process group (setsid). Its stdout and stderr are captured line
 * by line into a LogWriter, through pipes of its own (closed with the process), or into a
 * replica's OutputFifos that outlive it. Stopping signals the whole group, so children and
 * grandchildren go too.
 */
export class GroupProcess {
  readonly pid: number;
  readonly startTicks: number;
  readonly startedAt = Date.now();
  readonly exited: Promise<ExitInfo>;
  #child: Deno.ChildProcess;
  #done = false;
  #stopping?: Promise<ExitInfo>;

  constructor(spec: ProcessSpec, output: LogSink | OutputFifos) {
    // A new session (so a process group of its own): through util-linux `setsid`, which lets the
    // runtime spawn without a full fork of the agent; else Deno's `detached` (fork + setsid).
    const setsid = setsidPath();
    if (setsid && spec.command.startsWith("/")) {
      Deno.statSync(spec.command); // a missing program fails here, as a direct spawn would
    }
    const fifos = "wrap" in output ? output : undefined;
    const { command, args } = fifos ? fifos.wrap(spec.command, spec.args) : spec;
    this.#child = new Deno.Command(setsid ?? command, {
      args: setsid ? [command, ...args] : args,
      cwd: spec.cwd,
      env: spec.env,
      stdin: "null",
      stdout: fifos ? "null" : "piped",
      stderr: fifos ? "null" : "piped",
      detached: !setsid,
    }).spawn();
    this.pid = this.#child.pid;
    this.startTicks = processStartTicks(this.pid) ?? 0;
    if (fifos) {
      this.exited = this.#child.status.then((s) => {
        this.#done = true;
        killGroup(this.pid, "SIGKILL"); // anything the process left behind in its group
        return { code: s.code, signal: s.signal ?? undefined };
      });
      return;
    }
    const log = output as LogSink;
    const stopPumps = new AbortController();
    const drained = Promise.all([
      pump(this.#child.stdout, (b) => log.feed(b, "out"), stopPumps.signal),
      pump(this.#child.stderr, (b) => log.feed(b, "err"), stopPumps.signal),
    ]);
    this.exited = this.#child.status.then(async (s) => {
      this.#done = true;
      killGroup(this.pid, "SIGKILL"); // anything the process left behind in its group
      // A process that left the group (setsid) may hold the pipes: read on briefly, then stop.
      let timer: ReturnType<typeof setTimeout> | undefined;
      const late = new Promise<void>((r) => timer = setTimeout(r, DRAIN_GRACE_MS));
      await Promise.race([drained, late]);
      clearTimeout(timer);
      stopPumps.abort();
      await drained;
      log.close();
      return { code: s.code, signal: s.signal ?? undefined };
    });
  }

  get running(): boolean {
    return !this.#done;
  }

  /** SIGTERM to the group, then SIGKILL after `graceMs` if it is still there. Idempotent. */
  stop(graceMs: number): Promise<ExitInfo> {
    this.#stopping ??= this.#stop(graceMs);
    return this.#stopping;
  }

  async #stop(graceMs: number): Promise<ExitInfo> {
    if (!this.#done) {
      killGroup(this.pid, "SIGTERM");
      let timer: ReturnType<typeof setTimeout> | undefined;
      const timeout = new Promise<"timeout">((r) =>
        timer = setTimeout(() => r("timeout"), graceMs)
      );
      const first = await Promise.race([this.exited, timeout]);
      clearTimeout(timer);
      if (first === "timeout") killGroup(this.pid, "SIGKILL");
    }
    return await this.exited;
  }
}

/** Options for {@link spawnLimited}. */
export interface SpawnLimitedOptions {
  /**
   * Where the process's output goes: a LogWriter (own pipes; left open on failure, for the caller
   * to write and close), or a replica's OutputFifos.
   */
  output: LogSink | OutputFifos;
  /**
   * Makes the resource-limit group for this start.
   * @default no limits
   */
  limits?: (name: string) => Promise<LimitGroup | undefined>;
  /** The limit group's name, e.g. `api.r1` or `nightly.run-1a2b3c4d`. */
  name: string;
}

/**
 * Starts one process for a replica or a run: creates its limit group (when `limits` gives one),
 * wraps the command into it (run as `spec.runAs`, when set) and spawns it in its own process
 * group. When any step fails the new limit group is destroyed again and the error is thrown.
 */
export async function spawnLimited(
  spec: ProcessSpec,
  options: SpawnLimitedOptions,
): Promise<{ proc: GroupProcess; group?: LimitGroup }> {
  let group: LimitGroup | undefined;
  try {
    group = await options.limits?.(options.name);
    const program = spec.runAs ? runAsCommand(spec.runAs, spec.command, spec.args) : spec;
    const { command, args } = group ? group.wrap(program.command, program.args) : program;
    const proc = new GroupProcess({ command, args, cwd: spec.cwd, env: spec.env }, options.output);
    return { proc, group };
  } catch (error) {
    await group?.destroy();
    throw error;
  }
}

/** How long output is still read after the process exited, for pipes an escaped process holds. */
const DRAIN_GRACE_MS = 1000;

async function pump(
  stream: ReadableStream<Uint8Array>,
  sink: (b: Uint8Array) => void,
  signal: AbortSignal,
) {
  const reader = stream.getReader();
  const cancel = () => reader.cancel().catch(() => {});
  signal.addEventListener("abort", cancel, { once: true });
  try {
    while (true) {
      const { done, value } = await reader.read();
      if (done) break;
      sink(value);
    }
  } catch {
    // the pipe closed
  } finally {
    signal.removeEventListener("abort", cancel);
  }
}

let setsidCache: string | null | undefined;

/** util-linux `setsid` (execs in place: same pid, new session), or null where there is none. */
function setsidPath(): string | null {
  if (setsidCache === undefined) {
    setsidCache = null;
    if (Deno.build.os === "linux") {
      for (const p of ["/usr/bin/setsid", "/bin/setsid"]) {
        try {
          if (Deno.statSync(p).isFile) {
            setsidCache = p;
            break;
          }
        } catch { /* not here */ }
      }
    }
  }
  return setsidCache;
}

/** Signals a whole process group; false when it no longer exists. */
export function killGroup(pgid: number, signal: Deno.Signal): boolean {
  try {
    Deno.kill(-pgid, signal);
    return true;
  } catch {
    return false;
  }
}

/** The kernel's start time of a pid (field 22 of /proc/PID/stat), or undefined if it is gone. */
export function processStartTicks(pid: number): number | undefined {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return Number(fields[19]);
  } catch {
    return undefined;
  }
}

/**
 * Kills the process group of a process recorded by an earlier agent, if that very process
 * (same pid and start time) is still alive: SIGTERM, then SIGKILL after the grace period.
 */
export async function killRecordedGroup(
  pid: number,
  startTicks: number,
  graceMs: number,
): Promise<boolean> {
  const ticks = processStartTicks(pid);
  if (ticks === undefined || (startTicks !== 0 && ticks !== startTicks)) return false;
  killGroup(pid, "SIGTERM");
  const deadline = Date.now() + graceMs;
  while (Date.now() < deadline && processStartTicks(pid) === ticks && !isZombie(pid)) {
    await new Promise((r) => setTimeout(r, 50));
  }
  killGroup(pid, "SIGKILL");
  return true;
}

/** Whether a process exists and is not a zombie (zombies linger where pid 1 does not reap). */
export function processAlive(pid: number): boolean {
  try {
    Deno.kill(pid, "SIGCONT");
  } catch {
    return false;
  }
  return Deno.build.os !== "linux" || !isZombie(pid);
}

function isZombie(pid: number): boolean {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    return stat.slice(stat.lastIndexOf(")") + 2).startsWith("Z");
  } catch {
    return true;
  }
}
