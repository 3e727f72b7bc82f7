import assert from "node:assert/strict";
import { join } from "node:path";
import { assertOneLineError, freePort, TestHome, waitFor, within } from "../_helpers.ts";
import { selfSignedCa } from "../_tls.ts";

const root = new URL("../..", import.meta.url).pathname;

/** Starts `prisn agent run --listen 127.0.0.1:PORT …` for `t`'s home; `t.close()` stops it. */
async function listeningAgent(
  t: TestHome,
  extra: string[] = [],
  probe: Deno.HttpClient | undefined = undefined,
  host = "127.0.0.1",
): Promise<string> {
  const port = freePort();
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "--quiet",
      join(root, "main.ts"),
      "agent",
      "run",
      "--listen",
      `127.0.0.1:${port}`,
      ...extra,
    ],
    env: { ...t.env, PRISN_HOME: t.home },
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  child.unref();
  const base = `${probe ? "https" : "http"}://${host}:${port}`;
  await waitFor(async () => {
    const res = await fetch(`${base}/v1/ping`, { client: probe }).catch(() => undefined);
    await res?.body?.cancel();
    return res?.status === 401;
  }, { what: "the agent's TCP API", timeoutMs: 30_000 });
  return base;
}

Deno.test("prisn token create prints the token alone on its last line; ls and revoke manage them over the socket", async () => {
  const t = new TestHome();
  try {
    const base = await listeningAgent(t);
    const created = await t.ok("token", "create", "laptop", "--read-only");
    const token = created.trim().split("\n").pop()!;
    assert.match(token, /^prisn_[A-Za-z0-9_-]{43}$/);
    const ls = await t.ok("token", "ls");
    assert.match(ls, /^laptop\s+read-only\s/m);
    assert.ok(!ls.includes(token));
    const res = await fetch(`${base}/v1/deployments`, {
      headers: { authorization: `Bearer ${token}` },
    });
    assert.equal(res.status, 200);
    await res.body?.cancel();
    assertOneLineError(
      await t.cli("token", "create", "laptop"),
      /^prisn: a token named "laptop" exists/,
      "a second laptop",
    );
    await t.ok("token", "revoke", "laptop");
    assertOneLineError(
      await t.cli("token", "revoke", "laptop"),
      /^prisn: token "laptop" not found/,
      "revoked twice",
    );
    const gone = await fetch(`${base}/v1/deployments`, {
      headers: { authorization: `Bearer ${token}` },
    });
    assert.equal(gone.status, 401);
    await gone.body?.cancel();
  } finally {
    await t.close();
  }
});

Deno.test("agent run refuses plain HTTP beyond loopback and half a TLS pair, in one line, starting nothing", async () => {
  const t = new TestHome();
  try {
    assertOneLineError(
      await t.cli("agent", "run", "--listen", `0.0.0.0:${freePort()}`),
      /^prisn: --listen 0\.0\.0\.0:\d+ without --tls-cert and --tls-key would send tokens in clear: give both, or listen on 127\.0\.0\.1$/,
      "plain HTTP on every address",
    );
    assertOneLineError(
      await t.cli(
        "agent",
        "run",
        "--listen",
        `127.0.0.1:${freePort()}`,
        "--tls-cert",
        "/nonexistent",
      ),
      /^prisn: give --tls-cert and --tls-key together$/,
      "a certificate without a key",
    );
    assert.equal(t.agentPid(), undefined, "no agent started");
  } finally {
    await t.close();
  }
});

/** A "laptop": its own PRISN_HOME (no agent in it) and config folder, talking to remote agents. */
function laptop(): TestHome {
  const t = new TestHome();
  t.env.XDG_CONFIG_HOME = join(t.dir, "config");
  return t;
}

/** Runs `prisn logs … -f` on `t` until it printed `lines` lines, then interrupts it. */
async function followLines(t: TestHome, lines: number, ...args: string[]): Promise<string[]> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--quiet", join(root, "main.ts"), "logs", ...args, "-f"],
    env: { ...t.env, PRISN_HOME: t.home },
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const seen: string[] = [];
  try {
    await within(
      (async () => {
        let buffer = "";
        for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
          buffer += chunk;
          const parts = buffer.split("\n");
          buffer = parts.pop()!;
          seen.push(...parts);
          if (seen.length >= lines) return;
        }
      })(),
      30_000,
      "logs -f",
    );
  } finally {
    child.kill("SIGTERM");
    await child.status;
  }
  return seen;
}

Deno.test("a laptop with a context deploys a folder, reads, follows logs, rolls back and deletes on a remote agent; no token or a revoked one changes nothing", async () => {
  const server = new TestHome();
  const t = laptop();
  try {
    const base = await listeningAgent(server);
    const token = (await server.ok("token", "create", "laptop")).trim().split("\n").pop()!;
    const dir = t.project("chatty", {
      "main.py":
        "import time\nfor i in range(600):\n    print('line', i, flush=True); time.sleep(0.05)\n",
    });

    assertOneLineError(
      await t.cli("--server", base, "ls"),
      /^prisn: the agent needs a valid API token/,
      "no token",
    );
    assertOneLineError(
      await t.cli("--server", base, "--token", "prisn_nope", "deploy", dir),
      /^prisn: the agent needs a valid API token/,
      "a wrong token",
    );
    assert.deepEqual(await server.json("ls"), [], "the refused deploy changed nothing");

    assert.match(
      await t.ok("context", "add", "dev", "--server", base, "--token", token),
      /^context dev added \(http:\/\/127\.0\.0\.1:\d+\), in use$/m,
    );
    const file = join(t.dir, "config", "prisn", "contexts.toml");
    assert.equal((await Deno.stat(file)).mode! & 0o777, 0o600);
    assert.match(
      await t.ok("context", "ls"),
      /^\*\s+dev\s+http:\/\/127\.0\.0\.1:\d+\s+default\s+-$/m,
    );
    assert.ok(!(await t.ok("context", "ls", "-o", "json")).includes(token), "ls shows no token");

    const out = await t.ok("deploy", dir, "--name", "chatty");
    for (const step of ["Package", "Version", "Store", "Record", "Prepare", "Activate"]) {
      assert.match(
        out,
        new RegExp(`^${step}\\s`, "m"),
        `the remote deploy streams its ${step} step`,
      );
    }
    const first = (await t.json<{ version: string }>("get", "chatty")).version;
    assert.match(await t.ok("ls"), /^chatty\s+job\s/m);
    assert.match(await t.ok("status"), /^Talking to context dev \(http:\/\/127\.0\.0\.1:\d+\)$/m);
    assert.equal(
      (await server.json<{ version: string }>("get", "chatty")).version,
      first,
      "the server's own CLI sees the same version",
    );
    const lines = await followLines(t, 5, "chatty");
    assert.ok(lines.every((l) => /line \d+/.test(l)), lines.join("\n"));

    await Deno.writeTextFile(join(dir, "extra.txt"), "second version\n");
    assert.match(await t.ok("deploy", dir, "--name", "chatty"), /deployed/);
    assert.notEqual((await t.json<{ version: string }>("get", "chatty")).version, first);
    await t.ok("rollback", "chatty");
    assert.equal((await t.json<{ version: string }>("get", "chatty")).version, first);

    await server.ok("token", "revoke", "laptop");
    assertOneLineError(
      await t.cli("delete", "chatty"),
      /^prisn: the agent needs a valid API token/,
      "a revoked token",
    );
    assert.equal(
      (await server.json<unknown[]>("ls")).length,
      1,
      "the refused delete changed nothing",
    );
    const again = (await server.ok("token", "create", "laptop2")).trim().split("\n").pop()!;
    await t.ok("delete", "chatty", "--token", again);
    assert.deepEqual(await server.json("ls"), []);
    await assert.rejects(
      Deno.stat(join(t.home, "prisn.sock")),
      "the laptop started no local agent",
    );

    await t.ok("context", "rm", "dev");
    assert.match(await t.ok("context", "ls"), /^\s*NAME\s+SERVER\s+NAMESPACE\s+CA\s*$/);
    assertOneLineError(
      await t.cli("context", "use", "dev"),
      /^prisn: context "dev" not found in .*contexts\.toml: see prisn context ls$/,
      "a removed context",
    );
  } finally {
    await t.close();
    await server.close();
  }
});

Deno.test("a namespace-scoped token through the CLI: its namespaces only; get, logs and delete elsewhere read as not found", async () => {
  const server = new TestHome();
  const t = laptop();
  try {
    const base = await listeningAgent(server);
    const dir = t.project("app", { "main.sh": "#!/bin/bash\necho hello from $PRISN_NAMESPACE\n" });
    await server.ok("deploy", dir, "--name", "chatty", "-n", "team-b");
    const created = await server.ok("token", "create", "team-a-ci", "--namespace", "team-a");
    assert.match(created, /^token team-a-ci created for namespace\(s\) team-a; /m);
    const token = created.trim().split("\n").pop()!;
    assert.match(await server.ok("token", "ls"), /^team-a-ci\s+read-write\s+team-a\s/m);
    assert.match(await server.ok("token", "ls"), /^admin\s+admin\s+\*\s/m);

    // A context with a namespace: commands without -n address it.
    await t.ok("context", "add", "ci", "--server", base, "--token", token, "-n", "team-a");
    assert.match(await t.ok("context", "ls"), /^\*\s+ci\s+\S+\s+team-a\s/m);
    await t.ok("deploy", dir, "--name", "mine");
    assert.equal((await t.json<{ namespace: string }>("get", "mine")).namespace, "team-a");
    assert.match(await t.ok("ls"), /^mine\s+job\s/m);
    assert.deepEqual(
      (await t.json<{ namespace: string; name: string }[]>("ls", "-A")).map((d) => d.name),
      ["mine"],
      "ls -A: its namespaces only",
    );

    assertOneLineError(
      await t.cli("ls", "-n", "team-b"),
      /^prisn: token "team-a-ci" may not reach namespace "team-b" \(it reaches team-a\)$/,
      "ls of another namespace",
    );
    assertOneLineError(
      await t.cli("deploy", dir, "--name", "chatty", "-n", "team-b"),
      /^prisn: token "team-a-ci" may not reach namespace "team-b"/,
      "deploy into another namespace",
    );
    const missing =
      'prisn: deployment "chatty" not found in namespace "team-b": see prisn ls -n team-b';
    for (const args of [["get", "chatty"], ["logs", "chatty"], ["delete", "chatty"]]) {
      const r = await t.cli(...args, "-n", "team-b");
      assertOneLineError(r, /not found/, args.join(" "));
      assert.equal(r.stderr.trim(), missing, `${args[0]}: as if it did not exist`);
    }
    assert.equal(
      (await server.json<{ namespace: string }>("get", "chatty", "-n", "team-b")).namespace,
      "team-b",
      "team-b's deployment is still there",
    );
  } finally {
    await t.close();
    await server.close();
  }
});

Deno.test("an upload over the agent's --max-upload is refused with a clear error and deploys nothing", async () => {
  const server = new TestHome();
  const t = laptop();
  try {
    const base = await listeningAgent(server, ["--max-upload", "1Ki"]);
    const admin = (await Deno.readTextFile(join(server.home, "admin.token"))).trim();
    const random = crypto.getRandomValues(new Uint8Array(4096));
    const dir = t.project("big", { "main.sh": "#!/bin/bash\necho hi\n" });
    await Deno.writeFile(join(dir, "blob.bin"), random);
    const r = await t.cli("--server", base, "--token", admin, "deploy", dir);
    assertOneLineError(
      r,
      /^prisn: the upload is 4\.\d KiB, over this agent's cap of 1\.0 KiB: leave files out with \.prisnignore, or raise prisn agent run --max-upload$/,
      "oversize upload",
    );
    assert.deepEqual(await server.json("ls"), []);
    assert.deepEqual(
      [...Deno.readDirSync(join(server.home, "state"))].filter((e) => e.name.startsWith("upload-")),
      [],
    );
    // A single file goes up too, named and run as a local deploy of it would be.
    const file = join(
      t.project("one", { "nightly_report.sh": "#!/bin/bash\necho report\n" }),
      "nightly_report.sh",
    );
    t.env.PRISN_SERVER = base; // the environment's server and token, as --server and --token
    t.env.PRISN_TOKEN = admin;
    await t.ok("deploy", file);
    assert.match(await t.ok("status"), new RegExp(`^Talking to server ${base}$`, "m"));
    const d = await server.json<{ entrypoint: string; runtime: string }>("get", "nightly-report");
    assert.deepEqual([d.entrypoint, d.runtime], ["nightly_report.sh", "bash"]);
    t.env.PRISN_TOKEN = "prisn_wrong";
    assertOneLineError(await t.cli("ls"), /needs a valid API token/, "PRISN_TOKEN wrong");
  } finally {
    await t.close();
    await server.close();
  }
});

Deno.test("a context with --ca, or PRISN_CA, reaches an HTTPS agent whose certificate that CA signed", async () => {
  const server = new TestHome();
  const t = laptop();
  try {
    if (!await hasOpenssl()) {
      console.log("skipped: openssl is not installed, so no certificate can be made for the test");
      return;
    }
    const tls = await selfSignedCa(server.dir);
    const probe = Deno.createHttpClient({ caCerts: [tls.ca] });
    let base: string;
    try {
      base = await listeningAgent(
        server,
        ["--tls-cert", join(server.dir, "server.pem"), "--tls-key", join(server.dir, "server.key")],
        probe,
        "localhost",
      );
    } finally {
      probe.close();
    }
    const admin = (await Deno.readTextFile(join(server.home, "admin.token"))).trim();
    assertOneLineError(
      await t.cli("--server", base, "--token", admin, "ls"),
      /^prisn: the prisn agent at https:\/\/localhost:\d+ did not answer \(.*certificate/i,
      "an unknown CA",
    );
    await t.ok(
      "context",
      "add",
      "prod",
      "--server",
      base,
      "--token",
      admin,
      "--ca",
      join(server.dir, "ca.pem"),
    );
    assert.match(await t.ok("--context", "prod", "ls"), /^No deployments/);
    // PRISN_CA is --ca for PRISN_SERVER/PRISN_TOKEN (and --server), without a context.
    await t.ok("context", "rm", "prod");
    Object.assign(t.env, { PRISN_SERVER: base, PRISN_TOKEN: admin });
    assertOneLineError(await t.cli("ls"), /certificate/i, "PRISN_SERVER without PRISN_CA");
    t.env.PRISN_CA = join(server.dir, "ca.pem");
    assert.match(await t.ok("ls"), /^No deployments/);
    assert.match(await t.ok("status"), new RegExp(`^Talking to server ${base}$`, "m"));
    t.env.PRISN_CA = join(server.dir, "missing.pem");
    assertOneLineError(
      await t.cli("ls"),
      /^prisn: PRISN_CA names \S+missing\.pem, which does not exist: give the CA file that signed the agent's certificate$/,
      "a missing PRISN_CA file",
    );
  } finally {
    await t.close();
    await server.close();
  }
});

async function hasOpenssl(): Promise<boolean> {
  return await new Deno.Command("openssl", { args: ["version"], stdout: "null", stderr: "null" })
    .output().then((o) => o.success, () => false);
}

Deno.test("agent install --print shows the unit with the flags given; install refuses bad flags, and where systemd is not running, in one line writing nothing", async () => {
  const t = new TestHome();
  try {
    const unit = await t.ok("agent", "install", "--print", "--", "--listen", "127.0.0.1:7070");
    assert.match(unit, /^ExecStart=.* agent run --listen 127\.0\.0\.1:7070$/m);
    assert.match(unit, new RegExp(`^Environment=PRISN_HOME=${t.home}$`, "m"));
    assertOneLineError(
      await t.cli("agent", "install", "--print", "--", "--lisen", "x"),
      /^prisn: --lisen is not a flag of prisn agent run: see prisn agent run --help$/,
      "a mistyped flag",
    );
    if (await Deno.stat("/run/systemd/system").then(() => true, () => false)) {
      console.log("skipped the install itself: systemd runs here and the test installs no unit");
      return;
    }
    console.log("systemd is not running here: install is checked to refuse, not to enable");
    t.env.XDG_CONFIG_HOME = join(t.dir, "config"); // where a --user unit would go
    assertOneLineError(
      await t.cli("agent", "install", "--user", "--", "--listen", "127.0.0.1:7070"),
      /^prisn: systemd is not running on this machine \(no \/run\/systemd\/system\)/,
      "install without systemd",
    );
    await assert.rejects(Deno.stat(join(t.dir, "config", "systemd")), "no unit written");
  } finally {
    await t.close();
  }
});
