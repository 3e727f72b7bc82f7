import type { Command } from "commander";
import { parseEnvPair } from "../core/values.ts";
import type { App } from "./_app.ts";

const collect = (value: string, previous: string[] = []) => [...previous, value];

export function register(program: Command, app: App): void {
  program.command("run")
    .description("run a job or cronjob now")
    .argument("<name>")
    .option("--env <K=V>", "environment variable for this run only (repeatable)", collect)
    .action(async (name: string, opts) => {
      const env: string[] = opts.env ?? [];
      env.forEach(parseEnvPair); // refuse bad pairs before asking the agent
      const { id } = await (await app.agent()).startRun(name, { env });
      app.out(`${name}: started ${id} (prisn logs ${name} --run ${id})`);
    });
}
