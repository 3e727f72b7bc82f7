import type { Command } from "commander";
import { invalid } from "../core/errors.ts";
import type { App } from "./_app.ts";
import { formatData, parseFormat } from "./_output.ts";

export function register(program: Command, app: App): void {
  program.command("gc")
    .description("remove old versions (beyond history.versions) and dependency envs nothing uses")
    .option("--keep <n>", "versions to keep per deployment, the current one included")
    .option("--dry-run", "only list what would be removed")
    .option("-o, --output <format>", "json or yaml")
    .action(async (opts) => {
      const format = parseFormat(opts.output);
      if (opts.keep !== undefined && !/^[1-9]\d*$/.test(opts.keep)) {
        throw invalid(`--keep "${opts.keep}" is not valid: give a whole number of 1 or more`);
      }
      const result = await (await app.agent()).gc({
        keepVersions: opts.keep !== undefined ? Number(opts.keep) : undefined,
        dryRun: Boolean(opts.dryRun),
      });
      if (format !== "table") return app.out(formatData(result, format));
      const verb = opts.dryRun ? "would remove" : "removed";
      app.out(`${verb} ${result.versions.length} version(s), ${result.envs.length} env(s)`);
      for (const v of result.versions) app.out(`  version ${v}`);
      for (const e of result.envs) app.out(`  env ${e}`);
    });
}
