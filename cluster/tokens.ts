/**
 * The TCP API's tokens in a cluster: the whole list (hashes only, core/token_storage.ts) under one
 * key of the `<cluster>-tokens` bucket, changed by compare-and-set and followed by every node, so
 * a token made on any node opens every node and a revoke closes them all within moments.
 *
 * @module
 */

import type { KV, KvEntry } from "@nats-io/kv";
import { PrisnError } from "../core/errors.ts";
import type { StoredToken, TokenStorage } from "../core/token_storage.ts";
import { followBucket } from "./_follow.ts";
import { clusterError, isCasConflict, natsReason } from "./errors.ts";

/** The one key of the bucket. */
const KEY = "tokens";

/** How often a write that lost its compare-and-set to another node's is redone. */
const CAS_ATTEMPTS = 10;

export class ClusterTokens implements TokenStorage {
  readonly where: string;
  /** The newest revision read or written: a watch that lags behind it is not taken. */
  #revision = 0;

  constructor(readonly kv: KV, bucket: string, readonly log: (line: string) => void = () => {}) {
    this.where = `the cluster's ${bucket} bucket`;
  }

  async read(): Promise<StoredToken[]> {
    const entry = await this.#get();
    this.#seen(entry?.revision ?? 0);
    return decode(entry);
  }

  #seen(revision: number): void {
    this.#revision = Math.max(this.#revision, revision);
  }

  async update(change: (tokens: StoredToken[]) => StoredToken[]): Promise<StoredToken[]> {
    for (let attempt = 1;; attempt++) {
      const entry = await this.#get();
      const tokens = change(decode(entry));
      const value = JSON.stringify({ tokens });
      try {
        this.#seen(
          entry
            ? await this.kv.update(KEY, value, entry.revision)
            : await this.kv.create(KEY, value),
        );
        return tokens;
      } catch (e) {
        if (isCasConflict(e) && attempt < CAS_ATTEMPTS) continue; // another node wrote first
        throw clusterError(
          "UNAVAILABLE",
          `cannot store the tokens in ${this.where}: ${natsReason(e)}`,
          e,
        );
      }
    }
  }

  async follow(onChange: (tokens: StoredToken[]) => void, signal: AbortSignal): Promise<void> {
    const apply = (entry: KvEntry) => {
      if (entry.revision <= this.#revision) return; // what this node wrote or read already
      this.#seen(entry.revision);
      onChange(decode(entry));
    };
    await followBucket(this.kv, KEY, apply, { signal, log: this.log }); // on until `signal`
  }

  async #get(): Promise<KvEntry | null> {
    try {
      const entry = await this.kv.get(KEY);
      return entry && entry.operation === "PUT" ? entry : null;
    } catch (e) {
      throw clusterError(
        "UNAVAILABLE",
        `cannot read the tokens in ${this.where}: ${natsReason(e)}`,
        e,
      );
    }
  }
}

function decode(entry: KvEntry | null): StoredToken[] {
  if (!entry || entry.operation !== "PUT") return [];
  try {
    const tokens = entry.json<{ tokens: StoredToken[] }>().tokens;
    if (!Array.isArray(tokens)) throw new Error("no tokens list");
    return tokens;
  } catch (e) {
    throw new PrisnError(
      "INVALID",
      `the cluster's tokens are not a list prisn wrote: ${(e as Error).message}`,
    );
  }
}
