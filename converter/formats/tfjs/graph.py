"""Write a TF.js graph model from a TensorFlow callable, in-process with tensorflowjs's Python API.

One concrete function is traced (inputs named as the source names them) and frozen with
``convert_variables_to_constants_v2`` (control flow lowered to the v1 ops TF.js runs); ``Erfc`` is
rewritten as ``1 - Erf`` (exact GELU; TF.js has no Erfc); tensorflowjs's own optimizer (grappler,
batch-norm folding, op fusing) runs; every op left is checked against the op lists that ship in
the tensorflowjs package (all unsupported ops named at once); the graph is adjusted to what TF.js
executes (graph_fixes.py); and tensorflowjs's weight writer produces ``model.json`` + 4 MB shards.

The signature is built here, keyed by the source's input and output names, so TF.js addresses
tensors by those names (tensorflowjs's own builder falls back to tensor names such as
``Identity_2:0`` when it cannot match outputs by shape), and listed in the source's order.

Stdlib at import time.
"""

from __future__ import annotations

import importlib.util
import json
import re
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

from ...core import TensorSpec
from ...deps import require
from ...errors import StageError, UnsupportedOpError, first_line
from ...quiet import quiet
from . import FILENAME, SHARD_BYTES

#: what TF.js does to dtypes it has no tensors for
NARROWED = {"int64": "int32", "uint8": "int32", "int8": "int32", "int16": "int32", "uint16": "int32",
            "uint32": "int32", "float64": "float32", "float16": "float32"}
_TF_LOGGERS = ("tensorflow", "absl", "tensorflowjs")


@cache
def supported_ops() -> frozenset[str]:
    """TF op names TF.js can execute, from ``tensorflowjs/op_list/*.json`` (read without importing
    tensorflowjs, which would import TensorFlow)."""
    spec = importlib.util.find_spec("tensorflowjs")
    if spec is None or not spec.submodule_search_locations:
        require("tensorflowjs")  # raises MissingDependencyError naming the extra
    root = Path(list(spec.submodule_search_locations)[0]) / "op_list"  # type: ignore[union-attr]
    names: set[str] = set()
    for f in sorted(root.glob("*.json")):
        names.update(entry["tfOpName"] for entry in json.loads(f.read_text()))
    return frozenset(names)


def graph_ops(graph_def: Any) -> set[str]:
    ops = {n.op for n in graph_def.node}
    for fn in graph_def.library.function:
        ops.update(n.op for n in fn.node_def)
    return ops


def check_ops(graph_def: Any) -> None:
    """Raise UnsupportedOpError naming every op of ``graph_def`` TF.js cannot run."""
    unsupported = sorted(graph_ops(graph_def) - supported_ops())
    if not unsupported:
        return
    if any(op.startswith("_Mkl") for op in unsupported):
        hint = ("TensorFlow's oneDNN rewrites made these ops: set TF_ENABLE_ONEDNN_OPTS=0 before TensorFlow "
                "is imported (convertkit does, unless something imported TensorFlow first)")
    else:
        hint = ("TF.js has no kernels for these ops (tensorflowjs/op_list): replace them in the model with "
                "supported ops, or convert to onnx instead")
    raise UnsupportedOpError("TF.js", unsupported, hint=hint)


def safe_name(name: str, taken: set[str]) -> str:
    """A valid, unique TF node name for a source input name (the signature keeps the original)."""
    out = re.sub(r"[^A-Za-z0-9_.\-/]", "_", name) or "input"
    if not re.match(r"[A-Za-z0-9.]", out):
        out = "x" + out
    base, i = out, 1
    while out in taken:
        out, i = f"{base}_{i}", i + 1
    taken.add(out)
    return out


def write_from_callable(fn: Any, input_names: Sequence[str], specs: Sequence[TensorSpec],
                        output_names: Sequence[str], out_dir: Path, *, stage: str,
                        metadata: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Trace ``fn`` (positional tensors in ``input_names`` order -> list of tensors in
    ``output_names`` order), freeze it and write a graph model to ``out_dir``. Returns notes
    for the artifact's meta. ``metadata``: convertkit's entry of model.json's userDefinedMetadata."""
    tf = require("tensorflow")
    from .freeze import StatefulModel, freeze

    by_name = {s.name: s for s in specs}
    taken: set[str] = set()
    sig = []
    for name in input_names:
        s = by_name.get(name)
        shape = None if s is None or s.shape is None else [d if isinstance(d, int) else None for d in s.shape]
        sig.append(tf.TensorSpec(shape, tf.as_dtype(s.dtype if s else "float32"), name=safe_name(name, taken)))

    def traced(*args: Any) -> list[Any]:
        outs = fn(*args)
        return [tf.identity(o) for o in (outs if isinstance(outs, (list, tuple)) else [outs])]

    try:
        with quiet(*_TF_LOGGERS):
            concrete = tf.function(traced, input_signature=sig, autograph=False).get_concrete_function()
            result = freeze(concrete)
    except StatefulModel as exc:
        raise StageError(stage, str(exc), hint="convert to onnx, or save the model without the state it "
                         "updates (an RNN with stateful=False)") from exc
    except Exception as exc:
        raise StageError(stage, f"could not trace and freeze the model: {first_line(exc, with_type=True)}",
                         hint="the model must be traceable by tf.function with the given input shapes") from exc
    frozen = result.function
    graph_def = frozen.graph.as_graph_def()
    in_tensors = [t.name for t in frozen.inputs if t.dtype != tf.resource]
    out_tensors = [t.name for t in frozen.outputs]
    if len(in_tensors) != len(input_names) or len(out_tensors) != len(output_names):
        raise StageError(stage, f"the frozen graph has {len(in_tensors)} inputs / {len(out_tensors)} outputs; "
                         f"expected {len(input_names)} / {len(output_names)}")
    notes = write_graph_def(graph_def, list(zip(input_names, in_tensors)), list(zip(output_names, out_tensors)),
                            out_dir, metadata=metadata)
    if result.dropped_writes:  # e.g. Keras 3 RNN dropout masks drawn at inference (freeze.py)
        notes.setdefault("rewrites", {})["variable writes no output reads, dropped"] = result.dropped_writes
    return notes


def write_graph_def(graph_def: Any, inputs: Sequence[tuple[str, str]], outputs: Sequence[tuple[str, str]],
                    out_dir: Path, *, metadata: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Write a frozen ``graph_def`` as a graph model. ``inputs``/``outputs`` pair the name TF.js
    will use (the signature key) with the tensor in the graph (``node:0``); ``metadata`` goes to
    model.json's ``userDefinedMetadata.convertkit``."""
    tf = require("tensorflow")
    from ..tf.graphdef import rewrite_erfc
    from .graph_fixes import (bias_add_only_for_vectors, fix_control_edges, reverse_bool_as_int32, unfuse_activations,
                              untranspose_fused_matmul)

    notes: dict[str, Any] = {}
    rewrites: dict[str, int] = {}
    rewritten = rewrite_erfc(graph_def, tf)  # exact GELU lowers to Erfc, which TF.js lacks
    if rewritten:
        rewrites["Erfc -> 1 - Erf"] = rewritten
    with quiet(*_TF_LOGGERS):  # its import may log (TensorFlow's loggers)
        conv = require("tensorflowjs.converters.tf_saved_model_conversion_v2")
    from google.protobuf.json_format import MessageToDict
    from tensorflow.core.protobuf import meta_graph_pb2

    graph = tf.Graph()
    with graph.as_default():
        tf.graph_util.import_graph_def(graph_def, name="")
    signature = meta_graph_pb2.SignatureDef()
    changes = []
    for entries, field in ((inputs, signature.inputs), (outputs, signature.outputs)):
        for key, tensor_name in entries:
            t = graph.get_tensor_by_name(tensor_name)
            field[key].name = tensor_name
            field[key].dtype = t.dtype.as_datatype_enum
            field[key].tensor_shape.CopyFrom(t.shape.as_proto())
            dt = t.dtype.name
            if dt in NARROWED:
                changes.append(f"{key}: {dt} -> {NARROWED[dt]} (TF.js has no {dt})")
    if changes:
        notes["dtype_changes"] = changes
    with quiet(*_TF_LOGGERS), bias_add_only_for_vectors(conv):
        # ops are checked after grappler: what it folds into constants (tf.eye's MatrixDiagV3) need not run
        optimized = conv.optimize_graph(graph, signature, skip_op_check=True)
    check_ops(optimized)
    unfused = unfuse_activations(optimized)
    if unfused:
        rewrites["fused activation split out (TF.js wasm cannot fuse it)"] = unfused
    untransposed = untranspose_fused_matmul(optimized)
    if untransposed:
        rewrites["fused MatMul operand transposed beforehand (TF.js wasm gets transpose_b wrong)"] = untransposed
    reversed_bool = reverse_bool_as_int32(optimized)
    if reversed_bool:
        rewrites["bool ReverseV2 run on int32 (TF.js wasm cannot reverse bool)"] = reversed_bool
    rewrites.update(fix_control_edges(optimized))
    if rewrites:
        notes["rewrites"] = rewrites
    weights = conv.extract_weights(optimized)
    with quiet(*_TF_LOGGERS):
        conv.write_artifacts(MessageToDict(optimized), weights, str(out_dir / FILENAME), tf.__version__, signature,
                             weight_shard_size_bytes=SHARD_BYTES)
    _normalise(out_dir / FILENAME, [k for k, _ in inputs], [k for k, _ in outputs], metadata)
    return notes


def _normalise(path: Path, inputs: Sequence[str], outputs: Sequence[str], metadata: Mapping[str, Any] | None) -> None:
    """Make model.json reproducible and ordered as the source is: list the signature's inputs and
    outputs in the source's order (the order TF.js returns outputs in) and each node's attributes
    by name without TF's internal ones (protobuf maps have no order, and TensorFlow sets internal
    attributes such as ``_has_manual_control_dependencies`` differently from trace to trace).
    ``metadata`` is added in the same write."""
    model_json = json.loads(path.read_text())
    if metadata:
        model_json.setdefault("userDefinedMetadata", {})["convertkit"] = dict(metadata)
    sig = model_json.get("signature") or {}
    for key, order in (("inputs", inputs), ("outputs", outputs)):
        if isinstance(sig.get(key), dict):
            sig[key] = {k: sig[key][k] for k in order if k in sig[key]} | sig[key]
    topology = model_json.get("modelTopology") or {}
    functions = (topology.get("library") or {}).get("function", [])
    for node in [*topology.get("node", []), *(n for f in functions for n in f.get("nodeDef", []))]:
        if isinstance(node.get("attr"), dict):  # "_..." attrs are TF-internal (TF.js reads none), set per trace
            node["attr"] = {k: v for k, v in sorted(node["attr"].items()) if not k.startswith("_")}
    for i, fn in enumerate(functions):  # their maps (argAttr, ret, attr) are protobuf maps too; lists keep order
        functions[i] = _sorted_maps(fn)
    with path.open("w") as f:
        json.dump(model_json, f)


def _sorted_maps(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _sorted_maps(v) for k, v in sorted(value.items(), key=lambda kv: (len(kv[0]), kv[0]))}
    if isinstance(value, list):
        return [_sorted_maps(v) for v in value]
    return value


