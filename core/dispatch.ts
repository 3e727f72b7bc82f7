import { createHash } from "node:crypto";
import type { RunTicket } from "./types.ts";

/**
 * Coordination, as the agent sees it: who decides cluster-wide things, where run tickets go and
 * how many of a service's replicas run here. The local implementation (one node: always leader,
 * tickets in SQLite, every replica here) is runtime/local_dispatch.ts; a cluster one puts tickets
 * on a work queue and places replicas across nodes.
 */
export interface Dispatcher {
  /** Whether this node fires cron ticks (and, in a cluster, places replicas). */
  isLeader(): boolean;
  /**
   * Records the ticket's run as pending and queues it for a consumer; false when a run with its
   * id exists already (the same cron tick twice): nothing is queued then. With `after`, the ticket
   * goes out only once that settles successfully (a cron tick advanced in shared state first);
   * a store that writes both in one transaction may record it at once.
   */
  submit(ticket: RunTicket, options?: SubmitOptions): Promise<boolean>;
  /**
   * Hands queued tickets to `handler` as they become due (`notBefore`), tickets left pending by
   * an earlier agent first. A ticket is done once its run left "pending"; one the handler could
   * not take is delivered again at the next start. Returns a function that stops consuming.
   */
  consume(handler: (ticket: RunTicket) => Promise<void>): () => void;
  /**
   * Tells of tickets this node took but could not acknowledge for longer than the queue waits
   * (another node may hold them now): their runs must not start, or stop, here.
   */
  onTicketLost?(listener: (ticketId: string) => void): () => void;
  /** Tickets submitted and not yet handed to the handler (waiting for their time). */
  waiting(deployment: string): number;
  /** How many of a deployment's `desired` replicas this node runs. */
  replicasHere(deployment: string, desired: number): number;
  /** Tells when `replicasHere` may answer differently (nodes came or went). */
  onPlacementChange?(listener: () => void): () => void;
  /**
   * Whether this node may name a replica of the deployment `NAME-index` (in a cluster, names are
   * dealt out so that two nodes never pick the same one). @default every name
   */
  ownsReplica?(deployment: string, index: number, desired: number): boolean;
}

export interface SubmitOptions {
  /** Publish only after this settles; if it rejects, the ticket is not submitted (false). */
  after?: Promise<unknown>;
}

/** The run id of a cron tick: the same deployment and scheduled time give the same id. */
export function tickRunId(deployment: string, scheduledAt: number): string {
  const hash = createHash("sha256").update(`${deployment}@${new Date(scheduledAt).toISOString()}`);
  return `run-${hash.digest("hex").slice(0, 8)}`;
}
