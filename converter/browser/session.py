"""One runner page open in headless Chromium, spoken to in frames: ``send``/``read`` as
nodeproc.NodeProcess offers them, so that code written for a Node runner (web_kernels.preflight)
talks to the page unchanged.

    with BrowserSession("tfjs", "webgl", model_dir) as page:
        page.send({"type": "load", "url": page.model_url("model.json")})
        header, _ = page.read()

Stdlib only.
"""

from __future__ import annotations

import json
import os
import queue
import struct
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import ConversionError, MissingDependencyError
from ..formats import nodeproc
from . import CHROMIUM_HINT, chromium
from .server import NPM_PACKAGES, PageServer

HERE = Path(__file__).resolve().parent
DRIVER = HERE / "driver.mjs"
PAGE_DIR = HERE / "page"
#: set to 1: TF.js's WebGL computes in float16 textures (WEBGL_FORCE_F16_TEXTURES), as on devices whose
#: WebGL renders at 16 bits; the precision the page reports, and so the tolerance, follow
F16_ENV = "CONVERTKIT_WEBGL_F16"
#: seconds one request may take in the page (a MobileNet's first webgl run compiles its shaders)
REQUEST_TIMEOUT_S = 600.0


def modules_dir() -> Path:
    override = os.environ.get("CONVERTKIT_NODE_MODULES")
    return Path(override).resolve() if override else nodeproc.NODE_DIR / "node_modules"


def check_packages(kind: str, backend: str) -> None:
    """The npm packages the page needs for ``kind`` (tfjs, onnx; driver: playwright-core alone)."""
    need = ["playwright-core"] + {"onnx": ["onnxruntime-web"], "tfjs": ["@tensorflow/tfjs"]}.get(kind, [])
    need += ["@tensorflow/tfjs-backend-wasm"] if kind == "tfjs" and backend == "wasm" else []
    missing = [p for p in need if not (modules_dir() / p / "package.json").is_file()]
    if missing:
        raise MissingDependencyError(f"npm package(s) {', '.join(missing)} not found in {modules_dir()}",
                                     hint=nodeproc.INSTALL_HINT)


class BrowserSession:
    """The page ``kind`` (tfjs or onnx) on ``backend``, serving ``model_dir`` under /model/."""

    def __init__(self, kind: str, backend: str, model_dir: Path) -> None:
        assert set(NPM_PACKAGES) >= {"onnxruntime-web", "@tensorflow/tfjs"}
        self.kind, self.backend, self.model_dir = kind, backend, Path(model_dir)
        self.label = f"headless Chromium ({'TF.js ' + backend if kind == 'tfjs' else 'onnxruntime-web wasm'})"
        self.server: PageServer | None = None
        self.driver: nodeproc.NodeProcess | None = None
        self.start_seconds: float | None = None

    def __enter__(self) -> BrowserSession:
        exe = chromium()
        check_packages(self.kind, self.backend)
        node = nodeproc.node_executable("the browser runner's driver (playwright-core)")
        t0 = time.perf_counter()
        self.server = PageServer({"/npm/": modules_dir(), "/ck/": PAGE_DIR, "/node/": nodeproc.NODE_DIR,
                                  "/model/": self.model_dir})
        url = f"{self.server.origin}/ck/runner.html?kind={self.kind}&backend={self.backend}"
        if os.environ.get(F16_ENV) == "1":
            url += "&f16=1"

        env = {**os.environ, "CONVERTKIT_CHROMIUM": exe}
        if env.get("CONVERTKIT_NODE_MODULES"):
            env["CONVERTKIT_NODE_MODULES"] = str(modules_dir())
        try:
            self.driver = nodeproc.NodeProcess([node, str(DRIVER), url], env, label=self.label,
                                               crash_hint="the page's errors are above; run with CONVERTKIT_DEBUG=1")
        except BaseException:
            self.close()
            raise
        self.start_seconds = time.perf_counter() - t0
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def model_url(self, rel: str) -> str:
        return f"{self.server.origin if self.server else ''}/model/{rel}"

    # -- frames, as nodeproc.NodeProcess -------------------------------------------------------

    def send(self, header: Mapping[str, Any], buffers: Iterable[Any] = ()) -> None:
        assert self.server is not None
        data = json.dumps(header).encode()
        parts = [struct.pack("<I", len(data)), data] + [bytes(memoryview(b).cast("B")) for b in buffers
                                                         if memoryview(b).nbytes]
        self.server.requests.put(b"".join(parts))

    def read(self, payload_key: Callable[[Mapping[str, Any]], Sequence[Mapping[str, Any]]] = lambda h: ()
             ) -> tuple[dict[str, Any], list[bytearray]]:
        body = self._next_reply()
        n = struct.unpack_from("<I", body, 0)[0]
        header = json.loads(body[4:4 + n])
        out, at = [], 4 + n
        for item in payload_key(header):
            size = int(item["byteLength"])
            out.append(bytearray(body[at:at + size]))
            at += size
        return header, out

    def _next_reply(self) -> bytes:
        assert self.server is not None and self.driver is not None
        deadline = time.monotonic() + REQUEST_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                return self.server.replies.get(timeout=0.25)
            except queue.Empty:
                if not self.driver.alive():
                    raise self.crashed() from None
        raise ConversionError(f"{self.label} gave no answer in {REQUEST_TIMEOUT_S:.0f} s: {self.page_log()}")

    def page_log(self) -> str:
        lines = [s for s in (self.driver.stderr if self.driver else ()) if not s.startswith("ready")]
        return " | ".join(lines[-5:]) or "nothing logged"

    def alive(self) -> bool:
        return self.driver is not None and self.driver.alive()

    def crashed(self) -> ConversionError | MissingDependencyError:
        """Chromium that never opened the page is the machine's problem (exit 2); one that died after
        (a page out of memory on a big model) is the run's (exit 3)."""
        rc, _ = self.driver.exit_status() if self.driver else (None, "")
        if not any(line.startswith("ready") for line in (self.driver.stderr if self.driver else ())):
            return MissingDependencyError(f"Chromium ({os.environ.get('CONVERTKIT_CHROMIUM') or 'chromium'}) did not "
                                          f"open convertkit's page: {self.page_log()}", hint=CHROMIUM_HINT)
        return ConversionError(f"{self.label} stopped (driver exit status {rc}): {self.page_log()}",
                               hint="check that Chromium starts: `convertkit doctor --browser`")

    def close(self) -> None:
        if self.server is not None:
            self.server.requests.put(struct.pack("<I", 16) + b'{"type":"close"}')
        if self.driver is not None:
            self.driver.stop()
            self.driver = None
        if self.server is not None:
            self.server.close()
            self.server = None
