/**
 * The agent API's wire types: what each route takes and answers, as JSON. The CLI's client and the
 * agent's route table both use these. Types only: importing this module loads nothing.
 * @module
 */
import type { ErrorCode } from "../core/errors.ts";
import type {
  DeploymentRecord,
  EventRecord,
  RunRecord,
  SourceInfo,
  VersionStatus,
} from "../core/types.ts";
import type { DeployRequest, DeployResult, Step } from "./deploy.ts";
import type { GcResult } from "./gc.ts";
import type { ReplicaStatus } from "./service.ts";
import type { BalancerInfo } from "./service_port.ts";
import type { DiskState } from "./disk_health.ts";

export type { TokenInfo } from "./tokens.ts";
export type { BalancerInfo, DeployRequest, DeployResult, GcResult, ReplicaStatus, RunRecord };

/** Every error answer: `{ error: { code, message } }`, with an HTTP status from the code. */
export interface ErrorBody {
  error: { code: ErrorCode; message: string };
}

/** GET /v1/ping */
export interface PingResponse {
  pid: number;
  node: string;
}

/** POST /v1/agent/stop: the agent stops shortly after answering. */
export interface StopResponse {
  stopping: true;
  pid: number;
}

/** A row of `prisn ls` / `prisn status` (GET /v1/deployments). */
export interface DeploymentSummary {
  name: string;
  namespace: string;
  type: DeploymentRecord["type"];
  version: string;
  replicas: { desired: number; ready: number };
  port?: number;
  schedule?: string;
  suspended: boolean;
  next?: string;
  nextAt?: number;
  lastRun?: Pick<
    RunRecord,
    "id" | "status" | "exitCode" | "finishedAt" | "reason" | "lastError" | "replica"
  >;
  createdAt: number;
  updatedAt: number;
}

/** GET /v1/deployments/NAME */
export interface DeploymentDetail extends DeploymentSummary {
  deployedAt: number;
  source: unknown;
  /** The file run, or (with a prisn.toml `command`) absent. */
  entrypoint?: string;
  /** The program and arguments run instead of an entrypoint, as prisn.toml writes them. */
  command?: string[];
  runtime?: string;
  interpreter?: string;
  /** The dependency envs the version runs in (ids), in PATH order. */
  envs?: string[];
  /** Limits and how they are enforced, e.g. "cpu 500m, memory 512Mi (cgroup v1)". */
  resources?: string;
  timezone?: string;
  nextRuns?: string[];
  /** The run spec, secret env values masked. */
  spec: Record<string, unknown>;
  replicaStatus: ReplicaStatus[];
  /** What balances the service port on this node (a service with a port only). */
  balancer?: BalancerInfo;
  events: EventRecord[];
}

/** GET /v1/status */
export interface StatusView {
  node: string;
  home: string;
  agent: {
    pid: number;
    startedAt: number;
    memory: { rss: number; heapUsed: number; heapTotal: number };
  };
  deployments: DeploymentSummary[];
  runs: { lastHour: Record<string, number> };
  /** In a cluster: how many nodes, which are not ready, and the leader. */
  cluster?: {
    nodes: number;
    notReady: string[];
    leader?: string;
    /** Since when this node's records may be behind the cluster's (NATS unreachable). */
    staleSince?: number;
  };
  /** Once a write under PRISN_HOME failed for want of space: since when, how many. */
  disk?: DiskState;
}

export type { NodeSummary } from "../core/backends.ts";

/**
 * POST /v1/deploy answers NDJSON, one of these a line: progress steps, then a result or an error.
 */
export type DeployEvent =
  | { step: Step; detail: string }
  | { result: DeployResult }
  | ErrorBody;

/** POST /v1/gc */
export interface GcRequest {
  /** Versions kept per deployment, the current one included. @default history.versions */
  keepVersions?: number;
  /** Only list what would go. @default false */
  dryRun?: boolean;
}

/** GET /v1/runs?deployment=NAME&limit=N, newest first. */
export interface RunsQuery {
  /** The runs of a deployment, or of one of its replicas (`api-0`). @default all */
  deployment?: string;
  /** The deployment's namespace; without `deployment`, whose runs. */
  namespace?: string;
  /** Without `deployment`: the runs of every namespace the caller may see. */
  allNamespaces?: boolean;
  /** @default 20 */
  limit?: number;
}

/** GET /v1/deployments/NAME/env, sorted by key. */
export interface EnvEntry {
  key: string;
  /** `********` for a secret. */
  value: string;
  secret: boolean;
}

/** GET /v1/deployments/NAME/history, newest first. */
export interface HistoryRow {
  version: string;
  deployedAt: number;
  status: VersionStatus;
  current: boolean;
  source: SourceInfo;
}

/** POST /v1/deployments/NAME/rollback */
export interface RollbackRequest {
  /** @default the previous version */
  version?: string;
}

/** POST /v1/deployments/NAME/scale */
export interface ScaleRequest {
  replicas: number | string;
}

/** POST /v1/nodes/NAME/drain, /v1/nodes/NAME/undrain */
export interface DrainResponse {
  node: string;
  draining: boolean;
}

export interface ScaleResponse {
  replicas: number;
}

/** POST /v1/deployments/NAME/run */
export interface RunRequest {
  /** KEY=VALUE pairs for this run only. @default [] */
  env?: string[];
}

export interface RunStarted {
  id: string;
}

/** POST /v1/deployments/NAME/suspend and …/resume */
export interface SuspendResponse {
  name: string;
  suspended: boolean;
}

/** DELETE /v1/deployments/NAME?purge=true|false */
export interface DeleteResponse {
  deleted: string;
  purged: boolean;
}

/**
 * GET /v1/deployments/NAME/logs?tail=N&replica=R&run=ID|latest&follow=true answers NDJSON, one of
 * these a line: the last `tail` lines merged by time (each tagged `[replica] ` or `[run-…] ` when
 * no one replica or run is asked for), then (with follow) new lines as they are written, until the
 * client goes away. NAME may also be a replica (`api-0`) or a run id.
 */
export interface LogsQuery {
  /** Lines from the end. @default 200 */
  tail?: number;
  /** One replica: its name (api-1) or index (1). */
  replica?: string;
  /** One run of a job: a run id or "latest" (wins over `replica`). */
  run?: string;
  /** Keep the answer open and send new lines. @default false */
  follow?: boolean;
}

export type LogEvent = { line: string } | ErrorBody;

/** POST /v1/tokens */
export interface TokenRequest {
  name: string;
  readOnly?: boolean;
  /** The namespaces it reaches. @default every namespace */
  namespaces?: string[];
}

/** POST /v1/tokens: the secret, shown this once (the agent keeps only its hash). */
export interface TokenCreated {
  name: string;
  readOnly: boolean;
  namespaces?: string[];
  token: string;
}

/** DELETE /v1/tokens/NAME */
export interface TokenRevoked {
  name: string;
  revoked: true;
}
