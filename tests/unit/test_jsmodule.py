"""converter.jsmodule without a runtime: the licence a source declares, the source digest, the
module's specs from the source's and the artifact's, the card written into model.json and ONNX
without touching what was validated, and the TypeScript literal types."""

from __future__ import annotations

import json

import pytest

from converter.core import Artifact, Format, TensorSpec, Tolerance
from converter.errors import UsageError
from converter.jsmodule.card import Licence, find_licence, licence_for, source_digest
from converter.jsmodule.embed import MetadataChangedModel, into_model_json, into_onnx, read_card
from converter.jsmodule.render import ts_literal
from converter.jsmodule.spec import module_spec
from converter.parity.compare import OutputParity, ParityReport
from tests.conftest import need


@pytest.mark.parametrize(("readme", "config", "expected"), [
    ("---\nlicense: apache-2.0\n---\n# x\n", None, Licence("apache-2.0", "README.md front matter")),
    ("---\ntags:\n- a\nlicense: \"mit\"\nlanguage: en\n---\n", None, Licence("mit", "README.md front matter")),
    ("---\nlicense:\n  - mit\n  - cc-by-4.0\n---\n", None, Licence("mit AND cc-by-4.0", "README.md front matter")),
    ("# no front matter\nlicense: mit\n", {"license": "bsd-3-clause"}, Licence("bsd-3-clause", "config.json")),
    ("---\nlanguage: en\n---\nlicense: mit\n", None, Licence()),  # in the body, not the front matter
    (None, {"model_type": "bert"}, Licence()),
])
def test_licence_from_a_hugging_face_directory(tmp_path, readme, config, expected):
    if readme is not None:
        (tmp_path / "README.md").write_text(readme)
    if config is not None:
        (tmp_path / "config.json").write_text(json.dumps(config))
    assert find_licence(tmp_path) == expected
    assert find_licence(str(tmp_path)) == expected


def test_license_option_wins_and_require_license_refuses_unknown(tmp_path):
    (tmp_path / "README.md").write_text("---\nlicense: apache-2.0\n---\n")
    assert licence_for(tmp_path, "mit", require=True) == Licence("mit", "--license")
    assert licence_for(tmp_path, None, require=True) == Licence("apache-2.0", "README.md front matter")
    model = tmp_path / "m.onnx"
    model.write_bytes(b"x")
    assert licence_for(model) == Licence()
    with pytest.raises(UsageError) as exc:
        licence_for(model, require=True)
    assert exc.value.one_line() == (f"--require-license: {model} declares no licence (no README.md front matter "
                                    "'license:', no config.json 'license', no model card) "
                                    "(give --license SPDX-ID, e.g. --license mit)")
    with pytest.raises(UsageError, match="names no licence"):
        licence_for(model, "unknown")


def test_a_converted_model_carries_its_licence_to_the_next_run(tmp_path):
    """optimize of a model convertkit wrote: the licence in its card (TF.js) or metadata_props (ONNX)."""
    tfjs = tmp_path / "web"
    tfjs.mkdir()
    (tfjs / "model.json").write_text(json.dumps({"modelTopology": {}, "userDefinedMetadata": {
        "convertkit": {"card": {"license": "apache-2.0"}}}}))
    assert licence_for(tfjs, require=True) == Licence("apache-2.0", "the model's card (model.json)")
    assert licence_for(tfjs / "model.json") == Licence("apache-2.0", "the model's card (model.json)")
    need("onnx")
    import onnx
    from onnx import helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])])
    model = helper.make_model(graph)
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    assert find_licence(path) == Licence()
    helper.set_model_props(model, {"license": "mit"})
    onnx.save(model, str(path))
    assert find_licence(path) == Licence("mit", "ONNX metadata_props")


def test_source_digest_of_a_file_and_of_a_directory(tmp_path):
    import hashlib

    d = tmp_path / "model"
    (d / "sub").mkdir(parents=True)
    (d / "config.json").write_text("{}")
    (d / "sub" / "w.bin").write_bytes(b"\0" * 10)
    assert source_digest(d / "config.json") == (hashlib.sha256(b"{}").hexdigest(), "file")
    first, of = source_digest(d)
    assert of.startswith("directory") and source_digest(str(d))[0] == first
    (d / "sub" / "w.bin").write_bytes(b"\1" * 10)
    assert source_digest(d)[0] != first
    assert source_digest("pkg.module:build", str(d / "config.json"))[1] == "file"  # the --weights file
    assert source_digest("pkg.module:build") == (None, None)


def _art(fmt: str, inputs, outputs, **meta) -> Artifact:
    return Artifact(Format(fmt), None, tuple(inputs), tuple(outputs), meta=meta)


def test_module_spec_maps_source_names_layout_fixed_shapes_and_int64():
    src = _art("onnx", [TensorSpec("pixels", ("batch", 3, "h", "w"), "float32"), TensorSpec("ids", ("batch", 8), "int64")],
               [TensorSpec("probs", ("batch", 10), "float32")])
    final = _art("tfjs", [TensorSpec("pixels_1", (None, None, None, 3), "float32"), TensorSpec("ids_1", (None, 8), "int32")],
                 [TensorSpec("Identity", None, "float32")],
                 input_layout={"pixels_1": {"perm": [0, 2, 3, 1], "layout": "NHWC", "source_layout": "NCHW"}},
                 fixed_shape={"pixels_1": ["batch", 3, 32, 32]})
    parity = ParityReport([OutputParity("probs", "ok", candidate_name="Identity", ref_dtype="float32", got_dtype="float32",
                                        max_abs=1e-7)], Tolerance(), 3)
    spec = module_spec(src, final, parity, "graph-model", "model.json")
    assert spec.constants() == {
        "INPUTS": [{"name": "pixels", "shape": ["batch", 3, 32, 32], "dtype": "float32", "layout": "NCHW"},
                   {"name": "ids", "shape": ["batch", 8], "dtype": "int64"}],
        "OUTPUTS": [{"name": "probs", "shape": ["batch", 10], "dtype": "float32"}]}
    assert spec.plan() == {"kind": "graph-model", "externalData": None, "outputs": [{"name": "Identity"}],
                           "inputs": [{"name": "pixels_1", "dtype": "float32", "perm": [0, 2, 3, 1]},
                                      {"name": "ids_1", "dtype": "int32", "perm": None}]}


def test_module_spec_without_parity_takes_the_artifacts_outputs_int64_narrowed_for_tfjs():
    src = _art("torch", [TensorSpec("ids", ("batch", "seq"), "int64")], [])
    final = _art("tfjs", [TensorSpec("ids", (None, None), "int32")], [TensorSpec("argmax", (None,), "int64")])
    spec = module_spec(src, final, None, "graph-model", "model.json")
    assert spec.constants()["OUTPUTS"] == [{"name": "argmax", "shape": [None], "dtype": "int32", "sourceDtype": "int64"}]


def test_typescript_literal_types():
    assert ts_literal({"name": "x", "shape": ["batch", 3, None], "ok": True}) == \
        '{\n  readonly "name": "x";\n  readonly "shape": readonly ["batch", 3, null];\n  readonly "ok": true;\n}'
    assert ts_literal([]) == "readonly []" and ts_literal({}) == "{}"


def test_card_into_model_json_keeps_the_model_and_the_feed_metadata(tmp_path):
    path = tmp_path / "model.json"
    model = {"format": "graph-model", "modelTopology": {"node": [{"name": "x", "op": "Placeholder"}]},
             "weightsManifest": [{"paths": ["group1-shard1of1.bin"], "weights": []}],
             "userDefinedMetadata": {"convertkit": {"input_layout": {"x": {"perm": [0, 2, 3, 1]}}}}}
    path.write_text(json.dumps(model))
    into_model_json(path, {"license": "mit"})
    written = json.loads(path.read_text())
    assert written["userDefinedMetadata"]["convertkit"] == {"input_layout": {"x": {"perm": [0, 2, 3, 1]}},
                                                            "card": {"license": "mit"}}
    assert {k: v for k, v in written.items() if k != "userDefinedMetadata"} == \
        {k: v for k, v in model.items() if k != "userDefinedMetadata"}
    assert read_card(path) == {"license": "mit"}


def test_card_into_onnx_changes_metadata_props_only(tmp_path):
    need("onnx")
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    w = numpy_helper.from_array(np.arange(6, dtype=np.float32).reshape(2, 3), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["batch", 2])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["batch", 3])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    helper.set_model_props(model, {"author": "someone", "license": "old"})
    path = tmp_path / "model.onnx"
    onnx.save(model, str(path))
    graph_bytes = onnx.load(str(path)).graph.SerializeToString(deterministic=True)
    into_onnx(path, {"license": "apache-2.0", "parity": {"verdict": "PASSED"}})
    again = onnx.load(str(path))
    assert again.graph.SerializeToString(deterministic=True) == graph_bytes
    props = {p.key: p.value for p in again.metadata_props}
    assert props["author"] == "someone" and props["license"] == "apache-2.0"
    assert read_card(path) == {"license": "apache-2.0", "parity": {"verdict": "PASSED"}}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


def test_a_card_write_that_changed_the_model_is_refused(tmp_path, monkeypatch):
    """The safety check itself: were the re-save to change the graph, nothing would be replaced."""
    need("onnx")
    import onnx
    from onnx import helper

    from converter.jsmodule import embed

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])])
    path = tmp_path / "model.onnx"
    onnx.save(helper.make_model(graph), str(path))
    before = path.read_bytes()
    real_save = onnx.save

    def save_and_break(model, where):  # stands for a serializer that changed the graph
        model.graph.node[0].op_type = "Sigmoid"
        real_save(model, where)

    monkeypatch.setattr(onnx, "save", save_and_break)
    with pytest.raises(MetadataChangedModel):
        embed.into_onnx(path, {"license": "mit"})
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


def test_module_of_an_optimized_nhwc_tfjs_model_still_takes_the_original_nchw():
    """optimize of a TF.js model in NHWC: its own specs are NHWC; the module keeps the app's NCHW."""
    layout = {"x": {"perm": [0, 2, 3, 1], "layout": "NHWC", "source_layout": "NCHW"}}
    src = _art("tfjs", [TensorSpec("x", ("batch", 32, 32, 3), "float32")], [TensorSpec("y", None, "float32")],
               input_layout=layout)
    final = _art("tfjs", [TensorSpec("x", (None, 32, 32, 3), "float32")], [TensorSpec("y", None, "float32")],
                 input_layout=layout)
    spec = module_spec(src, final, None, "graph-model", "model.json")
    assert spec.constants()["INPUTS"] == [{"name": "x", "shape": ["batch", 3, 32, 32], "dtype": "float32", "layout": "NCHW"}]
    assert spec.plan()["inputs"] == [{"name": "x", "dtype": "float32", "perm": [0, 2, 3, 1]}]
