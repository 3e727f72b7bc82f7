import type { Command } from "commander";
import { formatAge, formatDuration } from "../core/duration.ts";
import { invalid } from "../core/errors.ts";
import type { RunRecord, SourceInfo } from "../core/types.ts";
import type { BalancerInfo, DeploymentDetail } from "../runtime/api_types.ts";
import type { App } from "./_app.ts";
import { clock, fields, formatData, parseFormat, table } from "./_output.ts";
import { listDeployments } from "./ls.ts";

export function register(program: Command, app: App): void {
  program.command("get")
    .description("get deploy | get jobs [NAME] | get nodes | get NAME: list or describe")
    .argument("<what>", "deploy (all deployments), jobs (runs), or a deployment name")
    .argument("[name]", "with jobs: only the runs of this deployment or replica (api-0)")
    .option("--limit <n>", "with jobs: how many runs to show", "20")
    .option("-o, --output <format>", "json or yaml")
    .action(async (what: string, name: string | undefined, opts) => {
      if (what === "deploy" || what === "deployments" || what === "deploy/") {
        return await listDeployments(app, opts.output);
      }
      if (what === "jobs" || what === "runs") return await listRuns(app, name, opts);
      if (what === "nodes" || what === "node") {
        if (name) throw invalid(`unexpected "${name}": use prisn get nodes`);
        return await listNodes(app, opts.output);
      }
      if (name) {
        throw invalid(`unexpected "${name}": use prisn get NAME, get jobs NAME or get deploy`);
      }
      await describe(app, what, opts.output);
    });
}

async function listNodes(app: App, output?: string) {
  const format = parseFormat(output);
  const nodes = await (await app.agent()).nodes();
  if (format !== "table") return app.out(formatData(nodes, format));
  app.out(table(
    ["NAME", "STATUS", "ADDRESS", "REPLICAS", "RUNS", "HEARTBEAT", "VERSION"],
    nodes.map((n) => [
      n.node,
      n.status,
      n.address,
      String(n.replicas),
      String(n.runs),
      n.heartbeatAgeMs === 0 ? "now" : `${formatDuration(n.heartbeatAgeMs)} ago`,
      n.version,
    ]),
  ));
}

async function listRuns(
  app: App,
  name: string | undefined,
  opts: { limit: string; output?: string },
) {
  const format = parseFormat(opts.output);
  if (!/^\d+$/.test(opts.limit) || Number(opts.limit) < 1) {
    throw invalid(`--limit "${opts.limit}" is not valid: give a whole number of 1 or more`);
  }
  const allNamespaces = app.globals.allNamespaces === true;
  if (allNamespaces && name) throw invalid("-A lists every namespace's runs: give no NAME with it");
  const runs = await (await app.agent()).runs({
    deployment: name,
    limit: Number(opts.limit),
    allNamespaces,
  });
  if (format !== "table") return app.out(formatData(runs, format));
  if (runs.length === 0) return app.out("No runs.");
  app.out(table(
    [
      ...allNamespaces ? ["NAMESPACE"] : [],
      "ID",
      "DEPLOYMENT",
      "STATUS",
      "STARTED",
      "DURATION",
      "EXIT",
    ],
    runs.map((r) => [
      ...allNamespaces ? [r.namespace ?? "default"] : [],
      r.id,
      r.replica ?? r.deployment,
      runStatus(r),
      r.startedAt ? `${formatAge(r.startedAt)} ago` : "-",
      r.startedAt ? formatDuration((r.finishedAt ?? Date.now()) - r.startedAt) : "-",
      r.exitCode !== undefined ? String(r.exitCode) : "-",
    ]),
  ));
}

async function describe(app: App, name: string, output?: string) {
  const format = parseFormat(output);
  const d = await (await app.agent()).deployment(name);
  if (format !== "table") {
    const { replicaStatus, ...rest } = d;
    return app.out(
      formatData({ ...rest, replicas: { ...d.replicas, items: replicaStatus } }, format),
    );
  }
  const lines = [fields([
    ["Name", d.name],
    ["Namespace", d.namespace],
    ["Type", d.type + (d.suspended ? " (suspended)" : "")],
    ["Version", `${d.version} (deployed ${formatAge(d.deployedAt)} ago)`],
    ["Source", describeSource(d.source as SourceInfo)],
    ["Entrypoint", d.entrypoint],
    [
      "Command",
      d.command?.map((a) => /^[\w@%+=:,./$-]+$/.test(a) ? a : JSON.stringify(a)).join(" "),
    ],
    ["Runtime", d.runtime && d.runtime + (d.interpreter ? ` (${d.interpreter})` : "")],
    ["Runs as", runsAs(d.spec)],
    ["Env", d.envs?.join(", ")],
    ["Port", d.port !== undefined ? String(d.port) : undefined],
    ["Balancer", d.balancer ? describeBalancer(d.balancer) : undefined],
    [
      "Replicas",
      d.type === "service" ? `${d.replicas.desired} desired, ${d.replicas.ready} ready` : undefined,
    ],
    ["Resources", d.resources],
    ["Schedule", d.schedule ? `${d.schedule} (${d.timezone ?? "UTC"})` : undefined],
    ["Next runs", d.nextRuns?.map((t) => clock(Date.parse(t))).join(", ")],
    ["Last run", d.lastRun && lastRun(d.lastRun)],
  ])];
  if (d.type === "service") {
    lines.push("", "Replicas:");
    lines.push(indent(
      d.replicaStatus.length === 0 ? "none running" : table(
        ["NAME", "STATE", "RESTARTS", "AGE", "NODE", "VERSION", "PID"],
        d.replicaStatus.map((r) => [
          r.name,
          r.state,
          String(r.restarts),
          r.createdAt ? formatAge(r.createdAt) : "-",
          r.node,
          r.version,
          r.pid ? String(r.pid) : "-",
        ]),
      ),
    ));
  }
  lines.push("", "Recent Events:");
  lines.push(indent(
    d.events.length === 0 ? "none" : table(
      ["AGE", "KIND", "MESSAGE"],
      d.events.map((e) => [`${formatAge(e.at)} ago`, e.kind, e.message]),
    ),
  ));
  app.out(lines.join("\n"));
}

/** `user` or `user:group` of prisn.toml; undefined when the processes run as the agent's user. */
function runsAs(spec: Record<string, unknown>): string | undefined {
  if (typeof spec.user !== "string") return undefined;
  return typeof spec.group === "string" ? `${spec.user}:${spec.group}` : spec.user;
}

function describeBalancer(b: BalancerInfo): string {
  return b.kind === "kernel"
    ? b.path === "sk_lookup"
      ? `kernel (sk_lookup steering to the replicas' sockets; table ip ${b.table} for the rest)`
      : b.path === "nftables"
      ? `kernel (nftables DNAT, table ip ${b.table}${
        b.steeringFallback ? `; not steered: ${b.steeringFallback}` : ""
      })`
      : `kernel (no replica ready: the userspace proxy holds connections; table ip ${b.table})`
    : b.engine === "epoll"
    ? `userspace (prisn's TCP proxy, epoll engine${
      (b.workers ?? 1) > 1 ? `, ${b.workers} workers` : ""
    })`
    : `userspace (prisn's TCP proxy, Deno copy loop${
      b.engineFallback ? `: ${b.engineFallback}` : ""
    })`;
}

/** "failed (timed out) [attempt 2]", "running (service)", "failed (service, OOMKilled)". */
function runStatus(r: RunRecord): string {
  const notes = [r.replica ? "service" : undefined, r.reason].filter((n) => n);
  return r.status + (notes.length ? ` (${notes.join(", ")})` : "") +
    (r.attempt > 1 ? ` [attempt ${r.attempt}]` : "");
}

/** "run-1a2b3c4d failed (exit 2): ERROR: no such table: users". */
function lastRun(r: NonNullable<DeploymentDetail["lastRun"]>): string {
  const exit = r.exitCode !== undefined ? `exit ${r.exitCode}` : undefined;
  const notes = [r.replica, exit, r.reason].filter((n) => n);
  return `${r.id} ${r.status}${notes.length ? ` (${notes.join(", ")})` : ""}` +
    (r.lastError && r.status === "failed" ? `: ${r.lastError}` : "");
}

function describeSource(s: SourceInfo): string {
  if (s.kind !== "git") return `${s.kind === "dir" ? "folder" : "file"} ${s.location}`;
  return `${s.location}` + (s.ref ? ` ref ${s.ref}` : "") + (s.path ? ` path ${s.path}` : "") +
    (s.commit ? ` commit ${s.commit}` : "");
}

function indent(text: string): string {
  return text.split("\n").map((l) => "  " + l).join("\n");
}
