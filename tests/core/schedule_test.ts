import assert from "node:assert/strict";
import {
  type CronAction,
  type CronPolicy,
  decideCron,
  describeNext,
  MISSED_COUNT_CAP,
  nextFireTimes,
  ON_TIME_TOLERANCE_MS,
  validateSchedule,
} from "../../core/schedule.ts";
import { PrisnError } from "../../core/errors.ts";
import { assertInvalid } from "../_helpers.ts";

const ms = (iso: string) => Date.parse(iso);
const isoList = (dates: Date[]) => dates.map((d) => d.toISOString());
const SECOND = 1000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

function policy(overrides: Partial<CronPolicy> = {}): CronPolicy {
  return {
    schedule: "0 * * * *",
    concurrency: "allow",
    catchup: "none",
    startingDeadlineMs: Infinity,
    suspended: false,
    ...overrides,
  };
}

function kinds(actions: CronAction[]): string[] {
  return actions.map((a) => a.kind);
}

// --- validateSchedule -------------------------------------------------------------------------

Deno.test("validateSchedule() accepts 5 and 6 fields, names, lists, steps and every alias", () => {
  for (
    const expr of [
      "0 2 * * *",
      "*/5 * * * *",
      "0 9 * * MON-FRI",
      "0 0 1,15 * *",
      "30 */10 * * * *",
      "0 0 L * *",
      "\t0  2 * * * ",
      "@yearly",
      "@annually",
      "@monthly",
      "@weekly",
      "@daily",
      "@midnight",
      "@hourly",
      "@DAILY",
    ]
  ) {
    validateSchedule(expr);
    validateSchedule(expr, "Europe/Paris");
  }
});

Deno.test("validateSchedule() says which field is out of range", () => {
  assertInvalid(
    () => validateSchedule("61 * * * *"),
    `schedule "61 * * * *" is not valid: minute field must be 0-59`,
  );
  assertInvalid(
    () => validateSchedule("0 24 * * *"),
    `schedule "0 24 * * *" is not valid: hour field must be 0-23`,
  );
  assertInvalid(
    () => validateSchedule("0 0 32 * *"),
    `schedule "0 0 32 * *" is not valid: day-of-month field must be 1-31`,
  );
  assertInvalid(
    () => validateSchedule("0 0 * 13 *"),
    `schedule "0 0 * 13 *" is not valid: month field must be 1-12 or JAN-DEC`,
  );
  assertInvalid(
    () => validateSchedule("0 0 * * 8"),
    `schedule "0 0 * * 8" is not valid: day-of-week field must be 0-7 or SUN-SAT`,
  );
  assertInvalid(
    () => validateSchedule("60 * * * * *"),
    `schedule "60 * * * * *" is not valid: second field must be 0-59`,
  );
});

Deno.test("validateSchedule() rejects a wrong field count, an empty schedule and unknown aliases", () => {
  assertInvalid(
    () => validateSchedule("* * *"),
    `schedule "* * *" is not valid: it has 3 fields; use 5 (minute hour day-of-month month ` +
      `day-of-week) or 6 (a second field first)`,
  );
  assertInvalid(
    () => validateSchedule("0 0 0 1 1 * 2030"),
    `schedule "0 0 0 1 1 * 2030" is not valid: it has 7 fields; use 5 (minute hour ` +
      `day-of-month month day-of-week) or 6 (a second field first)`,
  );
  assertInvalid(
    () => validateSchedule(""),
    `schedule "" is not valid: it is empty; use 5 fields such as "0 2 * * *" or an alias such ` +
      `as @daily`,
  );
  assertInvalid(
    () => validateSchedule("@fortnightly"),
    `schedule "@fortnightly" is not valid: unknown alias; use @yearly, @monthly, @weekly, ` +
      `@daily or @hourly`,
  );
  assertInvalid(
    () => validateSchedule("@reboot"),
    `schedule "@reboot" is not valid: unknown alias; use @yearly, @monthly, @weekly, ` +
      `@daily or @hourly`,
  );
});

Deno.test("validateSchedule() rejects bad syntax and a date that never comes, in one line", () => {
  for (const expr of ["a b c d e", "*/0 * * * *", "5-1 * * * *", "1- * * * *", "1,,2 * * * *"]) {
    assert.throws(() => validateSchedule(expr), (error: unknown) => {
      assert.ok(error instanceof PrisnError);
      assert.equal(error.code, "INVALID");
      assert.match(error.message, new RegExp(`^schedule "${escape(expr)}" is not valid: .+`));
      assert.ok(!error.message.includes("\n"));
      assert.ok(!error.message.includes("CronPattern"));
      return true;
    });
  }
  assertInvalid(
    () => validateSchedule("0 0 30 2 *"),
    `schedule "0 0 30 2 *" is not valid: no date ever matches it (e.g. February 30)`,
  );
});

Deno.test("validateSchedule() rejects an unknown time zone and accepts IANA ones", () => {
  const message = (tz: string) =>
    `timezone "${tz}" is not a known IANA time zone: use e.g. "Europe/Paris" or "UTC"`;
  assertInvalid(() => validateSchedule("0 2 * * *", "Mars/Base"), message("Mars/Base"));
  assertInvalid(() => validateSchedule("0 2 * * *", ""), message(""));
  for (const tz of ["UTC", "Europe/Paris", "America/New_York", "Asia/Kolkata"]) {
    validateSchedule("0 2 * * *", tz);
  }
});

// --- nextFireTimes ----------------------------------------------------------------------------

Deno.test("nextFireTimes() returns times strictly after `after`", () => {
  const after = new Date("2025-01-01T12:00:00.000Z"); // exactly on a tick
  assert.deepEqual(isoList(nextFireTimes({ schedule: "*/30 * * * *" }, after, 3)), [
    "2025-01-01T12:30:00.000Z",
    "2025-01-01T13:00:00.000Z",
    "2025-01-01T13:30:00.000Z",
  ]);
  assert.deepEqual(
    isoList(nextFireTimes({ schedule: "0 * * * *" }, new Date("2025-01-01T11:59:59.999Z"), 1)),
    ["2025-01-01T12:00:00.000Z"],
  );
  assert.deepEqual(nextFireTimes({ schedule: "0 * * * *" }, after, 0), []);
});

Deno.test("nextFireTimes() reads a 6-field schedule's first field as seconds", () => {
  const after = new Date("2025-01-01T12:00:00.000Z");
  assert.deepEqual(isoList(nextFireTimes({ schedule: "*/15 * * * * *" }, after, 4)), [
    "2025-01-01T12:00:15.000Z",
    "2025-01-01T12:00:30.000Z",
    "2025-01-01T12:00:45.000Z",
    "2025-01-01T12:01:00.000Z",
  ]);
});

Deno.test("nextFireTimes() expands the aliases", () => {
  const after = new Date("2025-03-12T10:20:00Z"); // a Wednesday
  const next = (schedule: string) => nextFireTimes({ schedule }, after, 1)[0].toISOString();
  assert.equal(next("@hourly"), "2025-03-12T11:00:00.000Z");
  assert.equal(next("@daily"), "2025-03-13T00:00:00.000Z");
  assert.equal(next("@midnight"), "2025-03-13T00:00:00.000Z");
  assert.equal(next("@weekly"), "2025-03-16T00:00:00.000Z"); // Sunday
  assert.equal(next("@monthly"), "2025-04-01T00:00:00.000Z");
  assert.equal(next("@yearly"), "2026-01-01T00:00:00.000Z");
  assert.equal(next("@annually"), "2026-01-01T00:00:00.000Z");
});

Deno.test("nextFireTimes() reads the schedule in its time zone, UTC by default", () => {
  const winter = new Date("2025-01-15T12:00:00Z");
  const summer = new Date("2025-07-15T12:00:00Z");
  const paris = { schedule: "0 2 * * *", timezone: "Europe/Paris" };
  assert.deepEqual(isoList(nextFireTimes(paris, winter, 1)), ["2025-01-16T01:00:00.000Z"]);
  assert.deepEqual(isoList(nextFireTimes(paris, summer, 1)), ["2025-07-16T00:00:00.000Z"]);
  const utc = { schedule: "0 2 * * *", timezone: "UTC" };
  assert.deepEqual(isoList(nextFireTimes(utc, winter, 1)), ["2025-01-16T02:00:00.000Z"]);
  assert.deepEqual(
    isoList(nextFireTimes({ schedule: "0 2 * * *" }, winter, 1)),
    ["2025-01-16T02:00:00.000Z"],
  );
});

Deno.test("nextFireTimes() throws the validation error for a bad spec", () => {
  assertInvalid(
    () => nextFireTimes({ schedule: "61 * * * *" }, new Date(0), 1),
    `schedule "61 * * * *" is not valid: minute field must be 0-59`,
  );
  assert.throws(
    () => nextFireTimes({ schedule: "0 2 * * *", timezone: "Mars/Base" }, new Date(0), 1),
    PrisnError,
  );
});

// --- DST --------------------------------------------------------------------------------------

Deno.test("a 02:30 schedule fires at 03:00 EDT on the New York spring-forward day, once", () => {
  // 2025-03-09 02:00 EST jumps to 03:00 EDT: 02:30 does not exist that day. Croner runs a
  // fixed-time schedule at the instant the clock jumps (03:00 EDT = 07:00Z), on the same day.
  const spec = { schedule: "30 2 * * *", timezone: "America/New_York" };
  assert.deepEqual(isoList(nextFireTimes(spec, new Date("2025-03-08T00:00:00Z"), 3)), [
    "2025-03-08T07:30:00.000Z", // 02:30 EST
    "2025-03-09T07:00:00.000Z", // 03:00 EDT, the first valid time after the gap
    "2025-03-10T06:30:00.000Z", // 02:30 EDT
  ]);
});

Deno.test("a 01:30 schedule fires once on the New York fall-back day", () => {
  // 2025-11-02 01:00-02:00 happens twice (EDT, then EST); a fixed-time job runs on the first.
  const spec = { schedule: "30 1 * * *", timezone: "America/New_York" };
  assert.deepEqual(isoList(nextFireTimes(spec, new Date("2025-11-01T12:00:00Z"), 3)), [
    "2025-11-02T05:30:00.000Z", // 01:30 EDT
    "2025-11-03T06:30:00.000Z", // 01:30 EST, next day
    "2025-11-04T06:30:00.000Z",
  ]);

  // The scheduler polling every 45 s through that night fires it exactly once.
  const fires: number[] = [];
  let lastScheduledAt: number | undefined;
  const deployedAt = ms("2025-11-02T03:00:00Z");
  for (let now = deployedAt; now <= ms("2025-11-02T09:00:00Z"); now += 45 * SECOND) {
    const decision = decideCron(
      policy({ ...spec, catchup: "latest" }),
      { lastScheduledAt, activeRuns: 0, deployedAt },
      now,
    );
    for (const a of decision.actions) if (a.kind === "fire") fires.push(a.scheduledAt);
    lastScheduledAt = decision.lastScheduledAt;
  }
  assert.deepEqual(fires, [ms("2025-11-02T05:30:00Z")]);
});

Deno.test("an interval schedule runs through both passes of the repeated hour", () => {
  const spec = { schedule: "*/30 * * * *", timezone: "America/New_York" };
  assert.deepEqual(isoList(nextFireTimes(spec, new Date("2025-11-02T04:50:00Z"), 4)), [
    "2025-11-02T05:00:00.000Z", // 01:00 EDT
    "2025-11-02T05:30:00.000Z", // 01:30 EDT
    "2025-11-02T06:00:00.000Z", // 01:00 EST
    "2025-11-02T06:30:00.000Z", // 01:30 EST
  ]);
});

// --- decideCron -------------------------------------------------------------------------------

const T = ms("2025-06-01T12:00:00Z"); // a tick of "0 * * * *"
const BEFORE = { lastScheduledAt: T - HOUR, activeRuns: 0, deployedAt: T - DAY };

Deno.test("decideCron() fires an on-time tick and points at the next one", () => {
  const decision = decideCron(policy(), BEFORE, T + 200);
  assert.deepEqual(decision, {
    actions: [{ kind: "fire", scheduledAt: T, replaceActive: false, catchup: false }],
    lastScheduledAt: T,
    nextAt: T + HOUR,
  });
});

Deno.test("decideCron() does nothing before the tick and wakes the caller at it", () => {
  const decision = decideCron(policy(), BEFORE, T - 5);
  assert.deepEqual(decision, { actions: [], lastScheduledAt: T - HOUR, nextAt: T });
});

Deno.test("decideCron() counts ticks from deployedAt, exclusive, when none was handled yet", () => {
  const fresh = { activeRuns: 0, deployedAt: T - 10 * MINUTE };
  assert.deepEqual(kinds(decideCron(policy(), fresh, T + 10).actions), ["fire"]);
  const atTick = { activeRuns: 0, deployedAt: T };
  const decision = decideCron(policy(), atTick, T + 10);
  assert.deepEqual(decision, { actions: [], lastScheduledAt: undefined, nextAt: T + HOUR });
});

Deno.test("decideCron() skips a tick under forbid while a run is active, and moves on", () => {
  const decision = decideCron(
    policy({ concurrency: "forbid" }),
    { ...BEFORE, activeRuns: 1 },
    T + 200,
  );
  assert.equal(decision.actions.length, 1);
  const [skip] = decision.actions;
  assert.equal(skip.kind, "skip");
  assert.equal(skip.scheduledAt, T);
  assert.match((skip as { reason: string }).reason, /forbid.*1 run is still active/);
  assert.equal(decision.lastScheduledAt, T);

  const idle = decideCron(policy({ concurrency: "forbid" }), BEFORE, T + 200);
  assert.deepEqual(kinds(idle.actions), ["fire"]);
});

Deno.test("decideCron() fires with replaceActive under replace while runs are active", () => {
  const busy = decideCron(policy({ concurrency: "replace" }), { ...BEFORE, activeRuns: 2 }, T);
  assert.deepEqual(busy.actions, [
    { kind: "fire", scheduledAt: T, replaceActive: true, catchup: false },
  ]);
  const idle = decideCron(policy({ concurrency: "replace" }), BEFORE, T);
  assert.deepEqual(idle.actions, [
    { kind: "fire", scheduledAt: T, replaceActive: false, catchup: false },
  ]);
});

Deno.test("decideCron() fires alongside active runs under allow", () => {
  const decision = decideCron(policy({ concurrency: "allow" }), { ...BEFORE, activeRuns: 3 }, T);
  assert.deepEqual(decision.actions, [
    { kind: "fire", scheduledAt: T, replaceActive: false, catchup: false },
  ]);
});

Deno.test("decideCron() treats a tick up to the tolerance late as on time, even with catchup none", () => {
  const late = decideCron(policy({ catchup: "none" }), BEFORE, T + ON_TIME_TOLERANCE_MS);
  assert.deepEqual(late.actions, [
    { kind: "fire", scheduledAt: T, replaceActive: false, catchup: false },
  ]);
  const tooLate = decideCron(policy({ catchup: "none" }), BEFORE, T + ON_TIME_TOLERANCE_MS + 1);
  assert.deepEqual(kinds(tooLate.actions), ["missed"]);
});

Deno.test("decideCron() with catchup latest runs only the most recent missed tick within the deadline", () => {
  // Down from 09:30 to 12:10: the 10:00, 11:00 and 12:00 ticks passed.
  const state = { lastScheduledAt: T - 3 * HOUR, activeRuns: 0, deployedAt: T - DAY };
  const p = policy({ catchup: "latest", startingDeadlineMs: 30 * MINUTE });
  const decision = decideCron(p, state, T + 10 * MINUTE);
  assert.deepEqual(kinds(decision.actions), ["missed", "fire"]);
  const [missed, fire] = decision.actions;
  assert.deepEqual(fire, { kind: "fire", scheduledAt: T, replaceActive: false, catchup: true });
  assert.equal(missed.kind, "missed");
  if (missed.kind !== "missed") return;
  assert.equal(missed.count, 2);
  assert.equal(missed.countCapped, false);
  assert.equal(missed.firstScheduledAt, T - 2 * HOUR);
  assert.equal(missed.scheduledAt, T - HOUR);
  assert.match(missed.reason, /^missed 2 scheduled runs \(.+ to .+\): .*catchup "latest"/);
  assert.equal(decision.lastScheduledAt, T);
  assert.equal(decision.nextAt, T + HOUR);
});

Deno.test("decideCron() with catchup latest gives up a tick past the starting deadline", () => {
  const state = { lastScheduledAt: T - 3 * HOUR, activeRuns: 0, deployedAt: T - DAY };
  const p = policy({ catchup: "latest", startingDeadlineMs: 30 * MINUTE });
  const decision = decideCron(p, state, T + 45 * MINUTE);
  assert.equal(decision.actions.length, 1);
  const [missed] = decision.actions;
  assert.equal(missed.kind, "missed");
  if (missed.kind !== "missed") return;
  assert.equal(missed.count, 3);
  assert.equal(missed.firstScheduledAt, T - 2 * HOUR);
  assert.equal(missed.scheduledAt, T);
  assert.match(missed.reason, /due 45m ago, past the starting deadline of 30m/);
  assert.equal(decision.lastScheduledAt, T);
});

Deno.test("decideCron() with catchup none gives up every missed tick but still runs one due now", () => {
  const state = { lastScheduledAt: T - 3 * HOUR, activeRuns: 0, deployedAt: T - DAY };
  const late = decideCron(policy({ catchup: "none" }), state, T + 10 * MINUTE);
  assert.equal(late.actions.length, 1);
  const [missed] = late.actions;
  assert.ok(missed.kind === "missed" && missed.count === 3);
  assert.match(missed.reason, /catchup is "none"/);
  assert.equal(late.lastScheduledAt, T);

  const onTime = decideCron(policy({ catchup: "none" }), state, T + 300);
  assert.deepEqual(kinds(onTime.actions), ["missed", "fire"]);
  const [earlier, fire] = onTime.actions;
  assert.ok(earlier.kind === "missed" && earlier.count === 2);
  assert.deepEqual(fire, { kind: "fire", scheduledAt: T, replaceActive: false, catchup: false });
});

Deno.test("decideCron() while suspended fires nothing and advances, so resuming causes no burst", () => {
  const p = policy({ catchup: "latest", suspended: true });
  let state = { lastScheduledAt: T - HOUR, activeRuns: 0, deployedAt: T - DAY };
  const suspended = decideCron(p, state, T + 3 * HOUR + 5 * MINUTE);
  assert.deepEqual(suspended, {
    actions: [],
    lastScheduledAt: T + 3 * HOUR,
    nextAt: T + 4 * HOUR,
  });
  // Resumed ten minutes later: the ticks that passed while suspended are not caught up.
  state = { ...state, lastScheduledAt: suspended.lastScheduledAt! };
  const resumed = decideCron({ ...p, suspended: false }, state, T + 3 * HOUR + 15 * MINUTE);
  assert.deepEqual(resumed.actions, []);
  const next = decideCron({ ...p, suspended: false }, state, T + 4 * HOUR + 100);
  assert.deepEqual(next.actions, [
    { kind: "fire", scheduledAt: T + 4 * HOUR, replaceActive: false, catchup: false },
  ]);
});

Deno.test("decideCron() handles a year of missed every-second ticks fast, with one fire", () => {
  const now = ms("2026-06-01T12:00:00.400Z");
  const p = policy({ schedule: "* * * * * *", catchup: "latest" });
  const state = { activeRuns: 0, deployedAt: now - 365 * DAY };
  decideCron(p, state, now); // warm up croner and Intl
  const started = performance.now();
  const decision = decideCron(p, state, now);
  const elapsed = performance.now() - started;
  assert.ok(elapsed < 200, `took ${elapsed.toFixed(1)}ms`);
  assert.deepEqual(kinds(decision.actions), ["missed", "fire"]);
  const [missed, fire] = decision.actions;
  assert.ok(missed.kind === "missed");
  assert.equal(missed.countCapped, true);
  assert.equal(missed.count, MISSED_COUNT_CAP);
  assert.match(missed.reason, new RegExp(`^missed at least ${MISSED_COUNT_CAP} scheduled runs`));
  assert.equal(missed.firstScheduledAt, now - 365 * DAY - 400 + SECOND);
  assert.equal(missed.scheduledAt, now - 400 - SECOND);
  assert.deepEqual(fire, {
    kind: "fire",
    scheduledAt: now - 400,
    replaceActive: false,
    catchup: false,
  });
});

Deno.test("decideCron() never fires the same tick twice across successive calls", () => {
  // Irregular polling (0-95 s apart, sometimes the same instant twice) over three hours.
  const schedules = ["* * * * *", "*/7 * * * *", "*/20 * * * * *", "0 * * * *"];
  for (const schedule of schedules) {
    for (const catchup of ["none", "latest"] as const) {
      const p = policy({ schedule, catchup, startingDeadlineMs: 2 * MINUTE });
      let seed = 42;
      const random = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
      const deployedAt = T;
      let lastScheduledAt: number | undefined;
      const fired: number[] = [];
      for (let now = T; now < T + 3 * HOUR; now += Math.floor(random() * 95 * SECOND)) {
        const decision = decideCron(p, { lastScheduledAt, activeRuns: 0, deployedAt }, now);
        const fires = decision.actions.filter((a) => a.kind === "fire");
        assert.ok(fires.length <= 1);
        for (const f of fires) {
          assert.ok(f.scheduledAt <= now && f.scheduledAt > deployedAt);
          fired.push(f.scheduledAt);
        }
        if (decision.nextAt !== undefined) assert.ok(decision.nextAt > now);
        lastScheduledAt = decision.lastScheduledAt;
      }
      // With catchup none a tick fires only if a poll lands within the tolerance after it.
      if (catchup === "latest") assert.ok(fired.length > 0, `${schedule} never fired`);
      for (let i = 1; i < fired.length; i++) {
        assert.ok(fired[i] > fired[i - 1], `${schedule} ${catchup} fired ${fired[i]} twice`);
      }
    }
  }
});

Deno.test("decideCron() fires nothing for a tick already handled", () => {
  const first = decideCron(policy(), BEFORE, T + 100);
  assert.deepEqual(kinds(first.actions), ["fire"]);
  const again = decideCron(
    policy(),
    { ...BEFORE, lastScheduledAt: first.lastScheduledAt },
    T + 900,
  );
  assert.deepEqual(again, { actions: [], lastScheduledAt: T, nextAt: T + HOUR });
});

Deno.test("decideCron() rejects a negative starting deadline and a bad schedule", () => {
  assert.throws(() => decideCron(policy({ startingDeadlineMs: -1 }), BEFORE, T), PrisnError);
  assert.throws(() => decideCron(policy({ schedule: "* * *" }), BEFORE, T), PrisnError);
});

// --- describeNext -----------------------------------------------------------------------------

Deno.test("describeNext() gives HH:MM in the schedule's zone when the next tick is today", () => {
  const spec = { schedule: "0 2 * * *", timezone: "Europe/Paris" };
  // 00:30 in Paris (23:30Z the day before): next is 02:00 Paris, the same local day.
  assert.equal(describeNext(spec, new Date("2025-11-25T23:30:00Z")), "next: 02:00");
});

Deno.test("describeNext() prefixes the date when the next tick is another day", () => {
  const spec = { schedule: "0 2 * * *", timezone: "Europe/Paris" };
  assert.equal(describeNext(spec, new Date("2025-11-26T12:00:00Z")), "next: Nov 27 02:00");
  assert.equal(
    describeNext({ schedule: "@yearly" }, new Date("2025-11-26T12:00:00Z")),
    "next: Jan 1 2026 00:00",
  );
});

Deno.test("describeNext() shows seconds for a schedule that fires on seconds", () => {
  const now = new Date("2025-11-26T12:00:00Z");
  assert.equal(describeNext({ schedule: "*/30 * * * * *" }, now), "next: 12:00:30");
  assert.equal(describeNext({ schedule: "0 */5 * * * *" }, now), "next: 12:05");
});

Deno.test("describeNext() says never for a schedule with no tick left", () => {
  assert.equal(describeNext({ schedule: "0 0 30 2 *" }, new Date(0)), "next: never");
});

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}
