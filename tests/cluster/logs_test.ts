/**
 * ClusterLogs against a real nats-server: two nodes (two PRISN_HOMEs, two connections) share the
 * cluster's log stream; what one writes, the other tails and follows, merged by time.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { connectCluster } from "../../cluster/connection.ts";
import { ClusterLogs } from "../../cluster/logs.ts";
import { ensureResources } from "../../cluster/setup.ts";
import type { ClusterConnection } from "../../cluster/types.ts";
import { paths } from "../../core/paths.ts";
import { FileLogs } from "../../runtime/logs.ts";
import { Scope, waitFor } from "../_helpers.ts";
import { type NatsServer, NO_NATS, withNats } from "./_nats.ts";

if (NO_NATS) console.log(`skipping tests/cluster/logs_test.ts: ${NO_NATS}`);

const encoder = new TextEncoder();

async function node(scope: Scope, server: NatsServer, name: string, firstWindowMs?: number) {
  const home = await Deno.makeTempDir({ prefix: `prisn-cluster-logs-${name}-` });
  scope.defer(() => Deno.remove(home, { recursive: true }));
  const conn: ClusterConnection = await connectCluster({ servers: [server.url], cluster: "logs" });
  scope.defer(() => conn.close());
  await ensureResources(conn);
  const local = new FileLogs(paths(home));
  const lines: string[] = [];
  const logs = new ClusterLogs({
    nats: conn,
    names: conn.names,
    local,
    log: (l) => lines.push(l),
    firstWindowMs,
  });
  return { home, conn, local, logs, told: lines };
}

function logsTest(name: string, fn: (scope: Scope, server: NatsServer) => Promise<void>) {
  Deno.test({
    name,
    ignore: NO_NATS !== undefined,
    fn: () => withNats(fn),
  });
}

logsTest(
  "lines written on one node are tailed and followed on another, merged by time",
  async (scope, server) => {
    const a = await node(scope, server, "a");
    const b = await node(scope, server, "b");
    // A replica on each node; partial lines wait for their newline, secrets are masked first.
    const wa = a.logs.writer("web", "web-0", { redact: ["s3cret"] });
    const wb = b.logs.writer("web", "web-1");
    wa.feed(encoder.encode("GET / from a\nhalf"));
    await new Promise((r) => setTimeout(r, 5)); // distinct timestamps, so the merge order is known
    wb.feed(encoder.encode("GET / from b\n"));
    await new Promise((r) => setTimeout(r, 5));
    wa.feed(encoder.encode(" a line, token s3cret\n"));
    wa.writeLines(["prisn: a note"], "err");
    wa.close();
    wb.close();

    const tail = await waitFor(async () => {
      const got = await b.logs.tail("web", 10);
      return got.length === 4 ? got : undefined;
    }, { what: "four lines on node b", timeoutMs: 5_000 });
    assert.match(tail[0], /^\S+Z GET \/ from a$/);
    assert.match(tail[1], /^\S+Z GET \/ from b$/);
    assert.match(tail[2], /^\S+Z half a line, token \*\*\*\*\*\*\*\*$/);
    assert.match(tail[3], /^\S+Z \[err\] prisn: a note$/);
    // The writing node still has its own file, as on one node.
    assert.deepEqual((await a.local.tail("web", 10)).length, 3);
    // One stream, and the last n.
    assert.deepEqual((await b.logs.tail("web", 10, { streams: new Set(["web-1"]) })).map(strip), [
      "GET / from b",
    ]);
    assert.deepEqual((await a.logs.tail("web", 1)).map(strip), ["[err] prisn: a note"]);
    // Tagged by stream (the merged view), and a time window (one replica run).
    const tagged = await b.logs.tail("web", 2, { tag: true });
    assert.match(tagged[0], /^\[web-0\] \S+Z half a line/);
    assert.match(tagged[1], /^\[web-0\] \S+Z \[err\] prisn: a note$/);
    const second = Date.parse(tail[1].slice(0, 24));
    assert.deepEqual(
      (await b.logs.tail("web", 10, { since: second, until: second })).map(strip),
      ["GET / from b"],
    );
    assert.equal(await b.logs.has("web", "web-0"), true, "a stream written on another node");
    assert.equal(await b.logs.has("web", "web-9"), false);
    assert.deepEqual(await b.logs.tail("other", 10), []);

    // Following on b sees what a writes from now on (and not another deployment's lines).
    const stop = new AbortController();
    const followed: string[] = [];
    const following = b.logs.follow("web", (l) => followed.push(...l), { signal: stop.signal });
    const w = a.logs.writer("web", "web-0");
    const other = a.logs.writer("api", "api-0");
    await waitFor(() => {
      w.writeLines([`late ${followed.length}`]);
      other.writeLines(["not web"]);
      return followed.length > 0;
    }, { what: "a followed line", timeoutMs: 5_000, intervalMs: 100 });
    stop.abort();
    await following;
    w.close();
    other.close();
    assert.ok(followed.every((l) => /^\S+Z late \d+$/.test(l)), followed.join("\n"));

    // Removing a deployment's logs removes them from the stream too.
    await a.logs.remove("web");
    assert.deepEqual(await b.logs.tail("web", 10), []);
    const api = (await b.logs.tail("api", 10)).map(strip);
    assert.ok(
      api.length >= 1 && api.every((l) => l === "not web"),
      "other deployments keep theirs",
    );
  },
);

logsTest(
  "a tail reads back past a quiet stretch: old lines of a quiet stream still show",
  async (scope, server) => {
    // A first window of 100 ms: lines older than that need the tail to read further back.
    const a = await node(scope, server, "a", 100);
    const w = a.logs.writer("job", "run-1");
    w.writeLines(Array.from({ length: 150 }, (_, i) => `old ${i}`));
    await new Promise((r) => setTimeout(r, 1_000)); // a quiet stretch, 10 first windows long
    w.writeLines(["new 0", "new 1"]);
    w.close();
    const tail = await waitFor(async () => {
      const got = await a.logs.tail("job", 100);
      return got.length === 100 ? got : undefined;
    }, { what: "100 lines", timeoutMs: 5_000 });
    assert.equal(strip(tail[0]), "old 52");
    assert.equal(strip(tail[97]), "old 149");
    assert.equal(strip(tail[99]), "new 1");
    // Asked for more than there are: all of them, from the stream's first message.
    assert.equal((await a.logs.tail("job", 1_000)).length, 152);
  },
);

logsTest(
  "with NATS gone, reads fall back to this node's own files and say so",
  async (scope, server) => {
    const a = await node(scope, server, "a");
    const w = a.logs.writer("web", "web-0");
    w.writeLines(["kept locally"]);
    w.close();
    await server.kill();
    const tail = await a.logs.tail("web", 10);
    assert.deepEqual(tail.map(strip), ["kept locally"]);
    assert.ok(a.told.some((l) => /showing this node's own/.test(l)), a.told.join("\n"));
    // Writing goes on: the line reaches the file whatever NATS does.
    const w2 = a.logs.writer("web", "web-0");
    w2.writeLines(["still written"]);
    w2.close();
    assert.deepEqual((await a.local.tail("web", 10)).map(strip), ["kept locally", "still written"]);
    assert.ok(await Deno.stat(join(a.home, "logs", "web")));
  },
);

/** A line without its timestamp. */
function strip(line: string): string {
  return line.replace(/^\S+Z /, "");
}
