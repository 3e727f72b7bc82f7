/**
 * connectCluster() against real nats-servers: every way a NATS server can be unusable gives one
 * line (and nothing left open), quickly; a clustered 2.9.10 is refused for its unsafe
 * compare-and-set unless allowed, and then comes with a warning; a 2.10 cluster is fine.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { casSafe, connectCluster } from "../../cluster/connection.ts";
import type { ClusterConnection, ClusterOptions } from "../../cluster/types.ts";
import { freePort, isPrisnError, within } from "../_helpers.ts";
import {
  nats210Bin,
  type NatsServer,
  natsServerBin,
  NO_NATS,
  startNats,
  startNatsCluster,
} from "./_nats.ts";

if (NO_NATS) console.log(`SKIP NATS connection tests: ${NO_NATS}`);
const NO_NATS_210 = nats210Bin() ? undefined : "no nats-server 2.10 (run tools/nats_2_10.sh)";
if (!NO_NATS && NO_NATS_210) console.log(`SKIP 2.10 cluster connection test: ${NO_NATS_210}`);

/** The system nats-server's version (Debian bookworm: 2.9.10). */
const SYSTEM_VERSION = await (async () => {
  const bin = natsServerBin();
  if (!bin) return undefined;
  const out = await new Deno.Command(bin, { args: ["--version"], stdout: "piped" }).output();
  return /v(\d+\.\d+\.\d+)/.exec(new TextDecoder().decode(out.stdout))?.[1];
})();
const NO_OLD_NATS = NO_NATS ??
  (SYSTEM_VERSION && !casSafe(SYSTEM_VERSION)
    ? undefined
    : `the system nats-server (${SYSTEM_VERSION}) is not older than 2.9.21`);
if (!NO_NATS && NO_OLD_NATS) console.log(`SKIP unsafe compare-and-set test: ${NO_OLD_NATS}`);

/** Runs `fn` on a connection, closing it even when `fn` fails. */
async function withConnection(
  options: ClusterOptions,
  fn: (conn: ClusterConnection) => Promise<void> | void,
): Promise<void> {
  const conn = await connectCluster(options);
  try {
    await fn(conn);
  } finally {
    await conn.close();
  }
}

async function stopAll(servers: NatsServer[] | undefined): Promise<void> {
  await Promise.all((servers ?? []).map((s) => s.stop()));
}

Deno.test("casSafe() holds from nats-server 2.9.21 on", () => {
  for (const v of ["2.9.21", "2.9.22", "2.10.0", "v2.10.27", "2.11.0-beta.1", "3.0.0"]) {
    assert.equal(casSafe(v), true, v);
  }
  for (const v of ["2.9.10", "2.9.20", "2.8.4", "1.4.1", "unknown", ""]) {
    assert.equal(casSafe(v), false, v);
  }
});

Deno.test("connectCluster() refuses bad options with one line before dialing", async () => {
  const cases: [ClusterOptions, RegExp][] = [
    [{ servers: [] }, /^no NATS server given: pass --nats/],
    [
      { servers: ["nats://127.0.0.1:1"], cluster: "Bad_Name" },
      /^cluster name "Bad_Name" is not valid/,
    ],
    [
      { servers: ["nats://127.0.0.1:1"], replicas: 7 },
      /^--nats-replicas 7 is not valid: use 1 to 5/,
    ],
    [{ servers: ["nats://127.0.0.1:1"], auth: { token: "" } }, /the NATS token is empty/],
    [
      { servers: ["nats://127.0.0.1:1"], auth: { credsFile: "/nonexistent/x.creds" } },
      /^cannot read the NATS credentials file \/nonexistent\/x\.creds: /,
    ],
    [
      { servers: ["nats://127.0.0.1:1"], tls: { cert: "/nonexistent/c.pem" } },
      /needs both a client certificate and its key/,
    ],
  ];
  for (const [options, message] of cases) {
    await assert.rejects(connectCluster(options), isPrisnError("INVALID", message));
  }
});

Deno.test("connectCluster() to a closed port fails at once with one line", async () => {
  const port = freePort();
  const started = Date.now();
  await assert.rejects(
    within(connectCluster({ servers: [`nats://127.0.0.1:${port}`] }), 5_000, "connect"),
    isPrisnError(
      "UNAVAILABLE",
      `cannot reach NATS at nats://127.0.0.1:${port} (connection refused): check the --nats address and that nats-server is running`,
    ),
  );
  assert.ok(Date.now() - started < 2_000, `took ${Date.now() - started} ms`);
});

Deno.test("connectCluster() to a server that never answers gives up after connectTimeoutMs", async () => {
  // Accepts TCP connections and says nothing: the NATS handshake never comes.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  const held: Deno.Conn[] = [];
  const accepting = (async () => {
    for await (const c of listener) held.push(c);
  })().catch(() => {});
  try {
    const started = Date.now();
    await assert.rejects(
      within(
        connectCluster({ servers: [`nats://127.0.0.1:${port}`], connectTimeoutMs: 500 }),
        5_000,
        "connect",
      ),
      isPrisnError("UNAVAILABLE", /^cannot reach NATS at .* \(no answer within 0\.5 s\)/),
    );
    assert.ok(Date.now() - started < 2_000, `took ${Date.now() - started} ms`);
  } finally {
    listener.close();
    for (const c of held) {
      try {
        c.close();
      } catch { /* closed by the client */ }
    }
    await accepting;
  }
});

Deno.test({
  name: "connectCluster() to a server without JetStream says JetStream is not enabled",
  ignore: !!NO_NATS,
  fn: async () => {
    const s = await startNats({ jetstream: false });
    try {
      await assert.rejects(
        connectCluster({ servers: [s.url] }),
        isPrisnError(
          "UNAVAILABLE",
          `JetStream not enabled on NATS at ${s.url}: start nats-server with -js (or enable JetStream for this account)`,
        ),
      );
    } finally {
      await s.stop();
    }
  },
});

Deno.test({
  name:
    "connectCluster() with a missing or wrong token is refused with one line, the right one connects",
  ignore: !!NO_NATS,
  fn: async () => {
    const s = await startNats({ args: ["--auth", "s3cret"] });
    try {
      await assert.rejects(
        connectCluster({ servers: [s.url] }),
        isPrisnError(
          "INVALID",
          `NATS at ${s.url} requires credentials (authorization violation): pass a NATS token, user and password, or .creds file`,
        ),
      );
      // Several times: a refused connect used to crash the process now and then (an ECONNRESET
      // 'error' event after nats.js had removed the socket's listeners).
      for (let i = 0; i < 8; i++) {
        await assert.rejects(
          connectCluster({ servers: [s.url], auth: { token: "wrong" } }),
          isPrisnError(
            "INVALID",
            `NATS at ${s.url} refused prisn's credentials (authorization violation): check the NATS token, user and password, or .creds file`,
          ),
        );
      }
      await withConnection({ servers: [s.url], auth: { token: "s3cret" } }, (conn) => {
        assert.equal(conn.serverVersion, SYSTEM_VERSION);
        assert.equal(conn.clustered, false);
        assert.deepEqual(conn.warnings, []);
      });
    } finally {
      await s.stop();
    }
  },
});

Deno.test({
  name: "connectCluster() with user and password: wrong password refused, right one connects",
  ignore: !!NO_NATS,
  fn: async () => {
    const s = await startNats({ args: ["--user", "prisn", "--pass", "pw1"] });
    try {
      await assert.rejects(
        connectCluster({ servers: [s.url], auth: { user: "prisn", pass: "nope" } }),
        isPrisnError("INVALID", /refused prisn's credentials \(authorization violation\)/),
      );
      await withConnection({ servers: [s.url], auth: { user: "prisn", pass: "pw1" } }, () => {});
    } finally {
      await s.stop();
    }
  },
});

Deno.test({
  name: "connectCluster() over mutual TLS: connects with the CA and a client certificate",
  ignore: !!NO_NATS,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "prisn-tls-" });
    let s: NatsServer | undefined;
    try {
      const pki = await makePki(dir);
      s = await startNats({
        args: [
          "--tls",
          "--tlscert",
          pki.serverCert,
          "--tlskey",
          pki.serverKey,
          "--tlsverify",
          "--tlscacert",
          pki.ca,
        ],
      });
      const url = s.url;
      await assert.rejects(
        connectCluster({ servers: [url] }),
        isPrisnError(
          "INVALID",
          new RegExp(
            `^TLS to NATS at ${url} failed \\(unable to verify the first certificate\\): give the CA`,
          ),
        ),
      );
      await withConnection(
        { servers: [url], tls: { ca: pki.ca, cert: pki.clientCert, key: pki.clientKey } },
        (conn) => assert.equal(conn.clustered, false),
      );
    } finally {
      await s?.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

/** A CA, a server certificate for 127.0.0.1 and a client certificate, made with openssl. */
async function makePki(dir: string) {
  const f = (name: string) => join(dir, name);
  const run = async (...args: string[]) => {
    const out = await new Deno.Command("openssl", { args, stdout: "null", stderr: "piped" })
      .output();
    if (!out.success) {
      throw new Error(`openssl ${args[0]}: ${new TextDecoder().decode(out.stderr)}`);
    }
  };
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  await run(
    "req",
    "-x509",
    ...ec,
    "-keyout",
    f("ca.key"),
    "-out",
    f("ca.pem"),
    "-days",
    "1",
    "-subj",
    "/CN=prisn test CA",
  );
  await Deno.writeTextFile(f("server.ext"), "subjectAltName=IP:127.0.0.1\n");
  for (const who of ["server", "client"]) {
    await run(
      "req",
      ...ec,
      "-keyout",
      f(`${who}.key`),
      "-out",
      f(`${who}.csr`),
      "-subj",
      `/CN=${who}`,
    );
    await run(
      "x509",
      "-req",
      "-in",
      f(`${who}.csr`),
      "-CA",
      f("ca.pem"),
      "-CAkey",
      f("ca.key"),
      "-CAcreateserial",
      "-out",
      f(`${who}.pem`),
      "-days",
      "1",
      ...(who === "server" ? ["-extfile", f("server.ext")] : []),
    );
  }
  return {
    ca: f("ca.pem"),
    serverCert: f("server.pem"),
    serverKey: f("server.key"),
    clientCert: f("client.pem"),
    clientKey: f("client.key"),
  };
}

Deno.test({
  name: "connectCluster() with replicas 3 on a single server says it needs a clustered NATS",
  ignore: !!NO_NATS,
  fn: async () => {
    const s = await startNats();
    try {
      await assert.rejects(
        connectCluster({ servers: [s.url], replicas: 3 }),
        isPrisnError(
          "INVALID",
          `--nats-replicas 3 needs a clustered NATS, but NATS at ${s.url} is a single server: use --nats-replicas 1`,
        ),
      );
    } finally {
      await s.stop();
    }
  },
});

Deno.test({
  name:
    "connectCluster() refuses a clustered NATS 2.9.10 naming the bug, accepts it with allowUnsafeCas and a warning",
  ignore: !!NO_OLD_NATS,
  fn: async () => {
    const servers = await startNatsCluster({ bin: natsServerBin() });
    try {
      const urls = servers!.map((s) => s.url);
      await assert.rejects(
        connectCluster({ servers: urls }),
        isPrisnError(
          "UNAVAILABLE",
          `NATS ${SYSTEM_VERSION} at ${
            urls.join(",")
          } is clustered and older than 2.9.21: its compare-and-set is unsafe (nats-server #4320), so two nodes could both win the leader lease or the same record write; upgrade NATS to 2.9.21 or later, or pass --nats-allow-unsafe-cas to run anyway`,
        ),
      );
      await withConnection({ servers: urls, allowUnsafeCas: true, replicas: 3 }, (conn) => {
        assert.equal(conn.serverVersion, SYSTEM_VERSION);
        assert.equal(conn.clustered, true);
        assert.equal(conn.replicas, 3);
        assert.equal(conn.warnings.length, 1);
        assert.match(conn.warnings[0], /^WARNING: NATS 2\.9\.\d+ at .* \(nats-server #4320\)/);
        assert.match(conn.warnings[0], /--nats-allow-unsafe-cas/);
      });
    } finally {
      await stopAll(servers);
    }
  },
});

Deno.test({
  name: "connectCluster() accepts a clustered NATS 2.10 without warnings",
  ignore: !!NO_NATS_210,
  fn: async () => {
    const servers = await startNatsCluster();
    try {
      await withConnection({ servers: [servers![1].url], replicas: 3 }, (conn) => {
        assert.match(conn.serverVersion, /^2\.10\./);
        assert.equal(conn.clustered, true);
        assert.deepEqual(conn.warnings, []);
      });
    } finally {
      await stopAll(servers);
    }
  },
});

Deno.test({
  name: "ClusterConnection.close() drains once and may be called again",
  ignore: !!NO_NATS,
  fn: async () => {
    const s = await startNats();
    try {
      const conn = await connectCluster({ servers: [s.url], cluster: "closing" });
      assert.equal(conn.names.cluster, "closing");
      await Promise.all([conn.close(), conn.close()]);
      assert.equal(conn.nc.isClosed(), true);
      await conn.close();
    } finally {
      await s.stop();
    }
  },
});
