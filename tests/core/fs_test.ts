import assert from "node:assert/strict";
import { join } from "node:path";
import { MAX_CONFIG_BYTES, readConfigFile } from "../../core/fs.ts";
import { isPrisnError, within } from "../_helpers.ts";

async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "prisn-fs-test-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function mkfifo(path: string): Promise<void> {
  const out = await new Deno.Command("mkfifo", { args: [path] }).output();
  assert.ok(out.success, "mkfifo failed");
}

Deno.test("readConfigFile() reads a regular file and a link to one; nothing there is undefined", async () => {
  await withTempDir(async (dir) => {
    await Deno.writeTextFile(join(dir, "real.toml"), 'name = "a"\n');
    await Deno.symlink("real.toml", join(dir, "prisn.toml"));
    assert.equal(await readConfigFile(join(dir, "prisn.toml")), 'name = "a"\n');
    assert.equal(await readConfigFile(join(dir, "missing.toml")), undefined);
  });
});

Deno.test("readConfigFile() refuses a link to /dev/zero by name, without reading it", async () => {
  await withTempDir(async (dir) => {
    await Deno.symlink("/dev/zero", join(dir, "prisn.toml"));
    await assert.rejects(
      within(readConfigFile(join(dir, "prisn.toml"), { label: "prisn.toml" }), 5000, "read"),
      isPrisnError(
        "INVALID",
        'prisn.toml is a character device (a link to "/dev/zero"), not a regular file: ' +
          "config files must be regular files of at most 1.0 MiB",
      ),
    );
  });
});

Deno.test("readConfigFile() refuses a FIFO by name instead of waiting for a writer", async () => {
  await withTempDir(async (dir) => {
    await mkfifo(join(dir, ".prisnignore"));
    await assert.rejects(
      within(readConfigFile(join(dir, ".prisnignore"), { label: ".prisnignore" }), 5000, "read"),
      isPrisnError("INVALID", /^\.prisnignore is a FIFO, not a regular file: /),
    );
  });
});

Deno.test("readConfigFile() refuses a folder and a device node by name", async () => {
  await withTempDir(async (dir) => {
    await Deno.mkdir(join(dir, "prisn.toml"));
    await assert.rejects(
      readConfigFile(join(dir, "prisn.toml"), { label: "prisn.toml" }),
      isPrisnError("INVALID", /^prisn\.toml is a folder, not a regular file: /),
    );
    await assert.rejects(
      readConfigFile("/dev/null"),
      isPrisnError("INVALID", /^\/dev\/null is a character device, not a regular file: /),
    );
  });
});

Deno.test("readConfigFile() refuses a file over the cap with its size, and takes one at the cap", async () => {
  await withTempDir(async (dir) => {
    const file = join(dir, "prisn.toml");
    await Deno.writeFile(file, new Uint8Array(MAX_CONFIG_BYTES).fill(0x23)); // "#"
    assert.equal((await readConfigFile(file))?.length, MAX_CONFIG_BYTES);
    await Deno.writeFile(file, new Uint8Array(46 * 1024 * 1024).fill(0x23));
    await assert.rejects(
      readConfigFile(file, { label: "prisn.toml" }),
      isPrisnError(
        "INVALID",
        "prisn.toml is 46.0 MiB: config files must be regular files of at most 1.0 MiB",
      ),
    );
  });
});

Deno.test("readConfigFile() refuses invalid UTF-8 instead of replacing it", async () => {
  await withTempDir(async (dir) => {
    const file = join(dir, "prisn.toml");
    await Deno.writeFile(file, new Uint8Array([0x61, 0x3d, 0x22, 0xff, 0xfe, 0x22, 0x0a]));
    await assert.rejects(
      readConfigFile(file, { label: "prisn.toml" }),
      isPrisnError("INVALID", "prisn.toml is not valid UTF-8: save it as UTF-8 text"),
    );
  });
});
