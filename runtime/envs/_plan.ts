/**
 * Planning: which env a project needs, and its id. The id hashes everything the build reads, so
 * the same id means the same dependencies on the same interpreter.
 *
 * @module
 */

import { basename, dirname, join, relative, resolve } from "node:path";
import { parse as parseToml } from "smol-toml";
import { PrisnError } from "../../core/errors.ts";
import { readOptional } from "../../core/fs.ts";
import type { EnvKey, EnvKind, Interpreter } from "./types.ts";

const KEY_FORMAT = 1;

/** What a project's files ask to install, read without an interpreter. */
export type Needs =
  | {
    kind: "python";
    /** The requirements file's path, or (from pyproject.toml) the requirement lines. */
    requirements: string;
    fromPyproject: boolean;
    wheelsDir?: string;
    /** What the env id hashes besides the interpreter. */
    parts: unknown[];
  }
  | {
    kind: "node";
    manifest: Record<string, unknown>;
    lock?: { name: string; text: string };
    npmrc?: string;
    parts: unknown[];
  };

/** Everything a build needs, worked out from the project's files. */
export type Plan = EnvKey & Needs;

/** The plan of a python env. */
export type PythonPlan = Extract<Plan, { kind: "python" }>;

/** The plan of a node env. */
export type NodePlan = Extract<Plan, { kind: "node" }>;

/** The kind of env an interpreter builds: python venvs, node_modules trees; none for others. */
export function envKindOf(interpreter: Pick<Interpreter, "family">): EnvKind | undefined {
  return interpreter.family === "python" || interpreter.family === "node"
    ? interpreter.family
    : undefined;
}

/**
 * The plan of the env a project needs on an interpreter, or undefined when it needs none.
 * `file` is the dependency file named in prisn.toml `[deps]` (relative to the project); by
 * default requirements.txt, else pyproject.toml, for python and package.json for node.
 */
export async function planEnv(
  sourceDir: string,
  interpreter: Interpreter,
  file?: string,
): Promise<Plan | undefined> {
  const kind = envKindOf(interpreter);
  const needs = kind && await readNeeds(sourceDir, kind, file);
  if (!needs) return undefined;
  const prefix = needs.kind === "python" ? "python3-" : "node-";
  const id = prefix + await digest([
    KEY_FORMAT,
    needs.kind,
    interpreter.runtime,
    interpreter.version,
    ...needs.parts,
  ]);
  return { id, ...needs };
}

/**
 * What the project's dependency file for `kind` asks to install, or undefined when there is no
 * such file or it lists nothing to install.
 * @throws {PrisnError} INVALID when a file named in `[deps]` is missing or a file cannot be read.
 */
export async function readNeeds(
  sourceDir: string,
  kind: EnvKind,
  file?: string,
): Promise<Needs | undefined> {
  if (file !== undefined) {
    const path = join(sourceDir, file);
    if (await readOptional(path, { folderAsMissing: true }) === undefined) {
      throw new PrisnError(
        "INVALID",
        `[deps] ${kind} names "${file}", which is not in the package`,
      );
    }
  }
  return kind === "python" ? await readPython(sourceDir, file) : await readNode(sourceDir, file);
}

async function readPython(sourceDir: string, file?: string): Promise<Needs | undefined> {
  const parts: unknown[] = [];
  let requirements: string;
  let fromPyproject = false;
  const pyproject = file !== undefined && basename(file) === "pyproject.toml";
  const requirementsPath = join(sourceDir, file ?? "requirements.txt");
  const requirementsText = pyproject
    ? undefined
    : await readOptional(requirementsPath, { folderAsMissing: true });
  if (requirementsText !== undefined) {
    if (!hasRequirementLines(requirementsText)) return undefined;
    requirements = requirementsPath;
    await collectRequirementFiles(sourceDir, requirementsPath, requirementsText, parts, new Set());
  } else {
    if (file !== undefined && !pyproject) return undefined;
    const deps = await pyprojectDependencies(join(sourceDir, file ?? "pyproject.toml"));
    if (!deps || deps.length === 0) return undefined;
    requirements = deps.join("\n") + "\n";
    fromPyproject = true;
    parts.push(["pyproject", deps]);
  }
  const wheelsDir = join(sourceDir, "wheels");
  const wheels = await hashFolder(wheelsDir);
  if (wheels) parts.push(["wheels", wheels]);
  return {
    kind: "python",
    requirements,
    fromPyproject,
    wheelsDir: wheels ? wheelsDir : undefined,
    parts: [parts],
  };
}

async function readNode(sourceDir: string, file?: string): Promise<Needs | undefined> {
  const name = file ?? "package.json";
  const text = await readOptional(join(sourceDir, name), { folderAsMissing: true });
  if (text === undefined) return undefined;
  let manifest: Record<string, unknown>;
  try {
    manifest = JSON.parse(text);
  } catch (error) {
    throw new PrisnError("INVALID", `${name} is not valid JSON: ${(error as Error).message}`);
  }
  if (typeof manifest !== "object" || manifest === null || Array.isArray(manifest)) {
    throw new PrisnError("INVALID", `${name} must hold a JSON object`);
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
  const folder = dirname(join(sourceDir, name));
  let lock: { name: string; text: string } | undefined;
  for (const lockName of ["npm-shrinkwrap.json", "package-lock.json"]) {
    const lockText = await readOptional(join(folder, lockName), { folderAsMissing: true });
    if (lockText !== undefined) {
      lock = { name: lockName, text: lockText };
      break;
    }
  }
  const npmrc = await readOptional(join(folder, ".npmrc"), { folderAsMissing: true });
  const picked = Object.fromEntries(
    fields.filter((f) => f in manifest).map((f) => [f, manifest[f]]),
  );
  return {
    kind: "node",
    manifest,
    lock,
    npmrc,
    parts: ["omit=dev", picked, lock ?? null, npmrc ?? null],
  };
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

async function pyprojectDependencies(path: string): Promise<string[] | undefined> {
  const text = await readOptional(path, { folderAsMissing: true });
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
