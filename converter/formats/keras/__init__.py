"""Keras models, classified by content and loaded by the library that wrote them: a Keras 3
``.keras`` archive (keras 3; a tf_keras-written one by tf_keras), a legacy HDF5 ``.h5`` full model
(tf_keras; keras 3 if Keras 3 wrote it) and a tf_keras SavedModel directory (with
``keras_metadata.pb``). Run in Keras itself, in inference mode."""

from __future__ import annotations

from typing import Any

from ...core import Artifact, Format, Runner
from ...registry import lazy

FORMAT = Format("keras", "Keras model (.keras archive, legacy .h5, tf_keras SavedModel), run in Keras")

probe, open_source, describe = lazy(__name__, ".source", "probe", "open_source", "describe")


def make_runner(artifact: Artifact, **options: Any) -> Runner:
    from .runner import KerasRunner

    return KerasRunner(artifact)
