import type { Resources } from "../core/prisn_toml.ts";
import type { LogSink } from "../core/log_store.ts";
import type { OutputFifos } from "./output_fifos.ts";
import { type ExitInfo, type GroupProcess, type ProcessSpec, spawnLimited } from "./process.ts";
import type { ResourceControl } from "./resources.ts";

/** How a process ended; `oomKilled` when its limit group says the kernel killed it for memory. */
export interface ExitStatus extends ExitInfo {
  oomKilled: boolean;
}

/** One process start of a replica or a run. */
export interface StartRequest {
  spec: ProcessSpec;
  /** Where its stdout and stderr go: a LogWriter (own pipes) or a replica's OutputFifos. */
  output: LogSink | OutputFifos;
  /** Names its limit group, e.g. `api.api-0` or `nightly.run-1a2b3c4d`. */
  name: string;
  /** The spec's limits. @default none */
  resources?: Resources;
}

/** A started process, as the supervisor sees it. */
export interface ProcessHandle {
  readonly pid: number;
  /** The kernel's start time of the pid (0 where unknown), to recognise it after a restart. */
  readonly startTicks: number;
  readonly startedAt: number;
  readonly running: boolean;
  /** Settles once the process and its group are gone (and its limit group is removed). */
  readonly exited: Promise<ExitStatus>;
  /** SIGTERM to its group, SIGKILL after `graceMs`; idempotent, resolves with the exit. */
  stop(graceMs: number): Promise<ExitStatus>;
}

/**
 * Starts processes for replicas and runs (Nomad's task driver): the real one below, and a fake
 * for exact unit tests (runtime/fake_driver.ts). Throws when a process cannot be started.
 */
export interface ProcessDriver {
  start(request: StartRequest): Promise<ProcessHandle>;
}

/** Real processes: each in its own process group and, where the host has them, its own cgroup. */
export class RealDriver implements ProcessDriver {
  constructor(readonly resources?: ResourceControl) {}

  async start(request: StartRequest): Promise<ProcessHandle> {
    const { proc, group } = await spawnLimited(request.spec, {
      output: request.output,
      name: request.name,
      limits: this.resources ? (name) => this.resources!.group(name, request.resources) : undefined,
    });
    const exited = proc.exited.then(async (exit) => {
      const oomKilled = (await group?.oomKilled()) ?? false;
      await group?.destroy();
      return { ...exit, oomKilled };
    });
    return new RealHandle(proc, exited);
  }
}

class RealHandle implements ProcessHandle {
  constructor(readonly proc: GroupProcess, readonly exited: Promise<ExitStatus>) {}

  get pid(): number {
    return this.proc.pid;
  }
  get startTicks(): number {
    return this.proc.startTicks;
  }
  get startedAt(): number {
    return this.proc.startedAt;
  }
  get running(): boolean {
    return this.proc.running;
  }

  async stop(graceMs: number): Promise<ExitStatus> {
    await this.proc.stop(graceMs);
    return await this.exited;
  }
}
