import { settingsOf } from "../core/settings.ts";
import type { DeploySpec } from "../core/spec.ts";
import type { RunRecord, RunTrigger } from "../core/types.ts";
import type { AgentContext } from "./context.ts";
import type { Launch } from "./launch.ts";
import { describeDropped, LogWriter } from "./logs.ts";
import { type GroupProcess, spawnLimited } from "./process.ts";
import type { LimitGroup } from "./limits.ts";

export interface RunRequest {
  deployment: string;
  version: string;
  spec: DeploySpec;
  launch: Launch;
  trigger: RunTrigger;
  /** Extra env for this run only (`prisn run NAME --env K=V`). */
  env?: Record<string, string>;
  scheduledAt?: number;
  attempt?: number;
  parent?: string;
  /** A resource-limit group for the run's process (undefined: no limits). */
  limits?: (name: string) => Promise<LimitGroup | undefined>;
}

export function newRunId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(4));
  return "run-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * One execution of a job or cronjob: recorded as pending, then running, then completed or
 * failed with its exit code; output goes to logs/NAME/DAY/<run-id>.log. A run over its
 * `timeout` is stopped (SIGTERM to its group, grace, SIGKILL) and recorded as timed out.
 */
export class Run {
  readonly id = newRunId();
  readonly done: Promise<RunRecord>;
  #process?: GroupProcess;
  #stopReason?: string;
  #started: Promise<void>;
  #markStarted!: () => void;

  constructor(readonly ctx: AgentContext, readonly request: RunRequest) {
    this.#started = new Promise((r) => this.#markStarted = r);
    const now = Date.now();
    ctx.records.insertRun({
      id: this.id,
      deployment: request.deployment,
      version: request.version,
      status: "pending",
      trigger: request.trigger,
      node: ctx.node,
      attempt: request.attempt ?? 1,
      parent: request.parent,
      scheduledAt: request.scheduledAt,
    }, now);
    this.done = this.#execute();
  }

  get pid(): number | undefined {
    return this.#process?.pid;
  }

  /** Stops the run (graceful, then kill) and records why. */
  async stop(reason: string): Promise<void> {
    this.#stopReason ??= reason;
    await this.#started;
    await this.#process?.stop(settingsOf(this.request.spec).stopGraceMs);
    await this.done;
  }

  async #execute(): Promise<RunRecord> {
    const { ctx, request } = this;
    const log = new LogWriter(ctx.paths, request.deployment, this.id, {
      redact: request.launch.redact,
      rateBytes: settingsOf(request.spec).logRateBytes,
      onDropped: (d) =>
        ctx.event(request.deployment, "LogsDropped", `${this.id}: ${describeDropped(d)}`),
    });
    const env: Record<string, string> = {
      ...request.launch.env,
      ...request.env,
      PRISN_RUN_ID: this.id,
    };
    if (request.scheduledAt !== undefined) {
      env.PRISN_SCHEDULED_TIME = new Date(request.scheduledAt).toISOString();
    }
    const startedAt = Date.now();
    let proc: GroupProcess;
    let group: LimitGroup | undefined;
    try {
      ({ proc, group } = await spawnLimited({ ...request.launch, env }, {
        output: log,
        limits: request.limits,
        name: `${request.deployment}.${this.id}`,
      }));
    } catch (e) {
      log.writeLines(
        [`prisn: could not start ${request.launch.command}: ${(e as Error).message}`],
        "err",
      );
      log.close();
      ctx.records.updateRun(this.id, {
        status: "failed",
        startedAt,
        finishedAt: Date.now(),
        reason: "could not start",
      });
      this.#markStarted();
      return ctx.records.getRun(this.id)!;
    }
    this.#process = proc;
    ctx.records.updateRun(this.id, { status: "running", startedAt, pid: proc.pid });
    ctx.records.putProcess({
      id: this.id,
      deployment: request.deployment,
      pid: proc.pid,
      startTicks: proc.startTicks,
    });
    this.#markStarted();
    if (this.#stopReason) proc.stop(settingsOf(request.spec).stopGraceMs);

    let timer: ReturnType<typeof setTimeout> | undefined;
    const { timeoutMs } = settingsOf(request.spec);
    if (timeoutMs !== undefined) {
      const ms = timeoutMs;
      timer = setTimeout(() => {
        this.#stopReason ??= `timed out after ${request.spec.timeout}`;
        proc.stop(settingsOf(request.spec).stopGraceMs);
      }, ms);
    }
    const exit = await proc.exited;
    clearTimeout(timer);
    ctx.records.deleteProcess(this.id);
    const oom = (await group?.oomKilled()) ?? false;
    await group?.destroy();
    const ok = exit.code === 0 && !exit.signal && !this.#stopReason && !oom;
    const reason = this.#stopReason ??
      (oom ? "OOMKilled" : exit.signal ? `killed by ${exit.signal}` : undefined);
    ctx.records.updateRun(this.id, {
      status: ok ? "completed" : "failed",
      finishedAt: Date.now(),
      exitCode: exit.code,
      reason,
    });
    if (!ok) {
      ctx.event(
        request.deployment,
        "RunFailed",
        `${this.id} failed: ${reason ?? `exit code ${exit.code}`}`,
      );
    }
    return ctx.records.getRun(this.id)!;
  }
}
