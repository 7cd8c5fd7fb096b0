"""Outputs appear whole or not at all: build in a temporary directory beside the target, then
rename it into place."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import UsageError

MARKER = "report.json"  # a directory holding this was written by convertkit and may be replaced


def check_destination(dest: Path, *, sources: tuple[Path, ...] = (), force: bool = False) -> Path:
    dest = dest.resolve()
    for src in sources:
        s = src.resolve()
        if s == dest or dest in s.parents:
            raise UsageError(f"output directory {dest} contains the source {src}",
                             hint="write the output somewhere else; the input is never modified")
    if dest.exists() and not dest.is_dir():
        raise UsageError(f"output {dest} exists and is a file", hint="give a directory path with -o")
    if dest.is_dir() and any(dest.iterdir()) and not (dest / MARKER).exists() and not force:
        raise UsageError(f"output directory {dest} exists and was not written by convertkit",
                         hint="choose an empty or new directory, or pass --force to replace it")
    return dest


def gzip_bytes(path: Path | None, level: int = 6) -> int | None:
    """What the model costs on the wire: the gzip size (level 6, a web server's usual) of every file."""
    import gzip

    if path is None or not path.exists():
        return None
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return sum(len(gzip.compress(f.read_bytes(), compresslevel=level, mtime=0)) for f in files)


@contextlib.contextmanager
def atomic_dir(dest: Path) -> Iterator[Path]:
    """Yield an empty directory; on success it replaces ``dest`` in one rename, on error it is removed."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)
    if dest.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old-", dir=dest.parent))
        old.rmdir()
        dest.rename(old)
        tmp.rename(dest)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(dest)
