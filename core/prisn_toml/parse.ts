/**
 * Parsing prisn.toml: TOML syntax, the schema, then rules between keys, each mistake reported
 * as one line naming the file, the line and the key.
 *
 * @module
 */

import { parse, TomlError } from "smol-toml";
import { parseDuration } from "../duration.ts";
import { invalid, PrisnError } from "../errors.ts";
import { keyLines, lineOf } from "./_key_lines.ts";
import { describe, leafIssues } from "./_messages.ts";
import { TOP } from "./_schema.ts";
import { PRISN_TOML_DEFAULTS } from "./defaults.ts";
import type { PrisnToml } from "./types.ts";

/**
 * Parses and validates the text of a prisn.toml. Throws an INVALID {@link PrisnError} whose
 * message is one line: `prisn.toml:3:7: …` for TOML syntax, `prisn.toml:2: replicas must be a
 * non-negative integer (got -1)` for values, `prisn.toml:2: unknown key "replica": did you mean
 * "replicas"?` for keys prisn does not know. When several things are wrong, the first by line is
 * reported.
 *
 * @param file the name errors start with
 */
export function parsePrisnToml(text: string, file = "prisn.toml"): PrisnToml {
  let raw: Record<string, unknown>;
  try {
    raw = parse(text);
  } catch (e) {
    if (!(e instanceof TomlError)) throw e;
    const what = e.message.split("\n")[0].replace(/^Invalid TOML document:\s*/, "");
    throw new PrisnError("INVALID", `${file}:${e.line}:${e.column}: not valid TOML: ${what}`, {
      cause: e,
    });
  }
  const result = TOP.safeParse(raw);
  if (!result.success) {
    const lines = keyLines(text);
    const problems = result.error.issues
      .flatMap((issue) => leafIssues(issue, []))
      .map((issue) => ({ line: lineOf(lines, issue.path), message: describe(issue, raw) }));
    throw invalid(located(file, firstByLine(problems)));
  }
  const toml: PrisnToml = result.data;
  const conflict = conflicts(toml);
  if (conflict) {
    throw invalid(located(file, { line: lineOf(keyLines(text), conflict.path), ...conflict }));
  }
  return toml;
}

interface Problem {
  line: number | undefined;
  message: string;
}

function located(file: string, problem: Problem): string {
  return problem.line === undefined
    ? `${file}: ${problem.message}`
    : `${file}:${problem.line}: ${problem.message}`;
}

function firstByLine(problems: Problem[]): Problem {
  return problems.reduce((best, p) => ((p.line ?? Infinity) < (best.line ?? Infinity) ? p : best));
}

/** Rules between keys, checked once every key is valid on its own. */
function conflicts(toml: PrisnToml): { path: string[]; message: string } | undefined {
  if (toml.type !== undefined && toml.type !== "cronjob" && toml.schedule !== undefined) {
    return {
      path: ["schedule"],
      message: `schedule only applies to type = "cronjob" (type is "${toml.type}")`,
    };
  }
  if (toml.type !== undefined && toml.type !== "service" && toml.port !== undefined) {
    return {
      path: ["port"],
      message: `port only applies to type = "service" (type is "${toml.type}")`,
    };
  }
  if (toml.command !== undefined && toml.entrypoint !== undefined) {
    return {
      path: ["entrypoint"],
      message: "entrypoint and command cannot both be set: keep one (command runs a program, " +
        "entrypoint a file of the project)",
    };
  }
  if (toml.command !== undefined && toml.args !== undefined) {
    return {
      path: ["args"],
      message: "args only apply to an entrypoint: put the arguments into command",
    };
  }
  if (toml.group !== undefined && toml.user === undefined) {
    return {
      path: ["group"],
      message: `group = "${toml.group}" needs user: set the user the processes run as too`,
    };
  }
  const { backoff_initial, backoff_max } = toml.restart ?? {};
  if (backoff_initial !== undefined || backoff_max !== undefined) {
    const defaults = PRISN_TOML_DEFAULTS.restart;
    const initial = backoff_initial ?? defaults.backoff_initial;
    const max = backoff_max ?? defaults.backoff_max;
    if (parseDuration(initial) > parseDuration(max)) {
      const maxNote = backoff_max === undefined ? `${max}, the default` : max;
      return {
        path: ["restart", backoff_initial === undefined ? "backoff_max" : "backoff_initial"],
        message:
          `restart.backoff_initial (${initial}) must not be longer than restart.backoff_max (${maxNote})`,
      };
    }
  }
  return undefined;
}
