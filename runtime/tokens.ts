/**
 * API tokens of the agent's TCP API: bearer secrets kept only as sha256 hashes in
 * PRISN_HOME/tokens.json (0600), compared in constant time. The admin token is made at the first
 * start of the TCP API, written to PRISN_HOME/admin.token (0600) for the owner, and shown once.
 * @module
 */
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { join } from "node:path";
import { invalid, notFound, PrisnError } from "../core/errors.ts";
import { validateName } from "../core/prisn_toml.ts";
import { writePrivate } from "../core/fs.ts";
import { validateNamespace } from "../core/namespace.ts";

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

interface StoredToken extends TokenInfo {
  /** sha256 of the secret, hex. */
  sha256: string;
}

/** The admin token's name; `prisn token revoke admin` is refused (it would lock the owner out). */
export const ADMIN_TOKEN = "admin";

/** The tokens of one PRISN_HOME. Every change is written (temp file, rename) before it answers. */
export class TokenStore {
  readonly file: string;
  readonly adminFile: string;
  #tokens: StoredToken[];

  private constructor(home: string, tokens: StoredToken[]) {
    this.file = join(home, "tokens.json");
    this.adminFile = join(home, "admin.token");
    this.#tokens = tokens;
  }

  /** Opens the home's tokens (none yet: an empty store). */
  static async open(home: string): Promise<TokenStore> {
    const file = join(home, "tokens.json");
    const text = await Deno.readTextFile(file).catch((e) => {
      if (e instanceof Deno.errors.NotFound) return undefined;
      throw e;
    });
    let tokens: StoredToken[] = [];
    if (text !== undefined) {
      try {
        tokens = JSON.parse(text).tokens;
        if (!Array.isArray(tokens)) throw new Error("no tokens list");
      } catch (e) {
        throw new PrisnError(
          "INVALID",
          `${file} is not a token file prisn wrote (${
            (e as Error).message
          }): move it away to start afresh`,
        );
      }
    }
    return new TokenStore(home, tokens);
  }

  /**
   * Makes the admin token unless there is one: answers its secret when it made it (the only time
   * it is shown; it stays readable by the owner in admin.token, 0600), else undefined.
   */
  async ensureAdmin(): Promise<string | undefined> {
    if (this.#tokens.some((t) => t.admin)) return undefined;
    const secret = newSecret();
    await writePrivate(this.adminFile, secret + "\n");
    await this.#add({ name: ADMIN_TOKEN, readOnly: false, admin: true }, secret);
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
    if (this.#tokens.some((t) => t.name === name)) {
      throw new PrisnError(
        "CONFLICT",
        `a token named "${name}" exists: revoke it first or pick another name`,
      );
    }
    const secret = newSecret();
    await this.#add({
      name,
      readOnly: options.readOnly ?? false,
      admin: false,
      ...(namespaces ? { namespaces } : {}),
    }, secret);
    return secret;
  }

  async revoke(name: string): Promise<void> {
    if (name === ADMIN_TOKEN) {
      throw invalid(
        `the admin token cannot be revoked: it is how this machine's owner reaches the API`,
      );
    }
    if (!this.#tokens.some((t) => t.name === name)) {
      throw notFound(`token "${name}" not found: see prisn token ls`);
    }
    await this.#save(this.#tokens.filter((t) => t.name !== name));
  }

  async #add(grant: TokenGrant, secret: string): Promise<void> {
    const token = { ...grant, createdAt: Date.now(), sha256: sha256(secret).toString("hex") };
    await this.#save([...this.#tokens, token]);
  }

  async #save(tokens: StoredToken[]): Promise<void> {
    await writePrivate(this.file, JSON.stringify({ tokens }, null, 2) + "\n");
    this.#tokens = tokens;
  }
}

/** A new bearer secret: `prisn_` and 32 random bytes, base64url. */
function newSecret(): string {
  return `prisn_${randomBytes(32).toString("base64url")}`;
}

function sha256(text: string): Buffer {
  return createHash("sha256").update(text).digest();
}
