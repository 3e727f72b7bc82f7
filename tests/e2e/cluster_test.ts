/**
 * Cluster mode end to end: one real nats-server, three agents on one machine, each with its own
 * PRISN_HOME and loopback address (127.0.0.1/.2/.3), driven through the real CLI.
 *
 * @module
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { existsSync } from "node:fs";
import { connect } from "@nats-io/transport-node";
import { Kvm } from "@nats-io/kv";
import {
  nats210Bin,
  type NatsServer,
  NO_NATS,
  startNats,
  startNatsCluster,
} from "../cluster/_nats.ts";
import { alive, freePort, TestHome, waitFor, within } from "../_helpers.ts";
import type { ReplicaStatus } from "../../runtime/service.ts";
import { AgentClient } from "../../runtime/client.ts";
import { TokenStore } from "../../runtime/tokens.ts";
import { killGroup } from "../../runtime/process.ts";
import { paths as homePaths } from "../../core/paths.ts";
import type { EventRecord, RunRecord } from "../../core/types.ts";
import type { NodeSummary, StatusView } from "../../runtime/api_types.ts";

if (NO_NATS) console.log(`cluster e2e: skipping: ${NO_NATS}`);

interface Detail {
  replicas: { desired: number; ready: number; items: ReplicaStatus[] };
}

/**
 * Three agents of one cluster, over one nats-server or over the servers given (with every stream
 * on 3 of them); `close()` stops the agents and the servers.
 */
async function cluster(
  servers?: NatsServer[],
  envOf: (i: number) => Record<string, string> = () => ({}),
): Promise<{ nats: NatsServer; servers: NatsServer[]; nodes: TestHome[]; close(): Promise<void> }> {
  servers ??= [await startNats()];
  const nats = servers[0];
  const nodes = [1, 2, 3].map((i) =>
    new TestHome({
      env: {
        PRISN_NATS: servers.map((s) => s.url).join(","),
        PRISN_NODE: `node-${i}`,
        PRISN_ADDRESS: `127.0.0.${i}`,
        PRISN_CLUSTER: "e2e",
        ...(servers.length > 1 ? { PRISN_NATS_REPLICAS: "3" } : {}),
        ...envOf(i),
      },
    })
  );
  const close = async () => {
    await Promise.all(nodes.map((h) => h.close()));
    await Promise.all(servers.map((s) => s.stop()));
  };
  try {
    await Promise.all(nodes.map((h) => h.ok("ls"))); // each starts its agent in cluster mode
    // Every node sees the other two (their heartbeats) before the tests place anything.
    const nc = await connect({ servers: nats.url });
    try {
      const kv = await new Kvm(nc).open("e2e-heartbeats");
      await waitFor(async () => (await Array.fromAsync(await kv.keys())).length === 3, {
        what: "three heartbeats",
        timeoutMs: 20_000,
      });
    } finally {
      await nc.close();
    }
    await new Promise((r) => setTimeout(r, 2_500)); // one membership read (2 s) on every node
    return { nats, servers, nodes, close };
  } catch (e) {
    for (const h of nodes) { // what kept an agent from starting
      const log = await Deno.readTextFile(join(h.home, "state", "agent.log")).catch(() => "");
      console.log(`${h.env.PRISN_NODE} agent.log:\n${log.trim().split("\n").slice(-5).join("\n")}`);
    }
    await close();
    throw e;
  }
}

Deno.test({
  name:
    "cluster: a deploy on one node is seen on all, its job runs once, a service spreads one replica per node",
  ignore: NO_NATS !== undefined,
  fn: async () => {
    const c = await cluster();
    try {
      const [n1, n2, n3] = c.nodes;
      // Every node knows the cluster: three nodes, healthy, one leader.
      const status = await waitFor(async () => {
        const s = await n2.json<StatusView>("status");
        return s.cluster?.nodes === 3 && s.cluster.leader ? s : undefined;
      }, { what: "status with 3 nodes and a leader", timeoutMs: 20_000 });
      assert.deepEqual(status.cluster!.notReady, []);
      assert.match(status.cluster!.leader!, /^node-[123]$/);
      // Node 1's own view (a leader that stopped acting under load shows "none yet" a moment).
      const line = await waitFor(async () => {
        const first = (await n1.ok("status")).split("\n")[0];
        return /leader node-/.test(first) ? first : undefined;
      }, { what: "node 1's status naming a leader", timeoutMs: 20_000 });
      assert.match(line, /^CLUSTER: 3 nodes, all healthy; leader node-[123]$/);
      const nodes = await n3.json<NodeSummary[]>("get", "nodes");
      assert.deepEqual(
        nodes.map((n) => [n.node, n.status, n.address]),
        [["node-1", "ready", "127.0.0.1"], ["node-2", "ready", "127.0.0.2"], [
          "node-3",
          "ready",
          "127.0.0.3",
        ]],
      );
      assert.match(await n3.ok("get", "nodes"), /^NAME\s+STATUS\s+ADDRESS\s+REPLICAS\s+RUNS/);
      const ran = join(n1.dir, "ran.txt");
      // Each run writes its id and the node it ran on (the agent's PRISN_NODE, inherited).
      const job = n1.project("once", {
        "main.sh": `echo "$PRISN_RUN_ID $PRISN_NODE" >> "${ran}"\n`,
      });
      await n1.ok("deploy", job, "--name", "once");
      for (const h of [n2, n3]) {
        await waitFor(async () => (await h.ok("ls")).includes("once"), {
          what: "the deployment in another node's mirror",
        });
      }
      await waitFor(async () => {
        try {
          return (await Deno.readTextFile(ran)).trim().split("\n").length >= 1;
        } catch {
          return false;
        }
      }, { what: "the job's run on some node", timeoutMs: 20_000 });
      // Every node lists the run, completed, with the node that ran it.
      for (const h of c.nodes) {
        const runs = await waitFor(async () => {
          const all = await h.json<RunRecord[]>("get", "jobs", "once");
          return all.length === 1 && all[0].status === "completed" ? all : undefined;
        }, { what: "the run, completed, in every node's history" });
        assert.match(runs[0].node, /^node-[123]$/);
      }
      // A run started from another node is no pending leftover on the node that asked for it.
      const out = await n3.ok("run", "once");
      const id = /started (run-[0-9a-f]+)/.exec(out)![1];
      for (const h of c.nodes) {
        await waitFor(async () => {
          const run = (await h.json<RunRecord[]>("get", "jobs", "once")).find((r) => r.id === id);
          return run?.status === "completed";
        }, { what: `${id} completed in every node's history` });
      }
      const lines = (await Deno.readTextFile(ran)).trim().split("\n");
      assert.equal(lines.length, 2, "each ran once");
      // Every node's history names the node that really ran each run.
      const ranOn = new Map(lines.map((l) => l.split(" ") as [string, string]));
      for (const h of c.nodes) {
        for (const r of await h.json<RunRecord[]>("get", "jobs", "once")) {
          assert.equal(r.node, ranOn.get(r.id), `${r.id} on ${h.env.PRISN_NODE}`);
        }
      }

      // The same name in another namespace: its own keys, runs and delete, on every node.
      const ranB = join(n1.dir, "ran-b.txt");
      const jobB = n1.project("once-b", { "main.sh": `echo "$PRISN_NAMESPACE" >> "${ranB}"\n` });
      await n1.ok("deploy", jobB, "--name", "once", "-n", "team-b");
      await waitFor(async () => {
        const all = await n2.json<{ namespace: string; name: string }[]>("ls", "-A");
        return all.filter((d) => d.name === "once").length === 2;
      }, { what: "both onces in node 2's mirror" });
      const runB = await waitFor(async () => {
        const all = await n3.json<RunRecord[]>("get", "jobs", "once", "-n", "team-b");
        return all.length === 1 && all[0].status === "completed" ? all[0] : undefined;
      }, { what: "team-b's run, completed, in node 3's history" });
      assert.equal(runB.namespace, "team-b");
      assert.equal((await Deno.readTextFile(ranB)).trim(), "team-b");
      assert.equal((await n3.json<RunRecord[]>("get", "jobs", "once")).length, 2, "default's own");
      await n3.ok("delete", "once", "-n", "team-b");
      for (const h of c.nodes) {
        await waitFor(async () => (await h.json("ls", "-n", "team-b") as unknown[]).length === 0, {
          what: "team-b's once gone on every node",
        });
        assert.match(await h.ok("ls"), /^once\s+job/m, "default's once stays");
      }

      const port = 20_000 + Math.floor(Math.random() * 20_000);
      const svc = n2.project("web", {
        "main.py": [
          "import http.server, os",
          "class H(http.server.BaseHTTPRequestHandler):",
          "    def do_GET(self):",
          "        self.send_response(200); self.end_headers()",
          "        self.wfile.write(b'ok')",
          "    def log_message(self, *a): print('hit', os.environ['PRISN_REPLICA'], flush=True)",
          "http.server.HTTPServer((os.environ['HOST'], int(os.environ['PORT'])), H).serve_forever()",
          "",
        ].join("\n"),
      });
      const deployed = await n2.ok(
        "deploy",
        svc,
        "--name",
        "web",
        "--replicas",
        "3",
        "--port",
        String(port),
      );
      // The deploy waits for every node's share, as their heartbeats tell.
      assert.match(deployed, /Activate\s+3\/3 replica\(s\) ready on 3 node\(s\)\n/);
      // Events of other nodes show on every node, saying where they happened.
      await waitFor(async () => {
        const d = await n1.json<{ events: EventRecord[] }>("get", "web");
        return d.events.some((e) => e.kind === "Deployed" && e.message.endsWith("(on node-2)"));
      }, { what: "node-2's Deployed event on node 1" });
      for (const h of c.nodes) {
        await waitFor(async () => {
          const d = await h.json<Detail>("get", "web");
          const local = d.replicas.items.filter((r) => r.pid !== undefined);
          return local.length === 1 && local[0].ready;
        }, { what: "one ready replica on each node", timeoutMs: 30_000 });
      }
      // Every node shows all three, on three nodes, 3/3 ready (the others' from heartbeats).
      for (const h of c.nodes) {
        const d = await waitFor(async () => {
          const d = await h.json<Detail>("get", "web");
          return d.replicas.ready === 3 ? d : undefined;
        }, { what: "3/3 ready seen from every node", timeoutMs: 20_000 });
        assert.deepEqual(
          [...new Set(d.replicas.items.map((r) => r.node))].sort(),
          ["node-1", "node-2", "node-3"],
        );
        // Names are the cluster's, not each node's: web-0, web-1, web-2 once each.
        assert.deepEqual(d.replicas.items.map((r) => r.name).sort(), ["web-0", "web-1", "web-2"]);
        assert.match(await h.ok("ls"), /web\s+service\s+3\/3/);
      }
      // Every node's own address serves the service port.
      for (const i of [1, 2, 3]) {
        const body = await waitFor(() => httpGetAt(`127.0.0.${i}`, port), {
          what: `the service port on 127.0.0.${i}`,
        });
        assert.equal(body, "ok");
      }
      // Each node's replica logged its request; node 1 shows all three lines, from every node.
      const hits = await waitFor(async () => {
        const lines = (await n1.ok("logs", "web", "--tail", "50")).split("\n");
        const who = new Set(lines.map((l) => / hit (web-\d)$/.exec(l)?.[1]).filter(Boolean));
        return who.size === 3 ? who : undefined;
      }, { what: "request lines of all three replicas in node 1's logs web" });
      assert.deepEqual([...hits].sort(), ["web-0", "web-1", "web-2"]);
      await n3.ok("scale", "web", "1");
      await waitFor(async () => {
        const counts = await Promise.all(
          c.nodes.map(async (h) =>
            (await h.json<Detail>("get", "web")).replicas.items.filter((r) => r.pid).length
          ),
        );
        return counts.reduce((a, b) => a + b, 0) === 1;
      }, { what: "one replica left in the cluster after scale 1", timeoutMs: 30_000 });
      // It listens on HOST (its node's address), so every node's port balances to it.
      const left = await waitFor(async () => {
        const items = (await n3.json<Detail>("get", "web")).replicas.items;
        return items.length === 1 ? items : undefined;
      }, { what: "one replica in node 3's view" });
      assert.equal(left[0].state, "Ready", "listening on HOST: reachable from every node");
      for (const i of [1, 2, 3]) {
        const body = await waitFor(() => httpGetAt(`127.0.0.${i}`, port), {
          what: `the service port on 127.0.0.${i} with the one replica on ${left[0].node}`,
        });
        assert.equal(body, "ok");
      }
    } finally {
      await c.close();
    }
  },
});

async function httpGetAt(host: string, port: number): Promise<string | undefined> {
  try {
    const res = await fetch(`http://${host}:${port}/`, { signal: AbortSignal.timeout(2_000) });
    const text = await res.text();
    return res.ok ? text : undefined;
  } catch {
    return undefined;
  }
}

Deno.test({
  name: "cluster: only the leader fires an every-second cronjob, each tick runs once somewhere",
  ignore: NO_NATS !== undefined,
  fn: async () => {
    const c = await cluster();
    try {
      const [n1, n2] = c.nodes;
      const ticks = join(n1.dir, "ticks.txt");
      const cron = n1.project("tick", {
        "main.sh": `echo "$PRISN_SCHEDULED_TIME $PRISN_RUN_ID" >> "${ticks}"\n`,
        "prisn.toml": 'schedule = "* * * * * *"\n',
      });
      await n1.ok("deploy", cron, "--name", "tick");
      const lines = await waitFor(async () => {
        try {
          const all = (await Deno.readTextFile(ticks)).trim().split("\n");
          return all.length >= 5 ? all : undefined;
        } catch {
          return undefined;
        }
      }, { what: "five cron runs", timeoutMs: 30_000 });
      await n2.ok("suspend", "tick");
      const stamps = lines.map((l) => l.split(" ")[0]);
      assert.equal(new Set(stamps).size, stamps.length, `a tick ran twice: ${lines.join(", ")}`);
      const runs = await n2.json<RunRecord[]>("get", "jobs", "tick", "--limit", "100");
      assert.equal(new Set(runs.map((r) => r.scheduledAt)).size, runs.length);
    } finally {
      await c.close();
    }
  },
});

Deno.test({
  name: "cluster: kill -9 of the leader: another node leads within TTL + renew, no cron tick twice",
  ignore: NO_NATS !== undefined,
  fn: async () => {
    const c = await cluster();
    try {
      const [n1] = c.nodes;
      const ticks = join(n1.dir, "ticks.txt");
      const cron = n1.project("tick", {
        "main.sh": `echo "$PRISN_SCHEDULED_TIME $PRISN_RUN_ID" >> "${ticks}"\n`,
        "prisn.toml": 'schedule = "* * * * * *"\n',
      });
      await n1.ok("deploy", cron, "--name", "tick");
      const leader = await waitFor(async () => {
        const s = await n1.json<StatusView>("status");
        return s.cluster?.leader;
      }, { what: "a leader" });
      const i = Number(leader.split("-")[1]) - 1;
      const dead = c.nodes[i];
      const other = c.nodes[(i + 1) % 3];
      await waitFor(async () => {
        try {
          return (await Deno.readTextFile(ticks)).trim().split("\n").length >= 2;
        } catch {
          return false;
        }
      }, { what: "ticks before the kill" });
      const pid = dead.agentPid()!;
      Deno.kill(pid, "SIGKILL");
      const killed = Date.now();
      const next = await waitFor(async () => {
        const s = await other.json<StatusView>("status");
        return s.cluster?.leader && s.cluster.leader !== leader ? s.cluster.leader : undefined;
      }, { what: "a new leader", timeoutMs: 40_000, intervalMs: 250 });
      const took = Date.now() - killed;
      console.log(`cluster e2e: ${leader} killed, ${next} leads after ${took} ms`);
      assert.ok(took < 15_000 + 5_000 + 5_000, `failover took ${took} ms`);
      // Ticks go on under the new leader, and none ran twice.
      const before = (await Deno.readTextFile(ticks)).trim().split("\n").length;
      await waitFor(async () => {
        return (await Deno.readTextFile(ticks)).trim().split("\n").length >= before + 3;
      }, { what: "ticks under the new leader", timeoutMs: 20_000 });
      await other.ok("suspend", "tick");
      const stamps = (await Deno.readTextFile(ticks)).trim().split("\n").map((l) =>
        l.split(" ")[0]
      );
      assert.equal(new Set(stamps).size, stamps.length, "a tick ran twice across the failover");
    } finally {
      await c.close();
    }
  },
});

/**
 * The ready replicas of `name` as each node itself runs them (not from heartbeats), summed over
 * the nodes; a node whose agent is gone counts none. Undefined when a live agent did not answer
 * (no sample). `leaving`, the node replicas move off, is asked first and the others after its
 * answer: a replica there stops only once its successor elsewhere is ready, so a later answer
 * from the others already counts that successor. Asked all at once, a slow answer from the
 * leaving node could show its replica gone beside an earlier answer that predates the successor.
 */
async function readyEverywhere(
  nodes: TestHome[],
  name: string,
  leaving: TestHome,
): Promise<number | undefined> {
  const seen: string[] = [];
  const readyOn = async (h: TestHome): Promise<number | undefined> => {
    const pid = h.agentPid();
    if (pid === undefined || !alive(pid)) return 0;
    // Straight to the agent: the CLI would start a new one for a node that has stopped.
    const client = await AgentClient.existing(homePaths(h.home));
    if (!client) return alive(pid) ? undefined : 0;
    try {
      const d = await within(client.deployment(name), 5_000, `get ${name}`);
      seen.push(
        `${h.env.PRISN_NODE}@${new Date().toISOString().slice(11, 23)}: ` +
          d.replicaStatus.map((x) => `${x.name} ${x.state} ${x.ready} pid=${x.pid}`).join(", "),
      );
      return d.replicaStatus.filter((x) => x.pid !== undefined && x.ready).length;
    } catch {
      return alive(pid) ? undefined : 0;
    } finally {
      client.close();
    }
  };
  const first = await readyOn(leaving);
  const rest = await Promise.all(nodes.filter((h) => h !== leaving).map(readyOn));
  const counts = [first, ...rest];
  if (counts.some((n) => n === undefined)) return undefined;
  const total = (counts as number[]).reduce((a, b) => a + b, 0);
  // What each node said when the count dipped: the first thing to read when this test fails.
  if (total < 3) {
    console.log(`${name}: ${total} ready: ${seen.join(" | ")}`);
    // And the leader's last placements, with the readiness each was decided on.
    for (const h of nodes) {
      const log = await Deno.readTextFile(join(h.home, "state", "agent.log")).catch(() => "");
      const placed = new RegExp(`placement: (\\S+/)?${name} `); // NAMESPACE/NAME
      const lines = log.split("\n").filter((l) => placed.test(l)).slice(-4);
      if (lines.length) console.log(`${h.env.PRISN_NODE}:\n  ${lines.join("\n  ")}`);
    }
  }
  return total;
}

/** Where each ready replica of `name` runs, as node `h` sees the cluster: node → count. */
async function readyByNode(h: TestHome, name: string): Promise<Map<string, number>> {
  const d = await h.json<Detail>("get", name);
  const by = new Map<string, number>();
  for (const r of d.replicas.items) if (r.ready) by.set(r.node, (by.get(r.node) ?? 0) + 1);
  return by;
}

Deno.test({
  name:
    "cluster: node drain moves replicas off and back, agent stop hands its replicas over first, a killed worker's replicas start elsewhere",
  ignore: NO_NATS !== undefined,
  fn: async () => {
    const c = await cluster();
    const orphans: number[] = [];
    try {
      const [n1, n2, n3] = c.nodes;
      const svc = n1.project("web", {
        "main.py": [
          "import http.server, os",
          "class H(http.server.BaseHTTPRequestHandler):",
          "    def do_GET(self):",
          "        self.send_response(200); self.end_headers(); self.wfile.write(b'ok')",
          "    def log_message(self, *a): pass",
          "http.server.HTTPServer(('127.0.0.1', int(os.environ['PORT'])), H).serve_forever()",
          "",
        ].join("\n"),
      });
      const port = 20_000 + Math.floor(Math.random() * 20_000);
      await n1.ok("deploy", svc, "--name", "web", "--replicas", "3", "--port", String(port));
      const spread = (m: Map<string, number>) =>
        [...m].map(([n, k]) => `${n}:${k}`).sort().join(" ");
      await waitFor(
        async () => spread(await readyByNode(n1, "web")) === "node-1:1 node-2:1 node-3:1",
        {
          what: "one ready replica per node",
          timeoutMs: 30_000,
        },
      );
      // As each node itself sees it too (node 1's view of the others is their last heartbeat):
      // a node that started a replica too many before the first placement may still be settling.
      await waitFor(async () => (await readyEverywhere(c.nodes, "web", n3)) === 3, {
        what: "3 replicas ready, as the nodes see their own",
        timeoutMs: 30_000,
      });
      // It ignores HOST and listens on 127.0.0.1: get says it serves its own node alone (but on
      // node-1, whose address is 127.0.0.1 itself).
      const states = (await n1.json<Detail>("get", "web")).replicas.items
        .map((r) => `${r.node} ${r.state}`).sort();
      assert.deepEqual(states, [
        "node-1 Ready",
        "node-2 Ready (loopback only)",
        "node-3 Ready (loopback only)",
      ]);

      // Bad input changes nothing.
      const bad = await n1.cli("node", "drain", "node-9");
      assert.notEqual(bad.code, 0);
      assert.match(
        bad.stderr.trim(),
        /^prisn: node "node-9" is not in the cluster: see prisn get nodes$/,
      );

      // Drain node 3 from node 2: its replica moves, never below 3 ready meanwhile.
      await n2.ok("node", "drain", "node-3");
      let lowest = 3;
      await waitFor(async () => {
        const ready = await readyEverywhere(c.nodes, "web", n3);
        if (ready !== undefined) lowest = Math.min(lowest, ready);
        const by = await readyByNode(n2, "web");
        return !by.has("node-3") && ready === 3;
      }, { what: "node-3's replica moved off", timeoutMs: 40_000, intervalMs: 250 });
      // On a dip, readyEverywhere printed what each node ran and the placements behind it.
      assert.equal(lowest, 3, `the drain dropped the service to ${lowest} ready`);
      const nodes = await n1.json<NodeSummary[]>("get", "nodes");
      assert.equal(nodes.find((n) => n.node === "node-3")?.status, "draining");
      // A draining node takes no new runs.
      const job = n1.project("job", { "main.sh": "echo ran\n" });
      await n1.ok("deploy", job, "--name", "job");
      for (let i = 0; i < 4; i++) await n3.ok("run", "job");
      const runs = await waitFor(async () => {
        const runs = await n1.json<RunRecord[]>("get", "jobs", "job");
        return runs.length === 5 && runs.every((r) => r.status === "completed") ? runs : undefined;
      }, { what: "5 runs of job completed", timeoutMs: 30_000 });
      assert.deepEqual(runs.filter((r) => r.node === "node-3").map((r) => r.id), []);
      await n1.ok("node", "undrain", "node-3");
      await waitFor(async () => {
        const ns = await n1.json<NodeSummary[]>("get", "nodes");
        return ns.find((n) => n.node === "node-3")?.status === "ready";
      }, { what: "node-3 ready again" });
      // Back to one replica per node (a slot moves to node-3 again) before the next move starts.
      await waitFor(
        async () => spread(await readyByNode(n1, "web")) === "node-1:1 node-2:1 node-3:1",
        { what: "one ready replica per node again", timeoutMs: 30_000 },
      );
      await waitFor(async () => (await readyEverywhere(c.nodes, "web", n2)) === 3, {
        what: "3 replicas ready again, as the nodes see their own",
        timeoutMs: 30_000,
      });

      // A stopped node's replicas are started elsewhere before it stops.
      const onTwo = (await readyByNode(n1, "web")).get("node-2") ?? 0;
      assert.ok(onTwo > 0, "node-2 runs a replica before its stop");
      // Sampled from node 1 all through the stop: never below 3 ready.
      let sampling = true;
      let lowestDuringStop = 3;
      const sampler = (async () => {
        while (sampling) {
          const r = await readyEverywhere(c.nodes, "web", n2);
          if (r !== undefined) lowestDuringStop = Math.min(lowestDuringStop, r);
        }
      })();
      let after: Map<string, number>;
      try {
        await n2.ok("agent", "stop");
        await waitFor(() => n2.agentPid() === undefined, { what: "node-2 stopped" });
        // Node 1 reads the others' heartbeats every 2 s: node-2 leaves its view by then.
        after = await waitFor(async () => {
          const by = await readyByNode(n1, "web");
          return by.has("node-2") ? undefined : by;
        }, { what: "node-2 gone from node 1's view", timeoutMs: 5_000 });
      } finally {
        sampling = false; // whatever failed: the sampler must not outlive the test
        await sampler.catch(() => {});
      }
      assert.equal(
        [...after.values()].reduce((a, b) => a + b, 0),
        3,
        "3 ready right after the stop",
      );
      assert.equal(lowestDuringStop, 3, "the stop dropped the service below 3 ready");

      // kill -9 of a worker: its replicas are ready elsewhere within 2 × TTL.
      const victim = (await readyByNode(n1, "web")).get("node-3") ? n3 : n1;
      const survivor = victim === n3 ? n1 : n3;
      const victimName = victim.env.PRISN_NODE;
      const d = await victim.json<Detail>("get", "web");
      for (const r of d.replicas.items) if (r.node === victimName && r.pid) orphans.push(r.pid);
      Deno.kill(victim.agentPid()!, "SIGKILL");
      const killed = Date.now();
      // Its replicas outlive it on this one machine; a dead machine's would be gone too.
      for (const pid of orphans.splice(0)) {
        killGroup(pid, "SIGKILL");
      }
      await waitFor(async () => {
        const by = await readyByNode(survivor, "web");
        return by.size === 1 && by.get(survivor.env.PRISN_NODE) === 3;
      }, {
        what: `3 ready on ${survivor.env.PRISN_NODE} after ${victimName} died`,
        timeoutMs: 40_000,
      });
      const took = Date.now() - killed;
      console.log(
        `cluster e2e: ${victimName} killed, its replicas ready elsewhere after ${took} ms`,
      );
      assert.ok(took < 30_000, `rescheduling took ${took} ms, over 2 × TTL`);
    } finally {
      for (const pid of orphans) {
        killGroup(pid, "SIGKILL");
      }
      await c.close();
    }
  },
});

Deno.test({
  name:
    "cluster: kill -9 of the node running a job: the leader marks its run lost and retries it elsewhere",
  ignore: NO_NATS !== undefined,
  fn: async () => {
    const c = await cluster();
    let orphan: number | undefined;
    try {
      const [n1] = c.nodes;
      const first = join(n1.dir, "first-attempt");
      // The first attempt hangs (until its node dies); a retry finishes at once.
      const job = n1.project("slow", {
        "main.sh": `if mkdir "${first}" 2>/dev/null; then sleep 120; fi\necho done $PRISN_RUN_ID\n`,
        "prisn.toml": 'retries = 1\nretry_backoff = "1s"\n',
      });
      await n1.ok("deploy", job, "--name", "slow");
      const running = await waitFor(async () => {
        const runs = await n1.json<RunRecord[]>("get", "jobs", "slow");
        return runs.find((r) => r.status === "running" && r.pid);
      }, { what: "the first attempt running somewhere", timeoutMs: 20_000 });
      const victim = c.nodes.find((h) => h.env.PRISN_NODE === running.node)!;
      const survivor = c.nodes.find((h) => h !== victim)!;
      orphan = running.pid;
      Deno.kill(victim.agentPid()!, "SIGKILL");
      killGroup(orphan!, "SIGKILL"); // a dead machine's processes die with it
      const runs = await waitFor(async () => {
        const runs = await survivor.json<RunRecord[]>("get", "jobs", "slow");
        const lost = runs.find((r) => r.id === running.id);
        const retry = runs.find((r) => r.parent === running.id && r.status === "completed");
        return lost?.status === "failed" && retry ? { lost, retry } : undefined;
      }, {
        what: "the lost run failed and its retry completed",
        timeoutMs: 60_000,
        intervalMs: 500,
      });
      assert.match(
        runs.lost.reason ?? "",
        new RegExp(`^lost: node ${running.node} stopped answering$`),
      );
      assert.equal(runs.retry.attempt, 2);
      assert.notEqual(runs.retry.node, running.node);
      const d = await survivor.json<{ events: EventRecord[] }>("get", "slow");
      assert.ok(d.events.some((e) => e.kind === "RunLost"), "a RunLost event");
    } finally {
      if (orphan) {
        killGroup(orphan, "SIGKILL");
      }
      await c.close();
    }
  },
});

Deno.test({
  name:
    "cluster: nats-server restart: nodes keep serving and answering (stale), reconnect, catch up and go on",
  ignore: NO_NATS !== undefined,
  fn: async () => {
    const c = await cluster();
    try {
      const [n1, n2, n3] = c.nodes;
      const port = 20_000 + Math.floor(Math.random() * 20_000);
      const svc = n1.project("web", {
        "main.py": [
          "import http.server, os",
          "class H(http.server.BaseHTTPRequestHandler):",
          "    def do_GET(self):",
          "        self.send_response(200); self.end_headers(); self.wfile.write(b'ok')",
          "    def log_message(self, *a): pass",
          "http.server.HTTPServer((os.environ['HOST'], int(os.environ['PORT'])), H).serve_forever()",
          "",
        ].join("\n"),
      });
      await n1.ok("deploy", svc, "--name", "web", "--replicas", "3", "--port", String(port));
      await waitFor(async () => (await n1.json<Detail>("get", "web")).replicas.ready === 3, {
        what: "3/3 ready",
        timeoutMs: 30_000,
      });

      await c.nats.kill();
      // Cut off: status says so at once, ls still answers from the node's records, ports serve.
      await waitFor(async () => /^CLUSTER: NATS unreachable; /.test(await n1.ok("status")), {
        what: "status saying NATS is unreachable",
      });
      assert.match(await n2.ok("ls"), /^web\s+service/m);
      for (const i of [1, 2, 3]) {
        assert.equal(await httpGetAt(`127.0.0.${i}`, port), "ok", `port on 127.0.0.${i}`);
      }

      await c.nats.start();
      await waitFor(async () => {
        const s = await n3.json<StatusView>("status");
        return s.cluster?.staleSince === undefined && s.cluster?.nodes === 3 && s.cluster.leader;
      }, { what: "the cluster back: 3 nodes, a leader, records current", timeoutMs: 40_000 });
      // A deploy after the restart reaches every node and its run completes once.
      const job = n2.project("after", { "main.sh": "echo after the restart\n" });
      await n2.ok("deploy", job, "--name", "after");
      for (const h of c.nodes) {
        await waitFor(async () => {
          const runs = await h.json<RunRecord[]>("get", "jobs", "after");
          return runs.length === 1 && runs[0].status === "completed";
        }, {
          what: `the run of "after" completed, seen on ${h.env.PRISN_NODE}`,
          timeoutMs: 30_000,
        });
      }
      // The service neither lost nor doubled a replica.
      const d = await n1.json<Detail>("get", "web");
      assert.equal(d.replicas.items.length, 3);
      assert.equal(d.replicas.ready, 3);
    } finally {
      await c.close();
    }
  },
});

/** The lines of a ticks file ("SCHEDULED-TIME RUN-ID" per run); [] before the first. */
async function readTicks(file: string): Promise<string[]> {
  try {
    return (await Deno.readTextFile(file)).trim().split("\n").filter(Boolean);
  } catch {
    return [];
  }
}

Deno.test({
  name:
    "cluster: a leader paused past its TTL (SIGSTOP) is replaced and, resumed, does nothing: no tick runs twice",
  ignore: NO_NATS !== undefined,
  fn: async () => {
    const c = await cluster();
    let paused: number | undefined;
    try {
      const [n1] = c.nodes;
      const ticks = join(n1.dir, "ticks.txt");
      const cron = n1.project("tick", {
        "main.sh": `echo "$PRISN_SCHEDULED_TIME $PRISN_RUN_ID" >> "${ticks}"\n`,
        "prisn.toml": 'schedule = "* * * * * *"\n',
      });
      await n1.ok("deploy", cron, "--name", "tick");
      const leader = await waitFor(
        async () => (await n1.json<StatusView>("status")).cluster?.leader,
        {
          what: "a leader",
        },
      );
      const old = c.nodes.find((h) => h.env.PRISN_NODE === leader)!;
      const other = c.nodes.find((h) => h !== old)!;
      await waitFor(async () => (await readTicks(ticks)).length >= 2, { what: "ticks" });
      paused = old.agentPid()!;
      Deno.kill(paused, "SIGSTOP");
      const next = await waitFor(async () => {
        const l = (await other.json<StatusView>("status")).cluster?.leader;
        return l && l !== leader ? l : undefined;
      }, { what: "a new leader while the old one is paused", timeoutMs: 40_000, intervalMs: 250 });
      const before = (await readTicks(ticks)).length;
      await waitFor(async () => (await readTicks(ticks)).length >= before + 2, {
        what: "ticks under the new leader",
        timeoutMs: 15_000,
      });
      Deno.kill(paused, "SIGCONT");
      paused = undefined;
      // Resumed, it knows it no longer leads (its clock says its lease ran out) and follows.
      await waitFor(async () => (await old.json<StatusView>("status")).cluster?.leader === next, {
        what: `${leader} seeing ${next} as the leader after it resumed`,
      });
      const resumed = (await readTicks(ticks)).length;
      await waitFor(async () => (await readTicks(ticks)).length >= resumed + 3, {
        what: "ticks after the old leader resumed",
        timeoutMs: 15_000,
      });
      await other.ok("suspend", "tick");
      const stamps = (await readTicks(ticks)).map((l) => l.split(" ")[0]);
      assert.equal(new Set(stamps).size, stamps.length, `a tick ran twice: ${stamps.join(", ")}`);
      assert.equal((await old.json<StatusView>("status")).cluster?.leader, next);
    } finally {
      if (paused) Deno.kill(paused, "SIGCONT");
      await c.close();
    }
  },
});

Deno.test({
  name:
    "cluster over a 3-server NATS (2.10) with 3 stream replicas: losing one server, prisn keeps deploying and running",
  ignore: NO_NATS !== undefined || !nats210Bin(),
  fn: async () => {
    const servers = (await startNatsCluster())!;
    const c = await cluster(servers);
    try {
      const [n1, n2, n3] = c.nodes;
      const first = n1.project("one", { "main.sh": "echo one\n" });
      await n1.ok("deploy", first, "--name", "one");
      await waitFor(async () => {
        const runs = await n3.json<RunRecord[]>("get", "jobs", "one");
        return runs.length === 1 && runs[0].status === "completed";
      }, { what: "the first job completed, seen on node 3", timeoutMs: 30_000 });
      // The server node 1 connected to first goes away for good.
      await servers[0].stop();
      const second = n2.project("two", { "main.sh": "echo two\n" });
      await waitFor(async () => (await n2.cli("deploy", second, "--name", "two")).code === 0, {
        what: "a deploy with one NATS server down",
        timeoutMs: 40_000,
        intervalMs: 1_000,
      });
      for (const h of c.nodes) {
        await waitFor(async () => {
          const runs = await h.json<RunRecord[]>("get", "jobs", "two");
          return runs.length === 1 && runs[0].status === "completed";
        }, { what: `the second job completed, seen on ${h.env.PRISN_NODE}`, timeoutMs: 40_000 })
          .catch(async (e) => {
            for (const x of c.nodes) {
              console.log(x.env.PRISN_NODE, await x.ok("get", "jobs", "two"), await x.ok("status"));
              const log = await Deno.readTextFile(join(x.home, "state", "agent.log")).catch(() =>
                ""
              );
              console.log(log.split("\n").slice(-8).join("\n"));
            }
            throw e;
          });
      }
      const s = await waitFor(async () => {
        const s = await n1.json<StatusView>("status");
        return s.cluster?.nodes === 3 && s.cluster.leader ? s : undefined;
      }, { what: "3 nodes and a leader with two NATS servers", timeoutMs: 30_000 });
      assert.deepEqual(s.cluster!.notReady, []);
    } finally {
      await c.close();
    }
  },
});

Deno.test({
  name:
    "cluster: [placement] tags and nodes choose where replicas run; one too big for any node's memory waits, Unplaced",
  ignore: NO_NATS !== undefined,
  fn: async () => {
    const c = await cluster(
      undefined,
      (i): Record<string, string> => (i === 3 ? { PRISN_TAGS: "gpu,ssd" } : {}),
    );
    try {
      const [n1, n2] = c.nodes;
      const app = (name: string, toml: string) =>
        n1.project(name, { "main.sh": "exec sleep 300\n", "prisn.toml": toml });
      const where = async (name: string) =>
        (await n2.json<Detail>("get", name)).replicas.items.map((r) => r.node).sort();
      await n1.ok("deploy", app("gpu", '[placement]\ntags = ["gpu"]\n'), "--replicas", "2");
      await waitFor(async () => (await where("gpu")).join() === "node-3,node-3", {
        what: "both gpu replicas on node-3, the only node tagged gpu",
        timeoutMs: 30_000,
      });
      await n1.ok(
        "deploy",
        app("pinned", '[placement]\nnodes = ["node-1", "node-2"]\n'),
        "--replicas",
        "2",
      );
      await waitFor(async () => (await where("pinned")).join() === "node-1,node-2", {
        what: "pinned replicas on node-1 and node-2",
        timeoutMs: 30_000,
      });
      // Room for none: 100 GiB each on machines of less.
      await n1.ok("deploy", app("huge", '[resources]\nmemory = "100Gi"\n'), "--replicas", "1");
      const d = await waitFor(async () => {
        const d = await n2.json<Detail & { events: EventRecord[] }>("get", "huge");
        return d.events.some((e) => e.kind === "Unplaced") ? d : undefined;
      }, { what: "an Unplaced event for huge", timeoutMs: 30_000 });
      assert.equal(d.replicas.items.length, 0, "nothing started where it does not fit");
      // Bad input: a bad tag, a [placement] that is not a table of lists.
      const badTag = await n1.cli("agent", "run", "--tags", "g p u");
      assert.notEqual(badTag.code, 0);
      assert.match(badTag.stderr.trim(), /^prisn: --tags: "g p u" is not a valid tag/);
      const badToml = await n1.cli("deploy", app("bad", '[placement]\ntags = "gpu"\n'));
      assert.notEqual(badToml.code, 0);
      assert.match(badToml.stderr.trim(), /placement\.tags/);
      assert.doesNotMatch(await n1.ok("ls"), /^bad\s/m);
    } finally {
      await c.close();
    }
  },
});

Deno.test({
  name:
    "a CLI started while `agent run --nats` is still joining waits for that agent instead of starting a second",
  ignore: NO_NATS !== undefined,
  fn: async () => {
    const nats = await startNats();
    const homes: TestHome[] = [];
    try {
      for (let i = 0; i < 3; i++) {
        const h = new TestHome();
        homes.push(h);
        const env = { PRISN_HOME: h.home, PRISN_NODE: `node-${i}`, PRISN_ADDRESS: "127.0.0.1" };
        // The agent, in the foreground of its own process; the CLI at the same moment.
        const agent = new Deno.Command(Deno.execPath(), {
          args: [
            "run",
            "-A",
            "--quiet",
            new URL("../../main.ts", import.meta.url).pathname,
            "agent",
            "run",
            "--nats",
            nats.url,
          ],
          env: { ...env, PRISN_CLUSTER: `race${i}` },
          stdout: "null",
          stderr: "piped",
        }).spawn();
        // The CLI comes once the agent holds the home (it is joining): a CLI quicker than the
        // agent's own start would find none and rightly start one of its own.
        const state = join(h.home, "state");
        await waitFor(
          () => ["agent.starting", "agent.pid"].some((f) => existsSync(join(state, f))),
          { what: "the agent holding its home" },
        );
        const status = await h.cli("status");
        try {
          assert.equal(status.code, 0, status.stderr);
          assert.match(
            status.stdout,
            /^CLUSTER: /,
            "answered by the cluster agent, not a second one",
          );
        } finally {
          await h.cli("agent", "stop");
          const done = agent.output();
          const timer = setTimeout(() => {
            try {
              agent.kill("SIGKILL"); // it did not stop: never leave it behind
            } catch { /* gone */ }
          }, 20_000);
          const out = await done;
          clearTimeout(timer);
          assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
        }
      }
    } finally {
      await Promise.all(homes.map((h) => h.close()));
      await nats.stop();
    }
  },
});

Deno.test({
  name:
    "cluster: a token made on one node opens every node's API (its namespaces only); a revoke on another closes them all",
  ignore: NO_NATS !== undefined,
  fn: async () => {
    const ports = [freePort(), freePort(), freePort()];
    const api = (i: number) => `http://127.0.0.${i}:${ports[i - 1]}`;
    const c = await cluster(undefined, (i) => ({ PRISN_LISTEN: `127.0.0.${i}:${ports[i - 1]}` }));
    try {
      const [n1, n2, n3] = c.nodes;
      const status = async (i: number, path: string, token: string) => {
        const res = await fetch(`${api(i)}${path}`, {
          headers: { authorization: `Bearer ${token}` },
        }).catch(() => undefined);
        await res?.body?.cancel();
        return res?.status;
      };
      // One admin token for the cluster, made by the node that started first, kept in its home.
      const admins = c.nodes.filter((h) => {
        try {
          return Deno.statSync(join(h.home, "admin.token")).isFile;
        } catch {
          return false;
        }
      });
      assert.equal(admins.length, 1, "one admin token for the cluster");
      const admin = Deno.readTextFileSync(join(admins[0].home, "admin.token")).trim();
      for (const i of [1, 2, 3]) assert.equal(await status(i, "/v1/status", admin), 200);

      const created = await n1.ok("token", "create", "ci", "--namespace", "team-a");
      const token = created.trim().split("\n").pop()!;
      for (const i of [1, 2, 3]) {
        await waitFor(
          async () => await status(i, "/v1/deployments?namespace=team-a", token) === 200,
          {
            what: `node ${i} to take the token made on node 1`,
          },
        );
        assert.equal(await status(i, "/v1/deployments?namespace=team-b", token), 403);
      }
      assert.match(await n3.ok("token", "ls"), /^ci\s+read-write\s+team-a\s/m);
      // The bucket keeps hashes, never the secret.
      const nc = await connect({ servers: c.nats.url });
      try {
        const kv = await new Kvm(nc).open("e2e-tokens");
        const stored = (await kv.get("tokens"))!.string();
        assert.ok(stored.includes('"ci"') && !stored.includes(token), "hashes only");
      } finally {
        await nc.close();
      }
      await n2.ok("token", "revoke", "ci");
      for (const i of [1, 2, 3]) {
        await waitFor(async () => await status(i, "/v1/status", token) === 401, {
          what: `node ${i} to refuse the token revoked on node 2`,
        });
      }

      // A token node 3 had of its own (as from before it joined) opens nothing; its log says so.
      await n3.ok("agent", "stop");
      await waitFor(() => n3.agentPid() === undefined, { what: "node-3 stopped" });
      const own = await TokenStore.open(n3.home);
      const old = await own.create("from-before");
      await n3.ok("ls");
      assert.equal(await status(3, "/v1/status", old), 401);
      const log = await Deno.readTextFile(join(n3.home, "state", "agent.log"));
      assert.match(
        log,
        /tokens: .*tokens\.json holds 1 token\(s\) the cluster does not \(from-before\)/,
      );
    } finally {
      await c.close();
    }
  },
});

Deno.test("agent run refuses bad cluster flags and an unreachable NATS in one line, and starts nothing", async () => {
  const h = new TestHome();
  try {
    const port = freePort(); // nothing listens there
    const cases: Array<[string[], RegExp]> = [
      [["--nats", `nats://127.0.0.1:${port}`], /^prisn: cannot reach NATS at /],
      [
        ["--nats", `nats://127.0.0.1:${port}`, "--nats-token", "t", "--nats-user", "u"],
        /^prisn: give one NATS auth: /,
      ],
      [["--nats", `nats://127.0.0.1:${port}`, "--nats-user", "u"], /go together/],
      [["--nats", `nats://127.0.0.1:${port}`, "--nats-replicas", "zero"], /--nats-replicas "zero"/],
      [["--start-parallelism", "0"], /^prisn: --start-parallelism "0" is not valid/],
    ];
    for (const [flags, message] of cases) {
      const r = await h.cli("agent", "run", ...flags);
      assert.notEqual(r.code, 0, flags.join(" "));
      assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
      assert.match(r.stderr.trim(), message);
      assert.equal(h.agentPid(), undefined, "no agent started");
    }
  } finally {
    await h.close();
  }
});
