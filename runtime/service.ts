import { nameOf } from "../core/namespace.ts";
import { PrisnError } from "../core/errors.ts";
import { settingsOf } from "../core/settings.ts";
import type { DeploySpec } from "../core/spec.ts";
import type { AgentContext } from "./context.ts";
import { leasePort, returnPort } from "./context.ts";
import type { Launch } from "./launch.ts";
import { type BalancerInfo, kernelFor, ServicePort } from "./service_port.ts";
import type { Backend } from "./proxy.ts";
import { describe, Replica } from "./replica.ts";
import type { ProcessDriver } from "./driver.ts";
import type { StartQueue } from "./start_queue.ts";

/** A rollout whose new replicas did not become ready; says which replica and what it said. */
export class NotReadyError extends PrisnError {
  override name = "NotReadyError";
  constructor(
    message: string,
    /** The replica that was not ready, e.g. "api-0". */
    readonly replica: string,
    /** Its last stderr lines, oldest first. */
    readonly lines: string[],
  ) {
    super("FAILED", message);
  }
}

/** What a Service shares with the rest of the agent. */
export interface ServiceOptions {
  /** Starts the replicas' processes. */
  driver: ProcessDriver;
  /** The agent's start queue. @default every replica starts at once */
  starts?: StartQueue;
}

/** What a service should look like: one version, its launch, a replica count. */
export interface ServiceTarget {
  version: string;
  spec: DeploySpec;
  launch: Launch;
  replicas: number;
  /** Whether this node may name a replica `NAME-index` (see Dispatcher.ownsReplica). @default all */
  ownsName?: (index: number) => boolean;
}

export interface ReplicaStatus {
  name: string;
  version: string;
  state: string;
  ready: boolean;
  restarts: number;
  pid?: number;
  port?: number;
  /** Where its node reaches it (HOST, or loopback for an app that ignores HOST). */
  host?: string;
  /** Whether other nodes' ports can balance to it (it listens on HOST). */
  reachable?: boolean;
  node: string;
  createdAt: number;
  lastExit?: { code: number; signal?: string; oomKilled: boolean };
}

/**
 * A service: its replicas and the prisn-owned port that balances over the ready ones.
 * Changes (rollout, scale, stop) run one at a time, in order.
 */
export class Service {
  replicas: Replica[] = [];
  target?: ServiceTarget;
  #proxy?: ServicePort;
  #retiring = new Set<Replica>();
  #queue: Promise<unknown> = Promise.resolve();

  constructor(
    readonly ctx: AgentContext,
    readonly name: string,
    readonly options: ServiceOptions,
  ) {}

  get ready(): number {
    return this.replicas.filter((r) => r.ready && !this.#retiring.has(r)).length;
  }

  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(fn, fn);
    this.#queue = run.catch(() => {});
    return run;
  }

  /**
   * Brings the service to `target`. With nothing to replace, every replica starts at once (through
   * the agent's start queue). Replicas of another version are replaced in batches of
   * `rollout.max_parallel`: start that many new ones, wait until they are ready, put them in
   * rotation, drain and stop as many old ones. A new version that never becomes ready is
   * abandoned while old replicas keep serving (throws FAILED); with no old replicas the new ones
   * stay and keep being restarted.
   */
  rollout(target: ServiceTarget): Promise<void> {
    return this.#serial(async () => {
      const settings = settingsOf(target.spec);
      const oldProxy = this.#proxy;
      const kernel = target.spec.port !== undefined ? this.#kernelFor(target.spec) : undefined;
      const address = target.spec.address ?? this.ctx.address;
      if (oldProxy && target.spec.port === oldProxy.port && address !== oldProxy.address) {
        // Both cannot listen on one port at once: no rolling move between addresses.
        throw new PrisnError(
          "CONFLICT",
          `${this.name} listens on ${oldProxy.address ?? "every address"} port ${oldProxy.port}: ` +
            `to listen on ${address ?? "every address"}, deploy it on another port first`,
        );
      }
      if (target.spec.port !== undefined && target.spec.port !== oldProxy?.port) {
        const proxy = new ServicePort({
          port: target.spec.port,
          host: address,
          onError: (e) => this.#proxyError(e),
          kernel,
          workers: this.ctx.balancer?.workers,
        });
        await proxy.listen(); // a taken port fails here, before anything changes
        this.#proxy = proxy;
        for (const r of this.replicas) {
          if (r.ready && !this.#retiring.has(r)) proxy.add(backendOf(r));
        }
        for (const b of this.#remote.values()) proxy.add(b);
      } else await this.#proxy?.useKernel(kernel);
      const previous = this.target;
      this.target = target;
      const old = this.replicas.filter((r) => r.version !== target.version);
      const current = this.replicas.filter((r) => r.version === target.version);
      const batch = old.length === 0 ? Infinity : settings.maxParallel(target.replicas);
      try {
        while (current.length < target.replicas) {
          const added: Replica[] = [];
          while (added.length < batch && current.length < target.replicas) {
            const replica = this.#startReplica(target);
            added.push(replica);
            current.push(replica);
          }
          await this.#allReady(added, target, old[0]?.version);
          await Promise.all(
            old.splice(0, added.length).map((r) => this.#retire(r, settings.drainGraceMs)),
          );
        }
        const extra = current.splice(target.replicas);
        await Promise.all(
          [...extra, ...old.splice(0)].map((r) => this.#retire(r, settings.drainGraceMs)),
        );
      } catch (e) {
        if (old.length > 0 && previous) {
          // Abandon the new version: its replicas go, the old ones stay as they are.
          await Promise.all(current.map((r) => this.#retire(r, 0)));
          this.target = previous;
          if (oldProxy && this.#proxy !== oldProxy) {
            await this.#proxy?.close();
            this.#proxy = oldProxy;
          }
        }
        throw e;
      }
      if (oldProxy && oldProxy !== this.#proxy) await oldProxy.close();
      if (target.spec.port === undefined && this.#proxy) {
        await this.#proxy.close();
        this.#proxy = undefined;
      }
    });
  }

  /** Waits for every replica of a batch; the first that is not ready fails the rollout. */
  async #allReady(batch: Replica[], target: ServiceTarget, serving?: string): Promise<void> {
    const { readinessTimeoutMs } = settingsOf(target.spec);
    // Settles at the first replica that is not ready, without waiting for the rest.
    const failed = await new Promise<[Replica, "exited" | "timeout"] | undefined>((resolve) => {
      let pending = batch.length;
      if (pending === 0) resolve(undefined);
      for (const r of batch) {
        r.waitReady(readinessTimeoutMs).then((result) => {
          if (result !== "ready") resolve([r, result]);
          else if (--pending === 0) resolve(undefined);
        });
      }
    });
    if (!failed) return;
    const [replica, result] = failed;
    const lines = replica.recentErrors();
    const said = lines.at(-1);
    const why =
      (result === "timeout"
        ? `not ready within ${Math.round(readinessTimeoutMs / 1000)}s`
        : describe(replica.lastExit)) +
      (said ? `; its last error: ${said.length > 200 ? said.slice(0, 197) + "..." : said}` : "");
    const message = serving
      ? `${target.version} never became ready (replica ${replica.name} ${why}); ` +
        `${serving} keeps serving`
      : `${target.version} is not ready (replica ${replica.name} ${why}); ` +
        `it keeps restarting: see prisn logs ${replica.name}`;
    throw new NotReadyError(message, replica.name, lines);
  }

  /** Adds or removes replicas of the current version; removal drains first. */
  scale(replicas: number): Promise<void> {
    return this.#serial(async () => {
      if (!this.target) return;
      this.target = { ...this.target, replicas };
      const settings = settingsOf(this.target.spec);
      const added: Replica[] = [];
      while (this.replicas.length < replicas) added.push(this.#startReplica(this.target));
      await Promise.all(added.map((r) => r.waitReady(settings.readinessTimeoutMs)));
      const owns = this.target.ownsName ?? (() => true);
      const kept = [...this.replicas].sort(byKeep(owns));
      const extra = kept.splice(replicas);
      // A ready replica goes only once those kept are ready too (or gave up trying).
      if (extra.some((r) => r.ready)) {
        await Promise.all(
          kept.filter((r) => !r.ready).map((r) => r.waitReady(settings.readinessTimeoutMs)),
        );
      }
      await Promise.all(extra.map((r) => this.#retire(r, settings.drainGraceMs)));
    });
  }

  /** Stops every replica (draining connections first when `drain`) and closes the port. */
  stop(options: { drain?: boolean } = {}): Promise<void> {
    return this.#serial(async () => {
      const grace = options.drain && this.target ? settingsOf(this.target.spec).drainGraceMs : 0;
      await Promise.all([...this.replicas].map((r) => this.#retire(r, grace)));
      await this.#proxy?.close();
      this.#proxy = undefined;
    });
  }

  status(): ReplicaStatus[] {
    return [...this.replicas].sort(bySlot).map((r) => ({
      name: r.name,
      version: r.version,
      state: this.#retiring.has(r) ? "Terminating" : r.state,
      // A retiring replica takes no new connections: not ready, though it still serves its
      // open ones (other nodes' proxies and the leader's placement read this).
      ready: r.ready && !this.#retiring.has(r),
      restarts: r.restarts,
      pid: r.pid,
      port: r.port,
      host: r.listenHost,
      reachable: r.reachable,
      node: this.ctx.node,
      createdAt: r.createdAt,
      lastExit: r.lastExit,
    }));
  }

  /** What serves the port; undefined without one. */
  get balancer(): BalancerInfo | undefined {
    return this.#proxy?.balancer;
  }

  /** The kernel path for a spec's port, or none (an event says why when it was asked for). */
  #kernelFor(spec: DeploySpec) {
    const { kernel, fallback } = kernelFor(spec.balancer, this.ctx.balancer);
    if (fallback && fallback !== this.#fallback) {
      this.ctx.event(
        this.name,
        "BalancerFallback",
        `port ${spec.port}: the userspace proxy serves it, the kernel path is not available ` +
          `(${fallback})`,
      );
    }
    this.#fallback = fallback;
    return kernel;
  }

  /** The last reason told for not using the kernel path (told once, not on every deploy). */
  #fallback?: string;
  #lastProxyError = 0;

  /** A failure of the port itself (not of one connection): an event, at most one per 10 s. */
  #proxyError(error: unknown): void {
    const now = Date.now();
    if (now - this.#lastProxyError < 10_000) return;
    this.#lastProxyError = now;
    this.ctx.event(
      this.name,
      "ProxyError",
      `port ${this.#proxy?.port ?? "?"}: ${(error as Error)?.message ?? String(error)}`,
    );
  }

  #startReplica(target: ServiceTarget): Replica {
    const settings = settingsOf(target.spec);
    const used = new Set(this.replicas.map((r) => r.name));
    const owns = target.ownsName ?? (() => true);
    let slot = 0;
    // A replica is named after the deployment alone (api-0): its records and logs are its
    // deployment's, so two namespaces' replicas of the same name never meet.
    const bare = nameOf(this.name);
    while (used.has(`${bare}-${slot}`) || !owns(slot)) slot++;
    const name = `${bare}-${slot}`;
    const replica = new Replica(this.ctx, {
      deployment: this.name,
      name,
      version: target.version,
      launch: target.launch,
      port: target.spec.port !== undefined ? leasePort() : undefined,
      host: this.ctx.address,
      health: settings.health,
      restart: settings.restart,
      stopGraceMs: settings.stopGraceMs,
      logRateBytes: settings.logRateBytes,
      startSlot: this.options.starts
        ? (signal) => this.options.starts!.acquire(this.name, signal)
        : undefined,
      startTimeoutMs: settings.readinessTimeoutMs,
      driver: this.options.driver,
      resources: target.spec.resources,
      history: settings.history,
      onReadyChange: (r, ready) => {
        if (!this.#proxy || r.port === undefined) return;
        if (ready && !this.#retiring.has(r)) this.#proxy.add(backendOf(r));
        else this.#proxy.remove(r.name);
      },
    });
    this.replicas.push(replica);
    replica.start();
    return replica;
  }

  #remote = new Map<string, Backend>();

  /**
   * Other nodes' ready replicas that listen on their node's address (from their heartbeats): the
   * port balances to them while no replica of this node is ready (local ones first).
   */
  setRemote(backends: Backend[]): void {
    const next = new Map(backends.map((b) => [b.id, { ...b, remote: true }]));
    const same = (a: Backend, b: Backend) => a.host === b.host && a.port === b.port;
    for (const [id, b] of this.#remote) {
      if (!next.has(id) || !same(b, next.get(id)!)) this.#proxy?.remove(id);
    }
    for (const [id, b] of next) {
      const had = this.#remote.get(id);
      if (!had || !same(had, b)) this.#proxy?.add(b);
    }
    this.#remote = next;
  }

  async #retire(replica: Replica, drainGraceMs: number): Promise<void> {
    this.#retiring.add(replica);
    if (this.#proxy) await this.#proxy.drain(replica.name, drainGraceMs);
    await replica.stop();
    returnPort(replica.port);
    this.replicas = this.replicas.filter((r) => r !== replica);
    this.#retiring.delete(replica);
  }
}

/** How the port reaches a local replica. */
function backendOf(r: Replica): Backend {
  return { id: r.name, port: r.port!, host: r.listenHost, pid: r.pid };
}

const slotOf = (r: Replica) => Number(r.name.slice(r.name.lastIndexOf("-") + 1));

function bySlot(a: Replica, b: Replica): number {
  return slotOf(a) - slotOf(b);
}

/**
 * The order a scale-down keeps replicas in (the last go first): those whose name is this node's
 * (in a cluster another node may own it now), then the ready ones, then the lowest slots.
 */
function byKeep(owns: (index: number) => boolean): (a: Replica, b: Replica) => number {
  const rank = (r: Replica) => (owns(slotOf(r)) ? 0 : 2) + (r.ready ? 0 : 1);
  return (a, b) => rank(a) - rank(b) || bySlot(a, b);
}
