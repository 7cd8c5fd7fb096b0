"""Outputs appear whole or not at all: build in a temporary directory beside the target, then
rename it into place.

Every temporary directory beside OUTDIR (``.NAME.tmp-*`` for the output, ``.NAME.work-*`` for the
intermediates) holds an owner file with the pid of the process that made it. A run killed with
``kill -9`` cannot remove its own; the next run into the same OUTDIR removes those whose owner
process is gone, never one whose owner still runs (two runs into one OUTDIR: the last rename wins,
each run's directory stays its own until then).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import UsageError

MARKER = "report.json"  # a directory holding this was written by convertkit and may be replaced
OWNER = ".convertkit-owner"  # inside a temporary directory: "<pid> <start time>" of the process that made it
_KINDS = ("tmp", "work", "old")  # .NAME.tmp-* (the output), .NAME.work-* (intermediates), .NAME.old-* (replaced)


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
    check_writable_parent(dest)
    return dest


def check_writable_parent(dest: Path) -> None:
    """OUTDIR is made beside itself and renamed into place: its parent must exist or be creatable,
    and be writable. Checked before any work (nothing is created here); atomic_dir says the same
    if the filesystem refuses later (a read-only mount, which ``os.access`` may not see for root)."""
    parent = dest.parent
    existing = parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise _unwritable(dest, f"{existing} is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise _unwritable(dest, f"{existing} is not writable")


def _unwritable(dest: Path, why: str) -> UsageError:
    return UsageError(f"cannot write the output directory {dest}: {why}",
                      hint="give -o a path in a directory you can write to; nothing was written")


def gzip_bytes(path: Path | None, level: int = 6) -> int | None:
    """What the model costs on the wire: the gzip size (level 6, a web server's usual) of every file."""
    import gzip

    if path is None or not path.exists():
        return None
    from .core import model_files

    files = model_files(path)
    return sum(len(gzip.compress(f.read_bytes(), compresslevel=level, mtime=0)) for f in files)


def _start_time(pid: int) -> str:
    """The process's start time (clock ticks since boot, /proc/PID/stat field 22): with the pid, it
    tells a live owner from a new process that reuses its pid. "" where /proc is not there."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[-1].split()[19]


def _alive(pid: int, started: str) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    except OSError:
        return True  # cannot tell: keep it
    return not started or not _start_time(pid) or _start_time(pid) == started


def owner_is_gone(tmp: Path) -> bool:
    """True when ``tmp``'s owner file names a process that no longer runs. A directory without a
    readable owner file is kept (another tool's, or one being made this instant)."""
    try:
        pid_text, _, started = (tmp / OWNER).read_text().strip().partition(" ")
        pid = int(pid_text)
    except (OSError, ValueError):
        return False
    return pid != os.getpid() and not _alive(pid, started.strip())


def remove_stale(dest: Path) -> list[Path]:
    """Remove the temporary directories beside ``dest`` left by runs that were killed: those whose
    owner process is gone, and replaced outputs (``.old-*``: always garbage once they exist, only
    ever deleted). Returns what was removed."""
    removed = []
    if not dest.parent.is_dir():
        return removed
    for kind in _KINDS:
        for p in dest.parent.glob(f".{dest.name}.{kind}-*"):
            if p.is_dir() and not p.is_symlink() and (kind == "old" or owner_is_gone(p)):
                shutil.rmtree(p, ignore_errors=True)
                removed.append(p)
    return removed


def owned_tempdir(dest: Path, kind: str) -> Path:
    """A new directory ``.NAME.KIND-*`` beside ``dest`` holding its owner file; the caller works in
    its empty subdirectory ``inner(tmp)``, so that the owner file never mixes with what is written."""
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.{kind}-", dir=dest.parent))
        (tmp / OWNER).write_text(f"{os.getpid()} {_start_time(os.getpid())}\n")
        inner(tmp).mkdir()
    except OSError as exc:
        where = Path(exc.filename).parent if exc.filename else dest.parent
        raise _unwritable(dest, f"no directory can be made in {where} ({exc.strerror or type(exc).__name__})") from exc
    return tmp


def inner(tmp: Path) -> Path:
    return tmp / "d"


@contextlib.contextmanager
def work_dir(dest: Path) -> Iterator[Path]:
    """An empty scratch directory beside ``dest`` (the intermediates), removed afterwards whatever happens."""
    tmp = owned_tempdir(dest, "work")
    try:
        yield inner(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def atomic_dir(dest: Path) -> Iterator[Path]:
    """Yield an empty directory; on success it replaces ``dest`` in one rename, on error it is removed."""
    check_writable_parent(dest)
    remove_stale(dest)
    tmp = owned_tempdir(dest, "tmp")
    out = inner(tmp)
    try:
        yield out
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    umask = os.umask(0)
    os.umask(umask)
    out.chmod(0o777 & ~umask)
    if dest.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old-", dir=dest.parent))
        old.rmdir()
        dest.rename(old)
        out.rename(dest)
        shutil.rmtree(old, ignore_errors=True)
    else:
        out.rename(dest)
    shutil.rmtree(tmp, ignore_errors=True)
