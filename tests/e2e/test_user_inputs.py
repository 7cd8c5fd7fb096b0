"""What a new user meets first with their own inputs and files (issue 14): an OUTDIR that cannot be
written, temporary directories left by killed runs, inputs the source model cannot run, real data
whose domain the extra samples must respect, and integer inputs that index a table."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import ROOT, convertkit, need, need_node


def _mlp(path: Path, features: int = 4, dims: tuple = (1, 4)) -> Path:
    """x[dims] @ W[features, 3] + b, seeded weights."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(14)
    w = numpy_helper.from_array(rng.standard_normal((features, 3)).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.standard_normal((3,)).astype(np.float32), "b")
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, list(dims))
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [*dims[:-1], 3])
    nodes = [helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("Add", ["m", "b"], ["y"])]
    model = helper.make_model(helper.make_graph(nodes, "mlp", [x], [y], [w, b]),
                              opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def _one_error_line(r: subprocess.CompletedProcess, code: int) -> str:
    assert r.returncode == code, r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("convertkit: error:")]
    assert len(lines) == 1, r.stderr
    return lines[0]


# -- OUTDIR that cannot be written ---------------------------------------------------------------


@pytest.mark.parametrize("where", ["proc", "under_proc", "under_a_file"])
def test_outdir_whose_parent_cannot_be_made_exits_2(tmp_path, where):
    need("onnx", "onnxruntime")
    src = _mlp(tmp_path / "m.onnx")
    (tmp_path / "a_file").write_text("x")
    out = {"proc": Path("/proc/somewhere"), "under_proc": Path("/proc/convertkit-nope/out"),
           "under_a_file": tmp_path / "a_file" / "out"}[where]
    line = _one_error_line(convertkit("optimize", src, "-p", "simplify", "-o", out), 2)
    assert f"cannot write the output directory {out}" in line and "give -o a path" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "m.onnx"]


def test_outdir_in_a_read_only_directory_exits_2():
    """A directory without write permission (run as an unprivileged user when the tests run as root,
    whom permission bits do not stop)."""
    need("onnx", "onnxruntime")
    base = Path(tempfile.mkdtemp(prefix="convertkit-ro-"))
    try:
        base.chmod(0o755)
        src = _mlp(base / "m.onnx")
        src.chmod(0o644)
        ro = base / "ro"
        ro.mkdir(mode=0o555)
        ro.chmod(0o555)
        argv = [sys.executable, "-m", "converter.cli", "optimize", str(src), "-p", "simplify", "-o", str(ro / "out")]
        if os.geteuid() == 0:
            argv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *argv]
        env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "HOME": str(base)}
        r = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
        line = _one_error_line(r, 2)
        assert f"cannot write the output directory {ro / 'out'}: {ro} is not writable" in line
        assert list(ro.iterdir()) == []
    finally:
        (base / "ro").chmod(0o755)
        import shutil

        shutil.rmtree(base, ignore_errors=True)


# -- temporary directories of killed runs ------------------------------------------------------------


def _temp_dir_of_a_killed_run(dest: Path) -> Path:
    """A process makes its temporary directory beside ``dest`` and dies without cleaning up (as under kill -9)."""
    code = ("import os, sys; from pathlib import Path; from converter.fsutil import owned_tempdir; "
            "print(owned_tempdir(Path(sys.argv[1]), 'tmp'), flush=True); os._exit(0)")
    r = subprocess.run([sys.executable, "-c", code, str(dest)], cwd=ROOT, capture_output=True, text=True, check=True)
    return Path(r.stdout.strip())


def test_stale_temp_dirs_of_dead_owners_are_removed_live_ones_kept(tmp_path):
    need("onnx", "onnxruntime")
    from converter.fsutil import owned_tempdir

    src = _mlp(tmp_path / "m.onnx")
    out = tmp_path / "out"
    dead = [_temp_dir_of_a_killed_run(out) for _ in range(2)]
    live = owned_tempdir(out, "work")  # this test process owns it, and runs
    foreign = tmp_path / ".out.tmp-notours"  # no owner file: not known to be stale, kept
    foreign.mkdir()
    assert all(d.is_dir() for d in dead)
    r = convertkit("optimize", src, "-p", "simplify", "-o", out)
    assert r.returncode == 0, r.stderr
    assert not any(d.exists() for d in dead)
    assert live.is_dir() and foreign.is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([".out.tmp-notours", live.name, "m.onnx", "out"])
    assert sorted(p.name for p in out.iterdir()) == ["model.d.ts", "model.js", "model.onnx", "report.json"]


# -- inputs the source model cannot run ------------------------------------------------------------


def test_input_the_onnx_source_cannot_run_exits_2_before_any_export(tmp_path):
    need("onnx", "onnxruntime")
    src = _mlp(tmp_path / "m.onnx")
    line = _one_error_line(convertkit("optimize", src, "-p", "simplify", "-i", "x:1,5", "-o", tmp_path / "out"), 2)
    assert line.startswith("convertkit: error: the source model does not run on these inputs: onnxruntime failed")
    assert "Got: 5 Expected: 4" in line and line.endswith("(check --input / --inputs; it was given x[1,5] float32)")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


@pytest.mark.parametrize("to", ["onnx", "tfjs"])
def test_input_the_torch_source_cannot_run_exits_2_not_3(tmp_path, to):
    """The mlp fixture takes 16 features; the route through TF.js runs the source half in a child process."""
    need("torch")
    line = _one_error_line(convertkit("export", "fixtures.torch_models:mlp", "-i", "x:1,5", "--to", to,
                                      "-o", tmp_path / "out"), 2)
    assert line == ("convertkit: error: the source model does not run on these inputs: RuntimeError: mat1 and mat2 "
                    "shapes cannot be multiplied (1x5 and 16x32) (check --input / --inputs; it was given x[1,5] float32)")
    assert list(tmp_path.iterdir()) == []


# -- real data: the other samples keep to its domain; NaN/Inf in the reference --------------------


def _domain_ops(path: Path) -> Path:
    """y = Log(x) + Sqrt(x) + Pow(x, 0.5) and z = 1 / d: ops with a restricted domain (x > 0, d away from 0)."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 4, 4])
    d = helper.make_tensor_value_info("d", TensorProto.FLOAT, ["batch", 5])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3, 4, 4])
    z = helper.make_tensor_value_info("z", TensorProto.FLOAT, ["batch", 5])
    half = helper.make_tensor("half", TensorProto.FLOAT, [], [0.5])
    one = helper.make_tensor("one", TensorProto.FLOAT, [], [1.0])
    nodes = [helper.make_node("Log", ["x"], ["l"]), helper.make_node("Sqrt", ["x"], ["s"]),
             helper.make_node("Pow", ["x", "half"], ["p"]), helper.make_node("Add", ["l", "s"], ["ls"]),
             helper.make_node("Add", ["ls", "p"], ["y"]), helper.make_node("Div", ["one", "d"], ["z"])]
    model = helper.make_model(helper.make_graph(nodes, "domain", [x, d], [y, z], [half, one]),
                              opset_imports=[helper.make_opsetid("", 15)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def _real_data(path: Path, *, negative_x: bool = False) -> Path:
    import numpy as np

    rng = np.random.default_rng(7)
    x = rng.uniform(0.5, 3.0, size=(2, 3, 4, 4)).astype(np.float32)
    if negative_x:
        x[0, 0, 0, 0] = -1.0
    d = (rng.choice([-1.0, 1.0], size=(2, 5)) * rng.uniform(1.0, 4.0, size=(2, 5))).astype(np.float32)
    np.savez(path, x=x, d=d)
    return path


def _report(out: Path) -> dict:
    import json

    return json.loads((out / "report.json").read_text())


def test_real_data_samples_follow_its_domain_and_the_report_says_so(tmp_path):
    need("onnx", "onnxruntime")
    src, data = _domain_ops(tmp_path / "m.onnx"), _real_data(tmp_path / "real.npz")
    r = convertkit("optimize", src, "-p", "simplify", "--inputs", data, "--samples", "4", "-o", tmp_path / "out")
    assert r.returncode == 0, r.stderr
    report = _report(tmp_path / "out")
    assert report["verdict"] == "PASSED" and report["parity"]["samples"] == 4
    assert all(o["status"] == "ok" for o in report["parity"]["outputs"])
    assert any("samples 1-3 follow the given data's domain (--samples-from data" in n for n in report["notes"])


def test_random_samples_the_source_gives_nan_on_are_left_out_not_blamed(tmp_path):
    need("onnx", "onnxruntime")
    src, data = _domain_ops(tmp_path / "m.onnx"), _real_data(tmp_path / "real.npz")
    r = convertkit("optimize", src, "-p", "simplify", "--inputs", data, "--samples-from", "random",
                   "-o", tmp_path / "out")
    assert r.returncode == 0, r.stderr
    report = _report(tmp_path / "out")
    assert report["verdict"] == "PASSED" and report["parity"]["samples"] == 1
    assert any("--samples-from random" in n for n in report["notes"])
    (left_out,) = [n for n in report["notes"] if "left out of validation" in n]
    assert left_out.startswith("sample(s) 1 (y: ") and "the source model itself gives NaN/Inf there" in left_out


def test_reference_nan_on_every_generated_sample_exits_2(tmp_path):
    need("onnx", "onnxruntime")
    src = _domain_ops(tmp_path / "m.onnx")
    line = _one_error_line(convertkit("optimize", src, "-p", "simplify", "-o", tmp_path / "out"), 2)
    assert "the source model itself gives NaN/Inf on every sample convertkit made" in line
    assert "give real data with --inputs FEEDS.npz" in line


def test_reference_nan_on_the_users_own_data_exits_2(tmp_path):
    need("onnx", "onnxruntime")
    src, data = _domain_ops(tmp_path / "m.onnx"), _real_data(tmp_path / "real.npz", negative_x=True)
    line = _one_error_line(convertkit("optimize", src, "-p", "simplify", "--inputs", data, "-o", tmp_path / "out"), 2)
    assert "the source model itself gives NaN/Inf on the given data (sample 0; y: 1 of 96 NaN/Inf)" in line


def test_samples_from_data_without_data_is_a_usage_error(tmp_path):
    need("onnx", "onnxruntime")
    line = _one_error_line(convertkit("optimize", _mlp(tmp_path / "m.onnx"), "-p", "simplify", "--samples-from",
                                      "mixed", "-o", tmp_path / "out"), 2)
    assert line == "convertkit: error: --samples-from mixed needs real data (give --inputs FEEDS.npz)"


# -- integer ranges the model accepts, from its graph ----------------------------------------------


def _bert_like(path: Path) -> Path:
    """Word (50 rows), token-type (2 rows, through a Cast) and bucket (7 rows, a float input cast
    to an index and unsqueezed) embeddings summed: what an exported BERT's embedding block reads."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(5)
    ids = helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"])
    tt = helper.make_tensor_value_info("token_type_ids", TensorProto.INT64, ["batch", "seq"])
    fl = helper.make_tensor_value_info("bucket", TensorProto.FLOAT, ["batch"])
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "seq", 8])
    inits = [numpy_helper.from_array(rng.standard_normal((50, 8)).astype(np.float32), "word"),
             numpy_helper.from_array(rng.standard_normal((2, 8)).astype(np.float32), "type"),
             numpy_helper.from_array(rng.standard_normal((7, 8)).astype(np.float32), "buck"),
             numpy_helper.from_array(np.array([1], np.int64), "ax1")]
    nodes = [helper.make_node("Gather", ["word", "input_ids"], ["we"], name="/embeddings/word_embeddings/Gather"),
             helper.make_node("Cast", ["token_type_ids"], ["tt32"], to=TensorProto.INT32),
             helper.make_node("Gather", ["type", "tt32"], ["te"], name="/embeddings/token_type_embeddings/Gather"),
             helper.make_node("Cast", ["bucket"], ["bi"], to=TensorProto.INT64),
             helper.make_node("Unsqueeze", ["bi", "ax1"], ["bu"]),
             helper.make_node("Gather", ["buck", "bu"], ["be"], name="bucket_gather"),
             helper.make_node("Add", ["we", "te"], ["s"]), helper.make_node("Add", ["s", "be"], ["y"])]
    model = helper.make_model(helper.make_graph(nodes, "bert_like", [ids, tt, fl], [out], inits),
                              opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_onnx_token_type_ids_get_the_tables_range_for_quantize(tmp_path):
    need("onnx", "onnxruntime")
    r = convertkit("optimize", _bert_like(tmp_path / "m.onnx"), "-p", "quantize", "-o", tmp_path / "out")
    assert r.returncode == 0, r.stderr
    report = _report(tmp_path / "out")
    assert report["verdict"] == "PASSED"
    assert {i["name"]: i["int_range"] for i in report["inputs"]} == {"input_ids": [0, 50], "token_type_ids": [0, 2],
                                                                     "bucket": [0, 7]}
    assert ("input 'token_type_ids' sampled in 0..2 (inferred: Gather '/embeddings/token_type_embeddings/Gather' "
            "on a table of 2 rows)") in report["notes"]
    # a range given with --input wins (and one outside the table is the user's to fix: exit 2, not 3)
    r = convertkit("optimize", tmp_path / "m.onnx", "-p", "quantize", "-i", "input_ids:1,4:int64:0..5",
                   "-i", "token_type_ids:1,4:int64:0..9", "-i", "bucket:1", "-o", tmp_path / "out2")
    line = _one_error_line(r, 2)
    assert "the source model does not run on these inputs" in line and "token_type_embeddings/Gather" in line


def _keras_embedding(path: Path) -> Path:
    """A Keras 3 model whose float32 Input feeds Embedding(300): standard-normal floats would be index -1."""
    from converter.formats.keras.source import keras_module

    keras = keras_module("keras")
    keras.utils.set_random_seed(3)
    inp = keras.Input((6,), dtype="float32", name="tokens")
    x = keras.layers.GlobalAveragePooling1D()(keras.layers.Embedding(300, 8)(inp))
    keras.Model(inp, keras.layers.Dense(3)(x)).save(path)
    return path


def test_keras_float_input_into_embedding_gets_whole_numbers_in_its_range(tmp_path):
    need("tensorflow", "keras", "tf2onnx", "onnxruntime")
    r = convertkit("export", _keras_embedding(tmp_path / "emb.keras"), "--to", "onnx", "-o", tmp_path / "out")
    assert r.returncode == 0, r.stderr
    report = _report(tmp_path / "out")
    assert report["verdict"] == "PASSED" and report["inputs"][0]["int_range"] == [0, 300]
    assert any(n.startswith("input 'tokens' sampled in 0..300 (inferred: Embedding '") for n in report["notes"])


@pytest.mark.parametrize("fmt", ["graph", "layers"])
def test_a_tfjs_source_gets_its_embedding_range_from_model_json(tmp_path, fmt):
    """`optimize` on a TF.js model: the range comes from model.json (a graph model's GatherV2 table, past
    Keras 3's negative-id wrap; a layers model's Embedding), so fp16 is checked on ids the table has."""
    need("tensorflow", "keras")
    need_node()
    src = tmp_path / "js"
    r = convertkit("export", _keras_embedding(tmp_path / "emb.keras"), "--to", "tfjs", "--tfjs-format", fmt, "-o", src)
    assert r.returncode == 0, r.stderr
    r = convertkit("optimize", src, "-p", "fp16", "-o", tmp_path / "out")
    assert r.returncode == 0, r.stderr
    report = _report(tmp_path / "out")
    assert report["verdict"] == "PASSED" and report["inputs"][0]["int_range"] == [0, 300]
    why = "GatherV2 '" if fmt == "graph" else "Embedding '"
    assert any(n.startswith(f"input 'tokens' sampled in 0..300 (inferred: {why}") for n in report["notes"]), \
        report["notes"]


# -- no ONNX dim or type turns into a traceback ------------------------------------------------------


def _identity(path: Path, elem: int, dims: list | None) -> Path:
    import onnx
    from onnx import helper

    x = helper.make_tensor_value_info("x", elem, dims)
    y = helper.make_tensor_value_info("y", elem, dims)
    model = helper.make_model(helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y]),
                              opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("case", ["negative", "empty_name", "huge", "string", "no_rank"])
def test_odd_onnx_dims_and_types_exit_0_or_2_never_4(tmp_path, case):
    need("onnx", "onnxruntime")
    from onnx import TensorProto

    elem, dims, code, text = {
        "negative": (TensorProto.FLOAT, [-5, 3], 0, None),
        "empty_name": (TensorProto.FLOAT, ["", 3], 0, None),
        "huge": (TensorProto.FLOAT, [100000, 100000, 1000], 2,
                 "input 'x' of shape [100000, 100000, 1000] is too large to sample"),
        "string": (TensorProto.STRING, [2], 2, "input 'x' is of type onnx:8, for which convertkit cannot make samples"),
        "no_rank": (TensorProto.FLOAT, None, 2, "input 'x' has unknown rank (give its shape with --input NAME:DIMS)"),
    }[case]
    r = convertkit("optimize", _identity(tmp_path / "m.onnx", elem, dims), "-p", "simplify", "-o", tmp_path / "out")
    if code == 0:
        assert r.returncode == 0, r.stderr
        assert _report(tmp_path / "out")["verdict"] == "PASSED"
    else:
        assert text in _one_error_line(r, code)


# -- sizes the model accepts --------------------------------------------------------------------------


def _detector(path: Path, *, anchors: int | None = None, meta: dict | None = None) -> Path:
    """Two stride-2 convs, the deeper one upsampled x2 and added to the first: H and W must be
    multiples of 4. With ``anchors``, a head multiplies by a fixed [anchors, anchors] grid: one size only."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(2)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, "h", "w"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4, "oh", "ow"])
    inits = [numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w1"),
             numpy_helper.from_array(rng.standard_normal((4, 4, 3, 3)).astype(np.float32), "w2"),
             numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")]
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], strides=[2, 2], pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["c1", "w2"], ["c2"], strides=[2, 2], pads=[1, 1, 1, 1]),
             helper.make_node("Resize", ["c2", "", "scales"], ["up"], mode="nearest"),
             helper.make_node("Add", ["up", "c1"], ["y" if anchors is None else "f"])]
    if anchors is not None:
        inits.append(numpy_helper.from_array(rng.standard_normal((1, 4, anchors, anchors)).astype(np.float32), "grid"))
        nodes.append(helper.make_node("Mul", ["f", "grid"], ["y"]))
    model = helper.make_model(helper.make_graph(nodes, "detector", [x], [y], inits),
                              opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    if meta:
        helper.set_model_props(model, meta)
    onnx.save(model, str(path))
    return path


def test_dynamic_hw_sized_as_multiples_of_the_total_stride(tmp_path):
    need("onnx", "onnxruntime")
    r = convertkit("optimize", _detector(tmp_path / "det.onnx"), "-p", "simplify", "-o", tmp_path / "out")
    assert r.returncode == 0, r.stderr
    report = _report(tmp_path / "out")
    assert report["verdict"] == "PASSED" and report["parity"]["samples"] == 3
    assert ("dynamic dims sized to multiples of 4, the total stride of the graph's Conv/pooling nodes (h, w)"
            in report["notes"])


def _keras_unet(path: Path) -> Path:
    """Channels-last U-Net: stride 2, 2 and a 2x2 pool, upsampled back and concatenated with the skips:
    H and W must be multiples of 8."""
    from converter.formats.keras.source import keras_module

    keras = keras_module("keras")
    layers = keras.layers
    keras.utils.set_random_seed(3)
    inp = keras.Input((None, None, 3), name="image")
    x1 = layers.Conv2D(4, 3, strides=2, padding="same")(inp)
    x2 = layers.Conv2D(4, 3, strides=2, padding="same")(x1)
    up = layers.UpSampling2D(2)(layers.MaxPooling2D(2)(x2))
    up = layers.UpSampling2D(2)(layers.Concatenate()([up, x2]))
    keras.Model(inp, layers.Conv2D(2, 1)(layers.Concatenate()([up, x1]))).save(path)
    return path


def test_channels_last_sources_sized_as_multiples_of_their_stride(tmp_path):
    """Keras (from its config) and the TF.js model made of it (from model.json: named dims, graph strides)."""
    need("tensorflow", "keras")
    need_node()
    note = "dynamic dims sized to multiples of 8, the total stride of the graph's Conv/pooling nodes (d1, d2)"
    r = convertkit("export", _keras_unet(tmp_path / "unet.keras"), "--to", "tfjs", "-o", tmp_path / "js")
    assert r.returncode == 0, r.stderr
    assert note in _report(tmp_path / "js")["notes"]
    r = convertkit("optimize", tmp_path / "js", "-p", "fp16", "-o", tmp_path / "js16")
    assert r.returncode == 0, r.stderr
    report = _report(tmp_path / "js16")
    assert report["verdict"] == "PASSED" and note in report["notes"]
    assert report["inputs"][0]["shape"] == ["batch", "d1", "d2", 3]
    # sizes given that the model does not take: the user's to fix, with the model's own error
    line = _one_error_line(convertkit("optimize", tmp_path / "js", "-p", "fp16", "-i", "image:1,12,12,3",
                                      "-o", tmp_path / "bad"), 2)
    assert line.startswith("convertkit: error: the source model does not run on these inputs: TF.js"), line


def test_sizes_from_the_models_metadata(tmp_path):
    need("onnx", "onnxruntime")
    src = _detector(tmp_path / "anchors.onnx", anchors=20, meta={"imgsz": "[40, 40]"})
    r = convertkit("optimize", src, "-p", "simplify", "-o", tmp_path / "out")
    assert r.returncode == 0, r.stderr
    report = _report(tmp_path / "out")
    assert report["verdict"] == "PASSED"
    assert "dynamic dims sized to the sizes in the model's metadata (h=40, w=40)" in report["notes"]


def test_no_size_works_exits_2_naming_the_input_to_give(tmp_path):
    need("onnx", "onnxruntime")
    src = _detector(tmp_path / "anchors.onnx", anchors=20)
    line = _one_error_line(convertkit("optimize", src, "-p", "simplify", "-o", tmp_path / "out"), 2)
    assert line.startswith("convertkit: error: the source model does not run at any sizes convertkit tried for "
                           "the dynamic dims of x[batch,3,h,w] (multiples of 4, the total stride of the graph's "
                           "Conv/pooling nodes (h, w); the small default sizes): onnxruntime failed running")
    assert "Attempting to broadcast an axis by a dimension other than 1" in line
    assert line.endswith("(give the sizes it takes with --input, e.g. --input x:1,3,40,40)")
    r = convertkit("optimize", src, "-p", "simplify", "-i", "x:batch,3,40,40", "-o", tmp_path / "out")
    assert r.returncode == 0, r.stderr
    assert _report(tmp_path / "out")["verdict"] == "PASSED"


def _tf_sources(tmp_path: Path) -> dict[str, Path]:
    """The same 4-feature Dense layer as a Keras 3 .keras file, a TF SavedModel and a frozen graph."""
    from converter.deps import require
    from converter.formats.keras.source import keras_module

    tf = require("tensorflow")
    keras = keras_module("keras")
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((4,), name="x"), keras.layers.Dense(3)])
    model.save(tmp_path / "dense.keras")
    w = tf.constant(np.random.default_rng(1).standard_normal((4, 3)).astype(np.float32))

    class Dense(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")])
        def __call__(self, x):
            return {"y": tf.matmul(x, w)}

    module = Dense()
    tf.saved_model.save(module, str(tmp_path / "saved"), signatures=module.__call__)
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    frozen = convert_variables_to_constants_v2(module.__call__.get_concrete_function())
    graph_def = frozen.graph.as_graph_def()
    (tmp_path / "frozen.pb").write_bytes(graph_def.SerializeToString())
    return {"keras": tmp_path / "dense.keras", "saved_model": tmp_path / "saved", "frozen_graph": tmp_path / "frozen.pb"}


def test_input_the_tf_and_keras_sources_cannot_run_exits_2(tmp_path):
    need("tensorflow", "keras", "tf2onnx", "onnxruntime")

    sources = _tf_sources(tmp_path)
    for kind, src in sources.items():
        extra = ("--output-names", "Identity:0") if kind == "frozen_graph" else ()
        out = tmp_path / f"out_{kind}"
        line = _one_error_line(convertkit("export", src, "-i", "x:1,5", *extra, "-o", out), 2)
        assert line.startswith("convertkit: error: the source model does not run on these inputs: "), (kind, line)
        assert line.endswith("(check --input / --inputs; it was given x[1,5] float32)"), (kind, line)
        assert not out.exists()


def test_tf_saved_model_ids_into_a_3_row_table_get_its_range(tmp_path):
    """Ids in 0..10 would be out of range for TF's gather ('indices[..] = 7 is not in [0, 3)')."""
    need("tensorflow", "tf2onnx", "onnxruntime")
    from converter.deps import require

    tf = require("tensorflow")

    class Lookup(tf.Module):
        def __init__(self):
            self.table = tf.Variable(np.random.default_rng(4).standard_normal((3, 4)).astype(np.float32))

        @tf.function(input_signature=[tf.TensorSpec([None, 6], tf.int64, name="ids")])
        def __call__(self, ids):
            return {"y": tf.reduce_mean(tf.gather(self.table, ids), axis=1)}

    module = Lookup()
    tf.saved_model.save(module, str(tmp_path / "saved"), signatures=module.__call__)
    r = convertkit("export", tmp_path / "saved", "--to", "onnx", "-o", tmp_path / "out")
    assert r.returncode == 0, r.stderr
    report = _report(tmp_path / "out")
    assert report["verdict"] == "PASSED" and report["inputs"][0]["int_range"] == [0, 3]
    assert any(n.startswith("input 'ids' sampled in 0..3 (inferred: GatherV2 '") and n.endswith("a table of 3 rows)")
               for n in report["notes"])
    # a range given with --input wins; out of the table, TensorFlow's reason is shown on the one line
    line = _one_error_line(convertkit("export", tmp_path / "saved", "--to", "onnx", "-i", "ids:2,6:int64:3..10",
                                      "-o", tmp_path / "out2"), 2)
    assert line.startswith("convertkit: error: the source model does not run on these inputs: ")
    assert "is not in [0, 3)" in line
