import type { Command } from "commander";
import type { App } from "./_app.ts";

export function register(program: Command, app: App): void {
  for (const verb of ["suspend", "resume"] as const) {
    program.command(verb)
      .description(
        verb === "suspend"
          ? "stop a cronjob from firing (runs in progress go on)"
          : "let a suspended cronjob fire again (missed ticks are not caught up)",
      )
      .argument("<name>")
      .action(async (name: string) => {
        await (await app.agent()).setSuspended(name, verb === "suspend");
        app.out(`${name} ${verb === "suspend" ? "suspended" : "resumed"}`);
      });
  }
}
