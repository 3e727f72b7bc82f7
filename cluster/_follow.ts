/**
 * Following a KV bucket for as long as a node runs: a watch ends when the NATS server it was on
 * goes away (its consumer lived there), and one can stall silently. `followBucket` starts the
 * watch again from the last revision it applied whenever it ended, or when the bucket holds
 * revisions it has not brought for two checks in a row.
 *
 * @module
 */

import type { KV, KvEntry } from "@nats-io/kv";

export interface FollowOptions {
  /** Ends the following. */
  signal: AbortSignal;
  /** Told of watches that ended or stalled. @default ignore */
  log?: (line: string) => void;
  /** How often the bucket's last revision is compared with the last applied. @default 5000 */
  checkMs?: number;
}

/**
 * Applies every entry of `key` (a wildcard) in the bucket, history first, then changes, until
 * `signal` aborts; resolves once the first watch has started.
 */
export async function followBucket(
  kv: KV,
  key: string,
  apply: (entry: KvEntry) => void,
  options: FollowOptions,
): Promise<{ done: Promise<void> }> {
  const { signal } = options;
  let applied = 0;
  let current: { stop(): void } | undefined;
  const open = async () => {
    const w = await kv.watch(applied > 0 ? { key, resumeFromRevision: applied + 1 } : { key });
    current = w;
    if (signal.aborted) w.stop();
    return w;
  };
  const first = await open();
  const stopCurrent = () => current?.stop();
  signal.addEventListener("abort", stopCurrent, { once: true });
  // The stall check: the bucket moved on twice while nothing came.
  let behind = 0;
  const check = setInterval(async () => {
    try {
      const last = (await kv.status()).streamInfo.state.last_seq;
      behind = last > applied ? behind + 1 : 0;
      if (behind >= 2) {
        options.log?.(`watch of ${key} fell behind (at ${applied}, bucket at ${last}): restarted`);
        behind = 0;
        current?.stop();
      }
    } catch { /* NATS away: the watch's own end restarts it */ }
  }, options.checkMs ?? 5_000);
  const done = (async () => {
    let watch: Iterable<KvEntry> | AsyncIterable<KvEntry> = first;
    while (!signal.aborted) {
      try {
        for await (const e of watch) {
          applied = Math.max(applied, e.revision);
          try {
            apply(e);
          } catch (err) {
            options.log?.(`applying ${e.key}: ${(err as Error).message}`);
          }
        }
      } catch (e) {
        options.log?.(`watch of ${key} ended: ${(e as Error).message}`);
      }
      if (signal.aborted) break;
      await new Promise((r) => setTimeout(r, 500));
      try {
        watch = await open();
      } catch (e) {
        options.log?.(`watch of ${key}: ${(e as Error).message}`);
        watch = [] as KvEntry[];
      }
    }
    clearInterval(check);
    signal.removeEventListener("abort", stopCurrent);
  })();
  return { done };
}
