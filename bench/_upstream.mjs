// A minimal keep-alive HTTP server for bench/proxy_bench.ts: answers every request with 12 bytes.
// Usage: node bench/_upstream.mjs [PORT]  (0 or none: a free port); prints the bound port.
import http from "node:http";

const body = "hello world\n";
const server = http.createServer({ keepAliveTimeout: 60_000 }, (_req, res) => {
  res.writeHead(200, { "content-type": "text/plain", "content-length": body.length });
  res.end(body);
});
// A backlog of 4,096 (Node's default is 511): 1,000 connections opened at once overflowed it, and
// the dropped SYNs' retransmits (1 s) made wrk time out on direct and proxied targets alike.
server.listen({ port: Number(process.argv[2] ?? 0), host: "127.0.0.1", backlog: 4096 }, () => {
  console.log(server.address().port);
});
