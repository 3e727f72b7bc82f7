// A minimal keep-alive HTTP server for bench/proxy_bench.ts: answers every request with 12 bytes.
// Usage: node bench/_upstream.mjs [PORT]  (0 or none: a free port); prints the bound port.
import http from "node:http";

const body = "hello world\n";
const server = http.createServer({ keepAliveTimeout: 60_000 }, (_req, res) => {
  res.writeHead(200, { "content-type": "text/plain", "content-length": body.length });
  res.end(body);
});
server.listen(Number(process.argv[2] ?? 0), "127.0.0.1", () => {
  console.log(server.address().port);
});
