import assert from "node:assert/strict";
import { join } from "node:path";
import { paths } from "../../core/paths.ts";
import { Agent } from "../../runtime/agent.ts";
import { AgentClient } from "../../runtime/client.ts";
import { isLoopback, type ListenOptions, parseListen } from "../../runtime/listen.ts";
import { TokenStore } from "../../runtime/tokens.ts";
import { assertInvalid, freePort, hasCommand, scriptProject, waitFor } from "../_helpers.ts";
import { selfSignedCa } from "../_tls.ts";

/** A real agent with a TCP API on loopback; stops it and removes its home afterwards. */
async function withListeningAgent(
  fn: (
    a: { agent: Agent; base: string; admin: string; local: AgentClient; dir: string },
  ) => Promise<void>,
  options: { tls?: ListenOptions["tls"]; dir?: string } = {},
): Promise<void> {
  const dir = options.dir ?? await Deno.makeTempDir({ prefix: "prisn-listen-test-" });
  const p = paths(join(dir, "home"));
  const port = freePort();
  const lines: string[] = [];
  const agent = await Agent.start({
    paths: p,
    log: (line) => lines.push(line),
    listen: { hostname: "127.0.0.1", port, tls: options.tls },
  });
  const local = new AgentClient(p);
  try {
    const admin = (await Deno.readTextFile(join(p.home, "admin.token"))).trim();
    const shown = lines.filter((l) => l.includes(admin));
    assert.equal(shown.length, 1, "the admin token is shown once, at the first start");
    const base = `${options.tls ? "https://localhost" : "http://127.0.0.1"}:${port}`;
    await fn({ agent, base, admin, local, dir });
  } finally {
    local.close();
    await agent.stop();
    await Deno.remove(dir, { recursive: true });
  }
}

function get(base: string, path: string, token?: string, init: RequestInit = {}) {
  return fetch(`${base}${path}`, {
    ...init,
    headers: token === undefined ? {} : { authorization: `Bearer ${token}` },
  });
}

Deno.test("parseListen() takes HOST:PORT and refuses plain HTTP beyond loopback in one line", () => {
  assert.deepEqual(parseListen("127.0.0.1:7070", false), { hostname: "127.0.0.1", port: 7070 });
  assert.deepEqual(parseListen("[::1]:7070", false), { hostname: "::1", port: 7070 });
  assert.deepEqual(parseListen("0.0.0.0:8443", true), { hostname: "0.0.0.0", port: 8443 });
  assertInvalid(
    () => parseListen("0.0.0.0:8443", false),
    /^--listen 0\.0\.0\.0:8443 without --tls-cert and --tls-key would send tokens in clear/,
  );
  assertInvalid(() => parseListen("10.0.0.5:80", false), /in clear/);
  assertInvalid(() => parseListen("127.0.0.1", false), /is not valid: give HOST:PORT/);
  assertInvalid(() => parseListen("127.0.0.1:99999", false), /is not valid/);
  assert.ok(isLoopback("127.3.4.5") && isLoopback("localhost") && !isLoopback("127.0.0.1.evil"));
});

Deno.test("every TCP request needs a token: missing, wrong or revoked answer the same 401 and change nothing", async () => {
  await withListeningAgent(async ({ base, admin, local }) => {
    const bodies = new Set<string>();
    for (
      const [path, token] of [
        ["/v1/deployments", undefined],
        ["/v1/deployments", "prisn_wrong"],
        ["/v1/deployments/nothing-here", "prisn_wrong"],
        ["/v1/no-such-path", undefined],
      ] as const
    ) {
      const res = await get(base, path, token);
      assert.equal(res.status, 401, `${path} with ${token}`);
      assert.match(res.headers.get("www-authenticate") ?? "", /^Bearer/);
      bodies.add(await res.text());
    }
    assert.equal(bodies.size, 1, "one body, whatever the path: it says nothing about what exists");
    const del = await get(base, "/v1/tokens/admin", undefined, { method: "DELETE" });
    assert.equal(del.status, 401);
    await del.body?.cancel();

    const ok = await get(base, "/v1/deployments", admin);
    assert.equal(ok.status, 200);
    assert.deepEqual(await ok.json(), []);

    const { token } = await local.createToken({ name: "laptop" });
    const before = await get(base, "/v1/status", token);
    assert.equal(before.status, 200);
    await before.body?.cancel();
    await local.revokeToken("laptop");
    const after = await get(base, "/v1/status", token);
    assert.equal(after.status, 401, "a revoked token is refused at once");
    assert.equal(await after.text(), [...bodies][0]);
    assert.deepEqual((await local.tokens()).map((t) => t.name), ["admin"]);
  });
});

Deno.test("a read-only token reads but changes nothing; only the admin token manages tokens", async () => {
  await withListeningAgent(async ({ base, admin, local }) => {
    const ro = (await local.createToken({ name: "viewer", readOnly: true })).token;
    const rw = (await local.createToken({ name: "ci" })).token;
    const read = await get(base, "/v1/deployments", ro);
    assert.equal(read.status, 200);
    await read.body?.cancel();
    const gc = await get(base, "/v1/gc", ro, { method: "POST", body: "{}" });
    assert.equal(gc.status, 403);
    assert.match((await gc.json()).error.message, /^token "viewer" is read-only/);
    for (const token of [ro, rw]) {
      const res = await get(base, "/v1/tokens", token, { method: "POST", body: '{"name":"x"}' });
      assert.equal(res.status, 403);
      await res.body?.cancel();
      const stop = await get(base, "/v1/agent/stop", token, { method: "POST" });
      assert.equal(stop.status, 403);
      await stop.body?.cancel();
    }
    assert.deepEqual((await local.tokens()).map((t) => t.name), ["admin", "viewer", "ci"]);
    const listed = await get(base, "/v1/tokens", admin);
    assert.equal(listed.status, 200);
    const text = await listed.text();
    assert.ok(
      !text.includes(ro) && !text.includes("sha256"),
      "ls shows neither secrets nor hashes",
    );
  });
});

Deno.test("tokens are stored hashed in a 0600 file and survive a restart; the admin token is not shown again", async () => {
  const dir = await Deno.makeTempDir({ prefix: "prisn-tokens-test-" });
  try {
    const home = join(dir, "home");
    await Deno.mkdir(home);
    const store = await TokenStore.open(home);
    const admin = await store.ensureAdmin();
    assert.ok(admin);
    assert.equal(await store.ensureAdmin(), undefined, "made once");
    const secret = await store.create("deploy-bot", { readOnly: true });
    const file = await Deno.readTextFile(store.file);
    assert.ok(!file.includes(secret) && !file.includes(admin), "no secret in the token file");
    assert.equal((await Deno.stat(store.file)).mode! & 0o777, 0o600);
    assert.equal((await Deno.stat(store.adminFile)).mode! & 0o777, 0o600);
    const again = await TokenStore.open(home);
    assert.deepEqual(again.verify(secret), { name: "deploy-bot", readOnly: true, admin: false });
    assert.equal(again.verify(admin)?.admin, true);
    assert.equal(again.verify(secret + "x"), undefined);
    assert.equal(await again.ensureAdmin(), undefined);
    await assert.rejects(again.create("deploy-bot"), /a token named "deploy-bot" exists/);
    await assert.rejects(again.create("Bad Name"), /name "Bad Name" is not valid/);
    await assert.rejects(again.revoke("admin"), /cannot be revoked/);
    await assert.rejects(again.revoke("nobody"), /token "nobody" not found/);
    const scoped = await again.create("team-ci", { namespaces: ["team-b", "team-a", "team-b"] });
    assert.deepEqual((await TokenStore.open(home)).verify(scoped), {
      name: "team-ci",
      readOnly: false,
      admin: false,
      namespaces: ["team-a", "team-b"],
    });
    await assert.rejects(
      again.create("bad-ci", { namespaces: ["Team_A"] }),
      /namespace "Team_A" is not valid/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("with --tls-cert/--tls-key the TCP API is HTTPS, trusted through the CA that signed it", async (t) => {
  if (!await hasCommand("openssl", ["version"])) {
    console.log("skipped: openssl is not installed, so no certificate can be made for the test");
    return;
  }
  const dir = await Deno.makeTempDir({ prefix: "prisn-tls-test-" });
  const tls = await selfSignedCa(dir);
  await withListeningAgent(async ({ base, admin }) => {
    const client = Deno.createHttpClient({ caCerts: [tls.ca] });
    try {
      const res = await fetch(`${base}/v1/deployments`, {
        client,
        headers: { authorization: `Bearer ${admin}` },
      });
      assert.equal(res.status, 200);
      await res.body?.cancel();
    } finally {
      client.close();
    }
    await t.step("an untrusted certificate is refused by the client", async () => {
      await assert.rejects(fetch(`${base}/v1/ping`));
    });
  }, { tls: { cert: tls.cert, key: tls.key }, dir });
});

Deno.test("a namespace-scoped token: another namespace's deployments read as not found, lists and deploys there are refused", async () => {
  await withListeningAgent(async ({ base, local, dir }) => {
    const app = await scriptProject(dir, "app", "#!/bin/bash\necho hi\n");
    local.namespace = "team-b";
    await local.deploy({ source: app, flags: { name: "chatty" } });
    const [run] = await waitFor(async () => {
      const runs = await local.runs({ deployment: "chatty" });
      return runs[0]?.status === "completed" ? runs : undefined;
    }, { what: "chatty's run" });
    const { token } = await local.createToken({ name: "team-a-ci", namespaces: ["team-a"] });
    const call = async (method: string, path: string, body?: unknown) => {
      const res = await get(base, path, token, {
        method,
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      return { status: res.status, text: await res.text() };
    };

    // Whatever the route about one deployment: the same 404 as for one that does not exist.
    for (
      const [method, action, body] of [
        ["GET", "", undefined],
        ["GET", "/logs", undefined],
        ["GET", "/history", undefined],
        ["GET", "/env", undefined],
        ["DELETE", "", undefined],
        ["POST", "/rollback", {}],
        ["POST", "/scale", { replicas: 2 }],
        ["POST", "/run", {}],
      ] as const
    ) {
      const there = await call(method, `/v1/deployments/chatty${action}?namespace=team-b`, body);
      const ghost = await call(method, `/v1/deployments/ghost${action}?namespace=team-b`, body);
      assert.equal(there.status, 404, `${method} chatty${action}`);
      assert.equal(there.text.replace("chatty", "ghost"), ghost.text, `${method} ${action}`);
    }
    for (const path of [`/v1/runs/${run.id}`, "/v1/runs?deployment=chatty&namespace=team-b"]) {
      assert.equal((await call("GET", path)).status, 404, path);
    }
    // A list or a deploy in a namespace out of reach: 403; gc (every namespace's) too.
    for (
      const [method, path, body] of [
        ["GET", "/v1/deployments?namespace=team-b", undefined],
        ["GET", "/v1/runs?namespace=team-b", undefined],
        ["POST", "/v1/deploy?namespace=team-b", { source: app, flags: { name: "x" } }],
        ["POST", "/v1/gc", {}],
      ] as const
    ) {
      const res = await call(method, path, body);
      assert.equal(res.status, 403, `${method} ${path}`);
      assert.match(JSON.parse(res.text).error.message, /^token "team-a-ci" /);
    }
    // Its own namespace works; lists without a namespace (or all of them) show its own only.
    const deployed = await call("POST", "/v1/deploy?namespace=team-a", {
      source: app,
      flags: { name: "mine" },
    });
    assert.equal(deployed.status, 200);
    const result = JSON.parse(deployed.text.trim().split("\n").pop()!).result;
    assert.deepEqual([result.namespace, result.name], ["team-a", "mine"]);
    for (const path of ["/v1/deployments", "/v1/deployments?all=true"]) {
      const listed = JSON.parse((await call("GET", path)).text);
      assert.deepEqual(listed.map((d: { namespace: string }) => d.namespace), ["team-a"], path);
    }
    const status = JSON.parse((await call("GET", "/v1/status")).text);
    assert.deepEqual(status.deployments.map((d: { name: string }) => d.name), ["mine"]);
    const runs = JSON.parse((await call("GET", "/v1/runs?all=true")).text);
    assert.ok(runs.every((r: { namespace: string }) => r.namespace === "team-a"));

    // Nothing of team-b changed, and token ls tells the token's namespaces.
    assert.equal((await local.deployment("chatty")).namespace, "team-b");
    assert.equal((await local.history("chatty")).length, 1);
    const listed = (await local.tokens()).find((t) => t.name === "team-a-ci");
    assert.deepEqual(listed?.namespaces, ["team-a"]);
  });
});
