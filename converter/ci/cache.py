"""A content-addressed cache of artifacts, so that a rerun of an unchanged pipeline restores its
artifacts instead of converting again.

Where: ``$CONVERTKIT_CACHE`` (default ``~/.cache/convertkit``); in CI, a directory the CI system
keeps between runs (or shared storage for many machines: entries appear by one rename, so
concurrent writers and readers never see half an entry).

The key (:func:`key_for`) is a sha256 over everything that makes the artifact: the bytes of the
source (a file, every file of a directory, or the Python files of a package.module:callable's
package), of the weights, sample data and calibration data; the model x target's options with
convertkit's defaults filled in (sorted JSON; paths enter by their content, not their name);
convertkit's version and a digest of its code; the versions of the libraries that touch the
artifact (converter.report.environment(), the npm lock of the TF.js runtime) and the machine
architecture.

An entry (``v1/ab/abcdef.../``) holds ``artifact/`` (what OUTDIR/NAME/TARGET held: the model and
its report.json), ``row.json`` (its summary row) and ``manifest.json`` (the sha256 of every file).
Every restore checks the manifest first: a missing, changed or extra file means a corrupted
entry, which is deleted (and logged) and rebuilt, never used. Only deterministic results are
stored: an artifact with a PASSED, FAILED or UNCHECKED verdict, never an error.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from ..fsutil import atomic_dir
from .summary import ERROR, Row

log = logging.getLogger(__name__)
LAYOUT = "v1"  # bumped when the entry layout changes: old entries are then simply never hit
_CHUNK = 1 << 20


def default_root() -> Path:
    env = os.environ.get("CONVERTKIT_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "convertkit"


@dataclass(frozen=True)
class CacheInfo:
    root: Path
    entries: int
    bytes: int


@dataclass(frozen=True)
class Hit:
    """A verified entry: its artifact folder and the row stored with it."""

    key: str
    path: Path
    row: Row
    made_at: str  # the pipeline's OUTDIR/NAME/TARGET when the entry was stored


def digest_path(path: Path, h: Any = None) -> str:
    """sha256 of a file, or of a directory's files (relative names and bytes, in sorted order)."""
    h = h or hashlib.sha256()
    if path.is_file():
        with path.open("rb") as f:
            while chunk := f.read(_CHUNK):
                h.update(chunk)
        return h.hexdigest()
    for p in sorted(q for q in path.rglob("*") if q.is_file()):
        h.update(p.relative_to(path).as_posix().encode() + b"\0")
        digest_path(p, h)
        h.update(b"\0")
    return h.hexdigest()


def _files(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): digest_path(p) for p in sorted(root.rglob("*")) if p.is_file()}


def source_digest(source: str, base: str) -> str:
    """A path's content; for package.module:callable, the Python files of its top-level package
    (the callable may use any of them), found the way the worker imports it (from ``base``)."""
    path = Path(source)
    if path.exists():
        return digest_path(path)
    import importlib.util
    import sys

    top = source.split(":")[0].split(".")[0]
    sys.path.insert(0, base)
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        spec = None
    finally:
        sys.path.remove(base)
    if spec is None or spec.origin is None:
        return hashlib.sha256(source.encode()).hexdigest()  # the worker will say it cannot import it
    where = Path(spec.origin).parent if spec.submodule_search_locations else Path(spec.origin)
    h = hashlib.sha256(source.encode())
    files = sorted(where.rglob("*.py")) if where.is_dir() else [where]
    for p in files:
        if "__pycache__" not in p.parts:
            h.update(p.relative_to(where.parent).as_posix().encode())
            digest_path(p, h)
    return h.hexdigest()


@cache
def toolchain() -> dict[str, Any]:
    """What else makes an artifact: convertkit's version and code, the libraries, the machine."""
    from .. import report

    env = {k: v for k, v in report.environment().items() if k != "platform"}
    code = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for p in sorted(code.rglob("*")):
        rel = p.relative_to(code)
        if p.is_file() and p.suffix in (".py", ".mjs", ".json") and rel.parts[0] != "ci" \
                and "__pycache__" not in rel.parts and "node_modules" not in rel.parts:
            h.update(rel.as_posix().encode())
            digest_path(p, h)
    return {**env, "convertkit_code": h.hexdigest(), "machine": platform.machine()}


def key_for(spec: Any) -> str:
    """The cache key of a TargetSpec (converter.ci.spec)."""
    from .options import FIELDS

    eff = spec.options.effective()
    options = {k: (digest_path(Path(v)) if FIELDS[k].path else list(v) if isinstance(v, tuple) else v)
               for k, v in eff.items() if FIELDS[k].artifact}
    doc = {"layout": LAYOUT, "target": spec.target, "passes": list(spec.passes), "options": options,
           "source": source_digest(spec.source, spec.base), "toolchain": toolchain()}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


class Cache:
    def __init__(self, root: Path | None = None) -> None:
        self.root = (root or default_root()).expanduser()

    def _dir(self, key: str) -> Path:
        return self.root / LAYOUT / key[:2] / key

    def _entries(self) -> Iterable[Path]:
        base = self.root / LAYOUT
        return (p for p in base.glob("??/*") if p.is_dir()) if base.is_dir() else ()

    def lookup(self, key: str) -> Hit | None:
        """The entry for ``key`` if it is there and whole; a corrupted one is deleted and logged."""
        entry = self._dir(key)
        if not entry.is_dir():
            return None
        why = _corruption(entry)
        if why is not None:
            log.warning("cache entry %s is corrupted (%s): deleted, the artifact is made again", key[:12], why)
            self._remove(entry)
            return None
        manifest = json.loads((entry / "manifest.json").read_text())
        row = Row(**json.loads((entry / "row.json").read_text()))
        return Hit(key, entry / "artifact", row, manifest.get("made_at", ""))

    def restore(self, hit: Hit, dest: Path) -> None:
        """Copy an entry's artifact into ``dest``, atomically (as export writes it). Its report's
        ``artifact`` path is rewritten when the entry was made for another OUTDIR."""
        with atomic_dir(dest) as tmp:
            for src in sorted(hit.path.rglob("*")):
                target = tmp / src.relative_to(hit.path)
                if src.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                else:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(src, target)
            report = tmp / "report.json"
            if hit.made_at and Path(hit.made_at) != dest and report.is_file():
                doc = json.loads(report.read_text())
                if isinstance(doc.get("artifact"), str) and doc["artifact"].startswith(hit.made_at):
                    doc["artifact"] = str(dest) + doc["artifact"][len(hit.made_at):]
                    report.write_text(json.dumps(doc, indent=2) + "\n")

    def store(self, key: str, dest: Path, row: Row) -> bool:
        """Keep ``dest`` (a finished artifact folder) and its row under ``key``; errors are not
        kept. A cache that cannot be written is logged, never fatal."""
        if row.verdict == ERROR or not (dest / "report.json").is_file():
            return False
        entry = self._dir(key)
        tmp: Path | None = None
        try:
            entry.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{key[:12]}.tmp-", dir=entry.parent))
            shutil.copytree(dest, tmp / "artifact")
            stored = {**row.to_json(), "cached": False, "report": None}
            (tmp / "row.json").write_text(json.dumps(stored, indent=2) + "\n")
            manifest = {"key": key, "made_at": str(dest), "stored": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                        "files": _files(tmp)}
            (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
            if entry.exists():  # another run stored it meanwhile: keep theirs
                shutil.rmtree(tmp, ignore_errors=True)
                return True
            tmp.rename(entry)
            return True
        except OSError as exc:
            log.warning("could not store %s in the cache %s: %s", row.model + "/" + row.target, self.root, exc)
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)
            return False

    def _remove(self, entry: Path) -> None:
        """Out of readers' way in one rename, then deleted."""
        trash = entry.parent / f".{entry.name}.old-{os.getpid()}"
        try:
            entry.rename(trash)
        except OSError:
            trash = entry
        shutil.rmtree(trash, ignore_errors=True)

    def info(self) -> CacheInfo:
        entries = list(self._entries())
        size = sum(p.stat().st_size for e in entries for p in e.rglob("*") if p.is_file())
        return CacheInfo(self.root, len(entries), size)

    def clear(self) -> CacheInfo:
        """Delete every entry; returns what was there."""
        before = self.info()
        base = self.root / LAYOUT
        if base.is_dir():
            for entry in list(self._entries()):
                self._remove(entry)
            shutil.rmtree(base, ignore_errors=True)
        return before


def _corruption(entry: Path) -> str | None:
    """Why an entry cannot be used, or None when every file is there with the bytes it was stored with."""
    try:
        manifest = json.loads((entry / "manifest.json").read_text())
        expected: dict[str, str] = manifest["files"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"manifest unreadable: {type(exc).__name__}"
    found = {p.relative_to(entry).as_posix() for p in entry.rglob("*") if p.is_file()} - {"manifest.json"}
    if missing := sorted(set(expected) - found):
        return f"missing file {missing[0]}"
    if extra := sorted(found - set(expected)):
        return f"unexpected file {extra[0]}"
    for rel, sha in expected.items():
        if digest_path(entry / rel) != sha:
            return f"hash mismatch in {rel}"
    try:
        Row(**json.loads((entry / "row.json").read_text()))
    except (ValueError, TypeError) as exc:
        return f"row unreadable: {type(exc).__name__}"
    return None
