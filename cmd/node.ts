import type { Command } from "commander";
import type { App } from "./_app.ts";

export function register(program: Command, app: App): void {
  const node = program.command("node").description("cluster nodes: drain or undrain one");
  node.command("drain")
    .description("move a node's replicas to other nodes, a few at a time; it gets no new ones")
    .argument("<name>", "the node, as prisn get nodes lists it")
    .action(async (name: string) => {
      await (await app.agent()).drain(name, true);
      app.out(`node ${name} draining: its replicas move to other nodes (see prisn get nodes)`);
    });
  node.command("undrain")
    .description("let a drained node take replicas again")
    .argument("<name>", "the node, as prisn get nodes lists it")
    .action(async (name: string) => {
      await (await app.agent()).drain(name, false);
      app.out(`node ${name} ready: it takes new replicas again`);
    });
}
