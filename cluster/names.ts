/**
 * The names of everything prisn keeps in NATS, all derived from the cluster name (`--cluster`),
 * so two prisn clusters can share one NATS account without touching each other's state.
 *
 * Buckets and streams are `<cluster>-<what>`; no `<what>` contains '-', so two cluster names never
 * yield the same bucket ("a" gives "a-lease", "a-lease" gives "a-lease-lease"). Subjects are
 * `<cluster>.<what>.…`; a cluster name holds no '.', so their first token tells clusters apart.
 *
 * @module
 */

import { invalid } from "../core/errors.ts";
import type { ClusterNames } from "./types.ts";

/** The cluster name when none is given. */
export const DEFAULT_CLUSTER = "prisn";

const CLUSTER_RE = /^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$/;
/**
 * A subject token prisn puts there: a deployment's key (NAMESPACE/NAME: '/' is no separator in
 * NATS), a replica or a run id.
 */
const TOKEN_RE = /^[A-Za-z0-9_/-]+$/;

/**
 * Throws a one-line INVALID error unless `name` is a cluster name: 1-32 lowercase letters,
 * digits or '-', starting and ending with a letter or digit.
 */
export function validateClusterName(name: string): void {
  if (!CLUSTER_RE.test(name)) {
    throw invalid(
      `cluster name "${name}" is not valid: use 1-32 lowercase letters, digits or '-', starting and ending with a letter or digit`,
    );
  }
}

function token(what: string, value: string): string {
  if (!TOKEN_RE.test(value)) {
    throw invalid(
      `${what} "${value}" cannot be part of a NATS subject: use letters, digits, '-', '_' or '/'`,
    );
  }
  return value;
}

/** Every bucket, stream and subject name of the prisn cluster `cluster` (validated). */
export function clusterNames(cluster: string = DEFAULT_CLUSTER): ClusterNames {
  validateClusterName(cluster);
  const p = cluster;
  return {
    cluster,
    kv: {
      desired: `${p}-desired`,
      cron: `${p}-cron`,
      lease: `${p}-lease`,
      heartbeats: `${p}-heartbeats`,
      placement: `${p}-placement`,
      runs: `${p}-runs`,
      tokens: `${p}-tokens`,
    },
    objectStore: { artifacts: `${p}-artifacts` },
    streams: { work: `${p}-work`, logs: `${p}-logs`, events: `${p}-events` },
    subjects: { work: `${p}.work.>`, logs: `${p}.logs.>`, events: `${p}.events.>` },
    workSubject: (deployment) => `${p}.work.${token("deployment", deployment)}`,
    logSubject: (deployment, stream) =>
      `${p}.logs.${token("deployment", deployment)}.${token("log stream", stream)}`,
    logFilter: (deployment) => `${p}.logs.${token("deployment", deployment)}.>`,
    eventSubject: (deployment) => `${p}.events.${token("deployment", deployment)}`,
  };
}
