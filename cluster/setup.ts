/**
 * Creating the buckets and streams of a prisn cluster, with explicit limits, idempotently: every
 * node runs {@link ensureResources} at start, any number of times, several at once. A resource
 * that exists with other settings is updated in place where NATS allows it, else refused with
 * one line.
 *
 * @module
 */

import {
  DiscardPolicy,
  type JetStreamManager,
  jetstreamManager,
  RetentionPolicy,
  StorageType,
  type StreamConfig,
  type StreamInfo,
} from "@nats-io/jetstream";
import { nanos } from "@nats-io/transport-node";
import { clusterError, isTransient, JS_ERR, jsErrorCode, natsReason } from "./errors.ts";
import type { ClusterConnection, ClusterNames, ResourceOptions, ResourceResult } from "./types.ts";

const MiB = 1024 * 1024;
const DAY = 24 * 60 * 60 * 1000;

/** The limits used where {@link ResourceOptions} leaves one out (each documented there). */
export const RESOURCE_DEFAULTS: Readonly<Required<ResourceOptions>> = Object.freeze({
  leaseTtlMs: 15_000,
  heartbeatTtlMs: 15_000,
  maxValueBytes: MiB,
  desiredHistory: 5,
  workMaxBytes: 256 * MiB,
  duplicateWindowMs: 120_000,
  logsMaxAgeMs: 7 * DAY,
  logsMaxBytes: 1024 * MiB,
  eventsMaxAgeMs: 30 * DAY,
  eventsMaxBytes: 256 * MiB,
  artifactsMaxBytes: -1,
});

/**
 * How long a JetStream that is electing a leader, or a NATS cluster still finding its peers
 * ("no suitable peers" under load), may keep us waiting, per resource.
 */
const TRANSIENT_WAIT_MS = 30_000;
/**
 * Timeout of one stream request. A clustered NATS never answers a create that lost a race with
 * another node's create of other settings; the retry after this timeout then updates.
 */
const REQUEST_TIMEOUT_MS = 2_000;

type Config = Partial<StreamConfig> & { name: string };

/** One bucket or stream as {@link ensureResources} wants it. */
export interface ResourceSpec {
  kind: ResourceResult["kind"];
  /** The bucket's or stream's name (as in ClusterNames). */
  name: string;
  /** The JetStream stream configuration behind it. */
  config: Config;
}

/**
 * Creates every bucket and stream of the connection's prisn cluster, or brings an existing one to
 * these settings (limits, replicas). Safe to run twice and from several nodes at once. Throws a
 * one-line PrisnError when NATS cannot hold them (CONFLICT: exists with settings NATS cannot
 * change; UNAVAILABLE: not enough JetStream resources, or JetStream does not answer).
 */
export async function ensureResources(
  conn: ClusterConnection,
  options: ResourceOptions = {},
): Promise<ResourceResult[]> {
  const resources = resourceConfigs(conn.names, conn.replicas, options);
  const jsm = await jetstreamManager(conn.nc, { checkAPI: false, timeout: REQUEST_TIMEOUT_MS });
  const settled = await Promise.allSettled(resources.map((r) => ensure(jsm, r)));
  const failed = settled.find((s) => s.status === "rejected");
  if (failed) throw failed.reason;
  // A stream just created on a NATS cluster takes a moment to elect its leader; until then
  // writes to it get "no responders". Wait for every leader, so the first writes do not fail.
  if (conn.replicas > 1) await Promise.all(resources.map((r) => waitForLeader(jsm, r)));
  return settled.map((s, i) => ({
    kind: resources[i].kind,
    name: resources[i].name,
    stream: resources[i].config.name,
    action: (s as PromiseFulfilledResult<ResourceResult["action"]>).value,
  }));
}

/**
 * The stream configuration of every prisn bucket and stream. KV buckets and the object store
 * are laid out as nats.js's Kvm and Objm lay them out, so `new Kvm(js).open(name)` and
 * `new Objm(js).open(name)` work on them.
 */
export function resourceConfigs(
  names: ClusterNames,
  replicas: number,
  options: ResourceOptions = {},
): ResourceSpec[] {
  const o = { ...RESOURCE_DEFAULTS, ...definedOnly(options) };
  checkLimits(o);
  const common = { storage: StorageType.File, num_replicas: replicas };
  const kv = (name: string, history: number, ttlMs = 0): ResourceSpec => ({
    kind: "kv",
    name,
    config: {
      ...common,
      name: `KV_${name}`,
      subjects: [`$KV.${name}.>`],
      retention: RetentionPolicy.Limits,
      discard: DiscardPolicy.New,
      max_msgs_per_subject: history,
      max_msg_size: o.maxValueBytes,
      max_bytes: -1,
      max_age: nanos(ttlMs),
      allow_rollup_hdrs: true,
      allow_direct: true,
      deny_delete: true,
    },
  });
  const { kv: b, objectStore, streams, subjects } = names;
  return [
    kv(b.desired, o.desiredHistory),
    kv(b.cron, 1),
    kv(b.lease, 1, o.leaseTtlMs),
    kv(b.heartbeats, 1, o.heartbeatTtlMs),
    kv(b.placement, 1),
    kv(b.runs, 1),
    kv(b.tokens, 1),
    {
      kind: "object store",
      name: objectStore.artifacts,
      config: {
        ...common,
        name: `OBJ_${objectStore.artifacts}`,
        subjects: [`$O.${objectStore.artifacts}.C.>`, `$O.${objectStore.artifacts}.M.>`],
        retention: RetentionPolicy.Limits,
        discard: DiscardPolicy.New,
        max_bytes: o.artifactsMaxBytes,
        max_age: 0,
        allow_rollup_hdrs: true,
        allow_direct: true,
      },
    },
    {
      kind: "stream",
      name: streams.work,
      config: {
        ...common,
        name: streams.work,
        subjects: [subjects.work],
        retention: RetentionPolicy.Workqueue,
        discard: DiscardPolicy.New,
        max_bytes: o.workMaxBytes,
        max_age: 0,
        duplicate_window: nanos(o.duplicateWindowMs),
      },
    },
    {
      kind: "stream",
      name: streams.logs,
      config: {
        ...common,
        name: streams.logs,
        subjects: [subjects.logs],
        retention: RetentionPolicy.Limits,
        discard: DiscardPolicy.Old,
        max_bytes: o.logsMaxBytes,
        max_age: nanos(o.logsMaxAgeMs),
      },
    },
    {
      kind: "stream",
      name: streams.events,
      config: {
        ...common,
        name: streams.events,
        subjects: [subjects.events],
        retention: RetentionPolicy.Limits,
        discard: DiscardPolicy.Old,
        max_bytes: o.eventsMaxBytes,
        max_age: nanos(o.eventsMaxAgeMs),
      },
    },
  ];
}

function definedOnly(options: ResourceOptions): ResourceOptions {
  return Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined));
}

function checkLimits(o: Required<ResourceOptions>): void {
  for (const [key, value] of Object.entries(o)) {
    const ok = Number.isInteger(value) &&
      (value > 0 || (key === "artifactsMaxBytes" && value === -1));
    if (!ok) {
      throw clusterError(
        "INVALID",
        `NATS resource limit ${key} ${value} is not valid: use a positive whole number`,
      );
    }
  }
}

/** Resolves once the stream has a leader (on a NATS cluster), retrying while it has none. */
async function waitForLeader(jsm: JetStreamManager, r: ResourceSpec): Promise<void> {
  const deadline = Date.now() + TRANSIENT_WAIT_MS;
  while (true) {
    // Just created, another server may not know the stream yet: "not found" means "not yet".
    const info = await transientRetry(() => streamInfo(jsm, r.config.name), r);
    if (info?.cluster?.leader) return;
    if (Date.now() >= deadline) {
      throw clusterError(
        "UNAVAILABLE",
        `NATS stream ${r.config.name} (${r.kind} ${r.name}) has no leader after ${
          TRANSIENT_WAIT_MS / 1000
        } s: check that most NATS servers are up`,
      );
    }
    await new Promise((res) => setTimeout(res, 100));
  }
}

/** Settings NATS never changes on an existing stream. */
const FIXED: (keyof StreamConfig)[] = ["retention", "storage"];

/** Creates or updates one stream; retried when another node got there first. */
async function ensure(jsm: JetStreamManager, r: ResourceSpec): Promise<ResourceResult["action"]> {
  for (let attempt = 0;; attempt++) {
    const current = (await transientRetry(() => streamInfo(jsm, r.config.name), r))?.config;
    if (!current) {
      try {
        await transientRetry(() => jsm.streams.add(structuredClone(r.config)), r);
        return "created";
      } catch (e) {
        // Another node created it meanwhile (NATS answers "name in use" for other settings, or,
        // racing, "subjects overlap"): look again, and update it if need be.
        const raced = jsErrorCode(e) === JS_ERR.streamNameInUse ||
          jsErrorCode(e) === JS_ERR.subjectsOverlap;
        if (raced && attempt < 3) continue;
        throw setupError(e, r);
      }
    }
    const changed = differences(current, r.config);
    if (changed.length === 0) return "unchanged";
    const fixed = changed.filter((k) => FIXED.includes(k));
    if (fixed.length > 0) {
      throw clusterError(
        "CONFLICT",
        `NATS stream ${r.config.name} (${r.kind} ${r.name}) exists with another ${
          fixed.join(" and ")
        } (${
          fixed.map((k) => `${current[k]}, prisn needs ${r.config[k]}`).join("; ")
        }), which NATS cannot change: remove it (nats stream rm ${r.config.name}) if its data may go, or use another --cluster name`,
      );
    }
    const { name: _, ...update } = r.config;
    try {
      await transientRetry(() => jsm.streams.update(r.config.name, structuredClone(update)), r);
      return "updated";
    } catch (e) {
      throw setupError(e, r, changed);
    }
  }
}

/** A stream's info, or undefined when it does not exist (or a server does not know it yet). */
async function streamInfo(jsm: JetStreamManager, name: string): Promise<StreamInfo | undefined> {
  try {
    return await jsm.streams.info(name);
  } catch (e) {
    if (jsErrorCode(e) === JS_ERR.streamNotFound) return undefined;
    throw e;
  }
}

/** The settings of `want` that `have` holds otherwise (subjects compared as sets). */
function differences(have: StreamConfig, want: Config): (keyof StreamConfig)[] {
  const keys = Object.keys(want).filter((k) => k !== "name") as (keyof StreamConfig)[];
  return keys.filter((k) => {
    const a = have[k];
    const b = want[k];
    if (Array.isArray(a) || Array.isArray(b)) {
      const sa = [...(a as string[] ?? [])].sort();
      const sb = [...(b as string[] ?? [])].sort();
      return sa.length !== sb.length || sa.some((v, i) => v !== sb[i]);
    }
    return (a ?? false) !== (b ?? false);
  });
}

/**
 * Runs `fn` again while JetStream answers "try later": timeouts, leader elections, and "no
 * suitable peers", which a NATS cluster that just started says until it knows all its servers.
 */
async function transientRetry<T>(fn: () => Promise<T>, r: ResourceSpec): Promise<T> {
  const deadline = Date.now() + TRANSIENT_WAIT_MS;
  while (true) {
    try {
      return await fn();
    } catch (e) {
      if (jsErrorCode(e) === JS_ERR.noSuitablePeers) {
        if (Date.now() < deadline) {
          await new Promise((res) => setTimeout(res, 250));
          continue;
        }
        throw e;
      }
      if (!isTransient(e)) throw e;
      if (Date.now() >= deadline) {
        throw clusterError(
          "UNAVAILABLE",
          `NATS JetStream did not answer for ${r.kind} ${r.name} within ${
            TRANSIENT_WAIT_MS / 1000
          } s (${natsReason(e)}): check that most NATS servers are up`,
          e,
        );
      }
      await new Promise((res) => setTimeout(res, 250));
    }
  }
}

function setupError(e: unknown, r: ResourceSpec, changed: string[] = []) {
  if (e instanceof Error && e.name === "PrisnError") return e;
  const what = `${r.kind} ${r.name} (NATS stream ${r.config.name})`;
  const replicas = r.config.num_replicas ?? 1;
  switch (jsErrorCode(e)) {
    case JS_ERR.replicasNotSupported:
      return clusterError(
        "INVALID",
        `cannot create ${what} with ${replicas} replicas: this NATS is not clustered; use --nats-replicas 1`,
        e,
      );
    case JS_ERR.subjectsOverlap:
      return clusterError(
        "CONFLICT",
        `cannot create ${what}: its subjects (${
          r.config.subjects?.join(", ")
        }) overlap those of another NATS stream; remove that stream or use another --cluster name`,
        e,
      );
    case JS_ERR.noSuitablePeers:
      return clusterError(
        "UNAVAILABLE",
        `cannot place ${what} on ${replicas} NATS servers (no suitable peers): ${replicas} replicas need at least ${replicas} JetStream servers up; lower --nats-replicas or start more`,
        e,
      );
    case JS_ERR.insufficientResources:
    case JS_ERR.storageResourcesExceeded:
      return clusterError(
        "UNAVAILABLE",
        `NATS has not enough JetStream resources for ${what} (${replicas} replicas, max bytes ${r.config.max_bytes}): lower prisn's limits or --nats-replicas, or give JetStream more storage or servers`,
        e,
      );
  }
  const verb = changed.length > 0 ? `update ${what} (${changed.join(", ")})` : `create ${what}`;
  return clusterError("UNAVAILABLE", `cannot ${verb}: ${natsReason(e)}`, e);
}
