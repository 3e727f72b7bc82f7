/**
 * ClusterPlacement against a real nats-server: what a leader plans is what every node sees, a
 * placement of a replaced leader (lower epoch) is refused, drain marks reach every node, and a
 * watch that brings the leader's own older write late never puts it back over a newer one.
 */
import assert from "node:assert/strict";
import { connect } from "@nats-io/transport-node";
import { type KV, type KvEntry, Kvm, type KvWatchOptions } from "@nats-io/kv";
import { ClusterPlacement, type PlacementLease } from "../../cluster/placement.ts";
import { NO_NATS, withNats } from "./_nats.ts";
import { type Scope, waitFor } from "../_helpers.ts";

if (NO_NATS) console.log(`SKIP placement tests: ${NO_NATS}`);

const BUCKET = "placement";

/** A lease held (or not) at a fixed epoch, with a fence like LeaderLease's. */
function lease(epoch: number, leader: boolean): PlacementLease & { highest: number } {
  return {
    highest: 0,
    isLeader: () => leader,
    epoch,
    fence(e: number) {
      if (e < this.highest) return false;
      this.highest = e;
      return true;
    },
  };
}

/** One node's own connection to the bucket. */
async function openBucket(scope: Scope, url: string): Promise<KV> {
  const nc = await connect({ servers: url });
  scope.defer(() => nc.close());
  return await new Kvm(nc).create(BUCKET, { history: 1 });
}

/** The bucket with every watch entry handed on `delayMs` late (a watch that lags under load). */
function lagging(kv: KV, delayMs: number): KV {
  return new Proxy(kv, {
    get(target, prop) {
      const value = Reflect.get(target, prop, target);
      if (prop !== "watch") return typeof value === "function" ? value.bind(target) : value;
      return async (opts: KvWatchOptions) => {
        const w = await target.watch(opts);
        return {
          stop: () => w.stop(),
          async *[Symbol.asyncIterator](): AsyncGenerator<KvEntry> {
            for await (const e of w) {
              await new Promise((r) => setTimeout(r, delayMs));
              yield e;
            }
          },
        };
      };
    },
  });
}

const nodes = (...names: string[]) => names.map((node) => ({ node, ready: () => 0 }));
const text = (slots: readonly (readonly string[])[] | undefined) =>
  slots?.map((s) => s.join(">")).join(" ");

Deno.test({
  name:
    "ClusterPlacement: the leader's plan reaches every node; a lower epoch is refused; drain marks are shared",
  ignore: NO_NATS !== undefined,
  fn: () =>
    withNats(async (scope, server) => {
      const logged: string[] = [];
      const leader = new ClusterPlacement(await openBucket(scope, server.url), {
        lease: lease(5, true),
        log: (l) => logged.push(l),
      });
      const followerLease = lease(0, false);
      const refused: string[] = [];
      const follower = new ClusterPlacement(await openBucket(scope, server.url), {
        lease: followerLease,
        log: (l) => refused.push(l),
      });
      await leader.start();
      await follower.start();
      scope.defer(() => leader.close());
      scope.defer(() => follower.close());

      await leader.plan([{ name: "web", replicas: 3 }], nodes("a", "b", "c"));
      assert.equal(text(leader.slots("web")), "a b c");
      await waitFor(() => text(follower.slots("web")) === "a b c", { what: "the follower's view" });
      assert.match(logged.join("\n"), /placement: web \(new\) -> a b c at epoch 5 \(ready: a 0/);

      // A follower plans nothing.
      await follower.plan([{ name: "web", replicas: 1 }], nodes("a"));
      assert.equal(text(follower.slots("web")), "a b c");

      // A replaced leader's write (epoch 4 < 5) is refused and said so; the placement stays.
      const stale = await openBucket(scope, server.url);
      await stale.put("p.web", JSON.stringify({ epoch: 4, slots: [["c"], ["c"], ["c"]] }));
      await waitFor(
        () => refused.some((l) => /refused the placement of web from epoch 4/.test(l)),
        {
          what: "the stale placement refused",
        },
      );
      assert.equal(text(follower.slots("web")), "a b c");

      // A drain mark set anywhere is seen everywhere, and moves one slot off the node at once.
      await follower.setDraining("c", true);
      await waitFor(() => leader.isDraining("c"), { what: "the drain mark on the leader" });
      await leader.plan([{ name: "web", replicas: 3 }], nodes("a", "b", "c"));
      assert.equal(text(leader.slots("web")), "a b c>a");
      await leader.setDraining("c", false);
      await waitFor(() => !follower.isDraining("c"), { what: "the drain mark gone" });
      assert.deepEqual(follower.draining(), []);
    }),
});

Deno.test({
  name:
    "ClusterPlacement: a watch that brings the leader's own earlier write late does not put it back",
  ignore: NO_NATS !== undefined,
  fn: () =>
    withNats(async (scope, server) => {
      const leader = new ClusterPlacement(lagging(await openBucket(scope, server.url), 300), {
        lease: lease(1, true),
      });
      await leader.start();
      scope.defer(() => leader.close());
      const seen: string[] = [];
      leader.onChange(() => seen.push(text(leader.slots("web")) ?? "none"));

      await leader.plan([{ name: "web", replicas: 2 }], nodes("a", "b"));
      await leader.plan([{ name: "web", replicas: 3 }], nodes("a", "b"));
      assert.equal(text(leader.slots("web")), "a b a");
      // Both writes come back through the lagging watch within ~600 ms: the view never goes back.
      const until = Date.now() + 1_200;
      while (Date.now() < until) {
        assert.equal(text(leader.slots("web")), "a b a", `seen: ${seen.join(" | ")}`);
        await new Promise((r) => setTimeout(r, 20));
      }
      assert.deepEqual(seen, ["a b", "a b a"]);
    }),
});
