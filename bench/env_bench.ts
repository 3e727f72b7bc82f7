/**
 * Deploy time with a cold dependency env vs a warm one, for a Python job whose requirements come
 * from five local wheels (no package index) and a Node job with two real npm dependencies
 * (is-number, ms) and a package-lock.json (`npm ci`).
 *
 * - cold: a fresh PRISN_HOME (its agent already started, untimed), so the deploy builds the env:
 *   a venv and `pip install` for Python, `npm ci` for Node. npm's own cache (~/.npm) is left as it
 *   is, so the tarballs normally come from it; "node, empty npm cache" sets npm_config_cache to an
 *   empty folder for a deploy that also downloads them from the registry.
 * - warm: the same requirements with changed code, a new version on the same PRISN_HOME: the env
 *   is reused.
 *
 * Times are spawn → exit of `prisn deploy` (the env prepared and the job started); each job's
 * output is checked afterwards, untimed.
 *
 *   ./denow run -A bench/env_bench.ts        (BENCH_ITERATIONS=3 cold homes per case by default,
 *                                             BENCH_WARM=3 warm deploys per home)
 *
 * Prints figures; never fails on a time.
 */
import { join } from "node:path";
import type { RunRecord } from "../core/types.ts";
import { buildWheel } from "../tests/fixtures/envs_wheel.ts";
import { BenchHome, machineLine, ms, printTable, sleep, type Stats, stats } from "./_util.ts";

const ITERATIONS = Number(Deno.env.get("BENCH_ITERATIONS") ?? 3);
const WARM = Number(Deno.env.get("BENCH_WARM") ?? 3);
const EMPTY_CACHE_ITERATIONS = Math.max(1, Math.min(ITERATIONS, 2));
const WAIT_LIMIT_MS = 120_000;

const WHEELS = ["alpha", "bravo", "charlie", "delta", "echo"];

/** The Python project: five wheels, a requirements.txt pinning them, main.py importing them. */
async function pythonProject(dir: string, wheelCache: string): Promise<void> {
  await Deno.mkdir(join(dir, "wheels"), { recursive: true });
  for (const name of WHEELS) {
    const built = join(wheelCache, `${name}-1.0-py3-none-any.whl`);
    try {
      await Deno.stat(built);
    } catch {
      await buildWheel(wheelCache, { name, version: "1.0", value: `${name}-value` });
    }
    await Deno.copyFile(built, join(dir, "wheels", `${name}-1.0-py3-none-any.whl`));
  }
  await Deno.writeTextFile(
    join(dir, "requirements.txt"),
    WHEELS.map((n) => `${n}==1.0`).join("\n") + "\n",
  );
  await Deno.writeTextFile(
    join(dir, "main.py"),
    `import ${WHEELS.join(", ")}\n` +
      `print("stamp", open("stamp.txt").read().strip(), ${
        WHEELS.map((n) => `${n}.VALUE`).join(", ")
      })\n`,
  );
}

const NODE_MANIFEST = {
  name: "bench-node",
  version: "1.0.0",
  private: true,
  dependencies: { "is-number": "7.0.0", ms: "2.1.3" },
};

const NODE_LOCK = {
  name: "bench-node",
  version: "1.0.0",
  lockfileVersion: 3,
  requires: true,
  packages: {
    "": { name: "bench-node", version: "1.0.0", dependencies: NODE_MANIFEST.dependencies },
    "node_modules/is-number": {
      version: "7.0.0",
      resolved: "https://registry.npmjs.org/is-number/-/is-number-7.0.0.tgz",
      integrity:
        "sha512-41Cifkg6e8TylSpdtTpeLVMqvSBEVzTttHvERD741+pnZ8ANv0004MRL43QKPDlK9cGvNp6NZWZUBlbGXYxxng==",
      license: "MIT",
      engines: { node: ">=0.12.0" },
    },
    "node_modules/ms": {
      version: "2.1.3",
      resolved: "https://registry.npmjs.org/ms/-/ms-2.1.3.tgz",
      integrity:
        "sha512-6FlzubTLZG3J2a/NVCAleEhjzq5oxgHyaCU9yYXvcLsvoVaHJq/s5xXI6/XXP6tz7R9xAOtHnSO/tXtF3WRTlA==",
      license: "MIT",
    },
  },
};

/** The Node project: package.json + package-lock.json and index.js requiring both packages. */
async function nodeProject(dir: string): Promise<void> {
  await Deno.mkdir(dir, { recursive: true });
  await Deno.writeTextFile(join(dir, "package.json"), JSON.stringify(NODE_MANIFEST, null, 2));
  await Deno.writeTextFile(join(dir, "package-lock.json"), JSON.stringify(NODE_LOCK, null, 2));
  await Deno.writeTextFile(
    join(dir, "index.js"),
    'const isNumber = require("is-number");\nconst ms = require("ms");\n' +
      'const stamp = require("node:fs").readFileSync("stamp.txt", "utf8").trim();\n' +
      'console.log("stamp", stamp, isNumber("7"), ms("2h"));\n',
  );
}

interface Case {
  label: string;
  kind: "python" | "node";
  /** Points npm at a new empty cache folder for every cold home. */
  emptyNpmCache?: boolean;
  iterations: number;
  /** What the job's output must hold (besides its stamp). */
  expect: RegExp;
}

interface CaseResult {
  label: string;
  cold: number[];
  warm: number[];
  envIds: Set<string>;
}

/** Waits until the job's run of `version` completed and checks its output. */
async function checkRun(h: BenchHome, name: string, version: string, expect: RegExp) {
  const deadline = Date.now() + WAIT_LIMIT_MS;
  while (Date.now() < deadline) {
    const r = await h.ok("get", "jobs", name, "--limit", "20", "-o", "json");
    const run = (JSON.parse(r.stdout) as RunRecord[]).find((x) => x.version === version);
    if (run?.status === "failed") throw new Error(`${name} ${version}: run ${run.id} failed`);
    if (run?.status === "completed") {
      const log = (await h.ok("logs", name, "--run", run.id)).stdout;
      if (!expect.test(log)) throw new Error(`${name} ${version}: unexpected output:\n${log}`);
      return;
    }
    await sleep(50);
  }
  throw new Error(`${name} ${version}: no completed run within ${WAIT_LIMIT_MS} ms`);
}

async function deploy(h: BenchHome, dir: string, name: string, expect: RegExp, stamp: string) {
  await Deno.writeTextFile(join(dir, "stamp.txt"), `${stamp}\n`);
  const r = await h.ok("deploy", dir, "--name", name);
  const version = /v-[0-9a-f]{8}/.exec(r.stdout)?.[0];
  const envId = /env ((?:python3|node)-[0-9a-f]{12})/.exec(r.stdout)?.[1];
  if (!version || !envId) throw new Error(`unexpected deploy output:\n${r.stdout}`);
  await checkRun(h, name, version, new RegExp(`stamp ${stamp} .*${expect.source}`));
  return { ms: r.ms, envId };
}

async function runCase(c: Case, wheelCache: string): Promise<CaseResult> {
  const result: CaseResult = { label: c.label, cold: [], warm: [], envIds: new Set() };
  for (let i = 0; i < c.iterations; i++) {
    const h = new BenchHome("prisn-env-bench-");
    try {
      if (c.emptyNpmCache) h.env.npm_config_cache = join(h.dir, "npm-cache");
      const dir = join(h.dir, "project");
      if (c.kind === "python") await pythonProject(dir, wheelCache);
      else await nodeProject(dir);
      await h.ok("ls"); // starts the agent: not part of the deploy
      const cold = await deploy(h, dir, "envbench", c.expect, `cold${i}`);
      if (c.emptyNpmCache && !hasEntries(h.env.npm_config_cache)) {
        throw new Error("npm did not use the empty cache folder given as npm_config_cache");
      }
      result.cold.push(cold.ms);
      result.envIds.add(cold.envId);
      for (let w = 0; w < WARM; w++) {
        const warm = await deploy(h, dir, "envbench", c.expect, `warm${i}-${w}`);
        if (warm.envId !== cold.envId) {
          throw new Error(`warm deploy used ${warm.envId}, not the cold one's ${cold.envId}`);
        }
        result.warm.push(warm.ms);
      }
      const envs = [...Deno.readDirSync(h.paths.envs)].filter((e) => !e.name.startsWith("."));
      if (envs.length !== 1) throw new Error(`expected one env, found ${envs.length}`);
    } finally {
      await h.close();
    }
    console.error(
      `  ${c.label} #${i + 1}: cold ${ms(result.cold.at(-1)!)} ms, warm ${
        result.warm.slice(-WARM).map(ms).join(", ")
      } ms`,
    );
  }
  return result;
}

function hasEntries(dir: string): boolean {
  try {
    return [...Deno.readDirSync(dir)].length > 0;
  } catch {
    return false;
  }
}

async function has(command: string): Promise<boolean> {
  try {
    return (await new Deno.Command(command, { args: ["--version"], stdout: "null", stderr: "null" })
      .output()).success;
  } catch {
    return false;
  }
}

const cases: Case[] = [];
if (await has("python3")) {
  cases.push({
    label: "python, 5 local wheels",
    kind: "python",
    iterations: ITERATIONS,
    expect: /alpha-value bravo-value charlie-value delta-value echo-value/,
  });
} else console.log("python3 not found: skipping the Python case");
if (await has("node") && await has("npm")) {
  cases.push({
    label: "node, 2 npm deps (npm cache as is)",
    kind: "node",
    iterations: ITERATIONS,
    expect: /true 7200000/,
  }, {
    label: "node, 2 npm deps, empty npm cache",
    kind: "node",
    emptyNpmCache: true,
    iterations: EMPTY_CACHE_ITERATIONS,
    expect: /true 7200000/,
  });
} else console.log("node or npm not found: skipping the Node cases");

const wheelCache = await Deno.makeTempDir({ prefix: "prisn-env-bench-wheels-" });
const results: CaseResult[] = [];
try {
  for (const c of cases) results.push(await runCase(c, wheelCache));
} finally {
  await Deno.remove(wheelCache, { recursive: true }).catch(() => {});
}

console.log(`env bench: ${machineLine()}; prisn deploy spawn → exit, ms`);
const fmt = (s: Stats) => `${ms(s.p50)} (${ms(s.min)}–${ms(s.max)}, n=${s.n})`;
printTable(
  ["case", "cold p50 (min–max)", "warm p50 (min–max)", "cold/warm (p50)"],
  results.map((r) => {
    const cold = stats(r.cold);
    const warm = stats(r.warm);
    return [r.label, fmt(cold), fmt(warm), `${(cold.p50 / warm.p50).toFixed(1)}x`];
  }),
);
