import assert from "node:assert/strict";
import { join } from "node:path";
import { type Paths, paths } from "../../core/paths.ts";
import { Agent } from "../../runtime/agent.ts";
import { AgentClient } from "../../runtime/client.ts";
import { finished, isPrisnError, scriptProject, waitFor, within } from "../_helpers.ts";

const STAMPED = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z /;

/** A real agent on a fresh PRISN_HOME and a client to it; stops and removes both afterwards. */
async function withAgent(
  fn: (a: { agent: Agent; client: AgentClient; paths: Paths; dir: string }) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "prisn-agent-test-" });
  const p = paths(join(dir, "home"));
  const agent = await Agent.start({ paths: p, log: () => {} });
  const client = new AgentClient(p);
  try {
    await fn({ agent, client, paths: p, dir });
  } finally {
    client.close();
    await agent.stop();
    await Deno.remove(dir, { recursive: true });
  }
}

async function collect(
  client: AgentClient,
  name: string,
  query: Parameters<AgentClient["logs"]>[1],
): Promise<string[]> {
  const lines: string[] = [];
  await client.logs(name, query, (line) => lines.push(line));
  return lines;
}

Deno.test("the agent's logs API answers a run's last lines, by id or latest, and refuses unknown streams", async () => {
  await withAgent(async ({ client, dir }) => {
    const source = await scriptProject(
      dir,
      "batch",
      '#!/bin/bash\nfor i in 1 2 3 4 5; do echo "line $i"; done\n',
    );
    const deployed = await client.deploy({ source, flags: { name: "batch" } });
    const runId = deployed.runId!;
    await waitFor(async () => finished(await client.run(runId)), { what: "the job's run" });

    const latest = await collect(client, "batch", { tail: 2, run: "latest" });
    assert.equal(latest.length, 2);
    assert.match(latest[0], STAMPED);
    assert.deepEqual(latest.map((l) => l.replace(STAMPED, "")), ["line 4", "line 5"]);
    assert.deepEqual(await collect(client, "batch", { tail: 2, run: runId }), latest);
    assert.equal((await collect(client, "batch", {})).length, 5, "all streams, 200 by default");
    assert.deepEqual(await collect(client, "batch", { tail: 0 }), []);

    await assert.rejects(
      collect(client, "batch", { replica: "7" }),
      isPrisnError("NOT_FOUND", "batch has no replica 7: see prisn get batch"),
    );
    await assert.rejects(
      collect(client, "batch", { run: "nope" }),
      isPrisnError("NOT_FOUND", 'run "nope" not found: see prisn get jobs'),
    );
    await assert.rejects(
      collect(client, "ghost", {}),
      isPrisnError("NOT_FOUND", 'deployment "ghost" not found: see prisn ls'),
    );
  });
});

Deno.test("the agent's logs API follows new lines until the client aborts, and agent stop ends a follow", async () => {
  const dir = await Deno.makeTempDir({ prefix: "prisn-agent-test-" });
  const p = paths(join(dir, "home"));
  const agent = await Agent.start({ paths: p, log: () => {} });
  const client = new AgentClient(p);
  try {
    const source = await scriptProject(
      dir,
      "ticker",
      '#!/bin/bash\ni=0\nwhile true; do i=$((i+1)); echo "tick $i"; sleep 0.1; done\n',
    );
    await client.deploy({ source, flags: { name: "ticker", replicas: 1 } });
    await waitFor(async () => (await collect(client, "ticker", {})).length > 0, {
      what: "a first tick",
    });

    const stop = new AbortController();
    const followed: string[] = [];
    const following = client.logs("ticker", { tail: 1, follow: true, replica: "0" }, (line) => {
      followed.push(line);
      if (followed.length === 4) stop.abort();
    }, { signal: stop.signal });
    await within(following, 10_000, "a follow the client aborted");
    const ticks = followed.map((l) => Number(/tick (\d+)$/.exec(l)?.[1]));
    assert.equal(ticks.length, 4, followed.join("\n"));
    for (let i = 1; i < 4; i++) assert.equal(ticks[i], ticks[i - 1] + 1, "new lines, in order");

    let open = 0;
    const endless = client.logs("ticker", { tail: 0, follow: true }, () => open++);
    await waitFor(() => open > 0, { what: "the second follow's first line" });
    await within(agent.stop(), 20_000, "agent stop with a follow open");
    await within(endless, 5_000, "the follow after the agent stopped");
  } finally {
    client.close();
    await agent.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("env and get mask secret values the same way", async () => {
  await withAgent(async ({ client, dir }) => {
    const source = await scriptProject(dir, "envy", "#!/bin/bash\necho hi\n");
    await client.deploy({
      source,
      flags: { name: "envy", env: ["B=2", "A=1"], secret: ["TOKEN=hunter2"] },
    });
    assert.deepEqual(await client.env("envy"), [
      { key: "A", value: "1", secret: false },
      { key: "B", value: "2", secret: false },
      { key: "TOKEN", value: "********", secret: true },
    ]);
    const detail = await client.deployment("envy");
    assert.deepEqual(detail.spec.env, { A: "1", B: "2", TOKEN: "********" });
  });
});
