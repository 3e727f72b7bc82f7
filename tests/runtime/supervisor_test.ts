import assert from "node:assert/strict";
import { join } from "node:path";
import { paths } from "../../core/paths.ts";
import { Records } from "../../core/records.ts";
import { createContext } from "../../runtime/context.ts";
import { Supervisor } from "../../runtime/supervisor.ts";

async function withSupervisor(fn: (s: Supervisor) => Promise<void>) {
  const dir = await Deno.makeTempDir({ prefix: "prisn-supervisor-" });
  const records = new Records(join(dir, "prisn.db"));
  try {
    await fn(new Supervisor(createContext(paths(dir), records, "test")));
  } finally {
    records.close();
    await Deno.remove(dir, { recursive: true });
  }
}

const tick = () => new Promise((r) => setTimeout(r, 5));

Deno.test("Supervisor.exclusive() runs changes to one deployment one at a time, others alongside", async () => {
  await withSupervisor(async (s) => {
    const log: string[] = [];
    const step = (tag: string) => async () => {
      log.push(`${tag} start`);
      await tick();
      log.push(`${tag} end`);
      return tag;
    };
    const results = await Promise.all([
      s.exclusive("api", step("deploy")),
      s.exclusive("api", step("rollback")),
      s.exclusive("web", step("scale")),
    ]);
    assert.deepEqual(results, ["deploy", "rollback", "scale"]);
    const api = log.filter((l) => !l.startsWith("scale"));
    assert.deepEqual(api, ["deploy start", "deploy end", "rollback start", "rollback end"]);
    assert.ok(log.indexOf("scale start") < log.indexOf("deploy end"), "another name does not wait");
  });
});

Deno.test("Supervisor.exclusive() lets the next change run after one that failed", async () => {
  await withSupervisor(async (s) => {
    const failed = s.exclusive("api", () => Promise.reject(new Error("boom")));
    const next = s.exclusive("api", () => Promise.resolve("ok"));
    await assert.rejects(failed, /boom/);
    assert.equal(await next, "ok");
  });
});
