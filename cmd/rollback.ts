import type { Command } from "commander";
import type { App } from "./_app.ts";

export function register(program: Command, app: App): void {
  program.command("rollback")
    .description("go back to the previous version, or to VERSION (services roll without downtime)")
    .argument("<name>")
    .argument("[version]", "a version from prisn history NAME")
    .action(async (name: string, version: string | undefined) => {
      const r = await (await app.agent()).rollback(name, { version });
      app.out(
        r.unchanged ? `${name} is already at ${r.version}` : `${name} rolled back to ${r.version}`,
      );
    });
}
