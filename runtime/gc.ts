import { join } from "node:path";
import { settingsOf } from "../core/settings.ts";
import { versionDir } from "../core/paths.ts";
import { deploymentKey, displayKey } from "../core/namespace.ts";
import type { AgentContext } from "./context.ts";
import type { DeploySpec } from "../core/spec.ts";
import { envIdsOf } from "./dependencies.ts";
import { listEnvs, removeEnv } from "./envs.ts";

export interface GcResult {
  versions: string[];
  envs: string[];
}

/** Options for {@link collectGarbage}. */
export interface GcOptions {
  /** Versions kept per deployment. @default each deployment's `history.versions` */
  keepVersions?: number;
  /** Say what would go, remove nothing. @default false */
  dryRun?: boolean;
  /**
   * Runs a change of one deployment after every earlier one (the supervisor's), so no deploy
   * that has stored a version but not yet recorded it loses it. @default runs it at once
   */
  exclusive?: <T>(name: string, fn: () => Promise<T>) => Promise<T>;
}

/**
 * Removes what nothing needs any more: versions beyond each deployment's history limit
 * (`history.versions`, the active one always kept; `keepVersions` overrides) with their records,
 * dependency envs no kept version uses, and what interrupted deploys left behind: temp folders,
 * version folders no record names, and the folders of deployments that were never recorded.
 */
export async function collectGarbage(
  ctx: AgentContext,
  options: GcOptions = {},
): Promise<GcResult> {
  const { paths } = ctx;
  const result: GcResult = { versions: [], envs: [] };
  result.versions.push(...await removeUnrecorded(ctx, options));
  const kept: Array<{ dir: string; spec: DeploySpec }> = [];
  for (const d of ctx.desired.listDeployments()) {
    const versions = ctx.desired.listVersions(d.name); // newest deploy first
    const active = versions.find((v) => v.version === d.version);
    const limit = Math.max(
      1,
      options.keepVersions ?? settingsOf(active?.spec ?? {}).history.versions,
    );
    // Rollback targets only: a failed version never takes one of the kept slots.
    const others = versions.filter((v) => v.version !== d.version && v.status !== "failed");
    const keep = new Set([d.version, ...others.slice(0, limit - 1).map((v) => v.version)]);
    for (const v of versions) {
      if (keep.has(v.version)) {
        kept.push({ dir: versionDir(paths, d.name, v.version), spec: v.spec });
        continue;
      }
      result.versions.push(`${displayKey(d.name)}/${v.version}`);
      if (!options.dryRun) {
        await ctx.desired.deleteVersion(d.name, v.version);
        await ctx.artifacts.remove(d.name, v.version);
      }
    }
    if (!options.dryRun) await removeTempDirs(join(paths.deployments, d.name));
  }
  const used = new Set<string>();
  for (const k of kept) {
    try {
      for (const id of await envIdsOf(k.dir, k.spec)) used.add(id);
    } catch {
      return result; // cannot tell which env a kept version uses: remove no env at all
    }
  }
  for (const id of await listEnvs(paths.envs)) {
    if (used.has(id)) continue;
    result.envs.push(id);
    if (!options.dryRun) await removeEnv(paths.envs, id);
  }
  return result;
}

/** Stored versions (and whole deployment folders) no record names: `NAME/VERSION` each. */
async function removeUnrecorded(ctx: AgentContext, options: GcOptions): Promise<string[]> {
  const exclusive = options.exclusive ?? ((_name, fn) => fn());
  const removed: string[] = [];
  const keys: string[] = [];
  for (const namespace of await folderNames(ctx.paths.deployments)) {
    for (const name of await folderNames(join(ctx.paths.deployments, namespace))) {
      keys.push(deploymentKey(namespace, name));
    }
  }
  for (const key of keys) {
    const shown = displayKey(key);
    await exclusive(key, async () => {
      const dir = join(ctx.paths.deployments, key);
      if (!ctx.desired.getDeployment(key)) {
        const versions = (await folderNames(dir)).filter((v) => v.startsWith("v-"));
        removed.push(...versions.map((v) => `${shown}/${v}`));
        if (!options.dryRun) await ctx.artifacts.remove(key);
        return;
      }
      const recorded = new Set(ctx.desired.listVersions(key).map((v) => v.version));
      for (const version of await folderNames(dir)) {
        if (!version.startsWith("v-") || recorded.has(version)) continue;
        removed.push(`${shown}/${version}`);
        if (!options.dryRun) await ctx.artifacts.remove(key, version);
      }
    });
  }
  return removed;
}

async function folderNames(dir: string): Promise<string[]> {
  const names: string[] = [];
  try {
    for await (const e of Deno.readDir(dir)) if (e.isDirectory) names.push(e.name);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  return names.sort();
}

async function removeTempDirs(dir: string): Promise<void> {
  try {
    for await (const e of Deno.readDir(dir)) {
      if (e.name.startsWith(".tmp-")) {
        await Deno.remove(join(dir, e.name), { recursive: true }).catch(() => {});
      }
    }
  } catch { /* no folder */ }
}
