"""Integer sample ranges read from the graph (parity.int_ranges)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import need


def _onnx_graph():
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    ids = helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", "seq"])
    tt = helper.make_tensor_value_info("tt", TensorProto.INT64, ["batch", "seq"])
    fl = helper.make_tensor_value_info("bucket", TensorProto.FLOAT, ["batch"])
    cls = helper.make_tensor_value_info("cls", TensorProto.INT64, ["batch"])
    other = helper.make_tensor_value_info("other", TensorProto.INT64, ["batch"])
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    inits = [numpy_helper.from_array(rng.standard_normal((50, 8)).astype(np.float32), "word"),
             numpy_helper.from_array(rng.standard_normal((30, 8)).astype(np.float32), "word2"),
             numpy_helper.from_array(rng.standard_normal((2, 8)).astype(np.float32), "type"),
             numpy_helper.from_array(rng.standard_normal((8, 7)).astype(np.float32), "buck_t"),
             numpy_helper.from_array(np.array([1], np.int64), "ax1"),
             numpy_helper.from_array(np.array(5, np.int64), "depth"),
             numpy_helper.from_array(np.array([0.0, 1.0], np.float32), "onoff")]
    nodes = [helper.make_node("Gather", ["word", "ids"], ["we"], name="g_word"),
             helper.make_node("Reshape", ["ids", "ax1"], ["ids_r"]),
             helper.make_node("Gather", ["word2", "ids_r"], ["we2"], name="g_word2"),
             helper.make_node("Cast", ["tt"], ["tt32"], to=TensorProto.INT32),
             helper.make_node("Gather", ["type", "tt32"], ["te"], name="g_type"),
             helper.make_node("Cast", ["bucket"], ["bi"], to=TensorProto.INT64),
             helper.make_node("Unsqueeze", ["bi", "ax1"], ["bu"]),
             helper.make_node("Gather", ["buck_t", "bu"], ["be"], name="g_bucket", axis=1),
             helper.make_node("OneHot", ["cls", "depth", "onoff"], ["oh"], name="onehot"),
             helper.make_node("Add", ["other", "other"], ["o2"]),
             helper.make_node("Concat", ["we", "te"], ["y"], axis=-1)]
    return helper.make_model(helper.make_graph(nodes, "g", [ids, tt, fl, cls, other], [out], inits))


def test_onnx_walk_through_cast_reshape_unsqueeze_to_gather_and_onehot():
    need("onnx")
    from converter.parity.int_ranges import onnx_ranges

    found = onnx_ranges(_onnx_graph(), ["ids", "tt", "bucket", "cls", "other"])
    assert {k: (r.low, r.high) for k, r in found.items()} == {"ids": (0, 30), "tt": (0, 2), "bucket": (0, 7),
                                                              "cls": (0, 5)}
    assert found["ids"].why == "Gather 'g_word2' on a table of 30 rows"  # the smaller of the two tables
    assert found["bucket"].note() == "input 'bucket' sampled in 0..7 (inferred: Gather 'g_bucket' on a table of 7 rows)"


def test_inferred_ranges_reach_the_specs_user_ranges_win_and_floats_get_whole_numbers(tmp_path):
    need("onnx")
    import onnx

    from converter.api import prepare_inputs
    from converter.formats.onnx import open_source

    path = tmp_path / "g.onnx"
    onnx.save(_onnx_graph(), str(path))
    src = open_source(str(path))
    src2, feeds, notes = prepare_inputs(src, samples=3)
    ranges = {s.name: s.int_range for s in src2.inputs}
    assert ranges == {"ids": (0, 30), "tt": (0, 2), "bucket": (0, 7), "cls": (0, 5), "other": (0, 10)}
    for f in feeds:
        assert f["tt"].max() < 2 and f["ids"].max() < 30 and f["bucket"].dtype == np.float32
        assert (f["bucket"] == np.round(f["bucket"])).all() and 0 <= f["bucket"].min() and f["bucket"].max() < 7
    assert any("input 'tt' sampled in 0..2" in n for n in notes)
    user = ["ids:2,3:int64:0..3", "tt:2,3:int64", "bucket:2", "cls:2:int64", "other:2:int64:5..6"]
    src3, feeds, notes = prepare_inputs(src, user, samples=1)
    ranges = {s.name: s.int_range for s in src3.inputs}
    assert ranges == {"ids": (0, 3), "tt": (0, 2), "bucket": (0, 7), "cls": (0, 5), "other": (5, 6)}
    assert not any("input 'ids'" in n for n in notes)


@pytest.mark.parametrize("library", ["keras", "tf_keras"])
def test_keras_float_input_into_embedding(library):
    need("tensorflow", library)
    from converter.core import Artifact, TensorSpec
    from converter.formats.keras import FORMAT
    from converter.formats.keras.source import keras_module
    from converter.parity.int_ranges import inferred

    k = keras_module(library)
    tok = k.Input((6,), dtype="float32", name="tok")
    ids = k.Input((6,), dtype="int32", name="ids")
    x = k.layers.Embedding(300, 4)(tok)
    y = k.layers.Embedding(20, 4)(k.layers.Reshape((6,))(ids))
    model = k.Model([tok, ids], k.layers.Concatenate()([x, y]))
    src = Artifact(FORMAT, None, obj=model)
    found = inferred(src, [TensorSpec("tok", (None, 6), "float32"), TensorSpec("ids", (None, 6), "int32")])
    assert {n: (r.low, r.high) for n, r in found.items()} == {"tok": (0, 300), "ids": (0, 20)}
    assert found["tok"].why.startswith("Embedding '") and found["tok"].why.endswith("of 300 rows")


def test_tf_signature_and_frozen_graph_gather_onehot_and_cast_float():
    need("tensorflow")
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    from converter.core import TensorSpec
    from converter.deps import require
    from converter.parity.int_ranges import tf_ranges

    tf = require("tensorflow")
    table = tf.Variable(np.random.default_rng(0).standard_normal((40, 4)).astype(np.float32))
    small = tf.constant(np.ones((6, 4), np.float32))

    @tf.function(input_signature=[tf.TensorSpec([None, 5], tf.int32, name="ids"),
                                  tf.TensorSpec([None], tf.float32, name="bucket"),
                                  tf.TensorSpec([None], tf.int64, name="cls"),
                                  tf.TensorSpec([None], tf.int64, name="other")])
    def fn(ids, bucket, cls, other):
        a = tf.gather(table, tf.reshape(ids, [-1]))
        b = tf.gather(small, tf.expand_dims(tf.cast(bucket, tf.int32), 1))
        return tf.reduce_sum(a) + tf.reduce_sum(b) + tf.reduce_sum(tf.one_hot(cls, 9)) + tf.cast(other[0], tf.float32)

    concrete = fn.get_concrete_function()
    names = ["ids", "bucket", "cls", "other"]
    for graph in (concrete.graph, convert_variables_to_constants_v2(concrete).graph):
        found = tf_ranges(graph, names)
        assert {k: (r.low, r.high) for k, r in found.items()} == {"ids": (0, 40), "bucket": (0, 6), "cls": (0, 9)}
    assert TensorSpec  # the specs' names are the placeholders' names
