import { createHash } from "node:crypto";
import { basename, join, relative, sep } from "node:path";
import ignore from "ignore";
import { invalid, PrisnError } from "./errors.ts";
import { readConfigFile } from "./fs.ts";

/** Folders never packaged: VCS data, dependency folders and caches that prisn rebuilds itself. */
export const DEFAULT_IGNORES = [".git", "node_modules", "__pycache__", ".venv"];

/** One file of a package: its path relative to the package root (always with "/"). */
export interface PackageFile {
  path: string;
  /** Absolute path it is read from. */
  source: string;
  executable: boolean;
  size: number;
  /** sha256 of the content, hex. */
  sha256: string;
}

export interface Package {
  /** The folder the files come from (for a single file: its folder). */
  root: string;
  kind: "dir" | "file";
  files: PackageFile[];
  bytes: number;
}

/**
 * Reads a folder (honouring DEFAULT_IGNORES and `.prisnignore`, gitignore syntax) or a single file
 * into a package: the list of files with their content hashes, sorted by path.
 */
export async function collectPackage(path: string): Promise<Package> {
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
    const file = await describeFile(path, basename(path), info);
    return { root: join(path, ".."), kind: "file", files: [file], bytes: file.size };
  }
  if (!info.isDirectory) throw invalid(`"${path}" is neither a folder nor a file`);

  const rules = ignore().add(DEFAULT_IGNORES);
  const ignoreFile = await readConfigFile(join(path, ".prisnignore"), { label: ".prisnignore" });
  if (ignoreFile !== undefined) rules.add(ignoreFile);
  const files: PackageFile[] = [];
  await walk(path, path, rules, files);
  files.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  if (files.length === 0) {
    throw invalid(`folder "${path}" has no files to deploy: add a script such as main.py`);
  }
  return { root: path, kind: "dir", files, bytes: files.reduce((n, f) => n + f.size, 0) };
}

async function walk(
  root: string,
  dir: string,
  rules: ReturnType<typeof ignore>,
  out: PackageFile[],
): Promise<void> {
  const entries: Deno.DirEntry[] = [];
  for await (const entry of Deno.readDir(dir)) entries.push(entry);
  await Promise.all(entries.map(async (entry) => {
    const abs = join(dir, entry.name);
    const rel = relative(root, abs).split(sep).join("/");
    let info: Deno.FileInfo;
    try {
      info = await Deno.stat(abs); // follows symlinks: a linked file is packaged by content
    } catch {
      return; // dangling symlink
    }
    if (info.isDirectory) {
      if (entry.isSymlink || rules.ignores(rel + "/")) return; // no linked folders: no cycles
      await walk(root, abs, rules, out);
    } else if (info.isFile && !rules.ignores(rel)) {
      out.push(await describeFile(abs, rel, info));
    }
  }));
}

async function describeFile(abs: string, rel: string, info: Deno.FileInfo): Promise<PackageFile> {
  const content = await Deno.readFile(abs);
  return {
    path: rel,
    source: abs,
    executable: ((info.mode ?? 0) & 0o111) !== 0,
    size: content.byteLength,
    sha256: createHash("sha256").update(content).digest("hex"),
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
  for (const f of sorted) h.update(`${f.path}\0${f.executable ? "x" : "-"}\0${f.sha256}\n`);
  h.update("spec\0");
  h.update(canonicalJson(runSpec));
  return "v-" + h.digest("hex").slice(0, 8);
}
