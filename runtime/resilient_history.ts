import { PrisnError } from "../core/errors.ts";
import type { ProcessLedger, RunHistory, RunUpdate } from "../core/run_history.ts";
import type { EventRecord, ProcessRecord, RunRecord, RunStatus, RunTicket } from "../core/types.ts";
import { type DiskHealth, isDiskFull } from "./disk_health.ts";

/** Events held while the disk is full; older ones beyond this are dropped (and counted). */
export const MAX_HELD_EVENTS = 1000;
/** How often held writes are tried again. */
export const RETRY_MS = 1000;

/**
 * The run history and process ledger as the agent's loops use them, kept going on a full disk.
 * A write that fails for want of space (an event from a probe loop, a run's or a replica's
 * record, or the run of its new start, from a restart loop) neither throws into its caller nor is lost: it is counted in
 * {@link DiskHealth}, held (a run's updates merged, a process's last put or delete, events up to
 * {@link MAX_HELD_EVENTS}), shown by the reads as if written, and written once space is back,
 * tried again every {@link RETRY_MS} ms. Only a new run's ticket cannot wait (its id must exist
 * before the run starts): it fails with a one-line UNAVAILABLE error. Other errors pass through.
 */
export class ResilientHistory implements RunHistory, ProcessLedger {
  readonly #inner: RunHistory & ProcessLedger;
  readonly #disk: DiskHealth;
  #runs = new Map<string, RunUpdate>();
  /** Runs recorded without a ticket (a replica's start) not written yet, with their time. */
  #newRuns = new Map<string, [RunRecord, number]>();
  #processes = new Map<string, ProcessRecord | null>();
  #events: Array<[string, string, string, number]> = [];
  #timer?: ReturnType<typeof setInterval>;
  #lastError: unknown;

  constructor(inner: RunHistory & ProcessLedger, disk: DiskHealth) {
    this.#inner = inner;
    this.#disk = disk;
    disk.register("records", this);
  }

  /** Writes held for a retry. */
  get held(): number {
    return this.#runs.size + this.#newRuns.size + this.#processes.size + this.#events.length;
  }

  /** Tries the held writes now, in order; true when none is left. */
  flush(): boolean {
    try {
      for (const [id, p] of this.#processes) {
        if (p) this.#inner.putProcess(p);
        else this.#inner.deleteProcess(id);
        this.#processes.delete(id);
      }
      for (const [id, [run, now]] of this.#newRuns) {
        this.#inner.recordRun(run, now);
        this.#newRuns.delete(id);
      }
      for (const [id, fields] of this.#runs) {
        this.#inner.updateRun(id, fields);
        this.#runs.delete(id);
      }
      while (this.#events.length > 0) {
        this.#inner.addEvent(...this.#events[0]);
        this.#events.shift();
      }
    } catch (e) {
      if (!isDiskFull(e)) throw e;
      this.#lastError = e;
      this.#disk.failed("records", e, 0);
      return false;
    }
    this.#disk.worked("records");
    clearInterval(this.#timer);
    this.#timer = undefined;
    return true;
  }

  /** Stops retrying (the agent stops); what is still held is lost. */
  close(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** Runs a write, first any held ones; on a full disk calls `hold` instead of throwing. */
  #write(write: () => void, hold: () => void): void {
    if (this.held > 0 && !this.flush()) {
      this.#disk.failed("records", this.#lastError);
      hold();
      return;
    }
    try {
      write();
      this.#disk.worked("records");
    } catch (e) {
      if (!isDiskFull(e)) throw e;
      this.#disk.failed("records", e);
      hold();
      this.#timer ??= setInterval(() => {
        try {
          this.flush();
        } catch { /* not the disk: the next write reports it */ }
      }, RETRY_MS);
      Deno.unrefTimer(this.#timer);
    }
  }

  insertTicket(ticket: RunTicket, node: string, now: number): boolean {
    try {
      return this.#inner.insertTicket(ticket, node, now);
    } catch (e) {
      if (!isDiskFull(e)) throw e;
      this.#disk.failed("records", e);
      throw new PrisnError(
        "UNAVAILABLE",
        `cannot record run ${ticket.id}: the disk under PRISN_HOME is full; free some space`,
        { cause: e },
      );
    }
  }

  recordRun(run: RunRecord, now: number): void {
    this.#write(() => this.#inner.recordRun(run, now), () => this.#newRuns.set(run.id, [run, now]));
  }

  updateRun(id: string, fields: RunUpdate): void {
    const held = this.#newRuns.get(id);
    if (held) { // not written yet: it will be written as it is by then
      this.#newRuns.set(id, [{ ...held[0], ...fields }, held[1]]);
      return;
    }
    this.#write(
      () => this.#inner.updateRun(id, fields),
      () => this.#runs.set(id, { ...this.#runs.get(id), ...fields }),
    );
  }

  addEvent(deployment: string, kind: string, message: string, now: number): void {
    this.#write(() => this.#inner.addEvent(deployment, kind, message, now), () => {
      this.#events.push([deployment, kind, message, now]);
      if (this.#events.length > MAX_HELD_EVENTS) this.#events.shift();
    });
  }

  putProcess(p: ProcessRecord): void {
    this.#write(() => this.#inner.putProcess(p), () => this.#processes.set(p.id, p));
  }

  deleteProcess(id: string): void {
    this.#write(() => this.#inner.deleteProcess(id), () => this.#processes.set(id, null));
  }

  pruneRuns(deployment: string, keepCompleted: number, keepFailed: number): string[] {
    try {
      return this.#inner.pruneRuns(deployment, keepCompleted, keepFailed);
    } catch (e) {
      if (!isDiskFull(e)) throw e;
      this.#disk.failed("records", e);
      return []; // pruned on a later pass
    }
  }

  transaction<T>(fn: () => T): T {
    return this.#inner.transaction(fn);
  }

  pendingTickets(): RunTicket[] {
    // A ticket whose start is held is no longer pending: it must not be started twice.
    return this.#inner.pendingTickets().filter((t) => {
      const status = this.#runs.get(t.id)?.status;
      return status === undefined || status === "pending";
    });
  }

  getRun(id: string): RunRecord | undefined {
    const run = this.#newRuns.get(id)?.[0] ?? this.#inner.getRun(id);
    return run && this.#overlay(run);
  }

  listRuns(
    options?: { deployment?: string; limit?: number; statuses?: RunStatus[] },
  ): RunRecord[] {
    const runs = this.#inner.listRuns(options).map((r) => this.#overlay(r));
    return options?.statuses ? runs.filter((r) => options.statuses!.includes(r.status)) : runs;
  }

  runCounts(since: number): Record<RunStatus, number> {
    return this.#inner.runCounts(since);
  }

  latestRuns(): Map<string, RunRecord> {
    const latest = this.#inner.latestRuns();
    for (const [name, run] of latest) latest.set(name, this.#overlay(run));
    return latest;
  }

  listEvents(deployment: string, limit?: number): EventRecord[] {
    return this.#inner.listEvents(deployment, limit);
  }

  listProcesses(): ProcessRecord[] {
    const listed = this.#inner.listProcesses().filter((p) => !this.#processes.has(p.id));
    for (const p of this.#processes.values()) if (p) listed.push(p);
    return listed;
  }

  #overlay(run: RunRecord): RunRecord {
    const held = this.#runs.get(run.id);
    return held ? { ...run, ...held } : run;
  }
}
