/**
 * Dependency environments, cached by content hash: a Python venv per requirements set and a
 * `node_modules` tree per lockfile, shared by every deployment (and version) that asks for the
 * same dependencies on the same interpreter.
 *
 * Layout, under the envs folder (`paths().envs`):
 *
 * ```
 * python3-<12 hex>/     a venv: bin/python, lib/…, .prisn-env.json (written last)
 * node-<12 hex>/        package.json, package-lock.json, node_modules/, .prisn-env.json
 * .locks/<id>.lock      one flock per env id, held while that env is built or removed
 * ```
 *
 * An env is built in place, at its final path, under its lock, and only counts once its
 * `.prisn-env.json` marker exists. A folder without the marker is what a crashed build left
 * behind: the next `prepareEnv` for that id removes it and builds again. (A venv cannot be built
 * elsewhere and renamed in: its scripts' shebangs and `pyvenv.cfg` hold absolute paths.)
 *
 * @module
 */

import { dirname, isAbsolute, join, relative, resolve } from "node:path";
import { parse as parseToml } from "smol-toml";
import { PrisnError } from "../core/errors.ts";
import { exists, readOptional, removeIfPresent } from "../core/fs.ts";
import type { RuntimeFamily } from "../core/runtimes.ts";
import { runCommand } from "./command.ts";

/** A resolved interpreter on this host (found by runtime/interpreters.ts). */
export interface Interpreter {
  /** The runtime name the deployment asked for, e.g. "python3.11" or "node". */
  runtime: string;
  family: RuntimeFamily;
  /** The executable, absolute or found on PATH, e.g. "/usr/bin/python3.11". */
  command: string;
  /** The interpreter's exact version, e.g. "3.11.7" or "20.20.2". */
  version: string;
}

/** The kinds of dependency environment prisn builds. */
export type EnvKind = "python" | "node";

/** What identifies an environment: same id ⇒ same dependencies on the same interpreter. */
export interface EnvKey {
  /** `python3-<12 hex>` or `node-<12 hex>`; also the env's folder name. */
  id: string;
  kind: EnvKind;
}

/** A ready environment and how to run a program inside it. */
export interface PreparedEnv {
  /** e.g. "python3-1a2b3c4d5e6f". */
  id: string;
  kind: EnvKind;
  /** The env's folder (the venv, or the folder holding `node_modules`). */
  dir: string;
  /** The interpreter to run the entrypoint with: the venv's python, or the node binary. */
  command: string;
  /**
   * Variables to add to the program's environment. Python: PYTHONUNBUFFERED=1, VIRTUAL_ENV and
   * PATH with the venv's bin first. Node: NODE_PATH (CommonJS `require` only, see
   * {@link linkNodeModules} for ESM) and PATH with node_modules/.bin first. PATH is complete:
   * the prefix followed by the base PATH (the `environment`'s, else the agent's).
   */
  env: Record<string, string>;
  /** True when the env already existed (built earlier, or by a concurrent caller). */
  reused: boolean;
}

/** Options for {@link prepareEnv}. */
export interface PrepareEnvOptions {
  /** The envs folder, normally `paths().envs`; created when missing. */
  envsDir: string;
  /** The project folder (a version directory): requirements.txt, package.json, wheels/… */
  sourceDir: string;
  interpreter: Interpreter;
  /**
   * The agent's environment, passed to pip and npm (so PIP_INDEX_URL, PIP_FIND_LINKS, proxies,
   * npm_config_* and HOME for caches apply).
   * @default Deno.env.toObject()
   */
  environment?: Record<string, string>;
  /**
   * Called with each line of build output: prisn's own lines ("prisn: building <id> …",
   * "prisn: running <command line>", "prisn: built <id> in 3.1s") and what venv, pip and npm print.
   */
  onOutput?: (line: string) => void;
  /**
   * How long one install command may run before it is stopped and the build fails.
   * @default 600_000
   */
  timeoutMs?: number;
}

/** An install that ran and failed; `detail` holds the last lines of the installer's output. */
export class InstallError extends PrisnError {
  override name = "InstallError";
  /** The last ~20 lines pip or npm printed. */
  readonly detail: string;
  constructor(message: string, detail: string) {
    super("FAILED", message, { cause: new Error(detail) });
    this.detail = detail;
  }
}

const MARKER = ".prisn-env.json";
const LOCKS = ".locks";
const ID_PATTERN = /^(python3|node)-[0-9a-f]{12}$/;
const KEY_FORMAT = 1;
const DEFAULT_TIMEOUT_MS = 600_000;
const TAIL_LINES = 20;

/** Everything a build needs, worked out from the project's files. */
type Plan =
  & EnvKey
  & (
    | { kind: "python"; requirements: string; wheelsDir?: string; fromPyproject: boolean }
    | {
      kind: "node";
      manifest: Record<string, unknown>;
      lock?: { name: string; text: string };
      npmrc?: string;
    }
  );

/**
 * The id of the environment a project needs on an interpreter, or undefined when it needs none
 * (no requirements.txt / pyproject dependencies for python, no package.json dependencies for
 * node, and always for bash and deno).
 *
 * Python ids hash the requirements (with files they include via -r/-c), or the pyproject.toml
 * `[project].dependencies`, the names and contents of `wheels/`, and the runtime name and exact
 * version. Node ids hash the lockfile (package-lock.json or npm-shrinkwrap.json), the dependency
 * fields of package.json, a project .npmrc, and the runtime name and exact version.
 */
export async function envKey(
  sourceDir: string,
  interpreter: Interpreter,
): Promise<EnvKey | undefined> {
  const plan = await planEnv(sourceDir, interpreter);
  return plan && { id: plan.id, kind: plan.kind };
}

/**
 * Makes sure the environment a project needs exists and returns how to use it, or undefined when
 * the project needs none. Builds at most once per id across concurrent callers and processes
 * (an flock on `.locks/<id>.lock`); the others wait and get `reused: true`.
 *
 * Python: `python -m venv`, then `pip install -r requirements.txt` (with `--no-index
 * --find-links wheels/` when the project ships a wheels/ folder; pip adds PIP_FIND_LINKS from
 * `environment` to those). pip runs with --retries 0 --timeout 5 so an unreachable index fails
 * fast. Node: package.json (without its `scripts`, which would need the project's files) and the
 * lockfile are copied into the env folder and `npm ci` (with a lockfile) or `npm install` runs
 * there with `--omit=dev`.
 *
 * @throws {InstallError} FAILED when pip or npm fails; the half-built env is removed.
 * @throws {PrisnError} UNAVAILABLE when the interpreter, venv support or npm is missing;
 *   INVALID when package.json or pyproject.toml cannot be read.
 */
export async function prepareEnv(options: PrepareEnvOptions): Promise<PreparedEnv | undefined> {
  const plan = await planEnv(options.sourceDir, options.interpreter);
  if (!plan) return undefined;
  const environment = options.environment ?? Deno.env.toObject();
  const dir = join(options.envsDir, plan.id);
  if (await isComplete(dir)) return describe(plan, dir, options.interpreter, environment, true);

  await Deno.mkdir(join(options.envsDir, LOCKS), { recursive: true });
  return await withLock(options.envsDir, plan.id, async () => {
    if (await isComplete(dir)) return describe(plan, dir, options.interpreter, environment, true);
    await removeIfPresent(dir); // a crashed build's leftovers
    const say = options.onOutput ?? (() => {});
    say(
      `prisn: building ${plan.id} (${options.interpreter.runtime} ${options.interpreter.version})`,
    );
    const started = Date.now();
    try {
      if (plan.kind === "python") await buildPython(plan, dir, options, environment);
      else await buildNode(plan, dir, options, environment);
      await writeMarker(dir, plan, options.interpreter);
    } catch (error) {
      await removeIfPresent(dir);
      throw error;
    }
    say(`prisn: built ${plan.id} in ${((Date.now() - started) / 1000).toFixed(1)}s`);
    return describe(plan, dir, options.interpreter, environment, false);
  });
}

/** The ids of the complete environments in `envsDir`, sorted; half-built folders are left out. */
export async function listEnvs(envsDir: string): Promise<string[]> {
  const ids: string[] = [];
  try {
    for await (const entry of Deno.readDir(envsDir)) {
      if (entry.isDirectory && ID_PATTERN.test(entry.name)) {
        if (await isComplete(join(envsDir, entry.name))) ids.push(entry.name);
      }
    }
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return [];
    throw error;
  }
  return ids.sort();
}

/**
 * Removes an environment (complete or half-built) under its lock, so it never races a build.
 * The marker goes first, so a removal cut short leaves a folder the next build replaces.
 * Removing an env that does not exist does nothing.
 * @throws {PrisnError} INVALID when `id` is not an env id.
 */
export async function removeEnv(envsDir: string, id: string): Promise<void> {
  if (!ID_PATTERN.test(id)) throw new PrisnError("INVALID", `"${id}" is not an environment id`);
  const dir = join(envsDir, id);
  if (!(await exists(dir))) return;
  await Deno.mkdir(join(envsDir, LOCKS), { recursive: true });
  await withLock(envsDir, id, async () => {
    await removeIfPresent(join(dir, MARKER));
    await removeIfPresent(dir);
  });
}

/**
 * Points `<versionDir>/node_modules` at a node env's modules (an absolute symlink), so that ESM
 * `import` finds them: Node's ESM resolver ignores NODE_PATH and only walks up `node_modules`
 * folders from the importing file. Call it while the version folder is still writable (before
 * it is made read-only and renamed into place); the env's path is derived from its content hash,
 * so the link stays valid when the env is rebuilt. A real `node_modules` folder shipped with the
 * project is left alone; a symlink is replaced. Does nothing for python envs.
 */
export async function linkNodeModules(versionDir: string, env: PreparedEnv): Promise<void> {
  if (env.kind !== "node") return;
  const link = join(versionDir, "node_modules");
  const target = resolve(env.dir, "node_modules");
  try {
    const info = await Deno.lstat(link);
    if (!info.isSymlink) return;
    if ((await Deno.readLink(link)) === target) return;
    await Deno.remove(link);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  await Deno.symlink(target, link, { type: "dir" });
}

// ---------------------------------------------------------------------------------------------
// Planning: which env a project needs.

async function planEnv(sourceDir: string, interpreter: Interpreter): Promise<Plan | undefined> {
  if (interpreter.family === "python") return await planPython(sourceDir, interpreter);
  if (interpreter.family === "node") return await planNode(sourceDir, interpreter);
  return undefined;
}

async function planPython(sourceDir: string, interp: Interpreter): Promise<Plan | undefined> {
  const requirementsPath = join(sourceDir, "requirements.txt");
  const requirementsText = await readOptional(requirementsPath, { folderAsMissing: true });
  const parts: unknown[] = [];
  let requirements: string;
  let fromPyproject = false;
  if (requirementsText !== undefined) {
    if (!hasRequirementLines(requirementsText)) return undefined;
    requirements = requirementsPath;
    await collectRequirementFiles(sourceDir, requirementsPath, requirementsText, parts, new Set());
  } else {
    const deps = await pyprojectDependencies(sourceDir);
    if (!deps || deps.length === 0) return undefined;
    requirements = deps.join("\n") + "\n";
    fromPyproject = true;
    parts.push(["pyproject", deps]);
  }
  const wheelsDir = join(sourceDir, "wheels");
  const wheels = await hashFolder(wheelsDir);
  if (wheels) parts.push(["wheels", wheels]);
  const id = "python3-" +
    await digest([KEY_FORMAT, "python", interp.runtime, interp.version, parts]);
  return {
    id,
    kind: "python",
    requirements,
    fromPyproject,
    wheelsDir: wheels ? wheelsDir : undefined,
  };
}

async function planNode(sourceDir: string, interp: Interpreter): Promise<Plan | undefined> {
  const text = await readOptional(join(sourceDir, "package.json"), { folderAsMissing: true });
  if (text === undefined) return undefined;
  let manifest: Record<string, unknown>;
  try {
    manifest = JSON.parse(text);
  } catch (error) {
    throw new PrisnError("INVALID", `package.json is not valid JSON: ${(error as Error).message}`);
  }
  if (typeof manifest !== "object" || manifest === null || Array.isArray(manifest)) {
    throw new PrisnError("INVALID", "package.json must hold a JSON object");
  }
  const fields = [
    "dependencies",
    "optionalDependencies",
    "peerDependencies",
    "devDependencies",
    "bundleDependencies",
    "overrides",
  ];
  const installed = ["dependencies", "optionalDependencies", "peerDependencies"];
  const wanted = installed.some((f) => {
    const value = manifest[f];
    return typeof value === "object" && value !== null && Object.keys(value).length > 0;
  });
  if (!wanted) return undefined;
  let lock: { name: string; text: string } | undefined;
  for (const name of ["npm-shrinkwrap.json", "package-lock.json"]) {
    const lockText = await readOptional(join(sourceDir, name), { folderAsMissing: true });
    if (lockText !== undefined) {
      lock = { name, text: lockText };
      break;
    }
  }
  const npmrc = await readOptional(join(sourceDir, ".npmrc"), { folderAsMissing: true });
  const picked = Object.fromEntries(
    fields.filter((f) => f in manifest).map((f) => [f, manifest[f]]),
  );
  const id = "node-" + await digest([
    KEY_FORMAT,
    "node",
    interp.runtime,
    interp.version,
    "omit=dev",
    picked,
    lock ?? null,
    npmrc ?? null,
  ]);
  return { id, kind: "node", manifest, lock, npmrc };
}

/** True when a requirements file names anything (not only blanks and comments). */
function hasRequirementLines(text: string): boolean {
  return text.split(/\r?\n/).some((line) => line.replace(/(^|\s)#.*$/, "").trim() !== "");
}

/** Adds a requirements file and the files it pulls in with -r/-c (recursively) to `parts`. */
async function collectRequirementFiles(
  sourceDir: string,
  path: string,
  text: string,
  parts: unknown[],
  seen: Set<string>,
): Promise<void> {
  seen.add(path);
  parts.push(["requirements", relative(sourceDir, path), text]);
  for (const line of text.split(/\r?\n/)) {
    const m = /^\s*(?:-r|-c|--requirement|--constraint)(?:\s+|=)(\S+)/.exec(line);
    if (!m) continue;
    const included = resolve(dirname(path), m[1]);
    if (seen.has(included)) continue;
    const includedText = await readOptional(included, { folderAsMissing: true });
    if (includedText === undefined) {
      parts.push(["missing", m[1]]);
      continue;
    }
    await collectRequirementFiles(sourceDir, included, includedText, parts, seen);
  }
}

async function pyprojectDependencies(sourceDir: string): Promise<string[] | undefined> {
  const text = await readOptional(join(sourceDir, "pyproject.toml"), { folderAsMissing: true });
  if (text === undefined) return undefined;
  let doc: Record<string, unknown>;
  try {
    doc = parseToml(text) as Record<string, unknown>;
  } catch (error) {
    const reason = (error as Error).message.split("\n")[0];
    throw new PrisnError("INVALID", `pyproject.toml is not valid TOML: ${reason}`);
  }
  const project = doc.project as Record<string, unknown> | undefined;
  const deps = project?.dependencies;
  if (deps === undefined) return undefined;
  if (!Array.isArray(deps) || deps.some((d) => typeof d !== "string")) {
    throw new PrisnError(
      "INVALID",
      "pyproject.toml: [project].dependencies must be a list of strings",
    );
  }
  return deps as string[];
}

/** Sorted [name, sha256] of the files in a folder, or undefined when it is missing or empty. */
async function hashFolder(dir: string): Promise<Array<[string, string]> | undefined> {
  const files: Array<[string, string]> = [];
  try {
    for await (const entry of Deno.readDir(dir)) {
      if (!entry.isFile) continue;
      const bytes = await Deno.readFile(join(dir, entry.name));
      files.push([entry.name, await digest(bytes, 64)]);
    }
  } catch (error) {
    if (error instanceof Deno.errors.NotFound || error instanceof Deno.errors.NotADirectory) {
      return undefined;
    }
    throw error;
  }
  if (files.length === 0) return undefined;
  return files.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
}

/** Hex sha256 (first `length` characters) of bytes, or of a JSON value. */
async function digest(value: unknown, length = 12): Promise<string> {
  const bytes: Uint8Array<ArrayBuffer> = value instanceof Uint8Array
    ? value as Uint8Array<ArrayBuffer>
    : new TextEncoder().encode(JSON.stringify(value));
  const hash = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return Array.from(hash, (b) => b.toString(16).padStart(2, "0")).join("").slice(0, length);
}

// ---------------------------------------------------------------------------------------------
// Building.

async function buildPython(
  plan: Extract<Plan, { kind: "python" }>,
  dir: string,
  options: PrepareEnvOptions,
  environment: Record<string, string>,
): Promise<void> {
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const venv = await run(options.interpreter.command, ["-m", "venv", dir], {
    cwd: options.envsDir,
    env: withoutPythonOverrides(environment),
    timeoutMs,
    onOutput: options.onOutput,
    what: `python (${options.interpreter.command})`,
  });
  if (venv.code !== 0) {
    const text = venv.tail.join("\n");
    if (/ensurepip|python3-venv|No module named venv/.test(text)) {
      throw new PrisnError(
        "UNAVAILABLE",
        `${options.interpreter.command} cannot create virtual environments: install its venv ` +
          `module (on Debian/Ubuntu: apt-get install python3-venv)`,
        { cause: new Error(text) },
      );
    }
    throw new InstallError(
      `creating a python venv failed: ${lastLine(venv.tail, /^Error: /)}`,
      tail(venv.tail),
    );
  }

  let requirementsFile = plan.requirements;
  if (plan.fromPyproject) {
    requirementsFile = join(dir, ".prisn-requirements.txt");
    await Deno.writeTextFile(requirementsFile, plan.requirements);
  }
  const args = [
    "-m",
    "pip",
    "install",
    "--disable-pip-version-check",
    "--no-input",
    "--progress-bar",
    "off",
    "--retries",
    "0",
    "--timeout",
    "5",
  ];
  if (plan.wheelsDir) args.push("--no-index", "--find-links", plan.wheelsDir);
  args.push("-r", requirementsFile);
  const pip = await run(join(dir, "bin", "python"), args, {
    cwd: options.sourceDir,
    env: {
      ...withoutPythonOverrides(environment),
      ...pythonVariables(dir, environment),
    },
    timeoutMs,
    onOutput: options.onOutput,
    what: "pip",
  });
  if (pip.timedOut) {
    throw new InstallError(
      `pip install failed: timed out after ${timeoutMs / 1000}s`,
      tail(pip.tail),
    );
  }
  if (pip.code !== 0) {
    throw new InstallError(`pip install failed: ${lastLine(pip.tail, /^ERROR: /)}`, tail(pip.tail));
  }
}

async function buildNode(
  plan: Extract<Plan, { kind: "node" }>,
  dir: string,
  options: PrepareEnvOptions,
  environment: Record<string, string>,
): Promise<void> {
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  await Deno.mkdir(dir, { recursive: true });
  // The root package's own lifecycle scripts would run here without the project's files.
  const { scripts: _scripts, ...manifest } = plan.manifest;
  await Deno.writeTextFile(join(dir, "package.json"), JSON.stringify(manifest, null, 2) + "\n");
  if (plan.lock) await Deno.writeTextFile(join(dir, plan.lock.name), plan.lock.text);
  const npmrc = join(dir, ".npmrc");
  if (plan.npmrc !== undefined) await Deno.writeTextFile(npmrc, plan.npmrc, { mode: 0o600 });

  const node = options.interpreter.command;
  const npm = await npmCommand(node);
  const env: Record<string, string> = { ...environment };
  if (isAbsolute(node)) env.PATH = joinPath(dirname(node), basePath(environment));
  env.npm_config_update_notifier = "false";
  env.npm_config_fetch_retries ??= "1";
  env.npm_config_fetch_retry_mintimeout ??= "2000";
  env.npm_config_fetch_retry_maxtimeout ??= "10000";
  const verb = plan.lock ? "ci" : "install";
  try {
    const result = await run(
      npm,
      [verb, "--omit=dev", "--no-audit", "--no-fund", "--no-progress"],
      { cwd: dir, env, timeoutMs, onOutput: options.onOutput, what: "npm" },
    );
    if (result.timedOut) {
      throw new InstallError(
        `npm ${verb} failed: timed out after ${timeoutMs / 1000}s`,
        tail(result.tail),
      );
    }
    if (result.code !== 0) {
      throw new InstallError(`npm ${verb} failed: ${npmReason(result.tail)}`, tail(result.tail));
    }
  } finally {
    if (plan.npmrc !== undefined) await removeIfPresent(npmrc); // may hold registry tokens
  }
  await Deno.mkdir(join(dir, "node_modules"), { recursive: true });
}

/** npm's first error line that says something (not its code, not where its log is). */
function npmReason(lines: string[]): string {
  for (const line of lines) {
    const m = /^npm (?:error|ERR!)\s*(.*)$/.exec(line);
    if (!m) continue;
    const text = m[1].trim();
    if (text === "" || /^(code|errno|syscall) /.test(text) || /^A complete log/.test(text)) {
      continue;
    }
    if (/^\d{3}$/.test(text)) continue;
    return clip(text);
  }
  return lastLine(lines, /^npm (?:error|ERR!) /);
}

async function npmCommand(node: string): Promise<string> {
  if (isAbsolute(node)) {
    const beside = join(dirname(node), "npm");
    try {
      await Deno.stat(beside);
      return beside;
    } catch {
      // not installed next to node: fall back to PATH
    }
  }
  return "npm";
}

function describe(
  plan: Plan,
  dir: string,
  interp: Interpreter,
  environment: Record<string, string>,
  reused: boolean,
): PreparedEnv {
  if (plan.kind === "python") {
    return {
      id: plan.id,
      kind: "python",
      dir,
      command: join(dir, "bin", "python"),
      env: pythonVariables(dir, environment),
      reused,
    };
  }
  const modules = join(dir, "node_modules");
  return {
    id: plan.id,
    kind: "node",
    dir,
    command: interp.command,
    env: { NODE_PATH: modules, PATH: joinPath(join(modules, ".bin"), basePath(environment)) },
    reused,
  };
}

function pythonVariables(dir: string, environment: Record<string, string>) {
  return {
    PYTHONUNBUFFERED: "1",
    VIRTUAL_ENV: dir,
    PATH: joinPath(join(dir, "bin"), basePath(environment)),
  };
}

/** The environment minus variables that would point pip or python somewhere else. */
function withoutPythonOverrides(environment: Record<string, string>): Record<string, string> {
  const env = { ...environment };
  for (const name of ["PYTHONHOME", "PYTHONPATH", "PIP_USER", "PIP_TARGET", "PIP_PREFIX"]) {
    delete env[name];
  }
  return env;
}

function basePath(environment: Record<string, string>): string {
  return environment.PATH ?? Deno.env.get("PATH") ?? "/usr/local/bin:/usr/bin:/bin";
}

function joinPath(first: string, rest: string): string {
  return rest ? `${first}:${rest}` : first;
}

// ---------------------------------------------------------------------------------------------
// Files and locks.

async function isComplete(dir: string): Promise<boolean> {
  try {
    return (await Deno.stat(join(dir, MARKER))).isFile;
  } catch {
    return false;
  }
}

/** Writes the marker last, atomically: from now on the env counts as built. */
async function writeMarker(dir: string, plan: Plan, interp: Interpreter): Promise<void> {
  const temp = join(dir, `${MARKER}.tmp`);
  const body = {
    id: plan.id,
    kind: plan.kind,
    runtime: interp.runtime,
    version: interp.version,
    builtAt: new Date().toISOString(),
  };
  await Deno.writeTextFile(temp, JSON.stringify(body, null, 2) + "\n");
  await Deno.rename(temp, join(dir, MARKER));
}

/** Runs `fn` holding the exclusive flock for one env id (across processes too). */
async function withLock<T>(envsDir: string, id: string, fn: () => Promise<T>): Promise<T> {
  const file = await Deno.open(join(envsDir, LOCKS, `${id}.lock`), { create: true, write: true });
  try {
    await file.lock(true);
    return await fn();
  } finally {
    file.close(); // closing releases the lock
  }
}

// ---------------------------------------------------------------------------------------------
// Processes.

interface RunResult {
  code: number;
  timedOut: boolean;
  /** The last lines of stdout and stderr, interleaved as they arrived. */
  tail: string[];
}

/** Runs an installer with exactly `env`, streaming its lines to onOutput and keeping the tail. */
async function run(
  command: string,
  args: string[],
  options: {
    cwd: string;
    env: Record<string, string>;
    timeoutMs: number;
    onOutput?: (line: string) => void;
    what: string;
  },
): Promise<RunResult> {
  options.onOutput?.(`prisn: running ${[command, ...args].join(" ")}`);
  const kept: string[] = [];
  try {
    const result = await runCommand(command, args, {
      cwd: options.cwd,
      env: options.env,
      timeoutMs: options.timeoutMs,
      onLine: (line) => {
        kept.push(line);
        if (kept.length > 200) kept.shift();
        options.onOutput?.(line);
      },
    });
    return { ...result, tail: kept };
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new PrisnError("UNAVAILABLE", `${options.what} is not installed: ${command} not found`);
    }
    throw error;
  }
}

/** The last line matching `prefer` (without its prefix), else the last non-blank line. */
function lastLine(lines: string[], prefer: RegExp): string {
  for (let i = lines.length - 1; i >= 0; i--) {
    if (prefer.test(lines[i])) return clip(lines[i].replace(prefer, "").trim());
  }
  for (let i = lines.length - 1; i >= 0; i--) {
    if (lines[i].trim()) return clip(lines[i].trim());
  }
  return "no output";
}

function tail(lines: string[]): string {
  return lines.filter((l) => l.trim() !== "").slice(-TAIL_LINES).join("\n");
}

function clip(text: string): string {
  return text.length > 300 ? text.slice(0, 297) + "..." : text;
}
