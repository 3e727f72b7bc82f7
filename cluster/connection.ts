/**
 * Connecting a prisn node to its NATS server, and refusing, with one line, a server prisn cannot
 * work with: unreachable, without JetStream, refusing the credentials, or clustered and too old
 * for a safe compare-and-set (DESIGN.md, "NATS facts that decide the design").
 *
 * @module
 */

import type { Socket } from "node:net";
import {
  type ConnectionOptions,
  credsAuthenticator,
  type NatsConnection,
  type TlsOptions,
} from "@nats-io/transport-node";
import { nodeResolveHost, NodeTransport } from "@nats-io/transport-node/lib/node_transport.js";
import {
  NatsConnectionImpl,
  setTransportFactory,
} from "@nats-io/transport-node/lib/nats-base-client.js";
import { jetstream, type JetStreamManager, jetstreamManager } from "@nats-io/jetstream";
import { invalid } from "../core/errors.ts";
import { clusterError, isTransient, natsReason } from "./errors.ts";
import { clusterNames, DEFAULT_CLUSTER } from "./names.ts";
import type { ClusterAuth, ClusterConnection, ClusterOptions, ClusterTls } from "./types.ts";

/** The first nats-server whose compare-and-set holds on a cluster (nats-server #4320, PR #4319). */
export const CAS_SAFE_VERSION = "2.9.21";

const DEFAULT_CONNECT_TIMEOUT_MS = 5_000;
const DEFAULT_JETSTREAM_WAIT_MS = 10_000;
/** A dead server (no RST, e.g. its host vanished) is noticed after ~30 s rather than ~4 min. */
const PING_INTERVAL_MS = 10_000;
const MAX_PINGS_OUT = 3;
/** How long `close()` lets the drain take before it just closes. */
const DRAIN_TIMEOUT_MS = 5_000;

/**
 * Connects to NATS and checks it can hold a prisn cluster: JetStream answers, the credentials are
 * accepted, and a clustered server is at least {@link CAS_SAFE_VERSION} (or `allowUnsafeCas` is
 * set, which adds a warning). The first connect tries each server once within
 * `connectTimeoutMs`; once connected, the client reconnects forever (`maxReconnectAttempts: -1`:
 * nats.js would give up after 10 attempts).
 *
 * Throws a one-line PrisnError (INVALID for bad options or credentials, UNAVAILABLE for a server
 * prisn cannot use); nothing stays open then. The version checked is the connected server's: a
 * cluster is as safe as its oldest server, so upgrade them all.
 */
export async function connectCluster(options: ClusterOptions): Promise<ClusterConnection> {
  const settings = resolve(options);
  const names = clusterNames(settings.cluster);
  const where = settings.servers.join(",");
  let nc: NatsConnection;
  try {
    nc = await dial(natsOptions(settings), settings.connectTimeoutMs * settings.servers.length);
  } catch (e) {
    throw connectError(e, where, settings);
  }
  try {
    const info = nc.info;
    const serverVersion = info?.version ?? "unknown";
    const clustered = Boolean(info?.cluster) || (info?.connect_urls?.length ?? 0) > 1;
    await waitForJetStream(nc, where, settings.jetStreamWaitMs);
    const warnings: string[] = [];
    if (clustered && !casSafe(serverVersion)) {
      const problem = `NATS ${serverVersion} at ${where} is clustered and older than ` +
        `${CAS_SAFE_VERSION}: its compare-and-set is unsafe (nats-server #4320), so two nodes ` +
        `could both win the leader lease or the same record write`;
      if (!settings.allowUnsafeCas) {
        throw clusterError(
          "UNAVAILABLE",
          `${problem}; upgrade NATS to ${CAS_SAFE_VERSION} or later, or pass --nats-allow-unsafe-cas to run anyway`,
        );
      }
      warnings.push(
        `WARNING: ${problem}; running anyway because of --nats-allow-unsafe-cas: upgrade NATS to ${CAS_SAFE_VERSION} or later`,
      );
    }
    if (settings.replicas > 1 && !clustered) {
      throw invalid(
        `--nats-replicas ${settings.replicas} needs a clustered NATS, but NATS at ${where} is a single server: use --nats-replicas 1`,
      );
    }
    const jsm = await jetstreamManager(nc, { checkAPI: false });
    return connection(nc, jsm, {
      names,
      serverVersion,
      clustered,
      replicas: settings.replicas,
      warnings,
    });
  } catch (e) {
    await nc.close().catch(() => {});
    throw e;
  }
}

/** Whether a nats-server `version` ("2.9.21", "v2.10.0-beta.1") has the compare-and-set fix. */
export function casSafe(version: string): boolean {
  const have = parseVersion(version);
  const need = parseVersion(CAS_SAFE_VERSION)!;
  if (!have) return false;
  for (let i = 0; i < 3; i++) {
    if (have[i] !== need[i]) return have[i] > need[i];
  }
  return true;
}

function parseVersion(version: string): [number, number, number] | undefined {
  const m = /^v?(\d+)\.(\d+)\.(\d+)/.exec(version.trim());
  return m ? [Number(m[1]), Number(m[2]), Number(m[3])] : undefined;
}

type Settings =
  & Required<Omit<ClusterOptions, "auth" | "tls">>
  & Pick<ClusterOptions, "auth" | "tls">;

/** The options with their defaults, checked; throws INVALID. */
function resolve(options: ClusterOptions): Settings {
  const servers = (options.servers ?? []).map((s) => s.trim()).filter((s) => s !== "");
  if (servers.length === 0) {
    throw invalid("no NATS server given: pass --nats nats://HOST:4222");
  }
  const replicas = options.replicas ?? 1;
  if (!Number.isInteger(replicas) || replicas < 1 || replicas > 5) {
    throw invalid(`--nats-replicas ${replicas} is not valid: use 1 to 5 (3 for a clustered NATS)`);
  }
  for (
    const [key, value] of [
      ["connectTimeoutMs", options.connectTimeoutMs],
      ["jetStreamWaitMs", options.jetStreamWaitMs],
    ] as const
  ) {
    if (value !== undefined && !(Number.isFinite(value) && value > 0)) {
      throw invalid(`NATS option ${key} ${value} is not valid: use a positive number of ms`);
    }
  }
  checkAuth(options.auth);
  checkTls(options.tls);
  return {
    servers,
    cluster: options.cluster ?? DEFAULT_CLUSTER,
    auth: options.auth,
    tls: options.tls,
    replicas,
    allowUnsafeCas: options.allowUnsafeCas ?? false,
    connectTimeoutMs: options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
    jetStreamWaitMs: options.jetStreamWaitMs ?? DEFAULT_JETSTREAM_WAIT_MS,
    name: options.name ?? "prisn",
  };
}

function checkAuth(auth: ClusterAuth | undefined): void {
  if (!auth) return;
  const kinds = ["token", "user", "credsFile"].filter((k) => k in auth);
  if (kinds.length !== 1) {
    throw invalid(
      "NATS auth is not valid: give one of a token, a user and password, or a .creds file",
    );
  }
  if ("token" in auth && !auth.token) throw invalid("the NATS token is empty: pass a token");
  if ("user" in auth && (!auth.user || typeof auth.pass !== "string")) {
    throw invalid("NATS user auth needs a user name and a password");
  }
  if ("credsFile" in auth) readable(auth.credsFile, "NATS credentials file");
}

function checkTls(tls: ClusterTls | undefined): void {
  if (!tls) return;
  if (Boolean(tls.cert) !== Boolean(tls.key)) {
    throw invalid("NATS TLS needs both a client certificate and its key, or neither");
  }
  if (tls.ca) readable(tls.ca, "NATS TLS CA file");
  if (tls.cert) readable(tls.cert, "NATS TLS certificate file");
  if (tls.key) readable(tls.key, "NATS TLS key file");
}

function readable(path: string, what: string): void {
  try {
    Deno.readFileSync(path);
  } catch (e) {
    throw clusterError(
      "INVALID",
      `cannot read the ${what} ${path}: ${e instanceof Error ? e.message : e}`,
      e,
    );
  }
}

/** nats.js options for `settings`. */
function natsOptions(settings: Settings): ConnectionOptions {
  const o: ConnectionOptions = {
    servers: settings.servers,
    name: settings.name,
    timeout: settings.connectTimeoutMs,
    maxReconnectAttempts: -1,
    pingInterval: PING_INTERVAL_MS,
    maxPingOut: MAX_PINGS_OUT,
  };
  const auth = settings.auth;
  if (auth && "token" in auth) o.token = auth.token;
  else if (auth && "user" in auth) Object.assign(o, { user: auth.user, pass: auth.pass });
  else if (auth && "credsFile" in auth) {
    const path = auth.credsFile;
    o.authenticator = credsAuthenticator(() => Deno.readFileSync(path));
  }
  const tls = settings.tls;
  if (tls && (tls.ca || tls.cert)) {
    o.tls = {
      ...(tls.ca ? { caFile: tls.ca } : {}),
      ...(tls.cert ? { certFile: tls.cert, keyFile: tls.key } : {}),
    };
  }
  return o;
}

/**
 * nats.js's connect over {@link GuardedTransport}, given up after `totalMs` (each attempt is
 * bounded by `timeout`; this also bounds name resolution). A connection that comes up after the
 * deadline is closed. The transport factory is global to nats.js and read at every (re)connect:
 * `connect()` of @nats-io/transport-node in the same process puts back the unguarded one, so
 * prisn code connects through {@link connectCluster} only.
 */
async function dial(options: ConnectionOptions, totalMs: number): Promise<NatsConnection> {
  setTransportFactory({ factory: () => new GuardedTransport(), dnsResolveFn: nodeResolveHost });
  const pending = NatsConnectionImpl.connect(options);
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      pending.then((nc) => nc.close()).catch(() => {});
      reject(Object.assign(new Error("timeout"), { name: "TimeoutError" }));
    }, totalMs + 1_000);
  });
  try {
    return await Promise.race([pending, late]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * The Node transport of nats.js with two repairs:
 * - Its sockets always keep an 'error' listener. nats.js removes every listener of a socket it
 *   drops; when the server has just reset the connection (it does right after "Authorization
 *   Violation"), Node's stream code has already queued the ECONNRESET 'error' event for the next
 *   tick, which then finds no listener and crashes the process (seen here in about one
 *   wrong-credentials connect out of three).
 * - A server given by IP address is verified against that address. nats.js sends no TLS server
 *   name for an IP, so Node checks the certificate against "localhost" and refuses a certificate
 *   made for the IP (`tls://10.0.0.5:4222`).
 */
class GuardedTransport extends NodeTransport {
  constructor() {
    super();
    let socket: Socket | undefined;
    Object.defineProperty(this, "socket", {
      get: () => socket,
      set: (s: Socket | undefined) => {
        socket = s;
        if (s) keepErrorListener(s);
      },
      configurable: true,
      enumerable: true,
    });
  }

  override connect(
    hp: { hostname: string; port: number; tlsName: string },
    options: Parameters<NodeTransport["connect"]>[1],
  ): Promise<void> {
    if (!hp.tlsName && typeof options.tls === "object" && options.tls !== null) {
      // Merged by nats.js into the options of node:tls connect(), whose host is what is verified.
      options = { ...options, tls: { ...options.tls, host: hp.hostname } as TlsOptions };
    }
    return super.connect(hp, options);
  }
}

const guarded = new WeakSet<Socket>();

function ignoreError(): void {}

function keepErrorListener(socket: Socket): void {
  if (guarded.has(socket)) return;
  guarded.add(socket);
  socket.on("error", ignoreError);
  const removeAll = socket.removeAllListeners;
  socket.removeAllListeners = function (this: Socket, event?: string | symbol) {
    // Node tells "all" from "listeners of undefined" by the argument count.
    if (event === undefined) removeAll.call(this);
    else removeAll.call(this, event);
    if (event === undefined || event === "error") this.on("error", ignoreError);
    return this;
  };
}

/** The one line for a failed first connect. */
function connectError(error: unknown, where: string, settings: Settings) {
  const name = error instanceof Error ? error.name : "";
  if (name === "AuthorizationError" || name === "UserAuthenticationExpiredError") {
    return settings.auth
      ? clusterError(
        "INVALID",
        `NATS at ${where} refused prisn's credentials (${
          natsReason(error).toLowerCase()
        }): check the NATS token, user and password, or .creds file`,
        error,
      )
      : clusterError(
        "INVALID",
        `NATS at ${where} requires credentials (${
          natsReason(error).toLowerCase()
        }): pass a NATS token, user and password, or .creds file`,
        error,
      );
  }
  if (name === "TimeoutError") {
    return clusterError(
      "UNAVAILABLE",
      `cannot reach NATS at ${where} (no answer within ${
        settings.connectTimeoutMs / 1000
      } s): check the --nats address and that nats-server is running`,
      error,
    );
  }
  const reason = name === "ConnectionError" && error instanceof Error &&
      error.message === "connection refused"
    ? error.message
    : natsReason(error);
  if (/refused|ECONNREFUSED|ENOTFOUND|EAI_AGAIN|EHOSTUNREACH|ENETUNREACH/.test(reason)) {
    return clusterError(
      "UNAVAILABLE",
      `cannot reach NATS at ${where} (${reason}): check the --nats address and that nats-server is running`,
      error,
    );
  }
  if (/certificate|altnames|self[- ]signed|tls|ssl|handshake/i.test(reason)) {
    return clusterError(
      "INVALID",
      `TLS to NATS at ${where} failed (${reason}): give the CA that signed the server's certificate (and a client certificate if the server asks for one), and an address the certificate names`,
      error,
    );
  }
  return clusterError("UNAVAILABLE", `cannot connect to NATS at ${where}: ${reason}`, error);
}

/** How long "JetStream not enabled" may be a NATS cluster electing its JetStream leader. */
const NOT_ENABLED_GRACE_MS = 3_000;

/** Waits until JetStream answers (a fresh NATS cluster elects its leader first); throws one line. */
async function waitForJetStream(nc: NatsConnection, where: string, waitMs: number): Promise<void> {
  const deadline = Date.now() + waitMs;
  // A fresh NATS cluster answers "no responders" (read as "not enabled") until it has elected a
  // JetStream leader: believe it only once it kept saying so for a while.
  const notEnabledUntil = Date.now() + Math.min(waitMs, NOT_ENABLED_GRACE_MS);
  while (true) {
    const left = deadline - Date.now();
    try {
      await jetstreamManager(nc, { timeout: Math.max(250, Math.min(2_000, left)) });
      return;
    } catch (e) {
      const notEnabled = e instanceof Error && e.name === "JetStreamNotEnabled";
      if (notEnabled && Date.now() < notEnabledUntil) {
        await new Promise((r) => setTimeout(r, 200));
        continue;
      }
      if (notEnabled) {
        throw clusterError(
          "UNAVAILABLE",
          `JetStream not enabled on NATS at ${where}: start nats-server with -js (or enable JetStream for this account)`,
          e,
        );
      }
      if (e instanceof Error && e.name === "PermissionViolationError") {
        throw clusterError(
          "UNAVAILABLE",
          `NATS at ${where} does not let prisn's user use JetStream (${
            natsReason(e)
          }): allow it $JS.API.> and _INBOX.>`,
          e,
        );
      }
      if (!isTransient(e)) {
        throw clusterError("UNAVAILABLE", `JetStream at ${where} failed: ${natsReason(e)}`, e);
      }
      if (Date.now() >= deadline) {
        throw clusterError(
          "UNAVAILABLE",
          `JetStream at ${where} did not answer within ${
            waitMs / 1000
          } s: a NATS cluster needs most of its servers up to elect a JetStream leader`,
          e,
        );
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}

function connection(
  nc: NatsConnection,
  jsm: JetStreamManager,
  rest: Pick<ClusterConnection, "names" | "serverVersion" | "clustered" | "replicas" | "warnings">,
): ClusterConnection {
  let closing: Promise<void> | undefined;
  return {
    nc,
    js: jetstream(nc),
    jsm,
    ...rest,
    close: () => closing ??= drain(nc),
  };
}

async function drain(nc: NatsConnection): Promise<void> {
  if (nc.isClosed()) return;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const drained = await Promise.race([
    nc.drain().then(() => true, () => false),
    new Promise<false>((r) => timer = setTimeout(() => r(false), DRAIN_TIMEOUT_MS)),
  ]);
  clearTimeout(timer);
  if (!drained && !nc.isClosed()) await nc.close().catch(() => {});
}
