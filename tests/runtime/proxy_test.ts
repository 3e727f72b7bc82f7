// Every test here runs with Deno's resource and op sanitizers (on by default): a socket, listener,
// timer or pending read that the proxy (or the test) leaves behind fails the test that made it.

import assert from "node:assert/strict";
import { PrisnError } from "../../core/errors.ts";
import {
  type Backend,
  type PortProxy,
  TcpProxy,
  type TcpProxyOptions,
} from "../../runtime/proxy.ts";
import { EpollProxy, epollUnavailable } from "../../runtime/epoll_proxy.ts";
import { freePort, listeners, waitFor, within } from "../_helpers.ts";

const HOST = "127.0.0.1";
/** How long one awaited step may take before the test fails instead of hanging. */
const STEP_MS = 5_000;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

async function writeAll(conn: Deno.Conn, data: Uint8Array): Promise<void> {
  let written = 0;
  while (written < data.length) written += await conn.write(data.subarray(written));
}

/** Reads until end of stream; a reset counts as the end. */
async function readAll(conn: Deno.Conn): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  const buffer = new Uint8Array(64 * 1024);
  try {
    for (;;) {
      const n = await conn.read(buffer);
      if (n === null) break;
      chunks.push(buffer.slice(0, n));
    }
  } catch (error) {
    if (!(error instanceof Deno.errors.ConnectionReset)) throw error;
  }
  const out = new Uint8Array(chunks.reduce((sum, c) => sum + c.length, 0));
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.length;
  }
  return out;
}

/** Reads one chunk as text ("" at end of stream). */
async function readSome(conn: Deno.Conn): Promise<string> {
  const buffer = new Uint8Array(1024);
  const n = await conn.read(buffer);
  return n === null ? "" : decoder.decode(buffer.subarray(0, n));
}

function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // already closed
  }
}

/** A loopback TCP server that runs `handle` per connection and closes the connection after. */
interface TestServer {
  port: number;
  /** Connections accepted so far. */
  accepted: number;
  /** Connections open right now. */
  open: number;
  backend(id: string): Backend;
  close(): Promise<void>;
}

function startServer(handle: (conn: Deno.Conn) => Promise<void>, port = 0): TestServer {
  const listener = Deno.listen({ hostname: HOST, port });
  const conns = new Set<Deno.Conn>();
  const tasks = new Set<Promise<void>>();
  const server: TestServer = {
    port: listener.addr.port,
    accepted: 0,
    open: 0,
    backend: (id) => ({ id, port: server.port, host: HOST }),
    close: async () => {
      try {
        listener.close();
      } catch {
        // closed
      }
      for (const conn of conns) closeQuietly(conn);
      await loop;
      await Promise.all([...tasks]);
    },
  };
  const loop = (async () => {
    for (;;) {
      let conn: Deno.Conn;
      try {
        conn = await listener.accept();
      } catch {
        return;
      }
      server.accepted++;
      server.open++;
      conns.add(conn);
      const task = handle(conn).catch(() => {}).finally(() => {
        closeQuietly(conn);
        conns.delete(conn);
        server.open--;
      });
      tasks.add(task);
      task.then(() => tasks.delete(task));
    }
  })();
  return server;
}

/** Answers one request with its name. */
function nameServer(name: string, port = 0): TestServer {
  return startServer(async (conn) => {
    await conn.read(new Uint8Array(1024));
    await writeAll(conn, encoder.encode(name));
  }, port);
}

/** Echoes everything; at the client's end of stream writes "|eof" and ends. */
function echoServer(): TestServer {
  return startServer(async (conn) => {
    const buffer = new Uint8Array(64 * 1024);
    for (;;) {
      const n = await conn.read(buffer);
      if (n === null) break;
      await writeAll(conn, buffer.subarray(0, n));
    }
    await writeAll(conn, encoder.encode("|eof"));
  });
}

/** One request through the proxy: sends `text`, ends its side, returns all that comes back. */
async function request(port: number, text = "ping"): Promise<string> {
  const conn = await Deno.connect({ hostname: HOST, port });
  try {
    await writeAll(conn, encoder.encode(text));
    await conn.closeWrite();
    return decoder.decode(await within(readAll(conn), STEP_MS, "the answer"));
  } finally {
    closeQuietly(conn);
  }
}

/** Both engines run every test: Deno's copy loop, and the epoll worker where available. */
const ENGINES: { name: string; make: (options: TcpProxyOptions) => PortProxy }[] = [
  { name: "deno", make: (options) => new TcpProxy(options) },
];
const noEpoll = epollUnavailable(HOST);
if (noEpoll) console.log(`epoll engine tests skipped: ${noEpoll}`);
else ENGINES.push({ name: "epoll", make: (options) => new EpollProxy(options) });

/** The engine of the test that runs (tests of one file run one after the other). */
let newProxy = ENGINES[0].make;

function test(name: string, fn: () => Promise<void>): void {
  for (const engine of ENGINES) {
    Deno.test(`${name} [${engine.name}]`, () => {
      newProxy = engine.make;
      return fn();
    });
  }
}

async function startProxy(options: { waitForBackendMs?: number } = {}): Promise<PortProxy> {
  const proxy = newProxy({ port: 0, host: HOST, ...options });
  await proxy.listen();
  return proxy;
}

test("round-robin spreads connections evenly over the ready backends", async () => {
  const servers = ["a", "b", "c"].map((name) => nameServer(name));
  const proxy = await startProxy();
  try {
    proxy.setBackends(servers.map((s, i) => s.backend("abc"[i])));
    const answers: string[] = [];
    for (let i = 0; i < 30; i++) answers.push(await request(proxy.port));
    assert.equal(new Set(answers.slice(0, 3)).size, 3, `first three: ${answers.slice(0, 3)}`);
    for (const name of ["a", "b", "c"]) {
      assert.equal(answers.filter((a) => a === name).length, 10, `answers: ${answers}`);
    }
    assert.deepEqual(servers.map((s) => s.accepted), [10, 10, 10]);
  } finally {
    await proxy.close();
    await Promise.all(servers.map((s) => s.close()));
  }
});

test("a replica on another node gets connections only while this node has none", async () => {
  const local = nameServer("local");
  const remote = nameServer("remote");
  const proxy = await startProxy();
  try {
    proxy.setBackends([{ ...remote.backend("r"), remote: true }, local.backend("l")]);
    for (let i = 0; i < 4; i++) assert.equal(await request(proxy.port), "local");
    proxy.remove("l");
    for (let i = 0; i < 2; i++) assert.equal(await request(proxy.port), "remote");
    assert.deepEqual(proxy.backends(), ["r"]);
  } finally {
    await proxy.close();
    await Promise.all([local.close(), remote.close()]);
  }
});

test("a backend that refuses connections is skipped and no client fails", async () => {
  const a = nameServer("a");
  const b = nameServer("b");
  const proxy = await startProxy();
  try {
    proxy.setBackends([
      a.backend("a"),
      { id: "dead", port: freePort(), host: HOST },
      b.backend("b"),
    ]);
    const answers = await within(
      Promise.all(Array.from({ length: 40 }, () => request(proxy.port))),
      STEP_MS,
      "40 requests",
    );
    assert.deepEqual(answers.filter((x) => x !== "a" && x !== "b"), [], "failed requests");
    assert.ok(a.accepted > 0 && b.accepted > 0, `a=${a.accepted} b=${b.accepted}`);
    assert.equal(a.accepted + b.accepted, 40);
    await waitFor(() => proxy.connections() === 0, { what: "no open connections" });
  } finally {
    await proxy.close();
    await Promise.all([a.close(), b.close()]);
  }
});

test("a client waits for the first backend to appear", async () => {
  const proxy = await startProxy({ waitForBackendMs: 5000 });
  const a = nameServer("a");
  try {
    const answer = request(proxy.port);
    await waitFor(() => proxy.pending() === 1, { what: "the client to be held" });
    proxy.add(a.backend("a"));
    assert.equal(await within(answer, STEP_MS, "the held request"), "a");
    assert.equal(proxy.pending(), 0);
  } finally {
    await proxy.close();
    await a.close();
  }
});

test("a held client is closed when no backend appears within the wait", async () => {
  const proxy = await startProxy({ waitForBackendMs: 150 });
  try {
    const started = Date.now();
    assert.equal(await within(request(proxy.port), STEP_MS, "the client to be closed"), "");
    assert.ok(Date.now() - started >= 140, `closed after ${Date.now() - started} ms`);
    assert.equal(proxy.pending(), 0);
  } finally {
    await proxy.close();
  }
});

test("a held client reaches a refusing backend once it starts listening", async () => {
  const proxy = await startProxy({ waitForBackendMs: 5000 });
  const port = freePort();
  let server: TestServer | undefined;
  try {
    proxy.setBackends([{ id: "late", port, host: HOST }]);
    const answer = request(proxy.port);
    await waitFor(() => proxy.pending() === 1, { what: "the client to be held" });
    server = nameServer("late", port);
    assert.equal(await within(answer, STEP_MS, "the held request"), "late");
  } finally {
    await proxy.close();
    await server?.close();
  }
});

test("drain waits for an open connection, and the backend gets no new ones", async () => {
  const a = echoServer();
  const b = nameServer("b");
  const proxy = await startProxy();
  let client: Deno.Conn | undefined;
  try {
    proxy.setBackends([a.backend("a")]);
    client = await Deno.connect({ hostname: HOST, port: proxy.port });
    await writeAll(client, encoder.encode("x"));
    assert.equal(await within(readSome(client), STEP_MS, "the echo"), "x");
    proxy.add(b.backend("b"));
    assert.equal(proxy.connections("a"), 1);

    let drained = false;
    const draining = proxy.drain("a", 30_000).then(() => drained = true);
    assert.deepEqual(proxy.backends(), ["b"]);
    for (let i = 0; i < 5; i++) assert.equal(await request(proxy.port), "b");
    await writeAll(client, encoder.encode("still there"));
    assert.equal(await within(readSome(client), STEP_MS, "the echo"), "still there");
    assert.equal(drained, false);
    assert.equal(a.accepted, 1);

    await client.closeWrite();
    assert.equal(
      decoder.decode(await within(readAll(client), STEP_MS, "the end of the echo")),
      "|eof",
    );
    await within(draining, STEP_MS, "drain to finish");
    assert.equal(proxy.connections("a"), 0);
    assert.equal(a.accepted, 1);
  } finally {
    if (client) closeQuietly(client);
    await proxy.close();
    await Promise.all([a.close(), b.close()]);
  }
});

test("drain closes connections still open when the grace period ends", async () => {
  const a = echoServer();
  const proxy = await startProxy();
  let client: Deno.Conn | undefined;
  try {
    proxy.setBackends([a.backend("a")]);
    client = await Deno.connect({ hostname: HOST, port: proxy.port });
    await writeAll(client, encoder.encode("x"));
    assert.equal(await within(readSome(client), STEP_MS, "the echo"), "x");

    const started = Date.now();
    await within(proxy.drain("a", 100), STEP_MS, "drain to give up");
    const took = Date.now() - started;
    assert.ok(took >= 90, `drain took ${took} ms`);
    assert.equal(proxy.connections(), 0);
    assert.equal((await within(readAll(client), STEP_MS, "the end of stream")).length, 0);
    await waitFor(() => a.open === 0, { what: "the upstream side to be closed" });
  } finally {
    if (client) closeQuietly(client);
    await proxy.close();
    await a.close();
  }
});

test("a port in use fails with CONFLICT and leaves nothing listening", async () => {
  const taken = Deno.listen({ hostname: HOST, port: 0 });
  const port = taken.addr.port;
  const proxy = newProxy({ port, host: HOST });
  try {
    await assert.rejects(proxy.listen(), (error) => {
      assert.ok(error instanceof PrisnError);
      assert.equal(error.code, "CONFLICT");
      assert.equal(
        error.message,
        `port ${port} is already in use by another program: pick another port or stop it`,
      );
      return true;
    });
    // Nothing of the proxy's listens there: the one listener is `taken` (checked while it holds
    // the port, so that a parallel test cannot take the port in between, as one did in CI).
    assert.equal(listeners(port), 1);
  } finally {
    taken.close();
    await proxy.close();
  }
});

test("raw TCP passes through both ways, including a half-close", async () => {
  const a = echoServer();
  const proxy = await startProxy();
  try {
    proxy.setBackends([a.backend("a")]);
    assert.equal(await request(proxy.port, "hello"), "hello|eof");

    // 4 MiB each way at once: partial writes and back-pressure on every hop.
    const payload = new Uint8Array(4 * 1024 * 1024);
    for (let i = 0; i < payload.length; i++) payload[i] = (i * 7919) % 251;
    const conn = await Deno.connect({ hostname: HOST, port: proxy.port });
    try {
      const received = readAll(conn);
      await writeAll(conn, payload);
      await conn.closeWrite();
      const echoed = await within(received, STEP_MS, "the echo");
      assert.equal(echoed.length, payload.length + 4);
      assert.deepEqual(echoed.subarray(0, payload.length), payload);
      assert.equal(decoder.decode(echoed.subarray(payload.length)), "|eof");
    } finally {
      closeQuietly(conn);
    }
    await waitFor(() => proxy.connections() === 0 && a.open === 0, { what: "both sides to close" });
  } finally {
    await proxy.close();
    await a.close();
  }
});

test("a client that resets mid-transfer does not disturb the proxy", async () => {
  const flood = startServer(async (conn) => {
    const chunk = new Uint8Array(64 * 1024);
    for (;;) await writeAll(conn, chunk);
  });
  const b = nameServer("b");
  const proxy = await startProxy();
  try {
    proxy.setBackends([flood.backend("flood")]);
    const conn = await Deno.connect({ hostname: HOST, port: proxy.port });
    await within(conn.read(new Uint8Array(1024)), STEP_MS, "the first bytes");
    conn.close(); // unread data pending: the kernel answers further data with a reset
    await waitFor(() => proxy.connections() === 0, { what: "the reset connection to be closed" });
    await waitFor(() => flood.open === 0, { what: "the upstream side to be closed" });

    proxy.setBackends([b.backend("b")]);
    assert.equal(await request(proxy.port), "b");
  } finally {
    await proxy.close();
    await Promise.all([flood.close(), b.close()]);
  }
});

test("no socket is left open after many connections come and go", async () => {
  const a = echoServer();
  const b = nameServer("b");
  const proxy = await startProxy();
  try {
    proxy.setBackends([a.backend("a"), b.backend("b")]);
    const answers = await within(
      Promise.all(Array.from({ length: 100 }, (_, i) => request(proxy.port, `m${i}`))),
      STEP_MS,
      "100 requests",
    );
    assert.equal(answers.filter((x) => x === "b").length, 50);
    assert.equal(answers.filter((x) => /^m\d+\|eof$/.test(x)).length, 50);
    await waitFor(() => proxy.connections() === 0 && a.open === 0 && b.open === 0, {
      what: "every proxied connection to close",
    });
    assert.equal(proxy.pending(), 0);
    assert.equal(a.accepted + b.accepted, 100);
  } finally {
    await proxy.close();
    await Promise.all([a.close(), b.close()]);
  }
});

test("close() ends every connection and leaves nothing listening", async () => {
  const a = echoServer();
  const proxy = await startProxy({ waitForBackendMs: 30_000 });
  const port = proxy.port;
  const clients: Deno.Conn[] = [];
  try {
    proxy.setBackends([a.backend("a")]);
    const linked = await Deno.connect({ hostname: HOST, port });
    clients.push(linked);
    await writeAll(linked, encoder.encode("x"));
    assert.equal(await within(readSome(linked), STEP_MS, "the echo"), "x");

    proxy.setBackends([]);
    const held = await Deno.connect({ hostname: HOST, port });
    clients.push(held);
    await waitFor(() => proxy.pending() === 1, { what: "the second client to be held" });

    await within(proxy.close(), STEP_MS, "close");
    assert.equal(proxy.connections(), 0);
    assert.equal(proxy.pending(), 0);
    assert.equal((await within(readAll(linked), STEP_MS, "the end of stream")).length, 0);
    assert.equal((await within(readAll(held), STEP_MS, "the end of stream")).length, 0);
    await waitFor(() => a.open === 0, { what: "the upstream side to be closed" });
    await assert.rejects(Deno.connect({ hostname: HOST, port }), Deno.errors.ConnectionRefused);
    await proxy.close(); // a second close is harmless
  } finally {
    for (const conn of clients) closeQuietly(conn);
    await proxy.close();
    await a.close();
  }
});
