"""parity.strides: the total stride of Keras configs (Keras 2 and 3 records, live tuples and JSON
lists, Sequential chains) and TF.js graph nodes in any order."""

from __future__ import annotations

from converter.parity.strides import inbound_layers, keras_stride, longest, tfjs_graph_stride


def _k3(name: str, cls: str, inputs: tuple[str, ...], **cfg: object) -> dict:
    args = tuple({"class_name": "__keras_tensor__", "config": {"keras_history": (i, 0, 0)}} for i in inputs)
    return {"class_name": cls, "name": name, "config": {"name": name, **cfg},
            "inbound_nodes": [{"args": (args,) if len(args) > 1 else args, "kwargs": {}}] if inputs else []}


def test_keras3_functional_takes_the_deepest_path():
    layers = [_k3("x", "InputLayer", ()), _k3("c1", "Conv2D", ("x",), strides=(2, 2)),
              _k3("c2", "Conv2D", ("c1",), strides=(2, 2)), _k3("p", "MaxPooling2D", ("c2",), pool_size=(2, 2),
                                                                strides=None),
              _k3("side", "Conv2D", ("x",), strides=(1, 1)), _k3("cat", "Concatenate", ("p", "side"))]
    assert keras_stride({"name": "m", "layers": layers}) == 8
    assert inbound_layers(layers[-1]["inbound_nodes"][0]) == ["p", "side"]


def test_keras2_records_and_sequential_chains():
    k2 = [{"class_name": "InputLayer", "config": {"name": "x"}, "inbound_nodes": []},
          {"class_name": "SeparableConv2D", "config": {"name": "s", "strides": [2, 2]}, "inbound_nodes": [[["x", 0, 0, {}]]]},
          {"class_name": "AveragePooling2D", "config": {"name": "a", "pool_size": [3, 3], "strides": [3, 3]},
           "inbound_nodes": [[["s", 0, 0, {}]]]}]
    assert keras_stride({"class_name": "Functional", "config": {"layers": k2}}) == 6
    seq = [{"class_name": "Conv1D", "config": {"strides": 2}}, {"class_name": "Dense", "config": {}},
           {"class_name": "MaxPooling1D", "config": {"pool_size": 2, "strides": None}}]
    assert keras_stride({"class_name": "Sequential", "config": {"layers": seq}}) == 4
    assert keras_stride({"class_name": "Sequential", "config": seq}) == 4  # an old Sequential: a bare list


def test_tfjs_graph_nodes_in_any_order():
    nodes = [{"name": "pool", "op": "MaxPool", "input": ["conv:0"], "attr": {"strides": {"list": {"i": ["1", "2", "2", "1"]}}}},
             {"name": "conv", "op": "Conv2D", "input": ["x", "w"], "attr": {"strides": {"list": {"i": ["1", "4", "4", "1"]}}}},
             {"name": "x", "op": "Placeholder"}, {"name": "w", "op": "Const"},
             {"name": "y", "op": "AddV2", "input": ["pool", "^x"]}]
    assert tfjs_graph_stride(nodes) == 8


def test_longest_survives_a_cycle():
    assert longest({"a": (["b"], 2), "b": (["a"], 3)}) in (6, 3, 2)
