/** Lines a rate limit dropped in one window. */
export interface Dropped {
  lines: number;
  bytes: number;
  /** The limit, bytes per second. */
  rate: number;
}

/** Options of a log writer. */
export interface LogWriterOptions {
  /** Secret values replaced by ******** before anything is written. */
  redact?: string[];
  /**
   * Bytes of fed output logged per second at most, counted over 10 s windows; lines over it are
   * dropped (never queued) and counted.
   * @default no limit
   */
  rateBytes?: number;
  /** Told once per window that dropped lines (the log gets a line saying so too). */
  onDropped?: (dropped: Dropped) => void;
  /** Handed every batch of lines as written (timestamped, masked, newline-ended), e.g. to ship. */
  onWritten?: (text: string) => void;
  /**
   * Told when lines could not be written (a full disk): they are dropped, never queued, so
   * output never waits; the log gets a line saying how many once writes work again.
   */
  onWriteFailed?: (error: unknown, lines: number) => void;
  /** Told after each write that worked. */
  onWriteOk?: () => void;
}

/** Who wrote a log line: the process (its stdout or stderr) or prisn itself. */
export type LogSource = "out" | "err" | "prisn";

/** Which lines `LogStore.tail` returns. */
export interface TailOptions {
  /** Only these streams (replica names, run ids). @default all of the deployment's */
  streams?: Set<string>;
  /** Only lines stamped at or after this time (ms), e.g. one replica run's start. */
  since?: number;
  /** Only lines stamped at or before this time (ms). */
  until?: number;
  /** Start each line with `[stream] `, saying which replica or run wrote it. @default false */
  tag?: boolean;
}

/** Where one replica's or run's output goes, line by line, each line timestamped. */
export interface LogSink {
  /** Raw bytes from the process's stdout or stderr; partial lines wait for their newline. */
  feed(chunk: Uint8Array, source?: "out" | "err"): void;
  /** Whole lines (without newline), stamped now; prisn's own notes use this. */
  writeLines(lines: string[], source?: LogSource): void;
  /** Flushes a held partial line and closes. Safe to call twice. */
  close(): void;
  /**
   * The last lines (up to 10, oldest first) the process wrote to stderr, secrets masked; with a
   * held partial line last. prisn's own notes are not among them. With `since` (ms), only lines
   * written since then: one start of a replica whose sink outlives its restarts.
   */
  recentErrors(since?: number): string[];
}

/**
 * The logs of every deployment: writers for replicas and runs (a stream each, named by the
 * replica or run id), and reading them back merged by time, or following them. Locally, files
 * under PRISN_HOME/logs (runtime/logs.ts); in a cluster, a stream every node can read.
 */
export interface LogStore {
  writer(deployment: string, stream: string, options?: LogWriterOptions): LogSink;
  /** Whether a stream of the deployment has any lines. */
  has(deployment: string, stream: string): Promise<boolean>;
  /** The last `n` lines of the deployment (or of some streams), merged in time order. */
  tail(deployment: string, n: number, options?: TailOptions): Promise<string[]>;
  /**
   * New lines as they come, until `signal` aborts; with `tag`, each prefixed `[stream] `. With
   * `since` (the stamp of the last line a tail showed), lines stamped after it that were written
   * before the follow began are not skipped.
   */
  follow(
    deployment: string,
    onLines: (lines: string[]) => void,
    options: { signal: AbortSignal; streams?: Set<string>; tag?: boolean; since?: string },
  ): Promise<void>;
  /** Removes some streams (pruned runs), or every log of the deployment. */
  remove(deployment: string, streams?: Set<string>): Promise<void>;
  /** Drops what is older than `maxAgeDays`; returns how many day folders went. */
  prune(maxAgeDays: number): Promise<number>;
}

/**
 * Log lines start with an ISO timestamp, so string order is time order; ties keep their given
 * order (one stream's lines stay as written). Sorts lines, or items carrying a `line`.
 */
export function sortByStamp<T extends string | { line: string }>(lines: T[]): T[] {
  const stamp = (x: T) => (typeof x === "string" ? x : x.line).slice(0, 24);
  return lines.map((l, i) => ({ l, i })).sort((a, b) => {
    const ka = stamp(a.l);
    const kb = stamp(b.l);
    return ka < kb ? -1 : ka > kb ? 1 : a.i - b.i;
  }).map((x) => x.l);
}

/** True when a line's timestamp lies in the window `since`…`until` (ms, both optional). */
export function inWindow(line: string, window: Pick<TailOptions, "since" | "until">): boolean {
  const stamp = line.slice(0, 24);
  if (window.since !== undefined && stamp < new Date(window.since).toISOString()) return false;
  if (window.until !== undefined && stamp > new Date(window.until).toISOString()) return false;
  return true;
}

/** `[api-0] <line>`: a line of a merged view, tagged with the replica or run that wrote it. */
export function tagLine(stream: string, line: string): string {
  return `[${stream}] ${line}`;
}
