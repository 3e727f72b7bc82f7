/**
 * The few libc calls the agent makes through Deno's FFI, Linux only: non-blocking FIFOs watched
 * by one epoll instance (see output_collector.ts), and the open-files limit.
 *
 * Why FFI: Deno reads a FIFO opened with `Deno.open` on a thread of its blocking pool, which holds
 * that thread for as long as the read waits. Two readers per replica exhausted the pool at 16
 * replicas and every other file operation of the agent waited forever. `O_NONBLOCK` plus epoll
 * needs no thread per reader; Deno's API offers neither for FIFOs, and `node:net` cannot open a
 * FIFO's fd in Deno (it fails with EEXIST).
 *
 * @module
 */

/** open(2) and epoll flags. The same values on x86_64 and aarch64 (asm-generic). */
export const O_RDWR = 0o2;
export const O_NONBLOCK = 0o4000;
export const O_CLOEXEC = 0o2000000;
export const EPOLL_CLOEXEC = 0o2000000;
export const EFD_NONBLOCK = 0o4000;
export const EFD_CLOEXEC = 0o2000000;
export const EPOLL_CTL_ADD = 1;
export const EPOLL_CTL_DEL = 2;
export const EPOLLIN = 0x1;
export const RLIMIT_NOFILE = 7;

/**
 * `struct epoll_event`: a u32 of events, then a u64 of user data. Packed (12 bytes) on x86_64,
 * naturally aligned (16 bytes) elsewhere.
 */
export const EPOLL_EVENT_SIZE = Deno.build.arch === "x86_64" ? 12 : 16;
export const EPOLL_DATA_OFFSET = Deno.build.arch === "x86_64" ? 4 : 8;

const SYMBOLS = {
  open: { parameters: ["buffer", "i32", "u32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  read: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  write: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  mkfifo: { parameters: ["buffer", "u32"], result: "i32" },
  epoll_create1: { parameters: ["i32"], result: "i32" },
  epoll_ctl: { parameters: ["i32", "i32", "i32", "buffer"], result: "i32" },
  /** Runs on one thread of Deno's blocking pool while it waits (the only one the agent holds). */
  epoll_wait: { parameters: ["i32", "buffer", "i32", "i32"], result: "i32", nonblocking: true },
  eventfd: { parameters: ["u32", "i32"], result: "i32" },
  getrlimit: { parameters: ["i32", "buffer"], result: "i32" },
  setrlimit: { parameters: ["i32", "buffer"], result: "i32" },
} as const;

export type Libc = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

let cached: Libc | null | undefined;

/** libc's symbols, or null where they are not to be had (not Linux, no FFI permission, musl…). */
export function libc(): Libc | null {
  if (cached === undefined) cached = openLibc(SYMBOLS);
  return cached;
}

/** `symbols` of the C library, or null (not Linux, no FFI permission, no such library). */
export function openLibc<S extends Deno.ForeignLibraryInterface>(
  symbols: S,
): Deno.DynamicLibrary<S>["symbols"] | null {
  if (Deno.build.os !== "linux") return null;
  for (const name of ["libc.so.6", "libc.musl-x86_64.so.1", "libc.musl-aarch64.so.1"]) {
    try {
      return Deno.dlopen(name, symbols).symbols;
    } catch { /* not this one, or FFI not allowed */ }
  }
  return null;
}

/**
 * The calling thread's errno, read through the pointer libc's `__errno_location` gives (a
 * symbol opened with {@linkcode openLibc}), or null where it gives none.
 */
export function errnoReader(location: () => Deno.PointerValue): (() => number) | null {
  const where = location();
  if (!where) return null;
  const view = new Deno.UnsafePointerView(where);
  return () => view.getInt32();
}

const encoder = new TextEncoder();

/** A NUL-terminated copy of a path, for calls that take a `const char *`. */
export function cString(s: string): Uint8Array<ArrayBuffer> {
  const bytes = encoder.encode(s);
  const out = new Uint8Array(bytes.length + 1);
  out.set(bytes);
  return out;
}

/** The open-files limit (soft, hard), or undefined where it cannot be read. */
export function fileLimit(): { soft: number; hard: number } | undefined {
  const c = libc();
  if (!c) return undefined;
  const buf = new BigUint64Array(2);
  if (c.getrlimit(RLIMIT_NOFILE, new Uint8Array(buf.buffer)) !== 0) return undefined;
  return { soft: clamp(buf[0]), hard: clamp(buf[1]) };
}

/**
 * Raises the soft open-files limit to the hard one (as Go and Node do at start), so a node with
 * many replicas does not run out of descriptors at systemd's default of 1024. Returns the soft
 * limit there was before, for children to get back (see OutputFifos.wrap).
 */
export function raiseFileLimit(): number | undefined {
  const c = libc();
  if (!c) return undefined;
  const buf = new BigUint64Array(2);
  const raw = new Uint8Array(buf.buffer);
  if (c.getrlimit(RLIMIT_NOFILE, raw) !== 0) return undefined;
  const before = clamp(buf[0]);
  if (buf[0] < buf[1]) {
    buf[0] = buf[1];
    c.setrlimit(RLIMIT_NOFILE, raw);
  }
  return before;
}

function clamp(v: bigint): number {
  return v > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(v);
}
