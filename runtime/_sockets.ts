/**
 * The socket and epoll calls of the epoll proxy engine (epoll_proxy.ts and its worker), through
 * Deno's FFI, Linux only. Every call here is synchronous: the worker blocks in
 * `epoll_wait` on its own thread, and nothing else runs there.
 *
 * Constants are Linux's, the same on x86_64 and aarch64 (asm-generic).
 *
 * @module
 */

import { errnoReader, openLibc } from "./_libc.ts";

export {
  EPOLL_CLOEXEC,
  EPOLL_CTL_ADD,
  EPOLL_DATA_OFFSET,
  EPOLL_EVENT_SIZE,
  EPOLLIN,
  O_CLOEXEC,
  O_NONBLOCK,
} from "./_libc.ts";

export const AF_INET = 2;
export const AF_INET6 = 10;
export const SOCK_STREAM = 1;
export const SOCK_NONBLOCK = 0o4000;
export const SOCK_CLOEXEC = 0o2000000;
export const SOL_SOCKET = 1;
export const SO_REUSEADDR = 2;
export const SO_ERROR = 4;
export const SO_REUSEPORT = 15;
export const IPPROTO_TCP = 6;
export const TCP_NODELAY = 1;
export const SHUT_WR = 1;
export const MSG_NOSIGNAL = 0x4000;
export const EPOLL_CTL_MOD = 3;
export const EPOLLOUT = 0x4;
export const EPOLLERR = 0x8;
export const EPOLLHUP = 0x10;
export const EPOLLRDHUP = 0x2000;
export const EPOLLET = 0x80000000;

export const EINTR = 4;
export const EAGAIN = 11;
export const EACCES = 13;
export const EMFILE = 24;
export const EADDRINUSE = 98;
export const EADDRNOTAVAIL = 99;
export const EINPROGRESS = 115;

/** `struct sockaddr_in`. */
export const SOCKADDR_IN_SIZE = 16;
/** `struct sockaddr_in6`. */
export const SOCKADDR_IN6_SIZE = 28;

const SYMBOLS = {
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  setsockopt: { parameters: ["i32", "i32", "i32", "buffer", "u32"], result: "i32" },
  getsockopt: { parameters: ["i32", "i32", "i32", "buffer", "buffer"], result: "i32" },
  bind: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  listen: { parameters: ["i32", "i32"], result: "i32" },
  getsockname: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  accept4: { parameters: ["i32", "pointer", "pointer", "i32"], result: "i32" },
  connect: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  shutdown: { parameters: ["i32", "i32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  read: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  // recv and send return an ssize_t, read here as its low 32 bits (the whole value for the
  // counts of a 64 KiB buffer and -1): a 64-bit result comes back boxed, 40 bytes of garbage a
  // call, which in the proxy's copy loop was a collection every 6,000 requests or so.
  recv: { parameters: ["i32", "buffer", "usize", "i32"], result: "i32" },
  send: { parameters: ["i32", "buffer", "usize", "i32"], result: "i32" },
  write: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  pipe2: { parameters: ["buffer", "i32"], result: "i32" },
  epoll_create1: { parameters: ["i32"], result: "i32" },
  epoll_ctl: { parameters: ["i32", "i32", "i32", "buffer"], result: "i32" },
  epoll_wait: { parameters: ["i32", "buffer", "i32", "i32"], result: "i32" },
  __errno_location: { parameters: [], result: "pointer" },
} as const;

export type Sockets = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

let cached: { c: Sockets; errno: () => number } | null | undefined;

/**
 * The calls, and `errno` of the calling thread (read right after a call that failed), or null
 * where they are not to be had (not Linux, no FFI permission). Per thread: a worker opens its own.
 */
export function sockets(): { c: Sockets; errno: () => number } | null {
  if (cached !== undefined) return cached;
  const c = openLibc(SYMBOLS);
  const errno = c && errnoReader(c.__errno_location);
  return cached = c && errno ? { c, errno } : null;
}

/** The four bytes of a dotted IPv4 address, or undefined when `host` is not one. */
export function ipv4(host: string): number[] | undefined {
  if (host === "localhost") return [127, 0, 0, 1];
  const parts = host.split(".");
  if (parts.length !== 4 || !parts.every((p) => /^\d{1,3}$/.test(p) && Number(p) <= 255)) {
    return undefined;
  }
  return parts.map(Number);
}

/**
 * The sixteen bytes of an IPv6 address (`::1`, `2001:db8::5`, `::ffff:10.0.0.1`, also in
 * brackets), or undefined when `host` is not one. A zone (`fe80::1%eth0`) is not taken.
 */
export function ipv6(host: string): number[] | undefined {
  const text = host.startsWith("[") && host.endsWith("]") ? host.slice(1, -1) : host;
  if (!text.includes(":") || text.includes("%")) return undefined;
  const halves = text.split("::");
  if (halves.length > 2) return undefined;
  const groups = (part: string): number[] | undefined => {
    if (part === "") return [];
    const words: number[] = [];
    const pieces = part.split(":");
    for (const [i, piece] of pieces.entries()) {
      const tail = i === pieces.length - 1 ? ipv4(piece) : undefined;
      if (tail && piece !== "localhost") {
        words.push((tail[0] << 8) | tail[1], (tail[2] << 8) | tail[3]);
      } else if (/^[0-9a-fA-F]{1,4}$/.test(piece)) words.push(parseInt(piece, 16));
      else return undefined;
    }
    return words;
  };
  const head = groups(halves[0]);
  const rest = halves.length === 2 ? groups(halves[1]) : [];
  if (!head || !rest) return undefined;
  const missing = 8 - head.length - rest.length;
  if (halves.length === 2 ? missing < 1 : missing !== 0) return undefined;
  const words = [...head, ...new Array(missing).fill(0), ...rest];
  return words.flatMap((w) => [w >> 8, w & 0xff]);
}

/** The bytes of an IPv4 or IPv6 address (4 or 16), or undefined when `host` is neither. */
export function ipAddress(host: string): number[] | undefined {
  return ipv4(host) ?? ipv6(host);
}

/** The address family of an address from {@linkcode ipAddress}. */
export function familyOf(address: number[]): number {
  return address.length === 16 ? AF_INET6 : AF_INET;
}

/** A `struct sockaddr_in` (four bytes) or `struct sockaddr_in6` (sixteen) for `address`:`port`. */
export function sockaddrIn(address: number[], port: number): Uint8Array<ArrayBuffer> {
  const six = address.length === 16;
  const family = six ? AF_INET6 : AF_INET;
  const sa = new Uint8Array(six ? SOCKADDR_IN6_SIZE : SOCKADDR_IN_SIZE);
  sa[0] = family & 0xff; // sa_family: host byte order (little-endian on x86_64 and aarch64)
  sa[1] = family >> 8;
  sa[2] = port >> 8; // the port: network byte order
  sa[3] = port & 0xff;
  sa.set(address, six ? 8 : 4); // sin6_flowinfo (4 bytes) comes first; scope id 0
  return sa;
}

/** A 4-byte int option value. */
export function intOption(value: number): Uint8Array<ArrayBuffer> {
  const buf = new Uint8Array(4);
  new DataView(buf.buffer).setInt32(0, value, true);
  return buf;
}

/**
 * A non-blocking listening TCP socket with TCP_NODELAY on `address` (IPv4 or IPv6, from
 * {@linkcode ipAddress}):`port` (0: a free one); the fd and the port,
 * or the errno of the call that failed (nothing is left open then).
 */
export function listenTcp(
  address: number[],
  port: number,
  reusePort: boolean,
): { fd: number; port: number } | { errno: number } {
  const s = sockets()!;
  const fd = s.c.socket(familyOf(address), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return { errno: s.errno() };
  const fail = () => {
    const errno = s.errno();
    s.c.close(fd);
    return { errno };
  };
  const one = intOption(1);
  if (s.c.setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, one, 4) !== 0) return fail();
  if (reusePort && s.c.setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, one, 4) !== 0) return fail();
  // Accepted sockets inherit it (Linux): no call per connection.
  if (s.c.setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, one, 4) !== 0) return fail();
  const bound = sockaddrIn(address, port);
  if (s.c.bind(fd, bound, bound.length) !== 0) return fail();
  if (s.c.listen(fd, 4096) !== 0) return fail();
  const sa = new Uint8Array(SOCKADDR_IN6_SIZE);
  const len = intOption(sa.length);
  if (s.c.getsockname(fd, sa, len) !== 0) return fail();
  return { fd, port: (sa[2] << 8) | sa[3] };
}
