/**
 * cgroup v2 (the unified hierarchy): preparing prisn's root group and applying limits.
 *
 * @module
 */

import { canWrite, CFS_PERIOD_US, CONTROLLERS, readText, tryWrite, words } from "./_cgroup.ts";
import type { CgroupMounts, Limits } from "./types.ts";

/** Makes sure `<unified>/<root>` exists with memory and cpu enabled for its children. */
export async function prepareV2(mounts: CgroupMounts, root: string): Promise<string | undefined> {
  if (!mounts.unified) return undefined;
  const available = words(await readText(`${mounts.unified}/cgroup.controllers`));
  if (!CONTROLLERS.every((controller) => available.has(controller))) return undefined;
  try {
    let dir = mounts.unified;
    await enableControllers(dir);
    for (const segment of root.split("/")) {
      dir = `${dir}/${segment}`;
      await Deno.mkdir(dir, { recursive: true });
      await enableControllers(dir);
    }
    return await canWrite(dir) ? dir : undefined;
  } catch {
    return undefined; // e.g. a parent that holds processes (EBUSY) or no permission
  }
}

async function enableControllers(dir: string): Promise<void> {
  const enabled = words(await readText(`${dir}/cgroup.subtree_control`));
  const missing = CONTROLLERS.filter((controller) => !enabled.has(controller));
  if (missing.length === 0) return;
  await Deno.writeTextFile(
    `${dir}/cgroup.subtree_control`,
    missing.map((controller) => `+${controller}`).join(" "),
  );
}

export async function applyV2(dir: string, limits: Limits, notes: string[]): Promise<void> {
  if (limits.memoryBytes !== undefined) {
    await Deno.writeTextFile(`${dir}/memory.max`, String(limits.memoryBytes));
    if (!await tryWrite(`${dir}/memory.swap.max`, "0")) {
      notes.push("swap is not limited (no writable memory.swap.max)");
    }
  }
  if (limits.cpuMillis !== undefined) {
    await Deno.writeTextFile(
      `${dir}/cpu.max`,
      `${limits.cpuMillis * CFS_PERIOD_US / 1000} ${CFS_PERIOD_US}`,
    );
  }
}
