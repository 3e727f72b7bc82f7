/**
 * Run tickets end to end: a run is recorded before anything slow happens, survives an agent
 * killed with -9, and a cron tick's run id is derived from the tick (and its deployment's key).
 *
 * @module
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { tickRunId } from "../../core/dispatch.ts";
import type { RunRecord } from "../../core/types.ts";
import { alive, finished, TestHome, waitFor } from "../_helpers.ts";

function runsOf(h: TestHome, name: string): Promise<RunRecord[]> {
  return h.json<RunRecord[]>("get", "jobs", name, "--limit", "100");
}

Deno.test("a retry waiting for its backoff survives kill -9 of the agent and runs after the restart", async () => {
  const h = new TestHome();
  try {
    const marker = join(h.dir, "tried-once");
    const dir = h.project("flaky", {
      "main.sh": `#!/bin/bash\nif [ -e "${marker}" ]; then echo second-try-ok; exit 0; fi\n` +
        `touch "${marker}"; echo first-try-fails; exit 1\n`,
      "prisn.toml": 'type = "job"\nretries = 1\nretry_backoff = "4s"\n',
    });
    await h.ok("deploy", dir);
    // The first attempt fails; its retry is a ticket recorded as a pending run, due in 4 s.
    const pending = await waitFor(async () => {
      const runs = await runsOf(h, "flaky");
      return runs.find((r) => r.status === "pending" && r.attempt === 2);
    }, { what: "the retry's pending run" });
    const agent = h.agentPid()!;
    Deno.kill(agent, "SIGKILL");
    await waitFor(() => !alive(agent), { what: "the agent gone after kill -9" });

    const restarted = Date.now();
    await h.ok("ls"); // a new agent
    const done = await waitFor(async () => {
      const run = (await runsOf(h, "flaky")).find((r) => r.id === pending.id);
      return run && finished(run) ? run : undefined;
    }, { what: "the retry to run after the restart", timeoutMs: 20_000 });
    assert.equal(done.status, "completed");
    assert.equal(done.attempt, 2);
    assert.equal(done.trigger, "retry");
    assert.ok(done.startedAt! >= restarted, "it ran under the new agent");
    const out = await h.ok("logs", "flaky", "--run", done.id);
    assert.match(out, /second-try-ok/);
    assert.equal((await runsOf(h, "flaky")).length, 2, "no run lost, none doubled");
  } finally {
    await h.close();
  }
});

Deno.test("a cron tick's run id is derived from NAMESPACE/NAME@scheduled-time", async () => {
  const h = new TestHome();
  try {
    const dir = h.project("tick", {
      "main.sh": "#!/bin/bash\necho tick\n",
      "prisn.toml": 'schedule = "* * * * * *"\n',
    });
    await h.ok("deploy", dir);
    const runs = await waitFor(async () => {
      const all = (await runsOf(h, "tick")).filter(finished);
      return all.length >= 2 ? all : undefined;
    }, { what: "two cron runs" });
    await h.ok("suspend", "tick");
    for (const r of runs) {
      assert.equal(r.trigger, "schedule");
      assert.equal(r.id, tickRunId("default/tick", r.scheduledAt!));
    }
  } finally {
    await h.close();
  }
});
