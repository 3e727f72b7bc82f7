/**
 * leasePort(): the ports handed to replicas are never handed out twice while leased, though the
 * kernel sees them as free until the replica binds (the scale e2e's slow starters crash-looped on
 * "address in use" without this).
 *
 * @module
 */
import assert from "node:assert/strict";
import { freePort, leasePort, returnPort } from "../../runtime/context.ts";

Deno.test("leasePort() never hands out a leased port again; returnPort gives it back", () => {
  // 2,000 draws from the kernel's ephemeral range repeat ports many times over (birthday bound):
  // unleased, duplicates are all but certain, as `freePort` alone shows.
  const plain = Array.from({ length: 2_000 }, () => freePort());
  const leased = Array.from({ length: 2_000 }, () => leasePort());
  try {
    assert.ok(new Set(plain).size < plain.length, "the kernel repeats unbound ports");
    assert.equal(new Set(leased).size, leased.length, "a leased port was handed out twice");
  } finally {
    for (const p of leased) returnPort(p);
  }
  const again = new Set(Array.from({ length: 2_000 }, () => leasePort()));
  try {
    assert.ok([...again].some((p) => leased.includes(p)), "returned ports are reused");
  } finally {
    for (const p of again) returnPort(p);
  }
});
