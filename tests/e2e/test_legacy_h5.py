"""A legacy Keras 2 ``.h5`` CNN (functional, custom layer names, SeparableConv2D, BatchNormalization,
GlobalAveragePooling2D; built twice in one TF1 graph, so its stored variables are ``block1_bn_1/gamma``
while its layers are ``block1_bn``) as a TF.js layers model: the real CLI writes it, TF.js loads it,
it matches tf_keras, and it trains one step in TF.js. Without convertkit's rewrites
(converter/formats/tfjs/layers_fixes.py) tfjs-layers refuses it: first the SeparableConv2D config
("Fields kernelInitializer, kernelRegularizer and kernelConstraint are invalid for SeparableConv2D"),
then the weights ("Provided weight data has no target variable: block1_bn_1/gamma")."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import h5py

from tests.conftest import ROOT, convertkit
from tests.e2e.test_to_tfjs import TRAIN, need_tfjs

#: the fixture's layers that own weights, as TF.js builds their weight names (<layer>/<weight>)
WEIGHTS = {"stem_conv": ["kernel"], "stem_bn": ["gamma", "beta", "moving_mean", "moving_variance"],
           "block1_sepconv": ["depthwise_kernel", "pointwise_kernel", "bias"],
           "block1_bn": ["gamma", "beta", "moving_mean", "moving_variance"], "predictions": ["kernel", "bias"]}


def _stored_names(h5: Path) -> dict[str, list[str]]:
    with h5py.File(h5, "r") as f:
        weights = f["model_weights"]
        return {layer: [n.decode() if isinstance(n, bytes) else n for n in weights[layer].attrs["weight_names"]]
                for layer in WEIGHTS}


def test_legacy_h5_cnn_loads_matches_and_trains_as_a_tfjs_layers_model(tf_fixtures, tmp_path):
    need_tfjs()
    h5 = tf_fixtures["keras_legacy_h5"]["h5"]
    # the fixture has what broke the load: variable names that are not <layer>/<weight>, and the
    # kernel_* keys tf_keras writes for a SeparableConv2D
    assert _stored_names(h5)["block1_bn"][0] == "block1_bn_1/gamma:0"
    with h5py.File(h5, "r") as f:
        config = json.loads(f.attrs["model_config"])
    stored = {layer["config"]["name"]: layer["config"] for layer in config["config"]["layers"]}
    assert stored["block1_sepconv"]["kernel_initializer"] is not None

    out = tmp_path / "web"
    r = convertkit("export", h5, "--to", "tfjs", "--tfjs-format", "layers", "-o", out, "--json")
    assert r.returncode == 0, r.stderr[-3000:]
    report = json.loads(r.stdout)
    assert report["verdict"] == "PASSED" and report["source"]["kind"] == "h5"
    assert all(o["max_abs"] < 1e-5 and o["cosine"] > 0.99999 for o in report["parity"]["outputs"])

    notes = report["stages"][0]["notes"]
    assert notes["kind"] == "layers-model"
    assert notes["config_keys_dropped"] == [
        "block1_sepconv: kernel_initializer, kernel_regularizer, kernel_constraint (SeparableConv2D)"]
    assert sorted(notes["weights_renamed"]) == sorted(
        f"{layer}: {layer}_1/* -> {layer}/* ({len(names)} weights)" for layer, names in WEIGHTS.items())

    model_json = json.loads((out / "model.json").read_text())
    layers = {layer["config"]["name"]: layer for layer in model_json["modelTopology"]["model_config"]["config"]["layers"]}
    sep = layers["block1_sepconv"]["config"]
    assert not {"kernel_initializer", "kernel_regularizer", "kernel_constraint"} & sep.keys()
    assert sep["depthwise_initializer"] and sep["pointwise_initializer"]  # what SeparableConv2D uses is kept
    manifest = sorted(w["name"] for group in model_json["weightsManifest"] for w in group["weights"])
    assert manifest == sorted(f"{layer}/{w}" for layer, names in WEIGHTS.items() for w in names)

    # tf.loadLayersModel + compile + one trainOnBatch in Node: every trainable weight moves
    r = subprocess.run(["node", str(TRAIN), str(out), "--backend", "cpu"], capture_output=True, text=True,
                       timeout=120, cwd=ROOT)
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert r.returncode == 0 and "error" not in result, (result, r.stderr[-2000:])
    assert math.isfinite(result["loss"]) and result["loss"] > 0
    assert result["weights"] == 14 and result["trainable"] == 10 and result["changed"] == 10
