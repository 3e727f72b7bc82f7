import { basename, extname } from "node:path";
import { invalid } from "./errors.ts";
import { parseEnvPair, parsePort, parseReplicas } from "./values.ts";

export { parseEnvPair, parsePort, parseReplicas };
import type { DeploymentType, PrisnToml } from "./prisn_toml.ts";
import { validateName } from "./prisn_toml.ts";
import {
  DEFAULT_ENTRYPOINTS,
  isKnownRuntime,
  runtimeForFile,
  validateRuntime,
} from "./runtimes.ts";

export type { DeploymentType };

/** What the user asked for on the command line; every field overrides prisn.toml. */
export interface DeployFlags {
  name?: string;
  type?: string;
  port?: string | number;
  replicas?: string | number;
  schedule?: string;
  timezone?: string;
  entrypoint?: string;
  runtime?: string;
  /** "K=V" pairs. */
  env?: string[];
  /** "K=V" pairs whose values are secret (masked everywhere prisn shows or logs them). */
  secret?: string[];
  /** Contents of --env-file files, applied before `env`. */
  envFiles?: Array<{ file: string; text: string }>;
  /** Package links that point outside the folder by content (--follow-links). */
  followLinks?: boolean;
}

/**
 * The effective spec of one deployment: prisn.toml, overridden by flags, with defaults filled in.
 * Everything but `replicas` is part of the version id.
 */
export interface DeploySpec extends Omit<PrisnToml, "replicas"> {
  name: string;
  type: DeploymentType;
  /** The file to run; absent when `command` is set. */
  entrypoint?: string;
  /**
   * The interpreter: of the entrypoint, or for a `command` the one its program names (python3,
   * node…) or prisn.toml sets; it also builds the deps env of its family. Absent for a command of
   * another program without a runtime set.
   */
  runtime?: string;
  args: string[];
  env: Record<string, string>;
  replicas: number;
}

/**
 * Reads a dotenv file: KEY=VALUE lines, `#` comments, blank lines, an optional `export `, and
 * values optionally in single or double quotes. Errors name the file and line.
 */
export function parseEnvFile(text: string, file: string): Record<string, string> {
  const env: Record<string, string> = {};
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (!line || line.startsWith("#")) return;
    const m = /^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$/.exec(line);
    if (!m) {
      // The line itself is not shown: a file given by mistake may hold secrets (/etc/shadow).
      throw invalid(`${file}:${i + 1}: expected KEY=VALUE (a name of letters, digits and _)`);
    }
    let value = m[2];
    const q = value[0];
    const quoted = q === '"'
      ? /^"((?:[^"\\]|\\.)*)"\s*(?:#.*)?$/.exec(value)
      : q === "'"
      ? /^'([^']*)'\s*(?:#.*)?$/.exec(value)
      : null;
    if (quoted) {
      value = quoted[1];
      if (q === '"') value = value.replace(/\\n/g, "\n").replace(/\\"/g, '"');
    } else {
      value = value.replace(/\s+#.*$/, "");
    }
    env[m[1]] = value;
  });
  return env;
}

/** The default name: the folder name, or the file's stem, made into a DNS label if it can be. */
export function defaultName(path: string, kind: "dir" | "file"): string {
  const base = basename(path.replace(/[\\/]+$/, "")) || "app";
  const stem = kind === "file" ? base.slice(0, base.length - extname(base).length) : base;
  return stem.toLowerCase().replace(/[_ .]+/g, "-");
}

/** The spec fields that make up the version id (all of the spec but the replica count). */
export function runSpecOf(spec: DeploySpec): Omit<DeploySpec, "replicas"> {
  const { replicas: _replicas, ...rest } = spec;
  return rest;
}

/**
 * Combines prisn.toml, flags and the package's file list into the effective spec.
 * Pure: validation errors are one-line PrisnErrors; nothing is read from disk.
 */
export function resolveSpec(input: {
  toml?: PrisnToml;
  flags: DeployFlags;
  /** Relative paths of the package's files. */
  files: readonly string[];
  defaultName: string;
}): DeploySpec {
  const { flags } = input;
  const toml = input.toml ?? {};
  const name = flags.name ?? toml.name ?? input.defaultName;
  validateName(name);

  const files = new Set(input.files);
  // --entrypoint replaces prisn.toml's command, like every flag overrides the file.
  const command = flags.entrypoint === undefined ? toml.command : undefined;
  const { entrypoint, runtime } = command
    ? { entrypoint: undefined, runtime: commandRuntime(command, flags.runtime ?? toml.runtime) }
    : entrypointAndRuntime(flags, toml, input.files);
  if (runtime !== undefined) validateRuntime(runtime);
  for (const kind of ["python", "node"] as const) {
    const file = toml.deps?.[kind];
    if (typeof file === "string" && !files.has(file)) {
      throw invalid(`prisn.toml: [deps] ${kind} names "${file}", which is not in the package`);
    }
  }

  const port = flags.port !== undefined ? parsePort(flags.port) : toml.port;
  const replicasGiven = flags.replicas !== undefined
    ? parseReplicas(flags.replicas)
    : toml.replicas;
  const schedule = flags.schedule ?? toml.schedule;
  const type = resolveType(flags.type ?? toml.type, { port, replicasGiven, schedule });

  const env: Record<string, string> = { ...(toml.env ?? {}) };
  for (const { file, text } of flags.envFiles ?? []) Object.assign(env, parseEnvFile(text, file));
  for (const pair of flags.env ?? []) {
    const [k, v] = parseEnvPair(pair);
    env[k] = v;
  }
  const secrets = new Set(toml.secrets ?? []);
  for (const pair of flags.secret ?? []) {
    const [k, v] = parseEnvPair(pair);
    env[k] = v;
    secrets.add(k);
  }
  for (const key of secrets) {
    if (!(key in env)) {
      throw invalid(
        `secret "${key}" has no value: set it in [env], --env or --secret ${key}=VALUE`,
      );
    }
  }

  const spec: DeploySpec = {
    ...toml,
    name,
    type,
    args: toml.args ?? [],
    env,
    secrets: [...secrets].sort(),
    replicas: type === "service" ? (replicasGiven ?? 1) : 0,
  };
  if (command) spec.command = command;
  else delete spec.command;
  if (entrypoint !== undefined) spec.entrypoint = entrypoint;
  if (runtime !== undefined) spec.runtime = runtime;
  else delete spec.runtime;
  if (port !== undefined) spec.port = port;
  else delete spec.port;
  if (spec.address !== undefined && port === undefined) {
    throw invalid(
      `address = "${spec.address}" needs a service port: set port or --port, or drop address`,
    );
  }
  if (spec.balancer !== undefined && port === undefined) {
    throw invalid(
      `balancer = "${spec.balancer}" needs a service port: set port or --port, or drop balancer`,
    );
  }
  if (schedule !== undefined) spec.schedule = schedule;
  const timezone = flags.timezone ?? toml.timezone;
  if (timezone !== undefined) spec.timezone = timezone;
  return spec;
}

/** The entrypoint (flag, prisn.toml, else a default file) and its runtime. */
function entrypointAndRuntime(
  flags: DeployFlags,
  toml: PrisnToml,
  fileList: readonly string[],
): { entrypoint: string; runtime: string } {
  const files = new Set(fileList);
  const entrypoint = flags.entrypoint ?? toml.entrypoint ??
    DEFAULT_ENTRYPOINTS.find((f) => files.has(f)) ??
    (fileList.length === 1 ? fileList[0] : undefined);
  if (!entrypoint) {
    throw invalid(
      `no entrypoint found: add one of ${DEFAULT_ENTRYPOINTS.join(", ")}, ` +
        `or set entrypoint or command in prisn.toml, or --entrypoint`,
    );
  }
  if (!files.has(entrypoint)) {
    throw invalid(`entrypoint "${entrypoint}" is not in the package: check the path`);
  }
  const runtime = flags.runtime ?? toml.runtime ?? runtimeForFile(entrypoint);
  if (!runtime) {
    throw invalid(
      `cannot tell the runtime of "${entrypoint}": set runtime (python3, node, bash) ` +
        `in prisn.toml or --runtime`,
    );
  }
  return { entrypoint, runtime };
}

/** A command's runtime: the one set, else its program's when that names one (python3, node…). */
function commandRuntime(command: readonly string[], given?: string): string | undefined {
  if (given !== undefined) return given;
  const program = basename(command[0]);
  return isKnownRuntime(program) ? program : undefined;
}

function resolveType(
  given: string | undefined,
  seen: { port?: number; replicasGiven?: number; schedule?: string },
): DeploymentType {
  if (given !== undefined && given !== "service" && given !== "job" && given !== "cronjob") {
    throw invalid(`type "${given}" is not valid: use service, job or cronjob`);
  }
  const type: DeploymentType = given ??
    (seen.schedule !== undefined
      ? "cronjob"
      : seen.port !== undefined || seen.replicasGiven !== undefined
      ? "service"
      : "job");
  if (type === "cronjob" && seen.schedule === undefined) {
    throw invalid(
      `a cronjob needs a schedule: add --schedule "0 2 * * *" or schedule in prisn.toml`,
    );
  }
  if (type !== "cronjob" && seen.schedule !== undefined) {
    throw invalid(`a ${type} takes no schedule: drop the schedule or use type cronjob`);
  }
  if (type !== "service" && seen.port !== undefined) {
    throw invalid(`a ${type} takes no port: drop the port or use type service`);
  }
  return type;
}
