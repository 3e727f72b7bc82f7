/**
 * The logs of a cluster: every line a replica or run writes goes to this node's files (as on one
 * node) and, batched as written, to the cluster's log stream (`<cluster>.logs.<deployment>.
 * <stream>`, a limits stream: max age, max bytes), so `prisn logs NAME [-f]` on any node reads
 * the lines of every node, merged by time. While NATS cannot be reached, reads fall back to this
 * node's own files.
 *
 * @module
 */

import { withTimeout as bounded } from "./_timeout.ts";
import { DeliverPolicy, type JetStreamClient, type JetStreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import {
  inWindow,
  type LogSink,
  type LogStore,
  type LogWriterOptions,
  sortByStamp,
  tagLine,
  type TailOptions,
} from "../core/log_store.ts";
import type { ClusterNames } from "./types.ts";

/** Largest payload of one published batch of lines (NATS' default max_payload is 1 MiB). */
const MAX_BATCH_BYTES = 256 * 1024;
/** The first window `tail` reads back; doubled (×4) until it holds enough lines. */
const FIRST_WINDOW_MS = 30_000;
/** How long one read of the stream may wait for NATS before falling back to local files. */
const READ_TIMEOUT_MS = 5_000;
const withTimeout = <T>(p: Promise<T>) => bounded(p, READ_TIMEOUT_MS);

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export interface ClusterLogsOptions {
  nats: { nc: NatsConnection; js: JetStreamClient; jsm: JetStreamManager };
  names: ClusterNames;
  /** This node's own files: written first, read when NATS cannot be. */
  local: LogStore;
  /** Where read failures are told (they fall back to local files). @default ignore */
  log?: (line: string) => void;
  /** The first window a tail reads back (for tests). @default FIRST_WINDOW_MS */
  firstWindowMs?: number;
}

/** A LogStore whose writers publish to the cluster's log stream and whose reads come from it. */
export class ClusterLogs implements LogStore {
  readonly #o: ClusterLogsOptions;

  constructor(options: ClusterLogsOptions) {
    this.#o = options;
  }

  writer(deployment: string, stream: string, options: LogWriterOptions = {}): LogSink {
    const subject = this.#o.names.logSubject(deployment, stream);
    const previous = options.onWritten;
    return this.#o.local.writer(deployment, stream, {
      ...options,
      onWritten: (text) => {
        previous?.(text);
        this.#publish(subject, text);
      },
    });
  }

  /** Publishes written lines; a line never waits for NATS (the local file has it anyway). */
  #publish(subject: string, text: string): void {
    const { nc } = this.#o.nats;
    if (nc.isClosed() || nc.isDraining()) return;
    for (const batch of batches(text)) {
      try {
        nc.publish(subject, batch);
      } catch {
        return; // closed meanwhile
      }
    }
  }

  async has(deployment: string, stream: string): Promise<boolean> {
    if (await this.#o.local.has(deployment, stream)) return true;
    try {
      const subject = this.#o.names.logSubject(deployment, stream);
      const info = await withTimeout(
        this.#o.nats.jsm.streams.info(this.#o.names.streams.logs, { subjects_filter: subject }),
      );
      return (info.state.subjects?.[subject] ?? 0) > 0;
    } catch {
      return false;
    }
  }

  async tail(deployment: string, n: number, options: TailOptions = {}): Promise<string[]> {
    if (n <= 0) return [];
    try {
      return await this.#tail(deployment, n, options);
    } catch (e) {
      this.#o.log?.(
        `logs: reading the cluster's logs failed (${(e as Error).message}); ` +
          `showing this node's own`,
      );
      return await this.#o.local.tail(deployment, n, options);
    }
  }

  /**
   * The last `n` lines from the stream: reads back a window from now (30 s, then 4× larger) until
   * it holds `n` lines or every message of the filter, so a chatty service reads little and a
   * quiet one still shows its old lines. With `since` (one replica run), it reads from then.
   */
  async #tail(deployment: string, n: number, options: TailOptions): Promise<string[]> {
    const { names } = this.#o;
    const { streams } = options;
    const filter = streams?.size === 1
      ? names.logSubject(deployment, [...streams][0])
      : names.logFilter(deployment);
    const info = await withTimeout(
      this.#o.nats.jsm.streams.info(names.streams.logs, { subjects_filter: filter }),
    );
    const counts = info.state.subjects ?? {};
    const wanted = (subject: string) => !streams || streams.has(streamOf(subject));
    const total = Object.entries(counts).filter(([s]) => wanted(s))
      .reduce((sum, [, c]) => sum + c, 0);
    if (total === 0) return [];
    const done = (lines: { line: string; stream: string }[]) =>
      sortByStamp(lines.filter((l) => inWindow(l.line, options))).slice(-n)
        .map((l) => options.tag ? tagLine(l.stream, l.line) : l.line);
    if (options.since !== undefined) {
      return done((await this.#read(filter, options.since, wanted)).lines);
    }
    for (let window = this.#o.firstWindowMs ?? FIRST_WINDOW_MS;; window *= 4) {
      const since = Date.now() - window;
      const { lines, messages } = await this.#read(filter, since, wanted);
      const oldest = info.state.first_ts ? Date.parse(info.state.first_ts) : 0;
      if (lines.length >= n || messages >= total || since <= oldest) return done(lines);
    }
  }

  /** Every line published on `filter` since `since` (ms), with how many messages held them. */
  async #read(
    filter: string,
    since: number,
    wanted: (subject: string) => boolean,
  ): Promise<{ lines: { line: string; stream: string }[]; messages: number }> {
    const { js } = this.#o.nats;
    const consumer = await withTimeout(js.consumers.get(this.#o.names.streams.logs, {
      filter_subjects: filter,
      deliver_policy: DeliverPolicy.StartTime,
      opt_start_time: new Date(since).toISOString(),
    }));
    const lines: { line: string; stream: string }[] = [];
    let messages = 0;
    try {
      let pending = (await withTimeout(consumer.info(true))).num_pending;
      while (pending > 0) {
        const batch = await consumer.fetch({
          max_messages: Math.min(pending, 1000),
          expires: 2000,
        });
        let got = 0;
        for await (const m of batch) {
          got++;
          pending = m.info.pending;
          if (!wanted(m.subject)) continue;
          messages++;
          const stream = streamOf(m.subject);
          for (const line of splitLines(m.data)) lines.push({ line, stream });
        }
        if (got === 0) break; // the server said nothing more within `expires`
      }
    } finally {
      await consumer.delete().catch(() => false);
    }
    return { lines, messages };
  }

  async follow(
    deployment: string,
    onLines: (lines: string[]) => void,
    options: { signal: AbortSignal; streams?: Set<string>; tag?: boolean },
  ): Promise<void> {
    const { names, nats } = this.#o;
    const { streams, signal } = options;
    const filter = streams?.size === 1
      ? names.logSubject(deployment, [...streams][0])
      : names.logFilter(deployment);
    let consumer;
    try {
      consumer = await withTimeout(nats.js.consumers.get(names.streams.logs, {
        filter_subjects: filter,
        deliver_policy: DeliverPolicy.New,
      }));
    } catch (e) {
      this.#o.log?.(
        `logs: following the cluster's logs failed (${(e as Error).message}); ` +
          `following this node's own`,
      );
      return await this.#o.local.follow(deployment, onLines, options);
    }
    if (signal.aborted) return;
    const messages = await consumer.consume();
    const stop = () => messages.stop();
    signal.addEventListener("abort", stop, { once: true });
    try {
      for await (const m of messages) {
        const stream = streamOf(m.subject);
        if (streams && !streams.has(stream)) continue;
        const lines = splitLines(m.data);
        if (lines.length) onLines(options.tag ? lines.map((l) => tagLine(stream, l)) : lines);
      }
    } finally {
      signal.removeEventListener("abort", stop);
      await consumer.delete().catch(() => false);
    }
  }

  async remove(deployment: string, streams?: Set<string>): Promise<void> {
    await this.#o.local.remove(deployment, streams);
    const { names, nats } = this.#o;
    const filters = streams
      ? [...streams].map((s) => names.logSubject(deployment, s))
      : [names.logFilter(deployment)];
    for (const filter of filters) {
      await withTimeout(nats.jsm.streams.purge(names.streams.logs, { filter })).catch(() => {});
    }
  }

  /** Local files by age; the stream keeps lines by its own max age. */
  prune(maxAgeDays: number): Promise<number> {
    return this.#o.local.prune(maxAgeDays);
  }
}

/** The log stream (replica or run id) a subject `<cluster>.logs.<deployment>.<stream>` names. */
function streamOf(subject: string): string {
  return subject.slice(subject.lastIndexOf(".") + 1);
}

/** Whole lines of written text, cut into payloads of at most MAX_BATCH_BYTES (at newlines). */
function batches(text: string): Uint8Array[] {
  const bytes = encoder.encode(text);
  if (bytes.byteLength <= MAX_BATCH_BYTES) return [bytes];
  const out: Uint8Array[] = [];
  let start = 0;
  while (start < bytes.byteLength) {
    let end = Math.min(start + MAX_BATCH_BYTES, bytes.byteLength);
    if (end < bytes.byteLength) {
      const nl = bytes.lastIndexOf(0x0a, end - 1);
      if (nl >= start) end = nl + 1;
    }
    out.push(bytes.subarray(start, end));
    start = end;
  }
  return out;
}

function splitLines(data: Uint8Array): string[] {
  const lines = decoder.decode(data).split("\n");
  if (lines[lines.length - 1] === "") lines.pop();
  return lines;
}
