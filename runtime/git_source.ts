/**
 * Fetching a deploy source from a git repository: a shallow checkout of one ref (branch, tag or
 * commit), optionally narrowed to a sub-folder, with credentials kept out of every message and
 * off the disk.
 *
 * The result is a plain tree: the `.git` folder is removed once the commit is known. It is not
 * needed (the packager ignores .git anyway), it can be large, and its config holds the remote URL,
 * credentials included.
 *
 * @module
 */

import { dirname, isAbsolute, join, normalize, sep } from "node:path";
import { PrisnError } from "../core/errors.ts";
import { exists, removeIfPresent } from "../core/fs.ts";
import { runCommand } from "./command.ts";

/** Where a deployed tree came from. */
export interface GitSource {
  /** The repository URL with credentials redacted. */
  url: string;
  /** The ref asked for, if any (branch, tag or commit). */
  ref?: string;
  /** The sub-folder deployed, if any, relative to the repository root. */
  path?: string;
  /** The full commit id that was checked out. */
  commit: string;
}

/** Options for {@link fetchGit}. */
export interface FetchGitOptions {
  /** Branch, tag, full ref (refs/…) or commit id (full, or abbreviated to 7+ hex digits). */
  ref?: string;
  /** A folder inside the repository to return instead of its root. */
  path?: string;
  /** Where to check out; must not exist; created (its parent too). Removed on any error. */
  dest: string;
  /**
   * Time allowed for all git commands together.
   * @default 120_000
   */
  timeoutMs?: number;
  /**
   * The environment git runs with (proxies, SSH agent, GIT_CONFIG_* …). prisn adds
   * GIT_TERMINAL_PROMPT=0 and an empty GIT_ASKPASS so nothing waits for a password, and
   * `ssh -o BatchMode=yes` unless GIT_SSH_COMMAND or GIT_SSH is set.
   * @default Deno.env.toObject()
   */
  environment?: Record<string, string>;
}

const URL_SCHEME = /^(?:https?|ssh|git|file|git\+ssh|ssh\+git):\/\/\S+$/i;
const SCP_LIKE = /^[A-Za-z0-9._~-]+@[A-Za-z0-9.-]+:(?!\/\/)\S+$/;
const FULL_SHA = /^(?:[0-9a-f]{40}|[0-9a-f]{64})$/i;
const SHORT_SHA = /^[0-9a-f]{7,63}$/i;
const DEFAULT_TIMEOUT_MS = 120_000;

/**
 * True for what `prisn deploy` treats as a git repository: https://, http://, ssh://, git://,
 * file:// URLs and scp-like `user@host:org/repo(.git)`. A local folder path is not one.
 */
export function isGitUrl(s: string): boolean {
  return URL_SCHEME.test(s) || SCP_LIKE.test(s);
}

/**
 * The URL with its credentials replaced by `***`: `https://user:token@host/x` →
 * `https://***@host/x`. A bare user name is kept for ssh (`ssh://git@host/x`, `git@host:x`),
 * where it names an account rather than a secret.
 */
export function redactUrl(url: string): string {
  const m = /^([a-z][a-z0-9+.-]*:\/\/)([^/?#]*)@/i.exec(url);
  if (!m) return url;
  const ssh = /^(?:ssh|git\+ssh|ssh\+git):/i.test(m[1]);
  if (ssh && !m[2].includes(":")) return url;
  return `${m[1]}***@${url.slice(m[0].length)}`;
}

/**
 * Checks out one ref of a repository into `dest` (shallow where the server allows it) and returns
 * the folder to deploy (`dest`, or `dest/<path>`) with where it came from.
 *
 * Branches and tags: `git clone --depth 1 --branch REF`. Commit ids and refs/…: `git init` +
 * `git fetch --depth 1 origin REF`, falling back to a full fetch and checkout when the server
 * refuses to serve an unadvertised commit. An abbreviated commit id is tried as a branch or tag
 * name first, then looked up in a full clone.
 *
 * @throws {PrisnError} UNAVAILABLE `cannot reach git repository <url>: <reason>` when git cannot
 *   reach or read the repository (or runs out of time); NOT_FOUND `ref "R" not found in <url>` and
 *   `path "P" not found in <url> at <ref> (<commit>)`; INVALID for a bad URL, ref, path or an
 *   existing dest. Messages are one line and never hold credentials.
 */
export async function fetchGit(
  url: string,
  options: FetchGitOptions,
): Promise<{ dir: string; source: GitSource }> {
  const shown = redactUrl(url);
  if (!isGitUrl(url)) throw new PrisnError("INVALID", `not a git repository URL: ${shown}`);
  const ref = options.ref;
  if (ref !== undefined && !isPlausibleRef(ref)) {
    throw new PrisnError("INVALID", `ref "${ref}" is not a valid git ref`);
  }
  const path = options.path === undefined ? undefined : checkedPath(options.path);
  const dest = options.dest;
  if (await exists(dest)) {
    throw new PrisnError("INVALID", `cannot check out into ${dest}: it already exists`);
  }
  await Deno.mkdir(dirname(dest), { recursive: true });

  const git = new GitRunner(
    url,
    shown,
    Date.now() + (options.timeoutMs ?? DEFAULT_TIMEOUT_MS),
    gitEnvironment(options.environment ?? Deno.env.toObject()),
  );
  try {
    if (ref === undefined) {
      await git.clone(["--depth", "1"], dest);
    } else if (FULL_SHA.test(ref) || ref.startsWith("refs/")) {
      await fetchOne(git, ref, dest);
    } else {
      const cloned = await git.clone(["--depth", "1", "--branch", ref], dest, { refMissing: true });
      if (!cloned) {
        if (!SHORT_SHA.test(ref)) throw refNotFound(ref, shown);
        await removeIfPresent(dest);
        await checkoutFromFullClone(git, ref, dest);
      }
    }
    const commit = (await git.run(["rev-parse", "HEAD"], dest)).stdout.trim();
    const source: GitSource = { url: shown, commit };
    if (ref !== undefined) source.ref = ref;
    let dir = dest;
    if (path !== undefined) {
      source.path = path;
      dir = join(dest, path);
      await checkFolder(dest, dir, path, `${shown} at ${ref ?? "HEAD"} (${commit.slice(0, 12)})`);
    }
    await Deno.remove(join(dest, ".git"), { recursive: true });
    return { dir, source };
  } catch (error) {
    await removeIfPresent(dest);
    throw error;
  }
}

/** A full commit id or refs/… name: shallow fetch, else everything and a checkout. */
async function fetchOne(git: GitRunner, ref: string, dest: string): Promise<void> {
  await git.run(["init", "--quiet", "--", dest]);
  await git.run(["remote", "add", "--", "origin", git.url], dest);
  const shallow = await git.tryRun(["fetch", "--depth", "1", "--no-tags", "origin", ref], dest);
  if (shallow.code === 0) {
    await git.run(["checkout", "--quiet", "--detach", "FETCH_HEAD"], dest);
    return;
  }
  if (/couldn't find remote ref/i.test(shallow.stderr)) throw refNotFound(ref, git.shown);
  if (!FULL_SHA.test(ref)) throw git.unreachable(shallow);
  // The server would not hand out an unadvertised commit (protocol v0, or a strict server):
  // take everything reachable from its branches and tags and look the commit up locally.
  await git.run(
    [
      "fetch",
      "--quiet",
      "origin",
      "+refs/heads/*:refs/remotes/origin/*",
      "+refs/tags/*:refs/tags/*",
    ],
    dest,
  );
  await checkoutLocal(git, ref, dest);
}

/** An abbreviated commit id: a full clone, then the id looked up locally. */
async function checkoutFromFullClone(git: GitRunner, ref: string, dest: string): Promise<void> {
  await git.clone(["--no-checkout"], dest);
  await checkoutLocal(git, ref, dest);
}

async function checkoutLocal(git: GitRunner, ref: string, dest: string): Promise<void> {
  const found = await git.tryRun(["rev-parse", "--verify", "--quiet", `${ref}^{commit}`], dest);
  if (found.code !== 0) throw refNotFound(ref, git.shown);
  await git.run(["checkout", "--quiet", "--detach", found.stdout.trim()], dest);
}

/** Not empty, no leading "-" (it would read as an option), no whitespace or control characters. */
function isPlausibleRef(ref: string): boolean {
  if (ref === "" || ref.startsWith("-") || /\s/.test(ref)) return false;
  return [...ref].every((c) => c > " " && c !== "\u007f");
}

function refNotFound(ref: string, shown: string): PrisnError {
  return new PrisnError("NOT_FOUND", `ref "${ref}" not found in ${shown}`);
}

/** A relative, normalized sub-path that stays inside the repository; undefined for the root. */
function checkedPath(path: string): string | undefined {
  const clean = normalize(path).replace(/[/\\]+$/, "");
  if (clean === "" || clean === ".") return undefined;
  if (isAbsolute(clean) || clean === ".." || clean.startsWith(`..${sep}`)) {
    throw new PrisnError("INVALID", `path "${path}" must be a folder inside the repository`);
  }
  return clean;
}

/** Throws NOT_FOUND unless `dir` is a folder inside `root` (symlinks resolved). */
async function checkFolder(root: string, dir: string, path: string, where: string): Promise<void> {
  let real: string;
  try {
    real = await Deno.realPath(dir);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound || error instanceof Deno.errors.NotADirectory) {
      throw new PrisnError("NOT_FOUND", `path "${path}" not found in ${where}`);
    }
    throw error;
  }
  const realRoot = await Deno.realPath(root);
  if (real !== realRoot && !real.startsWith(realRoot + sep)) {
    throw new PrisnError("INVALID", `path "${path}" in ${where} leads outside the repository`);
  }
  if (!(await Deno.stat(real)).isDirectory) {
    throw new PrisnError("INVALID", `path "${path}" in ${where} is a file, not a folder`);
  }
}

/** The environment git runs with: never prompting, only the transports prisn accepts. */
function gitEnvironment(environment: Record<string, string>): Record<string, string> {
  const env: Record<string, string> = {
    ...environment,
    GIT_TERMINAL_PROMPT: "0",
    GIT_ASKPASS: "", // empty: no askpass helper, not even core.askPass or SSH_ASKPASS
    GIT_ALLOW_PROTOCOL: "file:git:http:https:ssh",
    LC_ALL: "C", // messages are parsed
  };
  delete env.SSH_ASKPASS;
  if (env.GIT_SSH_COMMAND === undefined && env.GIT_SSH === undefined) {
    env.GIT_SSH_COMMAND = "ssh -o BatchMode=yes";
  }
  return env;
}

interface GitResult {
  code: number;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

/** Runs git commands for one fetch, against one deadline, turning failures into PrisnErrors. */
class GitRunner {
  constructor(
    readonly url: string,
    readonly shown: string,
    readonly deadline: number,
    readonly env: Record<string, string>,
  ) {}

  /**
   * `git clone [flags] -- url dest`. With `refMissing`, returns false (instead of throwing) when
   * the asked-for branch or tag does not exist.
   */
  async clone(flags: string[], dest: string, options: { refMissing?: boolean } = {}) {
    const result = await this.tryRun(["clone", "--quiet", ...flags, "--", this.url, dest]);
    if (result.code === 0) return true;
    if (options.refMissing && /Remote branch .* not found in upstream/i.test(result.stderr)) {
      return false;
    }
    throw this.unreachable(result);
  }

  /** Runs git; throws UNAVAILABLE with git's reason when it fails. */
  async run(args: string[], cwd?: string): Promise<GitResult> {
    const result = await this.tryRun(args, cwd);
    if (result.code !== 0) throw this.unreachable(result);
    return result;
  }

  /**
   * Runs git against the deadline; on it, git's whole process group is killed (see
   * {@link runCommand}): remote helpers such as `git remote-http` would otherwise outlive git.
   */
  async tryRun(args: string[], cwd?: string): Promise<GitResult> {
    const remaining = this.deadline - Date.now();
    if (remaining <= 0) return { code: -1, stdout: "", stderr: "", timedOut: true };
    const lines = { out: [] as string[], err: [] as string[] };
    try {
      const result = await runCommand("git", ["-c", "advice.detachedHead=false", ...args], {
        cwd,
        env: this.env,
        timeoutMs: remaining,
        onLine: (line, stream) => lines[stream].push(line),
      });
      return { ...result, stdout: lines.out.join("\n"), stderr: lines.err.join("\n") };
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) {
        throw new PrisnError(
          "UNAVAILABLE",
          "git is not installed: install git to deploy from a repository",
        );
      }
      throw error;
    }
  }

  unreachable(result: GitResult): PrisnError {
    // git names the full disk in one of several lines (a write error, index-pack, a temp file).
    const reason = result.timedOut
      ? "timed out"
      : /No space left on device/i.test(result.stderr)
      ? "No space left on device"
      : gitReason(result.stderr);
    return new PrisnError(
      "UNAVAILABLE",
      redactText(`cannot reach git repository ${this.shown}: ${reason}`, this.url, this.shown),
    );
  }
}

/** git's first fatal/error line, joined with the next when it ends mid-sentence, kept short. */
function gitReason(stderr: string): string {
  const lines = stderr.split(/\r?\n/).map((l) => l.trim()).filter(Boolean);
  const at = lines.findIndex((l) => /^(fatal|error):/.test(l));
  if (at < 0) return lines.at(-1) ?? "git failed";
  let reason = lines[at].replace(/^(fatal|error):\s*/, "");
  if (reason.endsWith(":") && lines[at + 1]) reason += " " + lines[at + 1];
  reason = reason.replace(/^unable to access '[^']*':\s*/, "");
  return reason.length > 200 ? reason.slice(0, 197) + "..." : reason;
}

/** Removes the URL's credentials (and any other URL's) from text meant for users. */
function redactText(text: string, url: string, shown: string): string {
  return text.split(url).join(shown).replace(
    /[a-z][a-z0-9+.-]*:\/\/[^\s/?#'"]*@/gi,
    (m) => redactUrl(m + "x").slice(0, -1),
  );
}
