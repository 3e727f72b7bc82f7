import assert from "node:assert/strict";
import { join } from "node:path";
import { paths } from "../../core/paths.ts";
import { listLogFiles, LogWriter } from "../../runtime/logs.ts";
import { OutputCollector } from "../../runtime/output_collector.ts";
import { OutputFifos } from "../../runtime/output_fifos.ts";
import { GroupProcess } from "../../runtime/process.ts";
import { waitFor } from "../_helpers.ts";

Deno.test("OutputFifos carry the output of successive starts into one log, stderr tagged, and vanish on close", async () => {
  const dir = await Deno.makeTempDir({ prefix: "prisn-fifo-" });
  const p = paths(join(dir, "home"));
  const log = new LogWriter(p, "app", "app-0");
  const collector = OutputCollector.create();
  assert.ok(collector, "epoll is available on this host");
  const fifos = await OutputFifos.create(collector, join(dir, "fifo"), "app.app-0", log);
  try {
    for (const n of [1, 2]) {
      const proc: GroupProcess = new GroupProcess({
        command: "/bin/bash",
        args: ["-c", `echo "start ${n} says hi"; echo "start ${n} complains" >&2`],
        cwd: dir,
        env: {},
      }, fifos);
      assert.equal((await proc.exited).code, 0);
    }
    const text = await waitFor(async () => {
      const files = await listLogFiles(p, "app");
      const all = (await Promise.all(files.map((f) => Deno.readTextFile(f)))).join("");
      return all.split("\n").length > 4 ? all : undefined;
    }, { what: "both starts' output in the log" });
    assert.match(text, /Z start 1 says hi\n/);
    assert.match(text, /Z \[err\] start 1 complains\n/);
    assert.match(text, /Z start 2 says hi\n/);
    assert.ok(text.indexOf("start 1 says hi") < text.indexOf("start 2 says hi"));
    await fifos.close();
    await assert.rejects(Deno.stat(fifos.out));
    await assert.rejects(Deno.stat(fifos.err));
  } finally {
    await fifos.close();
    await collector.close();
    log.close();
    await Deno.remove(dir, { recursive: true });
  }
});
