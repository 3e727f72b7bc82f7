/**
 * API tokens of the agent's TCP API: bearer secrets kept only as sha256 hashes, compared in
 * constant time; on one node in PRISN_HOME/tokens.json (0600), in a cluster in the cluster's
 * tokens bucket (core/token_storage.ts), so that a token opens every node. The admin token is made
 * at the first start of the TCP API (in a cluster: of any node's), written to
 * PRISN_HOME/admin.token (0600) for the owner, and shown once.
 * @module
 */
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { join } from "node:path";
import { invalid, notFound, PrisnError } from "../core/errors.ts";
import { validateName } from "../core/prisn_toml.ts";
import { writePrivate } from "../core/fs.ts";
import { validateNamespace } from "../core/namespace.ts";
import type { StoredToken, TokenStorage } from "../core/token_storage.ts";

/** Whether `grant` (none: the unix socket's owner) reaches `namespace`. */
export function reaches(grant: TokenGrant | undefined, namespace: string): boolean {
  return !grant?.namespaces || grant.namespaces.includes(namespace);
}

/** What a token may do. */
export interface TokenGrant {
  name: string;
  /** Reads only: GET routes. */
  readOnly: boolean;
  /** Manages tokens and stops the agent; only the admin token is. */
  admin: boolean;
  /** The namespaces it reaches; absent: every namespace. */
  namespaces?: string[];
}

/** A token as `prisn token ls` shows it: never the secret, never its hash. */
export interface TokenInfo extends TokenGrant {
  createdAt: number;
}

/** The admin token's name; `prisn token revoke admin` is refused (it would lock the owner out). */
export const ADMIN_TOKEN = "admin";

/** One node's tokens: PRISN_HOME/tokens.json, written whole (temp file, rename). */
export class FileTokens implements TokenStorage {
  readonly where: string;

  constructor(home: string) {
    this.where = join(home, "tokens.json");
  }

  async read(): Promise<StoredToken[]> {
    const text = await Deno.readTextFile(this.where).catch((e) => {
      if (e instanceof Deno.errors.NotFound) return undefined;
      throw e;
    });
    if (text === undefined) return [];
    try {
      const tokens = JSON.parse(text).tokens;
      if (!Array.isArray(tokens)) throw new Error("no tokens list");
      return tokens;
    } catch (e) {
      throw new PrisnError(
        "INVALID",
        `${this.where} is not a token file prisn wrote (${
          (e as Error).message
        }): move it away to start afresh`,
      );
    }
  }

  async update(change: (tokens: StoredToken[]) => StoredToken[]): Promise<StoredToken[]> {
    const tokens = change(await this.read());
    await writePrivate(this.where, JSON.stringify({ tokens }, null, 2) + "\n");
    return tokens;
  }
}

/** The tokens of one PRISN_HOME, or of its cluster. Every change is stored before it answers. */
export class TokenStore {
  readonly adminFile: string;
  readonly storage: TokenStorage;
  #tokens: StoredToken[];
  readonly #following = new AbortController();
  readonly #home: string;

  private constructor(home: string, storage: TokenStorage, tokens: StoredToken[]) {
    this.#home = home;
    this.adminFile = join(home, "admin.token");
    this.storage = storage;
    this.#tokens = tokens;
  }

  /** Where the tokens are kept (a file, or the cluster's bucket). */
  get file(): string {
    return this.storage.where;
  }

  /**
   * Opens the tokens of `home` (none yet: an empty store), or those of `storage`, kept current
   * as other nodes change them.
   */
  static async open(
    home: string,
    storage: TokenStorage = new FileTokens(home),
  ): Promise<TokenStore> {
    const store = new TokenStore(home, storage, await storage.read());
    await storage.follow?.((tokens) => store.#tokens = tokens, store.#following.signal);
    return store;
  }

  /**
   * In a cluster, what of this home's own tokens no longer opens the API, one line each: the
   * tokens.json entries the cluster does not hold (made before the node joined), and an
   * admin.token that is not the cluster's admin token. Nothing when the home's file is the store.
   */
  async leftBehind(): Promise<string[]> {
    const own = new FileTokens(this.#home);
    if (own.where === this.storage.where) return [];
    const held = new Set(this.#tokens.map((t) => t.sha256));
    const names = (await own.read().catch(() => [])).filter((t) => !held.has(t.sha256))
      .map((t) => t.name);
    const lines: string[] = [];
    if (names.length > 0) {
      lines.push(
        `${own.where} holds ${names.length} token(s) the cluster does not (${names.join(", ")}): ` +
          `in a cluster only the tokens in ${this.file} open the API; make them again with ` +
          `prisn token create`,
      );
    }
    const admin = await Deno.readTextFile(this.adminFile).catch(() => undefined);
    if (admin !== undefined && this.#tokens.some((t) => t.admin) && !this.verify(admin.trim())) {
      lines.push(
        `${this.adminFile} is not the cluster's admin token, which opens no API now: the ` +
          `cluster's is in admin.token of the node whose TCP API started first`,
      );
    }
    return lines;
  }

  /** Stops following another node's changes. */
  close(): void {
    this.#following.abort();
  }

  /**
   * Makes the admin token unless there is one: answers its secret when it made it (the only time
   * it is shown; it stays readable by the owner in admin.token, 0600), else undefined.
   */
  async ensureAdmin(): Promise<string | undefined> {
    if (this.#tokens.some((t) => t.admin)) return undefined;
    const secret = newSecret();
    let made = false;
    await this.#update((tokens) => {
      made = !tokens.some((t) => t.admin); // another node may have made it meanwhile
      return made
        ? [...tokens, stored({ name: ADMIN_TOKEN, readOnly: false, admin: true }, secret)]
        : tokens;
    });
    if (!made) return undefined;
    await writePrivate(this.adminFile, secret + "\n");
    return secret;
  }

  /** The grant a presented secret carries, or undefined for a wrong or revoked one. */
  verify(secret: string): TokenGrant | undefined {
    const presented = sha256(secret);
    let found: StoredToken | undefined;
    for (const t of this.#tokens) { // every hash compared, found or not: no early exit to time
      if (timingSafeEqual(presented, Buffer.from(t.sha256, "hex")) && !found) found = t;
    }
    return found && {
      name: found.name,
      readOnly: found.readOnly,
      admin: found.admin,
      ...(found.namespaces ? { namespaces: [...found.namespaces] } : {}),
    };
  }

  list(): TokenInfo[] {
    return this.#tokens.map(({ sha256: _, ...info }) => info);
  }

  /** Makes a token; answers its secret, which is stored nowhere. */
  async create(
    name: string,
    options: { readOnly?: boolean; namespaces?: string[] } = {},
  ): Promise<string> {
    validateName(name);
    const namespaces = options.namespaces?.length
      ? [...new Set(options.namespaces.map(validateNamespace))].sort()
      : undefined;
    const secret = newSecret();
    const token = stored({
      name,
      readOnly: options.readOnly ?? false,
      admin: false,
      ...(namespaces ? { namespaces } : {}),
    }, secret);
    await this.#update((tokens) => {
      if (tokens.some((t) => t.name === name)) {
        throw new PrisnError(
          "CONFLICT",
          `a token named "${name}" exists: revoke it first or pick another name`,
        );
      }
      return [...tokens, token];
    });
    return secret;
  }

  async revoke(name: string): Promise<void> {
    if (name === ADMIN_TOKEN) {
      throw invalid(
        `the admin token cannot be revoked: it is how this machine's owner reaches the API`,
      );
    }
    await this.#update((tokens) => {
      if (!tokens.some((t) => t.name === name)) {
        throw notFound(`token "${name}" not found: see prisn token ls`);
      }
      return tokens.filter((t) => t.name !== name);
    });
  }

  async #update(change: (tokens: StoredToken[]) => StoredToken[]): Promise<void> {
    this.#tokens = await this.storage.update(change);
  }
}

function stored(grant: TokenGrant, secret: string): StoredToken {
  return { ...grant, createdAt: Date.now(), sha256: sha256(secret).toString("hex") };
}

/** A new bearer secret: `prisn_` and 32 random bytes, base64url. */
function newSecret(): string {
  return `prisn_${randomBytes(32).toString("base64url")}`;
}

function sha256(text: string): Buffer {
  return createHash("sha256").update(text).digest();
}
