// The epoll engine's own parts: which engine a service port gets and why; a backend named by a
// host name. Everything the two engines share is tested on both in proxy_test.ts.

import assert from "node:assert/strict";
import { lookup } from "node:dns/promises";
import { EpollUnavailable, epollUnavailable } from "../../runtime/epoll_proxy.ts";
import { ServicePort } from "../../runtime/service_port.ts";
import { within } from "../_helpers.ts";

const NO_EPOLL = epollUnavailable("127.0.0.1");
if (NO_EPOLL) console.log(`epoll_proxy_test: skipping the epoll engine tests: ${NO_EPOLL}`);

Deno.test("a service port on IPv4 uses the epoll engine, and get's balancer says so", {
  ignore: NO_EPOLL !== undefined,
}, () => {
  const port = new ServicePort({ port: 0, host: "127.0.0.1" });
  assert.equal(port.engine, "epoll");
  assert.equal(port.engineFallback, undefined);
  assert.deepEqual(port.balancer, { kind: "userspace", engine: "epoll" });
});

Deno.test("where the epoll engine cannot listen, the Deno copy loop serves and says why", async () => {
  const port = new ServicePort({ port: 0, host: "::1" });
  assert.equal(port.engine, "deno");
  const why = Deno.build.os === "linux"
    ? "the epoll engine listens on IPv4 addresses only (not ::1)"
    : `the epoll engine is Linux only (this is ${Deno.build.os})`;
  assert.equal(port.engineFallback, why);
  assert.deepEqual(port.balancer, { kind: "userspace", engine: "deno", engineFallback: why });
  await port.close();
  assert.throws(
    () => new ServicePort({ port: 0, host: "::1", engine: "epoll" }),
    (error) => error instanceof EpollUnavailable && error.message === why,
  );
});

Deno.test("the Deno copy loop when asked for", () => {
  const port = new ServicePort({ port: 0, host: "127.0.0.1", engine: "deno" });
  assert.equal(port.engine, "deno");
  assert.equal(port.engineFallback, "the Deno copy loop was asked for");
});

/** This machine's name when the system resolves it to loopback (as /etc/hosts often does). */
async function loopbackName(): Promise<string | undefined> {
  try {
    const { address } = await lookup(Deno.hostname(), { family: 4 });
    return address.startsWith("127.") ? Deno.hostname() : undefined;
  } catch {
    return undefined;
  }
}

Deno.test("a backend named by a host name is reached at its address", {
  ignore: NO_EPOLL !== undefined,
}, async () => {
  const name = await loopbackName();
  if (!name) console.log("  (this machine's name does not resolve to loopback: localhost only)");
  const backend = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = new ServicePort({ port: 0, host: "127.0.0.1" });
  await port.listen();
  try {
    // "localhost" is known without a lookup; the machine's name goes through the resolver.
    for (const host of name ? ["localhost", name] : ["localhost"]) {
      port.remove("b");
      port.add({ id: "b", port: backend.addr.port, host });
      const client = await Deno.connect({ hostname: "127.0.0.1", port: port.port });
      const accepted = await within(backend.accept(), 5_000, `a connection via ${host}`);
      await client.write(new TextEncoder().encode("hi"));
      const buf = new Uint8Array(2);
      assert.equal(await accepted.read(buf), 2);
      assert.equal(new TextDecoder().decode(buf), "hi");
      client.close();
      accepted.close();
    }
  } finally {
    await port.close();
    backend.close();
  }
});
