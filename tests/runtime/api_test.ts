import assert from "node:assert/strict";
import { join } from "node:path";
import { deploymentNotFound, invalid } from "../../core/errors.ts";
import { apiRoutes, type LogsReply, type Operations, router } from "../../runtime/api.ts";
import type { DeployRequest, LogsQuery } from "../../runtime/api_types.ts";
import type { Progress } from "../../runtime/deploy.ts";
import { AgentClient } from "../../runtime/client.ts";
import { paths } from "../../core/paths.ts";
import { waitFor, within } from "../_helpers.ts";

type Call = [string, ...unknown[]];

/** Operations that record each call and answer with what the test set (or the call itself). */
class StubOperations implements Operations {
  calls: Call[] = [];
  /** Thrown by the next call, when set. */
  failWith?: unknown;
  logsReply: LogsReply = { lines: [] };
  deploySteps: Array<[Parameters<Progress>[0], string]> = [];

  #note(...call: Call): void {
    this.calls.push(call);
    if (this.failWith !== undefined) throw this.failWith;
  }

  /** Notes the call; answers `{ op: NAME }`, whatever type the operation has. */
  #record(...call: Call): never {
    this.#note(...call);
    return { op: call[0] } as never;
  }

  ping = () => this.#record("ping");
  status = (namespaces?: string[]) => this.#record("status", namespaces);
  nodes = () => this.#record("nodes");
  drain = (node: string, d: boolean) => this.#record("drain", node, d);
  stop = () => this.#record("stop");
  async deploy(request: DeployRequest, progress: Progress) {
    this.#note("deploy", request);
    for (const [step, detail] of this.deploySteps) {
      progress(step, detail);
      await new Promise((r) => setTimeout(r, 1));
    }
    return { name: "x", version: "v-1", type: "job", unchanged: false, replicas: 0 } as const;
  }
  deployUpload = (request: DeployRequest, archive: Uint8Array) =>
    Promise.resolve(this.#record("deployUpload", request, archive.length));
  gc = (request: unknown) => Promise.resolve(this.#record("gc", request));
  runs = (query: unknown) => this.#record("runs", query);
  run = (id: string, namespaces?: string[]) => this.#record("run", id, namespaces);
  deployments = (namespaces?: string[]) => this.#record("deployments", namespaces);
  deployment = (name: string) => Promise.resolve(this.#record("deployment", name));
  env = (name: string) => this.#record("env", name);
  history = (name: string) => this.#record("history", name);
  logs = (name: string, query: LogsQuery) => {
    this.#note("logs", name, query);
    return Promise.resolve(this.logsReply);
  };
  rollback = (name: string, r: unknown) => Promise.resolve(this.#record("rollback", name, r));
  scale = (name: string, r: unknown) => Promise.resolve(this.#record("scale", name, r));
  startRun = (name: string, r: unknown) => Promise.resolve(this.#record("startRun", name, r));
  setSuspended = (name: string, s: boolean) => this.#record("setSuspended", name, s);
  delete = (name: string, o: unknown) => Promise.resolve(this.#record("delete", name, o));
  tokens = () => this.#record("tokens");
  createToken = (r: unknown) => Promise.resolve(this.#record("createToken", r));
  revokeToken = (name: string) => Promise.resolve(this.#record("revokeToken", name));
}

function setup() {
  const ops = new StubOperations();
  const handle = router(apiRoutes(ops));
  const request = (method: string, path: string, body?: unknown) =>
    handle(
      new Request(`http://prisn${path}`, {
        method,
        body: body === undefined ? undefined : JSON.stringify(body),
      }),
    );
  return { ops, handle, request };
}

async function ndjsonLines(res: Response): Promise<unknown[]> {
  return (await res.text()).split("\n").filter(Boolean).map((l) => JSON.parse(l));
}

Deno.test("each route reaches its operation with the path's name, the query and the body", async () => {
  const cases: Array<[string, string, unknown, Call]> = [
    ["GET", "/v1/ping", undefined, ["ping"]],
    ["GET", "/v1/status", undefined, ["status", undefined]],
    ["GET", "/v1/nodes", undefined, ["nodes"]],
    ["POST", "/v1/nodes/node-2/drain", undefined, ["drain", "node-2", true]],
    ["POST", "/v1/nodes/node-2/undrain", undefined, ["drain", "node-2", false]],
    ["POST", "/v1/agent/stop", undefined, ["stop"]],
    ["POST", "/v1/gc", { dryRun: true }, ["gc", { dryRun: true }]],
    ["POST", "/v1/gc", undefined, ["gc", {}]],
    ["GET", "/v1/runs", undefined, ["runs", { namespaces: ["default"], limit: 20 }]],
    ["GET", "/v1/runs?deployment=api&limit=5", undefined, ["runs", {
      deployment: "default/api",
      limit: 5,
    }]],
    ["GET", "/v1/runs/api-20240101-abc", undefined, ["run", "api-20240101-abc", undefined]],
    ["GET", "/v1/deployments", undefined, ["deployments", ["default"]]],
    ["GET", "/v1/deployments?namespace=team-b", undefined, ["deployments", ["team-b"]]],
    ["GET", "/v1/deployments?all=true", undefined, ["deployments", undefined]],
    ["GET", "/v1/runs?all=true", undefined, ["runs", { namespaces: undefined, limit: 20 }]],
    ["GET", "/v1/deployments/api?namespace=team-b", undefined, ["deployment", "team-b/api"]],
    ["DELETE", "/v1/deployments/api?namespace=team-b&purge=true", undefined, [
      "delete",
      "team-b/api",
      { purge: true },
    ]],
    ["GET", "/v1/deployments/api", undefined, ["deployment", "default/api"]],
    ["GET", "/v1/deployments/my%2Dapi", undefined, ["deployment", "default/my-api"]],
    ["DELETE", "/v1/deployments/api", undefined, ["delete", "default/api", { purge: false }]],
    ["DELETE", "/v1/deployments/api?purge=true", undefined, ["delete", "default/api", {
      purge: true,
    }]],
    ["GET", "/v1/deployments/api/env", undefined, ["env", "default/api"]],
    ["GET", "/v1/deployments/api/history", undefined, ["history", "default/api"]],
    ["POST", "/v1/deployments/api/rollback", { version: "v-1" }, [
      "rollback",
      "default/api",
      { version: "v-1" },
    ]],
    ["POST", "/v1/deployments/api/scale", { replicas: 3 }, ["scale", "default/api", {
      replicas: 3,
    }]],
    ["POST", "/v1/deployments/api/run", { env: ["K=V"] }, ["startRun", "default/api", {
      env: ["K=V"],
    }]],
    ["POST", "/v1/deployments/api/suspend", undefined, ["setSuspended", "default/api", true]],
    ["POST", "/v1/deployments/api/resume", undefined, ["setSuspended", "default/api", false]],
  ];
  for (const [method, path, body, call] of cases) {
    const { ops, request } = setup();
    const res = await request(method, path, body);
    assert.equal(res.status, 200, `${method} ${path}`);
    assert.equal(res.headers.get("content-type"), "application/json");
    assert.deepEqual(await res.json(), { op: call[0] }, `${method} ${path} answers the op's value`);
    assert.deepEqual(ops.calls, [call], `${method} ${path}`);
  }
});

Deno.test("a known path with a wrong method answers 405 with an Allow header", async () => {
  const { ops, request } = setup();
  for (
    const [method, path, allow] of [
      ["POST", "/v1/status", "GET"],
      ["GET", "/v1/deploy", "POST"],
      ["PUT", "/v1/deployments/api", "GET, DELETE"],
      ["GET", "/v1/deployments/api/scale", "POST"],
    ]
  ) {
    const res = await request(method, path);
    assert.equal(res.status, 405, `${method} ${path}`);
    assert.equal(res.headers.get("allow"), allow);
    const body = await res.json();
    assert.equal(body.error.code, "INVALID");
    assert.match(body.error.message, new RegExp(`^${method} is not allowed on ${path}: use `));
  }
  assert.deepEqual(ops.calls, [], "no operation ran");
});

Deno.test("an unknown path answers 404 with an error body", async () => {
  const { ops, request } = setup();
  for (const path of ["/", "/v2/status", "/v1/nope", "/v1/deployments/api/frob", "/v1/runs/a/b"]) {
    const res = await request("GET", path);
    assert.equal(res.status, 404, path);
    assert.deepEqual(await res.json(), {
      error: { code: "NOT_FOUND", message: "no such API path" },
    });
  }
  assert.deepEqual(ops.calls, []);
});

Deno.test("an operation's error answers with its code's status and one error body", async () => {
  const { ops, request } = setup();
  ops.failWith = deploymentNotFound("api");
  let res = await request("GET", "/v1/deployments/api/env");
  assert.equal(res.status, 404);
  assert.deepEqual(await res.json(), {
    error: { code: "NOT_FOUND", message: 'deployment "api" not found: see prisn ls' },
  });
  ops.failWith = invalid("api is a service; prisn run starts jobs and cronjobs");
  res = await request("POST", "/v1/deployments/api/run", {});
  assert.equal(res.status, 400);
  assert.equal((await res.json()).error.code, "INVALID");
  ops.failWith = new Error("disk on fire");
  res = await request("GET", "/v1/status");
  assert.equal(res.status, 500);
  assert.deepEqual(await res.json(), {
    error: { code: "FAILED", message: "internal error: disk on fire" },
  });
});

Deno.test("a deployment name or namespace that is no DNS label answers 400 and reaches no operation", async () => {
  const { ops, request } = setup();
  for (
    const [path, message] of [
      ["/v1/deployments/..%2Fteam-b%2Fchatty/logs", /^name "\.\.\/team-b\/chatty" is not valid/],
      ["/v1/deployments/api?namespace=Team_B", /^namespace "Team_B" is not valid/],
      ["/v1/deployments?namespace=a%2Fb", /^namespace "a\/b" is not valid/],
    ] as const
  ) {
    const res = await request("GET", path);
    assert.equal(res.status, 400, path);
    assert.match((await res.json()).error.message, message);
  }
  assert.deepEqual(ops.calls, []);
});

Deno.test("a body that is not JSON answers 400 and reaches no operation", async () => {
  const { ops, handle } = setup();
  const res = await handle(
    new Request("http://prisn/v1/deployments/api/scale", { method: "POST", body: "{nope" }),
  );
  assert.equal(res.status, 400);
  assert.match((await res.json()).error.message, /^the request body is not JSON/);
  assert.deepEqual(ops.calls, []);
});

Deno.test("deploy answers NDJSON: its progress steps, then the result", async () => {
  const { ops, request } = setup();
  ops.deploySteps = [["Package", "2 file(s)"], ["Version", "v-1 (new)"]];
  const res = await request("POST", "/v1/deploy", { source: "/x", flags: {} });
  assert.equal(res.headers.get("content-type"), "application/x-ndjson");
  assert.deepEqual(await ndjsonLines(res), [
    { step: "Package", detail: "2 file(s)" },
    { step: "Version", detail: "v-1 (new)" },
    { result: { name: "x", version: "v-1", type: "job", unchanged: false, replicas: 0 } },
  ]);
  assert.deepEqual(ops.calls, [["deploy", { source: "/x", flags: {}, namespace: "default" }]]);
});

Deno.test("logs answers NDJSON lines: the backlog, then followed lines", async () => {
  const { ops, request } = setup();
  ops.logsReply = {
    lines: ["a", "b"],
    follow: async (onLines) => {
      onLines(["c"]);
      await new Promise((r) => setTimeout(r, 5));
      onLines(["d", "e"]);
    },
  };
  const res = await request("GET", "/v1/deployments/api/logs?tail=2&replica=1&follow=true");
  assert.equal(res.status, 200);
  assert.deepEqual(await ndjsonLines(res), ["a", "b", "c", "d", "e"].map((line) => ({ line })));
  assert.deepEqual(ops.calls, [
    ["logs", "default/api", { tail: 2, replica: "1", run: undefined, follow: true }],
  ]);
});

Deno.test("logs defaults to 200 lines, refuses a bad tail, and ends with an error line when reading fails", async () => {
  const { ops, request } = setup();
  await (await request("GET", "/v1/deployments/api/logs?run=latest")).body?.cancel();
  assert.deepEqual(ops.calls, [
    ["logs", "default/api", { tail: 200, replica: undefined, run: "latest", follow: false }],
  ]);
  const bad = await request("GET", "/v1/deployments/api/logs?tail=-1");
  assert.equal(bad.status, 400);
  assert.equal(
    (await bad.json()).error.message,
    'tail "-1" is not valid: give a whole number of lines',
  );
  ops.logsReply = { lines: ["a"], follow: () => Promise.reject(new Error("gone")) };
  const res = await request("GET", "/v1/deployments/api/logs?follow=true");
  assert.deepEqual(await ndjsonLines(res), [
    { line: "a" },
    { error: { code: "FAILED", message: "internal error: gone" } },
  ]);
});

Deno.test("a followed logs answer stops its follow when the client goes away, even with nothing to send", async () => {
  const dir = await Deno.makeTempDir({ prefix: "prisn-api-test-" });
  const p = paths(join(dir, "home"));
  await Deno.mkdir(p.home, { recursive: true });
  const ops = new StubOperations();
  let followSignal: AbortSignal | undefined;
  const ended = Promise.withResolvers<void>();
  ops.logsReply = {
    lines: ["backlog"],
    follow: async (onLines, signal) => {
      followSignal = signal;
      onLines(["tick"]);
      // then nothing more to send: the disconnect must still be noticed
      await new Promise((r) => signal.addEventListener("abort", r, { once: true }));
      ended.resolve();
    },
  };
  const server = Deno.serve({ path: p.socket, onListen: () => {} }, router(apiRoutes(ops)));
  const client = new AgentClient(p);
  try {
    const stop = new AbortController();
    const seen: string[] = [];
    const done = client.logs("api", { follow: true }, (line) => {
      seen.push(line);
      if (seen.length === 2) stop.abort();
    }, { signal: stop.signal });
    await within(done, 5_000, "client.logs() after abort");
    assert.deepEqual(seen, ["backlog", "tick"]);
    await within(ended.promise, 5_000, "the agent-side follow loop to end");
    assert.ok(followSignal?.aborted);
  } finally {
    client.close();
    await server.shutdown();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("client.logs() turns an error line into the agent's PrisnError", async () => {
  const dir = await Deno.makeTempDir({ prefix: "prisn-api-test-" });
  const p = paths(join(dir, "home"));
  await Deno.mkdir(p.home, { recursive: true });
  const ops = new StubOperations();
  ops.logsReply = { lines: ["a"], follow: () => Promise.reject(invalid("no more")) };
  const server = Deno.serve({ path: p.socket, onListen: () => {} }, router(apiRoutes(ops)));
  const client = new AgentClient(p);
  try {
    const seen: string[] = [];
    await assert.rejects(
      client.logs("api", { follow: true }, (l) => seen.push(l)),
      (e: Error) => e.name === "PrisnError" && e.message === "no more",
    );
    assert.deepEqual(seen, ["a"]);
    ops.failWith = deploymentNotFound("api");
    await assert.rejects(client.logs("api", {}, () => {}), /deployment "api" not found/);
    await waitFor(() => ops.calls.length === 2);
  } finally {
    client.close();
    await server.shutdown();
    await Deno.remove(dir, { recursive: true });
  }
});
