import assert from "node:assert/strict";
import { dirname, join } from "node:path";
import { resolveSpec, runSpecOf } from "../../core/spec.ts";
import {
  canonicalJson,
  collectPackage,
  DEFAULT_IGNORES,
  type PackageFile,
  versionId,
} from "../../core/version.ts";
import { isPrisnError } from "../_helpers.ts";

/** Runs `fn` with a fresh temp folder that is removed afterwards. */
async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "prisn-version-test-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Writes `files` (relative path → content) under `dir`, in the order given. */
async function writeFiles(dir: string, files: [string, string][]): Promise<void> {
  for (const [path, content] of files) {
    const file = join(dir, path);
    await Deno.mkdir(dirname(file), { recursive: true });
    await Deno.writeTextFile(file, content);
  }
}

async function sha256Hex(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

async function idOf(dir: string, runSpec: unknown = {}): Promise<string> {
  return versionId((await collectPackage(dir)).files, runSpec);
}

async function pathsOf(dir: string): Promise<string[]> {
  return (await collectPackage(dir)).files.map((f) => f.path);
}

async function assertInvalid(promise: Promise<unknown>, pattern: RegExp | string): Promise<void> {
  await assert.rejects(promise, isPrisnError("INVALID", pattern));
}

const PROJECT: [string, string][] = [
  ["main.py", "print('hi')\n"],
  ["lib/util.py", "X = 1\n"],
  ["lib/data/table.csv", "a,b\n1,2\n"],
  ["run.sh", "#!/bin/sh\necho run\n"],
];

// --- versionId --------------------------------------------------------------------------------

Deno.test("versionId() is 'v-' and 8 hex digits", async () => {
  await withTempDir(async (dir) => {
    await writeFiles(dir, PROJECT);
    assert.match(await idOf(dir), /^v-[0-9a-f]{8}$/);
  });
});

Deno.test("versionId() ignores the order files were created in", async () => {
  await withTempDir(async (root) => {
    const a = join(root, "a");
    const b = join(root, "b");
    await writeFiles(a, PROJECT);
    await writeFiles(b, [...PROJECT].reverse());
    assert.equal(await idOf(a), await idOf(b));
  });
});

Deno.test("versionId() ignores the order of the file list it is given", async () => {
  await withTempDir(async (dir) => {
    await writeFiles(dir, PROJECT);
    const { files } = await collectPackage(dir);
    assert.equal(versionId([...files].reverse(), {}), versionId(files, {}));
  });
});

Deno.test("versionId() changes when a file's exec bit changes", async () => {
  await withTempDir(async (dir) => {
    await writeFiles(dir, PROJECT);
    await Deno.chmod(join(dir, "run.sh"), 0o644);
    const before = await idOf(dir);
    await Deno.chmod(join(dir, "run.sh"), 0o755);
    assert.notEqual(await idOf(dir), before);
    await Deno.chmod(join(dir, "run.sh"), 0o644);
    assert.equal(await idOf(dir), before);
  });
});

Deno.test("versionId() changes when a file's content changes", async () => {
  await withTempDir(async (dir) => {
    await writeFiles(dir, PROJECT);
    const before = await idOf(dir);
    await Deno.writeTextFile(join(dir, "lib/util.py"), "X = 2\n");
    assert.notEqual(await idOf(dir), before);
  });
});

Deno.test("versionId() changes when a file is renamed, added or removed", async () => {
  await withTempDir(async (dir) => {
    await writeFiles(dir, PROJECT);
    const before = await idOf(dir);
    await Deno.rename(join(dir, "lib/util.py"), join(dir, "lib/utils.py"));
    const renamed = await idOf(dir);
    assert.notEqual(renamed, before);
    await Deno.writeTextFile(join(dir, "extra.txt"), "");
    const added = await idOf(dir);
    assert.notEqual(added, renamed);
    await Deno.remove(join(dir, "extra.txt"));
    assert.equal(await idOf(dir), renamed);
  });
});

Deno.test("versionId() does not change when only file times change", async () => {
  await withTempDir(async (dir) => {
    await writeFiles(dir, PROJECT);
    const before = await idOf(dir);
    const later = new Date(Date.now() + 86_400_000);
    for (const [path] of PROJECT) await Deno.utime(join(dir, path), later, later);
    await Deno.writeTextFile(join(dir, "main.py"), "print('hi')\n"); // rewritten, same bytes
    assert.equal(await idOf(dir), before);
  });
});

Deno.test("versionId() changes when the run spec changes but not when replicas change", async () => {
  await withTempDir(async (dir) => {
    await writeFiles(dir, PROJECT);
    const { files } = await collectPackage(dir);
    const paths = files.map((f) => f.path);
    const spec = (flags: Parameters<typeof resolveSpec>[0]["flags"]) =>
      runSpecOf(resolveSpec({ flags, files: paths, defaultName: "app" }));

    const base = versionId(files, spec({ port: "8000", replicas: "1", env: ["A=1"] }));
    assert.equal(versionId(files, spec({ port: "8000", replicas: "5", env: ["A=1"] })), base);
    assert.notEqual(versionId(files, spec({ port: "8000", replicas: "1", env: ["A=2"] })), base);
    assert.notEqual(versionId(files, spec({ port: "8001", replicas: "1", env: ["A=1"] })), base);
  });
});

Deno.test("versionId() does not depend on the key order of the run spec", () => {
  const files: PackageFile[] = [];
  assert.equal(
    versionId(files, { name: "a", env: { X: "1", Y: "2" } }),
    versionId(files, { env: { Y: "2", X: "1" }, name: "a" }),
  );
});

Deno.test("canonicalJson() sorts keys at every level and keeps array order", () => {
  assert.equal(
    canonicalJson({ b: 1, a: { d: [3, { z: 1, y: 2 }], c: null } }),
    '{"a":{"c":null,"d":[3,{"y":2,"z":1}]},"b":1}',
  );
  assert.notEqual(canonicalJson([1, 2]), canonicalJson([2, 1]));
});

// --- collectPackage ---------------------------------------------------------------------------

Deno.test("collectPackage() lists files by path with sizes, hashes and exec bits", async () => {
  await withTempDir(async (dir) => {
    await writeFiles(dir, PROJECT);
    await Deno.chmod(join(dir, "run.sh"), 0o755);
    await Deno.chmod(join(dir, "main.py"), 0o644);
    const pkg = await collectPackage(dir);
    assert.equal(pkg.kind, "dir");
    assert.equal(pkg.root, dir);
    assert.deepEqual(pkg.files.map((f) => f.path), [
      "lib/data/table.csv",
      "lib/util.py",
      "main.py",
      "run.sh",
    ]);
    const main = pkg.files.find((f) => f.path === "main.py")!;
    assert.equal(main.source, join(dir, "main.py"));
    assert.equal(main.size, 12);
    assert.equal(main.executable, false);
    assert.equal(main.sha256, await sha256Hex("print('hi')\n"));
    assert.equal(pkg.files.find((f) => f.path === "run.sh")!.executable, true);
    assert.equal(
      pkg.bytes,
      PROJECT.reduce((n, [, c]) => n + new TextEncoder().encode(c).length, 0),
    );
  });
});

Deno.test("collectPackage() leaves out .git, node_modules, __pycache__ and .venv at any depth", async () => {
  assert.deepEqual(DEFAULT_IGNORES, [".git", "node_modules", "__pycache__", ".venv"]);
  await withTempDir(async (dir) => {
    await writeFiles(dir, [
      ["main.py", ""],
      [".git/config", ""],
      ["node_modules/left-pad/index.js", ""],
      ["__pycache__/main.cpython-312.pyc", ""],
      [".venv/bin/python", ""],
      ["web/node_modules/x/index.js", ""],
      ["pkg/__pycache__/mod.pyc", ""],
      ["pkg/mod.py", ""],
      [".gitignore", ""],
    ]);
    assert.deepEqual(await pathsOf(dir), [".gitignore", "main.py", "pkg/mod.py"]);
  });
});

Deno.test("collectPackage() honours .prisnignore file globs, dir/ patterns and negation", async () => {
  await withTempDir(async (dir) => {
    await writeFiles(dir, [
      [".prisnignore", "# logs and build output\n*.log\n!keep.log\nbuild/\n/secret.txt\n"],
      ["main.py", ""],
      ["debug.log", ""],
      ["keep.log", ""],
      ["sub/trace.log", ""],
      ["build/out.bin", ""],
      ["sub/build/out.bin", ""],
      ["build.py", ""],
      ["tools/build", "a file, not a folder\n"],
      ["secret.txt", ""],
      ["sub/secret.txt", ""],
    ]);
    assert.deepEqual(await pathsOf(dir), [
      ".prisnignore",
      "build.py",
      "keep.log",
      "main.py",
      "sub/secret.txt",
      "tools/build",
    ]);
  });
});

Deno.test("collectPackage() changes the id when .prisnignore hides a file", async () => {
  await withTempDir(async (dir) => {
    await writeFiles(dir, [["main.py", ""], ["notes.md", "draft"], [".prisnignore", ""]]);
    const before = await idOf(dir);
    await Deno.writeTextFile(join(dir, ".prisnignore"), "notes.md\n");
    assert.notEqual(await idOf(dir), before);
    await Deno.writeTextFile(join(dir, "notes.md"), "edited");
    const hidden = await idOf(dir);
    await Deno.writeTextFile(join(dir, "notes.md"), "edited again");
    assert.equal(await idOf(dir), hidden, "an ignored file does not count");
  });
});

Deno.test("collectPackage() keeps links inside the folder as links (dangling and looping ones too)", async () => {
  await withTempDir(async (dir) => {
    await writeFiles(dir, [["main.py", "print(1)\n"], ["lib/shared.py", "S = 1\n"]]);
    await Deno.symlink("lib/shared.py", join(dir, "shared.py"));
    await Deno.symlink("lib", join(dir, "linked-dir"));
    await Deno.symlink("../main.py", join(dir, "lib/up.py"));
    await Deno.symlink("nowhere.py", join(dir, "dangling.py"));
    await Deno.symlink("loop-b", join(dir, "loop-a"));
    await Deno.symlink("loop-a", join(dir, "loop-b"));
    const pkg = await collectPackage(dir);
    assert.deepEqual(pkg.files.map((f) => [f.path, f.link]), [
      ["dangling.py", "nowhere.py"],
      ["lib/shared.py", undefined],
      ["lib/up.py", "../main.py"],
      ["linked-dir", "lib"],
      ["loop-a", "loop-b"],
      ["loop-b", "loop-a"],
      ["main.py", undefined],
      ["shared.py", "lib/shared.py"],
    ]);
    assert.equal(pkg.bytes, 15, "links add no bytes");
    const id = versionId(pkg.files, {});
    await Deno.remove(join(dir, "shared.py"));
    await Deno.symlink("main.py", join(dir, "shared.py"));
    assert.notEqual(await idOf(dir), id, "a link's target is part of the version");
  });
});

Deno.test("collectPackage() refuses by name a link that is absolute or leads outside the folder", async () => {
  await withTempDir(async (root) => {
    const dir = join(root, "project");
    await writeFiles(dir, [["main.py", "print(1)\n"]]);
    await writeFiles(root, [["outside/shared.py", "S = 1\n"]]);
    await Deno.symlink("/etc/shadow", join(dir, "shadow"));
    await assertInvalid(
      collectPackage(dir),
      'cannot package "shadow": it is a symlink to "/etc/shadow", an absolute path; ' +
        "copy what it points to into the folder, make it a relative link inside, " +
        "or deploy with --follow-links",
    );
    await Deno.remove(join(dir, "shadow"));
    await writeFiles(dir, [["sub/x.py", ""]]);
    await Deno.symlink("../../outside", join(dir, "sub/out"));
    await assertInvalid(
      collectPackage(dir),
      /^cannot package "sub\/out": it is a symlink to "\.\.\/\.\.\/outside", outside the folder;/,
    );
    await Deno.writeTextFile(join(dir, ".prisnignore"), "sub/out\n");
    assert.deepEqual(await pathsOf(dir), [".prisnignore", "main.py", "sub/x.py"], "ignored: fine");
  });
});

Deno.test("collectPackage() with followLinks packages a link outside by its file's content and says so", async () => {
  await withTempDir(async (root) => {
    const dir = join(root, "project");
    await writeFiles(dir, [["main.py", "print(1)\n"], ["lib/x.py", ""]]);
    await writeFiles(root, [["outside/shared.py", "S = 1\n"]]);
    await Deno.symlink(join(root, "outside/shared.py"), join(dir, "shared.py"));
    await Deno.symlink("x.py", join(dir, "lib/inside.py"));
    const pkg = await collectPackage(dir, { followLinks: true });
    assert.deepEqual(pkg.files.map((f) => [f.path, f.link, f.size]), [
      ["lib/inside.py", "x.py", 0],
      ["lib/x.py", undefined, 0],
      ["main.py", undefined, 9],
      ["shared.py", undefined, 6],
    ]);
    assert.deepEqual(pkg.followed, [{
      path: "shared.py",
      target: join(root, "outside/shared.py"),
    }]);
    await Deno.symlink(join(root, "outside"), join(dir, "outdir"));
    await assertInvalid(
      collectPackage(dir, { followLinks: true }),
      /^cannot follow "outdir": it points to a folder outside the folder .*; --follow-links follows links to files only$/,
    );
  });
});

Deno.test("collectPackage() refuses FIFOs, sockets and devices by name", async () => {
  await withTempDir(async (dir) => {
    await writeFiles(dir, [["main.py", ""]]);
    const made = await new Deno.Command("mkfifo", { args: [join(dir, "pipe")] }).output();
    assert.ok(made.success);
    await assertInvalid(
      collectPackage(dir),
      'cannot package "pipe": it is a FIFO; a package holds only files, folders and links ' +
        "inside it (leave it out with .prisnignore)",
    );
    await Deno.remove(join(dir, "pipe"));
    const node = await new Deno.Command("mknod", { args: [join(dir, "null"), "c", "1", "3"] })
      .output();
    if (node.success) {
      await assertInvalid(collectPackage(dir), /^cannot package "null": it is a character device;/);
      await Deno.remove(join(dir, "null"));
    } else console.log("mknod not permitted here: the device case is not tried");
    const listener = Deno.listen({ transport: "unix", path: join(dir, "sock") });
    try {
      await assertInvalid(collectPackage(dir), /^cannot package "sock": it is a socket;/);
    } finally {
      listener.close();
    }
  });
});

Deno.test("collectPackage() refuses a file name that is not UTF-8 instead of dropping it", async () => {
  await withTempDir(async (dir) => {
    await writeFiles(dir, [["main.py", ""]]);
    const made = await new Deno.Command("sh", {
      args: ["-c", `touch "$1/$(printf 'caf\\351.txt')"`, "sh", dir],
    }).output();
    assert.ok(made.success);
    await assertInvalid(
      collectPackage(dir),
      /^cannot package "caf\uFFFD\.txt": its name is not valid UTF-8, so prisn cannot store it exactly;/,
    );
  });
});

Deno.test("collectPackage() refuses a package over its cap before reading it, and hashes big files in bounded memory", async () => {
  await withTempDir(async (dir) => {
    await writeFiles(dir, [["main.py", ""]]);
    using big = await Deno.open(join(dir, "big.bin"), { write: true, create: true });
    await big.truncate(2.5 * 1024 * 1024 * 1024); // sparse: no disk used
    const started = Date.now();
    await assertInvalid(
      collectPackage(dir),
      /^".*" holds 2560\.0 MiB of files, over the 1024\.0 MiB package cap: leave big files out/,
    );
    assert.ok(Date.now() - started < 2000, "refused without reading");
    await big.truncate(300 * 1024 * 1024);
    const before = Deno.memoryUsage().rss;
    const pkg = await collectPackage(dir, { maxBytes: 400 * 1024 * 1024 });
    const grew = Deno.memoryUsage().rss - before;
    assert.equal(pkg.bytes, 300 * 1024 * 1024);
    assert.ok(grew < 100 * 1024 * 1024, `RSS grew ${grew} bytes hashing 300 MiB`);
  });
});

Deno.test("collectPackage() packages a single file as a one-file package", async () => {
  await withTempDir(async (dir) => {
    await writeFiles(dir, [["scripts/report.py", "print('report')\n"], ["scripts/other.py", ""]]);
    const file = join(dir, "scripts/report.py");
    await Deno.chmod(file, 0o755);
    const pkg = await collectPackage(file);
    assert.equal(pkg.kind, "file");
    assert.equal(pkg.root, join(dir, "scripts"));
    assert.equal(pkg.files.length, 1);
    assert.equal(pkg.files[0].path, "report.py");
    assert.equal(pkg.files[0].source, file);
    assert.equal(pkg.files[0].executable, true);
    assert.equal(pkg.bytes, 16);
  });
});

Deno.test("collectPackage() gives the same id to a file and a folder holding just that file", async () => {
  await withTempDir(async (dir) => {
    await writeFiles(dir, [["only/main.py", "print(1)\n"]]);
    assert.equal(await idOf(join(dir, "only/main.py")), await idOf(join(dir, "only")));
  });
});

Deno.test("collectPackage() rejects an empty folder with a one-line INVALID error", async () => {
  await withTempDir(async (dir) => {
    await assertInvalid(
      collectPackage(dir),
      /^folder ".*" has no files to deploy: add a script such as main\.py$/,
    );
    await writeFiles(dir, [["node_modules/x.js", ""], [".git/HEAD", ""]]);
    await assertInvalid(collectPackage(dir), /has no files to deploy/);
  });
});

Deno.test("collectPackage() rejects a missing path with a one-line INVALID error", async () => {
  await withTempDir(async (dir) => {
    const missing = join(dir, "nope");
    await assertInvalid(
      collectPackage(missing),
      /^path ".*nope" does not exist: give a folder, a script file or a git URL$/,
    );
  });
});
