import assert from "node:assert/strict";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { PrisnError } from "../../core/errors.ts";
import { Records } from "../../core/records.ts";
import { type DeployFlags, resolveSpec } from "../../core/spec.ts";
import type { RunRecord, RunStatus, SourceInfo } from "../../core/types.ts";
import { isPrisnError } from "../_helpers.ts";

/** Runs `fn` with Records on a fresh database file; closes it and removes the folder after. */
async function withRecords(fn: (records: Records, dbPath: string) => void | Promise<void>) {
  const dir = await Deno.makeTempDir({ prefix: "prisn-records-test-" });
  const dbPath = join(dir, "prisn.db");
  const records = new Records(dbPath);
  try {
    await fn(records, dbPath);
  } finally {
    records.close();
    await Deno.remove(dir, { recursive: true });
  }
}

function userVersion(db: DatabaseSync): number {
  return Number((db.prepare("PRAGMA user_version").get() as { user_version: number }).user_version);
}

const SOURCE: SourceInfo = { kind: "dir", location: "/src/api" };

function spec(flags: DeployFlags = { port: "8000" }) {
  return resolveSpec({ flags, files: ["main.py"], defaultName: "api" });
}

function putVersion(records: Records, deployment: string, version: string, now: number) {
  records.putVersion(
    { deployment, version, spec: spec(), source: SOURCE, files: 2, bytes: 30 },
    now,
  );
}

function run(id: string, deployment: string, status: RunStatus = "pending"): RunRecord {
  return { id, deployment, version: "v-1", status, trigger: "manual", node: "local", attempt: 1 };
}

// --- schema -----------------------------------------------------------------------------------

Deno.test("Records sets user_version to the number of migrations and runs them once", async () => {
  const dir = await Deno.makeTempDir({ prefix: "prisn-records-test-" });
  const dbPath = join(dir, "prisn.db");
  try {
    const first = new Records(dbPath);
    const at = userVersion(first.db);
    try {
      assert.ok(at >= 1, `user_version is ${at}`);
      putVersion(first, "api", "v-1", 1000);
    } finally {
      first.close();
    }

    const again = new Records(dbPath); // a second open must not re-run CREATE TABLE
    try {
      assert.equal(userVersion(again.db), at);
      assert.equal(again.getVersion("api", "v-1")?.version, "v-1", "data survives a reopen");
    } finally {
      again.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("Records turns on WAL journaling", async () => {
  await withRecords((records) => {
    const row = records.db.prepare("PRAGMA journal_mode").get() as { journal_mode: string };
    assert.equal(row.journal_mode, "wal");
  });
});

Deno.test("Records refuses a database written by a newer prisn, as UNAVAILABLE", async () => {
  await withRecords((records, dbPath) => {
    records.db.exec("PRAGMA user_version = 999");
    assert.throws(
      () => new Records(dbPath),
      isPrisnError("UNAVAILABLE", /database schema 999 is newer than this prisn/),
    );
  });
});

Deno.test("Records reports a path it cannot open as UNAVAILABLE", () => {
  assert.throws(
    () => new Records("/nonexistent-prisn-dir/sub/prisn.db"),
    isPrisnError("UNAVAILABLE", /^cannot open \/nonexistent-prisn-dir\/sub\/prisn\.db: /),
  );
});

// --- versions and deployments -------------------------------------------------------------------

Deno.test("putVersion() records a version as stored with its spec and source", async () => {
  await withRecords((records) => {
    putVersion(records, "api", "v-1", 1000);
    const v = records.getVersion("api", "v-1");
    assert.deepEqual(v, {
      deployment: "api",
      version: "v-1",
      spec: spec(),
      source: SOURCE,
      files: 2,
      bytes: 30,
      createdAt: 1000,
      deployedAt: 1000,
      status: "stored",
    });
    assert.equal(records.getDeployment("api"), undefined, "storing is not deploying");
    assert.equal(records.getVersion("api", "v-2"), undefined);
  });
});

Deno.test("putVersion() of a known version refreshes spec and source but keeps its status", async () => {
  await withRecords((records) => {
    putVersion(records, "api", "v-1", 1000);
    records.activate("api", "v-1", 1, 1100);
    const source: SourceInfo = { kind: "git", location: "https://example.com/r.git", ref: "main" };
    records.putVersion(
      {
        deployment: "api",
        version: "v-1",
        spec: spec({ port: "9000" }),
        source,
        files: 2,
        bytes: 30,
      },
      2000,
    );
    const v = records.getVersion("api", "v-1")!;
    assert.equal(v.status, "active");
    assert.equal(v.createdAt, 1000);
    assert.equal(v.spec.port, 9000);
    assert.deepEqual(v.source, source);
  });
});

Deno.test("activate() creates the deployment on its first version", async () => {
  await withRecords((records) => {
    putVersion(records, "api", "v-1", 1000);
    records.activate("api", "v-1", 3, 1500);
    assert.deepEqual(records.getDeployment("api"), {
      name: "api",
      type: "service",
      version: "v-1",
      replicas: 3,
      suspended: false,
      lastScheduledAt: undefined,
      createdAt: 1500,
      updatedAt: 1500,
      revision: 1,
    });
    const v = records.getVersion("api", "v-1")!;
    assert.equal(v.status, "active");
    assert.equal(v.deployedAt, 1500);
  });
});

Deno.test("activate() supersedes the previously active version, and rollback flips it back", async () => {
  await withRecords((records) => {
    putVersion(records, "api", "v-1", 1000);
    records.activate("api", "v-1", 1, 1000);
    putVersion(records, "api", "v-2", 2000);
    records.activate("api", "v-2", 2, 2000);

    assert.equal(records.getVersion("api", "v-1")!.status, "superseded");
    assert.equal(records.getVersion("api", "v-2")!.status, "active");
    const d = records.getDeployment("api")!;
    assert.equal(d.version, "v-2");
    assert.equal(d.replicas, 2);
    assert.equal(d.createdAt, 1000);
    assert.equal(d.updatedAt, 2000);

    records.activate("api", "v-1", 2, 3000);
    assert.equal(records.getVersion("api", "v-1")!.status, "active");
    assert.equal(records.getVersion("api", "v-2")!.status, "superseded");
    assert.equal(records.getDeployment("api")!.version, "v-1");
  });
});

Deno.test("activate() leaves other deployments' versions alone", async () => {
  await withRecords((records) => {
    putVersion(records, "api", "v-1", 1000);
    putVersion(records, "web", "v-1", 1000);
    records.activate("web", "v-1", 1, 1000);
    records.activate("api", "v-1", 1, 1100);
    assert.equal(records.getVersion("web", "v-1")!.status, "active");
  });
});

Deno.test("activate() of an unrecorded version is NOT_FOUND and changes nothing", async () => {
  await withRecords((records) => {
    putVersion(records, "api", "v-1", 1000);
    records.activate("api", "v-1", 1, 1000);
    assert.throws(
      () => records.activate("api", "v-9", 1, 2000),
      isPrisnError("NOT_FOUND", "version v-9 of api is not recorded"),
    );
    assert.equal(records.getVersion("api", "v-1")!.status, "active");
    assert.equal(records.getDeployment("api")!.version, "v-1");
    assert.equal(records.db.isTransaction, false, "the transaction was rolled back");
  });
});

Deno.test("listVersions() lists newest deploy first, and a rollback moves a version to the top", async () => {
  await withRecords((records) => {
    for (const [v, at] of [["v-1", 1000], ["v-2", 2000], ["v-3", 3000]] as const) {
      putVersion(records, "api", v, at);
      records.activate("api", v, 1, at);
    }
    putVersion(records, "other", "v-x", 5000);
    assert.deepEqual(records.listVersions("api").map((v) => v.version), ["v-3", "v-2", "v-1"]);
    records.activate("api", "v-1", 1, 4000);
    assert.deepEqual(records.listVersions("api").map((v) => v.version), ["v-1", "v-3", "v-2"]);
    assert.deepEqual(records.listVersions("nobody"), []);
  });
});

Deno.test("listVersions() breaks ties in deploy time by insertion order, newest first", async () => {
  await withRecords((records) => {
    putVersion(records, "api", "v-b", 1000);
    putVersion(records, "api", "v-a", 1000);
    assert.deepEqual(records.listVersions("api").map((v) => v.version), ["v-a", "v-b"]);
  });
});

Deno.test("deleteVersion() removes one version of one deployment", async () => {
  await withRecords((records) => {
    putVersion(records, "api", "v-1", 1000);
    putVersion(records, "api", "v-2", 2000);
    putVersion(records, "web", "v-1", 1000);
    records.deleteVersion("api", "v-1");
    assert.deepEqual(records.listVersions("api").map((v) => v.version), ["v-2"]);
    assert.equal(records.getVersion("web", "v-1")?.version, "v-1");
    records.deleteVersion("api", "v-9"); // harmless
  });
});

Deno.test("setVersionStatus(), setReplicas(), setSuspended() and setLastScheduled() update one row", async () => {
  await withRecords((records) => {
    putVersion(records, "api", "v-1", 1000);
    records.activate("api", "v-1", 1, 1000);
    putVersion(records, "api", "v-2", 2000);
    records.setVersionStatus("api", "v-2", "failed");
    assert.equal(records.getVersion("api", "v-2")!.status, "failed");

    records.setReplicas("api", 4, 3000);
    records.setSuspended("api", true, 3100);
    records.setLastScheduled("api", 2500);
    let d = records.getDeployment("api")!;
    assert.equal(d.replicas, 4);
    assert.equal(d.suspended, true);
    assert.equal(d.lastScheduledAt, 2500);
    assert.equal(d.updatedAt, 3100);

    records.setSuspended("api", false, 3200);
    records.setLastScheduled("api", undefined);
    d = records.getDeployment("api")!;
    assert.equal(d.suspended, false);
    assert.equal(d.lastScheduledAt, undefined);
  });
});

Deno.test("listDeployments() lists by name", async () => {
  await withRecords((records) => {
    for (const name of ["web", "api", "cron"]) {
      putVersion(records, name, "v-1", 1000);
      records.activate(name, "v-1", 1, 1000);
    }
    assert.deepEqual(records.listDeployments().map((d) => d.name), ["api", "cron", "web"]);
  });
});

// --- runs -------------------------------------------------------------------------------------

Deno.test("putRun() and getRun() round-trip every field, absent ones as undefined", async () => {
  await withRecords((records) => {
    const full: RunRecord = {
      id: "r-full",
      deployment: "job",
      version: "v-1",
      status: "failed",
      trigger: "retry",
      node: "n1",
      attempt: 2,
      parent: "r-first",
      scheduledAt: 10,
      startedAt: 11,
      finishedAt: 12,
      exitCode: 3,
      reason: "exit code 3",
      lastError: "Traceback: boom",
      pid: 4242,
      replica: "api-1",
    };
    records.putRun(full, 100);
    assert.deepEqual(records.getRun("r-full"), full);

    records.putRun(run("r-min", "job"), 101);
    const min = records.getRun("r-min")!;
    assert.deepEqual(min, {
      ...run("r-min", "job"),
      parent: undefined,
      scheduledAt: undefined,
      startedAt: undefined,
      finishedAt: undefined,
      exitCode: undefined,
      reason: undefined,
      lastError: undefined,
      pid: undefined,
      replica: undefined,
    });
    assert.equal(records.getRun("r-none"), undefined);
  });
});

Deno.test("updateRun() changes only the fields given and can clear one", async () => {
  await withRecords((records) => {
    records.putRun(run("r1", "job"), 100);
    records.updateRun("r1", { status: "running", startedAt: 110, pid: 99 });
    let r = records.getRun("r1")!;
    assert.equal(r.status, "running");
    assert.equal(r.startedAt, 110);
    assert.equal(r.pid, 99);

    records.updateRun("r1", { status: "completed", finishedAt: 120, exitCode: 0, pid: undefined });
    r = records.getRun("r1")!;
    assert.equal(r.status, "completed");
    assert.equal(r.startedAt, 110);
    assert.equal(r.finishedAt, 120);
    assert.equal(r.exitCode, 0, "exit code 0 is kept, not taken for absent");
    assert.equal(r.pid, undefined);

    records.updateRun("r1", {}); // nothing to do
    assert.deepEqual(records.getRun("r1"), r);
  });
});

Deno.test("listRuns() lists newest first, honours limit, deployment and statuses", async () => {
  await withRecords((records) => {
    for (let i = 0; i < 25; i++) {
      records.putRun(run(`a-${i}`, "a", i % 2 ? "completed" : "failed"), 1000 + i);
    }
    records.putRun(run("b-0", "b", "running"), 1010);

    const all = records.listRuns();
    assert.equal(all.length, 20, "20 by default");
    assert.equal(all[0].id, "a-24");

    assert.deepEqual(records.listRuns({ limit: 3 }).map((r) => r.id), ["a-24", "a-23", "a-22"]);
    assert.deepEqual(records.listRuns({ deployment: "b" }).map((r) => r.id), ["b-0"]);
    assert.equal(records.listRuns({ deployment: "a", limit: 100 }).length, 25);
    assert.deepEqual(
      records.listRuns({ statuses: ["running"], limit: 100 }).map((r) => r.id),
      ["b-0"],
    );
    const failedA = records.listRuns({ deployment: "a", statuses: ["failed"], limit: 100 });
    assert.equal(failedA.length, 13);
    assert.ok(failedA.every((r) => r.status === "failed" && r.deployment === "a"));
    assert.equal(
      records.listRuns({ statuses: ["running", "completed"], limit: 100 }).length,
      13,
    );
  });
});

Deno.test("listRuns() orders runs created in the same millisecond by insertion, newest first", async () => {
  await withRecords((records) => {
    for (const id of ["x", "y", "z"]) records.putRun(run(id, "a"), 1000);
    assert.deepEqual(records.listRuns().map((r) => r.id), ["z", "y", "x"]);
  });
});

Deno.test("pruneRuns() keeps the newest completed and failed runs and returns the ids removed", async () => {
  await withRecords((records) => {
    for (let i = 0; i < 5; i++) records.putRun(run(`ok-${i}`, "job", "completed"), 100 + i);
    for (let i = 0; i < 4; i++) records.putRun(run(`bad-${i}`, "job", "failed"), 200 + i);
    records.putRun(run("live", "job", "running"), 50);
    records.putRun(run("queued", "job", "pending"), 60);
    records.putRun(run("other", "cron", "completed"), 10);

    const removed = records.pruneRuns("job", 2, 1);
    assert.deepEqual(removed.sort(), ["bad-0", "bad-1", "bad-2", "ok-0", "ok-1", "ok-2"]);
    assert.deepEqual(
      records.listRuns({ deployment: "job", limit: 100 }).map((r) => r.id),
      ["bad-3", "ok-4", "ok-3", "queued", "live"],
    );
    assert.equal(records.getRun("other")?.id, "other", "other deployments are left alone");
    assert.deepEqual(records.pruneRuns("job", 2, 1), [], "nothing more to prune");
  });
});

Deno.test("pruneRuns() with nothing to keep removes every finished run", async () => {
  await withRecords((records) => {
    records.putRun(run("a", "job", "completed"), 1);
    records.putRun(run("b", "job", "failed"), 2);
    assert.deepEqual(records.pruneRuns("job", 0, 0).sort(), ["a", "b"]);
    assert.deepEqual(records.listRuns({ deployment: "job" }), []);
  });
});

Deno.test("runCounts() counts runs created since a time, by status, with zeros", async () => {
  await withRecords((records) => {
    records.putRun(run("old", "a", "failed"), 100);
    records.putRun(run("r1", "a", "completed"), 200);
    records.putRun(run("r2", "b", "completed"), 300);
    records.putRun(run("r3", "a", "running"), 400);
    assert.deepEqual(records.runCounts(200), {
      pending: 0,
      running: 1,
      completed: 2,
      failed: 0,
    });
    assert.deepEqual(records.runCounts(0), { pending: 0, running: 1, completed: 2, failed: 1 });
    assert.deepEqual(records.runCounts(1000), { pending: 0, running: 0, completed: 0, failed: 0 });
  });
});

Deno.test("latestRuns() maps each deployment to its newest run", async () => {
  await withRecords((records) => {
    records.putRun(run("a1", "a"), 100);
    records.putRun(run("b1", "b"), 100);
    records.putRun(run("a2", "a", "running"), 200);
    const latest = records.latestRuns();
    assert.deepEqual([...latest.keys()].sort(), ["a", "b"]);
    assert.equal(latest.get("a")!.id, "a2");
    assert.equal(latest.get("a")!.status, "running");
    assert.equal(latest.get("b")!.id, "b1");
  });
});

// --- events and processes ---------------------------------------------------------------------

Deno.test("listEvents() lists a deployment's events newest first, up to a limit", async () => {
  await withRecords((records) => {
    for (let i = 1; i <= 12; i++) records.addEvent("api", "deploy", `event ${i}`, 1000 + i);
    records.addEvent("web", "scale", "other", 5000);

    const events = records.listEvents("api");
    assert.equal(events.length, 10, "10 by default");
    assert.deepEqual(events.map((e) => e.message).slice(0, 2), ["event 12", "event 11"]);
    const [newest] = records.listEvents("api", 1);
    assert.deepEqual(
      { deployment: newest.deployment, at: newest.at, kind: newest.kind, message: newest.message },
      { deployment: "api", at: 1012, kind: "deploy", message: "event 12" },
    );
    assert.equal(typeof newest.id, "number");
    assert.deepEqual(records.listEvents("web").map((e) => e.kind), ["scale"]);
  });
});

Deno.test("putProcess() inserts and updates by id; deleteProcess() removes one", async () => {
  await withRecords((records) => {
    records.putProcess({ id: "api-0", deployment: "api", pid: 10, startTicks: 100 });
    records.putProcess({ id: "api-1", deployment: "api", pid: 11, startTicks: 110 });
    records.putProcess({ id: "api-0", deployment: "api", pid: 20, startTicks: 200 });
    const byId = (a: { id: string }, b: { id: string }) => a.id.localeCompare(b.id);
    assert.deepEqual(records.listProcesses().sort(byId), [
      { id: "api-0", deployment: "api", pid: 20, startTicks: 200 },
      { id: "api-1", deployment: "api", pid: 11, startTicks: 110 },
    ]);
    records.deleteProcess("api-1");
    records.deleteProcess("not-there");
    assert.deepEqual(records.listProcesses(), [
      { id: "api-0", deployment: "api", pid: 20, startTicks: 200 },
    ]);
  });
});

Deno.test("deleteDeployment() removes its deployment, versions, runs, events and processes only", async () => {
  await withRecords((records) => {
    for (const name of ["api", "web"]) {
      putVersion(records, name, "v-1", 1000);
      putVersion(records, name, "v-2", 1000);
      records.activate(name, "v-1", 1, 1000);
      records.putRun(run(`${name}-run`, name), 1000);
      records.addEvent(name, "deploy", "deployed", 1000);
      records.putProcess({ id: `${name}-0`, deployment: name, pid: 1, startTicks: 1 });
    }
    records.deleteDeployment("api");

    assert.equal(records.getDeployment("api"), undefined);
    assert.deepEqual(records.listVersions("api"), []);
    assert.equal(records.getRun("api-run"), undefined);
    assert.deepEqual(records.listEvents("api"), []);
    assert.deepEqual(records.listProcesses().map((p) => p.id), ["web-0"]);

    assert.equal(records.getDeployment("web")!.version, "v-1");
    assert.equal(records.listVersions("web").length, 2);
    assert.equal(records.getRun("web-run")!.id, "web-run");
    assert.equal(records.listEvents("web").length, 1);

    records.deleteDeployment("never-existed"); // harmless
  });
});

Deno.test("transaction() rolls back every write when the callback throws", async () => {
  await withRecords((records) => {
    assert.throws(() =>
      records.transaction(() => {
        records.addEvent("api", "k", "inside", 1);
        throw new Error("boom");
      }), /boom/);
    assert.deepEqual(records.listEvents("api"), []);
    assert.equal(records.transaction(() => 42), 42);
  });
});

/** How many of this process's open file descriptors point at `path`. */
function openHandles(path: string): number {
  let n = 0;
  for (const fd of Deno.readDirSync("/proc/self/fd")) {
    try {
      if (Deno.readLinkSync(`/proc/self/fd/${fd.name}`) === path) n++;
    } catch { /* closed while we looked */ }
  }
  return n;
}

Deno.test({
  name: "Records closes the database when it refuses to open it",

  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "prisn-records-test-" });
    const dbPath = join(dir, "prisn.db");
    try {
      const raw = new DatabaseSync(dbPath);
      raw.exec("PRAGMA user_version = 999");
      raw.close();
      // No other connection is open, so SQLite has no reason to keep a closed one's descriptor.
      assert.equal(openHandles(dbPath), 0);
      assert.throws(() => new Records(dbPath), PrisnError);
      assert.equal(openHandles(dbPath), 0);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
