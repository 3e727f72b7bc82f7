/**
 * Replica placement in a cluster, as the leader writes it and every node runs it: one key per
 * service (`p.<deployment>`: its slots' nodes, see core/placement.ts) and one per draining node
 * (`n.<node>`), in the placement bucket. Every value the leader writes carries its lease epoch;
 * a node refuses a placement stamped with an epoch lower than the highest it has seen (a replaced
 * leader that woke up), and the current leader writes again every placement it finds stamped with
 * another epoch. Nodes watch the bucket, so a placement is run as soon as it is written.
 *
 * @module
 */

import type { KV, KvEntry } from "@nats-io/kv";
import { followBucket } from "./_follow.ts";
import { bucketKeys } from "./_keys.ts";
import { type PlacementNode, planPlacement, type SlotNodes } from "../core/placement.ts";

/** What `p.<deployment>` holds. */
export interface PlacementValue {
  /** The epoch of the leader that wrote it. */
  epoch: number;
  slots: string[][];
}

/** The lease as placement needs it: who leads, at which epoch, and the node's fence. */
export interface PlacementLease {
  isLeader(): boolean;
  readonly epoch: number;
  /** Records an epoch seen on work; false when it is stale. */
  fence(epoch: number): boolean;
}

export interface ClusterPlacementOptions {
  lease: PlacementLease;
  /** Told of refused placements and failed writes. @default ignore */
  log?: (line: string) => void;
  /**
   * Slots that may move off draining nodes at once, per deployment.
   * @default 1
   */
  maxMoving?: number;
  /** Told when a plan leaves slots of a deployment on no node (nowhere fits). @default ignore */
  onUnplaced?: (deployment: string, vacant: number) => void;
}

/** A service as the leader plans it. */
export interface PlannedService {
  name: string;
  replicas: number;
  /** Whether its `[placement]` allows a node. @default every node */
  eligible?: (node: string) => boolean;
  /** How many of its slots fit on a node, given its memory. @default no limit */
  room?: (node: string, deployment: string) => number;
}

const encoder = new TextEncoder();

/** Placement keys: `p.<deployment>` and `n.<node>`. */
const placementKey = (deployment: string) => `p.${deployment}`;
const drainKey = (node: string) => `n.${node}`;

/** One node's view of the placements, and the leader's planning. */
export class ClusterPlacement {
  readonly #kv: KV;
  readonly #o: ClusterPlacementOptions;
  readonly #placements = new Map<string, PlacementValue>();
  /**
   * The bucket revision of what `#placements` holds per deployment: the watch may bring this
   * node's own write back after a newer one, and must not put the older one back.
   */
  readonly #revisions = new Map<string, number>();
  readonly #draining = new Set<string>();
  readonly #listeners = new Set<() => void>();
  /** Vacant slots per deployment at the last plan (told once per change). */
  readonly #vacant = new Map<string, number>();
  readonly #stop = new AbortController();
  #watching?: Promise<void>;
  #planning: Promise<void> = Promise.resolve();

  constructor(kv: KV, options: ClusterPlacementOptions) {
    this.#kv = kv;
    this.#o = options;
  }

  /** Reads every placement and drain mark, then follows their changes. */
  async start(): Promise<void> {
    const { done } = await followBucket(this.#kv, ">", (e) => this.#apply(e), {
      signal: this.#stop.signal,
      log: (line) => this.#o.log?.(`placement: ${line}`),
    });
    this.#watching = done;
    // What is there now, before start() returns (the watch brings the same again: no change).
    for (const key of await bucketKeys(this.#kv)) {
      const entry = await this.#kv.get(key);
      if (entry) this.#apply(entry);
    }
  }

  async close(): Promise<void> {
    this.#stop.abort();
    await this.#watching;
    await this.#planning;
  }

  /** Calls `listener` whenever a placement or a drain mark changed. */
  onChange(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** The deployment's slots as last written by a current leader, if any. */
  slots(deployment: string): readonly SlotNodes[] | undefined {
    return this.#placements.get(deployment)?.slots;
  }

  /** Whether a node is marked draining (by `prisn node drain`, or by its own stop). */
  isDraining(node: string): boolean {
    return this.#draining.has(node);
  }

  /** Nodes marked draining. */
  draining(): string[] {
    return [...this.#draining].sort();
  }

  /** Marks a node draining (its replicas move elsewhere) or not. */
  async setDraining(node: string, draining: boolean): Promise<void> {
    if (draining) {
      await this.#kv.put(drainKey(node), encoder.encode(JSON.stringify({ at: Date.now() })));
    } else await this.#kv.delete(drainKey(node));
  }

  /**
   * As the leader: brings every service's placement in line with the nodes (a no-op on other
   * nodes). `nodes` are the live nodes with their ready replicas per deployment.
   */
  plan(
    services: ReadonlyArray<PlannedService>,
    nodes: ReadonlyArray<{ node: string; ready: (deployment: string) => number }>,
  ): Promise<void> {
    const run = this.#planning.then(() => this.#plan(services, nodes));
    this.#planning = run.catch((e) => this.#o.log?.(`placement: ${(e as Error).message}`));
    return this.#planning;
  }

  async #plan(
    services: ReadonlyArray<PlannedService>,
    nodes: ReadonlyArray<{ node: string; ready: (deployment: string) => number }>,
  ): Promise<void> {
    const { lease } = this.#o;
    if (!lease.isLeader()) return;
    const epoch = lease.epoch;
    const wanted = new Set(services.map((s) => s.name));
    for (const s of services) {
      const current = this.#placements.get(s.name);
      const view: PlacementNode[] = nodes.map((n) => ({
        node: n.node,
        draining: this.#draining.has(n.node),
        ready: n.ready(s.name),
        eligible: s.eligible?.(n.node) ?? true,
        room: s.room?.(n.node, s.name),
      }));
      const slots = planPlacement(current?.slots, s.replicas, view, this.#o.maxMoving ?? 1);
      const vacant = slots.filter((slot) => slot.length === 0).length;
      if (vacant > 0 && vacant !== this.#vacant.get(s.name)) {
        this.#o.onUnplaced?.(s.name, vacant);
      }
      this.#vacant.set(s.name, vacant);
      if (current?.epoch === epoch && sameSlots(current.slots, slots)) continue;
      if (!lease.isLeader()) return; // stepped down meanwhile: leave it to the next leader
      const value: PlacementValue = { epoch, slots };
      const revision = await this.#kv.put(
        placementKey(s.name),
        encoder.encode(JSON.stringify(value)),
      );
      // Every move in the agent log, with the readiness it was decided on.
      this.#o.log?.(
        `placement: ${s.name} ${current ? slotsText(current.slots) : "(new)"} -> ` +
          `${slotsText(slots)} at epoch ${epoch} (ready: ${
            view.map((n) => `${n.node}${n.draining ? " draining" : ""} ${n.ready}`).join(", ")
          })`,
      );
      this.#accept(s.name, value, revision); // at once, not only when the watch brings it back
    }
    for (const name of [...this.#placements.keys()]) {
      if (wanted.has(name) || !lease.isLeader()) continue;
      await this.#kv.delete(placementKey(name));
      this.#placements.delete(name);
      this.#changed();
    }
  }

  #apply(e: KvEntry): void {
    const [kind, name] = [e.key.slice(0, 2), e.key.slice(2)];
    if (kind === "n.") {
      const had = this.#draining.has(name);
      if (e.operation === "PUT") this.#draining.add(name);
      else this.#draining.delete(name);
      if (had !== this.#draining.has(name)) this.#changed();
      return;
    }
    if (kind !== "p.") return;
    if (e.revision <= (this.#revisions.get(name) ?? 0)) return; // older than what it has
    if (e.operation !== "PUT") {
      this.#revisions.set(name, e.revision);
      if (this.#placements.delete(name)) this.#changed();
      return;
    }
    let value: PlacementValue;
    try {
      value = e.json<PlacementValue>();
      if (!Number.isInteger(value.epoch) || !Array.isArray(value.slots)) throw new Error();
    } catch {
      return; // not a placement prisn wrote
    }
    this.#accept(name, value, e.revision);
  }

  /** Takes a placement unless its epoch is stale (a replaced leader's). */
  #accept(name: string, value: PlacementValue, revision: number): void {
    if (!this.#o.lease.fence(value.epoch)) {
      this.#o.log?.(
        `refused the placement of ${name} from epoch ${value.epoch}: a newer leader has led since`,
      );
      return;
    }
    this.#revisions.set(name, Math.max(revision, this.#revisions.get(name) ?? 0));
    const current = this.#placements.get(name);
    if (current && current.epoch === value.epoch && sameSlots(current.slots, value.slots)) return;
    this.#placements.set(name, value);
    this.#changed();
  }

  #changed(): void {
    for (const l of this.#listeners) {
      try {
        l();
      } catch (e) {
        this.#o.log?.(`placement listener: ${(e as Error).message}`);
      }
    }
  }
}

/** Slots as the log shows them: a node per slot, `from>to` while one moves, `-` for vacant. */
function slotsText(slots: readonly SlotNodes[]): string {
  return slots.map((s) => s.length === 0 ? "-" : s.join(">")).join(" ");
}

function sameSlots(a: readonly SlotNodes[], b: readonly SlotNodes[]): boolean {
  return a.length === b.length && a.every((s, i) => s.join(",") === b[i].join(","));
}
