import assert from "node:assert/strict";
import { join } from "node:path";
import { assertOneLineError, freePort, TestHome, waitFor } from "../_helpers.ts";

const root = new URL("../..", import.meta.url).pathname;

/** Starts `prisn agent run --listen 127.0.0.1:PORT …` for `t`'s home; `t.close()` stops it. */
async function listeningAgent(t: TestHome, ...extra: string[]): Promise<string> {
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
  const base = `http://127.0.0.1:${port}`;
  await waitFor(async () => {
    const res = await fetch(`${base}/v1/ping`).catch(() => undefined);
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
