/**
 * Namespaces on one node, through the CLI and the local agent: the same name in two namespaces,
 * kept apart in every view; a port still the node's; bad names refused; and a home written before
 * namespaces (tests/fixtures/legacy_home, made by the release before them) migrated to `default`
 * in place.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { existsSync } from "node:fs";
import type { DeploymentSummary, EnvEntry, HistoryRow } from "../../runtime/api_types.ts";
import type { RunRecord } from "../../core/types.ts";
import {
  assertOneLineError,
  freePort,
  hasCommand,
  httpGet,
  scriptProject,
  TestHome,
  waitFor,
} from "../_helpers.ts";

const HAS_PYTHON = await hasCommand("python3");
const FIXTURES = new URL("../fixtures/", import.meta.url).pathname;

/** Runs of `args` (get jobs …) once `count` of them completed. */
function completedRuns(h: TestHome, count: number, ...args: string[]): Promise<RunRecord[]> {
  return waitFor(async () => {
    const runs = await h.json<RunRecord[]>("get", "jobs", ...args);
    return runs.filter((r) => r.status === "completed").length >= count ? runs : undefined;
  }, { what: `${count} completed run(s) of get jobs ${args.join(" ")}` });
}

Deno.test("the same name in two namespaces: apart in ls, get, logs, runs, env and delete", async () => {
  const h = new TestHome();
  try {
    const app = await scriptProject(
      h.dir,
      "app",
      '#!/bin/bash\necho "in $PRISN_NAMESPACE $GREETING"\n',
    );
    await h.ok("deploy", app, "--name", "report", "--env", "GREETING=a");
    assert.match(
      await h.ok("deploy", app, "--name", "report", "-n", "team-b", "--env", "GREETING=b"),
      /^team-b\/report v-[0-9a-f]{8} deployed: job/m,
    );

    // ls: the default namespace alone, as before; -n another; -A all, NAMESPACE first.
    const ls = await h.ok("ls");
    assert.match(ls, /^NAME\s+TYPE/);
    assert.equal(ls.trim().split("\n").length, 2, ls);
    assert.match(await h.ok("ls", "-n", "team-b"), /^report\s+job/m);
    const all = await h.ok("ls", "-A");
    assert.match(all, /^NAMESPACE\s+NAME\s+TYPE/);
    assert.match(all, /^default\s+report\s+job/m);
    assert.match(all, /^team-b\s+report\s+job/m);
    const listed = await h.json<DeploymentSummary[]>("ls", "-A");
    assert.deepEqual(listed.map((d) => [d.namespace, d.name]), [
      ["default", "report"],
      ["team-b", "report"],
    ]);
    assert.match(await h.ok("get", "report", "-n", "team-b"), /^Namespace:\s+team-b$/m);
    assert.match(await h.ok("get", "report"), /^Namespace:\s+default$/m);
    const status = await h.ok("status");
    assert.match(status, /^report\s+job\s/m);
    assert.match(status, /^team-b\/report\s+job\s/m, "status: every namespace's");

    // Runs, logs and env are each namespace's own.
    const runsB = await completedRuns(h, 1, "-n", "team-b");
    assert.deepEqual(runsB.map((r) => [r.namespace, r.deployment]), [["team-b", "report"]]);
    await completedRuns(h, 1);
    const runsAll = await h.json<RunRecord[]>("get", "jobs", "-A");
    assert.deepEqual(runsAll.map((r) => r.namespace).sort(), ["default", "team-b"]);
    const logsB = await h.ok("logs", "report", "-n", "team-b");
    assert.match(logsB, / in team-b b$/m);
    assert.doesNotMatch(logsB, /in default/);
    assert.match(await h.ok("logs", "report"), / in default a$/m);
    const env = await h.json<EnvEntry[]>("env", "report", "-n", "team-b");
    assert.deepEqual(env.map((e) => `${e.key}=${e.value}`), ["GREETING=b"]);
    assert.ok(existsSync(join(h.home, "deployments", "team-b", "report")));
    assert.ok(existsSync(join(h.home, "logs", "team-b", "report")));

    // Delete in one namespace leaves the other; the gone one reads as not found, in one line.
    await h.ok("delete", "report", "-n", "team-b", "--purge");
    assertOneLineError(
      await h.cli("get", "report", "-n", "team-b"),
      /^prisn: deployment "report" not found in namespace "team-b": see prisn ls -n team-b$/,
      "get of the deleted one",
    );
    assert.ok(!existsSync(join(h.home, "deployments", "team-b", "report")));
    assert.equal((await h.json<HistoryRow[]>("history", "report")).length, 1);

    // A namespace that is no DNS label is refused in one line, and nothing changes.
    assertOneLineError(
      await h.cli("deploy", app, "--name", "report", "-n", "Team_B"),
      /^prisn: namespace "Team_B" is not valid: use 1-63 lowercase letters, digits or '-'/,
      "a bad namespace",
    );
    assertOneLineError(
      await h.cli("ls", "-n", "-x-"),
      /^prisn: namespace "-x-" is not valid/,
      "ls in a bad namespace",
    );
    assert.deepEqual((await h.json<DeploymentSummary[]>("ls", "-A")).map((d) => d.namespace), [
      "default",
    ]);
  } finally {
    await h.close();
  }
});

Deno.test({
  name:
    "a service port stays the node's: another namespace asking for it is refused, nothing changes",
  ignore: !HAS_PYTHON,
  async fn() {
    const h = new TestHome();
    try {
      const server = Deno.readTextFileSync(join(FIXTURES, "services", "server.py"));
      const web = h.project("web", { "main.py": server, "message.txt": "default-web\n" });
      const port = freePort();
      await h.ok("deploy", web, "--name", "web", "--port", String(port));
      assertOneLineError(
        await h.cli("deploy", web, "--name", "web", "-n", "team-b", "--port", String(port)),
        new RegExp(
          `^prisn: port ${port} is taken by a deployment in another namespace: pick another --port \\(nothing changed\\)$`,
        ),
        "the same port from another namespace",
      );
      assertOneLineError(
        await h.cli("deploy", web, "--name", "web2", "--port", String(port)),
        new RegExp(`^prisn: port ${port} is taken by deployment "web"`),
        "the same port from another deployment of the namespace",
      );
      assert.deepEqual(await h.json("ls", "-n", "team-b"), []);
      assert.ok(!existsSync(join(h.home, "deployments", "team-b", "web")));
      assert.match((await httpGet(port)) ?? "", /^default-web web-0/);
    } finally {
      await h.close();
    }
  },
});

Deno.test("a home the release before namespaces wrote moves to default in place, and runs on", async () => {
  const h = new TestHome();
  try {
    Deno.mkdirSync(h.home, { recursive: true });
    const untar = await new Deno.Command("tar", {
      args: ["-xzf", join(FIXTURES, "legacy_home", "home.tar.gz"), "-C", h.home],
    }).output();
    assert.equal(untar.code, 0, new TextDecoder().decode(untar.stderr));
    // Its log days moved to today, so the 14-day retention keeps them whenever this runs.
    const today = new Date().toISOString().slice(0, 10);
    for (const name of ["report", "ticker"]) {
      for (const day of Deno.readDirSync(join(h.home, "logs", name))) {
        Deno.renameSync(join(h.home, "logs", name, day.name), join(h.home, "logs", name, today));
      }
    }

    const check = async () => {
      const listed = await h.json<DeploymentSummary[]>("ls", "-A");
      assert.deepEqual(listed.map((d) => [d.namespace, d.name, d.type]), [
        ["default", "report", "job"],
        ["default", "ticker", "service"],
      ]);
      const history = await h.json<HistoryRow[]>("history", "report");
      assert.equal(history.length, 2, "both versions of report");
      assert.equal(history.filter((v) => v.current).length, 1);
      const runs = await h.json<RunRecord[]>("get", "jobs", "report");
      assert.deepEqual(runs.map((r) => [r.namespace, r.deployment, r.status]), [
        ["default", "report", "completed"],
        ["default", "report", "completed"],
      ]);
      const logs = await h.ok("logs", "report");
      assert.match(logs, / report one$/m);
      assert.match(logs, / report two hi$/m);
      const env = await h.json<EnvEntry[]>("env", "report");
      assert.deepEqual(env.map((e) => `${e.key}=${e.value}`), ["GREETING=hi", "TOKEN=********"]);
      // The service runs again (the old agent had stopped it), under default: new lines come.
      await waitFor(
        async () => (await h.json<DeploymentSummary>("get", "ticker")).replicas.ready === 1,
        { what: "ticker's replica to be ready" },
      );
      const before = (await h.ok("logs", "ticker", "--tail", "1000")).split("\n").length;
      await waitFor(
        async () => (await h.ok("logs", "ticker", "--tail", "1000")).split("\n").length > before,
        { what: "ticker to log new lines" },
      );
    };
    await check();
    // In place: the old paths are under default now, nothing else is left beside them.
    assert.deepEqual(
      [...Deno.readDirSync(join(h.home, "deployments"))].map((e) => e.name).sort(),
      [".namespaces", "default"],
    );
    assert.ok(existsSync(join(h.home, "deployments", "default", "report", "current")));
    assert.ok(existsSync(join(h.home, "logs", "default", "ticker", today, "ticker-0.log")));
    // An agent restart keeps it all, and moves nothing twice.
    await h.ok("agent", "stop");
    await check();
    assert.ok(!existsSync(join(h.home, "deployments", "default", "default")));
    // A redeploy of report's current files (as the generator wrote them: not executable) is the
    // same version: version ids do not depend on the namespace.
    const app = join(h.dir, "report");
    Deno.mkdirSync(app);
    Deno.writeTextFileSync(join(app, "main.sh"), '#!/bin/bash\necho "report two $GREETING"\n');
    const out = await h.ok(
      "deploy",
      app,
      "--name",
      "report",
      "--env",
      "GREETING=hi",
      "--secret",
      "TOKEN=s3cret",
    );
    assert.match(out, /\(unchanged\)/);
  } finally {
    await h.close();
  }
});
