// Socket steering (sk_lookup): new connections to a service port handed straight to a backend's
// own listening socket, round-robin, following backend changes, drains and the end of the
// steering, checked with real loopback connections. Skipped, saying why, where the kernel
// refuses the program (no CAP_BPF/CAP_NET_ADMIN, no sk_lookup) or nft is missing.

import assert from "node:assert/strict";
import { join } from "node:path";
import { KernelBalancer } from "../../runtime/kernel_balancer.ts";
import { ServicePort } from "../../runtime/service_port.ts";
import { freePort, steeringUnavailable, waitFor, within } from "../_helpers.ts";

const HOST = "127.0.0.1";
const decoder = new TextDecoder();

const UNAVAILABLE = steeringUnavailable();
if (UNAVAILABLE) console.log(`socket_steering_test: skipping: ${UNAVAILABLE}`);
const ignore = UNAVAILABLE !== undefined;

function home(): string {
  return join("/tmp", `prisn-steer-test-${crypto.randomUUID()}`, "home");
}

async function openKernel(): Promise<KernelBalancer> {
  const opened = await KernelBalancer.open(home());
  if ("unavailable" in opened) throw new Error(opened.unavailable);
  if (opened.balancer.steeringUnavailable) {
    await opened.balancer.close();
    throw new Error(opened.balancer.steeringUnavailable);
  }
  return opened.balancer;
}

/**
 * A loopback server that answers each connection with "NAME PORT" (PORT: the local port the
 * connection came in on) and closes it; `hold` keeps connections open instead. `port` 0: a
 * free one.
 */
function server(name: string, hold = false, port = 0) {
  const listener = Deno.listen({ hostname: HOST, port });
  const held: Deno.Conn[] = [];
  const loop = (async () => {
    for await (const conn of listener) {
      if (hold) {
        held.push(conn);
        continue;
      }
      const local = (conn.localAddr as Deno.NetAddr).port;
      await conn.write(new TextEncoder().encode(`${name} ${local}`)).catch(() => 0);
      conn.close();
    }
  })();
  let closed = false;
  return {
    port: listener.addr.port,
    held,
    async close() {
      if (closed) return;
      closed = true;
      for (const c of held) c.close();
      listener.close();
      await loop.catch(() => {});
    },
  };
}

/**
 * What a new connection to `port` on `host` is answered with until it closes ("" when refused);
 * a connection still open after 2 s is closed and says "(held)".
 */
async function ask(port: number, host = HOST): Promise<string> {
  let conn: Deno.Conn;
  try {
    conn = await Deno.connect({ hostname: host, port });
  } catch {
    return "";
  }
  let held = false;
  const timer = setTimeout(() => {
    held = true;
    conn.close();
  }, 2_000);
  const buf = new Uint8Array(256);
  let text = "";
  try {
    for (let n; (n = await conn.read(buf)) !== null;) text += decoder.decode(buf.subarray(0, n));
  } catch { /* reset, or closed by the timer */ }
  clearTimeout(timer);
  if (held) return "(held)";
  conn.close();
  return text;
}

Deno.test({
  name: "a steered port hands new connections round-robin to the backends' own sockets",
  ignore,
  fn: async () => {
    const kernel = await openKernel();
    const a = server("a");
    const b = server("b");
    const port = new ServicePort({ port: 0, kernel });
    try {
      await port.listen();
      port.add({ id: "a", host: HOST, port: a.port });
      port.add({ id: "b", host: HOST, port: b.port });
      await waitFor(() => kernel.pathOf(port.port) === "sk_lookup", { what: "the port steered" });
      assert.deepEqual(port.balancer.path, "sk_lookup");
      const answers = [];
      for (let i = 0; i < 6; i++) answers.push(await ask(port.port));
      // Each backend accepted the connection itself, on the service port: no proxy, no DNAT.
      assert.deepEqual(answers.toSorted(), [
        ...Array(3).fill(`a ${port.port}`),
        ...Array(3).fill(`b ${port.port}`),
      ]);
      assert.equal(port.connections(), 0, "nothing went through the userspace proxy");
      // Every local address of the port is steered (127.0.0.2 is local but no one listens there).
      assert.match(await ask(port.port, "127.0.0.2"), new RegExp(`^[ab] ${port.port}$`));
      const nft = await new Deno.Command("nft", { args: ["list", "table", "ip", kernel.table] })
        .output();
      const listing = decoder.decode(nft.stdout);
      assert.ok(!listing.includes(`svc-${port.port}`), "no DNAT rule");
      assert.ok(!listing.includes("type nat"), "no nat chain: the host tracks no connection");

      port.remove("a");
      await waitFor(async () => (await ask(port.port)) === `b ${port.port}`, {
        what: "b alone",
      });
      for (let i = 0; i < 4; i++) assert.equal(await ask(port.port), `b ${port.port}`);
    } finally {
      await port.close();
      await kernel.close();
      await a.close();
      await b.close();
    }
  },
});

Deno.test({
  name:
    "a steered backend that closed its socket falls through to the proxy; no backend, no steering",
  ignore,
  fn: async () => {
    const kernel = await openKernel();
    const a = server("a");
    const port = new ServicePort({ port: 0, kernel, waitForBackendMs: 3_000 });
    try {
      await port.listen();
      assert.equal(kernel.pathOf(port.port), undefined);
      port.add({ id: "a", host: HOST, port: a.port });
      await waitFor(() => kernel.pathOf(port.port) === "sk_lookup", { what: "the port steered" });
      assert.equal(await ask(port.port), `a ${port.port}`);
      await a.close(); // crashed: its socket leaves the kernel's map at once
      const held = ask(port.port);
      await waitFor(() => port.pending() === 1, { what: "the client held by the proxy" });
      const again = Deno.listen({ hostname: HOST, port: a.port });
      const answered = (async () => {
        const conn = await again.accept();
        await conn.write(new TextEncoder().encode("a again"));
        conn.close();
      })();
      assert.equal(await within(held, 3_000, "the held client"), "a again");
      await answered;
      again.close();
      port.remove("a");
      await waitFor(() => kernel.pathOf(port.port) === undefined, { what: "no steering" });
    } finally {
      await port.close();
      await kernel.close();
      await a.close();
    }
  },
});

Deno.test({
  name: "a backend back on its port as another process is steered to its new socket",
  ignore,
  fn: async () => {
    const kernel = await openKernel();
    const first = server("a1");
    const port = new ServicePort({ port: 0, kernel });
    let second: ReturnType<typeof server> | undefined;
    try {
      await port.listen();
      port.add({ id: "a", host: HOST, port: first.port, pid: Deno.pid });
      await waitFor(() => kernel.pathOf(port.port) === "sk_lookup", { what: "the port steered" });
      assert.equal(await ask(port.port), `a1 ${port.port}`);
      const again = first.port;
      await first.close();
      second = server("a2", false, again);
      // The supervisor says so: the same replica, a new process (here: another pid to look in).
      port.add({ id: "a", host: HOST, port: again, pid: 1 });
      await waitFor(async () => (await ask(port.port)) === `a2 ${port.port}`, {
        what: "the new socket steered",
      });
    } finally {
      await port.close();
      await kernel.close();
      await first.close();
      await second?.close();
    }
  },
});

Deno.test({
  name: "a steered drain takes the backend out and waits for the connections it accepted",
  ignore,
  fn: async () => {
    const kernel = await openKernel();
    const a = server("a", true);
    const b = server("b");
    const port = new ServicePort({ port: 0, kernel });
    const client = { conn: undefined as Deno.Conn | undefined };
    try {
      await port.listen();
      port.add({ id: "a", host: HOST, port: a.port });
      await waitFor(() => kernel.pathOf(port.port) === "sk_lookup", { what: "the port steered" });
      client.conn = await Deno.connect({ hostname: HOST, port: port.port });
      await waitFor(() => a.held.length === 1, { what: "the connection at a" });
      port.add({ id: "b", host: HOST, port: b.port });
      let drained = false;
      const drain = port.drain("a", 10_000).then(() => drained = true);
      await waitFor(async () => (await ask(port.port)) === `b ${port.port}`, {
        what: "new connections at b",
      });
      for (let i = 0; i < 3; i++) assert.equal(await ask(port.port), `b ${port.port}`);
      assert.equal(drained, false, "the drain waits for a's open connection");
      client.conn.close();
      client.conn = undefined;
      for (const c of a.held.splice(0)) c.close();
      await within(drain, 5_000, "the drain once the connection closed");
    } finally {
      client.conn?.close();
      await port.close();
      await kernel.close();
      await a.close();
      await b.close();
    }
  },
});

Deno.test({
  name: "a remote backend is DNATed, not steered; the port is steered again once a local one is in",
  ignore,
  fn: async () => {
    const kernel = await openKernel();
    const a = server("a");
    const port = new ServicePort({ port: 0, host: HOST, kernel });
    try {
      await port.listen();
      port.add({ id: "far", host: "127.0.0.3", port: freePort(), remote: true });
      await waitFor(() => kernel.pathOf(port.port) === "nftables", { what: "the DNAT rule" });
      port.add({ id: "a", host: HOST, port: a.port });
      await waitFor(() => kernel.pathOf(port.port) === "sk_lookup", { what: "the port steered" });
      assert.equal(await ask(port.port), `a ${port.port}`);
      const nft = await new Deno.Command("nft", { args: ["list", "table", "ip", kernel.table] })
        .output();
      // Connections DNATed before may still be open: conntrack must go on translating them.
      assert.ok(decoder.decode(nft.stdout).includes("type nat"), "the nat chains stay");
    } finally {
      await port.close();
      await kernel.close();
      await a.close();
    }
  },
});

Deno.test({
  name: "the steering ends with the process that attached it, killed or not",
  ignore,
  fn: async () => {
    const a = server("a");
    const svc = freePort();
    const script = `
      import { SocketSteering } from ${
      JSON.stringify(new URL("../../runtime/socket_steering.ts", import.meta.url).href)
    };
      const s = SocketSteering.open();
      if (!(s instanceof SocketSteering)) throw new Error(s.unavailable);
      if (!s.steer(${svc}, undefined, [{ id: "a", host: "${HOST}", port: ${a.port} }])) throw new Error("not steered");
      console.log("steering");
      setInterval(() => {}, 60_000); // alive until killed`;
    const child = new Deno.Command(Deno.execPath(), {
      args: ["eval", "--quiet", script],
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    try {
      const reader = child.stdout.getReader();
      const first = await within(reader.read(), 20_000, "the child steering");
      assert.match(decoder.decode(first.value), /steering/);
      reader.releaseLock();
      assert.equal(await ask(svc), `a ${svc}`, "steered while the child lives");
      child.kill("SIGKILL");
      await child.status;
      // The kernel detaches the program as it releases the child's files, a moment after exit.
      await waitFor(async () => (await ask(svc)) === "", {
        timeoutMs: 5_000,
        what: "nothing answering on the port once the steering is gone",
      });
    } finally {
      try {
        child.kill("SIGKILL");
      } catch { /* gone */ }
      await child.status;
      await child.stdout.cancel().catch(() => {});
      await a.close();
    }
  },
});
