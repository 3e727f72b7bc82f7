import assert from "node:assert/strict";
import { join } from "node:path";
import type { RunRecord } from "../../core/types.ts";
import { alive, freePort, httpGet, TestHome, waitFor } from "../_helpers.ts";

const JOB = "#!/bin/bash\necho job-ran-ok\n";

Deno.test("deploy of a folder job runs it once, records the run and keeps its output in logs", async () => {
  const t = new TestHome();
  try {
    const dir = t.project("batch", { "main.sh": JOB, "data/input.txt": "x\n" });
    const out = await t.ok("deploy", dir);
    for (const step of ["Package", "Version", "Store", "Record", "Prepare", "Activate"]) {
      assert.match(out, new RegExp(`^${step}\\s`, "m"), `deploy output walks the ${step} step`);
    }
    const version = /v-[0-9a-f]{8}/.exec(out)![0];
    const runs = await waitFor(async () => {
      const r = await t.json<RunRecord[]>("get", "jobs");
      return r.length === 1 && r[0].status === "completed" ? r : undefined;
    }, { what: "the job's run to complete" });
    assert.equal(runs[0].deployment, "batch");
    assert.equal(runs[0].version, version);
    assert.equal(runs[0].exitCode, 0);
    assert.match(runs[0].id, /^run-[0-9a-f]{8}$/);
    const logs = await t.ok("logs", "batch", "--run", "latest");
    assert.match(logs, /^\d{4}-\d{2}-\d{2}T[\d:.]+Z job-ran-ok$/m, "timestamped output line");
    const day = new Date().toISOString().slice(0, 10);
    await Deno.stat(join(t.home, "logs", "default", "batch", day, `${runs[0].id}.log`));
    const table = await t.ok("get", "jobs");
    assert.match(table, /^ID\s+DEPLOYMENT\s+STATUS\s+STARTED\s+DURATION/m);

    await t.ok("run", "batch");
    await waitFor(
      async () =>
        (await t.json<RunRecord[]>("get", "jobs", "batch")).filter((r) => r.status === "completed")
          .length === 2,
      { what: "second run" },
    );
    const again = await t.json<RunRecord[]>("get", "jobs", "--limit", "1");
    assert.equal(again.length, 1);
    assert.equal(again[0].trigger, "manual");
  } finally {
    await t.close();
  }
});

Deno.test("a single script file deploys under its stem; identical redeploy is unchanged; new content is a new version", async () => {
  const t = new TestHome();
  try {
    const dir = t.project("files", { "nightly_report.sh": JOB });
    const file = join(dir, "nightly_report.sh");
    await t.ok("deploy", file);
    const d1 = await t.json("get", "nightly-report");
    assert.equal(d1.type, "job");
    assert.equal(d1.entrypoint, "nightly_report.sh");
    assert.equal(d1.runtime, "bash");
    await waitFor(async () =>
      (await t.json<RunRecord[]>("get", "jobs")).some((r) => r.status === "completed")
    );

    const same = await t.ok("deploy", file);
    assert.match(same, /unchanged/);
    assert.equal(
      (await t.json<RunRecord[]>("get", "jobs")).length,
      1,
      "unchanged deploy starts nothing",
    );

    Deno.writeTextFileSync(file, JOB + "echo two\n");
    await t.ok("deploy", file);
    const d2 = await t.json("get", "nightly-report");
    assert.notEqual(d2.version, d1.version);

    const history = await t.json<{ version: string; current: boolean; status: string }[]>(
      "history",
      "nightly-report",
    );
    assert.deepEqual(history.map((h) => h.version), [d2.version, d1.version]);
    assert.equal(history[0].current, true);
    assert.equal(history[1].status, "superseded");
    assert.match(
      await t.ok("history", "nightly-report"),
      /^\*\s+v-/m,
      "current marked in the table",
    );

    await t.ok("rollback", "nightly-report");
    assert.equal((await t.json("get", "nightly-report")).version, d1.version);
    await t.ok("rollback", "nightly-report", String(d2.version));
    assert.equal((await t.json("get", "nightly-report")).version, d2.version);
  } finally {
    await t.close();
  }
});

Deno.test("a service answers on its port, shows in status/ls/get, and an agent restart restores it", async () => {
  const t = new TestHome();
  try {
    const port = freePort();
    const dir = t.project("web", {
      "main.py": [
        "import http.server, os",
        "class H(http.server.BaseHTTPRequestHandler):",
        "    def do_GET(self):",
        "        b = os.environ['PRISN_REPLICA'].encode()",
        "        self.send_response(200); self.send_header('Content-Length', str(len(b))); self.end_headers(); self.wfile.write(b)",
        "http.server.HTTPServer(('127.0.0.1', int(os.environ['PORT'])), H).serve_forever()",
      ].join("\n"),
    });
    const out = await t.ok("deploy", dir, "--port", String(port));
    assert.match(out, new RegExp(`listening on :${port}`));
    assert.equal(await httpGet(port), "web-0");

    const get = await t.json<
      { port: number; replicas: { desired: number; ready: number; items: { pid: number }[] } }
    >("get", "web");
    assert.equal(get.port, port);
    assert.ok(
      (get as unknown as { events: { kind: string }[] }).events.some((e) =>
        e.kind === "ReplicaReady"
      ),
      "the readiness pass is an event",
    );
    assert.deepEqual([get.replicas.desired, get.replicas.ready], [1, 1]);
    const status = await t.ok("status");
    assert.match(status, /^Node: /m);
    assert.match(status, new RegExp(`web\\s+service\\s+v-[0-9a-f]{8}\\s+1/1 ready on :${port}`));
    assert.match(
      await t.ok("ls"),
      /^NAME\s+TYPE\s+REPLICAS\s+VERSION\s+AGE\nweb\s+service\s+1\/1\s+v-/m,
    );

    const oldPid = get.replicas.items[0].pid;
    await t.ok("agent", "stop");
    await waitFor(() => !alive(oldPid), { what: "replica stopped with the agent" });
    assert.equal(await httpGet(port), undefined);

    // Any command brings the agent back, and the agent brings the service back.
    await t.ok("status");
    assert.equal(await waitFor(() => httpGet(port), { what: "service restored" }), "web-0");
  } finally {
    await t.close();
  }
});

Deno.test("delete stops everything and removes records and files but keeps logs unless --purge", async () => {
  const t = new TestHome();
  try {
    const port = freePort();
    const dir = t.project("gone", {
      "main.py":
        "import http.server, os\nhttp.server.HTTPServer(('127.0.0.1', int(os.environ['PORT'])), http.server.SimpleHTTPRequestHandler).serve_forever()\n",
    });
    await t.ok("deploy", dir, "--port", String(port));
    assert.notEqual(await httpGet(port), undefined); // the request is logged by the service
    await waitFor(() => Deno.stat(join(t.home, "logs", "default", "gone")).then(() => true), {
      what: "log",
    });
    const pid =
      (await t.json<{ replicas: { items: { pid: number }[] } }>("get", "gone")).replicas.items[0]
        .pid;
    await t.ok("delete", "gone");
    assert.equal(alive(pid), false);
    assert.notEqual((await t.cli("get", "gone")).code, 0);
    await assert.rejects(Deno.stat(join(t.home, "deployments", "default", "gone")));
    await Deno.stat(join(t.home, "logs", "default", "gone")); // kept

    await t.ok("deploy", dir, "--port", String(freePort()));
    await t.ok("delete", "gone", "--purge");
    await assert.rejects(Deno.stat(join(t.home, "logs", "default", "gone")));
  } finally {
    await t.close();
  }
});

Deno.test("two CLI calls racing on a fresh home start one agent", async () => {
  const t = new TestHome();
  try {
    const results = await Promise.all([t.cli("ls"), t.cli("ls"), t.cli("status")]);
    for (const r of results) assert.equal(r.code, 0, r.stderr);
    const agents = [...Deno.readDirSync("/proc")].filter((e) => /^\d+$/.test(e.name)).filter(
      (e) => {
        try {
          const cmd = Deno.readTextFileSync(`/proc/${e.name}/cmdline`).split("\0");
          const env = Deno.readTextFileSync(`/proc/${e.name}/environ`);
          return cmd.includes("agent") && cmd.includes("run") &&
            env.includes(`PRISN_HOME=${t.home}\0`);
        } catch {
          return false;
        }
      },
    );
    assert.equal(agents.length, 1);
    const sock = Deno.statSync(join(t.home, "prisn.sock"));
    assert.equal(sock.mode! & 0o777, 0o600);
  } finally {
    await t.close();
  }
});

Deno.test("bad input gets a one-line error, a non-zero exit, and changes nothing", async () => {
  const t = new TestHome();
  try {
    const good = t.project("good", { "main.sh": JOB });
    await t.ok("deploy", good);
    const before = await t.ok("ls", "-o", "json");
    const empty = join(t.dir, "empty");
    Deno.mkdirSync(empty);
    const noEntry = t.project("noentry", { "README.md": "hi\n", "lib.txt": "x\n" });
    const badToml = t.project("badtoml", { "main.sh": JOB, "prisn.toml": 'name = "x"\nport = \n' });
    const cases: Array<[string[], RegExp]> = [
      [["deploy", join(t.dir, "missing")], /does not exist/],
      [["deploy", empty], /no files to deploy/],
      [["deploy", noEntry], /no entrypoint found/],
      [["deploy", good, "--name", "Bad_Name"], /name "Bad_Name" is not valid/],
      [["deploy", good, "--runtime", "cobol"], /runtime/],
      [["deploy", badToml], /prisn\.toml:2:\d+/],
      [["rollback", "good", "v-00000000"], /version "v-00000000" of good not found/],
      [["scale", "good", "-1"], /not valid|unknown option/],
      [["scale", "good", "two"], /replicas "two" is not valid/],
      [["deploy", good, "--name", "svc", "--replicas", "1.5"], /replicas "1.5" is not valid/],
      [["get", "nope"], /deployment "nope" not found/],
      [["logs", "nope"], /deployment "nope" not found/],
      [["delete", "nope"], /deployment "nope" not found/],
      [["frobnicate"], /unknown command/],
    ];
    for (const [args, message] of cases) {
      const r = await t.cli(...args);
      assert.notEqual(r.code, 0, `prisn ${args.join(" ")} should fail`);
      assert.match(r.stderr, message, `prisn ${args.join(" ")}: ${r.stderr}`);
      assert.equal(r.stderr.trim().split("\n").length, 1, `one line: ${r.stderr}`);
      assert.match(r.stderr, /^prisn: /);
    }
    assert.equal(await t.ok("ls", "-o", "json"), before, "nothing changed");
  } finally {
    await t.close();
  }
});

Deno.test("an unwritable PRISN_HOME is refused with a one-line error", async () => {
  const t = new TestHome();
  try {
    const file = join(t.dir, "not-a-dir");
    Deno.writeTextFileSync(file, "");
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--quiet", new URL("../../main.ts", import.meta.url).pathname, "ls"],
      env: { PRISN_HOME: join(file, "home") },
    }).output();
    const stderr = new TextDecoder().decode(out.stderr);
    assert.notEqual(out.code, 0);
    assert.match(stderr, /^prisn: PRISN_HOME .* is not writable/);
    assert.equal(stderr.trim().split("\n").length, 1);
  } finally {
    await t.close();
  }
});

Deno.test("logs -f follows new lines of a service until interrupted; --tail limits the backlog", async () => {
  const t = new TestHome();
  try {
    const dir = t.project("ticker", {
      "main.sh": '#!/bin/bash\ni=0\nwhile true; do i=$((i+1)); echo "tick $i"; sleep 0.2; done\n',
    });
    await t.ok("deploy", dir, "--replicas", "1");
    await waitFor(async () => (await t.ok("logs", "ticker")).includes("tick 3"), { what: "ticks" });
    assert.equal((await t.ok("logs", "ticker", "--tail", "2")).trim().split("\n").length, 2);
    assert.match(await t.ok("logs", "ticker", "0", "--tail", "1"), /tick \d+/, "replica by index");

    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        "--quiet",
        new URL("../../main.ts", import.meta.url).pathname,
        "logs",
        "ticker",
        "-f",
        "--tail",
        "0",
      ],
      env: { PRISN_HOME: t.home },
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let seen = "";
    try {
      await waitFor(async () => {
        const { value } = await reader.read();
        seen += value ?? "";
        return (seen.match(/tick \d+/g) ?? []).length >= 2;
      }, { what: "followed lines", timeoutMs: 15_000 });
    } finally {
      child.kill("SIGINT");
      reader.releaseLock();
      await child.stdout.cancel().catch(() => {});
      await child.stderr.cancel().catch(() => {});
    }
    const status = await child.status;
    assert.equal(status.code, 0, "Ctrl-C ends -f cleanly");
  } finally {
    await t.close();
  }
});

Deno.test("list and get commands print YAML with -o yaml", async () => {
  const t = new TestHome();
  try {
    await t.ok("deploy", t.project("y", { "main.sh": JOB }));
    assert.match(await t.ok("get", "y", "-o", "yaml"), /^name: y$/m);
    assert.match(await t.ok("ls", "-o", "yaml"), /^- name: y$/m);
    const bad = await t.cli("ls", "-o", "xml");
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /output format "xml" is not supported/);
  } finally {
    await t.close();
  }
});

Deno.test("get nodes on a single node lists this node alone, ready, with what it runs", async () => {
  const h = new TestHome();
  try {
    const dir = h.project("idle", { "main.sh": "exec sleep 600\n" });
    await h.ok("deploy", dir, "--name", "idle", "--replicas", "2");
    const nodes = await waitFor(async () => {
      const all = await h.json<Array<{ node: string; status: string; replicas: number }>>(
        "get",
        "nodes",
      );
      return all[0]?.replicas === 2 ? all : undefined;
    }, { what: "two replicas counted" });
    assert.equal(nodes.length, 1);
    assert.equal(nodes[0].status, "ready");
    assert.doesNotMatch((await h.ok("status")).split("\n")[0], /CLUSTER/);
    const bad = await h.cli("get", "nodes", "extra");
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /unexpected "extra": use prisn get nodes/);
  } finally {
    await h.close();
  }
});
