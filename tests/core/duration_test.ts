import assert from "node:assert/strict";
import { formatAge, formatDuration, parseDuration } from "../../core/duration.ts";
import { assertInvalid } from "../_helpers.ts";

Deno.test("parseDuration() reads every unit into milliseconds", () => {
  assert.equal(parseDuration("500ms"), 500);
  assert.equal(parseDuration("10s"), 10_000);
  assert.equal(parseDuration("30m"), 1_800_000);
  assert.equal(parseDuration("2h"), 7_200_000);
  assert.equal(parseDuration("2d"), 172_800_000);
  assert.equal(parseDuration("0s"), 0);
});

Deno.test("parseDuration() adds up compound forms and reads decimals", () => {
  assert.equal(parseDuration("1h30m"), 5_400_000);
  assert.equal(parseDuration("1m30s500ms"), 90_500);
  assert.equal(parseDuration("5m5s"), 305_000);
  assert.equal(parseDuration("1.5s"), 1500);
  assert.equal(parseDuration("0.25h"), 900_000);
});

Deno.test("parseDuration() reads 'ms' as milliseconds, not minutes then seconds", () => {
  assert.equal(parseDuration("5ms"), 5);
});

Deno.test("parseDuration() ignores surrounding whitespace", () => {
  assert.equal(parseDuration("  10s\n"), 10_000);
});

Deno.test("parseDuration() rejects anything that is not wholly a duration, in one line", () => {
  for (const text of ["", "   ", "10", "s", "10x", "10S", "1h 30m", "10s!", "-5s", "1m30", ".5s"]) {
    assertInvalid(
      () => parseDuration(text),
      `duration "${text}" is not a duration: use forms like 500ms, 10s, 30m, 1h30m, 2d`,
    );
  }
});

Deno.test("parseDuration() names the setting it was given in its error", () => {
  assertInvalid(
    () => parseDuration("soon", "stop_grace"),
    'stop_grace "soon" is not a duration: use forms like 500ms, 10s, 30m, 1h30m, 2d',
  );
});

Deno.test("formatDuration() picks the largest unit and rounds down", () => {
  assert.equal(formatDuration(0), "0ms");
  assert.equal(formatDuration(450), "450ms");
  assert.equal(formatDuration(1234), "1.2s");
  assert.equal(formatDuration(9_940), "9.9s");
  assert.equal(formatDuration(1000), "1s");
  assert.equal(formatDuration(4_000), "4s", "no trailing .0");
  assert.equal(formatDuration(12_900), "12s");
  assert.equal(formatDuration(59_999), "59s");
  assert.equal(formatDuration(5 * 60_000 + 59_000), "5m");
  assert.equal(formatDuration(3 * 3_600_000 + 59 * 60_000), "3h");
  assert.equal(formatDuration(2 * 86_400_000 + 23 * 3_600_000), "2d");
});

Deno.test("formatDuration() shows '-' for negative and non-finite values", () => {
  assert.equal(formatDuration(-1), "-");
  assert.equal(formatDuration(NaN), "-");
  assert.equal(formatDuration(Infinity), "-");
});

Deno.test("formatAge() measures back from now and never goes negative", () => {
  const now = Date.parse("2024-05-01T12:00:00Z");
  assert.equal(formatAge(now - 5 * 60_000, now), "5m");
  assert.equal(formatAge(now - 3 * 86_400_000, now), "3d");
  assert.equal(formatAge(now + 10_000, now), "0ms");
});

Deno.test({
  name: "formatDuration() rounds down just below the 1s and 10s boundaries",

  fn() {
    assert.equal(formatDuration(999.6), "999ms");
    assert.equal(formatDuration(1_990), "1.9s");
    assert.equal(formatDuration(9_960), "9.9s");
  },
});
