import { DeliverPolicy, type JetStreamClient } from "@nats-io/jetstream";
import type { KV, KvEntry } from "@nats-io/kv";
import { followBucket } from "./_follow.ts";
import type { NatsConnection } from "@nats-io/transport-node";
import type { Records } from "../core/records.ts";
import type { ProcessLedger, RunHistory, RunsFilter, RunUpdate } from "../core/run_history.ts";
import type { ProcessRecord, RunRecord, RunStatus, RunTicket } from "../core/types.ts";

/**
 * Run history shared by every node: each node keeps its own SQLite records (reads stay local and
 * fast) and writes every run it records or changes to a KV bucket (`r.<run id>`), which every node
 * mirrors back into its records — so `get jobs` on any node lists the runs of all nodes, each
 * with the node that ran it, and a ticket submitted here and run elsewhere does not stay pending.
 *
 * A run is first written with `create` (the submitter and the node that takes the ticket both
 * record it as pending; whichever is first wins, and a late "pending" can never overwrite a later
 * state), and changed by `put` from then on: only the node executing a run changes it.
 *
 * Events go to the cluster's events stream too (with `events`), and every node adds the other
 * nodes' events to its own records, so `get NAME` shows them all. Process records stay local.
 */
/** Where a node keeps how far it read the events stream. */
const EVENTS_SEQ = "events-seq";

/** The events stream, its subjects, and the connection to publish and read on. */
export interface ClusterEvents {
  nc: NatsConnection;
  js: JetStreamClient;
  stream: string;
  subject: (deployment: string) => string;
}

/** One event on the cluster's events stream. */
interface EventMessage {
  node: string;
  deployment: string;
  kind: string;
  message: string;
  at: number;
}

export class ClusterRunHistory implements RunHistory, ProcessLedger {
  #kv: KV;
  #stop = new AbortController();
  #watching?: Promise<void>;
  #log: (line: string) => void;

  constructor(
    readonly local: Records,
    kv: KV,
    /** This node's name: a run it starts is recorded as run here. */
    readonly node: string,
    options: {
      log?: (line: string) => void;
      events?: ClusterEvents;
    } = {},
  ) {
    this.#kv = kv;
    this.#log = options.log ?? (() => {});
    this.#events = options.events;
  }

  #events?: ClusterEvents;

  /** Starts mirroring the bucket into the local records (history first, then updates). */
  async start(): Promise<void> {
    const { done } = await followBucket(this.#kv, "r.>", (e) => this.#apply(e), {
      signal: this.#stop.signal,
      log: (line) => this.#log(`runs mirror: ${line}`),
    });
    this.#watching = done;
    if (this.#events) this.#eventsMirror = this.#mirrorEvents(this.#events);
  }

  async close(): Promise<void> {
    this.#stop.abort();
    await this.#watching;
    await this.#eventsMirror;
  }

  #eventsMirror?: Promise<void>;

  /**
   * Adds the other nodes' events to the local records, from the stream position this node
   * reached last (kept in its records), or from now on a node that never read it.
   */
  async #mirrorEvents(events: ClusterEvents): Promise<void> {
    const signal = this.#stop.signal;
    // Where this node began, when it never read the stream: events from then on.
    let start = Number(this.local.getMirrorState(EVENTS_SEQ) ?? 0);
    while (!signal.aborted) {
      try {
        const consumer = await events.js.consumers.get(
          events.stream,
          start > 0
            ? { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: start + 1 }
            : { deliver_policy: DeliverPolicy.New },
        );
        const messages = await consumer.consume();
        const stop = () => messages.stop();
        signal.addEventListener("abort", stop, { once: true });
        if (signal.aborted) messages.stop();
        try {
          for await (const m of messages) {
            start = m.seq;
            try {
              const e = m.json<EventMessage>();
              if (e.node !== this.node) {
                this.local.addEvent(e.deployment, e.kind, `${e.message} (on ${e.node})`, e.at);
              }
              this.local.setMirrorState(EVENTS_SEQ, String(m.seq));
            } catch (err) {
              this.#log(`events mirror: ${(err as Error).message}`);
            }
          }
        } finally {
          signal.removeEventListener("abort", stop);
        }
      } catch (e) {
        if (!signal.aborted) this.#log(`events mirror: ${(e as Error).message}`);
      }
      // Ended (its server went away): again from where it got to.
      if (!signal.aborted) await new Promise((r) => setTimeout(r, 500));
    }
  }

  insertTicket(ticket: RunTicket, node: string, now: number): boolean {
    const inserted = this.local.insertTicket(ticket, node, now);
    if (inserted) this.#publish(ticket.id, "create");
    return inserted;
  }

  recordRun(run: RunRecord, now: number): void {
    this.local.recordRun(run, now);
    this.#publish(run.id, "create");
  }

  updateRun(id: string, fields: RunUpdate): void {
    // A run this node starts is run here, whoever submitted its ticket.
    this.local.updateRun(id, fields.status === "running" ? { ...fields, node: this.node } : fields);
    this.#publish(id, "put");
  }

  pruneRuns(deployment: string, keepCompleted: number, keepFailed: number): string[] {
    const removed = this.local.pruneRuns(deployment, keepCompleted, keepFailed);
    for (const id of removed) {
      this.#kv.delete(`r.${id}`).catch((e) => this.#log(`runs: ${(e as Error).message}`));
    }
    return removed;
  }

  pendingTickets(): RunTicket[] {
    return this.local.pendingTickets();
  }
  getRun(id: string): RunRecord | undefined {
    return this.local.getRun(id);
  }
  listRuns(options?: RunsFilter): RunRecord[] {
    return this.local.listRuns(options);
  }
  runCounts(since: number): Record<RunStatus, number> {
    return this.local.runCounts(since);
  }
  latestRuns(): Map<string, RunRecord> {
    return this.local.latestRuns();
  }
  addEvent(deployment: string, kind: string, message: string, now: number): void {
    this.local.addEvent(deployment, kind, message, now);
    const events = this.#events;
    if (!events || events.nc.isClosed() || events.nc.isDraining()) return;
    const e: EventMessage = { node: this.node, deployment, kind, message, at: now };
    try {
      events.nc.publish(events.subject(deployment), JSON.stringify(e));
    } catch { /* closed meanwhile: the local record has it */ }
  }
  listEvents(deployment: string, limit?: number) {
    return this.local.listEvents(deployment, limit);
  }
  transaction<T>(fn: () => T): T {
    return this.local.transaction(fn);
  }
  putProcess(p: ProcessRecord): void {
    this.local.putProcess(p);
  }
  deleteProcess(id: string): void {
    this.local.deleteProcess(id);
  }
  listProcesses(): ProcessRecord[] {
    return this.local.listProcesses();
  }

  #publish(id: string, how: "create" | "put"): void {
    const run = this.local.getRun(id);
    if (!run) return;
    const value = JSON.stringify(run);
    const write = how === "create"
      ? this.#kv.create(`r.${id}`, value)
      : this.#kv.put(`r.${id}`, value);
    write.catch((e) => {
      // A create that lost: the run is known already (another node recorded it first).
      if (how === "put") this.#log(`runs: ${(e as Error).message}`);
    });
  }

  /** Brings one run of the bucket into the local records (or removes it). */
  #apply(e: KvEntry): void {
    try {
      if (e.operation !== "PUT") this.local.deleteRun(e.key.slice(2));
      else this.local.putRun(e.json<RunRecord>(), e.created.getTime());
    } catch (err) {
      this.#log(`runs mirror: ${(err as Error).message}`);
    }
  }
}
