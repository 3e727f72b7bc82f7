/**
 * Cron schedules: validation, next fire times and the pure decision the agent's scheduler makes
 * on every tick (Kubernetes-CronJob-like: concurrency policy, catch-up, starting deadline,
 * suspend). Nothing here reads the clock: every function takes the moment it reasons about.
 *
 * Times are matched with croner: 5 fields (minute hour day-of-month month day-of-week), 6 fields
 * (second first), or an alias (@yearly, @annually, @monthly, @weekly, @daily, @midnight,
 * @hourly), in an IANA time zone.
 *
 * DST, as croner does it (Vixie-cron rules):
 * - A fixed-time schedule (one value each in second, minute and hour, e.g. `30 2 * * *`) whose
 *   local time does not exist that day (spring forward) fires once, at the instant the clock
 *   jumps (03:00 local in America/New_York), on that same day.
 * - A fixed-time schedule whose local time occurs twice (fall back) fires once, at the first
 *   occurrence.
 * - Interval schedules (wildcards, steps, lists or ranges in those fields, e.g. `*\/30 * * * *`)
 *   follow real time: they skip local times in a gap and fire on both passes of a repeated hour.
 *
 * @module
 */
import { Cron } from "croner";
import { formatDuration } from "./duration.ts";
import { invalid } from "./errors.ts";

/** The zone a schedule is read in when it names none: UTC, so every node of a cluster agrees. */
export const DEFAULT_TIMEZONE = "UTC";

/**
 * How late the most recent tick may be and still count as on time (5 s). An on-time tick fires
 * whatever the catch-up policy, so a scheduler woken a little late (timer drift, a busy event
 * loop, a poll loop, an agent restarted within seconds) does not lose it; a tick later than
 * this is a missed tick, which only `catchup: "latest"` runs, within the starting deadline.
 */
export const ON_TIME_TOLERANCE_MS = 5_000;

/**
 * Missed ticks are counted one by one up to this many; past it the count stops and the
 * `missed` action says `countCapped`. Keeps a decision fast after any downtime (a year of an
 * every-second schedule is 31 million ticks).
 */
export const MISSED_COUNT_CAP = 500;

/** A cron expression and the zone it is read in. */
export interface CronSpec {
  /** 5 or 6 fields, or an alias such as `@daily`. */
  schedule: string;
  /**
   * IANA time zone, e.g. "Europe/Paris".
   * @default "UTC"
   */
  timezone?: string;
}

/** What a cronjob asks of its scheduler. */
export interface CronPolicy extends CronSpec {
  /**
   * What to do when a tick is due while runs are still active: `allow` starts another run,
   * `forbid` skips the tick, `replace` stops the active runs and starts a new one.
   */
  concurrency: "allow" | "forbid" | "replace";
  /**
   * What to do about ticks that passed while no scheduler ran: `none` gives them all up;
   * `latest` runs the most recent one if it is no later than `startingDeadlineMs`.
   */
  catchup: "none" | "latest";
  /**
   * How late a missed tick may still be started by `catchup: "latest"`, in ms; `Infinity` for
   * no limit. Never makes an on-time tick (see {@link ON_TIME_TOLERANCE_MS}) late.
   */
  startingDeadlineMs: number;
  /** A suspended cronjob fires nothing; see {@link decideCron}. */
  suspended: boolean;
}

/** What the scheduler remembers of a cronjob between decisions. */
export interface CronState {
  /** The latest tick already handled (fired, skipped or missed), epoch ms. */
  lastScheduledAt?: number;
  /** Runs of this cronjob still active. */
  activeRuns: number;
  /** When the cronjob was deployed, epoch ms: ticks at or before it never count. */
  deployedAt: number;
}

/** One thing the scheduler should do or record. */
export type CronAction =
  | {
    kind: "fire";
    /** The tick this run is for (also its idempotency key). */
    scheduledAt: number;
    /** True with `concurrency: "replace"` when runs are active: stop them first. */
    replaceActive: boolean;
    /** True when the tick was later than the on-time tolerance, run by `catchup: "latest"`. */
    catchup: boolean;
  }
  | {
    /** The tick was due but `concurrency: "forbid"` and a run is active: record an event. */
    kind: "skip";
    scheduledAt: number;
    reason: string;
  }
  | {
    /** Ticks given up, summed into one action however many there were. */
    kind: "missed";
    /** The earliest tick given up. */
    firstScheduledAt: number;
    /** The latest tick given up. */
    scheduledAt: number;
    /** How many ticks were given up (at least this many when `countCapped`). */
    count: number;
    /** True when counting stopped at {@link MISSED_COUNT_CAP}. */
    countCapped: boolean;
    reason: string;
  };

/** The outcome of {@link decideCron}. */
export interface CronDecision {
  /** At most one `missed`, then at most one `fire` or `skip`, in that order. */
  actions: CronAction[];
  /** Store this as the next `state.lastScheduledAt`. */
  lastScheduledAt: number | undefined;
  /** The next tick after now (and after `lastScheduledAt`), epoch ms; undefined if none. */
  nextAt: number | undefined;
}

const ALIASES = ["@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"];

// Croner numbers the fields of its 7-part form from 0; a 5-field schedule gets a second of 0.
const FIELD_NAMES = ["second", "minute", "hour", "day-of-month", "month", "day-of-week", "year"];

// Croner's own names for the fields, as they appear in its messages.
const CRONER_FIELDS: Record<string, string> = {
  second: "second",
  minute: "minute",
  hour: "hour",
  day: "day-of-month",
  nearestWeekdays: "day-of-month",
  month: "month",
  dayOfWeek: "day-of-week",
};

const FIELD_RANGES: Record<string, string> = {
  second: "second field must be 0-59",
  minute: "minute field must be 0-59",
  hour: "hour field must be 0-23",
  day: "day-of-month field must be 1-31",
  nearestWeekdays: "day-of-month field must be 1-31",
  month: "month field must be 1-12 or JAN-DEC",
  dayOfWeek: "day-of-week field must be 0-7 or SUN-SAT",
};

const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/**
 * Throws an INVALID {@link PrisnError} whose one-line message says what is wrong with a
 * schedule or time zone, e.g. `schedule "61 * * * *" is not valid: minute field must be 0-59`.
 * Also rejects a schedule no date ever matches, such as `0 0 30 2 *`.
 */
export function validateSchedule(expr: string, timezone?: string): void {
  const cron = compile({ schedule: expr, timezone });
  if (cron.nextRun(new Date(Date.UTC(2000, 0, 1))) === null) {
    throw invalid(`schedule "${expr}" is not valid: no date ever matches it (e.g. February 30)`);
  }
}

/**
 * The next `count` ticks strictly after `after`, earliest first (fewer if the schedule ends).
 * Throws like {@link validateSchedule} on a bad schedule or zone.
 */
export function nextFireTimes(spec: CronSpec, after: Date, count: number): Date[] {
  if (!Number.isInteger(count) || count < 0) {
    throw invalid(`count ${count} is not valid: use a whole number of 0 or more`);
  }
  return compile(spec).nextRuns(count, checkedDate(after, "after"));
}

/**
 * Decides what a cronjob's scheduler does at `now`. Pure: the same inputs give the same answer.
 *
 * The ticks due are those with `lastScheduledAt < t <= now` (without `lastScheduledAt`:
 * `deployedAt < t <= now`). Of these only the most recent can fire; every earlier one is given
 * up and reported in one `missed` action. The most recent fires when it is on time (no more
 * than {@link ON_TIME_TOLERANCE_MS} late), or when `catchup` is "latest" and it is no more than
 * `startingDeadlineMs` late; otherwise it is missed too. A tick that would fire is a `skip`
 * instead with `concurrency: "forbid"` and an active run. So a call returns at most one fire,
 * and the returned `lastScheduledAt` (the most recent due tick) keeps a later call from firing
 * the same tick again.
 *
 * Suspended: nothing fires and nothing is reported, but `lastScheduledAt` still advances to the
 * most recent due tick, so ticks that pass while suspended are never caught up and resuming
 * causes no burst. `nextAt` is still given: keep calling while suspended (and once at the
 * moment of resuming, still with `suspended: true`) so the suspended ticks are consumed.
 *
 * Cost is bounded whatever the downtime: a few croner look-ups plus at most
 * {@link MISSED_COUNT_CAP} steps to count missed ticks.
 */
export function decideCron(policy: CronPolicy, state: CronState, now: number): CronDecision {
  if (!(policy.startingDeadlineMs >= 0)) {
    throw invalid(
      `starting deadline ${policy.startingDeadlineMs}ms is not valid: use 0 or more (Infinity for none)`,
    );
  }
  const cron = compile(policy);
  const start = Math.max(state.lastScheduledAt ?? -Infinity, state.deployedAt);
  // The most recent tick at or before now, and the one before it (previousRuns looks strictly
  // before its reference, to the millisecond).
  const [latest, previous] = cron.previousRuns(2, new Date(now + 1)).map((d) => d.getTime());
  if (latest === undefined || latest <= start) {
    return {
      actions: [],
      lastScheduledAt: state.lastScheduledAt,
      nextAt: tickAfter(cron, Math.max(now, start)),
    };
  }
  const nextAt = tickAfter(cron, now);
  if (policy.suspended) return { actions: [], lastScheduledAt: latest, nextAt };

  const lateness = now - latest;
  const onTime = lateness <= ON_TIME_TOLERANCE_MS;
  const latestRuns = onTime ||
    (policy.catchup === "latest" && lateness <= policy.startingDeadlineMs);

  const actions: CronAction[] = [];
  const earlier = countTicksBetween(cron, start, previous);
  if (earlier.count > 0 || !latestRuns) {
    const first = earlier.first ?? latest;
    const last = latestRuns ? earlier.last! : latest;
    const count = earlier.count + (latestRuns ? 0 : 1);
    let why: string;
    if (latestRuns) {
      const passed = `${count === 1 ? "it" : "they"} passed while no scheduler ran`;
      why = policy.catchup === "latest"
        ? `${passed}; catchup "latest" runs only the most recent`
        : `${passed}; catchup is "none"`;
    } else if (policy.catchup === "none") {
      why = `the latest was due ${formatDuration(lateness)} ago and catchup is "none"`;
    } else {
      why = `the latest was due ${formatDuration(lateness)} ago, past the starting deadline of ${
        formatDuration(policy.startingDeadlineMs)
      }`;
    }
    const amount = earlier.capped ? `at least ${count}` : `${count}`;
    const span = count === 1 ? iso(last) : `${iso(first)} to ${iso(last)}`;
    actions.push({
      kind: "missed",
      firstScheduledAt: first,
      scheduledAt: last,
      count,
      countCapped: earlier.capped,
      reason: `missed ${amount} scheduled run${count === 1 ? "" : "s"} (${span}): ${why}`,
    });
  }

  if (latestRuns) {
    if (policy.concurrency === "forbid" && state.activeRuns > 0) {
      actions.push({
        kind: "skip",
        scheduledAt: latest,
        reason: `concurrency is "forbid" and ${state.activeRuns} run${
          state.activeRuns === 1 ? " is" : "s are"
        } still active`,
      });
    } else {
      actions.push({
        kind: "fire",
        scheduledAt: latest,
        replaceActive: policy.concurrency === "replace" && state.activeRuns > 0,
        catchup: !onTime,
      });
    }
  }
  return { actions, lastScheduledAt: latest, nextAt };
}

/**
 * A short label of the next tick after `now` for `prisn status`, in the schedule's zone:
 * "next: 02:00" today, "next: Nov 27 02:00" another day, "next: Jan 3 2027 02:00" another year,
 * with seconds ("next: 02:00:30") when the schedule has a seconds field other than 0, and
 * "next: never" when no tick is left.
 */
export function describeNext(spec: CronSpec, now: Date): string {
  const cron = compile(spec);
  const next = cron.nextRun(checkedDate(now, "now"));
  if (next === null) return "next: never";
  const zone = spec.timezone ?? DEFAULT_TIMEZONE;
  const at = wallClock(next, zone);
  const today = wallClock(now, zone);
  const pad = (n: number) => String(n).padStart(2, "0");
  let time = `${pad(at.hour)}:${pad(at.minute)}`;
  if (hasSeconds(spec.schedule)) time += `:${pad(at.second)}`;
  if (at.year === today.year && at.month === today.month && at.day === today.day) {
    return `next: ${time}`;
  }
  const year = at.year === today.year ? "" : ` ${at.year}`;
  return `next: ${MONTHS[at.month - 1]} ${at.day}${year} ${time}`;
}

/** Parses a spec into a croner job (no callback, so no timer), or throws a one-line INVALID. */
function compile(spec: CronSpec): Cron {
  const expr = spec.schedule;
  const bad = (what: string) => invalid(`schedule "${expr}" is not valid: ${what}`);
  if (typeof expr !== "string" || expr.trim() === "") {
    throw bad(`it is empty; use 5 fields such as "0 2 * * *" or an alias such as @daily`);
  }
  const trimmed = expr.trim();
  let pattern = trimmed;
  if (trimmed.startsWith("@")) {
    pattern = trimmed.toLowerCase();
    if (!ALIASES.includes(pattern)) {
      throw bad(`unknown alias; use @yearly, @monthly, @weekly, @daily or @hourly`);
    }
  } else {
    const fields = trimmed.split(/\s+/).length;
    if (fields !== 5 && fields !== 6) {
      throw bad(
        `it has ${fields} field${fields === 1 ? "" : "s"}; use 5 (minute hour day-of-month month ` +
          `day-of-week) or 6 (a second field first)`,
      );
    }
  }
  const timezone = spec.timezone ?? DEFAULT_TIMEZONE;
  checkTimezone(timezone);
  try {
    return new Cron(pattern, { mode: "5-or-6-parts", timezone });
  } catch (error) {
    throw bad(explainCronerError(error));
  }
}

function checkTimezone(timezone: string): void {
  let known = typeof timezone === "string" && timezone.trim() !== "";
  if (known) {
    try {
      new Intl.DateTimeFormat("en-US", { timeZone: timezone });
    } catch {
      known = false;
    }
  }
  if (!known) {
    throw invalid(
      `timezone "${timezone}" is not a known IANA time zone: use e.g. "Europe/Paris" or "UTC"`,
    );
  }
}

/** Turns a croner parse error into the part after "is not valid: ". */
function explainCronerError(error: unknown): string {
  const message = (error instanceof Error ? error.message : String(error))
    .replace(/^CronPattern:\s*/, "")
    .replace(/\.$/, "");
  const range = /Invalid value for (\w+)/.exec(message);
  if (range && FIELD_RANGES[range[1]]) return FIELD_RANGES[range[1]];
  const illegal = /configuration entry (\d+) \((.*)\) contains illegal characters/.exec(message);
  if (illegal) {
    return `${FIELD_NAMES[Number(illegal[1])] ?? "a"} field "${illegal[2]}" has characters ` +
      `cron does not allow`;
  }
  const empty = /configuration entry (\w+) \(.*\) is empty/.exec(message);
  if (empty) return `${CRONER_FIELDS[empty[1]] ?? empty[1]} field has an empty item`;
  if (/illegal (upper|lower) range/.test(message)) return "a range lacks its start or its end";
  const backwards = /From value is larger than to value: '(.*)'/.exec(message);
  if (backwards) return `range ${backwards[1]} runs backwards; put the smaller value first`;
  return message.charAt(0).toLowerCase() + message.slice(1);
}

/** The first tick strictly after `at`, epoch ms. */
function tickAfter(cron: Cron, at: number): number | undefined {
  return cron.nextRun(new Date(at))?.getTime();
}

/**
 * The ticks after `start` up to and including `last` (a tick, or undefined for none), counted
 * one by one up to {@link MISSED_COUNT_CAP}.
 */
function countTicksBetween(
  cron: Cron,
  start: number,
  last: number | undefined,
): { count: number; first?: number; last?: number; capped: boolean } {
  if (last === undefined || last <= start) return { count: 0, capped: false };
  const first = tickAfter(cron, start) ?? last;
  let count = 1;
  for (let t = first; t < last; count++) {
    if (count >= MISSED_COUNT_CAP) return { count, first, last, capped: true };
    const next = tickAfter(cron, t);
    if (next === undefined || next > last) break;
    t = next;
  }
  return { count, first, last, capped: false };
}

function hasSeconds(schedule: string): boolean {
  const fields = schedule.trim().split(/\s+/);
  return fields.length === 6 && !/^0+$/.test(fields[0]);
}

/** One formatter per zone: building an Intl.DateTimeFormat costs more than using one. */
const wallClockFormats = new Map<string, Intl.DateTimeFormat>();

function wallClock(date: Date, timeZone: string) {
  let format = wallClockFormats.get(timeZone);
  if (!format) {
    format = new Intl.DateTimeFormat("en-US", {
      timeZone,
      year: "numeric",
      month: "numeric",
      day: "numeric",
      hour: "numeric",
      minute: "numeric",
      second: "numeric",
      hourCycle: "h23",
    });
    wallClockFormats.set(timeZone, format);
  }
  const parts = format.formatToParts(date);
  const part = (type: Intl.DateTimeFormatPartTypes) =>
    Number(parts.find((p) => p.type === type)?.value);
  return {
    year: part("year"),
    month: part("month"),
    day: part("day"),
    hour: part("hour"),
    minute: part("minute"),
    second: part("second"),
  };
}

function checkedDate(date: Date, what: string): Date {
  if (!(date instanceof Date) || Number.isNaN(date.getTime())) {
    throw invalid(`${what} is not a valid date`);
  }
  return date;
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}
