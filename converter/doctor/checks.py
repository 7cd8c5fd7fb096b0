"""The checks of ``convertkit doctor``: one small function per check, each returning typed
:class:`Check` rows; :data:`CHECKS` is the list the command runs (adding a check = adding a function
to it). Stdlib at import time; packaging, rich and the checks' own imports load when they run."""

from __future__ import annotations

import enum
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from packaging.specifiers import SpecifierSet

ROOT = Path(__file__).resolve().parents[2]  # the repository of an editable / source install
DEFAULT_LOCKS = (ROOT / "requirements" / "lock.txt", ROOT / "requirements" / "nodeps.txt")
#: pinned in the lock but only needed when asked for (``--ray``): not missing when absent
OPTIONAL = {"ray": "--ray"}
MIN_FREE_BYTES = 2 << 30  # a cache with less free space than this is a warning


class Status(enum.StrEnum):
    OK = "OK"
    WARN = "WARN"  # works, but not as tested, or only informational
    FAIL = "FAIL"  # a command that needs this will fail: doctor exits 2


@dataclass(frozen=True)
class Check:
    """One row: what was checked, how it went, what was seen, and what to do about it."""

    name: str
    status: Status
    detail: str
    fix: str = ""
    needed_by: str = ""  # the commands or features that need it
    problems: tuple[str, ...] = ()  # one entry per mismatch, for --json


@dataclass(frozen=True)
class Options:
    locks: tuple[Path, ...]
    node_modules: Path
    package_lock: Path
    cache: Path
    ray: bool = False
    browser: bool = False


@dataclass(frozen=True)
class Pin:
    line: int
    text: str  # the requirement as written
    name: str  # canonical (PEP 503)
    specifier: SpecifierSet
    applies: bool  # environment marker true here (or none)


@dataclass(frozen=True)
class Result:
    checks: tuple[Check, ...] = field(default_factory=tuple)

    @property
    def failed(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if c.status is Status.FAIL)

    @property
    def exit_code(self) -> int:
        return 2 if self.failed else 0

    def to_json(self) -> dict:
        return {"schema": "convertkit.doctor/1", "ok": not self.failed, "exit_code": self.exit_code,
                "checks": [{**asdict(c), "status": c.status.value, "problems": list(c.problems)}
                           for c in self.checks]}


# -- python and its packages --------------------------------------------------------------------


def show(path: Path | str) -> str:
    """A path as a person reads it: relative to the working directory when inside it, ~ for home."""
    path = Path(path)
    for base, label in ((Path.cwd(), ""), (Path.home(), "~/")):
        try:
            rel = path.relative_to(base)
        except ValueError:
            continue
        return f"{label}{rel}" if str(rel) != "." else (label.rstrip("/") or ".")
    return str(path)


def check_python(opts: Options) -> list[Check]:
    from importlib.metadata import PackageNotFoundError, metadata

    here = ".".join(map(str, sys.version_info[:3]))
    try:
        requires = metadata("convertkit")["Requires-Python"] or ""
    except PackageNotFoundError:
        return [Check("python", Status.WARN, f"{here}; convertkit is not installed as a package",
                      "run `make install` (pip install -e .)", "every command")]
    if not requires or _spec_contains(requires, here):
        return [Check("python", Status.OK, f"{here} ({show(sys.executable)})", needed_by="every command")]
    return [Check("python", Status.FAIL, f"{here} does not satisfy Requires-Python {requires}",
                  f"use a Python {requires} (make install: PYTHON=python3.11)", "every command")]


def _spec_contains(spec: str, version: str) -> bool:
    from packaging.specifiers import SpecifierSet

    return SpecifierSet(spec).contains(version, prereleases=True)


def read_lock(path: Path) -> list[Pin]:
    """The pins of a requirements file (``name==version [; marker]``, comments, pip options skipped).
    Raises ValueError naming the line for one packaging cannot parse."""
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    pins = []
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        text = raw.split(" #", 1)[0].strip()
        if not text or text.startswith(("#", "-")):
            continue
        try:
            req = Requirement(text)
        except InvalidRequirement as exc:
            raise ValueError(f"{show(path)}:{number}: cannot parse '{text}': {exc}") from None
        applies = req.marker is None or req.marker.evaluate()
        pins.append(Pin(number, text, canonicalize_name(req.name), req.specifier, applies))
    return pins


def installed_versions() -> dict[str, str]:
    """Canonical distribution name -> version, for everything on sys.path (first one wins, as import does)."""
    from importlib.metadata import distributions

    from packaging.utils import canonicalize_name

    found: dict[str, str] = {}
    for dist in distributions():
        name = dist.metadata["Name"]
        if name:
            found.setdefault(canonicalize_name(name), dist.version)
    return found


def check_locks(opts: Options) -> list[Check]:
    try:
        installed = installed_versions()
    except ImportError as exc:  # packaging itself is pinned in the lock
        return [Check("python packages", Status.FAIL, f"cannot read the lock: {exc}", "run `make install`",
                      "every command")]
    if not opts.locks:
        return [Check("python packages", Status.WARN, "no lock file beside this convertkit (installed without "
                      "its repository): versions not checked", "give one with --lock FILE", "every command")]
    return [_check_lock(path, installed) for path in opts.locks]


def _check_lock(path: Path, installed: dict[str, str]) -> Check:
    name = f"python packages ({path.name})"
    try:
        pins = read_lock(path)
    except (OSError, ValueError) as exc:
        return Check(name, Status.FAIL, f"cannot read {show(path)}: {exc}", "fix or restore the lock file", "every command")
    problems, optional = [], []
    for pin in (p for p in pins if p.applies):
        have = installed.get(pin.name)
        if have is None and pin.name in OPTIONAL:
            optional.append(f"{pin.name} (optional: checked with {OPTIONAL[pin.name]})")
        elif have is None:
            problems.append(f"{pin.text}: not installed")
        elif not pin.specifier.contains(have, prereleases=True):
            problems.append(f"{pin.text}: {have} installed")
    checked = sum(p.applies for p in pins) - len(optional)
    if problems:
        shown = "; ".join(problems[:4]) + (f"; and {len(problems) - 4} more" if len(problems) > 4 else "")
        return Check(name, Status.FAIL, f"{len(problems)} of {checked} pins differ from {show(path)}: {shown}",
                     f"run `make install` (pip install -r {show(path)})", "every command", tuple(problems))
    extra = f"; not installed: {', '.join(optional)}" if optional else ""
    return Check(name, Status.OK, f"{checked} pin(s) of {show(path)} installed{extra}", needed_by="every command")


# -- node and the TF.js runtime -------------------------------------------------------------------


def check_node(opts: Options) -> list[Check]:
    need = "tfjs targets and TF.js validation"
    wanted = _engines_node(opts.package_lock.parent / "package.json")
    node = shutil.which("node")
    if node is None:
        return [Check("node", Status.FAIL, "`node` is not on PATH", f"install Node.js >= {wanted}", need)]
    try:
        out = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired) as exc:
        return [Check("node", Status.FAIL, f"{node} --version failed: {exc}", f"reinstall Node.js >= {wanted}", need)]
    match = re.match(r"v?(\d+)\.", out)
    if match is None or int(match.group(1)) < wanted:
        return [Check("node", Status.FAIL, f"{node} is {out or 'of unknown version'}; the TF.js runtime needs "
                      f">= {wanted}", f"install Node.js >= {wanted}", need)]
    return [Check("node", Status.OK, f"{out} ({node})", needed_by=need)]


def _engines_node(package_json: Path) -> int:
    """The major version ``engines.node`` (">=18") asks for; 18 when it says nothing readable."""
    try:
        spec = json.loads(package_json.read_text()).get("engines", {}).get("node", "")
    except (OSError, ValueError):
        spec = ""
    match = re.search(r">=\s*(\d+)", spec)
    return int(match.group(1)) if match else 18


def check_npm(opts: Options) -> list[Check]:
    need = "tfjs targets and TF.js validation"
    fix = "run `make install` (npm ci --prefix converter/formats/tfjs/node)"
    if os.environ.get("CONVERTKIT_NODE_MODULES"):
        fix = "point CONVERTKIT_NODE_MODULES at an `npm ci` node_modules, or unset it"
    try:
        packages = json.loads(opts.package_lock.read_text())["packages"]
    except (OSError, ValueError, KeyError) as exc:
        return [Check("npm packages", Status.FAIL, f"cannot read {show(opts.package_lock)}: {exc}",
                      "restore package-lock.json from the repository", need)]
    problems, checked = [], 0
    for key, meta in sorted(packages.items()):
        if not key.startswith("node_modules/") or meta.get("dev") or meta.get("optional") or meta.get("link"):
            continue
        checked += 1
        rel = key[len("node_modules/"):]
        have = _npm_version(opts.node_modules / rel / "package.json")
        if have is None:
            problems.append(f"{rel}@{meta.get('version')}: not installed")
        elif have != meta.get("version"):
            problems.append(f"{rel}@{meta.get('version')}: {have} installed")
    if checked and len(problems) == checked and all(p.endswith("not installed") for p in problems):
        return [Check("npm packages", Status.FAIL, f"none of the {checked} packages of {opts.package_lock.name} is "
                      f"installed in {show(opts.node_modules)}", fix, need, tuple(problems))]
    if problems:
        shown = "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
        return [Check("npm packages", Status.FAIL, f"{len(problems)} of {checked} packages of {opts.package_lock.name} "
                      f"differ in {show(opts.node_modules)}: {shown}", fix, need, tuple(problems))]
    return [Check("npm packages", Status.OK, f"{checked} packages of {opts.package_lock.name} installed in "
                  f"{show(opts.node_modules)}", needed_by=need)]


def _npm_version(package_json: Path) -> str | None:
    try:
        return str(json.loads(package_json.read_text()).get("version"))
    except (OSError, ValueError):
        return None


# -- the machine ----------------------------------------------------------------------------------


def check_cpu(opts: Options) -> list[Check]:
    from ..passes.int8_target import cpu_features, saturates_here

    feats = cpu_features()
    flags = ", ".join(feats["flags"]) or "none of " + "/".join(("avx2", "avx512f", "avx512_vnni"))
    detail = f"{feats['machine']}: {flags}"
    if feats["machine"] in ("x86_64", "amd64") and not feats["flags"]:
        return [Check("cpu", Status.WARN, detail + " (no int8 flags read from /proc/cpuinfo)",
                      "int8 latency and numerics were not measured on such a CPU", "-p quantize")]
    if saturates_here(feats):
        detail += ("; no VNNI: onnxruntime's u8 x s8 int8 kernels saturate here unless weights are 7-bit "
                   "(quantize's default target=portable is exact)")
    return [Check("cpu", Status.OK, detail, needed_by="-p quantize")]


def check_cache(opts: Options) -> list[Check]:
    need = "convertkit run (without --no-cache)"
    fix = "set CONVERTKIT_CACHE to a writable directory (or run with --no-cache)"
    root = opts.cache
    probe = root
    while not probe.exists() and probe != probe.parent:  # the cache is made on first use: test its parent
        probe = probe.parent
    if not probe.is_dir():
        return [Check("cache", Status.FAIL, f"{show(root)} cannot be created: {show(probe)} is not a directory", fix, need)]
    try:
        tempfile.TemporaryDirectory(prefix=".convertkit-doctor-", dir=probe).cleanup()
    except OSError as exc:
        return [Check("cache", Status.FAIL, f"{show(root)} is not writable: {exc.strerror or exc} ({show(probe)})", fix, need)]
    free = shutil.disk_usage(probe).free
    detail = f"{show(root)} writable{'' if probe == root else ' (created on first use)'}, {free / 2**30:.1f} GiB free"
    if free < MIN_FREE_BYTES:
        return [Check("cache", Status.WARN, detail, "free some space: one entry is a model and its report", need)]
    return [Check("cache", Status.OK, detail, needed_by=need)]


def find_chromium() -> str | None:
    """``$CONVERTKIT_CHROMIUM``, else ``chromium`` on PATH, else /usr/bin/chromium (Debian's): the
    one the HTML report's browser test takes (tests.conftest.need_chromium, make install-browser)."""
    exe = os.environ.get("CONVERTKIT_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    return exe if os.access(exe, os.X_OK) else None


def check_chromium(opts: Options) -> list[Check]:
    need = "--browser chromium and the HTML report's browser test"
    bad = Status.FAIL if opts.browser else Status.WARN
    exe = find_chromium()
    if exe is None:
        return [Check("chromium", bad, "no Chromium found (CONVERTKIT_CHROMIUM, PATH, /usr/bin/chromium)"
                      + ("" if opts.browser else "; informational (--browser makes it required)"),
                      "make install-browser (Debian's chromium), or set CONVERTKIT_CHROMIUM", need)]
    try:
        version = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
        if opts.browser:
            _render_headless(exe)
    except (OSError, subprocess.TimeoutExpired, RuntimeError) as exc:
        return [Check("chromium", bad, f"{exe} does not run: {exc}", "reinstall Chromium", need)]
    rendered = "; rendered a page headless" if opts.browser else ""
    return [Check("chromium", Status.OK, f"{version or 'unknown version'} ({exe}){rendered}", needed_by=need)]


def _render_headless(exe: str) -> None:
    marker = "convertkit-doctor-ok"
    args = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", f"data:text/html,<p>{marker}</p>"]
    r = subprocess.run(args, capture_output=True, text=True, timeout=120)
    if marker not in r.stdout:
        tail = (r.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"headless render failed (exit {r.returncode}): {tail}")


def check_ray(opts: Options) -> list[Check]:
    if not opts.ray:
        return []
    need = "convertkit run --executor ray"
    fix = "pip install 'convertkit[ray]' (the version the lock pins)"
    have = installed_versions().get("ray")
    if have is None:
        return [Check("ray", Status.FAIL, "ray is not installed", fix, need)]
    pinned = [p for lock in opts.locks if lock.is_file() for p in read_lock(lock) if p.name == "ray" and p.applies]
    if pinned and not pinned[0].specifier.contains(have, prereleases=True):
        return [Check("ray", Status.FAIL, f"ray {have} installed, the lock pins {pinned[0].text}", fix, need)]
    r = subprocess.run([sys.executable, "-c", "import ray"], capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        tail = (r.stderr.strip().splitlines() or ["no output"])[-1]
        return [Check("ray", Status.FAIL, f"ray {have} does not import: {tail}", fix, need)]
    return [Check("ray", Status.OK, f"ray {have} imports", needed_by=need)]


#: the checks, in the order of the table
CHECKS: tuple[Callable[[Options], list[Check]], ...] = (
    check_python, check_locks, check_node, check_npm, check_cpu, check_cache, check_chromium, check_ray)


def diagnose(opts: Options, checks: Iterable[Callable[[Options], list[Check]]] = CHECKS) -> Result:
    return Result(tuple(row for check in checks for row in check(opts)))


