"""A loopback HTTP server for tests: records each request and answers with a configurable reply."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class RecordedRequest:
    """One request the server received; header names are lower-cased."""

    method: str
    path: str
    headers: dict[str, str]
    raw: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.raw)


class LoopbackHTTPServer:
    """A ``ThreadingHTTPServer`` on 127.0.0.1, port 0, served from a daemon thread.

    Use as a context manager; ``reply(status, body)`` sets what every later request gets (a dict or
    list is sent as JSON, a string as plain text) and ``requests`` lists what arrived.
    """

    def __init__(self, status: int = 200, body: Any = None) -> None:
        self.requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self.reply(status, {} if body is None else body)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def reply(self, status: int, body: Any) -> None:
        with self._lock:
            self._status, self._body = status, body

    def start(self) -> LoopbackHTTPServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> LoopbackHTTPServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _record_and_answer(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        headers = {name.lower(): value for name, value in handler.headers.items()}
        with self._lock:
            self.requests.append(RecordedRequest(handler.command, handler.path, headers, raw))
            status, body = self._status, self._body
        if isinstance(body, str):
            data, content_type = body.encode(), "text/plain; charset=utf-8"
        else:
            data, content_type = json.dumps(body).encode(), "application/json"
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                server._record_and_answer(self)

            def do_GET(self) -> None:
                server._record_and_answer(self)

            def do_PUT(self) -> None:
                server._record_and_answer(self)

            def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
                pass

        return Handler
