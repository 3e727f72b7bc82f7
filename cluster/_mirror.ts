/**
 * A node's mirror of the desired-state bucket: a watch over every key, each entry applied to the
 * node's SQLite records in one transaction together with the bucket revision it brings, and a
 * periodic check of the bucket's last revision that restarts a watch that fell silent.
 */
import type { KV, KvWatchEntry } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import type { DesiredChange } from "../core/desired_state.ts";
import { PrisnError } from "../core/errors.ts";
import type { Records } from "../core/records.ts";
import type { DeploySpec } from "../core/spec.ts";
import type { DeploymentRecord, SourceInfo, VersionRecord, VersionStatus } from "../core/types.ts";

// --- key layout ------------------------------------------------------------------------------

/** `d.NAME`: a deployment; its KV revision is the deployment's revision. */
export const deploymentKey = (name: string): string => `d.${name}`;
/** `v.NAME.VERSION`: one recorded version of a deployment. */
export const versionKey = (name: string, version: string): string => `v.${name}.${version}`;
/** `t.NAME`: a cronjob's last handled tick; kept apart so it does not bump the revision. */
export const tickKey = (name: string): string => `t.${name}`;

type ParsedKey =
  | { kind: "deployment" | "tick"; name: string }
  | { kind: "version"; name: string; version: string };

/** What a bucket key names, or undefined for a key outside the layout (ignored). */
export function parseKey(key: string): ParsedKey | undefined {
  const parts = key.split(".");
  if (parts.length === 2 && parts[0] === "d") return { kind: "deployment", name: parts[1] };
  if (parts.length === 2 && parts[0] === "t") return { kind: "tick", name: parts[1] };
  if (parts.length === 3 && parts[0] === "v") {
    return { kind: "version", name: parts[1], version: parts[2] };
  }
  return undefined;
}

// --- values ----------------------------------------------------------------------------------

/** A deployment as stored under `d.NAME`: revision and last tick live elsewhere. */
export type DeploymentValue = Omit<DeploymentRecord, "revision" | "lastScheduledAt">;
/** A cron tick as stored under `t.NAME` (`at` absent: none handled). */
export interface TickValue {
  at?: number;
}

const STATUSES: readonly VersionStatus[] = ["stored", "active", "superseded", "failed"];

function field<T>(o: Record<string, unknown>, key: string, type: string): T {
  const v = o[key];
  if (typeof v !== type || v === null) throw new TypeError(`${key} is not a ${type}`);
  return v as T;
}

function object(v: unknown): Record<string, unknown> {
  if (typeof v !== "object" || v === null) throw new TypeError("not an object");
  return v as Record<string, unknown>;
}

export function decodeDeployment(raw: unknown, name: string): DeploymentValue {
  const o = object(raw);
  return {
    name,
    type: field<DeploymentValue["type"]>(o, "type", "string"),
    version: field<string>(o, "version", "string"),
    replicas: field<number>(o, "replicas", "number"),
    suspended: field<boolean>(o, "suspended", "boolean"),
    createdAt: field<number>(o, "createdAt", "number"),
    updatedAt: field<number>(o, "updatedAt", "number"),
  };
}

export function decodeVersion(raw: unknown, deployment: string, version: string): VersionRecord {
  const o = object(raw);
  const status = field<VersionStatus>(o, "status", "string");
  if (!STATUSES.includes(status)) throw new TypeError(`status ${status} is unknown`);
  return {
    deployment,
    version,
    spec: object(o.spec) as unknown as DeploySpec,
    source: object(o.source) as unknown as SourceInfo,
    files: field<number>(o, "files", "number"),
    bytes: field<number>(o, "bytes", "number"),
    createdAt: field<number>(o, "createdAt", "number"),
    deployedAt: field<number>(o, "deployedAt", "number"),
    status,
  };
}

export function decodeTick(raw: unknown): TickValue {
  const at = object(raw).at;
  if (at !== undefined && at !== null && typeof at !== "number") {
    throw new TypeError("at is not a number");
  }
  return typeof at === "number" ? { at } : {};
}

// --- the mirror ------------------------------------------------------------------------------

/** What the mirror needs of a watch: entries in revision order, and a way to end it. */
type Watch = AsyncIterable<KvWatchEntry> & { stop(): void };

/** The mirror's own record of a bucket: the last revision applied, and which stream it was. */
interface Progress {
  revision: number;
  /** The bucket stream's creation time: another value means the bucket was made anew. */
  stream: string;
}

interface Waiter {
  revision: number;
  resolve: () => void;
  reject: (e: unknown) => void;
  timer: ReturnType<typeof setTimeout>;
}

export interface MirrorOptions {
  /** Its disconnects mark the mirror stale at once, and a reconnect checks it at once. */
  connection?: Pick<NatsConnection, "status">;
  checkIntervalMs: number;
  stallAfterMs: number;
}

const TICK_PREFIX = "tick.";

/** The mirror of one bucket into one node's records; see the file's header. */
export class BucketMirror {
  readonly #kv: KV;
  readonly #records: Records;
  readonly #emit: (change: DesiredChange) => void;
  readonly #options: MirrorOptions;

  #bucket = "";
  #stream = "";
  /** The highest bucket revision applied to the records. */
  #applied = 0;
  #watch?: Watch;
  /** Bumped by every (re)start of the watch, so a replaced watch's loop stops applying. */
  #generation = 0;
  /**
   * During a full resync (a new mirror, or a bucket made anew): the keys its snapshot brought so
   * far; what the records hold beyond them goes once the snapshot is complete.
   */
  #seen?: Set<string>;
  #swept?: PromiseWithResolvers<void>;
  /** The bucket's last revision once a full resync's watch began: its snapshot ends there. */
  #sweepAt?: number;
  #staleSince?: number;
  #disconnected = false;
  /** The bucket's last revision when the mirror was first seen behind it, and when. */
  #behind?: { target: number; since: number };
  #waiters: Waiter[] = [];
  #timer?: ReturnType<typeof setInterval>;
  #statuses?: { stop?(): void };
  #checking = false;
  #closed = false;
  #rewatches = 0;

  constructor(
    kv: KV,
    records: Records,
    emit: (change: DesiredChange) => void,
    options: MirrorOptions,
  ) {
    this.#kv = kv;
    this.#records = records;
    this.#emit = emit;
    this.#options = options;
  }

  /** The highest bucket revision this node has applied. */
  get applied(): number {
    return this.#applied;
  }

  /** How often the watch was restarted because it had fallen behind or ended. */
  get rewatches(): number {
    return this.#rewatches;
  }

  /** Since when the records may be behind the bucket; undefined while they are known current. */
  staleSince(): number | undefined {
    return this.#staleSince;
  }

  /**
   * Starts the watch (resuming after the last revision applied, or from a full snapshot) and
   * resolves once the records hold everything the bucket held at the call.
   */
  async start(timeoutMs: number): Promise<void> {
    this.#staleSince = Date.now();
    const status = await this.#kv.status().catch((e) => {
      throw unreachable("cannot read the desired-state bucket", e);
    });
    this.#bucket = status.bucket;
    this.#stream = status.streamInfo.created;
    const last = status.streamInfo.state.last_seq;
    const saved = this.#loadProgress();
    const resume = saved !== undefined && saved.stream === this.#stream &&
      saved.revision <= last;
    this.#applied = resume ? saved.revision : 0;
    try {
      await this.#startWatch(!resume);
    } catch (e) {
      throw unreachable("cannot watch the desired-state bucket", e);
    }
    this.#listen();
    this.#timer = setInterval(() => void this.check(), this.#options.checkIntervalMs);
    await this.waitFor(last, timeoutMs);
    await this.#snapshotTaken(timeoutMs);
    if (!this.#disconnected && this.#applied >= last) this.#staleSince = undefined;
  }

  /** Resolves once the records hold bucket revision `revision`; UNAVAILABLE after `timeoutMs`. */
  waitFor(revision: number, timeoutMs: number): Promise<void> {
    if (this.#applied >= revision) return Promise.resolve();
    if (this.#closed) return Promise.reject(closed());
    const { promise, resolve, reject } = Promise.withResolvers<void>();
    const waiter: Waiter = {
      revision,
      resolve,
      reject,
      timer: setTimeout(() => {
        this.#waiters = this.#waiters.filter((w) => w !== waiter);
        reject(
          new PrisnError(
            "UNAVAILABLE",
            `NATS took the change (revision ${revision}) but this node's mirror has not applied ` +
              `it within ${timeoutMs} ms (it is at ${this.#applied}): look again shortly`,
          ),
        );
      }, timeoutMs),
    };
    this.#waiters.push(waiter);
    return promise;
  }

  /** Resolves once the records hold everything the bucket holds now (after deletes: no revision). */
  async sync(timeoutMs: number): Promise<void> {
    const status = await this.#kv.status().catch((e) => {
      throw unreachable("cannot read the desired-state bucket", e);
    });
    await this.waitFor(status.streamInfo.state.last_seq, timeoutMs);
  }

  /** The cron tick the mirror holds for `name`, with the bucket revision of `t.NAME`. */
  tick(name: string): { at?: number; revision: number } | undefined {
    const raw = this.#records.getMirrorState(TICK_PREFIX + name);
    return raw === undefined ? undefined : JSON.parse(raw);
  }

  /**
   * Compares the bucket's last revision with the last one applied: a watch that ended is
   * restarted, and so is one that stayed behind the same revision for `stallAfterMs`.
   */
  async check(): Promise<void> {
    if (this.#checking || this.#closed) return;
    this.#checking = true;
    try {
      const info = (await this.#kv.status()).streamInfo;
      if (this.#closed) return;
      const now = Date.now();
      if (info.created !== this.#stream) {
        // The bucket was made anew under the same name: start over from its snapshot.
        this.#stream = info.created;
        this.#applied = 0;
        this.#seen = undefined; // what an earlier snapshot brought says nothing of this bucket
        this.#markStale(now);
        this.#rewatches++;
        await this.#startWatch(true);
        return;
      }
      const last = info.state.last_seq;
      if (!this.#watch) {
        this.#rewatches++;
        await this.#startWatch(this.#seen !== undefined);
        this.#behind = { target: last, since: now };
      } else if (this.#applied >= last) {
        // Everything the bucket holds has come through: a snapshot being taken is complete.
        this.#sweep();
        this.#behind = undefined;
        if (!this.#disconnected) this.#staleSince = undefined;
      } else if (!this.#behind || this.#applied >= this.#behind.target) {
        this.#behind = { target: last, since: now }; // behind, but moving
      } else if (now - this.#behind.since >= this.#options.stallAfterMs) {
        // Stuck below a revision the bucket has held for a while: the watch fell silent.
        this.#markStale(this.#behind.since);
        this.#rewatches++;
        await this.#startWatch(this.#seen !== undefined);
        this.#behind = { target: last, since: now };
      }
    } catch {
      this.#markStale(Date.now()); // the bucket cannot be read: the mirror may be behind
    } finally {
      this.#checking = false;
    }
  }

  /** Stops the watch, the checks and the connection listener; pending waits fail. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#generation++;
    this.#watch?.stop();
    this.#watch = undefined;
    clearInterval(this.#timer);
    this.#statuses?.stop?.();
    for (const w of this.#waiters) {
      clearTimeout(w.timer);
      w.reject(closed());
    }
    this.#waiters = [];
    this.#swept?.reject(closed());
    this.#swept?.promise.catch(() => {});
  }

  /** Resolves once a full resync's snapshot is complete (at once when none is under way). */
  async #snapshotTaken(timeoutMs: number): Promise<void> {
    const swept = this.#swept;
    if (!swept) return;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() =>
        reject(
          new PrisnError(
            "UNAVAILABLE",
            `this node's mirror did not get the desired-state bucket's snapshot within ` +
              `${timeoutMs} ms: is NATS reachable?`,
          ),
        ), timeoutMs);
    });
    try {
      await Promise.race([swept.promise, late]);
    } finally {
      clearTimeout(timer);
    }
  }

  #markStale(since: number): void {
    this.#staleSince ??= since;
  }

  #listen(): void {
    const connection = this.#options.connection;
    if (!connection) return;
    const statuses = connection.status();
    this.#statuses = statuses as { stop?(): void };
    void (async () => {
      try {
        for await (const status of statuses) {
          if (this.#closed) break;
          if (status.type === "disconnect" || status.type === "close") {
            this.#disconnected = true;
            this.#markStale(Date.now());
          } else if (status.type === "reconnect") {
            this.#disconnected = false;
            void this.check();
          }
        }
      } catch { /* the connection is gone; the checks keep the staleness */ }
    })();
  }

  /** (Re)starts the watch: from a full snapshot, or after the last revision applied. */
  async #startWatch(full: boolean): Promise<void> {
    const generation = ++this.#generation;
    this.#watch?.stop();
    this.#watch = undefined;
    if (full) {
      // Kept across restarts within one resync: a key seen stays accounted for, since whatever
      // happens to it later comes through as an entry too.
      this.#seen ??= new Set();
      this.#swept ??= Promise.withResolvers<void>();
    }
    this.#sweepAt = undefined;
    const watch = await this.#kv.watch(full ? {} : { resumeFromRevision: this.#applied + 1 });
    if (generation !== this.#generation) {
      watch.stop(); // replaced (or closed) while it started
      return;
    }
    this.#watch = watch;
    void this.#consume(watch, generation);
    if (!full) return;
    // The snapshot holds no entry beyond the bucket's last revision now that its consumer exists.
    // (The watch's own "no more pending" flag can come early: see _keys.ts.) Unread, the next
    // check() sees the mirror reach the bucket's last revision and sweeps then.
    const last = await this.#kv.status().then((s) => s.streamInfo.state.last_seq, () => undefined);
    if (generation !== this.#generation || last === undefined) return;
    this.#sweepAt = last;
    if (this.#applied >= last) this.#sweep();
  }

  async #consume(watch: Watch, generation: number): Promise<void> {
    try {
      for await (const entry of watch) {
        if (generation !== this.#generation) break;
        this.#apply(entry);
      }
    } catch { /* the watch failed, or an entry could not be applied: restart from the last */ }
    if (generation === this.#generation && !this.#closed) {
      // It ended on its own (server gone, consumer removed): the next check restarts it.
      this.#watch = undefined;
      this.#markStale(Date.now());
    }
  }

  #apply(entry: KvWatchEntry): void {
    const seen = this.#seen;
    seen?.add(entry.key);
    if (entry.revision > this.#applied) {
      const key = parseKey(entry.key);
      this.#records.transaction(() => {
        if (key) this.#applyEntry(key, entry);
        if (!seen) this.#saveProgress(entry.revision);
      });
      this.#applied = entry.revision;
      if (key) this.#changed(key.name);
    }
    if (seen && this.#sweepAt !== undefined && this.#applied >= this.#sweepAt) this.#sweep();
    this.#wake();
  }

  #applyEntry(key: ParsedKey, entry: KvWatchEntry): void {
    const put = entry.operation === "PUT";
    let raw: unknown;
    if (put) {
      try {
        raw = entry.json();
      } catch {
        return; // not a value prisn wrote: the mirror keeps what it had
      }
    }
    try {
      switch (key.kind) {
        case "deployment":
          if (!put) return this.#records.removeDeploymentRecord(key.name);
          return this.#records.putDeploymentRecord({
            ...decodeDeployment(raw, key.name),
            lastScheduledAt: this.tick(key.name)?.at,
            revision: entry.revision,
          });
        case "version":
          if (!put) return this.#records.deleteVersion(key.name, key.version);
          return this.#records.putVersionRecord(decodeVersion(raw, key.name, key.version));
        case "tick": {
          const at = put ? decodeTick(raw).at : undefined;
          if (put) {
            this.#records.setMirrorState(
              TICK_PREFIX + key.name,
              JSON.stringify({ at, revision: entry.revision }),
            );
          } else this.#records.deleteMirrorState(TICK_PREFIX + key.name);
          return this.#records.setLastScheduled(key.name, at);
        }
      }
    } catch (e) {
      if (e instanceof TypeError) return; // a malformed value: skipped, as above
      throw e;
    }
  }

  /** Ends a full resync: what the records hold and the bucket's snapshot did not bring goes. */
  #sweep(): void {
    const seen = this.#seen;
    if (!seen) return;
    this.#seen = undefined;
    const changed = new Set<string>();
    this.#records.transaction(() => {
      for (const d of this.#records.listDeployments()) {
        if (seen.has(deploymentKey(d.name))) continue;
        this.#records.removeDeploymentRecord(d.name);
        changed.add(d.name);
      }
      for (const v of this.#records.listVersionIds()) {
        if (seen.has(versionKey(v.deployment, v.version))) continue;
        this.#records.deleteVersion(v.deployment, v.version);
        changed.add(v.deployment);
      }
      for (const { key } of this.#records.listMirrorState(TICK_PREFIX)) {
        const name = key.slice(TICK_PREFIX.length);
        if (seen.has(tickKey(name))) continue;
        this.#records.deleteMirrorState(key);
        this.#records.setLastScheduled(name, undefined);
        changed.add(name);
      }
      this.#saveProgress(this.#applied);
    });
    for (const name of changed) this.#changed(name);
    this.#swept?.resolve();
    this.#swept = undefined;
  }

  #changed(name: string): void {
    this.#emit({ deployment: name, revision: this.#records.getDeployment(name)?.revision });
  }

  #wake(): void {
    if (this.#waiters.length === 0) return;
    const ready = this.#waiters.filter((w) => w.revision <= this.#applied);
    if (ready.length === 0) return;
    this.#waiters = this.#waiters.filter((w) => w.revision > this.#applied);
    for (const w of ready) {
      clearTimeout(w.timer);
      w.resolve();
    }
  }

  #progressKey(): string {
    return `bucket.${this.#bucket}`;
  }

  #loadProgress(): Progress | undefined {
    const raw = this.#records.getMirrorState(this.#progressKey());
    return raw === undefined ? undefined : JSON.parse(raw) as Progress;
  }

  #saveProgress(revision: number): void {
    const progress: Progress = { revision, stream: this.#stream };
    this.#records.setMirrorState(this.#progressKey(), JSON.stringify(progress));
  }
}

function closed(): PrisnError {
  return new PrisnError("UNAVAILABLE", "the cluster desired state was closed");
}

/** One line for a NATS failure: what could not be done, and the client's reason. */
export function unreachable(what: string, e: unknown): PrisnError {
  if (e instanceof PrisnError) return e;
  const reason = e instanceof Error ? e.message : String(e);
  return new PrisnError("UNAVAILABLE", `${what} (${reason.split("\n")[0]}): is NATS reachable?`, {
    cause: e,
  });
}
