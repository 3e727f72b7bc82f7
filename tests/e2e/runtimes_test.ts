/**
 * Runtimes and dependencies end to end: the real CLI, a real agent in a temp PRISN_HOME, real
 * python venvs built from wheels made here (no package index), real npm installs, git sources
 * over file://, git:// (git daemon) and http:// (git http-backend), env and secrets, gc, and a
 * Deno entrypoint. Everything listens on loopback only and is stopped in `finally`.
 *
 * @module
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import type { RunRecord } from "../../core/types.ts";
import { buildWheel } from "../fixtures/envs_wheel.ts";
import { serveGitHttp, startGitDaemon } from "../fixtures/git_repos.ts";
import {
  assertOneLineError,
  finished,
  freePort,
  hasCommand,
  httpGet,
  TestHome,
  waitFor,
} from "../_helpers.ts";

// --- what this host has -------------------------------------------------------------------------

const HAS_PYTHON = await hasCommand("python3", ["-c", "import venv, ensurepip, zipfile"]);
const HAS_NODE = await hasCommand("node") && await hasCommand("npm");
const HAS_GIT = await hasCommand("git");
if (!HAS_PYTHON) console.log("runtimes_test: skipping python tests: python3 with venv not found");
if (!HAS_NODE) console.log("runtimes_test: skipping node tests: node or npm not found");
if (!HAS_GIT) console.log("runtimes_test: skipping git tests: git not found");

// --- helpers ------------------------------------------------------------------------------------

/** Deploys and returns the wall-clock time it took and what it printed. */
async function timedDeploy(
  t: TestHome,
  ...args: string[]
): Promise<{ ms: number; out: string }> {
  const started = performance.now();
  const out = await t.ok("deploy", ...args);
  return { ms: performance.now() - started, out };
}

interface Detail {
  name: string;
  type: string;
  version: string;
  source: {
    kind: string;
    location: string;
    ref?: string;
    path?: string;
    commit?: string;
  };
  entrypoint: string;
  runtime: string;
  interpreter?: string;
  envs?: string[];
  spec: Record<string, unknown> & { env: Record<string, string> };
  events: Array<{ kind: string; message: string }>;
}

interface HistoryRow {
  version: string;
  status: string;
  current: boolean;
  source: Detail["source"];
}

/** Waits until the deployment has a finished run of `version` and returns its log. */
async function runLog(t: TestHome, name: string, version?: string): Promise<string> {
  const run = await waitFor(async () => {
    const runs = await t.json<RunRecord[]>("get", "jobs", name, "--limit", "50");
    return runs.find((r) => finished(r) && (!version || r.version === version));
  }, { timeoutMs: 60_000, what: `a finished run of ${name} ${version ?? ""}` });
  const log = await t.ok("logs", name, "--run", run.id);
  assert.equal(run.status, "completed", `run ${run.id} of ${name} completed; its log:\n${log}`);
  return log;
}

/** The version id a deploy printed. */
function versionOf(deployOutput: string): string {
  return /v-[0-9a-f]{8}/.exec(deployOutput)![0];
}

/** The env id on a deploy's Prepare line, if any. */
function preparedEnv(deployOutput: string): string | undefined {
  return /^Prepare\s.*env ((?:python3|node)-[0-9a-f]{12})/m.exec(deployOutput)?.[1];
}

/** Names in a folder, sorted; [] when it does not exist. */
function list(dir: string, prefix = ""): string[] {
  try {
    return [...Deno.readDirSync(dir)].map((e) => e.name).filter((n) => n.startsWith(prefix))
      .sort();
  } catch {
    return [];
  }
}

/** Every file's text under a folder (recursively); "" when it does not exist. */
function readTree(dir: string): string {
  let entries: Deno.DirEntry[];
  try {
    entries = [...Deno.readDirSync(dir)];
  } catch {
    return "";
  }
  let text = "";
  for (const entry of entries) {
    const path = join(dir, entry.name);
    if (entry.isDirectory) text += readTree(path);
    else if (entry.isFile) text += new TextDecoder().decode(Deno.readFileSync(path)) + "\n";
  }
  return text;
}

/** A python service answering GET / with `greet.VALUE` (from a wheel) and a suffix. */
function greetServer(suffix: string): string {
  return `import http.server, os
import greet

ANSWER = (greet.VALUE + ${JSON.stringify(suffix)}).encode()

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(len(ANSWER)))
        self.end_headers()
        self.wfile.write(ANSWER)

    def log_message(self, *args):
        pass

http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
`;
}

/** A python service without dependencies answering GET / with `answer`. */
function plainServer(answer: string): string {
  return greetServer(answer).replace("import greet\n", "").replace("greet.VALUE + ", "");
}

/** prisn.toml lines that keep service rollouts short in tests. */
const QUICK_ROLL = `drain_grace = "1s"\nstop_grace = "2s"\n`;

/** A built wheel's bytes, made once per test file: `greet` with VALUE = value. */
const wheels = new Map<string, Uint8Array>();
async function greetWheel(
  scratch: string,
  version: string,
  value: string,
): Promise<[string, Uint8Array]> {
  const file = `greet-${version}-py3-none-any.whl`;
  const key = `${version}\n${value}`;
  if (!wheels.has(key)) {
    const dir = await Deno.makeTempDir({ dir: scratch, prefix: "wheel-" });
    wheels.set(key, await Deno.readFile(await buildWheel(dir, { name: "greet", version, value })));
  }
  return [file, wheels.get(key)!];
}

/** Writes a wheel into `<project>/wheels/`. */
async function addWheel(project: string, wheel: [string, Uint8Array]): Promise<void> {
  await Deno.mkdir(join(project, "wheels"), { recursive: true });
  await Deno.writeFile(join(project, "wheels", wheel[0]), wheel[1]);
}

function builtAt(home: string, envId: string): string {
  return JSON.parse(Deno.readTextFileSync(join(home, "envs", envId, ".prisn-env.json"))).builtAt;
}

// --- 1, 2: python from a local wheel; the env is built once -------------------------------------

Deno.test({
  name:
    "python from a local wheel: a service imports it, get shows its env and spec, and the env is built once",
  ignore: !HAS_PYTHON,
  async fn(ctx) {
    const t = new TestHome();
    try {
      const port = freePort();
      const wheel = await greetWheel(t.dir, "1.0", "hello-from-wheel");
      const dir = t.project("pysvc", {
        "main.py": greetServer(" v1"),
        "requirements.txt": "greet==1.0\n",
        "prisn.toml": `port = ${port}\n${QUICK_ROLL}`,
      });
      await addWheel(dir, wheel);
      let cold = { ms: 0, out: "" };
      let envId = "";
      let firstBuild = "";

      const built = await ctx.step(
        "the service imports the wheel's package; get -o json shows env and spec",
        async () => {
          cold = await timedDeploy(t, dir);
          envId = preparedEnv(cold.out) ?? "";
          assert.ok(envId.startsWith("python3-"), `Prepare names a python env:\n${cold.out}`);
          assert.equal(
            await waitFor(() => httpGet(port), { timeoutMs: 20_000, what: "the service" }),
            "hello-from-wheel v1",
          );
          const d = await t.json<Detail>("get", "pysvc");
          assert.deepEqual(d.envs, [envId], "get -o json: envs are the env ids in use");
          assert.equal(d.type, "service");
          assert.equal(d.spec.type, "service");
          assert.equal(d.spec.port, port, "effective spec: port from prisn.toml");
          assert.equal(d.spec.entrypoint, "main.py", "effective spec: default entrypoint");
          assert.equal(d.spec.runtime, "python3", "effective spec: runtime from the extension");
          assert.equal(d.spec.drain_grace, "1s", "effective spec: keys from prisn.toml");
          assert.deepEqual(d.spec.args, []);
          assert.match(d.interpreter ?? "", /python.* 3\.\d+\.\d+$/);
          assert.match(await t.ok("get", "pysvc"), new RegExp(`^Env:\\s+${envId}$`, "m"));
          assert.deepEqual(list(join(t.home, "envs"), "python3-"), [envId]);
          firstBuild = builtAt(t.home, envId);
        },
      );

      if (!built) return; // the steps below need the env the first one built
      await ctx.step("a redeploy with changed code reuses the env", async () => {
        Deno.writeTextFileSync(join(dir, "main.py"), greetServer(" v2"));
        const warm = await timedDeploy(t, dir);
        assert.notEqual(versionOf(warm.out), versionOf(cold.out), "changed code: a new version");
        assert.equal(preparedEnv(warm.out), envId, "the second deploy uses the same env");
        await waitFor(async () => (await httpGet(port)) === "hello-from-wheel v2", {
          timeoutMs: 20_000,
          what: "v2 answering",
        });
        assert.equal(builtAt(t.home, envId), firstBuild, "the env was not built again");
        assert.deepEqual(list(join(t.home, "envs"), "python3-"), [envId], "one python env");
        console.log(
          `  cold deploy ${cold.ms.toFixed(0)} ms, warm deploy ${warm.ms.toFixed(0)} ms ` +
            `(${(cold.ms / warm.ms).toFixed(1)}x)`,
        );
        assert.ok(
          warm.ms < cold.ms * 0.6,
          `a warm deploy is much faster: cold ${cold.ms.toFixed(0)} ms, warm ${
            warm.ms.toFixed(0)
          } ms`,
        );
      });

      await ctx.step("another deployment with identical requirements shares the env", async () => {
        const other = t.project("pyjob", {
          "main.py": "import greet\nprint('job sees', greet.VALUE)\n",
          "requirements.txt": "greet==1.0\n",
        });
        await addWheel(other, wheel);
        const job = await t.ok("deploy", other);
        assert.equal(preparedEnv(job), envId, "a second deployment shares the env");
        assert.match(await runLog(t, "pyjob"), /job sees hello-from-wheel$/m);
        assert.deepEqual((await t.json<Detail>("get", "pyjob")).envs, [envId]);
        assert.deepEqual(list(join(t.home, "envs"), "python3-"), [envId], "still one env");
        assert.equal(builtAt(t.home, envId), firstBuild);
      });
    } finally {
      await t.close();
    }
  },
});

// --- 3: a failing pip install ------------------------------------------------------------------

Deno.test({
  name:
    "a failing pip install fails the deploy with pip's reason and leaves the running version serving",
  ignore: !HAS_PYTHON,
  async fn() {
    const t = new TestHome();
    try {
      const port = freePort();
      const dir = t.project("pipfail", {
        "main.py": plainServer("still-serving"),
        "prisn.toml": `port = ${port}\n${QUICK_ROLL}`,
      });
      const goodVersion = versionOf(await t.ok("deploy", dir));
      await waitFor(async () => (await httpGet(port)) === "still-serving", {
        timeoutMs: 20_000,
        what: "the good version answering",
      });

      // The new version needs a wheel it does not ship, and there is no index to ask.
      Deno.writeTextFileSync(join(dir, "main.py"), greetServer(""));
      Deno.writeTextFileSync(join(dir, "requirements.txt"), "greet==1.0\nnot-in-wheels-pkg==9.9\n");
      await addWheel(dir, await greetWheel(t.dir, "1.0", "new-version"));
      const r = await t.cli("deploy", dir);
      const message = assertOneLineError(
        r,
        /pip install failed: .*not-in-wheels-pkg/,
        "failing pip install",
      );
      console.log(`  ${message}`);

      assert.equal(await httpGet(port), "still-serving", "the running version still answers");
      const d = await t.json<Detail>("get", "pipfail");
      assert.equal(d.version, goodVersion, "the good version is still current");
      const history = await t.json<HistoryRow[]>("history", "pipfail");
      assert.equal(history.find((h) => h.current)?.version, goodVersion);
      assert.deepEqual(
        list(join(t.home, "envs")).filter((n) => n !== ".locks"),
        [],
        "no half-built env is left",
      );
      assert.equal(await httpGet(port), "still-serving");
    } finally {
      await t.close();
    }
  },
});

// --- 4: node with a real npm dependency ---------------------------------------------------------

const IS_NUMBER = {
  name: "node-app",
  version: "1.0.0",
  private: true,
  dependencies: { "is-number": "7.0.0" },
};

const IS_NUMBER_LOCK = {
  name: "node-app",
  version: "1.0.0",
  lockfileVersion: 3,
  requires: true,
  packages: {
    "": { name: "node-app", version: "1.0.0", dependencies: { "is-number": "7.0.0" } },
    "node_modules/is-number": {
      version: "7.0.0",
      resolved: "https://registry.npmjs.org/is-number/-/is-number-7.0.0.tgz",
      integrity:
        "sha512-41Cifkg6e8TylSpdtTpeLVMqvSBEVzTttHvERD741+pnZ8ANv0004MRL43QKPDlK9cGvNp6NZWZUBlbGXYxxng==",
      license: "MIT",
      engines: { node: ">=0.12.0" },
    },
  },
};

const NODE_SERVER = `const http = require("node:http");
const isNumber = require("is-number");
http.createServer((req, res) => {
  res.end(\`is-number says \${isNumber("42")} \${isNumber("forty-two")}\`);
}).listen(Number(process.env.PORT), "127.0.0.1");
`;

Deno.test({
  name:
    "node: require works with and without package-lock.json, and an ESM entrypoint imports the package",
  ignore: !HAS_NODE,
  async fn() {
    const t = new TestHome();
    try {
      // A service, with a lockfile (npm ci).
      const port = freePort();
      const svc = t.project("nodesvc", {
        "main.js": NODE_SERVER,
        "package.json": JSON.stringify(IS_NUMBER, null, 2),
        "package-lock.json": JSON.stringify(IS_NUMBER_LOCK, null, 2),
        "prisn.toml": `port = ${port}\n${QUICK_ROLL}`,
      });
      const svcOut = await t.ok("deploy", svc);
      const lockedEnv = preparedEnv(svcOut);
      assert.ok(lockedEnv?.startsWith("node-"), `Prepare names a node env:\n${svcOut}`);
      assert.equal(
        await waitFor(() => httpGet(port), { timeoutMs: 20_000, what: "the node service" }),
        "is-number says true false",
      );
      assert.deepEqual((await t.json<Detail>("get", "nodesvc")).envs, [lockedEnv]);

      // A job without a lockfile (npm install).
      const job = t.project("nodejob", {
        "index.js": 'const isNumber = require("is-number");\nconsole.log("cjs", isNumber(5));\n',
        "package.json": JSON.stringify(IS_NUMBER, null, 2),
      });
      const jobOut = await t.ok("deploy", job);
      const unlockedEnv = preparedEnv(jobOut);
      assert.ok(unlockedEnv?.startsWith("node-"), `Prepare names a node env:\n${jobOut}`);
      assert.notEqual(unlockedEnv, lockedEnv, "a lockfile is part of the env's key");
      assert.match(await runLog(t, "nodejob"), /cjs true$/m);

      // ESM: `import` ignores NODE_PATH; the package still resolves.
      const esm = t.project("nodeesm", {
        "index.mjs": 'import isNumber from "is-number";\nconsole.log("esm", isNumber("7"));\n',
        "package.json": JSON.stringify(IS_NUMBER, null, 2),
        "prisn.toml": 'entrypoint = "index.mjs"\n',
      });
      const esmOut = await t.ok("deploy", esm);
      assert.equal(preparedEnv(esmOut), unlockedEnv, "same package.json, same env");
      assert.match(await runLog(t, "nodeesm"), /esm true$/m);
      assert.equal((await t.json<Detail>("get", "nodeesm")).runtime, "node");

      assert.deepEqual(
        list(join(t.home, "envs"), "node-"),
        [lockedEnv!, unlockedEnv!].sort(),
        "two node envs for three deployments",
      );
    } finally {
      await t.close();
    }
  },
});

// --- 5: a bash cronjob calling an executable helper ---------------------------------------------

Deno.test("a bash cronjob runs every second and calls ./helper.sh: the executable bit is kept", async () => {
  const t = new TestHome();
  try {
    const dir = t.project("tick", {
      "main.sh": '#!/bin/bash\nset -euo pipefail\n./helper.sh "$(cat data.txt)"\n',
      "helper.sh": '#!/bin/bash\necho "helper ran with $1"\n',
      "data.txt": "payload\n",
    });
    const out = await t.ok("deploy", dir, "--schedule", "* * * * * *");
    assert.match(out, /cronjob scheduled "\* \* \* \* \* \*"/);
    const log = await runLog(t, "tick");
    assert.match(log, /helper ran with payload$/m);

    const current = join(t.home, "deployments", "default", "tick", versionOf(out));
    assert.ok((Deno.statSync(join(current, "helper.sh")).mode! & 0o111) !== 0, "helper.sh +x");
    assert.ok((Deno.statSync(join(current, "main.sh")).mode! & 0o111) !== 0, "main.sh +x");
    assert.equal(Deno.statSync(join(current, "data.txt")).mode! & 0o111, 0, "data.txt stays -x");
    const runs = await t.json<RunRecord[]>("get", "jobs", "tick", "--limit", "50");
    assert.ok(runs.some((r) => r.status === "completed" && r.exitCode === 0));
    assert.ok(!runs.some((r) => r.status === "failed"), "no failed run");
  } finally {
    await t.close();
  }
});

// --- 6: git sources ---------------------------------------------------------------------------

interface Repo {
  /** Folder holding repo.git (a git daemon / http-backend root). */
  root: string;
  url: string;
  /** Tagged v1 (annotated): app/main.sh says "app one". */
  first: string;
  /** Tip of main: app/main.sh says "app two", main.sh at the root says "root two". */
  main: string;
  /** Tip of dev: app/main.sh says "app dev". */
  dev: string;
}

async function git(cwd: string, ...args: string[]): Promise<string> {
  const out = await new Deno.Command("git", {
    args: ["-c", "user.name=prisn", "-c", "user.email=prisn@tests.invalid", ...args],
    cwd,
    env: { GIT_TERMINAL_PROMPT: "0" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout).trim();
  if (!out.success) {
    throw new Error(`git ${args.join(" ")}: ${new TextDecoder().decode(out.stderr)}`);
  }
  return text;
}

async function makeRepo(base: string): Promise<Repo> {
  const root = join(base, "git-root");
  const work = join(base, "git-work");
  await Deno.mkdir(join(work, "app"), { recursive: true });
  await Deno.mkdir(root, { recursive: true });
  const write = async (path: string, text: string) => {
    await Deno.writeTextFile(join(work, path), text);
    await Deno.chmod(join(work, path), 0o755);
  };
  await git(work, "init", "--quiet", "--initial-branch=main");
  await write("app/main.sh", "#!/bin/bash\necho app one\n");
  await write("main.sh", "#!/bin/bash\necho root one\n");
  await git(work, "add", "-A");
  await git(work, "commit", "--quiet", "-m", "one");
  const first = await git(work, "rev-parse", "HEAD");
  await git(work, "tag", "-a", "v1", "-m", "release one");
  await write("app/main.sh", "#!/bin/bash\necho app two\n");
  await write("main.sh", "#!/bin/bash\necho root two\n");
  await git(work, "commit", "--quiet", "-am", "two");
  const main = await git(work, "rev-parse", "HEAD");
  await git(work, "checkout", "--quiet", "-b", "dev");
  await write("app/main.sh", "#!/bin/bash\necho app dev\n");
  await git(work, "commit", "--quiet", "-am", "dev");
  const dev = await git(work, "rev-parse", "HEAD");
  await git(work, "checkout", "--quiet", "main");
  await git(base, "clone", "--quiet", "--bare", work, join(root, "repo.git"));
  return { root, url: `file://${join(root, "repo.git")}`, first, main, dev };
}

Deno.test({
  name:
    "git sources: file:// with --ref branch, tag and SHA and --path; git:// and http:// on loopback; history shows commits",
  ignore: !HAS_GIT,
  async fn() {
    const t = new TestHome();
    let daemon: Awaited<ReturnType<typeof startGitDaemon>> | undefined;
    let http: ReturnType<typeof serveGitHttp> | undefined;
    try {
      const repo = await makeRepo(t.dir);

      // file://, a branch and a sub-folder.
      const byBranch = await t.ok(
        "deploy",
        repo.url,
        "--ref",
        "dev",
        "--path",
        "app",
        "--name",
        "g",
      );
      assert.match(await runLog(t, "g", versionOf(byBranch)), /app dev$/m);
      let d = await t.json<Detail>("get", "g");
      assert.deepEqual(d.source, {
        kind: "git",
        location: repo.url,
        ref: "dev",
        path: "app",
        commit: repo.dev,
      });

      // An annotated tag resolves to its commit.
      const byTag = await t.ok("deploy", repo.url, "--ref", "v1", "--path", "app", "--name", "g");
      assert.match(await runLog(t, "g", versionOf(byTag)), /app one$/m);
      d = await t.json<Detail>("get", "g");
      assert.equal(d.source.ref, "v1");
      assert.equal(d.source.commit, repo.first);

      // A full commit id.
      const bySha = await t.ok(
        "deploy",
        repo.url,
        "--ref",
        repo.main,
        "--path",
        "app",
        "--name",
        "g",
      );
      assert.match(await runLog(t, "g", versionOf(bySha)), /app two$/m);
      d = await t.json<Detail>("get", "g");
      assert.equal(d.source.ref, repo.main);
      assert.equal(d.source.commit, repo.main);

      const history = await t.json<HistoryRow[]>("history", "g");
      assert.deepEqual(
        history.map((h) => [h.version, h.source.commit]),
        [
          [versionOf(bySha), repo.main],
          [versionOf(byTag), repo.first],
          [versionOf(byBranch), repo.dev],
        ],
        "history: the commit of every version, newest first",
      );
      assert.match(
        await t.ok("history", "g"),
        new RegExp(`COMMIT[\\s\\S]*${repo.main.slice(0, 12)}`),
      );

      // git:// from git daemon on loopback, the default branch, the repository root.
      daemon = await startGitDaemon(repo.root);
      const gitUrl = `${daemon.url}/repo.git`;
      const viaDaemon = await t.ok("deploy", gitUrl, "--name", "gd");
      assert.match(await runLog(t, "gd", versionOf(viaDaemon)), /root two$/m);
      d = await t.json<Detail>("get", "gd");
      assert.equal(d.source.location, gitUrl);
      assert.equal(d.source.commit, repo.main);
      assert.equal(d.source.ref, undefined);

      // http:// through git http-backend, with basic-auth credentials in the URL.
      const password = "hunter2-http-pw";
      http = serveGitHttp(repo.root, { auth: { user: "deployer", password } });
      const authUrl = `http://deployer:${password}@127.0.0.1:${http.port}/repo.git`;
      const viaHttp = await t.ok("deploy", authUrl, "--ref", "v1", "--path", "app", "--name", "gh");
      assert.match(await runLog(t, "gh", versionOf(viaHttp)), /app one$/m);
      assert.ok(!viaHttp.includes(password), `deploy output hides the password:\n${viaHttp}`);
      d = await t.json<Detail>("get", "gh");
      assert.equal(d.source.location, `http://***@127.0.0.1:${http.port}/repo.git`);
      assert.equal(d.source.commit, repo.first);
      assert.equal(d.source.path, "app");
      const wrong = "wrong-pw-123";
      const refused = await t.cli(
        "deploy",
        `http://deployer:${wrong}@127.0.0.1:${http.port}/repo.git`,
        "--name",
        "gh",
      );
      assertOneLineError(refused, /Authentication failed/, "wrong password");
      assert.ok(!(refused.stdout + refused.stderr).includes(wrong), "no password in the error");
      assert.equal((await t.json<Detail>("get", "gh")).version, versionOf(viaHttp));
      for (
        const [what, text] of [
          ["get -o json", JSON.stringify(d)],
          ["get", await t.ok("get", "gh")],
          ["history -o json", JSON.stringify(await t.json("history", "gh"))],
          ["status -o json", JSON.stringify(await t.json("status"))],
          ["prisn.db", dbText(t.home)],
          ["deployments/", readTree(join(t.home, "deployments"))],
          ["logs/", readTree(join(t.home, "logs"))],
          ["state/", readTree(join(t.home, "state"))],
        ]
      ) {
        assert.ok(!text.includes(password), `${what} holds no password`);
      }
    } finally {
      await http?.close();
      await daemon?.close();
      await t.close();
    }
  },
});

/** prisn.db and its WAL as text (for searching). */
function dbText(home: string): string {
  let text = "";
  for (const suffix of ["", "-wal"]) {
    try {
      text += new TextDecoder().decode(Deno.readFileSync(join(home, `prisn.db${suffix}`)));
    } catch { /* no WAL */ }
  }
  return text;
}

Deno.test({
  name:
    "git sources that fail (credentials, unreachable, missing ref, missing path) give one line and record nothing",
  ignore: !HAS_GIT,
  async fn() {
    const t = new TestHome();
    try {
      const repo = await makeRepo(t.dir);
      const good = await t.ok("deploy", repo.url, "--path", "app", "--name", "g");
      const goodVersion = versionOf(good);
      await runLog(t, "g", goodVersion);
      const closed = freePort();

      const secret = "s3cret-pass-xyz";
      const creds = await t.cli("deploy", `https://user:${secret}@127.0.0.1:${closed}/x.git`);
      const credsMessage = assertOneLineError(
        creds,
        /cannot reach git repository https:\/\/\*\*\*@127\.0\.0\.1/,
        "unreachable https URL with credentials",
      );
      assert.ok(!(creds.stdout + creds.stderr).includes(secret), "the password is never printed");
      console.log(`  ${credsMessage}`);

      const unreachable = await t.cli(
        "deploy",
        `git://127.0.0.1:${closed}/repo.git`,
        "--name",
        "g",
      );
      console.log(
        "  " +
          assertOneLineError(unreachable, /cannot reach git repository git:\/\//, "unreachable"),
      );

      const missingRef = await t.cli("deploy", repo.url, "--ref", "no-such-branch", "--name", "g");
      console.log(
        "  " + assertOneLineError(missingRef, /ref "no-such-branch" not found/, "missing ref"),
      );

      const missingSha = await t.cli("deploy", repo.url, "--ref", "0".repeat(40), "--name", "g");
      assertOneLineError(missingSha, /ref "0{40}" not found/, "missing commit");

      const missingPath = await t.cli("deploy", repo.url, "--path", "nope/sub", "--name", "g");
      console.log(
        "  " + assertOneLineError(missingPath, /path "nope\/sub" not found/, "missing path"),
      );

      // Nothing recorded: no new deployment, g untouched, no temp checkout left.
      const names = (await t.json<Array<{ name: string }>>("ls")).map((x) => x.name);
      assert.deepEqual(names, ["g"]);
      const d = await t.json<Detail>("get", "g");
      assert.equal(d.version, goodVersion);
      assert.equal((await t.json<HistoryRow[]>("history", "g")).length, 1, "no version recorded");
      assert.ok(!dbText(t.home).includes(secret), "prisn.db holds no password");
      assert.ok(!readTree(join(t.home, "state")).includes(secret), "state/ holds no password");
      assert.deepEqual(list(join(t.home, "state"), "git-"), [], "no checkout left behind");
      assert.deepEqual(list(join(t.home, "deployments", "default")), ["g"]);
    } finally {
      await t.close();
    }
  },
});

// --- 7: bad prisn.toml and a missing interpreter -----------------------------------------------

Deno.test({
  name:
    "a bad prisn.toml key, a wrongly typed value and a missing interpreter each leave the running version untouched",
  ignore: !HAS_PYTHON,
  async fn() {
    const t = new TestHome();
    try {
      const port = freePort();
      const good = `port = ${port}\n${QUICK_ROLL}`;
      const dir = t.project("guarded", { "main.py": plainServer("good"), "prisn.toml": good });
      const version = versionOf(await t.ok("deploy", dir));
      await waitFor(async () => (await httpGet(port)) === "good", {
        timeoutMs: 20_000,
        what: "the good version answering",
      });
      Deno.writeTextFileSync(join(dir, "main.py"), plainServer("bad"));

      const attempts: Array<[string, string, RegExp]> = [
        [
          "unknown key",
          `${good}replicaz = 2\n`,
          /prisn\.toml:4: unknown key "replicaz": did you mean "replicas"\?/,
        ],
        [
          "unknown table key",
          `${good}[resources]\nmemroy = "64Mi"\n`,
          /prisn\.toml:5: unknown key "resources\.memroy": did you mean "resources\.memory"\?/,
        ],
        [
          "wrong type",
          `${QUICK_ROLL}port = "eighty"\n`,
          /prisn\.toml:3: port must be an integer from 1 to 65535 \(got "eighty"\)/,
        ],
        [
          "missing interpreter",
          `${good}runtime = "python3.99"\n`,
          /runtime "python3\.99" is not installed on this host/,
        ],
      ];
      for (const [what, toml, pattern] of attempts) {
        Deno.writeTextFileSync(join(dir, "prisn.toml"), toml);
        const r = await t.cli("deploy", dir);
        console.log(`  ${what}: ${assertOneLineError(r, pattern, what)}`);
        assert.equal(await httpGet(port), "good", `${what}: the running version still answers`);
        const d = await t.json<Detail>("get", "guarded");
        assert.equal(d.version, version, `${what}: the running version is still current`);
        assert.equal(d.spec.port, port);
      }
      const history = await t.json<HistoryRow[]>("history", "guarded");
      assert.equal(history.find((h) => h.current)?.version, version);
    } finally {
      await t.close();
    }
  },
});

// --- 8: env and secrets ------------------------------------------------------------------------

Deno.test("env from --env, --env-file and [env]; a --secret is masked everywhere; a changed env is a new version that rollback undoes", async () => {
  const t = new TestHome();
  try {
    const secret = "abc123xyz";
    const dir = t.project("envy", {
      "main.sh": "#!/bin/bash\n" +
        'echo "greeting=$GREETING file=$FROM_FILE toml=$FROM_TOML token=$TOKEN"\n' +
        'echo "stderr token=$TOKEN" >&2\n',
      "prisn.toml": '[env]\nFROM_TOML = "toml-value"\nGREETING = "overridden"\n',
    });
    const envFile = join(t.dir, "app.env");
    Deno.writeTextFileSync(
      envFile,
      "# comment\nFROM_FILE='file value'\nexport GREETING=from-file\n",
    );

    const deploy1 = await t.ok(
      "deploy",
      dir,
      "--env-file",
      envFile,
      "--env",
      "GREETING=hello",
      "--secret",
      `TOKEN=${secret}`,
    );
    const v1 = versionOf(deploy1);
    const log1 = await runLog(t, "envy", v1);
    assert.match(log1, /greeting=hello file=file value toml=toml-value token=\*{8}$/m);
    assert.match(log1, /stderr token=\*{8}$/m);

    const table = await t.ok("env", "envy");
    assert.match(table, /^KEY\s+VALUE/m);
    assert.match(table, /^FROM_FILE\s+file value/m);
    assert.match(table, /^FROM_TOML\s+toml-value/m);
    assert.match(table, /^GREETING\s+hello/m);
    assert.match(table, /^TOKEN\s+\*{8}\s+\(secret\)$/m);
    const rows = await t.json<Array<{ key: string; value: string; secret: boolean }>>(
      "env",
      "envy",
    );
    assert.deepEqual(rows.find((r) => r.key === "TOKEN"), {
      key: "TOKEN",
      value: "********",
      secret: true,
    });
    assert.deepEqual(rows.map((r) => r.key), ["FROM_FILE", "FROM_TOML", "GREETING", "TOKEN"]);

    const d1 = await t.json<Detail>("get", "envy");
    assert.equal(d1.spec.env.TOKEN, "********");
    assert.equal(d1.spec.env.GREETING, "hello");

    const mode = Deno.statSync(join(t.home, "prisn.db")).mode! & 0o777;
    assert.equal(mode.toString(8), "600", "prisn.db is readable by its owner only");

    // A changed env value: a new version; rollback brings the old env back.
    const deploy2 = await t.ok(
      "deploy",
      dir,
      "--env-file",
      envFile,
      "--env",
      "GREETING=goodbye",
      "--secret",
      `TOKEN=${secret}`,
    );
    const v2 = versionOf(deploy2);
    assert.notEqual(v2, v1, "a changed env value makes a new version");
    assert.match(await runLog(t, "envy", v2), /greeting=goodbye .*token=\*{8}$/m);

    const rolled = await t.ok("rollback", "envy");
    assert.match(rolled, new RegExp(v1));
    assert.equal((await t.json<Detail>("get", "envy")).version, v1);
    assert.match(await t.ok("env", "envy"), /^GREETING\s+hello/m);
    const started = await t.ok("run", "envy");
    const runId = /run-[0-9a-f]{8}/.exec(started)![0];
    const rerun = await waitFor(async () => {
      const runs = await t.json<RunRecord[]>("get", "jobs", "envy", "--limit", "50");
      return runs.find((r) => r.id === runId && finished(r));
    }, { timeoutMs: 30_000, what: "a run of the rolled-back version" });
    assert.equal(rerun.version, v1);
    assert.match(
      await t.ok("logs", "envy", "--run", rerun.id),
      /greeting=hello .*token=\*{8}$/m,
      "after rollback the app sees the old env",
    );

    // The secret value shows nowhere.
    const places: Array<[string, string]> = [
      ["deploy output", deploy1 + deploy2 + rolled],
      ["get -o json", JSON.stringify(await t.json("get", "envy"))],
      ["get", await t.ok("get", "envy")],
      ["history -o json", JSON.stringify(await t.json("history", "envy"))],
      ["history", await t.ok("history", "envy")],
      ["status -o json", JSON.stringify(await t.json("status"))],
      ["status", await t.ok("status")],
      ["ls -o json", JSON.stringify(await t.json("ls"))],
      ["env -o json", JSON.stringify(await t.json("env", "envy"))],
      ["env", await t.ok("env", "envy")],
      ["events", JSON.stringify((await t.json<Detail>("get", "envy")).events)],
      ["logs", await t.ok("logs", "envy")],
      ["log files", readTree(join(t.home, "logs"))],
      ["get jobs -o json", JSON.stringify(await t.json("get", "jobs", "envy"))],
      ["deployments/", readTree(join(t.home, "deployments"))],
      ["state/", readTree(join(t.home, "state"))],
    ];
    for (const [what, text] of places) {
      assert.ok(!text.includes(secret), `${what} does not hold the secret value`);
    }
    assert.ok(readTree(join(t.home, "logs")).includes("token=********"), "the logs were read");
  } finally {
    await t.close();
  }
});

// --- 9: gc ---------------------------------------------------------------------------------------

Deno.test("gc keeps history.versions versions and removes envs no kept version uses; --dry-run removes nothing", async () => {
  const t = new TestHome();
  try {
    const dir = t.project("keeper", {
      "main.sh": "#!/bin/bash\necho one\n",
      "prisn.toml": "[history]\nversions = 2\n",
    });
    const versions: string[] = [];
    for (const n of ["one", "two", "three", "four"]) {
      Deno.writeTextFileSync(join(dir, "main.sh"), `#!/bin/bash\necho ${n}\n`);
      const out = await t.ok("deploy", dir);
      versions.push(versionOf(out));
      await runLog(t, "keeper", versions.at(-1));
    }
    const folder = join(t.home, "deployments", "default", "keeper");
    assert.deepEqual(list(folder, "v-"), [...versions].sort());

    const dry = await t.json<{ versions: string[]; envs: string[] }>("gc", "--dry-run");
    assert.deepEqual(dry.versions.sort(), versions.slice(0, 2).map((v) => `keeper/${v}`).sort());
    assert.deepEqual(list(folder, "v-"), [...versions].sort(), "--dry-run removes no folder");
    assert.equal((await t.json<HistoryRow[]>("history", "keeper")).length, 4);

    const done = await t.ok("gc");
    assert.match(done, /^removed 2 version\(s\)/m);
    assert.deepEqual(list(folder, "v-"), versions.slice(2).sort(), "the 2 oldest folders went");
    const history = await t.json<HistoryRow[]>("history", "keeper");
    assert.deepEqual(history.map((h) => h.version), [versions[3], versions[2]]);
    assert.equal(history[0].current, true);
    assert.match(
      await t.ok("rollback", "keeper"),
      new RegExp(versions[2]),
      "rollback still works",
    );
  } finally {
    await t.close();
  }
});

Deno.test({
  name: "gc removes the env of requirements no kept version uses",
  ignore: !HAS_PYTHON,
  async fn() {
    const t = new TestHome();
    try {
      const dir = t.project("pyenvs", {
        "main.py": "import greet\nprint('greet is', greet.VALUE)\n",
        "requirements.txt": "greet==1.0\n",
        "prisn.toml": "[history]\nversions = 1\n",
      });
      await addWheel(dir, await greetWheel(t.dir, "1.0", "first"));
      const envX = preparedEnv(await t.ok("deploy", dir))!;
      assert.match(await runLog(t, "pyenvs"), /greet is first$/m);

      await Deno.remove(join(dir, "wheels"), { recursive: true });
      await addWheel(dir, await greetWheel(t.dir, "2.0", "second"));
      Deno.writeTextFileSync(join(dir, "requirements.txt"), "greet==2.0\n");
      const out = await t.ok("deploy", dir);
      const envY = preparedEnv(out)!;
      assert.notEqual(envY, envX);
      assert.match(await runLog(t, "pyenvs", versionOf(out)), /greet is second$/m);
      const envs = join(t.home, "envs");
      assert.deepEqual(list(envs, "python3-"), [envX, envY].sort());

      const dry = await t.json<{ versions: string[]; envs: string[] }>("gc", "--dry-run");
      assert.deepEqual(dry.envs, [envX]);
      assert.equal(dry.versions.length, 1);
      assert.deepEqual(list(envs, "python3-"), [envX, envY].sort(), "--dry-run removes no env");

      const done = await t.json<{ versions: string[]; envs: string[] }>("gc");
      assert.deepEqual(done.envs, [envX]);
      assert.deepEqual(list(envs, "python3-"), [envY], "env X is gone, env Y stays");
      assert.equal((await t.json<HistoryRow[]>("history", "pyenvs")).length, 1);

      // The kept version still runs with its env.
      await t.ok("run", "pyenvs");
      await waitFor(async () => {
        const runs = await t.json<RunRecord[]>("get", "jobs", "pyenvs", "--limit", "50");
        return runs.filter((r) => r.status === "completed").length >= 3;
      }, { timeoutMs: 30_000, what: "a manual run after gc" });
      assert.match(await t.ok("logs", "pyenvs", "--run", "latest"), /greet is second$/m);
    } finally {
      await t.close();
    }
  },
});

Deno.test({
  name:
    "gc keeps rollback targets: a failed version does not take one of the history.versions slots",

  async fn() {
    const t = new TestHome();
    try {
      const dir = t.project("keeper", {
        "main.sh": "#!/bin/bash\necho one\n",
        "prisn.toml": "[history]\nversions = 2\n",
      });
      const first = versionOf(await t.ok("deploy", dir));
      Deno.writeTextFileSync(join(dir, "main.sh"), "#!/bin/bash\necho two\n");
      const second = versionOf(await t.ok("deploy", dir));
      Deno.writeTextFileSync(
        join(dir, "prisn.toml"),
        'runtime = "python3.99"\n[history]\nversions = 2\n',
      );
      assertOneLineError(await t.cli("deploy", dir), /python3\.99/, "missing interpreter");

      await t.ok("gc");
      const history = await t.json<HistoryRow[]>("history", "keeper");
      assert.deepEqual(
        history.map((h) => h.version),
        [second, first],
        "the current version and its rollback target are what is kept",
      );
      assert.match(await t.ok("rollback", "keeper"), new RegExp(first));
    } finally {
      await t.close();
    }
  },
});

Deno.test({
  name: "a first deploy that fails at Prepare leaves no version folder behind",

  async fn() {
    const t = new TestHome();
    try {
      const dir = t.project("firstfail", {
        "main.sh": "#!/bin/bash\necho hi\n",
        "prisn.toml": 'runtime = "python3.99"\n',
      });
      assertOneLineError(await t.cli("deploy", dir), /python3\.99/, "missing interpreter");
      assert.deepEqual(await t.json("ls"), []);
      await t.ok("gc");
      assert.deepEqual(list(join(t.home, "deployments", "default")), [], "no folder left");
    } finally {
      await t.close();
    }
  },
});

Deno.test({
  name:
    "a deploy's Prepare line says whether the env was built or reused, and a failed install shows pip's output tail",

  async fn() {
    const t = new TestHome();
    try {
      const dir = t.project("said", {
        "main.py": "import greet\nprint(greet.VALUE)\n",
        "requirements.txt": "greet==1.0\n",
      });
      await addWheel(dir, await greetWheel(t.dir, "1.0", "said"));
      assert.match(await t.ok("deploy", dir), /^Prepare\s.*env python3-[0-9a-f]{12} \(built/m);
      Deno.writeTextFileSync(join(dir, "main.py"), "import greet\nprint('again', greet.VALUE)\n");
      assert.match(await t.ok("deploy", dir), /^Prepare\s.*env python3-[0-9a-f]{12} \(reused\)/m);

      Deno.writeTextFileSync(join(dir, "requirements.txt"), "greet==1.0\nabsent-pkg==1.0\n");
      const r = await t.cli("deploy", dir);
      assertOneLineError(r, /pip install failed/, "failing pip install");
      assert.match(r.stdout, /Could not find a version that satisfies the requirement absent-pkg/);
    } finally {
      await t.close();
    }
  },
});

// --- 10: deno ------------------------------------------------------------------------------------

Deno.test("a Deno entrypoint (main.ts) runs with the host's deno", async () => {
  const t = new TestHome();
  try {
    const dir = t.project("denojob", {
      "main.ts": 'import { shout } from "./lib.ts";\n' +
        "const n: number = 21 * 2;\nconsole.log(shout(`deno ${Deno.version.deno} says ${n}`));\n",
      "lib.ts": "export function shout(s: string): string {\n  return s.toUpperCase();\n}\n",
    });
    const out = await t.ok("deploy", dir, "--entrypoint", "main.ts");
    assert.match(out, /^Prepare\s+deno \d+\.\d+\.\d+/m);
    assert.match(await runLog(t, "denojob"), /DENO \d+\.\d+\.\d+\S* SAYS 42$/m);
    const d = await t.json<Detail>("get", "denojob");
    assert.equal(d.runtime, "deno");
    assert.match(d.interpreter ?? "", /deno \d+\.\d+\.\d+/);
    assert.equal(d.envs, undefined, "deno needs no env");
  } finally {
    await t.close();
  }
});
