import assert from "node:assert/strict";
import { placeReplicas } from "../../core/placement.ts";

Deno.test("placeReplicas() spreads over distinct nodes first, the same on every node", () => {
  assert.deepEqual([...placeReplicas(3, ["n3", "n1", "n2"])], [["n1", 1], ["n2", 1], ["n3", 1]]);
  assert.deepEqual([...placeReplicas(5, ["b", "a"])], [["a", 3], ["b", 2]]);
  assert.deepEqual([...placeReplicas(1, ["b", "a", "c"])], [["a", 1], ["b", 0], ["c", 0]]);
  assert.deepEqual([...placeReplicas(2, [])], []);
  assert.deepEqual(placeReplicas(4, ["x", "y"]), placeReplicas(4, ["y", "x", "y"]));
});
