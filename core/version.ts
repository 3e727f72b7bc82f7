import { createHash } from "node:crypto";
import { basename, join, posix, relative, sep } from "node:path";
import ignore from "ignore";
import { invalid, PrisnError } from "./errors.ts";
import { fileKind, readConfigFile } from "./fs.ts";
import { formatBytes } from "./quantity.ts";

/** Folders never packaged: VCS data, dependency folders and caches that prisn rebuilds itself. */
export const DEFAULT_IGNORES = [".git", "node_modules", "__pycache__", ".venv"];

/** The most bytes of file content a package may hold, unless the caller says otherwise: 1 GiB. */
export const DEFAULT_MAX_PACKAGE_BYTES = 1024 * 1024 * 1024;

/**
 * One entry of a package: a regular file, or a symlink kept as a link (its target relative and
 * inside the package). Its path is relative to the package root (always with "/").
 */
export interface PackageFile {
  path: string;
  /** Absolute path it is read from. */
  source: string;
  executable: boolean;
  /** Bytes of content (0 for a link). */
  size: number;
  /** sha256 of the content, hex (of the link's target for a link). */
  sha256: string;
  /** A symlink's target, as written (relative; it resolves inside the package). */
  link?: string;
}

export interface Package {
  /** The folder the files come from (for a single file: its folder). */
  root: string;
  kind: "dir" | "file";
  files: PackageFile[];
  bytes: number;
  /** Links that point outside, packaged by their content (only with `followLinks`). */
  followed?: Array<{ path: string; target: string }>;
}

/** Options for {@link collectPackage}. */
export interface CollectOptions {
  /**
   * The most bytes of file content the package may hold, all files together.
   * @default DEFAULT_MAX_PACKAGE_BYTES (1 GiB)
   */
  maxBytes?: number;
  /**
   * Package a link that is absolute or leads outside the folder by the content of the file it
   * points to (listed in `Package.followed`) instead of refusing it. A link to a folder outside
   * is refused still. @default false
   */
  followLinks?: boolean;
}

/**
 * Reads a folder (honouring DEFAULT_IGNORES and `.prisnignore`, gitignore syntax) or a single file
 * into a package: the list of files with their content hashes, sorted by path. Nothing is left
 * out silently: a symlink inside the folder is kept as a link; one that is absolute or leads
 * outside the folder, a FIFO, socket or device, and a name that is not UTF-8 (which prisn could
 * not store exactly) are refused by name. Content is hashed as a stream (bounded memory), and a
 * package over `maxBytes` is refused before anything is read.
 * @throws PrisnError INVALID naming the path and what is wrong with it.
 */
export async function collectPackage(path: string, options: CollectOptions = {}): Promise<Package> {
  const maxBytes = options.maxBytes ?? DEFAULT_MAX_PACKAGE_BYTES;
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw invalid(`path "${path}" does not exist: give a folder, a script file or a git URL`);
    }
    throw new PrisnError("INVALID", `cannot read "${path}": ${(e as Error).message}`, { cause: e });
  }
  if (info.isFile) {
    checkSize(info.size, maxBytes, path);
    const file = await describeFile(path, basename(path), info);
    return { root: join(path, ".."), kind: "file", files: [file], bytes: file.size };
  }
  if (!info.isDirectory) {
    throw invalid(`"${path}" is ${fileKind(info)}: give a folder, a script file or a git URL`);
  }

  const rules = ignore().add(DEFAULT_IGNORES);
  const ignoreFile = await readConfigFile(join(path, ".prisnignore"), { label: ".prisnignore" });
  if (ignoreFile !== undefined) rules.add(ignoreFile);
  const found: Found[] = [];
  await walk(path, path, rules, found, options.followLinks ?? false);
  const total = found.reduce((n, f) => n + f.info.size * (f.info.isFile ? 1 : 0), 0);
  checkSize(total, maxBytes, path);
  const files: PackageFile[] = [];
  // A few files at a time: bounded open files and memory, whatever the folder holds.
  for (let i = 0; i < found.length; i += HASH_BATCH) {
    files.push(...await Promise.all(found.slice(i, i + HASH_BATCH).map(describe)));
  }
  files.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  if (files.length === 0) {
    throw invalid(`folder "${path}" has no files to deploy: add a script such as main.py`);
  }
  const pkg: Package = {
    root: path,
    kind: "dir",
    files,
    bytes: files.reduce((n, f) => n + f.size, 0),
  };
  const followed = found.filter((f) => f.followed !== undefined);
  if (followed.length) {
    pkg.followed = followed.map((f) => ({ path: f.rel, target: f.followed! }))
      .sort((a, b) => (a.path < b.path ? -1 : 1));
  }
  return pkg;
}

/** Files hashed at once. */
const HASH_BATCH = 16;
/** Bytes read at once while hashing. */
const READ_CHUNK = 256 * 1024;

/** A file or link the walk found, not yet read. */
interface Found {
  abs: string;
  rel: string;
  info: Deno.FileInfo;
  link?: string;
  /** A link outside, followed: its target (the file's info is the target's). */
  followed?: string;
}

function checkSize(bytes: number, maxBytes: number, path: string): void {
  if (bytes > maxBytes) {
    throw invalid(
      `"${path}" holds ${formatBytes(bytes)} of files, over the ${formatBytes(maxBytes)} ` +
        `package cap: leave big files out with .prisnignore (or raise prisn agent run --max-package)`,
    );
  }
}

async function walk(
  root: string,
  dir: string,
  rules: ReturnType<typeof ignore>,
  out: Found[],
  followLinks: boolean,
): Promise<void> {
  const entries: Deno.DirEntry[] = [];
  for await (const entry of Deno.readDir(dir)) entries.push(entry);
  for (const entry of entries) {
    const abs = join(dir, entry.name);
    const rel = relative(root, abs).split(sep).join("/");
    let info: Deno.FileInfo;
    try {
      info = await Deno.lstat(abs); // never follows a link
    } catch (e) {
      if (e instanceof Deno.errors.NotFound && entry.name.includes("\uFFFD")) {
        throw invalid(
          `cannot package ${JSON.stringify(rel)}: its name is not valid UTF-8, so prisn cannot ` +
            `store it exactly; rename it (or leave it out with .prisnignore)`,
        );
      }
      if (e instanceof Deno.errors.NotFound) continue; // removed while we walk
      throw e;
    }
    if (info.isDirectory) {
      if (!rules.ignores(rel + "/")) await walk(root, abs, rules, out, followLinks);
      continue;
    }
    if (rules.ignores(rel)) continue;
    if (info.isFile) {
      out.push({ abs, rel, info });
    } else if (rules.ignores(rel + "/")) {
      continue; // a link or special file where a `folder/` rule applies: it may be a folder
    } else if (info.isSymlink) {
      const target = await Deno.readLink(abs);
      if (followLinks && linkProblem(rel, target)) {
        out.push({ abs, rel, info: await followedFile(abs, rel, target), followed: target });
      } else out.push({ abs, rel, info, link: checkLink(rel, target) });
    } else {
      throw invalid(
        `cannot package ${JSON.stringify(rel)}: it is ${fileKind(info)}; a package holds only ` +
          `files, folders and links inside it (leave it out with .prisnignore)`,
      );
    }
  }
}

/** What a link outside points to, if it is a regular file (`followLinks`); refused otherwise. */
async function followedFile(abs: string, rel: string, target: string): Promise<Deno.FileInfo> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(abs);
  } catch {
    throw invalid(
      `cannot follow ${JSON.stringify(rel)}: its target ${JSON.stringify(target)} ` +
        `does not exist`,
    );
  }
  if (!info.isFile) {
    throw invalid(
      `cannot follow ${JSON.stringify(rel)}: it points to ${fileKind(info)} outside the folder ` +
        `(${JSON.stringify(target)}); --follow-links follows links to files only`,
    );
  }
  return info;
}

/** A symlink's target, if it is relative and stays inside the package; refused otherwise. */
function checkLink(rel: string, target: string): string {
  const problem = linkProblem(rel, target);
  if (problem) {
    throw invalid(
      `cannot package ${JSON.stringify(rel)}: it is a symlink to ${JSON.stringify(target)}, ` +
        `${problem}; copy what it points to into the folder, make it a relative link inside, ` +
        `or deploy with --follow-links`,
    );
  }
  return target;
}

/**
 * What is wrong with a symlink at `path` (relative, "/"-separated) pointing at `target`, read
 * lexically as the kernel would from inside the package: "an absolute path", "outside the folder",
 * or undefined when it resolves inside (the one rule for packaging, storing and unpacking links).
 */
export function linkProblem(path: string, target: string): string | undefined {
  if (target === "" || target.includes("\0")) return "not a usable target";
  if (target.startsWith("/")) return "an absolute path";
  const resolved = posix.normalize(posix.join(posix.dirname(path), target));
  if (resolved === ".." || resolved.startsWith("../")) return "outside the folder";
  return undefined;
}

async function describe(found: Found): Promise<PackageFile> {
  if (found.link === undefined) return await describeFile(found.abs, found.rel, found.info);
  return {
    path: found.rel,
    source: found.abs,
    executable: false,
    size: 0,
    sha256: createHash("sha256").update(found.link).digest("hex"),
    link: found.link,
  };
}

/** A regular file's entry, its content hashed as it is read (never whole in memory). */
async function describeFile(abs: string, rel: string, info: Deno.FileInfo): Promise<PackageFile> {
  const hash = createHash("sha256");
  let size = 0;
  const buffer = new Uint8Array(READ_CHUNK);
  using file = await Deno.open(abs);
  for (let n = await file.read(buffer); n !== null; n = await file.read(buffer)) {
    hash.update(buffer.subarray(0, n));
    size += n;
  }
  return {
    path: rel,
    source: abs,
    executable: ((info.mode ?? 0) & 0o111) !== 0,
    size,
    sha256: hash.digest("hex"),
  };
}

/** JSON with object keys sorted at every level, so equal values always serialize the same. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, v) => {
    if (v && typeof v === "object" && !Array.isArray(v)) {
      return Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : 1)));
    }
    return v;
  });
}

/**
 * The version id: "v-" + 8 hex of sha256 over every (path, exec bit, content hash) in path order,
 * then the run spec. Order-independent (files are sorted) and blind to file times.
 */
export function versionId(files: readonly PackageFile[], runSpec: unknown): string {
  const h = createHash("sha256");
  const sorted = [...files].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  for (const f of sorted) {
    h.update(
      f.link === undefined
        ? `${f.path}\0${f.executable ? "x" : "-"}\0${f.sha256}\n`
        : `${f.path}\0l\0${f.link}\n`,
    );
  }
  h.update("spec\0");
  h.update(canonicalJson(runSpec));
  return "v-" + h.digest("hex").slice(0, 8);
}
