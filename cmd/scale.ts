import type { Command } from "commander";
import { parseReplicas } from "../core/values.ts";
import type { App } from "./_app.ts";

export function register(program: Command, app: App): void {
  program.command("scale")
    .description("set a service's replica count (0 stops it but keeps it deployed)")
    .argument("<name>")
    .argument("<replicas>")
    .action(async (name: string, value: string) => {
      const replicas = parseReplicas(value);
      await (await app.agent()).scale(name, replicas);
      app.out(`${name} scaled to ${replicas} replica(s)`);
    });
}
