"""quotes: a second small service, living in its own directory of the same repository."""

import json
import os
import random
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

QUOTES = [
    "Simple things should be simple, complex things should be possible.",
    "Make it work, make it right, make it fast.",
    "Ship small changes often.",
]


def pick(seed: int | None = None) -> str:
    return random.Random(seed).choice(QUOTES)


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        if self.path == "/healthz":
            body, ctype = b"ok\n", "text/plain"
        else:
            body, ctype = (json.dumps({"quote": pick()}) + "\n").encode(), "application/json"
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


if __name__ == "__main__":
    ThreadingHTTPServer(("0.0.0.0", int(os.environ.get("PORT", "8080"))), Handler).serve_forever()
