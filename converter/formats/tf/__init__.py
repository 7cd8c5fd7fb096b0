"""TensorFlow models: SavedModel directories (any signature) and frozen GraphDef ``.pb`` files, run
in TensorFlow itself. Keras models (``.keras``, ``.h5``, Keras SavedModels) are the keras format's."""

from __future__ import annotations

from typing import Any

from ...core import Artifact, Format, Runner

FORMAT = Format("tf", "TensorFlow SavedModel directory (a signature) or frozen GraphDef .pb, run in TensorFlow")
DEFAULT_SIGNATURE = "serving_default"


def probe(location: str) -> bool:
    from .source import probe as _probe

    return _probe(location)


def open_source(location: str, **options: Any) -> Artifact:
    from .source import open_source as _open

    return _open(location, **options)


def make_runner(artifact: Artifact, **options: Any) -> Runner:
    from .runner import TfRunner

    return TfRunner(artifact)


def describe(artifact: Artifact) -> dict[str, Any]:
    from .source import describe as _describe

    return _describe(artifact)


def op_counts(artifact: Artifact) -> dict[str, int] | None:
    """Op histogram of a frozen graph (a SavedModel's ops hide behind function calls: not counted)."""
    if artifact.meta.get("kind") != "frozen_graph" or artifact.obj is None:
        return None
    from .graphdef import op_counts as _counts

    return _counts(artifact.obj)


def first_diverging_node(stage: Any, src: Artifact, result: Artifact, source_map: Any) -> dict[str, Any] | None:
    """The pipeline's localisation hook: the first ONNX node onnx2tf gets wrong (see localise.py)."""
    from .localise import first_diverging_node as _find

    return _find(stage, src, result, source_map)


def _stages() -> tuple[type, ...]:
    from .from_onnx import OnnxToTf

    return (OnnxToTf,)


STAGES = _stages
