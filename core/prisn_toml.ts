/**
 * prisn.toml: a project's deployment settings. {@link parsePrisnToml} reads and validates one and
 * turns every mistake into a single line naming the file, the line, the key and what is allowed.
 * Durations and quantities stay as the strings the user wrote; see docs/prisn-toml.md.
 *
 * @module
 */

import { parse, TomlError } from "smol-toml";
import { z } from "zod";
import { parseDuration } from "./duration.ts";
import { invalid, PrisnError } from "./errors.ts";
import { parseCpu, parseMemory } from "./quantity.ts";
import { validateRuntime } from "./runtimes.ts";

/** How a deployment runs: kept running, run once per trigger, or run on a schedule. */
export type DeploymentType = "service" | "job" | "cronjob";

/** A health check given as a table; `health = "/healthz"` is short for `{ path = "/healthz" }`. */
export interface HealthCheck {
  /** HTTP path probed on the replica's PORT, starting with "/". */
  path: string;
  /** Time between probes, e.g. "10s". */
  interval?: string;
  /** Time one probe may take, e.g. "2s". */
  timeout?: string;
  /** Consecutive failed probes after which the replica is restarted. */
  failures?: number;
}

/** Per-replica (or per-run) resource limits, in Kubernetes quantity form. */
export interface Resources {
  /** CPU limit: "500m" or "0.5" (see core/quantity.ts). */
  cpu?: string;
  /** Memory limit: "512Mi", "1Gi" (see core/quantity.ts). */
  memory?: string;
}

/** Crash-restart policy for service replicas. */
export interface RestartPolicy {
  /** Delay before the first restart after a crash; doubles on each further crash. */
  backoff_initial?: string;
  /** The most the restart delay grows to. */
  backoff_max?: string;
  /** A replica up this long counts as healthy again and its delay resets. */
  stable_after?: string;
  /** Give up after this many restarts in a row (absent: never give up). */
  max_restarts?: number;
}

/** How many finished runs and old versions are kept. */
export interface History {
  /** Successful runs kept per deployment. */
  successful?: number;
  /** Failed runs kept per deployment. */
  failed?: number;
  /** Versions kept for rollback, including the current one. */
  versions?: number;
}

/** How a replica's or run's output is logged. */
export interface LogSettings {
  /**
   * Most output logged per second, as a byte quantity ("1Mi"), counted over 10-second windows;
   * lines beyond it are dropped and counted. `false`: no limit.
   */
  rate_limit?: string | false;
}

/** How a service moves to a new version. */
export interface RolloutSettings {
  /** Replicas replaced at a time (absent: a quarter of the replicas, at least 1). */
  max_parallel?: number;
}

/**
 * A validated prisn.toml. Every key is optional; what applies when a key is absent is listed
 * in {@link PRISN_TOML_DEFAULTS} and docs/prisn-toml.md.
 */
export interface PrisnToml {
  /** Deployment name: a DNS label (see {@link validateName}). */
  name?: string;
  type?: DeploymentType;
  /** Runtime name, e.g. "python3", "python3.11", "node20", "bash" (see core/runtimes.ts). */
  runtime?: string;
  /** Path of the file to run, relative to the project root, never leaving it. */
  entrypoint?: string;
  /** Arguments passed to the entrypoint. */
  args?: string[];
  /** Environment variables; numbers and booleans in the file are turned into strings. */
  env?: Record<string, string>;
  /** Port a service is reached on; prisn balances it over the replicas. */
  port?: number;
  replicas?: number;
  /** Cron expression of a cronjob (checked by the scheduler). */
  schedule?: string;
  /** IANA time zone the schedule is read in. */
  timezone?: string;
  /** HTTP health check of a service: a path, or a table. */
  health?: string | HealthCheck;
  resources?: Resources;
  /** Longest a job or cronjob run may take before it is stopped and counted failed. */
  timeout?: string;
  /** How many times a failed run is retried. */
  retries?: number;
  /** Delay before a retry. */
  retry_backoff?: string;
  /** What a cronjob tick does while the previous run still runs. */
  concurrency?: "allow" | "forbid" | "replace";
  /** Whether ticks missed while no node could run them are run late. */
  catchup?: "none" | "latest";
  /** A tick that cannot start within this long after its time is skipped. */
  starting_deadline?: string;
  restart?: RestartPolicy;
  /** Time between SIGTERM and SIGKILL when a process is stopped. */
  stop_grace?: string;
  /** Time an old replica keeps serving open connections after traffic moved away. */
  drain_grace?: string;
  /** Longest a new replica may take to become ready during a deploy. */
  readiness_timeout?: string;
  history?: History;
  logs?: LogSettings;
  rollout?: RolloutSettings;
  /** Names of `env` keys whose values are secret: never printed, never logged. */
  secrets?: string[];
}

/**
 * What applies when a key is absent, as docs/prisn-toml.md states it. `type` is not here: it
 * follows from the other keys (core/spec.ts). Absent `timeout`, `restart.max_restarts`,
 * `resources` and `port` mean "no limit" or "none".
 */
export const PRISN_TOML_DEFAULTS = {
  replicas: 1,
  health: { interval: "10s", timeout: "2s", failures: 3 },
  retries: 0,
  retry_backoff: "10s",
  concurrency: "forbid",
  catchup: "latest",
  starting_deadline: "1h",
  restart: { backoff_initial: "1s", backoff_max: "1m", stable_after: "30s" },
  stop_grace: "10s",
  drain_grace: "10s",
  readiness_timeout: "30s",
  history: { successful: 10, failed: 10, versions: 5 },
  logs: { rate_limit: "1Mi" },
} as const;

const NAME_RE = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
const ENV_NAME_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * Throws a one-line INVALID error unless `name` is a DNS label: 1-63 lowercase letters, digits or
 * '-', starting and ending with a letter or digit.
 */
export function validateName(name: string): void {
  if (!NAME_RE.test(name)) {
    throw invalid(
      `name "${name}" is not valid: use 1-63 lowercase letters, digits or '-', starting and ending with a letter or digit`,
    );
  }
}

/**
 * Milliseconds of a duration from prisn.toml, or `fallbackMs` when it is absent.
 *
 * @param key the key shown if `value` is not a duration, e.g. "restart.backoff_max"
 */
export function durationMs(value: string | undefined, fallbackMs: number, key: string): number {
  return value === undefined ? fallbackMs : parseDuration(value, key);
}

// ---------------------------------------------------------------------------------------------
// Schema. Every check carries a message that reads after the key ("replicas must be …"); checks
// marked `full` carry a whole sentence that already names the key.

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

const ENV_VALUE = "must be a string, number or boolean";

const TOP = z.strictObject({
  name: str('must be a string like "my-app"').superRefine(checkedBy(validateName)).optional(),
  type: oneOf(["service", "job", "cronjob"]).optional(),
  runtime: str('must be a string like "python3" or "node20"').superRefine(
    checkedBy(validateRuntime),
  ).optional(),
  entrypoint: str('must be a path like "main.py"').superRefine((value, ctx) => {
    if (value === "" || value.startsWith("/") || value.split(/[/\\]/).includes("..")) {
      ctx.addIssue({
        code: "custom",
        message: 'must be a relative path inside the project, without ".."',
      });
    }
  }).optional(),
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
  secrets: z.array(
    str("must be a string").superRefine(checkedBy((name) => validateEnvName("secret", name))),
    { error: 'must be a list of env key names like ["API_KEY"]' },
  ).optional(),
});

/** The tables of prisn.toml whose keys are fixed (env's keys are the user's own). */
const TABLES: Readonly<Record<string, z.ZodObject>> = {
  health: HEALTH_TABLE,
  resources: RESOURCES,
  restart: RESTART,
  history: HISTORY,
  logs: LOGS,
  rollout: ROLLOUT,
};

/**
 * Every key prisn.toml accepts, in file order; keys of tables are dotted ("resources.memory").
 * docs/prisn-toml.md documents each one.
 */
export const PRISN_TOML_KEYS: readonly string[] = Object.keys(TOP.shape).flatMap((key) => [
  key,
  ...Object.keys(TABLES[key]?.shape ?? {}).map((sub) => `${key}.${sub}`),
]);

// ---------------------------------------------------------------------------------------------
// Parsing and error messages.

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

type Path = readonly PropertyKey[];

interface Leaf {
  path: Path;
  issue: z.core.$ZodIssue;
  /** Set for an unknown key: the table it sits in is `path` minus its last segment. */
  unknownKey?: string;
}

/**
 * Flattens zod issues into one leaf per problem: one per unknown key, and for a union (health)
 * the issues of the branch whose type matched, so `{ path = "/x", intervl = "1s" }` reports the
 * misspelt key rather than "must be a path or a table".
 */
function leafIssues(issue: z.core.$ZodIssue, prefix: Path): Leaf[] {
  const path = [...prefix, ...issue.path];
  if (issue.code === "unrecognized_keys") {
    return issue.keys.map((key) => ({ path: [...path, key], issue, unknownKey: key }));
  }
  if (issue.code === "invalid_union") {
    const matching = issue.errors.filter((branch) =>
      !branch.some((i) => i.code === "invalid_type" && i.path.length === 0)
    );
    if (matching.length === 1) {
      return matching[0].flatMap((inner) => leafIssues(inner, path));
    }
  }
  return [{ path, issue }];
}

function describe(leaf: Leaf, raw: unknown): string {
  const key = displayKey(leaf.path);
  if (leaf.unknownKey !== undefined) {
    return unknownKeyMessage(leaf.path.slice(0, -1), leaf.unknownKey);
  }
  const { issue } = leaf;
  if (issue.code === "custom" && issue.params?.full) return issue.message;
  const value = valueAt(raw, leaf.path);
  if (value === undefined) return `${key} is required`;
  return `${key} ${issue.message} (got ${render(value)})`;
}

function displayKey(path: Path): string {
  return path.map((p, i) => typeof p === "number" ? `[${p}]` : `${i ? "." : ""}${String(p)}`)
    .join("");
}

function valueAt(raw: unknown, path: Path): unknown {
  let value = raw;
  for (const p of path) {
    if (value === null || typeof value !== "object") return undefined;
    value = (value as Record<PropertyKey, unknown>)[p];
  }
  return value;
}

function render(value: unknown): string {
  let text: string;
  if (value instanceof Date) text = value.toISOString();
  else if (typeof value === "number") {
    text = Number.isNaN(value) ? "nan" : Number.isFinite(value) ? String(value) : "inf";
  } else if (Array.isArray(value)) text = JSON.stringify(value);
  else if (typeof value === "object" && value !== null) text = "a table";
  else text = JSON.stringify(value);
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

function unknownKeyMessage(table: Path, leaf: string): string {
  const tableName = table.map(String).join(".");
  const known = table.length === 0
    ? Object.keys(TOP.shape)
    : Object.keys(TABLES[tableName]?.shape ?? {});
  const prefix = tableName ? `${tableName}.` : "";
  const key = prefix + leaf;
  let suggestion = closest(leaf, known);
  if (suggestion !== undefined) suggestion = prefix + suggestion;
  else if (table.length === 0) {
    // A table's key written at the top level, e.g. `memory = "512Mi"`.
    suggestion = PRISN_TOML_KEYS.find((k) => k.endsWith(`.${leaf}`));
  }
  if (suggestion !== undefined) return `unknown key "${key}": did you mean "${suggestion}"?`;
  return `unknown key "${key}": ${tableName || "prisn.toml"} takes ${known.join(", ")}`;
}

/** The known key nearest to `word`, if it is near enough to be a likely typo. */
function closest(word: string, known: readonly string[]): string | undefined {
  const squash = (s: string) => s.toLowerCase().replace(/[-_]/g, "");
  const limit = word.length <= 4 ? 1 : 2;
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const candidate of known) {
    const d = squash(candidate) === squash(word) ? 0 : editDistance(word, candidate);
    if (d <= limit && d < bestDistance) [best, bestDistance] = [candidate, d];
  }
  return best;
}

/** Edit distance counting insertions, deletions, substitutions and swaps of neighbours as 1. */
function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => [i]);
  for (let j = 1; j <= b.length; j++) d[0][j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[a.length][b.length];
}

// ---------------------------------------------------------------------------------------------
// Finding the line of a key. smol-toml keeps no positions, so the text is scanned: table
// headers set the current table, and `key =` / `a.b =` lines are recorded with their full path.

interface KeyLine {
  line: number;
  path: string[];
}

const KEY_PART = String.raw`(?:[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*"|'[^']*')`;
const DOTTED_KEY = String.raw`${KEY_PART}(?:\s*\.\s*${KEY_PART})*`;
const HEADER_RE = new RegExp(String.raw`^\s*\[\[?\s*(${DOTTED_KEY})\s*\]\]?`);
const ASSIGN_RE = new RegExp(String.raw`^\s*(${DOTTED_KEY})\s*=`);

function splitKey(dotted: string): string[] {
  return [...dotted.matchAll(new RegExp(KEY_PART, "g"))].map(([part]) => {
    if (part.startsWith("'")) return part.slice(1, -1);
    if (part.startsWith('"')) {
      try {
        return JSON.parse(part);
      } catch {
        return part.slice(1, -1);
      }
    }
    return part;
  });
}

function keyLines(text: string): KeyLine[] {
  const found: KeyLine[] = [];
  let table: string[] = [];
  let openString: string | undefined; // the delimiter of a multi-line string being skipped
  let inline: { path: string[]; depth: number } | undefined; // a multi-line inline table
  text.split(/\r?\n/).forEach((content, index) => {
    const line = index + 1;
    if (openString !== undefined) {
      if (content.split(openString).length % 2 === 0) openString = undefined;
      return;
    }
    const header = inline ? undefined : HEADER_RE.exec(content);
    const assign = header ? undefined : ASSIGN_RE.exec(content);
    let path: string[] | undefined;
    if (header) {
      table = splitKey(header[1]);
      found.push({ line, path: table });
    } else if (assign) {
      path = [...(inline?.path ?? table), ...splitKey(assign[1])];
      found.push({ line, path });
    }
    const balance = braceBalance(content);
    if (inline) {
      inline.depth += balance;
      if (inline.depth <= 0) inline = undefined;
    } else if (path && balance > 0) {
      inline = { path, depth: balance };
    }
    for (const delimiter of ['"""', "'''"]) {
      if (content.split(delimiter).length % 2 === 0) openString = delimiter;
    }
  });
  return found;
}

/** Opened minus closed braces on a line, outside strings and comments. */
function braceBalance(content: string): number {
  let balance = 0;
  let quote: string | undefined;
  for (let i = 0; i < content.length; i++) {
    const c = content[i];
    if (quote) {
      if (c === "\\" && quote === '"') i++;
      else if (c === quote) quote = undefined;
    } else if (c === '"' || c === "'") quote = c;
    else if (c === "#") break;
    else if (c === "{") balance++;
    else if (c === "}") balance--;
  }
  return balance;
}

/**
 * The line that best shows where `path` is: the line defining exactly that key; else the line
 * of its nearest enclosing key (an inline table, a list, a table header); else the first line
 * defining something inside it.
 */
function lineOf(lines: KeyLine[], path: Path): number | undefined {
  const target = path.filter((p) => typeof p === "string");
  let enclosing: KeyLine | undefined;
  let inside: KeyLine | undefined;
  for (const entry of lines) {
    const common = entry.path.length;
    if (common === target.length && entry.path.every((p, i) => p === target[i])) return entry.line;
    if (common < target.length && entry.path.every((p, i) => p === target[i])) {
      if (!enclosing || common > enclosing.path.length) enclosing = entry;
    } else if (!inside && common > target.length && target.every((p, i) => p === entry.path[i])) {
      inside = entry;
    }
  }
  return (enclosing ?? inside)?.line;
}
