import type { Command } from "commander";
import { formatAge } from "../core/duration.ts";
import type { App } from "./_app.ts";
import { formatData, parseFormat, table } from "./_output.ts";

export function register(program: Command, app: App): void {
  program.command("history")
    .description("the versions of a deployment, newest first; * marks the current one")
    .argument("<name>")
    .option("-o, --output <format>", "json or yaml")
    .action(async (name: string, opts) => {
      const format = parseFormat(opts.output);
      const rows = await (await app.agent()).history(name);
      if (format !== "table") return app.out(formatData(rows, format));
      const withCommit = rows.some((r) => r.source.commit);
      app.out(table(
        ["", "VERSION", "DEPLOYED", "STATUS", ...(withCommit ? ["COMMIT"] : [])],
        rows.map((r) => [
          r.current ? "*" : "",
          r.version,
          `${formatAge(r.deployedAt)} ago`,
          r.current ? "current" : r.status,
          ...(withCommit ? [r.source.commit?.slice(0, 12) ?? "-"] : []),
        ]),
      ));
    });
}
