import { join } from "node:path";
import type { DeploySpec } from "../core/spec.ts";
import type { AgentContext } from "./context.ts";
import { resolveInterpreter } from "./interpreters.ts";
import { linkNodeModules, prepareEnv } from "./envs.ts";
import type { ProcessSpec } from "./process.ts";

/** How to start one version of a deployment: the process spec plus what `get` shows about it. */
export interface Launch extends ProcessSpec {
  interpreter: string;
  interpreterVersion: string;
  envId?: string;
  /** True when the env existed already (built by an earlier deploy). */
  envReused?: boolean;
  /** Values of secret env keys, masked in logs. */
  redact: string[];
}

/**
 * Resolves the interpreter and the dependency env (built once per content hash, then reused)
 * for a stored version, and returns how to start it.
 */
export async function prepareLaunch(
  ctx: AgentContext,
  spec: DeploySpec,
  version: string,
): Promise<Launch> {
  const dir = await ctx.artifacts.ensureLocal(spec.name, version);
  const interp = await resolveInterpreter(spec.runtime);
  const env = await prepareEnv({
    envsDir: ctx.paths.envs,
    sourceDir: dir,
    interpreter: interp,
    environment: Deno.env.toObject(),
  });
  if (env) await linkNodeModules(dir, env); // ESM `import` ignores NODE_PATH
  const command = env?.command ?? interp.command;
  const entry = join(dir, spec.entrypoint);
  const args = interp.family === "deno"
    ? ["run", "-A", entry, ...spec.args]
    : [entry, ...spec.args];
  return {
    command,
    args,
    cwd: dir,
    env: {
      PYTHONUNBUFFERED: "1",
      ...env?.env,
      ...spec.env,
      PRISN_DEPLOYMENT: spec.name,
      PRISN_VERSION: version,
    },
    interpreter: interp.command,
    interpreterVersion: interp.version,
    envId: env?.id,
    envReused: env?.reused,
    redact: (spec.secrets ?? []).map((k) => spec.env[k]).filter((v) => v !== undefined),
  };
}
