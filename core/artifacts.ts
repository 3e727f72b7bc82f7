import type { Package } from "./version.ts";

/**
 * Where versions' files live. Locally: `deployments/NAME/VERSION/` under PRISN_HOME
 * (core/local_artifacts.ts); in a cluster, also an object store other nodes fetch from, which is
 * why a version can be had as a deterministic archive (same content ⇒ same bytes ⇒ a sha256 any
 * node can check).
 */
export interface Artifacts {
  /**
   * Stores a package as a version; false when that version is stored already (same content).
   * When `signal` aborts while it stores, nothing is kept and it throws.
   */
  put(
    deployment: string,
    version: string,
    pkg: Package,
    options?: { signal?: AbortSignal },
  ): Promise<boolean>;
  /** The local folder of a version, fetched (and checked) first where it lives elsewhere. */
  ensureLocal(deployment: string, version: string): Promise<string>;
  /** A version as a deterministic tar.gz (see core/archive.ts). */
  archive(deployment: string, version: string): Promise<Uint8Array>;
  /** Removes one version, or every version of a deployment when `version` is absent. */
  remove(deployment: string, version?: string): Promise<void>;
  /** Points the deployment's `current` at a version and writes its metadata (local bookkeeping). */
  setCurrent(deployment: string, version: string, metadata: unknown): Promise<void>;
}
