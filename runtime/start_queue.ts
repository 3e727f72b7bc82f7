/** @default replicas of the whole agent starting at once */
export const DEFAULT_START_PARALLELISM = 16;

/** Gives a start slot back; idempotent. */
export type Release = () => void;

/**
 * Bounds how many replicas start at once across the agent (a start lasts from spawn until the
 * replica is ready, exits or gives up), and serves deployments in turn: a deploy of 1,000
 * replicas queues behind its own earlier starts, not ahead of another deployment's three. Waiting
 * is in memory only; a slot is never held by a replica that was stopped while it waited.
 */
export class StartQueue {
  #active = 0;
  /** Per deployment, its waiters in order; Map order is the turn order. */
  #waiting = new Map<string, Array<(release: Release) => void>>();

  constructor(readonly parallelism: number = DEFAULT_START_PARALLELISM) {
    if (!Number.isInteger(parallelism) || parallelism < 1) {
      throw new RangeError(`start parallelism must be a positive integer (got ${parallelism})`);
    }
  }

  /** Starts running now. */
  get active(): number {
    return this.#active;
  }

  /** Waiting for a slot. */
  get queued(): number {
    let n = 0;
    for (const list of this.#waiting.values()) n += list.length;
    return n;
  }

  /**
   * Resolves with a release function once `key` (a deployment) may start one more replica;
   * resolves with undefined if `signal` aborts first (the place in the queue is given up).
   */
  acquire(key: string, signal?: AbortSignal): Promise<Release | undefined> {
    if (signal?.aborted) return Promise.resolve(undefined);
    if (this.#active < this.parallelism && this.#waiting.size === 0) {
      return Promise.resolve(this.#grant());
    }
    return new Promise((resolve) => {
      const list = this.#waiting.get(key) ?? [];
      const waiter = (release: Release) => {
        signal?.removeEventListener("abort", onAbort);
        resolve(release);
      };
      const onAbort = () => {
        const current = this.#waiting.get(key);
        const i = current?.indexOf(waiter) ?? -1;
        if (current && i >= 0) {
          current.splice(i, 1);
          if (current.length === 0) this.#waiting.delete(key);
        }
        resolve(undefined);
      };
      list.push(waiter);
      this.#waiting.set(key, list);
      signal?.addEventListener("abort", onAbort, { once: true });
    });
  }

  #grant(): Release {
    this.#active++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#active--;
      this.#next();
    };
  }

  /** Hands free slots out one deployment at a time: first waiter of the next key in turn. */
  #next(): void {
    while (this.#active < this.parallelism && this.#waiting.size > 0) {
      const [key, list] = this.#waiting.entries().next().value!;
      const waiter = list.shift()!;
      this.#waiting.delete(key);
      if (list.length > 0) this.#waiting.set(key, list); // to the back of the turn order
      waiter(this.#grant());
    }
  }
}
