/**
 * Detection: which enforcement this host offers, read from its cgroup mounts.
 *
 * @module
 */

import { readText } from "./_cgroup.ts";
import { prepareV1 } from "./_cgroup_v1.ts";
import { prepareV2 } from "./_cgroup_v2.ts";
import { asksForLimits, rootOf } from "./_checks.ts";
import type { CgroupMounts, Enforcement, GroupRootOptions, Limits } from "./types.ts";

/**
 * Finds which enforcement the host offers, best first:
 * - `cgroup-v2` if the unified hierarchy has the `memory` and `cpu` controllers and prisn can
 *   enable them down to its root group (which it creates);
 * - else `cgroup-v1` if the v1 `memory` and `cpu` hierarchies are mounted writable and the root
 *   group can be created in both;
 * - else `rlimit` (memory only: cpu cannot be capped by rate with an rlimit);
 * - `none` when `limits` asks for nothing, or there is no POSIX shell (Windows).
 *
 * Probing creates the (empty) root group where cgroups are usable; nothing else changes.
 */
export async function detectEnforcement(
  limits?: Limits,
  options: GroupRootOptions = {},
): Promise<Enforcement> {
  if (limits && !asksForLimits(limits)) return "none";
  if (Deno.build.os === "windows") return "none";
  const root = rootOf(options);
  const mounts = await readMounts();
  if (await prepareV2(mounts, root)) return "cgroup-v2";
  if (await prepareV1(mounts, root)) return "cgroup-v1";
  return "rlimit";
}

/** Reads cgroup mounts out of /proc/self/mountinfo text. Pure; exported for tests. */
export function parseCgroupMounts(mountinfo: string): CgroupMounts {
  const mounts: CgroupMounts = { v1: {} };
  for (const line of mountinfo.split("\n")) {
    const fields = line.trim().split(" ");
    const separator = fields.indexOf("-");
    if (separator < 6 || fields.length < separator + 4) continue;
    const mountPoint = unescapeMountField(fields[4]);
    const readOnly = fields[5].split(",").includes("ro");
    const fsType = fields[separator + 1];
    if (readOnly) continue;
    if (fsType === "cgroup2") {
      mounts.unified ??= mountPoint;
    } else if (fsType === "cgroup") {
      for (const option of fields[separator + 3].split(",")) {
        if (option.includes("=")) continue;
        mounts.v1[option] ??= mountPoint;
      }
    }
  }
  return mounts;
}

/** This host's writable cgroup mounts, from /proc/self/mountinfo (for the other limits files). */
export async function readMounts(): Promise<CgroupMounts> {
  return parseCgroupMounts(await readText("/proc/self/mountinfo") ?? "");
}

/** mountinfo escapes space, tab, newline and backslash as octal `\ooo`. */
function unescapeMountField(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, octal) => String.fromCharCode(parseInt(octal, 8)));
}
