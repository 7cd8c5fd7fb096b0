"""PyTorch models: ExportedProgram ``.pt2``, TorchScript archives, ``package.module:callable``
import paths (with optional ``--weights``), pickled modules (only when trusted), and in-memory
``nn.Module`` objects from the Python API."""

from __future__ import annotations

from typing import Any

from ...core import Artifact, Format, Runner

FORMAT = Format("torch", "PyTorch model (.pt2 ExportedProgram, TorchScript, import path, nn.Module)")
SOURCE_FORMAT = True  # usable as a source, not as a target
TARGET = False


def probe(location: str) -> bool:
    from .source import probe as _probe

    return _probe(location)


def open_source(location: str, **options: Any) -> Artifact:
    from .source import open_source as _open

    return _open(location, **options)


def make_runner(artifact: Artifact, **options: Any) -> Runner:
    from .runner import TorchRunner

    return TorchRunner(artifact)


def op_counts(artifact: Artifact) -> dict[str, int]:
    from .source import op_counts as _ops

    return _ops(artifact)


def describe(artifact: Artifact) -> dict[str, Any]:
    from .source import describe as _describe

    return _describe(artifact)
