/**
 * The types of runtime/envs: what identifies an environment, what a prepared one looks like, and
 * what `prepareEnv` takes.
 *
 * @module
 */

import type { Interpreter } from "../interpreters.ts";

/** A resolved interpreter on this host (found by runtime/interpreters.ts). */
export type { Interpreter };

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
  /** The env's executables, put first on PATH: the venv's `bin/`, or `node_modules/.bin`. */
  bin: string;
  /**
   * Variables to add to the program's environment besides PATH (see `environmentOf`). Python:
   * PYTHONUNBUFFERED=1 and VIRTUAL_ENV. Node: NODE_PATH (CommonJS `require` only, see
   * `linkNodeModules` for ESM).
   */
  env: Record<string, string>;
  /** True when the env already existed (built earlier, or by a concurrent caller). */
  reused: boolean;
}

/** Options for `prepareEnv`. */
export interface PrepareEnvOptions {
  /** The envs folder, normally `paths().envs`; created when missing. */
  envsDir: string;
  /** The project folder (a version directory): requirements.txt, package.json, wheels/… */
  sourceDir: string;
  /** The interpreter the env is for: a python builds a venv, a node a `node_modules` tree. */
  interpreter: Interpreter;
  /**
   * The dependency file, relative to `sourceDir`, as prisn.toml `[deps]` names it.
   * @default requirements.txt, else pyproject.toml (python); package.json (node)
   */
  file?: string;
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
