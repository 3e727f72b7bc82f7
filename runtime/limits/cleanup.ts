/**
 * Cleaning up what a crashed agent left: its groups, and the processes still in them.
 *
 * @module
 */

import { childGroups, CONTROLLERS, emptyAndRemove, removeDir, unique } from "./_cgroup.ts";
import { rootOf } from "./_checks.ts";
import { readMounts } from "./detect.ts";
import type { CleanupOptions } from "./types.ts";

/**
 * Removes the groups under `root` whose names are not in `keep`, killing any process still in
 * them: what a crashed agent left behind. Looks in every hierarchy prisn may have used (v2 and
 * v1). Returns the names removed, sorted.
 */
export async function cleanupStaleGroups(
  keep: ReadonlySet<string>,
  options: CleanupOptions = {},
): Promise<string[]> {
  const root = rootOf(options);
  const mounts = await readMounts();
  const parents = unique(
    [mounts.unified, ...CONTROLLERS.map((c) => mounts.v1[c])]
      .filter((mount): mount is string => mount !== undefined)
      .map((mount) => `${mount}/${root}`),
  );
  const stale = new Map<string, string[]>();
  for (const parent of parents) {
    for (const name of await childGroups(parent)) {
      if (keep.has(name)) continue;
      stale.set(name, [...stale.get(name) ?? [], `${parent}/${name}`]);
    }
  }
  for (const dirs of stale.values()) await emptyAndRemove(dirs, 5000);
  if (options.removeRoot) {
    for (const parent of parents) {
      if ((await childGroups(parent)).length > 0) continue;
      await removeDir(parent).catch(() => {});
    }
  }
  return [...stale.keys()].sort();
}
