import assert from "node:assert/strict";
import { formatCpu, formatMemory, parseCpu, parseMemory } from "../../core/quantity.ts";
import { isPrisnError } from "../_helpers.ts";

Deno.test("parseCpu() reads millicores and cores into whole millicores", () => {
  assert.equal(parseCpu("500m"), 500);
  assert.equal(parseCpu("250m"), 250);
  assert.equal(parseCpu("1"), 1000);
  assert.equal(parseCpu("0.5"), 500);
  assert.equal(parseCpu(".25"), 250);
  assert.equal(parseCpu("2.125"), 2125);
  assert.equal(parseCpu("1.005"), 1005);
  assert.equal(parseCpu("0.1000"), 100);
  assert.equal(parseCpu(" 2 "), 2000);
});

Deno.test("parseCpu() rejects other forms, zero and sub-millicore values in one line", () => {
  assert.throws(
    () => parseCpu("abc", "resources.cpu"),
    isPrisnError(
      "INVALID",
      'resources.cpu "abc" is not a CPU quantity: use millicores like 250m or cores like 0.5, 1, 2',
    ),
  );
  for (const bad of ["", "-1", "1c", "500M", "1e3", "1 m", "m"]) {
    assert.throws(() => parseCpu(bad), isPrisnError("INVALID", /is not a CPU quantity/), bad);
  }
  assert.throws(
    () => parseCpu("0"),
    isPrisnError("INVALID", 'cpu "0" must be more than zero, e.g. 100m'),
  );
  assert.throws(() => parseCpu("0m"), isPrisnError("INVALID", /must be more than zero/));
  assert.throws(() => parseCpu("0.0005"), isPrisnError("INVALID", /is finer than 1m/));
  assert.throws(() => parseCpu("1.5m"), isPrisnError("INVALID", /is finer than 1m/));
});

Deno.test("parseMemory() reads binary, decimal and plain byte quantities", () => {
  assert.equal(parseMemory("512Mi"), 512 * 1024 * 1024);
  assert.equal(parseMemory("1Ki"), 1024);
  assert.equal(parseMemory("2Gi"), 2 * 1024 ** 3);
  assert.equal(parseMemory("1Ti"), 1024 ** 4);
  assert.equal(parseMemory("1.5Ki"), 1536);
  assert.equal(parseMemory("1k"), 1000);
  assert.equal(parseMemory("1K"), 1000);
  assert.equal(parseMemory("500M"), 500_000_000);
  assert.equal(parseMemory("1G"), 1_000_000_000);
  assert.equal(parseMemory("1T"), 1e12);
  assert.equal(parseMemory("4096"), 4096);
  assert.equal(parseMemory("1e3"), 1000);
  assert.equal(parseMemory("1.5e3"), 1500);
});

Deno.test("parseMemory() suggests the binary unit for habits like 512m, 512MB and 1gb", () => {
  assert.throws(
    () => parseMemory("512m", "resources.memory"),
    isPrisnError(
      "INVALID",
      'resources.memory "512m" is not a memory quantity: did you mean "512Mi"?',
    ),
  );
  assert.throws(() => parseMemory("512MB"), isPrisnError("INVALID", /did you mean "512Mi"\?$/));
  assert.throws(() => parseMemory("1gb"), isPrisnError("INVALID", /did you mean "1Gi"\?$/));
  assert.throws(() => parseMemory("64 KiB"), isPrisnError("INVALID", /did you mean "64Ki"\?$/));
});

Deno.test("parseMemory() rejects other forms, zero, fractions of a byte and huge values", () => {
  assert.throws(
    () => parseMemory("lots"),
    isPrisnError(
      "INVALID",
      'memory "lots" is not a memory quantity: use bytes or a suffix, like 512Mi, 2Gi or 500M',
    ),
  );
  for (const bad of ["", "-1Mi", "Mi", "1Xi", "1e", "1.2.3"]) {
    assert.throws(() => parseMemory(bad), isPrisnError("INVALID", /is not a memory quantity/), bad);
  }
  assert.throws(
    () => parseMemory("0Mi"),
    isPrisnError("INVALID", 'memory "0Mi" must be more than zero, e.g. 64Mi'),
  );
  assert.throws(
    () => parseMemory("0.5"),
    isPrisnError("INVALID", 'memory "0.5" is not a whole number of bytes'),
  );
  assert.throws(() => parseMemory("16Ei"), isPrisnError("INVALID", 'memory "16Ei" is too large'));
});

Deno.test("formatMemory() writes the largest exact unit, binary first", () => {
  assert.equal(formatMemory(512 * 1024 * 1024), "512Mi");
  assert.equal(formatMemory(1024 ** 3), "1Gi");
  assert.equal(formatMemory(1536), "1.5Ki");
  assert.equal(formatMemory(1536 * 1024), "1536Ki");
  assert.equal(formatMemory(1_000_000_000), "1G");
  assert.equal(formatMemory(500_000), "500k");
  assert.equal(formatMemory(1000), "1k");
  assert.equal(formatMemory(999), "999");
  assert.equal(formatMemory(0), "0");
});

Deno.test("formatMemory() rounds inexact values to one decimal for display", () => {
  assert.equal(formatMemory(123_456_789), "117.7Mi");
  assert.equal(formatMemory(1_048_575), "1.0Mi");
  assert.equal(formatMemory(-1), "-");
});

Deno.test("formatMemory() output parses back to the same bytes when exact", () => {
  for (const bytes of [1, 1000, 1024, 1536, 500_000, 536_870_912, 3 * 1024 ** 4, 7e12]) {
    assert.equal(parseMemory(formatMemory(bytes)), bytes);
  }
});

Deno.test("formatCpu() writes cores when whole, millicores otherwise", () => {
  assert.equal(formatCpu(500), "500m");
  assert.equal(formatCpu(1000), "1");
  assert.equal(formatCpu(2000), "2");
  assert.equal(formatCpu(1500), "1500m");
  assert.equal(formatCpu(12.4), "12m");
  assert.equal(formatCpu(0), "0");
  for (const m of [1, 250, 1000, 1500, 64_000]) assert.equal(parseCpu(formatCpu(m)), m);
});

Deno.test("formatMemory({ binaryOnly }) keeps to binary units, as prisn get shows limits", () => {
  assert.equal(formatMemory(100_000_000, { binaryOnly: true }), "95.4Mi");
  assert.equal(formatMemory(100_000_000), "100M");
  assert.equal(formatMemory(512 * 1024 * 1024, { binaryOnly: true }), "512Mi");
  assert.equal(formatMemory(1000, { binaryOnly: true }), "1000");
});
