"""Runs a TF.js model (graph or layers format) in real TF.js, in one Node.js process.

``TfjsRunner`` starts ``node run_model.mjs - --backend wasm|cpu`` (or takes one that ``prestart``
started earlier), asks it to load the model in ``__enter__``, and exchanges length-prefixed binary
frames with it (the protocol is documented at
the top of ``node/run_model.mjs``). TF.js has no int64 or float64: such feeds are narrowed here,
and every narrowing is recorded in :attr:`TfjsRunner.dtype_changes` for the report.

Usage::

    with TfjsRunner(artifact, backend="wasm") as r:
        outputs = r.infer({"x": np.zeros((1, 8), np.float32)})
    r.dtype_changes  # e.g. (DtypeChange("ids", "int64", "int32"),)

Stdlib at import time; numpy is imported when a runner is used.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

from ...core import Artifact, Dim, Runner, TensorSpec
from ...errors import ConversionError, InputError, MissingDependencyError, UnsupportedOpError
from ..nodeproc import INSTALL_HINT, NODE_DIR, NodeProcess, node_executable

SCRIPT = NODE_DIR / "run_model.mjs"
BACKENDS = ("wasm", "cpu")

#: numpy dtype of each TF.js wire dtype
_WIRE = {"float32": "<f4", "int32": "<i4", "bool": "|b1"}
#: feed dtypes TF.js cannot hold -> the dtype sent instead
_NARROW = {"int64": "int32", "uint32": "int32", "int16": "int32", "int8": "int32", "uint16": "int32",
           "uint8": "int32", "float64": "float32", "float16": "float32"}
_INT32 = (-(2**31), 2**31 - 1)

_TF_DTYPES = {"DT_FLOAT": "float32", "DT_DOUBLE": "float64", "DT_HALF": "float16", "DT_INT32": "int32",
              "DT_INT64": "int64", "DT_INT16": "int16", "DT_INT8": "int8", "DT_UINT8": "uint8",
              "DT_UINT16": "uint16", "DT_UINT32": "uint32", "DT_BOOL": "bool", "DT_STRING": "string",
              "DT_COMPLEX64": "complex64"}


class DtypeChange(NamedTuple):
    """A feed sent to TF.js in a narrower dtype than it was given."""

    name: str
    from_dtype: str
    to_dtype: str

    def __str__(self) -> str:
        return f"{self.name}: {self.from_dtype} -> {self.to_dtype} (TF.js has no {self.from_dtype})"


class TfjsRunner(Runner):
    """Runs ``artifact`` (a directory with model.json, or the model.json file) in TF.js on Node."""

    def __init__(self, artifact: Artifact, backend: str = "wasm") -> None:
        super().__init__(artifact)
        if backend not in BACKENDS:
            raise InputError(f"unknown TF.js backend '{backend}'", hint=f"use one of: {', '.join(BACKENDS)}")
        self.backend = backend
        self.info: dict[str, Any] = {}  # Node's ready message: backend, tfjs/node versions, load_ms, ...
        self.start_seconds: float | None = None  # Node start + TF.js init + model load, wall clock
        self.last_infer_ms: dict[str, float] = {}  # Node's own timing of the last request
        self._changes: dict[str, DtypeChange] = {}
        self._node: NodeProcess | None = None

    # -- static description -------------------------------------------------------------------

    @property
    def model_dir(self) -> Path:
        if self.artifact.path is None:
            raise InputError("a TF.js model must be on disk to run in Node", hint="save it to a directory first")
        p = Path(self.artifact.path)
        return p.parent if p.name.endswith(".json") else p

    def input_specs(self) -> tuple[TensorSpec, ...]:
        """Inputs as model.json declares them (dtypes before TF.js narrowing: int64 stays int64)."""
        return read_specs(self.model_dir)[0]

    def output_specs(self) -> tuple[TensorSpec, ...]:
        return read_specs(self.model_dir)[1]

    @property
    def dtype_changes(self) -> tuple[DtypeChange, ...]:
        """Feeds narrowed so far (int64 -> int32, float64 -> float32), once per input name."""
        return tuple(self._changes.values())

    # -- process ------------------------------------------------------------------------------

    def __enter__(self) -> TfjsRunner:
        if not (self.model_dir / "model.json").is_file():
            raise InputError(f"no model.json in {self.model_dir}", hint="pass a TF.js model directory")
        t0 = time.perf_counter()
        self._node = _take_prestarted(self.backend) or _start_node(self.backend)
        try:
            self._node.send({"type": "load", "model_dir": str(self.model_dir)})
            header, _ = self._read_frame()
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

    # -- inference ----------------------------------------------------------------------------

    def infer(self, feeds: Mapping[str, Any]) -> dict[str, Any]:
        import numpy as np

        if self._node is None:
            raise RuntimeError("TfjsRunner.infer() outside `with TfjsRunner(...)`")
        specs, buffers = [], []
        for name, value in feeds.items():
            arr = self._to_wire(name, np.asarray(value))
            specs.append({"name": name, "dtype": arr.dtype.name, "shape": list(arr.shape), "byteLength": arr.nbytes})
            buffers.append(arr)
        self._node.send({"type": "infer", "inputs": specs}, buffers)
        reply, payload = self._read_frame()
        if reply.get("type") != "result":
            raise self._error(reply, during="infer")
        self.last_infer_ms = reply.get("ms", {})
        out: dict[str, Any] = {}
        for spec, buf in zip(reply["outputs"], payload):
            out[spec["name"]] = np.frombuffer(buf, dtype=_WIRE[spec["dtype"]]).reshape(spec["shape"])
        return out

    def _to_wire(self, name: str, arr: Any) -> Any:
        """``arr`` as C-ordered little-endian float32/int32/bool; records any narrowing."""
        import numpy as np

        src = arr.dtype.name
        dst = src if src in _WIRE else _NARROW.get(src)
        if dst is None:
            raise InputError(f"input '{name}' has dtype {src}; TF.js takes float32, int32 or bool")
        if dst == "int32" and src != "int32" and arr.size:
            lo, hi = int(arr.min()), int(arr.max())
            if lo < _INT32[0] or hi > _INT32[1]:
                raise InputError(f"input '{name}' ({src}) has values in [{lo}, {hi}], outside int32",
                                 hint="TF.js has no int64; feed values that fit in int32")
        if dst != src:
            self._changes.setdefault(name, DtypeChange(name, src, dst))
        return np.asarray(arr, dtype=_WIRE[dst], order="C")  # not ascontiguousarray: it makes 0-d 1-d

    # -- framing ------------------------------------------------------------------------------

    def _read_frame(self) -> tuple[dict[str, Any], list[bytearray]]:
        """One frame from Node: its JSON header and the raw buffers of the tensors it lists."""
        assert self._node is not None
        return self._node.read(lambda h: h.get("outputs", []) if h.get("type") == "result" else [])

    def _error(self, header: Mapping[str, Any], during: str) -> Exception:
        """The exception for an error frame from Node."""
        msg = str(header.get("error", header))
        kind = header.get("kind")
        where = f"TF.js ({self.backend} backend)"
        if m := re.search(r"Unknown op '([^']+)'", msg):
            return UnsupportedOpError("TF.js", [m.group(1)])
        if m := re.search(r"Kernel '([^']+)' not registered for backend '([^']+)'", msg):
            return UnsupportedOpError(f"the TF.js {m.group(2)} backend", [m.group(1)],
                                      hint="try the other backend (--backend cpu|wasm)")
        if "can not be cast to the dtype of the key" in msg and "int64" in msg:
            # tfjs-layers keeps an InputLayer's int64 dtype but cannot make an int64 tensor: no feed fits.
            return ConversionError(f"{where} cannot feed {self.model_dir}: {msg}",
                                   hint="TF.js has no int64: give the Keras model int32 inputs, or use the graph format")
        if kind == "load":
            return InputError(f"{where} could not load {self.model_dir}: {msg}")
        if kind == "input" or msg.startswith("Cannot compute the outputs"):  # the latter: a missing feed
            specs = ", ".join(f"{s.name}{s.shape_str()} {s.dtype}" for s in self.input_specs())
            return InputError(f"{where} rejected the feeds: {msg}", hint=f"the model's inputs: {specs}")
        if kind == "protocol":
            return RuntimeError(f"TF.js runner protocol error (a convertkit bug): {msg}")
        return ConversionError(f"{where} failed to run {self.model_dir} during {during}: {msg}")


def _start_node(backend: str) -> NodeProcess:
    """``node run_model.mjs - --backend B``: TF.js started, waiting for a load request."""
    argv = [node_executable("TF.js models"), str(SCRIPT), "-", "--backend", backend,
            "--idle-exit", str(PRESTART_IDLE_S)]
    return NodeProcess(argv, node_env(backend), label="the TF.js runner",
                       crash_hint="run the model with `node converter/formats/tfjs/node/run_model.mjs DIR` to see more")


#: Node processes started ahead of need, by _pool_key; one each, taken by the next TfjsRunner
_PRESTARTED: dict[tuple[str, ...], NodeProcess] = {}
#: a prestarted Node that no runner takes within this many seconds exits by itself (a long-lived
#: Python session that prestarted one and never ran a TF.js model holds no Node for long)
PRESTART_IDLE_S = 600


def _pool_key(backend: str) -> tuple[str, ...]:
    """What a started Node depends on: the backend and where its npm packages come from."""
    return (backend, os.environ.get("CONVERTKIT_NODE_MODULES", ""), os.environ.get("NODE_PATH", ""))


def prestart(backend: str = "wasm") -> bool:
    """Start Node with TF.js and its backend now (about 0.25 s of Node's start-up, run while Python
    converts), so that the next TfjsRunner on this backend only loads its model. Best effort: a
    missing Node or npm package is left for the runner to report. True when one is waiting."""
    if backend not in BACKENDS:
        return False
    key = _pool_key(backend)
    node = _PRESTARTED.get(key)
    if node is not None and node.alive():
        return True
    try:
        _PRESTARTED[key] = _start_node(backend)
    except (MissingDependencyError, OSError):
        return False
    if len(_PRESTARTED) == 1:
        atexit.register(_stop_prestarted)
    return True


def _take_prestarted(backend: str) -> NodeProcess | None:
    node = _PRESTARTED.pop(_pool_key(backend), None)
    # died waiting (killed, or its idle exit), or about to: start a fresh one instead
    if node is not None and (not node.alive() or time.monotonic() - node.started > PRESTART_IDLE_S - 30):
        node.stop()
        return None
    return node


def _stop_prestarted() -> None:
    while _PRESTARTED:
        _PRESTARTED.popitem()[1].stop()


def node_env(backend: str) -> dict[str, str]:
    """The environment for Node, after checking that the npm packages are installed."""
    env = dict(os.environ)
    override = env.get("CONVERTKIT_NODE_MODULES")
    modules = Path(override).resolve() if override else NODE_DIR / "node_modules"
    needed = ["@tensorflow/tfjs"] + (["@tensorflow/tfjs-backend-wasm"] if backend == "wasm" else [])
    missing = [pkg for pkg in needed if not (modules / pkg / "package.json").is_file()]
    if missing:
        where = "CONVERTKIT_NODE_MODULES" if override else "converter/formats/tfjs/node"
        raise MissingDependencyError(f"npm package(s) {', '.join(missing)} not found in {modules} ({where})",
                                     hint=INSTALL_HINT)
    if override:
        env["CONVERTKIT_NODE_MODULES"] = str(modules)
        env["NODE_PATH"] = os.pathsep.join(p for p in (str(modules), env.get("NODE_PATH")) if p)
    return env


# -- model.json -> TensorSpec ---------------------------------------------------------------------


def read_specs(model_dir: Path) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    """(inputs, outputs) that ``model_dir/model.json`` declares, without running anything.

    Graph models: ``signature`` entries (named by their keys, as TF.js addresses them) or else the
    Placeholder nodes and the nodes nothing consumes (named by node name). Layers models: the
    input layers' ``batch_input_shape``/``dtype``; outputs by layer name with unknown shape.
    """
    path = Path(model_dir)
    path = path if path.name.endswith(".json") else path / "model.json"
    try:
        model_json = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read a TF.js model.json at {path}: {exc}") from exc
    return specs_of(model_json, path)


def specs_of(model_json: Mapping[str, Any], path: Path | str = "model.json"
             ) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    """:func:`read_specs` of a model.json already parsed (``path`` only names it in an error)."""
    topology = model_json.get("modelTopology")
    if not isinstance(topology, dict):
        raise InputError(f"cannot read a TF.js model.json at {path}: no modelTopology")
    fmt = model_json.get("format") or ("graph-model" if "node" in topology else "layers-model")
    if fmt == "graph-model":
        return _graph_specs(model_json.get("signature") or {}, topology.get("node", []))
    return _layers_specs(topology)


def _graph_specs(signature: Mapping[str, Any], nodes: list[dict[str, Any]]):
    def from_tensor_info(key: str, info: Mapping[str, Any]) -> TensorSpec:
        shape = info.get("tensorShape", {})
        dims = None if shape.get("unknownRank") else _dims(int(d.get("size", -1)) for d in shape.get("dim", []))
        return TensorSpec(key, dims, _TF_DTYPES.get(info.get("dtype", ""), "float32"))

    def from_node(node: Mapping[str, Any]) -> TensorSpec:
        attr = node.get("attr", {})
        shape = attr.get("shape", {}).get("shape", {})
        dims = None if shape.get("unknownRank") or "shape" not in attr else \
            _dims(int(d.get("size", -1)) for d in shape.get("dim", []))
        return TensorSpec(node["name"], dims, _TF_DTYPES.get(attr.get("dtype", {}).get("type", ""), "float32"))

    if signature.get("inputs"):
        inputs = tuple(from_tensor_info(k, v) for k, v in signature["inputs"].items())
    else:
        inputs = tuple(from_node(n) for n in nodes if n.get("op", "").startswith("Placeholder"))
    if signature.get("outputs"):
        outputs = tuple(from_tensor_info(k, v) for k, v in signature["outputs"].items())
    else:
        # As TF.js does without a signature: every node that no other node consumes.
        consumed = {i.lstrip("^").split(":")[0] for n in nodes for i in n.get("input", [])}
        outputs = tuple(TensorSpec(n["name"], None, _TF_DTYPES.get(n.get("attr", {}).get("T", {}).get("type", ""),
                                                                  "float32"))
                        for n in nodes if n["name"] not in consumed)
    return inputs, outputs


def _layers_specs(topology: Mapping[str, Any]):
    model = topology.get("model_config", topology)
    config = model.get("config", {})
    layers = config if isinstance(config, list) else config.get("layers", [])  # old Sequential: a list
    by_name = {layer.get("config", {}).get("name", layer.get("name")): layer for layer in layers}

    def spec(name: str, layer_config: Mapping[str, Any]) -> TensorSpec:
        shape = layer_config.get("batch_input_shape") or layer_config.get("batch_shape")
        dtype = layer_config.get("dtype")
        return TensorSpec(name, _dims(shape) if shape is not None else None,
                          dtype if isinstance(dtype, str) else "float32")

    def out(name: str) -> TensorSpec:
        dtype = by_name.get(name, {}).get("config", {}).get("dtype")
        return TensorSpec(name, None, dtype if isinstance(dtype, str) else "float32")

    if model.get("class_name") == "Sequential":
        if not layers:
            return (), ()
        first = layers[0]
        first_cfg = first.get("config", {})
        # TF.js names the implicit input of a Sequential without an InputLayer `<first layer>_input`.
        name = first_cfg["name"] if first.get("class_name") == "InputLayer" else f"{first_cfg.get('name')}_input"
        last = layers[-1].get("config", {}).get("name", "")
        return (spec(name, first_cfg),), (out(last),)
    inputs = tuple(spec(name, by_name.get(name, {}).get("config", {}))
                   for name in _layer_names(config.get("input_layers", [])))
    outputs = tuple(out(name) for name in _layer_names(config.get("output_layers", [])))
    return inputs, outputs


def _layer_names(entries: list[Any]) -> list[str]:
    """Layer names from ``[[name, node, tensor], ...]``, or from one flat ``[name, node, tensor]``."""
    if entries and isinstance(entries[0], str):
        entries = [entries]
    return [e[0] for e in entries]


def _dims(dims) -> tuple[Dim, ...]:
    return tuple(None if d is None or d < 0 else int(d) for d in dims)
