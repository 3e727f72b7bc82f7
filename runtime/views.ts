import { describeNext, nextFireTimes } from "../core/schedule.ts";
import type { DeploySpec } from "../core/spec.ts";
import type { DeploymentRecord, RunRecord } from "../core/types.ts";
import { versionDir } from "../core/paths.ts";
import type { AgentContext } from "./context.ts";
import { envIdsOf } from "./dependencies.ts";
import { resolveInterpreter } from "./interpreters.ts";
import type { Scheduler } from "./scheduler.ts";
import type { Supervisor } from "./supervisor.ts";
import type {
  DeploymentDetail,
  DeploymentSummary,
  EnvEntry,
  HistoryRow,
  NodeSummary,
  StatusView,
} from "./api_types.ts";
import { VERSION } from "../version.ts";
import { namespaceOf, splitKey } from "../core/namespace.ts";
import type { RemoteReplica } from "../core/backends.ts";

export type { DeploymentDetail, DeploymentSummary, StatusView } from "./api_types.ts";

/** What a secret's value reads as wherever the agent shows it. */
const MASK = "********";

/** A spec's environment in its own order, secret values masked. */
export function maskedEnv(spec: Pick<DeploySpec, "env" | "secrets">): EnvEntry[] {
  const secrets = new Set(spec.secrets ?? []);
  return Object.entries(spec.env).map(([key, value]) => {
    const secret = secrets.has(key);
    return { key, value: secret ? MASK : value, secret };
  });
}

/** Reads the records and the live supervisor into what the CLI shows. */
export class Views {
  constructor(
    readonly ctx: AgentContext,
    readonly supervisor: Supervisor,
    readonly scheduler: Scheduler,
    readonly startedAt: number,
  ) {}

  /** The deployments of `namespaces` (@default every namespace), by namespace and name. */
  summaries(namespaces?: string[]): DeploymentSummary[] {
    const latest = this.ctx.records.latestRuns();
    return this.ctx.desired.listDeployments()
      .filter((d) => !namespaces || namespaces.includes(namespaceOf(d.name)))
      .map((d) => this.#summary(d, latest.get(d.name)));
  }

  #summary(d: DeploymentRecord, last?: RunRecord): DeploymentSummary {
    const spec = this.ctx.desired.getVersion(d.name, d.version)!.spec;
    const service = this.supervisor.services.get(d.name);
    const { name, namespace } = splitKey(d.name);
    const s: DeploymentSummary = {
      name,
      namespace,
      type: d.type,
      version: d.version,
      replicas: {
        desired: d.type === "service" ? d.replicas : 0,
        ready: (service?.ready ?? 0) + this.#remote(d.name).filter((r) => r.ready).length,
      },
      suspended: d.suspended,
      createdAt: d.createdAt,
      updatedAt: d.updatedAt,
    };
    if (spec.port !== undefined) s.port = spec.port;
    if (spec.schedule) {
      s.schedule = spec.schedule;
      const nextAt = this.scheduler.nextAt(d.name);
      if (nextAt !== undefined) s.nextAt = nextAt;
      s.next = d.suspended
        ? "suspended"
        : describeNext({ schedule: spec.schedule, timezone: spec.timezone }, new Date());
    }
    if (last) {
      s.lastRun = {
        id: last.id,
        status: last.status,
        exitCode: last.exitCode,
        finishedAt: last.finishedAt,
        reason: last.reason,
        lastError: last.lastError,
        replica: last.replica,
      };
    }
    return s;
  }

  /** Replicas of this deployment on other nodes (none on a single node). */
  #remote(deployment: string): RemoteReplica[] {
    return this.ctx.members?.remoteReplicas().filter((r) => r.deployment === deployment) ?? [];
  }

  async detail(name: string): Promise<DeploymentDetail | undefined> {
    const d = this.ctx.desired.getDeployment(name);
    if (!d) return undefined;
    const v = this.ctx.desired.getVersion(name, d.version)!;
    const last = this.ctx.records.listRuns({ deployment: name, limit: 1 })[0];
    const service = this.supervisor.services.get(name);
    const { env: _env, ...rest } = v.spec;
    const detail: DeploymentDetail = {
      ...this.#summary(d, last),
      deployedAt: v.deployedAt,
      source: v.source,
      entrypoint: v.spec.entrypoint,
      command: v.spec.command,
      runtime: v.spec.runtime,
      spec: { ...rest, env: Object.fromEntries(maskedEnv(v.spec).map((e) => [e.key, e.value])) },
      replicaStatus: [
        // In a cluster, a replica that ignores HOST (listens on loopback) serves its node alone.
        ...(service?.status() ?? []).map((r) =>
          this.ctx.members && r.ready && !r.reachable
            ? { ...r, state: `${r.state} (loopback only)` }
            : r
        ),
        // Other nodes' replicas, as far as their heartbeats tell.
        ...this.#remote(name).map((r) => ({
          name: r.name,
          version: r.version ?? d.version,
          state: r.ready ? (r.host ? "Ready" : "Ready (loopback only)") : "Starting",
          ready: r.ready,
          restarts: 0,
          node: r.node,
          createdAt: 0,
        })),
      ],
      events: this.ctx.records.listEvents(name, 10),
    };
    const balancer = service?.balancer;
    if (balancer) detail.balancer = balancer;
    const resources = await this.supervisor.resources.describe(v.spec.resources);
    if (resources) detail.resources = resources;
    if (v.spec.timezone) detail.timezone = v.spec.timezone;
    if (v.spec.schedule) {
      detail.nextRuns = nextFireTimes(
        { schedule: v.spec.schedule, timezone: v.spec.timezone },
        new Date(),
        3,
      ).map((t) => t.toISOString());
    }
    const launch = this.supervisor.launchIfKnown(name, d.version);
    if (launch) {
      if (launch.interpreter) {
        detail.interpreter = `${launch.interpreter} ${launch.interpreterVersion}`;
      }
      if (launch.envs.length) detail.envs = launch.envs.map((e) => e.id);
    } else {
      // Not started by this agent yet (a job after a restart): work the env ids out, build nothing.
      try {
        if (v.spec.runtime) {
          const interp = await resolveInterpreter(v.spec.runtime);
          detail.interpreter = `${interp.command} ${interp.version}`;
        }
        const ids = await envIdsOf(versionDir(this.ctx.paths, name, d.version), v.spec);
        if (ids.length) detail.envs = ids;
      } catch {
        // an interpreter is gone from the host: get still shows the rest
      }
    }
    return detail;
  }

  /** The current version's environment, sorted by key, secret values masked. */
  env(name: string): EnvEntry[] {
    const d = this.ctx.desired.getDeployment(name)!;
    const spec = this.ctx.desired.getVersion(name, d.version)!.spec;
    return maskedEnv(spec).sort((a, b) => a.key < b.key ? -1 : a.key > b.key ? 1 : 0);
  }

  /** Every version of a deployment, newest first, the current one marked. */
  history(name: string): HistoryRow[] {
    const d = this.ctx.desired.getDeployment(name)!;
    return this.ctx.desired.listVersions(name).map((v) => ({
      version: v.version,
      deployedAt: v.deployedAt,
      status: v.status,
      current: v.version === d.version,
      source: v.source,
    }));
  }

  async status(namespaces?: string[]): Promise<StatusView> {
    const view: StatusView = {
      node: this.ctx.node,
      home: this.ctx.paths.home,
      agent: { pid: Deno.pid, startedAt: this.startedAt, memory: agentMemory() },
      deployments: this.summaries(namespaces),
      runs: { lastHour: this.ctx.records.runCounts(Date.now() - 3_600_000) },
    };
    const disk = this.ctx.disk.state();
    if (disk.failedWrites > 0 || disk.fullSince !== undefined) view.disk = disk;
    const members = this.ctx.members;
    if (members) {
      const staleSince = this.ctx.desired.staleSince?.();
      // Cut off from NATS, the nodes cannot be read: say so rather than wait for a timeout.
      const nodes = staleSince === undefined ? await members.nodes().catch(() => []) : [];
      view.cluster = {
        nodes: nodes.length,
        notReady: nodes.filter((n) => n.status !== "ready").map((n) => `${n.node} (${n.status})`),
        leader: members.leader(),
        staleSince,
      };
    }
    return view;
  }

  /** The cluster's nodes, or this node alone. */
  async nodes(): Promise<NodeSummary[]> {
    if (this.ctx.members) return await this.ctx.members.nodes();
    const ids = this.ctx.records.listProcesses().map((p) => p.id);
    return [{
      node: this.ctx.node,
      status: "ready",
      address: this.ctx.address ?? "-",
      replicas: ids.filter((id) => id.includes("/")).length,
      runs: ids.filter((id) => !id.includes("/")).length,
      heartbeatAgeMs: 0,
      version: VERSION,
    }];
  }
}

function agentMemory() {
  const { rss, heapUsed, heapTotal } = Deno.memoryUsage();
  return { rss, heapUsed, heapTotal };
}
