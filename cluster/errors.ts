/**
 * NATS errors as prisn sees them: which ones mean "compare-and-set lost" or "try again", and a
 * one-line reason for the rest. prisn raises only {@link PrisnError}s (core/errors.ts); the NATS
 * error goes along as `cause`.
 *
 * @module
 */

import { JetStreamApiError } from "@nats-io/jetstream";
import { type ErrorCode, PrisnError } from "../core/errors.ts";

/** JetStream API error codes prisn branches on (nats-server's errors.json). */
export const JS_ERR = {
  /** A compare-and-set write lost: the key's revision is not the expected one. */
  wrongLastSequence: 10071,
  /** The JetStream cluster has no leader at the moment (an election is under way). */
  temporarilyUnavailable: 10008,
  /** No servers to place the stream's replicas on (fewer servers up, or not yet known). */
  noSuitablePeers: 10005,
  /** Not enough servers or resources for the stream's replicas. */
  insufficientResources: 10023,
  /** The stream's max bytes exceed the storage JetStream may still reserve. */
  storageResourcesExceeded: 10047,
  /** A stream of that name exists with another configuration. */
  streamNameInUse: 10058,
  /** The stream's subjects overlap those of another stream. */
  subjectsOverlap: 10065,
  /** Replicas > 1 asked of a single, non-clustered server. */
  replicasNotSupported: 10074,
  /** No stream of that name. */
  streamNotFound: 10059,
} as const;

/** The JetStream API error code of `error`, or undefined when it is not one. */
export function jsErrorCode(error: unknown): number | undefined {
  return error instanceof JetStreamApiError ? error.code : undefined;
}

/**
 * Whether `error` is a lost compare-and-set: `kv.create` of a key that exists, or
 * `kv.update(key, value, revision)` at a revision that is no longer the key's.
 */
export function isCasConflict(error: unknown): boolean {
  return jsErrorCode(error) === JS_ERR.wrongLastSequence;
}

/** Whether `error` may go away by itself: a request timeout, or JetStream electing a leader. */
export function isTransient(error: unknown): boolean {
  return (error instanceof Error &&
    // "JetStream not enabled" is nats.js's reading of "no responders": on a server whose
    // JetStream answered before, a NATS cluster between JetStream leaders.
    (error.name === "TimeoutError" || error.name === "JetStreamNotEnabled")) ||
    jsErrorCode(error) === JS_ERR.temporarilyUnavailable;
}

/**
 * `fn()`, asked again every 250 ms while its failure is transient (a timeout or an election on a
 * busy clustered NATS), for up to `waitMs` or until `ended()`: one slow answer must not fail a
 * node's start.
 */
export async function untilAnswered<T>(
  fn: () => Promise<T>,
  waitMs: number,
  ended: () => boolean = () => false,
): Promise<T> {
  const deadline = Date.now() + waitMs;
  while (true) {
    try {
      return await fn();
    } catch (e) {
      if (!isTransient(e) || Date.now() > deadline || ended()) throw e;
      await new Promise((r) => setTimeout(r, 250));
    }
  }
}

/** The NATS error's own words on one line, e.g. "connection refused" or "stream not found". */
export function natsReason(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  const cause = error instanceof Error && error.cause instanceof Error ? error.cause.message : "";
  const text = message && message !== cause && cause && !message.includes(cause)
    ? `${message}: ${cause}`
    : message || cause || "unknown error";
  return text.replace(/\s+/g, " ").trim();
}

/** A PrisnError with `cause`, its message folded onto one line. */
export function clusterError(code: ErrorCode, message: string, cause?: unknown): PrisnError {
  return new PrisnError(code, message.replace(/\s*\n\s*/g, " "), { cause });
}
