import { Kvm } from "@nats-io/kv";
import { Objm } from "@nats-io/obj";
import type { BackendInputs, Backends, LocalReplica, RemoteReplica } from "../core/backends.ts";
import type { LogStore } from "../core/log_store.ts";
import { LocalArtifacts } from "../core/local_artifacts.ts";
import { ownsName, planPlacement, slotsOn } from "../core/placement.ts";
import { parseMemory } from "../core/quantity.ts";
import { ClusterArtifacts } from "./artifacts.ts";
import { ClusterDesiredState } from "./desired_state.ts";
import { ClusterDispatcher } from "./dispatch.ts";
import { Heartbeats } from "./heartbeats.ts";
import { LeaderLease } from "./lease.ts";
import { ClusterLogs } from "./logs.ts";
import { ClusterPlacement } from "./placement.ts";
import { ClusterRunHistory } from "./run_history.ts";
import { ClusterTokens } from "./tokens.ts";
import type { ClusterConnection } from "./types.ts";

/** How often this node looks whether its replicas' readiness changed (then it beats at once). */
const READINESS_CHECK_MS = 250;

/** How long a stopping node waits for its replicas to be started elsewhere. */
const HANDOVER_TIMEOUT_MS = 60_000;

/** What a node brings to the cluster. */
export interface ClusterNodeOptions {
  /** This node's name (unique in the cluster). */
  node: string;
  /** Where this node's service ports and replicas are reached. */
  address: string;
  /** This node's tags, for `[placement] tags`. @default none */
  tags?: string[];
  /** The agent's version, shown in `get nodes`. */
  version: string;
  /**
   * How often the live nodes are read for placement.
   * @default 2000
   */
  membershipIntervalMs?: number;
  /** Where the backends report what goes wrong in the background. @default ignore */
  log?: (line: string) => void;
  /** This node's own log store (the runtime's files), for replicas and runs that run here. */
  localLogs: (inputs: BackendInputs) => LogStore;
}

/**
 * The cluster's backends over one NATS connection (after ensureResources): desired state in KV
 * mirrored into this node's SQLite, version archives in the object store, run tickets on the
 * work queue, the leader lease and heartbeats. The leader places replicas (cluster/placement.ts:
 * slots per node in KV, stamped with its epoch) over the live nodes whenever membership or desired
 * state changes; until a placement is written, every node predicts it with the same pure function
 * (core/placement.ts). Logs are written on the node that runs them and go to the cluster's log
 * stream (cluster/logs.ts); events to the events stream (cluster/run_history.ts).
 */
export async function clusterBackends(
  conn: ClusterConnection,
  options: ClusterNodeOptions,
): Promise<(inputs: BackendInputs) => Backends> {
  const { names } = conn;
  const kvm = new Kvm(conn.js);
  const [desiredKv, leaseKv, heartbeatKv, runsKv, placementKv, tokensKv] = await Promise.all([
    kvm.open(names.kv.desired),
    kvm.open(names.kv.lease),
    kvm.open(names.kv.heartbeats),
    kvm.open(names.kv.runs),
    kvm.open(names.kv.placement),
    kvm.open(names.kv.tokens),
  ]);
  const store = await new Objm(conn.js).open(names.objectStore.artifacts);
  const log = options.log ?? (() => {});

  return (inputs: BackendInputs): Backends => {
    const lease = new LeaderLease(leaseKv, {
      node: options.node,
      address: options.address,
      onError: (e) => log(`lease: ${(e as Error).message}`),
    });
    const heartbeats = new Heartbeats(heartbeatKv, {
      node: options.node,
      address: options.address,
      version: options.version,
      tags: options.tags,
      // What runs here: replicas as "DEPLOYMENT/REPLICA#VERSION:ready|starting[@HOST:PORT]"
      // (where other nodes reach it), runs by id.
      report: () => ({
        replicas: replicaReport().map((r) =>
          `${r.deployment}/${r.name}#${r.version}:${r.ready ? "ready" : "starting"}` +
          (r.address ? `@${r.address}` : "")
        ),
        runs: inputs.records.listProcesses().map((p) => p.id).filter((id) => !id.includes("/")),
      }),
      onError: (e) => log(`heartbeat: ${(e as Error).message}`),
    });
    /** The live nodes (ready or draining), by name, this node always among them. */
    let members: string[] = [options.node];
    /** Ready replicas per node and deployment, from heartbeats (this node's own: now). */
    let readyCounts = new Map<string, Map<string, number>>();
    let replicaReport: () => LocalReplica[] = () => [];
    let remote: RemoteReplica[] = [];
    /** `members` as a set, once they have been read (undefined before). */
    let liveNodes: ReadonlySet<string> | undefined;
    const placementListeners = new Set<() => void>();
    const placementChanged = () => {
      for (const l of placementListeners) l();
    };
    let membership: ReturnType<typeof setInterval> | undefined;
    let readiness: ReturnType<typeof setInterval> | undefined;
    /** This node marked itself draining for its stop (a drain by `prisn node drain` stays). */
    let drainedForStop = false;
    const placement = new ClusterPlacement(placementKv, {
      lease,
      log,
      onUnplaced: (deployment, vacant) =>
        history.addEvent(
          deployment,
          "Unplaced",
          `${vacant} replica(s) fit on no node: none is eligible under [placement] with room for its memory`,
          Date.now(),
        ),
    });
    placement.onChange(placementChanged);
    /** The placement of a deployment of `want` replicas: the leader's, or what it will be. */
    const slotsOf = (deployment: string, want: number) => {
      const placed = placement.slots(deployment);
      if (placed?.length === want) return placed;
      const s = services().find((x) => x.name === deployment);
      return planPlacement(
        placed,
        want,
        members.map((node) => ({
          node,
          draining: placement.isDraining(node),
          ready: 0,
          eligible: s?.eligible(node),
          room: s?.room?.(node),
        })),
      );
    };
    /** Tags and memory of every live node, from their heartbeats (this node's own: its own). */
    let nodeInfo = new Map<string, { tags: string[]; memoryBytes: number }>();
    const memoryOf = (deployment: string) => {
      const d = inputs.records.getDeployment(deployment);
      const memory = d && inputs.records.getVersion(deployment, d.version)?.spec.resources?.memory;
      return memory ? parseMemory(memory) : 0;
    };
    const services = () =>
      inputs.records.listDeployments().filter((d) => d.type === "service").map((d) => {
        const spec = inputs.records.getVersion(d.name, d.version)?.spec;
        const want = spec?.placement;
        const memory = memoryOf(d.name);
        return {
          name: d.name,
          replicas: d.replicas,
          eligible: (node: string) => {
            const info = nodeInfo.get(node);
            return (!want?.nodes || want.nodes.includes(node)) &&
              (want?.tags ?? []).every((t) => info?.tags.includes(t));
          },
          // Its memory limit against what the node has left after the other services' slots.
          room: memory > 0
            ? (node: string) => {
              const total = nodeInfo.get(node)?.memoryBytes ?? Infinity;
              let reserved = 0;
              for (const other of inputs.records.listDeployments()) {
                if (other.name === d.name || other.type !== "service") continue;
                const slots = placement.slots(other.name);
                if (slots) reserved += slotsOn(slots, node) * memoryOf(other.name);
              }
              return Math.max(0, Math.floor((total - reserved) / memory));
            }
            : undefined,
        };
      });
    /** As the leader: every service placed over the live nodes. */
    const plan = () =>
      placement.plan(
        services(),
        members.map((node) => ({
          node,
          ready: (deployment: string) =>
            node === options.node
              ? replicaReport().filter((r) => r.deployment === deployment && r.ready).length
              : readyCounts.get(node)?.get(deployment) ?? 0,
        })),
      );
    // One read at a time: under load a read can outlast the 2 s interval, and a late one would
    // put its older view (members, ready counts) over a newer one.
    let reading: Promise<void> | undefined;
    const readMembers = () =>
      reading ??= readMembersOnce().finally(() => {
        reading = undefined;
      });
    const readMembersOnce = async () => {
      try {
        const nodes = await heartbeats.live();
        nodeInfo = new Map(nodes.map((n) => [n.node, {
          tags: n.tags ?? [],
          memoryBytes: n.capacity?.memoryBytes ?? Infinity,
        }]));
        remote = nodes.filter((n) => n.node !== options.node).flatMap((n) =>
          n.replicas.map((r): RemoteReplica => {
            const [what, address] = r.split("@");
            const [idVersion, state] = what.split(":");
            const [id, version] = idVersion.split("#");
            // DEPLOYMENT is a key, NAMESPACE/NAME: the replica is after the last '/'.
            const slash = id.lastIndexOf("/");
            const deployment = id.slice(0, slash);
            const name = id.slice(slash + 1);
            const at = address?.lastIndexOf(":") ?? -1;
            return {
              node: n.node,
              deployment,
              name,
              ready: state === "ready",
              version,
              host: at > 0 ? address.slice(0, at) : undefined,
              port: at > 0 ? Number(address.slice(at + 1)) : undefined,
            };
          })
        );
        readyCounts = new Map();
        for (const r of remote) {
          if (!r.ready) continue;
          const counts = readyCounts.get(r.node) ?? new Map<string, number>();
          counts.set(r.deployment, (counts.get(r.deployment) ?? 0) + 1);
          readyCounts.set(r.node, counts);
        }
        const live = nodes.map((n) => n.node);
        if (!live.includes(options.node)) live.push(options.node);
        live.sort();
        liveNodes = new Set(live);
        if (live.join(",") !== members.join(",")) {
          members = live;
          placementChanged();
        }
        await plan();
      } catch (e) {
        log(`membership: ${(e as Error).message}`);
      }
    };
    const desired = new ClusterDesiredState(desiredKv, inputs.records, { connection: conn.nc });
    const history = new ClusterRunHistory(inputs.records, runsKv, options.node, {
      log: (line) => log(line),
      events: {
        nc: conn.nc,
        js: conn.js,
        stream: names.streams.events,
        subject: (d) => names.eventSubject(d),
      },
    });
    const dispatcher = new ClusterDispatcher({ nc: conn.nc, js: conn.js, jsm: conn.jsm }, {
      stream: names.streams.work,
      subject: names.subjects.work,
      publishSubject: (t) => names.workSubject(t.deployment),
      records: history,
      node: options.node,
      isLeader: () => lease.isLeader(),
      epoch: () => lease.epoch,
      accepting: () => !placement.isDraining(options.node),
      isStale: (epoch) => lease.isStale(epoch),
      replicasHere: (deployment, want) => slotsOn(slotsOf(deployment, want), options.node),
      ownsReplica: (deployment, index, want) =>
        ownsName(slotsOf(deployment, want), options.node, index),
      onPlacementChange: (listener) => {
        placementListeners.add(listener);
        return () => placementListeners.delete(listener);
      },
      onError: (e) => log(`work queue: ${e.message}`),
    });
    return {
      desired,
      artifacts: new ClusterArtifacts(new LocalArtifacts(inputs.paths), store),
      logs: new ClusterLogs({
        nats: conn,
        names,
        local: options.localLogs(inputs),
        log,
      }),
      history,
      tokens: new ClusterTokens(tokensKv, names.kv.tokens, (line) => log(`tokens: ${line}`)),
      members: {
        remoteReplicas: () => remote,
        liveNodes: () => liveNodes,
        reportReplicas(report) {
          replicaReport = report;
        },
        async nodes() {
          return (await heartbeats.nodes()).map((n) => ({
            node: n.node,
            status: n.status === "down"
              ? n.status
              : placement.isDraining(n.node)
              ? "draining"
              : n.status,
            address: n.address,
            replicas: n.replicas.length,
            runs: n.runs.length,
            heartbeatAgeMs: n.ageMs,
            version: n.version,
          }));
        },
        // The node acting as leader; none while a new holder waits out its start delay.
        leader: () => lease.holder?.acting ? lease.holder.node : undefined,
        async drain(node, draining) {
          await placement.setDraining(node, draining);
        },
      },
      dispatcher,
      async start() {
        await desired.start();
        await history.start();
        await heartbeats.start();
        await lease.start();
        await placement.start(); // after the lease: its fence knows the current epoch
        // Replicas to place (a new service, a scale), or a term that begins: as the leader, on the
        // heartbeats read now, not up to an interval ago (a node that joined meanwhile would be
        // left out of the spread, for good: placement does not move running replicas to it).
        const unplaced = (name: string) => {
          const d = inputs.records.getDeployment(name);
          return d?.type === "service" && placement.slots(name)?.length !== d.replicas;
        };
        desired.watch((c) => lease.isLeader() && unplaced(c.deployment) ? readMembers() : plan());
        lease.onChange((c) => c.leader && readMembers());
        // Marked draining (by prisn node drain anywhere): say so in this node's heartbeats too.
        let drained = false;
        placement.onChange(() => {
          const now = placement.isDraining(options.node);
          if (now !== drained) heartbeats.setDraining(drained = now).catch(() => {});
        });
        await readMembers();
        membership = setInterval(readMembers, options.membershipIntervalMs ?? 2000);
        // A replica that became ready (or stopped being) is told at once, not at the next
        // heartbeat: moves and other nodes' views wait on it.
        let told = "";
        readiness = setInterval(() => {
          const now = replicaReport().filter((r) => r.ready).map((r) => `${r.deployment}/${r.name}`)
            .sort().join();
          if (now === told) return;
          told = now;
          heartbeats.beat().catch(() => {});
        }, READINESS_CHECK_MS);
      },
      async beforeStop() {
        // A stop, not a crash: hand the lease over and move this node's replicas elsewhere
        // first, so its services never drop below their desired ready count.
        await lease.release().catch(() => false);
        const others = members.filter((n) => n !== options.node && !placement.isDraining(n));
        if (others.length === 0) return;
        if (!placement.isDraining(options.node)) {
          await placement.setDraining(options.node, true).catch(() => {});
          drainedForStop = true;
        }
        const here = () =>
          inputs.records.listDeployments().some((d) =>
            d.type === "service" && slotsOn(slotsOf(d.name, d.replicas), options.node) > 0
          );
        // Until nothing is placed here, while some other node can take it (they may be stopping
        // too: then there is nowhere to go).
        const elsewhere = () => members.some((n) => n !== options.node && !placement.isDraining(n));
        const deadline = Date.now() + HANDOVER_TIMEOUT_MS;
        while (here() && elsewhere() && Date.now() < deadline) {
          await new Promise((r) => setTimeout(r, 200));
        }
      },
      async close() {
        clearInterval(membership);
        clearInterval(readiness);
        await lease.release().catch(() => false);
        await heartbeats.stop().catch(() => false);
        // Gone from the heartbeats now: a drain mark of its own stop is not needed any more.
        if (drainedForStop) {
          await placement.setDraining(options.node, false).catch(() => {});
        }
        await placement.close();
        desired.close();
        await history.close();
        await conn.close();
      },
    };
  };
}
