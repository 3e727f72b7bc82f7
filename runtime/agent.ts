import { PrisnError } from "../core/errors.ts";
import { type Paths, paths as defaultPaths } from "../core/paths.ts";
import { Records } from "../core/records.ts";
import { removeDeploymentFiles } from "../core/store.ts";
import { parseEnvPair } from "../core/spec.ts";
import { type AgentContext, createContext } from "./context.ts";
import { deploy, type DeployRequest, rollback, scale } from "./deploy.ts";
import { collectGarbage } from "./gc.ts";
import { pruneLogs } from "./logs.ts";
import { Scheduler } from "./scheduler.ts";
import { Supervisor } from "./supervisor.ts";
import { Views } from "./views.ts";
import { raiseFileLimit } from "./_libc.ts";
import { join } from "node:path";
import { ensureWritable, removeIfPresent } from "../core/fs.ts";

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
  readonly startedAt = Date.now();
  #server?: Deno.HttpServer;
  #lock?: Deno.FsFile;
  #stopping?: Promise<void>;
  #done: PromiseWithResolvers<void> = Promise.withResolvers();
  #timers: ReturnType<typeof setTimeout>[] = [];
  #log: (line: string) => void;

  private constructor(paths: Paths, records: Records, options: AgentOptions) {
    this.paths = paths;
    this.#log = options.log ?? ((line) => console.error(line));
    this.ctx = createContext(paths, records, options.node ?? Deno.hostname());
    this.supervisor = new Supervisor(this.ctx, { startParallelism: options.startParallelism });
    this.scheduler = new Scheduler(this.ctx, this.supervisor);
    this.views = new Views(this.ctx, this.supervisor, this.scheduler, this.startedAt);
  }

  /** Starts an agent: refuses when one already serves this PRISN_HOME. */
  static async start(options: AgentOptions = {}): Promise<Agent> {
    const paths = options.paths ?? defaultPaths();
    raiseFileLimit(); // 1,000 replicas need ~3,000 descriptors; systemd's default soft limit is 1024
    await ensureWritable(paths.home);
    await Deno.mkdir(paths.state, { recursive: true });
    const lock = await Deno.open(join(paths.state, "agent.lock"), { create: true, write: true });
    const locked = await Promise.race([
      lock.lock(true).then(() => true),
      new Promise<boolean>((r) => setTimeout(() => r(false), 300)),
    ]);
    if (!locked) {
      throw new PrisnError(
        "CONFLICT",
        `an agent already runs for ${paths.home}: stop it with prisn agent stop`,
      );
    }
    const records = new Records(paths.db);
    for (const suffix of ["", "-wal", "-shm"]) {
      await Deno.chmod(paths.db + suffix, 0o600).catch(() => {}); // env values, secrets among them
    }
    const agent = new Agent(paths, records, options);
    agent.#lock = lock;
    // FIFOs of replicas an earlier agent ran (killed before it could remove them); before serving,
    // so no new replica's FIFOs can be caught by this.
    await removeIfPresent(join(paths.state, "fifo")).catch(() => {});
    await agent.#serve();
    await Deno.writeTextFile(join(paths.state, "agent.pid"), `${Deno.pid}\n`);
    await agent.supervisor.restore();
    agent.scheduler.start();
    agent.#housekeeping();
    agent.#log(`prisn agent ${Deno.pid} serving ${paths.socket} as node ${agent.ctx.node}`);
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
      await this.scheduler.stop();
      await this.supervisor.shutdown();
      await this.ctx.output?.close();
      await this.#server?.shutdown();
      await Deno.remove(this.paths.socket).catch(() => {});
      await Deno.remove(join(this.paths.state, "agent.pid")).catch(() => {});
      this.ctx.records.close();
      this.#lock?.close();
      this.#log(`prisn agent ${Deno.pid} stopped`);
      this.#done.resolve();
    })();
    return this.#stopping;
  }

  async #serve(): Promise<void> {
    await Deno.remove(this.paths.socket).catch(() => {}); // stale: we hold the agent lock
    const ready = Promise.withResolvers<void>();
    this.#server = Deno.serve({
      path: this.paths.socket,
      onListen: () => ready.resolve(),
      onError: (e) => errorResponse(e),
    }, (req) => this.#handle(req));
    await ready.promise;
    await Deno.chmod(this.paths.socket, 0o600);
  }

  /** Daily: old log folders and unused versions and envs go. */
  #housekeeping(): void {
    const daily = async () => {
      await pruneLogs(this.paths, LOG_RETENTION_DAYS).catch(() => 0);
      const gc = await collectGarbage(this.ctx).catch(() => undefined);
      if (gc && gc.versions.length + gc.envs.length > 0) {
        this.#log(`gc removed ${gc.versions.length} version(s), ${gc.envs.length} env(s)`);
      }
    };
    this.#timers.push(setTimeout(daily, 60_000), setInterval(daily, 86_400_000));
  }

  async #handle(req: Request): Promise<Response> {
    try {
      return await this.#route(req);
    } catch (e) {
      return errorResponse(e);
    }
  }

  async #route(req: Request): Promise<Response> {
    const url = new URL(req.url);
    const parts = url.pathname.split("/").filter(Boolean).map(decodeURIComponent);
    const { records } = this.ctx;
    const m = req.method;
    if (parts[0] !== "v1") return errorResponse(new PrisnError("NOT_FOUND", "no such API path"));
    const [, a, b, c] = parts;

    if (m === "GET" && a === "ping") return json({ pid: Deno.pid, node: this.ctx.node });
    if (m === "GET" && a === "status") return json(this.views.status());
    if (m === "POST" && a === "agent" && b === "stop") {
      setTimeout(() => this.stop(), 10);
      return json({ stopping: true, pid: Deno.pid });
    }
    if (m === "POST" && a === "deploy") return this.#deployStream(await req.json());
    if (m === "POST" && a === "gc") {
      const body = await req.json().catch(() => ({}));
      return json(await collectGarbage(this.ctx, body));
    }
    if (m === "GET" && a === "runs" && !b) {
      const limit = Number(url.searchParams.get("limit") ?? 20);
      const deployment = url.searchParams.get("deployment") ?? undefined;
      if (deployment) this.#mustExist(deployment);
      return json(records.listRuns({ deployment, limit }));
    }
    if (m === "GET" && a === "runs" && b) {
      const run = records.getRun(b);
      if (!run) throw new PrisnError("NOT_FOUND", `run "${b}" not found: see prisn get jobs`);
      return json(run);
    }
    if (a !== "deployments") return errorResponse(new PrisnError("NOT_FOUND", "no such API path"));
    if (m === "GET" && !b) return json(this.views.summaries());
    const name = b;
    if (m === "GET" && !c) {
      const detail = await this.views.detail(name);
      if (!detail) this.#mustExist(name);
      return json(detail);
    }
    this.#mustExist(name);
    if (m === "GET" && c === "env") {
      const d = records.getDeployment(name)!;
      const spec = records.getVersion(name, d.version)!.spec;
      const secrets = new Set(spec.secrets ?? []);
      return json(
        Object.keys(spec.env).sort().map((key) => ({
          key,
          value: secrets.has(key) ? "********" : spec.env[key],
          secret: secrets.has(key),
        })),
      );
    }
    if (m === "GET" && c === "history") {
      const d = records.getDeployment(name)!;
      return json(
        records.listVersions(name).map((v) => ({
          version: v.version,
          deployedAt: v.deployedAt,
          status: v.status,
          current: v.version === d.version,
          source: v.source,
        })),
      );
    }
    const body = m === "POST" ? await req.json().catch(() => ({})) : {};
    if (m === "POST" && c === "rollback") {
      return json(
        await this.supervisor.exclusive(name, async () => {
          const r = await rollback(this.ctx, this.supervisor, name, body.version);
          this.scheduler.reload();
          return r;
        }),
      );
    }
    if (m === "POST" && c === "scale") {
      return json({
        replicas: await this.supervisor.exclusive(
          name,
          () => scale(this.ctx, this.supervisor, name, body.replicas),
        ),
      });
    }
    if (m === "POST" && c === "run") {
      const d = records.getDeployment(name)!;
      if (d.type === "service") {
        throw new PrisnError("INVALID", `${name} is a service; prisn run starts jobs and cronjobs`);
      }
      const env = Object.fromEntries((body.env ?? []).map((p: string) => parseEnvPair(p)));
      const run = await this.supervisor.startRun(name, { trigger: "manual", env });
      return json({ id: run.id });
    }
    if (m === "POST" && (c === "suspend" || c === "resume")) {
      const d = records.getDeployment(name)!;
      const done = c === "suspend" ? "suspended" : "resumed";
      if (d.type !== "cronjob") {
        throw new PrisnError("INVALID", `${name} is a ${d.type}; only cronjobs can be ${done}`);
      }
      records.setSuspended(name, c === "suspend", Date.now());
      this.ctx.event(name, c === "suspend" ? "Suspended" : "Resumed", `cronjob ${done}`);
      this.scheduler.reload();
      return json({ name, suspended: c === "suspend" });
    }
    if (m === "DELETE" && !c) {
      const purge = url.searchParams.get("purge") === "true";
      await this.supervisor.exclusive(name, async () => {
        await this.supervisor.remove(name);
        records.deleteDeployment(name);
        this.scheduler.reload();
        await removeDeploymentFiles(this.paths, name);
        if (purge) {
          await Deno.remove(join(this.paths.logs, name), { recursive: true }).catch(() => {});
        }
      });
      return json({ deleted: name, purged: purge });
    }
    return errorResponse(new PrisnError("NOT_FOUND", "no such API path"));
  }

  #mustExist(name: string): void {
    if (!this.ctx.records.getDeployment(name)) {
      throw new PrisnError("NOT_FOUND", `deployment "${name}" not found: see prisn ls`);
    }
  }

  /** Streams deploy progress as NDJSON: {step, detail}… then {result} or {error}. */
  #deployStream(request: DeployRequest): Response {
    const encoder = new TextEncoder();
    const body = new ReadableStream<Uint8Array>({
      start: async (controller) => {
        const send = (obj: unknown) =>
          controller.enqueue(encoder.encode(JSON.stringify(obj) + "\n"));
        try {
          const result = await deploy(
            this.ctx,
            this.supervisor,
            request,
            (step, detail) => send({ step, detail }),
          );
          this.scheduler.reload();
          send({ result });
        } catch (e) {
          send({ error: errorBody(e) });
        }
        controller.close();
      },
    });
    return new Response(body, { headers: { "content-type": "application/x-ndjson" } });
  }
}

const STATUS: Record<string, number> = {
  INVALID: 400,
  NOT_FOUND: 404,
  CONFLICT: 409,
  UNAVAILABLE: 503,
  FAILED: 500,
};

function errorBody(e: unknown): { code: string; message: string } {
  if (e instanceof PrisnError) return { code: e.code, message: e.message };
  return { code: "FAILED", message: `internal error: ${(e as Error)?.message ?? String(e)}` };
}

function errorResponse(e: unknown): Response {
  const body = errorBody(e);
  return json({ error: body }, STATUS[body.code] ?? 500);
}

function json(value: unknown, status = 200): Response {
  return new Response(JSON.stringify(value ?? null), {
    status,
    headers: { "content-type": "application/json" },
  });
}
