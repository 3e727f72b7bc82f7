import type { Command } from "commander";
import { invalid, notFound } from "../core/errors.ts";
import type { RunRecord } from "../core/types.ts";
import { follow, listLogFiles, tailMerged } from "../runtime/logs.ts";
import type { DeploymentDetail } from "../runtime/views.ts";
import type { App } from "./_app.ts";

export function register(program: Command, app: App): void {
  program.command("logs")
    .description("show a deployment's logs (all replicas / runs merged by time)")
    .argument("<name>")
    .argument("[replica]", "one replica, e.g. api-1 (or just 1)")
    .option("--tail <n>", "how many lines from the end", "200")
    .option("-f, --follow", "keep printing new lines until interrupted")
    .option("--run <id>", "one run of a job: a run id or 'latest'")
    .action(async (name: string, replica: string | undefined, opts) => {
      if (!/^\d+$/.test(opts.tail)) {
        throw invalid(`--tail "${opts.tail}" is not valid: give a whole number of lines`);
      }
      const client = await app.agent();
      const d = await client.call<DeploymentDetail>(
        "GET",
        `/v1/deployments/${encodeURIComponent(name)}`,
      );
      let streams: Set<string> | undefined;
      if (opts.run) {
        const run = opts.run === "latest"
          ? (await client.call<RunRecord[]>(
            "GET",
            `/v1/runs?deployment=${encodeURIComponent(name)}&limit=1`,
          ))[0]
          : await client.call<RunRecord>("GET", `/v1/runs/${encodeURIComponent(opts.run)}`);
        if (!run || run.deployment !== name) {
          throw notFound(
            `${name} has ${
              opts.run === "latest" ? "no runs yet" : `no run ${opts.run}`
            }: see prisn get jobs ${name}`,
          );
        }
        streams = new Set([run.id]);
      } else if (replica) {
        const stream = /^\d+$/.test(replica) ? `${name}-${replica}` : replica;
        const known = d.replicaStatus.some((r) => r.name === stream) ||
          (await listLogFiles(app.paths, name, new Set([stream]))).length > 0;
        if (!known) throw notFound(`${name} has no replica ${replica}: see prisn get ${name}`);
        streams = new Set([stream]);
      }
      const files = () => listLogFiles(app.paths, name, streams);
      for (const line of await tailMerged(await files(), Number(opts.tail))) app.out(line);
      if (!opts.follow) return;
      const stop = new AbortController();
      const onInt = () => stop.abort();
      Deno.addSignalListener("SIGINT", onInt);
      Deno.addSignalListener("SIGTERM", onInt);
      try {
        await follow(files, (lines) => lines.forEach((l) => app.out(l)), { signal: stop.signal });
      } finally {
        Deno.removeSignalListener("SIGINT", onInt);
        Deno.removeSignalListener("SIGTERM", onInt);
      }
    });
}
