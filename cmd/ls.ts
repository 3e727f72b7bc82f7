import type { Command } from "commander";
import { formatAge } from "../core/duration.ts";
import type { App } from "./_app.ts";
import { formatData, parseFormat, table } from "./_output.ts";

export function register(program: Command, app: App): void {
  program.command("ls")
    .description("list deployments (same as prisn get deploy)")
    .option("-o, --output <format>", "json or yaml")
    .action((opts) => listDeployments(app, opts.output));
}

/** `prisn ls` and `prisn get deploy`: NAME TYPE REPLICAS VERSION AGE. */
export async function listDeployments(app: App, output?: string): Promise<void> {
  const format = parseFormat(output);
  const list = await (await app.agent()).deployments();
  if (format !== "table") return app.out(formatData(list, format));
  if (list.length === 0) return app.out("No deployments.");
  app.out(table(
    ["NAME", "TYPE", "REPLICAS", "VERSION", "AGE"],
    list.map((d) => [
      d.name,
      d.type,
      d.type === "service" ? `${d.replicas.ready}/${d.replicas.desired}` : "-",
      d.version,
      formatAge(d.createdAt),
    ]),
  ));
}
