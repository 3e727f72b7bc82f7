import type { Command } from "commander";
import { formatAge } from "../core/duration.ts";
import type { App } from "./_app.ts";
import { formatData, parseFormat, table } from "./_output.ts";

export function register(program: Command, app: App): void {
  const token = program.command("token")
    .description(
      "API tokens of the agent's TCP API (prisn agent run --listen): create, ls, revoke",
    );

  token.command("create")
    .description("make a token; prints it once, alone on the last line (the agent keeps a hash)")
    .argument("<name>")
    .option("--read-only", "the token may read (ls, get, logs…) but change nothing")
    .action(async (name: string, opts) => {
      const created = await (await app.agent()).createToken({ name, readOnly: opts.readOnly });
      app.out(
        `token ${created.name} created${created.readOnly ? " (read-only)" : ""}; ` +
          `it is shown only now:`,
      );
      app.out(created.token);
    });

  token.command("ls")
    .description("the tokens: name, rights, age (never the secrets)")
    .option("-o, --output <format>", "json or yaml")
    .action(async (opts) => {
      const format = parseFormat(opts.output);
      const tokens = await (await app.agent()).tokens();
      if (format !== "table") return app.out(formatData(tokens, format));
      app.out(table(
        ["NAME", "ACCESS", "AGE"],
        tokens.map((t) => [
          t.name,
          t.admin ? "admin" : t.readOnly ? "read-only" : "read-write",
          formatAge(t.createdAt),
        ]),
      ));
    });

  token.command("revoke")
    .description("revoke a token: requests carrying it get 401 from now on")
    .argument("<name>")
    .action(async (name: string) => {
      await (await app.agent()).revokeToken(name);
      app.out(`token ${name} revoked`);
    });
}
