/**
 * Whether the agent's writes under PRISN_HOME are failing for want of space: what `status` shows
 * as "disk full since …". Each write site (the records, the logs, `current` and metadata.json)
 * says when a write failed and when one worked again; the disk is full while any site's last
 * write failed.
 *
 * @module
 */

/** Where a write failed. */
export type WriteSite = "records" | "logs" | "files";

/** A write site that holds failed writes and retries them. */
export interface WriteHolder {
  /** Writes held now. */
  readonly held: number;
  close(): void;
}

/** What `status` says about the disk. */
export interface DiskState {
  /** Since when writes fail (epoch ms); absent while they work. */
  fullSince?: number;
  /** Writes that failed since the agent started (events, runs, processes, log lines). */
  failedWrites: number;
  /** Writes held to retry (records; log lines are dropped, never held). */
  pending: number;
  /** The last failure, with its site. */
  lastError?: string;
}

/** True for the errors a full disk (or quota) gives: SQLite's and the kernel's. */
export function isDiskFull(error: unknown): boolean {
  const e = error as { message?: unknown; code?: unknown };
  const text = `${e?.code ?? ""} ${e?.message ?? ""}`;
  return /database or disk is full|SQLITE_FULL|No space left|ENOSPC|EDQUOT|quota exceeded/i.test(
    text,
  );
}

/**
 * How long writes at a site must have worked, with none failing, before the site counts as no
 * longer full: on a nearly full disk some small writes fit and others do not.
 */
export const CLEAR_MS = 3_000;

/** The agent's one account of failed writes (AgentContext.disk). */
export class DiskHealth {
  readonly #sites = new Map<WriteSite, { since: number; lastFailure: number; lastOk?: number }>();
  #failedWrites = 0;
  #lastError?: string;
  #holders = new Map<WriteSite, WriteHolder>();

  constructor(readonly now: () => number = Date.now) {}

  /** A write at `site` failed (`count` of them at once, e.g. log lines). */
  failed(site: WriteSite, error: unknown, count = 1): void {
    this.#failedWrites += count;
    const now = this.now();
    const known = this.#sites.get(site);
    if (known) known.lastFailure = now;
    else this.#sites.set(site, { since: now, lastFailure: now });
    this.#lastError = `${site}: ${(error as Error)?.message ?? String(error)}`.split("\n")[0];
  }

  /** A write at `site` worked: once they have for {@link CLEAR_MS}, the site is not full. */
  worked(site: WriteSite): void {
    const known = this.#sites.get(site);
    if (known) known.lastOk = this.now();
  }

  /** A site that holds failed writes to retry them (counted in {@link state}). */
  register(site: WriteSite, holder: WriteHolder): void {
    this.#holders.set(site, holder);
  }

  /** Stops every holder's retries (the agent stops). */
  close(): void {
    for (const holder of this.#holders.values()) holder.close();
  }

  get full(): boolean {
    return this.#fullSites().length > 0;
  }

  /** The `since` of each site still full; forgets the ones that recovered. */
  #fullSites(): number[] {
    const now = this.now();
    for (const [site, s] of this.#sites) {
      if (s.lastOk !== undefined && s.lastOk > s.lastFailure && now - s.lastFailure >= CLEAR_MS) {
        this.#sites.delete(site);
      }
    }
    return [...this.#sites.values()].map((s) => s.since);
  }

  state(): DiskState {
    const since = this.#fullSites();
    let pending = 0;
    for (const holder of this.#holders.values()) pending += holder.held;
    return {
      ...(since.length ? { fullSince: Math.min(...since) } : {}),
      failedWrites: this.#failedWrites,
      pending,
      ...(this.#lastError ? { lastError: this.#lastError } : {}),
    };
  }
}

/** @default 2 MiB kept in PRISN_HOME/state/ballast */
export const BALLAST_BYTES = 2 * 1024 * 1024;

/**
 * A reserve of space under PRISN_HOME: a file of zeros the agent gives back when the disk is so
 * full that it cannot open its records (SQLite needs room for its WAL and shared-memory files),
 * so an agent restarted on a full disk still starts; it is made again once there is room.
 */
export class Ballast {
  constructor(readonly path: string, readonly bytes = BALLAST_BYTES) {}

  /** Makes the reserve if it is missing; a disk too full for it is no error (none is made). */
  async ensure(): Promise<void> {
    try {
      if ((await Deno.stat(this.path)).size === this.bytes) return;
    } catch { /* missing */ }
    try {
      await Deno.writeFile(this.path, new Uint8Array(this.bytes), { mode: 0o600 });
    } catch {
      await Deno.remove(this.path).catch(() => {}); // a short reserve is none
    }
  }

  /** Gives the space back; true when there was a reserve to give. */
  async release(): Promise<boolean> {
    try {
      await Deno.remove(this.path);
      return true;
    } catch {
      return false;
    }
  }
}
