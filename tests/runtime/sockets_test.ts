// The address parsing and socket addresses of the epoll engine (runtime/_sockets.ts).
import assert from "node:assert/strict";
import { AF_INET6, familyOf, ipAddress, ipv6, sockaddrIn } from "../../runtime/_sockets.ts";

Deno.test("ipv6() reads IPv6 literals, compressed, bracketed or with an IPv4 tail", () => {
  const bytes = (words: number[]) => words.flatMap((w) => [w >> 8, w & 0xff]);
  assert.deepEqual(ipv6("::1"), bytes([0, 0, 0, 0, 0, 0, 0, 1]));
  assert.deepEqual(ipv6("::"), bytes([0, 0, 0, 0, 0, 0, 0, 0]));
  assert.deepEqual(ipv6("[2001:db8::5]"), bytes([0x2001, 0xdb8, 0, 0, 0, 0, 0, 5]));
  assert.deepEqual(ipv6("fd00:1:2:3:4:5:6:7"), bytes([0xfd00, 1, 2, 3, 4, 5, 6, 7]));
  assert.deepEqual(ipv6("::ffff:10.0.0.1"), bytes([0, 0, 0, 0, 0, 0xffff, 0x0a00, 0x0001]));
  for (const bad of ["", "1.2.3.4", "localhost", "1::2::3", "fe80::1%eth0", "1:2:3:4:5:6:7:8:9"]) {
    assert.equal(ipv6(bad), undefined, bad);
  }
  assert.equal(ipv6("1:2:3:4:5:6:7"), undefined, "seven groups and no ::");
  assert.equal(ipv6("12345::"), undefined);
  assert.equal(ipv6("1:2:3:4::5:6:7:8"), undefined, ":: standing for no group");
});

Deno.test("ipAddress() takes IPv4 or IPv6; sockaddrIn() lays out sockaddr_in6 as Linux reads it", () => {
  assert.deepEqual(ipAddress("127.0.0.1"), [127, 0, 0, 1]);
  const six = ipAddress("::1")!;
  assert.equal(familyOf(six), AF_INET6);
  const sa = sockaddrIn(six, 8080);
  assert.equal(sa.length, 28);
  assert.deepEqual([...sa.subarray(0, 8)], [AF_INET6, 0, 0x1f, 0x90, 0, 0, 0, 0]);
  assert.deepEqual([...sa.subarray(8, 24)], six);
  assert.deepEqual([...sa.subarray(24)], [0, 0, 0, 0]);
  assert.equal(sockaddrIn([127, 0, 0, 1], 80).length, 16);
});
