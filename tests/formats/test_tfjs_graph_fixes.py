"""The graph adjustments for TF.js's executor, on hand-built GraphDefs (the e2e tests run real
models through them in TF.js)."""

from __future__ import annotations

import os

import pytest

from tests.conftest import need


@pytest.fixture(scope="module")
def tf():
    os.environ.setdefault("TFDF_DISABLE_WELCOME_MESSAGE", "1")
    need("tensorflow", "tensorflowjs")
    from converter.deps import require

    return require("tensorflow")


def _graph(tf, *nodes: tuple[str, str, list[str]]):
    g = tf.compat.v1.GraphDef()
    for name, op, inputs in nodes:
        n = g.node.add()
        n.name, n.op = name, op
        n.input.extend(inputs)
        n.attr["T"].type = tf.float32.as_datatype_enum
    return g


def test_activations_wasm_cannot_fuse_are_split_out(tf):
    from converter.formats.tfjs.graph_fixes import unfuse_activations

    g = _graph(tf, ("x", "Placeholder", []), ("w", "Const", []), ("b", "Const", []),
               ("dense", "_FusedMatMul", ["x", "w", "b"]), ("relu", "_FusedMatMul", ["x", "w", "b"]),
               ("out", "AddV2", ["dense", "relu"]))
    g.node[3].attr["fused_ops"].list.s.extend([b"BiasAdd", b"Tanh"])
    g.node[4].attr["fused_ops"].list.s.extend([b"BiasAdd", b"Relu"])
    assert unfuse_activations(g) == 1
    nodes = {n.name: n for n in g.node}
    assert nodes["dense"].op == "Tanh" and list(nodes["dense"].input) == ["dense/biasadd"]
    assert list(nodes["dense/biasadd"].attr["fused_ops"].list.s) == [b"BiasAdd"]
    assert list(nodes["relu"].attr["fused_ops"].list.s) == [b"BiasAdd", b"Relu"]  # wasm fuses Relu
    assert list(nodes["out"].input) == ["dense", "relu"]


def test_control_edges_keep_their_meaning_for_tfjs(tf):
    from converter.formats.tfjs.graph_fixes import fix_control_edges

    g = _graph(tf, ("p", "Placeholder", []), ("sw", "Switch", ["p", "p"]), ("pivot", "Identity", ["sw:1"]),
               ("k", "Const", []), ("enter", "Enter", ["p"]), ("wait", "NoOp", ["^k"]),
               ("branch", "Const", ["^pivot"]), ("next", "NextIteration", ["enter", "^wait", "^enter", "^k"]),
               ("out", "Identity", ["branch", "^pivot"]))
    changes = fix_control_edges(g)
    nodes = {n.name: n for n in g.node}
    # edges from a NoOp, an Enter and an input-less Const go; the idle NoOp goes
    assert list(nodes["next"].input) == ["enter"] and "wait" not in nodes
    # a Const guarded by a cond's pivot becomes Identity(Const) with the guard, which TF.js honours
    assert nodes["branch"].op == "Identity" and list(nodes["branch"].input) == ["branch/guarded_value", "^pivot"]
    assert nodes["branch/guarded_value"].op == "Const" and not nodes["branch/guarded_value"].input
    assert list(nodes["out"].input) == ["branch", "^pivot"]  # edges from real nodes stay
    assert changes == {"control edges from NoOp/Enter/Const dropped": 4,  # the NoOp's own ^k too
                       "Const with control inputs -> Identity(Const)": 1}
