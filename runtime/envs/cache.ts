/**
 * The env cache's operations: work out which env a project needs, build it once, list and
 * remove envs, and link a node env into a version folder. runtime/envs.ts describes the layout
 * of the envs folder.
 *
 * @module
 */

import { join, resolve } from "node:path";
import { PrisnError } from "../../core/errors.ts";
import { exists, removeIfPresent } from "../../core/fs.ts";
import { buildNode, buildPython, describe } from "./_build.ts";
export { environmentOf } from "./_build.ts";
import { ID_PATTERN, isComplete, LOCKS, MARKER, withLock, writeMarker } from "./_files.ts";
import { planEnv, readNeeds } from "./_plan.ts";
import type { EnvKey, EnvKind, Interpreter, PreparedEnv, PrepareEnvOptions } from "./types.ts";

const DEFAULT_TIMEOUT_MS = 600_000;

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
  file?: string,
): Promise<EnvKey | undefined> {
  const plan = await planEnv(sourceDir, interpreter, file);
  return plan && { id: plan.id, kind: plan.kind };
}

/**
 * True when the project's dependency file for `kind` (`file`, else the default one) lists
 * something to install; reads files only, so it tells which interpreters an env needs before any
 * is looked for.
 * @throws {PrisnError} INVALID when `file` is missing or a dependency file cannot be read.
 */
export async function needsEnv(sourceDir: string, kind: EnvKind, file?: string): Promise<boolean> {
  return (await readNeeds(sourceDir, kind, file)) !== undefined;
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
  const plan = await planEnv(options.sourceDir, options.interpreter, options.file);
  if (!plan) return undefined;
  const environment = options.environment ?? Deno.env.toObject();
  const dir = join(options.envsDir, plan.id);
  if (await isComplete(dir)) return describe(plan, dir, options.interpreter, true);

  await Deno.mkdir(join(options.envsDir, LOCKS), { recursive: true });
  return await withLock(options.envsDir, plan.id, async () => {
    if (await isComplete(dir)) return describe(plan, dir, options.interpreter, true);
    await removeIfPresent(dir); // a crashed build's leftovers
    const say = options.onOutput ?? (() => {});
    say(
      `prisn: building ${plan.id} (${options.interpreter.runtime} ${options.interpreter.version})`,
    );
    const started = Date.now();
    try {
      const target = {
        dir,
        options,
        environment,
        timeoutMs: options.timeoutMs ?? DEFAULT_TIMEOUT_MS,
      };
      if (plan.kind === "python") await buildPython(plan, target);
      else await buildNode(plan, target);
      await writeMarker(dir, plan, options.interpreter);
    } catch (error) {
      await removeIfPresent(dir);
      throw error;
    }
    say(`prisn: built ${plan.id} in ${((Date.now() - started) / 1000).toFixed(1)}s`);
    return describe(plan, dir, options.interpreter, false);
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
