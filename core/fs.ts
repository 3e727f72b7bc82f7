/**
 * Small file-system helpers for paths that may or may not be there: one version of each, shared
 * by the store, the env builder, the git source and the deploy steps.
 *
 * @module
 */

import { join } from "node:path";
import { PrisnError } from "./errors.ts";

/**
 * True when something is at `path`: a file, a folder or a link (a dangling link too, as it is not
 * followed).
 * @throws any error but NotFound (e.g. PermissionDenied).
 */
export async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}

/**
 * Removes a file or a whole folder tree; nothing at `path` is fine.
 * @throws any error but NotFound.
 */
export async function removeIfPresent(path: string): Promise<void> {
  try {
    await Deno.remove(path, { recursive: true });
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
}

/** Options for {@link readOptional}. */
export interface ReadOptionalOptions {
  /**
   * Treat a folder at `path` as no file (undefined) instead of throwing IsADirectory.
   * @default false
   */
  folderAsMissing?: boolean;
}

/**
 * A text file's content, or undefined when there is no file at `path`.
 * @throws any error but NotFound (and IsADirectory with `folderAsMissing`).
 */
export async function readOptional(
  path: string,
  options: ReadOptionalOptions = {},
): Promise<string | undefined> {
  try {
    return await Deno.readTextFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    if (options.folderAsMissing && error instanceof Deno.errors.IsADirectory) return undefined;
    throw error;
  }
}

/** Creates PRISN_HOME if needed and checks that prisn can write there; a one-line error if not. */
export async function ensureWritable(home: string): Promise<void> {
  try {
    await Deno.mkdir(home, { recursive: true });
    const probe = join(home, `.write-test-${Deno.pid}`);
    await Deno.writeTextFile(probe, "");
    await Deno.remove(probe);
  } catch (e) {
    throw new PrisnError(
      "UNAVAILABLE",
      `PRISN_HOME ${home} is not writable (${(e as Error).name}): ` +
        `set PRISN_HOME to a folder you own or fix its permissions`,
      { cause: e },
    );
  }
}
