import type { Artifacts } from "./artifacts.ts";
import { packVersion } from "./archive.ts";
import { exists } from "./fs.ts";
import { type Paths, versionDir } from "./paths.ts";
import {
  removeDeploymentFiles,
  removeVersion,
  setCurrent,
  storeVersion,
  writeMetadata,
} from "./store.ts";
import type { Package } from "./version.ts";
import { PrisnError } from "./errors.ts";

/** One node's artifacts: the version folders under PRISN_HOME/deployments (core/store.ts). */
export class LocalArtifacts implements Artifacts {
  constructor(readonly paths: Paths) {}

  put(
    deployment: string,
    version: string,
    pkg: Package,
    options: { signal?: AbortSignal } = {},
  ): Promise<boolean> {
    return storeVersion(this.paths, deployment, version, pkg, { signal: options.signal });
  }

  async ensureLocal(deployment: string, version: string): Promise<string> {
    const dir = versionDir(this.paths, deployment, version);
    if (!(await exists(dir))) {
      throw new PrisnError(
        "NOT_FOUND",
        `version ${version} of ${deployment} is not stored on this node: deploy it again`,
      );
    }
    return dir;
  }

  async archive(deployment: string, version: string): Promise<Uint8Array> {
    return await packVersion(await this.ensureLocal(deployment, version));
  }

  async remove(deployment: string, version?: string): Promise<void> {
    if (version === undefined) await removeDeploymentFiles(this.paths, deployment);
    else await removeVersion(this.paths, deployment, version);
  }

  async setCurrent(deployment: string, version: string, metadata: unknown): Promise<void> {
    await setCurrent(this.paths, deployment, version);
    await writeMetadata(this.paths, deployment, metadata);
  }
}
