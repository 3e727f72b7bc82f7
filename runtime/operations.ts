import { deploymentNotFound, invalid, notFound } from "../core/errors.ts";
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
  RunsQuery,
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
  /** The TCP API's tokens. */
  tokens: TokenStore;
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

  status(): Promise<StatusView> {
    return this.#parts.views.status();
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

  deploy(request: DeployRequest, progress: Progress, signal?: AbortSignal): Promise<DeployResult> {
    const { ctx, supervisor } = this.#parts;
    return deploy(ctx, supervisor, request, progress, signal);
  }

  deployUpload(
    request: DeployRequest,
    archive: Uint8Array,
    progress: Progress,
    signal?: AbortSignal,
  ): Promise<DeployResult> {
    const { ctx, supervisor } = this.#parts;
    return deployUpload(ctx, supervisor, request, archive, progress, signal);
  }

  gc(request: GcRequest): Promise<GcResult> {
    const { ctx, supervisor } = this.#parts;
    return collectGarbage(ctx, { ...request, exclusive: (n, fn) => supervisor.exclusive(n, fn) });
  }

  /** Runs, newest first: all, a deployment's, or one replica's (`api-0`). */
  runs(query: RunsQuery): RunRecord[] {
    const limit = query.limit ?? 20;
    if (!query.deployment) return this.#records.listRuns({ limit });
    const target = this.#target(query.deployment);
    if (target.run) {
      throw invalid(`"${query.deployment}" is a run: see prisn logs ${query.deployment}`);
    }
    return this.#records.listRuns({
      deployment: target.deployment,
      replica: target.replica,
      limit,
    });
  }

  run(id: string): RunRecord {
    const run = this.#records.getRun(id);
    if (!run) throw notFound(`run "${id}" not found: see prisn get jobs`);
    return run;
  }

  deployments(): DeploymentSummary[] {
    return this.#parts.views.summaries();
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
        : this.run(query.run);
      if (!run || run.deployment !== deployment) {
        throw notFound(
          `${deployment} has ${
            query.run === "latest" ? "no runs yet" : `no run ${query.run}`
          }: see prisn get jobs ${deployment}`,
        );
      }
    } else if (query.replica) {
      replica = /^\d+$/.test(query.replica) ? `${deployment}-${query.replica}` : query.replica;
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
   * What a name given to `logs` or `get jobs` stands for: a deployment; else a run (by id); else a
   * replica, `NAME-N` of a deployment NAME.
   */
  #target(name: string): { deployment: string; replica?: string; run?: RunRecord } {
    if (this.#parts.ctx.desired.getDeployment(name)) return { deployment: name };
    const run = this.#records.getRun(name);
    if (run) return { deployment: run.deployment, run };
    const m = /^(.+)-\d+$/.exec(name);
    if (m && this.#parts.ctx.desired.getDeployment(m[1])) {
      return { deployment: m[1], replica: name };
    }
    if (/^run-/.test(name)) throw notFound(`run "${name}" not found: see prisn get jobs`);
    throw deploymentNotFound(name);
  }

  async #mustHaveReplica(deployment: string, replica: string): Promise<void> {
    const { ctx, supervisor } = this.#parts;
    const known = supervisor.services.get(deployment)?.status().some((r) => r.name === replica) ||
      await ctx.logs.has(deployment, replica);
    if (!known) {
      throw notFound(
        `${deployment} has no replica ${replica.slice(deployment.length + 1)}: ` +
          `see prisn get ${deployment}`,
      );
    }
  }

  async rollback(name: string, request: RollbackRequest): Promise<DeployResult> {
    const { ctx, supervisor } = this.#parts;
    this.#mustExist(name);
    return await supervisor.exclusive(
      name,
      () => rollback(ctx, supervisor, name, request.version),
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
      throw invalid(`${name} is a service; prisn run starts jobs and cronjobs`);
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
      throw invalid(`${name} is a ${d.type}; only cronjobs can be ${done}`);
    }
    await ctx.desired.setSuspended(name, suspended, { expect: d.revision });
    ctx.event(name, suspended ? "Suspended" : "Resumed", `cronjob ${done}`);
    return { name, suspended };
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
    return { deleted: name, purged: options.purge };
  }

  tokens(): TokenInfo[] {
    return this.#parts.tokens.list();
  }

  async createToken(request: TokenRequest): Promise<TokenCreated> {
    if (typeof request.name !== "string") throw invalid("give the token a name");
    const readOnly = request.readOnly === true;
    const token = await this.#parts.tokens.create(request.name, { readOnly });
    return { name: request.name, readOnly, token };
  }

  async revokeToken(name: string): Promise<TokenRevoked> {
    await this.#parts.tokens.revoke(name);
    return { name, revoked: true };
  }

  #mustExist(name: string) {
    const d = this.#parts.ctx.desired.getDeployment(name);
    if (!d) throw deploymentNotFound(name);
    return d;
  }
}
