/**
 * The on-disk layout of namespaces: deployments/NAMESPACE/NAME/… and logs/NAMESPACE/NAME/…. A
 * home written before namespaces (deployments/NAME/…) moves under `default` in place, at the
 * agent's start, by renames only: each folder is moved into a staging folder as its `default`,
 * and the staging folder (marked) renamed back. Every state a crash can leave is told apart by
 * the marker and the staging folder, and the next start finishes the move.
 *
 * @module
 */

import { join } from "node:path";
import { DEFAULT_NAMESPACE } from "./namespace.ts";
import { exists } from "./fs.ts";
import type { Paths } from "./paths.ts";

/** A file in deployments/ and logs/ that says they hold namespaces. */
export const LAYOUT_MARKER = ".namespaces";

/**
 * Brings deployments/ and logs/ to the namespaced layout; answers the folders it moved under
 * `default` (none for a home already namespaced, or a new one).
 */
export async function migrateLayout(paths: Paths): Promise<string[]> {
  const moved: string[] = [];
  for (const dir of [paths.deployments, paths.logs]) {
    const staging = `${dir}.namespaced`;
    if (await exists(join(dir, LAYOUT_MARKER))) continue;
    if (!(await exists(dir))) {
      // The old folder is in staging already (a crash after the first rename), or a new home.
      if (await exists(staging)) await Deno.rename(staging, dir);
      else await mark(dir);
      continue;
    }
    await mark(staging);
    await Deno.rename(dir, join(staging, DEFAULT_NAMESPACE));
    await Deno.rename(staging, dir);
    moved.push(dir);
  }
  return moved;
}

async function mark(dir: string): Promise<void> {
  await Deno.mkdir(dir, { recursive: true });
  await Deno.writeTextFile(
    join(dir, LAYOUT_MARKER),
    "Namespaces: every folder here is a namespace's (core/layout.ts).\n",
  );
}
