import { flatKey } from "../core/namespace.ts";
import { settingsOf } from "../core/settings.ts";
import type { DeploySpec } from "../core/spec.ts";
import type { RunRecord, RunTrigger } from "../core/types.ts";
import type { AgentContext } from "./context.ts";
import type { Launch } from "./launch.ts";
import { describeDropped } from "./logs.ts";
import type { ProcessDriver } from "./driver.ts";
import { TaskRunner } from "./task_runner.ts";

export interface RunRequest {
  /** The run id its ticket got (the run is recorded as pending already). */
  id: string;
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
  /** Starts its process. */
  driver: ProcessDriver;
}

export function newRunId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(4));
  return "run-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * One execution of a job or cronjob, from a ticket already recorded as pending: then running, then completed or
 * failed with its exit code; output goes to logs/NAME/DAY/<run-id>.log. A run over its
 * `timeout` is stopped (SIGTERM to its group, grace, SIGKILL) and recorded as timed out.
 */
export class Run {
  readonly id: string;
  readonly done: Promise<RunRecord>;
  #task?: TaskRunner;
  #stopReason?: string;

  constructor(readonly ctx: AgentContext, readonly request: RunRequest) {
    this.id = request.id;
    this.done = this.#execute();
  }

  get pid(): number | undefined {
    return this.#task?.handle?.pid;
  }

  /** Stops the run (graceful, then kill) and records why. */
  async stop(reason: string): Promise<void> {
    this.#stopReason ??= reason;
    await this.#task?.stop(settingsOf(this.request.spec).stopGraceMs);
    await this.done;
  }

  async #execute(): Promise<RunRecord> {
    const { ctx, request } = this;
    const log = ctx.logs.writer(request.deployment, this.id, {
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
    const { stopGraceMs, timeoutMs } = settingsOf(request.spec);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const task = new TaskRunner(ctx, {
      driver: request.driver,
      id: this.id,
      deployment: request.deployment,
      request: {
        spec: { ...request.launch, env },
        output: log,
        name: `${flatKey(request.deployment)}.${this.id}`,
        resources: request.spec.resources,
      },
      hooks: {
        poststart: (handle) => {
          ctx.records.updateRun(this.id, { status: "running", startedAt, pid: handle.pid });
          if (timeoutMs !== undefined) {
            timer = setTimeout(() => {
              this.#stopReason ??= `timed out after ${request.spec.timeout}`;
              task.stop(stopGraceMs);
            }, timeoutMs);
          }
        },
      },
    });
    this.#task = task;
    if (this.#stopReason) task.stop(stopGraceMs); // stopped before it began
    const outcome = await task.run();
    clearTimeout(timer);
    if (outcome.kind !== "exited") {
      if (outcome.kind === "not-started") {
        log.writeLines(
          [`could not start ${request.launch.command}: ${outcome.error.message}`],
          "prisn",
        );
      }
      log.close();
      ctx.records.updateRun(this.id, {
        status: "failed",
        startedAt,
        finishedAt: Date.now(),
        reason: outcome.kind === "not-started" ? "could not start" : this.#stopReason,
        lastError: log.recentErrors().at(-1) ??
          (outcome.kind === "not-started" ? outcome.error.message : undefined),
      });
      return ctx.records.getRun(this.id)!;
    }
    const exit = outcome.status;
    const ok = exit.code === 0 && !exit.signal && !this.#stopReason && !exit.oomKilled;
    const reason = this.#stopReason ??
      (exit.oomKilled ? "OOMKilled" : exit.signal ? `killed by ${exit.signal}` : undefined);
    ctx.records.updateRun(this.id, {
      status: ok ? "completed" : "failed",
      finishedAt: Date.now(),
      exitCode: exit.code,
      reason,
      lastError: ok ? undefined : log.recentErrors().at(-1),
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
