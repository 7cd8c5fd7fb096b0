"""convertkit doctor: the real environment passes; each broken piece fails its own row with exit 2.

The checks look at the real machine (installed distributions, Node, node_modules, the cache dir,
Chromium); a broken environment is made by pointing doctor at another lock file, an empty
node_modules, a cache it cannot create, or a PATH whose `node` is too old."""

from __future__ import annotations

import json
import os
import stat
import sys
from dataclasses import replace
from importlib.metadata import version
from pathlib import Path

import pytest

from converter.doctor import Status, default_options, diagnose
from converter.doctor import checks as dc
from tests.conftest import convertkit, need_chromium, need_node

NAMES = ["python", "python packages (lock.txt)", "python packages (nodeps.txt)", "node", "npm packages", "cpu",
         "cache", "chromium"]


def doctor(*args: str, **env: str):
    r = convertkit("doctor", "--json", *args, env=env)
    assert "Traceback" not in r.stderr, r.stderr
    rows = {c["name"]: c for c in json.loads(r.stdout)["checks"]}
    return r, rows


def failed_line(r) -> str:
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    return lines[0]


@pytest.fixture
def cache(tmp_path: Path) -> str:
    return str(tmp_path / "cache")


def test_real_environment_passes(cache: str):
    need_node()
    r, rows = doctor(CONVERTKIT_CACHE=cache)
    assert r.returncode == 0, r.stdout
    assert list(rows) == NAMES
    assert all(c["status"] == "OK" for n, c in rows.items() if n != "chromium"), rows
    assert "pin(s) of requirements/lock.txt installed" in rows["python packages (lock.txt)"]["detail"]
    assert rows["cache"]["detail"].endswith("GiB free") and "(created on first use)" in rows["cache"]["detail"]
    assert not Path(cache).exists()  # probed through its parent, not created
    assert json.loads(r.stdout)["ok"] is True and r.stderr == ""


def test_table_on_stdout_and_exit_code(cache: str):
    need_node()
    r = convertkit("doctor", env={"CONVERTKIT_CACHE": cache})
    assert r.returncode == 0, r.stdout + r.stderr
    for name in ("python packages", "npm packages", "node", "cpu", "cache", "status"):
        assert name in r.stdout
    assert "\x1b[" not in r.stdout  # not a terminal: no colour codes


def test_empty_node_modules_fails_the_npm_row(tmp_path: Path, cache: str):
    empty = tmp_path / "node_modules"
    empty.mkdir()
    r, rows = doctor(CONVERTKIT_NODE_MODULES=str(empty), CONVERTKIT_CACHE=cache)
    assert r.returncode == 2
    npm = rows["npm packages"]
    assert npm["status"] == "FAIL" and "none of the" in npm["detail"] and "is installed in" in npm["detail"]
    assert "@tensorflow/tfjs@4.22.0: not installed" in npm["problems"]
    assert "CONVERTKIT_NODE_MODULES" in npm["fix"]
    assert rows["python packages (lock.txt)"]["status"] == "OK"
    assert failed_line(r) == "convertkit doctor: 1 check(s) failed: npm packages"


def test_npm_package_at_another_version_is_named(tmp_path: Path):
    """A copy of the lock whose tfjs entry says 4.21.0: the installed 4.22.0 is a mismatch."""
    opts = default_options()
    lock = json.loads(opts.package_lock.read_text())
    lock["packages"]["node_modules/@tensorflow/tfjs"]["version"] = "4.21.0"
    other = tmp_path / "package-lock.json"
    other.write_text(json.dumps(lock))
    if not (opts.node_modules / "@tensorflow" / "tfjs").is_dir():
        need_node()
    [row] = dc.check_npm(dc.Options(opts.locks, opts.node_modules, other, opts.cache))
    assert row.status is Status.FAIL
    assert row.problems == ("@tensorflow/tfjs@4.21.0: 4.22.0 installed",)
    assert row.detail.startswith("1 of ")


@pytest.mark.parametrize("where", ["under_a_file", "proc"])
def test_unwritable_cache_fails_the_cache_row(tmp_path: Path, where: str):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    root = blocker / "cache" if where == "under_a_file" else Path("/proc/convertkit-cache")
    if where == "proc" and not Path("/proc").is_dir():
        pytest.skip("no /proc")
    r, rows = doctor(CONVERTKIT_CACHE=str(root))
    assert r.returncode == 2
    row = rows["cache"]
    assert row["status"] == "FAIL" and "CONVERTKIT_CACHE" in row["fix"] and "--no-cache" in row["fix"]
    assert ("is not a directory" if where == "under_a_file" else "is not writable") in row["detail"]
    assert "cache" in failed_line(r)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only directory")
def test_read_only_cache_dir(tmp_path: Path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        [row] = dc.check_cache(dc.Options((), tmp_path, tmp_path, ro / "cache"))
    finally:
        ro.chmod(stat.S_IRWXU)
    assert row.status is Status.FAIL and "is not writable" in row.detail


def test_lock_with_a_wrong_version_fails_its_row(tmp_path: Path, cache: str):
    numpy = version("numpy")
    wrong = numpy + ".post9"
    lock = tmp_path / "other-lock.txt"
    lock.write_text(f"# a lock from another machine\nclick=={version('click')}  # right\nnumpy=={wrong}\n"
                    "convertkit-no-such-dist==1.0\n")
    for how in (("--lock", str(lock)), ()):  # the option, then CONVERTKIT_LOCK
        env = {"CONVERTKIT_CACHE": cache} | ({} if how else {"CONVERTKIT_LOCK": str(lock)})
        r, rows = doctor(*how, **env)
        assert r.returncode == 2, how
        assert "python packages (lock.txt)" not in rows  # the given lock replaces the defaults
        row = rows["python packages (other-lock.txt)"]
        assert row["status"] == "FAIL"
        assert row["problems"] == [f"numpy=={wrong}: {numpy} installed", "convertkit-no-such-dist==1.0: not installed"]
        assert row["detail"].startswith("2 of 3 pins differ from ")
        assert "python packages (other-lock.txt)" in failed_line(r)


def test_local_version_labels_and_markers_match_as_pip_matches_them(tmp_path: Path):
    """torch 2.13.0+cpu satisfies torch==2.13.0 (PEP 440); a pin whose marker is false here is not checked."""
    lock = tmp_path / "lock.txt"
    public = version("numpy").split("+")[0]
    lock.write_text(f"numpy=={public}\nnosuch-windows-only==1.0 ; sys_platform == 'win32'\n")
    [row] = dc.check_locks(dc.Options((lock,), tmp_path, tmp_path, tmp_path))
    assert row.status is Status.OK and row.detail.startswith("1 pin(s) of ")
    installed = dc.installed_versions()
    assert all(name == name.lower() and "_" not in name for name in installed)  # PEP 503 names
    torch = installed.get("torch")
    if torch and "+" in torch:
        lock.write_text(f"torch=={torch.split('+')[0]}\n")
        assert dc.check_locks(dc.Options((lock,), tmp_path, tmp_path, tmp_path))[0].status is Status.OK


def test_unparsable_lock_line_is_named(tmp_path: Path):
    lock = tmp_path / "lock.txt"
    lock.write_text("click==8.5.1\nthis is === not a pin\n")
    [row] = dc.check_locks(dc.Options((lock,), tmp_path, tmp_path, tmp_path))
    assert row.status is Status.FAIL and "lock.txt:2: cannot parse 'this is === not a pin'" in row.detail


def test_missing_lock_file_is_a_usage_error(tmp_path: Path):
    r = convertkit("doctor", "--lock", str(tmp_path / "nope.txt"))
    assert r.returncode == 2
    assert r.stderr.strip() == f"convertkit: error: --lock {tmp_path / 'nope.txt'}: no such file (give a requirements " \
                               "file of name==version lines)"
    assert r.stdout == ""


def _fake_node(tmp_path: Path, out: str) -> str:
    """A PATH whose only `node` prints `out` for --version: an old Node.js, without installing one."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    node = bin_dir / "node"
    node.write_text(f"#!/bin/sh\necho {out}\n")
    node.chmod(0o755)
    return str(bin_dir)


def test_old_node_fails_the_node_row(tmp_path: Path, cache: str):
    r, rows = doctor(PATH=_fake_node(tmp_path, "v16.20.0"), CONVERTKIT_CACHE=cache)
    assert r.returncode == 2
    assert rows["node"]["status"] == "FAIL"
    assert rows["node"]["detail"].endswith("is v16.20.0; the TF.js runtime needs >= 18")


def test_no_node_on_path(tmp_path: Path, cache: str):
    (tmp_path / "bin").mkdir()
    r, rows = doctor(PATH=str(tmp_path / "bin"), CONVERTKIT_CACHE=cache)
    assert r.returncode == 2 and rows["node"]["detail"] == "`node` is not on PATH"


def test_chromium_is_informational_unless_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("CONVERTKIT_CHROMIUM", str(tmp_path / "no-chromium"))
    opts = dc.Options((), tmp_path, tmp_path, tmp_path)
    [info] = dc.check_chromium(opts)
    assert info.status is Status.WARN and "informational" in info.detail
    [required] = dc.check_chromium(dc.Options((), tmp_path, tmp_path, tmp_path, browser=True))
    assert required.status is Status.FAIL


def test_browser_renders_a_page_headless(cache: str):
    assert dc.find_chromium() == need_chromium()  # the Chromium the HTML report's test uses
    [row] = dc.check_chromium(dc.Options((), Path(), Path(), Path(cache), browser=True))
    assert row.status is Status.OK and row.detail.endswith("; rendered a page headless"), row


def test_ray_only_when_asked(tmp_path: Path, cache: str):
    opts = default_options()
    assert diagnose(opts, [dc.check_ray]).checks == ()
    [row] = dc.check_ray(replace(opts, ray=True))
    have = dc.installed_versions().get("ray")
    if have is None:
        assert row.status is Status.FAIL and row.detail == "ray is not installed" and "convertkit[ray]" in row.fix
        r, rows = doctor("--ray", CONVERTKIT_CACHE=cache)
        assert r.returncode == 2 and rows["ray"]["status"] == "FAIL"
        return
    assert row.status is Status.OK and row.detail == f"ray {have} imports"
    lock = tmp_path / "lock.txt"
    lock.write_text("ray==0.0.1\n")
    [bad] = dc.check_ray(replace(opts, locks=(lock,), ray=True))
    assert bad.status is Status.FAIL and bad.detail == f"ray {have} installed, the lock pins ray==0.0.1"
    r, rows = doctor("--ray", "--lock", str(lock), CONVERTKIT_CACHE=cache)
    assert r.returncode == 2 and rows["ray"]["status"] == "FAIL"


def test_optional_package_missing_is_not_a_failure(tmp_path: Path):
    """Ray is pinned in the lock but only installed with convertkit[ray]: without it the lock row
    still passes and says so; a missing required pin fails beside it."""
    lock = tmp_path / "lock.txt"
    lock.write_text("ray==2.52.1\nclick==8.5.1\n")
    ok = dc._check_lock(lock, {"click": "8.5.1"})
    assert ok.status is Status.OK and ok.detail.endswith("not installed: ray (optional: checked with --ray)")
    bad = dc._check_lock(lock, {})
    assert bad.status is Status.FAIL and bad.problems == ("click==8.5.1: not installed",)


def test_python_row_reads_requires_python():
    [row] = dc.check_python(dc.Options((), Path(), Path(), Path()))
    assert row.name == "python" and row.detail.startswith(".".join(map(str, sys.version_info[:3])))
    assert row.status is Status.OK
