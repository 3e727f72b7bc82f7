/**
 * prisn over NATS JetStream: connecting a node to the cluster's NATS server, the names of the
 * cluster's buckets and streams, and creating them.
 *
 * @module
 */
export { CAS_SAFE_VERSION, casSafe, connectCluster } from "./connection.ts";
export { clusterNames, DEFAULT_CLUSTER, validateClusterName } from "./names.ts";
export { ensureResources, RESOURCE_DEFAULTS, resourceConfigs } from "./setup.ts";
export type { ResourceSpec } from "./setup.ts";
export {
  clusterError,
  isCasConflict,
  isTransient,
  JS_ERR,
  jsErrorCode,
  natsReason,
} from "./errors.ts";
export type * from "./types.ts";
