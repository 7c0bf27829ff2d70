"""greeter: a tiny HTTP service used to show chute's pipeline end to end.

GET /         -> a greeting (the text comes from GREETING, default "hello")
GET /healthz  -> 200 "ok" (chute's health gate probes this)
"""

import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

VERSION = "1.0.0"


def greeting(name: str | None = None) -> str:
    word = os.environ.get("GREETING", "hello")
    return f"{word}, {name}!" if name else f"{word}!"


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        path, _, query = self.path.partition("?")
        if path == "/healthz":
            self._send(200, "ok\n", "text/plain")
        elif path == "/":
            name = query.removeprefix("name=") if query.startswith("name=") else None
            self._send(200, json.dumps({"message": greeting(name), "version": VERSION}) + "\n", "application/json")
        else:
            self._send(404, "not found\n", "text/plain")

    def _send(self, status: int, body: str, ctype: str) -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, fmt: str, *args: object) -> None:
        print("%s %s" % (self.address_string(), fmt % args), flush=True)


def main() -> None:
    port = int(os.environ.get("PORT", "8080"))
    print(f"greeter {VERSION} listening on :{port}", flush=True)
    ThreadingHTTPServer(("0.0.0.0", port), Handler).serve_forever()


if __name__ == "__main__":
    main()
