/**
 * Finds the interpreter a runtime name asks for on this host and reads its exact version, which
 * keys environment caches (a venv built for 3.11.7 is not reused by 3.11.8).
 *
 * How names map to programs on PATH:
 * - `python3` → `python3`; `python3.X` → `python3.X`, which must report 3.X;
 *   `python` → `python3`, else `python`, which must be Python 3.
 * - `node` → `node`; `nodeNN` → `node`, which must report major version NN (prisn does not pick
 *   between several Node installs: put the right one first on PATH).
 * - `bash` → `bash`; `sh` → `sh`. Many hosts' `sh` (dash) has no version flag: its version is then
 *   "unknown".
 * - `deno` → `deno` on PATH; else, when prisn itself runs under a `deno` binary (not a compiled
 *   prisn), that binary. An operator's own Deno comes first because it is the one they update.
 *
 * Python and Node report their own executable, and that is the command returned: behind a
 * version manager's shim (pyenv, asdf, volta) it is the real interpreter whose version was read.
 *
 * @module
 */

import { basename, delimiter, resolve } from "node:path";
import { PrisnError } from "../core/errors.ts";
import { pinnedVersion, type RuntimeFamily, runtimeFamily } from "../core/runtimes.ts";

/** An interpreter found on this host. */
export interface Interpreter {
  /** The runtime name asked for, e.g. "python3.11". */
  runtime: string;
  family: RuntimeFamily;
  /** Absolute path of the program to run. */
  command: string;
  /** Exact version it reports, e.g. "3.11.7", "20.20.2", "5.2.15"; "unknown" for a bare sh. */
  version: string;
}

/** Options of {@link resolveInterpreter}. */
export interface ResolveOptions {
  /**
   * The PATH searched, and given to the interpreter when its version is read.
   * @default the PATH of this process
   */
  path?: string;
}

const VERSION_TIMEOUT_MS = 10_000;

const cache = new Map<string, Promise<Interpreter>>();

/**
 * Finds the interpreter for `runtime` and reads its version; the answer is cached for the life
 * of the process (failures are not, so installing an interpreter needs no restart).
 * Throws INVALID for an unknown runtime name, and UNAVAILABLE when the interpreter is absent,
 * does not run, or is the wrong version, e.g. `runtime "python3.12" is not installed on this
 * host: install it or set runtime = "python3" in prisn.toml`.
 */
export function resolveInterpreter(
  runtime: string,
  options: ResolveOptions = {},
): Promise<Interpreter> {
  const path = options.path ?? Deno.env.get("PATH") ?? "";
  const key = `${runtime}\n${path}`;
  let found = cache.get(key);
  if (!found) {
    found = resolveUncached(runtime, path);
    cache.set(key, found);
    found.catch(() => cache.delete(key));
  }
  return found;
}

/**
 * The absolute path of the first executable file called `name` in `path` (a PATH-style list),
 * or undefined. Empty and relative entries are resolved against the working directory.
 */
export async function findOnPath(name: string, path: string): Promise<string | undefined> {
  for (const dir of path.split(delimiter)) {
    if (dir === "") continue;
    const candidate = resolve(dir, name);
    try {
      const info = await Deno.stat(candidate);
      if (info.isFile && (info.mode === null || (info.mode & 0o111) !== 0)) return candidate;
    } catch {
      // not here; keep looking
    }
  }
  return undefined;
}

async function resolveUncached(runtime: string, path: string): Promise<Interpreter> {
  const family = runtimeFamily(runtime);
  const programs = PROGRAMS[family](runtime);
  let command: string | undefined;
  for (const program of programs) {
    command = await findOnPath(program, path);
    if (command) break;
  }
  command ??= family === "deno" ? runningDeno() : undefined;
  if (!command) throw unavailable(runtime);

  const probe = PROBES[family];
  const output = await run(runtime, command, probe.args, path);
  const found = probe.parse(output);
  if (found.version === undefined) {
    if (runtime === "sh") return { runtime, family, command, version: "unknown" };
    throw unavailable(runtime, `${command} did not say its version`);
  }
  const wanted = pinnedVersion(runtime) ?? (family === "python" ? "3" : undefined);
  if (wanted !== undefined && !`${found.version}.`.startsWith(`${wanted}.`)) {
    throw unavailable(runtime, `${command} is version ${found.version}`);
  }
  return { runtime, family, command: found.executable ?? command, version: found.version };
}

const PROGRAMS: Readonly<Record<RuntimeFamily, (runtime: string) => string[]>> = {
  python: (runtime) => runtime === "python" ? ["python3", "python"] : [runtime],
  node: () => ["node"],
  bash: (runtime) => [runtime],
  deno: () => ["deno"],
};

/** What an interpreter reports about itself. */
interface Probed {
  version?: string;
  /** The real program behind a version manager's shim (pyenv, asdf, volta), when known. */
  executable?: string;
}

/**
 * How each family is asked for its version. Python and Node are asked for their own executable
 * too: a pyenv shim picks its Python by the working directory, so the program prisn runs must be
 * the one whose version was read, not the shim.
 */
const PROBES: Readonly<Record<RuntimeFamily, { args: string[]; parse(out: string): Probed }>> = {
  python: {
    args: ["-c", "import platform, sys; print(platform.python_version()); print(sys.executable)"],
    parse: selfReport,
  },
  node: {
    args: ["-e", "console.log(process.versions.node); console.log(process.execPath)"],
    parse: selfReport,
  },
  bash: {
    args: ["--version"],
    parse: (out) => ({ version: /version (\d+\.\d+\.\d+)/.exec(out)?.[1] }),
  },
  deno: {
    args: ["--version"],
    parse: (out) => ({ version: /^deno (\d+\.\d+\.\d+\S*)/m.exec(out)?.[1] }),
  },
};

/** Parses "3.11.7\n/abs/path/python3.11\n". */
function selfReport(out: string): Probed {
  const [version, executable] = out.split("\n").map((line) => line.trim());
  return {
    version: /^\d+\.\d+\.\d+\S*$/.test(version) ? version : undefined,
    executable: executable?.startsWith("/") ? executable : undefined,
  };
}

/** The deno binary running this process, unless this process is a compiled program. */
function runningDeno(): string | undefined {
  const exec = Deno.execPath();
  return /^deno(\.exe)?$/.test(basename(exec)) ? exec : undefined;
}

/** Runs the interpreter once with `args`; its stdout, or stdout and stderr for a bare sh. */
async function run(
  runtime: string,
  command: string,
  args: string[],
  path: string,
): Promise<string> {
  let result: Deno.CommandOutput;
  try {
    result = await new Deno.Command(command, {
      args,
      env: { PATH: path },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      signal: AbortSignal.timeout(VERSION_TIMEOUT_MS),
    }).output();
  } catch (e) {
    throw unavailable(runtime, `${command} could not be run (${(e as Error).message})`, e);
  }
  const decoder = new TextDecoder();
  const stdout = decoder.decode(result.stdout);
  const stderr = decoder.decode(result.stderr);
  if (!result.success && runtime !== "sh") {
    const said = stderr.trim().split("\n")[0] || `exit code ${result.code}`;
    throw unavailable(runtime, `${command} failed to start (${said})`);
  }
  return runtime === "sh" ? `${stdout}\n${stderr}` : stdout;
}

/** Human name of what to install: "Python 3.11", "Node.js 20", "bash". */
function product(runtime: string): string {
  const pinned = pinnedVersion(runtime) ?? "";
  switch (runtimeFamily(runtime)) {
    case "python":
      return `Python ${pinned || "3"}`;
    case "node":
      return pinned ? `Node.js ${pinned}` : "Node.js";
    case "deno":
      return "Deno";
    case "bash":
      return runtime;
  }
}

/**
 * `runtime "python3.12" is not installed on this host: install it or set runtime = "python3" in
 * prisn.toml`, with what was found instead (if anything) before the advice.
 */
function unavailable(runtime: string, found?: string, cause?: unknown): PrisnError {
  const fallback = runtime.startsWith("python3.")
    ? "python3"
    : /^node\d/.test(runtime)
    ? "node"
    : undefined;
  const todo = fallback
    ? `install it or set runtime = "${fallback}" in prisn.toml`
    : `install ${product(runtime)}`;
  const seen = found ? `${found}; ` : "";
  return new PrisnError(
    "UNAVAILABLE",
    `runtime "${runtime}" is not installed on this host: ${seen}${todo}`,
    { cause },
  );
}
