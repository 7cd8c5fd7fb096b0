"""Run an ONNX model in onnxruntime on the CPU."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ...core import Runner
from ...deps import require
from ...errors import ConversionError, first_line
from . import model_path


class OrtRunner(Runner):
    def __enter__(self) -> OrtRunner:
        ort = require("onnxruntime")
        path = model_path(self.artifact.path)
        opts = ort.SessionOptions()
        opts.log_severity_level = 4  # failures are raised with their message; no log spam
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
            if _unknown_written_as_number(self.session):
                self.session = _session_with_dynamic_dims(ort, path, opts)
        except Exception as exc:
            why = first_line(exc, join_lines=True, fallback=False, limit=400)
            raise ConversionError(f"onnxruntime cannot load {path}: {why}",
                                  hint="the model is invalid for this onnxruntime; see the op named above") from exc
        self.inputs = {i.name: i for i in self.session.get_inputs()}
        return self

    def infer(self, feeds: Mapping[str, Any]) -> dict[str, Any]:
        import numpy as np

        cast = {}
        for name, arr in feeds.items():
            want = _NP.get(self.inputs[name].type) if name in self.inputs else None
            cast[name] = arr.astype(want) if want and arr.dtype != want else arr
        try:
            outs = self.session.run(None, cast)
        except Exception as exc:
            why = first_line(exc, join_lines=True, fallback=False, limit=400)
            raise ConversionError(f"onnxruntime failed running {model_path(self.artifact.path)}: {why}") from exc
        return {o.name: np.asarray(v) for o, v in zip(self.session.get_outputs(), outs)}


def _unknown_written_as_number(session: Any) -> bool:
    return any(isinstance(d, int) and d <= 0 for i in session.get_inputs() for d in i.shape)


def _session_with_dynamic_dims(ort: Any, path: Any, opts: Any) -> Any:
    """Inputs whose dims are written -1 or 0 (Paddle2ONNX, older exporters) take any size: the
    session runs the model as load_proto reads it, with those dims unknown."""
    from . import load_proto

    model = load_proto(path)
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


_NP = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
       "tensor(int64)": "int64", "tensor(int32)": "int32", "tensor(int8)": "int8", "tensor(uint8)": "uint8",
       "tensor(bool)": "bool", "tensor(int16)": "int16"}


