/**
 * The cgroup file system, either hierarchy: making and removing groups, reading their pids and
 * counters, killing what is inside.
 *
 * @module
 */

import { PrisnError } from "../../core/errors.ts";
import type { Enforcement } from "./types.ts";

/** The controllers prisn needs in every hierarchy. */
export const CONTROLLERS = ["memory", "cpu"] as const;
/** The cfs period prisn sets, in microseconds; a cpu limit is a quota per period. */
export const CFS_PERIOD_US = 100_000;
const POLL_MS = 10;

/** A best guess without access(2): root, or the owner with the write bit. */
export async function canWrite(dir: string): Promise<boolean> {
  if (Deno.uid() === 0) return true;
  const info = await Deno.stat(dir);
  return info.uid === Deno.uid() && ((info.mode ?? 0) & 0o200) !== 0;
}

/** Creates `<parent>/<name>`, replacing an empty leftover of the same name. */
export async function makeGroup(parent: string, name: string): Promise<string> {
  const dir = `${parent}/${name}`;
  const existing = await Deno.stat(dir).catch(() => undefined);
  if (existing && !existing.isDirectory) {
    throw new PrisnError("INVALID", `limit group name ${name} clashes with cgroup file ${dir}`);
  }
  if (existing) {
    const pids = await readPids([dir]);
    if (pids.length > 0) {
      throw new PrisnError(
        "CONFLICT",
        `cgroup ${dir} still holds processes ${
          pids.join(", ")
        }; stop them or clean up stale groups`,
      );
    }
    await removeDir(dir);
  }
  try {
    await Deno.mkdir(dir);
  } catch (cause) {
    throw new PrisnError("FAILED", `cannot create cgroup ${dir}: ${message(cause)}`, { cause });
  }
  return dir;
}

/** Runs `apply`; if it fails, removes the directories listed in `dirs` and rethrows. */
export async function applyOrRemove(dirs: string[], apply: () => Promise<void>): Promise<void> {
  try {
    await apply();
  } catch (cause) {
    for (const dir of dirs) await removeDir(dir).catch(() => {});
    if (cause instanceof PrisnError) throw cause;
    throw new PrisnError("FAILED", `cannot apply resource limits: ${message(cause)}`, { cause });
  }
}

export async function tryWrite(path: string, value: string): Promise<boolean> {
  try {
    await Deno.writeTextFile(path, value, { create: false });
    return true;
  } catch {
    return false;
  }
}

/** The kernel's OOM-kill counter of a group, or undefined where the kernel has none. */
export async function readOomCount(
  enforcement: Enforcement,
  dir: string,
): Promise<number | undefined> {
  const file = enforcement === "cgroup-v2" ? "memory.events" : "memory.oom_control";
  const text = await readText(`${dir}/${file}`);
  const match = text?.match(/^oom_kill (\d+)$/m);
  return match ? Number(match[1]) : undefined;
}

export async function readPids(dirs: readonly string[]): Promise<number[]> {
  const pids = new Set<number>();
  for (const dir of dirs) {
    const text = await readText(`${dir}/cgroup.procs`);
    for (const word of words(text)) pids.add(Number(word));
  }
  return [...pids];
}

export function killPids(pids: number[], signal: Deno.Signal): number {
  let signalled = 0;
  for (const pid of pids) {
    try {
      Deno.kill(pid, signal);
      signalled++;
    } catch {
      // already gone
    }
  }
  return signalled;
}

/** SIGKILLs every process in `dirs` until they are empty, then removes them. */
export async function emptyAndRemove(dirs: readonly string[], timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let remaining = [...dirs];
  while (remaining.length > 0) {
    killPids(await readPids(remaining), "SIGKILL");
    const next: string[] = [];
    for (const dir of remaining) {
      try {
        await removeDir(dir);
      } catch {
        next.push(dir); // still busy: processes are on their way out
      }
    }
    remaining = next;
    if (remaining.length === 0) return;
    if (Date.now() > deadline) {
      const pids = await readPids(remaining);
      throw new PrisnError(
        "FAILED",
        `cannot remove cgroup ${remaining[0]}: processes ${pids.join(", ") || "none"} remain`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}

export async function removeDir(dir: string): Promise<void> {
  try {
    await Deno.remove(dir);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
}

export async function childGroups(parent: string): Promise<string[]> {
  const names: string[] = [];
  try {
    for await (const entry of Deno.readDir(parent)) {
      if (entry.isDirectory) names.push(entry.name);
    }
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  return names;
}

export async function readText(path: string): Promise<string | undefined> {
  try {
    return (await Deno.readTextFile(path)).trim();
  } catch {
    return undefined;
  }
}

export function words(text: string | undefined): Set<string> {
  return new Set((text ?? "").split(/\s+/).filter((word) => word !== ""));
}

export function unique<T>(items: T[]): T[] {
  return [...new Set(items)];
}

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
