import type { Command } from "commander";
import { Contexts } from "../core/contexts.ts";
import { invalid } from "../core/errors.ts";
import type { App } from "./_app.ts";
import { formatData, parseFormat, table } from "./_output.ts";

export function register(program: Command, app: App): void {
  const context = program.command("context")
    .description("remote agents to talk to, as kubectl's contexts: add, use, ls, rm");

  context.command("add")
    .description(
      "add (or replace) a context: --server URL --token T [--ca FILE] [-n NAMESPACE]; the first is current",
    )
    .argument("<name>")
    .option("--ca <file>", "PEM CA file the server's certificate is checked against")
    .action(async (name: string, opts) => {
      // --server, --token and -n are every command's options: commander hands them to the program.
      const { server, token } = app.globals;
      if (!server || !token) throw invalid("context add needs --server URL and --token T");
      const namespace = app.namespace();
      const contexts = await Contexts.open();
      await contexts.add(name, { server, token, ca: opts.ca, namespace });
      app.out(
        `context ${name} added (${contexts.get(name).server})` +
          (contexts.current === name ? ", in use" : ""),
      );
    });

  context.command("use")
    .description("talk to this context's agent from now on")
    .argument("<name>")
    .action(async (name: string) => {
      await (await Contexts.open()).use(name);
      app.out(`using context ${name}`);
    });

  context.command("ls")
    .description("the contexts; * marks the one in use")
    .option("-o, --output <format>", "json or yaml")
    .action(async (opts) => {
      const format = parseFormat(opts.output);
      const list = (await Contexts.open()).list().map(({ token: _, ...c }) => c);
      if (format !== "table") return app.out(formatData(list, format));
      app.out(table(
        ["", "NAME", "SERVER", "NAMESPACE", "CA"],
        list.map((c) => [
          c.current ? "*" : "",
          c.name,
          c.server,
          c.namespace ?? "default",
          c.ca ?? "-",
        ]),
      ));
    });

  context.command("rm")
    .description("remove a context (without one in use, the CLI talks to the local agent)")
    .argument("<name>")
    .action(async (name: string) => {
      await (await Contexts.open()).remove(name);
      app.out(`context ${name} removed`);
    });
}
