"""Hugging Face transformers model directories (``save_pretrained``: config.json + PyTorch weights),
loaded offline and run in torch; exported to ONNX through optimum's exporter (onnx/from_hf.py)."""

from __future__ import annotations

from typing import Any

from ...core import Artifact, Format, Runner
from ...registry import lazy

FORMAT = Format("hf", "Hugging Face transformers model directory")
SOURCE_FORMAT = True  # usable as a source, not as a target
TARGET = False

probe, open_source, describe, op_counts = lazy(__name__, ".source", "probe", "open_source", "describe", "op_counts")


def make_runner(artifact: Artifact, **options: Any) -> Runner:
    from .runner import HfRunner

    return HfRunner(artifact)

