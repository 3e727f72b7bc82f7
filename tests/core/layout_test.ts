import assert from "node:assert/strict";
import { join } from "node:path";
import { existsSync } from "node:fs";
import { LAYOUT_MARKER, migrateLayout } from "../../core/layout.ts";
import { paths } from "../../core/paths.ts";

function home() {
  const dir = Deno.makeTempDirSync({ prefix: "prisn-layout-test-" });
  return { dir, p: paths(dir), [Symbol.dispose]: () => Deno.removeSync(dir, { recursive: true }) };
}

const names = (dir: string) => [...Deno.readDirSync(dir)].map((e) => e.name).sort();

function write(path: string, text = "x") {
  Deno.mkdirSync(join(path, ".."), { recursive: true });
  Deno.writeTextFileSync(path, text);
}

Deno.test("a home from before namespaces moves under default; a second run moves nothing", async () => {
  using h = home();
  write(join(h.p.deployments, "api", "v-1", "main.sh"));
  write(join(h.p.deployments, "default", "v-2", "main.sh")); // a deployment named "default"
  write(join(h.p.logs, "api", "2026-01-01", "api-0.log"));
  assert.deepEqual(await migrateLayout(h.p), [h.p.deployments, h.p.logs]);
  assert.deepEqual(names(h.p.deployments), [LAYOUT_MARKER, "default"]);
  assert.deepEqual(names(join(h.p.deployments, "default")), ["api", "default"]);
  assert.ok(existsSync(join(h.p.deployments, "default", "default", "v-2", "main.sh")));
  assert.ok(existsSync(join(h.p.logs, "default", "api", "2026-01-01", "api-0.log")));
  assert.deepEqual(await migrateLayout(h.p), []);
  assert.deepEqual(names(join(h.p.deployments, "default")), ["api", "default"]);
});

Deno.test("a new home is marked, not moved", async () => {
  using h = home();
  assert.deepEqual(await migrateLayout(h.p), []);
  assert.deepEqual(names(h.p.deployments), [LAYOUT_MARKER]);
  assert.deepEqual(names(h.p.logs), [LAYOUT_MARKER]);
});

Deno.test("a move cut short at any step is finished by the next run", async () => {
  {
    // Cut after the staging folder was marked: the old folder is still in place.
    using h = home();
    write(join(h.p.deployments, "api", "v-1", "main.sh"));
    write(join(`${h.p.deployments}.namespaced`, LAYOUT_MARKER));
    await migrateLayout(h.p);
    assert.ok(existsSync(join(h.p.deployments, "default", "api", "v-1", "main.sh")));
    assert.ok(!existsSync(`${h.p.deployments}.namespaced`));
  }
  {
    // Cut after the old folder went into staging: only the staging folder is there.
    using h = home();
    write(join(`${h.p.deployments}.namespaced`, LAYOUT_MARKER));
    write(join(`${h.p.deployments}.namespaced`, "default", "api", "v-1", "main.sh"));
    await migrateLayout(h.p);
    assert.deepEqual(names(h.p.deployments), [LAYOUT_MARKER, "default"]);
    assert.ok(existsSync(join(h.p.deployments, "default", "api", "v-1", "main.sh")));
  }
});
