"""Hugging Face transformers model directories (``save_pretrained``: config.json + PyTorch weights),
loaded offline and run in torch; exported to ONNX through optimum's exporter."""

from __future__ import annotations

from typing import Any

from ...core import Artifact, Format, Runner

FORMAT = Format("hf", "Hugging Face transformers model directory")
SOURCE_FORMAT = True  # usable as a source, not as a target
TARGET = False


def probe(location: str) -> bool:
    from .source import probe as _probe

    return _probe(location)


def open_source(location: str, **options: Any) -> Artifact:
    from .source import open_source as _open

    return _open(location, **options)


def make_runner(artifact: Artifact, **options: Any) -> Runner:
    from .runner import HfRunner

    return HfRunner(artifact)


def op_counts(artifact: Artifact) -> dict[str, int]:
    from .source import op_counts as _ops

    return _ops(artifact)


def describe(artifact: Artifact) -> dict[str, Any]:
    from .source import describe as _describe

    return _describe(artifact)


def _stages() -> tuple[type, ...]:
    from .to_onnx import HfToOnnx

    return (HfToOnnx,)


STAGES = _stages
