"""The pipeline file of `convertkit run`: parsed into typed specs, and every problem reported with
the file, its line and the key, exit 2 before any work (no framework is needed: the files only
have to exist with a model's suffix for the planner, which imports nothing heavy)."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from converter.ci.options import ExportOptions, export_kwargs
from converter.ci.spec import SpecError, TargetSpec, load
from converter.ci.toml_lines import scan
from tests.conftest import convertkit


def _write(tmp_path: Path, text: str, name: str = "pipeline.toml") -> Path:
    for model in ("a.onnx", "b.pt2"):
        (tmp_path / model).write_bytes(b"not read while planning")
    (tmp_path / "data.npz").write_bytes(b"npz")
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def _problems(path: Path) -> list[str]:
    with pytest.raises(SpecError) as info:
        load(path)
    assert info.value.exit_code == 2
    return info.value.lines()


GOOD = """
    [defaults]
    samples = 2
    tfjs_backend = "cpu"
    atol = 1e-3

    [[model]]
    name = "classifier"
    source = "b.pt2"
    inputs = ["x:batch,3,8,8"]
    sample_data = "data.npz"
    targets = ["onnx", "tfjs"]
    atol = 1e-4
    tfjs_layout = "nhwc"

    [model.passes]
    onnx = ["quantize"]
    tfjs = ["quantize:dtype=uint8"]

    [[model]]
    name = "plain.onnx-model_2"
    source = "a.onnx"
    passes = ["simplify"]
    validate = "none"
"""


def test_a_pipeline_becomes_typed_specs_with_defaults_overridden(tmp_path):
    path = _write(tmp_path, GOOD)
    spec = load(path)
    jobs = spec.jobs()
    assert [j.id for j in jobs] == ["classifier/onnx", "classifier/tfjs", "plain.onnx-model_2/onnx"]
    onnx, tfjs, plain = jobs
    assert onnx.source == str(tmp_path / "b.pt2") and onnx.passes == ("quantize",)
    assert tfjs.passes == ("quantize:dtype=uint8",)
    assert onnx.options.atol == 1e-4 and plain.options.atol == 1e-3  # the model's own wins over [defaults]
    assert onnx.options.samples == 2 and onnx.options.tfjs_backend == "cpu"
    assert onnx.options.sample_data == tmp_path / "data.npz"  # relative to the pipeline file
    assert onnx.stages == ("torch->onnx", "quantize")
    assert tfjs.stages == ("torch->onnx", "onnx->tf", "tf->tfjs", "quantize")
    assert plain.stages == ("simplify",) and plain.passes == ("simplify",)
    assert [j.id for j in spec.jobs(["plain.onnx-model_2"])] == ["plain.onnx-model_2/onnx"]
    assert [j.id for j in spec.jobs(target="tfjs")] == ["classifier/tfjs"]
    assert TargetSpec.from_json(tfjs.to_json()) == tfjs


def test_options_map_to_api_export_as_the_export_command_maps_them(tmp_path):
    spec = load(_write(tmp_path, GOOD))
    onnx, tfjs, plain = spec.jobs()
    kw = tfjs.export_kwargs(tmp_path / "out")
    assert kw["to"] == "tfjs" and kw["tfjs_layout"] == "nhwc" and kw["runner_options"] == {"backend": "cpu"}
    assert kw["check"] and not kw["validate_each"] and kw["samples"] == 2 and kw["inputs"] == ("x:batch,3,8,8",)
    assert kw["feeds"] == str(tmp_path / "data.npz") and kw["exporter"] == "auto" and kw["onnx_to_tf"] == "auto"
    assert not plain.export_kwargs(tmp_path / "o")["check"]  # validate = "none" is --no-check
    nchw = export_kwargs(ExportOptions(tfjs_layout="nchw", validate="each"), "tfjs", (), tmp_path)
    assert nchw["tfjs_layout"] == "source" and nchw["validate_each"]  # as cli.export maps --tfjs-layout nchw
    # a [defaults] calibration reaches only the passes that quantize statically
    opts = ExportOptions(calibration=tmp_path / "data.npz")
    assert export_kwargs(opts, "onnx", ("quantize",), tmp_path)["calibration"] is None
    assert export_kwargs(opts, "onnx", ("quantize:mode=static",), tmp_path)["calibration"] == str(tmp_path / "data.npz")


BAD_CASES = {
    "unknown key": ("""
        [[model]]
        name = "m"
        source = "a.onnx"
        passes = ["simplify"]
        atl = 1e-4
        """, 5, "atl", "unknown key (did you mean 'atol'?)"),
    "wrong type": ("""
        [defaults]
        samples = "3"
        [[model]]
        name = "m"
        source = "a.onnx"
        passes = ["simplify"]
        """, 2, "samples", "must be an integer, not a string"),
    "bool is not an int": ("""
        [[model]]
        name = "m"
        source = "a.onnx"
        passes = ["simplify"]
        seed = true
        """, 5, "seed", "must be an integer, not a boolean"),
    "out of range": ("""
        [[model]]
        name = "m"
        source = "a.onnx"
        passes = ["simplify"]
        samples = 0
        """, 5, "samples", "0 is out of range (must be between 1 and 100)"),
    "bad choice": ("""
        [[model]]
        name = "m"
        source = "b.pt2"
        tfjs_layout = "nwhc"
        """, 4, "tfjs_layout", "'nwhc' is not one of nchw, nhwc"),
    "duplicate name": ("""
        [[model]]
        name = "m"
        source = "b.pt2"

        [[model]]
        name = "m"
        source = "a.onnx"
        passes = ["simplify"]
        """, 6, "name", "duplicate name (also the model on line 2); names must be unique"),
    "missing source file": ("""
        [[model]]
        name = "m"
        source = "models/nope.pt2"
        """, 3, "source", "no such file: {tmp}/models/nope.pt2"),
    "missing sample data": ("""
        [[model]]
        name = "m"
        source = "b.pt2"
        sample_data = "nope.npz"
        """, 4, "sample_data", "no such file: {tmp}/nope.npz"),
    "unknown target": ("""
        [[model]]
        name = "m"
        source = "b.pt2"
        targets = ["onnx", "tfjz"]
        """, 4, "targets", "unknown target 'tfjz' (did you mean 'tfjs'?); one of onnx, tf, tfjs"),
    "unknown pass": ("""
        [[model]]
        name = "m"
        source = "b.pt2"
        targets = ["onnx"]

        [model.passes]
        onnx = ["quantise"]
        """, 7, "passes.onnx", "unknown pass 'quantise' (available: fp16, prune, quantize, simplify)"),
    "bad pass option": ("""
        [[model]]
        name = "m"
        source = "b.pt2"
        passes.onnx = ["quantize:bogus=1"]
        """, 4, "passes.onnx", "pass 'quantize' (onnx) has no option 'bogus'"),
    "pass for a target the model does not make": ("""
        [[model]]
        name = "m"
        source = "b.pt2"
        targets = ["onnx"]
        passes = { tfjs = ["quantize"] }
        """, 5, "passes.tfjs", "'tfjs' is not one of this model's targets (onnx)"),
    "nothing to do for the source's own format": ("""
        [[model]]
        name = "m"
        source = "a.onnx"
        targets = ["onnx"]
        """, 4, "targets", "the source is already a onnx model and no pass is asked for it"),
    "name is a folder": ("""
        [[model]]
        name = "../escape"
        source = "b.pt2"
        """, 2, "name", "must be letters, digits, '.', '_' or '-'"),
    "samples_from data without data": ("""
        [[model]]
        name = "m"
        source = "b.pt2"
        samples_from = "data"
        """, 4, "samples_from", "'data' needs real data: set sample_data"),
    "calibration without static quantization": ("""
        [[model]]
        name = "m"
        source = "b.pt2"
        calibration = "data.npz"
        """, 4, "calibration", "applies to static quantization"),
    "bad --input spec": ("""
        [[model]]
        name = "m"
        source = "b.pt2"
        inputs = ["x:batch,,3"]
        """, 4, "inputs", "neither a positive integer nor a name"),
    "unknown table": ("""
        [default]
        samples = 2
        [[model]]
        name = "m"
        source = "b.pt2"
        """, 1, "default", "unknown key (did you mean 'defaults'?)"),
}


@pytest.mark.parametrize("case", list(BAD_CASES))
def test_each_problem_names_the_file_the_line_and_the_key(tmp_path, case):
    text, line, key, message = BAD_CASES[case]
    path = _write(tmp_path, text)
    (problem,) = _problems(path)
    assert problem.startswith(f"{path}:{line}: ") and f"key '{key}'" in problem, problem
    assert message.format(tmp=tmp_path.resolve()) in problem, problem


def test_every_problem_is_reported_in_line_order(tmp_path):
    path = _write(tmp_path, """
        [defaults]
        samples = "3"
        colour = 1

        [[model]]
        name = "m"
        source = "b.pt2"
        targets = ["onnx", "tfjz"]
        atl = 1e-4

        [model.passes]
        onnx = ["quantise"]

        [[model]]
        name = "m"
        source = "missing.pt2"
        """)
    problems = _problems(path)
    assert [int(p.split(":")[1]) for p in problems] == [2, 3, 8, 9, 12, 15]
    assert problems[0] == f"{path}:2: [defaults], key 'samples': must be an integer, not a string"
    assert problems[-1] == f"{path}:15: [[model]] 'm', key 'name': duplicate name (also the model on line 6); " \
                           "names must be unique"


def test_toml_syntax_errors_carry_their_line(tmp_path):
    path = _write(tmp_path, """
        [[model]]
        name = "m"
        source = "b.pt2
        """)
    (problem,) = _problems(path)
    assert problem.startswith(f"{path}:3: ") and "invalid TOML" in problem


def test_a_file_without_models_and_a_missing_file(tmp_path):
    (problem,) = _problems(_write(tmp_path, "[defaults]\nsamples = 2\n"))
    assert "no [[model]] table: nothing to run" in problem
    (problem,) = _problems(tmp_path / "nope.toml")
    assert problem == f"{tmp_path / 'nope.toml'}: pipeline file: no such file"


def test_import_path_sources_and_directories(tmp_path):
    (tmp_path / "saved").mkdir()
    (tmp_path / "saved" / "model.onnx").write_bytes(b"x")
    path = _write(tmp_path, """
        [[model]]
        name = "built"
        source = "mypkg.models:build"
        inputs = ["x:batch,4"]

        [[model]]
        name = "dir"
        source = "saved"
        passes = ["simplify"]
        """)
    built, folder = load(path).jobs()
    assert built.source == "mypkg.models:build" and built.stages == ("torch->onnx",)
    assert folder.source == str(tmp_path / "saved") and folder.stages == ("simplify",)


def test_line_scanner_skips_multi_line_values_and_reads_dotted_keys():
    lines = scan(textwrap.dedent('''
        [defaults]
        inputs = [
          "a = 1",   # not a key
          "b:1,2",
        ]
        doc = """
        name = "not a key either"
        """
        [[model]]
        name = "one"
        passes.onnx = ["quantize"]
        [[model]]
        name = "two"
        [model.passes]
        tfjs = ["fp16"]
        '''))
    assert lines.of(("defaults",), "inputs") == 3 and (("defaults",), "a") not in lines.keys
    assert lines.of(("defaults",), "name") == 2  # not found: the table's header
    assert lines.of(("model", 0), "name") == 11 and lines.of(("model", 0), "passes.onnx") == 12
    assert lines.of(("model", 1), "name") == 14 and lines.of(("model", 1), "passes.tfjs") == 16
    assert lines.of(("model", 1), "passes.onnx") == 15  # the [model.passes] header


def test_cli_bad_pipeline_exits_2_with_one_line_per_problem_before_any_work(tmp_path):
    path = _write(tmp_path, BAD_CASES["unknown key"][0])
    r = convertkit("run", path, "-o", tmp_path / "out")
    assert r.returncode == 2, r.stderr
    assert r.stderr.splitlines()[0] == (f"convertkit: error: {path}:5: [[model]] 'm', key 'atl': "
                                        "unknown key (did you mean 'atol'?)")
    assert "Traceback" not in r.stderr and not (tmp_path / "out").exists()


def test_cli_unknown_only_and_target_exit_2(tmp_path):
    path = _write(tmp_path, GOOD)
    r = convertkit("run", path, "-o", tmp_path / "out", "--only", "classifier,nope")
    assert r.returncode == 2 and "--only nope: no such model" in r.stderr and "classifier" in r.stderr
    r = convertkit("run", path, "-o", tmp_path / "out", "--target", "tflite")
    assert r.returncode == 2 and "--target 'tflite' is not a target" in r.stderr
    r = convertkit("run", path, "-o", tmp_path / "out", "--only", "plain.onnx-model_2", "--target", "tfjs")
    assert r.returncode == 2 and "nothing to run" in r.stderr
    assert not (tmp_path / "out").exists()


def test_cli_refuses_an_outdir_it_did_not_write(tmp_path):
    path = _write(tmp_path, GOOD)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "mine.txt").write_text("user data")
    r = convertkit("run", path, "-o", tmp_path / "out")
    assert r.returncode == 2 and "exists and was not written by convertkit run" in r.stderr
    assert (tmp_path / "out" / "mine.txt").read_text() == "user data"


def test_cli_dry_run_prints_the_planned_stages_and_writes_nothing(tmp_path):
    path = _write(tmp_path, GOOD)
    r = convertkit("run", path, "-o", tmp_path / "out", "--dry-run", "--no-cache")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 3
    assert re.match(r"classifier/onnx +torch->onnx -> quantize -> validate  -> .*/out/classifier/onnx$", lines[0])
    assert "torch->onnx -> onnx->tf -> tf->tfjs -> quantize -> validate" in lines[1]
    assert re.match(r"plain.onnx-model_2/onnx +simplify  -> ", lines[2])  # validate = "none"
    assert not (tmp_path / "out").exists()


def test_the_run_help_documents_the_file_format():
    r = convertkit("run", "--help")
    assert r.returncode == 0
    for text in ("[defaults]", "[[model]]", "[model.passes]", "targets = [", "summary.json", "Exit codes"):
        assert text in r.stdout, text

