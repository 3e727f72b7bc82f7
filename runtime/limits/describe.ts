/**
 * Saying what limits apply and how, for `prisn get`.
 *
 * @module
 */

import { formatCpu, formatMemory } from "../../core/quantity.ts";
import type { Enforcement, Limits } from "./types.ts";

/**
 * Says what limits apply and how, for `prisn get`: e.g. `cpu 500m, memory 512Mi (cgroup v1)`,
 * `memory 512Mi (rlimit), cpu 500m not enforced`, or `none`.
 */
export function describeLimits(limits: Limits, enforcement: Enforcement): string {
  const cpu = limits.cpuMillis === undefined ? undefined : `cpu ${formatCpu(limits.cpuMillis)}`;
  const memory = limits.memoryBytes === undefined
    ? undefined
    : `memory ${formatMemory(limits.memoryBytes, { binaryOnly: true })}`;
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
