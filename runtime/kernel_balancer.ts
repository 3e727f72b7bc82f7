/**
 * The kernel path of the service port. Where the kernel allows it, connections to this node's
 * replicas are steered to their listening sockets by an sk_lookup program (socket_steering.ts):
 * no NAT, nothing per packet. What cannot be steered (replicas on other nodes, a kernel without
 * sk_lookup, steering turned off) is DNATed as kube-proxy does it: an nftables table per
 * PRISN_HOME that sends connections to a service port straight to its ready replicas, so no byte
 * passes through prisn either way. conntrack keeps each DNATed connection on the replica it was
 * sent to; only new connections see a change of the map.
 *
 * The whole table is rendered from the ports' backend sets and replaced in one `nft -f`
 * transaction on every change, so packets see either the old rules or the new ones, and a table
 * changed or removed by hand is rebuilt by the next change. A port with no backend has no rule:
 * its connections reach the userspace proxy listening on the same port, which holds them until a
 * replica is ready.
 *
 * Reach from other hosts (prerouting) needs the replica to be reachable from outside: a replica on
 * a non-loopback address always is; one on 127.0.0.1 only where `net.ipv4.conf.all.route_localnet`
 * is 1 (prisn does not change that host setting). Other hosts' connections to a port whose
 * replicas are all on loopback go through the userspace proxy instead. Backends on other nodes
 * are masqueraded, and need `net.ipv4.ip_forward = 1` for other hosts' traffic.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { PrisnError } from "../core/errors.ts";
import { type Backend, preferred } from "./proxy.ts";
import { processStartTicks } from "./process.ts";
import { SocketSteering } from "./socket_steering.ts";
import { procSockets, SERVING_STATES } from "./_proc_net.ts";

/** The packet mark of connections sent to a backend on another node (masqueraded). */
const REMOTE_MARK = "0x00500000";

const IPV4_RE = /^(25[0-5]|2[0-4]\d|1?\d?\d)(\.(25[0-5]|2[0-4]\d|1?\d?\d)){3}$/;

/** The nftables table (family `ip`) of one PRISN_HOME: `prisn-` and 10 hex of its path's hash. */
export function tableName(home: string): string {
  return `prisn-${createHash("sha256").update(home).digest("hex").slice(0, 10)}`;
}

/** One service port as the kernel forwards it. */
export interface KernelPort {
  /** The address the port listens on; undefined or "0.0.0.0": every local address. */
  address?: string;
  /** The replicas in rotation. */
  backends: readonly Backend[];
}

/** Options of {@linkcode renderTable}. */
export interface RenderOptions {
  /**
   * Whether connections from other hosts may be sent to loopback replicas
   * (`net.ipv4.conf.all.route_localnet` is 1).
   * @default false
   */
  routeLocalnet?: boolean;
  /** The agent that owns the table, said in its comment (see {@linkcode TableOwner}). */
  owner?: TableOwner;
  /**
   * The nat chains. Without them the table holds no rule and the host tracks no connection
   * (a nat chain turns conntrack on for every packet of the host).
   * @default true
   */
  nat?: boolean;
}

/**
 * The agent process a table belongs to, kept in the table's comment: another home's agent that
 * finds the table while that process is gone (same pid namespace, no process of that pid and
 * start time) removes it, so a killed agent whose home never starts again leaves no rules behind.
 */
export interface TableOwner {
  pid: number;
  /** The process's start time (field 22 of /proc/PID/stat). */
  start: number;
  /** The inode of its pid namespace: pids of another namespace (a container) are not checked. */
  pidns: number;
}

/** This process as a table owner. */
export function thisOwner(): TableOwner {
  let pidns = 0;
  try {
    pidns = Number(/\[(\d+)\]/.exec(Deno.readLinkSync("/proc/self/ns/pid"))?.[1] ?? 0);
  } catch { /* no /proc: 0 matches no table's namespace */ }
  return { pid: Deno.pid, start: processStartTicks(Deno.pid) ?? 0, pidns };
}

const OWNER_RE = /comment "prisn agent pid=(\d+) start=(\d+) pidns=(\d+)"/;

function ownerComment(o: TableOwner): string {
  return `comment "prisn agent pid=${o.pid} start=${o.start} pidns=${o.pidns}"`;
}

/** The owner a table's listing names in its comment, if prisn wrote one. */
export function ownerOf(listing: string): TableOwner | undefined {
  const m = OWNER_RE.exec(listing);
  return m ? { pid: Number(m[1]), start: Number(m[2]), pidns: Number(m[3]) } : undefined;
}

/**
 * The `nft -f` script that replaces table `name` with the rules for `ports`: a nat output chain
 * (this host's own connections), a nat prerouting chain (other hosts'), a masquerade for backends
 * on other nodes, and one chain per port and direction spreading new connections round-robin over
 * the port's preferred backends (this node's, while it has any).
 */
export function renderTable(
  name: string,
  ports: ReadonlyMap<number, KernelPort>,
  options: RenderOptions = {},
): string {
  // One verdict map per hook and kind of match, not a rule per port: every new connection of
  // the host passes these chains, and a rule per port (a fib lookup each) cost 30 % of the host's
  // connection rate with 300 ports, where a map costs one lookup whatever their number.
  const output = new PortJumps();
  const prerouting = new PortJumps();
  const chains: string[] = [];
  for (const [port, { address, backends }] of [...ports].sort(([a], [b]) => a - b)) {
    const anyAddress = address === undefined || address === "0.0.0.0";
    const usable = preferred(backends.filter((b) => IPV4_RE.test(b.host ?? "127.0.0.1")));
    if (usable.length > 0) {
      output.add(anyAddress ? undefined : address, port, `svc-${port}`);
      chains.push(chain(`svc-${port}`, dnat(usable)));
    }
    const external = options.routeLocalnet ? usable : usable.filter((b) => !loopback(b));
    if (external.length > 0 && !(address && loopback({ host: address }))) {
      prerouting.add(anyAddress ? undefined : address, port, `ext-${port}`);
      chains.push(chain(`ext-${port}`, dnat(external)));
    }
  }
  const head = [
    `add table ip ${name}`,
    `delete table ip ${name}`,
    `table ip ${name} {`,
    ...(options.owner ? [`  ${ownerComment(options.owner)}`] : []),
  ];
  if (options.nat === false) return [...head, `}`, ""].join("\n");
  return [
    ...head,
    chain("output", ["type nat hook output priority -100; policy accept;", ...output.rules()]),
    chain("prerouting", [
      "type nat hook prerouting priority -100; policy accept;",
      ...prerouting.rules(),
    ]),
    chain("postrouting", [
      "type nat hook postrouting priority 100; policy accept;",
      `meta mark & ${REMOTE_MARK} == ${REMOTE_MARK} masquerade`,
    ]),
    ...chains,
    `}`,
    "",
  ].join("\n");
}

/** The jumps of one hook: ports on every local address, and ports on one address each. */
class PortJumps {
  readonly #local: string[] = [];
  readonly #onAddress: string[] = [];

  add(address: string | undefined, port: number, target: string): void {
    if (address === undefined) this.#local.push(`${port} : jump ${target}`);
    else this.#onAddress.push(`${address} . ${port} : jump ${target}`);
  }

  rules(): string[] {
    const rules: string[] = [];
    if (this.#local.length) {
      rules.push(`fib daddr type local tcp dport vmap { ${this.#local.join(", ")} }`);
    }
    if (this.#onAddress.length) {
      rules.push(`ip daddr . tcp dport vmap { ${this.#onAddress.join(", ")} }`);
    }
    return rules;
  }
}

function chain(name: string, lines: string[]): string {
  return [`  chain ${name} {`, ...lines.map((l) => `    ${l}`), `  }`].join("\n");
}

/** The rules of a port chain: mark remote backends for masquerade, then DNAT round-robin. */
function dnat(backends: readonly Backend[]): string[] {
  const to = (b: Backend) => `${b.host ?? "127.0.0.1"} . ${b.port}`;
  const rules = backends.some((b) => b.remote) ? [`meta mark set meta mark | ${REMOTE_MARK}`] : [];
  if (backends.length === 1) {
    rules.push(
      `meta l4proto tcp dnat ip to ${backends[0].host ?? "127.0.0.1"}:${backends[0].port}`,
    );
  } else {
    const map = backends.map((b, i) => `${i} : ${to(b)}`).join(", ");
    rules.push(
      `meta l4proto tcp dnat ip addr . port to numgen inc mod ${backends.length} map { ${map} }`,
    );
  }
  return rules;
}

function loopback(b: Pick<Backend, "host">): boolean {
  return (b.host ?? "127.0.0.1").startsWith("127.");
}

/** Why the kernel path cannot be used here, or undefined when it can (by creating the table). */
export type KernelOpenResult =
  | {
    balancer: KernelBalancer;
    /** Other homes' tables removed because their agent is gone: "TABLE (agent PID)". */
    swept: string[];
  }
  | { unavailable: string };

/** Options of {@linkcode KernelBalancer.open}. */
export interface KernelBalancerOptions {
  /** @default "nft" */
  nft?: string;
  /** @default read from /proc/sys/net/ipv4/conf/all/route_localnet */
  routeLocalnet?: boolean;
  /**
   * Why connections are not to be steered with sk_lookup (socket_steering.ts), said where a
   * port's path is shown; every port is DNATed then.
   * @default undefined: steered where the kernel allows it, DNAT only for what cannot be
   */
  steeringOff?: string;
}

/** How the kernel path forwards one port's connections. */
export type KernelPath = "sk_lookup" | "nftables";

/**
 * One PRISN_HOME's nftables table. `open` removes whatever an earlier agent left under the same
 * name and starts empty; `close` removes the table.
 */
export class KernelBalancer {
  readonly table: string;
  readonly #nft: string;
  readonly #routeLocalnet: boolean;
  readonly #owner = thisOwner();
  readonly #ports = new Map<number, KernelPort>();
  #steering?: SocketSteering;
  /** Why ports are not steered (undefined: they are, where they can be). */
  readonly steeringUnavailable?: string;
  /** Whether the table has its nat chains (see {@linkcode RenderOptions.nat}). */
  #nat = false;
  /** The ports the last apply steered. */
  #steered = new Set<number>();
  /** Changes made / changes applied: `apply` skips work a later apply already did. */
  #generation = 0;
  #applied = 0;
  #queue: Promise<void> = Promise.resolve();
  #closed = false;

  private constructor(
    table: string,
    nft: string,
    routeLocalnet: boolean,
    steering: SocketSteering | string,
  ) {
    this.table = table;
    this.#nft = nft;
    this.#routeLocalnet = routeLocalnet;
    if (typeof steering === "string") this.steeringUnavailable = steering;
    else this.#steering = steering;
  }

  /**
   * Takes over the table of `home`: rebuilt empty from scratch (stale rules of a killed agent go).
   * Resolves to why the kernel path is not available when it is not (not Linux, no `nft`, no
   * CAP_NET_ADMIN), having changed nothing.
   */
  static async open(home: string, options: KernelBalancerOptions = {}): Promise<KernelOpenResult> {
    if (Deno.build.os !== "linux") {
      return { unavailable: `nftables needs Linux (${Deno.build.os})` };
    }
    const nft = options.nft ?? "nft";
    const routeLocalnet = options.routeLocalnet ??
      readSysctl("/proc/sys/net/ipv4/conf/all/route_localnet") === "1";
    let steering: SocketSteering | string | undefined = options.steeringOff;
    if (steering === undefined) {
      const opened = SocketSteering.open();
      steering = opened instanceof SocketSteering ? opened : opened.unavailable;
    }
    const balancer = new KernelBalancer(tableName(home), nft, routeLocalnet, steering);
    try {
      await balancer.#run(balancer.#render());
    } catch (e) {
      balancer.#steering?.close();
      return { unavailable: (e as Error).message };
    }
    return { balancer, swept: await balancer.#sweep().catch(() => []) };
  }

  #render(): string {
    const ports = new Map([...this.#ports].filter(([port]) => !this.#steered.has(port)));
    // No nat chain until a port is DNATed: a host whose ports are all steered tracks no
    // connection. Once there, they stay: conntrack must keep translating DNATed connections.
    this.#nat ||= [...ports.values()].some((p) => p.backends.length > 0);
    return renderTable(this.table, ports, {
      routeLocalnet: this.#routeLocalnet,
      owner: this.#owner,
      nat: this.#nat,
    });
  }

  /** Removes the tables of other homes whose agent is gone (see {@linkcode TableOwner}). */
  async #sweep(): Promise<string[]> {
    const swept: string[] = [];
    const names = (await this.#run("list tables\n")).matchAll(
      /^table ip (prisn-[0-9a-f]{10})$/gm,
    );
    for (const [, name] of names) {
      if (name === this.table) continue;
      const owner = ownerOf(await this.#run(`list table ip ${name}\n`).catch(() => ""));
      // No comment (an older prisn's), another pid namespace, or its agent alive: left alone.
      if (!owner || owner.pidns !== this.#owner.pidns || !owner.pidns) continue;
      if (processStartTicks(owner.pid) === owner.start) continue;
      try {
        await this.#run(`add table ip ${name}\ndelete table ip ${name}\n`);
        swept.push(`${name} (agent ${owner.pid})`);
      } catch { /* gone meanwhile, or refused: the next start tries again */ }
    }
    return swept;
  }

  /** The ports with rules, and their backends (what was last asked for). */
  ports(): ReadonlyMap<number, KernelPort> {
    return this.#ports;
  }

  /** Sets the backends of a port; resolves once the kernel forwards accordingly. */
  set(port: number, value: KernelPort): Promise<void> {
    this.#ports.set(port, { address: value.address, backends: [...value.backends] });
    return this.#apply();
  }

  /** Removes a port's rules; its connections reach whatever listens there. */
  delete(port: number): Promise<void> {
    if (!this.#ports.delete(port)) return Promise.resolve();
    return this.#apply();
  }

  /** How connections to `port` are forwarded now; undefined: not at all (no backend). */
  pathOf(port: number): KernelPath | undefined {
    if (this.#steered.has(port)) return "sk_lookup";
    const value = this.#ports.get(port);
    return value && value.backends.length > 0 ? "nftables" : undefined;
  }

  /**
   * What counts the connections backend `backend` of `port` still serves on the kernel path
   * (what a drain waits for), made before the backend leaves the port: connections steered to
   * it are counted at the processes holding its listening socket, DNATed ones at its own port.
   */
  connectionCounter(port: number, backend: Backend): () => number | undefined {
    const steered = this.#steering?.counter(port, backend.id);
    return steered ?? (() => openConnections(backend.port));
  }

  /** Removes the table and the steering. Idempotent; `set` and `delete` do nothing afterwards. */
  async close(): Promise<void> {
    if (this.#closed) return await this.#queue;
    this.#closed = true;
    this.#ports.clear();
    await this.#queue.catch(() => {});
    this.#steering?.close();
    this.#steered.clear();
    await this.#run(`add table ip ${this.table}\ndelete table ip ${this.table}\n`);
  }

  #apply(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    const generation = ++this.#generation;
    const step = this.#queue.catch(() => {}).then(async () => {
      if (this.#closed || this.#applied >= generation) return;
      const current = this.#generation;
      if (this.#steering) this.#steered = this.#steering.sync(this.#ports);
      await this.#run(this.#render());
      this.#applied = current;
    });
    this.#queue = step;
    return step;
  }

  /** Runs an `nft -f` script; resolves to what it printed (a listing). */
  async #run(script: string): Promise<string> {
    let child: Deno.ChildProcess;
    try {
      child = new Deno.Command(this.#nft, {
        args: ["-f", "-"],
        stdin: "piped",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) {
        throw new PrisnError("FAILED", "nft is not installed (apt-get install nftables)");
      }
      throw new PrisnError("FAILED", `cannot run nft: ${(e as Error).message}`, { cause: e });
    }
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode(script)).catch(() => {});
    await writer.close().catch(() => {});
    const { code, stdout, stderr } = await child.output();
    if (code !== 0) {
      const why = new TextDecoder().decode(stderr).trim().split("\n")[0] || `exit ${code}`;
      throw new PrisnError("FAILED", `nft refused the rules of table ${this.table}: ${why}`);
    }
    return new TextDecoder().decode(stdout);
  }
}

function readSysctl(path: string): string | undefined {
  try {
    return Deno.readTextFileSync(path).trim();
  } catch {
    return undefined;
  }
}

/**
 * Connections this host's TCP stack holds open on local `port` (a replica's accepted
 * connections), from /proc/net/tcp and tcp6: what a drain on the kernel path waits for, since no
 * byte of those connections passes through prisn. Undefined where /proc cannot be read.
 */
export function openConnections(port: number): number | undefined {
  return socketsOnPort(port, SERVING_STATES);
}

/**
 * Sockets of this host on local `port` in one of `states` (hex, as /proc/net/tcp writes them:
 * "0A" is LISTEN), IPv4 and IPv6. Undefined where /proc cannot be read.
 */
export function socketsOnPort(port: number, states: ReadonlySet<string>): number | undefined {
  return procSockets()?.filter((s) => s.port === port && states.has(s.state)).length;
}
