import type { DeploymentRecord, VersionRecord, VersionStatus } from "./types.ts";

/** A write's options. */
export interface WriteOptions {
  /** Only if the deployment is at this revision (compare-and-set); else CONFLICT, nothing written. */
  expect?: number;
  /** @default Date.now() */
  now?: number;
}

/** What changed: a deployment, and its revision after the change (undefined: it was deleted). */
export interface DesiredChange {
  deployment: string;
  revision?: number;
}

/**
 * Desired state: deployments (active version, desired replicas, suspension, the last cron tick
 * handled) and their versions. Reads are synchronous from local SQLite (in a cluster, SQLite is
 * the mirror of the shared bucket); every write is asynchronous and may be compare-and-set by the
 * revision each deployment carries, so two changes of one name at once are decided by the store.
 * `watch` tells who subscribed which deployment changed, whoever changed it.
 */
export interface DesiredState {
  getDeployment(name: string): DeploymentRecord | undefined;
  listDeployments(): DeploymentRecord[];
  getVersion(deployment: string, version: string): VersionRecord | undefined;
  /** Newest deploy first. */
  listVersions(deployment: string): VersionRecord[];
  /**
   * Since when the reads above may be behind the shared state (a cluster node cut off from NATS,
   * or catching up); undefined while they are current. @default always current
   */
  staleSince?(): number | undefined;

  putVersion(
    v: Omit<VersionRecord, "createdAt" | "deployedAt" | "status">,
    options?: WriteOptions,
  ): Promise<void>;
  setVersionStatus(deployment: string, version: string, status: VersionStatus): Promise<void>;
  deleteVersion(deployment: string, version: string): Promise<void>;
  /** Makes a recorded version active (creating the deployment); resolves with the new revision. */
  activate(
    deployment: string,
    version: string,
    replicas: number,
    options?: WriteOptions,
  ): Promise<number>;
  setReplicas(name: string, replicas: number, options?: WriteOptions): Promise<number>;
  setSuspended(name: string, suspended: boolean, options?: WriteOptions): Promise<number>;
  setLastScheduled(name: string, at: number | undefined, options?: WriteOptions): Promise<number>;
  /** Removes a deployment with its versions (and, locally, its runs and events). */
  deleteDeployment(name: string, options?: WriteOptions): Promise<void>;

  /** Calls `listener` after every change; returns a function that stops it. */
  watch(listener: (change: DesiredChange) => void): () => void;
}
