/**
 * The TCP sockets of this network namespace as /proc/net/tcp and tcp6 list them (Linux): what
 * the kernel path reads to find a replica's listening socket and to count the connections a
 * drain waits for.
 *
 * @module
 */

/** TCP states, in hex as /proc/net/tcp writes them. */
export const LISTEN = "0A";
/** ESTABLISHED, SYN_RECV, CLOSE_WAIT: connections a server still serves. */
export const SERVING_STATES: ReadonlySet<string> = new Set(["01", "03", "08"]);

/** One socket: local address (hex, as written there), local port, state, inode. */
export interface ProcSocket {
  address: string;
  port: number;
  state: string;
  inode: string;
}

/** Every TCP socket, IPv4 and IPv6; undefined where neither file can be read. */
export function procSockets(): ProcSocket[] | undefined {
  let out: ProcSocket[] | undefined;
  for (const file of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    let text: string;
    try {
      text = Deno.readTextFileSync(file);
    } catch {
      continue;
    }
    out ??= [];
    for (const line of text.split("\n").slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 10) continue;
      const [address, port] = f[1].split(":");
      out.push({ address, port: parseInt(port, 16), state: f[3], inode: f[9] });
    }
  }
  return out;
}
