import { deploymentNotFound, PrisnError } from "../core/errors.ts";
import { settingsOf } from "../core/settings.ts";
import type { DeploySpec } from "../core/spec.ts";
import type { RunRecord, RunStatus, RunTicket, RunTrigger } from "../core/types.ts";
import { type AgentContext, delay } from "./context.ts";
import { type Launch, prepareLaunch } from "./launch.ts";
import { killRecordedGroup } from "./process.ts";
import { ResourceControl } from "./resources.ts";
import { newRunId, Run, type RunRequest } from "./run.ts";
import type { Dispatcher } from "../core/dispatch.ts";
import { LocalDispatcher } from "./local_dispatch.ts";
import { formatDuration } from "../core/duration.ts";
import { type ProcessDriver, RealDriver } from "./driver.ts";
import { Service } from "./service.ts";
import { StartQueue } from "./start_queue.ts";

/** What a run is started with. */
export interface RunOptions {
  trigger: RunTrigger;
  /** Extra env for this run only. */
  env?: Record<string, string>;
  scheduledAt?: number;
  /** @default the active version */
  version?: string;
}

export interface SupervisorOptions {
  /** Starts processes. @default a RealDriver with this home's resource control */
  driver?: ProcessDriver;
  /** Run tickets. @default a LocalDispatcher over the records */
  dispatcher?: Dispatcher;
  /** Replicas of the whole agent starting at once. @default DEFAULT_START_PARALLELISM */
  startParallelism?: number;
}

/** How often service ports learn the other nodes' replicas (their heartbeats are read every 2 s). */
const REMOTE_SYNC_MS = 1_000;
/**
 * How long a ticket of a deployment this node does not know yet may wait for its mirror. A
 * mirror whose watch lived on a NATS server that went away is found stalled after two of its
 * 5 s checks and restarted: 5 s here failed runs as "no longer deployed" while it caught up.
 */
const UNKNOWN_TICKET_WAIT_MS = 30_000;
/** How often `submitRun` looks whether another node started the run. */
const ELSEWHERE_POLL_MS = 20;
/** Lost runs are looked for every this many remote syncs. */
const LOST_CHECK_EVERY = 2;

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
    this.dispatcher = options.dispatcher ?? new LocalDispatcher(ctx.records, ctx.node);
  }

  /** How replicas and runs start their processes. */
  readonly driver: ProcessDriver;
  /** Where run tickets go and come from. */
  readonly dispatcher: Dispatcher;
  #startWaiters = new Map<string, (run: Run | Error) => void>();
  #stopConsuming?: () => void;
  #unwatch?: () => void;
  #unplace?: () => void;
  #remoteTimer?: ReturnType<typeof setInterval>;

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
  async rolloutService(spec: DeploySpec, version: string, desired: number): Promise<void> {
    const replicas = this.dispatcher.replicasHere(spec.name, desired); // in a cluster, a share
    const launch = await this.launch(spec, version);
    const service = this.services.get(spec.name) ??
      new Service(this.ctx, spec.name, { driver: this.driver, starts: this.starts });
    this.services.set(spec.name, service);
    const ownsName = this.#owns(spec.name, desired);
    await service.rollout({ version, spec, launch, replicas, ownsName });
  }

  /**
   * Which replica names this node may use for a deployment (in a cluster, its share), at its
   * recorded replica count (`desired` before the first deploy has recorded one).
   */
  #owns(name: string, desired: number): (index: number) => boolean {
    return (index) => {
      const want = this.ctx.desired.getDeployment(name)?.replicas ?? desired;
      return this.dispatcher.ownsReplica?.(name, index, want) ?? true;
    };
  }

  /**
   * Submits a run of a job or cronjob at its active version (or `version`) and resolves with it
   * once it started (throws what kept it from starting, e.g. an env that cannot be built). The
   * run is recorded as pending before anything slow happens.
   */
  async startRun(
    name: string,
    options: RunOptions,
  ): Promise<Run> {
    const run = await (await this.#submitRun(name, options)).started;
    if (run instanceof Error) throw run;
    return run;
  }

  /**
   * Submits a run and resolves with its id once it started here, or after `waitMs` (it may run on
   * another node, or still be preparing); throws what kept it from starting here, if that came
   * within `waitMs`.
   */
  async submitRun(
    name: string,
    options: RunOptions,
    waitMs = 2_000,
  ): Promise<string> {
    const { id, started } = await this.#submitRun(name, options);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<undefined>((r) => timer = setTimeout(() => r(undefined), waitMs));
    // In a cluster another node may take it: its record (mirrored here) leaves "pending" then.
    let watching = true;
    const elsewhere = this.ctx.members
      ? [(async () => {
        while (watching) {
          await delay(ELSEWHERE_POLL_MS);
          const run = this.ctx.records.getRun(id);
          if (run && run.status !== "pending" && run.node !== this.ctx.node) return undefined;
        }
        return undefined;
      })()]
      : [];
    const result = await Promise.race([started, late, ...elsewhere]);
    watching = false;
    clearTimeout(timer);
    this.#startWaiters.delete(id);
    if (result instanceof Error) throw result;
    return id;
  }

  async #submitRun(
    name: string,
    options: RunOptions,
  ): Promise<{ id: string; started: Promise<Run | Error> }> {
    const d = this.ctx.desired.getDeployment(name);
    if (!d) throw deploymentNotFound(name);
    this.consumeTickets();
    const ticket: RunTicket = {
      id: newRunId(),
      deployment: name,
      version: options.version ?? d.version,
      trigger: options.trigger,
      scheduledAt: options.scheduledAt,
      attempt: 1,
      env: options.env,
    };
    const started = new Promise<Run | Error>((resolve) =>
      this.#startWaiters.set(ticket.id, resolve)
    );
    await this.dispatcher.submit(ticket);
    return { id: ticket.id, started };
  }

  /**
   * Tickets of a deployment not yet started, and runs under way, on any node (in a cluster the
   * records hold every node's): what cron concurrency counts. Not a run recorded on a node that
   * is down: it holds no one back ("forbid" would skip every tick until the ticket that node
   * took came back after `ack_wait`, or for good while the node's running record stays);
   * recoverLostRuns() marks such runs lost, and a ticket that comes back late is not started if
   * a newer tick ran meanwhile (see #overtaken).
   */
  activeCount(name: string): number {
    const ids = new Set(this.activeRuns(name).map((r) => r.id));
    const statuses: RunStatus[] = ["pending", "running"];
    const live = this.ctx.members?.liveNodes();
    for (const r of this.ctx.records.listRuns({ deployment: name, statuses, limit: 1000 })) {
      if (live && !live.has(r.node)) continue;
      ids.add(r.id);
    }
    return ids.size;
  }

  /**
   * A tick's first attempt that a newer tick of its cronjob has overtaken: its ticket came back
   * to the queue (the node that took it went down) after the scheduler had fired a later tick.
   * With "forbid" or "replace" it must not start any more: it would run beside, or stop, the
   * newer one. With "allow" it runs, late.
   */
  #overtaken(ticket: RunTicket, spec: DeploySpec): string | undefined {
    if (ticket.trigger !== "schedule" || ticket.scheduledAt === undefined) return undefined;
    if (ticket.attempt !== 1 || settingsOf(spec).concurrency === "allow") return undefined;
    const at = ticket.scheduledAt;
    const newer = this.ctx.records.listRuns({ deployment: ticket.deployment, limit: 50 })
      .find((r) => r.trigger === "schedule" && (r.scheduledAt ?? 0) > at);
    if (!newer) return undefined;
    return `overtaken: the tick at ${new Date(at).toISOString()} came back after the tick at ${
      new Date(newer.scheduledAt!).toISOString()
    } was fired (${newer.id}); the node that had taken it stopped answering`;
  }

  /** Takes tickets from the dispatcher (once, at agent start); stops with shutdown(). */
  consumeTickets(): void {
    this.#unlost ??= this.dispatcher.onTicketLost?.((id) => this.#ticketLost(id));
    this.#stopConsuming ??= this.dispatcher.consume((t) => this.#take(t));
  }

  /** Tickets this node could not acknowledge in time: another node may run them now. */
  readonly #lost = new Set<string>();
  #unlost?: () => void;

  /** Its run does not start here, or stops: the ticket may be another node's now. */
  #ticketLost(id: string): void {
    this.#lost.add(id);
    const run = this.runs.get(id);
    if (!run) return;
    this.ctx.event(
      run.request.deployment,
      "RunLost",
      `${id}: its ticket could not be acknowledged in time; stopped here, another node may run it`,
    );
    run.stop("lost: its ticket could not be acknowledged").catch(() => {});
  }

  /** Starts a ticket's run, or records why it cannot run. */
  async #take(ticket: RunTicket): Promise<void> {
    const { records } = this.ctx;
    const settle = (result: Run | Error) => {
      this.#startWaiters.get(ticket.id)?.(result);
      this.#startWaiters.delete(ticket.id);
    };
    const fail = (reason: string, error?: Error) => {
      records.updateRun(ticket.id, { status: "failed", finishedAt: Date.now(), reason });
      this.ctx.event(ticket.deployment, "RunFailed", `${ticket.id} failed: ${reason}`);
      settle(error ?? new PrisnError("FAILED", `${ticket.id} failed: ${reason}`));
    };
    if (this.#stopping.signal.aborted) return; // stays pending: the next agent takes it
    // In a cluster the ticket may come before this node's mirror has the deployment: wait a
    // little for it before calling it gone.
    const known = () =>
      this.ctx.desired.getDeployment(ticket.deployment) &&
      this.ctx.desired.getVersion(ticket.deployment, ticket.version);
    for (let waited = 0; !known() && waited < UNKNOWN_TICKET_WAIT_MS; waited += 50) {
      if (this.#stopping.signal.aborted) return;
      await delay(50);
    }
    const version = this.ctx.desired.getVersion(ticket.deployment, ticket.version);
    if (!this.ctx.desired.getDeployment(ticket.deployment) || !version) {
      return fail(`${ticket.deployment} ${ticket.version} is no longer deployed`);
    }
    const spec = version.spec;
    if (ticket.trigger === "schedule" && ticket.scheduledAt !== undefined) {
      const { startingDeadlineMs } = settingsOf(spec);
      const late = Date.now() - ticket.scheduledAt;
      if (late > startingDeadlineMs) {
        return fail(
          `missed its starting deadline: ${formatDuration(late)} after its tick ` +
            `(starting_deadline ${formatDuration(startingDeadlineMs)})`,
        );
      }
    }
    const superseded = this.#overtaken(ticket, spec);
    if (superseded) return fail(superseded);
    // "replace": the newest tick wins. One that a newer tick overtook while it waited for the
    // active run to stop (a run may take its time) never starts: two would run at once.
    const generation = ticket.replace ? this.#nextReplace(ticket.deployment) : 0;
    const overtaken = () =>
      ticket.replace && this.#replaceGeneration.get(ticket.deployment) !== generation;
    if (ticket.replace) {
      const active = this.activeRuns(ticket.deployment).filter((r) => r.id !== ticket.id);
      if (active.length) {
        await Promise.all(active.map((r) => r.stop("replaced")));
        this.ctx.event(
          ticket.deployment,
          "RunReplaced",
          `stopped the active run for the tick at ${new Date(ticket.scheduledAt!).toISOString()}`,
        );
      }
    }
    let launch: Launch;
    try {
      launch = await this.launch(spec, ticket.version);
    } catch (e) {
      return fail(`could not prepare: ${(e as Error).message}`, e as Error);
    }
    if (this.#stopping.signal.aborted) return;
    if (overtaken()) return fail("replaced: a newer tick came before it could start");
    if (this.#lost.delete(ticket.id)) return; // another node may hold it now: not here
    settle(this.#run({
      id: ticket.id,
      deployment: ticket.deployment,
      version: ticket.version,
      spec,
      launch,
      trigger: ticket.trigger,
      env: ticket.env,
      scheduledAt: ticket.scheduledAt,
      attempt: ticket.attempt,
      parent: ticket.parent,
      driver: this.driver,
    }));
  }

  /** Replace tickets of each deployment taken so far: the newest one alone may start. */
  readonly #replaceGeneration = new Map<string, number>();

  #nextReplace(deployment: string): number {
    const next = (this.#replaceGeneration.get(deployment) ?? 0) + 1;
    this.#replaceGeneration.set(deployment, next);
    return next;
  }

  #run(request: RunRequest): Run {
    const run = new Run(this.ctx, request);
    this.runs.set(run.id, run);
    run.done.then((record) => {
      this.runs.delete(run.id);
      this.#prune(request.deployment, request.spec);
      if (record) this.#maybeRetry(request, record); // none: its record could not be written
    });
    return run;
  }

  /** Applies the history limits: older finished runs and their log files go. */
  #prune(deployment: string, spec: DeploySpec): void {
    const { history } = settingsOf(spec);
    const removed = this.ctx.records.pruneRuns(deployment, history.successful, history.failed);
    if (removed.length) this.ctx.logs.remove(deployment, new Set(removed)).catch(() => {});
  }

  /**
   * A failed run with retries left is tried again after a backoff, linked to its first attempt:
   * a new ticket due at the end of the backoff, recorded at once, so it survives a restart.
   */
  async #maybeRetry(
    request: Pick<
      RunRequest,
      "deployment" | "version" | "spec" | "attempt" | "parent" | "scheduledAt" | "env"
    >,
    record: RunRecord,
  ) {
    const { retries, retryBackoffMs: base } = settingsOf(request.spec);
    const attempt = request.attempt ?? 1;
    if (record.status !== "failed" || attempt > retries) return;
    if (["stopped", "replaced", "agent stopped"].includes(record.reason ?? "")) return;
    if (this.#stopping.signal.aborted) return;
    if (!this.ctx.desired.getDeployment(request.deployment)) return;
    const ticket: RunTicket = {
      id: newRunId(),
      deployment: request.deployment,
      version: request.version,
      trigger: "retry",
      scheduledAt: request.scheduledAt,
      attempt: attempt + 1,
      parent: request.parent ?? record.id,
      env: request.env,
      notBefore: Date.now() + base * 2 ** (attempt - 1),
    };
    await this.dispatcher.submit(ticket);
    this.ctx.event(
      request.deployment,
      "RunRetry",
      `retrying ${record.id} as ${ticket.id} in ${
        formatDuration(ticket.notBefore! - Date.now())
      } ` +
        `(attempt ${attempt + 1} of ${retries + 1})`,
    );
  }

  /**
   * As the leader of a cluster: runs recorded as running on a node that is gone (its heartbeat
   * expired; a node that stops on purpose ends its runs itself) are marked lost, and retried as
   * their policy says.
   */
  async recoverLostRuns(): Promise<void> {
    const alive = this.ctx.members?.liveNodes();
    if (!alive || !this.dispatcher.isLeader()) return;
    const { records } = this.ctx;
    for (const run of records.listRuns({ statuses: ["running"], limit: 10_000 })) {
      if (alive.has(run.node) || !this.dispatcher.isLeader()) continue;
      records.updateRun(run.id, {
        status: "failed",
        finishedAt: Date.now(),
        reason: `lost: node ${run.node} stopped answering`,
      });
      this.ctx.event(
        run.deployment,
        "RunLost",
        `${run.id} was running on ${run.node}, which stopped answering`,
      );
      if (run.replica) continue; // a service replica's run: placement starts a new replica
      const version = this.ctx.desired.getVersion(run.deployment, run.version);
      const record = records.getRun(run.id);
      if (!version || !record) continue;
      await this.#maybeRetry({
        deployment: run.deployment,
        version: run.version,
        spec: version.spec,
        attempt: run.attempt,
        parent: run.parent,
        scheduledAt: run.scheduledAt,
      }, record).catch((e) => this.ctx.event(run.deployment, "RetryFailed", (e as Error).message));
    }
  }

  activeRuns(name: string): Run[] {
    return [...this.runs.values()].filter((r) => r.request.deployment === name);
  }

  async scale(name: string, desired: number): Promise<void> {
    await this.services.get(name)?.scale(this.dispatcher.replicasHere(name, desired));
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
   * failed, and start every service at its desired replica count; from then on, reconcile on
   * every change of desired state.
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
    // Running ones died with the agent (their processes were just stopped); pending tickets stay
    // and are started by consumeTickets().
    for (const run of records.listRuns({ statuses: ["running"], limit: 10_000 })) {
      // Another node's run (a cluster's mirror) runs on; recoverLostRuns() handles dead nodes.
      if (this.ctx.members && run.node !== this.ctx.node) continue;
      records.updateRun(run.id, {
        status: "failed",
        finishedAt: Date.now(),
        reason: "agent restarted",
      });
    }
    this.#unwatch ??= this.ctx.desired.watch((c) => this.reconcile(c.deployment));
    const members = this.ctx.members;
    if (members) {
      // Each service port also balances to the other nodes' ready replicas (local ones first).
      let beat = 0;
      this.#remoteTimer ??= setInterval(() => {
        if (++beat % LOST_CHECK_EVERY === 0) this.recoverLostRuns().catch(() => {});
        const remote = members.remoteReplicas();
        for (const [name, service] of this.services) {
          service.setRemote(
            remote.filter((r) => r.deployment === name && r.ready && r.host && r.port)
              .map((r) => ({ id: `${r.node}/${r.name}`, host: r.host, port: r.port! })),
          );
        }
      }, REMOTE_SYNC_MS);
    }
    this.#unplace ??= this.dispatcher.onPlacementChange?.(() => {
      for (const d of this.ctx.desired.listDeployments()) this.reconcile(d.name);
    });
    for (const d of this.ctx.desired.listDeployments()) this.reconcile(d.name);
  }

  /**
   * Brings what runs of one deployment in line with its desired state: a service at another
   * version or replica count is rolled or scaled, a deployment that is gone (or no longer a
   * service) is stopped. Called on every change of desired state, whoever made it (a deploy here,
   * another node later), and at start; after the change that an API call makes itself it finds
   * nothing to do. One change per deployment at a time (see exclusive()).
   */
  reconcile(name: string): Promise<void> {
    return this.exclusive(name, async () => {
      if (this.#stopping.signal.aborted) return;
      const d = this.ctx.desired.getDeployment(name);
      const service = this.services.get(name);
      if (!d) {
        if (service || this.activeRuns(name).length) await this.remove(name);
        return;
      }
      if (d.type !== "service") {
        if (service) {
          this.services.delete(name);
          await service.stop();
        }
        return;
      }
      const want = this.dispatcher.replicasHere(name, d.replicas);
      const target = service?.target;
      try {
        if (!target || target.version !== d.version) {
          const spec = this.ctx.desired.getVersion(name, d.version)!.spec;
          await this.rolloutService(spec, d.version, d.replicas);
        } else if (target.replicas !== want) {
          await service!.scale(want);
        }
      } catch (e) {
        this.ctx.event(name, "ReconcileFailed", (e as Error).message);
      }
    });
  }

  /** Stops every process this agent runs. */
  async shutdown(): Promise<void> {
    this.#stopping.abort();
    this.#stopConsuming?.();
    this.#unlost?.();
    this.#unwatch?.();
    this.#unplace?.();
    clearInterval(this.#remoteTimer);
    await Promise.all([
      ...[...this.services.values()].map((s) => s.stop()),
      ...[...this.runs.values()].map((r) => r.stop("agent stopped")),
    ]);
    await this.resources.cleanup({ removeRoot: true }).catch(() => []);
  }
}
