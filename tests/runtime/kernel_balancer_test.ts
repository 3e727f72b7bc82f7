// The kernel path's nftables DNAT (socket steering off: socket_steering_test.ts tests that):
// rules rendered, applied, updated and removed, checked with `nft list table` and real loopback
// connections. Each test uses its own PRISN_HOME path (so its
// own table) and removes the table in a finally; tests that need nft and CAP_NET_ADMIN skip,
// saying why, without them.

import assert from "node:assert/strict";
import { join } from "node:path";
import {
  KernelBalancer,
  openConnections,
  ownerOf,
  renderTable,
  tableName,
  thisOwner,
} from "../../runtime/kernel_balancer.ts";
import { ServicePort } from "../../runtime/service_port.ts";
import { freePort, waitFor, within } from "../_helpers.ts";

const HOST = "127.0.0.1";
const STEP_MS = 5_000;
const decoder = new TextDecoder();

/** A home path of its own for a test (so its own table); the table needs no folder there. */
function home(): string {
  return join("/tmp", `prisn-nft-test-${crypto.randomUUID()}`, "home");
}

/** Whether this host can run the kernel path, found by opening (and removing) a table. */
async function probe(): Promise<string | undefined> {
  const opened = await KernelBalancer.open(home());
  if ("unavailable" in opened) return opened.unavailable;
  await opened.balancer.close();
  return undefined;
}
const UNAVAILABLE = await probe();
if (UNAVAILABLE) console.log(`kernel_balancer_test: skipping the nftables tests: ${UNAVAILABLE}`);
const ignore = UNAVAILABLE !== undefined;

async function openTable(path = home()): Promise<KernelBalancer> {
  const opened = await KernelBalancer.open(path, { steeringOff: "this test is of DNAT" });
  if ("unavailable" in opened) throw new Error(opened.unavailable);
  return opened.balancer;
}

async function nft(...args: string[]): Promise<{ ok: boolean; out: string }> {
  const r = await new Deno.Command("nft", { args, stdout: "piped", stderr: "piped" }).output();
  return { ok: r.success, out: decoder.decode(r.stdout) + decoder.decode(r.stderr) };
}

async function listTable(table: string): Promise<string | undefined> {
  const r = await nft("list", "table", "ip", table);
  return r.ok ? r.out : undefined;
}

/** A loopback server that answers every connection with its name, then closes it. */
function namedServer(name: string): { port: number; close(): Promise<void> } {
  const listener = Deno.listen({ hostname: HOST, port: 0 });
  const loop = (async () => {
    for await (const conn of listener) {
      await conn.write(new TextEncoder().encode(name)).catch(() => 0);
      conn.close();
    }
  })();
  return {
    port: listener.addr.port,
    close: async () => {
      listener.close();
      await loop.catch(() => {});
    },
  };
}

/** Connects to the port, reads to the end: the name of the server that answered. */
async function ask(port: number): Promise<string> {
  const conn = await Deno.connect({ hostname: HOST, port });
  try {
    const buffer = new Uint8Array(256);
    let text = "";
    for (;;) {
      const n = await within(conn.read(buffer), STEP_MS, "an answer");
      if (n === null) return text;
      text += decoder.decode(buffer.subarray(0, n));
    }
  } finally {
    conn.close();
  }
}

async function refused(port: number): Promise<boolean> {
  try {
    (await Deno.connect({ hostname: HOST, port })).close();
    return false;
  } catch (e) {
    return e instanceof Deno.errors.ConnectionRefused;
  }
}

// --- rendering (pure) ------------------------------------------------------------------------

Deno.test("tableName() is prisn- and a hash of the home: two homes never share a table", () => {
  assert.match(tableName("/a/home"), /^prisn-[0-9a-f]{10}$/);
  assert.equal(tableName("/a/home"), tableName("/a/home"));
  assert.notEqual(tableName("/a/home"), tableName("/b/home"));
});

Deno.test("renderTable() jumps to a port's chain only while it has backends", () => {
  const ports = new Map([
    [8080, { backends: [] }],
    [8081, { backends: [{ id: "a-0", host: HOST, port: 41001 }] }],
    [8082, { backends: [{ id: "b-0", host: HOST, port: 41002 }] }],
  ]);
  const script = renderTable("prisn-t", ports);
  assert.ok(!script.includes("8080"), script);
  // One verdict map for every port, not a rule each.
  assert.match(
    script,
    /fib daddr type local tcp dport vmap \{ 8081 : jump svc-8081, 8082 : jump svc-8082 \}/,
  );
  assert.equal(script.split("vmap").length - 1, 1, script);
  assert.match(script, /dnat ip to 127\.0\.0\.1:41001/);
  assert.match(script, /^add table ip prisn-t\ndelete table ip prisn-t\ntable ip prisn-t \{/);
});

Deno.test("renderTable() spreads over this node's backends, others' only when it has none", () => {
  const local = { id: "a-0", host: HOST, port: 41001 };
  const local2 = { id: "a-1", host: HOST, port: 41002 };
  const remote = { id: "a-2", host: "10.0.0.6", port: 41003, remote: true };
  const both = renderTable("t", new Map([[80, { backends: [local, remote, local2] }]]));
  assert.match(
    both,
    /numgen inc mod 2 map \{ 0 : 127\.0\.0\.1 \. 41001, 1 : 127\.0\.0\.1 \. 41002 \}/,
  );
  assert.ok(!both.includes("10.0.0.6"));
  const remoteOnly = renderTable("t", new Map([[80, { backends: [remote] }]]));
  assert.match(remoteOnly, /meta mark set meta mark \| 0x00500000\n\s+meta l4proto tcp dnat/);
  assert.match(remoteOnly, /dnat ip to 10\.0\.0\.6:41003/);
});

Deno.test("renderTable() sends other hosts to loopback replicas only with route_localnet", () => {
  const ports = new Map([[80, { backends: [{ id: "a-0", host: HOST, port: 41001 }] }]]);
  assert.ok(!renderTable("t", ports).includes("jump ext-80"));
  assert.match(
    renderTable("t", ports, { routeLocalnet: true }),
    /tcp dport vmap \{ 80 : jump ext-80 \}/,
  );
  const onAddress = new Map([[80, {
    address: "192.0.2.2",
    backends: [{ id: "a-0", host: "192.0.2.2", port: 41001 }],
  }]]);
  const script = renderTable("t", onAddress);
  assert.match(script, /ip daddr \. tcp dport vmap \{ 192\.0\.2\.2 \. 80 : jump svc-80 \}/);
  assert.match(script, /ip daddr \. tcp dport vmap \{ 192\.0\.2\.2 \. 80 : jump ext-80 \}/);
});

Deno.test({
  name: "nft accepts every rendered table (nft -c)",
  ignore,
  fn: async () => {
    const backends = [
      { id: "a-0", host: HOST, port: 41001 },
      { id: "a-1", host: HOST, port: 41002 },
    ];
    const remote = [{ id: "b-0", host: "10.0.0.6", port: 41003, remote: true }];
    for (
      const ports of [
        new Map(),
        new Map([[8080, { backends }], [8081, { backends: remote }]]),
        new Map([[8080, { address: "192.0.2.2", backends }]]),
        new Map([[8080, { backends }], [8081, { address: "192.0.2.2", backends }]]),
      ]
    ) {
      const script = renderTable(tableName(home()), ports, { routeLocalnet: true });
      const child = new Deno.Command("nft", {
        args: ["-c", "-f", "-"],
        stdin: "piped",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      const writer = child.stdin.getWriter();
      await writer.write(new TextEncoder().encode(script));
      await writer.close();
      const out = await child.output();
      assert.ok(out.success, `${decoder.decode(out.stderr)}\n${script}`);
    }
  },
});

// --- the table, for real ---------------------------------------------------------------------

Deno.test({
  name: "a port's rules send new connections round-robin to its backends, updated and removed",
  ignore,
  fn: async () => {
    const a = namedServer("a");
    const b = namedServer("b");
    const kernel = await openTable();
    const port = freePort(); // nothing listens there: every answer comes through the DNAT
    try {
      assert.ok(await listTable(kernel.table), "the table exists once opened");
      assert.ok(await refused(port));
      await kernel.set(port, {
        backends: [{ id: "a", host: HOST, port: a.port }, { id: "b", host: HOST, port: b.port }],
      });
      const rules = (await listTable(kernel.table))!;
      assert.match(rules, new RegExp(`tcp dport vmap \\{ ${port} : jump svc-${port} \\}`));
      assert.match(rules, new RegExp(`127\\.0\\.0\\.1 \\. ${a.port}`));
      assert.match(rules, new RegExp(`127\\.0\\.0\\.1 \\. ${b.port}`));
      const answers = [];
      for (let i = 0; i < 10; i++) answers.push(await ask(port));
      assert.deepEqual(answers.filter((x) => x === "a").length, 5, answers.join(""));
      assert.deepEqual(answers.filter((x) => x === "b").length, 5, answers.join(""));

      await kernel.set(port, { backends: [{ id: "b", host: HOST, port: b.port }] });
      for (let i = 0; i < 4; i++) assert.equal(await ask(port), "b");
      assert.ok(!(await listTable(kernel.table))!.includes(String(a.port)));

      await kernel.delete(port);
      assert.ok(!(await listTable(kernel.table))!.includes(`dport ${port}`));
      assert.ok(await refused(port), "no rule, nothing listening: refused");
    } finally {
      await kernel.close();
      await a.close();
      await b.close();
    }
    assert.equal(await listTable(kernel.table), undefined, "close() removes the table");
  },
});

Deno.test({
  name: "opening a home's table again drops the rules an earlier (killed) agent left",
  ignore,
  fn: async () => {
    const path = home();
    const a = namedServer("a");
    const port = freePort();
    const first = await openTable(path);
    let second: KernelBalancer | undefined;
    try {
      await first.set(port, { backends: [{ id: "a", host: HOST, port: a.port }] });
      assert.equal(await ask(port), "a");
      // `first` is never closed: like an agent killed with -9, its table stays behind.
      second = await openTable(path);
      assert.equal(second.table, first.table);
      const rules = (await listTable(second.table))!;
      assert.ok(!rules.includes(`dport ${port}`), rules);
      assert.ok(await refused(port));
    } finally {
      await (second ?? first).close();
      await a.close();
    }
    assert.equal(await listTable(first.table), undefined);
  },
});

Deno.test({
  name:
    "opening a table removes other homes' tables whose agent is gone, not a live agent's, another pid namespace's or one without an owner",
  ignore,
  fn: async () => {
    const me = thisOwner();
    assert.ok(me.pidns > 0 && me.start > 0, `this process as an owner: ${JSON.stringify(me)}`);
    // A pid that was alive a moment ago and is not any more.
    const gone = new Deno.Command("true").spawn();
    await gone.status;
    const tables = {
      dead: { name: tableName(home()), owner: { pid: gone.pid, start: 1, pidns: me.pidns } },
      restarted: { name: tableName(home()), owner: { ...me, start: me.start + 1 } },
      alive: { name: tableName(home()), owner: me },
      otherNs: { name: tableName(home()), owner: { pid: gone.pid, start: 1, pidns: me.pidns + 1 } },
      unowned: { name: tableName(home()), owner: undefined },
    };
    const opened: KernelBalancer[] = [];
    try {
      for (const t of Object.values(tables)) {
        const script = renderTable(t.name, new Map(), { owner: t.owner });
        const child = new Deno.Command("nft", { args: ["-f", "-"], stdin: "piped" }).spawn();
        const writer = child.stdin.getWriter();
        await writer.write(new TextEncoder().encode(script));
        await writer.close();
        assert.ok((await child.status).success, `nft took ${t.name}`);
      }
      assert.deepEqual(ownerOf((await listTable(tables.alive.name))!), me);
      const result = await KernelBalancer.open(home());
      if ("unavailable" in result) throw new Error(result.unavailable);
      opened.push(result.balancer);
      assert.deepEqual(ownerOf((await listTable(result.balancer.table))!), me);
      // Those two are gone (an agent starting in a parallel test may have removed them first).
      const expected = [
        `${tables.dead.name} (agent ${gone.pid})`,
        `${tables.restarted.name} (agent ${me.pid})`,
      ];
      // Only this test's tables: a killed agent of another run may have left one on this host.
      const ours = result.swept.filter((t) =>
        Object.values(tables).some((x) => t.startsWith(`${x.name} `))
      );
      assert.ok(ours.every((t) => expected.includes(t)), ours.join(", "));
      assert.equal(await listTable(tables.dead.name), undefined);
      assert.equal(await listTable(tables.restarted.name), undefined);
      for (const t of [tables.alive, tables.otherNs, tables.unowned]) {
        assert.ok(await listTable(t.name), `${t.name} stays`);
      }
    } finally {
      for (const b of opened) await b.close();
      for (const t of Object.values(tables)) await nft("delete", "table", "ip", t.name);
    }
  },
});

Deno.test({
  name: "a kernel port holds connections in the proxy while no backend is ready, then DNATs",
  ignore,
  fn: async () => {
    const kernel = await openTable();
    const a = namedServer("a");
    const service = new ServicePort({ port: 0, host: HOST, kernel });
    try {
      await service.listen();
      assert.equal(service.balancer.kind, "kernel");
      assert.ok(!(await listTable(kernel.table))!.includes(`dport ${service.port}`));
      const held = ask(service.port); // reaches the userspace proxy: no rule yet
      await waitFor(() => service.pending() === 1, { what: "the client held by the proxy" });
      service.add({ id: "a", host: HOST, port: a.port });
      assert.equal(await held, "a", "the held client is forwarded once a backend is ready");
      await waitFor(async () => (await listTable(kernel.table))?.includes(`${a.port}`), {
        what: "the backend in the kernel's map",
      });
      assert.equal(await ask(service.port), "a");
    } finally {
      await service.close();
      assert.ok(!(await listTable(kernel.table))?.includes(`dport ${service.port}`));
      await kernel.close();
      await a.close();
    }
  },
});

Deno.test({
  name: "a kernel-path drain takes the replica out of the map and waits for its connections",
  ignore,
  fn: async () => {
    const kernel = await openTable();
    // A backend that keeps each connection open until the client closes it.
    const listener = Deno.listen({ hostname: HOST, port: 0 });
    const accepted: Deno.Conn[] = [];
    const loop = (async () => {
      for await (const conn of listener) accepted.push(conn);
    })();
    const b = namedServer("b");
    const service = new ServicePort({ port: 0, host: HOST, kernel });
    const clients: Deno.Conn[] = [];
    try {
      await service.listen();
      service.add({ id: "a", host: HOST, port: listener.addr.port });
      await waitFor(async () => (await listTable(kernel.table))?.includes(`svc-${service.port}`), {
        what: "the rule",
      });
      clients.push(await Deno.connect({ hostname: HOST, port: service.port }));
      await waitFor(() => accepted.length === 1, { what: "the kernel-path connection" });
      assert.equal(service.connections(), 0, "no byte of it passes through the proxy");
      assert.equal(openConnections(listener.addr.port), 1);
      service.add({ id: "b", host: HOST, port: b.port });

      let drained = false;
      const drain = service.drain("a", 10_000).then(() => drained = true);
      await waitFor(
        async () => !(await listTable(kernel.table))!.includes(`${listener.addr.port}`),
        {
          what: "a out of the map",
        },
      );
      assert.equal(await ask(service.port), "b", "new connections go to the other backend");
      assert.equal(drained, false, "the drain waits for the open connection");
      clients[0].close();
      clients.length = 0;
      for (const conn of accepted) conn.close();
      await within(drain, STEP_MS, "the drain once the connection closed");
    } finally {
      for (const conn of clients) conn.close();
      await service.close();
      await kernel.close();
      listener.close();
      await loop.catch(() => {});
      await b.close();
    }
  },
});

Deno.test("openConnections() counts a port's open connections from /proc/net/tcp", {
  ignore: Deno.build.os !== "linux",
}, async () => {
  const listener = Deno.listen({ hostname: HOST, port: 0 });
  const port = listener.addr.port;
  try {
    assert.equal(openConnections(port), 0, "a listening socket is not a connection");
    const client = await Deno.connect({ hostname: HOST, port });
    const server = await listener.accept();
    assert.equal(openConnections(port), 1);
    client.close();
    server.close();
    await waitFor(() => openConnections(port) === 0, { what: "the connection gone" });
  } finally {
    listener.close();
  }
});
