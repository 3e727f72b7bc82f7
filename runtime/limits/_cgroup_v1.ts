/**
 * cgroup v1 (one hierarchy per controller): preparing prisn's root groups in the `memory` and
 * `cpu` hierarchies and applying limits.
 *
 * @module
 */

import { canWrite, CFS_PERIOD_US, tryWrite, unique } from "./_cgroup.ts";
import type { CgroupMounts, Limits } from "./types.ts";

/** Makes sure `<memory mount>/<root>` and `<cpu mount>/<root>` exist and are writable. */
export async function prepareV1(
  mounts: CgroupMounts,
  root: string,
): Promise<{ memory: string; cpu: string } | undefined> {
  const memoryMount = mounts.v1.memory;
  const cpuMount = mounts.v1.cpu;
  if (!memoryMount || !cpuMount) return undefined;
  const memory = `${memoryMount}/${root}`;
  const cpu = `${cpuMount}/${root}`;
  try {
    for (const dir of unique([memory, cpu])) {
      await Deno.mkdir(dir, { recursive: true });
      if (!await canWrite(dir)) return undefined;
    }
    return { memory, cpu };
  } catch {
    return undefined;
  }
}

export async function applyV1(
  memoryDir: string,
  cpuDir: string,
  limits: Limits,
  notes: string[],
): Promise<void> {
  if (limits.memoryBytes !== undefined) {
    await Deno.writeTextFile(`${memoryDir}/memory.limit_in_bytes`, String(limits.memoryBytes));
    // memsw = memory + swap; setting it to the same value keeps the group out of swap.
    const swapLimited = await tryWrite(
      `${memoryDir}/memory.memsw.limit_in_bytes`,
      String(limits.memoryBytes),
    );
    if (!swapLimited) notes.push("swap is not limited (no writable memory.memsw.limit_in_bytes)");
  }
  if (limits.cpuMillis !== undefined) {
    await Deno.writeTextFile(`${cpuDir}/cpu.cfs_period_us`, String(CFS_PERIOD_US));
    await Deno.writeTextFile(
      `${cpuDir}/cpu.cfs_quota_us`,
      String(limits.cpuMillis * CFS_PERIOD_US / 1000),
    );
  }
}
