/**
 * A service's port: the userspace proxy (always listening, see proxy.ts) and, where the kernel
 * path is available, the port's rules in the node's nftables table (kernel_balancer.ts), which
 * send new connections straight to a ready replica. While no replica is ready the port has no
 * rule and connections reach the proxy, which holds them until one is.
 *
 * @module
 */

import { KernelBalancer, type KernelPath } from "./kernel_balancer.ts";
import { type Backend, type PortProxy, TcpProxy, type TcpProxyOptions } from "./proxy.ts";
import {
  EpollProxy,
  EpollProxyGroup,
  EpollUnavailable,
  epollUnavailable,
  type ProxyEngine,
} from "./epoll_proxy.ts";

/** Which balancer a service asks for (prisn.toml `balancer`, or the agent's `--balancer`). */
export type BalancerChoice = "auto" | "kernel" | "userspace";

/** What serves a port, as `prisn get NAME` shows it. */
export interface BalancerInfo {
  kind: "kernel" | "userspace";
  /** The nftables table (`ip` family) of the kernel path. */
  table?: string;
  /**
   * How the kernel path forwards the port now: sk_lookup steering to the replicas' sockets, or
   * nftables DNAT; none while no replica is ready (the userspace proxy holds connections).
   */
  path?: KernelPath;
  /** Why the kernel path does not steer (the port is DNATed), when it does not. */
  steeringFallback?: string;
  /**
   * The userspace proxy's engine (on the kernel path: the one that holds connections while no
   * replica is ready): an epoll loop in a worker thread, or Deno's copy loop.
   */
  engine: ProxyEngine;
  /** Why the epoll engine does not serve the port, when it does not. */
  engineFallback?: string;
  /** The epoll engine's worker threads on the port (SO_REUSEPORT listeners). */
  workers?: number;
}

/** The agent's balancer setting: its default choice and the kernel path, if it has one. */
export interface NodeBalancer {
  /** @default "auto" */
  choice?: BalancerChoice;
  /** This home's nftables table; undefined where the kernel path is not available. */
  kernel?: KernelBalancer;
  /** Why the kernel path is not available (undefined when it is). */
  unavailable?: string;
  /** Tables of killed agents of other homes that opening this one removed. @default none */
  swept?: string[];
  /** Epoll workers per service port (`--proxy-workers`). @default 1 */
  workers?: number;
}

/**
 * The kernel balancer a service gets for `choice` (its own, else the node's), or why it gets
 * the userspace proxy although it asked for the kernel (or left it to prisn).
 */
export function kernelFor(
  choice: BalancerChoice | undefined,
  node: NodeBalancer | undefined,
): { kernel?: KernelBalancer; fallback?: string } {
  const want = choice ?? node?.choice ?? "auto";
  if (want === "userspace") return {};
  if (node?.kernel) return { kernel: node.kernel };
  if (!node) return want === "kernel" ? { fallback: "this agent has no kernel balancer" } : {};
  return { fallback: node.unavailable ?? "this agent has no kernel balancer" };
}

/**
 * The agent's balancer for `choice`: with "auto" or "kernel", this home's nftables table, rebuilt
 * empty (see {@linkcode KernelBalancer.open}), and sk_lookup steering unless `steeringOff` says
 * why not; or why there is no kernel path.
 */
export async function openNodeBalancer(
  home: string,
  choice: BalancerChoice = "auto",
  steeringOff?: string,
): Promise<NodeBalancer> {
  if (choice === "userspace") {
    return { choice, unavailable: "the agent runs with --balancer userspace" };
  }
  const opened = await KernelBalancer.open(home, { steeringOff });
  return "balancer" in opened
    ? { choice, kernel: opened.balancer, swept: opened.swept }
    : { choice, unavailable: opened.unavailable };
}

/** Options of {@linkcode ServicePort}. */
export interface ServicePortOptions extends TcpProxyOptions {
  /** The node's nftables table. @default none: the userspace proxy alone */
  kernel?: KernelBalancer;
  /**
   * The userspace proxy's engine: "auto" is epoll where available (Linux, FFI, an IP
   * address), else Deno's copy loop. `PRISN_PROXY_ENGINE=deno` in the agent's environment
   * forces the copy loop for "auto".
   * @default "auto"
   */
  engine?: ProxyEngine | "auto";
  /**
   * Worker threads of the epoll engine on this port, each with its own SO_REUSEPORT listener
   * (the Deno copy loop has one loop whatever this says).
   * @default 1
   */
  workers?: number;
}

/** Pause between two counts of a drained replica's connections on the kernel path. */
const DRAIN_POLL_MS = 50;

/** One service port; same calls as {@linkcode TcpProxy}, whichever path carries the bytes. */
export class ServicePort {
  #proxy: PortProxy;
  readonly #options: ServicePortOptions;
  /** Why the epoll engine is not used (undefined: it is). */
  #noEpoll?: string;
  readonly #address?: string;
  readonly #onError: (error: unknown) => void;
  #kernel?: KernelBalancer;
  #listening = false;

  constructor(options: ServicePortOptions) {
    this.#options = options;
    const engine = options.engine ?? "auto";
    const forced = engine === "auto" && Deno.env.get("PRISN_PROXY_ENGINE") === "deno";
    this.#noEpoll = engine === "deno"
      ? "the Deno copy loop was asked for"
      : forced
      ? "PRISN_PROXY_ENGINE=deno"
      : epollUnavailable(options.host);
    if (this.#noEpoll && engine === "epoll") throw new EpollUnavailable(this.#noEpoll);
    const workers = options.workers ?? 1;
    this.#proxy = this.#noEpoll
      ? new TcpProxy(options)
      : workers > 1
      ? new EpollProxyGroup(options, workers)
      : new EpollProxy(options);
    this.#address = options.host;
    this.#kernel = options.kernel;
    this.#onError = options.onError ?? (() => {});
  }

  get port(): number {
    return this.#proxy.port;
  }

  /** The address it listens on; undefined: every local address. */
  get address(): string | undefined {
    return this.#address;
  }

  /** Which path serves new connections. */
  get balancer(): BalancerInfo {
    const engine = this.engine;
    const why = this.#noEpoll
      ? { engineFallback: this.#noEpoll }
      : { workers: this.#options.workers ?? 1 };
    const kernel = this.#kernel;
    if (!kernel) return { kind: "userspace", engine, ...why };
    const path = this.#listening ? kernel.pathOf(this.port) : undefined;
    return {
      kind: "kernel",
      table: kernel.table,
      ...(path ? { path } : {}),
      ...(path === "nftables" && kernel.steeringUnavailable
        ? { steeringFallback: kernel.steeringUnavailable }
        : {}),
      engine,
      ...why,
    };
  }

  /** The userspace proxy's engine. */
  get engine(): ProxyEngine {
    return this.#noEpoll ? "deno" : "epoll";
  }

  /** Why the epoll engine does not serve this port; undefined when it does. */
  get engineFallback(): string | undefined {
    return this.#noEpoll;
  }

  /**
   * Listens (see {@linkcode TcpProxy.listen}), then puts the port's rules in place. When the
   * epoll worker cannot start, the Deno copy loop listens instead (`engineFallback` says why).
   */
  async listen(): Promise<void> {
    try {
      await this.#proxy.listen();
    } catch (error) {
      if (!(error instanceof EpollUnavailable) || this.#options.engine === "epoll") throw error;
      this.#noEpoll = error.message;
      const backends = [...this.#proxy.backendSet()];
      this.#proxy = new TcpProxy(this.#options);
      this.#proxy.setBackends(backends);
      await this.#proxy.listen();
    }
    this.#listening = true;
    await this.#sync();
  }

  /** Moves the port to the kernel path (a table) or off it (undefined). */
  async useKernel(kernel: KernelBalancer | undefined): Promise<void> {
    if (kernel === this.#kernel) return;
    const old = this.#kernel;
    this.#kernel = kernel;
    if (this.#listening) await old?.delete(this.port).catch((e) => this.#onError(e));
    await this.#sync();
  }

  add(backend: Backend): void {
    this.#proxy.add(backend);
    this.#sync();
  }

  remove(id: string): void {
    this.#proxy.remove(id);
    this.#sync();
  }

  backends(): string[] {
    return this.#proxy.backends();
  }

  /** Connections the userspace proxy forwards (the kernel path's are not counted here). */
  connections(id?: string): number {
    return this.#proxy.connections(id);
  }

  /** Clients the userspace proxy holds while no backend can take them. */
  pending(): number {
    return this.#proxy.pending();
  }

  /**
   * Takes backend `id` out of rotation on both paths, then resolves once its open connections
   * have closed (on the kernel path: the replica's own port has none left), or after `graceMs`,
   * the proxy's ones closed then (the kernel path's end when the replica stops).
   */
  async drain(id: string, graceMs: number): Promise<void> {
    const backend = this.#proxy.backendSet().find((b) => b.id === id);
    const deadline = Date.now() + graceMs;
    // Counted from before the change: steered connections are known by the backend's socket.
    const open = this.#kernel && backend && !backend.remote
      ? this.#kernel.connectionCounter(this.port, backend)
      : undefined;
    this.#proxy.remove(id);
    await this.#sync();
    await Promise.all([
      this.#proxy.drain(id, graceMs),
      open ? drained(open, deadline) : undefined,
    ]);
  }

  /** Removes the port's rules and closes the proxy. Safe to call twice. */
  async close(): Promise<void> {
    if (this.#listening) {
      this.#listening = false;
      await this.#kernel?.delete(this.port).catch((e) => this.#onError(e));
    }
    await this.#proxy.close();
  }

  /** Puts the proxy's backends into the kernel's map; failures are told to `onError`. */
  #sync(): Promise<void> {
    if (!this.#kernel || !this.#listening) return Promise.resolve();
    return this.#kernel.set(this.port, {
      address: this.#address,
      backends: this.#proxy.backendSet(),
    }).catch((e) => this.#onError(e));
  }
}

/** Resolves once `open` counts no connection, or at `deadline`. */
async function drained(open: () => number | undefined, deadline: number): Promise<void> {
  // Let a connection the old map sent there just before the change show up first.
  await new Promise((r) => setTimeout(r, DRAIN_POLL_MS));
  while (Date.now() < deadline) {
    if (!open()) return;
    await new Promise((r) => setTimeout(r, Math.min(DRAIN_POLL_MS, deadline - Date.now())));
  }
}
