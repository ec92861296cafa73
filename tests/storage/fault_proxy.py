"""An HTTP proxy in front of a real S3 server (moto) that injects faults on a schedule
(the storage suite's throttling, the fault suite's outages).

Each request the schedule picks (by method and path) meets the next fault of its pattern:

- ``"500"`` / ``"503"`` / ``"429"``: an error answer (InternalError / SlowDown); the request
  goes no further;
- ``"reset"``: the connection is reset without an answer; the request goes no further;
- ``"truncate"``: forwarded; the answer's headers promise the whole body, half of it comes,
  then the connection is reset;
- ``"lost"``: forwarded and done by the server, but the answer never comes (a reset): the
  client cannot tell whether it happened;
- ``None``: forwarded as it is.

Everything else is forwarded byte for byte.
"""

from __future__ import annotations

import http.client
import socket
import struct
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

ERRORS = {
    "500": b"<Error><Code>InternalError</Code><Message>injected</Message></Error>",
    "503": b"<Error><Code>SlowDown</Code><Message>injected</Message></Error>",
    "429": b"<Error><Code>SlowDown</Code><Message>injected</Message></Error>",
}

#: picks the requests a pattern applies to: (method, path with query) -> bool
Selector = Callable[[str, str], bool]


def everything(method: str, path: str) -> bool:
    return True


def uploads(method: str, path: str) -> bool:
    """The requests that write an object (single PUTs, parts, completions)."""
    return method in ("PUT", "POST")


def downloads(method: str, path: str) -> bool:
    return method == "GET" and "list-type" not in path and "uploads" not in path


class FaultProxy:
    def __init__(self, upstream: str) -> None:
        target = urlsplit(upstream)
        self.upstream = (target.hostname or "127.0.0.1", target.port or 80)
        self.lock = threading.Lock()
        self.injected: Counter[str] = Counter()
        self.forwarded = 0
        self._select: Selector = lambda method, path: False
        self._pattern: Sequence[str | None] = ()
        self._seen = 0
        self._remaining = 0
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.endpoint_url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FaultProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def inject(self, select: Selector, pattern: Sequence[str | None], limit: int = 10**9) -> None:
        """From now on, the requests ``select`` picks meet ``pattern`` in turn (repeated),
        until ``limit`` faults were injected."""
        with self.lock:
            self._select, self._pattern, self._seen, self._remaining = select, pattern, 0, limit

    def heal(self) -> None:
        self.inject(lambda method, path: False, ())

    def _fault(self, method: str, path: str) -> str | None:
        with self.lock:
            if not self._pattern or not self._select(method, path) or self._remaining <= 0:
                self.forwarded += 1
                return None
            fault = self._pattern[self._seen % len(self._pattern)]
            self._seen += 1
            if fault is None:
                self.forwarded += 1
            else:
                self.injected[fault] += 1
                self._remaining -= 1
            return fault

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                return

            def _reset(self) -> None:
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
                self.close_connection = True

            def _relay(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                fault = proxy._fault(self.command, self.path)
                if fault in ERRORS:
                    answer = ERRORS[str(fault)]
                    self.send_response(int(str(fault)))
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(answer)))
                    self.end_headers()
                    self.wfile.write(answer)
                    return
                if fault == "reset":
                    self._reset()
                    return
                conn = http.client.HTTPConnection(*proxy.upstream, timeout=60)
                headers = dict(self.headers.items())  # Host included: it is signed
                conn.request(self.command, self.path, body=body or None, headers=headers)
                response = conn.getresponse()
                data = response.read()
                conn.close()
                if fault == "lost":
                    self._reset()
                    return
                self.send_response(response.status)
                head = self.command == "HEAD"
                skip = {"transfer-encoding", "connection"} | (set() if head else {"content-length"})
                for key, value in response.getheaders():
                    if key.lower() not in skip:
                        self.send_header(key, value)
                if not head:
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if fault == "truncate":
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    self._reset()
                    return
                self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _relay

        return Handler
