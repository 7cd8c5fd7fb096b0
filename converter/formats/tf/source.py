"""Open a TensorFlow model as a source artifact, classified by content.

Kinds: ``saved_model`` (a SavedModel directory; one of its signatures, ``serving_default`` unless
``signature=`` names another) and ``frozen_graph`` (a ``GraphDef`` ``.pb`` with its variables
folded into constants; inputs are its Placeholders, outputs the tensors ``--output-names`` names,
else the nodes nothing reads). A frozen graph's PlaceholderWithDefault nodes are not inputs: unfed,
TensorFlow computes their default, and so does every export; ``--input`` may name them
(``meta[OPTIONAL_INPUTS]``) to feed them instead, as a retrained Inception graph's ``bottleneck``.
A Keras SavedModel (with ``keras_metadata.pb``) is the keras format's, and a SavedModel's own
``saved_model.pb`` given as a file opens its directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...core import OPTIONAL_INPUTS, Artifact, TensorSpec
from ...deps import require
from ...errors import InputError, UsageError, first_line
from ...quiet import quiet
from . import DEFAULT_SIGNATURE, FORMAT
from .common import dims, dtype_name, select_outputs, spec, strip_port, tensor_name
from .graphdef import placeholders, unconsumed

SAVED_MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")
KERAS_METADATA = "keras_metadata.pb"
GRAPH_SUFFIXES = (".pb", ".graphdef")


def is_saved_model_dir(p: Path) -> bool:
    return p.is_dir() and any((p / f).is_file() for f in SAVED_MODEL_FILES)


def probe(location: str) -> bool:
    p = Path(location)
    if p.is_dir():
        return is_saved_model_dir(p) and not (p / KERAS_METADATA).is_file()
    return p.is_file() and p.suffix.lower() in GRAPH_SUFFIXES


def open_source(location: str, *, weights: str | None = None, signature: str | None = None,
                output_names: tuple[str, ...] = (), **_: Any) -> Artifact:
    p = Path(location)
    if weights:
        raise UsageError("--weights only applies to an import path source (package.module:callable)",
                         hint=f"{p} already holds its weights")
    if p.is_file() and p.name in SAVED_MODEL_FILES and is_saved_model_dir(p.parent):
        p = p.parent  # the SavedModel's own saved_model.pb: the model is its directory
    if p.is_dir():
        if not is_saved_model_dir(p):
            raise InputError(f"{p} is a directory without saved_model.pb, not a TensorFlow SavedModel")
        art = _open_saved_model(p, signature or DEFAULT_SIGNATURE)
        select_outputs([o.name for o in art.outputs], output_names)  # UsageError now, not mid-conversion
        return art
    return _open_frozen(p, output_names)


def _open_saved_model(p: Path, signature: str) -> Artifact:
    tf = require("tensorflow")
    try:
        with quiet("tensorflow", "absl"):
            loaded = tf.saved_model.load(str(p))
    except Exception as exc:
        raise InputError(f"{p} could not be loaded as a TensorFlow SavedModel ({first_line(exc)})",
                         hint="check the directory is complete (saved_model.pb and variables/); re-save it") from exc
    fn = signature_function(loaded, signature, p)
    inputs, outputs = signature_specs(fn)
    return Artifact(FORMAT, p, inputs, outputs,
                    meta={"kind": "saved_model", "source": str(p), "signature": signature,
                          "signatures": sorted(loaded.signatures)}, obj=loaded)


def signature_function(loaded: Any, signature: str, where: Path | str) -> Any:
    names = sorted(loaded.signatures)
    if not names:
        raise InputError(f"{where} has no signatures (a SavedModel of a bare tf.Module or tf.function)",
                         hint="re-save it with tf.saved_model.save(obj, dir, signatures={...})")
    if signature not in loaded.signatures:
        raise InputError(f"{where} has no signature '{signature}'",
                         hint=f"available signatures: {', '.join(names)}; choose one with --signature NAME")
    return loaded.signatures[signature]


def signature_specs(fn: Any) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    """Inputs by keyword, in the signature's (sorted) order; outputs by key, sorted as TF flattens them."""
    args, kwargs = fn.structured_input_signature
    inputs = tuple(spec(name, s.shape, s.dtype) for name, s in sorted(kwargs.items()))
    inputs += tuple(spec(s.name or f"input_{i}", s.shape, s.dtype) for i, s in enumerate(args))
    outs = fn.structured_outputs
    if isinstance(outs, dict):
        outputs = tuple(spec(k, getattr(v, "shape", None), getattr(v, "dtype", "float32"))
                        for k, v in sorted(outs.items()))
    else:
        flat = outs if isinstance(outs, (list, tuple)) else [outs]
        outputs = tuple(spec(f"output_{i}", getattr(v, "shape", None), getattr(v, "dtype", "float32"))
                        for i, v in enumerate(flat))
    return inputs, outputs


def load_graph_def(p: Path) -> Any:
    """Parse ``p`` as a binary GraphDef. Raises InputError for anything else (a SavedModel proto, junk)."""
    tf = require("tensorflow")
    data = p.read_bytes()
    if data[:1] == b"\x08":  # field 1 as a varint: SavedModel's schema version, not GraphDef's node list
        raise InputError(f"{p} is a SavedModel's saved_model.pb, not a frozen graph",
                         hint="give the SavedModel's directory (with variables/) instead of the file")
    graph_def = tf.compat.v1.GraphDef()
    try:
        graph_def.ParseFromString(data)
    except Exception as exc:
        raise InputError(f"{p} is not a TensorFlow GraphDef ({first_line(exc)})",
                         hint="give a frozen graph .pb (convert_variables_to_constants_v2) or a SavedModel directory"
                         ) from exc
    if not graph_def.node:
        raise InputError(f"{p} holds no graph nodes; it is not a frozen TensorFlow graph")
    variables = sorted(n.name for n in graph_def.node if n.op in ("VariableV2", "VarHandleOp", "Variable"))
    if variables:
        raise InputError(f"{p} still has variables ({', '.join(variables[:3])}): it is not frozen",
                         hint="freeze it (convert_variables_to_constants_v2) or give the SavedModel directory")
    return graph_def


def _open_frozen(p: Path, output_names: tuple[str, ...]) -> Artifact:
    graph_def = load_graph_def(p)
    inputs = tuple(_placeholder_spec(n) for n in placeholders(graph_def))
    optional = with_defaults(graph_def)
    if not inputs and not optional:
        raise InputError(f"{p} has no Placeholder nodes: the graph takes no inputs convertkit can feed")
    names = list(output_names) or unconsumed(graph_def)
    check_tensors(graph_def, names, "output", p)
    outputs = tuple(TensorSpec(strip_port(name), None, "float32") for name in names)
    meta = {"kind": "frozen_graph", "source": str(p), "signature": None, OPTIONAL_INPUTS: optional}
    return Artifact(FORMAT, p, inputs, outputs, meta=meta, obj=graph_def)


def with_defaults(graph_def: Any) -> dict[str, str]:
    """The graph's PlaceholderWithDefault nodes: {name: what they are, with their default tensor}."""
    found = {}
    for node in graph_def.node:
        if node.op == "PlaceholderWithDefault":
            shape = _placeholder_spec(node).shape
            dims = "?" if shape is None else ",".join("?" if d is None else str(d) for d in shape)
            default = next((i for i in node.input if not i.startswith("^")), "?")
            found[node.name] = f"a PlaceholderWithDefault [{dims}] whose default is {default}"
    return found


def unfed_inputs(graph_def: Any, fed: set[str], outputs: list[str] | tuple[str, ...]) -> list[str]:
    """Placeholders the ``outputs`` (``node`` or ``node:N``) depend on that are not in ``fed`` (node
    names). A fed node cuts off what it reads (a fed PlaceholderWithDefault, its default); an unfed
    PlaceholderWithDefault reads its default."""
    nodes = {n.name: n for n in graph_def.node}
    stack, seen, missing = [tensor_name(o).rpartition(":")[0] for o in outputs], set(), []
    while stack:
        name = stack.pop()
        if name in seen or name in fed or name not in nodes:
            continue
        seen.add(name)
        if nodes[name].op == "Placeholder":
            missing.append(name)
        stack.extend(i.lstrip("^").split(":")[0] for i in nodes[name].input)
    return sorted(missing)


def check_tensors(graph_def: Any, names: list[str] | tuple[str, ...], what: str, where: Path | str) -> None:
    """InputError unless every name (``node`` or ``node:N``) is a tensor of the graph."""
    by_name = {n.name: n for n in graph_def.node}
    absent = [n for n in names if tensor_name(n).rpartition(":")[0] not in by_name]
    if absent or not names:
        known = [n.name for n in placeholders(graph_def)] if what == "input" else unconsumed(graph_def)
        flag = "--input NAME:DIMS" if what == "input" else "--output-names"
        raise InputError(f"{where} has no {what} tensor {', '.join(absent) or '(none given)'}",
                         hint=f"name tensors of the graph with {flag}; its {what}s look like: "
                              f"{', '.join(known[:8]) or '-'}")


def _placeholder_spec(node: Any) -> TensorSpec:
    dtype = dtype_name(_tf_dtype(node.attr["dtype"].type))
    shape_attr = node.attr.get("shape") if "shape" in node.attr else None
    shape = None
    if shape_attr is not None and not shape_attr.shape.unknown_rank:
        shape = dims([d.size if d.size >= 0 else None for d in shape_attr.shape.dim])
    return TensorSpec(node.name, shape, dtype)


def _tf_dtype(enum: int) -> Any:
    return require("tensorflow").as_dtype(enum)


def describe(artifact: Artifact) -> dict[str, Any]:
    kind = artifact.meta.get("kind")
    info: dict[str, Any] = {"kind": kind}
    if kind == "saved_model":
        info["signature"] = artifact.meta.get("signature")
        info["signatures"] = artifact.meta.get("signatures")
        loaded = artifact.obj
        variables = getattr(loaded, "variables", None) if loaded is not None else None
        if variables is not None:
            info["parameters"] = int(sum(v.shape.num_elements() or 0 for v in variables))
    elif kind == "frozen_graph" and artifact.obj is not None:
        from .graphdef import op_counts

        info["nodes"] = len(artifact.obj.node)
        info["ops"] = op_counts(artifact.obj)
        if artifact.meta.get(OPTIONAL_INPUTS):  # not inputs, but --input may name them to feed them
            info["inputs_with_defaults"] = dict(artifact.meta[OPTIONAL_INPUTS])
    return info
