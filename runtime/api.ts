/**
 * The agent's HTTP API: a table of routes (method, URLPattern, handler), each handler a thin
 * translation between HTTP and one call on an {@link Operations} object. A known path with a wrong
 * method answers 405 with an Allow header, an unknown path 404, both as `{ error: { code, message } }`.
 * @module
 */
import { deploymentNotFound, PrisnError } from "../core/errors.ts";
import { DEFAULT_NAMESPACE, deploymentKey, validateNamespace } from "../core/namespace.ts";
import { validateName } from "../core/prisn_toml.ts";
import { formatBytes } from "../core/quantity.ts";
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
  PingResponse,
  RollbackRequest,
  RunRecord,
  RunRequest,
  RunStarted,
  ScaleRequest,
  ScaleResponse,
  StatusView,
  StopResponse,
  SuspendResponse,
  TokenCreated,
  TokenRequest,
  TokenRevoked,
} from "./api_types.ts";
import type { Progress } from "./deploy.ts";
import { isDiskFull } from "./disk_health.ts";
import { reaches, type TokenGrant, type TokenInfo } from "./tokens.ts";

/** What `logs` hands the route: the backlog, and with `follow` a way to keep reading. */
export interface LogsReply {
  /** The last `tail` lines, merged by time. */
  lines: string[];
  /** Present with `follow`: calls `onLines` with new lines until `signal` aborts. */
  follow?: (onLines: (lines: string[]) => void, signal: AbortSignal) => Promise<void>;
}

/** Everything the API can do; the route table only translates HTTP to these calls. */
export interface Operations {
  ping(): PingResponse;
  /** `namespaces`: whose deployments it shows. @default every namespace */
  status(namespaces?: string[]): Promise<StatusView>;
  nodes(): Promise<NodeSummary[]>;
  /** Marks a cluster node draining (its replicas move elsewhere) or ready again. */
  drain(node: string, draining: boolean): Promise<DrainResponse>;
  /** Stops the agent shortly after the answer is sent. */
  stop(): StopResponse;
  /** `signal` aborts when the client goes away. */
  deploy(request: DeployRequest, progress: Progress, signal?: AbortSignal): Promise<DeployResult>;
  /** Deploys the folder in `archive` (core/archive.ts), uploaded by a remote CLI. */
  deployUpload(
    request: DeployRequest,
    archive: Uint8Array,
    progress: Progress,
    signal?: AbortSignal,
  ): Promise<DeployResult>;
  gc(request: GcRequest): Promise<GcResult>;
  /** `deployment` is a key (core/namespace.ts); without it, the runs of `namespaces`. */
  runs(query: { deployment?: string; namespaces?: string[]; limit?: number }): RunRecord[];
  /** A run of a deployment in `namespaces` (@default every namespace); else NOT_FOUND. */
  run(id: string, namespaces?: string[]): RunRecord;
  /** The deployments of `namespaces`. @default every namespace */
  deployments(namespaces?: string[]): DeploymentSummary[];
  // From here on, `name` is a deployment's key: NAMESPACE/NAME.
  deployment(name: string): Promise<DeploymentDetail>;
  env(name: string): EnvEntry[];
  history(name: string): HistoryRow[];
  logs(name: string, query: LogsQuery): Promise<LogsReply>;
  rollback(name: string, request: RollbackRequest): Promise<DeployResult>;
  scale(name: string, request: ScaleRequest): Promise<ScaleResponse>;
  startRun(name: string, request: RunRequest): Promise<RunStarted>;
  setSuspended(name: string, suspended: boolean): Promise<SuspendResponse>;
  delete(name: string, options: { purge: boolean }): Promise<DeleteResponse>;
  tokens(): TokenInfo[];
  /** Answers the new token's secret, shown this once. */
  createToken(request: TokenRequest): Promise<TokenCreated>;
  revokeToken(name: string): Promise<TokenRevoked>;
}

export type Method = "GET" | "POST" | "DELETE";

/** The path's named groups (percent-decoded) and the URL, for a handler. */
export interface RouteContext {
  params: Record<string, string>;
  url: URL;
  /** The TCP API's token; none over the unix socket (its owner reaches everything). */
  grant?: TokenGrant;
}

/**
 * Which tokens of the TCP API may call a route: "read" any, "write" all but read-only ones,
 * "admin" only the admin token (the unix socket's owner may call every route).
 */
export type Access = "read" | "write" | "admin";

export interface Route {
  method: Method;
  pattern: URLPattern;
  access: Access;
  handler: (req: Request, ctx: RouteContext) => Response | Promise<Response>;
}

const path = (pathname: string) => new URLPattern({ pathname });

/** The header carrying an uploaded deploy's request (its body is the archive). */
export const DEPLOY_HEADER = "prisn-deploy";

export function encodeDeployHeader(request: DeployRequest): string {
  return encodeURIComponent(JSON.stringify(request));
}

function decodeDeployHeader(req: Request): DeployRequest {
  const value = req.headers.get(DEPLOY_HEADER);
  if (!value) {
    throw new PrisnError("INVALID", `an upload needs its deploy request in ${DEPLOY_HEADER}`);
  }
  try {
    return JSON.parse(decodeURIComponent(value)) as DeployRequest;
  } catch (e) {
    throw new PrisnError(
      "INVALID",
      `the ${DEPLOY_HEADER} header is not JSON: ${(e as Error).message}`,
    );
  }
}

/** @default 256 MiB: a compressed upload bigger than this is refused (413) before it is read on */
export const DEFAULT_MAX_UPLOAD_BYTES = 256 * 1024 * 1024;

export interface ApiOptions {
  /** Largest deploy upload (the compressed archive). @default DEFAULT_MAX_UPLOAD_BYTES */
  maxUploadBytes?: number;
}

/** The agent's routes over `ops`. */
export function apiRoutes(ops: Operations, options: ApiOptions = {}): Route[] {
  const maxUpload = options.maxUploadBytes ?? DEFAULT_MAX_UPLOAD_BYTES;
  const route = (
    method: Method,
    pathname: string,
    handler: Route["handler"],
    access: Access = method === "GET" ? "read" : "write",
  ): Route => ({ method, pattern: path(pathname), access, handler });
  const name = (ctx: RouteContext) => ctx.params.name;
  /**
   * A route about one deployment (`?namespace=`, @default "default"): its key. A namespace the
   * token does not reach reads as a deployment not found, so nothing there shows it exists.
   */
  const key = (ctx: RouteContext) => {
    const namespace = namespaceParam(ctx);
    validateName(name(ctx)); // a deployment, replica or run: a DNS label, never a path
    const key = deploymentKey(namespace, name(ctx));
    if (!reaches(ctx.grant, namespace)) throw deploymentNotFound(key);
    return key;
  };
  /** The namespace a deploy or a list addresses; one the token does not reach is refused. */
  const reachable = (ctx: RouteContext) => {
    const namespace = namespaceParam(ctx);
    if (!reaches(ctx.grant, namespace)) throw outOfReach(ctx.grant!, namespace);
    return namespace;
  };
  /**
   * The namespaces a list shows: `?all=true` every one the token reaches, `?namespace=` that
   * one; neither: "default", or for a token of some namespaces, those.
   */
  const listed = (ctx: RouteContext): string[] | undefined => {
    const q = ctx.url.searchParams;
    if (q.get("all") === "true") return ctx.grant?.namespaces;
    if (q.has("namespace")) return [reachable(ctx)];
    return ctx.grant?.namespaces ?? [DEFAULT_NAMESPACE];
  };
  /** Routes about the whole node or cluster (gc, drain) take a token of every namespace. */
  const everyNamespace = (ctx: RouteContext) => {
    if (ctx.grant?.namespaces) {
      throw new PrisnError(
        "FORBIDDEN",
        `token "${ctx.grant.name}" reaches only namespace(s) ${
          ctx.grant.namespaces.join(", ")
        }: this needs a token of every namespace`,
      );
    }
  };
  return [
    route("GET", "/v1/ping", () => json(ops.ping())),
    route("GET", "/v1/status", async (_req, ctx) => json(await ops.status(ctx.grant?.namespaces))),
    route("GET", "/v1/nodes", async () => json(await ops.nodes())),
    route("POST", "/v1/nodes/:node/drain", async (_req, ctx) => {
      everyNamespace(ctx);
      return json(await ops.drain(ctx.params.node, true));
    }),
    route("POST", "/v1/nodes/:node/undrain", async (_req, ctx) => {
      everyNamespace(ctx);
      return json(await ops.drain(ctx.params.node, false));
    }),
    route("POST", "/v1/agent/stop", () => json(ops.stop()), "admin"),
    route("GET", "/v1/tokens", () => json(ops.tokens()), "admin"),
    route("POST", "/v1/tokens", async (req) => {
      return json(await ops.createToken(await readBody<TokenRequest>(req)));
    }, "admin"),
    route("DELETE", "/v1/tokens/:name", async (_req, ctx) => {
      return json(await ops.revokeToken(name(ctx)));
    }, "admin"),
    route("POST", "/v1/deploy", async (req, ctx) => {
      const request = { ...await readBody<DeployRequest>(req), namespace: reachable(ctx) };
      return ndjson<DeployEvent>(async (send, gone) => {
        const progress: Progress = (step, detail) => send([{ step, detail }]);
        send([{ result: await ops.deploy(request, progress, gone) }]);
      });
    }),
    route("POST", "/v1/deploy/upload", async (req, ctx) => {
      const request = { ...decodeDeployHeader(req), namespace: reachable(ctx) };
      const archive = await readUpload(req, maxUpload);
      return ndjson<DeployEvent>(async (send, gone) => {
        const progress: Progress = (step, detail) => send([{ step, detail }]);
        send([{ result: await ops.deployUpload(request, archive, progress, gone) }]);
      });
    }),
    route("POST", "/v1/gc", async (req, ctx) => {
      everyNamespace(ctx);
      return json(await ops.gc(await readBody<GcRequest>(req)));
    }),
    route("GET", "/v1/runs", (_req, ctx) => {
      const q = ctx.url.searchParams;
      const deployment = q.get("deployment") ?? undefined;
      const limit = Number(q.get("limit") ?? 20);
      if (deployment === undefined) return json(ops.runs({ namespaces: listed(ctx), limit }));
      return json(ops.runs({ deployment: key({ ...ctx, params: { name: deployment } }), limit }));
    }),
    route("GET", "/v1/runs/:id", (_req, ctx) => {
      return json(ops.run(ctx.params.id, ctx.grant?.namespaces));
    }),
    route("GET", "/v1/deployments", (_req, ctx) => json(ops.deployments(listed(ctx)))),
    route(
      "GET",
      "/v1/deployments/:name",
      async (_req, ctx) => json(await ops.deployment(key(ctx))),
    ),
    route("DELETE", "/v1/deployments/:name", async (_req, ctx) => {
      const purge = ctx.url.searchParams.get("purge") === "true";
      return json(await ops.delete(key(ctx), { purge }));
    }),
    route("GET", "/v1/deployments/:name/env", (_req, ctx) => json(ops.env(key(ctx)))),
    route("GET", "/v1/deployments/:name/history", (_req, ctx) => json(ops.history(key(ctx)))),
    route("GET", "/v1/deployments/:name/logs", async (_req, ctx) => {
      const reply = await ops.logs(key(ctx), logsQuery(ctx.url.searchParams));
      return ndjson<LogEvent>(async (send, signal) => {
        const lines = (lines: string[]) => send(lines.map((line) => ({ line })));
        lines(reply.lines);
        await reply.follow?.(lines, signal);
      });
    }),
    route("POST", "/v1/deployments/:name/rollback", async (req, ctx) => {
      return json(await ops.rollback(key(ctx), await readBody<RollbackRequest>(req)));
    }),
    route("POST", "/v1/deployments/:name/scale", async (req, ctx) => {
      return json(await ops.scale(key(ctx), await readBody<ScaleRequest>(req)));
    }),
    route("POST", "/v1/deployments/:name/run", async (req, ctx) => {
      return json(await ops.startRun(key(ctx), await readBody<RunRequest>(req)));
    }),
    route("POST", "/v1/deployments/:name/suspend", async (_req, ctx) => {
      return json(await ops.setSuspended(key(ctx), true));
    }),
    route("POST", "/v1/deployments/:name/resume", async (_req, ctx) => {
      return json(await ops.setSuspended(key(ctx), false));
    }),
  ];
}

/**
 * One handler for a route table: the first route whose pattern and method match answers; a path
 * some route knows under other methods gets 405 and Allow, any other 404. Errors a handler throws
 * become error answers. With `authorize` (the TCP API's tokens), a request it answers (401) goes
 * no further, and a route the grant it returns does not cover answers 403.
 */
export function router(
  routes: Route[],
  authorize?: (req: Request) => TokenGrant | Response,
): (req: Request) => Promise<Response> {
  return async (req) => {
    try {
      const grant = authorize?.(req);
      if (grant instanceof Response) return grant;
      const allowed = new Set<Method>();
      for (const r of routes) {
        const match = r.pattern.exec(req.url);
        if (!match) continue;
        if (r.method !== req.method) {
          allowed.add(r.method);
          continue;
        }
        if (grant && !permits(grant, r.access)) {
          return errorResponse(
            new PrisnError(
              "FORBIDDEN",
              r.access === "admin"
                ? `token "${grant.name}" may not do this: only the admin token (or the agent's own machine) may`
                : `token "${grant.name}" is read-only: it may not change anything`,
            ),
          );
        }
        const params: Record<string, string> = {};
        for (const [key, value] of Object.entries(match.pathname.groups)) {
          if (value !== undefined) params[key] = decodeURIComponent(value);
        }
        return await r.handler(req, { params, url: new URL(req.url), grant });
      }
      if (allowed.size > 0) {
        const allow = [...allowed].join(", ");
        return errorResponse(
          new PrisnError(
            "INVALID",
            `${req.method} is not allowed on ${new URL(req.url).pathname}: use ${allow}`,
          ),
          { status: 405, headers: { allow } },
        );
      }
      return errorResponse(new PrisnError("NOT_FOUND", "no such API path"));
    } catch (e) {
      return errorResponse(e);
    }
  };
}

/** `?namespace=`, validated. @default DEFAULT_NAMESPACE */
function namespaceParam(ctx: RouteContext): string {
  return validateNamespace(ctx.url.searchParams.get("namespace") ?? DEFAULT_NAMESPACE);
}

function outOfReach(grant: TokenGrant, namespace: string): PrisnError {
  return new PrisnError(
    "FORBIDDEN",
    `token "${grant.name}" may not reach namespace "${namespace}" (it reaches ${
      grant.namespaces!.join(", ")
    })`,
  );
}

function permits(grant: TokenGrant, access: Access): boolean {
  if (grant.admin) return true;
  return access === "read" || (access === "write" && !grant.readOnly);
}

function logsQuery(q: URLSearchParams): LogsQuery {
  const tail = q.get("tail") ?? "200";
  if (!/^\d+$/.test(tail)) {
    throw new PrisnError("INVALID", `tail "${tail}" is not valid: give a whole number of lines`);
  }
  return {
    tail: Number(tail),
    replica: q.get("replica") || undefined,
    run: q.get("run") || undefined,
    follow: q.get("follow") === "true",
  };
}

/** An upload's bytes, refused with TOO_LARGE as soon as they pass `max`. */
async function readUpload(req: Request, max: number): Promise<Uint8Array> {
  const tooLarge = (size: string) =>
    new PrisnError(
      "TOO_LARGE",
      `the upload is ${size}, over this agent's cap of ${formatBytes(max)}: ` +
        `leave files out with .prisnignore, or raise prisn agent run --max-upload`,
    );
  const declared = Number(req.headers.get("content-length") ?? NaN);
  if (declared > max) {
    await req.body?.cancel().catch(() => {});
    throw tooLarge(formatBytes(declared));
  }
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of req.body ?? []) {
    size += chunk.length;
    if (size > max) throw tooLarge(`more than ${formatBytes(max)}`);
    chunks.push(chunk);
  }
  return new Uint8Array(await new Blob(chunks as Uint8Array<ArrayBuffer>[]).arrayBuffer());
}

/** The request's JSON body; an empty body is `{}`. */
async function readBody<T>(req: Request): Promise<T> {
  const text = await req.text();
  if (!text.trim()) return {} as T;
  try {
    return JSON.parse(text) as T;
  } catch (e) {
    throw new PrisnError("INVALID", `the request body is not JSON: ${(e as Error).message}`);
  }
}

const STATUS: Record<string, number> = {
  INVALID: 400,
  UNAUTHORIZED: 401,
  FORBIDDEN: 403,
  NOT_FOUND: 404,
  TOO_LARGE: 413,
  CONFLICT: 409,
  UNAVAILABLE: 503,
  FAILED: 500,
};

/** What an error looks like on the wire; anything but a PrisnError is an internal error. */
export function errorBody(e: unknown): ErrorBody {
  if (e instanceof PrisnError) return { error: { code: e.code, message: e.message } };
  if (isDiskFull(e)) { // a change the records could not take (scale, delete, suspend…)
    return {
      error: {
        code: "UNAVAILABLE",
        message: "the disk under PRISN_HOME is full: free some space and try again " +
          "(nothing changed)",
      },
    };
  }
  return {
    error: { code: "FAILED", message: `internal error: ${(e as Error)?.message ?? String(e)}` },
  };
}

export function errorResponse(
  e: unknown,
  init: { status?: number; headers?: Record<string, string> } = {},
): Response {
  const body = errorBody(e);
  return json(body, init.status ?? STATUS[body.error.code] ?? 500, init.headers);
}

function json(value: unknown, status = 200, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(value ?? null), {
    status,
    headers: { "content-type": "application/json", ...headers },
  });
}

/**
 * An NDJSON answer written by `produce`, one object a line; a thrown error becomes a last
 * `{ error }` line. `produce`'s signal aborts when the client goes away (the server cancels the
 * body; `request.signal` is not used: Deno also aborts it when an answer completes), and whatever
 * it sends after that is dropped.
 */
function ndjson<T>(
  produce: (send: (objects: T[]) => void, signal: AbortSignal) => Promise<void>,
): Response {
  const encoder = new TextEncoder();
  const gone = new AbortController();
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      const send = (objects: (T | ErrorBody)[]) => {
        if (gone.signal.aborted || objects.length === 0) return;
        let text = "";
        for (const o of objects) text += JSON.stringify(o) + "\n";
        controller.enqueue(encoder.encode(text));
      };
      (async () => {
        try {
          await produce(send, gone.signal);
        } catch (e) {
          send([errorBody(e)]);
        }
        if (!gone.signal.aborted) controller.close();
      })();
    },
    cancel: () => gone.abort(),
  });
  return new Response(body, { headers: { "content-type": "application/x-ndjson" } });
}
