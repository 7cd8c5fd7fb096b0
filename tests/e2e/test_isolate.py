"""A PyTorch source on a route through TensorFlow: its half (load, inputs, ONNX export, reference
outputs) runs in a child process, so torch and TensorFlow are never resident together. The result
must be the one the in-process path gives, and errors must read and exit the same."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys

import pytest

from fixtures.catalog import CATALOG
from tests.conftest import ROOT, convertkit, need, need_node
from tests.e2e.test_torch_to_tfjs import FIXED

_EXPORT = """
import json, sys
import converter
report = converter.export(sys.argv[2], to="tfjs", out_dir=sys.argv[1], validate_each=True, **json.loads(sys.argv[3]))
print(json.dumps({"torch_here": "torch" in sys.modules, "tf_here": "tensorflow" in sys.modules,
                  "report": report.to_json()}))
"""


def _export(out, isolate: str, builder: str = "fixtures.torch_models:two_io", **options) -> dict:
    env = {"CONVERTKIT_ISOLATE": isolate, "PYTHONPATH": str(ROOT)}
    options.setdefault("inputs", ["a:batch,8", "b:batch,4"])
    options.setdefault("onnx_to_tf", "onnx2tf")  # the fixed-shape cases below are onnx2tf's (test_lower_route: the own)
    r = subprocess.run([sys.executable, "-c", _EXPORT, str(out), builder, json.dumps(options)], cwd=ROOT,
                       capture_output=True, text=True, env={**os.environ, **env}, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_torch_half_runs_apart_and_gives_the_in_process_result(tmp_path):
    need("torch", "onnxruntime", "onnx2tf")
    need_node()
    apart, together = _export(tmp_path / "apart", "1"), _export(tmp_path / "together", "0")
    overlap = _export(tmp_path / "overlap", "overlap")  # TensorFlow loads here while the child runs
    assert not apart["torch_here"] and apart["tf_here"]  # torch stayed in the child
    assert not overlap["torch_here"] and overlap["tf_here"]
    assert together["torch_here"] and together["tf_here"]
    a, t = apart["report"], together["report"]
    assert overlap["report"]["stages"][0]["notes"] == t["stages"][0]["notes"]
    assert overlap["report"]["parity"]["outputs"] == t["parity"]["outputs"]
    assert a["verdict"] == t["verdict"] == "PASSED"
    assert [s["stage"] for s in a["stages"]] == [s["stage"] for s in t["stages"]] == ["torch->onnx", "onnx->tf", "tf->tfjs"]
    for key in ("ops_in", "ops_out", "bytes_out", "notes"):  # the first stage ran in the child, the same way
        assert a["stages"][0][key] == t["stages"][0][key], key
    assert a["stages"][0]["parity"]["passed"]  # --validate each: the ONNX hop checked against torch there
    assert a["stages"][0]["parity"]["outputs"] == t["stages"][0]["parity"]["outputs"]
    assert a["parity"]["outputs"] == t["parity"]["outputs"]  # the same reference outputs, feeds and model
    assert a["inputs"] == t["inputs"] and a["outputs"] == t["outputs"] and a["source"] == t["source"]
    for out in ("apart", "overlap"):
        assert sorted(p.name for p in (tmp_path / out).iterdir()) == \
            sorted(p.name for p in (tmp_path / "together").iterdir())


#: every PyTorch fixture through the child, and the CNN in NHWC: export options, the fixed shape onnx2tf needs
CHILD_CASES = {name: (fx.builder, {"inputs": list(fx.inputs)}, FIXED.get(name)) for name, fx in CATALOG.items()}
CHILD_CASES["cnn-nhwc"] = ("fixtures.torch_models:cnn", {"inputs": ["x:batch,3,32,32"], "tfjs_layout": "nhwc"},
                           {"x": [2, 3, 32, 32]})


@pytest.mark.parametrize("case", list(CHILD_CASES))
def test_every_fixture_through_the_child(tmp_path, case):
    """What a user's command runs (a process without torch): the PyTorch half in the child. Where
    onnx2tf takes a model at fixed sizes, validation replaces the samples of other sizes, and the
    child ran the source on those too: the model never loads here (it did crash, exit 4). The
    transformer block: the same parity as in one process, for the TF.js model and each hop."""
    need("torch", "onnxruntime", "onnx2tf")
    need_node()
    builder, options, fixed = CHILD_CASES[case]
    apart = _export(tmp_path / "apart", "1", builder, **options)
    a = apart["report"]
    assert not apart["torch_here"] and a["verdict"] == "PASSED", a["parity"]
    assert all(o["max_abs"] < 1e-4 for o in a["parity"]["outputs"])
    assert a["stages"][1]["notes"].get("fixed_shape") == fixed
    replaced = any("of other sizes were replaced by seeded samples" in n for n in a["parity"]["notes"])
    assert replaced == (fixed is not None)  # every fixture's samples come at more than one size
    if case == "transformer":
        together = _export(tmp_path / "together", "0", builder, **options)
        t = together["report"]
        assert together["torch_here"] and t["verdict"] == "PASSED"
        assert a["parity"] == t["parity"]
        assert [s["parity"] for s in a["stages"]] == [s["parity"] for s in t["stages"]]


def test_a_sample_the_child_did_not_run_loads_the_source_here():
    """KnownOutputs answers the samples the child ran and loads the model (once) for any other."""
    need("torch")
    import converter
    from converter.parity.inputs import make_feeds, parse_input_spec
    from converter.parity.validate import KnownOutputs, feed_digest, run

    src = converter.load("fixtures.torch_models:cnn").with_(inputs=(parse_input_spec("x:batch,3,32,32"),))
    feeds = make_feeds(src.inputs, samples=3, seed=0)
    truth = run(src, feeds)
    loads = []

    def load():
        loads.append(1)
        return src

    known = src.with_(obj=KnownOutputs({feed_digest(feeds[0]): {"output": truth[0]["output"] + 1}}, load))
    assert run(known, feeds[:1])[0]["output"].tolist() == (truth[0]["output"] + 1).tolist()  # from the child
    assert not loads
    got = run(known, feeds) + run(known, feeds[1:])
    assert len(loads) == 1  # loaded once
    for a, b in zip(got, truth + truth[1:]):
        assert a["output"].tolist() == b["output"].tolist()


def test_errors_in_the_child_read_and_exit_as_in_process(tmp_path):
    """A bad source fails in the child: the same one line, the same exit code, nothing written."""
    need("torch")
    for args in (["nosuch_pkg.models:build", "-i", "x:1,4"],
                 ["fixtures.torch_models:cnn", "-i", "x:batch,3,32,32", "--weights", str(tmp_path / "none.pt")]):
        runs = [convertkit("export", *args, "--to", "tfjs", "-o", tmp_path / f"o{flag}", env={"CONVERTKIT_ISOLATE": flag})
                for flag in ("1", "0")]
        assert runs[0].returncode == runs[1].returncode == 2, runs[0].stderr
        assert runs[0].stderr.strip().splitlines()[-1] == runs[1].stderr.strip().splitlines()[-1]
        assert "Traceback" not in runs[0].stderr
        assert not (tmp_path / "o1").exists() and not (tmp_path / "o0").exists()


def test_convertkit_errors_cross_processes_whole():
    from converter.errors import InputError, StageError, UnsupportedOpError

    for exc in (StageError("onnx->tf", "it broke", before=["torch->onnx"], hint="try X"),
                UnsupportedOpError("TF.js", ["Erfc", "Foo"], hint="rewrite"), InputError("bad file", hint="fix")):
        back = pickle.loads(pickle.dumps(exc))
        assert type(back) is type(exc) and str(back) == str(exc) and back.exit_code == exc.exit_code
        assert back.__dict__ == exc.__dict__
