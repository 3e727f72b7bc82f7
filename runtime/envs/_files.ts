/**
 * An env's files and locks: the `.prisn-env.json` marker that makes an env count as built, and
 * the flock per env id that builds and removals hold.
 *
 * @module
 */

import { join } from "node:path";
import type { Interpreter } from "./types.ts";
import type { Plan } from "./_plan.ts";

/** The file whose presence means an env is complete; written last. */
export const MARKER = ".prisn-env.json";
/** The folder, under the envs folder, holding one lock file per env id. */
export const LOCKS = ".locks";
/** The names of env folders: `python3-<12 hex>` or `node-<12 hex>`. */
export const ID_PATTERN = /^(python3|node)-[0-9a-f]{12}$/;

/** True when the env at `dir` has its marker, i.e. was built to the end. */
export async function isComplete(dir: string): Promise<boolean> {
  try {
    return (await Deno.stat(join(dir, MARKER))).isFile;
  } catch {
    return false;
  }
}

/** Writes the marker last, atomically: from now on the env counts as built. */
export async function writeMarker(dir: string, plan: Plan, interp: Interpreter): Promise<void> {
  const temp = join(dir, `${MARKER}.tmp`);
  const body = {
    id: plan.id,
    kind: plan.kind,
    runtime: interp.runtime,
    version: interp.version,
    builtAt: new Date().toISOString(),
  };
  await Deno.writeTextFile(temp, JSON.stringify(body, null, 2) + "\n");
  await Deno.rename(temp, join(dir, MARKER));
}

/**
 * Runs `fn` holding the exclusive flock for one env id (across processes too). The caller makes
 * sure `<envsDir>/.locks` exists.
 */
export async function withLock<T>(envsDir: string, id: string, fn: () => Promise<T>): Promise<T> {
  const file = await Deno.open(join(envsDir, LOCKS, `${id}.lock`), { create: true, write: true });
  try {
    await file.lock(true);
    return await fn();
  } finally {
    file.close(); // closing releases the lock
  }
}
