/**
 * Checks of what callers pass to runtime/limits: group names, cgroup roots and limits.
 *
 * @module
 */

import { PrisnError } from "../../core/errors.ts";
import type { GroupRootOptions, Limits } from "./types.ts";

const DEFAULT_ROOT = "prisn";
const MIN_CPU_MILLIS = 10; // the kernel's smallest cfs quota is 1 ms per period
const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;

/** The checked cgroup root of `options`; `prisn` when none is given. */
export function rootOf(options: GroupRootOptions): string {
  return checkRoot(options.root ?? DEFAULT_ROOT);
}

export function asksForLimits(limits: Limits): boolean {
  return limits.cpuMillis !== undefined || limits.memoryBytes !== undefined;
}

export function checkName(name: string): void {
  if (!NAME_PATTERN.test(name)) {
    throw new PrisnError(
      "INVALID",
      `invalid limit group name ${JSON.stringify(name)}: use letters, digits, '-', '_' or '.'`,
    );
  }
}

export function checkLimits(limits: Limits): void {
  const { cpuMillis, memoryBytes } = limits;
  if (cpuMillis !== undefined && (!Number.isSafeInteger(cpuMillis) || cpuMillis < MIN_CPU_MILLIS)) {
    throw new PrisnError(
      "INVALID",
      `invalid cpu limit ${cpuMillis}: give whole millicores, at least ${MIN_CPU_MILLIS}m`,
    );
  }
  if (memoryBytes !== undefined && (!Number.isSafeInteger(memoryBytes) || memoryBytes <= 0)) {
    throw new PrisnError("INVALID", `invalid memory limit ${memoryBytes}: give a positive size`);
  }
}

export function unavailable(what: string): PrisnError {
  return new PrisnError(
    "UNAVAILABLE",
    `cannot enforce limits with cgroups: this host has no ${what} prisn can write to; ` +
      "run the agent as root or use rlimit enforcement",
  );
}

function checkRoot(root: string): string {
  const segments = root.split("/");
  if (!segments.every((segment) => NAME_PATTERN.test(segment))) {
    throw new PrisnError(
      "INVALID",
      `invalid cgroup root ${JSON.stringify(root)}: use relative '/'-separated names`,
    );
  }
  return root;
}
