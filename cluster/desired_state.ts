/**
 * Desired state of a cluster: a NATS KV bucket is the source of truth, every node mirrors it
 * into its own SQLite records and reads from there.
 *
 * Key layout (one bucket; values are JSON):
 * - `d.NAME`: the deployment (type, version, replicas, suspended, createdAt, updatedAt). Its KV
 *   revision is the deployment's `revision`, the one writes expect.
 * - `v.NAME.VERSION`: a version record (spec, source, files, bytes, createdAt, deployedAt, status).
 * - `t.NAME`: a cronjob's last handled tick (`{"at": ms}`), apart from `d.NAME` so bookkeeping
 *   never bumps the deployment's revision.
 *
 * Every change is a compare-and-set on one key (`create`, or `update` at the revision it was
 * decided on); a change that spans keys writes `d.NAME` first, so a lost compare-and-set leaves
 * nothing behind. `activate` then marks the version statuses (a node dying in between leaves
 * them behind until the next activate, which supersedes every active version but its own);
 * `expect` on `putVersion` and `setLastScheduled` is checked against `d.NAME` just before they
 * write their own key (KV has no multi-key transaction).
 *
 * Deletes leave the KV's delete markers (history is kept), so a later deploy of the same name is
 * a `create` on a deleted key: that, like every `update`, is the compare-and-set that clustered
 * NATS before 2.9.21 gets wrong (nats-server #4320). A tombstone value would not help there (it
 * turns the `create` into an `update`, equally affected), so cluster/connection.ts refuses such
 * servers instead (unless told `allowUnsafeCas`); on one server, and on ≥ 2.9.21, both are exact.
 */
import type { KV } from "@nats-io/kv";
import { JetStreamApiCodes, JetStreamApiError } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import type { DesiredChange, DesiredState, WriteOptions } from "../core/desired_state.ts";
import { deploymentNotFound, PrisnError } from "../core/errors.ts";
import type { Records } from "../core/records.ts";
import type { DeploymentRecord, VersionRecord, VersionStatus } from "../core/types.ts";
import { bucketKeys } from "./_keys.ts";
import {
  BucketMirror,
  decodeDeployment,
  decodeTick,
  decodeVersion,
  deploymentKey,
  type DeploymentValue,
  tickKey,
  type TickValue,
  versionKey,
} from "./_mirror.ts";

export interface ClusterDesiredStateOptions {
  /**
   * The connection the bucket was opened on: a disconnect marks the mirror stale at once and a
   * reconnect checks it at once (without it, the periodic check finds both).
   */
  connection?: Pick<NatsConnection, "status">;
  /**
   * How often the mirror's last applied revision is compared with the bucket's.
   * @default 5000
   */
  checkIntervalMs?: number;
  /**
   * How long the mirror may stay below a revision the bucket holds before its watch is restarted.
   * @default checkIntervalMs
   */
  stallAfterMs?: number;
  /**
   * How long a write waits for this node's mirror to apply it (and `start` for the first sync).
   * @default 15000
   */
  applyTimeoutMs?: number;
  /**
   * Tries of a write without `expect` that keeps meeting a newer revision.
   * @default 5
   */
  retries?: number;
}

/** The largest value a key takes: NATS caps a message at 1 MiB by default, headers included. */
const MAX_VALUE_BYTES = 1024 * 1024 - 1024;

const encoder = new TextEncoder();

interface Revisioned<T> {
  value: T;
  revision: number;
}

/**
 * Desired state over a NATS KV bucket (see the file's header for the key layout). Reads are
 * synchronous from the node's SQLite mirror and keep answering while NATS is unreachable
 * (`staleSince` says since when they may be behind); writes are compare-and-set on the bucket
 * and resolve once the mirror has applied them; watchers hear of every change the mirror applies,
 * whichever node made it. Call `start` before use and `close` at the end.
 */
export class ClusterDesiredState implements DesiredState {
  readonly records: Records;
  readonly #kv: KV;
  readonly #mirror: BucketMirror;
  readonly #listeners = new Set<(change: DesiredChange) => void>();
  readonly #applyTimeoutMs: number;
  readonly #retries: number;
  #started = false;

  constructor(kv: KV, records: Records, options: ClusterDesiredStateOptions = {}) {
    this.#kv = kv;
    this.records = records;
    const checkIntervalMs = options.checkIntervalMs ?? 5000;
    this.#applyTimeoutMs = options.applyTimeoutMs ?? 15_000;
    this.#retries = options.retries ?? 5;
    this.#mirror = new BucketMirror(kv, records, (change) => this.#tell(change), {
      connection: options.connection,
      checkIntervalMs,
      stallAfterMs: options.stallAfterMs ?? checkIntervalMs,
    });
  }

  /**
   * Starts mirroring: resumes after the last revision this node's records applied (or takes the
   * bucket's snapshot) and resolves once they hold what the bucket held at the call.
   */
  async start(): Promise<void> {
    if (this.#started) return;
    this.#started = true;
    try {
      await this.#mirror.start(this.#applyTimeoutMs);
    } catch (e) {
      this.#mirror.close();
      throw e;
    }
  }

  /** Stops the watch and the checks; the records stay open (they are the caller's). */
  close(): void {
    this.#mirror.close();
  }

  /** Since when reads may be behind the bucket (disconnected, or a watch fell behind), or undefined. */
  staleSince(): number | undefined {
    return this.#mirror.staleSince();
  }

  /** The last bucket revision this node's mirror applied. */
  get mirrorRevision(): number {
    return this.#mirror.applied;
  }

  /** How often the mirror restarted its watch (it fell behind, or ended). */
  get rewatches(): number {
    return this.#mirror.rewatches;
  }

  // --- reads: the local mirror ----------------------------------------------------------------

  getDeployment(name: string): DeploymentRecord | undefined {
    return this.records.getDeployment(name);
  }
  listDeployments(): DeploymentRecord[] {
    return this.records.listDeployments();
  }
  getVersion(deployment: string, version: string): VersionRecord | undefined {
    return this.records.getVersion(deployment, version);
  }
  listVersions(deployment: string): VersionRecord[] {
    return this.records.listVersions(deployment);
  }

  watch(listener: (change: DesiredChange) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  // --- writes: compare-and-set on the bucket --------------------------------------------------

  /**
   * Records a version ("stored"), or refreshes a recorded one's spec and source. `expect` is
   * checked against the deployment's revision just before (another key: not in one step).
   */
  async putVersion(
    v: Omit<VersionRecord, "createdAt" | "deployedAt" | "status">,
    options: WriteOptions = {},
  ): Promise<void> {
    this.#mustBeStarted();
    const now = options.now ?? Date.now();
    if (options.expect !== undefined) await this.#currentDeployment(v.deployment, options);
    const revision = await this.#changeVersion(
      v.deployment,
      v.version,
      (current) =>
        current ? { ...current, spec: v.spec, source: v.source } : {
          ...v,
          createdAt: now,
          deployedAt: now,
          status: "stored",
        },
    );
    await this.#applied(revision);
  }

  async setVersionStatus(
    deployment: string,
    version: string,
    status: VersionStatus,
  ): Promise<void> {
    this.#mustBeStarted();
    const revision = await this.#changeVersion(
      deployment,
      version,
      (current) => current && { ...current, status },
    );
    await this.#applied(revision);
  }

  async deleteVersion(deployment: string, version: string): Promise<void> {
    this.#mustBeStarted();
    const key = versionKey(deployment, version);
    if (!this.records.getVersion(deployment, version) && !(await this.#read(key, () => true))) {
      return;
    }
    await this.#nats(`deleting ${deployment} ${version}`, () => this.#kv.purge(key));
    await this.#mirror.sync(this.#applyTimeoutMs);
  }

  /**
   * Makes a recorded version active (creating the deployment), then marks it "active" and the
   * previously active one "superseded"; resolves with the deployment's new revision.
   */
  async activate(
    deployment: string,
    version: string,
    replicas: number,
    options: WriteOptions = {},
  ): Promise<number> {
    this.#mustBeStarted();
    const now = options.now ?? Date.now();
    const previous = new Set<string>();
    const revision = await this.#changeDeployment(deployment, options, async (current) => {
      const v = this.records.getVersion(deployment, version) ??
        (await this.#read(
          versionKey(deployment, version),
          (raw) => decodeVersion(raw, deployment, version),
        ))?.value;
      if (!v) {
        throw new PrisnError("NOT_FOUND", `version ${version} of ${deployment} is not recorded`);
      }
      if (current) previous.add(current.version);
      return {
        name: deployment,
        type: v.spec.type,
        version,
        replicas,
        suspended: current?.suspended ?? false,
        createdAt: current?.createdAt ?? now,
        updatedAt: now,
      };
    });
    for (const v of this.records.listVersions(deployment)) {
      if (v.status === "active") previous.add(v.version);
    }
    previous.delete(version);
    let last = revision;
    for (const old of previous) {
      const r = await this.#changeVersion(
        deployment,
        old,
        (v) => v?.status === "active" ? { ...v, status: "superseded" } : undefined,
      );
      last = Math.max(last, r ?? 0);
    }
    // Another node may have activated a newer version meanwhile (deciding on this revision):
    // then this one was active and is superseded already.
    const latest = await this.#read(
      deploymentKey(deployment),
      (raw) => decodeDeployment(raw, deployment),
    );
    const status = latest?.value.version === version ? "active" : "superseded";
    const r = await this.#changeVersion(
      deployment,
      version,
      (v) => v && { ...v, status, deployedAt: now },
    );
    await this.#applied(Math.max(last, r ?? 0));
    return revision;
  }

  async setReplicas(name: string, replicas: number, options: WriteOptions = {}): Promise<number> {
    this.#mustBeStarted();
    const now = options.now ?? Date.now();
    const revision = await this.#changeDeployment(
      name,
      options,
      (current) => ({ ...current!, replicas, updatedAt: now }),
      true,
    );
    await this.#applied(revision);
    return revision;
  }

  async setSuspended(
    name: string,
    suspended: boolean,
    options: WriteOptions = {},
  ): Promise<number> {
    this.#mustBeStarted();
    const now = options.now ?? Date.now();
    const revision = await this.#changeDeployment(
      name,
      options,
      (current) => ({ ...current!, suspended, updatedAt: now }),
      true,
    );
    await this.#applied(revision);
    return revision;
  }

  /**
   * Records the latest cron tick handled under `t.NAME` (no new revision of the deployment;
   * `expect` is checked against it just before). Resolves with the deployment's revision.
   */
  async setLastScheduled(
    name: string,
    at: number | undefined,
    options: WriteOptions = {},
  ): Promise<number> {
    this.#mustBeStarted();
    const deployment = await this.#currentDeployment(name, options, true);
    const key = tickKey(name);
    const value: TickValue = at === undefined ? {} : { at };
    let revision: number | undefined;
    for (let attempt = 0; revision === undefined; attempt++) {
      const held = this.#mirror.tick(name);
      const current = attempt === 0 && held
        ? held
        : (await this.#read(key, decodeTick)) ?? undefined;
      revision = await this.#compareAndSet(key, value, current?.revision, attempt, name);
    }
    await this.#applied(revision);
    return this.records.getDeployment(name)?.revision ?? deployment!.revision;
  }

  /** Removes a deployment (compare-and-set on `d.NAME`), then its versions and cron tick. */
  async deleteDeployment(name: string, options: WriteOptions = {}): Promise<void> {
    this.#mustBeStarted();
    const key = deploymentKey(name);
    for (let attempt = 0;; attempt++) {
      const current = await this.#currentDeployment(name, options, false, attempt > 0);
      if (!current) break;
      try {
        await this.#kv.delete(key, { previousSeq: current.revision });
        break;
      } catch (e) {
        await this.#lostRace(e, name, options, attempt);
      }
    }
    const versions = await this.#nats(
      `listing the versions of ${name}`,
      () => bucketKeys(this.#kv, versionKey(name, "*")),
    );
    for (const k of versions) {
      const entry = await this.#nats(`reading ${k}`, () => this.#kv.get(k));
      if (entry?.operation !== "PUT") continue; // purged by an earlier delete
      await this.#nats(`deleting ${k}`, () => this.#kv.purge(k));
    }
    if (this.#mirror.tick(name) || (await this.#read(tickKey(name), () => true))) {
      await this.#nats(`deleting ${tickKey(name)}`, () => this.#kv.purge(tickKey(name)));
    }
    await this.#mirror.sync(this.#applyTimeoutMs);
  }

  // --- helpers --------------------------------------------------------------------------------

  #mustBeStarted(): void {
    if (!this.#started) throw new Error("ClusterDesiredState: call start() before writing");
  }

  #tell(change: DesiredChange): void {
    for (const listener of this.#listeners) {
      try {
        listener(change);
      } catch { /* a watcher's failure is its own */ }
    }
  }

  #applied(revision: number | undefined): Promise<void> {
    return revision ? this.#mirror.waitFor(revision, this.#applyTimeoutMs) : Promise.resolve();
  }

  /**
   * The deployment as the write must see it: the mirror's copy, or the bucket's when the mirror
   * has none, is not at `expect`, or `fresh` asks for it. Checks `mustExist`, then `expect`.
   */
  async #currentDeployment(
    name: string,
    options: WriteOptions,
    mustExist = false,
    fresh = false,
  ): Promise<Revisioned<DeploymentValue> | undefined> {
    const held = fresh ? undefined : this.records.getDeployment(name);
    let current: Revisioned<DeploymentValue> | undefined = held && {
      value: withoutMirrorFields(held),
      revision: held.revision,
    };
    if (!current || (options.expect !== undefined && current.revision !== options.expect)) {
      current = await this.#read(deploymentKey(name), (raw) => decodeDeployment(raw, name));
    }
    if (mustExist && !current) throw deploymentNotFound(name);
    if (options.expect !== undefined && (current?.revision ?? 0) !== options.expect) {
      throw conflict(name, current?.revision, options.expect);
    }
    return current;
  }

  /** Writes `d.NAME` computed from its current value; resolves with the new revision. */
  async #changeDeployment(
    name: string,
    options: WriteOptions,
    compute: (current: DeploymentValue | undefined) => DeploymentValue | Promise<DeploymentValue>,
    mustExist = false,
  ): Promise<number> {
    for (let attempt = 0;; attempt++) {
      const current = await this.#currentDeployment(name, options, mustExist, attempt > 0);
      const next = await compute(current?.value);
      const revision = await this.#compareAndSet(
        deploymentKey(name),
        next,
        current?.revision,
        attempt,
        name,
        options,
      );
      if (revision !== undefined) return revision;
    }
  }

  /**
   * Writes `v.NAME.VERSION` computed from its current value (undefined from `compute`: nothing
   * to write); resolves with the new revision, or undefined when nothing was written.
   */
  async #changeVersion(
    deployment: string,
    version: string,
    compute: (current: VersionRecord | undefined) => VersionRecord | undefined,
  ): Promise<number | undefined> {
    const key = versionKey(deployment, version);
    for (let attempt = 0;; attempt++) {
      const current = await this.#read(key, (raw) => decodeVersion(raw, deployment, version));
      const next = compute(current?.value);
      if (!next) return undefined;
      const revision = await this.#compareAndSet(key, next, current?.revision, attempt, deployment);
      if (revision !== undefined) return revision;
    }
  }

  /**
   * `create` (no current revision) or `update` at `revision`; undefined when another write came
   * first and this one may be tried again, CONFLICT when the caller expected a revision.
   */
  async #compareAndSet(
    key: string,
    value: unknown,
    revision: number | undefined,
    attempt: number,
    name: string,
    options: WriteOptions = {},
  ): Promise<number | undefined> {
    const body = JSON.stringify(value);
    const bytes = encoder.encode(body).length;
    if (bytes > MAX_VALUE_BYTES) {
      throw new PrisnError(
        "INVALID",
        `the record ${key} would be ${bytes} bytes, over the 1 MiB a NATS KV value holds: ` +
          `make its spec smaller (env, args)`,
      );
    }
    try {
      return revision === undefined
        ? await this.#kv.create(key, body)
        : await this.#kv.update(key, body, revision);
    } catch (e) {
      await this.#lostRace(e, name, options, attempt);
      return undefined;
    }
  }

  /**
   * After a failed compare-and-set: returns when the write may be tried again; throws CONFLICT
   * when the caller expected a revision (or the tries are used up), UNAVAILABLE for any other
   * failure.
   */
  async #lostRace(e: unknown, name: string, options: WriteOptions, attempt: number) {
    if (!isWrongLastSequence(e)) throw natsFailure(`changing ${name}`, e);
    if (options.expect !== undefined) {
      const now = await this.#read(deploymentKey(name), (raw) => decodeDeployment(raw, name))
        .catch(() => undefined);
      throw conflict(name, now?.revision, options.expect);
    }
    if (attempt + 1 >= this.#retries) {
      throw new PrisnError(
        "CONFLICT",
        `${name} kept changing while prisn wrote it (${this.#retries} tries): retry`,
      );
    }
  }

  /** A key's live value and revision from the bucket; undefined when absent or deleted. */
  async #read<T>(key: string, decode: (raw: unknown) => T): Promise<Revisioned<T> | undefined> {
    const entry = await this.#nats(`reading ${key}`, () => this.#kv.get(key));
    if (!entry || entry.operation !== "PUT") return undefined;
    try {
      return { value: decode(entry.json()), revision: entry.revision };
    } catch (e) {
      throw new PrisnError(
        "FAILED",
        `${key} in the desired-state bucket is not a record prisn wrote (${
          (e as Error).message
        }): ` +
          `delete or rewrite it`,
        { cause: e },
      );
    }
  }

  async #nats<T>(what: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      throw natsFailure(what, e);
    }
  }
}

function withoutMirrorFields(d: DeploymentRecord): DeploymentValue {
  const { revision: _revision, lastScheduledAt: _tick, ...value } = d;
  return value;
}

/** The one wording of a lost compare-and-set, as on one node. */
function conflict(name: string, revision: number | undefined, expect: number): PrisnError {
  return new PrisnError(
    "CONFLICT",
    `${name} changed meanwhile (revision ${revision ?? "none"}, expected ${expect}): ` +
      `look again and retry`,
  );
}

function isWrongLastSequence(e: unknown): boolean {
  return e instanceof JetStreamApiError &&
    (e.code === JetStreamApiCodes.StreamWrongLastSequence ||
      e.code === JetStreamApiCodes.StreamWrongLastSequenceUnknown);
}

/** A NATS failure while writing: the change may or may not have been made. */
function natsFailure(what: string, e: unknown): PrisnError {
  if (e instanceof PrisnError) return e;
  const reason = e instanceof Error ? e.message.split("\n")[0] : String(e);
  if (/maximum payload/i.test(reason)) {
    return new PrisnError(
      "INVALID",
      `NATS refused ${what}: the record is over its maximum payload (${reason})`,
      { cause: e },
    );
  }
  if (e instanceof JetStreamApiError) {
    return new PrisnError("FAILED", `NATS refused ${what} (${reason})`, { cause: e });
  }
  return new PrisnError(
    "UNAVAILABLE",
    `NATS did not confirm ${what} (${reason}): it may still take effect; look again and retry`,
    { cause: e },
  );
}
