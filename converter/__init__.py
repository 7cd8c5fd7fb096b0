"""convertkit: convert PyTorch and TensorFlow models to ONNX and TF.js, and prove the result
computes what the original did.

Public API: :func:`export`, :func:`optimize`, :func:`validate`, :func:`inspect`, :func:`load`; the core types;
the errors. Importing this package imports no ML framework.
"""

from __future__ import annotations

from .api import export, inspect, load, optimize, validate
from .core import Artifact, Export, Format, Pass, Pipeline, Runner, Stage, TensorSpec, Tolerance
from .errors import (ConversionError, ConvertkitError, InputError, MissingDependencyError, ParityError, StageError,
                     UnsupportedOpError, UsageError)

__version__ = "0.1.0"
__all__ = ["export", "optimize", "validate", "inspect", "load", "Artifact", "Export", "Format", "Pass", "Pipeline", "Runner",
           "Stage", "TensorSpec", "Tolerance", "ConvertkitError", "ConversionError", "InputError",
           "MissingDependencyError", "ParityError", "StageError", "UnsupportedOpError", "UsageError"]
