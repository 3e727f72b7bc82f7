import type { EventRecord, ProcessRecord, RunRecord, RunStatus, RunTicket } from "./types.ts";

/** What changes about a run as it goes: its state, times, exit and the node that runs it. */
export type RunUpdate = Partial<
  Pick<
    RunRecord,
    "status" | "startedAt" | "finishedAt" | "exitCode" | "reason" | "lastError" | "pid" | "node"
  >
>;

/** Which runs `listRuns` returns. */
export interface RunsFilter {
  deployment?: string;
  /** Only the runs of one service replica, e.g. "api-0". */
  replica?: string;
  /** Only the runs of deployments in these namespaces. */
  namespaces?: string[];
  /** @default 20 */
  limit?: number;
  statuses?: RunStatus[];
}

/**
 * Run history and events: every run from its ticket (pending) to its end, and what happened to
 * each deployment. Locally the SQLite records (core/records.ts); in a cluster each node records
 * the runs it executes and events go to a shared stream.
 */
export interface RunHistory {
  /** Records a ticket as a pending run; false when a run with its id exists already. */
  insertTicket(ticket: RunTicket, node: string, now: number): boolean;
  /**
   * Records a run that starts without a ticket (a service replica's process), as given; it never
   * counts as a pending ticket.
   */
  recordRun(run: RunRecord, now: number): void;
  /** Tickets recorded and not started yet, oldest first. */
  pendingTickets(): RunTicket[];
  updateRun(id: string, fields: RunUpdate): void;
  getRun(id: string): RunRecord | undefined;
  /** Newest first. */
  listRuns(options?: RunsFilter): RunRecord[];
  /** Keeps the newest finished runs per status; returns the ids removed. */
  pruneRuns(deployment: string, keepCompleted: number, keepFailed: number): string[];
  runCounts(since: number): Record<RunStatus, number>;
  latestRuns(): Map<string, RunRecord>;
  addEvent(deployment: string, kind: string, message: string, now: number): void;
  /** Newest first. */
  listEvents(deployment: string, limit?: number): EventRecord[];
  /** Runs `fn`'s writes as one (where the store can: one SQLite transaction). */
  transaction<T>(fn: () => T): T;
}

/**
 * This node's live processes (pid and kernel start ticks), so a restarted agent can stop what a
 * killed one left: a node-local fact, never shared.
 */
export interface ProcessLedger {
  putProcess(p: ProcessRecord): void;
  deleteProcess(id: string): void;
  listProcesses(): ProcessRecord[];
}
