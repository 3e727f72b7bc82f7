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
}

/** Who wrote a log line: the process (its stdout or stderr) or prisn itself. */
export type LogSource = "out" | "err" | "prisn";

/** Where one replica's or run's output goes, line by line, each line timestamped. */
export interface LogSink {
  /** Raw bytes from the process's stdout or stderr; partial lines wait for their newline. */
  feed(chunk: Uint8Array, source?: "out" | "err"): void;
  /** Whole lines (without newline), stamped now; prisn's own notes use this. */
  writeLines(lines: string[], source?: LogSource): void;
  /** Flushes a held partial line and closes. Safe to call twice. */
  close(): void;
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
  tail(deployment: string, n: number, streams?: Set<string>): Promise<string[]>;
  /** New lines as they come, until `signal` aborts. */
  follow(
    deployment: string,
    onLines: (lines: string[]) => void,
    options: { signal: AbortSignal; streams?: Set<string> },
  ): Promise<void>;
  /** Removes some streams (pruned runs), or every log of the deployment. */
  remove(deployment: string, streams?: Set<string>): Promise<void>;
  /** Drops what is older than `maxAgeDays`; returns how many day folders went. */
  prune(maxAgeDays: number): Promise<number>;
}

/**
 * Log lines start with an ISO timestamp, so string order is time order; ties keep their given
 * order (one stream's lines stay as written).
 */
export function sortByStamp(lines: string[]): string[] {
  return lines.map((l, i) => ({ l, i })).sort((a, b) => {
    const ka = a.l.slice(0, 24);
    const kb = b.l.slice(0, 24);
    return ka < kb ? -1 : ka > kb ? 1 : a.i - b.i;
  }).map((x) => x.l);
}
