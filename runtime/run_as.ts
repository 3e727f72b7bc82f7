/**
 * Running a deployment's processes as another user: prisn.toml `user` (and `group`).
 *
 * **Who.** The names are looked up on this host with `getent` (so NSS users count) each time a
 * version is prepared. Only an agent running as root can switch users, so any other agent
 * refuses `user`. `user = "root"` without a group changes nothing: the processes run as root,
 * as they would without `user`. With `user` alone, the process gets the user's primary group and
 * its supplementary groups (initgroups, as a login would); with `group`, that group is its
 * primary group and its only one. HOME, USER and LOGNAME are the user's (the `env` of the
 * deployment may still set them).
 *
 * **How.** Each start (service replica, job or cron run) runs as
 * `setsid → [FIFO redirect] → [cgroup join] → setpriv --reuid --regid --init-groups|--groups →
 * program`. The wrappers before setpriv run as root: they join the cgroup (root-owned, so the
 * process cannot leave it) and open the output FIFOs, whose descriptors the process inherits;
 * it never opens anything under PRISN_HOME by path to write its output. util-linux `setpriv`
 * execs in place (unlike runuser or su, which stay as a parent), so the pid prisn supervises,
 * records and signals with its group is the program's own.
 *
 * **What it can reach** (set by {@link openTo} whenever a version is prepared):
 * - PRISN_HOME and each folder between it and the version folder or a deps env: traverse only
 *   for others (`0711`, never listable). Everything else directly in PRISN_HOME is owner-only
 *   (`prisn.db*`, `prisn.sock`, `tokens.json`, `admin.token`, `logs/`, `state/`), as are
 *   `deployments/NAME/metadata.json` and `envs/.locks`.
 * - The version folder: `root:GID 0750`, GID being the process's primary group, so only that
 *   group can list and read it and nobody but root can change it (the files stay `0444`/`0555`
 *   root). Its `prisn.toml` is `0400`: it may hold secret `[env]` values, which the process gets
 *   as environment variables, never as a file. Versions of other deployments (or of this one,
 *   run as no one or as someone else) stay `0700` root or `0750` to their own group.
 * - Deps envs: shared by content hash between deployments, they hold only what the dependency
 *   files install. An env a version uses is `0755` under the traverse-only `envs/`: a user who
 *   knows an env's id can read (never change) it, but cannot list the envs.
 * - Folders above PRISN_HOME are not prisn's to change: a user that cannot traverse one of them
 *   (`/root` is `0700`, so the default home of root is out of reach) is refused at deploy, naming
 *   the folder; keep such an agent's PRISN_HOME under e.g. `/var/lib/prisn`.
 *
 * The cost of this layout: a run-as user learns that PRISN_HOME exists and can open files in it
 * by name only where the mode allows, which is nowhere but the paths above. The alternative, a
 * second data root outside PRISN_HOME for what users may read, would split every path prisn keeps.
 *
 * @module
 */

import { dirname, join, relative, resolve, sep } from "node:path";
import { invalid, PrisnError } from "../core/errors.ts";
import type { Paths } from "../core/paths.ts";

/** Who a deployment's processes run as, resolved on this host. */
export interface RunAs {
  user: string;
  uid: number;
  /** The primary group: the user's, or prisn.toml's `group`. */
  gid: number;
  /** prisn.toml's `group`, when given: then also the only supplementary group. */
  group?: string;
  /** Every group the process has (primary and supplementary). */
  groups: number[];
  /** The user's home directory, from its passwd entry. */
  home: string;
  /** The util-linux setpriv that switches to it. */
  setpriv: string;
}

/** Options for {@link resolveRunAs}. */
export interface ResolveRunAsOptions {
  /**
   * The uid the agent runs as.
   * @default Deno.uid()
   */
  agentUid?: number;
}

/**
 * Resolves prisn.toml's `user`/`group` on this host: undefined when there is none, or when it
 * is root without a group (nothing to change).
 * @throws {PrisnError} INVALID when the agent is not root, or the user or group is unknown;
 *   UNAVAILABLE when getent or setpriv is missing.
 */
export async function resolveRunAs(
  spec: { user?: string; group?: string },
  options: ResolveRunAsOptions = {},
): Promise<RunAs | undefined> {
  const { user, group } = spec;
  if (user === undefined) return undefined;
  const agentUid = options.agentUid ?? Deno.uid() ?? 0;
  if (agentUid !== 0) {
    throw invalid(
      `user = "${user}" needs an agent running as root (this one runs as uid ${agentUid}): ` +
        `run the agent as root, or remove user from prisn.toml`,
    );
  }
  const passwd = await getent("passwd", user);
  if (!passwd) {
    throw invalid(
      `user "${user}" does not exist on this host: create it (useradd --system ${user}) ` +
        `or change user in prisn.toml`,
    );
  }
  const uid = Number(passwd[2]);
  let gid = Number(passwd[3]);
  let groups: number[];
  if (group !== undefined) {
    const entry = await getent("group", group);
    if (!entry) {
      throw invalid(
        `group "${group}" does not exist on this host: create it (groupadd ${group}) ` +
          `or change group in prisn.toml`,
      );
    }
    gid = Number(entry[2]);
    groups = [gid];
  } else {
    if (uid === 0) return undefined; // root as root: nothing changes
    groups = await groupsOf(user, gid);
  }
  return { user, uid, gid, group, groups, home: passwd[5] || "/", setpriv: await setprivPath() };
}

/** The command line that runs `command args…` as `runAs`: setpriv, which execs in place. */
export function runAsCommand(
  runAs: RunAs,
  command: string,
  args: string[],
): { command: string; args: string[] } {
  return {
    command: runAs.setpriv,
    args: [
      `--reuid=${runAs.uid}`,
      `--regid=${runAs.gid}`,
      runAs.group === undefined ? "--init-groups" : `--groups=${runAs.gid}`,
      "--",
      command,
      ...args,
    ],
  };
}

/** HOME, USER and LOGNAME of the user, for the process's environment. */
export function runAsEnv(runAs: RunAs): Record<string, string> {
  return { HOME: runAs.home, USER: runAs.user, LOGNAME: runAs.user };
}

/** What {@link openTo} opens: a version folder and the deps envs it uses. */
export interface OpenToOptions {
  /** The data root: the version is under its `deployments`, the envs under its `envs`. */
  paths: Paths;
  /** The version folder the process runs in. */
  version: string;
  /** The deps env folders it uses. */
  envs: string[];
}

/**
 * Lets `runAs` reach its version folder (list and read) and its deps envs (read), and nothing
 * else under PRISN_HOME; see the module doc for the modes. Idempotent; never closes what another
 * deployment's user needs (the trees under `deployments/` and `envs/` are only opened here).
 * @throws {PrisnError} INVALID when a folder above PRISN_HOME keeps the user out.
 */
export async function openTo(runAs: RunAs, options: OpenToOptions): Promise<void> {
  const { paths, version, envs } = options;
  await checkHomeReachable(runAs, paths.home);
  const shared = new Set([paths.deployments, paths.envs].map((p) => resolve(p)));
  const onPath = new Set([resolve(paths.home), ...shared]);
  for (
    const [target, under] of [[version, paths.deployments], ...envs.map((e) => [e, paths.envs])]
  ) {
    const rel = relative(resolve(under), resolve(target));
    if (rel === "" || rel.startsWith("..")) {
      throw new PrisnError("FAILED", `${target} is not under ${under}`);
    }
    for (let dir = dirname(resolve(target)); !shared.has(dir); dir = dirname(dir)) onPath.add(dir);
  }
  // Owner-only first, then traverse-only: nothing is ever open beyond what it should be.
  for await (const entry of Deno.readDir(paths.home)) {
    const path = resolve(paths.home, entry.name);
    if (!entry.isSymlink && !onPath.has(path)) await restrict(path, 0o700);
  }
  for (const dir of onPath) await restrict(dir, 0o711, 0o011);
  await restrict(join(dirname(version), "metadata.json"), 0o600);
  await restrict(join(paths.envs, ".locks"), 0o700);

  await Deno.chown(version, null, runAs.gid);
  await Deno.chmod(version, 0o750);
  const real = await Deno.realPath(join(version, "prisn.toml")).catch(() => undefined);
  if (real?.startsWith(await Deno.realPath(version) + sep)) await Deno.chmod(real, 0o400);
  for (const env of envs) await Deno.chmod(env, 0o755);
}

/**
 * Sets `path`'s permission bits to those of `mask` it has, plus `add` (absent paths are skipped):
 * `restrict(p, 0o700)` makes it owner-only, `restrict(p, 0o711, 0o011)` traverse-only for others.
 */
async function restrict(path: string, mask: number, add = 0): Promise<void> {
  let mode: number;
  try {
    mode = (await Deno.stat(path)).mode! & 0o7777;
  } catch {
    return; // gone, or never made
  }
  const wanted = (mode & mask) | add;
  if (wanted !== mode) await Deno.chmod(path, wanted);
}

/**
 * Fails unless `runAs` may traverse every folder above PRISN_HOME (of its real path).
 * @throws {PrisnError} INVALID naming the first folder that keeps it out.
 */
export async function checkHomeReachable(runAs: RunAs, home: string): Promise<void> {
  const real = await Deno.realPath(home);
  for (let dir = dirname(real);; dir = dirname(dir)) {
    const info = await Deno.stat(dir);
    if (!mayTraverse(runAs, info)) {
      throw invalid(
        `user "${runAs.user}" cannot reach PRISN_HOME ${home}: ${dir} is closed to it ` +
          `(mode ${(info.mode! & 0o777).toString(8).padStart(4, "0")}): run this agent with a ` +
          `PRISN_HOME under folders others may traverse, e.g. /var/lib/prisn`,
      );
    }
    if (dir === dirname(dir)) return;
  }
}

/** Whether the owner, group or other execute bit that applies to `runAs` is set (ACLs aside). */
function mayTraverse(runAs: RunAs, info: Deno.FileInfo): boolean {
  const mode = info.mode!;
  if (info.uid === runAs.uid) return (mode & 0o100) !== 0;
  if (runAs.groups.includes(info.gid!)) return (mode & 0o010) !== 0;
  return (mode & 0o001) !== 0;
}

/** A passwd or group entry's fields, or undefined when there is none of that name. */
async function getent(db: "passwd" | "group", name: string): Promise<string[] | undefined> {
  let out: Deno.CommandOutput;
  try {
    out = await new Deno.Command("getent", { args: [db, name], stdout: "piped", stderr: "null" })
      .output();
  } catch (e) {
    throw new PrisnError(
      "UNAVAILABLE",
      `cannot look up ${db === "passwd" ? "users" : "groups"}: getent is not installed (libc-bin)`,
      { cause: e },
    );
  }
  if (!out.success) return undefined; // 2: no such entry
  const line = new TextDecoder().decode(out.stdout).split("\n")[0];
  const fields = line.split(":");
  return fields[0] === name && /^\d+$/.test(fields[2] ?? "") ? fields : undefined;
}

/** The user's groups as initgroups gives them (`id -G`), its primary group first. */
async function groupsOf(user: string, gid: number): Promise<number[]> {
  let out: Deno.CommandOutput | undefined;
  try {
    out = await new Deno.Command("id", { args: ["-G", "--", user], stdout: "piped" }).output();
  } catch { /* no `id`: no supplementary groups */ }
  const listed = out?.success
    ? new TextDecoder().decode(out.stdout).trim().split(/\s+/).map(Number)
    : [];
  return [...new Set([gid, ...listed.filter(Number.isInteger)])];
}

let setprivCache: string | undefined;

/** util-linux setpriv, which switches uid, gid and groups and execs in place. */
async function setprivPath(): Promise<string> {
  if (setprivCache) return setprivCache;
  for (const path of ["/usr/bin/setpriv", "/bin/setpriv"]) {
    try {
      if ((await Deno.stat(path)).isFile) return setprivCache = path;
    } catch { /* not here */ }
  }
  throw new PrisnError(
    "UNAVAILABLE",
    "user needs util-linux setpriv, which is not installed: install util-linux",
  );
}
