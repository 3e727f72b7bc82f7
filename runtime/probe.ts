/** How a replica is checked: a TCP connect to its PORT, or an HTTP GET of `path` answering 2xx. */
export interface ProbeSpec {
  port: number;
  /** Where the replica listens. @default "127.0.0.1" */
  host?: string;
  path?: string;
  timeoutMs: number;
}

/** One probe; true when the replica answered as it should. Never throws. */
export async function probe(spec: ProbeSpec): Promise<boolean> {
  const signal = AbortSignal.timeout(spec.timeoutMs);
  try {
    if (spec.path) {
      const host = spec.host?.includes(":") ? `[${spec.host}]` : spec.host ?? "127.0.0.1";
      const res = await fetch(`http://${host}:${spec.port}${spec.path}`, { signal });
      await res.body?.cancel();
      return res.status >= 200 && res.status < 300;
    }
    const conn = await Deno.connect({
      hostname: spec.host ?? "127.0.0.1",
      port: spec.port,
      signal,
    });
    conn.close();
    return true;
  } catch {
    return false;
  }
}

/** The first of `hosts` at which the replica passes its probe, if any. */
export async function probeHosts(
  spec: ProbeSpec,
  hosts: readonly string[],
): Promise<string | undefined> {
  for (const host of hosts) {
    if (await probe({ ...spec, host })) return host;
  }
  return undefined;
}
