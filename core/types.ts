import type { DeploymentType, DeploySpec } from "./spec.ts";

/** stored: recorded, never active yet; failed: tried and abandoned (or could not be prepared). */
export type VersionStatus = "stored" | "active" | "superseded" | "failed";
export type RunStatus = "pending" | "running" | "completed" | "failed";
/** What started a run: a job's or cronjob's ticket, or a service replica's (re)start. */
export type RunTrigger = "deploy" | "manual" | "schedule" | "retry" | "start" | "restart";

/** Where a version's files came from. Credentials never appear here. */
export interface SourceInfo {
  kind: "dir" | "file" | "git";
  /** Absolute path, or the (redacted) git URL. */
  location: string;
  ref?: string;
  path?: string;
  commit?: string;
}

export interface DeploymentRecord {
  name: string;
  type: DeploymentType;
  /** The active version. */
  version: string;
  /** Desired replica count (services). */
  replicas: number;
  suspended: boolean;
  /** Cronjobs: the latest tick already handled (fired, skipped or given up). */
  lastScheduledAt?: number;
  createdAt: number;
  updatedAt: number;
  /** Bumped by every change to the deployment; writes may expect one (compare-and-set). */
  revision: number;
}

export interface VersionRecord {
  deployment: string;
  version: string;
  spec: DeploySpec;
  source: SourceInfo;
  files: number;
  bytes: number;
  createdAt: number;
  /** Last time this version became the active one. */
  deployedAt: number;
  status: VersionStatus;
}

export interface RunRecord {
  id: string;
  /** The deployment's key (core/namespace.ts); on the API's wire its bare name. */
  deployment: string;
  /** On the API's wire: the deployment's namespace. */
  namespace?: string;
  version: string;
  status: RunStatus;
  trigger: RunTrigger;
  node: string;
  attempt: number;
  /** The first run of a retry chain. */
  parent?: string;
  scheduledAt?: number;
  startedAt?: number;
  finishedAt?: number;
  exitCode?: number;
  /** Why it ended, when not by a plain exit: a signal, "timed out", "agent restarted"… */
  reason?: string;
  /** The last line the process wrote to stderr (secrets masked), once it ended. */
  lastError?: string;
  pid?: number;
  /**
   * Set for one lifetime of a service replica (its name, e.g. "api-0"): the run starts with the
   * replica's process and ends when it exits; a restart is a new run.
   */
  replica?: string;
}

/**
 * A request to execute a job or cronjob once. Its run id exists before anything slow happens
 * (env build, launch): submitting records the run as pending at once, so a ticket is never lost
 * between "decided" and "started". A cron tick's id derives from `NAME@scheduled-time`
 * ({@link tickRunId}), so the same tick can never become two runs. Retries are new tickets.
 */
export interface RunTicket {
  id: string;
  deployment: string;
  version: string;
  trigger: RunTrigger;
  /** The cron tick it runs for. */
  scheduledAt?: number;
  /** 1 for the first try; a retry is attempt + 1. */
  attempt: number;
  /** The first run of a retry chain. */
  parent?: string;
  /** Extra env for this run only (`prisn run NAME --env K=V`). */
  env?: Record<string, string>;
  /** Not before this time (a retry's backoff). */
  notBefore?: number;
  /** Stop the deployment's active runs first (cron concurrency "replace"). */
  replace?: boolean;
  /**
   * In a cluster, a cron tick carries the epoch of the leader that fired it; nodes refuse one
   * stamped lower than the highest epoch they have seen (it comes from a replaced leader).
   */
  epoch?: number;
}

export interface EventRecord {
  id: number;
  deployment: string;
  at: number;
  kind: string;
  message: string;
}

/** One supervised process of a service, as last seen; lets a restarted agent find its orphans. */
export interface ProcessRecord {
  /** Replica name ("api-0") or run id. */
  id: string;
  deployment: string;
  pid: number;
  /** Kernel start time of the pid (clock ticks since boot), so a reused pid is not mistaken. */
  startTicks: number;
}
