/**
 * Resource limits for supervised processes: a cpu rate (millicores) and a memory ceiling (bytes).
 *
 * Each replica or run gets one `LimitGroup`. Where the host lets us, the group is a cgroup
 * (v2 if the unified hierarchy has the `memory` and `cpu` controllers, else v1); otherwise memory
 * is capped with an rlimit and cpu is reported as not enforced.
 *
 * Deno cannot run code between fork and exec, so the child joins its cgroup (or sets its rlimit)
 * itself: `LimitGroup.wrap` turns a command into `/bin/sh -c FIXED_SCRIPT sh …` where the
 * user's command and arguments are only ever positional parameters, never part of the script.
 *
 * This file holds the public names; the code is in runtime/limits/: limit_group.ts (a group, the
 * wrapper scripts), detect.ts (which enforcement, cgroup mounts), cleanup.ts, describe.ts,
 * _cgroup_v2.ts and _cgroup_v1.ts (each hierarchy's setup and limits), _cgroup.ts (the cgroup
 * files both share), _checks.ts (names, roots, limits) and types.ts.
 *
 * @module
 */

export { cleanupStaleGroups } from "./limits/cleanup.ts";
export { describeLimits } from "./limits/describe.ts";
export { detectEnforcement, parseCgroupMounts } from "./limits/detect.ts";
export { LIMIT_SETUP_EXIT_CODE, LimitGroup } from "./limits/limit_group.ts";
export type {
  CgroupMounts,
  CleanupOptions,
  CreateLimitGroupOptions,
  DestroyOptions,
  Enforcement,
  GroupRootOptions,
  Limits,
  WrappedCommand,
} from "./limits/types.ts";
