/**
 * Fuzzed loaders, for a bounded number of generated cases each (seeded: a failure is
 * reproducible, and a case that ever failed is kept under tests/fixtures/fuzz/): the prisn.toml
 * loader, the package walker (names, links, special files) and the archive extractor. Each must
 * either succeed in full or refuse with one INVALID line: never another error, a hang, a file
 * dropped silently or anything written outside its folder.
 */
import assert from "node:assert/strict";
import { dirname, join, relative } from "node:path";
import { gunzipSync, gzipSync } from "node:zlib";
import ignore from "ignore";
import { packVersion, unpackVersion } from "../../core/archive.ts";
import { PrisnError } from "../../core/errors.ts";
import { parsePrisnToml, PRISN_TOML_KEYS } from "../../core/prisn_toml.ts";
import { collectPackage, DEFAULT_IGNORES, linkProblem, versionId } from "../../core/version.ts";

const fixtures = new URL("../fixtures/fuzz/", import.meta.url).pathname;
const encoder = new TextEncoder();

/** A small seeded generator (xorshift32), so every run tries the same cases. */
function generator(seed: number) {
  let x = seed >>> 0 || 1;
  const next = () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 2 ** 32;
  };
  return {
    next,
    int: (n: number) => Math.floor(next() * n),
    pick: <T>(items: readonly T[]): T => items[Math.floor(next() * items.length)],
  };
}

/** Fails unless `error` is an INVALID PrisnError of one line. */
function assertRefusal(error: unknown, what: string): void {
  if (!(error instanceof PrisnError) || error.code !== "INVALID") {
    throw new Error(`${what}: not an INVALID PrisnError: ${(error as Error)?.stack ?? error}`);
  }
  assert.ok(!error.message.includes("\n"), `${what}: not one line: ${error.message}`);
  assert.ok(error.message.length < 1000, `${what}: a message of ${error.message.length} chars`);
  // deno-lint-ignore no-control-regex
  assert.doesNotMatch(error.message, /[\u0000-\u001f\u007f]/, `${what}: a control character`);
}

async function fixtureTexts(kind: string): Promise<string[]> {
  const texts: string[] = [];
  try {
    for await (const e of Deno.readDir(join(fixtures, kind))) {
      texts.push(await Deno.readTextFile(join(fixtures, kind, e.name)));
    }
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  return texts;
}

// --- prisn.toml -------------------------------------------------------------------------------

const TOML_SEEDS = [
  'name = "hello-api"\nport = 8780\nreplicas = 2\nhealth = "/healthz"\n',
  'type = "cronjob"\nschedule = "*/5 * * * *"\ntimezone = "Europe/Paris"\n[retry]\nmax = 3\n',
  'entrypoint = "src/server.py"\nargs = ["--workers", "2"]\nsecrets = ["API_KEY"]\n' +
  '[env]\nAPI_KEY = "x"\nLOG_LEVEL = "info"\n[resources]\ncpu = "500m"\nmemory = "512Mi"\n' +
  '[restart]\nbackoff_initial = "1s"\nbackoff_max = "1m"\n[logs]\nrate_limit = "1Mi"\n',
];
const TOML_PIECES = [
  "=",
  '"',
  "'",
  "[",
  "]",
  "[[",
  "]]",
  "{",
  "}",
  ",",
  ".",
  "\n",
  "#",
  "\\",
  '"""',
  "'''",
  "\u0000",
  "\u001b[2J",
  "\u202e",
  "é",
  "🙂",
  "\ud800",
  "-1",
  "1e999",
  "0x10",
  "inf",
  "nan",
  "true",
  "1979-05-27T07:32:00Z",
  "[env]",
  "[resources]",
  "a.b.c.d",
  "x".repeat(5000),
  "[".repeat(200),
  "{a={b={c={d={}}}}}",
  ...PRISN_TOML_KEYS,
];

function mutateToml(text: string, r: ReturnType<typeof generator>): string {
  let out = text;
  for (let n = 1 + r.int(4); n > 0; n--) {
    const at = r.int(out.length + 1);
    switch (r.int(5)) {
      case 0: // insert a piece
        out = out.slice(0, at) + r.pick(TOML_PIECES) + out.slice(at);
        break;
      case 1: // delete a span
        out = out.slice(0, at) + out.slice(at + 1 + r.int(20));
        break;
      case 2: // a random character
        out = out.slice(0, at) + String.fromCharCode(r.int(0x3000)) + out.slice(at + 1);
        break;
      case 3: // a key = value line
        out += `\n${r.pick(PRISN_TOML_KEYS).split(".").pop()} = ${r.pick(TOML_PIECES)}\n`;
        break;
      default: // duplicate a span
        out = out.slice(0, at) + out.slice(r.int(out.length), at + r.int(40)) + out.slice(at);
    }
  }
  return out;
}

Deno.test("fuzz: the prisn.toml loader accepts or refuses in one INVALID line, 3000 generated files", async () => {
  const r = generator(0x70_6d_6c);
  const cases = [...await fixtureTexts("prisn_toml")];
  for (let i = 0; i < 3000; i++) cases.push(mutateToml(r.pick(TOML_SEEDS), r));
  let accepted = 0;
  for (const [i, text] of cases.entries()) {
    const started = performance.now();
    try {
      parsePrisnToml(text);
      accepted++;
    } catch (e) {
      assertRefusal(e, `case ${i} (${JSON.stringify(text.slice(0, 200))})`);
      assert.match((e as Error).message, /^prisn\.toml(:\d+(:\d+)?)?: /, `case ${i}`);
    }
    const took = performance.now() - started;
    assert.ok(took < 2000, `case ${i} took ${took.toFixed(0)} ms`);
  }
  console.log(`prisn.toml: ${cases.length} cases, ${accepted} accepted`);
});

// --- the package walker -----------------------------------------------------------------------

const NAMES = [
  "main.py",
  "a",
  "b.txt",
  "lib",
  "x y",
  "-rf",
  "ü",
  "日本",
  "🙂.sh",
  "a\nb",
  "tab\there",
  ".hidden",
  "node_modules",
  ".git",
  "__pycache__",
  "prisn.toml",
  "n".repeat(255),
  "...",
  "a:b",
  "*",
];

interface Made {
  /** Entries that must end up in the package: path → link target (files: undefined). */
  expected: Map<string, string | undefined>;
  /** Entries that must get the package refused, by path. */
  offending: Set<string>;
}

/** Makes a random tree under `root`; says what a correct walker must make of it. */
async function makeTree(root: string, r: ReturnType<typeof generator>): Promise<Made> {
  const made: Made = { expected: new Map(), offending: new Set() };
  const dirs = [""];
  const all: string[] = [];
  for (let n = 1 + r.int(12); n > 0; n--) {
    const parent = r.pick(dirs);
    const name = r.pick(NAMES);
    const rel = parent ? `${parent}/${name}` : name;
    if (all.includes(rel) || all.some((p) => rel.startsWith(p + "/") && !dirs.includes(p))) {
      continue;
    }
    const abs = join(root, rel);
    const kind = r.int(10);
    if (kind < 4) {
      await Deno.writeTextFile(abs, `content ${n}\n`);
    } else if (kind < 6) {
      await Deno.mkdir(abs);
      dirs.push(rel);
    } else if (kind < 8) { // a relative link, inside or not
      const up = "../".repeat(r.int(4));
      const target = up + r.pick([...all, "missing", "."].filter((t) => t !== rel));
      await Deno.symlink(target || ".", abs);
    } else if (kind < 9) {
      await Deno.symlink(r.pick(["/etc/shadow", "/dev/zero", "/", root]), abs);
    } else {
      const fifo = await new Deno.Command("mkfifo", { args: [abs] }).output();
      assert.ok(fifo.success);
    }
    all.push(rel);
  }
  const rules = ignore().add(DEFAULT_IGNORES);
  const ignoreRules = r.int(3) === 0 ? `${r.pick(NAMES)}\n!${r.pick(NAMES)}\n` : undefined;
  if (ignoreRules) {
    await Deno.writeTextFile(join(root, ".prisnignore"), ignoreRules);
    rules.add(ignoreRules);
    all.push(".prisnignore");
  }
  const hidden = (rel: string) =>
    rel.split("/").some((_, i, parts) => rules.ignores(parts.slice(0, i + 1).join("/") + "/")) ||
    rules.ignores(rel);
  for (const rel of all) {
    const info = await Deno.lstat(join(root, rel));
    if (info.isDirectory) continue;
    const parents = rel.split("/").slice(0, -1);
    if (parents.some((_, i) => rules.ignores(parents.slice(0, i + 1).join("/") + "/"))) continue;
    if (rules.ignores(rel)) continue;
    if (info.isFile) made.expected.set(rel, undefined);
    else if (rules.ignores(rel + "/")) continue;
    else if (info.isSymlink) {
      const target = await Deno.readLink(join(root, rel));
      if (linkProblem(rel, target)) made.offending.add(rel);
      else made.expected.set(rel, target);
    } else made.offending.add(rel);
    void hidden;
  }
  return made;
}

Deno.test("fuzz: the package walker keeps, or refuses by name, every entry of 1000 generated trees", async () => {
  const r = generator(0x77616c6b);
  const base = await Deno.makeTempDir({ prefix: "prisn-fuzz-walk-" });
  let refused = 0;
  let roundTrips = 0;
  try {
    for (let i = 0; i < 1000; i++) {
      const root = join(base, `t${i}`);
      await Deno.mkdir(root);
      const made = await makeTree(root, r);
      let pkg;
      try {
        pkg = await collectPackage(root);
      } catch (e) {
        assertRefusal(e, `tree ${i}`);
        const message = (e as Error).message;
        if (/has no files to deploy/.test(message)) {
          assert.equal(made.expected.size + made.offending.size, 0, `tree ${i}: ${message}`);
        } else {
          assert.ok(made.offending.size > 0, `tree ${i} refused with nothing wrong: ${message}`);
          const named = [...made.offending].some((p) => message.includes(JSON.stringify(p)));
          assert.ok(named, `tree ${i}: ${message} names none of ${[...made.offending]}`);
        }
        refused++;
        continue;
      }
      assert.equal(made.offending.size, 0, `tree ${i} kept ${[...made.offending]}`);
      assert.deepEqual(
        new Map(pkg.files.map((f) => [f.path, f.link])),
        made.expected,
        `tree ${i}: what was packaged`,
      );
      if (i % 5 === 0) { // through an archive and back: the same version
        const dest = join(base, `u${i}`);
        await unpackVersion(await packVersion(root), dest);
        assert.equal(versionId((await collectPackage(dest)).files, {}), versionId(pkg.files, {}));
        roundTrips++;
      }
      await Deno.remove(root, { recursive: true });
    }
  } finally {
    await Deno.remove(base, { recursive: true });
  }
  console.log(`package walker: 1000 trees, ${refused} refused, ${roundTrips} round trips`);
});

// --- the archive extractor --------------------------------------------------------------------

Deno.test("fuzz: the archive extractor unpacks or refuses 3000 mutated archives, never writing outside", async () => {
  const r = generator(0x74617221);
  const base = await Deno.makeTempDir({ prefix: "prisn-fuzz-tar-" });
  try {
    const source = join(base, "source");
    await Deno.mkdir(join(source, "lib"), { recursive: true });
    await Deno.writeTextFile(join(source, "main.py"), "print(1)\n");
    await Deno.writeTextFile(join(source, "lib/util.py"), "X = 1\n".repeat(200));
    await Deno.writeTextFile(join(source, `lib/${"n".repeat(150)}`), "long\n");
    await Deno.symlink("lib/util.py", join(source, "util.py"));
    const tar = gunzipSync(await packVersion(source));
    const outside = join(base, "outside");
    await Deno.mkdir(outside);
    let unpacked = 0;
    const inputs: Uint8Array[] = [];
    for (const text of await fixtureTexts("archives")) {
      inputs.push(Uint8Array.from(atob(text.trim()), (c) => c.charCodeAt(0)));
    }
    for (let i = 0; i < 3000; i++) {
      const bytes = new Uint8Array(tar);
      for (let n = 1 + r.int(6); n > 0; n--) {
        const at = r.int(bytes.length);
        switch (r.int(4)) {
          case 0:
            bytes[at] = r.int(256);
            break;
          case 1: // a header field: name, mode, size, type or link name
            bytes[r.pick([0, 100, 124, 156, 157, 345]) + 512 * r.int(bytes.length / 512)] = r.pick([
              0x2e,
              0x2f,
              0x30,
              0x32,
              0x35,
              0x00,
              0x31,
              0x36,
              0x78,
              0x67,
            ]);
            break;
          case 2: // a path that climbs or is absolute, written over a name
            bytes.set(
              encoder.encode(r.pick(["../x", "/etc/x", "a/../../x", "./", "x/"])),
              512 * r.int(8),
            );
            break;
          default:
            bytes.fill(0, at, at + r.int(600));
        }
      }
      inputs.push(r.int(10) === 0 ? gzipSync(bytes).subarray(0, r.int(200) + 10) : gzipSync(bytes));
    }
    for (const [i, archive] of inputs.entries()) {
      const dest = join(base, "out", `v-${i}`);
      try {
        await unpackVersion(archive, dest, { maxBytes: 1024 * 1024, maxFiles: 100 });
        unpacked++;
        for await (const path of walk(dest)) {
          const info = await Deno.lstat(path);
          if (info.isSymlink) {
            const rel = relative(dest, path);
            assert.equal(
              linkProblem(rel, await Deno.readLink(path)),
              undefined,
              `case ${i}: ${rel}`,
            );
          } else assert.ok(info.isFile || info.isDirectory, `case ${i}: ${path} is special`);
        }
        await Deno.remove(dest, { recursive: true });
      } catch (e) {
        assertRefusal(e, `archive ${i}`);
        const left = [];
        for await (const entry of Deno.readDir(join(base, "out"))) left.push(entry.name);
        assert.deepEqual(left, [], `archive ${i}: left ${left}`);
      }
      const stray = [];
      for await (const entry of Deno.readDir(outside)) stray.push(entry.name);
      for await (const entry of Deno.readDir(base)) stray.push(entry.name);
      assert.deepEqual(stray.sort(), ["out", "outside", "source"], `archive ${i} wrote outside`);
    }
    console.log(`archive extractor: ${inputs.length} archives, ${unpacked} unpacked`);
  } finally {
    await Deno.remove(base, { recursive: true });
  }
});

async function* walk(dir: string): AsyncGenerator<string> {
  for await (const e of Deno.readDir(dir)) {
    const path = join(dir, e.name);
    yield path;
    if (e.isDirectory) yield* walk(path);
  }
}

void dirname;
