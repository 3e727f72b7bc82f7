/**
 * Building an env: a venv with pip, or a `node_modules` tree with npm, and the variables a
 * program needs to run inside it.
 *
 * @module
 */

import { dirname, isAbsolute, join } from "node:path";
import { PrisnError } from "../../core/errors.ts";
import { removeIfPresent } from "../../core/fs.ts";
import { isDiskFull } from "../disk_health.ts";
import { InstallError } from "./errors.ts";
import type { NodePlan, Plan, PythonPlan } from "./_plan.ts";
import { clip, lastLine, run, tail } from "./_process.ts";
import type { Interpreter, PreparedEnv, PrepareEnvOptions } from "./types.ts";

/** Where one env is built, and with what. */
export interface BuildTarget {
  /** The env's folder, at its final path. */
  dir: string;
  options: PrepareEnvOptions;
  /** The installers' environment: `options.environment`, else the agent's. */
  environment: Record<string, string>;
  /** How long one install command may run: `options.timeoutMs`, else the default. */
  timeoutMs: number;
}

/** About what a venv with pip takes (ensurepip's wheels unpacked). */
const VENV_ROOM = 16 * 1024 * 1024;

/** Whether `bytes` more fit under `dir`: written as a probe file and removed again. */
async function hasRoom(dir: string, bytes: number): Promise<boolean> {
  const probe = join(dir, `.room-${crypto.randomUUID().slice(0, 8)}`);
  try {
    using file = await Deno.open(probe, { write: true, createNew: true });
    const chunk = new Uint8Array(1024 * 1024);
    for (let written = 0; written < bytes;) written += await file.write(chunk);
    return true;
  } catch (e) {
    return !isDiskFull(e);
  } finally {
    await Deno.remove(probe).catch(() => {});
  }
}

/**
 * Builds a venv at `dir` (`python -m venv`) and pip-installs the plan's requirements into it,
 * offline from `wheels/` when the project ships one.
 * @throws {InstallError} when venv or pip fails; {@link PrisnError} UNAVAILABLE without venv.
 */
export async function buildPython(plan: PythonPlan, target: BuildTarget): Promise<void> {
  const { dir, options, environment, timeoutMs } = target;
  const venv = await run(options.interpreter.command, ["-m", "venv", dir], {
    cwd: options.envsDir,
    env: withoutPythonOverrides(environment),
    timeoutMs,
    onOutput: options.onOutput,
    what: `python (${options.interpreter.command})`,
  });
  if (venv.code !== 0) {
    const text = venv.tail.join("\n");
    // ensurepip fails on a nearly full disk too (it needs some 10 MiB), saying only that it
    // failed: that is no missing venv module.
    if (isDiskFull({ message: text }) || !(await hasRoom(options.envsDir, VENV_ROOM))) {
      throw new InstallError("creating a python venv failed: No space left on device", text);
    }
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

/**
 * Builds a `node_modules` tree at `dir`: package.json without `scripts`, the lockfile and a
 * project .npmrc (removed afterwards), then `npm ci` or `npm install` with `--omit=dev`.
 * @throws {InstallError} when npm fails.
 */
export async function buildNode(plan: NodePlan, target: BuildTarget): Promise<void> {
  const { dir, options, environment, timeoutMs } = target;
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

/** How to run a program inside the env a plan was built into at `dir`. */
export function describe(
  plan: Plan,
  dir: string,
  interp: Interpreter,
  reused: boolean,
): PreparedEnv {
  if (plan.kind === "python") {
    return {
      id: plan.id,
      kind: "python",
      dir,
      command: join(dir, "bin", "python"),
      bin: join(dir, "bin"),
      env: { PYTHONUNBUFFERED: "1", VIRTUAL_ENV: dir },
      reused,
    };
  }
  const modules = join(dir, "node_modules");
  return {
    id: plan.id,
    kind: "node",
    dir,
    command: interp.command,
    bin: join(modules, ".bin"),
    env: { NODE_PATH: modules },
    reused,
  };
}

/**
 * The variables a program running inside `envs` needs: each env's own (VIRTUAL_ENV, NODE_PATH…)
 * and PATH with the envs' executables first, in the order given, before the base PATH (the
 * `environment`'s, else the agent's).
 */
export function environmentOf(
  envs: readonly Pick<PreparedEnv, "bin" | "env">[],
  environment: Record<string, string>,
): Record<string, string> {
  const vars: Record<string, string> = {};
  for (const env of envs) Object.assign(vars, env.env);
  vars.PATH = [...envs.map((e) => e.bin), basePath(environment)].filter((p) => p).join(":");
  return vars;
}

function pythonVariables(dir: string, environment: Record<string, string>) {
  return environmentOf([{
    bin: join(dir, "bin"),
    env: { PYTHONUNBUFFERED: "1", VIRTUAL_ENV: dir },
  }], environment);
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
