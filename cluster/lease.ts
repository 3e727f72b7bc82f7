/**
 * The leader lease: one KV key in a bucket whose `max_age` is the lease TTL (DESIGN.md "The
 * cluster"). A node takes it with `create`, which succeeds only on a never-written or TTL-expired
 * key (the one compare-and-set that is safe even on an old clustered NATS), and renews it with
 * `update(key, value, expectedRevision)`. Nothing here deletes the key: a lease nobody renews
 * expires with the bucket's max age.
 *
 * **Epoch.** The revision of the write that began a term (the winning `create`, or the `update`
 * that took over a released lease) is that term's epoch. Renewals carry it in the value, so the
 * epoch stays the same for the whole term and grows from one term to the next (stream sequences
 * only grow). It is the term's revision rather than the key's current one so that work the leader
 * stamped before its latest renewal is not mistaken for stale.
 *
 * **Timing.** A leader stops acting once it has gone TTL/2 on its monotonic clock without a
 * confirmed renewal, counted from the moment it *sent* that renewal (the server stored it later,
 * so the key lives at least TTL past that moment): it is out well before the key can expire and
 * anyone else can `create` it. A leader that won an expired lease waits one renew interval before
 * it acts, as does one that got its lease back after such a gap; the first leader of a new bucket
 * (its create is the bucket's first write, revision 1, and it never saw a term: none came before)
 * acts at once. `isLeader()` reads the clock itself, so a leader whose timers are late (a paused
 * process, a blocked event loop) answers false as soon as it runs again, before any timer has told
 * it.
 *
 * **Hand-over.** `release()` stops acting, then writes a "released" marker at the revision it
 * holds; a follower that sees the marker takes the lease with `update` at the marker's revision
 * and may act at once, because the old leader stopped before it wrote the marker. Why a marker and
 * not `delete`: on a key whose last entry is a delete marker, the client's `create` falls back to
 * `update` at the delete's revision, which is no safer than this, and a deleted key loses the
 * current holder's value, address and epoch (so `prisn status` could not show who leads). The
 * followers' race for the marker is an `update` at one revision, correct on a single server and on
 * a clustered NATS ≥ 2.9.21; older clustered servers can let several `update`s at one revision
 * succeed (nats-server#4320), which is why the connection refuses them. A marker nobody takes
 * expires like any lease.
 */
import type { KV, KvEntry } from "@nats-io/kv";
import { JetStreamApiCodes, JetStreamApiError } from "@nats-io/jetstream";
import { invalid } from "../core/errors.ts";
import { untilAnswered } from "./errors.ts";

/** How long `start` keeps asking a busy NATS for the lease bucket's status. */
export const STATUS_WAIT_MS = 20_000;

/** Timer functions, injectable where a test needs exact timing; ids are opaque. */
export interface Timers {
  setTimeout(callback: () => void, ms: number): unknown;
  clearTimeout(id: unknown): void;
}

/** The global timers. */
export const realTimers: Timers = {
  setTimeout: (callback, ms) => setTimeout(callback, ms),
  clearTimeout: (id) => clearTimeout(id as ReturnType<typeof setTimeout>),
};

/** The node holding the lease, as its value names it. */
export interface LeaseHolder {
  node: string;
  address: string;
  epoch: number;
  /**
   * Whether the holder acts as leader (it has waited out its start delay), as its last write
   * said; false while a new holder waits.
   */
  acting: boolean;
}

/** A change of this node's leadership, as `onChange` listeners get it. */
export interface LeaseChange {
  /** Whether this node now acts as leader. */
  leader: boolean;
  /** This node's epoch when it gained; the epoch it held when it lost. */
  epoch: number;
}

/**
 * The highest epoch a node has seen. Work stamped with a lower one comes from a leader that has
 * been replaced, and is refused.
 */
export class EpochFence {
  #highest = 0;

  /** The highest epoch seen so far (0 before any). */
  get highest(): number {
    return this.#highest;
  }

  /**
   * Records an epoch seen on the lease or on a piece of work; true when it is current (not lower
   * than any seen), false when it is stale and the work must be refused.
   */
  fence(epoch: number): boolean {
    if (epoch < this.#highest) return false;
    this.#highest = epoch;
    return true;
  }

  /** Whether work stamped with `epoch` comes from a replaced leader. */
  isStale(epoch: number): boolean {
    return epoch < this.#highest;
  }
}

export interface LeaderLeaseOptions {
  /** This node's name, written in the lease value. */
  node: string;
  /** Where other nodes reach this node, written in the lease value. */
  address: string;
  /**
   * The lease key in the bucket.
   * @default "leader"
   */
  key?: string;
  /**
   * How often the holder renews. At most a third of the TTL.
   * @default 5000
   */
  renewMs?: number;
  /**
   * How often a follower reads the key to take an expired or released lease (a watch gets no
   * event when a key expires).
   * @default 500
   */
  pollMs?: number;
  /**
   * The lease TTL. The bucket's `max_age` is the TTL; when given, `start()` checks that the two
   * agree.
   * @default the bucket's max_age
   */
  ttlMs?: number;
  /**
   * Monotonic milliseconds.
   * @default performance.now
   */
  now?: () => number;
  /** @default globalThis.setTimeout / clearTimeout */
  timers?: Timers;
  /**
   * Where this node's highest seen epoch is kept; share one between the lease and whatever
   * checks stamped work.
   * @default a new EpochFence
   */
  fence?: EpochFence;
  /**
   * Told of failures the lease survives (NATS unreachable, a listener that threw).
   * @default ignore them
   */
  onError?: (error: unknown) => void;
}

/** What the lease key holds. */
interface LeaseValue {
  node: string;
  address: string;
  /** One per LeaderLease instance: tells this instance's own writes apart. */
  id: string;
  /** The term's epoch; absent in the write that began the term (its revision is the epoch). */
  epoch?: number;
  /** Set by `release()`: the holder has stopped acting and gives the lease away. */
  released?: boolean;
  /**
   * False while the holder waits out its start delay; absent (acting) in values of agents that
   * did not write it.
   */
  acting?: boolean;
  /** Wall-clock time of the write, for people reading the bucket. */
  at: number;
}

const encoder = new TextEncoder();

function parseValue(entry: KvEntry | null): LeaseValue | undefined {
  if (!entry || entry.operation !== "PUT") return undefined;
  try {
    const v = entry.json<LeaseValue>();
    return typeof v?.node === "string" && typeof v.id === "string" ? v : undefined;
  } catch {
    return undefined;
  }
}

/** The holder a lease value names; `epoch` is the entry's revision when the value has none. */
function holderOf(v: LeaseValue, revision: number): LeaseHolder {
  return {
    node: v.node,
    address: v.address,
    epoch: v.epoch ?? revision,
    acting: v.acting !== false,
  };
}

/** The key changed under us (someone else wrote it, or it expired): a lost compare-and-set. */
function isWrongSequence(error: unknown): boolean {
  return error instanceof JetStreamApiError &&
    (error.code === JetStreamApiCodes.StreamWrongLastSequence ||
      error.code === JetStreamApiCodes.StreamWrongLastSequenceUnknown);
}

/** A fenced leader lease over one KV key; see the module documentation. */
export class LeaderLease {
  readonly node: string;
  readonly address: string;
  readonly key: string;
  readonly renewMs: number;
  readonly pollMs: number;
  readonly #kv: KV;
  readonly #now: () => number;
  readonly #timers: Timers;
  readonly #fence: EpochFence;
  readonly #onError: (error: unknown) => void;
  readonly #id = crypto.randomUUID();
  readonly #listeners = new Set<(change: LeaseChange) => void>();
  #ttlMs: number;
  #started = false;
  /** release() or stop() was called: the loop never (re)starts. */
  #ended = false;
  /** Not running: before start() and after release()/stop(). */
  #closed = true;
  /** This node holds the key (it may not act yet, or no longer). */
  #holding = false;
  /** This node acts as leader; changes only in #update(). */
  #acting = false;
  #epoch = 0;
  /** The key's revision as this node last wrote it, while holding. */
  #revision = 0;
  /** Stop acting at this monotonic instant: TTL/2 after sending the last confirmed renewal. */
  #deadline = -Infinity;
  /** Start acting at this monotonic instant (one renew interval after an acquisition). */
  #actAt = Infinity;
  #holder: LeaseHolder | undefined;
  /** What this node's last confirmed write said of its acting. */
  #wroteActing = false;
  #loopTimer: unknown;
  #edgeTimer: unknown;
  #edgeAt = NaN;
  #step: Promise<void> = Promise.resolve();

  constructor(kv: KV, options: LeaderLeaseOptions) {
    this.#kv = kv;
    this.node = options.node;
    this.address = options.address;
    this.key = options.key ?? "leader";
    this.renewMs = options.renewMs ?? 5_000;
    this.pollMs = options.pollMs ?? 500;
    this.#ttlMs = options.ttlMs ?? 0;
    this.#now = options.now ?? (() => performance.now());
    this.#timers = options.timers ?? realTimers;
    this.#fence = options.fence ?? new EpochFence();
    this.#onError = options.onError ?? (() => {});
    if (!(this.renewMs > 0) || !(this.pollMs > 0)) {
      throw invalid(`lease renew and poll intervals must be positive`);
    }
  }

  /** The lease TTL (the bucket's max age), known once `start()` has run. */
  get ttlMs(): number {
    return this.#ttlMs;
  }

  /**
   * This node's epoch while it holds the lease; otherwise the epoch of the holder it last saw
   * (0 before it has seen one). Stamp leader work with it.
   */
  get epoch(): number {
    return this.#epoch;
  }

  /** The holder as this node last saw it (itself while it holds the lease), if any. */
  get holder(): LeaseHolder | undefined {
    if (this.#holding && this.#holder) return { ...this.#holder, acting: this.isLeader() };
    return this.#holder;
  }

  /**
   * Whether this node acts as leader now: it holds the lease, has waited out its start delay and
   * renewed within TTL/2. Reads the clock, so it is right even when timers run late.
   */
  isLeader(): boolean {
    this.#update();
    return this.#acting;
  }

  /** Records an epoch stamped on work; false when it is stale (see EpochFence.fence). */
  fence(epoch: number): boolean {
    return this.#fence.fence(epoch);
  }

  /** Whether work stamped with `epoch` comes from a replaced leader. */
  isStale(epoch: number): boolean {
    return this.#fence.isStale(epoch);
  }

  /** Calls `listener` whenever this node starts or stops acting as leader; returns an unsubscribe. */
  onChange(listener: (change: LeaseChange) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * Checks the bucket's TTL against the renew interval, makes the first attempt to take the
   * lease (resolved once it is made), and keeps renewing or polling until `release()`/`stop()`.
   */
  async start(): Promise<void> {
    if (this.#started) return;
    this.#started = true;
    const ttl = (await untilAnswered(() => this.#kv.status(), STATUS_WAIT_MS, () => this.#ended))
      .ttl;
    if (!(ttl > 0)) {
      throw invalid(`the lease bucket has no max age: create it with ttl (the lease TTL)`);
    }
    if (this.#ttlMs && this.#ttlMs !== ttl) {
      throw invalid(`lease TTL ${this.#ttlMs} ms does not match the bucket's max age ${ttl} ms`);
    }
    if (this.renewMs * 3 > ttl) {
      throw invalid(`lease renew interval ${this.renewMs} ms is over a third of the TTL ${ttl} ms`);
    }
    this.#ttlMs = ttl;
    if (this.#ended) return; // stopped while reading the bucket
    this.#closed = false;
    await this.#run();
  }

  /**
   * Hands the lease over (for `agent stop`): stops acting (listeners are told), then writes the
   * released marker at the revision it holds, so a follower leads within about a poll interval.
   * True when the marker was written; false when this node held nothing (or no longer did).
   */
  async release(): Promise<boolean> {
    const held = await this.#close();
    if (!held) return false;
    try {
      await this.#kv.update(
        this.key,
        this.#value({ epoch: this.#epoch, released: true }),
        this.#revision,
        this.renewMs,
      );
      this.#holder = undefined;
      return true;
    } catch (e) {
      if (!isWrongSequence(e)) this.#onError(e);
      return false; // lost or unreachable: it expires after the TTL
    }
  }

  /**
   * Stops renewing and polling without touching the key, as a crash would: this node stops
   * acting at once and its lease expires after the TTL. Use `release()` to hand it over.
   */
  stop(): void {
    this.#ended = this.#closed = true;
    this.#clear();
    this.#holding = false;
    this.#update();
    // A step in flight ends on its own; being closed, it neither acts nor schedules another.
  }

  /** Stops the loop and acting, after the step in flight; whether this node held the key. */
  async #close(): Promise<boolean> {
    this.#ended = this.#closed = true;
    this.#clear();
    this.#update(); // stop acting now, not after the step in flight
    await this.#step;
    const held = this.#holding;
    this.#holding = false;
    this.#update();
    return held;
  }

  #clear(): void {
    if (this.#loopTimer !== undefined) this.#timers.clearTimeout(this.#loopTimer);
    if (this.#edgeTimer !== undefined) this.#timers.clearTimeout(this.#edgeTimer);
    this.#loopTimer = this.#edgeTimer = undefined;
    this.#edgeAt = NaN;
  }

  /** One step of the loop (renew while holding, else poll), then the next one is scheduled. */
  #run(): Promise<void> {
    this.#loopTimer = undefined;
    this.#step = (async () => {
      let delay: number;
      try {
        delay = this.#holding ? await this.#renew() : await this.#poll();
      } catch (e) {
        this.#onError(e);
        delay = this.#holding ? this.#retryMs : this.pollMs;
      }
      this.#update();
      // Acting, and the key does not say so yet: renew now, so every node sees the leader.
      if (this.#acting && !this.#wroteActing) delay = 0;
      if (!this.#closed) this.#loopTimer = this.#timers.setTimeout(() => this.#run(), delay);
    })();
    return this.#step;
  }

  /** Retry a failed renewal sooner than the renew interval: TTL/2 is not far off. */
  get #retryMs(): number {
    return Math.min(this.renewMs, 1_000);
  }

  #value(extra: { epoch?: number; released?: boolean; acting?: boolean } = {}): Uint8Array {
    const v: LeaseValue = {
      node: this.node,
      address: this.address,
      id: this.#id,
      ...extra,
      at: Date.now(),
    };
    return encoder.encode(JSON.stringify(v));
  }

  /** A follower's step: take a vacant or released lease, or note who holds it. */
  async #poll(): Promise<number> {
    const entry = await this.#kv.get(this.key);
    const v = parseValue(entry);
    if (!entry || entry.operation !== "PUT") {
      return await this.#take(
        () => this.#kv.create(this.key, this.#value({ acting: false })),
        false,
      );
    }
    if (v?.id === this.#id && !v.released) {
      // Our own write whose reply was lost: renew over it at once, and only a confirmed renewal
      // lets this node act (after the start delay, as after any gap).
      this.#holding = true;
      this.#revision = entry.revision;
      this.#epoch = v.epoch ?? entry.revision;
      this.#deadline = -Infinity;
      this.#wroteActing = v.acting !== false;
      this.#fence.fence(this.#epoch);
      this.#holder = { node: this.node, address: this.address, epoch: this.#epoch, acting: false };
      return 0;
    }
    if (v?.released) {
      const revision = entry.revision;
      return await this.#take(
        () => this.#kv.update(this.key, this.#value({ acting: true }), revision, this.renewMs),
        true,
      );
    }
    if (v) this.#see(holderOf(v, entry.revision));
    return this.pollMs; // held (or unreadable): wait for it to expire
  }

  /** Attempts one acquisition write; the delay until the next step. */
  async #take(write: () => Promise<number>, released: boolean): Promise<number> {
    const sent = this.#now();
    let revision: number;
    try {
      revision = await write();
    } catch (e) {
      if (isWrongSequence(e)) return this.pollMs; // another node won: read it next time
      throw e;
    }
    // Before fencing: a node that saw an earlier term (a bucket made again under a running
    // cluster) must not take revision 1 for a first term.
    const first = revision === 1 && this.#fence.highest === 0;
    this.#holding = true;
    this.#revision = this.#epoch = revision;
    this.#wroteActing = released;
    this.#fence.fence(revision);
    this.#holder = { node: this.node, address: this.address, epoch: revision, acting: released };
    this.#deadline = sent + this.#ttlMs / 2;
    // Taken from a released marker: the old leader stopped before writing it, act at once.
    // Taken after expiry: the old one stopped at TTL/2; wait one renew interval more regardless.
    // The bucket's first write ever (revision 1, a new cluster), by a node that never saw a term:
    // there was none before this one, so nothing of an older leader can still land; at once too.
    this.#actAt = released || first ? this.#now() : this.#now() + this.renewMs;
    return this.renewMs;
  }

  /** The holder's step: renew at the expected revision. */
  async #renew(): Promise<number> {
    const sent = this.#now();
    // What this renewal says: acting, unless it comes after a gap or before the start delay.
    const acting = sent < this.#deadline && sent >= this.#actAt;
    try {
      this.#revision = await this.#kv.update(
        this.key,
        this.#value({ epoch: this.#epoch, acting }),
        this.#revision,
        this.renewMs,
      );
      this.#wroteActing = acting;
      // Back after a gap in which it stopped acting: wait the start delay again.
      if (sent >= this.#deadline) this.#actAt = this.#now() + this.renewMs;
      this.#deadline = sent + this.#ttlMs / 2;
      return this.renewMs;
    } catch (e) {
      if (!isWrongSequence(e)) this.#onError(e);
    }
    // The outcome is unknown (no reply) or the key moved: the key says which.
    let entry: KvEntry | null;
    try {
      entry = await this.#kv.get(this.key);
    } catch (e) {
      this.#onError(e);
      return this.#retryMs; // still holding until the deadline stops it
    }
    const v = parseValue(entry);
    if (entry && v?.id === this.#id && !v.released) {
      this.#revision = entry.revision; // our write landed after all: renew again over it
      return 0;
    }
    this.#holding = false;
    this.#deadline = -Infinity;
    this.#holder = undefined;
    this.#update();
    if (entry && v && !v.released) this.#see(holderOf(v, entry.revision));
    return 0; // vacant or released: try to take it again now
  }

  #see(holder: LeaseHolder): void {
    this.#holder = holder;
    if (!this.#holding) this.#epoch = holder.epoch;
    this.#fence.fence(holder.epoch);
  }

  /** Brings `#acting` in line with the clock, tells listeners of a change, arms the next edge. */
  #update(): void {
    const t = this.#now();
    const acting = !this.#closed && this.#holding && t >= this.#actAt && t < this.#deadline;
    if (acting !== this.#acting) {
      this.#acting = acting;
      // Started acting by the clock: renew at once, so the key says so (see #run).
      if (acting && !this.#wroteActing && this.#loopTimer !== undefined) {
        this.#timers.clearTimeout(this.#loopTimer);
        this.#loopTimer = this.#timers.setTimeout(() => this.#run(), 0);
      }
      const change = { leader: acting, epoch: this.#epoch };
      for (const listener of this.#listeners) {
        try {
          listener(change);
        } catch (e) {
          this.#onError(e);
        }
      }
    }
    // The next instant at which `acting` flips by the clock alone: the deadline while acting,
    // the start of acting while waiting for it. A renewal moves both and calls #update again.
    let edge = NaN;
    if (!this.#closed && this.#holding) {
      if (this.#acting) edge = this.#deadline;
      else if (t < this.#actAt && this.#actAt < this.#deadline) edge = this.#actAt;
    }
    if (edge === this.#edgeAt) return;
    if (this.#edgeTimer !== undefined) this.#timers.clearTimeout(this.#edgeTimer);
    this.#edgeTimer = undefined;
    this.#edgeAt = edge;
    if (Number.isFinite(edge)) {
      this.#edgeTimer = this.#timers.setTimeout(() => {
        this.#edgeTimer = undefined;
        this.#edgeAt = NaN;
        this.#update();
      }, Math.max(0, Math.ceil(edge - t)));
    }
  }
}
