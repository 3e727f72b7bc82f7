import { dirname, join } from "node:path";
import { logFile, type Paths } from "../core/paths.ts";
import { formatMemory } from "../core/quantity.ts";
import {
  type Dropped,
  inWindow,
  type LogSink,
  type LogSource,
  type LogStore,
  type LogWriterOptions,
  sortByStamp,
  tagLine,
  type TailOptions,
} from "../core/log_store.ts";

export type { Dropped };
import { delay } from "./context.ts";
import type { DiskHealth } from "./disk_health.ts";

const encoder = new TextEncoder();

/** @default 10 MiB per file before it is rotated */
export const DEFAULT_MAX_BYTES = 10 * 1024 * 1024;
/** @default 3 rotated files kept per stream and day */
export const DEFAULT_KEEP = 3;
/** The longest line kept whole; a longer one (no newline in sight) is logged in pieces. */
export const MAX_LINE_CHARS = 64 * 1024;
/** Secret values (or lines of one) shorter than this are not masked: they would mask everything. */
export const MIN_SECRET_CHARS = 3;
const MASK = "********";

/** The window a log rate limit is counted over (a burst of up to 10× the rate passes). */
export const RATE_WINDOW_MS = 10_000;

/**
 * Appends timestamped lines to logs/NAME/YYYY-MM-DD/<stream>.log. Rotates by size
 * (<stream>.log → .log.1 → .log.2 …) and moves to a new day's folder at midnight UTC.
 * Partial lines are held until their newline arrives (or the writer is closed).
 */
export class LogWriter implements LogSink {
  #file?: Deno.FsFile;
  #path = "";
  #size = 0;
  #partial: Record<"out" | "err", string> = { out: "", err: "" };
  #decoders = { out: new TextDecoder(), err: new TextDecoder() };
  /** What is masked, longest first (so a secret that starts with another is masked whole). */
  readonly #secrets: string[];

  constructor(
    readonly paths: Paths,
    readonly deployment: string,
    readonly stream: string,
    readonly options: LogWriterOptions & {
      /** @default DEFAULT_MAX_BYTES */
      maxBytes?: number;
      /** @default DEFAULT_KEEP */
      keep?: number;
      /** The clock, for tests. @default Date.now */
      now?: () => number;
    } = {},
  ) {
    // A multi-line value (a key from an --env-file) never reaches one log line whole: each of its
    // lines is masked on its own.
    const pieces = (options.redact ?? []).flatMap((s) => s.split(/\r?\n/));
    this.#secrets = [...new Set(pieces.filter((s) => s.length >= MIN_SECRET_CHARS))]
      .sort((a, b) => b.length - a.length);
  }

  #window = { start: -Infinity, used: 0, lines: 0, bytes: 0 };

  /** Lines dropped by the rate limit since this writer was made. */
  droppedLines = 0;

  /** Feeds raw bytes from a process's stdout/stderr. */
  feed(chunk: Uint8Array, source: "out" | "err" = "out"): void {
    if (this.#spent() && this.#dropRaw(chunk, source)) return;
    const text = this.#partial[source] + this.#decoders[source].decode(chunk, { stream: true });
    const split = text.split("\n");
    this.#partial[source] = split.pop() ?? "";
    const lines = split.flatMap((line) => this.#cut(line, false).pieces);
    if (this.#partial[source].length > MAX_LINE_CHARS) { // a runaway line without newline
      const { pieces, held } = this.#cut(this.#partial[source], true);
      lines.push(...pieces);
      this.#partial[source] = held;
    }
    const kept = this.options.rateBytes === undefined ? lines : this.#admit(lines);
    if (kept.length) this.#output(kept, source);
  }

  #recentErr: { at: number; text: string }[] = [];

  recentErrors(since = -Infinity): string[] {
    const kept = this.#recentErr.filter((e) => e.at >= since).map((e) => e.text);
    const partial = this.#partial.err.replace(/\r$/, "");
    return partial ? [...kept.slice(-9), this.#redact(partial)] : kept;
  }

  /** The process's own lines: logged, and the last stderr ones kept for {@link recentErrors}. */
  #output(lines: string[], source: "out" | "err"): void {
    this.writeLines(lines, source);
    if (source !== "err") return;
    const at = (this.options.now ?? Date.now)();
    for (const line of lines) {
      const text = this.#redact(line.replace(/\r$/, ""));
      if (text.trim() === "") continue;
      this.#recentErr.push({ at, text });
    }
    if (this.#recentErr.length > 10) this.#recentErr.splice(0, this.#recentErr.length - 10);
  }

  /** True while the current rate window has no room left (a flood: nothing will be kept). */
  #spent(): boolean {
    const rate = this.options.rateBytes;
    if (rate === undefined) return false;
    const w = this.#window;
    const now = (this.options.now ?? Date.now)();
    return now - w.start < RATE_WINDOW_MS && w.used >= rate * RATE_WINDOW_MS / 1000;
  }

  /**
   * The cheap path of a flood: counts the chunk's lines as dropped without decoding or splitting
   * it (a native byte search), keeping only the text after its last newline. False when the chunk
   * ends no line (then it joins the partial line as usual).
   */
  #dropRaw(chunk: Uint8Array, source: "out" | "err"): boolean {
    let at = chunk.indexOf(0x0a);
    if (at < 0) return false;
    const w = this.#window;
    let last = at;
    w.bytes += this.#partial[source].length;
    while (at >= 0) {
      w.lines++;
      last = at;
      at = chunk.indexOf(0x0a, at + 1);
    }
    w.bytes += last + 1;
    this.#decoders[source] = new TextDecoder();
    this.#partial[source] = this.#decoders[source].decode(chunk.subarray(last + 1), {
      stream: true,
    });
    return true;
  }

  /** The lines the current window still has room for; the rest are counted as dropped. */
  #admit(lines: string[]): string[] {
    const now = (this.options.now ?? Date.now)();
    const w = this.#window;
    if (now - w.start >= RATE_WINDOW_MS) {
      this.#reportDropped();
      w.start = now;
      w.used = 0;
    }
    const budget = this.options.rateBytes! * RATE_WINDOW_MS / 1000;
    const kept: string[] = [];
    for (const line of lines) {
      const size = line.length + 1; // UTF-16 units: bytes for ASCII, close enough otherwise
      if (w.used + size <= budget) {
        w.used += size;
        kept.push(line);
      } else { // over: the rest of the window is dropped, so what is logged stays in order
        w.used = budget;
        w.lines++;
        w.bytes += size;
      }
    }
    return kept;
  }

  #reportDropped(): void {
    const w = this.#window;
    if (w.lines === 0) return;
    const dropped = { lines: w.lines, bytes: w.bytes, rate: this.options.rateBytes! };
    this.droppedLines += w.lines;
    w.lines = 0;
    w.bytes = 0;
    this.writeLines([describeDropped(dropped)], "prisn");
    this.options.onDropped?.(dropped);
  }

  /**
   * Writes whole lines (without their newline), each stamped with the current time and tagged
   * by source: `STAMP text` for stdout, `STAMP [err] text`, `STAMP [prisn] text` for prisn's own
   * notes. A stdout line that itself starts with "[" is tagged `[out]`, so no app line can pass
   * for one of stderr or for one of prisn's.
   */
  writeLines(lines: string[], source: LogSource = "out"): void {
    const now = new Date();
    const stamp = now.toISOString();
    let text = "";
    let count = 0;
    for (const line of lines) {
      count++;
      const masked = this.#redact(line.replace(/\r$/, ""));
      const tag = source !== "out" ? ` [${source}]` : masked.startsWith("[") ? " [out]" : "";
      text += `${stamp}${tag} ${masked}\n`;
    }
    this.#write(encoder.encode(text), now, count);
    this.options.onWritten?.(text);
  }

  #redact(line: string): string {
    for (const secret of this.#secrets) line = line.replaceAll(secret, MASK);
    return line;
  }

  /**
   * A line in pieces of at most MAX_LINE_CHARS, masked before it is cut so no cut splits a secret.
   * With `more` (a runaway line, its end still to come) the text to hold back is returned too: as
   * long as the longest secret but one, so a secret whose start is here and whose end is still to
   * come is held and masked whole once the rest arrives.
   */
  #cut(text: string, more: boolean): { pieces: string[]; held: string } {
    if (!more && text.length <= MAX_LINE_CHARS) return { pieces: [text], held: "" };
    const masked = this.#redact(text);
    const longest = this.#secrets[0]?.length ?? 0;
    const end = more
      ? masked.length - Math.min(Math.max(0, longest - 1), masked.length)
      : masked.length;
    const pieces: string[] = [];
    for (let at = 0; at < end; at += MAX_LINE_CHARS) {
      pieces.push(masked.slice(at, Math.min(at + MAX_LINE_CHARS, end)));
    }
    if (!more && pieces.length === 0) pieces.push("");
    return { pieces, held: masked.slice(end) };
  }

  /** Flushes held partial lines and closes the file. Safe to call twice. */
  close(): void {
    for (const source of ["out", "err"] as const) {
      const rest = this.#partial[source] + this.#decoders[source].decode();
      this.#partial[source] = "";
      if (rest) {
        const kept = this.options.rateBytes === undefined ? [rest] : this.#admit([rest]);
        if (kept.length) this.#output(kept, source);
      }
    }
    if (this.options.rateBytes !== undefined) this.#reportDropped();
    this.#closeFile();
  }

  /** Lines not written since a write first failed (a full disk), told in the log once it works. */
  #lost?: { lines: number; bytes: number; since: Date; error: string };
  /** A failed write left half a line in the file (it could not be taken back). */
  #torn = false;

  /**
   * Appends to the stream's file; never throws. A failed write (a full disk) drops its lines,
   * counts them and forgets the file, so the next write opens it again: once space is back,
   * logging goes on with a line saying what was lost.
   */
  #write(bytes: Uint8Array, now: Date, lines: number): void {
    const lost = this.#lost;
    const data = lost
      ? concat([
        encoder.encode(
          `${this.#torn ? "\n" : ""}${now.toISOString()} [prisn] ` +
            `${lost.lines} line(s) (${formatMemory(lost.bytes)}) not logged from ` +
            `${lost.since.toISOString()}: ${lost.error}\n`,
        ),
        bytes,
      ])
      : bytes;
    let written = 0;
    try {
      const path = logFile(this.paths, this.deployment, this.stream, now);
      const maxBytes = this.options.maxBytes ?? DEFAULT_MAX_BYTES;
      if (path !== this.#path || !this.#file) {
        this.#closeFile();
        // Owner only: a log may hold what a replica printed of its secrets.
        Deno.mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
        this.#file = Deno.openSync(path, { append: true, create: true, mode: 0o600 });
        this.#path = path;
        this.#size = this.#file.statSync().size;
      } else if (this.#size + data.byteLength > maxBytes && this.#size > 0) {
        this.#closeFile();
        rotate(path, this.options.keep ?? DEFAULT_KEEP);
        this.#file = Deno.openSync(path, { append: true, create: true, mode: 0o600 });
        this.#path = path;
        this.#size = 0;
      }
      while (written < data.byteLength) written += this.#file.writeSync(data.subarray(written));
      this.#size += data.byteLength;
    } catch (e) {
      // Half a write is taken back (shrinking a file needs no space), so no line is half logged.
      if (written > 0) {
        try {
          this.#file!.truncateSync(this.#size);
        } catch {
          this.#torn = true; // the note that follows starts on a line of its own
        }
      }
      this.#closeFile();
      const message = ((e as Error).message ?? String(e)).split("\n")[0];
      this.#lost ??= { lines: 0, bytes: 0, since: now, error: message };
      this.#lost.lines += lines;
      this.#lost.bytes += bytes.byteLength;
      this.options.onWriteFailed?.(e, lines);
      return;
    }
    this.#lost = undefined;
    this.#torn = false;
    this.options.onWriteOk?.();
  }

  #closeFile(): void {
    try {
      this.#file?.close();
    } catch { /* closed already */ }
    this.#file = undefined;
  }
}

/** Size past which the agent's own log is rotated, and how many rotated files are kept. */
export const AGENT_LOG_LIMITS = { maxBytes: 10 * 1024 * 1024, keep: 3 };

/**
 * The background agent's own log (state/agent.log): each line appended, stamped. Past
 * `maxBytes` it is rotated (agent.log.1 … agent.log.`keep`, the oldest dropped), so a chatty
 * agent that runs for months never fills the disk. A line that cannot be written (a full disk)
 * is dropped: the agent's log never stops the agent, not even its stop.
 */
export function agentLog(
  file: string,
  limits: { maxBytes: number; keep: number } = AGENT_LOG_LIMITS,
): (line: string) => void {
  let size: number | undefined;
  return (line) => {
    const bytes = encoder.encode(`${new Date().toISOString()} ${line}\n`);
    try {
      size ??= (() => {
        try {
          return Deno.statSync(file).size;
        } catch {
          return 0;
        }
      })();
      if (size > 0 && size + bytes.length > limits.maxBytes) {
        rotate(file, limits.keep);
        size = 0;
      }
      Deno.writeFileSync(file, bytes, { append: true });
      size += bytes.length;
    } catch {
      size = undefined; // dropped: nowhere better to say so; the size is read again next time
    }
  };
}

/** "12 line(s) (1.2Mi) dropped: output over the log rate limit of 1Mi/s". */
export function describeDropped(d: Dropped): string {
  return `${d.lines} line(s) (${formatMemory(d.bytes)}) dropped: output over the log rate limit ` +
    `of ${formatMemory(d.rate)}/s`;
}

function rotate(path: string, keep: number): void {
  try {
    Deno.removeSync(`${path}.${keep}`);
  } catch { /* not there */ }
  for (let i = keep - 1; i >= 1; i--) {
    try {
      Deno.renameSync(`${path}.${i}`, `${path}.${i + 1}`);
    } catch { /* not there */ }
  }
  Deno.renameSync(path, `${path}.1`);
}

/**
 * The log files of a deployment, oldest first: by day, and within a stream rotated files before
 * the live one. `streams` narrows to some replicas/runs.
 */
export async function listLogFiles(
  paths: Paths,
  deployment: string,
  streams?: Set<string>,
): Promise<string[]> {
  const root = join(paths.logs, deployment);
  const days = (await readDirNames(root)).filter((d) => /^\d{4}-\d{2}-\d{2}$/.test(d)).sort();
  const files: string[] = [];
  for (const day of days) {
    const names = await readDirNames(join(root, day));
    const byStream = new Map<string, { name: string; rank: number }[]>();
    for (const name of names) {
      const m = /^(.+)\.log(?:\.(\d+))?$/.exec(name);
      if (!m || (streams && !streams.has(m[1]))) continue;
      const list = byStream.get(m[1]) ?? [];
      list.push({ name, rank: m[2] ? Number(m[2]) : 0 });
      byStream.set(m[1], list);
    }
    for (const stream of [...byStream.keys()].sort()) {
      for (const f of byStream.get(stream)!.sort((a, b) => b.rank - a.rank)) {
        files.push(join(root, day, f.name));
      }
    }
  }
  return files;
}

async function readDirNames(dir: string): Promise<string[]> {
  const names: string[] = [];
  try {
    for await (const e of Deno.readDir(dir)) names.push(e.name);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  return names;
}

/** Up to `length` bytes of `file` from `start` (fewer where the file ends first). */
async function readRange(file: Deno.FsFile, start: number, length: number): Promise<Uint8Array> {
  const buf = new Uint8Array(length);
  await file.seek(start, Deno.SeekMode.Start);
  let read = 0;
  while (read < length) {
    const r = await file.read(buf.subarray(read));
    if (r === null) break;
    read += r;
  }
  return buf.subarray(0, read);
}

/** The last `n` lines of a file, read backwards in blocks (the file may be large). */
export async function tailLines(path: string, n: number): Promise<string[]> {
  if (n <= 0) return [];
  using file = await Deno.open(path);
  const size = (await file.stat()).size;
  const block = 64 * 1024;
  const chunks: Uint8Array[] = [];
  let newlines = 0;
  let pos = size;
  while (pos > 0 && newlines <= n) {
    const start = Math.max(0, pos - block);
    const chunk = await readRange(file, start, pos - start);
    chunks.unshift(chunk);
    for (const b of chunk) if (b === 0x0a) newlines++;
    pos = start;
  }
  // Decoded once, whole: a block boundary may fall inside a multi-byte character.
  const lines = new TextDecoder().decode(concat(chunks)).split("\n");
  if (lines[lines.length - 1] === "") lines.pop();
  return lines.slice(-n);
}

function concat(chunks: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((sum, c) => sum + c.byteLength, 0));
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.byteLength;
  }
  return out;
}

/**
 * Last `n` lines across several files, merged in timestamp order; with `since`/`until` only
 * lines stamped in that window (the files are then read whole), and with `tag` each line starts
 * with `[stream] ` (as `kubectl logs --prefix` does).
 */
export async function tailMerged(
  files: string[],
  n: number,
  options: Pick<TailOptions, "since" | "until" | "tag"> = {},
): Promise<string[]> {
  const windowed = options.since !== undefined || options.until !== undefined;
  const all: { line: string; stream: string }[] = [];
  for (const f of files) {
    for (const line of await tailLines(f, windowed ? Infinity : n)) {
      if (!windowed || inWindow(line, options)) all.push({ line, stream: streamOf(f) });
    }
  }
  return sortByStamp(all).slice(-n).map((x) => options.tag ? tagLine(x.stream, x.line) : x.line);
}

/** The stream (replica or run id) a log file belongs to: `api-0` for `…/api-0.log.2`. */
export function streamOf(path: string): string {
  const name = path.slice(path.lastIndexOf("/") + 1);
  return /^(.+)\.log(?:\.\d+)?$/.exec(name)?.[1] ?? name;
}

/** How far back a follow looks for lines stamped after the tail it continues. */
const SINCE_WINDOW = 256 * 1024;

/**
 * The offset of the first whole line in the last {@link SINCE_WINDOW} bytes of a file whose stamp
 * is after `since`; the file's size when there is none.
 */
async function offsetAfter(path: string, size: number, since: string): Promise<number> {
  const start = Math.max(0, size - SINCE_WINDOW);
  let buf: Uint8Array;
  try {
    using file = await Deno.open(path);
    buf = await readRange(file, start, size - start);
  } catch {
    return size;
  }
  let at = 0;
  if (start > 0) { // a whole line only
    const newline = buf.indexOf(0x0a);
    if (newline < 0) return size;
    at = newline + 1;
  }
  while (at < buf.length) {
    if (new TextDecoder().decode(buf.subarray(at, at + 24)) > since) return start + at;
    const next = buf.indexOf(0x0a, at);
    if (next < 0) break;
    at = next + 1;
  }
  return size;
}

/** Passes a followed file may be missing (mid-rotation) before its offset is forgotten. */
const FORGET_AFTER = 10;

/**
 * Follows log files: calls `onLines` with new complete lines as they are appended, picking up
 * files that appear later (rotation, a new day, a new replica). Stops when `signal` aborts.
 */
export async function follow(
  list: () => Promise<string[]>,
  onLines: (lines: string[], path: string) => void,
  options: {
    signal: AbortSignal;
    intervalMs?: number;
    fromEnd?: boolean;
    /** From the end, but lines stamped after this (within the last 256 KiB) are read too. */
    since?: string;
  },
): Promise<void> {
  // Keyed by inode and birth time: rotation renames a file, and a renamed file must not be read
  // again from 0; a file renamed while a pass listed the folder may be missing from that pass, so
  // a key is forgotten only after it was missing for FORGET_AFTER passes (the birth time tells a
  // new file on a reused inode apart).
  const offsets = new Map<string, number>();
  const partial = new Map<string, string>();
  const missing = new Map<string, number>();
  let first = true;
  while (!options.signal.aborted) {
    const listed = new Set<string>();
    for (const path of await list()) {
      let info: Deno.FileInfo;
      try {
        info = await Deno.stat(path);
      } catch {
        continue;
      }
      const key = info.ino === null
        ? path
        : `${info.dev}:${info.ino}:${info.birthtime?.getTime() ?? ""}`;
      listed.add(key);
      const size = info.size;
      if (!offsets.has(key)) {
        const fromEnd = first && options.fromEnd !== false;
        offsets.set(
          key,
          !fromEnd ? 0 : options.since ? await offsetAfter(path, size, options.since) : size,
        );
      }
      let at = offsets.get(key)!;
      if (size < at) at = 0; // truncated
      if (size === at) continue;
      using file = await Deno.open(path);
      await file.seek(at, Deno.SeekMode.Start);
      const buf = new Uint8Array(size - at);
      let read = 0;
      while (read < buf.length) {
        const r = await file.read(buf.subarray(read));
        if (r === null) break;
        read += r;
      }
      offsets.set(key, at + read);
      const text = (partial.get(key) ?? "") + new TextDecoder().decode(buf.subarray(0, read));
      const lines = text.split("\n");
      partial.set(key, lines.pop() ?? "");
      if (lines.length) onLines(lines, path);
    }
    for (const key of offsets.keys()) {
      if (listed.has(key)) {
        missing.delete(key);
        continue;
      }
      const passes = (missing.get(key) ?? 0) + 1;
      missing.set(key, passes);
      if (passes < FORGET_AFTER) continue;
      offsets.delete(key); // gone for good: forget it
      partial.delete(key);
      missing.delete(key);
    }
    first = false;
    await delay(options.intervalMs ?? 200, options.signal);
  }
}

/** Removes the log files (rotated ones too) of some streams, e.g. pruned runs. */
export async function removeStreams(paths: Paths, deployment: string, streams: Set<string>) {
  for (const file of await listLogFiles(paths, deployment, streams)) {
    await Deno.remove(file).catch(() => {});
  }
}

/** Removes day folders older than `maxAgeDays` from every deployment's logs. */
export async function pruneLogs(
  paths: Paths,
  maxAgeDays: number,
  now = Date.now(),
): Promise<number> {
  const cutoff = new Date(now - maxAgeDays * 86_400_000).toISOString().slice(0, 10);
  let removed = 0;
  for (const namespace of await readDirNames(paths.logs)) {
    if (namespace.startsWith(".")) continue; // the layout's marker
    for (const name of await readDirNames(join(paths.logs, namespace))) {
      const deployment = join(paths.logs, namespace, name);
      for (const day of await readDirNames(deployment)) {
        if (/^\d{4}-\d{2}-\d{2}$/.test(day) && day < cutoff) {
          await Deno.remove(join(deployment, day), { recursive: true });
          removed++;
        }
      }
    }
  }
  return removed;
}

/**
 * A log store whose writers report to the agent's {@link DiskHealth}: lines that could not be
 * written count as failed writes at the "logs" site, and a write that works clears it.
 */
export class DiskAwareLogs implements LogStore {
  constructor(readonly inner: LogStore, readonly disk: DiskHealth) {}

  writer(deployment: string, stream: string, options: LogWriterOptions = {}): LogSink {
    return this.inner.writer(deployment, stream, {
      ...options,
      onWriteFailed: (error, lines) => {
        options.onWriteFailed?.(error, lines);
        this.disk.failed("logs", error, lines);
      },
      onWriteOk: () => {
        options.onWriteOk?.();
        if (this.disk.full) this.disk.worked("logs");
      },
    });
  }

  // The rest as the inner store has it (whatever its signatures become).
  has: LogStore["has"] = (...args) => this.inner.has(...args);
  tail: LogStore["tail"] = (...args) => this.inner.tail(...args);
  follow: LogStore["follow"] = (...args) => this.inner.follow(...args);
  remove: LogStore["remove"] = (...args) => this.inner.remove(...args);
  prune: LogStore["prune"] = (...args) => this.inner.prune(...args);
}

/** The local log store: files under PRISN_HOME/logs, rotated by size, kept by age. */
export class FileLogs implements LogStore {
  constructor(readonly paths: Paths) {}

  writer(deployment: string, stream: string, options?: LogWriterOptions): LogWriter {
    return new LogWriter(this.paths, deployment, stream, options);
  }

  async has(deployment: string, stream: string): Promise<boolean> {
    return (await listLogFiles(this.paths, deployment, new Set([stream]))).length > 0;
  }

  async tail(deployment: string, n: number, options: TailOptions = {}): Promise<string[]> {
    return await tailMerged(
      await listLogFiles(this.paths, deployment, options.streams),
      n,
      options,
    );
  }

  follow(
    deployment: string,
    onLines: (lines: string[]) => void,
    options: { signal: AbortSignal; streams?: Set<string>; tag?: boolean; since?: string },
  ): Promise<void> {
    return follow(
      () => listLogFiles(this.paths, deployment, options.streams),
      (lines, path) => onLines(options.tag ? lines.map((l) => tagLine(streamOf(path), l)) : lines),
      { signal: options.signal, since: options.since },
    );
  }

  async remove(deployment: string, streams?: Set<string>): Promise<void> {
    if (streams) await removeStreams(this.paths, deployment, streams);
    else await Deno.remove(join(this.paths.logs, deployment), { recursive: true }).catch(() => {});
  }

  prune(maxAgeDays: number): Promise<number> {
    return pruneLogs(this.paths, maxAgeDays);
  }
}
