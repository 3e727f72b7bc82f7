import assert from "node:assert/strict";
import { type Release, StartQueue } from "../../runtime/start_queue.ts";

/** Lets queued promise callbacks run. */
const settle = () => new Promise((r) => setTimeout(r, 0));

Deno.test("StartQueue lets at most `parallelism` starts run at once", async () => {
  const q = new StartQueue(2);
  const granted: Release[] = [];
  for (let i = 0; i < 5; i++) q.acquire("a").then((r) => granted.push(r!));
  await settle();
  assert.equal(granted.length, 2);
  assert.equal(q.queued, 3);
  granted[0]();
  granted[0](); // idempotent: one slot, given back once
  await settle();
  assert.equal(granted.length, 3);
  assert.equal(q.active, 2);
});

Deno.test("StartQueue serves deployments in turn: a small deploy is not stuck behind a large one", async () => {
  const q = new StartQueue(1);
  const order: string[] = [];
  const hold = await q.acquire("big");
  for (let i = 0; i < 100; i++) q.acquire("big").then((r) => (order.push("big"), r!()));
  for (let i = 0; i < 3; i++) q.acquire("small").then((r) => (order.push("small"), r!()));
  hold!();
  while (q.queued > 0 || q.active > 0) await settle();
  assert.equal(order.length, 103);
  assert.deepEqual(order.slice(0, 6), ["big", "small", "big", "small", "big", "small"]);
});

Deno.test("StartQueue gives up a waiting place when its signal aborts, and never grants it", async () => {
  const q = new StartQueue(1);
  const hold = await q.acquire("a");
  const stop = new AbortController();
  const waiting = q.acquire("b", stop.signal);
  stop.abort();
  assert.equal(await waiting, undefined);
  assert.equal(q.queued, 0);
  hold!();
  assert.equal(q.active, 0);
  assert.equal(await q.acquire("b", stop.signal), undefined); // aborted already
});

Deno.test("StartQueue refuses a parallelism that is not a positive integer", () => {
  assert.throws(() => new StartQueue(0), RangeError);
  assert.throws(() => new StartQueue(1.5), RangeError);
});
