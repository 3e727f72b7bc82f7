import assert from "node:assert/strict";
import { join } from "node:path";
import type { DesiredChange } from "../../core/desired_state.ts";
import { LocalDesiredState } from "../../core/local_desired_state.ts";
import { Records } from "../../core/records.ts";
import type { DeploySpec } from "../../core/spec.ts";
import { isPrisnError } from "../_helpers.ts";

async function withDesired(fn: (d: LocalDesiredState) => Promise<void>) {
  const dir = await Deno.makeTempDir({ prefix: "prisn-desired-" });
  const records = new Records(join(dir, "prisn.db"));
  try {
    await fn(new LocalDesiredState(records));
  } finally {
    records.close();
    await Deno.remove(dir, { recursive: true });
  }
}

const spec = {
  name: "api",
  type: "service",
  entrypoint: "main.py",
  runtime: "python3",
  args: [],
  env: {},
  replicas: 1,
} as DeploySpec;
const version = (v: string) => ({
  deployment: "api",
  version: v,
  spec,
  source: { kind: "dir" as const, location: "/src" },
  files: 1,
  bytes: 1,
});

const settle = () => new Promise((r) => setTimeout(r, 0));

Deno.test("LocalDesiredState bumps the revision on every change and tells watchers which deployment changed", async () => {
  await withDesired(async (d) => {
    const seen: DesiredChange[] = [];
    const unwatch = d.watch((c) => seen.push(c));
    await d.putVersion(version("v-1"));
    assert.equal(await d.activate("api", "v-1", 2, { expect: 0 }), 1);
    assert.equal(await d.setReplicas("api", 3, { expect: 1 }), 2);
    assert.equal(await d.setSuspended("api", false), 3);
    await d.setLastScheduled("api", 1000); // bookkeeping: no new revision
    assert.equal(d.getDeployment("api")?.revision, 3);
    await d.deleteDeployment("api");
    await settle();
    assert.deepEqual(seen, [
      { deployment: "api", revision: undefined }, // a version of a deployment not yet active
      { deployment: "api", revision: 1 },
      { deployment: "api", revision: 2 },
      { deployment: "api", revision: 3 },
      { deployment: "api", revision: 3 },
      { deployment: "api", revision: undefined },
    ]);
    unwatch();
  });
});

Deno.test("LocalDesiredState refuses a write whose expected revision is stale, and changes nothing", async () => {
  await withDesired(async (d) => {
    await d.putVersion(version("v-1"));
    await d.putVersion(version("v-2"));
    await d.activate("api", "v-1", 1, { expect: 0 });
    // Two changes decided on revision 1 (a deploy and a rollback at once): the store picks one.
    const results = await Promise.allSettled([
      d.activate("api", "v-2", 1, { expect: 1 }),
      d.setReplicas("api", 5, { expect: 1 }),
    ]);
    assert.equal(results[0].status, "fulfilled");
    assert.equal(results[1].status, "rejected");
    assert.throws(
      () => {
        throw (results[1] as PromiseRejectedResult).reason;
      },
      isPrisnError(
        "CONFLICT",
        "api changed meanwhile (revision 2, expected 1): look again and retry",
      ),
    );
    const now = d.getDeployment("api")!;
    assert.equal(now.version, "v-2");
    assert.equal(now.replicas, 1);
    // A new deployment expects revision 0: it must not exist yet.
    await assert.rejects(
      d.activate("api", "v-1", 1, { expect: 0 }),
      isPrisnError("CONFLICT", /revision 2, expected 0/),
    );
  });
});

Deno.test("LocalDesiredState.setReplicas() of a deployment that does not exist is NOT_FOUND", async () => {
  await withDesired(async (d) => {
    await assert.rejects(
      d.setReplicas("nope", 2),
      isPrisnError("NOT_FOUND", 'deployment "nope" not found: see prisn ls'),
    );
  });
});

Deno.test("LocalDesiredState tells watchers of a write inside an outer transaction only once it commits", async () => {
  await withDesired(async (d) => {
    await d.putVersion(version("v-1"));
    await settle();
    const seen: DesiredChange[] = [];
    d.watch((c) => seen.push(c));
    let written!: Promise<number>;
    let settledInside = false;
    d.records.transaction(() => {
      written = d.activate("api", "v-1", 1);
      written.then(() => settledInside = true);
      d.records.addEvent("api", "Other", "a second write in the same transaction", 1);
    });
    assert.equal(settledInside, false, "nothing settles before the outer commit");
    assert.equal(await written, 1);
    await settle();
    assert.deepEqual(seen, [{ deployment: "api", revision: 1 }]);
  });
});

Deno.test("LocalDesiredState tells nobody of a write whose outer transaction is rolled back, and the write rejects", async () => {
  await withDesired(async (d) => {
    await d.putVersion(version("v-1"));
    await settle();
    const seen: DesiredChange[] = [];
    d.watch((c) => seen.push(c));
    let written!: Promise<number>;
    assert.throws(() =>
      d.records.transaction(() => {
        written = d.activate("api", "v-1", 1);
        throw new Error("a later write of the pass failed");
      }), /a later write of the pass failed/);
    await assert.rejects(written, /a later write of the pass failed/);
    await settle();
    assert.deepEqual(seen, []);
    assert.equal(d.getDeployment("api"), undefined, "rolled back");
  });
});

Deno.test("LocalDesiredState tells nobody of a write whose outer COMMIT fails", async () => {
  await withDesired(async (d) => {
    await d.putVersion(version("v-1"));
    await settle();
    // A deferred foreign key makes COMMIT itself fail, as a full disk can.
    d.records.db.exec(`PRAGMA foreign_keys = ON;
      CREATE TABLE parent(id INTEGER PRIMARY KEY);
      CREATE TABLE child(p INTEGER REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED);`);
    const seen: DesiredChange[] = [];
    d.watch((c) => seen.push(c));
    let written!: Promise<number>;
    assert.throws(() =>
      d.records.transaction(() => {
        written = d.activate("api", "v-1", 1);
        d.records.db.exec("INSERT INTO child VALUES (42)");
      }), /FOREIGN KEY constraint failed/);
    await assert.rejects(written, /FOREIGN KEY constraint failed/);
    await settle();
    assert.deepEqual(seen, []);
    assert.equal(d.getDeployment("api"), undefined, "rolled back");
    assert.equal(d.records.db.isTransaction, false);
    // The store is usable after it, and tells of the next write.
    assert.equal(await d.activate("api", "v-1", 1), 1);
    await settle();
    assert.deepEqual(seen, [{ deployment: "api", revision: 1 }]);
  });
});
