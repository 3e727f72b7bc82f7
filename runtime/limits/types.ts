/**
 * The types of runtime/limits: what is limited, how it is enforced, and the options of
 * `LimitGroup` and `cleanupStaleGroups`.
 *
 * @module
 */

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

/** Options of `LimitGroup.create`. */
export interface CreateLimitGroupOptions extends GroupRootOptions {
  /**
   * Use this enforcement instead of detecting one (for tests, or an operator pinning a mode).
   * A forced cgroup mode the host cannot provide fails with `UNAVAILABLE`.
   * @default the result of `detectEnforcement`
   */
  enforcement?: Enforcement;
}

/** Options of `cleanupStaleGroups`. */
export interface CleanupOptions extends GroupRootOptions {
  /**
   * Also remove the root group itself once it is empty.
   * @default false
   */
  removeRoot?: boolean;
}

/** Options of `LimitGroup.destroy`. */
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
