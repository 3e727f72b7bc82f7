import { createHash } from "node:crypto";
import { parseCpu, parseMemory } from "../core/quantity.ts";
import type { Resources } from "../core/prisn_toml.ts";
import {
  cleanupStaleGroups,
  describeLimits,
  detectEnforcement,
  type Enforcement,
  LimitGroup,
  type Limits,
} from "./limits.ts";

/** The cgroup parent of one PRISN_HOME, so agents of different homes never touch each other. */
export function cgroupRoot(home: string): string {
  return "prisn-" + createHash("sha256").update(home).digest("hex").slice(0, 8);
}

/** A spec's [resources] as numbers, or undefined when none are set. */
export function limitsOf(resources: Resources | undefined): Limits | undefined {
  if (!resources || (resources.cpu === undefined && resources.memory === undefined)) {
    return undefined;
  }
  const limits: Limits = {};
  if (resources.cpu !== undefined) limits.cpuMillis = parseCpu(resources.cpu, "resources.cpu");
  if (resources.memory !== undefined) {
    limits.memoryBytes = parseMemory(resources.memory, "resources.memory");
  }
  return limits;
}

/**
 * Resource limits of the processes of one PRISN_HOME. Each process start gets a fresh group
 * (so an OOM kill is attributed to the right start), destroyed after the process exits.
 */
export class ResourceControl {
  #enforcement = new Map<string, Promise<Enforcement>>();
  #host?: Promise<Enforcement>;

  constructor(readonly home: string) {}

  get root(): string {
    return cgroupRoot(this.home);
  }

  /**
   * A group for one process start: with the spec's limits, or, without limits, a plain cgroup
   * where the host has usable ones, so that stopping reaches processes that left the process
   * group (setsid, daemons). Undefined without limits on a host without usable cgroups.
   */
  async group(name: string, resources: Resources | undefined): Promise<LimitGroup | undefined> {
    const limits = limitsOf(resources);
    const safe = name.replace(/[^A-Za-z0-9_.-]/g, "_");
    if (limits) return await LimitGroup.create(safe, limits, { root: this.root });
    this.#host ??= detectEnforcement(undefined, { root: this.root });
    const enforcement = await this.#host;
    if (enforcement !== "cgroup-v1" && enforcement !== "cgroup-v2") return undefined;
    return await LimitGroup.create(safe, {}, { root: this.root, enforcement });
  }

  /** "cpu 500m, memory 512Mi (cgroup v1)" for `prisn get`, or undefined without limits. */
  async describe(resources: Resources | undefined): Promise<string | undefined> {
    const limits = limitsOf(resources);
    if (!limits) return undefined;
    const key = JSON.stringify(limits);
    let enforcement = this.#enforcement.get(key);
    if (!enforcement) {
      enforcement = detectEnforcement(limits, { root: this.root });
      this.#enforcement.set(key, enforcement);
    }
    return describeLimits(limits, await enforcement);
  }

  /**
   * Kills whatever is left in this home's groups and removes them: at start (an earlier agent's
   * leftovers) and at shutdown (`removeRoot` then removes the home's parent group too).
   */
  async cleanup(options: { removeRoot?: boolean } = {}): Promise<string[]> {
    return await cleanupStaleGroups(new Set(), {
      root: this.root,
      removeRoot: options.removeRoot ?? false,
    });
  }
}
