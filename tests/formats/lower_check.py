"""Shared by the CNN/RNN lowering tests: conformance data, torch export, onnxruntime reference,
lowered-vs-onnxruntime checks, the conv/Transpose graph walk, and ONNX's light models with random
weights. numpy at import; frameworks inside the functions."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def node_dir() -> Path | None:
    try:
        import onnx
    except ImportError:
        return None
    return Path(os.path.dirname(onnx.__file__)) / "backend" / "test" / "data" / "node"


def export_torch(module, args, path: Path, dynamic: dict[str, dict[int, str]]) -> object:
    """module -> ONNX (TorchScript exporter: fast, and it keeps the dynamic axes asked for)."""
    import onnx
    import torch

    names = list(dynamic) if dynamic else [f"in{i}" for i in range(len(args))]
    with torch.no_grad():
        torch.onnx.export(module, tuple(torch.from_numpy(a) for a in args), str(path), dynamo=False,
                          input_names=names, output_names=["y"], dynamic_axes=dynamic, opset_version=17)
    return onnx.load(str(path))


def ort_run(model, feeds: dict) -> list[np.ndarray]:
    import onnxruntime as ort

    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def check(model, feed_sets: list[dict], atol: float = 1e-4):
    """Lower once (dynamic dims stay dynamic), then match onnxruntime on every feed set."""
    from converter.formats.tf.lower.harness import lower_model, run

    lowered = lower_model(model)
    for feeds in feed_sets:
        want = ort_run(model, feeds)
        got = run(lowered, model, feeds)
        for g, w in zip(got, want):
            assert g.shape == w.shape
            np.testing.assert_allclose(g, w, atol=atol, rtol=1e-4)
    return lowered


def rand(seed: int, *shape: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def conv_ops(graph_def) -> set[str]:
    return {n.name for n in graph_def.node if n.op in ("Conv2D", "DepthwiseConv2dNative", "Conv3D", "_FusedConv2D",
                                                  "FusedDepthwiseConv2dNative")}


def transposes_between_convs(graph_def) -> list[str]:
    """Transpose nodes with a conv both upstream and downstream of them."""
    inputs = {n.name: [i.lstrip("^").split(":")[0] for i in n.input] for n in graph_def.node}
    outputs: dict[str, list[str]] = {}
    for name, ins in inputs.items():
        for i in ins:
            outputs.setdefault(i, []).append(name)
    convs = conv_ops(graph_def)

    def reaches(start: str, edges: dict) -> bool:
        seen, todo = set(), list(edges.get(start, []))
        while todo:
            n = todo.pop()
            if n in convs:
                return True
            if n not in seen:
                seen.add(n)
                todo.extend(edges.get(n, []))
        return False

    return [n.name for n in graph_def.node if n.op == "Transpose" and reaches(n.name, inputs)
            and reaches(n.name, outputs)]


def light_with_random_weights(path: Path, seed: int = 0):
    """A light model with seeded random weights in place of its constant ones (constant weights make
    every class equally likely, which would hide errors): He-scaled conv/fc weights, BN scales and
    variances in [0.5, 1.5], small biases and means."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    rng = np.random.default_rng(seed)
    shapes = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    use = {i: (n.op_type, k) for n in reversed(graph.node) for k, i in enumerate(n.input)}
    kept = []
    for node in graph.node:
        if node.op_type != "ConstantOfShape" or node.input[0] not in shapes:
            kept.append(node)
            continue
        shape = [int(v) for v in shapes[node.input[0]]]
        op, k = use.get(node.output[0], ("", 0))
        if op == "BatchNormalization" and k in (1, 4):
            arr = rng.uniform(0.5, 1.5, shape)
        elif len(shape) > 1:
            arr = rng.standard_normal(shape) * np.sqrt(2.0 / max(int(np.prod(shape[1:])), 1))
        else:
            arr = rng.standard_normal(shape) * 0.1
        graph.initializer.append(numpy_helper.from_array(arr.astype(np.float32), node.output[0]))
    del graph.node[:]
    graph.node.extend(kept)
    return model
