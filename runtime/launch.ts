import { nameOf, namespaceOf } from "../core/namespace.ts";
import { isAbsolute, join, resolve } from "node:path";
import { commandVariables, expandCommand } from "../core/command.ts";
import { PrisnError } from "../core/errors.ts";
import type { DeploySpec } from "../core/spec.ts";
import type { AgentContext } from "./context.ts";
import { dependencies } from "./dependencies.ts";
import { environmentOf, type EnvKind, linkNodeModules, prepareEnv } from "./envs.ts";
import { findOnPath, type Interpreter, resolveInterpreter } from "./interpreters.ts";
import type { ProcessSpec } from "./process.ts";
import { openTo, resolveRunAs, runAsEnv } from "./run_as.ts";

/** A dependency env a launch runs in. */
export interface LaunchEnv {
  id: string;
  kind: EnvKind;
  /** True when the env existed already (built by an earlier deploy). */
  reused: boolean;
  /** How long preparing it took, in ms. */
  ms: number;
}

/** How to start one version of a deployment: the process spec plus what `get` shows about it. */
export interface Launch extends ProcessSpec {
  /** The runtime's interpreter (absolute path); absent for a command of another program. */
  interpreter?: string;
  interpreterVersion?: string;
  /** The dependency envs it runs in, in PATH order. */
  envs: LaunchEnv[];
  /** Kinds whose dependency files are present but switched off in `[deps]`. */
  skipped: EnvKind[];
  /** Values of secret env keys, masked in logs. */
  redact: string[];
}

/**
 * Resolves the interpreter and the dependency envs (each built once per content hash, then
 * reused) for a stored version, and returns how to start it: the entrypoint with its interpreter,
 * or the `command`'s program found in the project or on the run's PATH (envs' executables first).
 * With prisn.toml `user`, the version and its envs are opened to that user (runtime/run_as.ts).
 * @throws {PrisnError} INVALID when the command's program is not found or it refers to a variable
 *   no run will have; what `dependencies`, `prepareEnv`, `resolveRunAs` and `openTo` throw.
 */
export async function prepareLaunch(
  ctx: AgentContext,
  spec: DeploySpec,
  version: string,
): Promise<Launch> {
  const runAs = await resolveRunAs(spec); // before anything slow: an unknown user fails at once
  const dir = await ctx.artifacts.ensureLocal(spec.name, version);
  const interp = spec.runtime ? await resolveInterpreter(spec.runtime) : undefined;
  const environment = Deno.env.toObject();
  const needed = await dependencies(dir, spec, interp);
  const envs: LaunchEnv[] = [];
  const prepared = [];
  for (const need of needed.envs) {
    const started = Date.now();
    const env = await prepareEnv({
      envsDir: ctx.paths.envs,
      sourceDir: dir,
      interpreter: need.interpreter,
      file: need.file,
      environment,
    });
    if (!env) continue;
    await linkNodeModules(dir, env); // ESM `import` ignores NODE_PATH
    prepared.push(env);
    envs.push({ id: env.id, kind: env.kind, reused: env.reused, ms: Date.now() - started });
  }
  if (runAs) {
    await openTo(runAs, {
      paths: ctx.paths,
      version: dir,
      envs: prepared.map((e) => e.dir),
    });
  }
  const env: Record<string, string> = {
    PYTHONUNBUFFERED: "1",
    ...(prepared.length ? environmentOf(prepared, environment) : {}),
    ...(runAs ? runAsEnv(runAs) : {}),
    ...spec.env,
    PRISN_DEPLOYMENT: nameOf(spec.name),
    PRISN_NAMESPACE: namespaceOf(spec.name),
    PRISN_VERSION: version,
  };
  const program = spec.command
    ? await commandProgram(spec, dir, { ...environment, ...env })
    : entrypointProgram(spec, dir, interp!, prepared.find((e) => e.kind === interp!.family));
  return {
    ...program,
    cwd: dir,
    env,
    interpreter: interp?.command,
    interpreterVersion: interp?.version,
    envs,
    skipped: needed.skipped,
    redact: (spec.secrets ?? []).map((k) => spec.env[k]).filter((v) => v !== undefined),
    runAs,
  };
}

function entrypointProgram(
  spec: DeploySpec,
  dir: string,
  interp: Interpreter,
  own?: { command: string },
): Pick<ProcessSpec, "command" | "args"> {
  const entry = join(dir, spec.entrypoint!);
  const args = interp.family === "deno"
    ? ["run", "-A", entry, ...spec.args]
    : [entry, ...spec.args];
  return { command: own?.command ?? interp.command, args };
}

/**
 * A command's program and arguments. A program with a `/` is a path in the project; a bare name
 * is looked up on the run's PATH now, so a missing one fails the deploy rather than every start.
 * References are expanded at each start (`expand`), once PORT and the run's id are known; here
 * they are only checked against what every run will have.
 */
async function commandProgram(
  spec: DeploySpec,
  dir: string,
  runEnv: Record<string, string>,
): Promise<Pick<ProcessSpec, "command" | "args" | "expand">> {
  const argv = spec.command!;
  checkVariables(spec, runEnv);
  const expand = commandVariables(argv).length > 0 || argv.some((a) => a.includes("$$"));
  const [program, ...args] = argv;
  if (program.includes("$")) return { command: program, args, expand };
  let command: string | undefined;
  if (program.includes("/")) {
    command = isAbsolute(program) ? program : resolve(dir, program);
    if (!(await findOnPath(command, "/"))) {
      throw new PrisnError(
        "INVALID",
        `command "${program}" is not an executable file ${
          isAbsolute(program) ? "on this host" : "in the project"
        }: check the path and its exec bit`,
      );
    }
  } else {
    command = await findOnPath(program, runEnv.PATH ?? "");
    if (!command) {
      throw new PrisnError(
        "INVALID",
        `command "${program}" was not found on PATH (the deps envs' bin folders, then the ` +
          `agent's PATH): add it to the project's dependencies or install it on the host`,
      );
    }
  }
  return { command, args, expand };
}

/** Fails when the command refers to a variable that no run of this deployment will have. */
function checkVariables(spec: DeploySpec, runEnv: Record<string, string>): void {
  const names = commandVariables(spec.command!);
  const perRun: Record<string, string> = spec.type === "service"
    ? { PRISN_REPLICA: "" }
    : { PRISN_RUN_ID: "" };
  if (spec.type === "cronjob") perRun.PRISN_SCHEDULED_TIME = "";
  if (spec.type === "service" && spec.port !== undefined) perRun.PORT = "";
  if (names.includes("PORT") && perRun.PORT === undefined && runEnv.PORT === undefined) {
    throw new PrisnError(
      "INVALID",
      spec.type === "service"
        ? "command refers to $PORT, which a service gets only with a port: set port or --port"
        : `command refers to $PORT, which a ${spec.type} does not get: PORT is for services`,
    );
  }
  expandCommand(spec.command!, { ...runEnv, ...perRun });
}
