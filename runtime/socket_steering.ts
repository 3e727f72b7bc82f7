/**
 * Socket steering, the first choice of the kernel path: an eBPF `sk_lookup` program (see
 * _bpf.ts) hands each new connection to a service port straight to the listening socket of a
 * ready replica, round-robin. No address is rewritten and no NAT state is kept, so a connection
 * costs what a connection to the replica's own port costs, keep-alive or not: the replica
 * accepts it as a connection to the service port itself.
 *
 * The replica's listening socket is found in /proc (the LISTEN entry of its port in
 * /proc/net/tcp or tcp6, then the process holding that socket) and borrowed with pidfd_getfd to
 * put it in the socket map; the copy is closed at once, the map does not keep the socket open.
 * When the replica closes its socket (it stopped, it crashed), the kernel takes it out of the map
 * and its connections reach the userspace proxy on the port until the agent updates the port.
 *
 * Connections from other hosts to the node's address are steered as well, to replicas on
 * 127.0.0.1 too (no route_localnet needed): the program runs for every locally delivered SYN.
 *
 * The program is attached through a link held by the agent: when the agent exits, killed or not,
 * the kernel detaches it, so no stale steering outlives its agent.
 *
 * @module
 */

import {
  attachSteering,
  borrowFd,
  closeFd,
  mapDelete,
  mapUpdate,
  MAX_SLOTS_PER_PORT,
  PORT_VALUE_SIZE,
  SOCKET_SLOTS,
  type SteeringObjects,
} from "./_bpf.ts";
import { type Backend, preferred } from "./proxy.ts";
import { LISTEN, type ProcSocket, procSockets, SERVING_STATES } from "./_proc_net.ts";

const IPV4_RE = /^(25[0-5]|2[0-4]\d|1?\d?\d)(\.(25[0-5]|2[0-4]\d|1?\d?\d)){3}$/;

/** One backend's socket in the socket map. */
interface Steered {
  slot: number;
  inode: string;
  /** The backend it was found for: the same again (with a pid) is not looked for again. */
  host: string;
  port: number;
  pid?: number;
}

/** A port steered to its backends. */
interface SteeredPort {
  address?: string;
  /** Backend id → its socket. */
  backends: Map<string, Steered>;
}

/** The steering of one agent: one program, one ports map, one socket map. */
export class SocketSteering {
  readonly #objects: SteeringObjects;
  readonly #ports = new Map<number, SteeredPort>();
  readonly #freeSlots: number[] = [];
  #nextSlot = 0;
  #closed = false;

  private constructor(objects: SteeringObjects) {
    this.#objects = objects;
  }

  /** Attaches the program to this network namespace, or says why it cannot be. */
  static open(): SocketSteering | { unavailable: string } {
    if (Deno.build.os !== "linux") {
      return { unavailable: `sk_lookup needs Linux (${Deno.build.os})` };
    }
    try {
      return new SocketSteering(attachSteering());
    } catch (e) {
      return { unavailable: `sk_lookup is not available: ${(e as Error).message}` };
    }
  }

  /**
   * Steers every port of `ports` that can be (see {@linkcode steer}) over its preferred backends
   * (this node's, while it has any), stops steering the others and those no longer there; the
   * ports steered now.
   */
  sync(
    ports: ReadonlyMap<number, { address?: string; backends: readonly Backend[] }>,
  ): Set<number> {
    const listeners = lazy(listeningSockets);
    for (const port of [...this.#ports.keys()]) {
      if (!ports.has(port)) this.release(port);
    }
    const steered = new Set<number>();
    for (const [port, { address, backends }] of ports) {
      try {
        if (this.steer(port, address, preferred(backends), listeners)) steered.add(port);
      } catch {
        // The kernel refused a map change: the port is DNATed instead.
        try {
          this.release(port);
        } catch { /* its entries go with the maps at close */ }
      }
    }
    return steered;
  }

  /**
   * Steers new connections to `port` (on `address`, or every local address) over `backends`;
   * false, and the port not steered, when that cannot be done: a backend on another node or on
   * an address that is not IPv4, more backends than a port's list holds, or a backend whose
   * listening socket cannot be found or borrowed. No backend: the port is not steered.
   *
   * A backend steered before with the same address, port and process is not looked for again
   * (/proc/net/tcp of a busy host is large): if that process reopens its socket, connections
   * reach the userspace proxy until the backend changes.
   */
  steer(
    port: number,
    address: string | undefined,
    backends: readonly Backend[],
    listeners: () => ProcSocket[] = lazy(listeningSockets),
  ): boolean {
    if (this.#closed) return false;
    const any = address === undefined || address === "0.0.0.0";
    if (
      backends.length === 0 || backends.length > MAX_SLOTS_PER_PORT ||
      backends.some((b) => b.remote || !IPV4_RE.test(b.host ?? "127.0.0.1")) ||
      (!any && !IPV4_RE.test(address!))
    ) {
      this.release(port);
      return false;
    }
    const old = this.#ports.get(port);
    if (old && old.address !== address) this.release(port);
    const current = this.#ports.get(port)?.backends ?? new Map<string, Steered>();
    const next = new Map<string, Steered>();
    const added: Steered[] = [];
    const fail = () => {
      for (const s of added) this.#freeSlot(s.slot);
      this.release(port);
      return false;
    };
    for (const b of backends) {
      const host = b.host ?? "127.0.0.1";
      const had = current.get(b.id);
      const same = had && had.host === host && had.port === b.port;
      if (same && had.pid !== undefined && had.pid === b.pid) {
        next.set(b.id, had);
        continue;
      }
      const inode = listenerOf(listeners(), host, b.port);
      if (!inode) return fail();
      if (same && had.inode === inode) {
        next.set(b.id, { ...had, pid: b.pid });
        continue;
      }
      const slot = this.#takeSlot();
      if (slot === undefined || !this.#insert(slot, inode, b.pid)) {
        if (slot !== undefined) this.#freeSlot(slot);
        return fail();
      }
      const steered = { slot, inode, host, port: b.port, pid: b.pid };
      added.push(steered);
      next.set(b.id, steered);
    }
    const unchanged = next.size === current.size &&
      [...next].every(([id, s]) => current.get(id)?.slot === s.slot);
    try {
      // Unchanged: the entry (and its round-robin count) stays as it is.
      if (!unchanged || !old) {
        mapUpdate(
          this.#objects.ports,
          portKey(any ? undefined : address, port),
          portValue([...next.values()]),
        );
      }
    } catch (e) {
      for (const s of added) this.#freeSlot(s.slot);
      throw e;
    }
    for (const [id, s] of current) {
      if (next.get(id)?.slot !== s.slot) this.#freeSlot(s.slot);
    }
    this.#ports.set(port, { address, backends: next });
    return true;
  }

  /** Stops steering `port`; its connections reach whatever listens there. */
  release(port: number): void {
    const steered = this.#ports.get(port);
    if (!steered) return;
    this.#ports.delete(port);
    if (!this.#closed) {
      mapDelete(
        this.#objects.ports,
        portKey(steered.address === "0.0.0.0" ? undefined : steered.address, port),
      );
    }
    for (const s of steered.backends.values()) this.#freeSlot(s.slot);
  }

  /**
   * What counts the connections to `port` that the processes holding backend `id`'s listening
   * socket still serve (what a drain waits for; it keeps counting after the backend leaves the
   * port), or undefined when the port does not steer to it.
   */
  counter(port: number, id: string): (() => number) | undefined {
    const steered = this.#ports.get(port)?.backends.get(id);
    if (!steered) return undefined;
    const { inode } = steered;
    return () => servedBy(holdersOf(inode), port);
  }

  /** Detaches the program; nothing is steered afterwards. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#ports.clear();
    closeFd(this.#objects.link);
    closeFd(this.#objects.ports);
    closeFd(this.#objects.sockets);
  }

  #takeSlot(): number | undefined {
    const free = this.#freeSlots.pop();
    if (free !== undefined) return free;
    return this.#nextSlot < SOCKET_SLOTS ? this.#nextSlot++ : undefined;
  }

  #freeSlot(slot: number): void {
    if (!this.#closed) mapDelete(this.#objects.sockets, u32(slot));
    this.#freeSlots.push(slot);
  }

  /**
   * Puts the socket of `inode` in `slot`: borrowed from a process holding it (looked for in the
   * tree of process `hint` first), then let go.
   */
  #insert(slot: number, inode: string, hint?: number): boolean {
    for (const { pid, fd } of holdersOf(inode, true, hint)) {
      const copy = borrowFd(pid, fd);
      if (typeof copy !== "number") continue;
      try {
        mapUpdate(this.#objects.sockets, u32(slot), u32(copy));
        return true;
      } catch {
        return false;
      } finally {
        closeFd(copy);
      }
    }
    return false;
  }
}

function u32(n: number): Uint8Array<ArrayBuffer> {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n, true);
  return b;
}

/** The ports map's key: the IPv4 address in network order (0: any), the port in host order. */
function portKey(address: string | undefined, port: number): Uint8Array<ArrayBuffer> {
  const key = new Uint8Array(8);
  if (address) key.set(address.split(".").map(Number), 0);
  new DataView(key.buffer).setUint32(4, port, true);
  return key;
}

function portValue(backends: readonly Steered[]): Uint8Array<ArrayBuffer> {
  const value = new Uint8Array(PORT_VALUE_SIZE);
  const v = new DataView(value.buffer);
  v.setUint32(0, backends.length, true);
  backends.forEach((b, i) => v.setUint32(8 + 4 * i, b.slot, true));
  return value;
}

/** `f`'s value, computed at the first call only. */
function lazy<T>(f: () => T): () => T {
  let value: { v: T } | undefined;
  return () => (value ??= { v: f() }).v;
}

function listeningSockets(): ProcSocket[] {
  return procSockets()?.filter((s) => s.state === LISTEN) ?? [];
}

/** /proc/net/tcp's hex of an IPv4 address (the u32 in host order: little-endian). */
function hex4(host: string): string {
  return host.split(".").map((p) => Number(p).toString(16).padStart(2, "0").toUpperCase())
    .reverse().join("");
}

/**
 * The inode of the socket listening for `host`:`port`: bound to that address, else to every
 * address (IPv4 `0.0.0.0`, or IPv6 `::` or `::ffff:host`, which take IPv4 connections).
 */
function listenerOf(listeners: ProcSocket[], host: string, port: number): string | undefined {
  const h = hex4(host);
  const candidates = [h, "00000000", `0000000000000000FFFF0000${h}`, "0".repeat(32)];
  for (const address of candidates) {
    const found = listeners.find((s) => s.port === port && s.address === address);
    if (found) return found.inode;
  }
  return undefined;
}

/**
 * Processes (and their fds) holding socket `inode`; the first one only when `first`, looked for
 * in the tree of process `hint` before every other process.
 */
function holdersOf(inode: string, first = false, hint?: number): { pid: number; fd: number }[] {
  const link = `socket:[${inode}]`;
  const out: { pid: number; fd: number }[] = [];
  const seen = new Set<number>();
  const pids = function* () {
    if (hint) yield* tree(hint);
    for (const entry of readDir("/proc")) {
      const pid = Number(entry);
      if (Number.isInteger(pid) && pid > 0) yield pid;
    }
  };
  for (const pid of pids()) {
    if (seen.has(pid)) continue;
    seen.add(pid);
    for (const fd of readDir(`/proc/${pid}/fd`)) {
      let target: string;
      try {
        target = Deno.readLinkSync(`/proc/${pid}/fd/${fd}`);
      } catch {
        continue;
      }
      if (target === link) {
        out.push({ pid, fd: Number(fd) });
        if (first) return out;
        break;
      }
    }
  }
  return out;
}

/** Process `root` and its descendants, parents first (from /proc/PID/task/TID/children). */
function tree(root: number): number[] {
  const out: number[] = [];
  const queue = [root];
  while (queue.length > 0 && out.length < 4096) {
    const pid = queue.shift()!;
    out.push(pid);
    for (const tid of readDir(`/proc/${pid}/task`)) {
      try {
        const children = Deno.readTextFileSync(`/proc/${pid}/task/${tid}/children`).trim();
        if (children) queue.push(...children.split(" ").map(Number));
      } catch { /* gone */ }
    }
  }
  return out;
}

/** Sockets with local `port` the processes `holders` hold in a serving state. */
function servedBy(holders: { pid: number }[], port: number): number {
  const serving = new Set(
    (procSockets() ?? []).filter((s) => s.port === port && SERVING_STATES.has(s.state)).map((s) =>
      `socket:[${s.inode}]`
    ),
  );
  if (serving.size === 0) return 0;
  let count = 0;
  for (const { pid } of holders) {
    for (const fd of readDir(`/proc/${pid}/fd`)) {
      try {
        if (serving.has(Deno.readLinkSync(`/proc/${pid}/fd/${fd}`))) count++;
      } catch { /* closed meanwhile */ }
    }
  }
  return count;
}

function readDir(path: string): string[] {
  try {
    return [...Deno.readDirSync(path)].map((e) => e.name);
  } catch {
    return [];
  }
}
