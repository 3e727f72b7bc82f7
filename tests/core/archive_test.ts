import assert from "node:assert/strict";
import { dirname, join } from "node:path";
import { gunzipSync, gzipSync } from "node:zlib";
import {
  archiveDigest,
  packVersion,
  type UnpackOptions,
  unpackVersion,
} from "../../core/archive.ts";
import { collectPackage, versionId } from "../../core/version.ts";
import { isPrisnError } from "../_helpers.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Runs `fn` with a fresh temp folder that is removed afterwards. */
async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "prisn-archive-test-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

type Tree = Record<string, string | Uint8Array | { content: string; exec: true }>;

/** Writes `tree` (relative path → content, or content with an exec bit) under `dir`. */
async function writeTree(
  dir: string,
  tree: Tree,
  options: { fileMode?: number; execMode?: number; order?: "reverse" } = {},
): Promise<void> {
  const paths = Object.keys(tree);
  if (options.order === "reverse") paths.reverse();
  for (const path of paths) {
    const value = tree[path];
    const file = join(dir, path);
    await Deno.mkdir(dirname(file), { recursive: true });
    const exec = typeof value === "object" && "exec" in value;
    const content = exec ? value.content : value;
    await Deno.writeFile(file, typeof content === "string" ? encoder.encode(content) : content);
    await Deno.chmod(file, exec ? options.execMode ?? 0o755 : options.fileMode ?? 0o644);
  }
}

const TREE: Tree = {
  "main.py": "print('main')\n",
  "run.sh": { content: "#!/bin/sh\necho hi\n", exec: true },
  "lib/util.py": "X = 1\n",
  "lib/deep/data.bin": new Uint8Array(1500).map((_, i) => (i * 7) % 256),
  "empty.txt": "",
  "ünïcödé.txt": "ü\n",
  // 170 bytes: needs ustar's prefix field
  [`${"d".repeat(40)}/${"e".repeat(40)}/${"f".repeat(40)}/${"g".repeat(30)}/file.txt`]: "deep\n",
  // a 150-byte file name: fits no ustar field, so a pax header carries the path
  [`long/${"n".repeat(150)}`]: "long\n",
};

/** path → [exec bit, sha256] of what collectPackage() sees in `dir`. */
async function filesOf(dir: string): Promise<Map<string, [boolean, string]>> {
  const pkg = await collectPackage(dir);
  return new Map(pkg.files.map((f) => [f.path, [f.executable, f.sha256]]));
}

// --- A hand-made ustar writer, independent of core/archive.ts, for hostile archives ----------

function tarHeader(
  name: string,
  options: { type?: string; size?: number; mode?: number; linkname?: string } = {},
): Uint8Array {
  const h = new Uint8Array(512);
  const put = (offset: number, text: string) => h.set(encoder.encode(text), offset);
  put(0, name);
  put(100, (options.mode ?? 0o644).toString(8).padStart(7, "0") + "\0");
  put(108, "0000000\0");
  put(116, "0000000\0");
  put(124, (options.size ?? 0).toString(8).padStart(11, "0") + "\0");
  put(136, "00000000000\0");
  put(156, options.type ?? "0");
  if (options.linkname) put(157, options.linkname);
  put(257, "ustar\u000000");
  h.fill(0x20, 148, 156);
  put(148, h.reduce((n, b) => n + b, 0).toString(8).padStart(6, "0") + "\0 ");
  return h;
}

/** A regular-file entry: header, content and padding. */
function tarFile(name: string, content: string | Uint8Array, mode = 0o644): Uint8Array {
  const data = typeof content === "string" ? encoder.encode(content) : content;
  return concat(
    tarHeader(name, { size: data.byteLength, mode }),
    data,
    new Uint8Array((512 - (data.byteLength % 512)) % 512),
  );
}

/** Gzip'd tar of `parts`, with the end-of-archive marker unless `end` is false. */
function gzTar(parts: Uint8Array[], end = true): Uint8Array {
  return gzipSync(concat(...parts, end ? new Uint8Array(1024) : new Uint8Array(0)));
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.byteLength;
  }
  return out;
}

/** The raw headers of a (gzip'd) tar, as written. */
function headersOf(archive: Uint8Array): { block: Uint8Array; body: Uint8Array }[] {
  const tar = gunzipSync(archive);
  const out: { block: Uint8Array; body: Uint8Array }[] = [];
  for (let offset = 0; offset < tar.byteLength;) {
    const block = tar.subarray(offset, offset + 512);
    if (block.every((b) => b === 0)) break;
    const size = parseInt(decoder.decode(block.subarray(124, 135)), 8);
    out.push({ block, body: tar.subarray(offset + 512, offset + 512 + size) });
    offset += 512 + Math.ceil(size / 512) * 512;
  }
  return out;
}

function field(block: Uint8Array, offset: number, width: number): string {
  return decoder.decode(block.subarray(offset, offset + width));
}

function pathOf(block: Uint8Array): string {
  const cut = (s: string) => s.replace(/\0.*$/s, "");
  const prefix = cut(field(block, 345, 155));
  const name = cut(field(block, 0, 100));
  return prefix ? `${prefix}/${name}` : name;
}

/**
 * Unpacks `archive` into `<dir>/out/v-1` expecting an INVALID error matching `message`, and
 * checks that nothing was left: no version folder, no temp folder, nothing outside.
 */
async function assertRefused(
  dir: string,
  archive: Uint8Array,
  message: RegExp,
  options?: UnpackOptions,
): Promise<void> {
  const dest = join(dir, "out", "v-1");
  await assert.rejects(unpackVersion(archive, dest, options), isPrisnError("INVALID", message));
  const left = [];
  for await (const entry of Deno.readDir(join(dir, "out"))) left.push(entry.name);
  assert.deepEqual(left, [], "nothing is left next to the destination");
  for (const outside of ["x", "out/x", "etc"]) {
    await assert.rejects(Deno.lstat(join(dir, outside)), Deno.errors.NotFound);
  }
}

// --- packVersion: determinism ----------------------------------------------------------------

Deno.test("packVersion() gives the very same bytes for the same tree packed twice", async () => {
  await withTempDir(async (dir) => {
    await writeTree(dir, TREE);
    const first = await packVersion(dir);
    const second = await packVersion(dir);
    assert.deepEqual(second, first);
    assert.equal(archiveDigest(second), archiveDigest(first));
  });
});

Deno.test("packVersion() gives the same bytes in another process", async () => {
  await withTempDir(async (dir) => {
    await writeTree(dir, TREE);
    const module = new URL("../../core/archive.ts", import.meta.url).href;
    const code = `import { archiveDigest, packVersion } from ${JSON.stringify(module)};\n` +
      `console.log(archiveDigest(await packVersion(${JSON.stringify(dir)})));`;
    const run = await new Deno.Command(Deno.execPath(), { args: ["eval", code] }).output();
    assert.ok(run.success, decoder.decode(run.stderr));
    assert.equal(decoder.decode(run.stdout).trim(), archiveDigest(await packVersion(dir)));
  });
});

Deno.test("packVersion() gives the same bytes for a copy written later in another order, with other mtimes, modes and owner", async () => {
  await withTempDir(async (dir) => {
    const a = join(dir, "a");
    const b = join(dir, "b");
    await writeTree(a, TREE);
    await writeTree(b, TREE, { order: "reverse", fileMode: 0o400, execMode: 0o700 });
    for await (const entry of Deno.readDir(b)) {
      await Deno.utime(join(b, entry.name), new Date("2001-02-03"), new Date("2001-02-03"));
    }
    await Deno.utime(join(b, "main.py"), new Date(), new Date("1999-12-31T23:59:59Z"));
    await Deno.chmod(join(b, "lib"), 0o700);
    if (Deno.uid() === 0) await Deno.chown(join(b, "main.py"), 1234, 4321);
    assert.equal(archiveDigest(await packVersion(b)), archiveDigest(await packVersion(a)));
  });
});

Deno.test("packVersion() writes gzip with mtime 0 and OS 255, ustar entries in byte order with modes 0644/0755 and no times, ids or names", async () => {
  await withTempDir(async (dir) => {
    await writeTree(dir, {
      "b.txt": "b",
      "a/x.py": "x",
      "a.txt": "a",
      "run.sh": { content: "r", exec: true },
      "é.txt": "e",
      "Z.txt": "z",
    }, { fileMode: 0o600, execMode: 0o700 });
    const archive = await packVersion(dir);
    assert.deepEqual([...archive.subarray(0, 4)], [0x1f, 0x8b, 8, 0], "gzip, deflate, no flags");
    assert.deepEqual([...archive.subarray(4, 8)], [0, 0, 0, 0], "gzip mtime 0");
    assert.equal(archive[9], 255, "gzip OS byte: unknown");

    const headers = headersOf(archive);
    assert.deepEqual(
      headers.map((h) => pathOf(h.block)),
      ["Z.txt", "a.txt", "a/", "a/x.py", "b.txt", "run.sh", "é.txt"],
    );
    for (const { block } of headers) {
      const isDir = pathOf(block).endsWith("/");
      const exec = isDir || pathOf(block) === "run.sh";
      assert.equal(field(block, 156, 1), isDir ? "5" : "0");
      assert.equal(field(block, 100, 8), exec ? "0000755\0" : "0000644\0");
      assert.equal(field(block, 108, 8), "0000000\0", "uid");
      assert.equal(field(block, 116, 8), "0000000\0", "gid");
      assert.equal(field(block, 136, 12), "00000000000\0", "mtime");
      assert.equal(field(block, 257, 8), "ustar\u000000");
      assert.ok(block.subarray(265, 329).every((b) => b === 0), "empty uname and gname");
      assert.ok(block.subarray(157, 257).every((b) => b === 0), "no link name");
    }
  });
});

Deno.test("packVersion() puts a path too long for ustar in a pax header that carries only the path", async () => {
  await withTempDir(async (dir) => {
    const long = `long/${"n".repeat(150)}`;
    await writeTree(dir, { [long]: "long\n" });
    const headers = headersOf(await packVersion(dir));
    const pax = headers.filter((h) => field(h.block, 156, 1) === "x");
    assert.equal(pax.length, 1);
    assert.equal(decoder.decode(pax[0].body), `165 path=${long}\n`);
    assert.equal(field(pax[0].block, 136, 12), "00000000000\0", "the pax header's own mtime");
    assert.equal(field(pax[0].block, 108, 8), "0000000\0", "the pax header's own uid");
    assert.equal(headers.filter((h) => field(h.block, 156, 1) === "g").length, 0);
  });
});

Deno.test("archiveDigest() changes with one changed byte, exec bit or path", async () => {
  await withTempDir(async (dir) => {
    const base = { "main.py": "print(1)\n", "lib/a.py": "A = 1\n" };
    await writeTree(join(dir, "base"), base);
    await writeTree(join(dir, "byte"), { ...base, "main.py": "print(2)\n" });
    await writeTree(join(dir, "exec"), {
      ...base,
      "main.py": { content: "print(1)\n", exec: true },
    });
    await writeTree(join(dir, "path"), { "main.py": "print(1)\n", "lib/b.py": "A = 1\n" });
    const digests = await Promise.all(
      ["base", "byte", "exec", "path"].map(async (d) =>
        archiveDigest(await packVersion(join(dir, d)))
      ),
    );
    assert.equal(new Set(digests).size, 4, digests.join(" "));
    assert.match(digests[0], /^[0-9a-f]{64}$/);
  });
});

// --- packVersion: what it packs and refuses -------------------------------------------------

Deno.test("packVersion() leaves out what collectPackage ignores, so a launched version packs like a fresh one", async () => {
  await withTempDir(async (dir) => {
    const fresh = join(dir, "fresh");
    const launched = join(dir, "launched");
    const tree = { ...TREE, ".prisnignore": "*.log\n" };
    await writeTree(fresh, tree);
    await writeTree(launched, tree);
    // What running a version adds to its folder: the node_modules link, Python's bytecode.
    await Deno.mkdir(join(dir, "env/node_modules"), { recursive: true });
    await Deno.symlink(join(dir, "env/node_modules"), join(launched, "node_modules"));
    await writeTree(launched, {
      "__pycache__/main.cpython-312.pyc": "bytecode",
      "lib/__pycache__/util.cpython-312.pyc": "bytecode",
      ".git/HEAD": "ref: refs/heads/main\n",
      "debug.log": "noise\n",
    });
    await Deno.symlink("/nowhere", join(launched, "lib/debug.log"));
    assert.deepEqual(await packVersion(launched), await packVersion(fresh));
  });
});

Deno.test("packVersion() then unpackVersion() keeps links inside the version as links", async () => {
  await withTempDir(async (dir) => {
    const source = join(dir, "source");
    await writeTree(source, TREE);
    const longTarget = `${"../".repeat(1)}${"t".repeat(120)}.py`;
    await Deno.symlink("util.py", join(source, "lib/link.py"));
    await Deno.symlink("lib", join(source, "lib-dir"));
    await Deno.symlink(longTarget, join(source, "lib/far.py")); // a pax linkpath
    const archive = await packVersion(source);
    assert.deepEqual(await packVersion(source), archive, "deterministic");
    const dest = join(dir, "dest");
    await unpackVersion(archive, dest);
    assert.equal(await Deno.readLink(join(dest, "lib/link.py")), "util.py");
    assert.equal(await Deno.readLink(join(dest, "lib-dir")), "lib");
    assert.equal(await Deno.readLink(join(dest, "lib/far.py")), longTarget);
    const spec = { entrypoint: "main.py" };
    assert.equal(
      versionId((await collectPackage(dest)).files, spec),
      versionId((await collectPackage(source)).files, spec),
    );
  });
});

Deno.test("packVersion() refuses a symlink that leads outside the version folder, naming it", async () => {
  await withTempDir(async (dir) => {
    await writeTree(dir, TREE);
    await Deno.symlink("/etc/shadow", join(dir, "lib/link.py"));
    await assert.rejects(
      packVersion(dir),
      isPrisnError(
        "INVALID",
        `cannot pack "lib/link.py" in ${dir}: it is a symlink to "/etc/shadow", an absolute path`,
      ),
    );
  });
});

Deno.test("packVersion() refuses a FIFO in the version folder, naming it", async () => {
  await withTempDir(async (dir) => {
    await writeTree(dir, TREE);
    const made = await new Deno.Command("mkfifo", { args: [join(dir, "lib/pipe")] }).output();
    assert.ok(made.success, "mkfifo");
    await assert.rejects(
      packVersion(dir),
      isPrisnError("INVALID", /"lib\/pipe" .*: it is a FIFO;/),
    );
  });
});

Deno.test("packVersion() of a missing folder is NOT_FOUND", async () => {
  await withTempDir(async (dir) => {
    await assert.rejects(
      packVersion(join(dir, "v-nothing")),
      isPrisnError("NOT_FOUND", `version folder ${join(dir, "v-nothing")} does not exist`),
    );
  });
});

// --- unpackVersion ---------------------------------------------------------------------------

Deno.test("packVersion() then unpackVersion() gives the same files, content, exec bits and version id", async () => {
  await withTempDir(async (dir) => {
    const source = join(dir, "source");
    const dest = join(dir, "deployments/api/v-1");
    await writeTree(source, TREE);
    const archive = await packVersion(source);
    assert.deepEqual(await unpackVersion(archive, dest), {
      files: Object.keys(TREE).length,
      bytes: (await collectPackage(source)).bytes,
    });
    assert.deepEqual(await filesOf(dest), await filesOf(source));
    const spec = { entrypoint: "main.py", runtime: "python3", args: [], env: {} };
    assert.equal(
      versionId((await collectPackage(dest)).files, spec),
      versionId((await collectPackage(source)).files, spec),
    );
    assert.equal((await Deno.stat(join(dest, "run.sh"))).mode! & 0o777, 0o555);
    assert.equal((await Deno.stat(join(dest, "lib/util.py"))).mode! & 0o777, 0o444);
    assert.deepEqual(await packVersion(dest), archive, "packing the unpacked tree gives the bytes");
    const siblings = [];
    for await (const entry of Deno.readDir(dirname(dest))) siblings.push(entry.name);
    assert.deepEqual(siblings, ["v-1"], "no temp folder left");
  });
});

Deno.test("unpackVersion() reads the archive from a ReadableStream too", async () => {
  await withTempDir(async (dir) => {
    await writeTree(join(dir, "source"), TREE);
    const archive = await packVersion(join(dir, "source"));
    await unpackVersion(new Blob([archive]).stream(), join(dir, "dest"));
    assert.deepEqual(await filesOf(join(dir, "dest")), await filesOf(join(dir, "source")));
  });
});

Deno.test("unpackVersion() accepts a folder GNU tar packed ('./' entries, pax times, owners)", async () => {
  await withTempDir(async (dir) => {
    await writeTree(join(dir, "source"), TREE);
    const file = join(dir, "gnu.tgz");
    const made = await new Deno.Command("tar", {
      args: ["-czf", file, "-C", join(dir, "source"), "--format=pax", "."],
    }).output();
    assert.ok(made.success, decoder.decode(made.stderr));
    await unpackVersion(await Deno.readFile(file), join(dir, "dest"));
    assert.deepEqual(await filesOf(join(dir, "dest")), await filesOf(join(dir, "source")));
  });
});

Deno.test("GNU tar extracts packVersion() output to the same files", async () => {
  await withTempDir(async (dir) => {
    await writeTree(join(dir, "source"), TREE);
    await Deno.writeFile(join(dir, "v.tgz"), await packVersion(join(dir, "source")));
    await Deno.mkdir(join(dir, "gnu"));
    const run = await new Deno.Command("tar", {
      args: ["-xzf", join(dir, "v.tgz"), "-C", join(dir, "gnu")],
    }).output();
    assert.ok(run.success, decoder.decode(run.stderr));
    assert.deepEqual(await filesOf(join(dir, "gnu")), await filesOf(join(dir, "source")));
  });
});

Deno.test("unpackVersion() into a folder that exists is CONFLICT and leaves it as it was", async () => {
  await withTempDir(async (dir) => {
    await writeTree(join(dir, "source"), TREE);
    await writeTree(join(dir, "dest"), { "mine.txt": "mine" });
    await assert.rejects(
      unpackVersion(await packVersion(join(dir, "source")), join(dir, "dest")),
      isPrisnError("CONFLICT", `cannot unpack into ${join(dir, "dest")}: it already exists`),
    );
    assert.deepEqual([...(await filesOf(join(dir, "dest"))).keys()], ["mine.txt"]);
  });
});

Deno.test("unpackVersion() refuses a '../x' entry and leaves nothing, not even the files before it", async () => {
  await withTempDir(async (dir) => {
    const archive = gzTar([tarFile("ok.txt", "fine"), tarFile("../x", "escaped")]);
    await assertRefused(dir, archive, /^archive entry "\.\.\/x" leaves the destination folder/);
    const nested = gzTar([tarFile("lib/../../x", "escaped")]);
    await assertRefused(dir, nested, /"lib\/\.\.\/\.\.\/x" leaves the destination folder/);
    // A name with a newline is escaped: the message stays one line.
    const newline = gzTar([tarFile("../a\nb", "escaped")]);
    await assertRefused(dir, newline, /^archive entry "\.\.\/a\\nb" leaves the destination folder/);
  });
});

Deno.test("unpackVersion() refuses an absolute '/etc/x' entry", async () => {
  await withTempDir(async (dir) => {
    const archive = gzTar([tarFile("/etc/x", "root")]);
    await assertRefused(dir, archive, /^archive entry "\/etc\/x" has an absolute path$/);
  });
});

Deno.test("unpackVersion() refuses symlink, hard link, device and FIFO entries, naming them", async () => {
  await withTempDir(async (dir) => {
    const cases: [string, string, RegExp][] = [
      ["2", "link", /^archive entry "link" is a symlink to "\/etc\/passwd": an absolute path$/],
      ["1", "hard", /^archive entry "hard" is a hard link:/],
      ["3", "tty", /^archive entry "tty" is a character device:/],
      ["4", "disk", /^archive entry "disk" is a block device:/],
      ["6", "pipe", /^archive entry "pipe" is a FIFO:/],
    ];
    for (const [type, name, message] of cases) {
      const archive = gzTar([
        tarFile("ok.txt", "fine"),
        tarHeader(name, { type, linkname: "/etc/passwd" }),
      ]);
      await assertRefused(dir, archive, message);
    }
  });
});

Deno.test("unpackVersion() refuses links that lead outside, and entries through a link", async () => {
  await withTempDir(async (dir) => {
    const linkpath = (target: string) => {
      const line = ` linkpath=${target}\n`;
      const body = encoder.encode(`${line.length + String(line.length).length}${line}`);
      return concat(
        tarHeader("PaxHeader", { type: "x", size: body.byteLength }),
        body,
        new Uint8Array(512 - body.byteLength),
      );
    };
    const cases: [Uint8Array[], RegExp][] = [
      [
        [tarHeader("a/up", { type: "2", linkname: "../../x" })],
        /"a\/up" is a symlink to "\.\.\/\.\.\/x": outside the folder$/,
      ],
      [
        [linkpath("/etc"), tarHeader("l", { type: "2" })],
        /"l" is a symlink to "\/etc": an absolute path$/,
      ],
      [[tarHeader("e", { type: "2" })], /"e" is a symlink to "": not a usable target$/],
      [
        [tarHeader("d", { type: "2", linkname: "." }), tarFile("d/x", "through")],
        /"d\/x" lies inside the file "d"$/,
      ],
      [
        [tarHeader("s", { type: "2", linkname: "ok", size: 3 }), new Uint8Array(512)],
        /"s" is a symlink to "ok": a symlink with 3 bytes of data$/,
      ],
      [[linkpath("x"), tarFile("f", "a")], /"f" has a pax linkpath but is not a symlink$/],
    ];
    for (const [parts, message] of cases) {
      await assertRefused(dir, gzTar([tarFile("ok.txt", "fine"), ...parts]), message);
    }
  });
});

Deno.test("unpackVersion() refuses an entry over maxBytes from its header, before its data", async () => {
  await withTempDir(async (dir) => {
    // Claims 8 GiB and holds nothing: refused by the cap, not as truncated.
    const huge = gzTar([tarHeader("huge.bin", { size: 8 ** 11 - 1 })], false);
    await assertRefused(
      dir,
      huge,
      /^archive holds more than 1073741824 bytes of files \(the cap\), at "huge.bin"$/,
    );
    const real = gzTar([
      tarFile("a.bin", new Uint8Array(600)),
      tarFile("b.bin", new Uint8Array(600)),
    ]);
    await assertRefused(dir, real, /more than 1000 bytes of files \(the cap\), at "b.bin"$/, {
      maxBytes: 1000,
    });
    await unpackVersion(real, join(dir, "out/ok"), { maxBytes: 1200 });
  });
});

Deno.test("unpackVersion() refuses more entries than maxFiles", async () => {
  await withTempDir(async (dir) => {
    const archive = gzTar([tarFile("a", "1"), tarFile("b", "2"), tarFile("c", "3")]);
    await assertRefused(dir, archive, /^archive holds more than 2 entries \(the cap\), at "c"$/, {
      maxFiles: 2,
    });
  });
});

Deno.test("unpackVersion() refuses a path twice and a path inside a file", async () => {
  await withTempDir(async (dir) => {
    await assertRefused(dir, gzTar([tarFile("x.py", "1"), tarFile("x.py", "2")]), /"x.py" twice/);
    await assertRefused(
      dir,
      gzTar([tarFile("a", "1"), tarFile("a/b", "2")]),
      /inside the file "a"/,
    );
  });
});

Deno.test("unpackVersion() refuses a pax header that sets a size, a link or an xattr", async () => {
  await withTempDir(async (dir) => {
    const keys = ["size=5", "SCHILY.xattr.security.capability=x"];
    for (const record of keys) {
      const line = ` ${record}\n`;
      const body = encoder.encode(`${line.length + String(line.length).length}${line}`);
      const archive = gzTar([
        tarHeader("PaxHeader", { type: "x", size: body.byteLength }),
        concat(body, new Uint8Array(512 - body.byteLength)),
        tarFile("a.txt", "a"),
      ]);
      const key = record.slice(0, record.indexOf("="));
      await assertRefused(dir, archive, new RegExp(`^archive has a pax header with "${key}":`));
    }
  });
});

Deno.test("unpackVersion() refuses corrupt input: not gzip, truncated, bad header checksum", async () => {
  await withTempDir(async (dir) => {
    await assertRefused(dir, encoder.encode("not an archive"), /^archive is not valid gzip data/);
    const good = gzTar([tarFile("a.txt", "x".repeat(5000))]);
    await assertRefused(
      dir,
      good.subarray(0, good.byteLength - 20),
      /^archive is (not valid gzip|truncated)/,
    );
    const entry = tarFile("a.txt", "a");
    entry[0] = "b".charCodeAt(0); // name changed, checksum not
    await assertRefused(dir, gzTar([entry]), /^archive is corrupt: bad header checksum at byte 0$/);
    await assertRefused(
      dir,
      gzTar([tarFile("a.txt", "a")], false),
      /truncated: it ends within the end-of-archive/,
    );
  });
});
