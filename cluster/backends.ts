import { Kvm } from "@nats-io/kv";
import { Objm } from "@nats-io/obj";
import type { BackendInputs, Backends, RemoteReplica } from "../core/backends.ts";
import type { LogStore } from "../core/log_store.ts";
import { LocalArtifacts } from "../core/local_artifacts.ts";
import { placeReplicas } from "../core/placement.ts";
import { ClusterArtifacts } from "./artifacts.ts";
import { ClusterDesiredState } from "./desired_state.ts";
import { ClusterDispatcher } from "./dispatch.ts";
import { Heartbeats } from "./heartbeats.ts";
import { LeaderLease } from "./lease.ts";
import { ClusterLogs } from "./logs.ts";
import { ClusterRunHistory } from "./run_history.ts";
import type { ClusterConnection } from "./types.ts";

/** What a node brings to the cluster. */
export interface ClusterNodeOptions {
  /** This node's name (unique in the cluster). */
  node: string;
  /** Where this node's service ports and replicas are reached. */
  address: string;
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
 * work queue, the leader lease and heartbeats. Replicas are placed by a pure spread over the live
 * nodes (core/placement.ts), recomputed when membership changes. Logs are written on the node that
 * runs them and go to the cluster's log stream (cluster/logs.ts).
 */
export async function clusterBackends(
  conn: ClusterConnection,
  options: ClusterNodeOptions,
): Promise<(inputs: BackendInputs) => Backends> {
  const { names } = conn;
  const kvm = new Kvm(conn.js);
  const [desiredKv, leaseKv, heartbeatKv, runsKv] = await Promise.all([
    kvm.open(names.kv.desired),
    kvm.open(names.kv.lease),
    kvm.open(names.kv.heartbeats),
    kvm.open(names.kv.runs),
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
      // What runs here: replicas as "DEPLOYMENT/REPLICA:ready|starting", runs by id.
      report: () => ({
        replicas: replicaReport().map((r) =>
          `${r.deployment}/${r.name}:${r.ready ? "ready" : "starting"}`
        ),
        runs: inputs.records.listProcesses().map((p) => p.id).filter((id) => !id.includes("/")),
      }),
      onError: (e) => log(`heartbeat: ${(e as Error).message}`),
    });
    let members: string[] = [options.node];
    let replicaReport: () => Array<{ deployment: string; name: string; ready: boolean }> = () => [];
    let remote: RemoteReplica[] = [];
    const placementListeners = new Set<() => void>();
    let membership: ReturnType<typeof setInterval> | undefined;
    const readMembers = async () => {
      try {
        const nodes = await heartbeats.live();
        remote = nodes.filter((n) => n.node !== options.node).flatMap((n) =>
          n.replicas.map((r) => {
            const [id, state] = r.split(":");
            const [deployment, name] = id.split("/");
            return { node: n.node, deployment, name, ready: state === "ready" };
          })
        );
        const live = nodes.filter((n) => n.status === "ready").map((n) => n.node);
        if (!live.includes(options.node)) live.push(options.node);
        live.sort();
        if (live.join(",") !== members.join(",")) {
          members = live;
          for (const l of placementListeners) l();
        }
      } catch (e) {
        log(`membership: ${(e as Error).message}`);
      }
    };
    const desired = new ClusterDesiredState(desiredKv, inputs.records, { connection: conn.nc });
    const history = new ClusterRunHistory(inputs.records, runsKv, options.node, {
      log: (line) => log(line),
    });
    const dispatcher = new ClusterDispatcher({ nc: conn.nc, js: conn.js, jsm: conn.jsm }, {
      stream: names.streams.work,
      subject: names.subjects.work,
      publishSubject: (t) => names.workSubject(t.deployment),
      records: history,
      node: options.node,
      isLeader: () => lease.isLeader(),
      replicasHere: (_deployment, want) => placeReplicas(want, members).get(options.node) ?? 0,
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
      members: {
        remoteReplicas: () => remote,
        reportReplicas(report) {
          replicaReport = report;
        },
        async nodes() {
          return (await heartbeats.nodes()).map((n) => ({
            node: n.node,
            status: n.status,
            address: n.address,
            replicas: n.replicas.length,
            runs: n.runs.length,
            heartbeatAgeMs: n.ageMs,
            version: n.version,
          }));
        },
        // The node acting as leader; none while a new holder waits out its start delay.
        leader: () => lease.holder?.acting ? lease.holder.node : undefined,
      },
      dispatcher,
      async start() {
        await desired.start();
        await history.start();
        await heartbeats.start();
        await lease.start();
        await readMembers();
        membership = setInterval(readMembers, options.membershipIntervalMs ?? 2000);
      },
      async close() {
        clearInterval(membership);
        await lease.release().catch(() => false);
        await heartbeats.stop().catch(() => false);
        desired.close();
        await history.close();
        await conn.close();
      },
    };
  };
}
