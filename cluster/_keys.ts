/**
 * Listing a bucket's keys without a consumer. nats.js's `kv.keys()` reads the last entry of each
 * key through a consumer and stops at the first entry that says nothing is left pending; servers
 * have been seen to say so early (nats-server#4824 for a filtered listing; under concurrent writes
 * too), and the listing then leaves keys out without an error. A key left out is a node taken for
 * down, or a version a delete leaves behind. The stream's own per-subject counts have no such gap.
 *
 * @module
 */

import { Bucket, type KV } from "@nats-io/kv";

/**
 * Every key under `filter` (a key or a wildcard) that holds an entry, a value or a delete marker:
 * the caller reads the ones it needs and skips what is deleted.
 */
export async function bucketKeys(kv: KV, filter = ">"): Promise<string[]> {
  if (!(kv instanceof Bucket)) {
    throw new TypeError("bucketKeys: a bucket opened with nats.js's Kvm is needed");
  }
  const info = await kv.jsm.streams.info(kv.stream, { subjects_filter: kv.fullKeyName(filter) });
  return Object.keys(info.state.subjects ?? {}).map((s) => s.substring(kv.prefixLen)).sort();
}
