/**
 * A deployment's `command`: an argv list (never a shell string) whose `$NAME` and `${NAME}`
 * references prisn expands from the run's environment, `$$` being a literal `$`. Pure: no
 * process is started here.
 *
 * @module
 */

import { invalid } from "./errors.ts";

const REFERENCE = /\$(?:\$|\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))|\$/g;

/**
 * The variable names an argv list refers to, in order of first use.
 * @throws {PrisnError} INVALID for a `$` that starts no reference, e.g. `"$1"` or `"${PORT"`.
 */
export function commandVariables(argv: readonly string[]): string[] {
  const names = new Set<string>();
  for (const arg of argv) {
    for (const m of arg.matchAll(REFERENCE)) {
      if (m[0] === "$$") continue;
      const name = m[1] ?? m[2];
      if (name === undefined) {
        throw invalid(
          `command argument "${arg}": "$" must start a variable like $PORT or \${PORT} ` +
            `(write $$ for a literal $)`,
        );
      }
      names.add(name);
    }
  }
  return [...names];
}

/**
 * The argv list with every reference replaced by its value in `env`.
 * @throws {PrisnError} INVALID naming the first variable `env` does not set.
 */
export function expandCommand(
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
): string[] {
  const missing = commandVariables(argv).find((name) => env[name] === undefined);
  if (missing !== undefined) {
    throw invalid(
      `command refers to $${missing}, which is not set: set it in [env] or with --env ${missing}=VALUE`,
    );
  }
  return argv.map((arg) =>
    arg.replace(REFERENCE, (whole, braced?: string, bare?: string) => {
      if (whole === "$$") return "$";
      return env[(braced ?? bare)!]!;
    })
  );
}
