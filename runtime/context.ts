import { PrisnError } from "../core/errors.ts";
import type { Paths } from "../core/paths.ts";
import type { Records } from "../core/records.ts";
import type { ProcessLedger, RunHistory } from "../core/run_history.ts";
import type { DesiredState } from "../core/desired_state.ts";
import { LocalDesiredState } from "../core/local_desired_state.ts";
import type { Artifacts } from "../core/artifacts.ts";
import { LocalArtifacts } from "../core/local_artifacts.ts";
import type { LogStore } from "../core/log_store.ts";
import type { Members } from "../core/backends.ts";
import { DiskHealth } from "./disk_health.ts";
import { DiskAwareLogs, FileLogs } from "./logs.ts";
import { ResilientArtifacts } from "./resilient_artifacts.ts";
import { ResilientHistory } from "./resilient_history.ts";
import { OutputCollector } from "./output_collector.ts";
import type { NodeBalancer } from "./service_port.ts";

/** What every part of the agent shares: the data root, the records and this node's name. */
export interface AgentContext {
  paths: Paths;
  /** Run history, events and this node's process records. */
  records: RunHistory & ProcessLedger;
  /** Deployments and versions: every change goes through here, so watchers see it. */
  desired: DesiredState;
  /** Versions' files. */
  artifacts: Artifacts;
  /** Replicas' and runs' output. */
  logs: LogStore;
  /** Where service ports listen and other nodes reach this one. @default all addresses */
  address?: string;
  /** The cluster's nodes and leader; undefined on a single node. */
  members?: Members;
  /** How service ports balance. @default the userspace proxy everywhere */
  balancer?: NodeBalancer;
  node: string;
  /**
   * Reads every replica's output FIFOs (one epoll for the agent); undefined where the host has
   * none, and replicas then capture through per-start pipes.
   */
  output?: OutputCollector;
  /** Records an event for a deployment (shown by `prisn get NAME`). */
  event(deployment: string, kind: string, message: string): void;
  /** Writes that failed for want of space under PRISN_HOME (`status`: "disk full since …"). */
  disk: DiskHealth;
  /** The most bytes of files a deployed package may hold. @default DEFAULT_MAX_PACKAGE_BYTES */
  maxPackageBytes?: number;
}

export function createContext(
  paths: Paths,
  records: Records,
  node: string,
  options: {
    desired?: DesiredState;
    artifacts?: Artifacts;
    logs?: LogStore;
    history?: RunHistory & ProcessLedger;
    address?: string;
    members?: Members;
    balancer?: NodeBalancer;
    maxPackageBytes?: number;
  } = {},
): AgentContext {
  const disk = new DiskHealth();
  // The agent's loops write through this one: a full disk holds their writes instead of failing.
  const history = new ResilientHistory(options.history ?? records, disk);
  return {
    paths,
    records: history,
    desired: options.desired ?? new LocalDesiredState(records),
    artifacts: new ResilientArtifacts(options.artifacts ?? new LocalArtifacts(paths), disk),
    logs: new DiskAwareLogs(options.logs ?? new FileLogs(paths), disk),
    address: options.address,
    members: options.members,
    balancer: options.balancer,
    node,
    output: OutputCollector.create(),
    event(deployment, kind, message) {
      history.addEvent(deployment, kind, message, Date.now());
    },
    disk,
    maxPackageBytes: options.maxPackageBytes,
  };
}

/** A free loopback TCP port, chosen by the kernel. */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

/** Ports handed to replicas of this agent and not given back (see leasePort). */
const leased = new Set<number>();

/**
 * A free port for a replica, never one handed to another live replica of this agent. The kernel
 * sees a port as free until its replica binds it, which a slow starter does seconds later, and
 * it keeps that port for every restart: without the lease two replicas could get the same one,
 * and the later would crash-loop on "address in use". Give it back with `returnPort`.
 */
export function leasePort(): number {
  for (let i = 0; i < 100; i++) {
    const port = freePort();
    if (!leased.has(port)) {
      leased.add(port);
      return port;
    }
  }
  throw new PrisnError("FAILED", `no free port for a replica (${leased.size} leased)`);
}

/** Gives a port from `leasePort` back once its replica has stopped for good. */
export function returnPort(port: number | undefined): void {
  if (port !== undefined) leased.delete(port);
}

export function delay(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const onAbort = () => {
      clearTimeout(t);
      resolve();
    };
    const t = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort); // else every delay leaves a listener behind
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
