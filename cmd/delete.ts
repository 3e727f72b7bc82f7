import type { Command } from "commander";
import type { App } from "./_app.ts";

export function register(program: Command, app: App): void {
  program.command("delete")
    .description("stop a deployment and remove its records and files (logs kept unless --purge)")
    .argument("<name>")
    .option("--purge", "remove its logs too")
    .action(async (name: string, opts) => {
      await (await app.agent()).delete(name, { purge: Boolean(opts.purge) });
      app.out(`${name} deleted${opts.purge ? " (logs purged)" : ""}`);
    });
}
