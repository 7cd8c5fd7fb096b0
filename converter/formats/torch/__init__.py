"""PyTorch models: ExportedProgram ``.pt2``, TorchScript archives, ``package.module:callable``
import paths (with optional ``--weights``), pickled modules (only when trusted), and in-memory
``nn.Module`` objects from the Python API."""

from __future__ import annotations

from typing import Any

from ...core import Artifact, Format, Runner
from ...registry import lazy

FORMAT = Format("torch", "PyTorch model (.pt2 ExportedProgram, TorchScript, import path, nn.Module)")
SOURCE_FORMAT = True  # usable as a source, not as a target
TARGET = False

probe, open_source, describe, op_counts = lazy(__name__, ".source", "probe", "open_source", "describe", "op_counts")


def make_runner(artifact: Artifact, **options: Any) -> Runner:
    from .runner import TorchRunner

    return TorchRunner(artifact)
