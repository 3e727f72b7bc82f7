import assert from "node:assert/strict";
import {
  DEFAULT_ENTRYPOINTS,
  isKnownRuntime,
  pinnedVersion,
  runtimeFamily,
  runtimeForFile,
  validateRuntime,
} from "../../core/runtimes.ts";
import { assertInvalid } from "../_helpers.ts";

Deno.test("validateRuntime() accepts every documented form", () => {
  for (const name of ["python3", "python3.11", "python3.9", "python", "node", "node20", "node8"]) {
    validateRuntime(name);
  }
  for (const name of ["bash", "sh", "deno"]) validateRuntime(name);
});

Deno.test("validateRuntime() rejects unknown names with one line naming the allowed forms", () => {
  for (
    const name of ["ruby", "python2", "python2.7", "python3.", "python3.x", "node-20", "Node", ""]
  ) {
    assert.equal(isKnownRuntime(name), false, name);
    assertInvalid(
      () => validateRuntime(name),
      `runtime "${name}" is not supported: use python3, python3.X (e.g. python3.11), python, node, nodeNN (e.g. node20), bash, sh or deno`,
    );
  }
});

Deno.test("runtimeFamily() groups versioned names and puts sh with bash", () => {
  assert.equal(runtimeFamily("python3"), "python");
  assert.equal(runtimeFamily("python3.12"), "python");
  assert.equal(runtimeFamily("python"), "python");
  assert.equal(runtimeFamily("node"), "node");
  assert.equal(runtimeFamily("node22"), "node");
  assert.equal(runtimeFamily("bash"), "bash");
  assert.equal(runtimeFamily("sh"), "bash");
  assert.equal(runtimeFamily("deno"), "deno");
  assert.throws(() => runtimeFamily("ruby"), /runtime "ruby" is not supported/);
});

Deno.test("pinnedVersion() is the version a name pins, if any", () => {
  assert.equal(pinnedVersion("python3.11"), "3.11");
  assert.equal(pinnedVersion("python3"), "3");
  assert.equal(pinnedVersion("node20"), "20");
  assert.equal(pinnedVersion("python"), undefined);
  assert.equal(pinnedVersion("node"), undefined);
  assert.equal(pinnedVersion("bash"), undefined);
});

Deno.test("runtimeForFile() picks the runtime by extension", () => {
  assert.equal(runtimeForFile("backup.py"), "python3");
  assert.equal(runtimeForFile("src/app.js"), "node");
  assert.equal(runtimeForFile("server.mjs"), "node");
  assert.equal(runtimeForFile("server.cjs"), "node");
  assert.equal(runtimeForFile("/abs/run.sh"), "bash");
  assert.equal(runtimeForFile("main.ts"), "deno");
  assert.equal(runtimeForFile("MAIN.PY"), "python3");
  assert.equal(runtimeForFile("my.dir/run.sh"), "bash");
});

Deno.test("runtimeForFile() is undefined for other files", () => {
  for (const path of ["README.md", "Makefile", "run", ".py", "dir.py/run", "app.rb"]) {
    assert.equal(runtimeForFile(path), undefined, path);
  }
});

Deno.test("DEFAULT_ENTRYPOINTS lists the files tried, in order, each with a known runtime", () => {
  assert.deepEqual(DEFAULT_ENTRYPOINTS, ["main.py", "app.py", "main.js", "index.js", "main.sh"]);
  for (const file of DEFAULT_ENTRYPOINTS) assert.ok(runtimeForFile(file), file);
});
