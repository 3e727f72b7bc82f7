/**
 * Cronjobs and runs end to end: the real CLI, a real agent in a temp PRISN_HOME, real bash
 * processes. Schedules here are seconds-level, so each test watches the wall clock for a few
 * seconds; everything else is polled with waitFor.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import type { EventRecord, RunRecord } from "../../core/types.ts";
import { alive, finished, TestHome, waitFor } from "../_helpers.ts";

interface Detail {
  name: string;
  createdAt: number;
  schedule?: string;
  suspended: boolean;
  next?: string;
  nextAt?: number;
  timezone?: string;
  nextRuns?: string[];
  events: EventRecord[];
}

const EVERY_SECOND = "* * * * * *";

/** A project folder holding main.sh (the script) and prisn.toml. */
function cronProject(h: TestHome, name: string, toml: string, script: string): string {
  return h.project(name, {
    "main.sh": `#!/bin/bash\n${script}\n`,
    "prisn.toml": toml,
  });
}

function runsOf(h: TestHome, name: string): Promise<RunRecord[]> {
  return h.json<RunRecord[]>("get", "jobs", name, "--limit", "100");
}

function detailOf(h: TestHome, name: string): Promise<Detail> {
  return h.json<Detail>("get", name);
}

const byScheduled = (a: RunRecord, b: RunRecord) => a.scheduledAt! - b.scheduledAt!;
const byStarted = (a: RunRecord, b: RunRecord) => (a.startedAt ?? 0) - (b.startedAt ?? 0);
const iso = (ms: number) => new Date(ms).toISOString();

/** waitFor for a condition that answers its value once it holds (false/undefined until then). */
async function until<T>(
  condition: () => Promise<T | false | undefined>,
  options: Parameters<typeof waitFor>[1],
): Promise<T> {
  return (await waitFor(condition, options)) as T;
}

/** Waits for a moment on the wall clock (to line up with a schedule). */
function sleepUntil(at: number): Promise<void> {
  return new Promise((r) => setTimeout(r, Math.max(0, at - Date.now())));
}

/** Suspends a cronjob and waits until none of its runs is still active; returns its runs. */
async function quiesce(h: TestHome, name: string): Promise<RunRecord[]> {
  await h.ok("suspend", name);
  return await until(async () => {
    const runs = await runsOf(h, name);
    return runs.every(finished) && runs;
  }, { timeoutMs: 15_000, what: `${name}'s runs to finish` });
}

/** No two runs were active at once: each started after the one before it had finished. */
function assertOneAtATime(runs: RunRecord[]): void {
  const sorted = runs.filter((r) => r.startedAt !== undefined).sort(byStarted);
  for (let i = 1; i < sorted.length; i++) {
    const prev = sorted[i - 1];
    assert.ok(
      prev.finishedAt !== undefined && sorted[i].startedAt! >= prev.finishedAt,
      `${sorted[i].id} started at ${iso(sorted[i].startedAt!)} while ${prev.id} ` +
        `(${prev.status}) was still active (finished ${
          prev.finishedAt ? iso(prev.finishedAt) : "never"
        })`,
    );
  }
}

function runIdFrom(output: string): string {
  const m = /started (run-[0-9a-f]+)/.exec(output);
  assert.ok(m, `no run id in: ${output}`);
  return m[1];
}

Deno.test("an every-second cronjob fires every tick for 10 s: no gaps, no doubles, run id and tick in its env", async () => {
  const h = new TestHome();
  try {
    const dir = cronProject(
      h,
      "tick",
      `schedule = "${EVERY_SECOND}"\nhistory = { successful = 100 }\n`,
      'echo "id=$PRISN_RUN_ID at=$PRISN_SCHEDULED_TIME"',
    );
    await h.ok("deploy", dir);
    const { createdAt } = await detailOf(h, "tick");
    await waitFor(async () => (await runsOf(h, "tick")).length >= 11, {
      timeoutMs: 20_000,
      intervalMs: 500,
      what: "11 runs",
    });
    const runs = (await quiesce(h, "tick")).sort(byScheduled);

    assert.ok(runs.length >= 11, `${runs.length} runs`);
    const ticks = runs.map((r) => r.scheduledAt!);
    assert.equal(new Set(ticks).size, ticks.length, `a tick ran twice: ${ticks.map(iso)}`);
    for (let i = 1; i < ticks.length; i++) {
      assert.equal(
        ticks[i] - ticks[i - 1],
        1000,
        `gap between ${iso(ticks[i - 1])} and ${iso(ticks[i])}`,
      );
    }
    assert.ok(
      ticks[0] > createdAt && ticks[0] <= createdAt + 2000,
      `first tick ${iso(ticks[0])} is not the first after the deploy at ${iso(createdAt)}`,
    );
    for (const r of runs) {
      assert.equal(r.trigger, "schedule");
      assert.equal(r.status, "completed", `${r.id}: ${r.status} ${r.reason ?? ""}`);
      assert.equal(r.exitCode, 0);
      const late = r.startedAt! - r.scheduledAt!;
      assert.ok(late >= 0 && late < 1000, `${r.id} started ${late} ms after its tick`);
    }

    for (const r of [runs[0], runs[runs.length - 1]]) {
      const log = await h.ok("logs", "tick", "--run", r.id);
      assert.match(log, new RegExp(`id=${r.id} at=${iso(r.scheduledAt!).replaceAll(".", "\\.")}`));
    }
  } finally {
    await h.close();
  }
});

Deno.test('concurrency "forbid" skips ticks while a run is active and records each skip', async () => {
  const h = new TestHome();
  try {
    const dir = cronProject(
      h,
      "slow",
      `schedule = "${EVERY_SECOND}"\nconcurrency = "forbid"\n`,
      "sleep 3",
    );
    await h.ok("deploy", dir);
    await waitFor(async () => (await runsOf(h, "slow")).length >= 2, {
      timeoutMs: 15_000,
      intervalMs: 250,
      what: "a second run",
    });
    await h.ok("suspend", "slow");
    const runs = (await runsOf(h, "slow")).sort(byScheduled);

    assertOneAtATime(runs);
    for (let i = 1; i < runs.length; i++) {
      const gap = runs[i].scheduledAt! - runs[i - 1].scheduledAt!;
      // 3 s of sleep: the next two or three ticks are skipped, the first one after it fires.
      assert.ok(gap >= 3000 && gap <= 5000, `runs ${gap} ms apart`);
    }
    const { events } = await detailOf(h, "slow");
    const skips = events.filter((e) => e.kind === "TickSkipped");
    assert.ok(skips.length >= 2 && runs.length >= 2, `events: ${events.map((e) => e.kind)}`);
    assert.match(skips[0].message, /forbid/);
  } finally {
    await h.close();
  }
});

Deno.test('concurrency "replace" stops the active run and starts the new one', async () => {
  const h = new TestHome();
  try {
    const dir = cronProject(
      h,
      "swap",
      `schedule = "${EVERY_SECOND}"\nconcurrency = "replace"\n`,
      "sleep 3",
    );
    await h.ok("deploy", dir);
    await waitFor(async () => (await runsOf(h, "swap")).length >= 3, {
      timeoutMs: 15_000,
      intervalMs: 250,
      what: "a third run",
    });
    await h.ok("suspend", "swap");
    const runs = (await runsOf(h, "swap")).sort(byScheduled);

    assertOneAtATime(runs);
    const replaced = runs.slice(0, -1); // the newest is left to finish
    assert.ok(replaced.length >= 2);
    for (let i = 0; i < replaced.length; i++) {
      const r = replaced[i];
      assert.equal(r.status, "failed", `${r.id} ${r.status}`);
      assert.match(r.reason ?? "", /replaced/);
      assert.equal(runs[i + 1].scheduledAt! - r.scheduledAt!, 1000, "each tick started a run");
      assert.ok(r.finishedAt! - r.startedAt! < 2500, `${r.id} ran its full 3 s`);
      assert.equal(alive(r.pid!), false, `${r.id}'s process ${r.pid} is still alive`);
    }
    const { events } = await detailOf(h, "swap");
    assert.ok(events.some((e) => e.kind === "RunReplaced"), `events: ${events.map((e) => e.kind)}`);
  } finally {
    await h.close();
  }
});

Deno.test({
  name: 'concurrency "replace" never has two runs at once, even when a run takes its time to stop',
}, async () => {
  const h = new TestHome();
  try {
    // SIGTERM makes the script linger 2 s before it exits: ticks arrive while it is stopping.
    const dir = cronProject(
      h,
      "linger",
      `schedule = "${EVERY_SECOND}"\nconcurrency = "replace"\nstop_grace = "5s"\n`,
      "trap 'sleep 2; exit 0' TERM\nsleep 30 &\nwait",
    );
    await h.ok("deploy", dir);
    await waitFor(async () => (await runsOf(h, "linger")).length >= 3, {
      timeoutMs: 20_000,
      intervalMs: 250,
      what: "a third run",
    });
    await h.ok("suspend", "linger");
    assertOneAtATime(await runsOf(h, "linger"));
  } finally {
    await h.close();
  }
});

Deno.test("a run over its timeout is stopped, its processes gone, and recorded as timed out", async () => {
  const h = new TestHome();
  try {
    const dir = h.project("stuck", {
      "main.sh": '#!/bin/bash\nsleep 30 &\necho "child $!"\nwait\n',
      "prisn.toml": 'type = "job"\ntimeout = "1s"\n',
    });
    await h.ok("deploy", dir); // a job runs once on deploy: it times out too
    const asked = Date.now();
    const id = runIdFrom(await h.ok("run", "stuck"));
    const run = await until(async () => {
      const r = (await runsOf(h, "stuck")).find((x) => x.id === id);
      return r && finished(r) && r;
    }, { timeoutMs: 8_000, what: "the run to end" });
    const took = Date.now() - asked;

    assert.equal(run.status, "failed");
    assert.match(run.reason ?? "", /^timed out/);
    assert.equal(run.trigger, "manual");
    const ran = run.finishedAt! - run.startedAt!;
    assert.ok(ran >= 1000 && ran < 3000, `ran ${ran} ms`);
    assert.ok(took < 4000, `the CLI saw it end after ${took} ms`);
    assert.equal(alive(run.pid!), false, `script ${run.pid} still alive`);
    const child = /child (\d+)/.exec(await h.ok("logs", "stuck", "--run", id));
    assert.ok(child, "the script logged its child's pid");
    assert.equal(alive(Number(child[1])), false, `its sleep ${child[1]} still alive`);
    const all = await runsOf(h, "stuck");
    assert.ok(all.every((r) => r.status === "failed" && /^timed out/.test(r.reason ?? "")));
  } finally {
    await h.close();
  }
});

Deno.test("retries: a failing run is tried again with backoff, each attempt linked to the first", async () => {
  const h = new TestHome();
  try {
    const dir = h.project("flaky", {
      "main.sh": "#!/bin/bash\necho attempt\nexit 1\n",
      "prisn.toml": 'type = "job"\nretries = 2\nretry_backoff = "200ms"\n',
    });
    await h.ok("deploy", dir);
    const runs = await until(async () => {
      const rs = await runsOf(h, "flaky");
      return rs.length >= 3 && rs.every(finished) && rs;
    }, { timeoutMs: 10_000, what: "three finished attempts" });
    runs.sort((a, b) => a.attempt - b.attempt);
    const [first, second, third] = runs;

    assert.deepEqual(runs.map((r) => r.attempt), [1, 2, 3]);
    assert.deepEqual(runs.map((r) => r.trigger), ["deploy", "retry", "retry"]);
    assert.equal(first.parent, undefined);
    assert.equal(second.parent, first.id);
    assert.equal(third.parent, first.id);
    for (const r of runs) {
      assert.equal(r.status, "failed");
      assert.equal(r.exitCode, 1);
    }
    assert.ok(second.startedAt! - first.finishedAt! >= 200, "first backoff shorter than 200ms");
    assert.ok(third.startedAt! - second.finishedAt! >= 400, "second backoff not doubled");
    // A fourth attempt would have come 800 ms after the third.
    await sleepUntil(third.finishedAt! + 1500);
    assert.equal((await runsOf(h, "flaky")).length, 3, "retried past retries = 2");
    const { events } = await detailOf(h, "flaky");
    assert.equal(events.filter((e) => e.kind === "RunRetry").length, 2);
  } finally {
    await h.close();
  }
});

Deno.test("agent down across ticks: catchup latest runs the latest missed tick once, catchup none runs none", async () => {
  const h = new TestHome();
  try {
    // Three ticks in a row (B, B+1 s, B+2 s), a few seconds from now; nothing else this minute.
    // The agent is down from before B until B+7.5 s, so at restart the latest missed tick is >5.5 s
    // late: past the 5 s on-time tolerance, within the 1 h starting deadline.
    const burst = Math.ceil((Date.now() + 6000) / 1000) * 1000;
    const seconds = [0, 1, 2].map((i) => new Date(burst + i * 1000).getUTCSeconds()).join(",");
    const zone = 'timezone = "UTC"\nstarting_deadline = "1h"\n';
    const toml = (schedule: string, catchup: string) =>
      `schedule = "${schedule}"\ncatchup = "${catchup}"\n${zone}`;
    const echo = 'echo "at=$PRISN_SCHEDULED_TIME"';
    const burstSchedule = `${seconds} * * * * *`;
    await h.ok("deploy", cronProject(h, "late", toml(burstSchedule, "latest"), echo));
    await h.ok("deploy", cronProject(h, "never", toml(burstSchedule, "none"), echo));
    await h.ok("deploy", cronProject(h, "each", toml(EVERY_SECOND, "latest"), echo));
    await h.ok("agent", "stop");
    const stopped = Date.now();
    assert.ok(stopped < burst, `deploying and stopping took until ${iso(stopped)}: too slow`);

    await sleepUntil(burst + 7500);
    const restartAt = Date.now();
    await h.ok("status"); // any command starts the agent again

    const lateRun = await until(async () => {
      const r = (await runsOf(h, "late")).find((x) => x.scheduledAt === burst + 2000);
      return r && finished(r) && r;
    }, { timeoutMs: 5_000, what: "the catch-up run" });
    const neverEvents = await until(async () => {
      const { events } = await detailOf(h, "never");
      return events.some((e) => e.kind === "TicksMissed") && events;
    }, { what: "the missed ticks of never" });
    const eachEvents = await until(async () => {
      const { events } = await detailOf(h, "each");
      return events.some((e) => e.kind === "TicksMissed") && events;
    }, { what: "the missed ticks of each" });

    // catchup = "latest": one run for the down time, for the latest tick of the three.
    const down = (r: RunRecord) => r.scheduledAt! > stopped && r.scheduledAt! < restartAt;
    const late = (await runsOf(h, "late")).filter(down);
    assert.deepEqual(late.map((r) => iso(r.scheduledAt!)), [iso(burst + 2000)]);
    assert.equal(lateRun.trigger, "schedule");
    assert.equal(lateRun.status, "completed");
    assert.ok(lateRun.startedAt! >= restartAt, "the catch-up ran before the restart?");
    const lateEvents = (await detailOf(h, "late")).events;
    const missed = lateEvents.find((e) => e.kind === "TicksMissed");
    assert.match(missed?.message ?? "", /missed 2 scheduled runs/);
    assert.ok(
      lateEvents.some((e) => e.kind === "CatchUp" && e.message.includes(iso(burst + 2000))),
      `events: ${lateEvents.map((e) => `${e.kind}: ${e.message}`).join("; ")}`,
    );

    // catchup = "none": nothing for the down time, all three reported missed.
    assert.deepEqual((await runsOf(h, "never")).filter(down), []);
    const neverMissed = neverEvents.find((e) => e.kind === "TicksMissed")!;
    assert.match(neverMissed.message, /missed 3 scheduled runs .*catchup is "none"/);

    // Every second: no burst of the ~8 ticks missed; at most the restart's own second ran.
    const each = (await runsOf(h, "each")).sort(byScheduled);
    const restartSecond = restartAt - (restartAt % 1000);
    const burstRuns = each.filter((r) => down(r) && r.scheduledAt! < restartSecond);
    assert.deepEqual(burstRuns.map((r) => iso(r.scheduledAt!)), [], "ran ticks of the down time");
    const ticks = each.map((r) => r.scheduledAt!);
    assert.equal(new Set(ticks).size, ticks.length, "a tick ran twice");
    const eachMissed = eachEvents.find((e) => e.kind === "TicksMissed")!;
    const count = Number(/missed (\d+)/.exec(eachMissed.message)?.[1]);
    assert.ok(count >= 6, eachMissed.message);
  } finally {
    await h.close();
  }
});

Deno.test("suspend stops a cronjob firing; resume fires again without a burst", async () => {
  const h = new TestHome();
  try {
    const dir = cronProject(h, "pause", `schedule = "${EVERY_SECOND}"\n`, "echo run");
    await h.ok("deploy", dir);
    await waitFor(async () => (await runsOf(h, "pause")).length >= 2, { what: "two runs" });
    await h.ok("suspend", "pause");
    const suspendedAt = Date.now();
    assert.equal((await detailOf(h, "pause")).suspended, true);
    assert.match(await h.ok("status"), /pause\s+cronjob\s+\S+\s+suspended/);
    await sleepUntil(suspendedAt + 3000);
    const whileSuspended = (await runsOf(h, "pause")).filter((r) => r.scheduledAt! > suspendedAt);
    assert.deepEqual(whileSuspended.map((r) => iso(r.scheduledAt!)), [], "fired while suspended");

    const resumeAsked = Date.now();
    await h.ok("resume", "pause");
    await waitFor(
      async () =>
        (await runsOf(h, "pause")).filter((r) => r.scheduledAt! > resumeAsked).length >= 2,
      { what: "two runs after resume" },
    );
    const runs = await quiesce(h, "pause");
    const after = runs.filter((r) => r.scheduledAt! > suspendedAt).sort(byScheduled);
    // Only the tick of the resume's own second may be a little late; none from the pause.
    assert.ok(
      after[0].scheduledAt! >= resumeAsked - 1000,
      `ran ${iso(after[0].scheduledAt!)}, a tick of the pause (resumed ${iso(resumeAsked)})`,
    );
    const ticks = after.map((r) => r.scheduledAt!);
    for (let i = 1; i < ticks.length; i++) assert.equal(ticks[i] - ticks[i - 1], 1000);
  } finally {
    await h.close();
  }
});

Deno.test({
  name: "suspend and resume say what they did in plain words",
}, async () => {
  const h = new TestHome();
  try {
    await h.ok("deploy", cronProject(h, "nap", 'schedule = "0 3 * * *"\n', "true"));
    assert.equal((await h.ok("suspend", "nap")).trim(), "nap suspended");
    assert.equal((await h.ok("resume", "nap")).trim(), "nap resumed");
    const { events } = await detailOf(h, "nap");
    assert.deepEqual(
      events.filter((e) => e.kind === "Suspended" || e.kind === "Resumed").map((e) => e.message),
      ["cronjob resumed", "cronjob suspended"],
    );
    await h.ok("deploy", h.project("oneshot", { "main.sh": "#!/bin/bash\ntrue\n" }));
    const refused = await h.cli("suspend", "oneshot");
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /only cronjobs can be suspended$/m);
  } finally {
    await h.close();
  }
});

Deno.test("prisn run NAME --env K=V sets K for that run only; get jobs -o json has exit codes", async () => {
  const h = new TestHome();
  try {
    const dir = h.project("once", {
      "main.sh": '#!/bin/bash\necho "K=${K:-unset}"\nexit "${CODE:-0}"\n',
    });
    const deployed = await h.json<{ runId: string }>("deploy", dir);
    const withEnv = runIdFrom(await h.ok("run", "once", "--env", "K=V", "--env", "CODE=3"));
    const plain = runIdFrom(await h.ok("run", "once"));
    const runs = await until(async () => {
      const rs = await runsOf(h, "once");
      return rs.length === 3 && rs.every(finished) && rs;
    }, { what: "three finished runs" });
    const get = (id: string) => runs.find((r) => r.id === id)!;

    assert.equal(get(deployed.runId).exitCode, 0);
    assert.equal(get(deployed.runId).status, "completed");
    assert.equal(get(withEnv).exitCode, 3);
    assert.equal(get(withEnv).status, "failed");
    assert.equal(get(withEnv).trigger, "manual");
    assert.equal(get(plain).exitCode, 0);
    assert.match(await h.ok("logs", "once", "--run", withEnv), /K=V$/m);
    assert.match(await h.ok("logs", "once", "--run", plain), /K=unset$/m);
    assert.match(await h.ok("logs", "once", "--run", deployed.runId), /K=unset$/m);
    const bad = await h.cli("run", "once", "--env", "1X=2");
    assert.notEqual(bad.code, 0);
    assert.equal(bad.stderr.trim().split("\n").length, 1, bad.stderr);
  } finally {
    await h.close();
  }
});

Deno.test("a bad schedule or time zone is refused at deploy with one line, nothing recorded", async () => {
  const h = new TestHome();
  try {
    const script = join(h.project("bad", { "job.sh": "#!/bin/bash\necho hi\n" }), "job.sh");
    const tomlDir = cronProject(
      h,
      "badzone",
      'schedule = "0 2 * * *"\ntimezone = "Mars/Base"\n',
      "true",
    );
    const cases: [string[], RegExp][] = [
      [
        ["deploy", script, "--schedule", "61 * * * *"],
        /"61 \* \* \* \*".*minute field must be 0-59/,
      ],
      [["deploy", script, "--schedule", "0 2 * * *", "--timezone", "Mars/Base"], /Mars\/Base/],
      [["deploy", tomlDir], /timezone.*IANA/],
    ];
    for (const [args, message] of cases) {
      const r = await h.cli(...args);
      assert.notEqual(r.code, 0, `${args.join(" ")} was accepted`);
      const lines = r.stderr.trim().split("\n");
      assert.equal(lines.length, 1, r.stderr);
      assert.match(lines[0], message);
    }
    assert.deepEqual(await h.json("ls"), []);
    assert.deepEqual(await h.json("get", "jobs"), []);
    const stored: string[] = [];
    try {
      for (const e of Deno.readDirSync(join(h.home, "deployments", "default"))) stored.push(e.name);
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e; // no deployments folder: fine
    }
    assert.deepEqual(stored, []);
  } finally {
    await h.close();
  }
});

Deno.test("status shows the next fire time; get NAME -o json has the zone and the next 3 runs", async () => {
  const h = new TestHome();
  try {
    const dir = cronProject(
      h,
      "lunch",
      'schedule = "30 12 * * *"\ntimezone = "Europe/Paris"\n',
      "true",
    );
    await h.ok("deploy", dir);
    const d = await detailOf(h, "lunch");
    assert.equal(d.timezone, "Europe/Paris");
    assert.equal(d.nextRuns?.length, 3);
    const paris = new Intl.DateTimeFormat("en-GB", {
      timeZone: "Europe/Paris",
      hour: "2-digit",
      minute: "2-digit",
      hourCycle: "h23",
    });
    const times = d.nextRuns!.map((t) => Date.parse(t));
    assert.ok(times[0] > Date.now() && times[0] - Date.now() <= 86_400_000 + 3_600_000);
    for (const t of times) assert.equal(paris.format(t), "12:30");
    for (let i = 1; i < 3; i++) {
      const gap = times[i] - times[i - 1];
      assert.ok(Math.abs(gap - 86_400_000) <= 3_600_000, `next runs ${gap} ms apart`);
    }
    const status = await h.ok("status");
    assert.match(
      status,
      /lunch\s+cronjob\s+\S+\s+next: ([A-Z][a-z]{2} \d{1,2} )?12:30, no runs yet/,
    );
  } finally {
    await h.close();
  }
});

Deno.test("history limits keep the newest successful and failed runs and delete the older runs' logs", async () => {
  const h = new TestHome();
  try {
    const fired = join(h.dir, "fired");
    // Ticks of odd seconds fail, of even seconds succeed; each run notes "ID EXIT" in FIRED.
    const dir = cronProject(
      h,
      "trim",
      `schedule = "${EVERY_SECOND}"\nhistory = { successful = 3, failed = 2 }\n` +
        `[env]\nFIRED = "${fired}"\n`,
      "s=${PRISN_SCHEDULED_TIME:17:2}\ncode=$((10#$s % 2))\n" +
        'echo "tick $PRISN_SCHEDULED_TIME"\necho "$PRISN_RUN_ID $code" >> "$FIRED"\nexit $code',
    );
    await h.ok("deploy", dir);
    const firedRuns = async () => {
      const text = await Deno.readTextFile(fired).catch(() => "");
      const lines = text.trim().split("\n").filter(Boolean).map((l) => l.split(" "));
      return {
        ok: lines.filter(([, code]) => code === "0").map(([id]) => id),
        failed: lines.filter(([, code]) => code !== "0").map(([id]) => id),
      };
    };
    await waitFor(async () => {
      const { ok, failed } = await firedRuns();
      return ok.length >= 4 && failed.length >= 3; // both limits exceeded
    }, { timeoutMs: 20_000, intervalMs: 250, what: "4 successful and 3 failed runs" });
    const runs = await quiesce(h, "trim");
    const { ok, failed } = await firedRuns();

    const kept = (status: string) => runs.filter((r) => r.status === status).map((r) => r.id);
    assert.deepEqual(kept("completed").sort(), ok.slice(-3).sort(), "the newest 3 successes");
    assert.deepEqual(kept("failed").sort(), failed.slice(-2).sort(), "the newest 2 failures");
    const pruned = [...ok.slice(0, -3), ...failed.slice(0, -2)];
    const gone = await h.cli("logs", "trim", "--run", pruned[0]);
    assert.notEqual(gone.code, 0, `logs of pruned ${pruned[0]}: ${gone.stdout}`);

    const logs: string[] = [];
    for (const day of Deno.readDirSync(join(h.home, "logs", "default", "trim"))) {
      for (const f of Deno.readDirSync(join(h.home, "logs", "default", "trim", day.name))) {
        logs.push(f.name);
      }
    }
    assert.deepEqual(logs.sort(), runs.map((r) => `${r.id}.log`).sort());
  } finally {
    await h.close();
  }
});
