/**
 * Picks the agent's backends from `agent run` flags (or PRISN_* env): one node on its own, or a
 * node of a cluster over NATS JetStream. Loaded only by `agent run`.
 */
import type { BackendInputs, Backends } from "../core/backends.ts";
import { invalid } from "../core/errors.ts";
import { parsePositive } from "../core/values.ts";
import { localBackends } from "../runtime/backends.ts";
import { FileLogs } from "../runtime/logs.ts";
import { VERSION } from "../version.ts";

/** `agent run` flags that choose and configure the backends. */
export interface BackendFlags {
  nats?: string;
  address?: string;
  cluster?: string;
  natsToken?: string;
  natsUser?: string;
  natsPassword?: string;
  natsCreds?: string;
  natsCa?: string;
  natsCert?: string;
  natsKey?: string;
  natsReplicas?: string;
  natsAllowUnsafeCas?: boolean;
  tags?: string;
}

/** Tags of `--tags a,b`: the words `[placement] tags` names; a bad one is refused in one line. */
export function parseTags(text: string | undefined): string[] {
  if (text === undefined) return [];
  const tags = text.split(",").map((t) => t.trim()).filter(Boolean);
  for (const t of tags) {
    if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(t)) {
      throw invalid(
        `--tags: "${t}" is not a valid tag: use letters, digits, '.', '_' or '-', e.g. --tags gpu,ssd`,
      );
    }
  }
  return [...new Set(tags)].sort();
}

const env = (name: string) => Deno.env.get(name) || undefined;

/** The host's primary address: its first non-loopback IPv4 (else 127.0.0.1). */
export function primaryAddress(): string {
  try {
    const ifaces = Deno.networkInterfaces().filter((i) => i.family === "IPv4");
    return ifaces.find((i) => !i.address.startsWith("127."))?.address ?? "127.0.0.1";
  } catch {
    return "127.0.0.1";
  }
}

/**
 * The backends and this node's address. Cluster mode when `--nats` (or PRISN_NATS) is given:
 * connects (one clear line and no agent when NATS is unreachable, lacks JetStream, refuses the
 * credentials or is a clustered server too old for safe compare-and-set), creates the buckets and
 * streams, and prints the connection's warnings.
 */
export async function chooseBackends(
  flags: BackendFlags,
  node: string,
  log: (line: string) => void,
): Promise<{ backends: (inputs: BackendInputs) => Backends; address?: string; mode: string }> {
  const nats = flags.nats ?? env("PRISN_NATS");
  const address = flags.address ?? env("PRISN_ADDRESS");
  const tags = parseTags(flags.tags ?? env("PRISN_TAGS"));
  if (!nats) return { backends: localBackends, address, mode: "single node" };
  const servers = nats.split(",").map((s) => s.trim()).filter(Boolean);
  const token = flags.natsToken ?? env("PRISN_NATS_TOKEN");
  const user = flags.natsUser ?? env("PRISN_NATS_USER");
  const pass = flags.natsPassword ?? env("PRISN_NATS_PASSWORD");
  const creds = flags.natsCreds ?? env("PRISN_NATS_CREDS");
  if ([token, user ?? pass, creds].filter(Boolean).length > 1) {
    throw invalid("give one NATS auth: --nats-token, --nats-user/--nats-password or --nats-creds");
  }
  if ((user === undefined) !== (pass === undefined)) {
    throw invalid("--nats-user and --nats-password go together");
  }
  const auth = token
    ? { token }
    : user
    ? { user, pass: pass! }
    : creds
    ? { credsFile: creds }
    : undefined;
  const ca = flags.natsCa ?? env("PRISN_NATS_CA");
  const cert = flags.natsCert ?? env("PRISN_NATS_CERT");
  const key = flags.natsKey ?? env("PRISN_NATS_KEY");
  const tls = ca || cert || key ? { ca, cert, key } : undefined;
  const replicas = parsePositive(
    flags.natsReplicas ?? env("PRISN_NATS_REPLICAS"),
    "--nats-replicas",
  );
  const { connectCluster, ensureResources } = await import("../cluster/mod.ts");
  const { clusterBackends } = await import("../cluster/backends.ts");
  const conn = await connectCluster({
    servers,
    cluster: flags.cluster ?? env("PRISN_CLUSTER"),
    auth,
    tls,
    replicas,
    allowUnsafeCas: flags.natsAllowUnsafeCas ?? env("PRISN_NATS_ALLOW_UNSAFE_CAS") === "1",
  });
  try {
    for (const w of conn.warnings) log(w);
    await ensureResources(conn);
    const nodeAddress = address ?? primaryAddress();
    const backends = await clusterBackends(conn, {
      node,
      address: nodeAddress,
      version: VERSION,
      tags,
      log,
      localLogs: ({ paths }) => new FileLogs(paths),
    });
    return {
      backends,
      address: nodeAddress,
      mode: `cluster "${conn.names.cluster}" over NATS ${conn.serverVersion} (${
        servers.join(",")
      })`,
    };
  } catch (e) {
    await conn.close();
    throw e;
  }
}
