/**
 * The agent's TCP API: the unix socket's routes over HTTPS (or plain HTTP on loopback only),
 * every request carrying a bearer token.
 * @module
 */
import { invalid, PrisnError } from "../core/errors.ts";
import { errorResponse, type Route, router } from "./api.ts";
import type { TokenStore } from "./tokens.ts";

/** Where and how the TCP API listens. */
export interface ListenOptions {
  hostname: string;
  port: number;
  /** PEM certificate chain and key: HTTPS. Without them, plain HTTP (loopback only). */
  tls?: { cert: string; key: string };
}

/**
 * Parses `--listen HOST:PORT` (`[::1]:PORT` for IPv6) and checks it against TLS: plain HTTP
 * beyond loopback is refused, since tokens would cross the network in clear.
 */
export function parseListen(value: string, tls: boolean): ListenOptions {
  const m = /^(?:\[([^\]]+)\]|([^:\[\]]+)):(\d{1,5})$/.exec(value);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port < 1 || port > 65535) {
    throw invalid(`--listen "${value}" is not valid: give HOST:PORT, e.g. 127.0.0.1:7070`);
  }
  const hostname = m[1] ?? m[2];
  if (!tls && !isLoopback(hostname)) {
    throw invalid(
      `--listen ${value} without --tls-cert and --tls-key would send tokens in clear: ` +
        `give both, or listen on 127.0.0.1`,
    );
  }
  return { hostname, port };
}

/** 127.0.0.0/8, ::1 and localhost. */
export function isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

/** The one answer to a missing, wrong or revoked token: it says nothing about what exists. */
function unauthorized(): Response {
  return errorResponse(
    new PrisnError(
      "UNAUTHORIZED",
      "the agent needs a valid API token: give --token, set PRISN_TOKEN or use a context " +
        "(prisn context add)",
    ),
    { headers: { "www-authenticate": 'Bearer realm="prisn"' } },
  );
}

/** The bearer token of a request, or undefined. */
function bearer(req: Request): string | undefined {
  const m = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.get("authorization") ?? "");
  return m?.[1];
}

/**
 * A handler over `routes` for the TCP API: a request without a valid token answers 401 before
 * any route is looked at; a token answers 403 on a route its grant does not cover.
 */
export function tokenHandler(
  routes: Route[],
  tokens: TokenStore,
): (req: Request) => Promise<Response> {
  return router(routes, (req) => {
    const secret = bearer(req);
    const grant = secret === undefined ? undefined : tokens.verify(secret);
    if (grant) return grant;
    req.body?.cancel().catch(() => {});
    return unauthorized();
  });
}

/** Serves the TCP API; resolves once it listens. */
export async function serveTcp(
  options: ListenOptions,
  handler: (req: Request) => Promise<Response>,
): Promise<Deno.HttpServer> {
  const ready = Promise.withResolvers<void>();
  const where = `${options.hostname}:${options.port}`;
  let server: Deno.HttpServer;
  try {
    server = Deno.serve({
      hostname: options.hostname,
      port: options.port,
      ...(options.tls ?? {}),
      onListen: () => ready.resolve(),
      onError: (e) => errorResponse(e),
    }, (req) => handler(req));
  } catch (e) {
    if (e instanceof Deno.errors.AddrInUse) {
      throw new PrisnError("CONFLICT", `--listen ${where} is taken: pick another port`);
    }
    throw new PrisnError("INVALID", `cannot listen on ${where}: ${(e as Error).message}`, {
      cause: e,
    });
  }
  await ready.promise;
  return server;
}
