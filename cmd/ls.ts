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

/**
 * `prisn ls` and `prisn get deploy`: NAME TYPE REPLICAS VERSION AGE; with -A (every namespace),
 * or when the list spans several (a scoped token's), NAMESPACE first.
 */
export async function listDeployments(app: App, output?: string): Promise<void> {
  const format = parseFormat(output);
  const all = app.globals.allNamespaces === true;
  const list = await (await app.agent()).deployments({ all });
  if (format !== "table") return app.out(formatData(list, format));
  if (list.length === 0) return app.out("No deployments.");
  const namespaced = all || new Set(list.map((d) => d.namespace)).size > 1;
  app.out(table(
    [...namespaced ? ["NAMESPACE"] : [], "NAME", "TYPE", "REPLICAS", "VERSION", "AGE"],
    list.map((d) => [
      ...namespaced ? [d.namespace] : [],
      d.name,
      d.type,
      d.type === "service" ? `${d.replicas.ready}/${d.replicas.desired}` : "-",
      d.version,
      formatAge(d.createdAt),
    ]),
  ));
}
