import assert from "node:assert/strict";
import { dirname, join } from "node:path";
import { deploymentDir, type Paths, paths, versionDir } from "../../core/paths.ts";
import {
  removeDeploymentFiles,
  removeVersion,
  setCurrent,
  storeVersion,
  writeMetadata,
} from "../../core/store.ts";
import { collectPackage, type Package } from "../../core/version.ts";
import { fill, withTmpfs } from "../_helpers.ts";

interface Fixture {
  p: Paths;
  /** A project folder with main.py (0644), run.sh (0755) and lib/util.py. */
  project: string;
  pkg: Package;
}

/** Runs `fn` with a fresh PRISN_HOME and a small project; removes both afterwards. */
async function withStore(fn: (f: Fixture) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "prisn-store-test-" });
  try {
    const project = join(dir, "project");
    await Deno.mkdir(join(project, "lib"), { recursive: true });
    await Deno.writeTextFile(join(project, "main.py"), "print('main')\n");
    await Deno.writeTextFile(join(project, "run.sh"), "#!/bin/sh\necho run\n");
    await Deno.writeTextFile(join(project, "lib/util.py"), "X = 1\n");
    await Deno.chmod(join(project, "main.py"), 0o644);
    await Deno.chmod(join(project, "run.sh"), 0o755);
    await fn({ p: paths(join(dir, "home")), project, pkg: await collectPackage(project) });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function names(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) out.push(e.name);
  return out.sort();
}

async function mode(path: string): Promise<number> {
  return (await Deno.stat(path)).mode! & 0o777;
}

// --- storeVersion -----------------------------------------------------------------------------

Deno.test("storeVersion() copies every file, read-only, keeping exec bits", async () => {
  await withStore(async ({ p, pkg }) => {
    assert.equal(await storeVersion(p, "api", "v-1", pkg), true);
    const dir = versionDir(p, "api", "v-1");
    assert.equal(await Deno.readTextFile(join(dir, "main.py")), "print('main')\n");
    assert.equal(await Deno.readTextFile(join(dir, "lib/util.py")), "X = 1\n");
    assert.equal(await mode(join(dir, "main.py")), 0o444);
    assert.equal(await mode(join(dir, "lib/util.py")), 0o444);
    assert.equal(await mode(join(dir, "run.sh")), 0o555);
  });
});

Deno.test("storeVersion() keeps the deployment's folder owner-only, and traverse-only once opened to a user", async () => {
  await withStore(async ({ p, pkg }) => {
    await storeVersion(p, "api", "v-1", pkg);
    const folder = deploymentDir(p, "api");
    assert.equal(await mode(folder), 0o700);
    assert.equal(await mode(versionDir(p, "api", "v-1")), 0o700);
    await Deno.chmod(folder, 0o755); // as an older prisn or a hand left it
    await storeVersion(p, "api", "v-2", pkg);
    assert.equal(await mode(folder), 0o711, "no listing; a running user's version stays reachable");
    await Deno.chmod(folder, 0o711); // runtime/run_as.ts opened it for a version run as a user
    await storeVersion(p, "api", "v-3", pkg);
    assert.equal(await mode(folder), 0o711, "storing another version does not cut it off");
    await writeMetadata(p, "api", { version: "v-3" });
    assert.equal(await mode(join(folder, "metadata.json")), 0o600, "metadata holds the env");
  });
});

Deno.test("storeVersion() stores a link inside the package as the same link", async () => {
  await withStore(async ({ p, project }) => {
    await Deno.symlink("lib/util.py", join(project, "util.py"));
    await Deno.symlink("lib", join(project, "lib2"));
    assert.equal(await storeVersion(p, "api", "v-1", await collectPackage(project)), true);
    const dir = versionDir(p, "api", "v-1");
    assert.equal(await Deno.readLink(join(dir, "util.py")), "lib/util.py");
    assert.equal(await Deno.readLink(join(dir, "lib2")), "lib");
    assert.equal(await Deno.readTextFile(join(dir, "lib2/util.py")), "X = 1\n");
  });
});

Deno.test("storeVersion() stores a single-file package under its file name", async () => {
  await withStore(async ({ p, project }) => {
    const pkg = await collectPackage(join(project, "run.sh"));
    assert.equal(await storeVersion(p, "tool", "v-1", pkg), true);
    assert.deepEqual(await names(versionDir(p, "tool", "v-1")), ["run.sh"]);
  });
});

Deno.test("storeVersion() of a version already stored returns false and leaves it as it was", async () => {
  await withStore(async ({ p, pkg, project }) => {
    assert.equal(await storeVersion(p, "api", "v-1", pkg), true);
    await Deno.writeTextFile(join(project, "main.py"), "changed\n");
    let called = false;
    const again = await storeVersion(p, "api", "v-1", pkg, {
      beforeCommit: () => {
        called = true;
        return Promise.resolve();
      },
    });
    assert.equal(again, false);
    assert.equal(called, false, "nothing is prepared for a version already there");
    const stored = join(versionDir(p, "api", "v-1"), "main.py");
    assert.equal(await Deno.readTextFile(stored), "print('main')\n");
    assert.deepEqual(await names(deploymentDir(p, "api")), ["v-1"]);
  });
});

Deno.test("storeVersion() runs beforeCommit on the temp folder before the version appears", async () => {
  await withStore(async ({ p, pkg }) => {
    const finalDir = versionDir(p, "api", "v-1");
    let sawFinal = true;
    await storeVersion(p, "api", "v-1", pkg, {
      beforeCommit: async (temp) => {
        assert.equal(dirname(temp), deploymentDir(p, "api"), "temp sits next to the version");
        assert.equal(await Deno.readTextFile(join(temp, "main.py")), "print('main')\n");
        sawFinal = await Deno.stat(finalDir).then(() => true, () => false);
        await Deno.symlink("/opt/env", join(temp, ".env"));
      },
    });
    assert.equal(sawFinal, false, "the version must not be visible before commit");
    assert.equal(await Deno.readLink(join(finalDir, ".env")), "/opt/env");
  });
});

Deno.test("storeVersion() leaves neither temp folder nor version when beforeCommit fails", async () => {
  await withStore(async ({ p, pkg }) => {
    let tempSeen = "";
    await assert.rejects(
      storeVersion(p, "api", "v-1", pkg, {
        beforeCommit: (temp) => {
          tempSeen = temp;
          return Promise.reject(new Error("env install failed"));
        },
      }),
      /env install failed/,
    );
    assert.ok(tempSeen.includes(".tmp-v-1-"), tempSeen);
    assert.deepEqual(await names(deploymentDir(p, "api")), []);

    assert.equal(await storeVersion(p, "api", "v-1", pkg), true, "a retry stores it");
    assert.deepEqual(await names(deploymentDir(p, "api")), ["v-1"]);
  });
});

Deno.test("storeVersion() leaves nothing behind when a source file vanished", async () => {
  await withStore(async ({ p, pkg, project }) => {
    await Deno.remove(join(project, "lib/util.py"));
    await assert.rejects(storeVersion(p, "api", "v-1", pkg), Deno.errors.NotFound);
    assert.deepEqual(await names(deploymentDir(p, "api")), []);
  });
});

Deno.test("storeVersion() stops when its signal aborts and keeps nothing", async () => {
  await withStore(async ({ p, pkg }) => {
    const stop = new AbortController();
    stop.abort(new Error("client went away"));
    await assert.rejects(
      storeVersion(p, "api", "v-1", pkg, { signal: stop.signal }),
      /client went away/,
    );
    assert.deepEqual(await names(deploymentDir(p, "api")), []);
  });
});

Deno.test("storeVersion() called twice at once for one version stores it once, and both succeed", async () => {
  await withStore(async ({ p, pkg }) => {
    for (let round = 0; round < 5; round++) {
      const version = `v-${round}`;
      const results = await Promise.all([
        storeVersion(p, "api", version, pkg),
        storeVersion(p, "api", version, pkg),
        storeVersion(p, "api", version, pkg),
      ]);
      assert.deepEqual(results.filter((r) => r).length, 1, `round ${round}: ${results}`);
      assert.deepEqual(await names(versionDir(p, "api", version)), ["lib", "main.py", "run.sh"]);
    }
    assert.deepEqual(await names(deploymentDir(p, "api")), ["v-0", "v-1", "v-2", "v-3", "v-4"]);
  });
});

// --- setCurrent and metadata ------------------------------------------------------------------

Deno.test("setCurrent() points 'current' at the version by a relative link", async () => {
  await withStore(async ({ p, pkg }) => {
    await storeVersion(p, "api", "v-1", pkg);
    await setCurrent(p, "api", "v-1");
    const link = join(deploymentDir(p, "api"), "current");
    assert.equal(await Deno.readLink(link), "v-1");
    assert.equal(await Deno.readTextFile(join(link, "main.py")), "print('main')\n");
  });
});

Deno.test("setCurrent() swaps the link without a moment where it is missing and leaves no temp links", async () => {
  await withStore(async ({ p, pkg }) => {
    await storeVersion(p, "api", "v-1", pkg);
    await storeVersion(p, "api", "v-2", pkg);
    await setCurrent(p, "api", "v-1");
    const link = join(deploymentDir(p, "api"), "current");

    let swapping = true;
    let reads = 0;
    const reader = (async () => {
      while (swapping) {
        const target = await Deno.readLink(link); // throws if the link is ever missing
        assert.ok(target === "v-1" || target === "v-2", target);
        reads++;
      }
    })();
    for (let i = 0; i < 200; i++) await setCurrent(p, "api", i % 2 ? "v-1" : "v-2");
    swapping = false;
    await reader;
    assert.ok(reads > 0);

    await setCurrent(p, "api", "v-2");
    assert.equal(await Deno.readLink(link), "v-2");
    assert.deepEqual(await names(deploymentDir(p, "api")), ["current", "v-1", "v-2"]);
  });
});

Deno.test("writeMetadata() writes pretty JSON, replaces it whole and leaves no temp file", async () => {
  await withStore(async ({ p }) => {
    await Deno.mkdir(deploymentDir(p, "api"), { recursive: true });
    await writeMetadata(p, "api", { version: "v-1", replicas: 2 });
    const file = join(deploymentDir(p, "api"), "metadata.json");
    assert.equal(await Deno.readTextFile(file), '{\n  "version": "v-1",\n  "replicas": 2\n}\n');
    await writeMetadata(p, "api", { version: "v-2" });
    assert.deepEqual(JSON.parse(await Deno.readTextFile(file)), { version: "v-2" });
    assert.deepEqual(await names(deploymentDir(p, "api")), ["metadata.json"]);
  });
});

// --- removal ----------------------------------------------------------------------------------

Deno.test("removeVersion() removes one read-only version and ignores a missing one", async () => {
  await withStore(async ({ p, pkg }) => {
    await storeVersion(p, "api", "v-1", pkg);
    await storeVersion(p, "api", "v-2", pkg);
    await removeVersion(p, "api", "v-1");
    await removeVersion(p, "api", "v-1");
    assert.deepEqual(await names(deploymentDir(p, "api")), ["v-2"]);
  });
});

Deno.test("removeDeploymentFiles() removes everything of a deployment and ignores a missing one", async () => {
  await withStore(async ({ p, pkg }) => {
    await storeVersion(p, "api", "v-1", pkg);
    await setCurrent(p, "api", "v-1");
    await storeVersion(p, "web", "v-1", pkg);
    await removeDeploymentFiles(p, "api");
    await removeDeploymentFiles(p, "api");
    assert.deepEqual(await names(p.deployments), ["web"]);
  });
});

Deno.test("writeMetadata on a full disk (a small tmpfs) fails and leaves the old metadata.json whole, with no temp file", async () => {
  await withTmpfs("1m", async (dir) => {
    const p = paths(dir);
    await Deno.mkdir(deploymentDir(p, "api"), { recursive: true });
    await writeMetadata(p, "api", { version: "v-1" });
    await fill(join(dir, "filler"));
    const big = { version: "v-2", padding: "x".repeat(256 * 1024) };
    await assert.rejects(writeMetadata(p, "api", big), /No space left on device|os error 28/);
    const names = [];
    for await (const e of Deno.readDir(deploymentDir(p, "api"))) names.push(e.name);
    assert.deepEqual(names, ["metadata.json"], "no half temp file");
    assert.deepEqual(
      JSON.parse(await Deno.readTextFile(join(deploymentDir(p, "api"), "metadata.json"))),
      { version: "v-1" },
    );
  });
});
