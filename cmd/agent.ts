import { dirname, join, resolve } from "node:path";
import type { Command } from "commander";
import { formatDuration } from "../core/duration.ts";
import { AgentClient, agentPid } from "../runtime/client.ts";
import type { App } from "./_app.ts";
import { processAlive as alive } from "../runtime/process.ts";
import { DEFAULT_START_PARALLELISM } from "../runtime/start_queue.ts";
import { parseMemory } from "../core/quantity.ts";
import { parsePositive } from "../core/values.ts";
import { invalid, PrisnError } from "../core/errors.ts";
import { readConfigFile } from "../core/fs.ts";
import { type ListenOptions, parseListen } from "../runtime/listen.ts";

export function register(program: Command, app: App): void {
  const agent = program.command("agent").description("the node agent: run, stop, status");

  const run = agent.command("run")
    .description("run the agent in the foreground (for systemd); other commands start it on demand")
    .option("--node <name>", "this node's name (default: the host name)")
    .option("--background", "started by the CLI: write messages to state/agent.log")
    .option(
      "--nats <urls>",
      "join a cluster over NATS JetStream: nats://h:4222[,…] (env PRISN_NATS)",
    )
    .option(
      "--tags <list>",
      "this node's tags, for prisn.toml [placement] tags, e.g. gpu,ssd (env PRISN_TAGS)",
    )
    .option(
      "--address <addr>",
      "where this node's service ports listen and other nodes reach it (env PRISN_ADDRESS; " +
        "default: all addresses, in a cluster the host's primary address)",
    )
    .option(
      "--cluster <name>",
      "prefix of every bucket and stream (env PRISN_CLUSTER; default prisn)",
    )
    .option("--nats-token <token>", "NATS auth token (env PRISN_NATS_TOKEN)")
    .option("--nats-user <user>", "NATS user (env PRISN_NATS_USER)")
    .option("--nats-password <password>", "NATS password (env PRISN_NATS_PASSWORD)")
    .option("--nats-creds <file>", "NATS .creds file (env PRISN_NATS_CREDS)")
    .option("--nats-ca <file>", "CA certificate for NATS TLS (env PRISN_NATS_CA)")
    .option("--nats-cert <file>", "client certificate for NATS TLS (env PRISN_NATS_CERT)")
    .option("--nats-key <file>", "client key for NATS TLS (env PRISN_NATS_KEY)")
    .option(
      "--nats-replicas <n>",
      "replicas of prisn's streams and buckets (3 on a clustered NATS)",
    )
    .option(
      "--nats-allow-unsafe-cas",
      "run on a clustered NATS older than 2.9.21 (compare-and-set is unsafe there: nats-server #4320)",
    )
    .option(
      "--balancer <kind>",
      "what balances service ports whose prisn.toml does not say: auto (the kernel path, sk_lookup " +
        "steering and nftables DNAT, where available, else userspace), kernel or userspace (env " +
        "PRISN_BALANCER; default auto; PRISN_KERNEL_STEERING=off: DNAT only)",
    )
    .option(
      "--proxy-workers <n>",
      "worker threads of the userspace proxy per service port, each with its own SO_REUSEPORT " +
        "listener (env PRISN_PROXY_WORKERS; default 1, at most 64)",
    )
    .option(
      "--listen <host:port>",
      "serve the API over TCP too, every request with a token (env PRISN_LISTEN; plain HTTP " +
        "on loopback only, else give --tls-cert and --tls-key)",
    )
    .option("--tls-cert <file>", "PEM certificate (chain) for --listen: HTTPS")
    .option("--tls-key <file>", "PEM private key for --listen")
    .option(
      "--max-upload <size>",
      "largest folder a remote deploy may upload, compressed (env PRISN_MAX_UPLOAD; default 256Mi)",
    )
    .option(
      "--start-parallelism <n>",
      `replicas starting at once, deployments served in turn (env PRISN_START_PARALLELISM; ` +
        `default ${DEFAULT_START_PARALLELISM})`,
    )
    .option(
      "--max-package <size>",
      "the most a deployed folder may hold, e.g. 2Gi (env PRISN_MAX_PACKAGE; default 1Gi)",
    )
    .action(async (opts) => {
      const maxPackage = opts.maxPackage ?? Deno.env.get("PRISN_MAX_PACKAGE");
      const maxPackageBytes = maxPackage === undefined
        ? undefined
        : parseMemory(maxPackage, "--max-package");
      const startParallelism = parsePositive(
        opts.startParallelism ?? Deno.env.get("PRISN_START_PARALLELISM"),
        "--start-parallelism",
      );
      const balancer = parseBalancer(opts.balancer ?? Deno.env.get("PRISN_BALANCER"));
      const steeringOff = parseSteering(Deno.env.get("PRISN_KERNEL_STEERING"));
      const proxyWorkers = parseProxyWorkers(
        opts.proxyWorkers ?? Deno.env.get("PRISN_PROXY_WORKERS"),
      );
      const listen = await listenOptions(opts.listen ?? Deno.env.get("PRISN_LISTEN"), opts);
      const maxUpload = opts.maxUpload ?? Deno.env.get("PRISN_MAX_UPLOAD");
      const maxUploadBytes = maxUpload ? parseMemory(maxUpload, "--max-upload") : undefined;
      let log: ((line: string) => void) | undefined;
      if (opts.background) {
        await Deno.mkdir(app.paths.state, { recursive: true });
        const { agentLog } = await import("../runtime/logs.ts");
        log = agentLog(join(app.paths.state, "agent.log"));
      }
      // The agent's module graph loads only here: the CLI's other paths stay light.
      const { Agent, lockHome } = await import("../runtime/agent.ts");
      const { chooseBackends, parseTags } = await import("./_backends.ts");
      const node = opts.node ?? Deno.env.get("PRISN_NODE") ?? Deno.hostname();
      const say = log ?? ((line: string) => console.error(line));
      let a;
      // Bad flags are refused before anything else (even with another agent running).
      parseTags(opts.tags ?? Deno.env.get("PRISN_TAGS"));
      // This home is this agent's from now on, before joining a cluster takes its time.
      const lock = await lockHome(app.paths, log);
      try {
        const { backends, address, mode } = await chooseBackends(opts, node, say);
        a = await Agent.start({
          paths: app.paths,
          node,
          log,
          startParallelism,
          maxPackageBytes,
          backends,
          address,
          balancer,
          steeringOff,
          proxyWorkers,
          lock,
          listen,
          maxUploadBytes,
        });
        say(`prisn agent runs as ${mode}`);
      } catch (e) {
        // Started in the background, nobody sees stderr: the log's last line says why.
        log?.(`agent did not start: ${(e as Error).message}`);
        await Deno.remove(join(app.paths.state, "agent.starting")).catch(() => {});
        try {
          lock.close();
        } catch { /* closed by the agent already */ }
        throw e;
      }
      const stop = () => a.stop();
      Deno.addSignalListener("SIGINT", stop);
      Deno.addSignalListener("SIGTERM", stop);
      await a.finished;
      Deno.removeSignalListener("SIGINT", stop);
      Deno.removeSignalListener("SIGTERM", stop);
    });

  agent.command("install")
    .description(
      "run the agent at boot: write a systemd unit for prisn agent run with the flags after --, " +
        "enable and start it (e.g. prisn agent install -- --listen 127.0.0.1:7070)",
    )
    .argument("[flags...]", "flags for prisn agent run")
    .option("--user", "a user unit (systemctl --user) instead of a system one")
    .option("--print", "print the unit instead of installing it")
    .action(async (flags: string[], opts) => {
      const { renderUnit, requireSystemd, systemctl, unitPath, UNIT_NAME } = await import(
        "../runtime/systemd.ts"
      );
      checkRunFlags(flags, run);
      const user = Boolean(opts.user);
      const unit = renderUnit({ home: resolve(app.paths.home), flags, user });
      if (opts.print) return app.out(unit.trimEnd());
      await requireSystemd();
      const path = unitPath(user);
      await Deno.mkdir(dirname(path), { recursive: true });
      await Deno.writeTextFile(path, unit);
      await systemctl(user, "daemon-reload");
      await systemctl(user, "enable", "--now", UNIT_NAME);
      app.out(`${path} written; ${UNIT_NAME} enabled and started`);
    });

  agent.command("uninstall")
    .description("stop running the agent at boot: disable, stop and remove the systemd unit")
    .option("--user", "the user unit (systemctl --user)")
    .action(async (opts) => {
      const { requireSystemd, systemctl, unitPath, UNIT_NAME } = await import(
        "../runtime/systemd.ts"
      );
      const user = Boolean(opts.user);
      const path = unitPath(user);
      await requireSystemd();
      if (!await Deno.stat(path).then(() => true, () => false)) {
        throw invalid(`there is no prisn unit at ${path}: nothing to uninstall`);
      }
      await systemctl(user, "disable", "--now", UNIT_NAME);
      await Deno.remove(path);
      await systemctl(user, "daemon-reload");
      app.out(`${UNIT_NAME} stopped and disabled; ${path} removed`);
    });

  agent.command("stop")
    .description("stop the agent and everything it runs (started again on the next command)")
    .action(async () => {
      const client = await AgentClient.existing(app.paths);
      if (!client) {
        // A live agent that answers no request: SIGTERM stops it just as gracefully.
        const pid = await agentPid(app.paths);
        if (pid === undefined || !alive(pid)) return app.out("no agent running");
        Deno.kill(pid, "SIGTERM");
        await waitForExit(pid, () => Promise.resolve(false));
        return app.out(`agent ${pid} did not answer; stopped it with SIGTERM`);
      }
      try {
        const { pid } = await client.stopAgent();
        await waitForExit(pid, () => client.ping());
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

/** `--listen` with its TLS files read; undefined without `--listen`. */
async function listenOptions(
  value: string | undefined,
  opts: { tlsCert?: string; tlsKey?: string },
): Promise<ListenOptions | undefined> {
  if (opts.tlsCert === undefined !== (opts.tlsKey === undefined)) {
    throw invalid("give --tls-cert and --tls-key together");
  }
  if (!value) {
    if (opts.tlsCert) throw invalid("--tls-cert and --tls-key apply to --listen: give it too");
    return undefined;
  }
  const listen: ListenOptions = parseListen(value, opts.tlsCert !== undefined);
  if (opts.tlsCert && opts.tlsKey) {
    listen.tls = {
      cert: await readPem(opts.tlsCert, "--tls-cert"),
      key: await readPem(opts.tlsKey, "--tls-key"),
    };
  }
  return listen;
}

async function readPem(file: string, flag: string): Promise<string> {
  const text = await readConfigFile(file, { label: `${flag} ${file}` });
  if (text === undefined) throw invalid(`${flag} ${file} does not exist`);
  return text;
}

/** Refuses flags `prisn agent run` does not take (a typo would only show at boot). */
function checkRunFlags(flags: string[], run: Command): void {
  const known = new Set(run.options.map((o) => o.long));
  for (const flag of flags) {
    if (!flag.startsWith("-")) continue;
    const name = flag.split("=")[0];
    if (!known.has(name) || name === "--background") {
      throw invalid(`${name} is not a flag of prisn agent run: see prisn agent run --help`);
    }
  }
}

const BALANCERS = ["auto", "kernel", "userspace"] as const;

function parseBalancer(value: string | undefined): (typeof BALANCERS)[number] | undefined {
  if (value === undefined || value === "") return undefined;
  const found = BALANCERS.find((b) => b === value);
  if (!found) throw invalid(`--balancer "${value}" is not valid: use auto, kernel or userspace`);
  return found;
}

/** PRISN_KERNEL_STEERING: "off" gives the reason steering is off; "on" or unset, none. */
function parseSteering(value: string | undefined): string | undefined {
  if (value === undefined || value === "" || value === "on") return undefined;
  if (value === "off") return "PRISN_KERNEL_STEERING=off";
  throw invalid(`PRISN_KERNEL_STEERING "${value}" is not valid: use on or off`);
}

/** Most epoll workers one port may have: one per core is the useful most. */
const MAX_PROXY_WORKERS = 64;

function parseProxyWorkers(value: string | undefined): number | undefined {
  if (value === undefined || value === "") return undefined;
  const n = parsePositive(value, "--proxy-workers");
  if (n !== undefined && n > MAX_PROXY_WORKERS) {
    throw invalid(`--proxy-workers "${value}" is not valid: give 1 to ${MAX_PROXY_WORKERS}`);
  }
  return n;
}

function mib(bytes: number): string {
  return (bytes / 1048576).toFixed(1);
}

/** Waits (up to a minute) until the agent's process is gone and its API answers no more. */
async function waitForExit(pid: number, answers: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (await answers() || alive(pid)) {
    if (Date.now() > deadline) {
      throw new PrisnError("FAILED", `agent ${pid} has not stopped after a minute`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}
