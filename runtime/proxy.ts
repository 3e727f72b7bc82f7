/**
 * The L4 load balancer in front of a service's port: a prisn-owned TCP listener that forwards
 * each client connection, byte for byte, to one ready replica (round-robin). It knows nothing of
 * HTTP, so any TCP protocol works.
 *
 * Bytes are copied with `Deno.Conn` read/write loops over one reused buffer per direction: on our
 * machines that beat `node:net` piping and web streams (see bench/proxy_bench.ts).
 *
 * @module
 */

import { invalid, PrisnError } from "../core/errors.ts";

/** One replica the proxy can forward connections to. */
export interface Backend {
  /** Stable id (the replica name); `remove`, `drain` and `connections` take it. */
  id: string;
  /** The replica's own port. */
  port: number;
  /**
   * Where the replica listens.
   * @default "127.0.0.1"
   */
  host?: string;
  /**
   * A replica on another node: sent connections only while no replica of this node is in
   * rotation (see {@linkcode preferred}).
   * @default false
   */
  remote?: boolean;
  /**
   * The replica's process: where the kernel path's socket steering looks for its listening
   * socket first (before every process of the host).
   */
  pid?: number;
}

/** A backend with its defaults filled in (the process hint stays optional). */
export type ReadyBackend = Required<Omit<Backend, "pid">> & Pick<Backend, "pid">;

/** The backends new connections go to: this node's, or the others' while this node has none. */
export function preferred<T extends Backend>(backends: readonly T[]): readonly T[] {
  const local = backends.filter((b) => !b.remote);
  return local.length > 0 ? local : backends;
}

/** Options for {@linkcode TcpProxy}. */
export interface TcpProxyOptions {
  /** Port to listen on; 0 picks a free one (read it back from `port` after `listen`). */
  port: number;
  /**
   * Address to listen on.
   * @default "0.0.0.0"
   */
  host?: string;
  /**
   * Listen with SO_REUSEPORT, so that several proxies (one per worker thread) share the port and
   * the kernel spreads new connections over them (Linux).
   * @default false
   */
  reusePort?: boolean;
  /**
   * How long a client connection is held, from the moment it is accepted, while no backend can
   * take it (none in rotation, or every one refused): it is forwarded as soon as one can, and
   * closed when this runs out.
   * @default 5000
   */
  waitForBackendMs?: number;
  /**
   * How long one connect to a backend may take before the next backend is tried.
   * @default 2000
   */
  connectTimeoutMs?: number;
  /**
   * Bytes of buffer per direction per connection (nginx's `proxy_buffer_size` default).
   * @default 16384
   */
  bufferSize?: number;
  /**
   * Told of failures of the proxy itself (e.g. `accept` failing for lack of file descriptors).
   * Failures of single connections (resets, refused backends) are handled and not reported.
   * @default ignore
   */
  onError?: (error: unknown) => void;
}

/**
 * The backends in rotation, as both engines keep them (this file's and epoll_proxy.ts):
 * replaced (never mutated) on every change, which is told to `changed`.
 */
export class BackendList {
  /** The backends in rotation. */
  ready: readonly ReadyBackend[] = [];
  /** The ones of `ready` new connections go to (see {@linkcode preferred}). */
  rotation: readonly ReadyBackend[] = [];
  readonly #changed: () => void;

  constructor(changed: () => void) {
    this.#changed = changed;
  }

  /** Replaces the backends in rotation. */
  set(backends: Backend[]): void {
    const byId = new Map<string, ReadyBackend>();
    for (const backend of backends) byId.set(backend.id, normalize(backend));
    this.#set([...byId.values()]);
  }

  /** Puts a backend in rotation, or updates the one with the same id. */
  add(backend: Backend): void {
    const added = normalize(backend);
    const index = this.ready.findIndex((b) => b.id === added.id);
    this.#set(
      index === -1 ? [...this.ready, added] : this.ready.map((b, i) => i === index ? added : b),
    );
  }

  /** Takes a backend out of rotation. */
  remove(id: string): void {
    if (!this.ready.some((b) => b.id === id)) return;
    this.#set(this.ready.filter((b) => b.id !== id));
  }

  #set(ready: readonly ReadyBackend[]): void {
    this.ready = ready;
    this.rotation = preferred(ready);
    this.#changed();
  }
}

/**
 * What both engines share: the backend set, and the calls that change and read it. `changed` is
 * told of every change.
 */
export abstract class BackendProxy {
  readonly #backends: BackendList;

  constructor(changed: () => void) {
    this.#backends = new BackendList(changed);
  }

  /** The backends in rotation and the ones new connections go to. */
  protected get backendList(): BackendList {
    return this.#backends;
  }

  /** Replaces the backends in rotation (the ready replicas). Open connections are untouched. */
  setBackends(backends: Backend[]): void {
    this.backendList.set(backends);
  }

  /** Puts a backend in rotation, or updates the one with the same id. */
  add(backend: Backend): void {
    this.backendList.add(backend);
  }

  /**
   * Takes a backend out of rotation: it gets no new connections; its open ones go on (use
   * `drain` to wait for them, or to end them).
   */
  remove(id: string): void {
    this.backendList.remove(id);
  }

  /** Every backend in rotation, with where each listens. */
  backendSet(): readonly ReadyBackend[] {
    return this.backendList.ready;
  }

  /** The ids of the backends in rotation, in rotation order. */
  backends(): string[] {
    return this.backendList.ready.map((b) => b.id);
  }
}

/** What a service port needs of a proxy, whichever engine (this file's, or epoll_proxy.ts). */
export type PortProxy = { [K in keyof TcpProxy]: TcpProxy[K] };

/** Pause between two rounds over backends that all failed to connect. */
const RETRY_PAUSE_MS = 50;
/** Pause after a failed `accept` before the next, so a lack of file descriptors does not spin. */
const ACCEPT_PAUSE_MS = 20;

/** One client connection forwarded to one backend. */
interface Link {
  readonly backendId: string;
  readonly client: Deno.Conn;
  readonly upstream: Deno.Conn;
  /** Resolves once both sockets are closed and the link is forgotten. */
  readonly done: Promise<void>;
  aborted: boolean;
}

/**
 * Listens on one port and forwards each accepted TCP connection to a ready backend.
 *
 * ```ts
 * const proxy = new TcpProxy({ port: 8080 });
 * await proxy.listen();
 * proxy.add({ id: "web-1", port: 41001 });
 * proxy.add({ id: "web-2", port: 41002 });
 * // rolling replace: new replica in, old one drained out
 * proxy.add({ id: "web-3", port: 41003 });
 * await proxy.drain("web-1", 30_000);
 * await proxy.close();
 * ```
 */
export class TcpProxy extends BackendProxy {
  readonly #port: number;
  readonly #host: string;
  readonly #waitForBackendMs: number;
  readonly #connectTimeoutMs: number;
  readonly #bufferSize: number;
  readonly #onError: (error: unknown) => void;
  readonly #reusePort: boolean;

  #listener?: Deno.TcpListener;
  #acceptLoop?: Promise<void>;
  #closed = false;
  #closing?: Promise<void>;

  #next = 0;
  /** Wakes connections that wait for the backend set to change. */
  #waiters = new Set<() => void>();
  /** Connect attempts in flight, aborted by `close`. */
  #dials = new Set<AbortController>();
  /** Accepted clients not yet forwarded to a backend. */
  #pending = new Set<Deno.Conn>();
  #links = new Set<Link>();
  /** One task per accepted connection, awaited by `close`. */
  #tasks = new Set<Promise<void>>();

  /** Creates a proxy; nothing listens until {@linkcode TcpProxy.listen}. */
  constructor(options: TcpProxyOptions) {
    super(() => this.#wake());
    checkPort(options.port, "proxy port", 0);
    this.#port = options.port;
    this.#host = options.host ?? "0.0.0.0";
    this.#waitForBackendMs = options.waitForBackendMs ?? 5000;
    this.#connectTimeoutMs = options.connectTimeoutMs ?? 2000;
    this.#bufferSize = options.bufferSize ?? 16384;
    this.#onError = options.onError ?? (() => {});
    this.#reusePort = options.reusePort ?? false;
  }

  /** The port listened on once `listen` has resolved (the configured one before). */
  get port(): number {
    return this.#listener?.addr.port ?? this.#port;
  }

  /**
   * Starts listening and forwarding.
   *
   * @throws {PrisnError} `CONFLICT` when the port is taken by another program (nothing is left
   * listening then), `FAILED` when the port cannot be bound for another reason.
   */
  listen(): Promise<void> {
    if (this.#closed) {
      return Promise.reject(new PrisnError("CONFLICT", "this proxy is closed: create a new one"));
    }
    if (this.#listener) {
      return Promise.reject(
        new PrisnError("CONFLICT", `this proxy already listens on port ${this.port}`),
      );
    }
    try {
      this.#listener = Deno.listen({
        hostname: this.#host,
        port: this.#port,
        transport: "tcp",
        ...this.#reusePort ? { reusePort: true } : {},
      });
    } catch (error) {
      return Promise.reject(listenError(error, this.#host, this.#port));
    }
    this.#acceptLoop = this.#accept(this.#listener);
    return Promise.resolve();
  }

  /** Open forwarded connections: to backend `id`, or to all backends. */
  connections(id?: string): number {
    if (id === undefined) return this.#links.size;
    let count = 0;
    for (const link of this.#links) if (link.backendId === id) count++;
    return count;
  }

  /** Accepted client connections still waiting for a backend. */
  pending(): number {
    return this.#pending.size;
  }

  /**
   * Takes backend `id` out of rotation, then resolves once its open connections have closed, or
   * after `graceMs`, having closed the ones still open.
   */
  async drain(id: string, graceMs: number): Promise<void> {
    this.remove(id);
    const links = [...this.#links].filter((link) => link.backendId === id);
    if (links.length === 0) return;
    const allDone = Promise.all(links.map((link) => link.done));
    let timer: ReturnType<typeof setTimeout> | undefined;
    const graceOver = new Promise<true>((resolve) => {
      timer = setTimeout(() => resolve(true), Math.max(0, graceMs));
    });
    try {
      if (await Promise.race([allDone, graceOver]) === true) {
        for (const link of links) abort(link);
        await allDone;
      }
    } finally {
      clearTimeout(timer);
    }
  }

  /** Stops listening and closes every connection, forwarded or waiting. Safe to call twice. */
  close(): Promise<void> {
    this.#closing ??= this.#shutdown();
    return this.#closing;
  }

  async #shutdown(): Promise<void> {
    this.#closed = true;
    closeQuietly(this.#listener);
    this.#wake();
    for (const dial of this.#dials) dial.abort();
    for (const link of this.#links) abort(link);
    await this.#acceptLoop;
    // Tasks end promptly now; each removes itself, so take a snapshot.
    await Promise.all([...this.#tasks]);
  }

  async #accept(listener: Deno.TcpListener): Promise<void> {
    while (!this.#closed) {
      let client: Deno.TcpConn;
      try {
        client = await listener.accept();
      } catch (error) {
        if (this.#closed || error instanceof Deno.errors.BadResource) return;
        this.#report(error);
        await new Promise((resolve) => setTimeout(resolve, ACCEPT_PAUSE_MS));
        continue;
      }
      if (this.#closed) {
        closeQuietly(client);
        return;
      }
      const task = this.#serve(client);
      this.#tasks.add(task);
      task.then(() => this.#tasks.delete(task));
    }
  }

  /** Forwards one client connection; never rejects. */
  async #serve(client: Deno.TcpConn): Promise<void> {
    this.#pending.add(client);
    let found: { backend: ReadyBackend; conn: Deno.TcpConn } | undefined;
    const deadline = Date.now() + this.#waitForBackendMs;
    try {
      while (!this.#closed) {
        found = await this.#connect(deadline);
        // No await from this check to `#links.add` below: a `drain` that takes the backend out
        // of rotation meanwhile either sees the link or is seen here (and the client moves on).
        if (!found || inRotation(this.backendList.ready, found.backend)) break;
        closeQuietly(found.conn);
        found = undefined;
      }
    } catch (error) {
      this.#report(error);
    } finally {
      this.#pending.delete(client);
    }
    if (!found || this.#closed) {
      closeQuietly(client);
      closeQuietly(found?.conn);
      return;
    }
    try {
      client.setNoDelay(true);
      found.conn.setNoDelay(true);
    } catch {
      // a socket that is already gone fails below, in the copy loops
    }
    const { promise: done, resolve } = Promise.withResolvers<void>();
    const link: Link = {
      backendId: found.backend.id,
      client,
      upstream: found.conn,
      done,
      aborted: false,
    };
    this.#links.add(link);
    try {
      await Promise.all([
        pump(client, found.conn, new Uint8Array(this.#bufferSize), link),
        pump(found.conn, client, new Uint8Array(this.#bufferSize), link),
      ]);
    } finally {
      closeQuietly(client);
      closeQuietly(found.conn);
      this.#links.delete(link);
      resolve();
    }
  }

  /**
   * Connects to a backend in rotation: round-robin, on to the next one when a connect fails,
   * waiting for the backend set to change when none is left, until `deadline`.
   */
  async #connect(
    deadline: number,
  ): Promise<{ backend: ReadyBackend; conn: Deno.TcpConn } | undefined> {
    while (!this.#closed) {
      const candidates = this.backendList.rotation;
      if (candidates.length === 0) {
        if (!await this.#waitForChange(deadline, Infinity)) return undefined;
        continue;
      }
      const start = this.#next++ % candidates.length;
      if (this.#next >= Number.MAX_SAFE_INTEGER) this.#next = 0;
      for (let i = 0; i < candidates.length && !this.#closed; i++) {
        const backend = candidates[(start + i) % candidates.length];
        const conn = await this.#dial(backend);
        if (!conn) continue;
        // Taken out of rotation (drained, removed) while connecting: nothing sent yet, move on.
        if (this.#closed || !inRotation(this.backendList.ready, backend)) {
          closeQuietly(conn);
          continue;
        }
        return { backend, conn };
      }
      if (!await this.#waitForChange(deadline, RETRY_PAUSE_MS)) return undefined;
    }
    return undefined;
  }

  /** One connect attempt, bounded by `connectTimeoutMs`; undefined when it fails. */
  async #dial(backend: ReadyBackend): Promise<Deno.TcpConn | undefined> {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), this.#connectTimeoutMs);
    this.#dials.add(controller);
    try {
      return await Deno.connect({
        hostname: backend.host,
        port: backend.port,
        transport: "tcp",
        signal: controller.signal,
      });
    } catch {
      return undefined;
    } finally {
      clearTimeout(timer);
      this.#dials.delete(controller);
    }
  }

  /**
   * Waits until the backend set changes, `pauseMs` passes or `deadline` comes; true when there
   * is time left to try again.
   */
  #waitForChange(deadline: number, pauseMs: number): Promise<boolean> {
    const ms = Math.min(deadline - Date.now(), pauseMs);
    if (this.#closed || ms <= 0) return Promise.resolve(false);
    return new Promise((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        this.#waiters.delete(wake);
        resolve(!this.#closed && Date.now() < deadline);
      };
      const timer = setTimeout(wake, ms);
      this.#waiters.add(wake);
    });
  }

  #report(error: unknown): void {
    try {
      this.#onError(error);
    } catch {
      // a failing error handler must not take the proxy down
    }
  }

  #wake(): void {
    for (const wake of [...this.#waiters]) wake();
  }
}

/**
 * Copies `from` to `to` until `from` ends, then ends the write side of `to` (half-close). Any
 * failure closes both sockets of the link, which also ends the copy in the other direction.
 */
async function pump(from: Deno.Conn, to: Deno.Conn, buffer: Uint8Array, link: Link) {
  try {
    for (;;) {
      const n = await from.read(buffer);
      if (n === null) break;
      let written = 0;
      while (written < n) written += await to.write(buffer.subarray(written, n));
    }
    await to.closeWrite();
  } catch {
    abort(link);
  }
}

/** Whether `backend` (same id, host and port: a replaced replica may reuse its id) is in rotation. */
export function inRotation(
  ready: readonly ReadyBackend[],
  backend: ReadyBackend,
): boolean {
  return ready.some((b) =>
    b.id === backend.id && b.port === backend.port && b.host === backend.host &&
    b.remote === backend.remote
  );
}

/** Closes both sockets of a link; idempotent. */
function abort(link: Link): void {
  if (link.aborted) return;
  link.aborted = true;
  closeQuietly(link.client);
  closeQuietly(link.upstream);
}

function closeQuietly(closer: { close(): void } | undefined): void {
  try {
    closer?.close();
  } catch {
    // already closed
  }
}

function normalize(backend: Backend): ReadyBackend {
  checkPort(backend.port, `backend ${backend.id} port`, 1);
  return {
    id: backend.id,
    port: backend.port,
    host: backend.host ?? "127.0.0.1",
    remote: backend.remote ?? false,
    ...(backend.pid ? { pid: backend.pid } : {}),
  };
}

/** Throws INVALID unless `port` is a whole number from `min` to 65535. */
export function checkPort(port: number, what: string, min: number): void {
  if (!Number.isInteger(port) || port < min || port > 65535) {
    throw invalid(`${what} ${port} is not a port: use a whole number from ${min} to 65535`);
  }
}

/** The error `listen` fails with for what `Deno.listen` threw. */
export function listenError(error: unknown, host: string, port: number): PrisnError {
  if (error instanceof Deno.errors.AddrInUse) {
    return new PrisnError(
      "CONFLICT",
      `port ${port} is already in use by another program: pick another port or stop it`,
      { cause: error },
    );
  }
  if (error instanceof Deno.errors.PermissionDenied) {
    return new PrisnError(
      "FAILED",
      `cannot listen on port ${port}: permission denied (ports below 1024 need privileges): ` +
        `pick a port above 1023`,
      { cause: error },
    );
  }
  if (error instanceof Deno.errors.AddrNotAvailable) {
    return new PrisnError(
      "INVALID",
      `cannot listen on ${host}:${port}: ${host} is not an address of this machine`,
      { cause: error },
    );
  }
  const reason = error instanceof Error ? error.message : String(error);
  return new PrisnError("FAILED", `cannot listen on ${host}:${port}: ${reason}`, { cause: error });
}
