import {
  cString,
  EFD_CLOEXEC,
  EFD_NONBLOCK,
  EPOLL_CLOEXEC,
  EPOLL_CTL_ADD,
  EPOLL_CTL_DEL,
  EPOLL_DATA_OFFSET,
  EPOLL_EVENT_SIZE,
  EPOLLIN,
  type Libc,
  libc,
  O_CLOEXEC,
  O_NONBLOCK,
  O_RDWR,
} from "./_libc.ts";

/** Read size, and the one buffer every FIFO is read into (the sink copies what it keeps). */
const CHUNK = 64 * 1024;
const CHUNK_BYTES = BigInt(CHUNK);
/** Chunks read from one FIFO per wake-up before the others get their turn. */
const CHUNKS_PER_TURN = 4;
/** Ready FIFOs taken per wake-up; more wait for the next one (level-triggered: none is lost). */
const MAX_EVENTS = 256;

export type Sink = (chunk: Uint8Array) => void;

/**
 * Reads every replica's output FIFOs with one epoll instance: no thread, buffer or pending read
 * per FIFO. One `epoll_wait` at a time waits on a thread of Deno's blocking pool (the single
 * thread the agent holds for output, however many replicas run); when it returns, the ready FIFOs
 * are read on the event loop with non-blocking reads, at most {@link CHUNKS_PER_TURN} chunks each,
 * so a chatty replica cannot starve the others. Each FIFO is opened read-write, so it never reports
 * end-of-file between a replica's restarts (no writer) and needs no separate keeper descriptor:
 * one descriptor per FIFO.
 *
 * Chosen over the alternatives measured or tried here: blocking reads (`Deno.open`) hold a pool
 * thread each and locked the agent at 16 replicas; per-start pipes (`Deno.Command` "piped") are
 * non-blocking but grew the agent's native memory through crash loops; `node:net` cannot open a
 * FIFO's descriptor in Deno.
 */
export class OutputCollector {
  #c: Libc;
  #epfd: number;
  #wake: number;
  #sinks = new Map<number, Sink>();
  #events = new Uint8Array(MAX_EVENTS * EPOLL_EVENT_SIZE);
  #buf = new Uint8Array(CHUNK);
  #loop?: Promise<void>;
  #closed = false;

  private constructor(c: Libc, epfd: number, wake: number) {
    this.#c = c;
    this.#epfd = epfd;
    this.#wake = wake;
    this.#ctl(EPOLL_CTL_ADD, wake);
  }

  /** A collector, or undefined where the host has no epoll through FFI (then: per-start pipes). */
  static create(): OutputCollector | undefined {
    const c = libc();
    if (!c) return undefined;
    const epfd = c.epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0) return undefined;
    const wake = c.eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (wake < 0) {
      c.close(epfd);
      return undefined;
    }
    return new OutputCollector(c, epfd, wake);
  }

  /** How many FIFOs are being read. */
  get size(): number {
    return this.#sinks.size;
  }

  /** Makes a FIFO (mode 0600) at `path`; false when that fails (e.g. it exists). */
  mkfifo(path: string): boolean {
    return this.#c.mkfifo(cString(path), 0o600) === 0;
  }

  /** Starts reading the FIFO at `path` into `sink`; returns its descriptor (for {@link remove}). */
  add(path: string, sink: Sink): number {
    if (this.#closed) throw new Error("output collector is closed");
    const fd = this.#c.open(cString(path), O_RDWR | O_NONBLOCK | O_CLOEXEC, 0);
    if (fd < 0) throw new Error(`cannot open FIFO ${path}`);
    this.#sinks.set(fd, sink);
    if (!this.#ctl(EPOLL_CTL_ADD, fd)) {
      this.#sinks.delete(fd);
      this.#c.close(fd);
      throw new Error(`cannot watch FIFO ${path}`);
    }
    this.#loop ??= this.#run();
    return fd;
  }

  /** Reads what a FIFO holds now into its sink (e.g. what a process wrote before it exited). */
  flush(fd: number): void {
    const sink = this.#sinks.get(fd);
    if (sink) this.#drain(fd, sink, Infinity);
  }

  /** Reads what is left in a FIFO, stops watching it and closes it. */
  remove(fd: number): void {
    const sink = this.#sinks.get(fd);
    if (!sink) return;
    this.#drain(fd, sink, Infinity);
    this.#ctl(EPOLL_CTL_DEL, fd);
    this.#sinks.delete(fd);
    this.#c.close(fd);
    if (this.#sinks.size === 0) this.#signal(); // the waiting thread goes back to the pool
  }

  /** Stops reading (drains and closes every FIFO still watched) and frees the epoll instance. */
  async close(): Promise<void> {
    if (this.#closed) return;
    for (const fd of [...this.#sinks.keys()]) this.remove(fd);
    this.#closed = true;
    this.#signal();
    await this.#loop;
    this.#c.close(this.#wake);
    this.#c.close(this.#epfd);
  }

  /** One wait at a time; ends while nothing is watched, so an idle agent holds no thread. */
  async #run(): Promise<void> {
    const view = new DataView(this.#events.buffer);
    try {
      while (!this.#closed && this.#sinks.size > 0) {
        const n = await this.#c.epoll_wait(this.#epfd, this.#events, MAX_EVENTS, -1);
        for (let i = 0; i < n; i++) {
          const fd = view.getInt32(i * EPOLL_EVENT_SIZE + EPOLL_DATA_OFFSET, true);
          if (fd === this.#wake) {
            this.#c.read(this.#wake, this.#buf, 8n); // reset the counter
            continue;
          }
          const sink = this.#sinks.get(fd);
          if (sink) this.#drain(fd, sink, CHUNKS_PER_TURN);
        }
      }
    } finally {
      this.#loop = undefined;
      // Added while the last wait was ending: it needs a loop of its own.
      if (!this.#closed && this.#sinks.size > 0) this.#loop = this.#run();
    }
  }

  #drain(fd: number, sink: Sink, chunks: number): void {
    for (let i = 0; i < chunks; i++) {
      const n = Number(this.#c.read(fd, this.#buf, CHUNK_BYTES));
      if (n <= 0) return; // -1: EAGAIN (nothing more now); 0 cannot happen while we hold a writer
      try {
        sink(this.#buf.subarray(0, n));
      } catch { /* a sink's failure is its own; reading goes on */ }
      if (n < CHUNK) return;
    }
  }

  #ctl(op: number, fd: number): boolean {
    const ev = new Uint8Array(EPOLL_EVENT_SIZE);
    const view = new DataView(ev.buffer);
    view.setUint32(0, EPOLLIN, true);
    view.setInt32(EPOLL_DATA_OFFSET, fd, true);
    return this.#c.epoll_ctl(this.#epfd, op, fd, ev) === 0;
  }

  #signal(): void {
    const one = new Uint8Array(8);
    new DataView(one.buffer).setBigUint64(0, 1n, true);
    this.#c.write(this.#wake, one, 8n);
  }
}
