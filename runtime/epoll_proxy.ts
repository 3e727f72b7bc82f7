/**
 * The epoll engine of the userspace proxy (Linux): the same behaviour as `TcpProxy` (proxy.ts)
 * (round-robin, local before remote, holding clients while no backend can take them, connect
 * retry, drain), but the connections live in one worker thread (_epoll_worker.ts) that blocks in
 * `epoll_wait` and moves bytes with plain recv/send system calls through Deno's FFI, as nginx
 * does.
 *
 * Why: TcpProxy pays one async Deno op (a future, a promise, a turn of the event loop) per read
 * and per write on every connection; that, not the copy, kept it below nginx `stream`
 * (bench/proxy_bench.ts). Here a request costs the same system calls as in nginx and its bytes
 * cross JavaScript as one shared buffer. splice(2) through a pipe per direction was measured too:
 * for HTTP-sized messages it costs more CPU per request (a third call per read, to see the
 * socket empty, and two pipes per connection), so it is not used.
 *
 * The listening socket is made here with socket/bind/listen (Deno gives no file descriptor of its
 * listeners) and handed to the worker by number: descriptors belong to the process. Backends and
 * drains go to the worker as JSON lines on a pipe it watches with its epoll; the worker counts
 * open and pending connections in a SharedArrayBuffer, and answers drains with `postMessage`.
 *
 * Where the engine is not to be had (not Linux, no FFI permission, a listen address that is not an
 * IPv4 or IPv6 literal without a zone, the worker fails to start), {@linkcode epollUnavailable} or
 * {@linkcode EpollUnavailable} says why and ServicePort uses TcpProxy.
 *
 * @module
 */

import { lookup } from "node:dns/promises";
import { PrisnError } from "../core/errors.ts";
import { ipAddress, listenTcp, O_CLOEXEC, O_NONBLOCK, sockets } from "./_sockets.ts";
import { EACCES, EADDRINUSE, EADDRNOTAVAIL, EAGAIN } from "./_sockets.ts";
import {
  type Backend,
  BackendProxy,
  checkPort,
  listenError,
  type PortProxy,
  type ReadyBackend,
  type TcpProxyOptions,
} from "./proxy.ts";

/** A backend as the worker gets it: with its IPv4 or IPv6 address and its counter's slot. */
export interface WireBackend extends ReadyBackend {
  address: number[];
  slot: number;
}

/** The worker's first message. */
export interface WorkerInit {
  listenFd: number;
  controlFd: number;
  /** Int32 counters: [0] clients waiting for a backend, [slot] open links to that backend. */
  counts: SharedArrayBuffer;
  waitForBackendMs: number;
  connectTimeoutMs: number;
}

/** One line on the control pipe. */
export type Command =
  | { op: "backends"; backends: WireBackend[] }
  | { op: "drain"; id: string; graceMs: number; token: number }
  | { op: "close" };

/** What the worker posts. */
export type WorkerReport =
  | { ready: true }
  | { drained: number }
  | { error: string }
  | { closed: true };

/** Counter slots: backend ids seen over the proxy's life (replica names are reused). */
const SLOTS = 4096;

/** The engine a port's userspace proxy uses, as `prisn get` shows it. */
export type ProxyEngine = "epoll" | "deno";

/** Why the epoll engine cannot serve a proxy on `host`, or undefined when it can. */
export function epollUnavailable(host = "0.0.0.0"): string | undefined {
  if (Deno.build.os !== "linux") return `the epoll engine is Linux only (this is ${Deno.build.os})`;
  if (!ipAddress(host)) {
    return `the epoll engine listens on IPv4 and IPv6 addresses without a zone only (not ${host})`;
  }
  if (!sockets()) return "libc is not available through FFI (no --allow-ffi?)";
  return undefined;
}

/** The worker could not be started: the caller falls back to TcpProxy. */
export class EpollUnavailable extends Error {}

/** A `TcpProxy` (proxy.ts) whose connections are served by the epoll worker. */
export class EpollProxy extends BackendProxy implements PortProxy {
  readonly #port: number;
  readonly #host: string;
  readonly #options: TcpProxyOptions;
  readonly #onError: (error: unknown) => void;
  readonly #counts = new Int32Array(new SharedArrayBuffer(SLOTS * 4));
  readonly #slots = new Map<string, number>();
  /** Addresses of backend hosts that are names, once resolved. */
  readonly #resolved = new Map<string, number[]>();
  readonly #drains = new Map<number, () => void>();
  #token = 0;
  #worker?: Worker;
  #controlFd?: number;
  #queue: Uint8Array = new Uint8Array(0);
  #flushTimer?: ReturnType<typeof setTimeout>;
  #listenPort?: number;
  #closed = false;
  #closing?: Promise<void>;
  #workerClosed?: Promise<void>;

  constructor(options: TcpProxyOptions) {
    super(() => this.#sendBackends());
    checkPort(options.port, "proxy port", 0);
    this.#port = options.port;
    this.#host = options.host ?? "0.0.0.0";
    this.#options = options;
    this.#onError = options.onError ?? (() => {});
  }

  get port(): number {
    return this.#listenPort ?? this.#port;
  }

  /**
   * Listens and starts the worker.
   *
   * @throws {PrisnError} as `TcpProxy.listen`; {@linkcode EpollUnavailable} when the
   * worker cannot be started (nothing is left listening then).
   */
  async listen(): Promise<void> {
    if (this.#closed) throw new PrisnError("CONFLICT", "this proxy is closed: create a new one");
    if (this.#worker) {
      throw new PrisnError("CONFLICT", `this proxy already listens on port ${this.port}`);
    }
    const why = epollUnavailable(this.#host);
    if (why) throw new EpollUnavailable(why);
    const { c, errno } = sockets()!;
    const listening = listenTcp(
      ipAddress(this.#host)!,
      this.#port,
      this.#options.reusePort ?? false,
    );
    if ("errno" in listening) {
      throw listenError(errnoError(listening.errno), this.#host, this.#port);
    }
    const fds = new Int32Array(2);
    if (c.pipe2(new Uint8Array(fds.buffer), O_NONBLOCK | O_CLOEXEC) !== 0) {
      const e = errno();
      c.close(listening.fd);
      throw new EpollUnavailable(`pipe2 failed (errno ${e})`);
    }
    const worker = new Worker(new URL("./_epoll_worker.ts", import.meta.url), {
      type: "module",
    });
    const closed = Promise.withResolvers<void>();
    const started = Promise.withResolvers<void>();
    let up = false;
    worker.onmessage = (event: MessageEvent<WorkerReport>) => {
      const report = event.data;
      if ("ready" in report) {
        up = true;
        started.resolve();
      } else if ("drained" in report) {
        this.#drains.get(report.drained)?.();
        this.#drains.delete(report.drained);
      } else if ("error" in report) {
        if (up) this.#report(new Error(`proxy worker: ${report.error}`));
        else started.reject(new EpollUnavailable(report.error));
      } else if ("closed" in report) {
        closed.resolve();
        if (!up) started.reject(new EpollUnavailable("the proxy worker ended at start"));
      }
    };
    worker.onerror = (event) => {
      event.preventDefault();
      const error = new Error(`proxy worker failed: ${event.message}`);
      if (up) this.#report(error);
      else started.reject(new EpollUnavailable(error.message));
      closed.resolve();
    };
    const init: WorkerInit = {
      listenFd: listening.fd,
      controlFd: fds[0],
      counts: this.#counts.buffer as SharedArrayBuffer,
      waitForBackendMs: this.#options.waitForBackendMs ?? 5000,
      connectTimeoutMs: this.#options.connectTimeoutMs ?? 2000,
    };
    worker.postMessage(init);
    try {
      await started.promise;
    } catch (error) {
      worker.terminate();
      c.close(fds[1]);
      c.close(fds[0]);
      c.close(listening.fd);
      throw error;
    }
    this.#worker = worker;
    this.#workerClosed = closed.promise;
    this.#controlFd = fds[1];
    this.#listenPort = listening.port;
    if (this.#closed) await this.#stopWorker(); // closed while the worker started
    else this.#sendBackends();
  }

  connections(id?: string): number {
    if (id !== undefined) {
      const slot = this.#slots.get(id);
      return slot === undefined ? 0 : Atomics.load(this.#counts, slot);
    }
    let count = 0;
    for (const slot of this.#slots.values()) count += Atomics.load(this.#counts, slot);
    return count;
  }

  pending(): number {
    return Atomics.load(this.#counts, 0);
  }

  async drain(id: string, graceMs: number): Promise<void> {
    this.remove(id);
    if (!this.#worker || this.#closed) return;
    const token = ++this.#token;
    const { promise, resolve } = Promise.withResolvers<void>();
    this.#drains.set(token, resolve);
    this.#send({ op: "drain", id, graceMs: Math.max(0, graceMs), token });
    await promise;
  }

  close(): Promise<void> {
    this.#closing ??= this.#shutdown();
    return this.#closing;
  }

  async #shutdown(): Promise<void> {
    this.#closed = true;
    if (this.#worker) await this.#stopWorker();
  }

  async #stopWorker(): Promise<void> {
    this.#send({ op: "close" });
    await this.#workerClosed;
    clearTimeout(this.#flushTimer);
    this.#worker?.terminate();
    sockets()!.c.close(this.#controlFd!);
    for (const resolve of this.#drains.values()) resolve();
    this.#drains.clear();
  }

  /** The backends with an address and a slot each, to the worker. */
  #sendBackends(): void {
    if (!this.#worker || this.#closed) return;
    const wire: WireBackend[] = [];
    for (const backend of this.backendList.ready) {
      const address = ipAddress(backend.host) ?? this.#resolved.get(backend.host);
      if (!address) {
        this.#resolve(backend.host);
        continue;
      }
      wire.push({ ...backend, address, slot: this.#slot(backend.id) });
    }
    this.#send({ op: "backends", backends: wire });
  }

  /** Looks up a backend host that is a name (as the system does); the backends go again then. */
  #resolve(host: string): void {
    // IPv4 first, as replicas listen there by default; a name with IPv6 addresses alone next.
    lookup(host, { family: 4 }).catch(() => lookup(host, { family: 6 })).then(({ address }) => {
      this.#resolved.set(host, ipAddress(address)!);
      this.#sendBackends();
    }).catch((error) => this.#report(new Error(`backend host ${host}: ${error.message}`)));
  }

  #slot(id: string): number {
    let slot = this.#slots.get(id);
    if (slot !== undefined) return slot;
    if (this.#slots.size < SLOTS - 1) slot = this.#slots.size + 1;
    else {
      // Every slot has been used: take one of a backend with no open link that is not in rotation.
      const inUse = new Set(this.backendList.ready.map((b) => b.id));
      const [reused] = [...this.#slots].find(([other, s]) =>
        !inUse.has(other) && Atomics.load(this.#counts, s) === 0
      ) ?? [];
      if (reused === undefined) {
        throw new Error("the proxy has no counter slot left");
      }
      slot = this.#slots.get(reused)!;
      this.#slots.delete(reused);
    }
    this.#slots.set(id, slot);
    return slot;
  }

  #send(command: Command): void {
    const line = new TextEncoder().encode(JSON.stringify(command) + "\n");
    const queue = new Uint8Array(this.#queue.length + line.length);
    queue.set(this.#queue);
    queue.set(line, this.#queue.length);
    this.#queue = queue;
    this.#flush();
  }

  /** Writes what is queued to the control pipe; retries shortly if the pipe is full. */
  #flush(): void {
    const { c, errno } = sockets()!;
    clearTimeout(this.#flushTimer);
    this.#flushTimer = undefined;
    while (this.#queue.length > 0) {
      const queue = this.#queue as Uint8Array<ArrayBuffer>;
      const n = Number(c.write(this.#controlFd!, queue, BigInt(queue.length)));
      if (n < 0) {
        const e = errno();
        if (e !== EAGAIN) {
          this.#report(new Error(`proxy worker control pipe: errno ${e}`));
          this.#queue = new Uint8Array(0);
          return;
        }
        this.#flushTimer = setTimeout(() => this.#flush(), 1);
        return;
      }
      this.#queue = queue.subarray(n);
    }
  }

  #report(error: unknown): void {
    try {
      this.#onError(error);
    } catch {
      // a failing error handler must not take the proxy down
    }
  }
}

/** The Deno error `listen` would have thrown for `errno`, for {@linkcode listenError}. */
function errnoError(errno: number): Error {
  if (errno === EADDRINUSE) return new Deno.errors.AddrInUse("address in use");
  if (errno === EACCES) return new Deno.errors.PermissionDenied("permission denied");
  if (errno === EADDRNOTAVAIL) return new Deno.errors.AddrNotAvailable("address not available");
  return new Error(`errno ${errno}`);
}

/**
 * `workers` epoll proxies on one port, each its own worker thread with its own listening socket
 * (SO_REUSEPORT: the kernel spreads new connections over them, as nginx's `listen … reuseport`
 * does). Backends and drains go to every one; counts are their sums. One worker is an
 * {@linkcode EpollProxy} alone (ServicePort makes a group only for two or more).
 */
export class EpollProxyGroup implements PortProxy {
  readonly #options: TcpProxyOptions;
  readonly #workers: number;
  #proxies: EpollProxy[];
  #closing?: Promise<void>;

  constructor(options: TcpProxyOptions, workers: number) {
    if (!Number.isInteger(workers) || workers < 1) {
      throw new PrisnError("INVALID", `proxy workers must be a positive integer, not ${workers}`);
    }
    this.#options = { ...options, reusePort: true };
    this.#workers = workers;
    this.#proxies = [new EpollProxy(this.#options)];
  }

  get port(): number {
    return this.#proxies[0].port;
  }

  /** Listens with the first worker (which picks the port when it is 0), then the others on it. */
  async listen(): Promise<void> {
    const [first] = this.#proxies;
    await first.listen();
    try {
      while (this.#proxies.length < this.#workers && !this.#closing) {
        const next = new EpollProxy({ ...this.#options, port: first.port });
        next.setBackends([...first.backendSet()]);
        this.#proxies.push(next);
        await next.listen();
      }
    } catch (error) {
      await Promise.all(this.#proxies.map((p) => p.close()));
      throw error;
    }
    if (this.#closing) await Promise.all(this.#proxies.map((p) => p.close())); // closed meanwhile
  }

  setBackends(backends: Backend[]): void {
    for (const p of this.#proxies) p.setBackends(backends);
  }

  add(backend: Backend): void {
    for (const p of this.#proxies) p.add(backend);
  }

  remove(id: string): void {
    for (const p of this.#proxies) p.remove(id);
  }

  backendSet(): readonly ReadyBackend[] {
    return this.#proxies[0].backendSet();
  }

  backends(): string[] {
    return this.#proxies[0].backends();
  }

  connections(id?: string): number {
    return this.#proxies.reduce((n, p) => n + p.connections(id), 0);
  }

  pending(): number {
    return this.#proxies.reduce((n, p) => n + p.pending(), 0);
  }

  async drain(id: string, graceMs: number): Promise<void> {
    await Promise.all(this.#proxies.map((p) => p.drain(id, graceMs)));
  }

  close(): Promise<void> {
    this.#closing ??= Promise.all(this.#proxies.map((p) => p.close())).then(() => {});
    return this.#closing;
  }
}
