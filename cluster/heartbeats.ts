/**
 * Node heartbeats: every node writes what it is and what it runs under its own name in a KV bucket
 * whose `max_age` is the heartbeat TTL, every `intervalMs`. Expiry is not announced (a watch gets
 * no event when a key expires), so readers — the leader above all — scan the bucket and judge each
 * node by the age of its last write: ready while younger than the TTL, down after. A node that
 * stops cleanly deletes its key and is gone at once; one that drains says so in its heartbeat.
 *
 * Ages are measured on the NATS server's clock: the entry's own timestamp, against this node's
 * estimate of the server's time now (learned from its own writes), so a node whose clock is off
 * does not see the others as down, or alive, for that reason.
 */
import { bucketKeys } from "./_keys.ts";
import { withTimeout } from "./_timeout.ts";
import type { KV } from "@nats-io/kv";
import { invalid } from "../core/errors.ts";
import { realTimers, STATUS_WAIT_MS, type Timers } from "./lease.ts";
import { untilAnswered } from "./errors.ts";

/** How long stop() waits for the last write and the delete of this node's key. */
const STOP_WAIT_MS = 5_000;

/** What a node can offer. */
export interface NodeCapacity {
  /** Logical CPUs. */
  cpu: number;
  memoryBytes: number;
}

/** One node's heartbeat, as written to the bucket. */
export interface Heartbeat {
  node: string;
  /** Where other nodes reach this node's replicas and service ports. */
  address: string;
  capacity: NodeCapacity;
  /** The 1-minute load average. */
  load: number;
  /** Ids of the replicas this node runs (e.g. "web-1"). */
  replicas: string[];
  /** Ids of the runs this node executes. */
  runs: string[];
  /** The prisn version of the agent. */
  version: string;
  /** The node's tags (`prisn agent run --tags`), for `[placement] tags`. */
  tags?: string[];
  /** Set while the node is being drained: no new work goes to it. */
  draining: boolean;
  /** The writer's wall-clock time of the write (informational; ages use the server's clock). */
  at: number;
}

export type NodeStatus = "ready" | "draining" | "down";

/** A node as a reader sees it. */
export interface NodeInfo extends Heartbeat {
  /** Milliseconds since its last heartbeat was stored. */
  ageMs: number;
  /** ready/draining while its heartbeat is younger than the TTL, down after. */
  status: NodeStatus;
}

/** The changing part of a heartbeat, sampled before each write. */
export interface HeartbeatReport {
  /** @default the host's CPUs and memory */
  capacity?: NodeCapacity;
  /** @default the host's 1-minute load average */
  load?: number;
  /** @default [] */
  replicas?: string[];
  /** @default [] */
  runs?: string[];
}

export interface HeartbeatsOptions {
  /** This node's name: its key in the bucket. */
  node: string;
  address: string;
  /** The agent's prisn version. */
  version: string;
  /** This node's tags. @default none */
  tags?: string[];
  /**
   * How often this node writes. At most half the TTL.
   * @default 5000
   */
  intervalMs?: number;
  /**
   * What this node runs and how loaded it is, sampled before each write.
   * @default nothing runs; the host's capacity and load
   */
  report?: () => HeartbeatReport | Promise<HeartbeatReport>;
  /**
   * Wall-clock milliseconds (compared with the server's timestamps, after correction).
   * @default Date.now
   */
  now?: () => number;
  /** @default globalThis.setTimeout / clearTimeout */
  timers?: Timers;
  /**
   * Told of writes that failed (the loop goes on).
   * @default ignore them
   */
  onError?: (error: unknown) => void;
}

const encoder = new TextEncoder();

function hostCapacity(): NodeCapacity {
  return { cpu: navigator.hardwareConcurrency, memoryBytes: Deno.systemMemoryInfo().total };
}

/** This node's heartbeat writer and every node's heartbeat reader. */
export class Heartbeats {
  readonly node: string;
  readonly address: string;
  readonly version: string;
  readonly intervalMs: number;
  readonly #kv: KV;
  readonly #report: () => HeartbeatReport | Promise<HeartbeatReport>;
  readonly #now: () => number;
  readonly #timers: Timers;
  readonly #onError: (error: unknown) => void;
  #ttlMs = 0;
  readonly #tags: string[];
  #draining = false;
  /** Server clock minus ours, from our own last write (0 before any). */
  #offsetMs = 0;
  #running = false;
  #timer: unknown;
  #writing: Promise<void> = Promise.resolve();

  constructor(kv: KV, options: HeartbeatsOptions) {
    this.#kv = kv;
    this.node = options.node;
    this.address = options.address;
    this.version = options.version;
    this.intervalMs = options.intervalMs ?? 5_000;
    this.#tags = options.tags ?? [];
    this.#report = options.report ?? (() => ({}));
    this.#now = options.now ?? Date.now;
    this.#timers = options.timers ?? realTimers;
    this.#onError = options.onError ?? (() => {});
    if (!(this.intervalMs > 0)) throw invalid(`heartbeat interval must be positive`);
  }

  /** Whether this node says it is draining. */
  get draining(): boolean {
    return this.#draining;
  }

  /** The heartbeat TTL (the bucket's max age); read from the bucket on first need. */
  async ttlMs(): Promise<number> {
    if (this.#ttlMs) return this.#ttlMs;
    const ttl = (await untilAnswered(() => this.#kv.status(), STATUS_WAIT_MS)).ttl;
    if (!(ttl > 0)) {
      throw invalid(`the heartbeat bucket has no max age: create it with ttl (the heartbeat TTL)`);
    }
    return this.#ttlMs = ttl;
  }

  /** Writes the first heartbeat (resolved once stored), then one every `intervalMs`. */
  async start(): Promise<void> {
    if (this.#running) return;
    const ttl = await this.ttlMs();
    if (this.intervalMs * 2 > ttl) {
      throw invalid(`heartbeat interval ${this.intervalMs} ms is over half the TTL ${ttl} ms`);
    }
    this.#running = true;
    await this.beat();
    this.#schedule();
  }

  /** Writes one heartbeat now. */
  beat(): Promise<void> {
    // One write at a time, so a late one never overwrites a newer one (and stop() can wait).
    const next = this.#writing.then(() => this.#write());
    this.#writing = next.catch(() => {});
    return next;
  }

  /** Marks this node draining (or not) and writes it at once. */
  async setDraining(draining: boolean): Promise<void> {
    this.#draining = draining;
    if (this.#running) await this.beat();
  }

  /**
   * Stops writing and deletes this node's key, so readers see it gone at once. True when the key
   * was deleted; false when NATS could not be reached (the key then expires after the TTL).
   */
  async stop(): Promise<boolean> {
    this.#running = false;
    if (this.#timer !== undefined) this.#timers.clearTimeout(this.#timer);
    this.#timer = undefined;
    // Bounded: a write or delete whose connection closed under it may never settle.
    await withTimeout(this.#writing, STOP_WAIT_MS).catch(() => {});
    try {
      await withTimeout(this.#kv.delete(this.node), STOP_WAIT_MS);
      return true;
    } catch (e) {
      this.#onError(e);
      return false;
    }
  }

  /** Every node with a heartbeat in the bucket, by name, with its age and status. */
  async nodes(): Promise<NodeInfo[]> {
    const ttl = await this.ttlMs();
    const names = await bucketKeys(this.#kv);
    const infos = await Promise.all(names.map((name) => this.#read(name, ttl)));
    return infos.filter((i): i is NodeInfo => i !== undefined)
      .sort((a, b) => a.node < b.node ? -1 : a.node > b.node ? 1 : 0);
  }

  /** The nodes that are not down (ready or draining). */
  async live(): Promise<NodeInfo[]> {
    return (await this.nodes()).filter((n) => n.status !== "down");
  }

  /** One node's status: down when it has no heartbeat or its last one is older than the TTL. */
  async status(node: string): Promise<NodeStatus> {
    return (await this.#read(node, await this.ttlMs()))?.status ?? "down";
  }

  async #read(node: string, ttl: number): Promise<NodeInfo | undefined> {
    const entry = await this.#kv.get(node);
    if (!entry || entry.operation !== "PUT") return undefined;
    let beat: Heartbeat;
    try {
      beat = entry.json<Heartbeat>();
    } catch {
      return undefined; // not a heartbeat
    }
    const ageMs = Math.max(0, this.#now() + this.#offsetMs - entry.created.getTime());
    const status: NodeStatus = ageMs >= ttl ? "down" : beat.draining ? "draining" : "ready";
    return { ...beat, ageMs, status };
  }

  #schedule(): void {
    if (!this.#running) return;
    this.#timer = this.#timers.setTimeout(async () => {
      this.#timer = undefined;
      try {
        await this.beat();
      } catch (e) {
        this.#onError(e);
      }
      this.#schedule();
    }, this.intervalMs);
  }

  async #write(): Promise<void> {
    const r = await this.#report();
    const capacity = r.capacity ?? hostCapacity();
    const beat: Heartbeat = {
      node: this.node,
      address: this.address,
      capacity,
      load: r.load ?? Deno.loadavg()[0],
      replicas: r.replicas ?? [],
      runs: r.runs ?? [],
      version: this.version,
      tags: this.#tags,
      draining: this.#draining,
      at: this.#now(),
    };
    const sent = this.#now();
    const revision = await this.#kv.put(this.node, encoder.encode(JSON.stringify(beat)));
    const answered = this.#now();
    // The server stamped the entry between sending and the answer: take the midpoint.
    const stored = await this.#kv.get(this.node, { revision });
    if (stored) this.#offsetMs = stored.created.getTime() - (sent + answered) / 2;
  }
}
