"""TfjsRunner round trip: tiny seeded tf_keras models, converted with the tensorflowjs Python API
to layers and graph format, run in real TF.js (Node, wasm and cpu backends), compared with Keras."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from converter.core import Artifact, Format
from converter.errors import ConversionError, InputError, MissingDependencyError
from converter.formats.tfjs.runner import TfjsRunner, read_specs
from tests.conftest import need, need_node

TFJS = Format("tfjs")
ATOL = 1e-5


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Two seeded Keras models, their TF.js conversions, feeds and Keras outputs."""
    # tensorflowjs imports tensorflow_decision_forests, whose welcome banner imports IPython (not
    # installed) whenever sys.stdout is not fd 1/2, as under pytest's capture.
    os.environ.setdefault("TFDF_DISABLE_WELCOME_MESSAGE", "1")
    need("tensorflow", "tf_keras", "tensorflowjs")
    need_node()
    from converter.deps import require

    tf = require("tensorflow")  # sets TF_ENABLE_ONEDNN_OPTS=0 first (oneDNN ops break the converter)
    keras = require("tf_keras")
    tfjs = require("tensorflowjs")
    tf.random.set_seed(0)
    rng = np.random.default_rng(0)
    root = tmp_path_factory.mktemp("tfjs")

    a, b = keras.Input((4,), name="a"), keras.Input((6,), name="b")
    h = keras.layers.Concatenate()([keras.layers.Dense(5, activation="relu")(a), b])
    two = keras.Model([a, b], [keras.layers.Dense(3, name="head1")(h), keras.layers.Dense(2, name="head2")(h)])
    ids = keras.Input((3,), dtype="int64", name="ids")
    emb = keras.layers.GlobalAveragePooling1D()(keras.layers.Embedding(10, 4)(ids))
    embed = keras.Model(ids, keras.layers.Dense(2, name="score")(emb))

    out = {}
    for name, model, feeds in [
        ("two", two, {"a": rng.standard_normal((2, 4)).astype("float32"),
                      "b": rng.standard_normal((2, 6)).astype("float32")}),
        ("embed", embed, {"ids": rng.integers(0, 10, (2, 3)).astype("int64")}),
    ]:
        tfjs.converters.save_keras_model(model, str(root / name / "layers"))
        tf.saved_model.save(model, str(root / name / "saved_model"))
        tfjs.converters.convert_tf_saved_model(str(root / name / "saved_model"), str(root / name / "graph"))
        ref = model([feeds[i] for i in model.input_names], training=False)
        ref = ref if isinstance(ref, list) else [ref]
        out[name] = {"dir": root / name, "feeds": feeds,
                     "ref": {n: np.asarray(r) for n, r in zip(model.output_names, ref)}}
    return out


@pytest.mark.parametrize("backend", ["wasm", "cpu"])
@pytest.mark.parametrize("kind", ["layers", "graph"])
def test_two_input_model_matches_keras(models, kind, backend):
    m = models["two"]
    with TfjsRunner(Artifact(TFJS, m["dir"] / kind), backend=backend) as r:
        got = r.infer(m["feeds"])
        assert r.info["backend"] == backend and r.info["format"] == f"{kind}-model"
        assert r.dtype_changes == ()
    assert sorted(got) == ["head1", "head2"]
    for name, ref in m["ref"].items():
        assert got[name].dtype == np.float32 and got[name].shape == ref.shape
        np.testing.assert_allclose(got[name], ref, atol=ATOL, rtol=0)


@pytest.mark.parametrize("kind", ["layers", "graph"])
def test_specs_read_from_model_json(models, kind):
    inputs, outputs = read_specs(models["two"]["dir"] / kind)
    assert [(s.name, s.shape, s.dtype) for s in inputs] == [("a", (None, 4), "float32"), ("b", (None, 6), "float32")]
    assert sorted(s.name for s in outputs) == ["head1", "head2"]


def test_int64_feed_is_sent_as_int32_and_recorded(models):
    m = models["embed"]
    artifact = Artifact(TFJS, m["dir"] / "graph")
    with TfjsRunner(artifact) as r:
        assert [(s.name, s.dtype) for s in r.input_specs()] == [("ids", "int64")]  # as declared
        got = r.infer(m["feeds"])
        assert [(c.name, c.from_dtype, c.to_dtype) for c in r.dtype_changes] == [("ids", "int64", "int32")]
        with pytest.raises(InputError, match="outside int32"):
            r.infer({"ids": np.full((1, 3), 2**40, np.int64)})
    np.testing.assert_allclose(got["score"], m["ref"]["score"], atol=ATOL, rtol=0)


def test_layers_model_with_int64_input_cannot_be_fed(models):
    # tfjs-layers keeps the InputLayer's int64 dtype but has no int64 tensors: a TF.js limitation.
    with TfjsRunner(Artifact(TFJS, models["embed"]["dir"] / "layers")) as r:
        with pytest.raises(ConversionError, match="int64"):
            r.infer(models["embed"]["feeds"])


def test_bad_feeds_are_input_errors_and_the_runner_survives(models):
    m = models["two"]
    with TfjsRunner(Artifact(TFJS, m["dir"] / "graph")) as r:
        with pytest.raises(InputError, match="unknown input 'c'"):
            r.infer({**m["feeds"], "c": np.zeros((2, 1), np.float32)})
        with pytest.raises(InputError, match=r"expects \[\?,4\]"):
            r.infer({**m["feeds"], "a": np.zeros((2, 5), np.float32)})
        with pytest.raises(InputError, match="providing the following inputs"):
            r.infer({"a": m["feeds"]["a"]})
        np.testing.assert_allclose(r.infer(m["feeds"])["head1"], m["ref"]["head1"], atol=ATOL, rtol=0)


def test_unloadable_model_is_an_input_error(models, tmp_path):
    shutil.copytree(models["two"]["dir"] / "graph", tmp_path / "m")
    for shard in (tmp_path / "m").glob("*.bin"):
        shard.unlink()
    with pytest.raises(InputError, match="could not load"):
        with TfjsRunner(Artifact(TFJS, tmp_path / "m")):
            pass


def test_missing_npm_packages_name_the_install_command(tmp_path, monkeypatch):
    monkeypatch.setenv("CONVERTKIT_NODE_MODULES", str(tmp_path))
    (tmp_path / "model.json").write_text("{}")
    with pytest.raises(MissingDependencyError, match="npm ci --prefix converter/formats/tfjs/node|node"):
        with TfjsRunner(Artifact(TFJS, tmp_path)):
            pass


def test_prestarted_node_is_taken_by_the_next_runner_and_an_unused_one_exits(models, tmp_path, monkeypatch):
    """prestart(): Node and TF.js start while Python converts; the next runner on that backend only
    loads its model. One that nobody takes ends quietly when convertkit closes its stdin."""
    from converter.formats.tfjs import runner as runner_mod

    m = models["two"]
    assert runner_mod.prestart("cpu")
    waiting = runner_mod._PRESTARTED[runner_mod._pool_key("cpu")]
    with TfjsRunner(Artifact(TFJS, m["dir"] / "graph"), backend="cpu") as r:
        assert r._node is waiting and runner_mod._pool_key("cpu") not in runner_mod._PRESTARTED
        np.testing.assert_allclose(r.infer(m["feeds"])["head1"], m["ref"]["head1"], atol=ATOL, rtol=0)
    assert waiting.proc.returncode == 0

    assert runner_mod.prestart("wasm")
    unused = runner_mod._PRESTARTED.pop(runner_mod._pool_key("wasm"))
    unused.stop()
    assert unused.proc.returncode == 0 and not any("Error" in line for line in unused.stderr)
    # a Node that died while waiting is not handed out: the runner starts its own
    assert runner_mod.prestart("cpu")
    dead = runner_mod._PRESTARTED[runner_mod._pool_key("cpu")]
    dead.proc.kill()
    dead.proc.wait()
    with TfjsRunner(Artifact(TFJS, m["dir"] / "layers"), backend="cpu") as r:
        assert r._node is not dead
        np.testing.assert_allclose(r.infer(m["feeds"])["head2"], m["ref"]["head2"], atol=ATOL, rtol=0)
    # one nobody takes exits by itself after PRESTART_IDLE_S (a long-lived session holds no Node for long)
    monkeypatch.setattr(runner_mod, "PRESTART_IDLE_S", 1)
    assert runner_mod.prestart("cpu")
    idle = runner_mod._PRESTARTED[runner_mod._pool_key("cpu")]
    assert idle.proc.wait(timeout=30) == 0
    with TfjsRunner(Artifact(TFJS, m["dir"] / "graph"), backend="cpu") as r:  # a fresh one instead
        assert r._node is not idle
        np.testing.assert_allclose(r.infer(m["feeds"])["head1"], m["ref"]["head1"], atol=ATOL, rtol=0)
    # without the npm packages prestart declines, and the runner names the fix as before
    monkeypatch.setenv("CONVERTKIT_NODE_MODULES", str(tmp_path))
    assert not runner_mod.prestart("wasm")
