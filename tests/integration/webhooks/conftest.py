"""A programmable webhook receiver on 127.0.0.1 (http.server in a thread) and webhook fixtures."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """Answers `fail_times` requests with `fail_status` (or drops them when `drop`), then 200."""

    url: str = ""
    fail_times: int = 0
    fail_status: int = 500
    drop: bool = False  # close the connection without an answer (a receiver that is down)
    delay_seconds: float = 0.0
    requests: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def respond(self, path: str, headers: dict[str, str], body: bytes) -> int | None:
        with self.lock:
            self.requests.append(Received(path, headers, body))
            if self.drop:
                return None
            if self.fail_times > 0:
                self.fail_times -= 1
                return self.fail_status
            return 200

    def at(self, path: str) -> list[Received]:
        return [r for r in self.requests if r.path == path]


@pytest.fixture
def receiver():
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if state.delay_seconds:
                time.sleep(state.delay_seconds)
            code = state.respond(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
            if code is None:
                self.close_connection = True
                return  # no status line: the client sees the connection drop
            reply = b'{"ok":true}' if code < 300 else b"receiver error"
            self.send_response(code)
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def endpoint_for(db):
    from apps.webhooks.models import WebhookEndpoint

    def make(service, url: str, **values) -> WebhookEndpoint:
        return WebhookEndpoint.objects.create(service=service, webhook_url=url, **values)

    return make
