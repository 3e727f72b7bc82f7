/**
 * Where a service's replicas run in a cluster: a pure decision the leader makes over a snapshot
 * of the nodes, written to shared state (cluster/placement.ts) and run by every node.
 *
 * A placement has one entry per replica slot (slot `i` is replica `NAME-i`): the node that runs
 * it, or two nodes while the slot moves — the first keeps running it until the second reports its
 * replicas ready, so a move (a drain, a node that stops) never drops a slot. Slots stay where they
 * are while their node lives; a slot whose node is gone, or a new one, goes to the live node with
 * the fewest of the deployment's slots (ties by name, so a fresh placement is slot i → i-th node:
 * distinct nodes first, as even as counts allow). When live nodes end up two or more slots apart
 * (a node came back), one slot at a time moves from the fullest to the emptiest.
 *
 * @module
 */

/** One slot's nodes: `[node]`, or `[from, to]` while it moves. */
export type SlotNodes = readonly string[];

/** A node as the placement sees it. */
export interface PlacementNode {
  node: string;
  /** Draining: its slots move elsewhere, it gets no new ones. */
  draining: boolean;
  /** How many of the deployment's replicas it reports ready (finishes moves to it). */
  ready: number;
  /**
   * Whether the deployment's `[placement]` allows it; slots on a node that does not qualify
   * move off as from a draining one (they stay while no other node can take them).
   * @default true
   */
  eligible?: boolean;
  /** How many of the deployment's slots fit on it (its memory). @default no limit */
  room?: number;
}

/**
 * The next placement of a deployment of `desired` replicas: `current` (if any) with its slots on
 * gone nodes moved, slots added or cut to `desired`, finished moves settled and at most
 * `maxMoving` slots moving off draining nodes at a time.
 */
export function planPlacement(
  current: readonly SlotNodes[] | undefined,
  desired: number,
  nodes: readonly PlacementNode[],
  maxMoving = 1,
): string[][] {
  const byName = new Map(nodes.map((n) => [n.node, n]));
  const eligible = (n: PlacementNode) => n.eligible !== false;
  const leaving = (n: PlacementNode) => n.draining || !eligible(n);
  const live = [...byName.values()].filter((n) => !leaving(n)).map((n) => n.node).sort();
  const fallback = [...byName.values()].filter(eligible).map((n) => n.node).sort();
  const slots: string[][] = [];
  for (let i = 0; i < desired; i++) {
    slots.push([...(current?.[i] ?? [])].filter((n) => byName.has(n)).slice(0, 2));
  }
  const count = (node: string) => slots.filter((s) => s.includes(node)).length;
  const least = (candidates: string[]) =>
    candidates.filter((n) => count(n) < (byName.get(n)!.room ?? Infinity)).reduce<
      string | undefined
    >((best, n) => {
      if (best === undefined) return n;
      const d = count(n) - count(best);
      return d < 0 || (d === 0 && n < best) ? n : best;
    }, undefined);
  // Moves: dropped when the target left; done once the target reports all its slots ready.
  for (const s of slots) {
    if (s.length !== 2) continue;
    const to = byName.get(s[1])!;
    if (leaving(to)) s.pop();
    else if (to.ready >= count(to.node)) s.shift();
  }
  // Vacant slots (new, or their node is gone): to the least loaded live node with room (a
  // draining one when there is no other); none: the slot waits, vacant.
  for (const s of slots) {
    if (s.length > 0) continue;
    const node = least(live) ?? least(fallback);
    if (node !== undefined) s.push(node);
  }
  // Slots on draining nodes start moving, a few at a time.
  let moving = slots.filter((s) => s.length === 2).length;
  for (const s of slots) {
    if (moving >= maxMoving) break;
    if (s.length !== 1 || !leaving(byName.get(s[0])!)) continue;
    const to = least(live);
    if (to === undefined) break;
    s.push(to);
    moving++;
  }
  // Uneven (a node came back, or joined): a slot of the fullest live node moves to the emptiest
  // when they differ by two or more, as gracefully as a drain, one at a time.
  if (moving === 0) {
    const most = [...live].sort((a, b) => count(b) - count(a) || (a < b ? -1 : 1))[0];
    const to = least(live);
    if (most !== undefined && to !== undefined && count(most) - count(to) >= 2) {
      const slot = slots.findLast((s) => s.length === 1 && s[0] === most);
      slot?.push(to);
    }
  }
  return slots;
}

/** How many replicas `node` runs under a placement (moving slots count on both nodes). */
export function slotsOn(slots: readonly SlotNodes[], node: string): number {
  return slots.filter((s) => s.includes(node)).length;
}

/**
 * Whether `node` may name a replica `NAME-index` under a placement: a slot's own name belongs to
 * its first node; the names past the slots (a rollout's or a move's extra replicas) are dealt out
 * over the placement's nodes in turn, so two nodes never pick the same name.
 */
export function ownsName(slots: readonly SlotNodes[], node: string, index: number): boolean {
  if (index < slots.length) return slots[index][0] === node;
  const nodes = [...new Set(slots.flat())].sort();
  if (!nodes.includes(node)) nodes.push(node);
  return nodes[(index - slots.length) % nodes.length] === node;
}
