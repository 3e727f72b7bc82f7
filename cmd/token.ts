import type { Command } from "commander";
import { formatAge } from "../core/duration.ts";
import type { App } from "./_app.ts";
import { formatData, parseFormat, table } from "./_output.ts";

export function register(program: Command, app: App): void {
  const token = program.command("token")
    .description(
      "API tokens of the agent's TCP API (prisn agent run --listen): create, ls, revoke; " +
        "on this machine's agent unless --context/--server say otherwise",
    );

  token.command("create")
    .description("make a token; prints it once, alone on the last line (the agent keeps a hash)")
    .argument("<name>")
    .option("--read-only", "the token may read (ls, get, logs…) but change nothing")
    .addHelpText(
      "after",
      "\n  -n/--namespace N (repeatable): the token reaches only these namespaces; " +
        "without it, every namespace",
    )
    .action(async (name: string, opts) => {
      // -n/--namespace is every command's option: commander hands it to the program.
      const namespaces = app.globals.namespace ?? [];
      const created = await (await app.agent({ admin: true })).createToken({
        name,
        readOnly: opts.readOnly,
        namespaces,
      });
      const reach = created.namespaces ? ` for namespace(s) ${created.namespaces.join(", ")}` : "";
      app.out(
        `token ${created.name} created${created.readOnly ? " (read-only)" : ""}${reach}; ` +
          `it is shown only now:`,
      );
      app.out(created.token);
    });

  token.command("ls")
    .description("the tokens: name, rights, age (never the secrets)")
    .option("-o, --output <format>", "json or yaml")
    .action(async (opts) => {
      const format = parseFormat(opts.output);
      const tokens = await (await app.agent({ admin: true })).tokens();
      if (format !== "table") return app.out(formatData(tokens, format));
      app.out(table(
        ["NAME", "ACCESS", "NAMESPACES", "AGE"],
        tokens.map((t) => [
          t.name,
          t.admin ? "admin" : t.readOnly ? "read-only" : "read-write",
          t.namespaces?.join(",") ?? "*",
          formatAge(t.createdAt),
        ]),
      ));
    });

  token.command("revoke")
    .description("revoke a token: requests carrying it get 401 from now on")
    .argument("<name>")
    .action(async (name: string) => {
      await (await app.agent({ admin: true })).revokeToken(name);
      app.out(`token ${name} revoked`);
    });
}
