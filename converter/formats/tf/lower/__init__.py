"""Our own ONNX -> TensorFlow lowering (issue 13): one small handler per ONNX op (family), registered
by op type and opset range in ``ops_*.py`` modules, over values that carry the permutation from their
ONNX axes to their physical axes (``values.py``). See ``build.lower``.

Importable without TensorFlow or onnx: those are imported when a model is lowered.
"""

from __future__ import annotations

from .build import Lowered, lower, missing_ops
from .context import Ctx, LoweringError
from .registry import lookup, op, supported
from .values import V, channels_last, inverse, is_identity

__all__ = ["Ctx", "Lowered", "LoweringError", "V", "channels_last", "inverse", "is_identity", "lookup",
           "lower", "missing_ops", "op", "supported"]
