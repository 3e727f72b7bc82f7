import assert from "node:assert/strict";
import { join } from "node:path";
import { LocalArtifacts } from "../../core/local_artifacts.ts";
import { paths } from "../../core/paths.ts";
import { DiskHealth } from "../../runtime/disk_health.ts";
import { ResilientArtifacts } from "../../runtime/resilient_artifacts.ts";
import { waitFor } from "../_helpers.ts";

/** Real local artifacts whose setCurrent fails with the kernel's ENOSPC while `full.on`. */
async function withArtifacts(
  fn: (
    a: { artifacts: ResilientArtifacts; disk: DiskHealth; home: string; full: { on: boolean } },
  ) => Promise<void>,
): Promise<void> {
  const home = await Deno.makeTempDir({ prefix: "prisn-resilient-artifacts-" });
  const local = new LocalArtifacts(paths(home));
  const full = { on: false };
  const inner = Object.assign(Object.create(local), {
    setCurrent(deployment: string, version: string, metadata: unknown) {
      if (full.on) {
        return Promise.reject(new Error("No space left on device (os error 28)"));
      }
      return local.setCurrent(deployment, version, metadata);
    },
  }) as LocalArtifacts;
  const disk = new DiskHealth();
  const artifacts = new ResilientArtifacts(inner, disk);
  try {
    await Deno.mkdir(join(home, "deployments", "api"), { recursive: true });
    await fn({ artifacts, disk, home, full });
  } finally {
    artifacts.close();
    await Deno.remove(home, { recursive: true });
  }
}

const metadata = (version: string) => ({ name: "api", version });
const readMetadata = (home: string) =>
  Deno.readTextFile(join(home, "deployments", "api", "metadata.json")).then(JSON.parse);

Deno.test("ResilientArtifacts holds a current link and metadata.json a full disk refused, counts it, and writes the last one once space is back", async () => {
  await withArtifacts(async ({ artifacts, disk, home, full }) => {
    await artifacts.setCurrent("api", "v-1", metadata("v-1"));
    full.on = true;
    await artifacts.setCurrent("api", "v-2", metadata("v-2")); // no throw: bookkeeping
    await artifacts.setCurrent("api", "v-3", metadata("v-3"));
    assert.equal(artifacts.held, 1, "the last one per deployment");
    const state = disk.state();
    assert.equal(state.failedWrites, 2);
    assert.equal(state.pending, 1);
    assert.ok(state.fullSince !== undefined);
    assert.match(state.lastError!, /^files: No space left on device/);
    assert.deepEqual(await readMetadata(home), metadata("v-1"), "the old one, whole");
    full.on = false;
    await waitFor(() => artifacts.held === 0, { what: "the held write to be retried" });
    assert.deepEqual(await readMetadata(home), metadata("v-3"));
    assert.equal(await Deno.readLink(join(home, "deployments", "api", "current")), "v-3");
  });
});

Deno.test("ResilientArtifacts forgets what it held for a deployment that is removed", async () => {
  await withArtifacts(async ({ artifacts, full }) => {
    full.on = true;
    await artifacts.setCurrent("api", "v-2", metadata("v-2"));
    await artifacts.remove("api");
    assert.equal(artifacts.held, 0);
  });
});

Deno.test("ResilientArtifacts lets other errors through", async () => {
  await withArtifacts(async ({ artifacts }) => {
    await assert.rejects(
      artifacts.setCurrent("gone", "v-1", metadata("v-1")),
      Deno.errors.NotFound,
    );
    assert.equal(artifacts.held, 0);
  });
});
