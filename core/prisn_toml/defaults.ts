/**
 * What prisn.toml keys default to.
 *
 * @module
 */

/**
 * What applies when a key is absent, as docs/prisn-toml.md states it. `type` is not here: it
 * follows from the other keys (core/spec.ts). Absent `timeout`, `restart.max_restarts`,
 * `resources` and `port` mean "no limit" or "none".
 */
export const PRISN_TOML_DEFAULTS = {
  replicas: 1,
  health: { interval: "10s", timeout: "2s", failures: 3 },
  retries: 0,
  retry_backoff: "10s",
  concurrency: "forbid",
  catchup: "latest",
  starting_deadline: "1h",
  restart: { backoff_initial: "1s", backoff_max: "1m", stable_after: "30s" },
  stop_grace: "10s",
  drain_grace: "10s",
  readiness_timeout: "30s",
  history: { successful: 100, failed: 10, versions: 5 },
  logs: { rate_limit: "1Mi" },
} as const;
