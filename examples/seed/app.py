"""A small HTTP server: the example app of the README's build walk-through."""

import http.server
import json
import os
import time

VERSION = "1.0"
DATA = "/app/data"


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        os.makedirs(DATA, exist_ok=True)
        with open(os.path.join(DATA, "hits.log"), "a") as f:
            f.write(f"{time.time():.0f} {self.path}\n")
        body = json.dumps({"app": "myapp", "version": VERSION, "path": self.path}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


if __name__ == "__main__":
    print(f"myapp {VERSION} listening on :8000", flush=True)
    http.server.ThreadingHTTPServer(("0.0.0.0", 8000), Handler).serve_forever()
