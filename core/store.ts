import { dirname, join } from "node:path";
import { exists, ownerOnlyFolder, removeIfPresent, writeFileAtomic } from "./fs.ts";
import { deploymentDir, type Paths, versionDir } from "./paths.ts";
import type { Package } from "./version.ts";

/** Files copied at once while storing a version. */
const COPY_BATCH = 64;

/** Options for {@link storeVersion}. */
export interface StoreOptions {
  /** May add to the temp folder (e.g. links to a dependency env) before the rename. */
  beforeCommit?: (tempDir: string) => Promise<void>;
  /** Stops the copy between batches (nothing is kept, it throws the signal's reason). */
  signal?: AbortSignal;
}

/**
 * Writes a package as version `version` of deployment `name`: copied into a temp folder next to
 * its final place, then renamed in, so a crash never leaves a half-written version.
 * Returns false when that version is already stored (same id ⇒ same content).
 */
export async function storeVersion(
  p: Paths,
  name: string,
  version: string,
  pkg: Package,
  options: StoreOptions = {},
): Promise<boolean> {
  const { beforeCommit, signal } = options;
  const finalDir = versionDir(p, name, version);
  if (await exists(finalDir)) return false;
  const parent = deploymentDir(p, name);
  await Deno.mkdir(parent, { recursive: true, mode: 0o700 });
  await ownerOnlyFolder(parent);
  const temp = await Deno.makeTempDir({ dir: parent, prefix: `.tmp-${version}-` });
  try {
    const dirs = new Set<string>();
    for (const f of pkg.files) dirs.add(dirname(join(temp, f.path)));
    for (const d of dirs) await Deno.mkdir(d, { recursive: true });
    // In batches (bounded open files); allSettled so that on a failure no copy is still
    // writing into the temp folder when it is removed.
    for (let i = 0; i < pkg.files.length; i += COPY_BATCH) {
      signal?.throwIfAborted();
      const copies = await Promise.allSettled(
        pkg.files.slice(i, i + COPY_BATCH).map(async (f) => {
          const target = join(temp, f.path);
          if (f.link !== undefined) return await Deno.symlink(f.link, target);
          await Deno.copyFile(f.source, target);
          await Deno.chmod(target, f.executable ? 0o555 : 0o444);
        }),
      );
      const failed = copies.find((c) => c.status === "rejected");
      if (failed) throw failed.reason;
    }
    if (beforeCommit) await beforeCommit(temp);
    signal?.throwIfAborted();
    await Deno.rename(temp, finalDir);
    return true;
  } catch (e) {
    await Deno.remove(temp, { recursive: true }).catch(() => {});
    if (await exists(finalDir)) return false; // another writer stored the same version first
    throw e;
  }
}

/** Points deployments/NAME/current at a version: a new symlink renamed over the old one. */
export async function setCurrent(p: Paths, name: string, version: string): Promise<void> {
  const link = join(deploymentDir(p, name), "current");
  const temp = `${link}.${crypto.randomUUID().slice(0, 8)}`;
  await Deno.symlink(version, temp);
  await Deno.rename(temp, link).catch(async (e) => {
    await Deno.remove(temp).catch(() => {});
    throw e;
  });
}

/** Writes deployments/NAME/metadata.json atomically, owner-only (it holds the spec's env). */
export async function writeMetadata(p: Paths, name: string, data: unknown): Promise<void> {
  const file = join(deploymentDir(p, name), "metadata.json");
  await writeFileAtomic(file, JSON.stringify(data, null, 2) + "\n", { mode: 0o600 });
}

/** Removes a deployment's stored versions (read-only files included). */
export async function removeDeploymentFiles(p: Paths, name: string): Promise<void> {
  await removeIfPresent(deploymentDir(p, name));
}

/** Removes one stored version. */
export async function removeVersion(p: Paths, name: string, version: string): Promise<void> {
  await removeIfPresent(versionDir(p, name, version));
}
