import { Command, CommanderError } from "commander";
import { PrisnError } from "./core/errors.ts";
import { App } from "./cmd/_app.ts";
import * as agent from "./cmd/agent.ts";
import * as del from "./cmd/delete.ts";
import * as deploy from "./cmd/deploy.ts";
import * as env from "./cmd/env.ts";
import * as gc from "./cmd/gc.ts";
import * as get from "./cmd/get.ts";
import * as history from "./cmd/history.ts";
import * as logs from "./cmd/logs.ts";
import * as ls from "./cmd/ls.ts";
import * as node from "./cmd/node.ts";
import * as rollback from "./cmd/rollback.ts";
import * as run from "./cmd/run.ts";
import * as scale from "./cmd/scale.ts";
import * as status from "./cmd/status.ts";
import * as suspend from "./cmd/suspend.ts";
import * as token from "./cmd/token.ts";
import * as context from "./cmd/context.ts";
import { versionText } from "./version.ts";

/** Builds the command tree, runs it, and maps errors to one line on stderr and an exit code. */
export async function main(args: string[]): Promise<number> {
  if (args.length === 1 && (args[0] === "--version" || args[0] === "-v")) {
    console.log(versionText());
    return 0;
  }
  const app = new App();
  const program = new Command("prisn")
    .description("deploy scripts and keep them running: services, cronjobs and jobs")
    .option("-v, --version", "print the version and git commit")
    .option(
      "--server <url>",
      "a remote agent's API: https://HOST:PORT (env PRISN_SERVER; its CA: env PRISN_CA)",
    )
    .option("--token <token>", "the remote agent's API token (env PRISN_TOKEN)")
    .option("--context <name>", "talk to this context's agent (see prisn context ls)")
    .option(
      "-n, --namespace <name>",
      "the namespace to address (default: the context's, else default)",
      (value: string, previous: string[] = []) => [...previous, value],
    )
    .option("-A, --all-namespaces", "ls, get deploy, get jobs: every namespace")
    .hook("preAction", (cmd) => {
      app.globals = cmd.opts();
    })
    .exitOverride()
    .configureOutput({ writeErr: () => {} })
    .showSuggestionAfterError(true);
  for (
    const cmd of [
      deploy,
      status,
      ls,
      get,
      logs,
      history,
      rollback,
      scale,
      run,
      suspend,
      env,
      gc,
      del,
      node,
      token,
      context,
      agent,
    ]
  ) {
    cmd.register(program, app);
  }
  if (args.length === 0) {
    console.log(program.helpInformation().trimEnd());
    return 0;
  }
  try {
    await program.parseAsync(args, { from: "user" });
    return app.exitCode;
  } catch (e) {
    if (e instanceof CommanderError) {
      if (
        e.code === "commander.helpDisplayed" || e.code === "commander.version" ||
        e.code === "commander.help"
      ) {
        return 0;
      }
      console.error(
        `prisn: ${e.message.replace(/^error: /, "").split("\n")[0]} (see prisn --help)`,
      );
      return 2;
    }
    if (e instanceof PrisnError) {
      console.error(`prisn: ${e.message}`);
      return 1;
    }
    console.error(`prisn: internal error: ${(e as Error)?.stack ?? e}`);
    return 1;
  } finally {
    app.close();
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
