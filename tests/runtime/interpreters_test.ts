import assert from "node:assert/strict";
import { join } from "node:path";
import type { ErrorCode } from "../../core/errors.ts";
import { findOnPath, resolveInterpreter } from "../../runtime/interpreters.ts";
import { isPrisnError } from "../_helpers.ts";

/** Asserts a rejection with `code` and exactly `message` (or a match). */
async function assertFails(promise: Promise<unknown>, code: ErrorCode, message: string | RegExp) {
  await assert.rejects(promise, isPrisnError(code, message));
}

/** A temp dir holding executable scripts `name` with body `script`, used as a PATH. */
async function fakeBin(programs: Record<string, string>): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "prisn-interpreters-" });
  for (const [name, script] of Object.entries(programs)) {
    const file = join(dir, name);
    await Deno.writeTextFile(file, `#!/bin/sh\n${script}\n`);
    await Deno.chmod(file, 0o755);
  }
  return dir;
}

Deno.test("resolveInterpreter() finds python3 and reads its exact version", async () => {
  const found = await resolveInterpreter("python3");
  assert.equal(found.runtime, "python3");
  assert.equal(found.family, "python");
  assert.match(found.version, /^3\.\d+\.\d+/);
  assert.ok(found.command.startsWith("/"), found.command);
  const run = await new Deno.Command(found.command, { args: ["--version"] }).output();
  assert.equal(new TextDecoder().decode(run.stdout).trim(), `Python ${found.version}`);
});

Deno.test("resolveInterpreter() takes python3.X only when it reports 3.X", async () => {
  const { version } = await resolveInterpreter("python3");
  const minor = version.split(".").slice(0, 2).join(".");
  const found = await resolveInterpreter(`python${minor}`);
  assert.equal(found.version, version);
});

Deno.test("resolveInterpreter() finds node and bash with exact versions", async () => {
  const node = await resolveInterpreter("node");
  assert.equal(node.family, "node");
  assert.match(node.version, /^\d+\.\d+\.\d+$/);
  const major = node.version.split(".")[0];
  assert.deepEqual(await resolveInterpreter(`node${major}`), { ...node, runtime: `node${major}` });

  const bash = await resolveInterpreter("bash");
  assert.equal(bash.family, "bash");
  assert.match(bash.version, /^\d+\.\d+\.\d+$/);
  assert.ok(bash.command.startsWith("/"));
});

Deno.test("resolveInterpreter() refuses a Python that is not installed with UNAVAILABLE", async () => {
  await assertFails(
    resolveInterpreter("python3.99"),
    "UNAVAILABLE",
    'runtime "python3.99" is not installed on this host: install it or set runtime = "python3" in prisn.toml',
  );
});

Deno.test("resolveInterpreter() refuses a node whose major version differs", async () => {
  const path = await fakeBin({ node: 'echo 18.19.0; echo "$0"' });
  try {
    await assertFails(
      resolveInterpreter("node20", { path }),
      "UNAVAILABLE",
      `runtime "node20" is not installed on this host: ${path}/node is version 18.19.0; install it or set runtime = "node" in prisn.toml`,
    );
    const found = await resolveInterpreter("node18", { path });
    assert.deepEqual(found, {
      runtime: "node18",
      family: "node",
      command: `${path}/node`,
      version: "18.19.0",
    });
  } finally {
    await Deno.remove(path, { recursive: true });
  }
});

Deno.test("resolveInterpreter() refuses Python 2 for the python runtime", async () => {
  const path = await fakeBin({ python: "echo 2.7.18; echo /usr/bin/python2.7" });
  try {
    await assertFails(
      resolveInterpreter("python", { path }),
      "UNAVAILABLE",
      `runtime "python" is not installed on this host: ${path}/python is version 2.7.18; install Python 3`,
    );
  } finally {
    await Deno.remove(path, { recursive: true });
  }
});

Deno.test("resolveInterpreter() treats an interpreter that fails to start as not installed", async () => {
  const path = await fakeBin({
    "python3.12": 'echo "pyenv: python3.12: command not found" >&2; exit 127',
  });
  try {
    await assertFails(
      resolveInterpreter("python3.12", { path }),
      "UNAVAILABLE",
      `runtime "python3.12" is not installed on this host: ${path}/python3.12 failed to start (pyenv: python3.12: command not found); install it or set runtime = "python3" in prisn.toml`,
    );
  } finally {
    await Deno.remove(path, { recursive: true });
  }
});

Deno.test("resolveInterpreter() says what to install when nothing is on PATH", async () => {
  const path = await fakeBin({});
  try {
    await assertFails(
      resolveInterpreter("node", { path }),
      "UNAVAILABLE",
      'runtime "node" is not installed on this host: install Node.js',
    );
    await assertFails(
      resolveInterpreter("bash", { path }),
      "UNAVAILABLE",
      'runtime "bash" is not installed on this host: install bash',
    );
  } finally {
    await Deno.remove(path, { recursive: true });
  }
});

Deno.test("resolveInterpreter() rejects an unknown runtime name as INVALID", async () => {
  await assertFails(
    resolveInterpreter("ruby"),
    "INVALID",
    /^runtime "ruby" is not supported: use /,
  );
});

Deno.test("resolveInterpreter() runs the interpreter once per process and runtime", async () => {
  const dir = await Deno.makeTempDir({ prefix: "prisn-interpreters-" });
  const counter = join(dir, "runs");
  const path = await fakeBin({ node: `echo x >> "${counter}"; echo 21.0.0; echo /opt/node` });
  try {
    const [a, b] = await Promise.all([
      resolveInterpreter("node21", { path }),
      resolveInterpreter("node21", { path }),
    ]);
    const c = await resolveInterpreter("node21", { path });
    assert.equal(a, b);
    assert.equal(a, c);
    assert.equal(a.command, "/opt/node");
    assert.equal((await Deno.readTextFile(counter)).trim().split("\n").length, 1);
  } finally {
    await Deno.remove(dir, { recursive: true });
    await Deno.remove(path, { recursive: true });
  }
});

Deno.test("resolveInterpreter() does not cache failures: a later install is found", async () => {
  const path = await fakeBin({});
  try {
    await assertFails(resolveInterpreter("node22", { path }), "UNAVAILABLE", /not installed/);
    const file = join(path, "node");
    await Deno.writeTextFile(file, `#!/bin/sh\necho 22.1.0; echo "$0"\n`);
    await Deno.chmod(file, 0o755);
    assert.equal((await resolveInterpreter("node22", { path })).version, "22.1.0");
  } finally {
    await Deno.remove(path, { recursive: true });
  }
});

Deno.test("resolveInterpreter() finds deno on PATH or the deno running prisn", async () => {
  const found = await resolveInterpreter("deno");
  assert.equal(found.family, "deno");
  assert.match(found.version, /^\d+\.\d+\.\d+/);
  const fromPath = await findOnPath("deno", Deno.env.get("PATH") ?? "");
  assert.equal(found.command, fromPath ?? Deno.execPath());
});

Deno.test("findOnPath() returns the first executable file, skipping others", async () => {
  const first = await fakeBin({});
  const second = await fakeBin({ tool: "true" });
  try {
    await Deno.writeTextFile(join(first, "tool"), "not executable");
    await Deno.mkdir(join(first, "dir-tool"));
    assert.equal(await findOnPath("tool", `${first}:${second}`), join(second, "tool"));
    assert.equal(await findOnPath("dir-tool", `${first}:${second}`), undefined);
    assert.equal(await findOnPath("absent", `::${first}`), undefined);
  } finally {
    await Deno.remove(first, { recursive: true });
    await Deno.remove(second, { recursive: true });
  }
});
