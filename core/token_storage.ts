/**
 * Where the API tokens of the TCP API are kept, hashes only: one node's PRISN_HOME/tokens.json
 * (runtime/tokens.ts), or in a cluster one key of a KV bucket every node follows
 * (cluster/tokens.ts), so a token made on any node opens every node.
 *
 * @module
 */

/** A token as stored: never its secret, the secret's sha256. */
export interface StoredToken {
  name: string;
  /** Reads only: GET routes. */
  readOnly: boolean;
  /** Manages tokens and stops the agent; only the admin token is. */
  admin: boolean;
  /** The namespaces it reaches; absent: every namespace. */
  namespaces?: string[];
  createdAt: number;
  /** sha256 of the secret, hex. */
  sha256: string;
}

export interface TokenStorage {
  /** Where the tokens are, for messages. */
  readonly where: string;
  /** The stored tokens now. */
  read(): Promise<StoredToken[]>;
  /**
   * Replaces the stored list by `change(list)` in one atomic step (a write racing another node's
   * is redone on the fresh list); answers the new list. What `change` throws is thrown.
   */
  update(change: (tokens: StoredToken[]) => StoredToken[]): Promise<StoredToken[]>;
  /**
   * Calls `onChange` with the list whenever another writer changes it, until `signal` aborts;
   * resolves once it follows.
   */
  follow?(onChange: (tokens: StoredToken[]) => void, signal: AbortSignal): Promise<void>;
}
