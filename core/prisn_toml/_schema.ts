/**
 * The zod schema of prisn.toml. Every check carries a message that reads after the key
 * ("replicas must be …"); checks marked `full` carry a whole sentence that already names the key.
 *
 * @module
 */

import { z } from "zod";
import { parseDuration } from "../duration.ts";
import { invalid, PrisnError } from "../errors.ts";
import { parseCpu, parseMemory } from "../quantity.ts";
import { validateRuntime } from "../runtimes.ts";
import { commandVariables } from "../command.ts";
import { validateName } from "./name.ts";

const ENV_NAME_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** Turns an INVALID error thrown by `e` into a `full` issue at `path` (relative to the value). */
function fullMessage(ctx: z.RefinementCtx, e: unknown, path: PropertyKey[] = []): void {
  if (!(e instanceof PrisnError)) throw e;
  ctx.addIssue({ code: "custom", message: e.message, params: { full: true }, path });
}

/** A refinement running `check`, whose thrown one-line error becomes the message. */
function checkedBy(check: (value: string) => void) {
  return (value: string, ctx: z.RefinementCtx) => {
    try {
      check(value);
    } catch (e) {
      fullMessage(ctx, e);
    }
  };
}

const ADDRESS = 'must be an IP address like "127.0.0.1", "0.0.0.0" or "::1"';

/** An IPv4 address in dotted quads, or an IPv6 address (as a URL host takes it). */
function isIpAddress(text: string): boolean {
  const quads = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(text);
  if (quads) return quads.slice(1).every((q) => Number(q) <= 255 && String(Number(q)) === q);
  if (!text.includes(":")) return false;
  try {
    return new URL(`http://[${text}]/`).hostname !== "";
  } catch {
    return false;
  }
}

function str(error: string) {
  return z.string({ error });
}

function int(min: number, error: string, max = Number.MAX_SAFE_INTEGER) {
  return z.number({ error }).int({ error }).min(min, { error }).max(max, { error });
}

function oneOf<const T extends readonly [string, ...string[]]>(values: T) {
  const quoted = values.map((v) => `"${v}"`);
  const error = `must be ${quoted.slice(0, -1).join(", ")} or ${quoted.at(-1)}`;
  return z.enum(values, { error });
}

const DURATION = 'must be a duration like "500ms", "10s", "5m" or "1h30m"';

function duration(options: { positive?: boolean } = {}) {
  return str(DURATION).superRefine((value, ctx) => {
    let ms: number;
    try {
      ms = parseDuration(value);
    } catch {
      ctx.addIssue({ code: "custom", message: DURATION });
      return;
    }
    if (options.positive && ms === 0) {
      ctx.addIssue({ code: "custom", message: 'must be longer than zero, like "10s"' });
    }
  });
}

function quantity(key: string, parseAs: (text: string, what: string) => number, like: string) {
  const error = `must be a quantity like ${like}`;
  return z.union([z.string(), z.number()], { error }).transform((value, ctx) => {
    const text = String(value);
    try {
      parseAs(text, key);
    } catch (e) {
      fullMessage(ctx, e);
      return z.NEVER;
    }
    return text;
  });
}

function validateEnvName(what: string, name: string): void {
  if (!ENV_NAME_RE.test(name)) {
    throw invalid(
      `${what} "${name}" is not a valid environment variable name: use letters, digits and '_', not starting with a digit`,
    );
  }
}

const HEALTH_PATH = 'must be a path like "/healthz"';
const healthPath = str(HEALTH_PATH).startsWith("/", { error: HEALTH_PATH });

const HEALTH_TABLE = z.strictObject({
  path: healthPath,
  interval: duration({ positive: true }).optional(),
  timeout: duration({ positive: true }).optional(),
  failures: int(1, "must be a positive integer").optional(),
}, { error: "must be a table { path, interval, timeout, failures }" });

const RESOURCES = z.strictObject({
  cpu: quantity("resources.cpu", parseCpu, '"500m" or "0.5"').optional(),
  memory: quantity("resources.memory", parseMemory, '"512Mi" or "1Gi"').optional(),
}, { error: 'must be a table like { cpu = "500m", memory = "512Mi" }' });

const RESTART = z.strictObject({
  backoff_initial: duration({ positive: true }).optional(),
  backoff_max: duration({ positive: true }).optional(),
  stable_after: duration().optional(),
  max_restarts: int(0, "must be a non-negative integer").optional(),
}, { error: "must be a table { backoff_initial, backoff_max, stable_after, max_restarts }" });

const HISTORY = z.strictObject({
  successful: int(0, "must be a non-negative integer").optional(),
  failed: int(0, "must be a non-negative integer").optional(),
  versions: int(1, "must be an integer of at least 1").optional(),
}, { error: "must be a table { successful, failed, versions }" });

const LOG_RATE = 'must be a byte quantity per second like "1Mi", or false';
const LOGS = z.strictObject({
  rate_limit: z.union([z.literal(false, { error: LOG_RATE }), z.string(), z.number()], {
    error: LOG_RATE,
  }).transform((value, ctx): string | false => {
    if (value === false) return false;
    const text = String(value);
    try {
      parseMemory(text, "logs.rate_limit");
    } catch (e) {
      fullMessage(ctx, e);
      return z.NEVER;
    }
    return text;
  }).optional(),
}, { error: 'must be a table like { rate_limit = "1Mi" }' });

const ROLLOUT = z.strictObject({
  max_parallel: int(1, "must be a positive integer").optional(),
}, { error: "must be a table { max_parallel }" });

/** A node name or tag: what `prisn agent run --node/--tags` accept. */
const NODE_WORD = 'must be a list of node names or tags like ["gpu"]';
const nodeWords = z.array(
  str(NODE_WORD).regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, { error: NODE_WORD }),
  { error: NODE_WORD },
).min(1, { error: NODE_WORD });

const PLACEMENT = z.strictObject({
  nodes: nodeWords.optional(),
  tags: nodeWords.optional(),
}, { error: 'must be a table like { nodes = ["node-1"], tags = ["gpu"] }' });

const ENV_VALUE = "must be a string, number or boolean";

const RELATIVE_PATH = 'must be a relative path inside the project, without ".."';

/** A path relative to the project root that does not leave it. */
function relativePath(error: string) {
  return str(error).superRefine((value, ctx) => {
    if (value === "" || value.startsWith("/") || value.split(/[/\\]/).includes("..")) {
      ctx.addIssue({ code: "custom", message: RELATIVE_PATH });
    }
  });
}

const DEPS_PYTHON =
  'must be a requirements file or pyproject.toml like "requirements.txt", or false';
const DEPS_NODE = 'must be a package.json like "package.json" or "web/package.json", or false';
const DEPS = z.strictObject({
  python: z.union([z.literal(false, { error: DEPS_PYTHON }), relativePath(DEPS_PYTHON)], {
    error: DEPS_PYTHON,
  }).optional(),
  node: z.union([
    z.literal(false, { error: DEPS_NODE }),
    relativePath(DEPS_NODE).refine((v) => /(^|\/)package\.json$/.test(v), { error: DEPS_NODE }),
  ], { error: DEPS_NODE }).optional(),
}, { error: 'must be a table like { python = "requirements.txt", node = false }' });

/** A user or group name as useradd takes it (never starting with "-": it is passed to tools). */
function account(error: string) {
  return str(error).regex(/^[A-Za-z_][A-Za-z0-9_.-]{0,31}$/, { error });
}

const COMMAND = 'must be a list of strings like ["gunicorn", "--bind", "127.0.0.1:$PORT"] ' +
  "(a shell string is not run: prisn starts the program itself, without a shell)";

/**
 * An argv list: a program and its arguments, each a string where `$NAME`, `${NAME}` refer to the
 * run's environment and `$$` is a literal `$`.
 */
const COMMAND_LIST = z.array(str("must be a string"), { error: COMMAND })
  .min(1, { error: COMMAND })
  .superRefine((argv, ctx) => {
    if (argv[0] === "") {
      ctx.addIssue({ code: "custom", message: "must name a program first", path: [0] });
    }
    argv.forEach((arg, i) => {
      try {
        commandVariables([arg]);
      } catch (e) {
        fullMessage(ctx, e, [i]);
      }
    });
  });

export const TOP = z.strictObject({
  name: str('must be a string like "my-app"').superRefine(checkedBy(validateName)).optional(),
  type: oneOf(["service", "job", "cronjob"]).optional(),
  runtime: str('must be a string like "python3" or "node20"').superRefine(
    checkedBy(validateRuntime),
  ).optional(),
  entrypoint: relativePath('must be a path like "main.py"').optional(),
  command: COMMAND_LIST.optional(),
  args: z.array(str("must be a string"), { error: "must be a list of strings" }).optional(),
  env: z.record(
    z.string(),
    z.union([z.string(), z.number(), z.boolean()], { error: ENV_VALUE }).transform(String),
    { error: 'must be a table like { LOG_LEVEL = "info" }' },
  ).superRefine((env, ctx) => {
    for (const key of Object.keys(env)) {
      try {
        validateEnvName("env key", key);
      } catch (e) {
        fullMessage(ctx, e, [key]);
      }
    }
  }).optional(),
  port: int(1, "must be an integer from 1 to 65535", 65535).optional(),
  balancer: oneOf(["kernel", "userspace"]).optional(),
  address: str(ADDRESS).refine(isIpAddress, { error: ADDRESS }).optional(),
  replicas: int(0, "must be a non-negative integer").optional(),
  schedule: str('must be a cron expression like "0 3 * * *"').min(1, {
    error: 'must be a cron expression like "0 3 * * *"',
  }).optional(),
  timezone: str('must be an IANA time zone like "UTC" or "Europe/Berlin"').superRefine(
    (value, ctx) => {
      try {
        new Intl.DateTimeFormat("en-US", { timeZone: value });
      } catch {
        ctx.addIssue({
          code: "custom",
          message: 'must be an IANA time zone like "UTC" or "Europe/Berlin"',
        });
      }
    },
  ).optional(),
  health: z.union([healthPath, HEALTH_TABLE], {
    error: 'must be a path like "/healthz" or a table { path, interval, timeout, failures }',
  }).optional(),
  resources: RESOURCES.optional(),
  timeout: duration({ positive: true }).optional(),
  retries: int(0, "must be a non-negative integer").optional(),
  retry_backoff: duration().optional(),
  concurrency: oneOf(["allow", "forbid", "replace"]).optional(),
  catchup: oneOf(["none", "latest"]).optional(),
  starting_deadline: duration({ positive: true }).optional(),
  restart: RESTART.optional(),
  stop_grace: duration().optional(),
  drain_grace: duration().optional(),
  readiness_timeout: duration({ positive: true }).optional(),
  history: HISTORY.optional(),
  logs: LOGS.optional(),
  rollout: ROLLOUT.optional(),
  placement: PLACEMENT.optional(),
  deps: DEPS.optional(),
  secrets: z.array(
    str("must be a string").superRefine(checkedBy((name) => validateEnvName("secret", name))),
    { error: 'must be a list of env key names like ["API_KEY"]' },
  ).optional(),
  user: account('must be a user name like "app"').optional(),
  group: account('must be a group name like "app"').optional(),
});

/** The tables of prisn.toml whose keys are fixed (env's keys are the user's own). */
export const TABLES: Readonly<Record<string, z.ZodObject>> = {
  health: HEALTH_TABLE,
  resources: RESOURCES,
  restart: RESTART,
  history: HISTORY,
  logs: LOGS,
  rollout: ROLLOUT,
  placement: PLACEMENT,
  deps: DEPS,
};
