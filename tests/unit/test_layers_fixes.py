"""The rewrites layers_fixes.py applies to tensorflowjs's output, on the shapes of names and configs
seen in the wild (the e2e proof that TF.js then loads the model: tests/e2e/test_legacy_h5.py)."""

from __future__ import annotations

import pytest

from converter.formats.tfjs.layers_fixes import _layer_renames, drop_separable_kernel_keys, rename_weights


def _new(layer: str, names: list[str]) -> list[str]:
    return [n if r is None else r.new for n, r in zip(names, _layer_renames(layer, names))]


@pytest.mark.parametrize(("layer", "stored", "want"), [
    # built twice in one TF1 graph: the variables got a _1 suffix the layer name lacks (tfjs#755)
    ("block1_bn", ["block1_bn_1/gamma", "block1_bn_1/beta"], ["block1_bn/gamma", "block1_bn/beta"]),
    # one weight: its own scope is the prefix
    ("stem_conv", ["stem_conv_1/kernel"], ["stem_conv/kernel"]),
    # built under an outer name scope
    ("head", ["backbone/head/kernel", "backbone/head/bias"], ["head/kernel", "head/bias"]),
    # an RNN's cell scope goes with the prefix: TF.js names LSTM weights lstm/kernel
    ("lstm", ["lstm_1/lstm_cell_2/kernel", "lstm_1/lstm_cell_2/recurrent_kernel", "lstm_1/lstm_cell_2/bias"],
     ["lstm/kernel", "lstm/recurrent_kernel", "lstm/bias"]),
    # a wrapper: only the shared outer scope is replaced, the inner layers' scopes stay
    ("bidi", ["bidi_1/forward_gru/kernel", "bidi_1/backward_gru/kernel"],
     ["bidi/forward_gru/kernel", "bidi/backward_gru/kernel"]),
    # no scope at all
    ("scale", ["alpha"], ["scale/alpha"]),
    # names TF.js already matches are left alone
    ("dense", ["dense/kernel", "dense/bias"], ["dense/kernel", "dense/bias"]),
])
def test_stored_weight_names_become_layer_slash_weight(layer, stored, want):
    assert _new(layer, stored) == want


def test_renames_pair_with_manifest_entries_in_order_and_are_noted_per_layer():
    groups = [[{"name": "a_1/kernel"}, {"name": "b/kernel"}, {"name": "a_1/bias"}]]
    renames = [*_layer_renames("a", ["a_1/kernel"]), None, *_layer_renames("a", ["a_1/bias"])]
    assert rename_weights(groups, renames) == ["a: a_1/* -> a/* (2 weights)"]
    assert [e["name"] for e in groups[0]] == ["a/kernel", "b/kernel", "a/bias"]
    with pytest.raises(ValueError, match="do not pair"):
        rename_weights([[{"name": "x/kernel"}]], _layer_renames("a", ["a_1/kernel"]))


def test_separable_conv_loses_only_the_kernel_keys_it_never_uses():
    config = {"class_name": "Functional", "config": {"layers": [
        {"class_name": "SeparableConv2D", "config": {"name": "sep", "kernel_initializer": {"class_name": "GlorotUniform"},
                                                     "kernel_regularizer": None, "kernel_constraint": None,
                                                     "depthwise_initializer": {}, "pointwise_initializer": {}}},
        {"class_name": "Conv2D", "config": {"name": "conv", "kernel_initializer": {"class_name": "GlorotUniform"}}},
    ]}}
    assert drop_separable_kernel_keys(config) == [
        "sep: kernel_initializer, kernel_regularizer, kernel_constraint (SeparableConv2D)"]
    sep, conv = (layer["config"] for layer in config["config"]["layers"])
    assert set(sep) == {"name", "depthwise_initializer", "pointwise_initializer"}
    assert "kernel_initializer" in conv  # a Conv2D's kernel is real
    assert drop_separable_kernel_keys(config) == []  # nothing left to drop
