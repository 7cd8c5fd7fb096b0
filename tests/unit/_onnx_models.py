"""Tiny ONNX graphs built with onnx.helper for the pass unit tests (seeded, no exporter needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _save(nodes: list, inits: dict[str, np.ndarray], inputs: list, outputs: list, path: Path) -> Path:
    import onnx
    from onnx import helper, numpy_helper

    graph = helper.make_graph(nodes, path.stem, inputs, outputs,
                              [numpy_helper.from_array(v.astype(np.float32) if v.dtype.kind == "f" else v, k)
                               for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _io(name: str, dims: list) -> object:
    from onnx import TensorProto, helper

    return helper.make_tensor_value_info(name, TensorProto.FLOAT, dims)


def mlp(path: Path, seed: int = 0) -> Path:
    """x[N,8] -> Gemm(16) -> Relu -> Gemm(4) -> y"""
    from onnx import helper

    rng = np.random.default_rng(seed)
    inits = {"w1": rng.standard_normal((16, 8)) * 0.5, "b1": rng.standard_normal(16) * 0.1,
             "w2": rng.standard_normal((4, 16)) * 0.5, "b2": rng.standard_normal(4) * 0.1}
    nodes = [helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], name="fc1", transB=1),
             helper.make_node("Relu", ["h"], ["r"], name="relu"),
             helper.make_node("Gemm", ["r", "w2", "b2"], ["y"], name="fc2", transB=1)]
    return _save(nodes, inits, [_io("x", ["N", 8])], [_io("y", ["N", 4])], path)


def residual(path: Path, seed: int = 1) -> Path:
    """x[N,8] -> MatMul(8) -> Add(x) -> y: the MatMul's channels meet the input, nothing can be removed."""
    from onnx import helper

    rng = np.random.default_rng(seed)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"),
             helper.make_node("Add", ["h", "x"], ["y"], name="res")]
    return _save(nodes, {"w": rng.standard_normal((8, 8))}, [_io("x", ["N", 8])], [_io("y", ["N", 8])], path)


def convnet(path: Path, seed: int = 2) -> Path:
    """x[N,3,8,8] -> Conv(6) -> BatchNorm -> Relu -> Conv1x1(4) -> GlobalAveragePool -> Flatten -> Gemm(2)"""
    from onnx import helper

    rng = np.random.default_rng(seed)
    inits = {"c1w": rng.standard_normal((6, 3, 3, 3)) * 0.3, "c1b": rng.standard_normal(6) * 0.1,
             "bn_s": rng.uniform(0.5, 1.5, 6), "bn_b": rng.standard_normal(6) * 0.1,
             "bn_m": rng.standard_normal(6) * 0.1, "bn_v": rng.uniform(0.5, 2.0, 6),
             "c2w": rng.standard_normal((4, 6, 1, 1)) * 0.3, "c2b": rng.standard_normal(4) * 0.1,
             "fw": rng.standard_normal((2, 4)), "fb": rng.standard_normal(2) * 0.1}
    nodes = [helper.make_node("Conv", ["x", "c1w", "c1b"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c1", "bn_s", "bn_b", "bn_m", "bn_v"], ["bn"], name="bn"),
             helper.make_node("Relu", ["bn"], ["r1"], name="relu1"),
             helper.make_node("Conv", ["r1", "c2w", "c2b"], ["c2"], name="conv2"),
             helper.make_node("GlobalAveragePool", ["c2"], ["gap"], name="gap"),
             helper.make_node("Flatten", ["gap"], ["flat"], name="flatten", axis=1),
             helper.make_node("Gemm", ["flat", "fw", "fb"], ["y"], name="head", transB=1)]
    return _save(nodes, inits, [_io("x", ["N", 3, 8, 8])], [_io("y", ["N", 2])], path)


def big_activation(path: Path, seed: int = 3) -> Path:
    """x[N,4] -> MatMul(x1e5 weights: |h| ~ 1e5) -> LayerNormalization -> MatMul -> y (moderate)"""
    from onnx import helper

    rng = np.random.default_rng(seed)
    inits = {"w1": rng.standard_normal((4, 8)) * 3e4, "g": np.ones(8), "b": np.zeros(8),
             "w2": rng.standard_normal((8, 3)) * 0.5}
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"], name="up"),
             helper.make_node("LayerNormalization", ["h", "g", "b"], ["n"], name="norm", axis=-1),
             helper.make_node("MatMul", ["n", "w2"], ["y"], name="down")]
    return _save(nodes, inits, [_io("x", ["N", 4])], [_io("y", ["N", 3])], path)


def artifact(path: Path):
    from converter.formats.onnx import open_source

    return open_source(str(path))


def run(path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
