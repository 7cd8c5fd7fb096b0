"""A long-lived Node.js process that speaks convertkit's frame protocol (tfjs/node/wire.mjs) on its
stdin/stdout: the TF.js runner (tfjs/runner.py) and the onnxruntime-web runner (onnx/web_runner.py)
both talk to one.

    frame = u32 little-endian N | N bytes of UTF-8 JSON header | payload (the header's items'
            ``byteLength`` bytes, in order)

Stdlib only (numpy arrays are written through their buffers, never imported here).
"""

from __future__ import annotations

import collections
import json
import shutil
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import ConversionError, MissingDependencyError

#: where the npm packages and the .mjs runners live (one npm package for every JS runtime)
NODE_DIR = Path(__file__).resolve().parent / "tfjs" / "node"
INSTALL_HINT = "run `make install` (npm ci --prefix converter/formats/tfjs/node)"


def node_executable(what: str) -> str:
    """The ``node`` on PATH, or MissingDependencyError saying what needs it."""
    node = shutil.which("node")
    if node is None:
        raise MissingDependencyError(
            f"Node.js (`node`) is not on PATH; {what} run in Node",
            hint="install Node.js >= 18 (e.g. `apt-get install nodejs` or https://nodejs.org), then " + INSTALL_HINT)
    return node


class NodeProcess:
    """``node SCRIPT ARGS...`` with pipes; its stderr is drained in a thread (runtimes log there,
    and a full pipe would block Node). ``crash_hint`` says how to see more when it dies mid-frame."""

    def __init__(self, argv: Sequence[str], env: Mapping[str, str], *, label: str, crash_hint: str) -> None:
        self.label, self.crash_hint = label, crash_hint
        self.started = time.monotonic()
        self.proc = subprocess.Popen(list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=dict(env))
        self.stderr: collections.deque[str] = collections.deque(maxlen=40)
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip()
            if line:
                self.stderr.append(line)
        self.proc.stderr.close()

    # -- frames -------------------------------------------------------------------------------

    def send(self, header: Mapping[str, Any], buffers: Iterable[Any] = ()) -> None:
        """One request frame: the JSON header, then each buffer's bytes (numpy arrays: C-ordered)."""
        data = json.dumps(header).encode()
        stdin = self.proc.stdin
        assert stdin is not None
        try:
            stdin.write(struct.pack("<I", len(data)) + data)
            for buf in buffers:
                view = memoryview(buf)
                if view.nbytes:  # (a view with a 0 in its shape cannot be cast)
                    stdin.write(view.cast("B"))  # the buffer's own bytes, no copy
            stdin.flush()
        except BrokenPipeError:
            pass  # Node died or rejected the stream: its error frame or stderr says why, when read

    def read(self, payload_key: Callable[[Mapping[str, Any]], Sequence[Mapping[str, Any]]] = lambda h: ()
             ) -> tuple[dict[str, Any], list[bytearray]]:
        """One frame from Node: its JSON header and the raw bytes of the items ``payload_key(header)``
        lists (each with a ``byteLength``)."""
        n = struct.unpack("<I", self._read_exact(4))[0]
        header = json.loads(self._read_exact(n))
        return header, [self._read_exact(int(t["byteLength"])) for t in payload_key(header)]

    def _read_exact(self, n: int) -> bytearray:
        stdout = self.proc.stdout
        assert stdout is not None
        buf = bytearray(n)  # writable, so arrays made from it are too
        view, got = memoryview(buf), 0
        while got < n:
            k = stdout.readinto(view[got:])
            if not k:
                raise self.crashed()
            got += k
        return buf

    def crashed(self) -> ConversionError:
        rc, tail = self.exit_status()
        return ConversionError(f"{self.label} (Node) exited with status {rc} mid-frame: {tail}", hint=self.crash_hint)

    # -- life ---------------------------------------------------------------------------------

    def alive(self) -> bool:
        return self.proc.poll() is None

    def exit_status(self) -> tuple[int | None, str]:
        """(exit status or None, the last lines of stderr), after Node stopped mid-frame."""
        try:
            rc = self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            rc = None
        self._thread.join(timeout=2)
        return rc, " | ".join(list(self.stderr)[-5:]) or "no output on stderr"

    def stop(self) -> None:
        try:
            self.proc.stdin.close()  # type: ignore[union-attr]  # Node ends when stdin closes
        except OSError:
            pass  # Node already gone
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()  # type: ignore[union-attr]
        self._thread.join(timeout=5)
