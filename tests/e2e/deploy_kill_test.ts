import assert from "node:assert/strict";
import { join } from "node:path";
import { alive, freePort, httpGet, processesUnder, TestHome, waitFor } from "../_helpers.ts";

// "RolledOut": the new replicas are up, their activation not yet recorded.
const STEPS = [
  "Package",
  "Version",
  "Store",
  "Record",
  "Prepare",
  "RolledOut",
  "Activate",
] as const;

const SERVER = (tag: string) =>
  `import http.server, os
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(b"${tag} " + os.environ["PRISN_VERSION"].encode())
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
`;

interface Detail {
  version: string;
  replicas: { desired: number; items: { name: string; version: string; ready: boolean }[] };
}

Deno.test({
  name:
    "kill -9 of the agent at every step of a deploy: after a restart the service runs the old or the new version, never a mix, with no orphan and no duplicate",
  async fn() {
    for (const step of STEPS) {
      const t = new TestHome({ env: { PRISN_TEST_HOOKS: "1" } });
      let cli: Deno.ChildProcess | undefined;
      try {
        const port = freePort();
        const dir = t.project("api", { "main.py": SERVER("one") });
        const first = /v-[0-9a-f]{8}/.exec(await t.ok("deploy", dir, "--port", String(port)))![0];
        await waitFor(async () => (await httpGet(port))?.startsWith("one"), { what: "v1" });
        await Deno.writeTextFile(join(dir, "main.py"), SERVER("two"));
        const hold = join(t.home, "state", "test-hold-after");
        await Deno.writeTextFile(hold, step);
        cli = t.spawn("deploy", dir, "--port", String(port));
        await waitFor(() => Deno.stat(join(t.home, "state", "test-held")).then(() => true), {
          what: `the deploy to hold after ${step}`,
          timeoutMs: 30_000,
        });
        const killed = t.agentPid()!;
        Deno.kill(killed, "SIGKILL");
        await waitFor(() => !alive(killed), { what: "the agent to die" });
        await cli.output();
        cli = undefined;
        await Deno.remove(hold);

        // A new agent (the CLI starts it): one version, serving, nothing left of the old agent.
        const d = await waitFor(async () => {
          const detail = await t.json<Detail>("get", "api");
          const items = detail.replicas.items;
          return items.length === 1 && items.every((r) => r.ready) ? detail : undefined;
        }, { what: `the service back after a kill at ${step}`, timeoutMs: 30_000 });
        const second = d.version;
        console.log(
          `killed after ${step}: ${second === first ? "the old" : "the new"} version runs`,
        );
        if (step === "Activate") assert.notEqual(second, first, "activated: the new version");
        if (["Package", "Version", "Store", "Record", "RolledOut"].includes(step)) {
          assert.equal(second, first, `killed at ${step}: the old version`);
        }
        assert.deepEqual(d.replicas.items.map((r) => r.version), [second], `${step}: a mix`);
        const body = await waitFor(() => httpGet(port), { what: "an answer" });
        assert.equal(body.split(" ")[1], second, `${step}: serves what get says`);
        const running = await processesUnder(join(t.home, "deployments"));
        assert.equal(running.length, 1, `${step}: processes ${running} (orphan or duplicate)`);
        // Nothing stored that no record names.
        await t.ok("gc");
        const versions = (await t.json<{ version: string }[]>("history", "api")).map((h) =>
          h.version
        );
        const stored = [];
        for await (const e of Deno.readDir(join(t.home, "deployments", "default", "api"))) {
          if (e.name.startsWith("v-") || e.name.startsWith(".tmp-")) stored.push(e.name);
        }
        assert.deepEqual(stored.sort(), versions.sort(), `${step}: stored versions`);
      } finally {
        try {
          cli?.kill("SIGKILL");
          await cli?.output();
        } catch { /* gone */ }
        await t.close();
      }
    }
  },
});
