/** How a replica is checked: a TCP connect to its PORT, or an HTTP GET of `path` answering 2xx. */
export interface ProbeSpec {
  port: number;
  path?: string;
  timeoutMs: number;
}

/** One probe; true when the replica answered as it should. Never throws. */
export async function probe(spec: ProbeSpec): Promise<boolean> {
  const signal = AbortSignal.timeout(spec.timeoutMs);
  try {
    if (spec.path) {
      const res = await fetch(`http://127.0.0.1:${spec.port}${spec.path}`, { signal });
      await res.body?.cancel();
      return res.status >= 200 && res.status < 300;
    }
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: spec.port, signal });
    conn.close();
    return true;
  } catch {
    return false;
  }
}
