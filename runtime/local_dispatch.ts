import type { Dispatcher, SubmitOptions } from "../core/dispatch.ts";
import type { RunHistory } from "../core/run_history.ts";
import type { RunTicket } from "../core/types.ts";

/**
 * One node's dispatcher: always the leader, every replica here, tickets recorded in SQLite as
 * pending runs. A ticket whose time has not come waits on a timer; the record is what survives a
 * restart, and `consume()` hands every pending ticket an earlier agent left to the new handler.
 */
export class LocalDispatcher implements Dispatcher {
  #handler?: (ticket: RunTicket) => Promise<void>;
  #timers = new Map<string, { deployment: string; timer: ReturnType<typeof setTimeout> }>();
  #delivered = new Set<string>();

  constructor(
    readonly records: RunHistory,
    readonly node: string,
    readonly now: () => number = Date.now,
  ) {}

  isLeader(): boolean {
    return true;
  }

  replicasHere(_deployment: string, desired: number): number {
    return desired;
  }

  /** Records at once (`after` is written in the same SQLite transaction by the caller). */
  submit(ticket: RunTicket, _options?: SubmitOptions): Promise<boolean> {
    if (!this.records.insertTicket(ticket, this.node, this.now())) return Promise.resolve(false);
    this.#queue(ticket);
    return Promise.resolve(true);
  }

  consume(handler: (ticket: RunTicket) => Promise<void>): () => void {
    this.#handler = handler;
    for (const ticket of this.records.pendingTickets()) this.#queue(ticket);
    return () => {
      this.#handler = undefined;
      for (const { timer } of this.#timers.values()) clearTimeout(timer);
      this.#timers.clear();
    };
  }

  waiting(deployment: string): number {
    let n = 0;
    for (const t of this.#timers.values()) if (t.deployment === deployment) n++;
    return n;
  }

  #queue(ticket: RunTicket): void {
    if (!this.#handler || this.#delivered.has(ticket.id) || this.#timers.has(ticket.id)) return;
    const wait = Math.max(0, (ticket.notBefore ?? 0) - this.now());
    const timer = setTimeout(() => {
      this.#timers.delete(ticket.id);
      const handler = this.#handler;
      // Recorded in a transaction that did not commit (a full disk): it never was a ticket.
      if (!handler || !this.records.getRun(ticket.id)) return;
      this.#delivered.add(ticket.id);
      handler(ticket).finally(() => this.#delivered.delete(ticket.id));
    }, wait);
    this.#timers.set(ticket.id, { deployment: ticket.deployment, timer });
  }
}
