/**
 * Real nats-servers for tests: one (JetStream on a free loopback port, temp store dir) or a
 * 3-server cluster (routes on loopback; needs nats-server ≥ 2.10, fetched by tools/nats_2_10.sh).
 * `stop()` kills what was started and removes its folders; always call it (try/finally).
 */
import { join } from "node:path";
import { connect } from "@nats-io/transport-node";
import { jetstreamManager, StorageType } from "@nats-io/jetstream";
import type { KV } from "@nats-io/kv";
import { freePort, Scope } from "../_helpers.ts";
import { leasePort, returnPort } from "../../runtime/context.ts";

const ROOT = new URL("../..", import.meta.url).pathname;

export interface NatsServer {
  url: string;
  port: number;
  pid: number;
  /** Stops the server (SIGTERM, then SIGKILL) and removes its store; idempotent. */
  stop(): Promise<void>;
  /** Stops only the process, keeping its store (for a restart with `start()` again). */
  kill(signal?: Deno.Signal): Promise<void>;
  /** Starts it again on the same port and store. */
  start(): Promise<void>;
}

/** The system's nats-server (2.9 from Debian bookworm is enough for one server), or undefined. */
export function natsServerBin(): string | undefined {
  for (const p of ["/usr/sbin/nats-server", "/usr/bin/nats-server", "/usr/local/bin/nats-server"]) {
    try {
      if (Deno.statSync(p).isFile) return p;
    } catch { /* not here */ }
  }
  return undefined;
}

/** A nats-server ≥ 2.10 for clustered tests: .tools/nats-2.10 (tools/nats_2_10.sh), or undefined. */
export function nats210Bin(): string | undefined {
  const p = join(ROOT, ".tools/nats-2.10/usr/sbin/nats-server");
  try {
    return Deno.statSync(p).isFile ? p : undefined;
  } catch {
    return undefined;
  }
}

/** Why NATS tests skip here, or undefined when a server is at hand. */
export const NO_NATS = natsServerBin() ? undefined : "no nats-server (apt-get install nats-server)";

/**
 * Resolves once something listens on `port`; throws when `child` exits first (the port was
 * taken between freePort and the server's bind, or a bad flag), with the server's last log lines.
 */
async function waitListening(
  port: number,
  child: Deno.ChildProcess,
  logFile: string,
  timeoutMs = 20_000,
): Promise<void> {
  let exited: Deno.CommandStatus | undefined;
  child.status.then((s) => exited = s, () => {});
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline && !exited) {
    try {
      const c = await Deno.connect({ hostname: "127.0.0.1", port });
      c.close();
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 25));
    }
  }
  const log = (await Deno.readTextFile(logFile).catch(() => "")).trim().split("\n").slice(-3);
  const why = exited ? `exited with code ${exited.code}` : `did not listen within ${timeoutMs} ms`;
  throw new ServerStartError(
    `nats-server on 127.0.0.1:${port} ${why}: ${log.join(" | ")}`,
    !!exited,
  );
}

class ServerStartError extends Error {
  constructor(message: string, readonly exited: boolean) {
    super(message);
  }
}

export interface ServerOptions {
  /** The nats-server binary. @default natsServerBin() */
  bin?: string;
  /** Extra command-line arguments, e.g. ["--auth", "s3cret"]. */
  args?: string[];
  /** @default true */
  jetstream?: boolean;
  /** Cluster name and route port plus the other servers' route URLs. */
  cluster?: { name: string; port: number; routes: string[]; serverName: string };
}

/** Starts one nats-server with JetStream on a free loopback port and a temp store. */
export async function startNats(options: ServerOptions = {}): Promise<NatsServer> {
  const bin = options.bin ?? natsServerBin();
  if (!bin) throw new Error(NO_NATS);
  const dir = await Deno.makeTempDir({ prefix: "prisn-nats-" });
  let port = freePort();
  const logFile = join(dir, "server.log");
  const args = ["-a", "127.0.0.1", "-p", String(port), "--store_dir", join(dir, "js")];
  args.push("--log", logFile);
  if (options.jetstream !== false) args.push("-js");
  if (options.cluster) {
    const c = options.cluster;
    args.push(
      "--cluster_name",
      c.name,
      "--cluster",
      `nats://127.0.0.1:${c.port}`,
      "--routes",
      c.routes.join(","),
      "--server_name",
      c.serverName,
    );
  }
  args.push(...options.args ?? []);
  let child: Deno.ChildProcess | undefined;
  const server: NatsServer = {
    url: `nats://127.0.0.1:${port}`,
    port,
    pid: 0,
    async start() {
      child = new Deno.Command(bin, { args, stdin: "null", stdout: "null", stderr: "null" })
        .spawn();
      server.pid = child.pid;
      try {
        await waitListening(server.port, child, logFile);
      } catch (e) {
        await server.kill("SIGKILL");
        throw e;
      }
    },
    async kill(signal: Deno.Signal = "SIGTERM") {
      const c = child;
      child = undefined;
      if (!c) return;
      try {
        c.kill(signal);
      } catch { /* gone */ }
      const done = c.status.then(() => true);
      const late = new Promise<boolean>((r) => setTimeout(() => r(false), 5_000));
      if (!(await Promise.race([done, late]))) {
        try {
          c.kill("SIGKILL");
        } catch { /* gone */ }
        await c.status;
      }
    },
    async stop() {
      await server.kill();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
  // A lone server whose port another process took before it could bind starts on another one
  // (a cluster member's port is in the others' routes: it must fail instead).
  for (let attempt = 1;; attempt++) {
    try {
      await server.start();
      return server;
    } catch (e) {
      if (options.cluster || !(e instanceof ServerStartError) || !e.exited || attempt === 3) {
        await Deno.remove(dir, { recursive: true }).catch(() => {});
        throw e;
      }
      port = freePort();
      args[args.indexOf("-p") + 1] = String(port);
      server.port = port;
      server.url = `nats://127.0.0.1:${port}`;
    }
  }
}

/** Options of {@link startNatsCluster}. */
export interface ClusterServerOptions {
  /**
   * The nats-server binary of every server, e.g. {@link natsServerBin} for a 2.9 cluster.
   * @default nats210Bin()
   */
  bin?: string;
  /** @default 3 */
  size?: number;
  /** Extra command-line arguments of every server, e.g. ["--auth", "s3cret"]. */
  args?: string[];
  /** @default "prisn-test" */
  name?: string;
}

/**
 * A NATS cluster (3 servers by default) with JetStream on loopback, routes between them; by
 * default of nats-server ≥ 2.10, and undefined when that binary is missing (tools/nats_2_10.sh).
 * Stop every server (`Promise.all(servers.map((s) => s.stop()))`) in a finally.
 */
export async function startNatsCluster(
  options: ClusterServerOptions = {},
): Promise<NatsServer[] | undefined> {
  const bin = options.bin ?? nats210Bin();
  if (!bin) return undefined;
  const size = options.size ?? 3;
  // Its own name, so a route that reaches another test's cluster (the kernel hands an unbound
  // port to anyone) is refused instead of merging two clusters of servers n1…n3.
  const name = options.name ?? `prisn-test-${crypto.randomUUID().slice(0, 8)}`;
  for (let attempt = 1;; attempt++) {
    const routePorts = Array.from({ length: size }, () => leasePort());
    const routes = routePorts.map((p) => `nats://127.0.0.1:${p}`);
    const started = await Promise.allSettled(routePorts.map((port, i) =>
      startNats({
        bin,
        args: options.args,
        cluster: { name, port, routes, serverName: `n${i + 1}` },
      })
    ));
    const servers = started.flatMap((r) => r.status === "fulfilled" ? [r.value] : []);
    const failed = started.find((r) => r.status === "rejected");
    try {
      if (failed) throw failed.reason;
      await waitForPlacement(servers, size, attempt < 3 ? 30_000 : 60_000);
      return servers;
    } catch (e) {
      await Promise.all(servers.map((s) => s.stop()));
      if (attempt === 3) throw e;
    } finally {
      for (const p of routePorts) returnPort(p);
    }
  }
}

/**
 * Resolves once the servers' JetStream can place a stream on all `size` of them: listening is not
 * enough, the meta group forms later (seconds under load), and until then an R`size` stream gets
 * "no suitable peers".
 */
async function waitForPlacement(
  servers: NatsServer[],
  size: number,
  timeoutMs: number,
): Promise<void> {
  const nc = await connect({ servers: servers.map((s) => s.url) });
  try {
    const deadline = Date.now() + timeoutMs;
    for (let attempt = 0;; attempt++) {
      const name = `prisn_test_probe_${attempt}`;
      try {
        const jsm = await jetstreamManager(nc, { timeout: 2_000 }); // asks JetStream already
        await jsm.streams.add({
          name,
          subjects: [`prisn.test.probe.${attempt}`],
          num_replicas: size,
          storage: StorageType.Memory,
        });
        await jsm.streams.delete(name).catch(() => {});
        return;
      } catch (e) {
        if (Date.now() > deadline) {
          throw new Error(
            `the NATS cluster cannot place an R${size} stream: ${(e as Error).message}`,
          );
        }
        await new Promise((r) => setTimeout(r, 250));
      }
    }
  } finally {
    await nc.close();
  }
}

/** Runs `fn` with a fresh nats-server and a scope; the server and what `fn` deferred go after. */
export async function withNats(
  fn: (scope: Scope, server: NatsServer) => Promise<void>,
): Promise<void> {
  const scope = new Scope();
  try {
    const server = await startNats();
    scope.defer(() => server.stop());
    await fn(scope, server);
  } finally {
    await scope.close();
  }
}

/**
 * A handle on `kv` whose `keys()` lists only the first key it finds, as nats.js's listing does when
 * a server says too early that nothing is left pending (see cluster/_keys.ts).
 */
export function keysEndEarly(kv: KV): KV {
  const wrapped = Object.create(kv) as KV;
  wrapped.keys = async (filter) => {
    const all = await kv.keys(filter);
    return (async function* () {
      for await (const k of all) {
        yield k;
        break;
      }
    })() as unknown as Awaited<ReturnType<KV["keys"]>>;
  };
  return wrapped;
}
