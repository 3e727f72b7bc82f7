/**
 * The service port's balancer end to end: the real CLI and agent, real node replicas. On the
 * kernel path: the table's rules follow a rolling deploy, scale and rollback with zero failed
 * requests, a killed agent's stale rules are rebuilt at the next start, the table goes at agent
 * stop. The userspace path through the same steps, `balancer` in prisn.toml and the agent flag,
 * and bad values refused in one line. Kernel tests skip, saying why, without nft or
 * CAP_NET_ADMIN.
 *
 * @module
 */
import assert from "node:assert/strict";
import { epollUnavailable } from "../../runtime/epoll_proxy.ts";
import { KernelBalancer, tableName } from "../../runtime/kernel_balancer.ts";
import type { ReplicaStatus } from "../../runtime/service.ts";
import {
  alive,
  freePort,
  hasCommand,
  listeners,
  steeringUnavailable,
  TestHome,
  waitFor,
} from "../_helpers.ts";
import { assertNoFailures, body, Load, rawGet, replicasAnswering } from "./_http.ts";

const SERVER_JS = Deno.readTextFileSync(
  new URL("../fixtures/services/server.js", import.meta.url).pathname,
);
const HAS_NODE = await hasCommand("node");
if (!HAS_NODE) console.log("balancer_test: skipping: node not found");

async function kernelUnavailable(): Promise<string | undefined> {
  const opened = await KernelBalancer.open(`/tmp/prisn-balancer-probe-${crypto.randomUUID()}`);
  if ("unavailable" in opened) return opened.unavailable;
  await opened.balancer.close();
  return undefined;
}
const NO_KERNEL = await kernelUnavailable();
if (NO_KERNEL) console.log(`balancer_test: skipping the kernel path tests: ${NO_KERNEL}`);
const NO_STEERING = steeringUnavailable();
if (NO_STEERING) console.log(`balancer_test: skipping the sk_lookup test: ${NO_STEERING}`);

/** The userspace engine an agent of this machine picks (the test runs with its permissions). */
const NO_EPOLL = epollUnavailable();
const ENGINE = NO_EPOLL
  ? { engine: "deno", engineFallback: NO_EPOLL }
  : { engine: "epoll", workers: 1 };

interface Detail {
  version: string;
  balancer?: {
    kind: string;
    table?: string;
    path?: string;
    steeringFallback?: string;
    engine: string;
    engineFallback?: string;
    workers?: number;
  };
  replicas: { desired: number; ready: number; items: ReplicaStatus[] };
  events: Array<{ kind: string; message: string }>;
}

const decoder = new TextDecoder();

/** The rules of a table, or undefined when it does not exist. */
async function listTable(table: string): Promise<string | undefined> {
  const r = await new Deno.Command("nft", { args: ["list", "table", "ip", table], stderr: "null" })
    .output();
  return r.success ? decoder.decode(r.stdout) : undefined;
}

/** The ports the table's map for service `port` sends connections to, sorted. */
async function mapped(table: string, port: number): Promise<number[]> {
  const rules = await listTable(table) ?? "";
  const chain = rules.match(new RegExp(`chain svc-${port} \\{([^}]*(\\{[^}]*\\})?[^}]*)\\}`));
  if (!chain) return [];
  return [...chain[1].matchAll(/127\.0\.0\.1(?: \. |:)(\d+)/g)].map((m) => Number(m[1])).sort();
}

function readyPorts(d: Detail): number[] {
  return d.replicas.items.filter((r) => r.ready && r.state !== "Terminating").map((r) => r.port!)
    .sort();
}

function project(h: TestHome, name: string, message: string, toml = ""): string {
  const files: Record<string, string> = { "main.js": SERVER_JS, "message.txt": `${message}\n` };
  if (toml) files["prisn.toml"] = toml;
  return h.project(name, files);
}

/**
 * A 2-replica service through a rolling deploy, scale to 3 and a rollback with a client loop
 * running (a new connection per request): zero failed; answers from version one again at the end.
 * `check` runs after each step with the service's detail.
 */
async function rolloutUnderLoad(
  h: TestHome,
  toml: string,
  check: (d: Detail, port: number) => Promise<void>,
): Promise<number> {
  const port = freePort();
  const deploy = (message: string) =>
    h.ok("deploy", project(h, "web", message, toml), "--name", "web", "--port", String(port));
  await deploy("one");
  await replicasAnswering(port, 2);
  await check(await h.json<Detail>("get", "web"), port);
  const load = new Load(port);
  try {
    await load.progressed();
    await deploy("two");
    await load.progressed();
    assert.equal(await body(port).then((b) => b?.split(" ")[0]), "two");
    await check(await h.json<Detail>("get", "web"), port);
    await h.ok("scale", "web", "3");
    await waitFor(async () => (await h.json<Detail>("get", "web")).replicas.ready === 3, {
      what: "3 ready replicas",
    });
    await load.progressed();
    await check(await h.json<Detail>("get", "web"), port);
    await h.ok("rollback", "web");
    await load.progressed();
    assertNoFailures(load, await load.stop());
  } finally {
    await load.stop();
  }
  assert.equal(await body(port).then((b) => b?.split(" ")[0]), "one");
  await check(await h.json<Detail>("get", "web"), port);
  return port;
}

/** The port a new connection to service `port` reached its replica on (x-local-port). */
async function portSeen(port: number): Promise<number> {
  return Number((await rawGet(port)).headers.get("x-local-port"));
}

Deno.test({
  name: "kernel path, sk_lookup: connections go straight to the replicas' sockets through a " +
    "rolling deploy, scale and rollback, zero failed; no steering outlives a killed agent",
  ignore: !HAS_NODE || NO_KERNEL !== undefined || NO_STEERING !== undefined,
  async fn() {
    const h = new TestHome();
    const table = tableName(h.home);
    try {
      const port = await rolloutUnderLoad(
        h,
        "replicas = 2\nrollout = { max_parallel = 1 }\n",
        async (d, port) => {
          assert.deepEqual(d.balancer, { kind: "kernel", table, path: "sk_lookup", ...ENGINE });
          assert.match(await h.ok("get", "web"), /Balancer: +kernel \(sk_lookup steering/);
          // The replica accepted the connection on the service port itself: no proxy, no DNAT.
          assert.equal(await portSeen(port), port);
          assert.deepEqual(await mapped(table, port), [], "no DNAT rule");
        },
      );
      const agent = h.agentPid()!;
      Deno.kill(agent, "SIGKILL");
      await waitFor(() => !alive(agent), { what: "the agent gone" });
      // The replicas may outlive their agent; the steering does not (the kernel detaches it as
      // it releases the agent's files, a moment after the exit): nothing takes connections.
      await waitFor(() => rawGet(port).then(() => false, () => true), {
        timeoutMs: 5_000,
        what: "the port refusing once the agent is gone",
      });
      await h.ok("status"); // starts a new agent
      await waitFor(async () => (await portSeen(port).catch(() => 0)) === port, {
        timeoutMs: 20_000,
        what: "the port steered again by the new agent",
      });
    } finally {
      await h.close();
    }
  },
});

Deno.test({
  name: "kernel path, nftables: the map follows a rolling deploy, scale and rollback, zero " +
    "failed requests",
  ignore: !HAS_NODE || NO_KERNEL !== undefined,
  async fn() {
    const h = new TestHome({ env: { PRISN_KERNEL_STEERING: "off" } });
    const table = tableName(h.home);
    try {
      await rolloutUnderLoad(
        h,
        "replicas = 2\nrollout = { max_parallel = 1 }\n",
        async (d, port) => {
          assert.deepEqual(d.balancer, {
            kind: "kernel",
            table,
            path: "nftables",
            steeringFallback: "PRISN_KERNEL_STEERING=off",
            ...ENGINE,
          });
          assert.match(
            await h.ok("get", "web"),
            new RegExp(
              `Balancer: +kernel \\(nftables DNAT, table ip ${table}; not steered: ` +
                `PRISN_KERNEL_STEERING=off\\)`,
            ),
          );
          assert.notEqual(await portSeen(port), port, "DNAT: the replica's own port");
          // The map holds exactly the ready replicas (it is written before a drain starts).
          await waitFor(async () => {
            const now = readyPorts(await h.json<Detail>("get", "web"));
            return JSON.stringify(await mapped(table, port)) === JSON.stringify(now);
          }, { what: "the kernel map equal to the ready replicas" });
        },
      );
      assert.ok(await listTable(table));
      await h.ok("agent", "stop");
      assert.equal(await listTable(table), undefined, "the table is removed at agent stop");
    } finally {
      await h.close(); // deletes the home's table too
    }
  },
});

Deno.test({
  name: "kernel path, nftables: a killed agent's stale rules are replaced at the next start",
  ignore: !HAS_NODE || NO_KERNEL !== undefined,
  async fn() {
    const h = new TestHome({ env: { PRISN_KERNEL_STEERING: "off" } });
    const table = tableName(h.home);
    try {
      const port = freePort();
      await h.ok("deploy", project(h, "keep", "one"), "--name", "keep", "--port", String(port));
      await replicasAnswering(port, 1);
      // The userspace listener answers too: the kernel map may follow a moment later.
      const before = await waitFor(async () => {
        const ports = await mapped(table, port);
        return ports.length === 1 ? ports : undefined;
      }, { what: "the kernel map of the first replica" });
      const agent = h.agentPid()!;
      Deno.kill(agent, "SIGKILL");
      await waitFor(() => !alive(agent), { what: "the agent gone" });
      assert.deepEqual(await mapped(table, port), before, "kill -9 leaves the rules behind");

      await h.ok("status"); // starts a new agent
      const after = await waitFor(async () => {
        const d = await h.json<Detail>("get", "keep");
        return d.replicas.ready === 1 ? readyPorts(d) : undefined;
      }, { timeoutMs: 20_000, what: "the service back after the restart" });
      await waitFor(
        async () => JSON.stringify(await mapped(table, port)) === JSON.stringify(after),
        {
          what: "the map rebuilt for the new replica",
        },
      );
      assert.notDeepEqual(after, before);
      assert.equal((await body(port))?.split(" ")[0], "one");
    } finally {
      await h.close(); // deletes the home's table too
    }
  },
});

Deno.test({
  name: 'balancer = "userspace": the proxy (2 epoll workers) serves the port through the same ' +
    "steps, no kernel rule",
  ignore: !HAS_NODE,
  async fn() {
    const h = new TestHome({ env: { PRISN_PROXY_WORKERS: "2" } });
    const table = tableName(h.home);
    try {
      await rolloutUnderLoad(h, 'replicas = 2\nbalancer = "userspace"\n', async (d, port) => {
        const engine = NO_EPOLL ? ENGINE : { engine: "epoll", workers: 2 };
        assert.deepEqual(d.balancer, { kind: "userspace", ...engine });
        assert.match(
          await h.ok("get", "web"),
          NO_EPOLL
            ? /Balancer: +userspace .*Deno copy loop/
            : /Balancer: +userspace \(prisn's TCP proxy, epoll engine, 2 workers\)/,
        );
        assert.deepEqual(await mapped(table, port), []);
        if (!NO_EPOLL) assert.equal(listeners(port), 2, "one SO_REUSEPORT listener per worker");
      });
    } finally {
      await h.close();
    }
  },
});

Deno.test({
  name: "an agent run with --balancer userspace and PRISN_PROXY_ENGINE=deno uses Deno's copy " +
    "loop and says why",
  ignore: !HAS_NODE,
  async fn() {
    const h = new TestHome({ env: { PRISN_BALANCER: "userspace", PRISN_PROXY_ENGINE: "deno" } });
    try {
      const port = freePort();
      await h.ok(
        "deploy",
        project(h, "forced", "one", 'balancer = "kernel"\n'),
        "--name",
        "forced",
        "--port",
        String(port),
      );
      await replicasAnswering(port, 1);
      const d = await h.json<Detail>("get", "forced");
      assert.deepEqual(d.balancer, {
        kind: "userspace",
        engine: "deno",
        engineFallback: "PRISN_PROXY_ENGINE=deno",
      });
      assert.match(
        await h.ok("get", "forced"),
        /Balancer: +userspace \(prisn's TCP proxy, Deno copy loop: PRISN_PROXY_ENGINE=deno\)/,
      );
      const fallback = d.events.find((e) => e.kind === "BalancerFallback");
      assert.match(fallback?.message ?? "", /--balancer userspace/);
      assert.equal(await listTable(tableName(h.home)), undefined, "no table at all");
    } finally {
      await h.close();
    }
  },
});

Deno.test("a bad balancer is refused in one line and changes nothing", async () => {
  const h = new TestHome();
  try {
    const agent = await h.cli("agent", "run", "--balancer", "bogus");
    assert.notEqual(agent.code, 0);
    assert.match(
      agent.stderr.trim(),
      /^[^\n]*--balancer "bogus" is not valid: use auto, kernel or userspace$/,
    );
    assert.equal(h.agentPid(), undefined, "no agent started");
    for (
      const [value, why] of [["0", "give a whole number of at least 1"], ["65", "give 1 to 64"]]
    ) {
      const r = await h.cli("agent", "run", "--proxy-workers", value);
      assert.notEqual(r.code, 0);
      assert.equal(r.stderr.trim(), `prisn: --proxy-workers "${value}" is not valid: ${why}`);
      assert.equal(h.agentPid(), undefined, "no agent started");
    }

    const app = project(h, "bad", "one", 'port = 8080\nbalancer = "bogus"\n');
    const r = await h.cli("deploy", app, "--name", "bad");
    assert.notEqual(r.code, 0);
    assert.match(
      r.stderr.trim(),
      /^[^\n]*prisn\.toml:2: balancer must be "kernel" or "userspace" \(got "bogus"\)$/,
    );
    const noPort = await h.cli(
      "deploy",
      project(h, "noport", "one", 'balancer = "kernel"\n'),
      "--name",
      "noport",
    );
    assert.notEqual(noPort.code, 0);
    assert.match(noPort.stderr.trim(), /^[^\n]*balancer = "kernel" needs a service port[^\n]*$/);
    assert.deepEqual(await h.json<unknown[]>("ls"), []);
  } finally {
    await h.close();
  }
});

Deno.test("a bad PRISN_KERNEL_STEERING is refused in one line and starts no agent", async () => {
  const h = new TestHome({ env: { PRISN_KERNEL_STEERING: "maybe" } });
  try {
    const r = await h.cli("agent", "run");
    assert.notEqual(r.code, 0);
    assert.equal(
      r.stderr.trim(),
      'prisn: PRISN_KERNEL_STEERING "maybe" is not valid: use on or off',
    );
    assert.equal(h.agentPid(), undefined, "no agent started");
  } finally {
    await h.close();
  }
});
