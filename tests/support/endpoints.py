"""A small inference endpoint for tests: SageMaker's invocation format over HTTP.

POST <behaviour>/invocations with text/csv rows; what it answers depends on the
path's first part (see `_answer`). Every request is recorded (path, content type,
body) for the tests to look at.
"""

from __future__ import annotations

import csv
import io
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def _number(field: str) -> float | None:
    try:
        return float(field)
    except ValueError:
        return None


def row_sum(row: list[str]) -> float:
    """What /sum answers for a row: the sum of its numeric fields (empty ones: none)."""
    return sum(v for v in map(_number, row) if v is not None)


def _answer(kind: str, rows: list[list[str]]) -> tuple[int, str, str]:
    """(status, content type, body) for the parsed CSV rows."""
    sums = [row_sum(r) for r in rows]
    if kind == "sum":
        return 200, "text/csv", "".join(f"{s!r}\n" for s in sums)
    if kind == "json":
        return 200, "application/json", json.dumps({"predictions": sums})
    if kind == "sagemaker_xgb":  # one line of comma-separated values
        return 200, "text/csv", ",".join(repr(s) for s in sums)
    if kind == "super":
        lines = [json.dumps({"sum": s, "fields": len(r), "first": r[0] if r else None, "ok": s > 0})
                 for s, r in zip(sums, rows)]
        return 200, "application/jsonlines", "\n".join(lines) + "\n"
    if kind == "text":  # the fields as received, NULL (empty) as <null>, newlines as \n
        return 200, "text/csv", "".join("|".join(f.replace("\n", "\\n") if f else "<null>" for f in r) + "\n"
                                        for r in rows)
    if kind == "bool":
        return 200, "text/csv", "".join(("true" if s > 0 else "false") + "\n" for s in sums)
    if kind == "short":
        return 200, "text/csv", "".join(f"{s!r}\n" for s in sums[:-1])
    if kind == "words":
        return 200, "text/csv", "".join("high\n" for _ in rows)
    if kind == "fail":
        return 500, "text/plain", "model exploded: feature 2 out of range"
    return 404, "text/plain", f"no such behaviour {kind}"


class FakeEndpoint:
    """A threaded HTTP server on 127.0.0.1; `url(kind)` is the base URL of a behaviour."""

    def __init__(self, delay: float = 3.0, nap: float = 0.4) -> None:
        self.requests: list[tuple[str, str, bytes]] = []
        self.delay = delay  # of /slow
        self.nap = nap  # of /nap (then as /sum)
        self.in_flight = 0
        self.most_in_flight = 0  # of /nap, at once
        self.nap_starts: list[float] = []  # when each /nap request began
        self.target_models: list[str | None] = []  # X-Amzn-SageMaker-Target-Model of each request
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with owner._lock:
                    owner.requests.append((self.path, self.headers.get("Content-Type", ""), body))
                    owner.target_models.append(self.headers.get("X-Amzn-SageMaker-Target-Model"))
                parts = self.path.strip("/").split("/")
                kind = parts[0] if len(parts) > 1 and parts[-1] == "invocations" else ""
                if kind == "slow":
                    time.sleep(owner.delay)
                    kind = "sum"
                if kind == "nap":
                    with owner._lock:
                        owner.in_flight += 1
                        owner.most_in_flight = max(owner.most_in_flight, owner.in_flight)
                        owner.nap_starts.append(time.monotonic())
                    time.sleep(owner.nap)
                    with owner._lock:
                        owner.in_flight -= 1
                    kind = "sum"
                rows = list(csv.reader(io.StringIO(body.decode())))
                status, content_type, text = _answer(kind, rows)
                data = text.encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                try:
                    self.wfile.write(data)
                except OSError:  # the client gave up (a timeout test)
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, kind: str) -> str:
        return f"http://127.0.0.1:{self.port}/{kind}"

    def taken(self, kind: str) -> list[bytes]:
        """The bodies of the requests made of behaviour `kind` so far (and forgets them)."""
        with self._lock:
            mine = [body for path, _, body in self.requests if path.startswith(f"/{kind}/")]
            self.requests = [r for r in self.requests if not r[0].startswith(f"/{kind}/")]
        return mine

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
