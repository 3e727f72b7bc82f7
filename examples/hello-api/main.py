"""A tiny HTTP service: prisn gives each replica its own PORT and balances the service port."""
import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Hello(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/healthz":
            body = b"ok\n"
        else:
            body = (json.dumps({
                "hello": "from prisn",
                "replica": os.environ.get("PRISN_REPLICA"),
                "version": os.environ.get("PRISN_VERSION"),
            }) + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        print("%s %s" % (self.address_string(), fmt % args))


port = int(os.environ.get("PORT", "8000"))
print(f"hello-api listening on 127.0.0.1:{port}")
ThreadingHTTPServer(("127.0.0.1", port), Hello).serve_forever()
