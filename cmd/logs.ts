import type { Command } from "commander";
import { invalid } from "../core/errors.ts";
import { escapeControls } from "../core/terminal.ts";
import type { App } from "./_app.ts";

export function register(program: Command, app: App): void {
  program.command("logs")
    .description(
      "show logs: of a deployment (every replica / run merged by time, each line tagged " +
        "[replica] or [run]), of one replica (api-0) or of one run (run-1a2b3c4d)",
    )
    .argument("<name>", "a deployment, a replica (api-0) or a run id")
    .argument("[replica]", "one replica, e.g. api-1 (or just 1)")
    .option("--tail <n>", "how many lines from the end", "200")
    .option("-f, --follow", "keep printing new lines until interrupted")
    .option("--run <id>", "one run of a job: a run id or 'latest'")
    .option("--raw", "print control characters (escape sequences, \\r) as the app wrote them")
    .action(async (name: string, replica: string | undefined, opts) => {
      if (!/^\d+$/.test(opts.tail)) {
        throw invalid(`--tail "${opts.tail}" is not valid: give a whole number of lines`);
      }
      const client = await app.agent();
      const query = { tail: Number(opts.tail), replica, run: opts.run, follow: opts.follow };
      const stop = new AbortController();
      const onInt = () => stop.abort();
      if (opts.follow) {
        Deno.addSignalListener("SIGINT", onInt);
        Deno.addSignalListener("SIGTERM", onInt);
      }
      try {
        const show = opts.raw ? (line: string) => line : escapeControls;
        await client.logs(name, query, (line) => app.out(show(line)), { signal: stop.signal });
      } finally {
        if (opts.follow) {
          Deno.removeSignalListener("SIGINT", onInt);
          Deno.removeSignalListener("SIGTERM", onInt);
        }
      }
    });
}
