/**
 * `deno task compile`: release executables of prisn, built with `deno compile`, as
 * dist/prisn-<target>[.exe] for every target in TARGETS (or those given with --target).
 *
 *   deno task compile [--target T]… [--out DIR]
 *
 * `deno compile` joins the program to `denort`, Deno's runtime, for the target. It finds one, per
 * target, in this order:
 *   1. DENORT_BIN: a denort binary of this Deno version. deno uses it for whatever target it is
 *      asked, so this tool hands it over for the host target only;
 *   2. Deno's download cache: DENO_DIR/dl/release/v<version>/denort-<target>.zip;
 *   3. a download from dl.deno.land.
 * Which of them serves each target is decided before anything is written; when no target can be
 * built the tool stops with exit code 2 and one line saying what to do.
 *
 * While it builds, _build_info.ts holds the git commit (`git rev-parse --short HEAD`, with "-dirty"
 * when the work tree has changes), so `prisn --version` prints `prisn <version> (<commit>)`; the
 * original file is put back afterwards, also on failure or Ctrl-C. The host executable is run once
 * (`--version`) before anything else is built: a runtime that is not denort (the full `deno`
 * binary gives a plain deno that ignores the program) is refused and its output deleted.
 */
import { join, relative, resolve } from "node:path";
import config from "../deno.json" with { type: "json" };

export const TARGETS = [
  "x86_64-unknown-linux-gnu",
  "aarch64-unknown-linux-gnu",
  "x86_64-apple-darwin",
  "aarch64-apple-darwin",
  "x86_64-pc-windows-msvc",
] as const;
export type Target = typeof TARGETS[number];

export const DOWNLOAD_URL = "https://dl.deno.land";
const ROOT = resolve(new URL("..", import.meta.url).pathname);
const BUILD_INFO = join(ROOT, "_build_info.ts");
/** Marks _build_info.ts as written by a build, so a build killed mid-way is noticed. */
const MARK = "// Written by tools/compile.ts for a release build";

/** A failure with the exit code the task ends with: 2 when nothing could start, else 1. */
export class CompileError extends Error {
  override name = "CompileError";
  constructor(message: string, readonly exitCode: 1 | 2 = 1, options?: ErrorOptions) {
    super(message, options);
  }
}

/** Where the denort of one target comes from. */
export type DenortSource =
  | { kind: "DENORT_BIN"; path: string }
  | { kind: "cache"; path: string }
  | { kind: "download" };

export interface TargetPlan {
  target: Target;
  /** Undefined when no denort can be had for the target. */
  source?: DenortSource;
}

/** The executable's file name for a target. */
export function outputName(target: Target): string {
  return `prisn-${target}${target.includes("windows") ? ".exe" : ""}`;
}

/** The host's target triple, when prisn is built for it. */
export function hostTarget(): Target | undefined {
  return TARGETS.find((t) => t === Deno.build.target);
}

/** Where `deno compile` keeps a downloaded denort for `target`. */
export function cachedDenortPath(denoDir: string, target: Target): string {
  return join(denoDir, "dl", "release", `v${Deno.version.deno}`, `denort-${target}.zip`);
}

/** Deno's cache folder (DENO_DIR), as the deno running this reports it. */
export async function denoDir(): Promise<string> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json"],
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  }).output();
  return (JSON.parse(new TextDecoder().decode(out.stdout)) as { denoDir: string }).denoDir;
}

/** Whether dl.deno.land answers at all within `timeoutMs`. */
export async function downloadReachable(timeoutMs = 3_000): Promise<boolean> {
  try {
    const res = await fetch(DOWNLOAD_URL, {
      method: "HEAD",
      redirect: "manual",
      signal: AbortSignal.timeout(timeoutMs),
    });
    await res.body?.cancel();
    return true;
  } catch {
    return false;
  }
}

/**
 * Decides, per target, where its denort comes from. `reachable` is asked at most once, and only
 * when some target needs a download.
 */
export async function planTargets(
  targets: readonly Target[],
  options: {
    denortBin?: string;
    denoDir: string;
    reachable: () => Promise<boolean>;
    host?: Target;
  },
): Promise<TargetPlan[]> {
  const host = "host" in options ? options.host : hostTarget();
  let reachable: Promise<boolean> | undefined;
  const plans: TargetPlan[] = [];
  for (const target of targets) {
    const cached = cachedDenortPath(options.denoDir, target);
    if (options.denortBin && target === host) {
      plans.push({ target, source: { kind: "DENORT_BIN", path: options.denortBin } });
    } else if (await isFile(cached)) {
      plans.push({ target, source: { kind: "cache", path: cached } });
    } else if (await (reachable ??= options.reachable())) {
      plans.push({ target, source: { kind: "download" } });
    } else {
      plans.push({ target });
    }
  }
  return plans;
}

/** Why the targets without a denort cannot be built, in one line. */
export function missingReason(
  missing: Target[],
  options: { denortBin?: string; host?: Target },
): string {
  const version = Deno.version.deno;
  const host = options.host;
  if (!options.denortBin && host && missing.includes(host)) {
    return `cannot get denort (dl.deno.land unreachable and DENORT_BIN not set): set DENORT_BIN ` +
      `to a denort binary of this Deno version (${version}) to build for this host (${host})`;
  }
  return `cannot get denort for ${missing.join(", ")}: dl.deno.land is unreachable, none is ` +
    `cached, and DENORT_BIN serves only the host target (${host ?? Deno.build.target})` +
    (host && !missing.includes(host) ? `; build the host alone with --target ${host}` : "");
}

/** The commit being built: short hash, "-dirty" when the work tree has changes; else "unknown". */
export async function gitCommit(root: string = ROOT): Promise<string> {
  const git = async (...args: string[]) => {
    const out = await new Deno.Command("git", {
      args: ["-C", root, "--no-optional-locks", ...args],
      stdin: "null",
      stdout: "piped",
      stderr: "null",
    }).output();
    if (!out.success) throw new Error(`git ${args[0]} failed`);
    return new TextDecoder().decode(out.stdout).trim();
  };
  try {
    const commit = await git("rev-parse", "--short", "HEAD");
    const changes = await git("status", "--porcelain");
    return commit + (changes ? "-dirty" : "");
  } catch {
    return "unknown";
  }
}

export function buildInfoSource(commit: string): string {
  return `${MARK}; the original is put back when it ends.\n` +
    `/** The git commit of a release build; tools/compile.ts rewrites this file while it compiles. */\n` +
    `export const BUILD_COMMIT = ${JSON.stringify(commit)};\n`;
}

interface Options {
  targets: Target[];
  outDir: string;
}

function parseArgs(args: string[]): Options {
  const targets: Target[] = [];
  let outDir = join(ROOT, "dist");
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    const value = () => {
      const v = args[++i];
      if (v === undefined) throw new CompileError(`${arg} needs a value`, 2);
      return v;
    };
    if (arg === "--target") {
      const t = value();
      const target = t === "host" ? hostTarget() : TARGETS.find((x) => x === t);
      if (!target) {
        throw new CompileError(
          t === "host"
            ? `this host (${Deno.build.target}) is not a prisn release target`
            : `unknown target "${t}": use one of ${TARGETS.join(", ")} or host`,
          2,
        );
      }
      if (!targets.includes(target)) targets.push(target);
    } else if (arg === "--out") {
      outDir = resolve(value());
    } else {
      throw new CompileError(
        `unknown argument "${arg}": deno task compile [--target T]… [--out DIR]`,
        2,
      );
    }
  }
  return { targets: targets.length ? targets : [...TARGETS], outDir };
}

/** Builds the planned targets (the host first) and returns the outputs written. */
export async function compile(args: string[]): Promise<string[]> {
  const { targets, outDir } = parseArgs(args);
  const host = hostTarget();
  const denortBin = Deno.env.get("DENORT_BIN") || undefined;
  if (denortBin && !(await isFile(denortBin))) {
    throw new CompileError(`DENORT_BIN=${denortBin} is not a file: point it at a denort binary`, 2);
  }
  if (denortBin && (!host || !targets.includes(host))) {
    console.log(`DENORT_BIN is not used: it serves only the host target (${Deno.build.target})`);
  }
  const plans = await planTargets(targets, {
    denortBin,
    denoDir: await denoDir(),
    reachable: () => downloadReachable(),
    host,
  });
  const buildable = plans.filter((p) => p.source).sort((a, b) =>
    Number(b.target === host) - Number(a.target === host)
  );
  const missing = plans.filter((p) => !p.source).map((p) => p.target);
  if (buildable.length === 0) {
    throw new CompileError(missingReason(missing, { denortBin, host }), 2);
  }

  const original = await Deno.readFile(BUILD_INFO);
  if (new TextDecoder().decode(original).includes(MARK)) {
    throw new CompileError(
      `${relative(Deno.cwd(), BUILD_INFO)} is still rewritten by another or an interrupted ` +
        `build: wait for it, or restore the file (git checkout -- _build_info.ts)`,
      2,
    );
  }
  const commit = await gitCommit();
  const expected = `prisn ${config.version} (${commit})`;
  const createdOut = !(await exists(outDir));
  const restore = () => Deno.writeFileSync(BUILD_INFO, original);
  const onSignal = () => {
    restore();
    Deno.exit(130);
  };
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
  const built: string[] = [];
  try {
    await Deno.writeTextFile(BUILD_INFO, buildInfoSource(commit));
    await Deno.mkdir(outDir, { recursive: true });
    for (const plan of buildable) {
      const output = join(outDir, outputName(plan.target));
      console.log(`compile ${plan.target} (denort: ${describeSource(plan.source!)})`);
      await compileTarget(plan.target, plan.source!, output);
      if (plan.target === host) await smokeTest(output, expected, plan.source!);
      const { size } = await Deno.stat(output);
      console.log(`  ${relative(Deno.cwd(), output)}  ${(size / 1e6).toFixed(1)} MB`);
      built.push(output);
    }
  } finally {
    restore();
    Deno.removeSignalListener("SIGINT", onSignal);
    Deno.removeSignalListener("SIGTERM", onSignal);
    if (createdOut && built.length === 0) await Deno.remove(outDir).catch(() => {});
  }
  console.log(`built ${built.length} of ${targets.length} target(s) as ${expected}`);
  if (missing.length) throw new CompileError(missingReason(missing, { denortBin, host }), 2);
  return built;
}

function describeSource(source: DenortSource): string {
  if (source.kind === "DENORT_BIN") return `DENORT_BIN=${source.path}`;
  if (source.kind === "cache") return `cached ${source.path}`;
  return `download from ${DOWNLOAD_URL}`;
}

/** One `deno compile`; on failure its output file and temp files are removed. */
async function compileTarget(target: Target, source: DenortSource, output: string) {
  // deno would use DENORT_BIN for any target: hand it over only where it is the plan.
  const env = Deno.env.toObject();
  delete env.DENORT_BIN;
  if (source.kind === "DENORT_BIN") env.DENORT_BIN = source.path;
  env.NO_COLOR = "1";
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "compile",
      "-A",
      "--no-check",
      "--frozen-lockfile",
      "--quiet",
      // The proxy's epoll engine runs in a worker, which deno compile only bundles when told.
      "--include",
      join(ROOT, "runtime/_epoll_worker.ts"),
      "--config",
      join(ROOT, "deno.json"),
      "--target",
      target,
      "--output",
      output,
      join(ROOT, "main.ts"),
    ],
    cwd: ROOT,
    env,
    clearEnv: true,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (out.success) return;
  await removeOutput(output);
  // Its error, then "Caused by:" lines, then a backtrace: keep the error and the root cause.
  const text = new TextDecoder().decode(out.stderr).split("Stack backtrace:")[0];
  const lines = text.split("\n").map((l) => l.trim()).filter((l) => l && l !== "Caused by:");
  const error = lines.find((l) => l.startsWith("error:")) ?? "";
  const cause = lines.at(-1) ?? "";
  throw new CompileError(
    `deno compile for ${target} failed (exit ${out.code}): ` +
      [error, cause].filter((l, i, all) => l && all.indexOf(l) === i).join(" … "),
  );
}

/** Runs the host executable's `--version`: it must be prisn, not a plain deno. */
async function smokeTest(output: string, expected: string, source: DenortSource) {
  let printed = "";
  try {
    const out = await new Deno.Command(output, {
      args: ["--version"],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      signal: AbortSignal.timeout(20_000),
    }).output();
    printed = new TextDecoder().decode(out.stdout).trim() ||
      new TextDecoder().decode(out.stderr).trim();
  } catch (e) {
    printed = `(could not run: ${(e as Error).message})`;
  }
  if (printed === expected) return;
  await removeOutput(output);
  const shown = JSON.stringify(printed.split("\n")[0]);
  throw new CompileError(
    source.kind === "DENORT_BIN"
      ? `DENORT_BIN=${source.path} is not a denort: the executable built with it printed ` +
        `${shown} for --version, not "${expected}" (the full deno binary makes a plain deno); ` +
        `set DENORT_BIN to the denort of Deno ${Deno.version.deno} for ${Deno.build.target}`
      : `the executable built for ${Deno.build.target} printed ${shown} for --version, ` +
        `not "${expected}"; it was deleted`,
  );
}

async function removeOutput(output: string): Promise<void> {
  await Deno.remove(output).catch(() => {});
  const dir = join(output, "..");
  const base = output.slice(dir.length + 1);
  for await (const entry of Deno.readDir(dir)) {
    if (entry.name.startsWith(`${base}.tmp-`)) await Deno.remove(join(dir, entry.name));
  }
}

async function isFile(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isFile;
  } catch {
    return false;
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch {
    return false;
  }
}

if (import.meta.main) {
  try {
    await compile(Deno.args);
  } catch (e) {
    if (!(e instanceof CompileError)) throw e;
    console.error(`prisn compile: ${e.message}`);
    Deno.exit(e.exitCode);
  }
}
