/**
 * A bound on a NATS call: nats.js can leave a request's promise unsettled when its connection
 * closes under it, and nothing that waits for one (a read, a stop) may wait forever.
 *
 * @module
 */

/** `p`, or a rejection "NATS did not answer within MS ms" once `ms` have passed. */
export function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`NATS did not answer within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}
