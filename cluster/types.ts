/**
 * Types of the NATS side of prisn: how to reach the NATS server, the names of everything prisn
 * keeps there, the limits it creates them with, and an open connection.
 *
 * @module
 */

import type { NatsConnection } from "@nats-io/transport-node";
import type { JetStreamClient, JetStreamManager } from "@nats-io/jetstream";

/** How prisn authenticates to NATS: a token, a user and password, or a `.creds` file (JWT + nkey). */
export type ClusterAuth =
  | { token: string }
  | { user: string; pass: string }
  | {
    /** Path of a `.creds` file; read again at every reconnect, so a rotated file is picked up. */
    credsFile: string;
  };

/** TLS to NATS; setting any of these makes TLS required. */
export interface ClusterTls {
  /** PEM file of the CA that signed the server's certificate. @default the system's CAs */
  ca?: string;
  /** PEM file of the client certificate (with `key`), for servers that verify clients. */
  cert?: string;
  /** PEM file of the client certificate's private key. */
  key?: string;
}

/** Where the NATS server is and how prisn uses it (`prisn agent run --nats …`). */
export interface ClusterOptions {
  /** NATS server URLs (`nats://host:4222`, `tls://host:4222` or `host:4222`); at least one. */
  servers: string[];
  /**
   * The prisn cluster's name: it prefixes every bucket, stream and subject, so several prisn
   * clusters can share one NATS account. 1-32 lowercase letters, digits or '-'.
   * @default "prisn"
   */
  cluster?: string;
  auth?: ClusterAuth;
  tls?: ClusterTls;
  /**
   * Replicas of every stream and bucket prisn creates (`--nats-replicas`); 3 on a clustered NATS
   * keeps prisn working when one NATS server is lost. 1-5.
   * @default 1
   */
  replicas?: number;
  /**
   * Proceed (with a warning) on a clustered NATS older than 2.9.21, whose compare-and-set is
   * unsafe (nats-server #4320) (`--nats-allow-unsafe-cas`).
   * @default false
   */
  allowUnsafeCas?: boolean;
  /**
   * How long one attempt to reach one server may take (TCP + TLS + handshake). The first
   * connect tries each server once; after that the client reconnects forever.
   * @default 5000
   */
  connectTimeoutMs?: number;
  /**
   * How long to wait for JetStream to answer at start (a NATS cluster that just started has no
   * JetStream leader for a few seconds).
   * @default 10000
   */
  jetStreamWaitMs?: number;
  /** The client's name in the server's monitoring, e.g. the prisn node's name. @default "prisn" */
  name?: string;
}

/**
 * Every bucket, stream and subject name prisn uses in NATS, all derived from the cluster name
 * (see {@link clusterNames}).
 */
export interface ClusterNames {
  /** The cluster name every other name starts with. */
  readonly cluster: string;
  /** KV buckets (each is a stream named `KV_<bucket>`). */
  readonly kv: {
    /** Desired state, the source of truth: deployments and their versions. */
    readonly desired: string;
    /** Cron bookkeeping: each cronjob's last handled tick, advanced before its ticket is sent. */
    readonly cron: string;
    /** The leader lease: one key taken with `create`; the bucket's max age is the lease TTL. */
    readonly lease: string;
    /** One key per node (address, capacity, load, what runs); the bucket's max age is the TTL. */
    readonly heartbeats: string;
    /** Replica placement written by the leader, stamped with its epoch. */
    readonly placement: string;
    /** Run records of every node (status, node, attempt, exit), so `get jobs` works anywhere. */
    readonly runs: string;
    /** The TCP API's tokens (hashes only), one key every node follows: a token opens every node. */
    readonly tokens: string;
  };
  /** Object-store buckets (each is a stream named `OBJ_<bucket>`). */
  readonly objectStore: {
    /** Version artifacts: the deterministic tar.gz of each version, keyed by version. */
    readonly artifacts: string;
  };
  /** Plain streams. */
  readonly streams: {
    /** Work queue of run tickets (retention workqueue): each ticket is taken by one node. */
    readonly work: string;
    /** Log lines of every replica and run, on every node (limits: max age, max bytes). */
    readonly logs: string;
    /** Deployment events of every node (limits: max age, max bytes). */
    readonly events: string;
  };
  /** The subjects each stream holds (wildcards, for stream configs and consumer filters). */
  readonly subjects: {
    /** `<cluster>.work.>`: tickets, one subject per deployment ({@link ClusterNames.workSubject}). */
    readonly work: string;
    /** `<cluster>.logs.>`: one subject per deployment and log stream ({@link ClusterNames.logSubject}). */
    readonly logs: string;
    /** `<cluster>.events.>`: one subject per deployment ({@link ClusterNames.eventSubject}). */
    readonly events: string;
  };
  /** Where a deployment's run tickets are published: `<cluster>.work.<deployment>`. */
  workSubject(deployment: string): string;
  /**
   * Where one log stream's lines are published: `<cluster>.logs.<deployment>.<stream>`, the stream
   * being a replica ("api-0") or a run id.
   */
  logSubject(deployment: string, stream: string): string;
  /** Every log stream of a deployment, for consumers: `<cluster>.logs.<deployment>.>`. */
  logFilter(deployment: string): string;
  /** Where a deployment's events are published: `<cluster>.events.<deployment>`. */
  eventSubject(deployment: string): string;
}

/** Limits of the buckets and streams {@link ensureResources} creates. */
export interface ResourceOptions {
  /**
   * TTL of the leader lease: the lease bucket's max age. Below ~15 s a lease would flap while
   * NATS elects a new stream leader (4-9 s, DESIGN.md).
   * @default 15000
   */
  leaseTtlMs?: number;
  /** TTL of a node's heartbeat: the heartbeats bucket's max age. @default 15000 */
  heartbeatTtlMs?: number;
  /** Largest value of any KV bucket (a KV value is also capped by the server's max_payload). @default 1048576 */
  maxValueBytes?: number;
  /** Revisions kept per key of the desired-state bucket. @default 5 */
  desiredHistory?: number;
  /**
   * Size of the run-ticket work queue; when full, submitting fails rather than dropping tickets
   * (discard new). Tickets never expire: only an ack removes one.
   * @default 268435456 (256 MiB)
   */
  workMaxBytes?: number;
  /** Window in which a ticket's `Nats-Msg-Id` (e.g. `NAME@scheduled-time`) is deduplicated. @default 120000 */
  duplicateWindowMs?: number;
  /** How long log lines are kept. @default 604800000 (7 days) */
  logsMaxAgeMs?: number;
  /** Size of the log stream; the oldest lines go first. @default 1073741824 (1 GiB) */
  logsMaxBytes?: number;
  /** How long events are kept. @default 2592000000 (30 days) */
  eventsMaxAgeMs?: number;
  /** Size of the event stream; the oldest events go first. @default 268435456 (256 MiB) */
  eventsMaxBytes?: number;
  /**
   * Size of the artifact store; when full, a deploy fails rather than losing an artifact.
   * -1 is unlimited (prisn removes the artifacts of versions it prunes).
   * @default -1
   */
  artifactsMaxBytes?: number;
}

/** What {@link ensureResources} did to one bucket or stream. */
export interface ResourceResult {
  kind: "kv" | "object store" | "stream";
  /** The bucket's or stream's name (as in {@link ClusterNames}). */
  name: string;
  /** The JetStream stream behind it (`KV_…`, `OBJ_…`, or the name itself). */
  stream: string;
  action: "created" | "updated" | "unchanged";
}

/** An open, checked connection to the NATS server of a prisn cluster. */
export interface ClusterConnection {
  readonly nc: NatsConnection;
  readonly js: JetStreamClient;
  readonly jsm: JetStreamManager;
  readonly names: ClusterNames;
  /** Version of the NATS server connected to first, e.g. "2.10.27". */
  readonly serverVersion: string;
  /** Whether that server is part of a NATS cluster (routes to other servers). */
  readonly clustered: boolean;
  /** Replicas of the streams and buckets prisn creates. */
  readonly replicas: number;
  /** Things the operator must hear about (print each at start), e.g. unsafe compare-and-set. */
  readonly warnings: readonly string[];
  /** Drains the connection (pending messages are flushed) and closes it; idempotent. */
  close(): Promise<void>;
}
