/**
 * Small file-system helpers for paths that may or may not be there: one version of each, shared
 * by the store, the env builder, the git source and the deploy steps.
 *
 * @module
 */

import { join } from "node:path";
import { invalid, PrisnError } from "./errors.ts";
import { formatBytes } from "./quantity.ts";

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

/** The most bytes a config file (prisn.toml, .prisnignore, an --env-file) may hold: 1 MiB. */
export const MAX_CONFIG_BYTES = 1024 * 1024;

/** Options for {@link readConfigFile}. */
export interface ReadConfigOptions {
  /**
   * How errors name the file.
   * @default the path
   */
  label?: string;
  /**
   * The size cap.
   * @default MAX_CONFIG_BYTES (1 MiB)
   */
  maxBytes?: number;
}

const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

/**
 * A config file's text, or undefined when nothing is at `path`. Only a regular file (a symlink to
 * one is followed) of at most `maxBytes` of valid UTF-8 is read, and never more than that many
 * bytes: a FIFO, a device (a link to /dev/zero), a socket or a folder is refused by name instead
 * of being opened, so no config file can hang or bloat the reader.
 * @throws PrisnError INVALID naming the file and what it is.
 */
export async function readConfigFile(
  path: string,
  options: ReadConfigOptions = {},
): Promise<string | undefined> {
  const label = options.label ?? path;
  const maxBytes = options.maxBytes ?? MAX_CONFIG_BYTES;
  const refuse = (what: string) =>
    invalid(
      `${label} ${what}: config files must be regular files of at most ${formatBytes(maxBytes)}`,
    );
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw new PrisnError("INVALID", `cannot read ${label}: ${(e as Error).message}`, { cause: e });
  }
  if (!info.isFile) {
    const link = await Deno.readLink(path).catch(() => undefined);
    const target = link === undefined ? "" : ` (a link to ${JSON.stringify(link)})`;
    throw refuse(`is ${fileKind(info)}${target}, not a regular file`);
  }
  if (info.size > maxBytes) throw refuse(`is ${formatBytes(info.size)}`);
  using file = await Deno.open(path);
  if (!(await file.stat()).isFile) throw refuse("changed into a special file while read");
  const buffer = new Uint8Array(maxBytes + 1);
  let read = 0;
  while (read < buffer.byteLength) {
    const n = await file.read(buffer.subarray(read));
    if (n === null) break;
    read += n;
  }
  if (read > maxBytes) throw refuse(`grew over ${formatBytes(maxBytes)} while read`);
  try {
    return strictUtf8.decode(buffer.subarray(0, read));
  } catch {
    throw invalid(`${label} is not valid UTF-8: save it as UTF-8 text`);
  }
}

/** What a file is, with an article: "a folder", "a FIFO", "a character device"… */
export function fileKind(info: Deno.FileInfo): string {
  if (info.isFile) return "a regular file";
  if (info.isDirectory) return "a folder";
  if (info.isSymlink) return "a symlink";
  if (info.isFifo) return "a FIFO";
  if (info.isSocket) return "a socket";
  if (info.isCharDevice) return "a character device";
  if (info.isBlockDevice) return "a block device";
  return "a special file";
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

/**
 * Makes a deployment's folder owner-only, but keeps the traverse bits it was given for a
 * deployment run as another user (0711, see runtime/run_as.ts): a version may hold secrets
 * (prisn.toml [env]), and a version being stored must not cut off one that runs.
 */
export async function ownerOnlyFolder(dir: string): Promise<void> {
  const mode = (await Deno.stat(dir)).mode! & 0o777;
  const wanted = 0o700 | (mode & 0o011);
  if (mode !== wanted) await Deno.chmod(dir, wanted);
}

/** Writes a file only its owner can read (tokens, contexts), atomically. */
export async function writePrivate(path: string, text: string): Promise<void> {
  await writeFileAtomic(path, text, { mode: 0o600 });
}

/**
 * Writes `text` to a temp file beside `path` and renames it into place, so `path` is never seen
 * half written; when a write fails (a full disk) the temp file is removed, not left behind.
 */
export async function writeFileAtomic(
  path: string,
  text: string,
  options: { mode?: number } = {},
): Promise<void> {
  const temp = `${path}.${crypto.randomUUID().slice(0, 8)}`;
  try {
    await Deno.writeTextFile(temp, text, { mode: options.mode, createNew: true });
    await Deno.rename(temp, path);
  } catch (e) {
    await Deno.remove(temp).catch(() => {});
    throw e;
  }
}
