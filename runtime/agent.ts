import { PrisnError } from "../core/errors.ts";
import { type Paths, paths as defaultPaths } from "../core/paths.ts";
import { Records } from "../core/records.ts";
import { migrateLayout } from "../core/layout.ts";
import { apiRoutes, errorResponse, router } from "./api.ts";
import { type AgentContext, createContext } from "./context.ts";
import { Ballast, isDiskFull } from "./disk_health.ts";
import { collectGarbage } from "./gc.ts";
import { Scheduler } from "./scheduler.ts";
import { Supervisor } from "./supervisor.ts";
import { AgentOperations } from "./operations.ts";
import { Views } from "./views.ts";
import { type BackendInputs, type Backends, localBackends } from "./backends.ts";
import { raiseFileLimit } from "./_libc.ts";
import { join } from "node:path";
import { type BalancerChoice, type NodeBalancer, openNodeBalancer } from "./service_port.ts";
import { ensureWritable, removeIfPresent } from "../core/fs.ts";
import { type ListenOptions, serveTcp, tokenHandler } from "./listen.ts";
import { TokenStore } from "./tokens.ts";

/** @default 14 days of logs kept */
const LOG_RETENTION_DAYS = 14;

export interface AgentOptions {
  paths?: Paths;
  /** @default the host name */
  node?: string;
  /** Where the agent's own messages go. @default stderr */
  log?: (line: string) => void;
  /** Replicas starting at once across the agent. @default DEFAULT_START_PARALLELISM */
  startParallelism?: number;
  /** The most bytes of files a deployed package may hold. @default DEFAULT_MAX_PACKAGE_BYTES */
  maxPackageBytes?: number;
  /** Where service ports listen (and, in a cluster, other nodes reach this one). @default all */
  address?: string;
  /** Makes the backends (cmd/agent.ts picks them). @default localBackends */
  backends?: (inputs: BackendInputs) => Backends;
  /**
   * What balances service ports whose prisn.toml does not say: "auto" is the kernel path where
   * it is available (Linux, nft, CAP_NET_ADMIN), else the userspace proxy.
   * @default "auto"
   */
  balancer?: BalancerChoice;
  /**
   * Why the kernel path is not to steer with sk_lookup (every port DNATed then).
   * @default undefined: it steers where the kernel allows it
   */
  steeringOff?: string;
  /** Epoll workers per service port of the userspace proxy. @default 1 */
  proxyWorkers?: number;
  /** The home's agent lock, taken already (lockHome). @default taken by start() */
  lock?: Deno.FsFile;
  /** A TCP API beside the unix socket (every request with a token). @default none */
  listen?: ListenOptions;
  /** Largest deploy upload a remote CLI may send. @default DEFAULT_MAX_UPLOAD_BYTES (256 MiB) */
  maxUploadBytes?: number;
}

/**
 * The node agent: owns the records, the supervisor and the scheduler, and serves the CLI's API
 * over HTTP on a unix socket (PRISN_HOME/prisn.sock, mode 0600). Resolves when it has stopped.
 */
export class Agent {
  readonly paths: Paths;
  readonly ctx: AgentContext;
  readonly supervisor: Supervisor;
  readonly scheduler: Scheduler;
  readonly views: Views;
  /** What the API does; the route table is built over it. */
  readonly operations: AgentOperations;
  readonly startedAt = Date.now();
  /** The TCP API's tokens: this home's, or the cluster's (opened once the backends started). */
  tokens!: TokenStore;
  #server?: Deno.HttpServer;
  #tcp?: Deno.HttpServer;
  #lock?: Deno.FsFile;
  #stopping?: Promise<void>;
  #done: PromiseWithResolvers<void> = Promise.withResolvers();
  #timers: ReturnType<typeof setTimeout>[] = [];
  #log: (line: string) => void;

  readonly #records: Records;
  readonly #backends: Backends;

  private constructor(
    paths: Paths,
    records: Records,
    options: AgentOptions,
    balancer: NodeBalancer,
  ) {
    this.#records = records;
    this.paths = paths;
    this.#log = options.log ?? ((line) => console.error(line));
    const node = options.node ?? Deno.hostname();
    const backends = (options.backends ?? localBackends)({ paths, records, node });
    this.#backends = backends;
    this.ctx = createContext(paths, records, node, {
      ...backends,
      address: options.address,
      balancer,
      maxPackageBytes: options.maxPackageBytes,
    });
    this.supervisor = new Supervisor(this.ctx, {
      startParallelism: options.startParallelism,
      dispatcher: backends.dispatcher,
    });
    this.scheduler = new Scheduler(this.ctx, this.supervisor);
    backends.members?.reportReplicas(() =>
      [...this.supervisor.services].flatMap(([deployment, service]) =>
        service.status().map((r) => ({
          deployment,
          name: r.name,
          ready: r.ready,
          address: r.reachable ? `${r.host}:${r.port}` : undefined,
          version: r.version,
        }))
      )
    );
    this.views = new Views(this.ctx, this.supervisor, this.scheduler, this.startedAt);
    this.operations = new AgentOperations({
      ctx: this.ctx,
      supervisor: this.supervisor,
      scheduler: this.scheduler,
      views: this.views,
      stop: () => this.stop(),
      tokens: () => this.tokens,
    });
  }

  /** Starts an agent: refuses when one already serves this PRISN_HOME. */
  static async start(options: AgentOptions = {}): Promise<Agent> {
    const paths = options.paths ?? defaultPaths();
    raiseFileLimit(); // 1,000 replicas need ~3,000 descriptors; systemd's default soft limit is 1024
    const lock = options.lock ?? await lockHome(paths, options.log);
    const ballast = new Ballast(join(paths.state, "ballast"));
    // A home from before namespaces: its folders move under "default" (records: a migration).
    for (const dir of await migrateLayout(paths)) {
      (options.log ?? console.error)(`moved ${dir} to the namespaced layout (namespace default)`);
    }
    const records = await openRecords(paths.db, ballast, options.log);
    for (const suffix of ["", "-wal", "-shm"]) {
      await Deno.chmod(paths.db + suffix, 0o600).catch(() => {}); // env values, secrets among them
    }
    // After the lock: the table is this home's, and an earlier agent's stale rules go now.
    const balancer = await openNodeBalancer(paths.home, options.balancer, options.steeringOff);
    balancer.workers = options.proxyWorkers;
    const agent = new Agent(paths, records, options, balancer);
    agent.#lock = lock;
    await agent.#backends.start?.();
    // This home's tokens, or in a cluster the cluster's (a token opens every node).
    agent.tokens = await TokenStore.open(paths.home, agent.#backends.tokens);
    for (const line of await agent.tokens.leftBehind()) agent.#log(`tokens: ${line}`);
    // FIFOs of replicas an earlier agent ran (killed before it could remove them); before serving,
    // so no new replica's FIFOs can be caught by this.
    await removeIfPresent(join(paths.state, "fifo")).catch(() => {});
    await agent.#serve(options);
    await writeMarker(join(paths.state, "agent.pid"), options.log);
    await Deno.remove(join(paths.state, "agent.starting")).catch(() => {});
    await agent.supervisor.restore();
    agent.supervisor.consumeTickets(); // pending tickets an earlier agent left start now
    agent.scheduler.start();
    agent.#housekeeping(ballast);
    agent.#log(`prisn agent ${Deno.pid} serving ${paths.socket} as node ${agent.ctx.node}`);
    agent.#log(
      balancer.kernel
        ? `service ports: kernel path (${
          balancer.kernel.steeringUnavailable
            ? `nftables DNAT, table ip ${balancer.kernel.table}; no sk_lookup steering: ${balancer.kernel.steeringUnavailable}`
            : `sk_lookup steering to this node's replicas, nftables table ip ${balancer.kernel.table} for the rest`
        })`
        : `service ports: userspace proxy (${balancer.unavailable})`,
    );
    for (const t of balancer.swept ?? []) {
      agent.#log(`removed nftables table ip ${t}: that agent is gone, its rules with it`);
    }
    return agent;
  }

  /** Resolves once the agent has stopped. */
  get finished(): Promise<void> {
    return this.#done.promise;
  }

  /** Stops serving, stops every process gracefully, closes the records. Idempotent. */
  stop(): Promise<void> {
    this.#stopping ??= (async () => {
      for (const t of this.#timers) clearTimeout(t);
      await this.#backends.beforeStop?.().catch(() => {});
      await this.scheduler.stop();
      await this.supervisor.shutdown();
      await this.ctx.balancer?.kernel?.close().catch((e) => this.#log((e as Error).message));
      await this.ctx.output?.close();
      this.operations.close(); // open `logs -f` answers end, or shutdown would wait for them
      this.tokens?.close();
      await this.#server?.shutdown();
      await this.#tcp?.shutdown();
      await Deno.remove(this.paths.socket).catch(() => {});
      await Deno.remove(join(this.paths.state, "agent.pid")).catch(() => {});
      await this.#backends.close?.();
      this.ctx.disk.close();
      this.#records.close();
      this.#lock?.close();
      this.#log(`prisn agent ${Deno.pid} stopped`);
      this.#done.resolve();
    })();
    return this.#stopping;
  }

  /** The unix socket (its owner may call every route) and, with `listen`, the TCP API. */
  async #serve({ listen, maxUploadBytes }: AgentOptions): Promise<void> {
    const routes = apiRoutes(this.operations, { maxUploadBytes });
    if (listen) {
      const admin = await this.tokens.ensureAdmin(); // before a client can reach the API
      this.#tcp = await serveTcp(listen, tokenHandler(routes, this.tokens));
      const scheme = listen.tls ? "https" : "http";
      this.#log(`API listening on ${scheme}://${hostPort(listen)} (bearer tokens)`);
      if (admin) {
        this.#log(
          `admin API token (shown once; kept in ${this.tokens.adminFile}, mode 0600): ${admin}`,
        );
      }
    }
    await Deno.remove(this.paths.socket).catch(() => {}); // stale: we hold the agent lock
    const ready = Promise.withResolvers<void>();
    this.#server = Deno.serve({
      path: this.paths.socket,
      onListen: () => ready.resolve(),
      onError: (e) => errorResponse(e),
    }, router(routes));
    await ready.promise;
    await Deno.chmod(this.paths.socket, 0o600);
  }

  /** Daily: old log folders and unused versions and envs go; the space reserve is kept. */
  #housekeeping(ballast: Ballast): void {
    const reserve = () => this.ctx.disk.full ? Promise.resolve() : ballast.ensure();
    reserve();
    this.#timers.push(setInterval(reserve, RESERVE_CHECK_MS));
    const daily = async () => {
      await this.ctx.logs.prune(LOG_RETENTION_DAYS).catch(() => 0);
      const exclusive = <T>(n: string, fn: () => Promise<T>) => this.supervisor.exclusive(n, fn);
      const gc = await collectGarbage(this.ctx, { exclusive }).catch(() => undefined);
      if (gc && gc.versions.length + gc.envs.length > 0) {
        this.#log(`gc removed ${gc.versions.length} version(s), ${gc.envs.length} env(s)`);
      }
    };
    this.#timers.push(setTimeout(daily, 60_000), setInterval(daily, 86_400_000));
  }
}

/**
 * Writes the agent's pid into a marker file (agent.pid, agent.starting). A full disk does not
 * stop the agent from starting: the markers only help CLIs and scripts find it (the socket is
 * what they talk to), so that failure is logged and the agent goes on.
 */
async function writeMarker(path: string, log = (line: string) => console.error(line)) {
  try {
    await Deno.writeTextFile(path, `${Deno.pid}\n`);
  } catch (e) {
    if (!isDiskFull(e)) throw e;
    await Deno.remove(path).catch(() => {}); // no empty marker left
    log(`cannot write ${path}: ${(e as Error).message}; going on without it`);
  }
}

function hostPort(l: ListenOptions): string {
  return `${l.hostname.includes(":") ? `[${l.hostname}]` : l.hostname}:${l.port}`;
}

/** How often the agent makes its space reserve again if it had to give it back. */
const RESERVE_CHECK_MS = 30_000;

/**
 * Opens the records; when the disk is too full for SQLite to open them (it needs room for its
 * WAL and shared-memory files), gives back the space reserve and tries once more.
 */
async function openRecords(
  path: string,
  ballast: Ballast,
  log = (line: string) => console.error(line),
): Promise<Records> {
  try {
    return new Records(path);
  } catch (e) {
    const cause = (e as Error).cause ?? e;
    if (!isDiskFull(cause) && !/disk I\/O error/.test(String((cause as Error).message))) throw e;
    if (!(await ballast.release())) throw e;
    log(`the disk under ${path} is full: gave back the space reserve to open the records`);
    return new Records(path);
  }
}

/**
 * Takes the agent lock of a PRISN_HOME (refused in one line when another agent holds it) and marks
 * the agent as starting: until it serves, a CLI that finds no agent waits for this one instead of
 * starting another. `prisn agent run` takes it first thing, before it joins a cluster (which can
 * take seconds), so a CLI started meanwhile cannot start a second agent.
 */
export async function lockHome(paths: Paths, log?: (line: string) => void): Promise<Deno.FsFile> {
  await ensureWritable(paths.home);
  await Deno.mkdir(paths.state, { recursive: true });
  await Deno.chmod(paths.state, 0o700); // its log names the admin token once
  const lock = await Deno.open(join(paths.state, "agent.lock"), { create: true, write: true });
  const locked = await Promise.race([
    lock.lock(true).then(() => true),
    new Promise<boolean>((r) => setTimeout(() => r(false), 300)),
  ]);
  if (!locked) {
    lock.close();
    throw new PrisnError(
      "CONFLICT",
      `an agent already runs for ${paths.home}: stop it with prisn agent stop`,
    );
  }
  await writeMarker(join(paths.state, "agent.starting"), log);
  return lock;
}
