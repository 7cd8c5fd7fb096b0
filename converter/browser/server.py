"""A local HTTP server on 127.0.0.1 for the runner page, and the frame channel to it.

Routes (GET unless said):

- ``/npm/...``    the npm packages' files (node_modules), only those ``NPM_PACKAGES`` names;
- ``/ck/...``     the runner page and its modules (page/);
- ``/node/...``   ort_web_core.mjs, the Node runners' onnxruntime-web code that runs in a page too;
- ``/model/...``  the artifact's directory (model.json and shards, or model.onnx and its data);
- ``/ck/next``    the next request frame for the page (long poll: 204 after ``POLL_S`` without one);
- ``/ck/reply``   POST: the page's reply frame.

Frames are nodeproc.py's (u32 LE header length, JSON header, payload): the page speaks the protocol
of the Node runners over HTTP instead of stdin/stdout, so Python's side is the same. Python's
http.server rather than a framework: nothing here needs more, and it costs no dependency.
"""

from __future__ import annotations

import http.server
import queue
import socket
import threading
import urllib.parse
from pathlib import Path
from typing import Any

#: npm packages the page may load (their browser builds and .wasm files)
NPM_PACKAGES = ("@tensorflow/tfjs", "@tensorflow/tfjs-backend-wasm", "onnxruntime-web")
#: the Node runners' modules that run in a page too (served under /node/)
NODE_FILES = ("ort_web_core.mjs",)
#: seconds a /ck/next request waits for a frame before answering 204 (the page asks again)
POLL_S = 20.0
_TYPES = {".mjs": "text/javascript", ".js": "text/javascript", ".wasm": "application/wasm",
          ".json": "application/json", ".html": "text/html; charset=utf-8", ".onnx": "application/octet-stream",
          ".bin": "application/octet-stream", ".map": "application/json"}


class PageServer:
    """``roots`` maps a URL prefix (``/model/``) to a directory; frames go through two queues."""

    def __init__(self, roots: dict[str, Path]) -> None:
        self.roots = {prefix: Path(d).resolve() for prefix, d in roots.items()}
        self.requests: queue.Queue[bytes] = queue.Queue()
        self.replies: queue.Queue[bytes] = queue.Queue()
        self.closed = threading.Event()
        handler = type("Handler", (_Handler,), {"server_state": self})
        self.httpd = _Server(("127.0.0.1", 0), handler)
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
        self._thread.start()

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_port}"

    def file_for(self, url_path: str) -> Path | None:
        """The file a GET of ``url_path`` serves, or None (outside every root, or not allowed)."""
        path = urllib.parse.unquote(url_path.split("?", 1)[0])
        for prefix, root in self.roots.items():
            if not path.startswith(prefix):
                continue
            rel = path[len(prefix):]
            if prefix == "/npm/" and not any(rel.startswith(p + "/") for p in NPM_PACKAGES):
                return None
            if prefix == "/node/" and rel not in NODE_FILES:
                return None
            target = (root / rel).resolve()
            if target.is_file() and (target == root or root in target.parents or prefix == "/npm/"):
                return target  # /npm/: node_modules may hold symlinks (npm link, a shared store)
        return None

    def close(self) -> None:
        self.closed.set()
        self.httpd.shutdown()
        self.httpd.server_close()


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A page that went away mid-answer (the browser closed) is not an error worth a traceback."""
        import sys

        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


class _Handler(http.server.BaseHTTPRequestHandler):
    server_state: PageServer
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:  # the page's requests are not the user's business
        pass

    def setup(self) -> None:
        super().setup()
        # headers and body go out as separate writes: without this, Nagle's algorithm and the page's
        # delayed ACK held each small frame ~40 ms (the CNN's round trip was ~90 ms for a 1 ms run)
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        state = self.server_state
        if self.path.startswith("/ck/next"):
            try:
                body = state.requests.get(timeout=POLL_S)
            except queue.Empty:
                return self._send(204, b"")
            return self._send(200, body, "application/octet-stream")
        target = state.file_for(self.path)
        if target is None:
            return self._send(404, f"not found: {self.path}".encode(), "text/plain")
        self._send(200, target.read_bytes(), _TYPES.get(target.suffix, "application/octet-stream"))

    def do_POST(self) -> None:  # noqa: N802
        if not self.path.startswith("/ck/reply"):
            return self._send(404, b"", "text/plain")
        n = int(self.headers.get("Content-Length", "0"))
        self.server_state.replies.put(self.rfile.read(n))
        self._send(204, b"")

    def _send(self, status: int, body: bytes, ctype: str | None = None) -> None:
        self.send_response(status)
        if ctype:
            self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if body:
            self.wfile.write(body)
