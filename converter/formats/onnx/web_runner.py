"""Runs an ONNX model in onnxruntime-web (wasm execution provider) under Node: where a JS app runs it.

``OrtWebRunner`` starts ``node ort_web.mjs`` (tfjs/node/, beside the other npm-backed runners;
the ONNX work itself is ort_web_core.mjs, which runs in a browser too), runs the kernel preflight
(web_kernels.py: every op the wasm build lacks, named at once, UnsupportedOpError: exit 3), loads
the model and exchanges tensor frames with Node as the TF.js runner does (nodeproc.py). Unlike
TF.js, onnxruntime-web holds int64 (BigInt64Array), float64, float16 (as its bits), int8/uint8 and
bool, so feeds go as the model declares them: nothing is narrowed.

Usage::

    with OrtWebRunner(artifact) as r:
        outputs = r.infer({"x": np.zeros((1, 8), np.float32)})
    r.info["ort"], r.preflight.missing

Stdlib at import time; onnx and numpy are imported when a runner is used.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ...core import Artifact, Runner
from ...errors import ConversionError, InputError, MissingDependencyError, UnsupportedOpError
from .. import nodeproc
from . import model_path
from .web_kernels import Preflight, preflight

SCRIPT = nodeproc.NODE_DIR / "ort_web.mjs"
PACKAGE = "onnxruntime-web"
RUNTIME = "onnxruntime-web (wasm)"
#: numpy dtype name -> the wire dtype (ort_web_core.TYPED); numpy reads each back with the same name
WIRE = ("float32", "float64", "float16", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64",
        "uint64", "bool")


def modules_dir() -> Path:
    override = os.environ.get("CONVERTKIT_NODE_MODULES")
    return Path(override).resolve() if override else nodeproc.NODE_DIR / "node_modules"


def version() -> str:
    """The installed onnxruntime-web version (from its package.json; Node is not started)."""
    pkg = modules_dir() / PACKAGE / "package.json"
    try:
        return str(json.loads(pkg.read_text())["version"])
    except (OSError, ValueError, KeyError):
        raise MissingDependencyError(f"npm package {PACKAGE} not found in {modules_dir()}",
                                     hint=nodeproc.INSTALL_HINT) from None


def node_env() -> dict[str, str]:
    env = dict(os.environ)
    if env.get("CONVERTKIT_NODE_MODULES"):
        env["CONVERTKIT_NODE_MODULES"] = str(modules_dir())
    return env


def start_node(*, warm: bool = False) -> nodeproc.NodeProcess:
    """``node ort_web.mjs``: onnxruntime-web imported (``warm``: its wasm module compiled too),
    waiting for requests."""
    version()  # the package is there, or a clear MissingDependencyError
    argv = [nodeproc.node_executable("onnxruntime-web models"), str(SCRIPT), "--idle-exit", str(PRESTART_IDLE_S)]
    return nodeproc.NodeProcess(argv + (["--warm"] if warm else []), node_env(), label="the onnxruntime-web runner",
                                crash_hint="run `node converter/formats/tfjs/node/ort_web.mjs` by hand to see more")


#: a Node started ahead of need (prestart), by where its npm packages come from; taken by the next runner
_PRESTARTED: dict[str, nodeproc.NodeProcess] = {}
#: a prestarted Node that no runner takes within this many seconds exits by itself
PRESTART_IDLE_S = 600


def prestart() -> bool:
    """Start Node with onnxruntime-web and compile its wasm module now (about 1 s, run while Python
    converts), so that the next OrtWebRunner only probes and loads its model. Best effort: a missing
    Node or npm package is left for the runner to report. True when one is waiting."""
    key = os.environ.get("CONVERTKIT_NODE_MODULES", "")
    node = _PRESTARTED.get(key)
    if node is not None and node.alive():
        return True
    try:
        _PRESTARTED[key] = start_node(warm=True)
    except (MissingDependencyError, OSError):
        return False
    if len(_PRESTARTED) == 1:
        atexit.register(_stop_prestarted)
    return True


def _take_prestarted() -> nodeproc.NodeProcess | None:
    node = _PRESTARTED.pop(os.environ.get("CONVERTKIT_NODE_MODULES", ""), None)
    if node is not None and (not node.alive() or time.monotonic() - node.started > PRESTART_IDLE_S - 30):
        node.stop()  # died waiting (its idle exit), or about to: start a fresh one instead
        return None
    return node


def _stop_prestarted() -> None:
    while _PRESTARTED:
        _PRESTARTED.popitem()[1].stop()


class OrtWebRunner(Runner):
    """Runs ``artifact`` (model.onnx, or a directory holding it) in onnxruntime-web on Node."""

    runtime = RUNTIME

    def __init__(self, artifact: Artifact) -> None:
        super().__init__(artifact)
        self.info: dict[str, Any] = {}  # Node's ready message: ort version, node, inputs, load_ms
        self.preflight: Preflight | None = None
        self.start_seconds: float | None = None
        self.last_infer_ms: dict[str, float] = {}
        self._node: nodeproc.NodeProcess | None = None

    @property
    def notes(self) -> tuple[str, ...]:
        """For the report (parity.validate adds a runner's notes): what the kernel preflight checked."""
        p = self.preflight
        if p is None:
            return ()
        text = f"kernel preflight: all {p.checked} op signature(s) have a kernel in onnxruntime-web {p.version}'s wasm build"
        if p.unknown:
            text += f" ({len(p.unknown)} node(s) of types shape inference could not tell were not probed: " \
                    f"{', '.join(p.unknown[:5])}{', ...' if len(p.unknown) > 5 else ''})"
        return (text,)

    @property
    def path(self) -> Path:
        if self.artifact.path is None:
            raise InputError("an ONNX model must be on disk to run in onnxruntime-web", hint="save it first")
        return model_path(Path(self.artifact.path))

    def __enter__(self) -> OrtWebRunner:
        from . import load_proto

        t0 = time.perf_counter()
        model = load_proto(self.path, weights=False)  # types suffice; external data keeps its names
        self._node = _take_prestarted() or start_node()
        try:
            self.preflight = preflight(model, self._node, version())
            if self.preflight.missing:
                raise UnsupportedOpError(
                    RUNTIME, self.preflight.missing,
                    hint="these ops have no kernel in onnxruntime-web's wasm build: re-export without them, or, for "
                         "-p quantize, use --onnx-runtime web so that the pass picks formats onnxruntime-web runs")
            self._node.send({"type": "load", "path": str(self.path), "external_data": _external_data(model, self.path)})
            header, _ = self._node.read()
            if header.get("type") != "ready":
                raise self._error(header, during="load")
        except BaseException:
            self._stop()
            raise
        self.start_seconds = time.perf_counter() - t0
        self.info = header
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop()

    def _stop(self) -> None:
        node, self._node = self._node, None
        if node is not None:
            node.stop()

    def infer(self, feeds: Mapping[str, Any]) -> dict[str, Any]:
        import numpy as np

        if self._node is None:
            raise RuntimeError("OrtWebRunner.infer() outside `with OrtWebRunner(...)`")
        declared = {i["name"]: i.get("dtype") for i in self.info.get("inputs", [])}
        specs, buffers = [], []
        for name, value in feeds.items():
            arr = np.asarray(value)
            want = declared.get(name)
            if want in WIRE and arr.dtype.name != want:
                arr = arr.astype(want)  # as OrtRunner does: the model's declared type
            if arr.dtype.name not in WIRE:
                raise InputError(f"input '{name}' has dtype {arr.dtype.name}; onnxruntime-web takes "
                                 f"{', '.join(WIRE)} (strings and bfloat16 do not travel)")
            arr = np.asarray(arr, order="C")
            specs.append({"name": name, "dtype": arr.dtype.name, "shape": list(arr.shape), "byteLength": arr.nbytes})
            buffers.append(arr)
        self._node.send({"type": "infer", "inputs": specs}, buffers)
        reply, payload = self._node.read(lambda h: h.get("outputs", []) if h.get("type") == "result" else [])
        if reply.get("type") != "result":
            raise self._error(reply, during="infer")
        self.last_infer_ms = reply.get("ms", {})
        return {spec["name"]: np.frombuffer(buf, dtype=spec["dtype"]).reshape(spec["shape"])
                for spec, buf in zip(reply["outputs"], payload)}

    def _error(self, header: Mapping[str, Any], during: str) -> Exception:
        msg = str(header.get("error", header))
        if m := re.search(r"Could not find an implementation for (\w+)", msg):
            return UnsupportedOpError(RUNTIME, [m.group(1)])
        if header.get("kind") == "input":
            inputs = ", ".join(f"{i['name']}{i.get('shape')} {i.get('dtype')}" for i in self.info.get("inputs", []))
            return InputError(f"{RUNTIME} rejected the feeds: {msg}", hint=f"the model's inputs: {inputs}")
        if header.get("kind") == "protocol":
            return RuntimeError(f"onnxruntime-web runner protocol error (a convertkit bug): {msg}")
        return ConversionError(f"{RUNTIME} failed to {'load' if during == 'load' else 'run'} {self.path}: {msg}")


def _external_data(model: Any, path: Path) -> list[dict[str, str]]:
    """The external-data files the model's initializers name: [{path (as in the model), file}]."""
    names = {e.value for t in model.graph.initializer for e in t.external_data if e.key == "location"}
    return [{"path": n, "file": str(path.parent / n)} for n in sorted(names)]


def probe(path: Path, feeds: Any) -> tuple[bool, str | None, list[dict[str, Any]]]:
    """(ok, why not, outputs per feed): ``path`` opened in onnxruntime-web and run on ``feeds``
    (a quantize pass's load test). A missing kernel, a load or a run failure is a reason, not a raise."""
    from . import FORMAT

    artifact = Artifact(FORMAT, Path(path), (), ())
    try:
        with OrtWebRunner(artifact) as runner:
            return True, None, [runner.infer(f) for f in feeds]
    except UnsupportedOpError as exc:
        return False, f"onnxruntime-web has no kernel for {', '.join(exc.ops)}", []
    except (ConversionError, InputError) as exc:
        return False, exc.message, []
