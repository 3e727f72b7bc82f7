import type { Command } from "commander";
import { deploymentKey, displayKey } from "../core/namespace.ts";
import { formatAge, formatDuration } from "../core/duration.ts";
import type { DeploymentSummary, StatusView } from "../runtime/api_types.ts";
import type { App } from "./_app.ts";
import { formatData, parseFormat, table } from "./_output.ts";

export function register(program: Command, app: App): void {
  program.command("status")
    .description("this node, its deployments and recent runs")
    .option("-o, --output <format>", "json or yaml")
    .action(async (opts) => {
      const format = parseFormat(opts.output);
      const status = await (await app.agent()).status();
      if (format !== "table") return app.out(formatData(status, format));
      const remote = app.talkingTo();
      app.out(remote ? `Talking to ${remote}\n${render(status)}` : render(status));
    });
}

/** One word or so on how a deployment is doing: replicas, next run or last result. */
export function stateOf(d: DeploymentSummary): string {
  if (d.type === "service") {
    return `${d.replicas.ready}/${d.replicas.desired} ready` + (d.port ? ` on :${d.port}` : "");
  }
  const last = d.lastRun
    ? `last: ${d.lastRun.status}${
      d.lastRun.exitCode !== undefined && d.lastRun.status === "failed"
        ? ` (exit ${d.lastRun.exitCode})`
        : ""
    }` +
      (d.lastRun.finishedAt ? ` ${formatAge(d.lastRun.finishedAt)} ago` : "")
    : "no runs yet";
  return d.type === "cronjob" ? `${d.next ?? ""}, ${last}` : last;
}

function render(s: StatusView): string {
  const lines: string[] = [];
  if (s.cluster) {
    const c = s.cluster;
    lines.push(
      c.staleSince !== undefined
        ? `CLUSTER: NATS unreachable; this node's records as of ${
          formatDuration(Date.now() - c.staleSince)
        } ago (stale), replicas here keep running`
        : `CLUSTER: ${c.nodes} node${c.nodes === 1 ? "" : "s"}, ${
          c.notReady.length ? `not ready: ${c.notReady.join(", ")}` : "all healthy"
        }; leader ${c.leader ?? "none yet"}`,
    );
  }
  lines.push(
    `Node: ${s.node} (${s.cluster ? "cluster" : "single node"}, agent pid ${s.agent.pid}, up ${
      formatDuration(Date.now() - s.agent.startedAt)
    }, home ${s.home})`,
    "",
  );
  if (s.disk?.fullSince !== undefined) {
    const d = s.disk;
    lines.push(
      `DISK FULL since ${new Date(d.fullSince!).toISOString()} (${
        formatAge(d.fullSince!)
      } ago): ${d.failedWrites} write(s) failed, ${d.pending} held to retry; ${d.lastError}`,
      "",
    );
  }
  if (s.deployments.length === 0) {
    lines.push("No deployments yet: try prisn deploy examples/hello-api");
  } else {
    lines.push(table(
      ["NAME", "TYPE", "VERSION", "STATE"],
      // Every namespace's: outside default, NAMESPACE/NAME.
      s.deployments.map((d) => [
        displayKey(deploymentKey(d.namespace, d.name)),
        d.type,
        d.version,
        stateOf(d),
      ]),
    ));
  }
  const r = s.runs.lastHour;
  const total = r.pending + r.running + r.completed + r.failed;
  lines.push(
    "",
    `Runs (last hour): ${total} — ${r.completed} completed, ${
      r.running + r.pending
    } running, ${r.failed} failed`,
  );
  return lines.join("\n");
}
