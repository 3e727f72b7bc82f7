/**
 * Saying what limits apply and how, for `prisn get`.
 *
 * @module
 */

import { formatCpu } from "../../core/quantity.ts";
import type { Enforcement, Limits } from "./types.ts";

/**
 * Says what limits apply and how, for `prisn get`: e.g. `cpu 500m, memory 512Mi (cgroup v1)`,
 * `memory 512Mi (rlimit), cpu 500m not enforced`, or `none`.
 */
export function describeLimits(limits: Limits, enforcement: Enforcement): string {
  const cpu = limits.cpuMillis === undefined ? undefined : `cpu ${formatCpu(limits.cpuMillis)}`;
  const memory = limits.memoryBytes === undefined
    ? undefined
    : `memory ${formatBinaryBytes(limits.memoryBytes)}`;
  const asked = [cpu, memory].filter((part) => part !== undefined);
  if (asked.length === 0) return "none";
  switch (enforcement) {
    case "cgroup-v2":
      return `${asked.join(", ")} (cgroup v2)`;
    case "cgroup-v1":
      return `${asked.join(", ")} (cgroup v1)`;
    case "rlimit":
      if (!memory) return `${cpu} not enforced (rlimit cannot cap cpu)`;
      return cpu ? `${memory} (rlimit), ${cpu} not enforced` : `${memory} (rlimit)`;
    case "none":
      return `${asked.join(", ")} (not enforced)`;
  }
}

/**
 * Bytes in binary units only, as `prisn get` has always shown limits: "512Mi", "95.4Mi" for
 * 100_000_000, "1000" for 1000. Not core/quantity.ts `formatMemory`, which prefers exact
 * decimal units ("100M", "1k") and would change what `prisn get` prints.
 */
function formatBinaryBytes(bytes: number): string {
  const units = ["Ti", "Gi", "Mi", "Ki"];
  for (const [index, unit] of units.entries()) {
    const size = 1024 ** (units.length - index);
    if (bytes >= size && bytes % size === 0) return `${bytes / size}${unit}`;
  }
  for (const [index, unit] of units.entries()) {
    const size = 1024 ** (units.length - index);
    if (bytes >= size) return `${(bytes / size).toFixed(1)}${unit}`;
  }
  return String(bytes);
}
