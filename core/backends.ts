import type { Artifacts } from "./artifacts.ts";
import type { DesiredState } from "./desired_state.ts";
import type { Dispatcher } from "./dispatch.ts";
import type { LogStore } from "./log_store.ts";
import type { Paths } from "./paths.ts";
import type { Records } from "./records.ts";
import type { ProcessLedger, RunHistory } from "./run_history.ts";
import type { TokenStorage } from "./token_storage.ts";

/**
 * The set of backends an agent runs on: one node's (runtime/backends.ts) or a cluster's (cluster/);
 * cmd/agent.ts picks one.
 */
export interface Backends {
  desired: DesiredState;
  artifacts: Artifacts;
  logs: LogStore;
  dispatcher: Dispatcher;
  /** The cluster's nodes and leader, for `status` and `get nodes`. @default this node alone */
  members?: Members;
  /** Run history and process records. @default this node's SQLite records */
  history?: RunHistory & ProcessLedger;
  /** The TCP API's tokens (hashes only). @default this home's tokens.json */
  tokens?: TokenStorage;
  /** Starts what the backends run in the background (mirrors, lease, heartbeats), before use. */
  start?(): Promise<void>;
  /**
   * Before the agent stops what it runs (a stop, not a crash): hand cluster duties and this
   * node's replicas to other nodes.
   */
  beforeStop?(): Promise<void>;
  /** Releases what the backends hold (connections, watches) after the agent stopped. */
  close?(): Promise<void>;
}

/** One node as `get nodes` shows it. */
export interface NodeSummary {
  node: string;
  status: "ready" | "draining" | "down";
  /** Where other nodes reach it ("-" on a single node). */
  address: string;
  replicas: number;
  runs: number;
  /** Age of its last heartbeat (0: this node, asked now). */
  heartbeatAgeMs: number;
  version: string;
}

/** A replica another node runs, as its last heartbeat said. */
export interface RemoteReplica {
  node: string;
  deployment: string;
  name: string;
  ready: boolean;
  /** Where other nodes reach it (it listens on its node's address); absent: loopback only. */
  host?: string;
  port?: number;
  /** The version it runs (absent in heartbeats of agents that did not say). */
  version?: string;
}

/** A replica of this node, as its heartbeats report it. */
export interface LocalReplica {
  deployment: string;
  name: string;
  ready: boolean;
  /** `host:port` where other nodes reach it, when they can. */
  address?: string;
  version: string;
}

/** Who is in the cluster and who leads it. */
export interface Members {
  nodes(): Promise<NodeSummary[]>;
  /** The leader's node name, if one is known. */
  leader(): string | undefined;
  /** Replicas of the other live nodes, from their last heartbeats (read every few seconds). */
  remoteReplicas(): RemoteReplica[];
  /**
   * The nodes whose heartbeat was live at the last read of them all (every few seconds), this
   * one included; undefined until that first read.
   */
  liveNodes(): ReadonlySet<string> | undefined;
  /** What this node reports about its replicas in its heartbeats. */
  reportReplicas(report: () => LocalReplica[]): void;
  /** Marks a node draining (its replicas move to other nodes, it gets no new ones) or not. */
  drain?(node: string, draining: boolean): Promise<void>;
}

/** What backends are made from: this node's data root, its SQLite records and its name. */
export interface BackendInputs {
  paths: Paths;
  records: Records;
  node: string;
}
