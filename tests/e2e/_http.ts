/**
 * HTTP through a service port for the e2e tests: one GET per new TCP connection (so each goes
 * through the port's balancing), a client loop counting failures, the replicas that answer.
 *
 * @module
 */
import assert from "node:assert/strict";
import { waitFor } from "../_helpers.ts";

const encoder = new TextEncoder();

/**
 * One HTTP/1.0 GET on a new TCP connection (so every request goes through the proxy's accept and
 * balancing, never a pooled keep-alive connection). Throws on any connection failure or timeout.
 */
export async function rawGet(
  port: number,
  path = "/",
  timeoutMs = 5_000,
): Promise<{ status: number; headers: Map<string, string>; body: string }> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    try {
      conn.close();
    } catch { /* closed */ }
  }, timeoutMs);
  const decoder = new TextDecoder();
  let text = "";
  try {
    const request = encoder.encode(`GET ${path} HTTP/1.0\r\nHost: 127.0.0.1:${port}\r\n\r\n`);
    let written = 0;
    while (written < request.length) written += await conn.write(request.subarray(written));
    const buffer = new Uint8Array(16 * 1024);
    for (;;) {
      const n = await conn.read(buffer);
      if (n === null) break;
      text += decoder.decode(buffer.subarray(0, n), { stream: true });
    }
  } catch (e) {
    throw timedOut ? new Error(`no answer within ${timeoutMs} ms`) : e;
  } finally {
    clearTimeout(timer);
    try {
      conn.close();
    } catch { /* closed */ }
  }
  text += decoder.decode();
  const match = text.match(/^HTTP\/1\.[01] (\d{3})[^\r\n]*\r\n/);
  if (!match) throw new Error(`not an HTTP answer: ${JSON.stringify(text.slice(0, 80))}`);
  const split = text.indexOf("\r\n\r\n");
  const headers = new Map<string, string>();
  for (const line of text.slice(0, split < 0 ? text.length : split).split("\r\n").slice(1)) {
    const colon = line.indexOf(":");
    if (colon > 0) headers.set(line.slice(0, colon).toLowerCase(), line.slice(colon + 1).trim());
  }
  return { status: Number(match[1]), headers, body: split < 0 ? "" : text.slice(split + 4) };
}

/** The body of GET / through the port, or undefined when it fails. */
export async function body(port: number): Promise<string | undefined> {
  try {
    const r = await rawGet(port);
    return r.status === 200 ? r.body.trim() : undefined;
  } catch {
    return undefined;
  }
}

/**
 * A client loop: sequential GETs, each on a new connection, counting answers that are 200 and
 * everything else (refused, reset, timed out, non-200) as failed, until `stop()`.
 */
export class Load {
  ok = 0;
  failed = 0;
  readonly errors: string[] = [];
  readonly bodies = new Set<string>();
  #stopped = false;
  readonly #done: Promise<void>;

  constructor(readonly port: number) {
    this.#done = this.#run();
  }

  async #run(): Promise<void> {
    while (!this.#stopped) {
      const at = Date.now();
      try {
        const r = await rawGet(this.port);
        if (r.status === 200) {
          this.ok++;
          this.bodies.add(r.body.trim().split(" ")[0]);
        } else {
          this.#fail(`HTTP ${r.status} at ${at}`);
        }
      } catch (e) {
        this.#fail(`${(e as Error).name}: ${(e as Error).message} at ${at}`);
      }
      // A short pause keeps the loop from taking a whole core from the processes under test.
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  #fail(why: string): void {
    this.failed++;
    if (this.errors.length < 5) this.errors.push(why);
  }

  async stop(): Promise<{ ok: number; failed: number }> {
    this.#stopped = true;
    await this.#done;
    return { ok: this.ok, failed: this.failed };
  }

  /** Waits until the loop has seen `n` more successful answers (progress between steps). */
  async progressed(n = 3): Promise<void> {
    const target = this.ok + n;
    await waitFor(() => this.ok >= target || this.#stopped, {
      timeoutMs: 15_000,
      what: `${n} more answers through :${this.port}`,
    });
  }
}

/** The replica names answering through `port`, by asking until `expected` distinct ones showed. */
export async function replicasAnswering(port: number, expected: number): Promise<Set<string>> {
  const seen = new Set<string>();
  await waitFor(async () => {
    const b = await body(port);
    if (b) seen.add(b.split(" ")[1]);
    return seen.size >= expected;
  }, { timeoutMs: 15_000, intervalMs: 10, what: `${expected} replicas answering on :${port}` });
  return seen;
}

/** Fails unless the client loop saw zero failed requests (and enough answers to mean it). */
export function assertNoFailures(load: Load, result: { ok: number; failed: number }): void {
  const { ok: answered, failed } = result;
  assert.equal(
    failed,
    0,
    `${failed} of ${answered + failed} requests failed: ${load.errors.join("; ")}`,
  );
  assert.ok(answered >= 20, `only ${answered} requests made it through the steps`);
}
