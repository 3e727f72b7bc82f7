/**
 * Everyday deploys end to end, as users write them: the real CLI and agent in a temp PRISN_HOME,
 * real npm installs (semver, which has no dependencies of its own) and real venvs from a wheel
 * made here. Dependencies found by the files present whatever the entrypoint, `[deps]`, a
 * `command = [...]` entrypoint, replica lifetimes as runs, logs by replica and run, and failures
 * that say why. Everything listens on loopback only and is stopped in `finally`.
 *
 * @module
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import type { RunRecord } from "../../core/types.ts";
import { buildWheel } from "../fixtures/envs_wheel.ts";
import {
  assertOneLineError,
  finished,
  freePort,
  hasCommand,
  httpGet,
  TestHome,
  waitFor,
} from "../_helpers.ts";

const HAS_TOOLS = await hasCommand("python3", ["-c", "import venv, ensurepip, zipfile"]) &&
  await hasCommand("node") && await hasCommand("npm");
if (!HAS_TOOLS) console.log("everyday_test: skipping: needs python3 with venv, node and npm");

const SEMVER = JSON.stringify({
  name: "tools",
  version: "1.0.0",
  private: true,
  dependencies: { semver: "7.6.3" },
});

/** prisn.toml lines that keep restarts and stops short in tests. */
const QUICK = `stop_grace = "2s"\ndrain_grace = "0s"\n[restart]\nbackoff_initial = "200ms"\n`;

interface Detail {
  envs?: string[];
  command?: string[];
  runtime?: string;
  lastRun?: { id: string; status: string; exitCode?: number; lastError?: string };
}

/** The deployment's finished run (the newest), once there is one. */
async function finishedRun(t: TestHome, name: string): Promise<RunRecord> {
  return await waitFor(async () => {
    const runs = await t.json<RunRecord[]>("get", "jobs", name);
    return runs.find(finished);
  }, { timeoutMs: 60_000, what: `a finished run of ${name}` });
}

/** The Prepare line of a deploy's output. */
function prepareLine(out: string): string {
  return /^Prepare\s+(.*)$/m.exec(out)?.[1] ?? "";
}

Deno.test({
  name:
    "dependencies by the files present: a bash entrypoint runs a tool from node_modules/.bin, a python service calls a node CLI, [deps] switches one off",
  ignore: !HAS_TOOLS,
  async fn(ctx) {
    const t = new TestHome();
    try {
      let nodeEnv = "";
      await ctx.step(
        "main.sh finds semver from package.json on PATH; NODE_PATH is set",
        async () => {
          const dir = t.project("shtool", {
            "package.json": SEMVER,
            "main.sh": '#!/bin/bash\nset -e\necho "tool: $(command -v semver)"\n' +
              'echo "NODE_PATH=$NODE_PATH"\necho "next: $(semver 1.2.3 -i minor)"\n',
          });
          const started = performance.now();
          const out = await t.ok("deploy", dir);
          const coldMs = performance.now() - started;
          nodeEnv = /node env (node-[0-9a-f]{12}) \(built in /.exec(prepareLine(out))?.[1] ?? "";
          assert.ok(nodeEnv, `Prepare says it built the node env:\n${out}`);
          assert.match(prepareLine(out), /^bash \d+\.\d+\.\d+, node env node-/);
          const run = await finishedRun(t, "shtool");
          const log = await t.ok("logs", "shtool", "--run", run.id);
          assert.equal(run.status, "completed", log);
          assert.match(
            log,
            new RegExp(`tool: ${t.home}/envs/${nodeEnv}/node_modules/\\.bin/semver$`, "m"),
          );
          assert.match(log, new RegExp(`NODE_PATH=${t.home}/envs/${nodeEnv}/node_modules$`, "m"));
          assert.match(log, /next: 1\.3\.0$/m);

          Deno.writeTextFileSync(join(dir, "main.sh"), "#!/bin/bash\nsemver 2.0.0 -i major\n");
          const again = performance.now();
          const warm = await t.ok("deploy", dir);
          const warmMs = performance.now() - again;
          assert.match(prepareLine(warm), new RegExp(`node env ${nodeEnv} \\(reused\\)`));
          console.log(
            `  package.json folder: fresh env ${coldMs.toFixed(0)} ms, cached env ${
              warmMs.toFixed(0)
            } ms`,
          );
        },
      );

      await ctx.step(
        "a python service imports its wheel and shells out to the node CLI",
        async () => {
          const port = freePort();
          const dir = t.project("pynode", {
            "requirements.txt": "greet==1.0\n",
            "package.json": SEMVER,
            "prisn.toml": `port = ${port}\n${QUICK}`,
            "main.py": `import http.server, os, subprocess
import greet

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        bumped = subprocess.run(["semver", "0.9.0", "-i", "minor"], capture_output=True, text=True).stdout.strip()
        body = f"{greet.VALUE} {bumped} {os.environ['VIRTUAL_ENV']}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
`,
          });
          await Deno.mkdir(join(dir, "wheels"));
          await buildWheel(join(dir, "wheels"), { name: "greet", value: "from-the-wheel" });
          const out = await t.ok("deploy", dir);
          const line = prepareLine(out);
          assert.match(line, /^python3 \S+, python env python3-[0-9a-f]{12} \(built in /, out);
          assert.match(
            line,
            new RegExp(`, node env ${nodeEnv} \\(reused\\)$`),
            "same package.json",
          );
          const body = await waitFor(() => httpGet(port), { timeoutMs: 30_000, what: "pynode" });
          const pythonEnv = /python env (python3-[0-9a-f]{12})/.exec(line)![1];
          assert.equal(body, `from-the-wheel 0.10.0 ${t.home}/envs/${pythonEnv}`);
          const d = await t.json<Detail>("get", "pynode");
          assert.deepEqual(d.envs, [pythonEnv, nodeEnv], "get lists both envs, python's first");
        },
      );

      await ctx.step(
        "[deps] node = false installs nothing: the tool is then not found",
        async () => {
          const dir = t.project("nodeps", {
            "package.json": SEMVER,
            "prisn.toml": "[deps]\nnode = false\n",
            "main.sh": "#!/bin/bash\nsemver 1.0.0\n",
          });
          const out = await t.ok("deploy", dir);
          assert.match(prepareLine(out), /node dependencies skipped \(\[deps\] node = false\)/);
          const run = await finishedRun(t, "nodeps");
          assert.equal(run.status, "failed");
          assert.equal(run.exitCode, 127);
          assert.match(run.lastError ?? "", /semver: command not found/);
          const get = await t.ok("get", "nodeps");
          assert.match(
            get,
            new RegExp(
              `^Last run:\\s+${run.id} failed \\(exit 127\\): .*semver: command not found$`,
              "m",
            ),
            "get NAME's Last run says exit code and the last stderr line",
          );
        },
      );

      await ctx.step(
        "[deps] names a requirements file elsewhere; python on PATH is the venv's",
        async () => {
          const dir = t.project("named", {
            "reqs/prod.txt": "greet==1.0\n",
            "prisn.toml": '[deps]\npython = "reqs/prod.txt"\n',
            "main.sh":
              '#!/bin/bash\npython -c "import greet, sys; print(greet.VALUE, sys.prefix)"\n' +
              'echo "VIRTUAL_ENV=$VIRTUAL_ENV"\n',
          });
          await Deno.mkdir(join(dir, "wheels"));
          await buildWheel(join(dir, "wheels"), { name: "greet", value: "named-file" });
          const out = await t.ok("deploy", dir);
          const env = /python env (python3-[0-9a-f]{12})/.exec(prepareLine(out))?.[1];
          assert.ok(env, out);
          const run = await finishedRun(t, "named");
          const log = await t.ok("logs", run.id);
          assert.equal(run.status, "completed", log);
          assert.match(log, new RegExp(`named-file ${t.home}/envs/${env}$`, "m"));
          assert.match(log, new RegExp(`VIRTUAL_ENV=${t.home}/envs/${env}$`, "m"));
        },
      );

      await ctx.step(
        "bad [deps] and command values: one line, non-zero, nothing deployed",
        async () => {
          const cases: Array<[Record<string, string>, RegExp]> = [
            [
              { "prisn.toml": '[deps]\npython = "missing.txt"\n' },
              /^prisn: prisn\.toml: \[deps\] python names "missing\.txt", which is not in the package$/,
            ],
            [
              { "prisn.toml": 'command = "python3 -m http.server"\n' },
              /^prisn: prisn\.toml:1: command must be a list of strings like .*without a shell\) \(got "python3 -m http\.server"\)$/,
            ],
            [
              { "prisn.toml": 'command = ["no-such-program-here", "x"]\n' },
              /^prisn: command "no-such-program-here" was not found on PATH/,
            ],
            [
              { "prisn.toml": 'command = ["python3", "-c", "print(1)", "$PORT"]\n' },
              /^prisn: command refers to \$PORT, which a job does not get: PORT is for services$/,
            ],
            [
              { "prisn.toml": 'command = ["python3", "$NOT_SET_ANYWHERE"]\n' },
              /^prisn: command refers to \$NOT_SET_ANYWHERE, which is not set: set it in \[env\] or with --env NOT_SET_ANYWHERE=VALUE$/,
            ],
          ];
          for (const [i, [files, pattern]] of cases.entries()) {
            const dir = t.project(`bad${i}`, { "main.sh": "#!/bin/bash\necho hi\n", ...files });
            assertOneLineError(await t.cli("deploy", dir), pattern, `case ${i}`);
            const r = await t.cli("get", `bad${i}`);
            assert.notEqual(r.code, 0, `case ${i}: nothing was deployed`);
          }
        },
      );
    } finally {
      await t.close();
    }
  },
});

Deno.test({
  name:
    "a command = [...] service with $PORT, its replica runs across a restart in get jobs, logs by replica, run and merged, and a deploy that fails says why",
  ignore: !HAS_TOOLS,
  async fn(ctx) {
    const t = new TestHome();
    try {
      const port = freePort();
      const flag = join(t.dir, "crashed-once");
      const dir = t.project("web", {
        "prisn.toml":
          `command = ["python3", "server.py", "--port", "$PORT", "--flag", "${flag}"]\n` +
          `port = ${port}\n${QUICK}`,
        // The first start crashes (exit 3) after saying why; later ones serve.
        "server.py": `import http.server, os, sys
port, flag = int(sys.argv[2]), sys.argv[4]
if not os.path.exists(flag):
    open(flag, "w").close()
    print("first start: giving up", file=sys.stderr, flush=True)
    sys.exit(3)
print(f"serving on {port}", flush=True)
http.server.HTTPServer(("127.0.0.1", port), http.server.SimpleHTTPRequestHandler).serve_forever()
`,
        "index.html": "hello from command\n",
      });

      let runs: RunRecord[] = [];
      await ctx.step(
        "the command serves on $PORT after one crash; get jobs lists both runs",
        async () => {
          const out = await t.cli("deploy", dir);
          // The first replica crashed before it was ready: the deploy says so, and it keeps restarting.
          assert.match(out.stdout, /^Prepare\s+python3 \S+, no dependencies$/m);
          assert.equal(
            await waitFor(() => httpGet(port), { timeoutMs: 30_000, what: "the command service" }),
            "hello from command\n",
          );
          runs = await t.json<RunRecord[]>("get", "jobs", "web");
          assert.deepEqual(
            runs.map((r) => [r.replica, r.status, r.trigger, r.exitCode, r.lastError]),
            [
              ["web-0", "running", "restart", undefined, undefined],
              ["web-0", "failed", "start", 3, "first start: giving up"],
            ],
          );
          const table = await t.ok("get", "jobs");
          assert.match(
            table,
            new RegExp(`^${runs[0].id}\\s+web-0\\s+running \\(service\\)\\s`, "m"),
          );
          assert.match(
            table,
            new RegExp(`^${runs[1].id}\\s+web-0\\s+failed \\(service\\)\\s+.*\\s3$`, "m"),
          );
          assert.deepEqual(
            (await t.json<RunRecord[]>("get", "jobs", "web-0")).map((r) => r.id),
            runs.map((r) => r.id),
            "get jobs web-0 filters one replica",
          );
          const d = await t.json<Detail>("get", "web");
          assert.deepEqual(d.command, ["python3", "server.py", "--port", "$PORT", "--flag", flag]);
          assert.equal(d.runtime, "python3");
        },
      );

      await ctx.step("logs web-0, logs run-…, and the merged view tagged by replica", async () => {
        await httpGet(port, "/index.html");
        const replica = await waitFor(async () => {
          const text = await t.ok("logs", "web-0");
          return /GET \/index\.html/.test(text) ? text : undefined;
        }, { what: "the request line in logs web-0" });
        assert.match(replica, /^\S+Z \[err\] first start: giving up$/m);
        assert.match(replica, /^\S+Z serving on \d+$/m, "on the replica's own PORT");

        const first = await t.ok("logs", runs[1].id);
        assert.match(first, /first start: giving up/);
        assert.doesNotMatch(first, /serving on/, "one run's lines only");
        const second = await t.ok("logs", runs[0].id);
        assert.match(second, /serving on/);
        assert.doesNotMatch(second, /giving up/);

        const merged = (await t.ok("logs", "web")).trim().split("\n");
        assert.ok(merged.length >= 3, merged.join("\n"));
        for (const line of merged) assert.match(line, /^\[web-0\] \S+Z /, "each line is tagged");

        const missing = await t.cli("logs", "web-7");
        assertOneLineError(missing, /^prisn: web has no replica 7: see prisn get web$/, "web-7");
        const noRun = await t.cli("logs", "run-00000000");
        assertOneLineError(noRun, /^prisn: run "run-00000000" not found/, "unknown run");
      });

      await ctx.step(
        "a redeploy that never gets ready fails with the replica's last stderr line",
        async () => {
          Deno.writeTextFileSync(
            join(dir, "prisn.toml"),
            `command = ["bash", "-c", "echo booting; exec no-such-tool-here --port $PORT"]\n` +
              `port = ${port}\n${QUICK}`,
          );
          const r = await t.cli("deploy", dir);
          assertOneLineError(
            r,
            /^prisn: v-[0-9a-f]{8} never became ready \(replica web-\d exited with code 127; its last error: .*no-such-tool-here: (?:command )?not found\); v-[0-9a-f]{8} keeps serving$/,
            "a new version that never gets ready",
          );
          assert.match(r.stdout, /^Activate\s+web-\d not ready; its last stderr lines:$/m);
          assert.match(
            r.stdout,
            /^\S*bash: line 1: (?:exec: )?no-such-tool-here: (?:command )?not found$/m,
          );
          assert.equal(await httpGet(port), "hello from command\n", "the old version still serves");
        },
      );
    } finally {
      await t.close();
    }
  },
});
