import type { KV, KvEntry } from "@nats-io/kv";
import type { Records } from "../core/records.ts";
import type { ProcessLedger, RunHistory, RunUpdate } from "../core/run_history.ts";
import type { ProcessRecord, RunRecord, RunStatus, RunTicket } from "../core/types.ts";

/**
 * Run history shared by every node: each node keeps its own SQLite records (reads stay local and
 * fast) and writes every run it records or changes to a KV bucket (`r.<run id>`), which every node
 * mirrors back into its records — so `get jobs` on any node lists the runs of all nodes, each
 * with the node that ran it, and a ticket submitted here and run elsewhere does not stay pending.
 *
 * A run is first written with `create` (the submitter and the node that takes the ticket both
 * record it as pending; whichever is first wins, and a late "pending" can never overwrite a later
 * state), and changed by `put` from then on: only the node executing a run changes it. Events
 * and process records stay node-local.
 */
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
    options: { log?: (line: string) => void } = {},
  ) {
    this.#kv = kv;
    this.#log = options.log ?? (() => {});
  }

  /** Starts mirroring the bucket into the local records (history first, then updates). */
  async start(): Promise<void> {
    const iter = await this.#kv.watch({ key: "r.>" });
    this.#stop.signal.addEventListener("abort", () => iter.stop(), { once: true });
    this.#watching = (async () => {
      for await (const e of iter) this.#apply(e);
    })().catch((e) => this.#log(`runs mirror: ${(e as Error).message}`));
  }

  async close(): Promise<void> {
    this.#stop.abort();
    await this.#watching;
  }

  insertTicket(ticket: RunTicket, node: string, now: number): boolean {
    const inserted = this.local.insertTicket(ticket, node, now);
    if (inserted) this.#publish(ticket.id, "create");
    return inserted;
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
  listRuns(
    options?: { deployment?: string; limit?: number; statuses?: RunStatus[] },
  ): RunRecord[] {
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
