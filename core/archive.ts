/**
 * A stored version as a deterministic archive (gzip'd ustar), for shipping versions between
 * cluster nodes (JetStream object store) and for remote deploys: the same files, exec bits and
 * paths give the very same bytes, so a node can check what it fetched against a sha256.
 *
 * The format: entries sorted by path in UTF-8 byte order; a folder entry (`dir/`, mode 0755) for
 * every folder that holds a packed file, then regular files with mode 0644, or 0755 when any exec
 * bit is set (the bit core/version.ts hashes), and symlinks (mode 0777, size 0) whose target is
 * relative and stays inside the version (core/version.ts `linkProblem`); uid, gid, mtime and
 * device numbers "0", empty uname and gname. A path (or link target) that does not fit ustar's
 * fields gets a pax header carrying only `path` (and `linkpath`). Two zero blocks end it. Empty folders are not packed, so the archive is a
 * function of exactly what the version id covers. Gzip: node:zlib at level 9, header mtime 0, OS
 * byte 255 ("unknown") whatever the platform.
 *
 * Why our own writer rather than node-tar (`tar` 7.5, checked): its `portable` mode only clears
 * group/other write bits (a 0700 file stays 0700, not 0755), `noMtime` leaves the mtime, uid and
 * gid fields blank rather than zero, entries come in readdir order unless every path is listed
 * by hand with `noDirRecurse`, and symlinks are archived silently. Its extractor strips a leading
 * "/" and skips ".." entries with a warning where we must refuse. The subset needed here (two
 * entry types, one pax key) is small enough to write and read in full, with every byte chosen.
 * Gzip goes through node:zlib, not CompressionStream: Deno's CompressionStream output depends on
 * how the input is split into chunks and has no level.
 *
 * Scope of "the same bytes": the deflate stream is a function of the zlib build, so two Deno
 * builds may compress one tar differently. The node that packs publishes the digest and the
 * node that fetches checks it; the identity of a version across builds stays its version id.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { basename, dirname, join, relative, sep } from "node:path";
import { pipeline as pipelineCallback, Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createGunzip, createGzip } from "node:zlib";
import ignore from "ignore";
import { invalid, notFound, PrisnError } from "./errors.ts";
import { exists, fileKind, readConfigFile, removeIfPresent } from "./fs.ts";
import { DEFAULT_IGNORES, DEFAULT_MAX_PACKAGE_BYTES, linkProblem } from "./version.ts";

/** @default 1 GiB of file content, all files together */
export const DEFAULT_MAX_ARCHIVE_BYTES = DEFAULT_MAX_PACKAGE_BYTES;
/** @default 100 000 entries (files and folders) */
export const DEFAULT_MAX_ARCHIVE_FILES = 100_000;

const BLOCK = 512;
/** Largest size an 11-digit octal field holds. */
const MAX_ENTRY_SIZE = 8 ** 11 - 1;
/** A pax header body we accept when reading: a path and a few times and owners. */
const MAX_PAX_BYTES = 8 * 1024;
/** Zero padding accepted after the end marker (tar writers pad to their record size). */
const MAX_TRAILING_BYTES = 1024 * 1024;
const MAX_PATH_BYTES = 4096;
const MAX_NAME_BYTES = 255;
/** Bytes of content written to a file at once while unpacking. */
const WRITE_CHUNK = 1024 * 1024;

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });
const ascii = new TextDecoder();

// ---------------------------------------------------------------------------------------------
// Packing

/** One regular file or symlink of a version folder, as packed. */
interface SourceFile {
  /** Relative path with "/". */
  path: string;
  abs: string;
  executable: boolean;
  /** A symlink's target. */
  link?: string;
}

/**
 * Packs every regular file under a stored version folder into a deterministic gzip'd tar (see the
 * module doc). Skips what core/version.ts never packages (DEFAULT_IGNORES and `.prisnignore`
 * rules), such as the `node_modules` link and `__pycache__` that running a version adds.
 * @throws PrisnError NOT_FOUND when `dir` is missing; INVALID when it holds a symlink, FIFO,
 * socket or device (named) outside the ignored paths.
 */
export async function packVersion(dir: string): Promise<Uint8Array<ArrayBuffer>> {
  const entries = await packEntries(dir);
  const out: Uint8Array[] = [];
  await pipeline(
    Readable.from(tarChunks(entries)),
    createGzip({ level: 9 }),
    async (gzipped: AsyncIterable<Uint8Array>) => {
      for await (const chunk of gzipped) out.push(chunk);
    },
  );
  const gz = concat(out);
  // A plain gzip header (no name, comment or extra field), so bytes 4-9 are mtime, XFL and OS.
  if (gz[0] !== 0x1f || gz[1] !== 0x8b || gz[3] !== 0) {
    throw new PrisnError("FAILED", "node:zlib wrote an unexpected gzip header");
  }
  gz.fill(0, 4, 8); // mtime 0
  gz[9] = 255; // OS unknown
  return gz;
}

/** One tar entry as packed: a folder (no file) or a regular file. */
interface PackEntry {
  /** The entry's path as UTF-8, folders with a trailing "/". */
  name: Uint8Array;
  file?: SourceFile;
}

/** The entries of a version folder in byte order: its files and every folder above one. */
async function packEntries(dir: string): Promise<PackEntry[]> {
  const files = await listVersionFiles(dir);
  const entries: PackEntry[] = [];
  const folders = new Set<string>();
  for (const file of files) {
    const parts = file.path.split("/");
    for (let i = 1; i < parts.length; i++) folders.add(parts.slice(0, i).join("/") + "/");
    entries.push({ name: encoder.encode(file.path), file });
  }
  for (const folder of folders) entries.push({ name: encoder.encode(folder) });
  return entries.sort((a, b) => compareBytes(a.name, b.name));
}

/** The tar stream, one file read at a time. */
async function* tarChunks(entries: PackEntry[]): AsyncGenerator<Uint8Array> {
  for (const { name, file } of entries) {
    if (!file) {
      yield* headerBlocks(name, "5", 0o755, 0);
      continue;
    }
    if (file.link !== undefined) {
      yield* headerBlocks(name, "2", 0o777, 0, encoder.encode(file.link));
      continue;
    }
    using handle = await Deno.open(file.abs);
    const size = (await handle.stat()).size;
    if (size > MAX_ENTRY_SIZE) {
      throw invalid(`cannot pack ${q(file.path)}: over 8 GiB, the most a tar entry holds`);
    }
    yield* headerBlocks(name, "0", file.executable ? 0o755 : 0o644, size);
    let left = size;
    while (left > 0) { // streamed: one chunk in memory at a time
      const chunk = new Uint8Array(Math.min(left, WRITE_CHUNK));
      const n = await handle.read(chunk);
      if (n === null) throw new PrisnError("FAILED", `${file.abs} shrank while it was packed`);
      yield chunk.subarray(0, n);
      left -= n;
    }
    if (padding(size) > 0) yield new Uint8Array(padding(size));
  }
  yield new Uint8Array(2 * BLOCK);
}

/** The files packVersion() packs, in no order; refuses anything but files and folders. */
async function listVersionFiles(root: string): Promise<SourceFile[]> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(root);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw notFound(`version folder ${root} does not exist`);
    throw e;
  }
  if (!info.isDirectory) throw invalid(`cannot pack ${root}: not a folder`);
  const rules = ignore().add(DEFAULT_IGNORES);
  const ignoreFile = await readConfigFile(join(root, ".prisnignore"), { label: ".prisnignore" });
  if (ignoreFile !== undefined) rules.add(ignoreFile);
  const out: SourceFile[] = [];
  await walk(root, root, rules, out);
  return out;
}

async function walk(
  root: string,
  dir: string,
  rules: ReturnType<typeof ignore>,
  out: SourceFile[],
): Promise<void> {
  for await (const entry of Deno.readDir(dir)) {
    const abs = join(dir, entry.name);
    const rel = relative(root, abs).split(sep).join("/");
    const info = await Deno.lstat(abs);
    if (info.isDirectory) {
      if (!rules.ignores(rel + "/")) await walk(root, abs, rules, out);
    } else if (info.isFile) {
      if (!rules.ignores(rel)) {
        out.push({ path: rel, abs, executable: ((info.mode ?? 0) & 0o111) !== 0 });
      }
    } else if (rules.ignores(rel) || rules.ignores(rel + "/")) {
      continue;
    } else if (info.isSymlink) {
      const link = await Deno.readLink(abs);
      const problem = linkProblem(rel, link);
      if (problem) {
        throw invalid(
          `cannot pack ${q(rel)} in ${root}: it is a symlink to ${q(link)}, ${problem}`,
        );
      }
      out.push({ path: rel, abs, executable: false, link });
    } else {
      throw invalid(
        `cannot pack ${q(rel)} in ${root}: it is ${fileKind(info)}; ` +
          `a version holds only regular files, folders and links inside it`,
      );
    }
  }
}

/**
 * The header block(s) of one entry: a pax header first when ustar cannot hold the path (`path`)
 * or a link's target (`linkpath`, over 100 bytes).
 */
function headerBlocks(
  name: Uint8Array,
  type: "0" | "2" | "5",
  mode: number,
  size: number,
  link = new Uint8Array(0),
): Uint8Array[] {
  const split = splitName(name);
  const records: Uint8Array[] = [];
  if (!split) records.push(paxRecord("path", name));
  if (link.byteLength > 100) records.push(paxRecord("linkpath", link));
  const header = ustarHeader(
    split?.name ?? name.subarray(0, 100),
    split?.prefix ?? new Uint8Array(0),
    type,
    mode,
    size,
    link.byteLength > 100 ? link.subarray(0, 100) : link,
  );
  if (records.length === 0) return [header];
  const body = concat(records);
  return [
    ustarHeader(encoder.encode("PaxHeader"), new Uint8Array(0), "x", 0o644, body.byteLength),
    body,
    new Uint8Array(padding(body.byteLength)),
    header,
  ];
}

/** ustar's name (100 bytes) and prefix (155 bytes, joined by "/"), or undefined if neither fits. */
function splitName(name: Uint8Array): { name: Uint8Array; prefix: Uint8Array } | undefined {
  if (name.byteLength <= 100) return { name, prefix: new Uint8Array(0) };
  // The longest prefix that fits; the name part after the "/" must be non-empty.
  for (let i = Math.min(155, name.byteLength - 2); i > 0; i--) {
    if (name[i] === 0x2f && name.byteLength - i - 1 <= 100) {
      return { name: name.subarray(i + 1), prefix: name.subarray(0, i) };
    }
  }
  return undefined;
}

/** One pax record, "LEN key=value\n", where LEN counts its own digits. */
function paxRecord(key: string, value: Uint8Array): Uint8Array {
  const rest = encoder.encode(` ${key}=`).byteLength + value.byteLength + 1;
  let length = rest + String(rest).length;
  if (String(length).length !== String(rest).length) length = rest + String(length).length;
  return concat([encoder.encode(`${length} ${key}=`), value, encoder.encode("\n")]);
}

function ustarHeader(
  name: Uint8Array,
  prefix: Uint8Array,
  type: "0" | "2" | "5" | "x",
  mode: number,
  size: number,
  link = new Uint8Array(0),
): Uint8Array {
  const h = new Uint8Array(BLOCK);
  h.set(name, 0);
  h.set(link, 157);
  writeOctal(h, 100, 8, mode);
  writeOctal(h, 108, 8, 0); // uid
  writeOctal(h, 116, 8, 0); // gid
  writeOctal(h, 124, 12, size);
  writeOctal(h, 136, 12, 0); // mtime
  h[156] = type.charCodeAt(0);
  h.set(encoder.encode("ustar\u000000"), 257); // magic "ustar\0", version "00"
  writeOctal(h, 329, 8, 0); // devmajor
  writeOctal(h, 337, 8, 0); // devminor
  h.set(prefix, 345);
  h.fill(0x20, 148, 156); // checksum counted as spaces
  const sum = h.reduce((n, b) => n + b, 0);
  h.set(encoder.encode(sum.toString(8).padStart(6, "0") + "\u0000 "), 148);
  return h;
}

/** Zero-padded octal in `width - 1` digits and a NUL. */
function writeOctal(h: Uint8Array, offset: number, width: number, value: number): void {
  h.set(encoder.encode(value.toString(8).padStart(width - 1, "0") + "\u0000"), offset);
}

// ---------------------------------------------------------------------------------------------
// Unpacking

/** Caps for {@link unpackVersion}. */
export interface UnpackOptions {
  /**
   * Most bytes of file content the archive may hold, all files together.
   * @default 1 GiB (DEFAULT_MAX_ARCHIVE_BYTES)
   */
  maxBytes?: number;
  /**
   * Most entries the archive may hold: files, folders and global pax headers together.
   * @default 100 000 (DEFAULT_MAX_ARCHIVE_FILES)
   */
  maxFiles?: number;
}

/** What {@link unpackVersion} wrote. */
export interface UnpackResult {
  files: number;
  bytes: number;
}

/**
 * Extracts an archive (as packVersion() writes it) into a new folder `dest`: into a temp folder
 * next to it first, renamed into place once every entry is written and the gzip checksum holds,
 * so a failure leaves neither `dest` nor a temp folder. Files are written read-only (0444, or
 * 0555 with an exec bit) like a stored version; missing parents of `dest` are created.
 * Accepts only regular files and folders with relative paths, no "..", within the caps.
 * @throws PrisnError INVALID naming what is wrong with the archive; CONFLICT when `dest` exists.
 */
export async function unpackVersion(
  archive: Uint8Array | ReadableStream<Uint8Array>,
  dest: string,
  options: UnpackOptions = {},
): Promise<UnpackResult> {
  const caps = {
    maxBytes: options.maxBytes ?? DEFAULT_MAX_ARCHIVE_BYTES,
    maxFiles: options.maxFiles ?? DEFAULT_MAX_ARCHIVE_FILES,
  };
  if (await exists(dest)) throw alreadyThere(dest);
  const parent = dirname(dest);
  await Deno.mkdir(parent, { recursive: true });
  const temp = await Deno.makeTempDir({ dir: parent, prefix: `.tmp-${basename(dest)}-` });
  const source = archive instanceof Uint8Array
    ? Readable.from([archive])
    : Readable.fromWeb(archive);
  const gunzip = createGunzip();
  pipelineCallback(source, gunzip, () => {}); // errors surface through the gunzip iterator
  try {
    const result = await extract(new ByteReader(gunzip), temp, caps);
    try {
      await Deno.rename(temp, dest);
    } catch (e) {
      if (await exists(dest)) throw alreadyThere(dest);
      throw e;
    }
    return result;
  } catch (e) {
    await removeIfPresent(temp);
    throw e;
  } finally {
    gunzip.destroy();
    source.destroy();
  }
}

function alreadyThere(dest: string): PrisnError {
  return new PrisnError("CONFLICT", `cannot unpack into ${dest}: it already exists`);
}

async function extract(
  reader: ByteReader,
  root: string,
  caps: Required<UnpackOptions>,
): Promise<UnpackResult> {
  /** Every path seen, explicit or as a parent, and whether it is a file or a folder. */
  const kinds = new Map<string, "file" | "dir">();
  let entries = 0;
  let files = 0;
  let bytes = 0;
  /** The pax header just read, if any: it applies to the next entry. */
  let pax: PaxFields | undefined;
  while (true) {
    const header = await reader.read(BLOCK, "the end-of-archive marker");
    if (header.every((b) => b === 0)) {
      if (pax) throw invalid("archive ends right after a pax header");
      const second = await reader.read(BLOCK, "the end-of-archive marker");
      if (!second.every((b) => b === 0)) {
        throw invalid("archive has a corrupt end-of-archive marker");
      }
      await reader.drainZeros(MAX_TRAILING_BYTES);
      return { files, bytes };
    }
    checkHeader(header, reader.offset - BLOCK);
    const type = String.fromCharCode(header[156]);
    const size = readOctal(header, 124, 12, "size");
    if (type === "x" || type === "g") {
      if (size > MAX_PAX_BYTES) throw invalid(`archive has a pax header of ${size} bytes: too big`);
      const body = await reader.read(size + padding(size), "a pax header");
      const fields = paxFieldsOf(body.subarray(0, size));
      if (type === "g") {
        if (fields.path !== undefined || fields.linkpath !== undefined) {
          throw invalid("archive has a global pax header that sets a path");
        }
        if (++entries > caps.maxFiles) {
          throw invalid(`archive holds more than ${caps.maxFiles} entries (the cap)`);
        }
        continue; // counted: they are not bounded otherwise
      }
      if (pax) throw invalid("archive has two pax headers in a row");
      pax = fields;
      continue;
    }
    const name = pax?.path ?? headerPath(header);
    const linkpath = pax?.linkpath;
    pax = undefined;
    if (type !== "0" && type !== "\0" && type !== "5" && type !== "2") {
      throw invalid(
        `archive entry ${q(name)} is ${typeName(type)}: ` +
          `a version holds only files, folders and links inside it`,
      );
    }
    if (linkpath !== undefined && type !== "2") {
      throw invalid(`archive entry ${q(name)} has a pax linkpath but is not a symlink`);
    }
    if (++entries > caps.maxFiles) {
      throw invalid(`archive holds more than ${caps.maxFiles} entries (the cap), at ${q(name)}`);
    }
    const isDir = type === "5";
    const segments = checkPath(name, isDir);
    if (segments.length === 0) continue; // "./": the folder itself
    const path = segments.join("/");
    for (let i = 1; i < segments.length; i++) {
      const parent = segments.slice(0, i).join("/");
      if (kinds.get(parent) === "file") {
        throw invalid(`archive entry ${q(name)} lies inside the file ${q(parent)}`);
      }
      kinds.set(parent, "dir");
    }
    const target = join(root, ...segments);
    if (isDir) {
      if (size !== 0) {
        throw invalid(`archive entry ${q(name)} is a folder with ${size} bytes of data`);
      }
      if (kinds.get(path) === "file") {
        throw invalid(`archive has ${q(name)} twice (as a file and as a folder)`);
      }
      kinds.set(path, "dir");
      await Deno.mkdir(target, { recursive: true });
      continue;
    }
    if (kinds.has(path)) {
      const as = kinds.get(path) === "dir" ? " (as a folder and as a file)" : "";
      throw invalid(`archive has ${q(name)} twice${as}`);
    }
    kinds.set(path, "file"); // a link too: nothing may be unpacked through it
    if (type === "2") {
      const link = linkpath ?? text(header.subarray(157, 257), "link name");
      const problem = size !== 0 ? `a symlink with ${size} bytes of data` : linkProblem(path, link);
      if (problem) {
        throw invalid(`archive entry ${q(name)} is a symlink to ${q(link)}: ${problem}`);
      }
      await Deno.mkdir(dirname(target), { recursive: true });
      await Deno.symlink(link, target);
      files++;
      continue;
    }
    bytes += size;
    if (bytes > caps.maxBytes) {
      throw invalid(
        `archive holds more than ${caps.maxBytes} bytes of files (the cap), at ${q(name)}`,
      );
    }
    const executable = (readOctal(header, 100, 8, "mode") & 0o111) !== 0;
    await Deno.mkdir(dirname(target), { recursive: true });
    await writeEntry(reader, target, size, name);
    await reader.read(padding(size), `the data of ${q(name)}`);
    await Deno.chmod(target, executable ? 0o555 : 0o444);
    files++;
  }
}

async function writeEntry(reader: ByteReader, target: string, size: number, name: string) {
  const file = await Deno.open(target, { write: true, createNew: true, mode: 0o600 });
  try {
    for (let left = size; left > 0;) {
      const chunk = await reader.readSome(Math.min(left, WRITE_CHUNK), `the data of ${q(name)}`);
      let written = 0;
      while (written < chunk.byteLength) written += await file.write(chunk.subarray(written));
      left -= chunk.byteLength;
    }
  } finally {
    file.close();
  }
}

function checkHeader(header: Uint8Array, offset: number): void {
  if (ascii.decode(header.subarray(257, 262)) !== "ustar") {
    throw invalid(
      `archive is not a ustar archive (no "ustar" magic in the header at byte ${offset})`,
    );
  }
  let sum = 8 * 0x20;
  for (let i = 0; i < BLOCK; i++) if (i < 148 || i >= 156) sum += header[i];
  if (readOctal(header, 148, 8, "checksum") !== sum) {
    throw invalid(`archive is corrupt: bad header checksum at byte ${offset}`);
  }
}

/** A header's path: prefix + "/" + name, each up to its first NUL. */
function headerPath(header: Uint8Array): string {
  const name = text(header.subarray(0, 100), "name");
  const prefix = text(header.subarray(345, 500), "prefix");
  return prefix === "" ? name : `${prefix}/${name}`;
}

/** A NUL-terminated header field as UTF-8. */
function text(field: Uint8Array, what: string): string {
  const end = field.indexOf(0);
  return utf8(end === -1 ? field : field.subarray(0, end), what);
}

function utf8(bytes: Uint8Array, what: string): string {
  try {
    return decoder.decode(bytes);
  } catch {
    throw invalid(`archive has a header ${what} that is not UTF-8`);
  }
}

function readOctal(header: Uint8Array, offset: number, width: number, what: string): number {
  const field = header.subarray(offset, offset + width);
  if (field[0] & 0x80) throw invalid(`archive header has a base-256 ${what}: not supported`);
  const digits = ascii.decode(field).replace(/[\0 ]+$/, "").replace(/^ +/, "");
  if (!/^[0-7]+$/.test(digits)) throw invalid(`archive header has a bad ${what} field`);
  return parseInt(digits, 8);
}

/**
 * Pax keys that say nothing about where an entry goes or what it holds (times, owners, comments),
 * as GNU tar and git archive write them: accepted and ignored.
 */
const IGNORED_PAX_KEYS = new Set([
  "atime",
  "charset",
  "comment",
  "ctime",
  "gid",
  "gname",
  "mtime",
  "SCHILY.dev",
  "SCHILY.ino",
  "SCHILY.nlink",
  "uid",
  "uname",
]);

/** What a pax header may set: the next entry's path and a symlink's target. */
interface PaxFields {
  path?: string;
  linkpath?: string;
}

/**
 * The path and link target a pax header sets, if any. Refuses keys that would change an entry
 * otherwise (size, xattrs, sparse maps…).
 */
function paxFieldsOf(body: Uint8Array): PaxFields {
  const fields: PaxFields = {};
  let rest = body;
  while (rest.byteLength > 0) {
    const space = rest.indexOf(0x20);
    const length = space > 0 ? Number(ascii.decode(rest.subarray(0, space))) : NaN;
    if (!Number.isInteger(length) || length <= space + 1 || length > rest.byteLength) {
      throw invalid("archive has a malformed pax header");
    }
    const record = rest.subarray(space + 1, length - 1);
    const eq = record.indexOf(0x3d);
    if (eq <= 0 || rest[length - 1] !== 0x0a) throw invalid("archive has a malformed pax header");
    const key = utf8(record.subarray(0, eq), "pax key");
    if (key === "path" || key === "linkpath") {
      fields[key] = utf8(record.subarray(eq + 1), `pax ${key}`);
    } else if (!IGNORED_PAX_KEYS.has(key)) {
      throw invalid(
        `archive has a pax header with ${
          q(key)
        }: only path, linkpath, times and owners are accepted`,
      );
    }
    rest = rest.subarray(length);
  }
  return fields;
}

/** The path's segments ("." and empty ones dropped); refuses absolute paths, ".." and odd names. */
function checkPath(name: string, isDir: boolean): string[] {
  if (name === "") throw invalid("archive has an entry with an empty path");
  if (name.startsWith("/")) throw invalid(`archive entry ${q(name)} has an absolute path`);
  if (name.includes("\0")) throw invalid(`archive entry ${q(name)} has a NUL in its path`);
  if (encoder.encode(name).byteLength > MAX_PATH_BYTES) {
    throw invalid(
      `archive entry ${q(name.slice(0, 60) + "…")} has a path over ${MAX_PATH_BYTES} bytes`,
    );
  }
  if (!isDir && name.endsWith("/")) {
    throw invalid(`archive entry ${q(name)} is a file ending in "/"`);
  }
  const segments = name.split("/").filter((s) => s !== "" && s !== ".");
  for (const s of segments) {
    if (s === "..") throw invalid(`archive entry ${q(name)} leaves the destination folder ("..")`);
    if (encoder.encode(s).byteLength > MAX_NAME_BYTES) {
      throw invalid(`archive entry ${q(name)} has a name over ${MAX_NAME_BYTES} bytes`);
    }
  }
  if (!isDir && segments.length === 0) throw invalid(`archive entry ${q(name)} names no file`);
  return segments;
}

/** A path or key from an archive or a folder, quoted and escaped, so a message stays one line. */
function q(text: string): string {
  return JSON.stringify(text);
}

function typeName(type: string): string {
  switch (type) {
    case "1":
      return "a hard link";
    case "2":
      return "a symlink";
    case "3":
      return "a character device";
    case "4":
      return "a block device";
    case "6":
      return "a FIFO";
    case "g":
      return "a global pax header";
    case "L":
    case "K":
      return "a GNU long-name record";
    default:
      return `of tar type ${JSON.stringify(type)}`;
  }
}

/** Exact reads over the gunzip stream; a gzip error or an early end is an INVALID PrisnError. */
class ByteReader {
  readonly #chunks: AsyncIterator<Uint8Array>;
  #buffer: Uint8Array = new Uint8Array(0);
  #done = false;
  /** Bytes of tar handed out so far. */
  offset = 0;

  constructor(stream: AsyncIterable<Uint8Array>) {
    this.#chunks = stream[Symbol.asyncIterator]();
  }

  /** Exactly `n` bytes; `what` names what was being read if the archive ends first. */
  async read(n: number, what: string): Promise<Uint8Array> {
    while (this.#buffer.byteLength < n) {
      if (!(await this.#more())) throw invalid(`archive is truncated: it ends within ${what}`);
    }
    const out = this.#buffer.subarray(0, n);
    this.#buffer = this.#buffer.subarray(n);
    this.offset += n;
    return out;
  }

  /** Between 1 and `max` bytes: what is buffered, or the next chunk. */
  async readSome(max: number, what: string): Promise<Uint8Array> {
    if (this.#buffer.byteLength === 0 && !(await this.#more())) {
      throw invalid(`archive is truncated: it ends within ${what}`);
    }
    return await this.read(Math.min(max, this.#buffer.byteLength), what);
  }

  /** Reads to the end, which must be zeros, at most `max` bytes of them. */
  async drainZeros(max: number): Promise<void> {
    let seen = 0;
    do {
      seen += this.#buffer.byteLength;
      if (seen > max || !this.#buffer.every((b) => b === 0)) {
        throw invalid("archive has data after its end-of-archive marker");
      }
      this.#buffer = new Uint8Array(0);
    } while (await this.#more());
  }

  async #more(): Promise<boolean> {
    if (this.#done) return false;
    let next: IteratorResult<Uint8Array>;
    try {
      next = await this.#chunks.next();
    } catch (e) {
      if (!String((e as { code?: unknown }).code).startsWith("Z_")) throw e; // not zlib's
      throw new PrisnError("INVALID", `archive is not valid gzip data: ${(e as Error).message}`, {
        cause: e,
      });
    }
    if (next.done) {
      this.#done = true;
      return false;
    }
    this.#buffer = this.#buffer.byteLength === 0 ? next.value : concat([this.#buffer, next.value]);
    return true;
  }
}

// ---------------------------------------------------------------------------------------------
// Shared

/** The sha256 of an archive's bytes, hex: what a fetching node checks. */
export function archiveDigest(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

function padding(size: number): number {
  return (BLOCK - (size % BLOCK)) % BLOCK;
}

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.byteLength, b.byteLength);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i] - b[i];
  return a.byteLength - b.byteLength;
}

function concat(parts: Uint8Array[]): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.byteLength;
  }
  return out;
}
