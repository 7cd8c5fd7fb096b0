"""``-p simplify`` on ONNX: constant folding, dead-node removal and fusions, through onnxsim.

Why onnxsim rather than onnxruntime's offline optimizer: ORT's offline levels above "basic"
write ORT-only contrib ops (FusedConv, ...) that other runtimes and onnx2tf (the route to TF.js)
cannot read, and at "basic" it folds less. onnxsim's output is plain ONNX that every consumer
reads, and it checks its own result by running both models in onnxruntime. convertkit validates
the result against the original model anyway.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from ..core import Artifact, Format, Pass
from ..deps import require
from ..errors import StageError
from ..formats import onnx as onnx_fmt
from ..quiet import quiet


@dataclass(frozen=True)
class Simplify(Pass):
    name: ClassVar[str] = "simplify"
    accepts: ClassVar[Format] = onnx_fmt.FORMAT
    produces: ClassVar[Format] = onnx_fmt.FORMAT

    def run(self, src: Artifact, out_dir: Path, check: Any = None) -> Artifact:
        onnx = require("onnx")
        onnxsim = require("onnxsim")
        model = onnx_fmt.load_proto(onnx_fmt.model_path(src.path))
        try:
            with quiet("onnxsim"):
                simplified, ok = onnxsim.simplify(model)
        except Exception as exc:  # onnxsim raises its own and onnxruntime's errors
            raise StageError(self.name, f"onnxsim failed: {' '.join(str(exc).split())[:300]}",
                             hint="skip -p simplify for this model") from exc
        if not ok:
            raise StageError(self.name, "onnxsim's own check found the simplified model differs",
                             hint="skip -p simplify for this model")
        path = out_dir / onnx_fmt.FILENAME
        onnx.save(simplified, str(path))
        inputs, outputs = onnx_fmt.io_specs(simplified)
        return Artifact(onnx_fmt.FORMAT, path, inputs, outputs, meta={"tool": f"onnxsim {onnxsim.__version__}"})


PASSES = (Simplify,)
