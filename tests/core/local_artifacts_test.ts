import assert from "node:assert/strict";
import { join } from "node:path";
import { archiveDigest, unpackVersion } from "../../core/archive.ts";
import { LocalArtifacts } from "../../core/local_artifacts.ts";
import { paths } from "../../core/paths.ts";
import { collectPackage, versionId } from "../../core/version.ts";
import { isPrisnError } from "../_helpers.ts";

Deno.test("LocalArtifacts stores a version once, finds it locally, archives it the same every time, removes it", async () => {
  const dir = await Deno.makeTempDir({ prefix: "prisn-artifacts-" });
  try {
    const src = join(dir, "src");
    await Deno.mkdir(src);
    await Deno.writeTextFile(join(src, "main.sh"), "echo hi\n", { mode: 0o755 });
    await Deno.writeTextFile(join(src, "data.txt"), "data\n");
    const pkg = await collectPackage(src);
    const artifacts = new LocalArtifacts(paths(join(dir, "home")));
    assert.equal(await artifacts.put("app", "v-1", pkg), true);
    assert.equal(await artifacts.put("app", "v-1", pkg), false, "same version: stored already");
    const local = await artifacts.ensureLocal("app", "v-1");
    assert.equal(await Deno.readTextFile(join(local, "main.sh")), "echo hi\n");

    const a = await artifacts.archive("app", "v-1");
    const b = await artifacts.archive("app", "v-1");
    assert.equal(archiveDigest(a), archiveDigest(b));
    // What another node would do with it: unpack, and get the very same version id.
    const copy = join(dir, "copy");
    await unpackVersion(a, copy);
    const again = await collectPackage(copy);
    assert.equal(versionId(again.files, {}), versionId(pkg.files, {}));

    await artifacts.remove("app", "v-1");
    await assert.rejects(
      artifacts.ensureLocal("app", "v-1"),
      isPrisnError("NOT_FOUND", "version v-1 of app is not stored on this node: deploy it again"),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
