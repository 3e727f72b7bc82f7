/**
 * The worker thread of the epoll proxy engine (see epoll_proxy.ts): one edge-triggered epoll loop
 * over the listening socket, the control pipe and every connection, blocking in `epoll_wait` on
 * this thread, with plain recv/send through one shared buffer (what the destination cannot take
 * yet waits in a buffer of that connection until it can).
 *
 * First message: {@linkcode WorkerInit}. Then commands arrive as JSON lines on the control pipe
 * ({@linkcode Command}); the worker answers with `postMessage` ({@linkcode WorkerReport}).
 *
 * @module
 */
/// <reference lib="deno.worker" />

import {
  EAGAIN,
  EINPROGRESS,
  EINTR,
  EPOLL_CLOEXEC,
  EPOLL_CTL_ADD,
  EPOLL_CTL_MOD,
  EPOLL_DATA_OFFSET,
  EPOLL_EVENT_SIZE,
  EPOLLERR,
  EPOLLET,
  EPOLLHUP,
  EPOLLIN,
  EPOLLOUT,
  EPOLLRDHUP,
  familyOf,
  intOption,
  IPPROTO_TCP,
  MSG_NOSIGNAL,
  SHUT_WR,
  SOCK_CLOEXEC,
  SOCK_NONBLOCK,
  SOCK_STREAM,
  sockaddrIn,
  sockets,
  TCP_NODELAY,
} from "./_sockets.ts";
import { inRotation, preferred } from "./proxy.ts";
import type { Command, WireBackend, WorkerInit, WorkerReport } from "./epoll_proxy.ts";

/** Pause between two rounds over backends that all failed to connect (as proxy.ts). */
const RETRY_PAUSE_MS = 50;
/** Pause after a failed `accept` (no descriptors left) before the next. */
const ACCEPT_PAUSE_MS = 20;
const MAX_EVENTS = 256;
/** Bytes read at once. */
const CHUNK = 65536;
const READABLE = EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR;
/** The peer is closing or gone: read until recv says so, a short read does not mean empty. */
const CLOSING = EPOLLRDHUP | EPOLLHUP | EPOLLERR;
const SOCKET_EVENTS = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;

/** The peer's FIN had arrived when the event was taken, and nothing went wrong (no HUP, ERR). */
function finOf(mask: number): boolean {
  return (mask & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) === EPOLLRDHUP;
}

/**
 * A length as the `usize` FFI takes it: a bigint (a number there is the slow path), made once per
 * value (BigInt(n) costs about 0.1 µs a call, measured).
 */
const sizes: bigint[] = [];
function size(n: number): bigint {
  return sizes[n] ??= BigInt(n);
}
const CHUNK_SIZE = size(CHUNK);

/** One direction of a link. */
interface Flow {
  src: number;
  dst: number;
  /** Bytes read from src that dst has not taken yet. */
  pending?: Uint8Array<ArrayBuffer>;
  /** src has ended. */
  eof: boolean;
  /** dst's write side is shut (src ended and everything was written). */
  done: boolean;
}

/** A backend with its socket address, built once. */
interface Target extends WireBackend {
  sockaddr: Uint8Array<ArrayBuffer>;
}

/** One accepted client, from accept to close. */
interface Conn {
  client: number;
  /** Until when it may wait for a backend. */
  deadline: number;
  /** Not yet linked: counted as pending. */
  pending: boolean;
  /** Events the client's socket raised before the link (0: none yet). */
  clientEvents: number;
  /** The connect in flight. */
  dial?: { fd: number; backend: Target; until: number };
  /** The round over backends being tried. */
  round?: { candidates: readonly Target[]; start: number; i: number };
  /** Waiting (no backend, or all refused) until this time or a change of the backend set. */
  retryAt?: number;
  backend?: Target;
  upstream?: number;
  up?: Flow;
  down?: Flow;
  closed: boolean;
}

const s = sockets();

self.onmessage = (event: MessageEvent<WorkerInit>) => {
  self.onmessage = null;
  try {
    if (!s) throw new Error("libc is not available in the proxy worker");
    run(event.data);
  } catch (error) {
    post({ error: error instanceof Error ? error.message : String(error) });
  }
  post({ closed: true });
};

function post(report: WorkerReport): void {
  self.postMessage(report);
}

function run(init: WorkerInit): void {
  const { c, errno } = s!;
  const counts = new Int32Array(init.counts);
  const epfd = c.epoll_create1(EPOLL_CLOEXEC);
  if (epfd < 0) throw new Error(`epoll_create1 failed (errno ${errno()})`);
  const event = new Uint8Array(EPOLL_EVENT_SIZE);
  const eventView = new DataView(event.buffer);
  /**
   * Each registration's tag, kept with its fd in the event's user data: an event fetched before
   * its fd was closed and the number reused (in the same batch) names an old tag and is dropped.
   */
  const tags: number[] = [];
  let lastTag = 0;
  const watch = (fd: number, events: number) => {
    lastTag = (lastTag + 1) | 0;
    tags[fd] = lastTag;
    eventView.setUint32(0, events >>> 0, true);
    eventView.setInt32(EPOLL_DATA_OFFSET, fd, true);
    eventView.setInt32(EPOLL_DATA_OFFSET + 4, lastTag, true);
    return c.epoll_ctl(epfd, EPOLL_CTL_ADD, fd, event) === 0;
  };
  /** Changes what an fd is watched for (keeps its tag). */
  const rewatch = (fd: number, events: number) => {
    eventView.setUint32(0, events >>> 0, true);
    eventView.setInt32(EPOLL_DATA_OFFSET, fd, true);
    eventView.setInt32(EPOLL_DATA_OFFSET + 4, tags[fd], true);
    c.epoll_ctl(epfd, EPOLL_CTL_MOD, fd, event);
  };
  watch(init.listenFd, EPOLLIN);
  watch(init.controlFd, EPOLLIN);

  /** The connection each socket fd belongs to. */
  const byFd: (Conn | undefined)[] = [];
  const conns = new Set<Conn>();
  /** Connections not linked yet (dialing or waiting): the only ones with timers. */
  const unlinked = new Set<Conn>();
  let ready: readonly Target[] = [];
  let rotation: readonly Target[] = [];
  let next = 0;
  const drains = new Map<number, { links: Set<Conn>; graceAt: number }>();
  const scratch = new Uint8Array(CHUNK);
  const one = intOption(1);
  let acceptPausedUntil = 0;
  let closing = false;
  let control = "";
  const controlBuf = new Uint8Array(65536);
  const decoder = new TextDecoder();

  const closeFd = (fd: number | undefined) => {
    if (fd === undefined) return;
    byFd[fd] = undefined;
    c.close(fd);
  };

  /** Closes everything of a connection, forgets it, and tells a drain waiting for it. */
  const finish = (conn: Conn): void => {
    if (conn.closed) return;
    conn.closed = true;
    conns.delete(conn);
    unlinked.delete(conn);
    if (conn.pending) Atomics.sub(counts, 0, 1);
    if (conn.dial) closeFd(conn.dial.fd);
    closeFd(conn.client);
    closeFd(conn.upstream);
    if (!conn.backend) return;
    Atomics.sub(counts, conn.backend.slot, 1);
    if (drains.size === 0) return;
    for (const [token, drain] of drains) {
      if (drain.links.delete(conn) && drain.links.size === 0) {
        drains.delete(token);
        post({ drained: token });
      }
    }
  };

  /**
   * src has ended and dst has everything: half-close dst; both ways done ends the link (the
   * close then sends the last FIN, so the second way needs no shutdown of its own).
   */
  const endFlow = (conn: Conn, flow: Flow): void => {
    flow.done = true;
    if (conn.up!.done && conn.down!.done) finish(conn);
    else c.shutdown(flow.dst, SHUT_WR);
  };

  /**
   * Moves what it can along one flow until a side would block, or ends the link. A short read
   * means the socket is empty for now (as nginx assumes with EPOLLRDHUP: the next bytes raise a
   * new edge), unless `full`: the peer is closing, or reading stopped early and no edge will come.
   * With `fin` (the event said EPOLLRDHUP: the peer's FIN had arrived) a short read took all that
   * came before it, so it is the end too: no call only to read the 0.
   */
  const pump = (conn: Conn, flow: Flow, full: boolean, fin = false): void => {
    if (flow.pending) {
      const p = flow.pending;
      const w = c.send(flow.dst, p, size(p.length), MSG_NOSIGNAL);
      if (w < 0) {
        const e = errno();
        return e === EAGAIN || e === EINTR ? undefined : finish(conn);
      }
      if (w < p.length) {
        flow.pending = p.subarray(w);
        return;
      }
      flow.pending = undefined;
      full = true;
    }
    while (!flow.eof) {
      const n = c.recv(flow.src, scratch, CHUNK_SIZE, 0);
      if (n > 0) {
        let w = c.send(flow.dst, scratch, size(n), MSG_NOSIGNAL);
        if (w < 0) {
          const e = errno();
          if (e !== EAGAIN && e !== EINTR) return finish(conn);
          w = 0;
        }
        if (w < n) {
          flow.pending = scratch.slice(w, n);
          return;
        }
        if (n < CHUNK) {
          if (fin) {
            flow.eof = true;
            break;
          }
          if (!full) return;
        }
        continue;
      }
      if (n === 0) {
        flow.eof = true;
        break;
      }
      const e = errno();
      if (e === EAGAIN || e === EINTR) return;
      return finish(conn);
    }
    endFlow(conn, flow);
  };

  /** Links a client to a connected backend; pumps what the edges already told of. */
  const link = (conn: Conn, fd: number, backend: Target, upstreamEvents: number) => {
    conn.dial = undefined;
    conn.round = undefined;
    conn.pending = false;
    Atomics.sub(counts, 0, 1);
    unlinked.delete(conn);
    conn.backend = backend;
    conn.upstream = fd;
    Atomics.add(counts, backend.slot, 1);
    byFd[fd] = conn;
    conn.up = { src: conn.client, dst: fd, eof: false, done: false };
    conn.down = { src: fd, dst: conn.client, eof: false, done: false };
    // Edge-triggered: edges raised before now were seen (and kept in the masks), not acted on.
    const client = conn.clientEvents;
    if (client & READABLE) pump(conn, conn.up, (client & CLOSING) !== 0, finOf(client));
    if (!conn.closed && upstreamEvents & READABLE) {
      pump(conn, conn.down, (upstreamEvents & CLOSING) !== 0, finOf(upstreamEvents));
    }
  };

  /** Starts a round over the backends in rotation (round-robin start), or waits for some. */
  const startRound = (conn: Conn, now: number) => {
    conn.retryAt = undefined;
    const candidates = rotation;
    if (candidates.length === 0) {
      if (now >= conn.deadline) finish(conn);
      else conn.retryAt = conn.deadline;
      return;
    }
    const start = next++ % candidates.length;
    if (next >= Number.MAX_SAFE_INTEGER) next = 0;
    conn.round = { candidates, start, i: 0 };
    dialNext(conn, now);
  };

  /** Dials the next backend of the round; after the last, waits a little and starts over. */
  const dialNext = (conn: Conn, now: number) => {
    const round = conn.round!;
    while (round.i < round.candidates.length && !closing) {
      const backend = round.candidates[(round.start + round.i++) % round.candidates.length];
      const fd = c.socket(familyOf(backend.address), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      if (fd < 0) continue;
      // Accepted clients have TCP_NODELAY from the listening socket; a backend needs its own.
      c.setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, one, 4);
      if (c.connect(fd, backend.sockaddr, backend.sockaddr.length) === 0) {
        watch(fd, SOCKET_EVENTS);
        if (connected(conn, fd, backend, 0)) return;
        continue;
      }
      if (errno() !== EINPROGRESS) {
        c.close(fd);
        continue;
      }
      conn.dial = { fd, backend, until: now + init.connectTimeoutMs };
      byFd[fd] = conn;
      watch(fd, SOCKET_EVENTS);
      return;
    }
    conn.round = undefined;
    if (now >= conn.deadline) return finish(conn);
    conn.retryAt = Math.min(now + RETRY_PAUSE_MS, conn.deadline);
  };

  /** A connect succeeded: links the client, unless the backend left the rotation meanwhile. */
  const connected = (conn: Conn, fd: number, backend: Target, events: number): boolean => {
    if (!inRotation(ready, backend)) {
      // Taken out of rotation (drained, removed) while connecting: nothing sent yet, move on.
      closeFd(fd);
      return false;
    }
    link(conn, fd, backend, events);
    return true;
  };

  const dialEvent = (conn: Conn, events: number, now: number) => {
    const dial = conn.dial!;
    conn.dial = undefined;
    byFd[dial.fd] = undefined;
    // A failed connect raises EPOLLERR (with EPOLLHUP); one that succeeded, EPOLLOUT alone.
    const ok = (events & (EPOLLERR | EPOLLHUP)) === 0;
    if (ok && connected(conn, dial.fd, dial.backend, events)) return;
    if (!ok) c.close(dial.fd);
    dialNext(conn, now);
  };

  /**
   * Accepts one connection per event (the listening socket is level-triggered, as nginx without
   * multi_accept): no call that only says "none left"; more waiting raise the next event.
   */
  const accept = (now: number) => {
    const fd = c.accept4(init.listenFd, null, null, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      const e = errno();
      if (e === EAGAIN || e === EINTR) return;
      post({ error: `accept failed (errno ${e})` });
      // Level-triggered would wake at once again: stop watching until the pause is over.
      acceptPausedUntil = now + ACCEPT_PAUSE_MS;
      rewatch(init.listenFd, 0);
      return;
    }
    const conn: Conn = {
      client: fd,
      deadline: now + init.waitForBackendMs,
      pending: true,
      clientEvents: 0,
      closed: false,
    };
    Atomics.add(counts, 0, 1);
    conns.add(conn);
    unlinked.add(conn);
    byFd[fd] = conn;
    watch(fd, SOCKET_EVENTS);
    startRound(conn, now);
  };

  const command = (cmd: Command, now: number) => {
    if (cmd.op === "backends") {
      ready = cmd.backends.map((b) => ({ ...b, sockaddr: sockaddrIn(b.address, b.port) }));
      rotation = preferred(ready);
      for (const conn of unlinked) {
        if (conn.retryAt !== undefined) startRound(conn, now);
      }
    } else if (cmd.op === "drain") {
      const links = new Set([...conns].filter((x) => x.backend?.id === cmd.id));
      if (links.size === 0) post({ drained: cmd.token });
      else drains.set(cmd.token, { links, graceAt: now + cmd.graceMs });
    } else closing = true;
  };

  const readControl = (now: number) => {
    for (;;) {
      const n = Number(c.read(init.controlFd, controlBuf, BigInt(controlBuf.length)));
      if (n <= 0) {
        if (n === 0) closing = true; // the proxy's end is gone
        break;
      }
      control += decoder.decode(controlBuf.subarray(0, n), { stream: true });
    }
    let newline;
    while ((newline = control.indexOf("\n")) !== -1) {
      const line = control.slice(0, newline);
      control = control.slice(newline + 1);
      command(JSON.parse(line) as Command, now);
    }
  };

  /** Dial timeouts, waits that are over, drains whose grace ended; the ms to the next one. */
  const timers = (now: number): number => {
    let nextAt = Infinity;
    // The set itself, not a copy (this runs after every batch while any client is unlinked):
    // a connection that `finish` deletes meanwhile is not visited, one that starts is.
    for (const conn of unlinked) {
      if (conn.dial && now >= conn.dial.until) {
        closeFd(conn.dial.fd);
        conn.dial = undefined;
        dialNext(conn, now);
      } else if (conn.retryAt !== undefined && now >= conn.retryAt) {
        if (now >= conn.deadline) finish(conn);
        else startRound(conn, now);
      }
      if (conn.closed) continue;
      if (conn.dial) nextAt = Math.min(nextAt, conn.dial.until);
      if (conn.retryAt !== undefined) nextAt = Math.min(nextAt, conn.retryAt);
    }
    for (const drain of drains.values()) {
      if (now >= drain.graceAt) { for (const conn of [...drain.links]) finish(conn); }
      else nextAt = Math.min(nextAt, drain.graceAt);
    }
    if (acceptPausedUntil > now) nextAt = Math.min(nextAt, acceptPausedUntil);
    return nextAt === Infinity ? -1 : Math.max(1, Math.ceil(nextAt - now));
  };

  const events = new Uint8Array(EPOLL_EVENT_SIZE * MAX_EVENTS);
  const view = new DataView(events.buffer);
  post({ ready: true });
  let timeout = -1;
  try {
    while (!closing) {
      const n = c.epoll_wait(epfd, events, MAX_EVENTS, timeout);
      const e = n < 0 ? errno() : 0;
      if (n < 0 && e !== EINTR) throw new Error(`epoll_wait failed (errno ${e})`);
      // The clock is read where a time is needed (a new connection, a dial, a command, the
      // timers), not once a batch: a time is a heap number, and a link moving bytes allocates none.
      for (let i = 0; i < n; i++) {
        const mask = view.getUint32(i * EPOLL_EVENT_SIZE, true);
        // User data (a little-endian u64): the fd, then its registration's tag.
        const fd = view.getInt32(i * EPOLL_EVENT_SIZE + EPOLL_DATA_OFFSET, true);
        const tag = view.getInt32(i * EPOLL_EVENT_SIZE + EPOLL_DATA_OFFSET + 4, true);
        if (fd === init.listenFd) {
          accept(Date.now());
          continue;
        }
        if (fd === init.controlFd) {
          readControl(Date.now());
          continue;
        }
        const conn = byFd[fd];
        if (!conn || conn.closed || tags[fd] !== tag) continue;
        if (conn.dial?.fd === fd) {
          dialEvent(conn, mask, Date.now());
          continue;
        }
        if (!conn.up) {
          conn.clientEvents |= mask; // still waiting for a backend: acted on once linked
          continue;
        }
        const fromClient = fd === conn.client;
        const incoming = fromClient ? conn.up : conn.down!;
        const outgoing = fromClient ? conn.down! : conn.up;
        if (mask & READABLE) pump(conn, incoming, (mask & CLOSING) !== 0, finOf(mask));
        if (!conn.closed && outgoing.pending && mask & (EPOLLOUT | EPOLLERR | EPOLLHUP)) {
          pump(conn, outgoing, true);
        }
      }
      if (unlinked.size === 0 && drains.size === 0 && acceptPausedUntil === 0) {
        timeout = -1;
        continue;
      }
      const now = Date.now();
      if (acceptPausedUntil !== 0 && now >= acceptPausedUntil) {
        acceptPausedUntil = 0;
        rewatch(init.listenFd, EPOLLIN);
      }
      timeout = timers(now);
    }
  } finally {
    // Also when the loop failed: nothing of this proxy stays open.
    closing = true;
    c.close(init.listenFd);
    for (const conn of [...conns]) finish(conn);
    for (const [token] of drains) post({ drained: token });
    c.close(init.controlFd);
    c.close(epfd);
  }
}
