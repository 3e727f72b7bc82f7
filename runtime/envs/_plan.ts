/**
 * Planning: which env a project needs, and its id. The id hashes everything the build reads, so
 * the same id means the same dependencies on the same interpreter.
 *
 * @module
 */

import { dirname, join, relative, resolve } from "node:path";
import { parse as parseToml } from "smol-toml";
import { PrisnError } from "../../core/errors.ts";
import { readOptional } from "../../core/fs.ts";
import type { EnvKey, Interpreter } from "./types.ts";

const KEY_FORMAT = 1;

/** Everything a build needs, worked out from the project's files. */
export type Plan =
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

/** The plan of a python env. */
export type PythonPlan = Extract<Plan, { kind: "python" }>;

/** The plan of a node env. */
export type NodePlan = Extract<Plan, { kind: "node" }>;

/** The plan of the env a project needs on an interpreter, or undefined when it needs none. */
export async function planEnv(
  sourceDir: string,
  interpreter: Interpreter,
): Promise<Plan | undefined> {
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
