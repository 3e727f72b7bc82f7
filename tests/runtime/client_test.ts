/**
 * AgentClient.existing(): an agent that is busy (answers its ping late) is still found, so
 * `prisn agent stop` never says "no agent running" to a live agent; a stale agent.pid (dead, or
 * a pid the system gave to another program) is not waited for.
 *
 * @module
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { paths } from "../../core/paths.ts";
import { AgentClient } from "../../runtime/client.ts";

/** A home whose socket answers /v1/ping only once `lateMs` have passed since it opened. */
async function slowAgentHome(lateMs: number) {
  const home = await Deno.makeTempDir({ prefix: "prisn-client-test-" });
  const p = paths(home);
  await Deno.mkdir(p.state, { recursive: true });
  const opened = Date.now();
  const closing = Promise.withResolvers<void>();
  const server = Deno.serve(
    { path: p.socket, onListen() {} },
    async () => {
      const wait = opened + lateMs - Date.now();
      if (wait > 0) {
        let timer: ReturnType<typeof setTimeout> | undefined;
        await Promise.race([new Promise((r) => timer = setTimeout(r, wait)), closing.promise]);
        clearTimeout(timer);
      }
      return Response.json({ ok: true });
    },
  );
  return {
    paths: p,
    async close() {
      closing.resolve();
      await server.shutdown();
      await Deno.remove(home, { recursive: true });
    },
  };
}

/** A live process whose command line holds the word `agent` (what agent.pid must name). */
function fakeAgentProcess(): Deno.ChildProcess {
  return new Deno.Command("bash", { args: ["-c", "sleep 30; :", "agent"] }).spawn();
}

Deno.test("existing() waits for a live agent that answers its ping late", async () => {
  const h = await slowAgentHome(3_000);
  const agent = fakeAgentProcess();
  try {
    await Deno.writeTextFile(join(h.paths.state, "agent.pid"), `${agent.pid}\n`);
    const started = Date.now();
    const client = await AgentClient.existing(h.paths);
    assert.ok(client, "a busy agent is found");
    client.close();
    assert.ok(Date.now() - started >= 2_000, "it was waited for past one ping's timeout");
  } finally {
    agent.kill("SIGKILL");
    await agent.status;
    await h.close();
  }
});

Deno.test("existing() does not wait for a dead pid or another program's", async () => {
  const h = await slowAgentHome(60_000);
  const dead = new Deno.Command("true").spawn();
  await dead.status;
  const other = new Deno.Command("sleep", { args: ["30"] }).spawn();
  try {
    for (const pid of [dead.pid, other.pid]) {
      await Deno.writeTextFile(join(h.paths.state, "agent.pid"), `${pid}\n`);
      const started = Date.now();
      assert.equal(await AgentClient.existing(h.paths), undefined);
      assert.ok(Date.now() - started < 5_000, `pid ${pid} was waited for`);
    }
  } finally {
    other.kill("SIGKILL");
    await other.status;
    await h.close();
  }
});
