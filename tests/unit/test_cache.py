"""The artifact cache of `convertkit run`: what its key covers, restores byte for byte, and a
corrupted entry is deleted and never used. The artifacts here are folders as export writes them
(a model file and report.json); the end-to-end test (tests/e2e/test_run_pipeline.py) stores and
restores real conversions."""

from __future__ import annotations

import dataclasses
import json
import logging
import textwrap
from pathlib import Path

import pytest

from converter.ci.cache import Cache, key_for, source_digest
from converter.ci.options import ExportOptions
from converter.ci.spec import TargetSpec
from converter.ci.summary import ERROR, FAILED, PASSED, Row
from tests.conftest import convertkit


def _spec(tmp_path: Path, **options) -> TargetSpec:
    src = tmp_path / "m.onnx"
    if not src.exists():
        src.write_bytes(b"model bytes v1")
    return TargetSpec("m", "onnx", str(src), ("simplify",), ExportOptions(**options), str(tmp_path), ("simplify",))


def _artifact(dest: Path, payload: bytes = b"\x08\x01onnx") -> Path:
    dest.mkdir(parents=True)
    (dest / "model.onnx").write_bytes(payload)
    (dest / "sub").mkdir()
    (dest / "sub" / "weights.bin").write_bytes(bytes(range(256)))
    (dest / "report.json").write_text(json.dumps({"verdict": "PASSED", "artifact": str(dest / "model.onnx")}))
    return dest


def _row(verdict: str = PASSED, code: int = 0) -> Row:
    return Row("m", "onnx", ["simplify"], verdict, code, 1.5, False, artifact="m/onnx", bytes=6, parity="parity PASSED")


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_key_covers_source_bytes_options_and_data_not_names(tmp_path):
    spec = _spec(tmp_path)
    key = key_for(spec)
    assert key == key_for(_spec(tmp_path)) and len(key) == 64
    assert key_for(_spec(tmp_path, samples=3, seed=0, validate="final")) == key  # convertkit's defaults written down
    assert key_for(_spec(tmp_path, timeout=30.0)) == key  # not part of the artifact
    assert key_for(_spec(tmp_path, atol=1e-5)) != key
    assert key_for(dataclasses.replace(spec, passes=("simplify", "fp16"))) != key
    assert key_for(dataclasses.replace(spec, target="tfjs")) != key
    (tmp_path / "a.npz").write_bytes(b"data")
    (tmp_path / "b.npz").write_bytes(b"data")
    (tmp_path / "c.npz").write_bytes(b"other data")
    with_a = key_for(_spec(tmp_path, sample_data=tmp_path / "a.npz"))
    assert with_a != key and with_a == key_for(_spec(tmp_path, sample_data=tmp_path / "b.npz"))  # content, not name
    assert with_a != key_for(_spec(tmp_path, sample_data=tmp_path / "c.npz"))
    Path(spec.source).write_bytes(b"model bytes v2")
    assert key_for(spec) != key


def test_source_digest_of_directories_and_import_paths(tmp_path):
    d = tmp_path / "saved"
    (d / "variables").mkdir(parents=True)
    (d / "saved_model.pb").write_bytes(b"graph")
    (d / "variables" / "v.data").write_bytes(b"weights")
    before = source_digest(str(d), str(tmp_path))
    (d / "variables" / "v.data").write_bytes(b"weights2")
    assert source_digest(str(d), str(tmp_path)) != before
    pkg = tmp_path / "zoo_pkg_for_cache_test"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "models.py").write_text("def build():\n    return None\n")
    (pkg / "layers.py").write_text("SIZE = 4\n")
    first = source_digest("zoo_pkg_for_cache_test.models:build", str(tmp_path))
    (pkg / "layers.py").write_text("SIZE = 8\n")  # another module of the package: the callable may use it
    assert source_digest("zoo_pkg_for_cache_test.models:build", str(tmp_path)) != first


def test_store_then_restore_gives_the_same_bytes(tmp_path):
    cache = Cache(tmp_path / "cache")
    dest = _artifact(tmp_path / "out" / "m" / "onnx")
    assert cache.store("ab" * 32, dest, _row())
    hit = cache.lookup("ab" * 32)
    assert hit is not None and hit.row.verdict == PASSED and hit.row.parity == "parity PASSED"
    again = tmp_path / "out" / "m" / "again"
    cache.restore(hit, again)
    original, restored = _files(dest), _files(again)
    report = json.loads(restored.pop("report.json"))
    assert report["artifact"] == str(again / "model.onnx")  # the path in the report follows the new folder
    original.pop("report.json")
    assert restored == original
    cache.restore(hit, dest)  # into the folder it was made for: byte for byte, report.json too
    assert _files(dest) == _files(hit.path)
    info = cache.info()
    assert info.entries == 1 and info.bytes > 256 and info.root == tmp_path / "cache"


def test_errors_are_never_stored(tmp_path):
    cache = Cache(tmp_path / "cache")
    dest = _artifact(tmp_path / "out")
    assert not cache.store("cd" * 32, dest, _row(ERROR, 3))
    assert cache.store("ef" * 32, dest, _row(FAILED, 1))  # a parity failure is deterministic: kept
    assert cache.lookup("cd" * 32) is None and cache.lookup("ef" * 32).row.verdict == FAILED
    assert not cache.store("01" * 32, tmp_path / "nothing-here", _row())


CORRUPTIONS = {
    "changed byte": lambda e: (e / "artifact" / "model.onnx").write_bytes(b"\x08\x02onnx"),
    "missing file": lambda e: (e / "artifact" / "sub" / "weights.bin").unlink(),
    "extra file": lambda e: (e / "artifact" / "stray.txt").write_text("x"),
    "broken manifest": lambda e: (e / "manifest.json").write_text("{"),
    "changed row": lambda e: (e / "row.json").write_text(json.dumps({**json.loads((e / "row.json").read_text()),
                                                                       "verdict": "FAILED"})),
}


@pytest.mark.parametrize("how", list(CORRUPTIONS))
def test_a_corrupted_entry_is_deleted_logged_and_never_used(tmp_path, caplog, how):
    cache = Cache(tmp_path / "cache")
    key = "9f" * 32
    cache.store(key, _artifact(tmp_path / "out"), _row())
    entry = tmp_path / "cache" / "v1" / "9f" / key
    CORRUPTIONS[how](entry)
    with caplog.at_level(logging.WARNING, logger="converter.ci.cache"):
        assert cache.lookup(key) is None
    assert not entry.exists() and cache.info().entries == 0
    assert f"cache entry {key[:12]} is corrupted" in caplog.text
    assert cache.store(key, tmp_path / "out", _row()) and cache.lookup(key) is not None  # rebuilt


def test_cli_cache_info_and_clear(tmp_path):
    cache = Cache(tmp_path / "c")
    cache.store("12" * 32, _artifact(tmp_path / "a"), _row())
    cache.store("34" * 32, _artifact(tmp_path / "b"), _row())
    env = {"CONVERTKIT_CACHE": str(tmp_path / "c")}
    r = convertkit("cache", "info", "--json", env=env)
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["root"] == str(tmp_path / "c") and info["entries"] == 2 and info["bytes"] > 512
    r = convertkit("cache", "clear", env=env)
    assert r.returncode == 0 and r.stdout.startswith(f"removed 2 entries ({info['bytes']:,} bytes)")
    r = convertkit("cache", "info", env=env)
    assert r.stdout == textwrap.dedent(f"""\
        cache: {tmp_path / 'c'}
        entries: 0
        bytes: 0
        """)
