/**
 * Resource limits for supervised processes: a cpu rate (millicores) and a memory ceiling (bytes).
 *
 * Each replica or run gets one {@link LimitGroup}. Where the host lets us, the group is a cgroup
 * (v2 if the unified hierarchy has the `memory` and `cpu` controllers, else v1); otherwise memory
 * is capped with an rlimit and cpu is reported as not enforced.
 *
 * Deno cannot run code between fork and exec, so the child joins its cgroup (or sets its rlimit)
 * itself: {@link LimitGroup.wrap} turns a command into `/bin/sh -c FIXED_SCRIPT sh …` where the
 * user's command and arguments are only ever positional parameters, never part of the script.
 *
 * @module
 */
import { PrisnError } from "../core/errors.ts";

/** How limits are enforced on this host, best first. */
export type Enforcement = "cgroup-v2" | "cgroup-v1" | "rlimit" | "none";

/** The limits of one replica or run. An absent field means "no limit". */
export interface Limits {
  /** CPU rate in millicores (1000 = one full core); at least 10. */
  cpuMillis?: number;
  /** Memory ceiling in bytes; swap counts towards it where the host can limit swap. */
  memoryBytes?: number;
}

/** Where prisn's cgroups live. */
export interface GroupRootOptions {
  /**
   * Parent group, relative to each controller's mount ("/"-separated segments), created if
   * missing. Groups live at e.g. `/sys/fs/cgroup/memory/<root>/<name>`.
   * @default "prisn"
   */
  root?: string;
}

/** Options of {@link LimitGroup.create}. */
export interface CreateLimitGroupOptions extends GroupRootOptions {
  /**
   * Use this enforcement instead of detecting one (for tests, or an operator pinning a mode).
   * A forced cgroup mode the host cannot provide fails with `UNAVAILABLE`.
   * @default the result of {@link detectEnforcement}
   */
  enforcement?: Enforcement;
}

/** Options of {@link cleanupStaleGroups}. */
export interface CleanupOptions extends GroupRootOptions {
  /**
   * Also remove the root group itself once it is empty.
   * @default false
   */
  removeRoot?: boolean;
}

/** Options of {@link LimitGroup.destroy}. */
export interface DestroyOptions {
  /**
   * How long to wait for killed processes to leave the group before giving up.
   * @default 5000
   */
  timeoutMs?: number;
}

/** A command line ready for `new Deno.Command(command, { args })`. */
export interface WrappedCommand {
  command: string;
  args: string[];
}

/** Cgroup mount points read from /proc/self/mountinfo (read-only mounts are left out). */
export interface CgroupMounts {
  /** The cgroup v2 (unified) mount, if any. */
  unified?: string;
  /** cgroup v1 controller name (`memory`, `cpu`, …) → mount point of its hierarchy. */
  v1: Record<string, string>;
}

/** Exit code of a wrapped command whose wrapper could not join its cgroup or set its rlimit. */
export const LIMIT_SETUP_EXIT_CODE = 125;

const DEFAULT_ROOT = "prisn";
const CONTROLLERS = ["memory", "cpu"] as const;
const CFS_PERIOD_US = 100_000;
const MIN_CPU_MILLIS = 10; // the kernel's smallest cfs quota is 1 ms per period
const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;
const POLL_MS = 10;

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
  const root = checkRoot(options.root ?? DEFAULT_ROOT);
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
    const root = checkRoot(options.root ?? DEFAULT_ROOT);
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

/**
 * Removes the groups under `root` whose names are not in `keep`, killing any process still in
 * them: what a crashed agent left behind. Looks in every hierarchy prisn may have used (v2 and
 * v1). Returns the names removed, sorted.
 */
export async function cleanupStaleGroups(
  keep: ReadonlySet<string>,
  options: CleanupOptions = {},
): Promise<string[]> {
  const root = checkRoot(options.root ?? DEFAULT_ROOT);
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

/**
 * Says what limits apply and how, for `prisn get`: e.g. `cpu 500m, memory 512Mi (cgroup v1)`,
 * `memory 512Mi (rlimit), cpu 500m not enforced`, or `none`.
 */
export function describeLimits(limits: Limits, enforcement: Enforcement): string {
  const cpu = limits.cpuMillis === undefined ? undefined : `cpu ${formatCpu(limits.cpuMillis)}`;
  const memory = limits.memoryBytes === undefined
    ? undefined
    : `memory ${formatBytes(limits.memoryBytes)}`;
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

// ---------------------------------------------------------------------------------------------

function asksForLimits(limits: Limits): boolean {
  return limits.cpuMillis !== undefined || limits.memoryBytes !== undefined;
}

function checkName(name: string): void {
  if (!NAME_PATTERN.test(name)) {
    throw new PrisnError(
      "INVALID",
      `invalid limit group name ${JSON.stringify(name)}: use letters, digits, '-', '_' or '.'`,
    );
  }
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

function checkLimits(limits: Limits): void {
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

function unavailable(what: string): PrisnError {
  return new PrisnError(
    "UNAVAILABLE",
    `cannot enforce limits with cgroups: this host has no ${what} prisn can write to; ` +
      "run the agent as root or use rlimit enforcement",
  );
}

async function readMounts(): Promise<CgroupMounts> {
  return parseCgroupMounts(await readText("/proc/self/mountinfo") ?? "");
}

/** Makes sure `<unified>/<root>` exists with memory and cpu enabled for its children. */
async function prepareV2(mounts: CgroupMounts, root: string): Promise<string | undefined> {
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

/** Makes sure `<memory mount>/<root>` and `<cpu mount>/<root>` exist and are writable. */
async function prepareV1(
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

/** A best guess without access(2): root, or the owner with the write bit. */
async function canWrite(dir: string): Promise<boolean> {
  if (Deno.uid() === 0) return true;
  const info = await Deno.stat(dir);
  return info.uid === Deno.uid() && ((info.mode ?? 0) & 0o200) !== 0;
}

/** Creates `<parent>/<name>`, replacing an empty leftover of the same name. */
async function makeGroup(parent: string, name: string): Promise<string> {
  const dir = `${parent}/${name}`;
  const existing = await Deno.stat(dir).catch(() => undefined);
  if (existing && !existing.isDirectory) {
    throw new PrisnError("INVALID", `limit group name ${name} clashes with cgroup file ${dir}`);
  }
  if (existing) {
    const pids = await readPids([dir]);
    if (pids.length > 0) {
      throw new PrisnError(
        "CONFLICT",
        `cgroup ${dir} still holds processes ${
          pids.join(", ")
        }; stop them or clean up stale groups`,
      );
    }
    await removeDir(dir);
  }
  try {
    await Deno.mkdir(dir);
  } catch (cause) {
    throw new PrisnError("FAILED", `cannot create cgroup ${dir}: ${message(cause)}`, { cause });
  }
  return dir;
}

/** Runs `apply`; if it fails, removes the directories listed in `dirs` and rethrows. */
async function applyOrRemove(dirs: string[], apply: () => Promise<void>): Promise<void> {
  try {
    await apply();
  } catch (cause) {
    for (const dir of dirs) await removeDir(dir).catch(() => {});
    if (cause instanceof PrisnError) throw cause;
    throw new PrisnError("FAILED", `cannot apply resource limits: ${message(cause)}`, { cause });
  }
}

async function applyV1(
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

async function applyV2(dir: string, limits: Limits, notes: string[]): Promise<void> {
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

async function tryWrite(path: string, value: string): Promise<boolean> {
  try {
    await Deno.writeTextFile(path, value, { create: false });
    return true;
  } catch {
    return false;
  }
}

/** The kernel's OOM-kill counter of a group, or undefined where the kernel has none. */
async function readOomCount(enforcement: Enforcement, dir: string): Promise<number | undefined> {
  const file = enforcement === "cgroup-v2" ? "memory.events" : "memory.oom_control";
  const text = await readText(`${dir}/${file}`);
  const match = text?.match(/^oom_kill (\d+)$/m);
  return match ? Number(match[1]) : undefined;
}

async function readPids(dirs: readonly string[]): Promise<number[]> {
  const pids = new Set<number>();
  for (const dir of dirs) {
    const text = await readText(`${dir}/cgroup.procs`);
    for (const word of words(text)) pids.add(Number(word));
  }
  return [...pids];
}

function killPids(pids: number[], signal: Deno.Signal): number {
  let signalled = 0;
  for (const pid of pids) {
    try {
      Deno.kill(pid, signal);
      signalled++;
    } catch {
      // already gone
    }
  }
  return signalled;
}

/** SIGKILLs every process in `dirs` until they are empty, then removes them. */
async function emptyAndRemove(dirs: readonly string[], timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let remaining = [...dirs];
  while (remaining.length > 0) {
    killPids(await readPids(remaining), "SIGKILL");
    const next: string[] = [];
    for (const dir of remaining) {
      try {
        await removeDir(dir);
      } catch {
        next.push(dir); // still busy: processes are on their way out
      }
    }
    remaining = next;
    if (remaining.length === 0) return;
    if (Date.now() > deadline) {
      const pids = await readPids(remaining);
      throw new PrisnError(
        "FAILED",
        `cannot remove cgroup ${remaining[0]}: processes ${pids.join(", ") || "none"} remain`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}

async function removeDir(dir: string): Promise<void> {
  try {
    await Deno.remove(dir);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
}

async function childGroups(parent: string): Promise<string[]> {
  const names: string[] = [];
  try {
    for await (const entry of Deno.readDir(parent)) {
      if (entry.isDirectory) names.push(entry.name);
    }
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  return names;
}

async function readText(path: string): Promise<string | undefined> {
  try {
    return (await Deno.readTextFile(path)).trim();
  } catch {
    return undefined;
  }
}

function words(text: string | undefined): Set<string> {
  return new Set((text ?? "").split(/\s+/).filter((word) => word !== ""));
}

function unique<T>(items: T[]): T[] {
  return [...new Set(items)];
}

/** mountinfo escapes space, tab, newline and backslash as octal `\ooo`. */
function unescapeMountField(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, octal) => String.fromCharCode(parseInt(octal, 8)));
}

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function formatCpu(millis: number): string {
  return millis % 1000 === 0 ? String(millis / 1000) : `${millis}m`;
}

function formatBytes(bytes: number): string {
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
