import assert from "node:assert/strict";
import { join } from "node:path";
import { tickRunId } from "../../core/dispatch.ts";
import { Records } from "../../core/records.ts";
import type { RunTicket } from "../../core/types.ts";
import { LocalDispatcher } from "../../runtime/local_dispatch.ts";
import { waitFor } from "../_helpers.ts";

async function withRecords(fn: (records: Records, db: string) => Promise<void>) {
  const dir = await Deno.makeTempDir({ prefix: "prisn-dispatch-" });
  const db = join(dir, "prisn.db");
  const records = new Records(db);
  try {
    await fn(records, db);
  } finally {
    records.close();
    await Deno.remove(dir, { recursive: true });
  }
}

const ticket = (id: string, extra: Partial<RunTicket> = {}): RunTicket => ({
  id,
  deployment: "nightly",
  version: "v-1",
  trigger: "schedule",
  attempt: 1,
  ...extra,
});

Deno.test("tickRunId() gives one id per deployment and tick", () => {
  const at = Date.UTC(2026, 11, 1, 3, 0, 0);
  assert.equal(tickRunId("nightly", at), tickRunId("nightly", at));
  assert.notEqual(tickRunId("nightly", at), tickRunId("nightly", at + 1000));
  assert.notEqual(tickRunId("nightly", at), tickRunId("weekly", at));
  assert.match(tickRunId("nightly", at), /^run-[0-9a-f]{8}$/);
});

Deno.test("LocalDispatcher records a ticket as pending at once and refuses the same id twice", async () => {
  await withRecords(async (records) => {
    const d = new LocalDispatcher(records, "n1");
    const got: string[] = [];
    const stop = d.consume((t) => {
      got.push(t.id);
      records.updateRun(t.id, { status: "running" });
      return Promise.resolve();
    });
    const id = tickRunId("nightly", 1_000);
    assert.equal(await d.submit(ticket(id, { scheduledAt: 1_000, env: { A: "1" } })), true);
    assert.equal(records.getRun(id)?.status, "pending");
    assert.equal(await d.submit(ticket(id, { scheduledAt: 1_000 })), false);
    await waitFor(() => got.length === 1, { what: "the delivery" });
    await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(got, [id]);
    stop();
  });
});

Deno.test("LocalDispatcher holds a ticket until notBefore, and a new dispatcher delivers what was left pending", async () => {
  await withRecords(async (records, db) => {
    const first = new LocalDispatcher(records, "n1");
    const stopFirst = first.consume(() => Promise.resolve());
    await first.submit(
      ticket("run-later", {
        trigger: "retry",
        attempt: 2,
        notBefore: Date.now() + 60_000,
        env: { K: "v" },
      }),
    );
    assert.equal(first.waiting("nightly"), 1);
    stopFirst(); // the agent dies with the ticket waiting

    const again = new Records(db);
    try {
      const now = Date.now() + 60_001; // the backoff is over
      const second = new LocalDispatcher(again, "n1", () => now);
      const got: RunTicket[] = [];
      const stop = second.consume((t) => (got.push(t), Promise.resolve()));
      await waitFor(() => got.length === 1, { what: "the left ticket" });
      assert.deepEqual(got[0], {
        id: "run-later",
        deployment: "nightly",
        version: "v-1",
        trigger: "retry",
        scheduledAt: undefined,
        attempt: 2,
        parent: undefined,
        notBefore: got[0].notBefore,
        env: { K: "v" },
        replace: undefined,
      });
      stop();
    } finally {
      again.close();
    }
  });
});
