"""Runners that validate inside headless Chromium (``--browser chromium``).

- ``ChromiumTfjsRunner``: a TF.js model on ``webgl`` (SwiftShader in headless), ``wasm`` or ``cpu``;
- ``ChromiumOrtRunner``: an ONNX model in onnxruntime-web's wasm execution provider, after the same
  kernel preflight as under Node (web_kernels.py), probed in the page itself.

Feeds are narrowed as for the Node runners (TF.js: int64 -> int32, recorded in ``dtype_changes``;
onnxruntime-web: the model's declared dtypes). After loading, ``tolerance`` is what the backend's
float precision adds (WebGL that renders at 16 bits: fp16-class), and ``notes`` say where the model
ran and at what precision; validation loosens its tolerance by the one and reports the others.

Stdlib at import time; numpy and onnx are imported when a runner is used.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..core import Artifact, Runner, Tolerance
from ..errors import ConversionError, InputError, UnsupportedOpError
from ..formats.tfjs.runner import TfjsRunner
from .session import BrowserSession

TFJS_BACKENDS = ("webgl", "wasm", "cpu")
#: what a backend that computes in float16 may add (as the fp16 pass declares for ONNX)
FP16_CLASS = Tolerance(atol=1e-2, rtol=1e-2, min_cosine=0.999)


def precision_text(p: Mapping[str, Any]) -> str:
    """``WebGL 2 (SwiftShader), float32 render targets, highp 23-bit mantissa: 32-bit`` from the page's report."""
    if p.get("backend") != "webgl":
        return f"{p.get('backend')}: 32-bit float"
    render = "float32" if p.get("render_float32") else "float16"
    where = f" ({p['renderer']})" if p.get("renderer") else ""
    return (f"WebGL {p.get('webgl_version')}{where}, {render} render targets, highp {p.get('highp_bits')}-bit "
            f"mantissa{', F16 textures forced' if p.get('force_f16') else ''}: {p.get('float_bits')}-bit")


class _Page(Runner):
    kind = "tfjs"
    backend = "wasm"

    def __init__(self, artifact: Artifact) -> None:
        super().__init__(artifact)
        self.info: dict[str, Any] = {}
        self.last_infer_ms: dict[str, float] = {}
        self.start_seconds: float | None = None
        self._page: BrowserSession | None = None

    @property
    def runtime(self) -> str:
        return f"headless Chromium, {'TF.js ' + self.backend if self.kind == 'tfjs' else 'onnxruntime-web wasm'}"

    @property
    def tolerance(self) -> Tolerance | None:
        """What the backend's precision adds to the stages' tolerance (None: nothing)."""
        return FP16_CLASS if self.info.get("precision", {}).get("float_bits") == 16 else None

    @property
    def notes(self) -> list[str]:
        p = self.info.get("precision", {})
        ua = self.info.get("user_agent", "")
        browser = next((w for w in ua.split() if w.startswith(("HeadlessChrome/", "Chrome/"))), "Chromium")
        lib = f"TF.js {self.info.get('tfjs')}" if self.kind == "tfjs" else f"onnxruntime-web {self.info.get('ort')}"
        text = f"ran in headless {browser.replace('HeadlessChrome', 'Chromium')} ({lib}, {self.info.get('backend')} " \
               f"backend; {precision_text(p)})"
        if self.tolerance is not None:
            text += f"; tolerance widened to atol {FP16_CLASS.atol}, rtol {FP16_CLASS.rtol} for 16-bit float"
        return [text]

    def _open(self, model_dir: Path, load: Mapping[str, Any], before: Any = None) -> None:
        import time

        t0 = time.perf_counter()
        self._page = BrowserSession(self.kind, self.backend, model_dir).__enter__()
        try:
            if before is not None:
                before(self._page)
            self._page.send({**load, "url": self._page.model_url(str(load["url"]))})
            header, _ = self._page.read()
            if header.get("type") != "ready":
                raise self._error(header)
        except BaseException:
            self.__exit__()
            raise
        self.info = header
        self.start_seconds = time.perf_counter() - t0

    def __exit__(self, *exc: object) -> None:
        page, self._page = self._page, None
        if page is not None:
            page.close()

    def _exchange(self, specs: list[dict[str, Any]], buffers: list[Any]) -> dict[str, Any]:
        import numpy as np

        if self._page is None:
            raise RuntimeError(f"{type(self).__name__}.infer() outside `with`")
        self._page.send({"type": "infer", "inputs": specs}, buffers)
        reply, payload = self._page.read(lambda h: h.get("outputs", []) if h.get("type") == "result" else [])
        if reply.get("type") != "result":
            raise self._error(reply)
        self.last_infer_ms = reply.get("ms", {})
        return {s["name"]: np.frombuffer(b, dtype=s["dtype"]).reshape(s["shape"]) for s, b in zip(reply["outputs"], payload)}

    def _error(self, header: Mapping[str, Any]) -> Exception:
        import re

        msg = str(header.get("error", header))
        if m := re.search(r"Kernel '([^']+)' not registered for backend '([^']+)'", msg):
            return UnsupportedOpError(f"the TF.js {m.group(2)} backend in Chromium", [m.group(1)],
                                      hint="try another backend (--tfjs-backend webgl|wasm|cpu)")
        if m := re.search(r"Unknown op '([^']+)'", msg):
            return UnsupportedOpError("TF.js", [m.group(1)])
        if header.get("kind") == "input":
            return InputError(f"{self.runtime} rejected the feeds: {msg}")
        if header.get("kind") == "load" and self.kind == "tfjs":  # as TfjsRunner: a model.json TF.js cannot read
            return InputError(f"{self.runtime} could not load {self.artifact.label}: {msg}")
        if header.get("kind") == "protocol":
            return RuntimeError(f"browser runner protocol error (a convertkit bug): {msg}")
        doing = "load" if header.get("kind") == "load" else "run"
        return ConversionError(f"{self.runtime} failed to {doing} {self.artifact.label}: {msg}")


class ChromiumTfjsRunner(_Page):
    """A TF.js model (directory with model.json) in headless Chromium on ``backend``."""

    def __init__(self, artifact: Artifact, backend: str = "webgl") -> None:
        super().__init__(artifact)
        if backend not in TFJS_BACKENDS:
            raise InputError(f"unknown TF.js backend '{backend}' in the browser", hint=f"use one of: {', '.join(TFJS_BACKENDS)}")
        self.backend = backend
        self._narrow = TfjsRunner(artifact)  # its model_dir and int64 -> int32 narrowing, no Node started

    @property
    def dtype_changes(self) -> tuple[Any, ...]:
        return self._narrow.dtype_changes

    def __enter__(self) -> ChromiumTfjsRunner:
        model_dir = self._narrow.model_dir
        if not (model_dir / "model.json").is_file():
            raise InputError(f"no model.json in {model_dir}", hint="pass a TF.js model directory")
        self._open(model_dir, {"type": "load", "url": "model.json"})
        return self

    def infer(self, feeds: Mapping[str, Any]) -> dict[str, Any]:
        import numpy as np

        arrays = [(name, self._narrow._to_wire(name, np.asarray(v))) for name, v in feeds.items()]
        specs = [{"name": n, "dtype": a.dtype.name, "shape": list(a.shape), "byteLength": a.nbytes} for n, a in arrays]
        return self._exchange(specs, [a for _, a in arrays])


class ChromiumOrtRunner(_Page):
    """An ONNX model in onnxruntime-web (wasm) in headless Chromium."""

    kind = "onnx"
    backend = "wasm"

    def __init__(self, artifact: Artifact) -> None:
        super().__init__(artifact)
        self.preflight: Any = None

    def __enter__(self) -> ChromiumOrtRunner:
        from ..formats.onnx import load_proto, model_path
        from ..formats.onnx.web_runner import RUNTIME, _external_data, version
        from ..formats.onnx.web_kernels import preflight

        if self.artifact.path is None:
            raise InputError("an ONNX model must be on disk to run in a browser", hint="save it first")
        path = model_path(Path(self.artifact.path))
        model = load_proto(path, weights=False)

        def check(page: BrowserSession) -> None:  # the kernel preflight, probed in the page
            self.preflight = preflight(model, page, version())
            if self.preflight.missing:
                raise UnsupportedOpError(f"{RUNTIME} in Chromium", self.preflight.missing,
                                         hint="these ops have no kernel in onnxruntime-web's wasm build")

        extra = [{"path": e["path"], "url": f"/model/{e['path']}"} for e in _external_data(model, path)]
        self._open(path.parent, {"type": "load", "url": path.name, "external_data": extra}, before=check)
        return self

    def infer(self, feeds: Mapping[str, Any]) -> dict[str, Any]:
        import numpy as np

        from ..formats.onnx.web_runner import WIRE

        declared = {i["name"]: i.get("dtype") for i in self.info.get("inputs", [])}
        specs, buffers = [], []
        for name, value in feeds.items():
            arr = np.asarray(value)
            if declared.get(name) in WIRE and arr.dtype.name != declared[name]:
                arr = arr.astype(declared[name])
            if arr.dtype.name not in WIRE:
                raise InputError(f"input '{name}' has dtype {arr.dtype.name}; onnxruntime-web takes {', '.join(WIRE)}")
            arr = np.asarray(arr, order="C")
            specs.append({"name": name, "dtype": arr.dtype.name, "shape": list(arr.shape), "byteLength": arr.nbytes})
            buffers.append(arr)
        return self._exchange(specs, buffers)
