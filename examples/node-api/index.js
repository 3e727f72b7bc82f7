// A Node HTTP service; prisn sets PORT per replica.
const http = require("node:http");
const port = Number(process.env.PORT || 8000);
http.createServer((_req, res) => {
  res.writeHead(200, { "content-type": "text/plain" });
  res.end(`hello from ${process.env.PRISN_REPLICA} (${process.env.PRISN_VERSION})\n`);
}).listen(port, "127.0.0.1", () => console.log(`node-api on ${port}`));
