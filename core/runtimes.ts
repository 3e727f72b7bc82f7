/**
 * The runtimes prisn knows by name, and how a file's extension picks one. Pure: finding the
 * interpreter on a host is runtime/interpreters.ts.
 *
 * @module
 */

import { invalid } from "./errors.ts";

/** The interpreter families prisn can run; `sh` belongs to the "bash" family. */
export type RuntimeFamily = "python" | "node" | "bash" | "deno";

/** Files tried, in order, when a project names no entrypoint. */
export const DEFAULT_ENTRYPOINTS: readonly string[] = [
  "main.py",
  "app.py",
  "main.js",
  "index.js",
  "main.sh",
];

/** The accepted runtime names, as shown to users in error messages. */
export const RUNTIME_FORMS =
  "python3, python3.X (e.g. python3.11), python, node, nodeNN (e.g. node20), bash, sh or deno";

const FAMILIES: ReadonlyArray<readonly [RegExp, RuntimeFamily]> = [
  [/^python3(\.(0|[1-9]\d{0,2}))?$/, "python"],
  [/^python$/, "python"],
  [/^node([1-9]\d{0,2})?$/, "node"],
  [/^(bash|sh)$/, "bash"],
  [/^deno$/, "deno"],
];

const BY_EXTENSION: Readonly<Record<string, string>> = {
  ".py": "python3",
  ".js": "node",
  ".mjs": "node",
  ".cjs": "node",
  ".sh": "bash",
  ".ts": "deno",
};

/** True for the names {@link validateRuntime} accepts. */
export function isKnownRuntime(name: string): boolean {
  return FAMILIES.some(([re]) => re.test(name));
}

/**
 * Throws an INVALID error naming the accepted forms unless `name` is one of them:
 * python3, python3.X, python, node, nodeNN, bash, sh, deno. Python 2 is not supported.
 */
export function validateRuntime(name: string): void {
  if (!isKnownRuntime(name)) throw unsupported(name);
}

/** The family of a known runtime name; throws like {@link validateRuntime} for others. */
export function runtimeFamily(name: string): RuntimeFamily {
  const found = FAMILIES.find(([re]) => re.test(name));
  if (!found) throw unsupported(name);
  return found[1];
}

function unsupported(name: string) {
  return invalid(`runtime "${name}" is not supported: use ${RUNTIME_FORMS}`);
}

/**
 * The version a runtime name pins, if any: "3.11" for python3.11, "20" for node20, "3" for
 * python3; undefined for python, node, bash, sh and deno.
 */
export function pinnedVersion(name: string): string | undefined {
  const m = /^(?:python(3(?:\.\d+)?)|node(\d+))$/.exec(name);
  return m ? (m[1] ?? m[2]) : undefined;
}

/**
 * The runtime a file runs with, judged by its extension (case-insensitive): .py → python3,
 * .js/.mjs/.cjs → node, .sh → bash, .ts → deno; undefined for anything else.
 */
export function runtimeForFile(path: string): string | undefined {
  const base = path.slice(path.lastIndexOf("/") + 1);
  const dot = base.lastIndexOf(".");
  if (dot <= 0) return undefined;
  return BY_EXTENSION[base.slice(dot).toLowerCase()];
}
