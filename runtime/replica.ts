import { flatKey } from "../core/namespace.ts";
import { formatDuration } from "../core/duration.ts";
import type { Settings } from "../core/settings.ts";
import type { Resources } from "../core/prisn_toml.ts";
import type { AgentContext } from "./context.ts";
import { delay } from "./context.ts";
import type { Launch } from "./launch.ts";
import { describeDropped } from "./logs.ts";
import type { LogSink } from "../core/log_store.ts";
import { OutputFifos } from "./output_fifos.ts";
import { join } from "node:path";
import type { ExitStatus, ProcessDriver, ProcessHandle } from "./driver.ts";
import { TaskRunner } from "./task_runner.ts";
import { probe, probeHosts } from "./probe.ts";
import type { Release } from "./start_queue.ts";
import { newRunId } from "./run.ts";

export type ReplicaState =
  | "Starting"
  | "Running"
  | "Ready"
  | "CrashLoopBackOff"
  | "Failed"
  | "Stopped";

export interface ReplicaOptions {
  deployment: string;
  name: string;
  version: string;
  launch: Launch;
  /** The replica's own PORT; undefined for a service without a port. */
  port?: number;
  /**
   * Its node's address, given as HOST (listening there makes it reachable from other nodes).
   * @default "127.0.0.1"
   */
  host?: string;
  health: Settings["health"];
  restart: Settings["restart"];
  /** Between SIGTERM and SIGKILL. */
  stopGraceMs: number;
  /** Output logged per second at most (see LogWriterOptions); undefined: no limit. */
  logRateBytes?: number;
  /**
   * Waits for a place in the agent's start queue (see StartQueue); held from the first spawn until
   * the replica is first ready, exits, or `startTimeoutMs` passes. Undefined: start at once.
   */
  startSlot?: (signal: AbortSignal) => Promise<Release | undefined>;
  /** How long a start may hold its slot. @default 30 s */
  startTimeoutMs?: number;
  /** Starts its processes. */
  driver: ProcessDriver;
  /** The spec's resource limits. @default none */
  resources?: Resources;
  /** Finished runs kept per deployment (history.successful / history.failed). */
  history: Settings["history"];
  onReadyChange: (replica: Replica, ready: boolean) => void;
}

/**
 * One replica of a service: keeps its process running (restart with exponential backoff),
 * probes readiness and liveness, and reports ready/unready to the service. Each lifetime of its
 * process is a run in the run history (trigger "start", then "restart"): started with the
 * process, ended with its exit code, why it ended and its last stderr line.
 */
export class Replica {
  state: ReplicaState = "Starting";
  restarts = 0;
  lastExit?: ExitStatus;
  /** The last stderr lines of the latest start that ended (see LogSink.recentErrors). */
  lastErrors: string[] = [];
  #log?: LogSink;
  readonly createdAt = Date.now();
  #process?: ProcessHandle;
  #task?: TaskRunner;
  #ready = false;
  #stop = new AbortController();
  #loop?: Promise<void>;
  #readyWaiters: Array<(r: "ready" | "exited") => void> = [];
  /** Resolves once the replica has its start slot (or was stopped waiting for one). */
  #begun = Promise.withResolvers<void>();
  #releaseSlot?: Release;

  constructor(readonly ctx: AgentContext, readonly options: ReplicaOptions) {}

  get name(): string {
    return this.options.name;
  }
  get version(): string {
    return this.options.version;
  }
  get port(): number | undefined {
    return this.options.port;
  }
  get ready(): boolean {
    return this.#ready;
  }
  /**
   * Where this node reaches the replica's port: HOST when it listens there (or on every
   * address), else loopback; known once it passed a probe.
   */
  get listenHost(): string | undefined {
    return this.#listenHost;
  }
  /** Whether other nodes can reach it: it listens on its node's address, not on loopback only. */
  get reachable(): boolean {
    return this.#listenHost !== undefined && this.#listenHost === this.#host;
  }
  get #host(): string {
    return this.options.host ?? "127.0.0.1";
  }
  #listenHost?: string;
  get pid(): number | undefined {
    return this.#process?.running ? this.#process.pid : undefined;
  }

  start(): void {
    this.#loop ??= this.#run();
  }

  /** The last stderr lines: of the running process, else of the latest start. */
  recentErrors(): string[] {
    const running = this.#process?.running ? this.#process : undefined;
    return running && this.#log ? this.#log.recentErrors(running.startedAt) : this.lastErrors;
  }

  /**
   * Resolves when the replica is first ready, or its process exits before that, or time runs out;
   * the time counts from when it got its start slot, not while it queued for one.
   */
  async waitReady(timeoutMs: number): Promise<"ready" | "exited" | "timeout"> {
    if (this.#ready) return "ready";
    await this.#begun.promise;
    if (this.#ready) return "ready";
    if (this.#stop.signal.aborted) return "exited";
    return await new Promise((resolve) => {
      const t = setTimeout(() => resolve("timeout"), timeoutMs);
      this.#readyWaiters.push((r) => {
        clearTimeout(t);
        resolve(r);
      });
    });
  }

  /** Stops the process (SIGTERM to the group, grace, SIGKILL) and the restart loop. Idempotent. */
  async stop(): Promise<void> {
    this.#stop.abort();
    this.#begun.resolve();
    this.#releaseSlot?.();
    this.#setReady(false);
    await this.#task?.stop(this.options.stopGraceMs);
    await this.#loop;
    this.state = "Stopped";
  }

  /** Runs the replica; its output goes through FIFOs kept for its whole life (see OutputFifos). */
  async #run(): Promise<void> {
    const { ctx, options } = this;
    const release = await options.startSlot?.(this.#stop.signal);
    this.#begun.resolve();
    if (this.#stop.signal.aborted) return release?.();
    let slotTimer: ReturnType<typeof setTimeout> | undefined;
    if (release) {
      this.#releaseSlot = () => {
        clearTimeout(slotTimer);
        release();
      };
      slotTimer = setTimeout(this.#releaseSlot, options.startTimeoutMs ?? 30_000);
    }
    const log = ctx.logs.writer(options.deployment, options.name, {
      redact: options.launch.redact,
      rateBytes: options.logRateBytes,
      onDropped: (d) =>
        ctx.event(options.deployment, "LogsDropped", `${options.name}: ${describeDropped(d)}`),
    });
    this.#log = log;
    const fifos = ctx.output
      ? await OutputFifos.create(
        ctx.output,
        join(ctx.paths.state, "fifo"),
        `${flatKey(options.deployment)}.${options.name}`,
        log,
      ).catch((e) => {
        ctx.event(
          options.deployment,
          "OutputPipes",
          `${options.name}: ${e.message}; per-start pipes`,
        );
        return undefined;
      })
      : undefined;
    try {
      await this.#restartLoop(fifos ?? log, log, fifos);
    } finally {
      this.#releaseSlot?.();
      await fifos?.close();
      log.close();
    }
  }

  async #restartLoop(
    output: LogSink | OutputFifos,
    log: LogSink,
    fifos?: OutputFifos,
  ): Promise<void> {
    const { ctx, options } = this;
    let backoff = options.restart.initialMs;
    let streak = 0; // restarts since the replica last ran stably
    let run: ReplicaRun | undefined;
    const begin = (startedAt: number, pid?: number) => {
      run = new ReplicaRun(ctx, options, run ? "restart" : "start", startedAt, pid);
      return run;
    };
    while (!this.#stop.signal.aborted) {
      let unhealthy = false;
      const env: Record<string, string> = { ...options.launch.env, PRISN_REPLICA: options.name };
      if (options.port !== undefined) {
        env.PORT = String(options.port);
        env.HOST = this.#host;
      }
      let probing: Promise<void> = Promise.resolve();
      const task = new TaskRunner(ctx, {
        driver: options.driver,
        id: `${options.deployment}/${options.name}`,
        deployment: options.deployment,
        request: {
          spec: { ...options.launch, env },
          output,
          name: `${flatKey(options.deployment)}.${options.name}`,
          resources: options.resources,
        },
        hooks: {
          poststart: (handle) => {
            this.#process = handle;
            this.state = "Running";
            begin(handle.startedAt, handle.pid);
            probing = this.#probeLoop(handle).then((healthy) => {
              unhealthy = !healthy;
            });
          },
        },
      });
      this.#task = task;
      const outcome = await task.run();
      this.#task = undefined;
      if (outcome.kind === "stopped-before-start") break;
      if (outcome.kind === "not-started") {
        this.lastErrors = [`could not start: ${outcome.error.message}`];
        begin(Date.now()).end({ reason: `could not start: ${outcome.error.message}` });
        ctx.event(
          options.deployment,
          "SpawnFailed",
          `replica ${options.name} could not start: ${outcome.error.message}`,
        );
        this.#notify("exited");
        this.state = "CrashLoopBackOff";
        await delay(backoff, this.#stop.signal);
        backoff = Math.min(backoff * 2, options.restart.maxMs);
        continue;
      }
      await probing;
      fifos?.flush(); // what it wrote before it exited reaches the log (and recentErrors)
      this.lastErrors = log.recentErrors(outcome.handle.startedAt);
      this.#setReady(false);
      const stopped = this.#stop.signal.aborted;
      run?.end({
        exit: outcome.status,
        reason: stopped ? "stopped" : unhealthy ? "failed its health check" : undefined,
        lastError: this.lastErrors.at(-1),
      });
      if (stopped) break;

      this.lastExit = outcome.status;
      this.#notify("exited");
      if (outcome.ranMs >= options.restart.stableMs) {
        backoff = options.restart.initialMs;
        streak = 0;
      }
      const { maxRestarts } = options.restart;
      if (maxRestarts !== undefined && streak >= maxRestarts) {
        ctx.event(
          options.deployment,
          "GaveUp",
          `replica ${options.name} ${
            describe(this.lastExit)
          }; gave up after ${streak} restart(s) in a row (restart.max_restarts)`,
        );
        this.state = "Failed";
        return;
      }
      streak++;
      ctx.event(
        options.deployment,
        outcome.status.oomKilled ? "OOMKilled" : "ReplicaExited",
        `replica ${options.name} ${describe(this.lastExit)}, restarting in ${
          formatDuration(backoff)
        }`,
      );
      this.state = this.restarts > 0 && outcome.ranMs < options.restart.stableMs
        ? "CrashLoopBackOff"
        : "Starting";
      await delay(backoff, this.#stop.signal);
      backoff = Math.min(backoff * 2, options.restart.maxMs);
      if (!this.#stop.signal.aborted) this.restarts++;
    }
  }

  /** Probes until the process ends; false when it was stopped for failing its health check. */
  async #probeLoop(proc: ProcessHandle): Promise<boolean> {
    const { options } = this;
    if (options.port === undefined) {
      this.#setReady(true); // nothing to probe: running is ready
      return true;
    }
    const spec = {
      port: options.port,
      path: options.health.path,
      timeoutMs: options.health.timeoutMs,
      host: this.#host,
    };
    const stop = this.#stop.signal;
    // Readiness: poll quickly until the first pass, at HOST, else on loopback (an app that
    // ignores HOST serves its own node only).
    const hosts = [...new Set([this.#host, "127.0.0.1"])];
    while (proc.running && !stop.aborted) {
      const host = await probeHosts(spec, hosts);
      if (host !== undefined) {
        this.#listenHost = spec.host = host;
        break;
      }
      await delay(100, stop);
    }
    if (!proc.running || stop.aborted) return true;
    this.ctx.event(
      options.deployment,
      "ReplicaReady",
      `replica ${options.name} is ready (${
        spec.path ? `GET ${spec.path} answered 2xx` : `port ${spec.port} accepts connections`
      })`,
    );
    this.#setReady(true);
    // Liveness: periodic; N failures in a row restart the replica.
    let failures = 0;
    const exited = proc.exited.then(() => {});
    while (proc.running && !stop.aborted) {
      await Promise.race([delay(options.health.intervalMs, stop), exited]);
      if (!proc.running || stop.aborted) return true;
      if (await probe(spec)) {
        if (failures > 0) {
          this.ctx.event(
            options.deployment,
            "LivenessPassed",
            `replica ${options.name} passed its health check again after ${failures} failure(s)`,
          );
        }
        failures = 0;
        continue;
      }
      failures++;
      this.ctx.event(
        options.deployment,
        "LivenessFailed",
        `replica ${options.name} failed its health check (${failures}/${options.health.failures})`,
      );
      if (failures >= options.health.failures) {
        this.#setReady(false);
        await proc.stop(options.stopGraceMs);
        return false;
      }
    }
    return true;
  }

  #setReady(ready: boolean): void {
    if (ready === this.#ready) return;
    this.#ready = ready;
    if (ready) {
      this.state = "Ready";
      this.#notify("ready");
    } else if (this.state === "Ready") {
      this.state = "Running";
    }
    this.options.onReadyChange(this, ready);
  }

  #notify(r: "ready" | "exited"): void {
    this.#releaseSlot?.(); // the start is over, either way
    const waiters = this.#readyWaiters;
    this.#readyWaiters = [];
    for (const w of waiters) w(r);
  }
}

/** One lifetime of a replica's process, as a run in the run history. */
class ReplicaRun {
  readonly id = newRunId();

  constructor(
    readonly ctx: AgentContext,
    readonly options: ReplicaOptions,
    trigger: "start" | "restart",
    startedAt: number,
    pid?: number,
  ) {
    ctx.records.recordRun({
      id: this.id,
      deployment: options.deployment,
      version: options.version,
      status: "running",
      trigger,
      node: ctx.node,
      attempt: 1,
      startedAt,
      pid,
      replica: options.name,
    }, Date.now());
  }

  /**
   * Ends the run: completed when prisn stopped it or it exited 0, else failed; then the history
   * limits apply (history.successful, history.failed).
   */
  end(how: { exit?: ExitStatus; reason?: string; lastError?: string }): void {
    const { exit } = how;
    const reason = how.reason ??
      (exit?.oomKilled ? "OOMKilled" : exit?.signal ? `killed by ${exit.signal}` : undefined);
    const ok = how.reason === "stopped" || (exit?.code === 0 && reason === undefined);
    this.ctx.records.updateRun(this.id, {
      status: ok ? "completed" : "failed",
      finishedAt: Date.now(),
      exitCode: exit?.code,
      reason,
      lastError: how.lastError,
    });
    // A replica's runs have no log streams of their own (its lines are in the replica's), so
    // only the records go.
    const { successful, failed } = this.options.history;
    this.ctx.records.pruneRuns(this.options.deployment, successful, failed);
  }
}

/** "exited with code 1", "was killed by SIGKILL", "was OOMKilled…". */
export function describe(exit: Replica["lastExit"]): string {
  if (!exit) return "exited";
  if (exit.oomKilled) return "was killed for exceeding its memory limit (OOMKilled)";
  return exit.signal ? `was killed by ${exit.signal}` : `exited with code ${exit.code}`;
}
