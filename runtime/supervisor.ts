import { notFound } from "../core/errors.ts";
import { settingsOf } from "../core/settings.ts";
import type { DeploySpec } from "../core/spec.ts";
import type { RunRecord, RunTrigger } from "../core/types.ts";
import type { AgentContext } from "./context.ts";
import { delay } from "./context.ts";
import { type Launch, prepareLaunch } from "./launch.ts";
import { removeStreams } from "./logs.ts";
import { killRecordedGroup } from "./process.ts";
import { ResourceControl } from "./resources.ts";
import { Run, type RunRequest } from "./run.ts";
import { type ProcessDriver, RealDriver } from "./driver.ts";
import { Service } from "./service.ts";
import { StartQueue } from "./start_queue.ts";

export interface SupervisorOptions {
  /** Starts processes. @default a RealDriver with this home's resource control */
  driver?: ProcessDriver;
  /** Replicas of the whole agent starting at once. @default DEFAULT_START_PARALLELISM */
  startParallelism?: number;
}

/**
 * Keeps actual processes in line with the recorded desired state: one Service per service
 * deployment, Runs for jobs and cronjobs. The agent calls it; it never touches the CLI.
 */
export class Supervisor {
  readonly services = new Map<string, Service>();
  readonly runs = new Map<string, Run>();
  /** Per deployment, the launch of the version last asked for (one each: bounded). */
  #launches = new Map<string, { version: string; launch: Promise<Launch>; ready?: Launch }>();
  #stopping = new AbortController();
  #exclusive = new Map<string, Promise<unknown>>();

  readonly resources: ResourceControl;

  /** The agent's start queue: how many replicas start at once, deployments served in turn. */
  readonly starts: StartQueue;

  constructor(readonly ctx: AgentContext, options: SupervisorOptions = {}) {
    this.resources = new ResourceControl(ctx.paths.home);
    this.starts = new StartQueue(options.startParallelism);
    this.driver = options.driver ?? new RealDriver(this.resources);
  }

  /** How replicas and runs start their processes. */
  readonly driver: ProcessDriver;

  /** Runs `fn` after every earlier change to deployment `name` has finished (one at a time). */
  exclusive<T>(name: string, fn: () => Promise<T>): Promise<T> {
    const before = this.#exclusive.get(name) ?? Promise.resolve();
    const run = before.then(fn, fn);
    const tail = run.catch(() => {});
    this.#exclusive.set(name, tail);
    tail.then(() => {
      if (this.#exclusive.get(name) === tail) this.#exclusive.delete(name);
    });
    return run;
  }

  /** How to start a version, resolved once per agent (env builds are cached on disk too). */
  launch(spec: DeploySpec, version: string): Promise<Launch> {
    const known = this.#launches.get(spec.name);
    if (known?.version === version) return known.launch;
    const entry: { version: string; launch: Promise<Launch>; ready?: Launch } = {
      version,
      launch: prepareLaunch(this.ctx, spec, version),
    };
    this.#launches.set(spec.name, entry);
    entry.launch.then((l) => entry.ready = l, () => {
      if (this.#launches.get(spec.name) === entry) this.#launches.delete(spec.name);
    });
    return entry.launch;
  }

  /** The launch of a version if this agent has resolved it already. */
  launchIfKnown(name: string, version: string): Launch | undefined {
    const known = this.#launches.get(name);
    return known?.version === version ? known.ready : undefined;
  }

  /** Rolls a service to a version (see Service.rollout). */
  async rolloutService(spec: DeploySpec, version: string, replicas: number): Promise<void> {
    const launch = await this.launch(spec, version);
    const service = this.services.get(spec.name) ??
      new Service(this.ctx, spec.name, { driver: this.driver, starts: this.starts });
    this.services.set(spec.name, service);
    await service.rollout({ version, spec, launch, replicas });
  }

  /** Starts a run of a job or cronjob at its active version (or `version`). */
  async startRun(
    name: string,
    options: {
      trigger: RunTrigger;
      env?: Record<string, string>;
      scheduledAt?: number;
      version?: string;
    },
  ): Promise<Run> {
    const d = this.ctx.records.getDeployment(name);
    if (!d) throw notFound(`deployment "${name}" not found: see prisn ls`);
    const version = options.version ?? d.version;
    const spec = this.ctx.records.getVersion(name, version)!.spec;
    const launch = await this.launch(spec, version);
    return this.#run({
      deployment: name,
      version,
      spec,
      launch,
      trigger: options.trigger,
      env: options.env,
      scheduledAt: options.scheduledAt,
      driver: this.driver,
    });
  }

  #run(request: RunRequest): Run {
    const run = new Run(this.ctx, request);
    this.runs.set(run.id, run);
    run.done.then((record) => {
      this.runs.delete(run.id);
      this.#prune(request.deployment, request.spec);
      this.#maybeRetry(request, record);
    });
    return run;
  }

  /** Applies the history limits: older finished runs and their log files go. */
  #prune(deployment: string, spec: DeploySpec): void {
    const { history } = settingsOf(spec);
    const removed = this.ctx.records.pruneRuns(deployment, history.successful, history.failed);
    if (removed.length) removeStreams(this.ctx.paths, deployment, new Set(removed));
  }

  /** A failed run with retries left is tried again after a backoff, linked to its first attempt. */
  async #maybeRetry(request: RunRequest, record: RunRecord) {
    const { retries, retryBackoffMs: base } = settingsOf(request.spec);
    const attempt = request.attempt ?? 1;
    if (record.status !== "failed" || attempt > retries) return;
    if (record.reason === "stopped" || record.reason === "replaced") return;
    await delay(base * 2 ** (attempt - 1), this.#stopping.signal);
    if (this.#stopping.signal.aborted) return;
    if (!this.ctx.records.getDeployment(request.deployment)) return;
    this.ctx.event(
      request.deployment,
      "RunRetry",
      `retrying ${record.id} (attempt ${attempt + 1} of ${retries + 1})`,
    );
    this.#run({
      ...request,
      trigger: "retry",
      attempt: attempt + 1,
      parent: request.parent ?? record.id,
    });
  }

  activeRuns(name: string): Run[] {
    return [...this.runs.values()].filter((r) => r.request.deployment === name);
  }

  async scale(name: string, replicas: number): Promise<void> {
    await this.services.get(name)?.scale(replicas);
  }

  /** Stops everything of a deployment (service replicas and active runs). */
  async remove(name: string): Promise<void> {
    const service = this.services.get(name);
    this.services.delete(name);
    await Promise.all([
      service?.stop(),
      ...this.activeRuns(name).map((r) => r.stop("stopped")),
    ]);
    this.#launches.delete(name);
  }

  /**
   * At agent start: stop what an earlier agent left running (its recorded process groups —
   * replaced, not adopted: their log pipes died with that agent), mark its unfinished runs
   * failed, and start every service at its desired replica count.
   */
  async restore(): Promise<void> {
    const { records } = this.ctx;
    await Promise.all(
      records.listProcesses().map(async (p) => {
        if (await killRecordedGroup(p.pid, p.startTicks, 5_000)) {
          this.ctx.event(
            p.deployment,
            "Orphan",
            `stopped ${p.id} (pid ${p.pid}) left by an earlier agent`,
          );
        }
        records.deleteProcess(p.id);
      }),
    );
    await this.resources.cleanup().catch(() => []);
    for (const run of records.listRuns({ statuses: ["pending", "running"], limit: 10_000 })) {
      records.updateRun(run.id, {
        status: "failed",
        finishedAt: Date.now(),
        reason: "agent restarted",
      });
    }
    for (const d of records.listDeployments()) {
      if (d.type !== "service") continue;
      const spec = records.getVersion(d.name, d.version)!.spec;
      this.rolloutService(spec, d.version, d.replicas).catch((e) => {
        this.ctx.event(d.name, "RestoreFailed", (e as Error).message);
      });
    }
  }

  /** Stops every process this agent runs. */
  async shutdown(): Promise<void> {
    this.#stopping.abort();
    await Promise.all([
      ...[...this.services.values()].map((s) => s.stop()),
      ...[...this.runs.values()].map((r) => r.stop("agent stopped")),
    ]);
    await this.resources.cleanup({ removeRoot: true }).catch(() => []);
  }
}
