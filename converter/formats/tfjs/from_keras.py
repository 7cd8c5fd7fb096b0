"""Keras -> TF.js: a graph model (any Keras model: traced, frozen, converted) or a layers model
(``tfjs_format="layers"``: the Keras topology + weights, loadable and trainable with
``tf.loadLayersModel``).

tensorflowjs writes layers models from Keras 2 (tf_keras) models only. A Keras 3 model is first
rebuilt in tf_keras from its config and weights (layers.py); the rebuilt model must compute what
the Keras 3 model does on sample inputs, or the export refuses and says why, pointing at
``--tfjs-format graph``, which converts every Keras model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from ...core import Artifact, Export, Format
from ...deps import require
from ...errors import UsageError
from .. import keras as keras_fmt
from . import FORMAT, TFJS_FORMATS
from .from_tf import finish
from .graph import write_from_callable


@dataclass(frozen=True)
class KerasToTfjs(Export):
    name: ClassVar[str] = "keras->tfjs"
    accepts: ClassVar[Format] = keras_fmt.FORMAT
    produces: ClassVar[Format] = FORMAT

    tfjs_format: str = "graph"  # graph | layers

    def __post_init__(self) -> None:
        if self.tfjs_format not in TFJS_FORMATS:
            raise UsageError(f"unknown TF.js format '{self.tfjs_format}'", hint=f"one of: {', '.join(TFJS_FORMATS)}")

    def run(self, src: Artifact, out_dir: Path) -> Artifact:
        tf = require("tensorflow")
        if self.tfjs_format == "layers":
            from .layers import write_layers_model

            notes = write_layers_model(src, out_dir, stage=self.name)
            return finish(out_dir, notes, [s.name for s in src.inputs], [s.name for s in src.outputs])
        from ..keras.runner import keras_callable

        call = keras_callable(src, tf)
        notes = write_from_callable(call.fn, call.input_names, src.inputs, call.output_names, out_dir,
                                    stage=self.name)
        return finish(out_dir, notes, call.input_names, call.output_names)


def is_tf_keras(model: Any) -> bool:
    """Whether ``model`` is a Keras 2 (tf_keras) model, the only kind tensorflowjs writes as layers."""
    return any(c.__module__.split(".")[0] == "tf_keras" for c in type(model).__mro__)
