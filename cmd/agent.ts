import { join } from "node:path";
import type { Command } from "commander";
import { formatDuration } from "../core/duration.ts";
import { AgentClient } from "../runtime/client.ts";
import type { App } from "./_app.ts";
import { processAlive as alive } from "../runtime/process.ts";
import { DEFAULT_START_PARALLELISM } from "../runtime/start_queue.ts";
import { parsePositive } from "../core/values.ts";

export function register(program: Command, app: App): void {
  const agent = program.command("agent").description("the node agent: run, stop, status");

  agent.command("run")
    .description("run the agent in the foreground (for systemd); other commands start it on demand")
    .option("--node <name>", "this node's name (default: the host name)")
    .option("--background", "started by the CLI: write messages to state/agent.log")
    .option(
      "--start-parallelism <n>",
      `replicas starting at once, deployments served in turn (env PRISN_START_PARALLELISM; ` +
        `default ${DEFAULT_START_PARALLELISM})`,
    )
    .action(async (opts) => {
      const startParallelism = parsePositive(
        opts.startParallelism ?? Deno.env.get("PRISN_START_PARALLELISM"),
        "--start-parallelism",
      );
      let log: ((line: string) => void) | undefined;
      if (opts.background) {
        await Deno.mkdir(app.paths.state, { recursive: true });
        const file = join(app.paths.state, "agent.log");
        log = (line) =>
          Deno.writeTextFileSync(file, `${new Date().toISOString()} ${line}\n`, { append: true });
      }
      // The agent's module graph loads only here: the CLI's other paths stay light.
      const { Agent } = await import("../runtime/agent.ts");
      const { localBackends } = await import("../runtime/backends.ts");
      const a = await Agent.start({
        paths: app.paths,
        node: opts.node,
        log,
        startParallelism,
        backends: localBackends, // one node; cluster mode picks cluster/'s backends here
      });
      const stop = () => a.stop();
      Deno.addSignalListener("SIGINT", stop);
      Deno.addSignalListener("SIGTERM", stop);
      await a.finished;
      Deno.removeSignalListener("SIGINT", stop);
      Deno.removeSignalListener("SIGTERM", stop);
    });

  agent.command("stop")
    .description("stop the agent and everything it runs (started again on the next command)")
    .action(async () => {
      const client = await AgentClient.existing(app.paths);
      if (!client) return app.out("no agent running");
      try {
        const { pid } = await client.stopAgent();
        const deadline = Date.now() + 60_000;
        while (Date.now() < deadline && (await client.ping() || alive(pid))) {
          await new Promise((r) => setTimeout(r, 50));
        }
        app.out(`agent ${pid} stopped`);
      } finally {
        client.close();
      }
    });

  agent.command("status")
    .description("is an agent running for this PRISN_HOME")
    .action(async () => {
      const client = await AgentClient.existing(app.paths);
      if (!client) {
        app.out(`no agent running for ${app.paths.home}`);
        app.exitCode = 3;
        return;
      }
      try {
        const s = await client.status();
        app.out(
          `agent running: pid ${s.agent.pid}, node ${s.node}, up ${
            formatDuration(Date.now() - s.agent.startedAt)
          }, ` +
            `${s.deployments.length} deployment(s), ${mib(s.agent.memory.rss)} MiB resident ` +
            `(JS heap ${mib(s.agent.memory.heapUsed)} MiB), home ${s.home}`,
        );
      } finally {
        client.close();
      }
    });
}

function mib(bytes: number): string {
  return (bytes / 1048576).toFixed(1);
}
