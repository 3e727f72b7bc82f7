import assert from "node:assert/strict";
import { join } from "node:path";
import config from "../../deno.json" with { type: "json" };
import {
  buildInfoSource,
  cachedDenortPath,
  denoDir,
  downloadReachable,
  hostTarget,
  missingReason,
  outputName,
  planTargets,
  type Target,
  TARGETS,
} from "../../tools/compile.ts";

const root = new URL("../..", import.meta.url).pathname;
const buildInfo = join(root, "_build_info.ts");
const decoder = new TextDecoder();
const host = hostTarget();
const cacheDir = await denoDir();
const reachable = await downloadReachable();
const cachedTargets: Target[] = [];
for (const t of TARGETS) {
  if (await isFile(cachedDenortPath(cacheDir, t))) cachedTargets.push(t);
}

/** A real denort for the host, if this machine has one: DENORT_BIN, Deno's cache or a download. */
const denortSkip = await (async () => {
  if (!host) return `this host (${Deno.build.target}) is not a prisn release target`;
  const bin = Deno.env.get("DENORT_BIN");
  if (bin) {
    return (await Deno.realPath(bin).catch(() => bin)) === Deno.execPath()
      ? "DENORT_BIN is the full deno binary, not a denort"
      : undefined;
  }
  if (cachedTargets.includes(host) || reachable) return undefined;
  return `no denort at hand: DENORT_BIN is not set, no ${
    cachedDenortPath(cacheDir, host)
  }, and dl.deno.land is unreachable`;
})();
/** The situation where `deno task compile` must stop before doing anything. */
const nothingBuildable = !reachable && cachedTargets.length === 0;

/** Runs `deno task compile ARGS` with DENORT_BIN set to `denortBin` or removed. */
async function compileTask(args: string[], denortBin?: string) {
  const env = Deno.env.toObject();
  delete env.DENORT_BIN;
  if (denortBin) env.DENORT_BIN = denortBin;
  env.NO_COLOR = "1";
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["task", "--quiet", "compile", ...args],
    cwd: root,
    env,
    clearEnv: true,
    stdin: "null",
  }).output();
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
}

async function isFile(path: string): Promise<boolean> {
  return await Deno.stat(path).then((s) => s.isFile, () => false);
}

async function listing(dir: string): Promise<string[] | undefined> {
  try {
    return (await Array.fromAsync(Deno.readDir(dir))).map((e) => e.name).sort();
  } catch {
    return undefined;
  }
}

Deno.test("compile names one executable per target, .exe for Windows", () => {
  assert.deepEqual(TARGETS.map(outputName), [
    "prisn-x86_64-unknown-linux-gnu",
    "prisn-aarch64-unknown-linux-gnu",
    "prisn-x86_64-apple-darwin",
    "prisn-aarch64-apple-darwin",
    "prisn-x86_64-pc-windows-msvc.exe",
  ]);
});

Deno.test("compile hands DENORT_BIN to the host target only; others need the cache or a download", async () => {
  const empty = await Deno.makeTempDir({ prefix: "prisn-compile-" });
  try {
    const hostT = "x86_64-unknown-linux-gnu";
    let asked = 0;
    const offline = await planTargets(TARGETS, {
      denortBin: "/opt/denort",
      denoDir: empty,
      host: hostT,
      reachable: () => (asked++, Promise.resolve(false)),
    });
    assert.deepEqual(offline.find((p) => p.target === hostT)?.source, {
      kind: "DENORT_BIN",
      path: "/opt/denort",
    });
    assert.deepEqual(offline.filter((p) => !p.source).map((p) => p.target), [
      "aarch64-unknown-linux-gnu",
      "x86_64-apple-darwin",
      "aarch64-apple-darwin",
      "x86_64-pc-windows-msvc",
    ]);
    assert.equal(asked, 1, "reachability is probed once");

    const zip = cachedDenortPath(empty, "aarch64-apple-darwin");
    await Deno.mkdir(join(zip, ".."), { recursive: true });
    await Deno.writeFile(zip, new Uint8Array([1]));
    const online = await planTargets(TARGETS, {
      denoDir: empty,
      host: hostT,
      reachable: () => Promise.resolve(true),
    });
    assert.deepEqual(online.map((p) => p.source?.kind), [
      "download",
      "download",
      "download",
      "cache",
      "download",
    ]);
  } finally {
    await Deno.remove(empty, { recursive: true });
  }
});

Deno.test("compile explains in one line what to do when a target has no denort", () => {
  const hostT = "x86_64-unknown-linux-gnu";
  assert.equal(
    missingReason([...TARGETS], { host: hostT }),
    `cannot get denort (dl.deno.land unreachable and DENORT_BIN not set): set DENORT_BIN to a ` +
      `denort binary of this Deno version (${Deno.version.deno}) to build for this host (${hostT})`,
  );
  const others = missingReason(["aarch64-apple-darwin"], { host: hostT, denortBin: "/opt/denort" });
  assert.match(others, /^cannot get denort for aarch64-apple-darwin: .*DENORT_BIN serves only/);
  assert.match(others, /--target x86_64-unknown-linux-gnu$/);
  assert.ok(!others.includes("\n"));
});

Deno.test("compile writes the commit into _build_info.ts source", () => {
  const text = buildInfoSource("abc1234-dirty");
  assert.match(text, /^export const BUILD_COMMIT = "abc1234-dirty";$/m);
});

Deno.test({
  name: "compile stops with exit 2 and one line when no denort is at hand, changing nothing",
  ignore: !nothingBuildable,
  async fn() {
    const before = await Deno.readFile(buildInfo);
    const dist = await listing(join(root, "dist"));
    const r = await compileTask([]);
    assert.equal(r.code, 2, r.stderr);
    assert.equal(
      r.stderr.trim(),
      `prisn compile: cannot get denort (dl.deno.land unreachable and DENORT_BIN not set): set ` +
        `DENORT_BIN to a denort binary of this Deno version (${Deno.version.deno}) to build for ` +
        `this host (${host})`,
    );
    assert.deepEqual(await Deno.readFile(buildInfo), before);
    assert.deepEqual(await listing(join(root, "dist")), dist);

    const out = await Deno.makeTempDir({ prefix: "prisn-compile-" });
    try {
      const r2 = await compileTask(["--out", join(out, "dist")]);
      assert.equal(r2.code, 2);
      assert.equal(await listing(join(out, "dist")), undefined, "no dist/ folder is created");
    } finally {
      await Deno.remove(out, { recursive: true });
    }
  },
});
if (!nothingBuildable) {
  console.log(
    `SKIP compile (no-denort path): ${
      reachable ? "dl.deno.land is reachable" : `cached denort for ${cachedTargets.join(", ")}`
    }, so there is no situation where nothing can be built`,
  );
}

Deno.test({
  name: "compile refuses the full deno binary as DENORT_BIN and restores _build_info.ts",
  ignore: !host,
  async fn() {
    const before = await Deno.readFile(buildInfo);
    const out = await Deno.makeTempDir({ prefix: "prisn-compile-" });
    try {
      const r = await compileTask(["--target", "host", "--out", out], Deno.execPath());
      assert.equal(r.code, 1, r.stdout + r.stderr);
      const line = r.stderr.trim();
      assert.ok(!line.includes("\n"), line);
      assert.match(line, /^prisn compile: DENORT_BIN=.* is not a denort: .*printed "deno /);
      assert.deepEqual(await Deno.readFile(buildInfo), before);
      assert.deepEqual(await listing(out), [], "the plain-deno executable is deleted");
    } finally {
      await Deno.remove(out, { recursive: true });
    }
  },
});

Deno.test({
  name: "compile builds a host executable that prints its version and commit and runs the CLI",
  ignore: denortSkip !== undefined,
  async fn() {
    const before = await Deno.readFile(buildInfo);
    const out = await Deno.makeTempDir({ prefix: "prisn-compile-" });
    const exe = join(out, outputName(host!));
    const env = { PRISN_HOME: join(out, "home") };
    try {
      const r = await compileTask(["--target", "host", "--out", out], Deno.env.get("DENORT_BIN"));
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(await Deno.readFile(buildInfo), before);
      const version = await new Deno.Command(exe, { args: ["--version"], stdin: "null" }).output();
      assert.match(
        decoder.decode(version.stdout).trim(),
        new RegExp(
          `^prisn ${config.version.replaceAll(".", "\\.")} \\(([0-9a-f]{4,}(-dirty)?|unknown)\\)$`,
        ),
      );
      // node:sqlite, the npm packages and the background agent all work from the executable.
      const ls = await new Deno.Command(exe, { args: ["ls"], env, stdin: "null" }).output();
      assert.equal(decoder.decode(ls.stdout).trim(), "No deployments.", decoder.decode(ls.stderr));
    } finally {
      await new Deno.Command(exe, { args: ["agent", "stop"], env, stdin: "null" }).output()
        .catch(() => {});
      await Deno.remove(out, { recursive: true });
    }
  },
});
if (denortSkip) console.log(`SKIP compile: ${denortSkip}`);
