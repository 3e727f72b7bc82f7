/**
 * Where a service's replicas run: spread over the live nodes (sorted by name, so every node
 * computes the same answer from the same heartbeats), as evenly as counts allow — distinct nodes
 * first. A pure decision over a snapshot.
 */
export function placeReplicas(desired: number, nodes: readonly string[]): Map<string, number> {
  const sorted = [...new Set(nodes)].sort();
  const placed = new Map<string, number>(sorted.map((n) => [n, 0]));
  if (sorted.length === 0) return placed;
  for (let i = 0; i < desired; i++) {
    const node = sorted[i % sorted.length];
    placed.set(node, placed.get(node)! + 1);
  }
  return placed;
}
