"""TensorFlow / Keras -> ONNX through tf2onnx.

Every source becomes one frozen ``GraphDef`` first: a Keras model (Keras 3 or tf_keras) or a
SavedModel signature is wrapped in a ``tf.function`` with the source's input specs (tf2onnx's
``from_keras`` fails on Keras 3 models) and frozen by tf2onnx's loader; a frozen ``.pb`` already is
one. ``Erfc`` (exact GELU) is rewritten to ``1 - Erf``, which tf2onnx can convert. The ONNX model
keeps the source's input names (no ``:0``), its dynamic dims (named as in the source specs), and
its output names. Ops tf2onnx leaves unconverted are all reported at once.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from ...core import Artifact, Export, Format, TensorSpec
from ...deps import require
from ...errors import InputError, UnsupportedOpError
from ...quiet import quiet
from .. import keras as keras_fmt
from .. import tf as tf_fmt
from . import FILENAME, FORMAT, io_specs

#: ONNX domains onnxruntime runs without extensions, beyond those onnx.defs knows
_ORT_DOMAINS = ("com.microsoft",)
_LOGGERS = ("tf2onnx", "tensorflow", "absl")


@dataclass(frozen=True)
class KerasToOnnx(Export):
    name: ClassVar[str] = "keras->onnx"
    accepts: ClassVar[Format] = keras_fmt.FORMAT
    produces: ClassVar[Format] = FORMAT

    opset: int = 18

    def run(self, src: Artifact, out_dir: Path) -> Artifact:
        tf = require("tensorflow")
        from ..keras.runner import keras_callable

        call = keras_callable(src, tf)
        graph_def, in_t, out_t = freeze(call, src.inputs, tf)
        return convert_graph_def(graph_def, in_t, out_t, call.input_names, call.output_names, src, out_dir,
                                 self.opset, tf)


@dataclass(frozen=True)
class TfToOnnx(Export):
    name: ClassVar[str] = "tf->onnx"
    accepts: ClassVar[Format] = tf_fmt.FORMAT
    produces: ClassVar[Format] = FORMAT

    opset: int = 18

    def run(self, src: Artifact, out_dir: Path) -> Artifact:
        tf = require("tensorflow")
        from ..tf.runner import is_frozen, tf_callable

        notes: dict[str, Any] = {}
        if is_frozen(src):
            graph_def, in_t, out_t, in_names, out_names, defaults = _frozen_graph(src, tf)
            notes.update(defaults.notes())
        else:
            call = tf_callable(src, tf)
            graph_def, in_t, out_t = freeze(call, src.inputs, tf)
            in_names, out_names = call.input_names, call.output_names
        return convert_graph_def(graph_def, in_t, out_t, in_names, out_names, src, out_dir, self.opset, tf, notes=notes)


def freeze(call: Any, specs: tuple[TensorSpec, ...], tf: Any) -> tuple[Any, list[str], list[str]]:
    """Trace ``call`` (a TfCallable) with ``specs`` and freeze it: (GraphDef, input tensor names,
    output tensor names). Placeholders are named ``ck_in_N`` so that any input name is safe."""
    tf_loader = require("tf2onnx.tf_loader")
    by_name = {s.name: s for s in specs}
    missing = [n for n in call.input_names if n not in by_name or by_name[n].shape is None]
    if missing:
        raise InputError(f"the shape of input(s) {', '.join(missing)} is unknown",
                         hint="give it with --input NAME:DIMS[:DTYPE]")
    signature = [tf.TensorSpec(_tf_shape(by_name[n]), tf.as_dtype(by_name[n].dtype), name=f"ck_in_{i}")
                 for i, n in enumerate(call.input_names)]
    fn = tf.function(lambda *args: call.fn(*args), input_signature=signature, autograph=False)
    with quiet(*_LOGGERS):
        concrete = fn.get_concrete_function()
        in_t = [t.name for t in concrete.inputs if t.dtype != tf.resource]
        out_t = [t.name for t in concrete.outputs]
        graph_def = tf_loader.from_function(concrete, in_t, out_t)
    return graph_def, in_t, out_t


def _tf_shape(spec: TensorSpec) -> list[int | None]:
    return [d if isinstance(d, int) else None for d in spec.shape or ()]


def _frozen_graph(src: Artifact, tf: Any) -> tuple[Any, list[str], list[str], tuple[str, ...], tuple[str, ...], Defaults]:
    from ..tf.common import strip_port, tensor_name
    from ..tf.source import check_tensors, load_graph_def

    graph_def = tf.compat.v1.GraphDef()
    graph_def.CopyFrom(src.obj if src.obj is not None else load_graph_def(Path(src.path)))  # rewritten below
    in_names = tuple(s.name for s in src.inputs)
    wanted = [o.name for o in src.outputs]
    check_tensors(graph_def, in_names, "input", src.label)
    check_tensors(graph_def, wanted, "output", src.label)
    defaults = resolve_defaults(graph_def, {strip_port(n) for n in in_names})
    return (graph_def, [tensor_name(n) for n in in_names], [tensor_name(n) for n in wanted], in_names,
            tuple(strip_port(n) for n in wanted), defaults)


@dataclass(frozen=True)
class Defaults:
    """A frozen graph's PlaceholderWithDefault nodes, as resolve_defaults treated them."""

    used: tuple[str, ...] = ()  # not fed: each computes its default (an Identity of it)
    fed: tuple[str, ...] = ()  # named by --input: each is a Placeholder, an input of the ONNX model

    def notes(self) -> dict[str, list[str]]:
        return {k: list(v) for k, v in (("defaults_used", self.used), ("defaults_fed", self.fed)) if v}


def resolve_defaults(graph_def: Any, fed: set[str]) -> Defaults:
    """TF semantics for PlaceholderWithDefault, in place: one that is not fed is its default tensor
    (-> ``Identity``), one that is fed is an input (-> ``Placeholder`` of its dtype and shape).

    tf2onnx refuses one whose default is not a constant ("non-const default value for
    PlaceholderWithDefault", a retrained Inception graph's ``bottleneck``). Its own remedy, the
    ``use_default`` / ``ignore_default`` lists of ``tfonnx.process_tf_graph`` (CLI ``--use_default``
    / ``--ignore_default``), does exactly these two rewrites (``tf_utils.tflist_to_onnx``), but
    ``tf2onnx.convert.from_graph_def`` (1.17), which convertkit calls, does not pass them through:
    using them would mean re-implementing from_graph_def's freeze-and-optimize steps around
    process_tf_graph. Rewriting the GraphDef before from_graph_def is the same operation, one step
    earlier, so that tf2onnx's grappler pass also prunes what a fed node cuts off."""
    used, taken = [], []
    for node in graph_def.node:
        if node.op != "PlaceholderWithDefault":
            continue
        dtype = node.attr["dtype"].type
        if node.name in fed:
            node.op = "Placeholder"
            del node.input[:]  # neither its default nor control inputs: a fed input depends on nothing
            taken.append(node.name)
        else:
            node.op = "Identity"
            for attr in ("dtype", "shape"):
                if attr in node.attr:
                    del node.attr[attr]
            node.attr["T"].type = dtype
            used.append(node.name)
    return Defaults(tuple(used), tuple(taken))


def convert_graph_def(graph_def: Any, in_t: list[str], out_t: list[str], in_names: tuple[str, ...],
                      out_names: tuple[str, ...], src: Artifact, out_dir: Path, opset: int, tf: Any,
                      notes: dict[str, Any] | None = None) -> Artifact:
    tf2onnx = require("tf2onnx")
    onnx = require("onnx")
    from ..tf.graphdef import rewrite_erfc

    rewritten = rewrite_erfc(graph_def, tf)
    rename = {**dict(zip(in_t, in_names)), **dict(zip(out_t, out_names))}
    with quiet(*_LOGGERS), _deterministic(tf2onnx):
        model, _ = tf2onnx.convert.from_graph_def(graph_def, name=src.path.name if src.path else "model",
                                                  input_names=list(in_t), output_names=list(out_t), opset=opset,
                                                  tensors_to_rename=rename)
    bad = unsupported_ops(model, onnx)
    if bad:
        raise UnsupportedOpError("ONNX (tf2onnx)", sorted(bad), hint=f"tf2onnx {tf2onnx.__version__} cannot convert "
                                 f"them (at {', '.join(sorted(bad.values())[:4])}); rewrite that part of the model "
                                 f"with supported ops")
    _name_io(model, in_names, out_names)
    _name_dims(model, src.inputs)
    path = out_dir / FILENAME
    onnx.save(model, str(path))
    onnx.checker.check_model(str(path))
    inputs, outputs = io_specs(model)
    meta: dict[str, Any] = {"converter": f"tf2onnx {tf2onnx.__version__}", "opset": opset}
    if rewritten:
        meta["rewrites"] = {"Erfc -> 1 - Erf": rewritten}
    meta.update(notes or {})
    return Artifact(FORMAT, path, inputs, outputs, meta=meta)


@contextlib.contextmanager
def _deterministic(tf2onnx: Any) -> Iterator[None]:
    """Same graph in, same bytes out. tf2onnx numbers the nodes it makes with a process-wide counter
    (also drawn from when one of its modules is first imported), and ``extract_sub_graph_nodes``
    returns a set's (address) order, so which of two equal nodes its duplicate-merging keeps changes
    from run to run. Restart the counter after those imports, and keep graph order in that method
    while this conversion runs."""
    import importlib

    for name in ("tf2onnx.tfonnx", "tf2onnx.rewriter.loop_rewriter_base"):
        try:
            importlib.import_module(name)
        except ImportError:  # another tf2onnx layout: determinism is best effort
            pass
    graph_cls = tf2onnx.graph.Graph
    original = graph_cls.extract_sub_graph_nodes

    def in_graph_order(self: Any, *args: Any, **kwargs: Any) -> list[Any]:
        nodes = original(self, *args, **kwargs)
        position = {id(n): i for i, n in enumerate(self.get_nodes())}
        return sorted(nodes, key=lambda n: position.get(id(n), len(position)))

    tf2onnx.utils.INTERNAL_NAME = 1
    graph_cls.extract_sub_graph_nodes = in_graph_order
    try:
        yield
    finally:
        graph_cls.extract_sub_graph_nodes = original


def unsupported_ops(model: Any, onnx: Any) -> dict[str, str]:
    """Ops left in the graph that onnxruntime cannot run (tf2onnx keeps a TF op it cannot map):
    op -> the first node that has it. Looks inside Loop/If/Scan bodies too."""
    found: dict[str, str] = {}
    stack = [model.graph]
    while stack:
        graph = stack.pop()
        for node in graph.node:
            domain = node.domain or ""
            known = domain in _ORT_DOMAINS or (domain in ("", "ai.onnx", "ai.onnx.ml")
                                              and onnx.defs.has(node.op_type, domain))
            if not known:
                found.setdefault(node.op_type if domain in ("", "ai.onnx") else f"{domain}.{node.op_type}", node.name)
            for attr in node.attribute:
                if attr.HasField("g"):
                    stack.append(attr.g)
                stack.extend(attr.graphs)
    return found


def _name_io(model: Any, in_names: tuple[str, ...], out_names: tuple[str, ...]) -> None:
    """Make graph inputs/outputs carry the source's names if tf2onnx did not (it may keep ``x:0``)."""
    renames = {}
    for values, names in ((model.graph.input, in_names), (model.graph.output, out_names)):
        for v, want in zip(values, names):
            if v.name != want:
                renames[v.name] = want
    if not renames:
        return
    stack = [model.graph]
    while stack:
        graph = stack.pop()
        for v in (*graph.input, *graph.output):
            v.name = renames.get(v.name, v.name)
        for node in graph.node:
            node.input[:] = [renames.get(i, i) for i in node.input]
            node.output[:] = [renames.get(o, o) for o in node.output]
            stack.extend(a.g for a in node.attribute if a.HasField("g"))


def _name_dims(model: Any, specs: tuple[TensorSpec, ...]) -> None:
    """Dynamic input dims get the names the source specs give them (tf2onnx writes ``unk__N``)."""
    by_name = {s.name: s for s in specs}
    for inp in model.graph.input:
        spec = by_name.get(inp.name)
        if spec is None or spec.shape is None:
            continue
        for dim, want in zip(inp.type.tensor_type.shape.dim, spec.shape):
            if isinstance(want, str) and not dim.HasField("dim_value"):
                dim.dim_param = want
