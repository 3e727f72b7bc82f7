/**
 * Scheduler with the fake driver: each cron concurrency policy and the catch-up, driven by
 * explicit pass times (Scheduler.tick(now)) instead of the wall clock.
 */
import assert from "node:assert/strict";
import type { Members } from "../../core/backends.ts";
import type { PrisnToml } from "../../core/prisn_toml.ts";
import { tickRunId } from "../../core/dispatch.ts";
import type { AgentContext } from "../../runtime/context.ts";
import type { FakeDriver } from "../../runtime/fake_driver.ts";
import { Scheduler } from "../../runtime/scheduler.ts";
import { Supervisor } from "../../runtime/supervisor.ts";
import { waitFor } from "../_helpers.ts";
import { events, fakeSpec, putFakeVersion, withFakes } from "./_fake.ts";

/** A cronjob firing every second, deployed 10 s ago, and a scheduler over the fakes. */
async function cron(ctx: AgentContext, driver: FakeDriver, toml: Partial<PrisnToml>) {
  const spec = {
    ...fakeSpec({ name: "c", schedule: "* * * * * *", timezone: "UTC", stop_grace: "0s", ...toml }),
    type: "cronjob" as const,
  };
  await putFakeVersion(ctx, spec, "v-1");
  await ctx.desired.activate("c", "v-1", 0, { now: base - 10_000 });
  const supervisor = new Supervisor(ctx, { driver });
  supervisor.consumeTickets();
  const scheduler = new Scheduler(ctx, supervisor);
  scheduler.reload();
  return { supervisor, scheduler };
}

/** A whole second, a moment ago: pass times are base, base + 1 s, … */
const base = Math.floor(Date.now() / 1000) * 1000 - 3_000;

function runs(ctx: AgentContext) {
  return ctx.records.listRuns({ deployment: "c", limit: 100 }).reverse();
}

Deno.test('cron "forbid" skips a tick while the run of an earlier one is active', async () => {
  await withFakes(() => ({}), async ({ ctx, driver }) => { // runs until stopped
    const { supervisor, scheduler } = await cron(ctx, driver, { concurrency: "forbid" });
    try {
      await ctx.desired.setLastScheduled("c", base - 1000);
      scheduler.tick(base);
      await waitFor(() => driver.running.length === 1, { what: "the first run" });
      scheduler.tick(base + 1000);
      scheduler.tick(base + 2000);
      await new Promise((r) => setTimeout(r, 50));
      assert.equal(driver.starts.length, 1);
      assert.deepEqual(runs(ctx).map((r) => r.id), [tickRunId("c", base)]);
      assert.equal(events(ctx, "c").filter((e) => e.startsWith("TickSkipped")).length, 2);
    } finally {
      await supervisor.shutdown();
    }
  });
});

Deno.test('cron "allow" runs ticks side by side; "replace" stops the active run first', async () => {
  await withFakes(() => ({}), async ({ ctx, driver }) => {
    const { supervisor, scheduler } = await cron(ctx, driver, { concurrency: "allow" });
    try {
      await ctx.desired.setLastScheduled("c", base - 1000);
      scheduler.tick(base);
      scheduler.tick(base + 1000);
      await waitFor(() => driver.running.length === 2, { what: "two runs at once" });
    } finally {
      await supervisor.shutdown();
    }
  });
  await withFakes(() => ({}), async ({ ctx, driver }) => {
    const { supervisor, scheduler } = await cron(ctx, driver, { concurrency: "replace" });
    try {
      await ctx.desired.setLastScheduled("c", base - 1000);
      scheduler.tick(base);
      await waitFor(() => driver.running.length === 1, { what: "the first run" });
      scheduler.tick(base + 1000);
      await waitFor(() => driver.starts.length === 2 && driver.running.length === 1, {
        what: "the replacing run",
      });
      assert.deepEqual(driver.starts[0].handle!.signals, ["SIGTERM"]);
      const [first, second] = runs(ctx);
      assert.equal(first.reason, "replaced");
      assert.equal(second.id, tickRunId("c", base + 1000));
      assert.ok(events(ctx, "c").some((e) => e.startsWith("RunReplaced:")));
    } finally {
      await supervisor.shutdown();
    }
  });
});

Deno.test("cron catch-up after downtime runs only the latest missed tick, once", async () => {
  await withFakes(() => ({ runMs: 1 }), async ({ ctx, driver }) => {
    const { supervisor, scheduler } = await cron(ctx, driver, { catchup: "latest" });
    try {
      await ctx.desired.setLastScheduled("c", base - 8_000); // 8 ticks missed
      scheduler.tick(base);
      scheduler.tick(base); // the same pass again: nothing more
      await waitFor(() => runs(ctx).every((r) => r.status === "completed") && runs(ctx).length, {
        what: "the catch-up run",
      });
      assert.deepEqual(runs(ctx).map((r) => r.scheduledAt), [base]);
      const log = events(ctx, "c");
      assert.ok(log.some((e) => e.startsWith("TicksMissed:")), `${log}`);
      assert.equal(driver.starts.length, 1);
    } finally {
      await supervisor.shutdown();
    }
  });
});

/** Cluster members as the supervisor sees them: only `live` answers. */
function membersWith(live: string[]): Members {
  return {
    nodes: () => Promise.resolve([]),
    leader: () => undefined,
    remoteReplicas: () => [],
    reportReplicas: () => {},
    liveNodes: () => new Set(live),
  };
}

Deno.test('cron "forbid": a run recorded on a node that is down holds no tick back; on a live node it does', async () => {
  for (const down of [true, false]) {
    await withFakes(() => ({}), async ({ ctx, driver }) => {
      const { supervisor, scheduler } = await cron(ctx, driver, { concurrency: "forbid" });
      try {
        // The tick before, taken by node-b, which then went down (or is still there).
        ctx.records.insertTicket(
          {
            id: tickRunId("c", base - 1000),
            deployment: "c",
            version: "v-1",
            trigger: "schedule",
            scheduledAt: base - 1000,
            attempt: 1,
          },
          "node-b",
          base - 1000,
        );
        ctx.members = membersWith(down ? ["test-node"] : ["test-node", "node-b"]);
        await ctx.desired.setLastScheduled("c", base - 1000);
        scheduler.tick(base);
        if (down) {
          await waitFor(() => driver.starts.length === 1, { what: "the tick's run" });
          assert.equal(supervisor.activeCount("c"), 1, "the new run alone");
        } else {
          await new Promise((r) => setTimeout(r, 50));
          assert.equal(driver.starts.length, 0);
          assert.ok(events(ctx, "c").some((e) => e.startsWith("TickSkipped")), "skipped");
        }
      } finally {
        await supervisor.shutdown();
      }
    });
  }
});

Deno.test('cron "forbid" and "replace": a tick\'s ticket that comes back after a newer tick ran is not started; "allow" runs it', async () => {
  for (const concurrency of ["forbid", "replace", "allow"] as const) {
    await withFakes(() => ({ runMs: 1 }), async ({ ctx, driver }) => {
      const { supervisor, scheduler } = await cron(ctx, driver, { concurrency });
      try {
        await ctx.desired.setLastScheduled("c", base);
        scheduler.tick(base + 1000);
        await waitFor(() => runs(ctx).some((r) => r.status === "completed"), {
          what: "the newer tick's run",
        });
        // The older tick's ticket, back from a node that took it and went down.
        const late = tickRunId("c", base);
        await supervisor.dispatcher.submit({
          id: late,
          deployment: "c",
          version: "v-1",
          trigger: "schedule",
          scheduledAt: base,
          attempt: 1,
        });
        const record = await waitFor(() => {
          const r = ctx.records.getRun(late);
          return r && (r.status === "failed" || r.status === "completed") ? r : undefined;
        }, { what: "the late ticket handled" });
        if (concurrency === "allow") {
          assert.equal(record.status, "completed");
          assert.equal(driver.starts.length, 2);
        } else {
          assert.equal(record.status, "failed");
          assert.match(
            record.reason ?? "",
            /^overtaken: the tick at .* came back after the tick at/,
          );
          assert.equal(driver.starts.length, 1, concurrency);
        }
      } finally {
        await supervisor.shutdown();
      }
    });
  }
});
