"""TF.js models: a directory with ``model.json`` and its weight shards, in graph or layers format,
run in real TF.js on Node (see runner.py), and the exports that produce them (from_tf.py,
from_keras.py, through graph.py and layers.py).

Stdlib at import time: reading a model.json needs no framework.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from ...core import Artifact, Format, Runner
from ...errors import InputError
from ..tf.common import dims as tf_dims

FORMAT = Format("tfjs", "TensorFlow.js model (directory with model.json + weight shards), run in TF.js on Node")
FILENAME = "model.json"
#: weight shard size written by every export (TF.js's own default)
SHARD_BYTES = 4 * 1024 * 1024
KINDS = ("graph-model", "layers-model")
TFJS_FORMATS = ("graph", "layers")


def model_dir(location: str | Path) -> Path:
    p = Path(location)
    return p.parent if p.is_file() or p.suffix == ".json" else p


def probe(location: str) -> bool:
    p = Path(location)
    if p.is_dir():
        return (p / FILENAME).is_file()
    return p.is_file() and p.suffix.lower() == ".json" and _looks_like_tfjs(p)


def _looks_like_tfjs(p: Path) -> bool:
    if p.name == FILENAME:
        return True
    try:
        with p.open("rb") as f:
            head = f.read(1 << 16)
    except OSError:
        return False
    return b'"modelTopology"' in head and b'"weightsManifest"' in head


def read_model_json(location: str | Path) -> dict[str, Any]:
    d = model_dir(location)
    path = Path(location) if Path(location).is_file() else d / FILENAME
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read TF.js model {path}: {exc}",
                         hint="give a directory with model.json and its weight shards") from exc
    if not isinstance(data, dict) or "modelTopology" not in data:
        raise InputError(f"{path} is JSON but not a TF.js model (no modelTopology)")
    return data


def kind_of(model_json: Mapping[str, Any]) -> str:
    fmt = model_json.get("format")
    if fmt in KINDS:
        return fmt
    topology = model_json.get("modelTopology") or {}
    return "graph-model" if isinstance(topology, dict) and "node" in topology else "layers-model"


def open_source(location: str, **_: Any) -> Artifact:
    from .runner import read_specs

    d = model_dir(location)
    model_json = read_model_json(location)
    missing = [p for group in model_json.get("weightsManifest", []) for p in group.get("paths", [])
               if not (d / p).is_file()]
    if missing:
        raise InputError(f"{d}: weight shard(s) missing: {', '.join(missing[:5])}",
                         hint="copy the whole TF.js model directory, shards included")
    inputs, outputs = read_specs(d)
    # unknown dims named as for a TF/Keras source ("batch", "d1", ...): validation sizes them by name
    # (parity.sizes: multiples of the graph's stride for the spatial ones), not all as 1
    inputs = tuple(s if s.shape is None else replace(s, shape=tf_dims(s.shape)) for s in inputs)
    # how it takes the source's feeds, as convertkit recorded it when it wrote the model (from_tf.py)
    recorded = (model_json.get("userDefinedMetadata") or {}).get("convertkit") or {}
    feed_meta = {k: v for k, v in recorded.items() if k in ("input_layout", "fixed_shape")}
    return Artifact(FORMAT, d, inputs, outputs, meta={"kind": kind_of(model_json), "source": str(d), **feed_meta})


def make_runner(artifact: Artifact, backend: str = "wasm", browser: str | None = None, **_: Any) -> Runner:
    if browser is not None:  # --browser chromium: TF.js in headless Chromium (converter/browser)
        from ...browser.runner import ChromiumTfjsRunner

        return ChromiumTfjsRunner(artifact, backend=backend)
    from .runner import TfjsRunner

    return TfjsRunner(artifact, backend=backend)


def prewarm(backend: str = "wasm", browser: str | None = None, **_: Any) -> None:
    """Start Node and TF.js for the validation to come while the model is still being converted."""
    if browser is not None:
        return  # validation runs in a browser, not in Node
    from .runner import prestart

    prestart(backend)


def latency_ms(artifact: Artifact, feeds: Any, runs: int = 10, backend: str = "wasm",
               reference: Artifact | None = None) -> float:
    """Median TF.js latency (ms) on the first sample: Node's own timing of the model call
    (``last_infer_ms["run"]``: input tensors made, model run; no pipe transfer), ``runs`` calls
    after two warm-up calls (the first compiles the wasm kernels), in one runner."""
    import statistics

    from ...parity.validate import feeds_for
    from .runner import TfjsRunner

    (feed,), _ = feeds_for(artifact, feeds[:1], reference)  # renamed or transposed inputs, as validation feeds them
    with TfjsRunner(artifact, backend=backend) as r:
        for _ in range(2):
            r.infer(feed)
        times = []
        for _ in range(runs):
            r.infer(feed)
            times.append(float(r.last_infer_ms["run"]))
    return round(statistics.median(times), 4)


def op_counts(artifact: Artifact) -> dict[str, int]:
    """Graph model: op histogram of its nodes (and functions); layers model: layer class histogram."""
    model_json = read_model_json(artifact.path)
    topology = model_json.get("modelTopology") or {}
    if kind_of(model_json) == "graph-model":
        counts = Counter(n.get("op", "?") for n in topology.get("node", []))
        for fn in (topology.get("library") or {}).get("function", []):
            counts.update(n.get("op", "?") for n in fn.get("nodeDef", []))
    else:
        counts = Counter(_layer_classes(topology.get("model_config", topology)))
    return dict(sorted(counts.items()))


def _layer_classes(config: Any) -> Iterator[str]:
    """Class names of every layer, nested models' layers included (the nested model counts too)."""
    inner = config.get("config") if isinstance(config, dict) else None
    layers = inner if isinstance(inner, list) else (inner or {}).get("layers") if isinstance(inner, dict) else None
    for layer in layers or ():
        yield layer.get("class_name", "?")
        yield from _layer_classes(layer)


def weights_summary(artifact: Artifact) -> dict[str, Any]:
    d = model_dir(artifact.path)
    model_json = read_model_json(artifact.path)
    paths = [p for group in model_json.get("weightsManifest", []) for p in group.get("paths", [])]
    n_weights = sum(len(group.get("weights", [])) for group in model_json.get("weightsManifest", []))
    return {"weight_bytes": sum((d / p).stat().st_size for p in paths if (d / p).is_file()),
            "weight_shards": len(paths), "weights": n_weights}


def describe(artifact: Artifact) -> dict[str, Any]:
    model_json = read_model_json(artifact.path)
    kind = kind_of(model_json)
    info: dict[str, Any] = {"kind": kind, "converted_by": model_json.get("convertedBy"),
                            "generated_by": model_json.get("generatedBy")}
    info.update(weights_summary(artifact))
    ops = op_counts(artifact)
    info["nodes" if kind == "graph-model" else "layers"] = sum(ops.values())
    info["ops" if kind == "graph-model" else "layer_classes"] = ops
    return info


def _stages() -> tuple[type, ...]:
    from .from_keras import KerasToTfjs
    from .from_tf import TfToTfjs

    return (KerasToTfjs, TfToTfjs)


STAGES = _stages
