import type { Command } from "commander";
import type { App } from "./_app.ts";
import { formatData, parseFormat, table } from "./_output.ts";

export function register(program: Command, app: App): void {
  program.command("env")
    .description("list a deployment's environment (secret values masked)")
    .argument("<name>")
    .option("-o, --output <format>", "json or yaml")
    .action(async (name: string, opts) => {
      const format = parseFormat(opts.output);
      const rows = await (await app.agent()).env(name);
      if (format !== "table") return app.out(formatData(rows, format));
      if (rows.length === 0) return app.out(`${name} sets no environment variables`);
      app.out(table(
        ["KEY", "VALUE", ""],
        rows.map((r) => [r.key, r.value, r.secret ? "(secret)" : ""]),
      ));
    });
}
