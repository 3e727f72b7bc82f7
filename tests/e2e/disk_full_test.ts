import assert from "node:assert/strict";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import type { StatusView } from "../../runtime/api_types.ts";
import {
  alive,
  freePort,
  httpGet,
  killProcessesUnder,
  Scope,
  TestHome,
  waitFor,
} from "../_helpers.ts";

/** Mounts a tmpfs of `size` at `dir`; the reason it cannot when it cannot (not root, no mount). */
async function mountTmpfs(dir: string, size: string): Promise<string | undefined> {
  if (Deno.uid() !== 0) return "not root";
  await Deno.mkdir(dir, { recursive: true });
  const out = await new Deno.Command("mount", {
    args: ["-t", "tmpfs", "-o", `size=${size},mode=0700`, "tmpfs", dir],
    stderr: "piped",
  }).output();
  return out.success ? undefined : `mount -t tmpfs failed: ${new TextDecoder().decode(out.stderr)}`;
}

/** Writes zeros into `file` until the file system is full; returns the bytes written. */
async function fill(file: string): Promise<number> {
  using f = await Deno.open(file, { write: true, create: true });
  const chunk = new Uint8Array(64 * 1024);
  let total = 0;
  let size = chunk.byteLength;
  while (size >= 512) {
    try {
      total += await f.write(chunk.subarray(0, size));
    } catch {
      size /= 2; // the last blocks: smaller writes take what is left
    }
  }
  return total;
}

const CHATTY = `import http.server, os, sys, threading, time
def chatter():
    i = 0
    while True:
        i += 1
        sys.stdout.write(f"chatter {i} " + "x" * 400 + "\\n")
        sys.stdout.flush()
        time.sleep(0.005)
threading.Thread(target=chatter, daemon=True).start()
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(b"alive")
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
`;

Deno.test({
  name:
    "a full disk: the agent and its replicas keep running, status says since when, writes are retried and logging resumes once space is back",
  sanitizeResources: false,
  async fn() {
    const t = new TestHome();
    const scope = new Scope();
    scope.defer(() => t.close());
    try {
      const why = await mountTmpfs(t.home, "24m");
      if (why) {
        console.log(`skipped: ${why}`);
        return;
      }
      scope.defer(async () => {
        await t.cli("agent", "stop").catch(() => {});
        const pid = t.agentPid();
        if (pid && alive(pid)) Deno.kill(pid, "SIGKILL");
        await killProcessesUnder(t.home); // before the unmount hides where they run
        await new Deno.Command("umount", { args: ["-l", t.home] }).output();
      });
      const port = freePort();
      const chatty = t.project("chatty", { "main.py": CHATTY });
      await t.ok("deploy", chatty, "--port", String(port), "--replicas", "1");
      const flappy = t.project("flappy", {
        "main.sh": "#!/bin/bash\necho up; sleep 0.3; exit 3\n",
      });
      await t.ok("deploy", flappy, "--replicas", "1", "--type", "service");
      const ticker = t.project("ticker", { "main.sh": "#!/bin/bash\necho tick\n" });
      await t.ok("deploy", ticker, "--schedule", "* * * * * *");
      await waitFor(() => httpGet(port).then((b) => b === "alive"), { what: "chatty to serve" });
      const first = t.agentPid()!;

      const filler = join(t.home, "filler");
      const filled = await fill(filler);
      assert.ok(filled > 1024 * 1024, `filled ${filled} bytes`);
      const full = await waitFor(async () => {
        const s = await t.json<StatusView>("status");
        return s.disk?.fullSince !== undefined && s.disk.failedWrites > 0 ? s : undefined;
      }, { what: "status to say the disk is full", timeoutMs: 20_000 });
      assert.match(
        await t.ok("status"),
        /^DISK FULL since \S+Z \(.* ago\): \d+ write\(s\) failed/m,
      );
      // Full for a while: the agent, the chatty replica and the crash loop all go on.
      for (let i = 0; i < 6; i++) {
        assert.equal(await httpGet(port), "alive", "chatty answers on a full disk");
        await new Promise((r) => setTimeout(r, 1000));
      }
      assert.ok(alive(first), "the agent is alive");
      const during = await t.json<StatusView>("status");
      assert.ok(during.disk!.failedWrites > full.disk!.failedWrites, "failed writes are counted");
      const flaps = await t.json<{ replicas: { items: { restarts: number }[] } }>("get", "flappy");
      const ticks = (await t.json<unknown[]>("get", "jobs", "ticker", "--limit", "1000")).length;
      assert.ok(
        flaps.replicas.items[0]?.restarts > 0,
        `the crash loop went on: ${JSON.stringify(flaps)}`,
      );

      // A new version cannot be stored: the deploy fails in one line, chatty stays as it was.
      await Deno.writeFile(join(chatty, "data.bin"), crypto.getRandomValues(new Uint8Array(65536)));
      const refused = await t.cli("deploy", chatty, "--port", String(port), "--replicas", "1");
      assert.notEqual(refused.code, 0);
      assert.match(
        refused.stderr.trim(),
        /^prisn: cannot (store|record) v-[0-9a-f]{8}: the disk under PRISN_HOME is full; free some space and deploy again \(nothing changed\)$/,
      );
      assert.equal((await t.json<{ version: string }[]>("history", "chatty")).length, 1);
      assert.equal(await httpGet(port), "alive", "the running version is untouched");

      // An agent restarted while the disk is still full starts, and brings chatty back.
      await t.ok("agent", "stop");
      const restarted = await t.cli("status");
      assert.equal(restarted.code, 0, `the agent starts on a full disk: ${restarted.stderr}`);
      await waitFor(() => httpGet(port).then((b) => b === "alive"), {
        what: "chatty to serve again after the restart",
        timeoutMs: 20_000,
      });
      const agent = t.agentPid()!;
      const before = await t.json<{ replicas: { items: { restarts: number }[] } }>("get", "chatty");

      // Space back: held records are written, logging resumes within seconds.
      await Deno.remove(filler);
      const freed = Date.now();
      await waitFor(
        async () => (await t.json<StatusView>("status")).disk?.fullSince === undefined,
        {
          what: "status to stop saying the disk is full",
          timeoutMs: 10_000,
        },
      );
      const resumed = await waitFor(async () => {
        const lines = (await t.ok("logs", "chatty-0", "--tail", "3000")).split("\n");
        const after = lines.filter((l) =>
          /chatter \d+/.test(l) && Date.parse(l.slice(0, 24)) > freed
        );
        const note = lines.find((l) => / \[prisn\] \d+ line\(s\) .* not logged from /.test(l));
        return after.length > 0 && note ? { after, note } : undefined;
      }, { what: "chatty's lines to be logged again", timeoutMs: 10_000 });
      assert.match(resumed.note, /No space left on device|os error 28/);
      assert.equal(await httpGet(port), "alive");
      await waitFor(
        async () =>
          (await t.json<unknown[]>("get", "jobs", "ticker", "--limit", "1000")).length > ticks,
        { what: "the every-second cronjob to run again", timeoutMs: 10_000 },
      );
      const after = await t.json<{ replicas: { items: { restarts: number }[] } }>("get", "chatty");
      assert.equal(
        after.replicas.items[0].restarts,
        before.replicas.items[0].restarts,
        "chatty never restarted",
      );
      assert.equal(t.agentPid(), agent, "the same agent throughout");
      const db = new DatabaseSync(join(t.home, "prisn.db"), { readOnly: true });
      try {
        assert.equal(db.prepare("PRAGMA integrity_check").get()?.integrity_check, "ok");
      } finally {
        db.close();
      }
    } finally {
      await scope.close();
    }
  },
});
