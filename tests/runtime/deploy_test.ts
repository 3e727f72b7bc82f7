import assert from "node:assert/strict";
import { join } from "node:path";
import type { Artifacts } from "../../core/artifacts.ts";
import { type Paths, paths } from "../../core/paths.ts";
import type { Package } from "../../core/version.ts";
import { Agent } from "../../runtime/agent.ts";
import { localBackends } from "../../runtime/backends.ts";
import type { Step } from "../../runtime/deploy.ts";
import { AgentClient } from "../../runtime/client.ts";
import { isPrisnError, scriptProject, waitFor } from "../_helpers.ts";

interface Gate {
  hold: boolean;
  open: () => void;
  waiting: () => boolean;
  /** The signal the held `put` was given. */
  signal?: AbortSignal;
}

/**
 * A real agent whose version store waits, at `put`, for the test to open `gate`: a deploy can be
 * interrupted at its Store step however fast the disk is.
 */
async function withGatedAgent(
  fn: (a: {
    agent: Agent;
    client: AgentClient;
    paths: Paths;
    dir: string;
    gate: Gate;
  }) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "prisn-deploy-test-" });
  const p = paths(join(dir, "home"));
  let release = Promise.withResolvers<void>();
  let waiting = false;
  const gate: Gate = {
    hold: false,
    open: () => release.resolve(),
    waiting: () => waiting,
  };
  const agent = await Agent.start({
    paths: p,
    log: () => {},
    backends: (inputs) => {
      const local = localBackends(inputs);
      const inner = local.artifacts;
      const artifacts: Artifacts = {
        put: async (d: string, v: string, pkg: Package, o?: { signal?: AbortSignal }) => {
          if (gate.hold) {
            gate.signal = o?.signal;
            waiting = true;
            await release.promise;
            waiting = false;
            release = Promise.withResolvers<void>();
          }
          return await inner.put(d, v, pkg, o);
        },
        ensureLocal: (d, v) => inner.ensureLocal(d, v),
        archive: (d, v) => inner.archive(d, v),
        remove: (d, v) => inner.remove(d, v),
        setCurrent: (d, v, m) => inner.setCurrent(d, v, m),
      };
      return { ...local, artifacts };
    },
  });
  const client = new AgentClient(p);
  try {
    await fn({ agent, client, paths: p, dir, gate });
  } finally {
    gate.open();
    client.close();
    await agent.stop();
    await Deno.remove(dir, { recursive: true });
  }
}

async function entries(dir: string): Promise<string[]> {
  const names: string[] = [];
  try {
    for await (const e of Deno.readDir(dir)) names.push(e.name);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  return names.sort();
}

/** Deploys `source`, aborting the client once the agent waits in Store; resolves when it gave up. */
async function interruptedDeploy(
  client: AgentClient,
  gate: Gate,
  source: string,
): Promise<Step[]> {
  const steps: Step[] = [];
  const stop = new AbortController();
  gate.hold = true;
  const deploying = client.deploy({ source, flags: {} }, (s) => steps.push(s), {
    signal: stop.signal,
  });
  await waitFor(() => gate.waiting(), { what: "the deploy to reach its Store step" });
  stop.abort();
  await assert.rejects(deploying);
  await waitFor(() => gate.signal?.aborted, { what: "the agent to see its client go" });
  gate.hold = false;
  gate.open();
  return steps;
}

Deno.test("a deploy whose client goes away during Store keeps nothing: no version, no folder, no record", async () => {
  await withGatedAgent(async ({ agent, client, paths: p, dir, gate }) => {
    const source = await scriptProject(dir, "big", "#!/bin/bash\necho hi\n");
    assert.deepEqual(await interruptedDeploy(client, gate, source), ["Package", "Version"]);
    await agent.supervisor.exclusive("default/big", () => Promise.resolve()); // the deploy has ended
    assert.deepEqual(await entries(join(p.deployments, "default")), []);
    assert.equal(agent.ctx.desired.getDeployment("default/big"), undefined);
    assert.deepEqual(agent.ctx.desired.listVersions("default/big"), []);
    await assert.rejects(client.history("big"), isPrisnError("NOT_FOUND", /"big" not found/));
    assert.deepEqual(agent.ctx.desired.listDeployments(), []);
  });
});

Deno.test("an interrupted deploy of a new version leaves the running one as it was", async () => {
  await withGatedAgent(async ({ agent, client, paths: p, dir, gate }) => {
    const source = await scriptProject(dir, "app", "#!/bin/bash\necho one\n");
    const first = await client.deploy({ source, flags: {} });
    await Deno.writeTextFile(join(source, "main.sh"), "#!/bin/bash\necho two\n");
    await interruptedDeploy(client, gate, source);
    await agent.supervisor.exclusive("default/app", () => Promise.resolve()); // the deploy has ended
    const folder = join(p.deployments, "default", "app");
    assert.deepEqual(await entries(folder), ["current", "metadata.json", first.version]);
    assert.equal(agent.ctx.desired.getDeployment("default/app")?.version, first.version);
    assert.deepEqual(agent.ctx.desired.listVersions("default/app").map((v) => v.version), [
      first.version,
    ]);
    assert.equal(await Deno.readLink(join(folder, "current")), first.version);
  });
});

Deno.test("gc removes version folders no record names and folders of deployments never recorded", async () => {
  await withGatedAgent(async ({ client, paths: p, dir }) => {
    const source = await scriptProject(dir, "kept", "#!/bin/bash\necho kept\n");
    const deployed = await client.deploy({ source, flags: {} });
    // What a deploy killed between its Store and Record steps leaves behind.
    await Deno.mkdir(join(p.deployments, "default", "kept", "v-0rphan00"), { recursive: true });
    await Deno.writeTextFile(join(p.deployments, "default", "kept", "v-0rphan00", "main.sh"), "x");
    await Deno.mkdir(join(p.deployments, "default", "never", "v-12345678"), { recursive: true });
    await Deno.mkdir(join(p.deployments, "default", "kept", ".tmp-v-abc-1"), { recursive: true });
    const dry = await client.gc({ dryRun: true });
    assert.deepEqual(dry.versions.sort(), ["kept/v-0rphan00", "never/v-12345678"]);
    assert.deepEqual(
      await entries(join(p.deployments, "default")),
      ["kept", "never"],
      "a dry run removes nothing",
    );
    const result = await client.gc({});
    assert.deepEqual(result.versions.sort(), ["kept/v-0rphan00", "never/v-12345678"]);
    assert.deepEqual(await entries(join(p.deployments, "default")), ["kept"]);
    assert.deepEqual(await entries(join(p.deployments, "default", "kept")), [
      "current",
      "metadata.json",
      deployed.version,
    ]);
  });
});

Deno.test("a deploy whose agent dies mid-stream says so in one line, naming the last step", async () => {
  const dir = await Deno.makeTempDir({ prefix: "prisn-deploy-test-" });
  const p = paths(join(dir, "home"));
  await Deno.mkdir(p.home, { recursive: true });
  // An agent that answers the deploy with two steps and then dies: the body ends mid-chunk.
  const listener = Deno.listen({ transport: "unix", path: p.socket });
  const serving = (async () => {
    const conn = await listener.accept();
    const buffer = new Uint8Array(64 * 1024);
    await conn.read(buffer);
    const body = '{"step":"Package","detail":"1 file(s)"}\n{"step":"Store","detail":"stored"}\n';
    await conn.write(new TextEncoder().encode(
      "HTTP/1.1 200 OK\r\ncontent-type: application/x-ndjson\r\ntransfer-encoding: chunked\r\n\r\n" +
        `${body.length.toString(16)}\r\n${body}\r\n`,
    ));
    conn.close();
  })();
  const client = new AgentClient(p);
  try {
    const steps: string[] = [];
    await assert.rejects(
      client.deploy({ source: dir, flags: {} }, (s) => steps.push(s)),
      isPrisnError(
        "UNAVAILABLE",
        "the agent stopped during the deploy (after the Store step): it did not finish; " +
          "see prisn ls and prisn history NAME once the agent is back",
      ),
    );
    assert.deepEqual(steps, ["Package", "Store"]);
  } finally {
    client.close();
    await serving;
    listener.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("an agent's --max-package refuses a bigger package in one line, before storing anything", async () => {
  const dir = await Deno.makeTempDir({ prefix: "prisn-deploy-test-" });
  const p = paths(join(dir, "home"));
  const agent = await Agent.start({ paths: p, log: () => {}, maxPackageBytes: 1000 });
  const client = new AgentClient(p);
  try {
    const source = await scriptProject(dir, "big", "#!/bin/bash\necho hi\n");
    await Deno.writeFile(join(source, "data.bin"), new Uint8Array(2000));
    await assert.rejects(
      client.deploy({ source, flags: {} }),
      isPrisnError(
        "INVALID",
        /holds 2\.0 KiB of files, over the 1000 B package cap: .*--max-package/,
      ),
    );
    assert.deepEqual(await entries(join(p.deployments, "default")), []);
    await Deno.remove(join(source, "data.bin"));
    await client.deploy({ source, flags: {} });
  } finally {
    client.close();
    await agent.stop();
    await Deno.remove(dir, { recursive: true });
  }
});
