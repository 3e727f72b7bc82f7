import assert from "node:assert/strict";
import { join } from "node:path";
import { Records } from "../../core/records.ts";
import type { RunTicket } from "../../core/types.ts";
import { CLEAR_MS, DiskHealth } from "../../runtime/disk_health.ts";
import { ResilientHistory } from "../../runtime/resilient_history.ts";
import { isPrisnError } from "../_helpers.ts";

/** Real records whose writes fail with SQLite's disk-full error while `full` is set. */
async function withRecords(
  fn: (
    r: {
      history: ResilientHistory;
      disk: DiskHealth;
      records: Records;
      full: { on: boolean; error?: string };
      clock: { now: number };
    },
  ) => Promise<void> | void,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "prisn-resilient-test-" });
  const records = new Records(join(dir, "prisn.db"));
  const full: { on: boolean; error?: string } = { on: false };
  const fail = () => {
    if (full.on) throw new Error(full.error ?? "database or disk is full");
  };
  const inner = new Proxy(records, {
    get(target, key) {
      const value = Reflect.get(target, key);
      if (typeof value !== "function") return value;
      const writes = [
        "recordRun",
        "updateRun",
        "addEvent",
        "putProcess",
        "deleteProcess",
        "insertTicket",
      ];
      return (...args: unknown[]) => {
        if (writes.includes(String(key))) fail();
        return value.apply(target, args);
      };
    },
  });
  const clock = { now: 1_000 };
  const disk = new DiskHealth(() => clock.now++);
  const history = new ResilientHistory(inner, disk);
  try {
    await fn({ history, disk, records, full, clock });
  } finally {
    history.close();
    records.close();
    await Deno.remove(dir, { recursive: true });
  }
}

const ticket: RunTicket = {
  id: "run-1",
  deployment: "job",
  version: "v-1",
  trigger: "manual",
  attempt: 1,
};

Deno.test("ResilientHistory holds writes that fail on a full disk, shows them, and writes them once space is back", async () => {
  await withRecords(({ history, disk, records, full, clock }) => {
    history.insertTicket(ticket, "node", 1);
    history.putProcess({ id: "api-0", deployment: "api", pid: 10, startTicks: 1 });
    full.on = true;
    history.updateRun("run-1", { status: "running", startedAt: 5 });
    history.updateRun("run-1", { status: "completed", finishedAt: 9, exitCode: 0 });
    history.addEvent("api", "Restarted", "api-0 restarted", 7);
    history.deleteProcess("api-0");
    history.putProcess({ id: "api-1", deployment: "api", pid: 11, startTicks: 2 });
    const replicaRun = { ...ticket, id: "run-2", deployment: "api", node: "node" };
    history.recordRun({ ...replicaRun, trigger: "start", status: "running" }, 8);
    history.updateRun("run-2", { status: "failed", exitCode: 3 });
    assert.equal(history.getRun("run-2")?.exitCode, 3);
    assert.deepEqual(disk.state(), {
      fullSince: 1000,
      failedWrites: 6,
      pending: 5,
      lastError: "records: database or disk is full",
    });
    // Reads answer as if written.
    assert.equal(history.getRun("run-1")?.status, "completed");
    assert.equal(history.listRuns({ deployment: "job" })[0].exitCode, 0);
    assert.deepEqual(history.listProcesses().map((p) => p.id), ["api-1"]);
    assert.equal(records.getRun("run-1")?.status, "pending", "nothing written yet");
    assert.equal(history.flush(), false, "still full");

    full.on = false;
    assert.equal(history.flush(), true);
    assert.equal(disk.state().fullSince, 1000, "full until writes have worked for a while");
    clock.now += CLEAR_MS;
    assert.equal(records.getRun("run-1")?.status, "completed");
    assert.equal(records.getRun("run-1")?.finishedAt, 9);
    assert.deepEqual(records.listProcesses().map((p) => p.id), ["api-1"]);
    assert.deepEqual(records.listEvents("api").map((e) => e.kind), ["Restarted"]);
    assert.equal(records.getRun("run-2")?.status, "failed");
    assert.deepEqual(disk.state(), {
      failedWrites: 6,
      pending: 0,
      lastError: "records: database or disk is full",
    });
  });
});

Deno.test("ResilientHistory keeps held writes in order: a new write waits behind them while the disk is full", async () => {
  await withRecords(({ history, records, full }) => {
    full.on = true;
    history.addEvent("api", "A", "first", 1);
    full.on = false;
    history.addEvent("api", "B", "second", 2); // flushes "first", then writes
    assert.deepEqual(records.listEvents("api").map((e) => e.kind), ["B", "A"]); // newest first
  });
});

Deno.test("ResilientHistory refuses a new run's ticket on a full disk in one line, and lets other errors through", async () => {
  await withRecords(({ history, full }) => {
    full.on = true;
    assert.throws(
      () => history.insertTicket(ticket, "node", 1),
      isPrisnError(
        "UNAVAILABLE",
        "cannot record run run-1: the disk under PRISN_HOME is full; free some space",
      ),
    );
    full.error = "database is locked";
    assert.throws(() => history.addEvent("api", "A", "x", 1), /database is locked/);
    assert.equal(history.held, 0, "not held: only a full disk is waited out");
  });
});
