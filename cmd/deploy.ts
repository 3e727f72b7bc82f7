import { basename, join, resolve } from "node:path";
import { packVersion } from "../core/archive.ts";
import { defaultName } from "../core/spec.ts";
import type { Command } from "commander";
import { DEFAULT_NAMESPACE, deploymentKey, displayKey } from "../core/namespace.ts";
import { invalid, PrisnError } from "../core/errors.ts";
import { readConfigFile } from "../core/fs.ts";
import type { DeployRequest, DeployResult } from "../runtime/api_types.ts";
import { isGitUrl } from "../runtime/git_source.ts";
import type { App } from "./_app.ts";
import { formatData, parseFormat } from "./_output.ts";

const collect = (value: string, previous: string[] = []) => [...previous, value];

export function register(program: Command, app: App): void {
  program.command("deploy")
    .description("deploy a folder, a script file or a git repository as a new version")
    .argument("<source>", "folder, file, or git URL (https://, ssh://, git@host:…, file://)")
    .option("--name <name>", "deployment name (default: prisn.toml name, folder name or file stem)")
    .option("--type <type>", "service, job or cronjob (default: from schedule/port/replicas)")
    .option("--port <port>", "port the service listens on (prisn balances it over replicas)")
    .option("--replicas <n>", "number of service replicas")
    .option("--schedule <cron>", "cron schedule: makes a cronjob")
    .option("--timezone <zone>", "IANA time zone of the schedule (default: the host's)")
    .option("--env <K=V>", "environment variable (repeatable)", collect)
    .option(
      "--follow-links",
      "package symlinks that point outside the folder by the content of the file they point to",
    )
    .option("--env-file <file>", "read KEY=VALUE lines from a file (repeatable)", collect)
    .option(
      "--secret <K=V>",
      "secret environment variable: never shown or logged (repeatable)",
      collect,
    )
    .option(
      "--entrypoint <file>",
      "script to run (default: main.py, app.py, main.js, index.js, main.sh)",
    )
    .option(
      "--runtime <runtime>",
      "python3, node, bash… (default: from the entrypoint's extension)",
    )
    .option("--ref <ref>", "git branch, tag or commit")
    .option("--path <dir>", "sub-folder of the git repository to deploy")
    .option("-o, --output <format>", "json or yaml: print the result as data")
    .action(async (source: string, opts) => {
      const format = parseFormat(opts.output);
      if (!source.trim()) {
        throw new PrisnError("INVALID", "give a folder, a file or a git URL to deploy");
      }
      const location = isGitUrl(source) ? source : resolve(source);
      const flags = {
        name: opts.name,
        type: opts.type,
        port: opts.port,
        replicas: opts.replicas,
        schedule: opts.schedule,
        timezone: opts.timezone,
        env: opts.env,
        secret: opts.secret,
        envFiles: await readEnvFiles(opts.envFile ?? []),
        followLinks: opts.followLinks === true ? true : undefined,
        entrypoint: opts.entrypoint,
        runtime: opts.runtime,
      };
      const client = await app.agent();
      const request = { source: location, ref: opts.ref, path: opts.path, flags };
      const archive = client.remote && !isGitUrl(source) ? await packForUpload(request) : undefined;
      const result = await client.deploy(request, (step, detail) => {
        if (format === "table") app.out(`${step.padEnd(9)} ${detail}`);
      }, { archive });
      if (format !== "table") return app.out(formatData(result, format));
      app.out(summary(result));
    });
}

/**
 * A local folder or file as the deterministic archive (core/archive.ts) a remote agent unpacks:
 * a file goes in a folder of its own, named and run as a local deploy of it would be.
 */
async function packForUpload(request: DeployRequest): Promise<Uint8Array<ArrayBuffer>> {
  const info = await Deno.stat(request.source).catch(() => undefined);
  if (!info) throw invalid(`${request.source} does not exist: give a folder, a file or a git URL`);
  if (info.isDirectory) return await packVersion(request.source);
  const temp = await Deno.makeTempDir({ prefix: "prisn-upload-" });
  try {
    const file = basename(request.source);
    await Deno.copyFile(request.source, join(temp, file));
    request.flags.entrypoint ??= file;
    request.flags.name ??= defaultName(request.source, "file");
    return await packVersion(temp);
  } finally {
    await Deno.remove(temp, { recursive: true });
  }
}

async function readEnvFiles(files: string[]) {
  return await Promise.all(files.map(async (file) => {
    const text = await readConfigFile(file, { label: `--env-file ${file}` });
    if (text === undefined) throw new PrisnError("INVALID", `--env-file ${file} does not exist`);
    return { file, text };
  }));
}

function summary(r: DeployResult): string {
  // Outside the default namespace, the namespace is said: NAMESPACE/NAME.
  const name = displayKey(deploymentKey(r.namespace ?? DEFAULT_NAMESPACE, r.name));
  const what = r.unchanged
    ? `${name} ${r.version} unchanged (nothing restarted)`
    : `${name} ${r.version} deployed`;
  if (r.type === "service") {
    return `${what}: service, ${r.replicas} replica(s)` +
      (r.port ? `, listening on :${r.port} (http://127.0.0.1:${r.port}/)` : "");
  }
  if (r.type === "job") return r.runId ? `${what}: job running as ${r.runId}` : `${what}: job`;
  return `${what}: cronjob`;
}
