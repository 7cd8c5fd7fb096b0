"""Run a TensorFlow SavedModel signature or a frozen graph in TensorFlow (eager, CPU): named numpy
feeds in, named numpy outputs out (signature output keys; a frozen graph's tensor names without ``:0``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...core import Artifact
from ...errors import InputError, first_line
from ...quiet import quiet
from . import DEFAULT_SIGNATURE
from .common import CallableRunner, TfCallable, cast_all, select_outputs, strip_port, tensor_name


class TfRunner(CallableRunner):
    framework = "TensorFlow"

    def build(self, artifact: Artifact, tf: Any) -> TfCallable:
        return tf_callable(artifact, tf)


def is_frozen(artifact: Artifact) -> bool:
    kind = artifact.meta.get("kind")
    if kind is not None:
        return kind == "frozen_graph"
    return artifact.path is not None and Path(artifact.path).is_file()


def tf_callable(artifact: Artifact, tf: Any) -> TfCallable:
    """The artifact as one function of positional tensors (inputs in ``artifact.inputs`` order)."""
    return _frozen_callable(artifact, tf) if is_frozen(artifact) else _signature_callable(artifact, tf)


def _signature_callable(artifact: Artifact, tf: Any) -> TfCallable:
    from .source import signature_function

    loaded = artifact.obj
    if loaded is None:
        try:
            with quiet("tensorflow", "absl"):
                loaded = tf.saved_model.load(str(artifact.path))
        except Exception as exc:
            raise InputError(f"{artifact.path} could not be loaded as a SavedModel ({first_line(exc)})") from exc
    fn = signature_function(loaded, artifact.meta.get("signature") or DEFAULT_SIGNATURE, artifact.label)
    native = dict(fn.structured_input_signature[1])
    names = tuple(s.name for s in artifact.inputs) or tuple(sorted(native))
    unknown = [n for n in names if n not in native]
    if unknown:
        raise InputError(f"input(s) {', '.join(unknown)} are not in the signature of {artifact.label}",
                         hint=f"its inputs: {', '.join(sorted(native))}")
    dtypes = [native[n].dtype for n in names]
    outs = fn.structured_outputs
    pairs = select_outputs(sorted(outs), [o.name for o in artifact.outputs])

    def call(*args: Any) -> list[Any]:
        result = fn(**dict(zip(names, cast_all(tf, args, dtypes))))
        return [result[k] for k, _ in pairs]

    return TfCallable(call, names, tuple(n for _, n in pairs), keep=loaded)


def _frozen_callable(artifact: Artifact, tf: Any) -> TfCallable:
    from .source import load_graph_def

    graph_def = artifact.obj if artifact.obj is not None else load_graph_def(Path(artifact.path))
    names = tuple(s.name for s in artifact.inputs)
    wanted = [o.name for o in artifact.outputs]
    if not names or not wanted:
        raise InputError(f"{artifact.label}: a frozen graph needs its input and output tensor names",
                         hint="give --input NAME:DIMS[:DTYPE] and --output-names a,b")

    from .source import unfed_inputs

    unfed = unfed_inputs(graph_def, {strip_port(n) for n in names}, wanted)
    if unfed:  # --input named a PlaceholderWithDefault to feed, and an output still needs what it cut off
        raise InputError(f"{artifact.label}: the outputs {', '.join(wanted)} need input(s) {', '.join(unfed)}, "
                         f"which --input does not name", hint=f"add --input {unfed[0]}:DIMS, or ask for outputs "
                                                              f"that only the fed tensors compute (--output-names)")

    def _import() -> None:
        tf.compat.v1.import_graph_def(graph_def, name="")

    with quiet("tensorflow", "absl"):
        wrapped = tf.compat.v1.wrap_function(_import, [])
    feeds = [_tensor(wrapped.graph, n, "input", artifact) for n in names]
    fetches = [_tensor(wrapped.graph, n, "output", artifact) for n in wanted]
    pruned = wrapped.prune(feeds=feeds, fetches=fetches)
    dtypes = [t.dtype for t in feeds]

    def call(*args: Any) -> list[Any]:
        return list(pruned(*cast_all(tf, args, dtypes)))

    return TfCallable(call, names, tuple(strip_port(n) for n in wanted), keep=wrapped)


def _tensor(graph: Any, name: str, what: str, artifact: Artifact) -> Any:
    try:
        return graph.get_tensor_by_name(tensor_name(name))
    except (KeyError, ValueError) as exc:
        from .graphdef import placeholders, unconsumed

        gd = graph.as_graph_def()
        known = [n.name for n in placeholders(gd)] if what == "input" else unconsumed(gd)
        flag = "--input NAME:DIMS" if what == "input" else "--output-names"
        raise InputError(f"{artifact.label} has no tensor '{name}' ({what})",
                         hint=f"name a tensor of the graph with {flag}; its {what}s look like: "
                              f"{', '.join(known[:8]) or '-'}") from exc
