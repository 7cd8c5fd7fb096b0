"""Keras 3 text classifiers -> TF.js (issue #14): Embedding + LSTM (with dropout, float32 token ids)
and Embedding(mask_zero) + Bidirectional(LSTM), saved with Keras 3, exported through the CLI to
TF.js graph and layers models, each validated in real TF.js (wasm), the layers models trained one
step in TF.js (cpu); the freeze of a Keras 3 SavedModel with the same dropout writes, a model
whose outputs read a variable it writes, and ids a layers model cannot take."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import numpy as np
import pytest

from fixtures.keras_text import VOCAB
from tests.conftest import ROOT, convertkit, need, need_node

TRAIN = Path(__file__).with_name("tfjs_train.mjs")
#: the note the report gives for the range it inferred (fixture: input name)
RANGE_NOTE = "input '{}' sampled in 0..300 (inferred: Embedding 'embed' of 300 rows)"
INPUT = {"text_lstm": "tokens", "text_bilstm": "ids"}


def need_tfjs() -> None:
    need("tensorflow", "tf_keras", "keras", "tensorflowjs")
    need_node()


@pytest.fixture(scope="module")
def text_models(tmp_path_factory: pytest.TempPathFactory) -> dict:
    need("tensorflow", "tf_keras", "keras")
    from fixtures.keras_text import build

    return build(tmp_path_factory.mktemp("keras_text"))


def _export_json(src: Path, out: Path, *args: str) -> dict:
    r = convertkit("export", src, "--to", "tfjs", "-o", out, "--json", *args)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout)


def _weight_names(out: Path) -> list[str]:
    model_json = json.loads((out / "model.json").read_text())
    return [w["name"] for group in model_json["weightsManifest"] for w in group["weights"]]


@pytest.mark.parametrize("name", ["text_lstm", "text_bilstm"])
def test_graph_model_runs_in_tfjs(text_models, tmp_path, name):
    """Was exit 3: "Input 0 of node .../lstm/AssignVariableOp was passed int64 ... expected resource"
    (Keras 3 draws RNN dropout masks at inference); the BiLSTM then aborted TF.js wasm (bool ReverseV2)."""
    need_tfjs()
    report = _export_json(text_models[name]["keras"], tmp_path / "g")
    assert report["verdict"] == "PASSED" and report["exit_code"] == 0
    (out,) = report["parity"]["outputs"]
    assert out["status"] == "ok" and out["max_abs"] < 1e-5 and report["parity"]["samples"] == 3
    # valid token ids in both formats: the range is inferred from the Embedding and stated
    assert report["notes"] == [RANGE_NOTE.format(INPUT[name])]
    assert report["inputs"][0]["int_range"] == [0, VOCAB]
    notes = report["stages"][0]["notes"]
    assert notes["kind"] == "graph-model"
    assert "variable writes no output reads, dropped" not in notes.get("rewrites", {})  # traced stateless
    ops = report["stages"][0]["ops_out"]
    assert "AssignVariableOp" not in ops and ops["GatherV2"] == 1
    if name == "text_bilstm":  # the backward LSTM reverses its bool mask
        assert notes["rewrites"]["bool ReverseV2 run on int32 (TF.js wasm cannot reverse bool)"] == 1


@pytest.mark.parametrize("name", ["text_lstm", "text_bilstm"])
def test_layers_model_matches_and_trains_in_tfjs(text_models, tmp_path, name):
    """Rebuilt in tf_keras, written as a layers model, validated in TF.js, then loaded with
    tf.loadLayersModel and trained one step there: every trainable weight moves."""
    need_tfjs()
    out = tmp_path / "layers"
    report = _export_json(text_models[name]["keras"], out, "--tfjs-format", "layers")
    assert report["verdict"] == "PASSED"
    (parity,) = report["parity"]["outputs"]
    assert parity["status"] == "ok" and parity["max_abs"] < 1e-5
    assert report["notes"] == [RANGE_NOTE.format(INPUT[name])]
    notes = report["stages"][0]["notes"]
    assert notes["kind"] == "layers-model" and notes["rebuilt_in"].startswith("tf_keras ")
    assert notes["rebuild_max_abs_diff"] < 1e-5
    names = _weight_names(out)
    assert "embed/embeddings" in names
    if name == "text_bilstm":  # the names tfjs-layers gives the two directions (was backward_backward_...)
        assert {n.split("/")[1] for n in names if n.startswith("bilstm/")} == {"forward_forward_lstm",
                                                                              "backward_forward_lstm"}

    r = subprocess.run(["node", str(TRAIN), str(out), "--backend", "cpu"], capture_output=True, text=True,
                       timeout=120, cwd=ROOT)
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert r.returncode == 0 and "error" not in result, (result, r.stderr[-2000:])
    assert math.isfinite(result["loss"]) and result["loss"] > 0
    assert result["trainable"] == len(names) and result["changed"] == result["trainable"]


def test_keras3_exported_savedmodel_drops_unread_dropout_writes(text_models, tmp_path):
    """``model.export()`` bakes the dropout-mask seed writes into the SavedModel: the freeze leaves out
    the writes no output reads, and the graph model matches TensorFlow in TF.js."""
    need_tfjs()
    import keras

    import converter

    model = keras.models.load_model(text_models["text_lstm"]["keras"])
    model.export(str(tmp_path / "sm"), format="tf_saved_model", verbose=False)
    feeds = dict(np.load(text_models["text_lstm"]["inputs"]))
    report = converter.export(tmp_path / "sm", to="tfjs", out_dir=tmp_path / "g", feeds=feeds)
    assert report.verdict == "PASSED", report.parity.summary()
    assert report.stages[0].notes["rewrites"]["variable writes no output reads, dropped"] > 0
    assert all(o.max_abs < 1e-5 for o in report.parity.outputs)


def test_a_variable_the_outputs_read_back_is_refused(tmp_path):
    """A function that writes a variable and returns what it wrote keeps state: exit 3, named."""
    need_tfjs()
    import tensorflow as tf

    class Counter(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.seen = tf.Variable(0.0, name="seen")

        @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name="x")])
        def __call__(self, x):
            self.seen.assign_add(1.0)
            return {"y": x * self.seen}

    module = Counter()
    tf.saved_model.save(module, str(tmp_path / "sm"), signatures=module.__call__)
    r = convertkit("export", tmp_path / "sm", "--to", "tfjs", "-o", tmp_path / "out")
    assert r.returncode == 3, r.stderr
    (line,) = r.stderr.strip().splitlines()
    assert "writes variable" in line and "AssignAddVariableOp" in line and "keeps state" in line
    assert not (tmp_path / "out").exists()


def test_negative_ids_layers_model_refused_with_the_reason(text_models, tmp_path):
    """Keras 3 wraps negative ids (ops.take); a layers model cannot: exit 3, one line naming the
    Embedding's rows and the id, nothing written. The graph model takes the same data."""
    need_tfjs()
    ids = np.random.default_rng(3).integers(0, VOCAB, (2, 10)).astype("float32")
    ids[1, 3] = -2
    np.savez(tmp_path / "neg.npz", tokens=ids)
    src = text_models["text_lstm"]["keras"]
    r = convertkit("export", src, "--to", "tfjs", "--tfjs-format", "layers", "--inputs", tmp_path / "neg.npz",
                   "-o", tmp_path / "layers")
    assert r.returncode == 3, r.stderr
    (line,) = r.stderr.strip().splitlines()
    assert ("an Embedding of 300 rows gets id -2: Keras 3 wraps negative ids, tf_keras and TF.js layers models "
            "do not (give ids in 0..300)") in line and "--tfjs-format graph" in line
    assert not (tmp_path / "layers").exists()


def test_gru_reset_after_refused_for_layers_converted_as_graph(tmp_path):
    """tfjs-layers has no reset_after=True GRU (Keras' default): exit 3 before anything is written, naming
    each GRU (also inside Bidirectional), instead of a layers model that fails to load; the graph model passes."""
    need("tensorflow", "keras")
    need_tfjs()
    from converter.formats.keras.source import keras_module

    keras = keras_module("keras")
    keras.utils.set_random_seed(3)
    inp = keras.Input((7,), dtype="int32", name="tokens")
    x = keras.layers.Bidirectional(keras.layers.GRU(4, name="gru"))(keras.layers.Embedding(50, 8)(inp))
    keras.Model(inp, keras.layers.Dense(2)(x)).save(tmp_path / "gru.keras")
    r = convertkit("export", tmp_path / "gru.keras", "--to", "tfjs", "--tfjs-format", "layers", "-o", tmp_path / "l")
    assert r.returncode == 3, r.stderr
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith("convertkit: error: TF.js layers does not support op(s): GRU 'forward_gru' reset_after=true "
                           "(GRUCell does not support reset_after parameter set to true), GRU 'backward_gru'"), line
    assert "use --tfjs-format graph" in line and not (tmp_path / "l").exists()
    r = convertkit("export", tmp_path / "gru.keras", "--to", "tfjs", "-o", tmp_path / "g", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["verdict"] == "PASSED", r.stderr
