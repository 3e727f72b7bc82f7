import assert from "node:assert/strict";
import { ownsName, type PlacementNode, planPlacement, slotsOn } from "../../core/placement.ts";

const up = (...names: string[]): PlacementNode[] =>
  names.map((node) => ({ node, draining: false, ready: 0 }));

Deno.test("a fresh placement spreads over distinct nodes first, in name order", () => {
  assert.deepEqual(planPlacement(undefined, 3, up("n3", "n1", "n2")), [["n1"], ["n2"], ["n3"]]);
  assert.deepEqual(planPlacement(undefined, 5, up("b", "a")), [["a"], ["b"], ["a"], ["b"], ["a"]]);
  assert.deepEqual(planPlacement(undefined, 1, up("b", "a", "c")), [["a"]]);
  assert.deepEqual(planPlacement(undefined, 2, []), [[], []], "no nodes: slots stay vacant");
  assert.deepEqual(planPlacement(undefined, 0, up("a")), []);
});

Deno.test("slots stay on their live nodes; a gone node's slots go to the least loaded", () => {
  const current = [["a"], ["b"], ["c"], ["a"]];
  assert.deepEqual(planPlacement(current, 4, up("a", "b", "c")), current, "nothing to change");
  // c died: its slot goes to b (a has two already).
  assert.deepEqual(planPlacement(current, 4, up("a", "b")), [["a"], ["b"], ["b"], ["a"]]);
  // Scale down cuts the last slots, scale up fills the least loaded first.
  assert.deepEqual(planPlacement(current, 2, up("a", "b", "c")), [["a"], ["b"]]);
  assert.deepEqual(planPlacement(current, 6, up("a", "b", "c")), [
    ["a"],
    ["b"],
    ["c"],
    ["a"],
    ["b"],
    ["c"],
  ]);
  // A node that came back gets a slot when the others are two or more ahead: moved as in a
  // drain (the old replica stays until the new one is ready), one at a time; one ahead is fine.
  assert.deepEqual(planPlacement([["a"], ["a"]], 2, up("a", "b")), [["a"], ["a", "b"]]);
  assert.deepEqual(
    planPlacement([["a"], ["a", "b"]], 2, [
      { node: "a", draining: false, ready: 2 },
      { node: "b", draining: false, ready: 1 },
    ]),
    [["a"], ["b"]],
  );
  assert.deepEqual(planPlacement([["a"], ["a"], ["b"]], 3, up("a", "b")), [["a"], ["a"], ["b"]]);
  assert.deepEqual(planPlacement([["a"], ["a"], ["a"]], 3, up("a", "b", "c")), [
    ["a"],
    ["a"],
    ["a", "b"],
  ]);
});

Deno.test("a draining node's slots move a few at a time and leave only once the target is ready", () => {
  const nodes = (readyB: number, readyC: number): PlacementNode[] => [
    { node: "a", draining: true, ready: 2 },
    { node: "b", draining: false, ready: readyB },
    { node: "c", draining: false, ready: readyC },
  ];
  const start = [["a"], ["a"], ["b"]];
  // One move at a time: slot 0 goes to c (b has one already); a keeps running it meanwhile.
  const p1 = planPlacement(start, 3, nodes(1, 0));
  assert.deepEqual(p1, [["a", "c"], ["a"], ["b"]]);
  assert.equal(slotsOn(p1, "a"), 2);
  assert.equal(slotsOn(p1, "c"), 1);
  // c not ready yet: nothing moves on.
  assert.deepEqual(planPlacement(p1, 3, nodes(1, 0)), p1);
  // c ready: the move finishes and the next starts (to b or c, both have one: b by name).
  const p2 = planPlacement(p1, 3, nodes(1, 1));
  assert.deepEqual(p2, [["c"], ["a", "b"], ["b"]]);
  const p3 = planPlacement(p2, 3, nodes(2, 1));
  assert.deepEqual(p3, [["c"], ["b"], ["b"]]);
  assert.equal(slotsOn(p3, "a"), 0);
  // With room for two moves, both start at once.
  assert.deepEqual(planPlacement(start, 3, nodes(1, 0), 2), [["a", "c"], ["a", "b"], ["b"]]);
  // The target itself starts draining: the move is called off, the slot stays on a.
  const off = planPlacement(p1, 3, [
    { node: "a", draining: true, ready: 2 },
    { node: "b", draining: false, ready: 1 },
    { node: "c", draining: true, ready: 0 },
  ]);
  assert.deepEqual(off, [["a", "b"], ["a"], ["b"]], "called off, then moved to the live one");
  // The source died mid-move: the target keeps the slot.
  assert.deepEqual(planPlacement(p1, 3, up("b", "c")), [["c"], ["b"], ["b"]]);
  // Every node draining: slots stay where they are rather than go nowhere.
  assert.deepEqual(
    planPlacement([["a"]], 1, [{ node: "a", draining: true, ready: 1 }]),
    [["a"]],
  );
});

Deno.test("replica names: a slot's name is its first node's, the extra names are dealt out in turn", () => {
  const slots = [["a"], ["b", "c"], ["c"]];
  assert.equal(ownsName(slots, "a", 0), true);
  assert.equal(ownsName(slots, "b", 1), true);
  assert.equal(ownsName(slots, "c", 1), false, "the move's target takes an extra name");
  // Past the slots: a, b, c, a, b, c…
  assert.deepEqual([3, 4, 5, 6].map((i) => ["a", "b", "c"].find((n) => ownsName(slots, n, i))), [
    "a",
    "b",
    "c",
    "a",
  ]);
  // No two nodes own one name.
  for (let i = 0; i < 20; i++) {
    assert.equal(["a", "b", "c"].filter((n) => ownsName(slots, n, i)).length, 1, `name ${i}`);
  }
});

Deno.test("[placement] constraints: only eligible nodes get slots, moves off the others, room caps a node", () => {
  const nodes = (eligible: string[], room?: number): PlacementNode[] =>
    ["a", "b", "c"].map((node) => ({
      node,
      draining: false,
      ready: 0,
      eligible: eligible.includes(node),
      room,
    }));
  assert.deepEqual(planPlacement(undefined, 2, nodes(["c"])), [["c"], ["c"]]);
  assert.deepEqual(planPlacement(undefined, 3, nodes(["b", "c"])), [["b"], ["c"], ["b"]]);
  // Room for one each: the fourth waits, vacant (nothing is put where it does not fit).
  assert.deepEqual(planPlacement(undefined, 4, nodes(["a", "b", "c"], 1)), [
    ["a"],
    ["b"],
    ["c"],
    [],
  ]);
  // A node that no longer qualifies: its slot moves as from a draining node.
  assert.deepEqual(planPlacement([["a"], ["b"]], 2, nodes(["b", "c"])), [["a", "c"], ["b"]]);
  // Nowhere to go: it stays where it runs rather than stop.
  assert.deepEqual(planPlacement([["a"]], 1, nodes([])), [["a"]]);
  // …and a new slot with no eligible node waits.
  assert.deepEqual(planPlacement([["a"]], 2, nodes([])), [["a"], []]);
});
