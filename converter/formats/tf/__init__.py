"""TensorFlow models: SavedModel directories (any signature) and frozen GraphDef ``.pb`` files, run
in TensorFlow itself. Keras models (``.keras``, ``.h5``, Keras SavedModels) are the keras format's."""

from __future__ import annotations

from typing import Any

from ...core import Artifact, Format, Runner
from ...registry import lazy

FORMAT = Format("tf", "TensorFlow SavedModel directory (a signature) or frozen GraphDef .pb, run in TensorFlow")
DEFAULT_SIGNATURE = "serving_default"

probe, open_source, describe = lazy(__name__, ".source", "probe", "open_source", "describe")
#: the pipeline's localisation hook: the first ONNX node onnx2tf gets wrong (localise.py)
first_diverging_node = lazy(__name__, ".localise", "first_diverging_node")


def make_runner(artifact: Artifact, **options: Any) -> Runner:
    from .runner import TfRunner

    return TfRunner(artifact)


def op_counts(artifact: Artifact) -> dict[str, int] | None:
    """Op histogram of a frozen graph (a SavedModel's ops hide behind function calls: not counted)."""
    if artifact.meta.get("kind") != "frozen_graph" or artifact.obj is None:
        return None
    from .graphdef import op_counts as _counts

    return _counts(artifact.obj)


def _stages() -> tuple[type, ...]:
    from .from_onnx import OnnxToTf

    return (OnnxToTf,)


STAGES = _stages
