/**
 * A worker thread of bench/proxy_bench.ts: one userspace proxy (runtime/proxy.ts) listening with
 * SO_REUSEPORT, so that several workers share a port. Message `{ port, upstream, host }` starts
 * it (answers `{ ok }` or `{ ok: false, error }`), `{ close: true }` closes it (answers `{}`).
 *
 * @module
 */
/// <reference lib="deno.worker" />
import { TcpProxy } from "../runtime/proxy.ts";

let proxy: TcpProxy | undefined;

self.onmessage = async (event: MessageEvent) => {
  const message = event.data;
  if (message.close) {
    await proxy?.close();
    self.postMessage({});
    return;
  }
  try {
    proxy = new TcpProxy({ port: message.port, host: message.host, reusePort: true });
    await proxy.listen();
    proxy.add({ id: "upstream", port: message.upstream, host: message.host });
    self.postMessage({ ok: true });
  } catch (error) {
    self.postMessage({ ok: false, error: (error as Error).message });
  }
};
