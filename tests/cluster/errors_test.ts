/**
 * untilAnswered(): a transient NATS failure (a request timeout) is asked again; any other failure,
 * or one past the wait, is thrown.
 *
 * @module
 */
import assert from "node:assert/strict";
import { untilAnswered } from "../../cluster/errors.ts";

function timeout(): Error {
  const e = new Error("timeout");
  e.name = "TimeoutError";
  return e;
}

Deno.test("untilAnswered() asks again after a timeout, and throws what is not transient at once", async () => {
  let calls = 0;
  const answer = await untilAnswered(() => {
    calls++;
    return calls < 3 ? Promise.reject(timeout()) : Promise.resolve("ok");
  }, 5_000);
  assert.deepEqual([answer, calls], ["ok", 3]);

  calls = 0;
  await assert.rejects(
    untilAnswered(() => (calls++, Promise.reject(new Error("stream not found"))), 5_000),
    /stream not found/,
  );
  assert.equal(calls, 1);

  const started = Date.now();
  await assert.rejects(untilAnswered(() => Promise.reject(timeout()), 300), /timeout/);
  assert.ok(Date.now() - started < 2_000);
  calls = 0;
  await assert.rejects(
    untilAnswered(() => (calls++, Promise.reject(timeout())), 5_000, () => calls >= 2),
    /timeout/,
  );
  assert.equal(calls, 2, "ended() stops the asking");
});
