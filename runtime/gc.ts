import { join } from "node:path";
import { settingsOf } from "../core/settings.ts";
import { versionDir } from "../core/paths.ts";
import type { AgentContext } from "./context.ts";
import { envKey, listEnvs, removeEnv } from "./envs.ts";
import { resolveInterpreter } from "./interpreters.ts";

export interface GcResult {
  versions: string[];
  envs: string[];
}

/**
 * Removes what nothing needs any more: versions beyond each deployment's history limit
 * (`history.versions`, the active one always kept; `keepVersions` overrides) with their records,
 * dependency envs no kept version uses, and temp folders a crashed deploy left behind.
 */
export async function collectGarbage(
  ctx: AgentContext,
  options: { keepVersions?: number; dryRun?: boolean } = {},
): Promise<GcResult> {
  const { paths } = ctx;
  const result: GcResult = { versions: [], envs: [] };
  const kept: Array<{ dir: string; runtime: string }> = [];
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
        kept.push({ dir: versionDir(paths, d.name, v.version), runtime: v.spec.runtime });
        continue;
      }
      result.versions.push(`${d.name}/${v.version}`);
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
      const key = await envKey(k.dir, await resolveInterpreter(k.runtime));
      if (key) used.add(key.id);
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

async function removeTempDirs(dir: string): Promise<void> {
  try {
    for await (const e of Deno.readDir(dir)) {
      if (e.name.startsWith(".tmp-")) {
        await Deno.remove(join(dir, e.name), { recursive: true }).catch(() => {});
      }
    }
  } catch { /* no folder */ }
}
