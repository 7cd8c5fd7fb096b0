"""TensorFlow (a SavedModel signature, or a frozen GraphDef .pb) -> TF.js graph model."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from ...core import Artifact, Export, Format, TensorSpec
from ...deps import require
from ...errors import UsageError
from ...parity.validate import FEED_META
from .. import tf as tf_fmt
from . import FILENAME, FORMAT, TFJS_FORMATS, kind_of, read_model_json
from ..tf.common import strip_port, tensor_name
from .graph import write_from_callable, write_graph_def


@dataclass(frozen=True)
class TfToTfjs(Export):
    name: ClassVar[str] = "tf->tfjs"
    accepts: ClassVar[Format] = tf_fmt.FORMAT
    produces: ClassVar[Format] = FORMAT
    imports: ClassVar[tuple[str, ...]] = ("tensorflow", "tensorflowjs.converters.tf_saved_model_conversion_v2")

    tfjs_format: str = "graph"  # TF.js graph model; a layers model needs a Keras source

    def __post_init__(self) -> None:  # at plan time: a bad option fails before any work
        if self.tfjs_format not in TFJS_FORMATS:
            raise UsageError(f"unknown TF.js format '{self.tfjs_format}'", hint=f"one of: {', '.join(TFJS_FORMATS)}")
        if self.tfjs_format != "graph":
            raise UsageError("a TensorFlow model (SavedModel or frozen graph) converts to a TF.js graph model only",
                             hint="use --tfjs-format graph; the layers format needs a Keras model source")

    def run(self, src: Artifact, out_dir: Path) -> Artifact:
        tf = require("tensorflow")
        from ..tf.runner import tf_callable

        feed_meta = {k: src.meta[k] for k in FEED_META if k in src.meta}  # the layout and shapes it takes
        graph_def = as_written(src, tf)
        if graph_def is not None:
            input_names = tuple(strip_port(s.name) for s in src.inputs)
            output_names = tuple(strip_port(o.name) for o in src.outputs)
            notes = write_graph_def(graph_def, [(n, tensor_name(s.name)) for n, s in zip(input_names, src.inputs)],
                                    [(n, tensor_name(o.name)) for n, o in zip(output_names, src.outputs)], out_dir,
                                    metadata=feed_meta)
        else:
            call = tf_callable(src, tf)
            input_names, output_names = call.input_names, call.output_names
            notes = write_from_callable(call.fn, input_names, src.inputs, output_names, out_dir, stage=self.name,
                                        metadata=feed_meta)
        notes.update(feed_meta)
        return finish(out_dir, notes, input_names, output_names)


def as_written(src: Artifact, tf: Any) -> Any | None:
    """A frozen graph that TF.js can take as it is (what onnx->tf writes for a model without control
    flow), else None: tracing and freezing it again (``write_from_callable``) gives the same graph,
    ~0.25 s later on the tiny BERT. As it is means: no functions (tracing lowers control flow for
    TF.js), each input a placeholder of its spec's dtype and shape, each output a node of the graph."""
    from ..tf.runner import is_frozen
    from ..tf.source import load_graph_def

    if not is_frozen(src) or not src.inputs or not src.outputs:
        return None
    graph_def = src.obj if src.obj is not None else load_graph_def(Path(src.path))
    if graph_def.library.function:
        return None
    nodes = {n.name: n for n in graph_def.node}
    for s in src.inputs:
        node = nodes.get(strip_port(s.name))
        if node is None or node.op != "Placeholder" or tf.as_dtype(node.attr["dtype"].type).name != s.dtype:
            return None
        shape = tf.TensorShape(node.attr["shape"].shape)
        want = [d if isinstance(d, int) else None for d in s.shape] if s.shape is not None else None
        if want is None or shape.rank != len(want) or shape.as_list() != want:
            return None
    if any(tensor_name(o.name).rpartition(":")[0] not in nodes for o in src.outputs):
        return None
    return graph_def


def finish(out_dir: Path, notes: dict[str, Any], input_names: Sequence[str], output_names: Sequence[str]) -> Artifact:
    """The written model as an artifact. Names the source's runner uses that TF.js does not keep
    are recorded in its meta (``renamed``), with any dtype TF.js narrows (``dtype_changes``).
    model.json is read once here (and written again only where the feed metadata is not in it yet)."""
    from .runner import specs_of

    model_json = read_model_json(out_dir)
    record_feed_meta(out_dir, notes, model_json)
    inputs, outputs = specs_of(model_json, out_dir / FILENAME)
    renamed = {**_renamed(input_names, inputs), **_renamed(output_names, outputs)}
    if renamed:
        notes["renamed"] = renamed
    return Artifact(FORMAT, out_dir, inputs, outputs, meta={"kind": kind_of(model_json), **notes})


def record_feed_meta(out_dir: Path, notes: dict[str, Any], model_json: dict[str, Any] | None = None) -> None:
    """Write how the model takes the source's feeds (``input_layout``: e.g. NHWC where the source
    is NCHW; ``fixed_shape``) into model.json's ``userDefinedMetadata.convertkit`` (TF.js keeps it
    as ``model.metadata``), so that ``convertkit validate SOURCE tfjs_dir/`` feeds it rightly later.
    ``model_json``: the file's content when the caller has read it already (updated in place)."""
    feed_meta = {k: notes[k] for k in FEED_META if k in notes}
    if not feed_meta:
        return
    path = out_dir / FILENAME
    model_json = json.loads(path.read_text()) if model_json is None else model_json
    if (model_json.get("userDefinedMetadata") or {}).get("convertkit") == json.loads(json.dumps(feed_meta)):
        return  # written with the model (write_graph_def's metadata)
    model_json.setdefault("userDefinedMetadata", {})["convertkit"] = feed_meta
    path.write_text(json.dumps(model_json))


def _renamed(old: Sequence[str], after: Sequence[TensorSpec]) -> dict[str, str]:
    """Names the source had that the TF.js model lacks, paired in order with its new names."""
    new = [s.name for s in after]
    lost, extra = [n for n in old if n not in new], [n for n in new if n not in old]
    return dict(zip(lost, extra))
