"""The baseline a user writes by hand today: torch.onnx.export, then onnxruntime once.

    python -m bench.plain_torch_onnx fixtures.torch_models:cnn x:batch,3,32,32 OUT.onnx
"""

from __future__ import annotations

import importlib
import sys

import numpy as np
import onnxruntime as ort
import torch


def main(builder: str, spec: str, out: str) -> None:
    mod, fn = builder.split(":")
    model = getattr(importlib.import_module(mod), fn)()
    name, dims = spec.split(":")[:2]
    shape = [2 if not d.isdigit() else int(d) for d in dims.split(",")]
    x = torch.randn(*shape)
    dyn = {name: {i: torch.export.Dim(d, min=1) for i, d in enumerate(dims.split(",")) if not d.isdigit()}}
    torch.onnx.export(model, (x,), out, dynamo=True, external_data=False, input_names=[name],
                      output_names=["output"], dynamic_shapes=dyn, opset_version=18)
    sess = ort.InferenceSession(out, providers=["CPUExecutionProvider"])
    sess.run(None, {name: np.random.default_rng(0).standard_normal(shape).astype(np.float32)})


if __name__ == "__main__":
    main(*sys.argv[1:4])
