// The epoll engine's own parts: which engine a service port gets and why; a backend named by a
// host name. Everything the two engines share is tested on both in proxy_test.ts.

import assert from "node:assert/strict";
import { lookup } from "node:dns/promises";
import { EpollUnavailable, epollUnavailable } from "../../runtime/epoll_proxy.ts";
import { ServicePort } from "../../runtime/service_port.ts";
import { listeners, waitFor, within } from "../_helpers.ts";

const NO_EPOLL = epollUnavailable("127.0.0.1");
if (NO_EPOLL) console.log(`epoll_proxy_test: skipping the epoll engine tests: ${NO_EPOLL}`);

Deno.test("a service port on IPv4 uses the epoll engine, and get's balancer says so", {
  ignore: NO_EPOLL !== undefined,
}, () => {
  const port = new ServicePort({ port: 0, host: "127.0.0.1" });
  assert.equal(port.engine, "epoll");
  assert.equal(port.engineFallback, undefined);
  assert.deepEqual(port.balancer, { kind: "userspace", engine: "epoll", workers: 1 });
});

Deno.test(
  "a service port with 2 epoll workers: one SO_REUSEPORT listener each, backends, counts and drains over both",
  {
    ignore: NO_EPOLL !== undefined,
  },
  async () => {
    const backend = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const held: Deno.Conn[] = [];
    const served = (async () => {
      for await (const conn of backend) {
        held.push(conn);
        conn.write(new TextEncoder().encode("hi")).catch(() => {});
      }
    })();
    const port = new ServicePort({ port: 0, host: "127.0.0.1", workers: 2 });
    const clients: Deno.Conn[] = [];
    try {
      await port.listen();
      assert.deepEqual(port.balancer, { kind: "userspace", engine: "epoll", workers: 2 });
      assert.equal(listeners(port.port), 2);
      port.add({ id: "b1", port: backend.addr.port, host: "127.0.0.1" });
      // The kernel hands each new connection to one of the two listeners (by its hash).
      for (let i = 0; i < 16; i++) {
        const c = await Deno.connect({ hostname: "127.0.0.1", port: port.port });
        clients.push(c);
        const buf = new Uint8Array(2);
        assert.equal(await within(c.read(buf), 5_000, "a greeting"), 2);
      }
      await waitFor(() => port.connections("b1") === 16, { what: "16 connections counted" });
      let drained = false;
      const drain = port.drain("b1", 10_000).then(() => drained = true);
      assert.deepEqual(port.backends(), []);
      await new Promise((r) => setTimeout(r, 100));
      assert.equal(drained, false, "the drain waits for the open connections");
      for (const c of clients.splice(0)) c.close();
      for (const c of held.splice(0)) c.close(); // a link ends once both sides have closed
      await within(drain, 5_000, "the drain");
      assert.equal(port.connections(), 0);
    } finally {
      for (const c of clients) c.close();
      await port.close();
      backend.close();
      for (const c of held) c.close();
      await served.catch(() => {});
    }
    assert.equal(listeners(port.port), 0, "both listeners closed");
  },
);

Deno.test("where the epoll engine cannot listen, the Deno copy loop serves and says why", async () => {
  const host = "fe80::1%lo"; // a link-local address with its zone
  const port = new ServicePort({ port: 0, host });
  assert.equal(port.engine, "deno");
  const why = Deno.build.os === "linux"
    ? `the epoll engine listens on IPv4 and IPv6 addresses without a zone only (not ${host})`
    : `the epoll engine is Linux only (this is ${Deno.build.os})`;
  assert.equal(port.engineFallback, why);
  assert.deepEqual(port.balancer, { kind: "userspace", engine: "deno", engineFallback: why });
  await port.close();
  assert.throws(
    () => new ServicePort({ port: 0, host, engine: "epoll" }),
    (error) => error instanceof EpollUnavailable && error.message === why,
  );
});

/** Whether this host has IPv6 loopback (`::1` can be bound). */
function hasIpv6Loopback(): boolean {
  try {
    Deno.listen({ hostname: "::1", port: 0 }).close();
    return true;
  } catch {
    return false;
  }
}

Deno.test("the epoll engine listens on IPv6 and reaches IPv6 and IPv4 backends", {
  ignore: NO_EPOLL !== undefined || !hasIpv6Loopback(),
}, async () => {
  const greeters = ["::1", "127.0.0.1"].map((hostname) => {
    const listener = Deno.listen({ hostname, port: 0 });
    const served = (async () => {
      for await (const conn of listener) {
        await conn.write(new TextEncoder().encode(hostname === "::1" ? "six " : "four"));
        conn.close();
      }
    })();
    return { hostname, listener, served };
  });
  const port = new ServicePort({ port: 0, host: "::1" });
  try {
    assert.equal(port.engine, "epoll");
    await port.listen();
    const read = async () => {
      const c = await Deno.connect({ hostname: "::1", port: port.port });
      try {
        const buf = new Uint8Array(4);
        const n = await within(c.read(buf), 5_000, "an answer through the port");
        return new TextDecoder().decode(buf.subarray(0, n ?? 0));
      } finally {
        c.close();
      }
    };
    port.add({ id: "v6", port: greeters[0].listener.addr.port, host: "::1" });
    assert.equal(await read(), "six ");
    port.remove("v6");
    port.add({ id: "v4", port: greeters[1].listener.addr.port, host: "127.0.0.1" });
    assert.equal(await read(), "four");
  } finally {
    await port.close();
    for (const g of greeters) {
      g.listener.close();
      await g.served.catch(() => {});
    }
  }
});

Deno.test("the Deno copy loop when asked for", () => {
  const port = new ServicePort({ port: 0, host: "127.0.0.1", engine: "deno" });
  assert.equal(port.engine, "deno");
  assert.equal(port.engineFallback, "the Deno copy loop was asked for");
});

/** This machine's name when the system resolves it to loopback (as /etc/hosts often does). */
async function loopbackName(): Promise<string | undefined> {
  try {
    const { address } = await lookup(Deno.hostname(), { family: 4 });
    return address.startsWith("127.") ? Deno.hostname() : undefined;
  } catch {
    return undefined;
  }
}

Deno.test("a backend named by a host name is reached at its address", {
  ignore: NO_EPOLL !== undefined,
}, async () => {
  const name = await loopbackName();
  if (!name) console.log("  (this machine's name does not resolve to loopback: localhost only)");
  const backend = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = new ServicePort({ port: 0, host: "127.0.0.1" });
  await port.listen();
  try {
    // "localhost" is known without a lookup; the machine's name goes through the resolver.
    for (const host of name ? ["localhost", name] : ["localhost"]) {
      port.remove("b");
      port.add({ id: "b", port: backend.addr.port, host });
      const client = await Deno.connect({ hostname: "127.0.0.1", port: port.port });
      const accepted = await within(backend.accept(), 5_000, `a connection via ${host}`);
      await client.write(new TextEncoder().encode("hi"));
      const buf = new Uint8Array(2);
      assert.equal(await accepted.read(buf), 2);
      assert.equal(new TextDecoder().decode(buf), "hi");
      client.close();
      accepted.close();
    }
  } finally {
    await port.close();
    backend.close();
  }
});

/**
 * Round trips of `size` bytes through `port` to an echo `backend`, one after the other.
 */
async function echoRounds(client: Deno.Conn, rounds: number, size: number): Promise<void> {
  const message = new Uint8Array(size).fill(120);
  const answer = new Uint8Array(size);
  for (let i = 0; i < rounds; i++) {
    await client.write(message);
    let got = 0;
    while (got < size) {
      const n = await client.read(answer.subarray(got));
      if (n === null) throw new Error("the proxy closed the link");
      got += n;
    }
  }
}

Deno.test("the epoll worker's copy loop allocates nothing: no collection over 20,000 round trips", {
  ignore: NO_EPOLL !== undefined,
}, async () => {
  // The port runs in a process of its own with V8 printing each collection, and a new space
  // pinned at 1 MiB: 40 bytes a system call (a boxed result, say) would collect 3 times or more.
  const backend = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const echoed = (async () => {
    for await (const conn of backend) {
      (async () => {
        const buf = new Uint8Array(65536);
        for (let n; (n = await conn.read(buf).catch(() => null)) !== null;) {
          await conn.write(buf.subarray(0, n)).catch(() => {});
        }
        conn.close();
      })();
    }
  })();
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "--v8-flags=--trace-gc,--max-semi-space-size=1",
      new URL("../fixtures/epoll_port.ts", import.meta.url).pathname,
      String(backend.addr.port),
    ],
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const stdin = child.stdin.getWriter();
  let collections = 0;
  let marks = 0;
  let port = 0;
  const lines = (async () => {
    let text = "";
    for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
      text += chunk;
      let newline;
      while ((newline = text.indexOf("\n")) !== -1) {
        const line = text.slice(0, newline);
        text = text.slice(newline + 1);
        if (line.startsWith("port ")) port = Number(line.slice(5));
        else if (line === "mark") marks++;
        else if (/Scavenge|Mark-Compact|Minor Mark/.test(line)) collections++;
      }
    }
  })();
  /** The collections so far, once the process has printed all of them. */
  const collected = async () => {
    const mark = marks + 1;
    await stdin.write(new TextEncoder().encode("\n"));
    await waitFor(() => marks >= mark, { timeoutMs: 10_000, what: "the proxy's process to mark" });
    return collections;
  };
  let client: Deno.Conn | undefined;
  try {
    await waitFor(() => port > 0, { timeoutMs: 20_000, what: "the port in its own process" });
    client = await Deno.connect({ hostname: "127.0.0.1", port });
    await echoRounds(client, 3_000, 64); // compiled, settled
    const before = await collected();
    await echoRounds(client, 20_000, 64);
    const during = (await collected()) - before;
    assert.ok(during <= 1, `${during} collections in the proxy's process over 20,000 round trips`);
  } finally {
    client?.close();
    await stdin.close().catch(() => {});
    const done = await Promise.race([
      child.status,
      new Promise((r) => setTimeout(r, 5_000, undefined)),
    ]);
    if (!done) child.kill("SIGKILL");
    await child.status;
    await lines;
    backend.close();
    await echoed;
  }
});
