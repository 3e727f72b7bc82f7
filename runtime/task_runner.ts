import { expandCommand } from "../core/command.ts";
import type { AgentContext } from "./context.ts";
import type { ExitStatus, ProcessDriver, ProcessHandle, StartRequest } from "./driver.ts";

/** What one start of a task came to. */
export type TaskOutcome =
  | { kind: "exited"; status: ExitStatus; handle: ProcessHandle; ranMs: number }
  | { kind: "not-started"; error: Error }
  | { kind: "stopped-before-start" };

/** Steps a replica or a run adds around one process start; each optional. */
export interface TaskHooks {
  /** Before the start; what it throws counts as a failed start. */
  prestart?(): void | Promise<void>;
  /** Right after the start, with the live process. */
  poststart?(handle: ProcessHandle): void;
  /** Once the process and its group are gone (also when it was stopped). */
  exited?(status: ExitStatus, handle: ProcessHandle): void | Promise<void>;
}

/**
 * One process start of a replica or a run, in the order Nomad's task runner keeps: prestart →
 * start → poststart → wait → exited. The process is recorded (pid and kernel start ticks, so the
 * next agent can stop it after a crash) from start until exit. `stop()` is idempotent and also
 * works before the start: the task then never starts.
 */
export class TaskRunner {
  #handle?: ProcessHandle;
  #stopGraceMs?: number;
  #stopped?: Promise<void>;

  constructor(
    readonly ctx: AgentContext,
    readonly options: {
      driver: ProcessDriver;
      /** The process record's id: `DEPLOYMENT/REPLICA` or a run id. */
      id: string;
      deployment: string;
      request: StartRequest;
      hooks?: TaskHooks;
    },
  ) {}

  get handle(): ProcessHandle | undefined {
    return this.#handle;
  }

  async run(): Promise<TaskOutcome> {
    const { ctx, options } = this;
    const hooks = options.hooks ?? {};
    if (this.#stopGraceMs !== undefined) return { kind: "stopped-before-start" };
    let handle: ProcessHandle;
    try {
      await hooks.prestart?.();
      if (this.#stopGraceMs !== undefined) return { kind: "stopped-before-start" };
      handle = await options.driver.start(expanded(options.request));
    } catch (e) {
      return { kind: "not-started", error: e as Error };
    }
    this.#handle = handle;
    ctx.records.putProcess({
      id: options.id,
      deployment: options.deployment,
      pid: handle.pid,
      startTicks: handle.startTicks,
    });
    hooks.poststart?.(handle);
    if (this.#stopGraceMs !== undefined) handle.stop(this.#stopGraceMs); // stopped while starting
    const status = await handle.exited;
    ctx.records.deleteProcess(options.id);
    await hooks.exited?.(status, handle);
    return { kind: "exited", status, handle, ranMs: Date.now() - handle.startedAt };
  }

  /** Stops the process (SIGTERM to its group, grace, SIGKILL), or its start if not yet begun. */
  stop(graceMs: number): Promise<void> {
    this.#stopGraceMs ??= graceMs;
    this.#stopped ??= (async () => {
      await this.#handle?.stop(graceMs);
    })();
    return this.#stopped;
  }
}

/** The request with its command's references expanded from the process's whole environment. */
function expanded(request: StartRequest): StartRequest {
  const { spec } = request;
  if (!spec.expand) return request;
  const [command, ...args] = expandCommand([spec.command, ...spec.args], {
    ...Deno.env.toObject(),
    ...spec.env,
  });
  return { ...request, spec: { ...spec, command, args, expand: false } };
}
