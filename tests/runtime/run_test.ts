/** Runs with the fake driver: exit codes, timeouts, stop, retries — exact and fast. */
import assert from "node:assert/strict";
import type { PrisnToml } from "../../core/prisn_toml.ts";
import type { AgentContext } from "../../runtime/context.ts";
import type { FakeDriver } from "../../runtime/fake_driver.ts";
import { Supervisor } from "../../runtime/supervisor.ts";
import { finished, waitFor } from "../_helpers.ts";
import { events, fakeSpec, putFakeVersion, withFakes } from "./_fake.ts";

/** Records a job `name` at version v-1 and gives a supervisor over the fake driver. */
async function job(ctx: AgentContext, driver: FakeDriver, toml: PrisnToml & { name: string }) {
  const spec = { ...fakeSpec(toml), type: "job" as const };
  await putFakeVersion(ctx, spec, "v-1");
  await ctx.desired.activate(spec.name, "v-1", 0);
  return new Supervisor(ctx, { driver });
}

Deno.test("a run is recorded completed with its exit code 0, failed with any other", async () => {
  let n = 0; // runs have a name each, so count starts here
  await withFakes(
    () => ({ runMs: 5, exitCode: n++ === 0 ? 0 : 4 }),
    async ({ ctx, driver }) => {
      const sup = await job(ctx, driver, { name: "j" });
      const ok = await (await sup.startRun("j", { trigger: "manual" })).done;
      assert.equal(ok.status, "completed");
      assert.equal(ok.exitCode, 0);
      assert.equal(ok.pid, driver.starts[0].handle!.pid);
      const bad = await (await sup.startRun("j", { trigger: "manual" })).done;
      assert.equal(bad.status, "failed");
      assert.equal(bad.exitCode, 4);
      assert.ok(events(ctx, "j").includes(`RunFailed: ${bad.id} failed: exit code 4`));
      assert.deepEqual(ctx.records.listProcesses(), []);
    },
  );
});

Deno.test("a run over its timeout is stopped (SIGTERM, then SIGKILL after the grace) and failed", async () => {
  await withFakes(() => ({ ignoreSigterm: true }), async ({ ctx, driver }) => {
    const sup = await job(ctx, driver, { name: "slow", timeout: "100ms", stop_grace: "50ms" });
    const t0 = Date.now();
    const record = await (await sup.startRun("slow", { trigger: "manual" })).done;
    const took = Date.now() - t0;
    assert.equal(record.status, "failed");
    assert.equal(record.reason, "timed out after 100ms");
    assert.deepEqual(driver.starts[0].handle!.signals, ["SIGTERM", "SIGKILL"]);
    assert.ok(took >= 150 && took < 1_000, `took ${took} ms`);
  });
});

Deno.test("a run that cannot start is failed with the reason in its log", async () => {
  await withFakes(() => ({ failStart: "exec format error" }), async ({ ctx, driver }) => {
    const sup = await job(ctx, driver, { name: "broken" });
    const record = await (await sup.startRun("broken", { trigger: "manual" })).done;
    assert.equal(record.status, "failed");
    assert.equal(record.reason, "could not start");
  });
});

Deno.test("a stopped run is failed with the stop's reason and is not retried", async () => {
  await withFakes(() => ({}), async ({ ctx, driver }) => {
    const sup = await job(ctx, driver, { name: "long", retries: 3, retry_backoff: "0s" });
    const run = await sup.startRun("long", { trigger: "manual" });
    await waitFor(() => driver.running.length === 1, { what: "the run's process" });
    await run.stop("stopped");
    const record = ctx.records.getRun(run.id)!;
    assert.equal(record.status, "failed");
    assert.equal(record.reason, "stopped");
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(driver.starts.length, 1, "no retry after a stop");
  });
});

Deno.test("a failed run is retried `retries` times with backoff, each attempt linked to the first", async () => {
  await withFakes(() => ({ runMs: 0, exitCode: 1 }), async ({ ctx, driver }) => {
    const sup = await job(ctx, driver, { name: "flaky", retries: 2, retry_backoff: "20ms" });
    const first = await sup.startRun("flaky", { trigger: "manual" });
    const runs = await waitFor(() => {
      const all = ctx.records.listRuns({ deployment: "flaky", limit: 10 });
      return all.length === 3 && all.every(finished) ? all : undefined;
    }, { what: "three finished attempts" });
    const byAttempt = [...runs].sort((a, b) => a.attempt - b.attempt);
    assert.deepEqual(byAttempt.map((r) => r.attempt), [1, 2, 3]);
    assert.deepEqual(byAttempt.map((r) => r.trigger), ["manual", "retry", "retry"]);
    assert.deepEqual(byAttempt.map((r) => r.parent), [undefined, first.id, first.id]);
    const gaps = driver.starts.slice(1).map((s, i) => s.at - driver.starts[i].at);
    assert.ok(gaps[0] >= 20 && gaps[1] >= 40, `retry gaps ${gaps} (20 ms doubling)`);
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(driver.starts.length, 3, "no fourth attempt");
    await sup.shutdown();
  });
});
