import assert from "node:assert/strict";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import type { StatusView } from "../../runtime/api_types.ts";
import { buildWheel } from "../fixtures/envs_wheel.ts";
import { makeTestRepo } from "../fixtures/git_repos.ts";
import {
  alive,
  fill,
  freePort,
  httpGet,
  killProcessesUnder,
  mountTmpfs,
  processesUnder,
  Scope,
  TestHome,
  waitFor,
} from "../_helpers.ts";

const CHATTY = `import http.server, os, sys, threading, time
def chatter():
    i = 0
    while True:
        i += 1
        sys.stdout.write(f"chatter {i} " + "x" * 400 + "\\n")
        sys.stdout.flush()
        time.sleep(0.005)
threading.Thread(target=chatter, daemon=True).start()
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(b"alive")
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
`;

/**
 * Runs `fn` with a test home (test hooks on) on a tmpfs of `size`; afterwards stops what ran on it
 * and unmounts it. Prints why and skips `fn` where it cannot mount (not root).
 */
async function onTmpfsHome(size: string, fn: (t: TestHome, scope: Scope) => Promise<void>) {
  const t = new TestHome({ env: { PRISN_TEST_HOOKS: "1" } });
  const scope = new Scope();
  scope.defer(() => t.close());
  try {
    const why = await mountTmpfs(t.home, size);
    if (why) {
      console.log(`skipped: ${why}`);
      return;
    }
    scope.defer(async () => {
      await t.cli("agent", "stop").catch(() => {});
      const pid = t.agentPid();
      if (pid && alive(pid)) Deno.kill(pid, "SIGKILL");
      await killProcessesUnder(t.home); // before the unmount hides where they run
      await new Deno.Command("umount", { args: ["-l", t.home] }).output();
    });
    await fn(t, scope);
  } finally {
    await scope.close();
  }
}

/**
 * Starts `prisn deploy ARGS` held after `point` (the PRISN_TEST_HOOKS hook in runtime/deploy.ts)
 * and waits until it holds there; `release()` lets it go on and resolves with how it ended.
 */
async function heldDeploy(t: TestHome, scope: Scope, point: string, ...args: string[]) {
  const hold = join(t.home, "state", "test-hold-after");
  await Deno.writeTextFile(hold, point);
  await Deno.remove(join(t.home, "state", "test-held")).catch(() => {});
  const cli = t.spawn("deploy", ...args);
  const output = cli.output();
  scope.defer(async () => {
    try {
      cli.kill("SIGKILL");
    } catch { /* ended */ }
    await output.catch(() => {});
  });
  await waitFor(() => Deno.stat(join(t.home, "state", "test-held")).then(() => true), {
    what: `the deploy to hold after ${point}`,
    timeoutMs: 30_000,
  });
  return {
    async release(): Promise<{ code: number; stderr: string }> {
      await Deno.remove(hold);
      const out = await output;
      return { code: out.code, stderr: new TextDecoder().decode(out.stderr).trim() };
    },
  };
}

Deno.test({
  name:
    "a full disk: the agent and its replicas keep running, status says since when, writes are retried and logging resumes once space is back",
  sanitizeResources: false,
  fn: () =>
    onTmpfsHome("24m", async (t) => {
      const port = freePort();
      const chatty = t.project("chatty", { "main.py": CHATTY });
      await t.ok("deploy", chatty, "--port", String(port), "--replicas", "1");
      const flappy = t.project("flappy", {
        "main.sh": "#!/bin/bash\necho up; sleep 0.3; exit 3\n",
      });
      await t.ok("deploy", flappy, "--replicas", "1", "--type", "service");
      const ticker = t.project("ticker", { "main.sh": "#!/bin/bash\necho tick\n" });
      await t.ok("deploy", ticker, "--schedule", "* * * * * *");
      await waitFor(() => httpGet(port).then((b) => b === "alive"), { what: "chatty to serve" });
      const first = t.agentPid()!;

      const filler = join(t.home, "filler");
      const filled = await fill(filler);
      assert.ok(filled > 1024 * 1024, `filled ${filled} bytes`);
      const full = await waitFor(async () => {
        const s = await t.json<StatusView>("status");
        return s.disk?.fullSince !== undefined && s.disk.failedWrites > 0 ? s : undefined;
      }, { what: "status to say the disk is full", timeoutMs: 20_000 });
      assert.match(
        await t.ok("status"),
        /^DISK FULL since \S+Z \(.* ago\): \d+ write\(s\) failed/m,
      );
      // Full for a while: the agent, the chatty replica and the crash loop all go on.
      for (let i = 0; i < 6; i++) {
        assert.equal(await httpGet(port), "alive", "chatty answers on a full disk");
        await new Promise((r) => setTimeout(r, 1000));
      }
      assert.ok(alive(first), "the agent is alive");
      const during = await t.json<StatusView>("status");
      assert.ok(during.disk!.failedWrites > full.disk!.failedWrites, "failed writes are counted");
      const flaps = await t.json<{ replicas: { items: { restarts: number }[] } }>("get", "flappy");
      assert.ok(
        flaps.replicas.items[0]?.restarts > 0,
        `the crash loop went on: ${JSON.stringify(flaps)}`,
      );

      // A new version cannot be stored: the deploy fails in one line, chatty stays as it was.
      await Deno.writeFile(join(chatty, "data.bin"), crypto.getRandomValues(new Uint8Array(65536)));
      const refused = await t.cli("deploy", chatty, "--port", String(port), "--replicas", "1");
      assert.notEqual(refused.code, 0);
      assert.match(
        refused.stderr.trim(),
        /^prisn: cannot (store|record) v-[0-9a-f]{8}: the disk under PRISN_HOME is full; free some space and deploy again \(nothing changed\)$/,
      );
      assert.equal((await t.json<{ version: string }[]>("history", "chatty")).length, 1);
      assert.equal(await httpGet(port), "alive", "the running version is untouched");

      // An agent restarted while the disk is still full starts, and brings chatty back.
      await t.ok("agent", "stop");
      const restarted = await t.cli("status");
      assert.equal(restarted.code, 0, `the agent starts on a full disk: ${restarted.stderr}`);
      await waitFor(() => httpGet(port).then((b) => b === "alive"), {
        what: "chatty to serve again after the restart",
        timeoutMs: 20_000,
      });
      const agent = t.agentPid()!;
      const before = await t.json<{ replicas: { items: { restarts: number }[] } }>("get", "chatty");

      // Space back: held records are written, logging resumes within seconds.
      await Deno.remove(filler);
      const freed = Date.now();
      await waitFor(
        async () => (await t.json<StatusView>("status")).disk?.fullSince === undefined,
        {
          what: "status to stop saying the disk is full",
          timeoutMs: 10_000,
        },
      );
      const resumed = await waitFor(async () => {
        const lines = (await t.ok("logs", "chatty-0", "--tail", "3000")).split("\n");
        const after = lines.filter((l) =>
          /chatter \d+/.test(l) && Date.parse(l.slice(0, 24)) > freed
        );
        const note = lines.find((l) => / \[prisn\] \d+ line\(s\) .* not logged from /.test(l));
        return after.length > 0 && note ? { after, note } : undefined;
      }, { what: "chatty's lines to be logged again", timeoutMs: 10_000 });
      assert.match(resumed.note, /No space left on device|os error 28/);
      assert.equal(await httpGet(port), "alive");
      // A run started since: counting runs would not do, the ticks held in memory while the disk
      // was full went with the agent it restarted.
      await waitFor(
        async () =>
          (await t.json<{ startedAt?: number }[]>("get", "jobs", "ticker", "--limit", "1000"))
            .some((r) => (r.startedAt ?? 0) > freed),
        // 20 s as the other waits here: under the parallel suite 10 s once ran out (CI).
        { what: "the every-second cronjob to run again", timeoutMs: 20_000 },
      ).catch(async (e) => {
        // What the cronjob went through, for a failure that is not the test's timing.
        const jobs = await t.cli("get", "jobs", "ticker", "--limit", "8");
        const events = await t.cli("get", "ticker");
        throw new Error(`${e.message}\n${jobs.stdout}\n${events.stdout}`);
      });
      const after = await t.json<{ replicas: { items: { restarts: number }[] } }>("get", "chatty");
      assert.equal(
        after.replicas.items[0].restarts,
        before.replicas.items[0].restarts,
        "chatty never restarted",
      );
      assert.equal(t.agentPid(), agent, "the same agent throughout");
      const db = new DatabaseSync(join(t.home, "prisn.db"), { readOnly: true });
      try {
        assert.equal(db.prepare("PRAGMA integrity_check").get()?.integrity_check, "ok");
      } finally {
        db.close();
      }
    }),
});

const SERVER = (tag: string) =>
  `import http.server, os
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(b"${tag}")
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
`;

/** Deploys a service answering "one" on a free port; its folder, port and version. */
async function deployOne(t: TestHome) {
  const port = freePort();
  const dir = t.project("api", { "main.py": SERVER("one") });
  const first = /v-[0-9a-f]{8}/.exec(await t.ok("deploy", dir, "--port", String(port)))![0];
  await waitFor(() => httpGet(port).then((b) => b === "one"), { what: "v1 to serve" });
  return { port, dir, first };
}

Deno.test({
  name:
    "a disk that fills between a rollout and its activation record: the old version serves again (a first deploy, ready or not, leaves nothing), the deploy fails in one line, a restart keeps the old one; rollback, scale and delete are refused with nothing changed",
  sanitizeResources: false,
  fn: () =>
    onTmpfsHome("16m", async (t, scope) => {
      const { port, dir, first } = await deployOne(t);

      await Deno.writeTextFile(join(dir, "main.py"), SERVER("two"));
      const deploy = await heldDeploy(t, scope, "RolledOut", dir, "--port", String(port));
      assert.equal(await httpGet(port), "two", "the new version serves before its activation");
      const filler = join(t.home, "filler");
      await fill(filler);
      const { code, stderr } = await deploy.release(); // it goes on, onto a full disk
      assert.notEqual(code, 0, `the deploy fails: ${stderr}`);
      assert.equal(
        stderr,
        `prisn: cannot activate ${
          /v-[0-9a-f]{8}/.exec(stderr)?.[0]
        }: the disk under PRISN_HOME is full; free some space and deploy again (${first} serves again)`,
      );
      assert.equal(await httpGet(port), "one", "the old version serves again");
      const d = await t.json<{ version: string; replicas: { items: { version: string }[] } }>(
        "get",
        "api",
      );
      assert.equal(d.version, first);
      assert.deepEqual(d.replicas.items.map((r) => r.version), [first], "no replica of the new");

      // The other changes on the still full disk: each refused in one line, nothing changed.
      const second = /v-[0-9a-f]{8}/.exec(stderr)![0];
      const rolled = await t.cli("rollback", "api", second);
      assert.equal(
        rolled.stderr.trim(),
        `prisn: cannot roll api back to ${second}: the disk under PRISN_HOME is full; free some ` +
          `space and try again (${first} stays active)`,
      );
      const refused = "prisn: the disk under PRISN_HOME is full: free some space and try again " +
        "(nothing changed)";
      assert.equal((await t.cli("scale", "api", "2")).stderr.trim(), refused);
      assert.equal((await t.cli("delete", "api")).stderr.trim(), refused);
      assert.equal(await httpGet(port), "one", "still the old version, still deployed");
      const still = await t.json<typeof d>("get", "api");
      assert.equal(still.version, first);
      assert.equal(still.replicas.items.length, 1);

      // Space back, the agent restarted: still the old version (the records said so all along),
      // and the same deploy now goes through.
      await Deno.remove(filler);
      await t.ok("agent", "stop");
      await t.ok("status"); // starts an agent
      await waitFor(() => httpGet(port).then((b) => b === "one"), {
        what: "the old version after a restart",
        timeoutMs: 20_000,
      });
      assert.equal((await t.json<{ version: string }>("get", "api")).version, first);
      await t.ok("deploy", dir, "--port", String(port));
      assert.equal(await httpGet(port), "two");

      // A first deploy whose activation cannot be recorded stops, and nothing is left of it:
      // one that serves, and one that never gets ready (once recorded it would stay, restarting).
      const firstOnFullDisk = async (name: string, files: Record<string, string>) => {
        const itsPort = freePort();
        const held = await heldDeploy(
          t,
          scope,
          "RolledOut",
          t.project(name, files),
          "--port",
          String(itsPort),
        );
        await fill(filler);
        const { stderr } = await held.release();
        assert.equal(
          stderr.replace(/v-[0-9a-f]{8}/, "v-…"),
          `prisn: cannot activate v-…: the disk under PRISN_HOME is full; free some space and ` +
            `deploy again (${name} is not deployed)`,
        );
        assert.equal((await t.cli("get", name)).code, 1, "not deployed");
        assert.equal(await httpGet(itsPort), undefined, "its replica stopped");
        assert.deepEqual(await processesUnder(join(t.home, "deployments", "default", name)), []);
        assert.equal(await httpGet(port), "two", "the other service untouched");
        await Deno.remove(filler);
      };
      await firstOnFullDisk("fresh", { "main.py": SERVER("fresh") });
      await firstOnFullDisk("slow", {
        "main.py": "import time\ntime.sleep(3600)\n",
        "prisn.toml": 'readiness_timeout = "2s"\n',
      });
    }),
});

/** Every name under `dir`, relative, folders included. */
async function tree(dir: string, prefix = ""): Promise<string[]> {
  const names: string[] = [];
  for await (const e of Deno.readDir(dir)) {
    names.push(prefix + e.name);
    if (e.isDirectory) names.push(...await tree(join(dir, e.name), `${prefix}${e.name}/`));
  }
  return names;
}

Deno.test({
  name:
    "a full disk at an env build and at a git fetch, each on its own: one line, no half env or checkout left, the running version untouched, and both work once space is back",
  sanitizeResources: false,
  fn: () =>
    onTmpfsHome("64m", async (t, scope) => {
      const { port, dir, first } = await deployOne(t);
      const filler = join(t.home, "filler");
      const envs = join(t.home, "envs");

      // An env build (venv and pip into the env cache) on a full disk: the deploy is held after
      // Record (stored and recorded while there was room), then the disk fills.
      await Deno.writeTextFile(
        join(dir, "main.py"),
        SERVER("two").replace("import http.server, os", "import http.server, os, greet"),
      );
      await Deno.writeTextFile(join(dir, "requirements.txt"), "greet\n");
      await Deno.mkdir(join(dir, "wheels"));
      await buildWheel(join(dir, "wheels"), { name: "greet" });
      const deploy = await heldDeploy(t, scope, "Record", dir, "--port", String(port));
      await fill(filler);
      const { code, stderr } = await deploy.release();
      assert.notEqual(code, 0);
      assert.match(
        stderr,
        new RegExp(
          `^prisn: cannot build the environment of v-[0-9a-f]{8}: the disk under PRISN_HOME is ` +
            `full; free some space and deploy again \\(${first} runs as before\\)$`,
        ),
      );
      assert.deepEqual(
        (await tree(envs)).filter((n) => !n.startsWith(".locks")),
        [],
        "no half-built env is left to be taken for a built one",
      );
      assert.equal(await httpGet(port), "one", "the running version is untouched");

      // A git fetch on a full disk: one line, no half checkout left in state/.
      const repo = await makeTestRepo(await Deno.makeTempDir({ prefix: "prisn-disk-git-" }));
      scope.defer(() => Deno.remove(repo.root, { recursive: true }));
      const url = `file://${repo.bare}`;
      const fetched = await t.cli("deploy", url, "--name", "fromgit", "--type", "job");
      assert.notEqual(fetched.code, 0);
      assert.equal(
        fetched.stderr.trim(),
        `prisn: cannot fetch ${url}: the disk under PRISN_HOME is full; free some space and ` +
          `deploy again (nothing changed)`,
      );
      assert.deepEqual(
        (await tree(join(t.home, "state"))).filter((n) => n.startsWith("git-")),
        [],
        "no half checkout left",
      );
      assert.equal((await t.cli("get", "fromgit")).code, 1, "nothing deployed");
      assert.equal(await httpGet(port), "one");

      // Space back: both deploys go through, the env is built whole, and nothing is left over.
      await Deno.remove(filler);
      await t.ok("deploy", dir, "--port", String(port));
      await waitFor(() => httpGet(port).then((b) => b === "two"), { what: "v2 with its env" });
      const built2 = (await tree(envs)).filter((n) => /^python3-[0-9a-f]{12}$/.test(n));
      assert.equal(built2.length, 1);
      await Deno.stat(join(envs, built2[0], ".prisn-env.json"));
      await t.ok("deploy", url, "--name", "fromgit", "--type", "job");
      const metadata = JSON.parse(
        await Deno.readTextFile(join(t.home, "deployments", "default", "api", "metadata.json")),
      );
      assert.equal(metadata.version, (await t.json<{ version: string }>("get", "api")).version);
      const leftovers = (await tree(join(t.home, "deployments"))).filter((n) =>
        /(metadata\.json|current)\.[0-9a-f]{8}$/.test(n)
      );
      assert.deepEqual(leftovers, [], "no temp metadata or link files");
    }),
});
