/**
 * The types of a validated prisn.toml.
 *
 * @module
 */

/** How a deployment runs: kept running, run once per trigger, or run on a schedule. */
export type DeploymentType = "service" | "job" | "cronjob";

/** A health check given as a table; `health = "/healthz"` is short for `{ path = "/healthz" }`. */
export interface HealthCheck {
  /** HTTP path probed on the replica's PORT, starting with "/". */
  path: string;
  /** Time between probes, e.g. "10s". */
  interval?: string;
  /** Time one probe may take, e.g. "2s". */
  timeout?: string;
  /** Consecutive failed probes after which the replica is restarted. */
  failures?: number;
}

/** Per-replica (or per-run) resource limits, in Kubernetes quantity form. */
export interface Resources {
  /** CPU limit: "500m" or "0.5" (see core/quantity.ts). */
  cpu?: string;
  /** Memory limit: "512Mi", "1Gi" (see core/quantity.ts). */
  memory?: string;
}

/** Crash-restart policy for service replicas. */
export interface RestartPolicy {
  /** Delay before the first restart after a crash; doubles on each further crash. */
  backoff_initial?: string;
  /** The most the restart delay grows to. */
  backoff_max?: string;
  /** A replica up this long counts as healthy again and its delay resets. */
  stable_after?: string;
  /** Give up after this many restarts in a row (absent: never give up). */
  max_restarts?: number;
}

/** How many finished runs and old versions are kept. */
export interface History {
  /** Successful runs kept per deployment. */
  successful?: number;
  /** Failed runs kept per deployment. */
  failed?: number;
  /** Versions kept for rollback, including the current one. */
  versions?: number;
}

/** How a replica's or run's output is logged. */
export interface LogSettings {
  /**
   * Most output logged per second, as a byte quantity ("1Mi"), counted over 10-second windows;
   * lines beyond it are dropped and counted. `false`: no limit.
   */
  rate_limit?: string | false;
}

/** How a service moves to a new version. */
export interface RolloutSettings {
  /** Replicas replaced at a time (absent: a quarter of the replicas, at least 1). */
  max_parallel?: number;
}

/** Which cluster nodes may run a service's replicas: every condition given must hold. */
export interface Placement {
  /** Only these nodes (by name). */
  nodes?: string[];
  /** Only nodes that have every one of these tags (`prisn agent run --tags`). */
  tags?: string[];
}

/** Which dependency files are installed; absent: found by the files present. */
export interface Deps {
  /** A requirements file or pyproject.toml, relative to the project; false: no python env. */
  python?: string | false;
  /** A package.json, relative to the project; false: no node env. */
  node?: string | false;
}

/**
 * A validated prisn.toml. Every key is optional; what applies when a key is absent is listed
 * in {@link PRISN_TOML_DEFAULTS} and docs/prisn-toml.md.
 */
export interface PrisnToml {
  /** Deployment name: a DNS label (see name.ts `validateName`). */
  name?: string;
  type?: DeploymentType;
  /** Runtime name, e.g. "python3", "python3.11", "node20", "bash" (see core/runtimes.ts). */
  runtime?: string;
  /** Path of the file to run, relative to the project root, never leaving it. */
  entrypoint?: string;
  /**
   * A program and its arguments to run instead of an entrypoint (never a shell string); `$NAME`
   * and `${NAME}` are expanded from the run's environment.
   */
  command?: string[];
  /** Arguments passed to the entrypoint. */
  args?: string[];
  /** Environment variables; numbers and booleans in the file are turned into strings. */
  env?: Record<string, string>;
  /** Port a service is reached on; prisn balances it over the replicas. */
  port?: number;
  /**
   * What balances the port: nftables DNAT in the kernel, or prisn's userspace proxy (absent:
   * the agent's choice, by default the kernel where it is available).
   */
  balancer?: "kernel" | "userspace";
  /**
   * The local address the service port listens on, e.g. "127.0.0.1" for this machine only
   * (absent: the agent's `--address`, by default every address).
   */
  address?: string;
  replicas?: number;
  /** Cron expression of a cronjob (checked by the scheduler). */
  schedule?: string;
  /** IANA time zone the schedule is read in. */
  timezone?: string;
  /** HTTP health check of a service: a path, or a table. */
  health?: string | HealthCheck;
  resources?: Resources;
  /** Longest a job or cronjob run may take before it is stopped and counted failed. */
  timeout?: string;
  /** How many times a failed run is retried. */
  retries?: number;
  /** Delay before a retry. */
  retry_backoff?: string;
  /** What a cronjob tick does while the previous run still runs. */
  concurrency?: "allow" | "forbid" | "replace";
  /** Whether ticks missed while no node could run them are run late. */
  catchup?: "none" | "latest";
  /** A tick that cannot start within this long after its time is skipped. */
  starting_deadline?: string;
  restart?: RestartPolicy;
  /** Time between SIGTERM and SIGKILL when a process is stopped. */
  stop_grace?: string;
  /** Time an old replica keeps serving open connections after traffic moved away. */
  drain_grace?: string;
  /** Longest a new replica may take to become ready during a deploy. */
  readiness_timeout?: string;
  history?: History;
  logs?: LogSettings;
  rollout?: RolloutSettings;
  /** Where a service's replicas may run in a cluster. */
  placement?: Placement;
  /** Which dependency files to install, overriding what is found by the files present. */
  deps?: Deps;
  /** Names of `env` keys whose values are secret: never printed, never logged. */
  secrets?: string[];
  /**
   * The user every process of the deployment runs as (the agent must run as root); see
   * runtime/run_as.ts.
   */
  user?: string;
  /** The group it runs as, then its only group (absent: the user's own groups); needs `user`. */
  group?: string;
}
