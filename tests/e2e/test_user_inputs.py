"""What a new user meets first with their own inputs and files (issue 14): an OUTDIR that cannot be
written, temporary directories left by killed runs, inputs the source model cannot run, real data
whose domain the extra samples must respect, and integer inputs that index a table."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.conftest import ROOT, convertkit, need


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


@pytest.mark.parametrize("where", ["proc", "under_a_file"])
def test_outdir_whose_parent_cannot_be_made_exits_2(tmp_path, where):
    need("onnx", "onnxruntime")
    src = _mlp(tmp_path / "m.onnx")
    (tmp_path / "a_file").write_text("x")
    out = Path("/proc/convertkit-nope/out") if where == "proc" else tmp_path / "a_file" / "out"
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
    assert sorted(p.name for p in out.iterdir()) == ["model.onnx", "report.json"]
