import assert from "node:assert/strict";
import { join } from "node:path";
import {
  environmentOf,
  envKey,
  InstallError,
  type Interpreter,
  linkNodeModules,
  listEnvs,
  needsEnv,
  type PreparedEnv,
  prepareEnv,
  removeEnv,
} from "../../runtime/envs.ts";
import { PrisnError } from "../../core/errors.ts";
import { isDiskFull } from "../../runtime/disk_health.ts";
import { buildWheel } from "../fixtures/envs_wheel.ts";
import { fill, freePort, withTmpfs } from "../_helpers.ts";

const PY_VERSION = await outputOf("python3", [
  "-c",
  "import platform; print(platform.python_version())",
]);
const NODE_VERSION = (await outputOf("node", ["--version"])).replace(/^v/, "");
const PYTHON: Interpreter = {
  runtime: "python3",
  family: "python",
  command: "python3",
  version: PY_VERSION,
};
const NODE: Interpreter = {
  runtime: "node",
  family: "node",
  command: "node",
  version: NODE_VERSION,
};

/** A hermetic agent environment: no host pip config, so only what a test sets applies. */
function agentEnv(extra: Record<string, string> = {}): Record<string, string> {
  return {
    PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
    HOME: Deno.env.get("HOME") ?? "/tmp",
    PIP_CONFIG_FILE: "/dev/null",
    ...extra,
  };
}

async function outputOf(command: string, args: string[], options: Deno.CommandOptions = {}) {
  const out = await new Deno.Command(command, {
    args,
    stdout: "piped",
    stderr: "piped",
    ...options,
  })
    .output();
  const text = new TextDecoder().decode(out.stdout).trim();
  if (!out.success) {
    throw new Error(`${command} ${args.join(" ")}: ${new TextDecoder().decode(out.stderr)}`);
  }
  return text;
}

/** Runs a program inside an env; returns exit code, stdout and stderr. */
async function runIn(env: PreparedEnv, args: string[], cwd: string) {
  const out = await new Deno.Command(env.command, {
    args,
    cwd,
    env: env.env,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decode = (b: Uint8Array) => new TextDecoder().decode(b).trim();
  return { code: out.code, stdout: decode(out.stdout), stderr: decode(out.stderr) };
}

async function withTemp(fn: (dir: string) => Promise<void>) {
  const dir = await Deno.makeTempDir({ prefix: "prisn-envs-test-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** A python project with the given requirements and, optionally, a wheels/ folder. */
async function pythonProject(
  dir: string,
  requirements: string,
  wheel?: { name: string; value: string },
): Promise<string> {
  await Deno.mkdir(dir, { recursive: true });
  await Deno.writeTextFile(join(dir, "requirements.txt"), requirements);
  await Deno.writeTextFile(join(dir, "main.py"), "print('hi')\n");
  if (wheel) await buildWheel(join(dir, "wheels"), wheel);
  return dir;
}

async function entries(dir: string): Promise<string[]> {
  const names: string[] = [];
  for await (const e of Deno.readDir(dir)) names.push(e.name);
  return names.sort();
}

function counter() {
  const lines: string[] = [];
  return {
    lines,
    onOutput: (line: string) => lines.push(line),
    get builds() {
      return lines.filter((l) => l.startsWith("prisn: building ")).length;
    },
  };
}

Deno.test("envKey() is undefined without deps files, and always for bash and deno", async () => {
  await withTemp(async (dir) => {
    await Deno.writeTextFile(join(dir, "main.py"), "print(1)\n");
    assert.equal(await envKey(dir, PYTHON), undefined);
    await Deno.writeTextFile(join(dir, "requirements.txt"), "# only a comment\n\n");
    assert.equal(await envKey(dir, PYTHON), undefined);
    await Deno.writeTextFile(join(dir, "package.json"), JSON.stringify({ name: "x" }));
    assert.equal(await envKey(dir, NODE), undefined);
    await Deno.writeTextFile(join(dir, "requirements.txt"), "requests\n");
    const bash: Interpreter = { runtime: "bash", family: "bash", command: "bash", version: "5" };
    const deno: Interpreter = { runtime: "deno", family: "deno", command: "deno", version: "2" };
    assert.equal(await envKey(dir, bash), undefined);
    assert.equal(await envKey(dir, deno), undefined);
    assert.equal(
      await prepareEnv({ envsDir: join(dir, "envs"), sourceDir: dir, interpreter: bash }),
      undefined,
    );
  });
});

Deno.test("envKey() hashes requirements content and the exact interpreter version", async () => {
  await withTemp(async (dir) => {
    const a = await pythonProject(join(dir, "a"), "requests==2.31.0\n");
    const b = await pythonProject(join(dir, "b"), "requests==2.31.0\n");
    await Deno.writeTextFile(join(b, "other.py"), "x = 1\n"); // source files do not matter
    const c = await pythonProject(join(dir, "c"), "requests==2.32.0\n");
    const keyA = await envKey(a, PYTHON);
    assert.match(keyA?.id ?? "", /^python3-[0-9a-f]{12}$/);
    assert.equal(keyA?.kind, "python");
    assert.deepEqual(await envKey(b, PYTHON), keyA);
    assert.notEqual((await envKey(c, PYTHON))?.id, keyA?.id);
    assert.notEqual((await envKey(a, { ...PYTHON, version: "3.11.99" }))?.id, keyA?.id);
    assert.notEqual((await envKey(a, { ...PYTHON, runtime: "python3.11" }))?.id, keyA?.id);

    // A file included with -r is part of the key.
    await Deno.writeTextFile(join(a, "requirements.txt"), "-r base.txt\n");
    await Deno.writeTextFile(join(a, "base.txt"), "flask==3.0.0\n");
    const included = await envKey(a, PYTHON);
    await Deno.writeTextFile(join(a, "base.txt"), "flask==3.0.1\n");
    assert.notEqual((await envKey(a, PYTHON))?.id, included?.id);

    // pyproject.toml [project].dependencies when there is no requirements.txt.
    const p = join(dir, "p");
    await Deno.mkdir(p);
    await Deno.writeTextFile(
      join(p, "pyproject.toml"),
      '[project]\nname = "p"\ndependencies = []\n',
    );
    assert.equal(await envKey(p, PYTHON), undefined);
    await Deno.writeTextFile(
      join(p, "pyproject.toml"),
      '[project]\nname = "p"\ndependencies = ["flask"]\n',
    );
    assert.match((await envKey(p, PYTHON))?.id ?? "", /^python3-[0-9a-f]{12}$/);
    await Deno.writeTextFile(join(p, "pyproject.toml"), "[project\n");
    await assert.rejects(envKey(p, PYTHON), (e) => e instanceof PrisnError && e.code === "INVALID");

    // Node: lockfile and dependency fields, not the package's version or scripts.
    const n = join(dir, "n");
    await Deno.mkdir(n);
    const pkg = { name: "n", version: "1.0.0", dependencies: { "is-number": "7.0.0" } };
    await Deno.writeTextFile(join(n, "package.json"), JSON.stringify(pkg));
    const keyN = await envKey(n, NODE);
    assert.match(keyN?.id ?? "", /^node-[0-9a-f]{12}$/);
    await Deno.writeTextFile(
      join(n, "package.json"),
      JSON.stringify({ ...pkg, version: "2.0.0", scripts: { start: "x" } }),
    );
    assert.equal((await envKey(n, NODE))?.id, keyN?.id);
    await Deno.writeTextFile(join(n, "package-lock.json"), "{}");
    assert.notEqual((await envKey(n, NODE))?.id, keyN?.id);
    assert.notEqual(
      (await envKey(n, { ...NODE, version: "22.0.0" }))?.id,
      (await envKey(n, NODE))?.id,
    );
  });
});

Deno.test("prepareEnv() builds a venv from wheels/ once; the same requirements reuse it", async () => {
  await withTemp(async (dir) => {
    const envsDir = join(dir, "envs");
    const wheel = { name: "prisn_demo_pkg", value: "from-wheel" };
    const one = await pythonProject(join(dir, "one"), "prisn_demo_pkg==1.0\n", wheel);
    const two = await pythonProject(join(dir, "two"), "prisn_demo_pkg==1.0\n", wheel);
    const out = counter();

    let started = performance.now();
    const env = await prepareEnv({
      envsDir,
      sourceDir: one,
      interpreter: PYTHON,
      environment: agentEnv(),
      onOutput: out.onOutput,
    });
    const cold = performance.now() - started;
    assert.ok(env);
    assert.match(env.id, /^python3-[0-9a-f]{12}$/);
    assert.equal(env.id, (await envKey(one, PYTHON))?.id);
    assert.equal(env.dir, join(envsDir, env.id));
    assert.equal(env.command, join(env.dir, "bin", "python"));
    assert.equal(env.reused, false);
    assert.equal(env.env.PYTHONUNBUFFERED, "1");
    assert.equal(env.env.VIRTUAL_ENV, env.dir);
    assert.equal(env.bin, join(env.dir, "bin"));
    assert.equal(out.builds, 1);
    assert.ok(
      out.lines.some((l) => / --no-index --find-links \S+\/wheels /.test(l)),
      out.lines.join("\n"),
    );
    assert.ok(
      out.lines.some((l) => l.includes("Successfully installed prisn_demo_pkg")),
      out.lines.join("\n"),
    );

    const ran = await runIn(env, [
      "-c",
      "import prisn_demo_pkg, sys; print(prisn_demo_pkg.VALUE, sys.prefix)",
    ], one);
    assert.equal(ran.code, 0, ran.stderr);
    assert.equal(ran.stdout, `from-wheel ${env.dir}`);

    started = performance.now();
    const again = await prepareEnv({
      envsDir,
      sourceDir: two,
      interpreter: PYTHON,
      environment: agentEnv(),
      onOutput: out.onOutput,
    });
    const warm = performance.now() - started;
    assert.equal(again?.id, env.id);
    assert.equal(again?.reused, true);
    assert.equal(out.builds, 1);
    assert.ok(warm < 1000, `warm prepareEnv took ${warm} ms`);
    console.log(`python env: cold ${cold.toFixed(0)} ms, warm ${warm.toFixed(1)} ms`);
    assert.deepEqual(await listEnvs(envsDir), [env.id]);
  });
});

Deno.test("prepareEnv() called twice at once builds once and the other caller reuses it", async () => {
  await withTemp(async (dir) => {
    const envsDir = join(dir, "envs");
    const src = await pythonProject(join(dir, "src"), "prisn_concurrent==1.0\n", {
      name: "prisn_concurrent",
      value: "c",
    });
    const out = counter();
    const options = {
      envsDir,
      sourceDir: src,
      interpreter: PYTHON,
      environment: agentEnv(),
      onOutput: out.onOutput,
    };
    const [a, b] = await Promise.all([prepareEnv(options), prepareEnv(options)]);
    assert.equal(out.builds, 1);
    assert.equal(a?.id, b?.id);
    assert.deepEqual([a?.reused, b?.reused].sort(), [false, true]);
    assert.equal((await runIn(a!, ["-c", "import prisn_concurrent"], src)).code, 0);
  });
});

Deno.test("prepareEnv() in separate processes builds once (the lock is an flock)", async () => {
  await withTemp(async (dir) => {
    const envsDir = join(dir, "envs");
    const src = await pythonProject(join(dir, "src"), "prisn_multi==1.0\n", {
      name: "prisn_multi",
      value: "m",
    });
    const options = { envsDir, sourceDir: src, interpreter: PYTHON, environment: agentEnv() };
    const cli = new URL("../fixtures/envs_prepare_cli.ts", import.meta.url).pathname;
    const config = new URL("../../deno.json", import.meta.url).pathname;
    const spawnOne = () =>
      new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", "--config", config, cli, JSON.stringify(options)],
        cwd: dir,
        stdout: "piped",
        stderr: "piped",
      }).output();
    const results = await Promise.all([spawnOne(), spawnOne(), spawnOne()]);
    const reports = results.map((r) => {
      assert.ok(r.success, new TextDecoder().decode(r.stderr));
      return JSON.parse(new TextDecoder().decode(r.stdout)) as { env: PreparedEnv; builds: number };
    });
    assert.equal(reports.reduce((n, r) => n + r.builds, 0), 1);
    assert.equal(reports.filter((r) => !r.env.reused).length, 1);
    assert.equal(new Set(reports.map((r) => r.env.id)).size, 1);
    assert.deepEqual(await listEnvs(envsDir), [reports[0].env.id]);
  });
});

Deno.test("prepareEnv() fails fast with pip's reason when the index is unreachable; no env is left", async () => {
  await withTemp(async (dir) => {
    const envsDir = join(dir, "envs");
    const src = await pythonProject(join(dir, "src"), "prisn-no-such-package==1.0\n");
    const index = `http://127.0.0.1:${freePort()}/simple`;
    const started = performance.now();
    const error = await prepareEnv({
      envsDir,
      sourceDir: src,
      interpreter: PYTHON,
      environment: agentEnv({ PIP_INDEX_URL: index }),
    }).then(() => undefined, (e) => e);
    const took = performance.now() - started;
    assert.ok(error instanceof InstallError, String(error));
    assert.ok(error instanceof PrisnError);
    assert.equal(error.code, "FAILED");
    assert.equal(
      error.message,
      "pip install failed: No matching distribution found for prisn-no-such-package==1.0",
    );
    assert.ok(!error.message.includes("\n"));
    assert.ok(error.detail.includes(index), error.detail); // PIP_INDEX_URL was honoured
    assert.ok(error.detail.split("\n").length <= 20);
    assert.equal((error.cause as Error).message, error.detail);
    assert.ok(took < 30_000, `took ${took} ms`);
    assert.deepEqual(await entries(envsDir), [".locks"]);
    assert.deepEqual(await listEnvs(envsDir), []);
  });
});

Deno.test("prepareEnv() honours PIP_FIND_LINKS and pyproject.toml dependencies", async () => {
  await withTemp(async (dir) => {
    const envsDir = join(dir, "envs");
    const links = join(dir, "links");
    await buildWheel(links, { name: "prisn_linked", value: "linked" });
    const src = join(dir, "src");
    await Deno.mkdir(src);
    await Deno.writeTextFile(
      join(src, "pyproject.toml"),
      '[project]\nname = "demo"\nversion = "0.1"\ndependencies = ["prisn_linked>=1"]\n',
    );
    const env = await prepareEnv({
      envsDir,
      sourceDir: src,
      interpreter: PYTHON,
      environment: agentEnv({
        PIP_FIND_LINKS: links,
        PIP_INDEX_URL: `http://127.0.0.1:${freePort()}/simple`,
      }),
    });
    assert.ok(env);
    const ran = await runIn(env, ["-c", "import prisn_linked; print(prisn_linked.VALUE)"], src);
    assert.equal(ran.stdout, "linked", ran.stderr);
  });
});

Deno.test("prepareEnv() replaces a half-built env folder and removeEnv() deletes envs", async () => {
  await withTemp(async (dir) => {
    const envsDir = join(dir, "envs");
    const src = await pythonProject(join(dir, "src"), "prisn_rebuilt\n", {
      name: "prisn_rebuilt",
      value: "r",
    });
    const key = await envKey(src, PYTHON);
    assert.ok(key);
    // What a build killed halfway leaves: the folder, but no completion marker.
    await Deno.mkdir(join(envsDir, key.id, "bin"), { recursive: true });
    await Deno.writeTextFile(join(envsDir, key.id, "junk"), "x");
    assert.deepEqual(await listEnvs(envsDir), []);

    const env = await prepareEnv({
      envsDir,
      sourceDir: src,
      interpreter: PYTHON,
      environment: agentEnv(),
    });
    assert.equal(env?.reused, false);
    await assert.rejects(Deno.stat(join(envsDir, key.id, "junk")), Deno.errors.NotFound);
    assert.equal((await runIn(env!, ["-c", "import prisn_rebuilt"], src)).code, 0);
    assert.deepEqual(await listEnvs(envsDir), [key.id]);

    await removeEnv(envsDir, key.id);
    assert.deepEqual(await listEnvs(envsDir), []);
    await assert.rejects(Deno.stat(join(envsDir, key.id)), Deno.errors.NotFound);
    await removeEnv(envsDir, key.id); // idempotent
    await assert.rejects(
      removeEnv(envsDir, "../etc"),
      (e) => e instanceof PrisnError && e.code === "INVALID",
    );
  });
});

Deno.test("prepareEnv() installs npm deps; require() finds them via NODE_PATH, import via linkNodeModules()", async () => {
  await withTemp(async (dir) => {
    const envsDir = join(dir, "envs");
    const src = join(dir, "src");
    await Deno.mkdir(src);
    const pkg = {
      name: "demo",
      version: "1.0.0",
      // A root lifecycle script must not run in the env folder (it would need the project's files).
      scripts: { postinstall: "node does-not-exist.js" },
      dependencies: { "is-number": "7.0.0" },
    };
    await Deno.writeTextFile(join(src, "package.json"), JSON.stringify(pkg));
    await Deno.writeTextFile(join(src, "main.cjs"), "console.log(require('is-number')(5));\n");
    await Deno.writeTextFile(
      join(src, "main.mjs"),
      "import isNumber from 'is-number';\nconsole.log(isNumber('x'));\n",
    );

    const started = performance.now();
    const env = await prepareEnv({
      envsDir,
      sourceDir: src,
      interpreter: NODE,
      environment: agentEnv(),
    });
    const cold = performance.now() - started;
    assert.ok(env);
    assert.match(env.id, /^node-[0-9a-f]{12}$/);
    assert.equal(env.reused, false);
    assert.equal(env.command, "node");
    assert.equal(env.env.NODE_PATH, join(env.dir, "node_modules"));
    assert.equal(env.bin, join(env.dir, "node_modules", ".bin"));
    await Deno.stat(join(env.dir, "node_modules", "is-number", "package.json"));

    // CommonJS: NODE_PATH is enough, nothing in the project folder.
    assert.deepEqual(await runIn(env, ["main.cjs"], src), { code: 0, stdout: "true", stderr: "" });
    const inline = await runIn(env, ["-e", "console.log(typeof require('is-number'))"], src);
    assert.equal(inline.stdout, "function", inline.stderr);

    // ESM ignores NODE_PATH: the import fails until node_modules is linked into the folder.
    const unlinked = await runIn(env, ["main.mjs"], src);
    assert.notEqual(unlinked.code, 0);
    assert.match(unlinked.stderr, /ERR_MODULE_NOT_FOUND/);
    await linkNodeModules(src, env);
    await linkNodeModules(src, env); // idempotent
    assert.equal(await Deno.readLink(join(src, "node_modules")), join(env.dir, "node_modules"));
    assert.deepEqual(await runIn(env, ["main.mjs"], src), { code: 0, stdout: "false", stderr: "" });

    const started2 = performance.now();
    const again = await prepareEnv({
      envsDir,
      sourceDir: src,
      interpreter: NODE,
      environment: agentEnv(),
    });
    const warm = performance.now() - started2;
    assert.equal(again?.reused, true);
    assert.equal(again?.id, env.id);
    console.log(`node env: cold ${cold.toFixed(0)} ms, warm ${warm.toFixed(1)} ms`);
  });
});

Deno.test("prepareEnv() uses npm ci with a lockfile", async () => {
  await withTemp(async (dir) => {
    const envsDir = join(dir, "envs");
    const src = join(dir, "src");
    await Deno.mkdir(src);
    await Deno.writeTextFile(
      join(src, "package.json"),
      JSON.stringify({ name: "locked", version: "1.0.0", dependencies: { "is-number": "^7.0.0" } }),
    );
    await outputOf("npm", ["install", "--package-lock-only", "--no-audit", "--no-fund"], {
      cwd: src,
    });
    const out = counter();
    const env = await prepareEnv({
      envsDir,
      sourceDir: src,
      interpreter: NODE,
      environment: agentEnv(),
      onOutput: out.onOutput,
    });
    assert.ok(env);
    await Deno.stat(join(env.dir, "package-lock.json"));
    const ran = await runIn(
      env,
      ["-e", "console.log(require('is-number/package.json').version)"],
      src,
    );
    assert.match(ran.stdout, /^7\./, ran.stderr);
    assert.ok(out.lines.some((l) => /^prisn: running \S*npm ci /.test(l)), out.lines.join("\n"));
  });
});

Deno.test("prepareEnv() reports npm's reason when a package does not exist; no env is left", async () => {
  await withTemp(async (dir) => {
    const envsDir = join(dir, "envs");
    const src = join(dir, "src");
    await Deno.mkdir(src);
    await Deno.writeTextFile(
      join(src, "package.json"),
      JSON.stringify({ name: "broken", dependencies: { "prisn-no-such-package-4f7a1c": "1.0.0" } }),
    );
    const error = await prepareEnv({
      envsDir,
      sourceDir: src,
      interpreter: NODE,
      environment: agentEnv(),
    })
      .then(() => undefined, (e) => e);
    assert.ok(error instanceof InstallError, String(error));
    assert.equal(error.code, "FAILED");
    assert.match(error.message, /^npm install failed: .*404/);
    assert.ok(!error.message.includes("\n"));
    assert.match(error.detail, /prisn-no-such-package-4f7a1c/);
    assert.deepEqual(await entries(envsDir), [".locks"]);
  });
});

Deno.test("prepareEnv() stops an install that outlives timeoutMs, with what it started", async () => {
  await withTemp(async (dir) => {
    // A local tarball dependency whose install script never finishes.
    const pkgDir = join(dir, "hang");
    await Deno.mkdir(pkgDir);
    const pidFile = join(dir, "script.pid");
    await Deno.writeTextFile(
      join(pkgDir, "package.json"),
      JSON.stringify({
        name: "prisn-hang",
        version: "1.0.0",
        scripts: {
          install:
            "node -e \"require('fs').writeFileSync(process.env.PRISN_PID_FILE, String(process.pid)); setInterval(() => {}, 1000)\"",
        },
      }),
    );
    const tarball = join(
      dir,
      await outputOf("npm", ["pack", "--silent", "--pack-destination", dir], { cwd: pkgDir }),
    );
    const src = join(dir, "src");
    await Deno.mkdir(src);
    await Deno.writeTextFile(
      join(src, "package.json"),
      JSON.stringify({ name: "app", dependencies: { "prisn-hang": `file:${tarball}` } }),
    );
    const envsDir = join(dir, "envs");
    const started = performance.now();
    const error = await prepareEnv({
      envsDir,
      sourceDir: src,
      interpreter: NODE,
      environment: agentEnv({ PRISN_PID_FILE: pidFile }),
      timeoutMs: 3_000,
    }).then(() => undefined, (e) => e);
    assert.ok(error instanceof InstallError, String(error));
    assert.equal(error.message, "npm install failed: timed out after 3s");
    assert.ok(performance.now() - started < 15_000);
    const pid = Number(await Deno.readTextFile(pidFile));
    assert.ok(pid > 0);
    assert.deepEqual(await entries(envsDir), [".locks"]);
    assert.deepEqual(await listEnvs(envsDir), []);
    let alive = true;
    for (let i = 0; i < 40 && alive; i++) {
      try {
        const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
        alive = !/^\d+ \(.*\) Z/.test(stat); // a zombie is gone in all but name
      } catch {
        alive = false;
      }
      if (alive) await new Promise((r) => setTimeout(r, 50));
    }
    assert.equal(alive, false, `install script ${pid} still running`);
  });
});

Deno.test("envKey() and needsEnv() read the dependency file [deps] names instead of the default", async () => {
  await withTemp(async (dir) => {
    await Deno.mkdir(join(dir, "reqs"));
    await Deno.writeTextFile(join(dir, "reqs", "prod.txt"), "requests\n");
    assert.equal(await needsEnv(dir, "python"), false, "no requirements.txt, no pyproject.toml");
    assert.equal(await needsEnv(dir, "python", "reqs/prod.txt"), true);
    const named = await envKey(dir, PYTHON, "reqs/prod.txt");
    assert.match(named?.id ?? "", /^python3-[0-9a-f]{12}$/);
    await Deno.copyFile(join(dir, "reqs", "prod.txt"), join(dir, "requirements.txt"));
    assert.notEqual((await envKey(dir, PYTHON))?.id, named?.id, "the file's path is in the key");

    await Deno.writeTextFile(
      join(dir, "reqs", "pyproject.toml"),
      '[project]\nname = "x"\ndependencies = ["greet==1.0"]\n',
    );
    assert.equal(await needsEnv(dir, "python", "reqs/pyproject.toml"), true);

    await Deno.mkdir(join(dir, "web"));
    await Deno.writeTextFile(
      join(dir, "web", "package.json"),
      JSON.stringify({ dependencies: { "is-number": "7.0.0" } }),
    );
    assert.equal(await needsEnv(dir, "node"), false);
    assert.equal(await needsEnv(dir, "node", "web/package.json"), true);
    assert.match((await envKey(dir, NODE, "web/package.json"))?.id ?? "", /^node-[0-9a-f]{12}$/);

    await assert.rejects(
      needsEnv(dir, "python", "missing.txt"),
      (e) =>
        e instanceof PrisnError && e.code === "INVALID" &&
        e.message === '[deps] python names "missing.txt", which is not in the package',
    );
  });
});

Deno.test("environmentOf() puts every env's executables first on PATH, in order, and merges their variables", () => {
  const python = { bin: "/envs/python3-a/bin", env: { VIRTUAL_ENV: "/envs/python3-a" } };
  const node = { bin: "/envs/node-b/node_modules/.bin", env: { NODE_PATH: "/envs/node-b/nm" } };
  assert.deepEqual(environmentOf([node, python], { PATH: "/usr/bin:/bin" }), {
    VIRTUAL_ENV: "/envs/python3-a",
    NODE_PATH: "/envs/node-b/nm",
    PATH: "/envs/node-b/node_modules/.bin:/envs/python3-a/bin:/usr/bin:/bin",
  });
});

Deno.test("prepareEnv() on a full disk (a small tmpfs): npm's failure says so and no half node_modules is left", async () => {
  await withTemp(async (dir) => {
    // A local tarball dependency with 512 KiB to unpack: more than the full disk has.
    const pkgDir = join(dir, "big");
    await Deno.mkdir(pkgDir);
    await Deno.writeTextFile(
      join(pkgDir, "package.json"),
      JSON.stringify({ name: "prisn-big", version: "1.0.0" }),
    );
    await Deno.writeFile(join(pkgDir, "data.bin"), crypto.getRandomValues(new Uint8Array(65536)));
    for (let i = 1; i < 8; i++) {
      await Deno.copyFile(join(pkgDir, "data.bin"), join(pkgDir, `d${i}`));
    }
    const tarball = join(
      dir,
      await outputOf("npm", ["pack", "--silent", "--pack-destination", dir], { cwd: pkgDir }),
    );
    const src = join(dir, "src");
    await Deno.mkdir(src);
    await Deno.writeTextFile(
      join(src, "package.json"),
      JSON.stringify({ name: "app", dependencies: { "prisn-big": `file:${tarball}` } }),
    );
    await withTmpfs("1m", async (envsDir) => {
      await Deno.mkdir(join(envsDir, ".locks"));
      const filled = await fill(join(envsDir, "filler"));
      await Deno.truncate(join(envsDir, "filler"), filled - 128 * 1024); // room for package.json
      const error = await prepareEnv({
        envsDir,
        sourceDir: src,
        interpreter: NODE,
        environment: agentEnv({ npm_config_cache: join(dir, "npm-cache") }),
      }).then(() => undefined, (e) => e);
      assert.ok(error instanceof InstallError, String(error));
      assert.ok(isDiskFull({ message: error.detail }), `names the full disk: ${error.detail}`);
      assert.deepEqual((await entries(envsDir)).sort(), [".locks", "filler"]);
      assert.deepEqual(await listEnvs(envsDir), []);
    });
  });
});

Deno.test("prepareEnv() on a nearly full disk (a small tmpfs): a venv ensurepip cannot unpack is a full disk, not a missing venv module, and nothing is left", async () => {
  await withTemp(async (dir) => {
    const src = await pythonProject(join(dir, "src"), "greet\n", { name: "greet", value: "hi" });
    await withTmpfs("4m", async (envsDir) => {
      await Deno.mkdir(join(envsDir, ".locks"));
      const filled = await fill(join(envsDir, "filler"));
      await Deno.truncate(join(envsDir, "filler"), filled - 1024 * 1024); // 1 MiB left
      const error = await prepareEnv({
        envsDir,
        sourceDir: src,
        interpreter: PYTHON,
        environment: agentEnv(),
      }).then(() => undefined, (e) => e);
      assert.ok(error instanceof InstallError, String(error));
      assert.equal(error.message, "creating a python venv failed: No space left on device");
      assert.deepEqual(await entries(envsDir), [".locks", "filler"]);
    });
  });
});
