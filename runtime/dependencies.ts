/**
 * Which dependency envs a version runs in: found by the files present (requirements.txt or
 * pyproject.toml → a python venv, package.json → a node_modules tree, both → both), whatever the
 * entrypoint's language, or as prisn.toml `[deps]` names them (`false` skips one). Each env is
 * built by the interpreter of its kind: the deployment's runtime when it is of that kind (so
 * `runtime = "python3.11"` builds the venv with 3.11), else python3 or node from PATH.
 *
 * @module
 */

import { PrisnError } from "../core/errors.ts";
import { runtimeFamily } from "../core/runtimes.ts";
import type { DeploySpec } from "../core/spec.ts";
import { envKey, type EnvKind, needsEnv } from "./envs.ts";
import { type Interpreter, resolveInterpreter } from "./interpreters.ts";

/** One env a version needs, and the interpreter that builds it. */
export interface DependencyEnv {
  kind: EnvKind;
  /** The file prisn.toml `[deps]` names; undefined: the default one. */
  file?: string;
  interpreter: Interpreter;
}

/** What a version's files and `[deps]` ask for. */
export interface Dependencies {
  /** The envs to run in, the one of the runtime's own kind first (it comes first on PATH). */
  envs: DependencyEnv[];
  /** Kinds whose dependency files are present but switched off (`[deps] node = false`). */
  skipped: EnvKind[];
}

const BUILDER: Readonly<Record<EnvKind, { runtime: string; product: string }>> = {
  python: { runtime: "python3", product: "Python 3 (with venv)" },
  node: { runtime: "node", product: "Node.js (with npm)" },
};

/**
 * The envs a version (its files in `sourceDir`) needs; reads files and finds interpreters, builds
 * nothing.
 * @throws {PrisnError} INVALID for a `[deps]` file that is missing or unreadable; UNAVAILABLE
 *   when the interpreter an env needs is not installed, saying how to skip that env.
 */
export async function dependencies(
  sourceDir: string,
  spec: Pick<DeploySpec, "runtime" | "deps">,
  /** The deployment's interpreter, when it has a runtime (saves looking it up again). */
  runtimeInterpreter?: Interpreter,
): Promise<Dependencies> {
  const own = spec.runtime ? runtimeFamily(spec.runtime) : undefined;
  const kinds: EnvKind[] = own === "node" ? ["node", "python"] : ["python", "node"];
  const result: Dependencies = { envs: [], skipped: [] };
  for (const kind of kinds) {
    const setting = spec.deps?.[kind];
    if (setting === false) {
      if (await needsEnv(sourceDir, kind).catch(() => false)) {
        result.skipped.push(kind);
      }
      continue;
    }
    const file = setting;
    if (!(await needsEnv(sourceDir, kind, file))) continue;
    let interpreter: Interpreter;
    if (own === kind) {
      interpreter = runtimeInterpreter ?? await resolveInterpreter(spec.runtime!);
    } else {
      interpreter = await resolveInterpreter(BUILDER[kind].runtime).catch((e) => {
        throw new PrisnError(
          "UNAVAILABLE",
          `${file ?? describeDefault(kind)} lists ${kind} dependencies, which need ` +
            `${BUILDER[kind].product} on this host: install it, or set [deps] ${kind} = false ` +
            `in prisn.toml`,
          { cause: e },
        );
      });
    }
    result.envs.push(file === undefined ? { kind, interpreter } : { kind, file, interpreter });
  }
  return result;
}

/** The ids of the envs a version uses, in PATH order; builds nothing. */
export async function envIdsOf(
  sourceDir: string,
  spec: Pick<DeploySpec, "runtime" | "deps">,
): Promise<string[]> {
  const ids: string[] = [];
  for (const need of (await dependencies(sourceDir, spec)).envs) {
    const key = await envKey(sourceDir, need.interpreter, need.file);
    if (key) ids.push(key.id);
  }
  return ids;
}

function describeDefault(kind: EnvKind): string {
  return kind === "python" ? "requirements.txt or pyproject.toml" : "package.json";
}
