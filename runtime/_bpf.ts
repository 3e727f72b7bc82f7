/**
 * The few eBPF calls socket steering needs (see socket_steering.ts), through Deno's FFI and the
 * `bpf(2)` system call, Linux x86_64 and aarch64 only: two maps, one `sk_lookup` program
 * assembled here instruction by instruction (no compiler, no libbpf), a link that attaches it to
 * this network namespace, and `pidfd_getfd(2)` to borrow a replica's listening socket.
 *
 * The program runs for every new connection (a TCP SYN, before the listening socket is looked
 * up) to a local address of this namespace: it looks the destination up in the ports map,
 * `address . port` first and then `0 . port` (every local address), takes the next slot of that
 * port's round-robin list, and hands the connection to the socket in that slot of the socket map.
 * No entry, an empty slot (the replica's socket closed) or a socket that cannot take it: the
 * connection goes on as if there were no program (the userspace proxy listens on the port).
 *
 * @module
 */

import { errnoReader, openLibc } from "./_libc.ts";

/** Slots in one port's round-robin list (a power of two: the program masks the index with it). */
export const MAX_SLOTS_PER_PORT = 256;
/** Sockets the socket map holds, over all ports. */
export const SOCKET_SLOTS = 16384;

/** A ports-map value: u32 count, u32 round-robin counter, u32 slots[MAX_SLOTS_PER_PORT]. */
export const PORT_VALUE_SIZE = 8 + 4 * MAX_SLOTS_PER_PORT;

const SYS_BPF = Deno.build.arch === "x86_64" ? 321 : 280;
/** Newer system calls have one number on every architecture. */
const SYS_PIDFD_OPEN = 434;
const SYS_PIDFD_GETFD = 438;

const BPF_MAP_CREATE = 0;
const BPF_MAP_UPDATE_ELEM = 2;
const BPF_MAP_DELETE_ELEM = 3;
const BPF_PROG_LOAD = 5;
const BPF_LINK_CREATE = 28;
const BPF_MAP_TYPE_HASH = 1;
const BPF_MAP_TYPE_SOCKMAP = 15;
const BPF_PROG_TYPE_SK_LOOKUP = 30;
const BPF_SK_LOOKUP = 36;
const BPF_ANY = 0n;

const SYMBOLS = {
  bpf: { name: "syscall", parameters: ["i64", "i64", "buffer", "i64"], result: "i64" },
  pidfd_open: { name: "syscall", parameters: ["i64", "i64", "i64"], result: "i64" },
  pidfd_getfd: { name: "syscall", parameters: ["i64", "i64", "i64", "i64"], result: "i64" },
  open: { parameters: ["buffer", "i32", "u32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  __errno_location: { parameters: [], result: "pointer" },
} as const;

type Symbols = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

let cached: { c: Symbols; errno: () => number } | null | undefined;

function lib(): { c: Symbols; errno: () => number } | null {
  if (cached !== undefined) return cached;
  if (Deno.build.arch !== "x86_64" && Deno.build.arch !== "aarch64") return cached = null;
  const c = openLibc(SYMBOLS);
  const errno = c && errnoReader(c.__errno_location);
  return cached = c && errno ? { c, errno } : null;
}

/** A failed call, with its errno. */
export class BpfError extends Error {
  readonly errno: number;
  constructor(what: string, errno: number, detail = "") {
    super(
      `${what} failed (errno ${errno}${
        ERRNO_NAMES[errno] ? ` ${ERRNO_NAMES[errno]}` : ""
      })${detail}`,
    );
    this.name = "BpfError";
    this.errno = errno;
  }
}

const ERRNO_NAMES: Record<number, string> = {
  1: "EPERM",
  2: "ENOENT",
  3: "ESRCH",
  9: "EBADF",
  13: "EACCES",
  22: "EINVAL",
  38: "ENOSYS",
  95: "EOPNOTSUPP",
};

function address(buf: Uint8Array<ArrayBuffer>): bigint {
  return BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(buf)));
}

function bpf(cmd: number, attr: Uint8Array<ArrayBuffer>, what: string, log?: () => string): number {
  const l = lib();
  if (!l) throw new BpfError(what, 38);
  const r = Number(l.c.bpf(BigInt(SYS_BPF), BigInt(cmd), attr, BigInt(attr.length)));
  if (r < 0) {
    const errno = l.errno();
    const detail = log?.().trim();
    throw new BpfError(what, errno, detail ? `: ${detail.split("\n").slice(-3).join(" | ")}` : "");
  }
  return r;
}

/** Closes a descriptor these calls returned. */
export function closeFd(fd: number): void {
  lib()?.c.close(fd);
}

function createMap(type: number, key: number, value: number, entries: number): number {
  const attr = new Uint8Array(72);
  const v = new DataView(attr.buffer);
  v.setUint32(0, type, true);
  v.setUint32(4, key, true);
  v.setUint32(8, value, true);
  v.setUint32(12, entries, true);
  return bpf(BPF_MAP_CREATE, attr, "bpf(BPF_MAP_CREATE)");
}

/** Sets `key` to `value` in map `fd`. */
export function mapUpdate(
  fd: number,
  key: Uint8Array<ArrayBuffer>,
  value: Uint8Array<ArrayBuffer>,
): void {
  const attr = new Uint8Array(32);
  const v = new DataView(attr.buffer);
  v.setUint32(0, fd, true);
  v.setBigUint64(8, address(key), true);
  v.setBigUint64(16, address(value), true);
  v.setBigUint64(24, BPF_ANY, true);
  bpf(BPF_MAP_UPDATE_ELEM, attr, "bpf(BPF_MAP_UPDATE_ELEM)");
}

/**
 * Removes `key` from map `fd`; a key that is not there is no error (a hash map says ENOENT, an
 * empty slot of a socket map EINVAL).
 */
export function mapDelete(fd: number, key: Uint8Array<ArrayBuffer>): void {
  const attr = new Uint8Array(32);
  const v = new DataView(attr.buffer);
  v.setUint32(0, fd, true);
  v.setBigUint64(8, address(key), true);
  try {
    bpf(BPF_MAP_DELETE_ELEM, attr, "bpf(BPF_MAP_DELETE_ELEM)");
  } catch (e) {
    if ((e as BpfError).errno !== 2 && (e as BpfError).errno !== 22) throw e;
  }
}

/** eBPF instructions, 8 bytes each: opcode, dst/src registers, offset, immediate. */
class Assembler {
  readonly #code: number[][] = [];
  readonly #labels = new Map<string, number>();
  readonly #jumps: { at: number; label: string }[] = [];

  #op(code: number, dst: number, src: number, off: number, imm: number): void {
    this.#code.push([code, dst, src, off, imm]);
  }
  /** dst = src (64-bit). */
  mov(dst: number, src: number): this {
    this.#op(0xbf, dst, src, 0, 0);
    return this;
  }
  /** dst = imm. */
  movImm(dst: number, imm: number): this {
    this.#op(0xb7, dst, 0, 0, imm);
    return this;
  }
  addImm(dst: number, imm: number): this {
    this.#op(0x07, dst, 0, 0, imm);
    return this;
  }
  add(dst: number, src: number): this {
    this.#op(0x0f, dst, src, 0, 0);
    return this;
  }
  andImm(dst: number, imm: number): this {
    this.#op(0x57, dst, 0, 0, imm);
    return this;
  }
  lshImm(dst: number, imm: number): this {
    this.#op(0x67, dst, 0, 0, imm);
    return this;
  }
  /** dst %= src (unsigned, 64-bit). */
  mod(dst: number, src: number): this {
    this.#op(0x9f, dst, src, 0, 0);
    return this;
  }
  /** dst = *(u32 *)(src + off). */
  load32(dst: number, src: number, off: number): this {
    this.#op(0x61, dst, src, off, 0);
    return this;
  }
  /** *(u32 *)(dst + off) = src. */
  store32(dst: number, off: number, src: number): this {
    this.#op(0x63, dst, src, off, 0);
    return this;
  }
  /** *(u32 *)(dst + off) = imm. */
  store32Imm(dst: number, off: number, imm: number): this {
    this.#op(0x62, dst, 0, off, imm);
    return this;
  }
  /** dst = the map of descriptor `fd` (a 16-byte load the kernel resolves). */
  loadMap(dst: number, fd: number): this {
    this.#op(0x18, dst, 1, 0, fd);
    this.#op(0, 0, 0, 0, 0);
    return this;
  }
  call(helper: number): this {
    this.#op(0x85, 0, 0, 0, helper);
    return this;
  }
  /** if dst == imm goto label. */
  jeq(dst: number, imm: number, label: string): this {
    this.#jumps.push({ at: this.#code.length, label });
    this.#op(0x15, dst, 0, 0, imm);
    return this;
  }
  /** if dst != imm goto label. */
  jne(dst: number, imm: number, label: string): this {
    this.#jumps.push({ at: this.#code.length, label });
    this.#op(0x55, dst, 0, 0, imm);
    return this;
  }
  label(name: string): this {
    this.#labels.set(name, this.#code.length);
    return this;
  }
  exit(): this {
    this.#op(0x95, 0, 0, 0, 0);
    return this;
  }
  bytes(): Uint8Array<ArrayBuffer> {
    for (const { at, label } of this.#jumps) {
      const target = this.#labels.get(label);
      if (target === undefined) throw new Error(`no label ${label}`);
      this.#code[at][3] = target - at - 1;
    }
    const out = new Uint8Array(this.#code.length * 8);
    const v = new DataView(out.buffer);
    this.#code.forEach(([code, dst, src, off, imm], i) => {
      v.setUint8(i * 8, code);
      v.setUint8(i * 8 + 1, (src << 4) | dst);
      v.setInt16(i * 8 + 2, off, true);
      v.setInt32(i * 8 + 4, imm, true);
    });
    return out;
  }
}

const HELPER_MAP_LOOKUP = 1;
const HELPER_SK_RELEASE = 86;
const HELPER_SK_ASSIGN = 124;
const SK_PASS = 1;
const AF_INET = 2;
const IPPROTO_TCP = 6;
/** Offsets in `struct bpf_sk_lookup`. */
const CTX_FAMILY = 8;
const CTX_PROTOCOL = 12;
const CTX_LOCAL_IP4 = 40;
const CTX_LOCAL_PORT = 60;

/** The steering program over the two maps (see the module's comment). */
function program(ports: number, sockets: number): Uint8Array<ArrayBuffer> {
  // r1: the context; r6 keeps it. r10: the frame; the ports key is at r10-8 (address, port),
  // the socket map's key at r10-12.
  const a = new Assembler()
    .mov(6, 1)
    .load32(2, 6, CTX_FAMILY)
    .jne(2, AF_INET, "pass")
    .load32(2, 6, CTX_PROTOCOL)
    .jne(2, IPPROTO_TCP, "pass")
    .load32(2, 6, CTX_LOCAL_IP4)
    .store32(10, -8, 2)
    .load32(2, 6, CTX_LOCAL_PORT)
    .store32(10, -4, 2)
    .loadMap(1, ports)
    .mov(2, 10).addImm(2, -8)
    .call(HELPER_MAP_LOOKUP)
    .jne(0, 0, "found")
    .store32Imm(10, -8, 0)
    .loadMap(1, ports)
    .mov(2, 10).addImm(2, -8)
    .call(HELPER_MAP_LOOKUP)
    .jeq(0, 0, "pass")
    .label("found")
    .mov(7, 0)
    .load32(8, 7, 0) // count
    .jeq(8, 0, "pass")
    .load32(9, 7, 4) // the round-robin counter: a lost increment only repeats a slot
    .mov(1, 9).addImm(1, 1)
    .store32(7, 4, 1)
    .mod(9, 8)
    .andImm(9, MAX_SLOTS_PER_PORT - 1)
    .lshImm(9, 2)
    .add(7, 9)
    .load32(2, 7, 8)
    .store32(10, -12, 2)
    .loadMap(1, sockets)
    .mov(2, 10).addImm(2, -12)
    .call(HELPER_MAP_LOOKUP)
    .jeq(0, 0, "pass")
    .mov(7, 0)
    .mov(1, 6).mov(2, 7).movImm(3, 0)
    .call(HELPER_SK_ASSIGN)
    .mov(1, 7)
    .call(HELPER_SK_RELEASE)
    .label("pass")
    .movImm(0, SK_PASS)
    .exit();
  return a.bytes();
}

function loadProgram(insns: Uint8Array<ArrayBuffer>): number {
  const license = new TextEncoder().encode("GPL\0") as Uint8Array<ArrayBuffer>;
  const log = new Uint8Array(65536);
  const attr = new Uint8Array(128);
  const v = new DataView(attr.buffer);
  v.setUint32(0, BPF_PROG_TYPE_SK_LOOKUP, true);
  v.setUint32(4, insns.length / 8, true);
  v.setBigUint64(8, address(insns), true);
  v.setBigUint64(16, address(license), true);
  v.setUint32(24, 1, true); // log_level: the verifier says why it refused
  v.setUint32(28, log.length, true);
  v.setBigUint64(32, address(log), true);
  attr.set(new TextEncoder().encode("prisn_steer"), 48);
  v.setUint32(68, BPF_SK_LOOKUP, true); // expected_attach_type
  return bpf(BPF_PROG_LOAD, attr, "bpf(BPF_PROG_LOAD)", () => {
    const end = log.indexOf(0);
    return new TextDecoder().decode(log.subarray(0, end < 0 ? log.length : end));
  });
}

function linkToNetns(prog: number): number {
  const l = lib()!;
  const path = new TextEncoder().encode("/proc/self/ns/net\0") as Uint8Array<ArrayBuffer>;
  const netns = l.c.open(path, 0o2000000, 0); // O_RDONLY | O_CLOEXEC
  if (netns < 0) throw new BpfError("open(/proc/self/ns/net)", l.errno());
  try {
    const attr = new Uint8Array(64);
    const v = new DataView(attr.buffer);
    v.setUint32(0, prog, true);
    v.setUint32(4, netns, true);
    v.setUint32(8, BPF_SK_LOOKUP, true);
    return bpf(BPF_LINK_CREATE, attr, "bpf(BPF_LINK_CREATE)");
  } finally {
    l.c.close(netns);
  }
}

/** The two maps and the attached program; closing `link` detaches it. */
export interface SteeringObjects {
  ports: number;
  sockets: number;
  link: number;
}

/**
 * Creates the maps, loads the program and attaches it to this network namespace. The program
 * stays attached while the returned link is open: a killed process leaves nothing behind.
 *
 * @throws {BpfError} where the kernel refuses (no CAP_BPF/CAP_NET_ADMIN, no sk_lookup, …)
 */
export function attachSteering(): SteeringObjects {
  const ports = createMap(BPF_MAP_TYPE_HASH, 8, PORT_VALUE_SIZE, 4096);
  let sockets = -1;
  let prog = -1;
  try {
    sockets = createMap(BPF_MAP_TYPE_SOCKMAP, 4, 4, SOCKET_SLOTS);
    prog = loadProgram(program(ports, sockets));
    const link = linkToNetns(prog);
    return { ports, sockets, link };
  } catch (e) {
    if (sockets >= 0) closeFd(sockets);
    closeFd(ports);
    throw e;
  } finally {
    if (prog >= 0) closeFd(prog); // the link holds the program
  }
}

/**
 * A copy, in this process, of descriptor `fd` of process `pid` (pidfd_getfd), or the errno.
 * Needs the right to ptrace that process (root, or the same user without Yama's restriction).
 */
export function borrowFd(pid: number, fd: number): number | { errno: number } {
  const l = lib();
  if (!l) return { errno: 38 };
  const pidfd = Number(l.c.pidfd_open(BigInt(SYS_PIDFD_OPEN), BigInt(pid), 0n));
  if (pidfd < 0) return { errno: l.errno() };
  const copy = Number(l.c.pidfd_getfd(BigInt(SYS_PIDFD_GETFD), BigInt(pidfd), BigInt(fd), 0n));
  const errno = l.errno();
  l.c.close(pidfd);
  return copy < 0 ? { errno } : copy;
}
