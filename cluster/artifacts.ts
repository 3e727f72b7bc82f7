/**
 * Versions' files in a cluster: each node keeps its own version folders (core/local_artifacts.ts)
 * and every stored version also lives in a JetStream object store as its deterministic archive
 * (core/archive.ts), under `DEPLOYMENT/VERSION`, with the archive's sha256 in the object's
 * metadata. A node that must run a version it does not hold fetches the archive, checks it against
 * that sha256 and the object store's own digest, and unpacks it into its version folder.
 *
 * @module
 */

import { createHash } from "node:crypto";
import type { ObjectInfo, ObjectStore } from "@nats-io/obj";
import type { Artifacts } from "../core/artifacts.ts";
import { archiveDigest, DEFAULT_MAX_ARCHIVE_BYTES, unpackVersion } from "../core/archive.ts";
import { PrisnError } from "../core/errors.ts";
import { exists, ownerOnlyFolder, removeIfPresent } from "../core/fs.ts";
import type { LocalArtifacts } from "../core/local_artifacts.ts";
import { deploymentDir, versionDir } from "../core/paths.ts";
import type { Package } from "../core/version.ts";

/** The object metadata key that holds the archive's sha256, hex. */
export const DIGEST_KEY = "prisn-sha256";
/** @default 30 s without a chunk before a download is given up */
export const DEFAULT_FETCH_TIMEOUT_MS = 30_000;

/** The object store's digest prefix (nats.js `digestType`). */
const STORE_DIGEST_PREFIX = "SHA-256=";
/** Attempts at an upload or a download when another node replaces the object meanwhile. */
const ATTEMPTS = 3;
/** JetStream's "wrong last sequence" API error: a compare-and-set put lost. */
const WRONG_LAST_SEQUENCE = 10071;

/** Options for {@link ClusterArtifacts}. */
export interface ClusterArtifactsOptions {
  /**
   * Most bytes of archive a node downloads for one version; a bigger object is refused before
   * its download starts.
   * @default 1 GiB (DEFAULT_MAX_ARCHIVE_BYTES)
   */
  maxBytes?: number;
  /**
   * Longest a download may wait for its next chunk before it is given up.
   * @default 30 000 ms (DEFAULT_FETCH_TIMEOUT_MS)
   */
  fetchTimeoutMs?: number;
}

/**
 * One node's artifacts in a cluster: its local version folders, backed by an object store that
 * every node shares (opened by the caller).
 */
export class ClusterArtifacts implements Artifacts {
  readonly #local: LocalArtifacts;
  readonly #store: ObjectStore;
  readonly #maxBytes: number;
  readonly #fetchTimeoutMs: number;
  /** Downloads under way, by object name: concurrent callers share one. */
  readonly #fetching = new Map<string, Promise<string>>();

  constructor(local: LocalArtifacts, store: ObjectStore, options: ClusterArtifactsOptions = {}) {
    this.#local = local;
    this.#store = store;
    this.#maxBytes = options.maxBytes ?? DEFAULT_MAX_ARCHIVE_BYTES;
    this.#fetchTimeoutMs = options.fetchTimeoutMs ?? DEFAULT_FETCH_TIMEOUT_MS;
  }

  /**
   * Stores the version locally, then uploads its archive unless the object store holds that
   * archive already (same name, same sha256). Two nodes putting one version at once is fine: the
   * upload is a compare-and-set on the object's revision, and the loser finds the winner's copy.
   * An object under that name with another sha256 (a damaged copy, or one packed by a Deno build
   * whose zlib compresses differently) is replaced. Returns false when neither this node nor the
   * object store needed anything written.
   */
  async put(deployment: string, version: string, pkg: Package): Promise<boolean> {
    const stored = await this.#local.put(deployment, version, pkg);
    const bytes = await this.#local.archive(deployment, version);
    const digest = archiveDigest(bytes);
    const name = objectName(deployment, version);
    for (let attempt = 1;; attempt++) {
      const info = await this.#info(deployment, version);
      if (info && !info.deleted && holds(info, digest)) return stored;
      try {
        await this.#store.putBlob(
          { name, metadata: { [DIGEST_KEY]: digest } },
          bytes,
          { previousRevision: info?.revision ?? 0 },
        );
        return true;
      } catch (e) {
        // Another node wrote the object between our look and our put: look again.
        if (apiErrorCode(e) === WRONG_LAST_SEQUENCE && attempt < ATTEMPTS) continue;
        throw unavailable(`upload version ${version} of ${deployment}`, e);
      }
    }
  }

  /**
   * The version's local folder; when this node does not hold it, the archive is downloaded from
   * the object store (at most `maxBytes`), checked and unpacked there first. Concurrent calls for
   * one version share one download.
   * @throws PrisnError NOT_FOUND when the object store has no such version; FAILED when what it
   * holds does not match its recorded sha256 or is too big (nothing is left on disk);
   * UNAVAILABLE when the object store cannot be reached or the download stalls.
   */
  async ensureLocal(deployment: string, version: string): Promise<string> {
    const dir = versionDir(this.#local.paths, deployment, version);
    if (await exists(dir)) return dir;
    const name = objectName(deployment, version);
    let fetching = this.#fetching.get(name);
    if (!fetching) {
      fetching = this.#fetch(deployment, version, dir)
        .finally(() => this.#fetching.delete(name));
      this.#fetching.set(name, fetching);
    }
    return await fetching;
  }

  archive(deployment: string, version: string): Promise<Uint8Array> {
    return this.#local.archive(deployment, version);
  }

  /** Removes the version (or every version of the deployment) here and from the object store. */
  async remove(deployment: string, version?: string): Promise<void> {
    await this.#local.remove(deployment, version);
    let names: string[];
    if (version !== undefined) {
      names = [objectName(deployment, version)];
    } else {
      const prefix = objectName(deployment, "");
      try {
        names = (await this.#store.list())
          .filter((info) => !info.deleted && info.name.startsWith(prefix))
          .map((info) => info.name);
      } catch (e) {
        throw unavailable(`list the versions of ${deployment}`, e);
      }
    }
    for (const name of names) {
      try {
        await this.#store.delete(name); // an absent object is fine
      } catch (e) {
        throw unavailable(`remove ${name}`, e);
      }
    }
  }

  setCurrent(deployment: string, version: string, metadata: unknown): Promise<void> {
    return this.#local.setCurrent(deployment, version, metadata);
  }

  /** Downloads, checks and unpacks one version into `dir`, retrying if the object is replaced. */
  async #fetch(deployment: string, version: string, dir: string): Promise<string> {
    const parent = deploymentDir(this.#local.paths, deployment);
    for (let attempt = 1;; attempt++) {
      const info = await this.#info(deployment, version);
      if (!info || info.deleted) {
        throw new PrisnError(
          "NOT_FOUND",
          `version ${version} of ${deployment} is neither on this node nor in the cluster's ` +
            `object store: deploy it again`,
        );
      }
      await Deno.mkdir(parent, { recursive: true, mode: 0o700 });
      await ownerOnlyFolder(parent);
      const temp = await Deno.makeTempFile({ dir: parent, prefix: `.download-${version}-` });
      try {
        await this.#download(deployment, version, info, temp);
        const file = await Deno.open(temp, { read: true });
        try {
          await unpackVersion(file.readable, dir);
        } catch (e) {
          // Another process on this node unpacked it first: the same checked content.
          if (e instanceof PrisnError && e.code === "CONFLICT" && await exists(dir)) return dir;
          throw e;
        }
        return dir;
      } catch (e) {
        // A download that broke because another node replaced the object: fetch the new one.
        if (attempt < ATTEMPTS && !(e instanceof PrisnError && e.code === "FAILED")) {
          const now = await this.#info(deployment, version).catch(() => undefined);
          if (now && now.nuid !== info.nuid) continue;
        }
        throw e;
      } finally {
        await removeIfPresent(temp);
      }
    }
  }

  /** Streams the object into `temp`, hashing as it goes, and checks both digests. */
  async #download(
    deployment: string,
    version: string,
    info: ObjectInfo,
    temp: string,
  ): Promise<void> {
    const what = `version ${version} of ${deployment} in the cluster's object store`;
    const recorded = info.metadata?.[DIGEST_KEY];
    if (!recorded) throw failed(`${what} has no recorded sha256 (${DIGEST_KEY}): deploy it again`);
    if (info.size > this.#maxBytes) {
      throw failed(`${what} is ${info.size} bytes, over the ${this.#maxBytes}-byte cap`);
    }
    let result;
    try {
      result = await this.#store.get(info.name);
    } catch (e) {
      throw unavailable(`download version ${version} of ${deployment}`, e);
    }
    if (!result || result.info.nuid !== info.nuid) {
      throw unavailable(`download version ${version} of ${deployment}`, "it changed meanwhile");
    }
    // Settled either way, so that a failed transfer is no unhandled rejection.
    const transferError = result.error.then((e) => e ?? undefined, (e) => e);
    const reader = result.data.getReader();
    const hash = createHash("sha256");
    const file = await Deno.open(temp, { write: true, truncate: true });
    let size = 0;
    try {
      while (true) {
        const chunk = await this.#nextChunk(reader, `download version ${version} of ${deployment}`);
        if (chunk.done) break;
        size += chunk.value.byteLength;
        if (size > info.size) {
          throw failed(`${what} holds more bytes than its recorded size of ${info.size}`);
        }
        hash.update(chunk.value);
        for (let written = 0; written < chunk.value.byteLength;) {
          written += await file.write(chunk.value.subarray(written));
        }
      }
      const error = await transferError;
      if (error) throw unavailable(`download version ${version} of ${deployment}`, error);
    } finally {
      file.close();
      reader.cancel().catch(() => {});
    }
    const actual = hash.digest("hex");
    if (actual !== recorded) {
      throw failed(
        `${what} does not match its recorded sha256 (expected ${recorded}, got ${actual}): ` +
          `refused; deploy it again`,
      );
    }
    if (storeDigestHex(info.digest) !== actual) {
      throw failed(
        `${what} does not match the object store's own digest (${info.digest}): refused; ` +
          `deploy it again`,
      );
    }
  }

  /** The next chunk, or an UNAVAILABLE error after `fetchTimeoutMs` without one. */
  async #nextChunk(
    reader: ReadableStreamDefaultReader<Uint8Array>,
    what: string,
  ): Promise<ReadableStreamReadResult<Uint8Array>> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const stalled = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(unavailable(what, `no data for ${this.#fetchTimeoutMs} ms`)),
        this.#fetchTimeoutMs,
      );
    });
    try {
      return await Promise.race([reader.read(), stalled]);
    } catch (e) {
      if (e instanceof PrisnError) throw e;
      throw corrupt(what, e);
    } finally {
      clearTimeout(timer);
    }
  }

  async #info(deployment: string, version: string): Promise<ObjectInfo | null> {
    try {
      return await this.#store.info(objectName(deployment, version));
    } catch (e) {
      throw unavailable(`look up version ${version} of ${deployment}`, e);
    }
  }
}

/** The object that holds a version's archive. */
export function objectName(deployment: string, version: string): string {
  return `${deployment}/${version}`;
}

/** Whether an object is the archive with this sha256, by our record and by the store's own. */
function holds(info: ObjectInfo, digest: string): boolean {
  return info.metadata?.[DIGEST_KEY] === digest && storeDigestHex(info.digest) === digest;
}

/** The object store's digest ("SHA-256=" and base64, URL-safe or not) as hex. */
function storeDigestHex(digest: string): string | undefined {
  if (!digest?.startsWith(STORE_DIGEST_PREFIX)) return undefined;
  const base64 = digest.slice(STORE_DIGEST_PREFIX.length).replaceAll("-", "+").replaceAll("_", "/");
  try {
    return Array.from(atob(base64), (c) => c.charCodeAt(0).toString(16).padStart(2, "0")).join("");
  } catch {
    return undefined;
  }
}

function apiErrorCode(e: unknown): number | undefined {
  const code = (e as { code?: unknown })?.code;
  return typeof code === "number" ? code : undefined;
}

function failed(message: string): PrisnError {
  return new PrisnError("FAILED", message);
}

function unavailable(what: string, cause: unknown): PrisnError {
  return new PrisnError(
    "UNAVAILABLE",
    `cannot ${what} in the cluster's object store: ${firstLine(cause)}`,
    { cause },
  );
}

/** The client's own digest check failed, or the transfer broke. */
function corrupt(what: string, cause: unknown): PrisnError {
  const message = firstLine(cause);
  if (/corrupt|digest/i.test(message)) {
    return new PrisnError(
      "FAILED",
      `cannot ${what}: its bytes do not match the object store's own digest (${message}): ` +
        `refused; deploy it again`,
      { cause },
    );
  }
  return unavailable(what, cause);
}

function firstLine(cause: unknown): string {
  const text = cause instanceof Error ? cause.message : String(cause);
  return text.split("\n")[0];
}
