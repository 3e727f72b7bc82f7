import assert from "node:assert/strict";
import { basename, dirname, join } from "node:path";
import { logFile, type Paths, paths } from "../../core/paths.ts";
import {
  agentLog,
  FileLogs,
  follow,
  listLogFiles,
  LogWriter,
  MAX_LINE_CHARS,
  pruneLogs,
  removeStreams,
  tailLines,
  tailMerged,
} from "../../runtime/logs.ts";
import { fill, waitFor, withTmpfs } from "../_helpers.ts";

const encoder = new TextEncoder();
const STAMP = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

/** Runs `fn` with a fresh PRISN_HOME; removes it afterwards. */
async function withHome(fn: (p: Paths, dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "prisn-logs-test-" });
  try {
    await fn(paths(join(dir, "home")), dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** The lines of every log file of a deployment, oldest file first. */
async function logLines(p: Paths, deployment: string): Promise<string[]> {
  const lines: string[] = [];
  for (const file of await listLogFiles(p, deployment)) {
    const text = await Deno.readTextFile(file);
    lines.push(...text.split("\n").filter((l) => l !== ""));
  }
  return lines;
}

/** Splits "STAMP[ [err|prisn|out]] text" into its parts, checking the stamp is an ISO time. */
function parse(line: string): { stamp: string; err: boolean; prisn?: true; text: string } {
  const stamp = line.slice(0, 24);
  assert.match(stamp, STAMP, line);
  const rest = line.slice(24);
  if (rest.startsWith(" [err] ")) return { stamp, err: true, text: rest.slice(7) };
  if (rest.startsWith(" [prisn] ")) return { stamp, err: false, prisn: true, text: rest.slice(9) };
  if (rest.startsWith(" [out] ")) return { stamp, err: false, text: rest.slice(7) };
  assert.equal(rest[0], " ", line);
  return { stamp, err: false, text: rest.slice(1) };
}

async function texts(p: Paths, deployment: string): Promise<string[]> {
  return (await logLines(p, deployment)).map((l) => parse(l).text);
}

async function writeFile(path: string, text: string): Promise<void> {
  await Deno.mkdir(dirname(path), { recursive: true });
  await Deno.writeTextFile(path, text);
}

// --- LogWriter --------------------------------------------------------------------------------

Deno.test("LogWriter stamps each line with the current ISO time", async () => {
  await withHome(async (p) => {
    const log = new LogWriter(p, "api", "api-0");
    const before = new Date().toISOString();
    log.feed(encoder.encode("hello\nworld\n"));
    const after = new Date().toISOString();
    log.close();
    const lines = (await logLines(p, "api")).map(parse);
    assert.deepEqual(lines.map((l) => l.text), ["hello", "world"]);
    for (const { stamp } of lines) assert.ok(before <= stamp && stamp <= after, stamp);
    const [file] = await listLogFiles(p, "api");
    assert.equal(basename(file), "api-0.log");
    assert.equal(basename(dirname(file)), lines[0].stamp.slice(0, 10), "a folder per UTC day");
  });
});

Deno.test("LogWriter holds a partial line until its newline arrives", async () => {
  await withHome(async (p) => {
    const log = new LogWriter(p, "api", "api-0");
    try {
      log.feed(encoder.encode("first\nsec"));
      assert.deepEqual(await texts(p, "api"), ["first"]);
      log.feed(encoder.encode("ond"));
      assert.deepEqual(await texts(p, "api"), ["first"]);
      log.feed(encoder.encode("\nthird\n"));
      assert.deepEqual(await texts(p, "api"), ["first", "second", "third"]);
    } finally {
      log.close();
    }
  });
});

Deno.test("LogWriter keeps a character split across two chunks whole", async () => {
  await withHome(async (p) => {
    const log = new LogWriter(p, "api", "api-0");
    const bytes = encoder.encode("café ☕\n");
    log.feed(bytes.subarray(0, 4)); // "caf" and the first byte of "é"
    log.feed(bytes.subarray(4, 7)); // rest of "é", " ", first byte of "☕"
    log.feed(bytes.subarray(7));
    log.close();
    assert.deepEqual(await texts(p, "api"), ["café ☕"]);
  });
});

Deno.test("LogWriter tags stderr lines and keeps stdout and stderr partials apart", async () => {
  await withHome(async (p) => {
    const log = new LogWriter(p, "api", "api-0");
    log.feed(encoder.encode("out-"), "out");
    log.feed(encoder.encode("err-"), "err");
    log.feed(encoder.encode("line\n"), "err");
    log.feed(encoder.encode("line\n"), "out");
    log.close();
    const lines = (await logLines(p, "api")).map(parse);
    assert.deepEqual(lines.map((l) => [l.err, l.text]), [[true, "err-line"], [false, "out-line"]]);
  });
});

Deno.test("LogWriter drops a trailing carriage return", async () => {
  await withHome(async (p) => {
    const log = new LogWriter(p, "api", "api-0");
    log.feed(encoder.encode("dos line\r\nunix line\n"));
    log.close();
    assert.deepEqual(await texts(p, "api"), ["dos line", "unix line"]);
  });
});

Deno.test("LogWriter.close() flushes held partial lines and is safe to call twice", async () => {
  await withHome(async (p) => {
    const log = new LogWriter(p, "api", "api-0");
    log.feed(encoder.encode("no newline out"), "out");
    log.feed(encoder.encode("no newline err"), "err");
    log.close();
    log.close();
    const lines = (await logLines(p, "api")).map(parse);
    assert.deepEqual(lines.map((l) => [l.err, l.text]), [
      [false, "no newline out"],
      [true, "no newline err"],
    ]);
  });
});

Deno.test("LogWriter writes a runaway line without newline in 64KiB pieces as it passes 64KiB", async () => {
  await withHome(async (p) => {
    const log = new LogWriter(p, "api", "api-0");
    try {
      log.feed(encoder.encode("x".repeat(140_000)));
      assert.deepEqual((await texts(p, "api")).map((l) => l.length), [65_536, 65_536, 8_928]);
      log.feed(encoder.encode("next\n" + "y".repeat(70_000) + "\n"));
      assert.deepEqual((await texts(p, "api")).slice(3).map((l) => l.length), [4, 65_536, 4_464]);
    } finally {
      log.close();
    }
  });
});

Deno.test("LogWriter masks secret values on stdout, stderr and flushed partial lines", async () => {
  await withHome(async (p) => {
    const log = new LogWriter(p, "api", "api-0", { redact: ["s3cr3t", "", "tok-42"] });
    log.feed(encoder.encode("password=s3cr3t and again s3cr3t\n"));
    log.feed(encoder.encode("token tok-"), "err");
    log.feed(encoder.encode("42 rejected\n"), "err");
    log.feed(encoder.encode("bye s3cr3t"));
    log.close();
    const file = (await listLogFiles(p, "api"))[0];
    const raw = await Deno.readTextFile(file);
    assert.equal(raw.includes("s3cr3t") || raw.includes("tok-42"), false, raw);
    assert.deepEqual((await logLines(p, "api")).map((l) => l.slice(25)), [
      "password=******** and again ********",
      "[err] token ******** rejected",
      "bye ********",
    ]);
  });
});

Deno.test({
  name: "LogWriter masks the whole of a secret that starts with another secret",

  async fn() {
    await withHome(async (p) => {
      const log = new LogWriter(p, "api", "api-0", { redact: ["abc123", "abc123xyz"] });
      log.writeLines(["key abc123xyz"]);
      log.close();
      assert.deepEqual(await texts(p, "api"), ["key ********"]);
    });
  },
});

Deno.test("LogWriter masks a secret whatever the line length and however the output is chunked", async () => {
  const secret = "sk-live-0123456789abcdef";
  // Secrets at and around the 64 KiB cut of a runaway line, at the end of a longer line, twice
  // across a cut, and after a multi-byte character; fed whole, byte by byte near the cut, and in
  // random chunks.
  const cases: string[] = [];
  for (let at = MAX_LINE_CHARS - secret.length - 2; at <= MAX_LINE_CHARS + 2; at++) {
    cases.push("x".repeat(at) + secret + "tail\n");
  }
  cases.push("y".repeat(70 * 1024) + " " + secret + "\n");
  cases.push("z".repeat(MAX_LINE_CHARS - 5) + secret + "q".repeat(MAX_LINE_CHARS - 9) + secret);
  cases.push("é".repeat(MAX_LINE_CHARS / 2) + secret + "\n");
  let seed = 7;
  const random = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  for (const [i, text] of cases.entries()) {
    await withHome(async (p) => {
      const log = new LogWriter(p, "api", "api-0", { redact: [secret] });
      const bytes = encoder.encode(text);
      for (let at = 0; at < bytes.length;) {
        const size = i % 3 === 0 ? bytes.length : i % 3 === 1 ? 1 + Math.floor(random() * 9000) : 1;
        const end = i % 3 === 2 && at < MAX_LINE_CHARS - 64 ? MAX_LINE_CHARS - 64 : at + size;
        log.feed(bytes.subarray(at, Math.min(end, bytes.length)));
        at = Math.min(end, bytes.length);
      }
      log.close();
      const pieces = await texts(p, "api");
      const joined = pieces.join("");
      assert.ok(!joined.includes(secret), `case ${i}: the secret is in the log`);
      assert.ok(!joined.includes(secret.slice(0, 12)), `case ${i}: a half of the secret is logged`);
      assert.ok(!joined.includes(secret.slice(-12)), `case ${i}: a half of the secret is logged`);
      assert.equal(joined, text.replace(/\n$/, "").replaceAll(secret, "********"), `case ${i}`);
      assert.ok(pieces.every((l) => l.length <= MAX_LINE_CHARS), `case ${i}: a piece is too long`);
    });
  }
});

Deno.test("LogWriter masks each line of a multi-line secret and ignores values too short to mask", async () => {
  await withHome(async (p) => {
    const key = "-----BEGIN KEY-----\nMIIEvQIBADANBgkqhkiG9w0\n-----END KEY-----";
    const log = new LogWriter(p, "api", "api-0", { redact: [key, "ab"] });
    log.feed(encoder.encode(key + "\nab ok\n"));
    log.close();
    assert.deepEqual(await texts(p, "api"), ["********", "********", "********", "ab ok"]);
  });
});

Deno.test("LogWriter tags prisn's own notes [prisn] and a stdout line that starts with [ as [out]", async () => {
  await withHome(async (p) => {
    const log = new LogWriter(p, "api", "api-0");
    log.feed(encoder.encode("[prisn] 5 line(s) dropped\n[err] boom\n[INFO] fine\nplain\n"));
    log.feed(encoder.encode("[prisn] from stderr\n"), "err");
    log.writeLines(["a real note"], "prisn");
    log.close();
    const lines = (await logLines(p, "api")).map((l) => l.slice(24));
    assert.deepEqual(lines, [
      " [out] [prisn] 5 line(s) dropped",
      " [out] [err] boom",
      " [out] [INFO] fine",
      " plain",
      " [err] [prisn] from stderr",
      " [prisn] a real note",
    ]);
  });
});

Deno.test("LogWriter drops lines it cannot write (a full disk) without throwing, and says so once writes work", async () => {
  await withHome(async (p) => {
    const failed: number[] = [];
    let oks = 0;
    const log = new LogWriter(p, "api", "api-0", {
      onWriteFailed: (_e, lines) => failed.push(lines),
      onWriteOk: () => oks++,
    });
    log.feed(encoder.encode("before\n"));
    const file = logFile(p, "api", "api-0");
    // The log file becomes /dev/full: every write fails with ENOSPC, as on a full disk.
    await Deno.rename(file, `${file}.kept`);
    await Deno.symlink("/dev/full", file);
    log.close(); // the writer opens the file again on its next write
    const again = new LogWriter(p, "api", "api-0", {
      onWriteFailed: (_e, lines) => failed.push(lines),
      onWriteOk: () => oks++,
    });
    again.feed(encoder.encode("lost 1\nlost 2\n"));
    again.writeLines(["lost 3"]);
    assert.deepEqual(failed, [2, 1]);
    await Deno.remove(file); // space is back
    again.feed(encoder.encode("after\n"));
    again.close();
    const lines = (await Deno.readTextFile(file)).split("\n").filter(Boolean);
    assert.equal(lines.length, 2);
    assert.match(
      lines[0],
      /^\S+Z \[prisn\] 3 line\(s\) \(96\) not logged from \S+Z: No space left on device/,
    );
    assert.match(lines[1], /^\S+Z after$/);
    assert.equal(oks, 2);
    assert.equal((await Deno.stat(file)).mode! & 0o777, 0o600, "owner only");
    assert.equal((await Deno.stat(dirname(file))).mode! & 0o777, 0o700, "owner only");
  });
});

Deno.test("FileLogs.follow with since reads the lines written between a tail and the follow's start", async () => {
  await withHome(async (p) => {
    const logs = new FileLogs(p);
    let now = Date.parse("2026-01-01T00:00:00.000Z");
    const at = () => new Date(now++).toISOString();
    const write = (text: string) => {
      const file = logFile(p, "api", "api-0", new Date(now));
      Deno.mkdirSync(dirname(file), { recursive: true });
      Deno.writeTextFileSync(file, `${at()} ${text}\n`, { append: true });
    };
    write("one");
    write("two");
    const tail = await logs.tail("api", 1);
    assert.deepEqual(tail.map((l) => l.slice(25)), ["two"]);
    write("three"); // after the tail, before the follow: it must not be skipped
    const stop = new AbortController();
    const seen: string[] = [];
    const following = logs.follow("api", (lines) => {
      seen.push(...lines.map((l) => l.slice(25)));
      if (seen.length === 2) stop.abort();
    }, { signal: stop.signal, since: tail[0].slice(0, 24) });
    await waitFor(() => seen.length > 0, { what: "the line written in the gap" });
    write("four");
    await following;
    assert.deepEqual(seen, ["three", "four"]);
  });
});

Deno.test("LogWriter appends to a log file left by an earlier writer", async () => {
  await withHome(async (p) => {
    const first = new LogWriter(p, "api", "api-0");
    first.writeLines(["one"]);
    first.close();
    const second = new LogWriter(p, "api", "api-0");
    second.writeLines(["two"]);
    second.close();
    assert.deepEqual(await texts(p, "api"), ["one", "two"]);
  });
});

Deno.test("LogWriter rotates at maxBytes and keeps `keep` rotated files", async () => {
  await withHome(async (p) => {
    // Each line is 24 (stamp) + 1 + 7 + 1 = 33 bytes: three fit in 100 bytes, a fourth does not.
    const log = new LogWriter(p, "job", "run", { maxBytes: 100, keep: 2 });
    const written = Array.from({ length: 20 }, (_, i) => `line-${String(i + 1).padStart(2, "0")}`);
    for (const line of written) log.writeLines([line]);
    log.close();

    const files = await listLogFiles(p, "job");
    assert.deepEqual(files.map((f) => basename(f)), ["run.log.2", "run.log.1", "run.log"]);
    for (const f of files) assert.ok((await Deno.stat(f)).size <= 100, f);
    assert.deepEqual(await texts(p, "job"), written.slice(12), "the newest 8 lines, in order");
  });
});

Deno.test("LogWriter uses the default of 3 rotated files", async () => {
  await withHome(async (p) => {
    const log = new LogWriter(p, "job", "run", { maxBytes: 40 });
    for (let i = 0; i < 10; i++) log.writeLines([`l${i}`]);
    log.close();
    const files = await listLogFiles(p, "job");
    assert.deepEqual(files.map((f) => basename(f)), [
      "run.log.3",
      "run.log.2",
      "run.log.1",
      "run.log",
    ]);
  });
});

// --- listLogFiles -----------------------------------------------------------------------------

Deno.test("listLogFiles() lists by day, then stream, rotated files oldest first before the live one", async () => {
  await withHome(async (p) => {
    const root = join(p.logs, "api");
    for (
      const name of [
        "2024-01-02/api-1.log",
        "2024-01-02/api-0.log",
        "2024-01-02/api-0.log.1",
        "2024-01-02/api-0.log.10",
        "2024-01-02/api-0.log.2",
        "2024-01-01/api-0.log",
        "2024-01-02/notes.txt",
        "2024-01-02/api-0.log.tmp",
        "not-a-day/api-0.log",
      ]
    ) await writeFile(join(root, name), "");
    await Deno.mkdir(join(root, "2023-12-31"));

    const files = await listLogFiles(p, "api");
    assert.deepEqual(files.map((f) => f.slice(root.length + 1)), [
      "2024-01-01/api-0.log",
      "2024-01-02/api-0.log.10",
      "2024-01-02/api-0.log.2",
      "2024-01-02/api-0.log.1",
      "2024-01-02/api-0.log",
      "2024-01-02/api-1.log",
    ]);
    const only = await listLogFiles(p, "api", new Set(["api-1"]));
    assert.deepEqual(only.map((f) => f.slice(root.length + 1)), ["2024-01-02/api-1.log"]);
  });
});

Deno.test("listLogFiles() of a deployment without logs is empty", async () => {
  await withHome(async (p) => {
    assert.deepEqual(await listLogFiles(p, "nothing"), []);
  });
});

// --- tailLines and tailMerged ---------------------------------------------------------------

Deno.test("tailLines() returns the last lines of a file larger than its 64KiB read block", async () => {
  await withHome(async (_p, dir) => {
    const file = join(dir, "big.log");
    const lines = Array.from({ length: 10_000 }, (_, i) => `line number ${i}`);
    await writeFile(file, lines.join("\n") + "\n");
    assert.ok((await Deno.stat(file)).size > 2 * 64 * 1024);

    assert.deepEqual(await tailLines(file, 3), lines.slice(-3));
    assert.deepEqual(await tailLines(file, 9000), lines.slice(-9000));
    assert.deepEqual(await tailLines(file, 20_000), lines);
  });
});

Deno.test("tailLines() handles no trailing newline, empty files and n of 0", async () => {
  await withHome(async (_p, dir) => {
    const file = join(dir, "a.log");
    await writeFile(file, "one\ntwo\nthree");
    assert.deepEqual(await tailLines(file, 2), ["two", "three"]);
    assert.deepEqual(await tailLines(file, 0), []);
    await writeFile(file, "");
    assert.deepEqual(await tailLines(file, 5), []);
  });
});

// BUG: tailLines() decodes each 64KiB block on its own, so a multi-byte UTF-8 character that
// straddles a block boundary comes out as two U+FFFD replacement characters.
Deno.test({
  name: "tailLines() keeps a multi-byte character that straddles a read block boundary",

  async fn() {
    await withHome(async (_p, dir) => {
      const file = join(dir, "utf8.log");
      // 100001 bytes: the first block starts at byte 34465, inside an "é" (2 bytes each).
      const line = "é".repeat(50_000);
      await writeFile(file, line + "\n");
      const [got] = await tailLines(file, 1);
      assert.equal(got.includes("\uFFFD"), false, "no replacement characters");
      assert.equal(got, line);
    });
  },
});

Deno.test("tailMerged() interleaves files by timestamp and keeps the newest n", async () => {
  await withHome(async (_p, dir) => {
    const a = join(dir, "a.log");
    const b = join(dir, "b.log");
    await writeFile(
      a,
      "2024-01-01T00:00:01.000Z a1\n2024-01-01T00:00:03.000Z a3\n2024-01-01T00:00:05.000Z a5\n",
    );
    await writeFile(
      b,
      "2024-01-01T00:00:02.000Z b2\n2024-01-01T00:00:04.000Z [err] b4\n2024-01-01T00:00:06.000Z b6\n",
    );
    assert.deepEqual((await tailMerged([a, b], 10)).map((l) => l.slice(25)), [
      "a1",
      "b2",
      "a3",
      "[err] b4",
      "a5",
      "b6",
    ]);
    assert.deepEqual((await tailMerged([a, b], 3)).map((l) => l.slice(25)), [
      "[err] b4",
      "a5",
      "b6",
    ]);
    assert.deepEqual(await tailMerged([], 3), []);
  });
});

Deno.test("tailMerged() keeps file order for lines with the same timestamp", async () => {
  await withHome(async (_p, dir) => {
    const a = join(dir, "a.log");
    const b = join(dir, "b.log");
    await writeFile(a, "2024-01-01T00:00:01.000Z a-first\n2024-01-01T00:00:01.000Z a-second\n");
    await writeFile(b, "2024-01-01T00:00:01.000Z b-first\n");
    assert.deepEqual((await tailMerged([b, a], 10)).map((l) => l.slice(25)), [
      "b-first",
      "a-first",
      "a-second",
    ]);
  });
});

Deno.test("tailMerged() with since/until keeps only lines stamped in the window, however far back", async () => {
  await withHome(async (_p, dir) => {
    const a = join(dir, "api-0.log.1");
    const b = join(dir, "api-0.log");
    const early = Array.from(
      { length: 500 },
      (_, i) => `2024-01-01T00:00:01.${String(i).padStart(3, "0")}Z run1 ${i}`,
    );
    await writeFile(a, early.join("\n") + "\n");
    await writeFile(b, "2024-01-01T00:00:05.000Z run2 a\n2024-01-01T00:00:06.000Z run2 b\n");
    const first = await tailMerged([a, b], 3, {
      since: Date.parse("2024-01-01T00:00:01.000Z"),
      until: Date.parse("2024-01-01T00:00:01.499Z"),
    });
    assert.deepEqual(first.map((l) => l.slice(25)), ["run1 497", "run1 498", "run1 499"]);
    const second = await tailMerged([a, b], 10, { since: Date.parse("2024-01-01T00:00:05.000Z") });
    assert.deepEqual(second.map((l) => l.slice(25)), ["run2 a", "run2 b"]);
  });
});

Deno.test("tailMerged() with tag starts each line with its stream, rotated files included", async () => {
  await withHome(async (_p, dir) => {
    const a = join(dir, "api-0.log.1");
    const b = join(dir, "run-1a2b3c4d.log");
    await writeFile(a, "2024-01-01T00:00:01.000Z one\n");
    await writeFile(b, "2024-01-01T00:00:02.000Z [err] two\n");
    assert.deepEqual(await tailMerged([a, b], 10, { tag: true }), [
      "[api-0] 2024-01-01T00:00:01.000Z one",
      "[run-1a2b3c4d] 2024-01-01T00:00:02.000Z [err] two",
    ]);
  });
});

Deno.test("LogWriter.recentErrors() keeps the process's last stderr lines, masked, not prisn's notes", async () => {
  await withHome(async (p) => {
    const w = new LogWriter(p, "app", "run-1", { redact: ["hunter2"] });
    await Deno.mkdir(p.logs, { recursive: true });
    for (let i = 0; i < 12; i++) w.feed(encoder.encode(`err ${i}\n`), "err");
    w.feed(encoder.encode("to stdout\n"), "out");
    w.writeLines(["prisn: a note of prisn's own"], "err");
    w.feed(encoder.encode("password hunter2 rejected\npartial"), "err");
    assert.deepEqual(w.recentErrors(), [
      ...Array.from({ length: 8 }, (_, i) => `err ${i + 4}`),
      "password ******** rejected",
      "partial",
    ]);
    w.close();
    assert.equal(w.recentErrors().at(-1), "partial", "close() keeps the flushed partial line");
    assert.equal(w.recentErrors().length, 10);
  });
});

Deno.test("LogWriter.recentErrors(since) keeps only what was written since then (one start of a replica)", async () => {
  await withHome(async (p) => {
    await Deno.mkdir(p.logs, { recursive: true });
    let now = 1_000;
    const w = new LogWriter(p, "app", "app-0", { now: () => now });
    w.feed(encoder.encode("first start failed\n"), "err");
    now = 2_000;
    assert.deepEqual(w.recentErrors(2_000), [], "the second start wrote nothing to stderr yet");
    w.feed(encoder.encode("second start failed\n"), "err");
    assert.deepEqual(w.recentErrors(2_000), ["second start failed"]);
    assert.deepEqual(w.recentErrors(), ["first start failed", "second start failed"]);
    w.close();
  });
});

// --- follow -----------------------------------------------------------------------------------

/**
 * Starts follow() over listLogFiles(p, deployment); `seen` collects the lines it reports.
 * `settled()` resolves once follow() has looked at the files at least once.
 */
function startFollow(p: Paths, deployment: string, options: { fromEnd?: boolean } = {}) {
  const seen: string[] = [];
  const stop = new AbortController();
  let passes = 0;
  const list = () => {
    passes++;
    return listLogFiles(p, deployment);
  };
  const done = follow(list, (lines) => seen.push(...lines), {
    signal: stop.signal,
    intervalMs: 10,
    ...options,
  });
  // The second call to list() means the first pass over the files has finished.
  const settled = () => waitFor(() => passes >= 2, { what: "follow's first pass" });
  return { seen, stop, done, settled };
}

Deno.test("follow() starts at the end, then reports appended lines and files that appear later", async () => {
  await withHome(async (p) => {
    const live = join(p.logs, "api", "2024-01-01", "api-0.log");
    await writeFile(live, "old line\n");
    const { seen, stop, done, settled } = startFollow(p, "api");
    try {
      await settled();
      await Deno.writeTextFile(live, "new line\n", { append: true });
      await waitFor(() => seen.length === 1, { what: "the appended line" });
      assert.deepEqual(seen, ["new line"]);

      await writeFile(join(p.logs, "api", "2024-01-01", "api-1.log"), "from a new replica\n");
      await waitFor(() => seen.length === 2, { what: "the new file" });
      await writeFile(join(p.logs, "api", "2024-01-02", "api-0.log"), "next day\n");
      await waitFor(() => seen.length === 3, { what: "the new day" });
      assert.deepEqual(seen, ["new line", "from a new replica", "next day"]);
    } finally {
      stop.abort();
      await done;
    }
  });
});

Deno.test("follow() with fromEnd false reports what the files already hold", async () => {
  await withHome(async (p) => {
    await writeFile(join(p.logs, "api", "2024-01-01", "api-0.log"), "one\ntwo\n");
    const { seen, stop, done } = startFollow(p, "api", { fromEnd: false });
    try {
      await waitFor(() => seen.length === 2, { what: "existing lines" });
      assert.deepEqual(seen, ["one", "two"]);
    } finally {
      stop.abort();
      await done;
    }
  });
});

Deno.test("follow() holds a partial line until its newline is written", async () => {
  await withHome(async (p) => {
    const live = join(p.logs, "api", "2024-01-01", "api-0.log");
    await writeFile(live, "");
    const { seen, stop, done, settled } = startFollow(p, "api");
    try {
      await settled();
      await Deno.writeTextFile(live, "par", { append: true });
      await Deno.writeTextFile(live, "tial\nwhole\n", { append: true });
      await waitFor(() => seen.length === 2, { what: "two lines" });
      assert.deepEqual(seen, ["partial", "whole"]);
    } finally {
      stop.abort();
      await done;
    }
  });
});

Deno.test("follow() resolves once its signal aborts", async () => {
  await withHome(async (p) => {
    const { stop, done } = startFollow(p, "api");
    let finished = false;
    const watched = done.then(() => finished = true);
    stop.abort();
    await watched;
    assert.equal(finished, true);
  });
});

Deno.test("FileLogs.follow() with tag prefixes each new line with the replica that wrote it", async () => {
  await withHome(async (p) => {
    const logs = new FileLogs(p);
    const a = logs.writer("api", "api-0");
    const b = logs.writer("api", "api-1");
    a.writeLines(["before"]);
    const stop = new AbortController();
    const seen: string[] = [];
    const done = logs.follow("api", (lines) => seen.push(...lines), {
      signal: stop.signal,
      tag: true,
    });
    await waitFor(() => {
      a.writeLines(["from a"]);
      b.writeLines(["from b"]);
      return seen.some((l) => l.includes("from a")) && seen.some((l) => l.includes("from b"));
    }, { what: "lines of both replicas" });
    stop.abort();
    await done;
    a.close();
    b.close();
    assert.ok(seen.every((l) => /^\[api-[01]\] \S+Z from [ab]$/.test(l)), seen.join("\n"));
    assert.ok(seen.filter((l) => l.startsWith("[api-1] ")).every((l) => l.endsWith("from b")));
  });
});

// BUG: follow() tracks files by path, so after LogWriter rotates api-0.log to api-0.log.1 it
// takes api-0.log.1 for a new file and reports its whole content again.
Deno.test({
  name: "follow() reports each line once across a rotation",

  async fn() {
    await withHome(async (p) => {
      // Lines are 24 + 1 + 2 + 1 = 28 bytes; two fit in 56 bytes, the third rotates.
      const log = new LogWriter(p, "api", "api-0", { maxBytes: 56, keep: 3 });
      const { seen, stop, done, settled } = startFollow(p, "api");
      try {
        await settled();
        for (const text of ["l1", "l2", "l3", "l4", "l5"]) {
          log.writeLines([text]);
          await waitFor(() => seen.some((l) => l.endsWith(` ${text}`)), { what: text });
        }
        log.close();
        assert.deepEqual(seen.map((l) => l.slice(25)), ["l1", "l2", "l3", "l4", "l5"]);
      } finally {
        log.close();
        stop.abort();
        await done;
      }
    });
  },
});

// --- removeStreams ----------------------------------------------------------------------------

Deno.test("removeStreams() removes the live and rotated files of the given streams only", async () => {
  await withHome(async (p) => {
    const root = join(p.logs, "job");
    for (
      const name of [
        "2024-01-01/run-1.log",
        "2024-01-02/run-1.log",
        "2024-01-02/run-1.log.1",
        "2024-01-02/run-2.log",
        "2024-01-02/run-10.log",
      ]
    ) await writeFile(join(root, name), "x\n");
    await removeStreams(p, "job", new Set(["run-1", "gone"]));
    const left = (await listLogFiles(p, "job")).map((f) => f.slice(root.length + 1));
    assert.deepEqual(left, ["2024-01-02/run-10.log", "2024-01-02/run-2.log"]);
    await removeStreams(p, "nothing", new Set(["run-1"])); // harmless
  });
});

// --- pruneLogs --------------------------------------------------------------------------------

Deno.test("pruneLogs() removes day folders older than the cutoff and nothing else", async () => {
  await withHome(async (p) => {
    for (
      const path of [
        "default/api/2024-01-01/api-0.log",
        "default/api/2024-01-02/api-0.log",
        "default/api/2024-01-03/api-0.log",
        "default/api/2024-01-10/api-0.log",
        "default/api/keep-me/notes.txt",
        "team-b/job/2023-12-25/run.log",
        "team-b/job/2024-01-09/run.log",
      ]
    ) await writeFile(join(p.logs, path), "x\n");
    await writeFile(join(p.logs, ".namespaces"), "the layout's marker\n");

    const now = Date.parse("2024-01-10T12:00:00Z");
    assert.equal(await pruneLogs(p, 7, now), 3);

    const left: string[] = [];
    for (const d of ["default/api", "team-b/job"]) {
      for await (const e of Deno.readDir(join(p.logs, d))) left.push(`${d}/${e.name}`);
    }
    assert.deepEqual(left.sort(), [
      "default/api/2024-01-03",
      "default/api/2024-01-10",
      "default/api/keep-me",
      "team-b/job/2024-01-09",
    ]);
    assert.equal(await pruneLogs(p, 7, now), 0, "a second prune has nothing to do");
  });
});

Deno.test("pruneLogs() without a logs folder removes nothing", async () => {
  await withHome(async (p) => {
    assert.equal(await pruneLogs(p, 7), 0);
  });
});

Deno.test("LogWriter over its rate limit drops whole lines, then says how many in one line and one callback per window", async () => {
  await withHome(async (p) => {
    let now = 1_000_000;
    const told: Array<{ lines: number; bytes: number; rate: number }> = [];
    // 100 B/s over a 10 s window: 1,000 bytes pass per window.
    const log = new LogWriter(p, "app", "app-0", {
      rateBytes: 100,
      now: () => now,
      onDropped: (d) => told.push(d),
    });
    const line = "x".repeat(99); // 100 bytes with its newline
    log.feed(encoder.encode(`${line}\n`.repeat(25)));
    assert.equal(told.length, 0, "nothing is reported before the window ends");
    now += 10_000; // the next window
    log.feed(encoder.encode("after\n"));
    log.close();
    const lines = await logLines(p, "app");
    assert.equal(lines.filter((l) => l.endsWith(line)).length, 10);
    const note = lines.map(parse).find((l) => l.prisn);
    assert.deepEqual(note, {
      stamp: note?.stamp,
      err: false,
      prisn: true,
      text: "15 line(s) (1.5Ki) dropped: output over the log rate limit of 100/s",
    });
    assert.equal(parse(lines.at(-1)!).text, "after");
    assert.deepEqual(told, [{ lines: 15, bytes: 1500, rate: 100 }]);
    assert.equal(log.droppedLines, 15);
  });
});

Deno.test("LogWriter reports lines still dropped when it is closed", async () => {
  await withHome(async (p) => {
    const told: number[] = [];
    const log = new LogWriter(p, "app", "r", {
      rateBytes: 2,
      onDropped: (d) => told.push(d.lines),
    });
    log.feed(encoder.encode("0123456789\nabcdefghij\n"));
    log.close();
    assert.deepEqual(told, [1]);
    const texts = (await logLines(p, "app")).map((l) => parse(l).text);
    assert.deepEqual(texts, [
      "0123456789",
      "1 line(s) (11) dropped: output over the log rate limit of 2/s",
    ]);
  });
});

Deno.test("LogWriter counts a flood's lines exactly on its fast path, partial lines included", async () => {
  await withHome(async (p) => {
    let now = 5_000_000;
    const told: number[] = [];
    const log = new LogWriter(p, "app", "r", {
      rateBytes: 1,
      now: () => now,
      onDropped: (d) => told.push(d.lines),
    });
    log.feed(encoder.encode("kept 1\n")); // 7 of 10 bytes
    log.feed(encoder.encode("gone 1\ngone 2\ngo")); // window spent: counted, not split
    log.feed(encoder.encode("ne 3\ngone 4\nstill partial"));
    log.feed(encoder.encode(" and more\n"));
    now += 10_000;
    log.feed(encoder.encode("kept 2\n"));
    log.close();
    assert.deepEqual(told, [5]);
    const texts = (await logLines(p, "app")).map((l) => parse(l).text);
    assert.deepEqual(texts, [
      "kept 1",
      "5 line(s) (51) dropped: output over the log rate limit of 1/s",
      "kept 2",
    ]);
  });
});

Deno.test("LogWriter rotating on a full disk (a small tmpfs): lines are dropped and counted, no line is left half written, and rotation goes on once space is back", async () => {
  await withTmpfs("2m", async (dir) => {
    const p = paths(join(dir, "home"));
    const failed: number[] = [];
    const keep = 3;
    const maxBytes = 64 * 1024;
    const log = new LogWriter(p, "api", "api-0", {
      maxBytes,
      keep,
      onWriteFailed: (_e, lines) => failed.push(lines),
    });
    const line = (i: number) => `line ${i} ${"x".repeat(997 - String(i).length)}\n`;
    for (let i = 0; i < 150; i++) log.feed(encoder.encode(line(i)));
    const filler = join(dir, "filler");
    await fill(filler);
    // Line by line, across the size limit: rotations happen while nothing can be written.
    for (let i = 150; i < 400; i++) log.feed(encoder.encode(line(i)));
    const lost = failed.reduce((a, b) => a + b, 0);
    assert.ok(lost > 0, "writes failed on the full disk");
    await Deno.remove(filler);
    for (let i = 400; i < 600; i++) log.feed(encoder.encode(line(i)));
    log.close();

    const file = logFile(p, "api", "api-0");
    const files = (await listLogFiles(p, "api")).map((f) => basename(f));
    assert.ok(files.length <= keep + 1, `${files} (at most ${keep} rotated)`);
    const lines = await logLines(p, "api");
    const notes = lines.filter((l) => / \[prisn\] \d+ line\(s\) .* not logged from /.test(l));
    assert.equal(notes.length, 1, "one note once writes work again");
    assert.match(notes[0], new RegExp(` \\[prisn\\] ${lost} line\\(s\\) `));
    for (const l of lines) {
      if (notes.includes(l)) continue;
      assert.match(l, /^\S+Z line (\d+) x+$/, "whole lines only");
      assert.equal(l.length, 25 + 1003, `a half-written line: ${l.slice(0, 40)}…`);
    }
    assert.ok(lines.at(-1)!.includes("line 599 "), "the last line is logged");
    for (const f of await listLogFiles(p, "api")) {
      assert.ok((await Deno.stat(f)).size <= maxBytes + 1100, `${f} rotated at its limit`);
    }
    assert.ok(files.includes(basename(file)));
  });
});

Deno.test("agentLog() rotates the agent's log past its size, keeping a few rotated files", async () => {
  await withHome(async (_p, dir) => {
    const file = join(dir, "agent.log");
    await Deno.writeTextFile(file, "x".repeat(900) + "\n"); // an earlier agent's lines count
    const log = agentLog(file, { maxBytes: 1_000, keep: 2 });
    const line = "y".repeat(70); // 95 bytes with its stamp and newline
    for (let i = 0; i < 40; i++) log(`${String(i).padStart(2, "0")} ${line}`);
    const sizes = [file, `${file}.1`, `${file}.2`].map((f) => Deno.statSync(f).size);
    for (const size of sizes) assert.ok(size <= 1_000, `a log file of ${size} bytes`);
    assert.throws(() => Deno.statSync(`${file}.3`), Deno.errors.NotFound);
    // The newest lines are in the live file, in order; the oldest (and the 901 bytes) are gone.
    const live = (await Deno.readTextFile(file)).trim().split("\n");
    assert.match(live.at(-1)!, /^\S+Z 39 y+$/);
    const kept = [`${file}.2`, `${file}.1`, file].map((f) => Deno.readTextFileSync(f)).join("");
    assert.ok(!kept.includes("x"), "the oldest file was dropped");
    const numbers = kept.trim().split("\n").map((l) => Number(l.split(" ")[1]));
    assert.deepEqual(numbers, numbers.slice().sort((a, b) => a - b));
    assert.equal(numbers.at(-1), 39);
  });
});

Deno.test("agentLog() appends stamped lines and drops one a full disk refuses, without throwing", async () => {
  await withHome(async (_p, dir) => {
    const file = join(dir, "agent.log");
    agentLog(file)("prisn agent 1 serving");
    assert.match(await Deno.readTextFile(file), /^\S+Z prisn agent 1 serving\n$/);
    const full = join(dir, "full.log");
    await Deno.symlink("/dev/full", full); // every write fails with ENOSPC
    agentLog(full)("prisn agent 1 stopped"); // must not throw: the agent's stop goes on
  });
});
