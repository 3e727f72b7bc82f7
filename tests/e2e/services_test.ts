/**
 * Services end to end: the real CLI, a real agent and real replica processes in a temp
 * PRISN_HOME. Replicas behind one port through rolling deploys, rollback and scale (zero failed
 * requests), broken versions, crash-loop backoff, no orphans (grandchildren, agent kill -9
 * recovery), a taken port, OOM kills and liveness restarts. Fixtures: tests/fixtures/services/.
 *
 * @module
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { parseDuration } from "../../core/duration.ts";
import { cleanupStaleGroups, describeLimits, detectEnforcement } from "../../runtime/limits.ts";
import { cgroupRoot } from "../../runtime/resources.ts";
import type { ReplicaStatus } from "../../runtime/service.ts";
import { alive, freePort, hasCommand, TestHome, waitFor } from "../_helpers.ts";
import { assertNoFailures, body, Load, rawGet, replicasAnswering } from "./_http.ts";

const FIXTURES = new URL("../fixtures/services/", import.meta.url).pathname;
const SERVER_PY = Deno.readTextFileSync(join(FIXTURES, "server.py"));
const SERVER_JS = Deno.readTextFileSync(join(FIXTURES, "server.js"));
const GRANDCHILD_SH = Deno.readTextFileSync(join(FIXTURES, "grandchild.sh"));
const CRASH_PY = Deno.readTextFileSync(join(FIXTURES, "crash.py"));

const MiB = 1024 * 1024;
const LINUX = Deno.build.os === "linux";
const HAS_NODE = await hasCommand("node");
const HAS_PYTHON = await hasCommand("python3");
const MEMORY_LIMIT = { memoryBytes: 64 * MiB };
const ENFORCEMENT = LINUX ? await probeEnforcement() : "none";
const CGROUPS = ENFORCEMENT === "cgroup-v1" || ENFORCEMENT === "cgroup-v2";

if (!HAS_PYTHON) console.log("services_test: skipping python services: python3 not found");
if (!HAS_NODE) console.log("services_test: skipping the node service: node not found");
if (!LINUX) console.log("services_test: skipping /proc based tests: not Linux");
if (!CGROUPS) {
  console.log(
    `services_test: skipping the OOM and cgroup grandchild tests: limits would be enforced by ` +
      `${ENFORCEMENT}, not cgroups (no writable cgroup memory and cpu controllers)`,
  );
}

// --- helpers ---------------------------------------------------------------------------------

async function probeEnforcement() {
  const root = `prisn-test-services-${Deno.pid}`;
  try {
    return await detectEnforcement(MEMORY_LIMIT, { root });
  } finally {
    await cleanupStaleGroups(new Set(), { root, removeRoot: true }).catch(() => {});
  }
}

interface Detail {
  name: string;
  version: string;
  replicas: { desired: number; ready: number; items: ReplicaStatus[] };
  resources?: string;
  events: Array<{ kind: string; message: string; at: number }>;
}

interface HistoryItem {
  version: string;
  status: string;
  current: boolean;
}

function get(h: TestHome, name: string): Promise<Detail> {
  return h.json<Detail>("get", name);
}

/** Pids of live processes whose command line mentions `fragment`. */
function processesMentioning(fragment: string): number[] {
  const pids: number[] = [];
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    const pid = Number(entry.name);
    try {
      const cmdline = Deno.readTextFileSync(`/proc/${pid}/cmdline`).replaceAll("\0", " ");
      if (cmdline.includes(fragment) && alive(pid)) pids.push(pid);
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

/**
 * Stops the agent of `h` (and so everything it runs), removes the temp folder, and removes the
 * cgroups that agent created: an agent leaves its (empty) root group behind.
 */
async function closeHome(h: TestHome): Promise<void> {
  await h.close();
  if (!CGROUPS) return;
  await cleanupStaleGroups(new Set(), { root: cgroupRoot(h.home), removeRoot: true })
    .catch(() => {});
}

function events(d: Detail, pattern: RegExp): string[] {
  return d.events.filter((e) => pattern.test(`${e.kind} ${e.message}`)).map((e) => e.message);
}

function describeEvents(d: Detail): string {
  return d.events.map((e) => `${e.kind}: ${e.message}`).join(" | ");
}

/** A python http.server project whose GET / answers `message`. */
function pythonProject(h: TestHome, dir: string, message: string, toml?: string): string {
  const files: Record<string, string> = { "main.py": SERVER_PY, "message.txt": `${message}\n` };
  if (toml !== undefined) files["prisn.toml"] = toml;
  return h.project(dir, files);
}

// --- tests -----------------------------------------------------------------------------------

/**
 * A python service with 3 replicas on one port, taken through a rolling deploy of a new version,
 * scale 3→5, a rollback (5 replicas rolled) and scale 2, with a client loop running throughout.
 * `zeroFailures` asserts that not one request of the loop failed.
 */
async function pythonRollingFlow(zeroFailures: boolean): Promise<void> {
  const h = new TestHome();
  let load: Load | undefined;
  try {
    const port = freePort();
    const flags = ["--name", "web", "--port", String(port), "--replicas", "3"];
    const app = pythonProject(h, "web", "one");
    await h.ok("deploy", app, ...flags);
    const first = (await get(h, "web")).version;

    const seen = await replicasAnswering(port, 3);
    assert.deepEqual([...seen].sort(), ["web-0", "web-1", "web-2"]);

    load = new Load(port);
    await load.progressed();

    pythonProject(h, "web", "two");
    await h.ok("deploy", app, ...flags);
    const second = await get(h, "web");
    assert.notEqual(second.version, first);
    assert.ok(second.replicas.items.every((r) => r.version === second.version));
    assert.equal((await body(port))?.split(" ")[0], "two");
    await load.progressed();

    await h.ok("scale", "web", "5");
    await replicasAnswering(port, 5);
    await load.progressed();

    await h.ok("rollback", "web");
    assert.equal((await get(h, "web")).version, first);
    await load.progressed();

    await h.ok("scale", "web", "2");
    await load.progressed();
    const result = await load.stop();

    if (zeroFailures) assertNoFailures(load, result);
    else if (result.failed > 0) {
      console.log(`${result.failed} of ${result.ok + result.failed} requests failed`);
    }
    assert.deepEqual([...load.bodies].sort(), ["one", "two"]);
    for (let i = 0; i < 10; i++) assert.equal((await body(port))?.split(" ")[0], "one");
    const after = await waitFor(async () => {
      const d = await get(h, "web");
      return d.replicas.ready === 2 && d.replicas.items.length === 2 ? d : undefined;
    }, { timeoutMs: 15_000, what: "2 ready replicas after scale 2" });
    assert.equal(after.version, first);
    assert.equal(after.replicas.desired, 2);
    assert.ok(after.replicas.items.every((r) => r.version === first && r.state === "Ready"));
  } finally {
    await load?.stop();
    await closeHome(h);
  }
}

/** A node service with 3 replicas on one port through a rolling deploy, a client loop running. */
async function nodeRollingFlow(zeroFailures: boolean): Promise<void> {
  const h = new TestHome();
  let load: Load | undefined;
  try {
    const port = freePort();
    const flags = ["--name", "api", "--port", String(port), "--replicas", "3"];
    const app = h.project("api", { "main.js": SERVER_JS, "message.txt": "one\n" });
    await h.ok("deploy", app, ...flags);
    const seen = await replicasAnswering(port, 3);
    assert.deepEqual([...seen].sort(), ["api-0", "api-1", "api-2"]);

    load = new Load(port);
    await load.progressed();
    h.project("api", { "message.txt": "two\n" });
    await h.ok("deploy", app, ...flags);
    await load.progressed(20);
    const result = await load.stop();

    if (zeroFailures) assertNoFailures(load, result);
    else if (result.failed > 0) {
      console.log(`${result.failed} of ${result.ok + result.failed} requests failed`);
    }
    assert.deepEqual([...load.bodies].sort(), ["one", "two"]);
    for (let i = 0; i < 6; i++) assert.equal((await body(port))?.split(" ")[0], "two");
    const d = await get(h, "api");
    assert.equal(d.replicas.ready, 3);
    assert.ok(d.replicas.items.every((r) => r.version === d.version));
  } finally {
    await load?.stop();
    await closeHome(h);
  }
}

Deno.test({
  name: "python service: zero failed requests through deploy, scale 3→5, rollback, scale 2",
  ignore: !HAS_PYTHON,
  fn: () => pythonRollingFlow(true),
});

Deno.test({
  name: "node service: zero failed requests through a rolling deploy of 3 replicas",
  ignore: !HAS_NODE,
  fn: () => nodeRollingFlow(true),
});

Deno.test({
  name: "a new version that crashes or never listens is abandoned; the old one keeps serving",
  ignore: !HAS_PYTHON,
  async fn() {
    const h = new TestHome();
    let load: Load | undefined;
    try {
      const port = freePort();
      const toml = (extra: string) =>
        `port = ${port}\nreplicas = 2\nreadiness_timeout = "3s"\n${extra}`;
      const app = h.project("shop", {
        "server.py": SERVER_PY,
        "crash.py": CRASH_PY,
        "message.txt": "good\n",
        "prisn.toml": toml(`entrypoint = "server.py"\n`),
      });
      await h.ok("deploy", app, "--name", "shop");
      const good = (await get(h, "shop")).version;
      await replicasAnswering(port, 2);
      load = new Load(port);
      await load.progressed();

      const broken = [
        { env: 'CRASH_AFTER = "0"', why: /code 1/ }, // exits 1 at once
        { env: 'CRASH_AFTER = "600"', why: /ready/ }, // never listens: readiness timeout
      ];
      for (const { env, why } of broken) {
        h.project("shop", { "prisn.toml": toml(`entrypoint = "crash.py"\n[env]\n${env}\n`) });
        const r = await h.cli("deploy", app, "--name", "shop");
        assert.notEqual(r.code, 0, `a broken version deployed: ${r.stdout}`);
        const message = r.stderr.trim();
        assert.equal(message.split("\n").length, 1, `not one line: ${message}`);
        assert.match(message, why);

        const history = await h.json<HistoryItem[]>("history", "shop");
        const failedVersion = history.find((v) => v.version !== good && v.status === "failed");
        assert.ok(failedVersion, `no failed version in ${JSON.stringify(history)}`);
        assert.ok(message.includes(failedVersion.version), `${message} names no version`);
        assert.ok(history.find((v) => v.version === good)?.current);
        const d = await get(h, "shop");
        assert.equal(d.version, good);
        await waitFor(async () => {
          const now = await get(h, "shop");
          return now.replicas.items.length === 2 &&
            now.replicas.items.every((r) => r.version === good && r.state === "Ready");
        }, { timeoutMs: 10_000, what: "only the good version's 2 replicas left" });
        await load.progressed();
      }
      const { ok: answered, failed } = await load.stop();
      assert.equal(
        failed,
        0,
        `${failed} of ${answered + failed} requests failed: ${load.errors.join("; ")}`,
      );
      assert.deepEqual([...load.bodies], ["good"]);
      const history = await h.json<HistoryItem[]>("history", "shop");
      assert.equal(history.filter((v) => v.status === "failed").length, 2);
    } finally {
      await load?.stop();
      await closeHome(h);
    }
  },
});

Deno.test({
  name: "a crash-looping replica backs off: growing delays, CrashLoopBackOff, bounded restarts",
  ignore: !HAS_PYTHON,
  async fn() {
    const h = new TestHome();
    try {
      const app = h.project("loop", {
        "main.py": CRASH_PY,
        "prisn.toml": `type = "service"\nreplicas = 1\n` +
          `[restart]\nbackoff_initial = "200ms"\nbackoff_max = "2s"\n`,
      });
      await h.ok("deploy", app, "--name", "loop");
      const start = Date.now();
      const states = new Set<string>();
      const restarts: number[] = [];
      let last: Detail | undefined;
      while (Date.now() - start < 4_000) {
        last = await get(h, "loop");
        const replica = last.replicas.items[0];
        if (replica) {
          states.add(replica.state);
          restarts.push(replica.restarts);
        }
      }
      assert.ok(last);
      const final = last.replicas.items[0].restarts;
      assert.ok(states.has("CrashLoopBackOff"), `states seen: ${[...states].join(", ")}`);
      assert.ok(final >= 3, `only ${final} restarts in 4s with a 200ms backoff`);
      // Without backoff a 0.2s crash would restart ~15 times in 4s; with it, about 4.
      assert.ok(final <= 7, `${final} restarts in 4s: the backoff does not hold`);
      assert.ok(restarts.at(-1)! > restarts[0], `restarts did not grow: ${restarts.join(",")}`);

      const exits = events(last, /exited with code 1, restarting in/).reverse(); // oldest first
      assert.ok(exits.length >= 4, `events: ${describeEvents(last)}`);
      const delays = exits.map((m) => parseDuration(m.match(/restarting in (\S+)$/)![1]));
      for (let i = 1; i < delays.length; i++) {
        assert.ok(delays[i] >= delays[i - 1], `delays shrank: ${delays.join(", ")}`);
      }
      assert.ok(delays.at(-1)! > delays[0], `delays did not grow: ${delays.join(", ")}`);
      assert.ok(delays.every((ms) => ms <= 2_000), `a delay beyond backoff_max: ${delays}`);
      assert.equal(delays[0], 200, `first delay ${exits[0]}, want 200ms`);
    } finally {
      await closeHome(h);
    }
  },
});

/**
 * Deploys the grandchild fixture twice (2 replicas each, each forking `sleep 1000`), then stops
 * one with `delete` and the other with `scale 0`: every replica and grandchild must be gone.
 */
async function grandchildFlow(options: { setsid: boolean; resources: boolean }): Promise<void> {
  const h = new TestHome();
  try {
    for (const how of ["delete", "scale 0"]) {
      const name = how === "delete" ? "forker" : "forker-scaled";
      const pidfile = join(h.dir, `${name}.pids`);
      const port = freePort();
      const app = h.project(name, {
        "main.sh": GRANDCHILD_SH,
        "prisn.toml": `port = ${port}\nreplicas = 2\n` +
          (options.resources ? `[resources]\nmemory = "256Mi"\n` : ""),
      });
      const env = ["--env", `PIDFILE=${pidfile}`];
      if (options.setsid) env.push("--env", "DETACH=setsid");
      await h.ok("deploy", app, "--name", name, ...env);
      const grandchildren = await waitFor(() => {
        const pids = Deno.readTextFileSync(pidfile).trim().split("\n").map(Number);
        return pids.length === 2 ? pids : undefined;
      }, { what: `two grandchild pids in ${pidfile}` });
      await waitFor(() => body(port), { what: `${name} serving on :${port}` });
      for (const pid of grandchildren) assert.ok(alive(pid), `grandchild ${pid} not running`);
      const replicas = (await get(h, name)).replicas.items.map((r) => r.pid!);
      assert.equal(replicas.length, 2);

      if (how === "delete") {
        await h.ok("delete", name);
        assert.notEqual((await h.cli("get", name)).code, 0);
      } else {
        await h.ok("scale", name, "0");
        const d = await get(h, name);
        assert.equal(d.replicas.desired, 0);
        assert.equal(d.replicas.items.length, 0);
      }
      try {
        for (const pid of [...replicas, ...grandchildren]) {
          await waitFor(() => !alive(pid), { timeoutMs: 5_000, what: `pid ${pid} gone (${how})` });
        }
      } finally {
        for (const pid of grandchildren) {
          if (alive(pid)) Deno.kill(pid, "SIGKILL"); // the test leaves no orphan either
        }
      }
    }
  } finally {
    await closeHome(h);
  }
}

Deno.test({
  name: "grandchildren die with their replica on delete and on scale 0",
  ignore: !HAS_PYTHON || !LINUX,
  fn: () => grandchildFlow({ setsid: false, resources: false }),
});

Deno.test({
  name: "a grandchild in its own session dies on delete and scale 0 when the replica has a cgroup",
  ignore: !HAS_PYTHON || !CGROUPS,
  fn: () => grandchildFlow({ setsid: true, resources: true }),
});

// Without cgroups only the process group can be signalled: a setsid grandchild escapes that.
Deno.test({
  name: "a grandchild in its own session dies on delete and scale 0 (no [resources])",
  ignore: !HAS_PYTHON || !CGROUPS,
  fn: () => grandchildFlow({ setsid: true, resources: false }),
});

Deno.test({
  name: "a deploy onto a port another program holds is refused and records nothing",
  ignore: !HAS_PYTHON,
  async fn() {
    const h = new TestHome();
    const held = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    try {
      const port = (held.addr as Deno.NetAddr).port;
      const app = pythonProject(h, "taken", "one");
      const r = await h.cli("deploy", app, "--name", "taken", "--port", String(port));
      assert.notEqual(r.code, 0, `deployed onto a taken port: ${r.stdout}`);
      const message = r.stderr.trim();
      assert.equal(message.split("\n").length, 1, `not one line: ${message}`);
      assert.match(message, new RegExp(`\\b${port}\\b`));
      assert.match(message, /in use|taken/);

      assert.notEqual((await h.cli("get", "taken")).code, 0, "the refused deploy was recorded");
      assert.deepEqual(await h.json("ls"), []);
      assert.ok(
        !existsSync(join(h.home, "deployments", "default", "taken")),
        "files of a refused deploy left",
      );
      if (LINUX) assert.deepEqual(processesMentioning(join(h.home, "deployments")), []);

      // Once the port is free the same deploy goes through: nothing was left half-done.
      held.close();
      await h.ok("deploy", app, "--name", "taken", "--port", String(port));
      assert.equal((await body(port))?.split(" ")[0], "one");
    } finally {
      try {
        held.close();
      } catch { /* closed above */ }
      await closeHome(h);
    }
  },
});

Deno.test({
  name: "after kill -9 of the agent the next CLI call brings the service back, no orphans",
  ignore: !HAS_PYTHON || !LINUX,
  async fn() {
    const h = new TestHome();
    try {
      const port = freePort();
      const app = pythonProject(h, "keep", "one");
      await h.ok("deploy", app, "--name", "keep", "--port", String(port), "--replicas", "2");
      const before = await get(h, "keep");
      const oldPids = before.replicas.items.map((r) => r.pid!);
      assert.equal(oldPids.length, 2);
      const versionDir = join(h.home, "deployments", "default", "keep", before.version);
      assert.deepEqual(processesMentioning(versionDir).sort(), [...oldPids].sort());

      const agent = h.agentPid();
      assert.ok(agent && alive(agent), "no agent pid recorded");
      Deno.kill(agent, "SIGKILL");
      await waitFor(() => !alive(agent), { what: "the agent gone after kill -9" });

      await h.ok("status");
      const newAgent = h.agentPid();
      assert.ok(newAgent && newAgent !== agent && alive(newAgent), "no new agent started");
      for (const pid of oldPids) {
        await waitFor(() => !alive(pid), { timeoutMs: 10_000, what: `old replica ${pid} gone` });
      }
      const after = await waitFor(async () => {
        const d = await get(h, "keep");
        return d.replicas.ready === 2 ? d : undefined;
      }, { timeoutMs: 20_000, what: "2 ready replicas after the agent restarted" });
      const newPids = after.replicas.items.map((r) => r.pid!);
      assert.equal(newPids.length, 2);
      assert.ok(newPids.every((pid) => !oldPids.includes(pid) && alive(pid)));
      await replicasAnswering(port, 2);
      assert.equal((await body(port))?.split(" ")[0], "one");
      // Exactly the two new replicas run the version: no orphan, no duplicate.
      assert.deepEqual(processesMentioning(versionDir).sort(), [...newPids].sort());
    } finally {
      await closeHome(h);
    }
  },
});

Deno.test({
  name: "a replica over its memory limit is OOMKilled, recorded and restarted",
  ignore: !HAS_PYTHON || !CGROUPS,
  async fn() {
    const h = new TestHome();
    try {
      const port = freePort();
      const app = pythonProject(
        h,
        "hog",
        "lean",
        `port = ${port}\nreplicas = 1\n[resources]\nmemory = "64Mi"\n` +
          `[restart]\nbackoff_initial = "200ms"\n`,
      );
      await h.ok("deploy", app, "--name", "hog");
      const before = await get(h, "hog");
      assert.equal(before.resources, describeLimits(MEMORY_LIMIT, ENFORCEMENT));
      assert.match(before.resources!, /64Mi/);
      assert.match(before.resources!, /cgroup v[12]/);
      const pid = before.replicas.items[0].pid!;

      const hog = await rawGet(port, "/hog", 30_000).catch((e) => e as Error);
      assert.ok(
        hog instanceof Error || hog.status !== 200,
        `allocating 300MiB under a 64Mi limit succeeded: ${JSON.stringify(hog)}`,
      );
      const d = await waitFor(async () => {
        const d = await get(h, "hog");
        return events(d, /OOMKilled/).length > 0 ? d : undefined;
      }, { timeoutMs: 20_000, what: "an OOMKilled event" });
      assert.match(events(d, /OOMKilled/)[0], /hog-0/);
      assert.ok(!alive(pid), `the hog ${pid} still runs`);

      const back = await waitFor(async () => {
        const d = await get(h, "hog");
        const r = d.replicas.items[0];
        return r?.state === "Ready" && r.restarts >= 1 ? r : undefined;
      }, { timeoutMs: 15_000, what: "the replica restarted after the OOM kill" });
      assert.equal(back.lastExit?.oomKilled, true);
      assert.equal(back.lastExit?.signal, "SIGKILL");
      assert.equal((await body(port))?.split(" ")[0], "lean");
    } finally {
      await closeHome(h);
    }
  },
});

Deno.test({
  name: "a replica failing its liveness check is restarted",
  ignore: !HAS_PYTHON,
  async fn() {
    const h = new TestHome();
    try {
      const port = freePort();
      const app = pythonProject(
        h,
        "sick",
        "fine",
        `port = ${port}\nreplicas = 1\n` +
          `health = { path = "/healthz", interval = "300ms", failures = 2 }\n` +
          `[env]\nUNHEALTHY_AFTER = "2"\n[restart]\nbackoff_initial = "200ms"\n`,
      );
      await h.ok("deploy", app, "--name", "sick");
      const first = (await get(h, "sick")).replicas.items[0];
      assert.equal(first.state, "Ready");
      assert.equal((await body(port))?.split(" ")[0], "fine");

      const d = await waitFor(async () => {
        const d = await get(h, "sick");
        return d.replicas.items[0]?.restarts >= 1 ? d : undefined;
      }, { timeoutMs: 15_000, what: "a restart after failed health checks" });
      const failures = events(d, /health check/);
      assert.ok(failures.length >= 2, `events: ${describeEvents(d)}`);
      assert.ok(failures.some((m) => m.includes("(2/2)")), `events: ${describeEvents(d)}`);
      assert.ok(!alive(first.pid!), `the unhealthy replica ${first.pid} still runs`);
      // It comes back healthy (for its first 2 seconds) and serves again.
      await waitFor(async () => (await get(h, "sick")).replicas.items[0]?.state === "Ready", {
        timeoutMs: 10_000,
        what: "the restarted replica ready again",
      });
    } finally {
      await closeHome(h);
    }
  },
});
