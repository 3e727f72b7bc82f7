import { parseDuration } from "./duration.ts";
import { parseMemory } from "./quantity.ts";
import { type HealthCheck, PRISN_TOML_DEFAULTS as D, type PrisnToml } from "./prisn_toml.ts";

/** Every tunable of a deployment as numbers, with prisn's defaults filled in (one place). */
export interface Settings {
  health: { path?: string; intervalMs: number; timeoutMs: number; failures: number };
  restart: { initialMs: number; maxMs: number; stableMs: number; maxRestarts?: number };
  stopGraceMs: number;
  drainGraceMs: number;
  readinessTimeoutMs: number;
  /** Longest a run may take; undefined: no limit. */
  timeoutMs?: number;
  retries: number;
  retryBackoffMs: number;
  concurrency: "allow" | "forbid" | "replace";
  catchup: "none" | "latest";
  startingDeadlineMs: number;
  history: { successful: number; failed: number; versions: number };
  /** Bytes of output logged per second at most (over 10 s windows); undefined: no limit. */
  logRateBytes?: number;
  /** Replicas a rollout replaces at a time, for `replicas` replicas. */
  maxParallel(replicas: number): number;
}

function ms(value: string | undefined, fallback: string, key: string): number {
  return parseDuration(value ?? fallback, key);
}

/** The settings of a (validated) spec. */
export function settingsOf(spec: PrisnToml): Settings {
  const health: Partial<HealthCheck> = typeof spec.health === "string"
    ? { path: spec.health }
    : spec.health ?? {};
  const restart = spec.restart ?? {};
  return {
    health: {
      path: health.path,
      intervalMs: ms(health.interval, D.health.interval, "health.interval"),
      timeoutMs: ms(health.timeout, D.health.timeout, "health.timeout"),
      failures: health.failures ?? D.health.failures,
    },
    restart: {
      initialMs: ms(restart.backoff_initial, D.restart.backoff_initial, "restart.backoff_initial"),
      maxMs: ms(restart.backoff_max, D.restart.backoff_max, "restart.backoff_max"),
      stableMs: ms(restart.stable_after, D.restart.stable_after, "restart.stable_after"),
      maxRestarts: restart.max_restarts,
    },
    stopGraceMs: ms(spec.stop_grace, D.stop_grace, "stop_grace"),
    drainGraceMs: ms(spec.drain_grace, D.drain_grace, "drain_grace"),
    readinessTimeoutMs: ms(spec.readiness_timeout, D.readiness_timeout, "readiness_timeout"),
    timeoutMs: spec.timeout !== undefined ? parseDuration(spec.timeout, "timeout") : undefined,
    retries: spec.retries ?? D.retries,
    retryBackoffMs: ms(spec.retry_backoff, D.retry_backoff, "retry_backoff"),
    concurrency: spec.concurrency ?? D.concurrency,
    catchup: spec.catchup ?? D.catchup,
    startingDeadlineMs: ms(spec.starting_deadline, D.starting_deadline, "starting_deadline"),
    history: {
      successful: spec.history?.successful ?? D.history.successful,
      failed: spec.history?.failed ?? D.history.failed,
      versions: spec.history?.versions ?? D.history.versions,
    },
    logRateBytes: spec.logs?.rate_limit === false
      ? undefined
      : parseMemory(spec.logs?.rate_limit ?? D.logs.rate_limit, "logs.rate_limit"),
    maxParallel: (replicas) => spec.rollout?.max_parallel ?? Math.max(1, Math.ceil(replicas / 4)),
  };
}
