import { join } from "node:path";
import { PrisnError } from "../core/errors.ts";
import type { Paths } from "../core/paths.ts";
import { ensureWritable } from "../core/fs.ts";
import { processAlive } from "./process.ts";
import type {
  DeleteResponse,
  DeployEvent,
  DeploymentDetail,
  DeploymentSummary,
  DeployRequest,
  DeployResult,
  DrainResponse,
  EnvEntry,
  ErrorBody,
  GcRequest,
  GcResult,
  HistoryRow,
  LogEvent,
  LogsQuery,
  NodeSummary,
  RollbackRequest,
  RunRecord,
  RunRequest,
  RunsQuery,
  RunStarted,
  ScaleRequest,
  ScaleResponse,
  StatusView,
  StopResponse,
  SuspendResponse,
  TokenCreated,
  TokenInfo,
  TokenRequest,
  TokenRevoked,
} from "./api_types.ts";
import type { Step } from "./deploy.ts";
import { DEPLOY_HEADER, encodeDeployHeader } from "./api.ts";

/**
 * How to start this same program as an agent (source checkout or compiled binary): by default as
 * the CLI's background agent; `background: false` in the foreground (systemd's unit).
 */
export function agentCommand(
  options: { background?: boolean } = {},
): { command: string; args: string[] } {
  const exe = Deno.execPath();
  const isDeno = /^deno(\.exe)?$/i.test(exe.split(/[\\/]/).pop() ?? "");
  const run = ["agent", "run", ...(options.background ?? true ? ["--background"] : [])];
  if (isDeno) {
    const main = new URL("../main.ts", import.meta.url).pathname;
    return { command: exe, args: ["run", "-A", "--quiet", main, ...run] };
  }
  return { command: exe, args: run };
}

/** How long a CLI waits for an agent that is starting (joining a cluster can take a while). */
const STARTING_WAIT_MS = 60_000;

/** How long a CLI waits for a live agent that does not answer (busy, or stopping). */
const BUSY_WAIT_MS = 30_000;

/** The pid in state/agent.pid if it is a prisn agent's (not a pid the system reused). */
export async function agentPid(paths: Paths): Promise<number | undefined> {
  const pid = Number(
    (await Deno.readTextFile(join(paths.state, "agent.pid")).catch(() => "")).trim(),
  );
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  if (Deno.build.os !== "linux") return pid;
  const cmdline = await Deno.readTextFile(`/proc/${pid}/cmdline`).catch(() => "");
  return cmdline.split("\0").includes("agent") ? pid : undefined;
}

/** A remote agent's TCP API (prisn agent run --listen). */
export interface RemoteTarget {
  /** https://host:port, or http:// on loopback. */
  server: string;
  /** Bearer token; without one the agent answers 401. */
  token?: string;
  /** PEM text of the CA the server's certificate is checked against. @default system roots */
  ca?: string;
}

/**
 * The CLI's side of the agent API: HTTP over the unix socket, or a remote agent's TCP API with a
 * bearer token. `connect()` starts a background agent when none answers on the socket; racing
 * CLIs serialize on a lock file so only one agent starts.
 */
export class AgentClient {
  #http?: Deno.HttpClient;
  readonly #base: string;
  readonly #headers: Record<string, string> = {};
  /** What the client talks to, for messages: the socket's path or the server's URL. */
  readonly where: string;
  /** The remote agent, when not the local socket. */
  readonly remote?: RemoteTarget;
  /**
   * The namespace every call addresses (`?namespace=` on each request). @default none: the agent
   * takes "default" (a list: a scoped token's namespaces)
   */
  namespace?: string;

  constructor(target: Paths | RemoteTarget) {
    if ("server" in target) {
      this.remote = target;
      this.#base = target.server.replace(/\/+$/, "");
      this.where = this.#base;
      if (target.token) this.#headers.authorization = `Bearer ${target.token}`;
      if (target.ca) this.#http = Deno.createHttpClient({ caCerts: [target.ca] });
    } else {
      this.#base = "http://prisn";
      this.where = target.socket;
      this.#http = Deno.createHttpClient({ proxy: { transport: "unix", path: target.socket } });
    }
  }

  /**
   * A client to a running agent, or undefined when none runs. An agent whose process lives (its
   * agent.pid) but that does not answer a ping at once (busy, or stopping) is waited for, up to
   * BUSY_WAIT_MS, rather than taken for absent: a CLI that took a slow agent for none would say
   * "no agent running" to `agent stop`, or start a second one.
   */
  static async existing(paths: Paths): Promise<AgentClient | undefined> {
    const client = new AgentClient(paths);
    if (await client.ping()) return client;
    const pid = await agentPid(paths);
    const deadline = Date.now() + BUSY_WAIT_MS;
    while (pid !== undefined && processAlive(pid) && Date.now() < deadline) {
      if (await client.ping()) return client;
      await new Promise((r) => setTimeout(r, 100));
    }
    client.close();
    return undefined;
  }

  /** A client to the agent, starting one in the background if needed. */
  static async connect(paths: Paths): Promise<AgentClient> {
    const running = await AgentClient.existing(paths) ?? await AgentClient.#starting(paths);
    if (running) return running;
    await ensureWritable(paths.home);
    await Deno.mkdir(paths.state, { recursive: true });
    using lock = await Deno.open(join(paths.state, "start.lock"), { create: true, write: true });
    await lock.lock(true);
    try {
      const raced = await AgentClient.existing(paths) ?? await AgentClient.#starting(paths);
      if (raced) return raced;
      try {
        await startBackgroundAgent(paths);
      } catch (e) {
        // An agent started for this home meanwhile (`prisn agent run` elsewhere): use that one.
        const other = await AgentClient.#starting(paths) ?? await AgentClient.existing(paths);
        if (other) return other;
        throw e;
      }
      return new AgentClient(paths);
    } finally {
      await lock.unlock();
    }
  }

  /**
   * The agent that is starting for this home (`prisn agent run` in another shell, still joining
   * its cluster), once it serves; undefined when none is starting or it gave up.
   */
  static async #starting(paths: Paths): Promise<AgentClient | undefined> {
    const marker = join(paths.state, "agent.starting");
    const pid = Number((await Deno.readTextFile(marker).catch(() => "")).trim());
    if (!Number.isInteger(pid) || pid <= 0) return undefined;
    const deadline = Date.now() + STARTING_WAIT_MS;
    while (Date.now() < deadline && processAlive(pid)) {
      const client = await AgentClient.existing(paths);
      if (client) return client;
      if (!await Deno.stat(marker).then(() => true, () => false)) break; // it served, or gave up
      await new Promise((r) => setTimeout(r, 100));
    }
    return await AgentClient.existing(paths);
  }

  close(): void {
    this.#http?.close();
  }

  async ping(): Promise<boolean> {
    try {
      const res = await fetch(`${this.#base}/v1/ping`, {
        client: this.#http,
        headers: this.#headers,
        signal: AbortSignal.timeout(2_000),
      });
      await res.body?.cancel();
      return res.ok;
    } catch {
      return false;
    }
  }

  /** The agent's node, its deployments and the last hour's runs. */
  status(): Promise<StatusView> {
    return this.call("GET", "/v1/status");
  }

  /** Asks the agent to stop (it stops everything it runs); answers before it has stopped. */
  stopAgent(): Promise<StopResponse> {
    return this.call("POST", "/v1/agent/stop");
  }

  /** The deployments of the namespace, or with `all` of every namespace the caller may see. */
  deployments(options: { all?: boolean } = {}): Promise<DeploymentSummary[]> {
    return this.call("GET", `/v1/deployments${options.all ? "?all=true" : ""}`);
  }

  deployment(name: string): Promise<DeploymentDetail> {
    return this.call("GET", deploymentPath(name));
  }

  /**
   * Deploys, handing each progress step to `onProgress` as the agent reports it. Aborting
   * `signal` before the Prepare step cancels the deploy (the agent keeps nothing of it).
   */
  async deploy(
    request: DeployRequest,
    onProgress: (step: Step, detail: string) => void = () => {},
    options: { signal?: AbortSignal; archive?: Uint8Array<ArrayBuffer> } = {},
  ): Promise<DeployResult> {
    let result: DeployResult | undefined;
    let last: Step | undefined;
    const onEvent = (event: DeployEvent) => {
      if ("step" in event) onProgress(last = event.step, event.detail);
      else if ("result" in event) result = event.result;
    };
    try {
      if (options.archive) {
        const headers = { [DEPLOY_HEADER]: encodeDeployHeader(request) };
        await this.stream<DeployEvent>("POST", "/v1/deploy/upload", options.archive, onEvent, {
          ...options,
          headers,
        });
      } else {
        await this.stream<DeployEvent>("POST", "/v1/deploy", request, onEvent, options);
      }
    } catch (e) {
      if (e instanceof PrisnError || options.signal?.aborted) throw e;
      throw new PrisnError(
        "UNAVAILABLE",
        `the agent stopped during the deploy (${
          last ? `after the ${last} step` : "before it began"
        }` +
          `): it did not finish; see prisn ls and prisn history NAME once the agent is back`,
        { cause: e },
      );
    }
    if (!result) throw new PrisnError("FAILED", "the agent ended the deploy without a result");
    return result;
  }

  rollback(name: string, request: RollbackRequest = {}): Promise<DeployResult> {
    return this.call("POST", deploymentPath(name, "rollback"), request);
  }

  scale(name: string, replicas: number): Promise<ScaleResponse> {
    return this.call("POST", deploymentPath(name, "scale"), { replicas } satisfies ScaleRequest);
  }

  /** Starts a run of a job or cronjob now; `env` (KEY=VALUE) applies to this run only. */
  startRun(name: string, request: RunRequest = {}): Promise<RunStarted> {
    return this.call("POST", deploymentPath(name, "run"), request);
  }

  /** Suspends (true) or resumes (false) a cronjob. */
  setSuspended(name: string, suspended: boolean): Promise<SuspendResponse> {
    return this.call("POST", deploymentPath(name, suspended ? "suspend" : "resume"));
  }

  /** Stops and removes a deployment; with `purge` its logs too. */
  delete(name: string, options: { purge?: boolean } = {}): Promise<DeleteResponse> {
    const purge = options.purge ? "true" : "false";
    return this.call("DELETE", `${deploymentPath(name)}?purge=${purge}`);
  }

  env(name: string): Promise<EnvEntry[]> {
    return this.call("GET", deploymentPath(name, "env"));
  }

  history(name: string): Promise<HistoryRow[]> {
    return this.call("GET", deploymentPath(name, "history"));
  }

  /** Runs, newest first, of every deployment or of one. */
  nodes(): Promise<NodeSummary[]> {
    return this.call("GET", "/v1/nodes");
  }

  /** Marks a cluster node draining, or ready again. */
  drain(node: string, draining: boolean): Promise<DrainResponse> {
    return this.call(
      "POST",
      `/v1/nodes/${encodeURIComponent(node)}/${draining ? "drain" : "undrain"}`,
    );
  }

  runs(query: RunsQuery = {}): Promise<RunRecord[]> {
    const q = new URLSearchParams();
    if (query.limit !== undefined) q.set("limit", String(query.limit));
    if (query.deployment) q.set("deployment", query.deployment);
    if (query.allNamespaces) q.set("all", "true");
    return this.call("GET", `/v1/runs${q.size ? `?${q}` : ""}`);
  }

  run(id: string): Promise<RunRecord> {
    return this.call("GET", `/v1/runs/${encodeURIComponent(id)}`);
  }

  tokens(): Promise<TokenInfo[]> {
    return this.call("GET", "/v1/tokens");
  }

  createToken(request: TokenRequest): Promise<TokenCreated> {
    return this.call("POST", "/v1/tokens", request);
  }

  revokeToken(name: string): Promise<TokenRevoked> {
    return this.call("DELETE", `/v1/tokens/${encodeURIComponent(name)}`);
  }

  gc(request: GcRequest = {}): Promise<GcResult> {
    return this.call("POST", "/v1/gc", request);
  }

  /**
   * A deployment's log lines, handed to `onLine` as they arrive: the last `tail`, then with
   * `follow` new ones until `signal` aborts (that ends it quietly) or the agent stops.
   */
  async logs(
    name: string,
    query: LogsQuery,
    onLine: (line: string) => void,
    options: { signal?: AbortSignal } = {},
  ): Promise<void> {
    const q = new URLSearchParams();
    if (query.tail !== undefined) q.set("tail", String(query.tail));
    if (query.replica) q.set("replica", query.replica);
    if (query.run) q.set("run", query.run);
    if (query.follow) q.set("follow", "true");
    try {
      await this.stream<LogEvent>(
        "GET",
        `${deploymentPath(name, "logs")}?${q}`,
        undefined,
        (event) => {
          if ("line" in event) onLine(event.line);
        },
        options,
      );
    } catch (e) {
      if (!options.signal?.aborted) throw e;
    }
  }

  /** Calls the API; an error answer becomes the PrisnError the agent raised. */
  async call<T>(method: string, path: string, body?: unknown): Promise<T> {
    const res = await this.#fetch(method, path, body);
    const data = await this.#json(res);
    if (!res.ok || isError(data)) throw toError(data);
    return data as T;
  }

  async #json(res: Response): Promise<unknown> {
    try {
      return await res.json();
    } catch (e) {
      throw new PrisnError(
        "FAILED",
        `${this.where} answered ${res.status} with something that is not prisn's JSON: is it a prisn agent?`,
        { cause: e },
      );
    }
  }

  /**
   * Calls an NDJSON API, handing each line to `onLine` as it arrives; an `{ error }` line (the
   * agent's last) becomes the PrisnError it stands for.
   */
  async stream<T = Record<string, unknown>>(
    method: string,
    path: string,
    body: unknown,
    onLine: (obj: T) => void,
    options: { signal?: AbortSignal; headers?: Record<string, string> } = {},
  ): Promise<void> {
    const res = await this.#fetch(method, path, body, options.signal, options.headers);
    if (!res.ok) throw toError(await this.#json(res));
    let buffer = "";
    const decoder = new TextDecoder();
    let failure: PrisnError | undefined;
    const take = (line: string) => {
      if (!line.trim() || options.signal?.aborted) return; // nothing more once the caller aborted
      const obj = JSON.parse(line);
      if (isError(obj)) failure = toError(obj);
      else onLine(obj as T);
    };
    for await (const chunk of res.body!) {
      buffer += decoder.decode(chunk, { stream: true });
      const lines = buffer.split("\n");
      buffer = lines.pop()!;
      for (const line of lines) take(line);
    }
    take(buffer + decoder.decode());
    if (failure) throw failure;
  }

  async #fetch(
    method: string,
    path: string,
    body?: unknown,
    signal?: AbortSignal,
    extra: Record<string, string> = {},
  ): Promise<Response> {
    const headers: Record<string, string> = { ...this.#headers, ...extra };
    const binary = body instanceof Uint8Array;
    if (body !== undefined) {
      headers["content-type"] = binary ? "application/gzip" : "application/json";
    }
    if (this.namespace !== undefined) {
      path += `${path.includes("?") ? "&" : "?"}namespace=${encodeURIComponent(this.namespace)}`;
    }
    try {
      return await fetch(`${this.#base}${path}`, {
        method,
        client: this.#http,
        headers,
        body: body === undefined
          ? undefined
          : binary
          ? body as Uint8Array<ArrayBuffer>
          : JSON.stringify(body),
        signal,
      });
    } catch (e) {
      if (signal?.aborted) throw e;
      throw new PrisnError(
        "UNAVAILABLE",
        `the prisn agent at ${this.where} did not answer${
          this.remote ? ` (${rootCause(e)})` : ": check prisn agent status"
        }`,
        { cause: e },
      );
    }
  }
}

/** The innermost message of an error's cause chain, first line only (fetch wraps the reason). */
function rootCause(e: unknown): string {
  let inner = e as Error;
  while (inner?.cause instanceof Error) inner = inner.cause;
  return String(inner?.message ?? inner).split("\n")[0];
}

function deploymentPath(name: string, action?: string): string {
  return `/v1/deployments/${encodeURIComponent(name)}${action ? `/${action}` : ""}`;
}

function isError(data: unknown): data is ErrorBody {
  return Boolean(data && typeof data === "object" && "error" in data && data.error);
}

function toError(data: unknown): PrisnError {
  if (!isError(data)) return new PrisnError("FAILED", "the agent gave an answer prisn cannot read");
  return new PrisnError(data.error.code, data.error.message);
}

async function startBackgroundAgent(paths: Paths): Promise<void> {
  const { command, args } = agentCommand();
  const child = new Deno.Command(command, {
    args,
    env: { PRISN_HOME: paths.home },
    stdin: "null",
    stdout: "null",
    stderr: "null",
    detached: true,
  }).spawn();
  child.unref();
  let exited = false;
  child.status.then(() => exited = true);
  const deadline = Date.now() + 20_000;
  const probe = new AgentClient(paths);
  try {
    while (Date.now() < deadline) {
      if (await probe.ping()) return;
      if (exited) break;
      await new Promise((r) => setTimeout(r, 50));
    }
  } finally {
    probe.close();
  }
  const log = await Deno.readTextFile(join(paths.state, "agent.log")).catch(() => "");
  const last = log.trim().split("\n").pop() ?? "";
  throw new PrisnError(
    "UNAVAILABLE",
    `the prisn agent did not start${last ? `: ${last}` : ""} (see ${
      join(paths.state, "agent.log")
    })`,
  );
}
