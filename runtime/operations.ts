import { deploymentNotFound, invalid, notFound } from "../core/errors.ts";
import { deploymentKey, displayKey, nameOf, namespaceOf, splitKey } from "../core/namespace.ts";
import { parseEnvPair } from "../core/values.ts";
import type {
  DeleteResponse,
  DeploymentDetail,
  DeploymentSummary,
  DeployRequest,
  DeployResult,
  DrainResponse,
  EnvEntry,
  GcRequest,
  GcResult,
  HistoryRow,
  LogsQuery,
  NodeSummary,
  PingResponse,
  RollbackRequest,
  RunRecord,
  RunRequest,
  RunStarted,
  ScaleRequest,
  ScaleResponse,
  StatusView,
  StopResponse,
  SuspendResponse,
  TokenCreated,
  TokenRequest,
  TokenRevoked,
} from "./api_types.ts";
import type { LogsReply, Operations } from "./api.ts";
import type { TailOptions } from "../core/log_store.ts";
import type { AgentContext } from "./context.ts";
import { deploy, deployUpload, type Progress, rollback, scale } from "./deploy.ts";
import { collectGarbage } from "./gc.ts";
import type { Scheduler } from "./scheduler.ts";
import type { Supervisor } from "./supervisor.ts";
import type { Views } from "./views.ts";
import type { TokenInfo, TokenStore } from "./tokens.ts";

/** What the agent's operations work on. */
export interface AgentParts {
  ctx: AgentContext;
  supervisor: Supervisor;
  scheduler: Scheduler;
  views: Views;
  /** Stops the agent (called shortly after `stop()` has answered). */
  stop: () => unknown;
  /** The TCP API's tokens (the agent opens them once its backends started). */
  tokens: () => TokenStore;
}

/**
 * The agent's operations, one method per API call: the checks (does it exist, is it the right
 * type) and the change; what follows a change (the supervisor's and the scheduler's reconciling)
 * follows from desired state's watch, whoever made it. The route table only turns HTTP into
 * these calls.
 */
/** A log line's stamp, after the `[stream] ` tag of a merged view if there is one. */
const STAMP = /\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z/;

export class AgentOperations implements Operations {
  readonly #parts: AgentParts;
  readonly #closing = new AbortController();

  constructor(parts: AgentParts) {
    this.#parts = parts;
  }

  /** Ends every `logs` follow, so the server can shut down. */
  close(): void {
    this.#closing.abort();
  }

  get #records() {
    return this.#parts.ctx.records;
  }

  ping(): PingResponse {
    return { pid: Deno.pid, node: this.#parts.ctx.node };
  }

  status(namespaces?: string[]): Promise<StatusView> {
    return this.#parts.views.status(namespaces);
  }

  nodes(): Promise<NodeSummary[]> {
    return this.#parts.views.nodes();
  }

  async drain(node: string, draining: boolean): Promise<DrainResponse> {
    const members = this.#parts.ctx.members;
    if (!members?.drain) {
      throw invalid(`this agent runs on its own, not in a cluster: there are no nodes to drain`);
    }
    const known = (await members.nodes()).find((n) => n.node === node);
    if (!known) throw notFound(`node "${node}" is not in the cluster: see prisn get nodes`);
    await members.drain(node, draining);
    return { node, draining };
  }

  stop(): StopResponse {
    setTimeout(() => this.#parts.stop(), 10);
    return { stopping: true, pid: Deno.pid };
  }

  async deploy(
    request: DeployRequest,
    progress: Progress,
    signal?: AbortSignal,
  ): Promise<DeployResult> {
    const { ctx, supervisor } = this.#parts;
    return shownResult(await deploy(ctx, supervisor, request, progress, signal));
  }

  async deployUpload(
    request: DeployRequest,
    archive: Uint8Array,
    progress: Progress,
    signal?: AbortSignal,
  ): Promise<DeployResult> {
    const { ctx, supervisor } = this.#parts;
    return shownResult(await deployUpload(ctx, supervisor, request, archive, progress, signal));
  }

  gc(request: GcRequest): Promise<GcResult> {
    const { ctx, supervisor } = this.#parts;
    return collectGarbage(ctx, { ...request, exclusive: (n, fn) => supervisor.exclusive(n, fn) });
  }

  /** Runs, newest first: of some namespaces, a deployment's, or one replica's (`api-0`). */
  runs(query: { deployment?: string; namespaces?: string[]; limit?: number }): RunRecord[] {
    const limit = query.limit ?? 20;
    if (!query.deployment) {
      return this.#records.listRuns({ namespaces: query.namespaces, limit }).map(shownRun);
    }
    const target = this.#target(query.deployment);
    if (target.run) {
      const id = nameOf(query.deployment);
      throw invalid(`"${id}" is a run: see prisn logs ${id}`);
    }
    return this.#records.listRuns({
      deployment: target.deployment,
      replica: target.replica,
      limit,
    }).map(shownRun);
  }

  run(id: string, namespaces?: string[]): RunRecord {
    return shownRun(this.#run(id, namespaces));
  }

  /** A run by id, if its deployment is in `namespaces` (@default any): else NOT_FOUND. */
  #run(id: string, namespaces?: string[]): RunRecord {
    const run = this.#records.getRun(id);
    if (!run || (namespaces && !namespaces.includes(namespaceOf(run.deployment)))) {
      throw notFound(`run "${id}" not found: see prisn get jobs`);
    }
    return run;
  }

  deployments(namespaces?: string[]): DeploymentSummary[] {
    return this.#parts.views.summaries(namespaces);
  }

  async deployment(name: string): Promise<DeploymentDetail> {
    const detail = await this.#parts.views.detail(name);
    if (!detail) throw deploymentNotFound(name);
    return detail;
  }

  env(name: string): EnvEntry[] {
    this.#mustExist(name);
    return this.#parts.views.env(name);
  }

  history(name: string): HistoryRow[] {
    this.#mustExist(name);
    return this.#parts.views.history(name);
  }

  /**
   * Logs by any name `logs` takes: a deployment (every replica and run merged by time, each line
   * tagged with its replica or run), one replica (`api-0`, or the deployment and `replica`: name
   * or index) or one run (its id, or `run`: an id or "latest"; a replica's run is its replica's
   * lines from its start to its end). With `follow`, new lines until the caller's signal aborts
   * or the agent stops; a run that has ended has none to follow.
   */
  async logs(name: string, query: LogsQuery): Promise<LogsReply> {
    const { ctx } = this.#parts;
    const target = this.#target(name);
    const deployment = target.deployment;
    let { run, replica } = target;
    if (query.run) {
      run = query.run === "latest"
        ? this.#records.listRuns({ deployment, limit: 1 })[0]
        : this.#run(query.run, [namespaceOf(deployment)]);
      if (!run || run.deployment !== deployment) {
        const shown = displayKey(deployment);
        throw notFound(
          `${shown} has ${
            query.run === "latest" ? "no runs yet" : `no run ${query.run}`
          }: see prisn get jobs ${shown}`,
        );
      }
    } else if (query.replica) {
      replica = /^\d+$/.test(query.replica)
        ? `${nameOf(deployment)}-${query.replica}`
        : query.replica;
    }
    if (replica && !run) await this.#mustHaveReplica(deployment, replica);
    const options: TailOptions = {};
    if (run?.replica) {
      options.streams = new Set([run.replica]);
      options.since = run.startedAt;
      options.until = run.finishedAt;
    } else if (run) options.streams = new Set([run.id]);
    else if (replica) options.streams = new Set([replica]);
    else options.tag = true;
    const reply: LogsReply = {
      lines: await ctx.logs.tail(deployment, query.tail ?? 200, options),
    };
    const ended = run !== undefined && run.status !== "running" && run.status !== "pending";
    if (query.follow && !ended) {
      // Lines written between the tail and the follow's start are read too, none skipped.
      const since = STAMP.exec(reply.lines.at(-1) ?? "")?.[0];
      reply.follow = (onLines, signal) =>
        ctx.logs.follow(deployment, onLines, {
          signal: AbortSignal.any([signal, this.#closing.signal]),
          streams: options.streams,
          tag: options.tag,
          since,
        });
    }
    return reply;
  }

  /**
   * What a name given to `logs` or `get jobs` stands for, within its key's namespace: a
   * deployment; else a run (by id); else a replica, `NAME-N` of a deployment NAME.
   */
  #target(key: string): { deployment: string; replica?: string; run?: RunRecord } {
    if (this.#parts.ctx.desired.getDeployment(key)) return { deployment: key };
    const { namespace, name } = splitKey(key);
    const run = this.#records.getRun(name);
    if (run && namespaceOf(run.deployment) === namespace) {
      return { deployment: run.deployment, run };
    }
    const m = /^(.+)-\d+$/.exec(name);
    const owner = m && deploymentKey(namespace, m[1]);
    if (owner && this.#parts.ctx.desired.getDeployment(owner)) {
      return { deployment: owner, replica: name };
    }
    if (/^run-/.test(name)) throw notFound(`run "${name}" not found: see prisn get jobs`);
    throw deploymentNotFound(key);
  }

  async #mustHaveReplica(deployment: string, replica: string): Promise<void> {
    const { ctx, supervisor } = this.#parts;
    const known = supervisor.services.get(deployment)?.status().some((r) => r.name === replica) ||
      await ctx.logs.has(deployment, replica);
    if (!known) {
      const shown = displayKey(deployment);
      throw notFound(
        `${shown} has no replica ${replica.slice(nameOf(deployment).length + 1)}: ` +
          `see prisn get ${shown}`,
      );
    }
  }

  async rollback(name: string, request: RollbackRequest): Promise<DeployResult> {
    const { ctx, supervisor } = this.#parts;
    this.#mustExist(name);
    return shownResult(
      await supervisor.exclusive(name, () => rollback(ctx, supervisor, name, request.version)),
    );
  }

  async scale(name: string, request: ScaleRequest): Promise<ScaleResponse> {
    const { ctx, supervisor } = this.#parts;
    this.#mustExist(name);
    const replicas = await supervisor.exclusive(
      name,
      () => scale(ctx, supervisor, name, request.replicas),
    );
    return { replicas };
  }

  async startRun(name: string, request: RunRequest): Promise<RunStarted> {
    const d = this.#mustExist(name);
    if (d.type === "service") {
      throw invalid(`${displayKey(name)} is a service; prisn run starts jobs and cronjobs`);
    }
    const env = Object.fromEntries((request.env ?? []).map((p) => parseEnvPair(p)));
    const id = await this.#parts.supervisor.submitRun(name, { trigger: "manual", env });
    return { id };
  }

  async setSuspended(name: string, suspended: boolean): Promise<SuspendResponse> {
    const { ctx } = this.#parts;
    const d = this.#mustExist(name);
    const done = suspended ? "suspended" : "resumed";
    if (d.type !== "cronjob") {
      throw invalid(`${displayKey(name)} is a ${d.type}; only cronjobs can be ${done}`);
    }
    await ctx.desired.setSuspended(name, suspended, { expect: d.revision });
    ctx.event(name, suspended ? "Suspended" : "Resumed", `cronjob ${done}`);
    return { name: nameOf(name), suspended };
  }

  /** Stops everything of a deployment, removes its records and files, and with `purge` its logs. */
  async delete(name: string, options: { purge: boolean }): Promise<DeleteResponse> {
    const { ctx, supervisor } = this.#parts;
    this.#mustExist(name);
    await supervisor.exclusive(name, async () => {
      // The record first: if it cannot be written (a full disk), everything still runs as the
      // records say, instead of stopped replicas that a restart would bring back.
      await ctx.desired.deleteDeployment(name);
      await supervisor.remove(name);
      await ctx.artifacts.remove(name);
      if (options.purge) await ctx.logs.remove(name);
    });
    return { deleted: nameOf(name), purged: options.purge };
  }

  tokens(): TokenInfo[] {
    return this.#parts.tokens().list();
  }

  async createToken(request: TokenRequest): Promise<TokenCreated> {
    if (typeof request.name !== "string") throw invalid("give the token a name");
    const readOnly = request.readOnly === true;
    const namespaces = request.namespaces?.length ? request.namespaces : undefined;
    const token = await this.#parts.tokens().create(request.name, { readOnly, namespaces });
    return { name: request.name, readOnly, ...(namespaces ? { namespaces } : {}), token };
  }

  async revokeToken(name: string): Promise<TokenRevoked> {
    await this.#parts.tokens().revoke(name);
    return { name, revoked: true };
  }

  #mustExist(name: string) {
    const d = this.#parts.ctx.desired.getDeployment(name);
    if (!d) throw deploymentNotFound(name);
    return d;
  }
}

/** A deploy's result as the API answers it: the bare name and the namespace apart. */
function shownResult(result: DeployResult): DeployResult {
  return { ...result, ...splitKey(result.name) };
}

/** A run as the API answers it: its deployment's bare name and namespace apart. */
function shownRun(run: RunRecord): RunRecord {
  const { namespace, name } = splitKey(run.deployment);
  return { ...run, deployment: name, namespace };
}
