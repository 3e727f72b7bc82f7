/**
 * One replica's or run's limits: its cgroups (or rlimit), the command line that runs inside
 * them, and what the kernel reports about it afterwards.
 *
 * @module
 */

import { PrisnError } from "../../core/errors.ts";
import {
  applyOrRemove,
  emptyAndRemove,
  killPids,
  makeGroup,
  readOomCount,
  readPids,
  readText,
  unique,
} from "./_cgroup.ts";
import { applyV1, prepareV1 } from "./_cgroup_v1.ts";
import { applyV2, prepareV2 } from "./_cgroup_v2.ts";
import { asksForLimits, checkLimits, checkName, rootOf, unavailable } from "./_checks.ts";
import { detectEnforcement, readMounts } from "./detect.ts";
import type {
  CreateLimitGroupOptions,
  DestroyOptions,
  Enforcement,
  Limits,
  WrappedCommand,
} from "./types.ts";

/** Exit code of a wrapped command whose wrapper could not join its cgroup or set its rlimit. */
export const LIMIT_SETUP_EXIT_CODE = 125;

/**
 * Joins every cgroup.procs file given, then execs the command. `$1` is the number of procs files,
 * followed by the files, the command and its arguments.
 */
const CGROUP_SCRIPT = `n=$1; shift
while [ "$n" -gt 0 ]; do
  echo $$ > "$1" || { echo "prisn: cannot join cgroup $1" >&2; exit ${LIMIT_SETUP_EXIT_CODE}; }
  shift; n=$((n - 1))
done
exec "$@"`;

/** Sets RLIMIT_DATA to `$1` KiB, then execs the command in `$2…`. */
const RLIMIT_SCRIPT =
  `ulimit -d "$1" || { echo "prisn: cannot set memory rlimit" >&2; exit ${LIMIT_SETUP_EXIT_CODE}; }
shift
exec "$@"`;

/**
 * Resource limits of one replica or run. Create one before spawning, spawn through
 * {@link LimitGroup.wrap}, ask {@link LimitGroup.oomKilled} when the process exits, and
 * {@link LimitGroup.destroy} when the replica or run is done.
 */
export class LimitGroup {
  /** The group's name, e.g. `api-0` or a run id. */
  readonly name: string;
  /** The limits asked for. */
  readonly limits: Readonly<Limits>;
  /** How the limits are enforced. */
  readonly enforcement: Enforcement;
  /** The cgroup directories of this group (one per hierarchy); empty without cgroups. */
  readonly paths: readonly string[];
  /** What is asked but not enforced (e.g. swap, or cpu under rlimits), one sentence each. */
  readonly notes: readonly string[];
  #oomBaseline: number;
  #destroyed = false;
  #finalOom = false;
  #finalPeak: number | undefined;

  private constructor(fields: {
    name: string;
    limits: Limits;
    enforcement: Enforcement;
    paths: string[];
    notes: string[];
    oomBaseline: number;
  }) {
    this.name = fields.name;
    this.limits = Object.freeze({ ...fields.limits });
    this.enforcement = fields.enforcement;
    this.paths = Object.freeze([...fields.paths]);
    this.notes = Object.freeze([...fields.notes]);
    this.#oomBaseline = fields.oomBaseline;
  }

  /**
   * Creates the group `name` (e.g. `api-0` or a run id) and applies `limits`.
   *
   * With cgroups, a leftover empty group of the same name (from a crashed agent) is replaced; one
   * that still holds processes fails with `CONFLICT` (see {@link cleanupStaleGroups}). The
   * cgroups are created even when a limit is absent, so every process can be accounted for,
   * OOM-checked and killed as a group.
   */
  static async create(
    name: string,
    limits: Limits,
    options: CreateLimitGroupOptions = {},
  ): Promise<LimitGroup> {
    checkName(name);
    checkLimits(limits);
    const root = rootOf(options);
    const enforcement = options.enforcement ?? await detectEnforcement(limits, { root });
    const notes: string[] = [];
    const base = { name, limits, enforcement, notes, paths: [] as string[], oomBaseline: 0 };
    switch (enforcement) {
      case "none":
        if (asksForLimits(limits)) notes.push("limits are not enforced on this host");
        return new LimitGroup(base);
      case "rlimit":
        if (limits.cpuMillis !== undefined) {
          notes.push("cpu is not limited: an rlimit cannot cap a cpu rate");
        }
        if (limits.memoryBytes !== undefined) {
          notes.push("memory is capped per process (RLIMIT_DATA), not for the whole group");
        }
        return new LimitGroup(base);
      case "cgroup-v2": {
        const parent = await prepareV2(await readMounts(), root);
        if (!parent) throw unavailable("cgroup v2 with the memory and cpu controllers");
        const dir = await makeGroup(parent, name);
        await applyOrRemove([dir], () => applyV2(dir, limits, notes));
        const oomBaseline = await readOomCount("cgroup-v2", dir) ?? 0;
        return new LimitGroup({ ...base, paths: [dir], oomBaseline });
      }
      case "cgroup-v1": {
        const parents = await prepareV1(await readMounts(), root);
        if (!parents) throw unavailable("writable cgroup v1 memory and cpu hierarchies");
        const paths: string[] = [];
        await applyOrRemove(paths, async () => {
          for (const parent of unique([parents.memory, parents.cpu])) {
            paths.push(await makeGroup(parent, name));
          }
          await applyV1(`${parents.memory}/${name}`, `${parents.cpu}/${name}`, limits, notes);
        });
        const oomBaseline = await readOomCount("cgroup-v1", paths[0]) ?? 0;
        return new LimitGroup({ ...base, paths, oomBaseline });
      }
    }
  }

  /**
   * Returns the command line that runs `command args…` inside this group: the child joins the
   * cgroup (or sets its rlimit) and then execs `command` with `args` passed through verbatim.
   * Spawn it detached, as usual; the pid stays the same across the exec.
   *
   * If the wrapper cannot join the group it exits with {@link LIMIT_SETUP_EXIT_CODE}; a missing
   * `command` shows as exit code 127 from the shell rather than a spawn error.
   */
  wrap(command: string, args: string[]): WrappedCommand {
    if (this.#destroyed) {
      throw new PrisnError("FAILED", `limit group ${this.name} was destroyed; create a new one`);
    }
    if (command === "" || command.startsWith("-")) {
      throw new PrisnError("INVALID", `cannot run command ${JSON.stringify(command)}`);
    }
    switch (this.enforcement) {
      case "none":
        return { command, args: [...args] };
      case "rlimit": {
        if (this.limits.memoryBytes === undefined) return { command, args: [...args] };
        const kib = Math.max(1, Math.floor(this.limits.memoryBytes / 1024));
        return {
          command: "/bin/sh",
          args: ["-c", RLIMIT_SCRIPT, "sh", String(kib), command, ...args],
        };
      }
      case "cgroup-v1":
      case "cgroup-v2": {
        const procs = this.paths.map((dir) => `${dir}/cgroup.procs`);
        return {
          command: "/bin/sh",
          args: ["-c", CGROUP_SCRIPT, "sh", String(procs.length), ...procs, command, ...args],
        };
      }
    }
  }

  /**
   * Whether the kernel OOM-killed a process in this group since it was created (cgroups only;
   * under rlimits an allocation fails instead and this is always false). On old v1 kernels
   * without an `oom_kill` counter this falls back to "the limit was hit" (memory.failcnt), which
   * callers should combine with the process having died of SIGKILL.
   */
  async oomKilled(): Promise<boolean> {
    if (this.#destroyed) return this.#finalOom;
    if (this.paths.length === 0) return false;
    const count = await readOomCount(this.enforcement, this.paths[0]);
    if (count !== undefined) return count > this.#oomBaseline;
    return Number(await readText(`${this.paths[0]}/memory.failcnt`) ?? 0) > 0;
  }

  /** The group's peak memory use in bytes, if the host reports it (cgroups only). */
  async memoryPeak(): Promise<number | undefined> {
    if (this.#destroyed) return this.#finalPeak;
    if (this.paths.length === 0) return undefined;
    const file = this.enforcement === "cgroup-v2" ? "memory.peak" : "memory.max_usage_in_bytes";
    const text = await readText(`${this.paths[0]}/${file}`);
    return text === undefined ? undefined : Number(text);
  }

  /**
   * Sends `signal` to every process in the group, including those that left the process group
   * (setsid) and so escape a group kill. Returns how many were signalled; 0 without cgroups.
   */
  async killAll(signal: Deno.Signal = "SIGKILL"): Promise<number> {
    if (this.#destroyed) return 0;
    return killPids(await readPids(this.paths), signal);
  }

  /**
   * Kills whatever is left in the group and removes its cgroups. Idempotent; after it,
   * {@link LimitGroup.oomKilled} and {@link LimitGroup.memoryPeak} answer with the last values.
   */
  async destroy(options: DestroyOptions = {}): Promise<void> {
    if (this.#destroyed) return;
    if (this.paths.length > 0) {
      this.#finalOom = await this.oomKilled();
      this.#finalPeak = await this.memoryPeak();
      await emptyAndRemove(this.paths, options.timeoutMs ?? 5000);
    }
    this.#destroyed = true;
  }
}
