"""The typed JS/TS module beside every TF.js and ONNX artifact (converter.jsmodule, issue #16 part 3),
driven as an app drives it: Node imports the generated model.js, loads the artifact (TF.js graph and
layers models on wasm, ONNX in onnxruntime-web on wasm), predicts on the test's inputs by the
SOURCE's names and layout, and the numbers are compared here with the source model's outputs in
Python. Wrong inputs get InputError with one exact line; tsc --strict accepts a right consumer and
rejects a wrong input name and a wrong dtype; the model card (licence from a Hugging Face README,
parity, passes) is in the artifact and in the module."""

from __future__ import annotations

import http.server
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from fixtures.catalog import CATALOG
from tests.conftest import convertkit, need, need_chromium, need_node

CHECK = Path(__file__).with_name("js_module_check.mjs")
BROWSER = Path(__file__).with_name("js_module_browser.mjs")


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory standing for an app: node_modules (the pinned npm packages) and modules that
    re-export the frameworks, so that a test can hand predict() the same framework's tensors."""
    need_node()
    from converter.formats.tfjs.runner import NODE_DIR

    root = tmp_path_factory.mktemp("app")
    modules = Path(os.environ.get("CONVERTKIT_NODE_MODULES") or NODE_DIR / "node_modules")
    (root / "node_modules").symlink_to(modules, target_is_directory=True)
    (root / "tfjs.mjs").write_text("export * from '@tensorflow/tfjs';\n")
    (root / "ort.mjs").write_text("export * from 'onnxruntime-web';\n")
    return root


def run_module(app: Path, model_dir: Path, calls: list[dict], backend: str | None = "wasm",
               runtime: str | None = None) -> dict:
    """Node: import MODEL_DIR/model.js, load the model beside it, predict once per call."""
    link = model_dir.parent / "node_modules"  # the app's packages, as for a model copied into an app
    if not link.exists():
        link.symlink_to(app / "node_modules", target_is_directory=True)
    req, res = app / "request.json", app / "result.json"
    req.write_text(json.dumps({"backend": backend, "calls": calls, "runtime": str(app / runtime) if runtime else None}))
    r = subprocess.run(["node", str(CHECK), str(model_dir / "model.js"), str(req), str(res)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(res.read_text())


def feed(kind: str, arr: np.ndarray, shaped: bool = True, **extra) -> dict:
    return {"kind": kind, "data": arr.reshape(-1).tolist(), **({"shape": list(arr.shape)} if shaped else {}), **extra}


def assert_close(result: dict, names: list[str], refs: list[np.ndarray], atol: float = 1e-4) -> None:
    assert result["ok"], result
    assert result["names"] == names
    for name, ref in zip(names, refs):
        got = result["outputs"][name]
        assert got["shape"] == list(ref.shape), name
        np.testing.assert_allclose(np.asarray(got["data"], dtype=np.float64).reshape(ref.shape), ref, atol=atol, err_msg=name)


def errors(result: dict) -> list[str]:
    assert all(not r["ok"] and r["inputError"] and r["name"] == "InputError" for r in result["results"]), result
    return [r["message"] for r in result["results"]]


def _torch_reference(builder: str, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    from converter.api import outputs

    return list(outputs(builder, [feeds])[0].values())


# -- TF.js graph model with int64 ids (torch -> onnx -> tf -> tfjs) --------------------------------


@pytest.fixture(scope="module")
def tokens_tfjs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    need("torch", "onnx", "onnxruntime", "tensorflow", "tensorflowjs")
    import converter

    out = tmp_path_factory.mktemp("tokens") / "out"
    report = converter.export(CATALOG["tokens"].builder, to="tfjs", out_dir=out, inputs=["ids:batch,seq:int64:0..100"])
    assert report.verdict == "PASSED"
    return out


def test_tfjs_graph_module_takes_int64_ids_and_matches_torch(app, tokens_tfjs):
    ids = np.random.default_rng(0).integers(0, 100, size=(2, 7)).astype(np.int64)
    ref = _torch_reference(CATALOG["tokens"].builder, {"ids": ids})
    res = run_module(app, tokens_tfjs, [
        {"inputs": {"ids": feed("BigInt64Array", ids)}},  # int64 as the source takes it
        {"inputs": {"ids": feed("Int32Array", ids)}},  # the ids most JS apps hold
        {"inputs": {"ids": feed("array", ids)}},  # plain numbers
        {"inputs": {"ids": feed("tensor", ids, dtype="int32", array="Int32Array")}},  # a tf.Tensor
    ], runtime="tfjs.mjs")
    assert res["backend"] == "wasm"
    assert res["inputs"] == [{"name": "ids", "shape": ["batch", "seq"], "dtype": "int64"}]
    (out,) = res["outputs"]
    for r in res["results"]:
        assert_close(r, [out["name"]], ref)
    card = res["metadata"]
    assert card == json.loads((tokens_tfjs / "model.json").read_text())["userDefinedMetadata"]["convertkit"]["card"]
    assert card["source"] == {"format": "torch", "kind": "callable", "name": CATALOG["tokens"].builder,
                              "sha256": None, "sha256_of": None}
    assert card["stages"] == ["torch->onnx", "onnx->tf", "tf->tfjs"] and card["passes"] == []
    assert card["parity"]["verdict"] == "PASSED" and card["parity"]["worst_max_abs"] < 1e-4
    assert card["license"] == "unknown" and card["license_from"] is None
    assert res["runtime"] == {"package": "@tensorflow/tfjs", "version": "4.22.0"}


def test_tfjs_module_refuses_wrong_inputs_with_one_line(app, tokens_tfjs):
    ids = np.ones((1, 4), np.int64)
    res = run_module(app, tokens_tfjs, [
        {"inputs": {"ids": feed("Float32Array", ids)}},
        {"inputs": {"input_ids": feed("Int32Array", ids)}},
        {"inputs": {}},
        {"inputs": {"ids": feed("Int32Array", np.ones((1, 2, 2), np.int64))}},
        {"inputs": {"ids": {"kind": "Int32Array", "data": [1, 2, 3]}}},  # two dynamic dims, no shape
        {"inputs": {"ids": {"kind": "BigInt64Array", "data": [1, 2**40], "shape": [1, 2]}}},
        {"inputs": {"ids": {"kind": "Int32Array", "data": [1, 2, 3], "shape": [1, 2]}}},
        {"inputs": {"ids": {"kind": "array", "data": [1.5, 2]}}},
    ], backend="cpu")
    assert errors(res) == [
        'input "ids": expected int64 data (BigInt64Array, Int32Array, number[]), got Float32Array',
        'unknown input "input_ids": the model takes "ids"',
        'input "ids" is missing: the model takes "ids"',
        'input "ids": shape [1,2,2] has rank 3, the model takes rank 2 [batch,seq]',
        'input "ids": [batch,seq] has dynamic dims (batch, seq): give {data, shape}',
        'input "ids": element 1 (1099511627776) does not fit int32, which the model takes',
        'input "ids": 3 values do not fill shape [1,2] (2 values)',
        'input "ids": element 0 is 1.5, expected int64 data (BigInt64Array, Int32Array, number[])',
    ]


# -- TF.js graph model in NHWC: the module still takes the source's NCHW ----------------------------


def test_tfjs_nhwc_model_takes_the_sources_nchw_through_the_module(app, tmp_path):
    need("torch", "onnx", "onnxruntime", "tensorflow", "tensorflowjs")
    import converter

    fx = CATALOG["cnn"]
    out = tmp_path / "out"
    report = converter.export(fx.builder, to="tfjs", out_dir=out, inputs=["x:batch,3,32,32"], tfjs_layout="nhwc")
    assert report.verdict == "PASSED"
    x = np.random.default_rng(1).standard_normal((2, 3, 32, 32)).astype(np.float32)
    ref = _torch_reference(fx.builder, {"x": x})
    res = run_module(app, out, [
        {"inputs": {"x": feed("Float32Array", x)}},
        {"inputs": {"x": feed("Float32Array", x[:1], shaped=False)}},  # one dynamic dim: the length gives it
        {"inputs": {"x": feed("Float32Array", x.transpose(0, 2, 3, 1))}},  # NHWC by mistake
    ])
    (spec,) = res["inputs"]
    assert spec == {"name": "x", "shape": ["batch", 3, 32, 32], "dtype": "float32", "layout": "NCHW"}
    name = res["outputs"][0]["name"]
    assert_close(res["results"][0], [name], ref)
    assert_close(res["results"][1], [name], [ref[0][:1]])
    assert res["results"][2] == {"ok": False, "name": "InputError", "inputError": True,
                                 "message": 'input "x": shape [2,32,32,3] does not fit [batch,3,32,32]: dim 1 must be 3'}


# -- TF.js layers model (Keras) ---------------------------------------------------------------------


def test_tfjs_layers_module_matches_keras(app, tmp_path):
    need("tensorflow", "tf_keras", "tensorflowjs")
    import converter
    from converter.api import outputs
    from fixtures.build_tf import build

    h5 = build(tmp_path / "fx", ["keras_cnn"])["keras_cnn"]["h5"]
    out = tmp_path / "out"
    report = converter.export(str(h5), to="tfjs", out_dir=out, tfjs_format="layers", license="mit")
    assert report.verdict == "PASSED"
    image = np.random.default_rng(2).standard_normal((3, 16, 16, 3)).astype(np.float32)
    ref = list(outputs(str(h5), [{"image": image}])[0].values())
    res = run_module(app, out, [{"inputs": {"image": feed("Float32Array", image)}},
                                {"inputs": {"image": feed("tensor", image, dtype="float32", array="Float32Array")}}],
                     runtime="tfjs.mjs")
    assert_close(res["results"][0], ["logits"], ref)
    assert_close(res["results"][1], ["logits"], ref)
    card = res["metadata"]
    assert card["target"] == {"format": "tfjs", "kind": "layers-model"}
    assert (card["license"], card["license_from"]) == ("mit", "--license")
    assert card["source"]["name"] == "keras_cnn.h5" and card["source"]["sha256_of"] == "file"
    import hashlib

    assert card["source"]["sha256"] == hashlib.sha256(h5.read_bytes()).hexdigest()


def test_tfjs_graph_with_control_flow_runs_through_the_module(app, tmp_path):
    """A Keras LSTM's TF.js graph has a while loop: execute() refuses it, the module goes on with
    executeAsync(); the numbers are Keras's."""
    need("tensorflow", "tf_keras", "tensorflowjs")
    import converter
    from converter.api import outputs
    from fixtures.build_tf import build

    source = build(tmp_path / "fx", ["keras_lstm"])["keras_lstm"]["keras"]
    out = tmp_path / "out"
    assert converter.export(str(source), to="tfjs", out_dir=out).verdict == "PASSED"
    ops = {n["op"] for n in json.loads((out / "model.json").read_text())["modelTopology"]["node"]}
    assert {"LoopCond", "Merge", "Switch"} <= ops
    ids = np.random.default_rng(6).integers(0, 50, size=(2, 6)).astype(np.int32)
    ref = list(outputs(str(source), [{"ids": ids}])[0].values())
    res = run_module(app, out, [{"inputs": {"ids": feed("Int32Array", ids)}}, {"inputs": {"ids": feed("array", ids)}}])
    assert res["inputs"] == [{"name": "ids", "shape": ["batch", "d1"], "dtype": "int32"}]
    for r in res["results"]:
        assert_close(r, [res["outputs"][0]["name"]], ref)


# -- ONNX in onnxruntime-web: the tiny BERT (int64 ids), licence from its README ---------------------


@pytest.fixture(scope="module")
def bert_onnx(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    need("torch", "transformers", "optimum", "onnx", "onnxruntime")
    from fixtures.hf_models import save_tiny_bert

    src = save_tiny_bert(tmp_path_factory.mktemp("hf") / "tiny-bert")
    (src / "README.md").write_text("---\nlanguage: en\nlicense: apache-2.0\ntags:\n- test\n---\n# tiny BERT\n")
    out = tmp_path_factory.mktemp("bert-onnx") / "out"
    r = convertkit("export", src, "--to", "onnx", "-o", out)
    assert r.returncode == 0, r.stderr
    return src, out


def test_onnx_module_runs_in_onnxruntime_web_and_matches_transformers(app, bert_onnx):
    from converter.api import outputs

    src, out = bert_onnx
    rng = np.random.default_rng(3)
    feeds = {"input_ids": rng.integers(0, 100, (2, 9)).astype(np.int64),
             "attention_mask": np.ones((2, 9), np.int64), "token_type_ids": np.zeros((2, 9), np.int64)}
    feeds["attention_mask"][1, 6:] = 0
    ref = list(outputs(str(src), [feeds])[0].values())
    res = run_module(app, out, [
        {"inputs": {k: feed("BigInt64Array", v) for k, v in feeds.items()}},
        {"inputs": {k: feed("array", v) for k, v in feeds.items()}},
        {"inputs": {**{k: feed("Int32Array", v) for k, v in feeds.items()},
                    "input_ids": feed("tensor", feeds["input_ids"], dtype="int64", array="BigInt64Array")}},
        {"inputs": {**{k: feed("Int32Array", v) for k, v in feeds.items()},
                    "attention_mask": feed("Int32Array", feeds["attention_mask"][:, :8])}},
    ], runtime="ort.mjs")
    assert res["backend"] == "wasm"
    assert [s["name"] for s in res["inputs"]] == ["input_ids", "attention_mask", "token_type_ids"]
    assert all(s["shape"] == ["batch", "sequence"] and s["dtype"] == "int64" for s in res["inputs"])
    for r in res["results"][:3]:
        assert_close(r, ["logits"], ref)
        assert r["outputs"]["logits"]["array"] == "Float32Array"
    assert res["results"][3]["message"] == \
        'input "attention_mask": dim 1 (sequence) is 8, but input "input_ids" has sequence = 9'


def test_onnx_card_has_the_readme_licence_and_the_parity(app, bert_onnx):
    import onnx

    from converter.jsmodule import read_card

    src, out = bert_onnx
    card = read_card(out / "model.onnx")
    report = json.loads((out / "report.json").read_text())
    assert (card["license"], card["license_from"]) == ("apache-2.0", "README.md front matter")
    props = {p.key: p.value for p in onnx.load(str(out / "model.onnx")).metadata_props}
    assert props["license"] == "apache-2.0"
    assert card["source"]["format"] == "hf" and card["source"]["name"] == "tiny-bert"
    assert card["parity"]["verdict"] == report["verdict"] == "PASSED"
    assert [(o["name"], o["max_abs"]) for o in card["parity"]["outputs"]] == \
        [(o["name"], o["max_abs"]) for o in report["parity"]["outputs"]]
    assert card["convertkit"] == report["environment"]["convertkit"]
    assert card["libraries"]["onnx"] == report["environment"]["onnx"]
    module = (out / "model.js").read_text()
    line = next(ln for ln in module.splitlines() if ln.startswith("export const METADATA = freeze("))
    assert json.loads(line.removeprefix("export const METADATA = freeze(").removesuffix(");")) == card
    assert "import * as ort from 'onnxruntime-web';" in module


def test_onnx_fp16_model_is_fed_and_read_in_float32_through_the_module(app, tmp_path):
    """-p fp16:keep_io_types=false makes the model's inputs and outputs float16: the module converts
    at the edges (round to nearest even, as numpy), so the app's float32 code stays the same."""
    need("torch", "onnx", "onnxruntime")
    import onnxruntime as ort

    import converter

    fx = CATALOG["two_io"]
    out = tmp_path / "out"
    report = converter.export(fx.builder, to="onnx", out_dir=out, inputs=list(fx.inputs), passes=["fp16:keep_io_types=false"])
    assert report.verdict == "PASSED"
    rng = np.random.default_rng(5)
    feeds = {"a": rng.standard_normal((3, 8)).astype(np.float32) * 10, "b": rng.standard_normal((3, 4)).astype(np.float32)}
    feeds["a"][0, :3] = [65504.0, 1e-7, -0.0001]  # fp16's largest, a subnormal, a rounding case
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    ref = session.run(None, {k: v.astype(np.float16) for k, v in feeds.items()})
    res = run_module(app, out, [{"inputs": {k: feed("Float32Array", v) for k, v in feeds.items()}}])
    assert [o["dtype"] for o in res["outputs"]] == ["float32", "float32"]
    (r,) = res["results"]
    assert [r["outputs"][n]["array"] for n in ("output_0", "output_1")] == ["Float32Array", "Float32Array"]
    assert_close(r, ["output_0", "output_1"], [x.astype(np.float32) for x in ref], atol=0)


def test_onnx_module_transposes_into_the_models_layout(app, tmp_path):
    """An ONNX model that takes NHWC where its source took NCHW (``input_layout``): the module takes
    NCHW and transposes (its own code: onnxruntime-web has no transpose helper). The model here is
    an Identity, so the output is exactly what the module fed."""
    need("onnx")
    import onnx
    from onnx import helper

    from converter.core import Artifact, Format, TensorSpec
    from converter.jsmodule.render import render_dts, render_js
    from converter.jsmodule.spec import module_spec

    out = tmp_path / "out"
    out.mkdir()
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["batch", 4, 5, 3])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["batch", 4, 5, 3])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(out / "model.onnx"))
    layout = {"x": {"perm": [0, 2, 3, 1], "layout": "NHWC", "source_layout": "NCHW"}}
    src = Artifact(Format("torch"), None, (TensorSpec("x", ("batch", 3, 4, 5), "float32"),),
                   (TensorSpec("y", ("batch", 4, 5, 3), "float32"),))
    final = Artifact(Format("onnx"), out / "model.onnx", (TensorSpec("x", ("batch", 4, 5, 3), "float32"),),
                     (TensorSpec("y", ("batch", 4, 5, 3), "float32"),), meta={"input_layout": layout})
    spec = module_spec(src, final, None, "onnx", "model.onnx")
    card = {"source": {"format": "torch"}, "convertkit": "test"}
    (out / "model.js").write_text(render_js(spec, card))
    (out / "model.d.ts").write_text(render_dts(spec, card))
    x = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    res = run_module(app, out, [{"inputs": {"x": feed("Float32Array", x)}}])
    assert res["inputs"] == [{"name": "x", "shape": ["batch", 3, 4, 5], "dtype": "float32", "layout": "NCHW"}]
    assert_close(res["results"][0], ["y"], [x.transpose(0, 2, 3, 1)], atol=0)


# -- in a browser: headless Chromium, the modules through an import map ---------------------------------

PAGE = """<!doctype html><html><body>
<script type="importmap">{"imports": {"@tensorflow/tfjs": "/node_modules/@tensorflow/tfjs/dist/tf.fesm.js",
  "onnxruntime-web": "/node_modules/onnxruntime-web/dist/ort.bundle.min.mjs"}}</script>
<script type="module">
const calls = CALLS;
const result = {};
try {
  for (const [key, call] of Object.entries(calls)) {
    const mod = await import(call.module);
    const model = await mod.load(undefined, { backend: call.backend });
    const inputs = Object.fromEntries(Object.entries(call.inputs).map(([k, f]) => [k, {
      data: f.kind === 'BigInt64Array' ? BigInt64Array.from(f.data, BigInt) : Int32Array.from(f.data), shape: f.shape }]));
    const out = await model.predict(inputs);
    result[key] = { backend: model.backend, names: Object.keys(out),
      outputs: Object.fromEntries(Object.entries(out).map(([k, v]) => [k, {
        shape: v.shape, data: Array.from(v.data, Number) }])) };
    try { await model.predict({}); } catch (err) { result[key].error = `${err.name}: ${err.message}`; }
  }
} catch (err) { result.failed = String(err && err.stack || err); }
window.result = result;
</script></body></html>
"""


def test_modules_load_and_predict_in_headless_chromium(app, tokens_tfjs, bert_onnx, tmp_path):
    """What a web page does: the modules served over HTTP, their frameworks mapped by an import map
    (no bundler), TF.js on webgl (SwiftShader) and onnxruntime-web on wasm; numbers as in Python."""
    import functools
    import threading

    from converter.api import outputs

    exe = need_chromium()
    site = tmp_path / "site"
    site.mkdir()
    (site / "node_modules").symlink_to(app / "node_modules", target_is_directory=True)
    shutil.copytree(tokens_tfjs, site / "tokens")
    shutil.copytree(bert_onnx[1], site / "bert")
    ids = np.random.default_rng(4).integers(0, 100, size=(2, 5)).astype(np.int64)
    bert_feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
    calls = {"tfjs": {"module": "/tokens/model.js", "backend": "webgl", "inputs": {"ids": feed("BigInt64Array", ids)}},
             "onnx": {"module": "/bert/model.js", "backend": "wasm",
                      "inputs": {k: feed("Int32Array", v) for k, v in bert_feeds.items()}}}
    (site / "index.html").write_text(PAGE.replace("CALLS", json.dumps(calls)))
    handler = functools.partial(_QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        r = subprocess.run(["node", str(BROWSER), f"http://127.0.0.1:{server.server_port}/index.html",
                            str(tmp_path / "result.json")], capture_output=True, text=True, timeout=240,
                           env={**os.environ, "CONVERTKIT_CHROMIUM": exe})
    finally:
        server.shutdown()
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads((tmp_path / "result.json").read_text())
    assert "failed" not in res and not res["pageErrors"], res
    assert res["tfjs"]["backend"] == "webgl" and res["onnx"]["backend"] == "wasm"
    tokens_name = res["tfjs"]["names"][0]
    assert_close({"ok": True, **res["tfjs"]}, [tokens_name], _torch_reference(CATALOG["tokens"].builder, {"ids": ids}),
                 atol=1e-3)  # WebGL's float precision
    assert_close({"ok": True, **res["onnx"]}, ["logits"], list(outputs(str(bert_onnx[0]), [bert_feeds])[0].values()))
    assert res["tfjs"]["error"] == 'InputError: input "ids" is missing: the model takes "ids"'


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # the test's output is the result, not an access log
        pass


# -- the types: tsc --strict -----------------------------------------------------------------------

GOOD = """\
import * as tf from '@tensorflow/tfjs';
import { load as loadTokens, INPUTS, METADATA, InputError, type Outputs as TokenOutputs } from './tokens/model.js';
import { load as loadBert, OUTPUTS } from './bert/model.js';

export async function main(): Promise<void> {
  const tokens = await loadTokens(undefined, { backend: 'wasm' });
  const a: TokenOutputs = await tokens.predict({ ids: new BigInt64Array(4) });
  await tokens.predict({ ids: { data: [1, 2, 3, 4], shape: [2, 2] } });
  await tokens.predict({ ids: tf.tensor2d([[1, 2]], [1, 2], 'int32') });
  const first: Float32Array = a[OUTPUT_NAME].data;
  const bert = await loadBert('bert/model.onnx', { backend: 'wasm', executionProviders: ['wasm'] });
  const b = await bert.predict({ input_ids: new Int32Array(8), attention_mask: [1, 1, 1, 1, 1, 1, 1, 1],
                                 token_type_ids: { data: new BigInt64Array(8), shape: [1, 8] } });
  const logits: Float32Array = b.logits.data;
  const name: 'ids' = INPUTS[0].name;
  const verdict: 'PASSED' | 'FAILED' | 'UNCHECKED' = METADATA.parity.verdict;
  const bertOut: 'logits' = OUTPUTS[0].name;
  console.log(first, logits, name, verdict, bertOut, InputError);
}
"""
BAD = """\
import { load as loadBert } from './bert/model.js';

export async function bad(): Promise<void> {
  const bert = await loadBert();
  await bert.predict({ input_ids: new Int32Array(8), attention_mask: new Int32Array(8), token_type_ids: new Int32Array(8),
                       token_ids: new Int32Array(8) });
  await bert.predict({ input_ids: new Float32Array(8), attention_mask: new Int32Array(8), token_type_ids: new Int32Array(8) });
}
"""


def test_generated_types_compile_under_tsc_strict_and_catch_wrong_inputs(app, tokens_tfjs, bert_onnx, tmp_path):
    from converter.formats.tfjs.runner import NODE_DIR

    tsc = Path(os.environ.get("CONVERTKIT_NODE_MODULES") or NODE_DIR / "node_modules") / "typescript" / "bin" / "tsc"
    if not tsc.is_file():
        need_node()
        pytest.skip("typescript is not installed (make install)")  # pinned in package.json: CI has it
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "node_modules").symlink_to(app / "node_modules", target_is_directory=True)
    for name, d in (("tokens", tokens_tfjs), ("bert", bert_onnx[1])):
        shutil.copytree(d, proj / name)
        # the declarations checked as source too (skipLibCheck skips .d.ts files: TF.js's own
        # declarations do not pass --strict, ours must)
        shutil.copy(d / "model.d.ts", proj / f"{name}_decl.ts")
    output_name = json.loads((tokens_tfjs / "report.json").read_text())["parity"]["outputs"][0]["name"]
    (proj / "good.ts").write_text(GOOD.replace("OUTPUT_NAME", json.dumps(output_name)))
    (proj / "bad.ts").write_text(BAD)
    r = subprocess.run(["node", str(tsc), "--strict", "--noEmit", "--skipLibCheck", "--target", "es2022", "--module", "esnext",
                        "--moduleResolution", "bundler", "--lib", "es2022,dom", "good.ts", "bad.ts", "tokens_decl.ts",
                        "bert_decl.ts"], cwd=proj, capture_output=True, text=True, timeout=300)
    errors = [ln for ln in r.stdout.splitlines() if ": error TS" in ln]
    assert r.returncode == 2, r.stdout + r.stderr
    assert [e.split(":")[0] for e in errors] == ["bad.ts(6,24)", "bad.ts(7,24)"], r.stdout
    assert "TS2353" in errors[0] and "'token_ids' does not exist in type 'Inputs'" in errors[0]
    assert "TS2322" in errors[1] and "Float32Array" in errors[1]


# -- licence, --no-js ------------------------------------------------------------------------------


def test_require_license_exits_2_before_any_work(tmp_path):
    src = tmp_path / "hf-model"
    src.mkdir()
    (src / "config.json").write_text(json.dumps({"model_type": "bert"}))
    (src / "README.md").write_text("# a model card without front matter\n")
    out = tmp_path / "out"
    r = convertkit("export", src, "--to", "onnx", "--require-license", "-o", out)
    assert r.returncode == 2
    assert r.stderr.strip() == (
        f"convertkit: error: --require-license: {src} declares no licence (no README.md front matter 'license:', "
        "no config.json 'license', no model card) (give --license SPDX-ID, e.g. --license mit)")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hf-model"]


def test_no_js_writes_the_card_but_no_module(tmp_path):
    """Through the CLI: --no-js, and --license satisfying --require-license."""
    need("torch", "onnx", "onnxruntime")
    from converter.jsmodule import read_card

    out = tmp_path / "out"
    fx = CATALOG["two_io"]
    r = convertkit("export", fx.builder, *(a for spec in fx.inputs for a in ("-i", spec)), "--to", "onnx", "-p", "simplify",
                   "--no-js", "--license", "bsd-3-clause", "--require-license", "-o", out)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["model.onnx", "report.json"]
    report = json.loads((out / "report.json").read_text())
    card = read_card(out / "model.onnx")
    assert card["passes"] == [{"name": "simplify", "config": report["stages"][-1]["config"]}]
    assert card["stages"] == [s["stage"] for s in report["stages"]] == ["torch->onnx", "simplify"]
    assert (card["license"], card["license_from"]) == ("bsd-3-clause", "--license")
    import onnx

    model = onnx.load(str(out / "model.onnx"))
    del model.metadata_props[:]  # the report's sizes are the model's as validated, before the card
    assert report["stages"][-1]["bytes_out"] == model.ByteSize() < (out / "model.onnx").stat().st_size
