"""A loopback HTTP file server the tests start: serves given bytes by path, and can hold a response until released."""

from __future__ import annotations

import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any


class _Server(ThreadingHTTPServer):
    """Serves each request in a daemon thread; a client that hangs up (a fetch the service abandoned, its job
    cancelled or its deadline past) is expected, not an error to print over another test's output."""

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class FileServer:
    """Serves `files` (path -> bytes) on 127.0.0.1:0; a path in `held` answers only once `release()` is called."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.held: set[str] = set()
        self.requests: list[str] = []
        self.started = threading.Event()
        """Set when a held request has arrived."""
        self._release = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                server.requests.append(self.path)
                if path in server.held:
                    server.started.set()
                    server._release.wait(timeout=60)
                body = server.files.get(path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                """Quiet."""

        self._httpd = _Server(("127.0.0.1", 0), Handler)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        """The URL of a path on this server."""
        return f"http://127.0.0.1:{self.port}{path}"

    def settings(self) -> dict[str, object]:
        """Server settings that open this server, and only it, to URI fetching."""
        return {"uri_allowlist": "127.0.0.1/32", "uri_allowed_ports": str(self.port)}

    def release(self) -> None:
        """Let held requests answer."""
        self._release.set()

    def hold(self) -> None:
        """Hold requests for held paths again, until the next release()."""
        self._release.clear()
        self.started.clear()

    def __enter__(self) -> FileServer:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.release()
        self._httpd.shutdown()
        self._httpd.server_close()
