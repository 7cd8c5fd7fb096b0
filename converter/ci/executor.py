"""Where the model x target jobs of ``convertkit run`` execute.

An :class:`Executor` takes jobs and yields a summary row per job as each finishes, reporting
stage starts and ends as :class:`Event` s meanwhile. :class:`LocalExecutor` runs each job in a
child process of its own (``python -m converter.ci.worker``), ``jobs`` at a time: a crash, an
out-of-memory kill or a TensorFlow/PyTorch import conflict ends that job only, and a framework
never stays loaded from one model to the next. ``--executor ray`` (converter/ci/executor_ray.py)
runs the same worker as Ray tasks. The cache and the summary stay with the caller, so every
executor has the same outputs and cache semantics.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

from ..errors import UsageError
from .spec import TargetSpec
from .summary import Row
from .worker import EVENTS_FD, error_row

GIB = 1 << 30
PER_JOB_BYTES = GIB  # a TensorFlow or PyTorch process, measured: ~0.6-1 GiB at its peak


@dataclass(frozen=True)
class Job:
    spec: TargetSpec
    dest: Path  # OUTDIR/NAME/TARGET
    log: Path  # OUTDIR/NAME/TARGET.log: what the worker printed

    def payload(self, result: Path) -> dict[str, Any]:
        return {"spec": self.spec.to_json(), "dest": str(self.dest), "result": str(result)}


@dataclass(frozen=True)
class Event:
    job: str  # TargetSpec.id: "NAME/TARGET"
    kind: str  # start | end
    stage: str  # load, a stage name (torch->onnx, quantize, ...), validate, cache
    at: float  # time.time()
    ok: bool = True


OnEvent = Callable[[Event], None]


class Executor(Protocol):
    def run(self, jobs: Sequence[Job], on_event: OnEvent) -> Iterator[Row]:
        """Run every job; yield one row per job as it finishes (in any order)."""
        ...


def default_jobs(count: int) -> int:
    """Parallel jobs by default: one per core, as far as free memory holds ~1 GiB per job."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(cores, mem_available() // PER_JOB_BYTES, count))


def mem_available() -> int:
    """MemAvailable from /proc/meminfo, in bytes (a large number where there is none)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 1 << 40


def make_executor(name: str, jobs: int, address: str | None = None) -> Executor:
    if name == "local":
        if address:
            raise UsageError("--address applies to --executor ray")
        return LocalExecutor(jobs)
    if name == "ray":
        from .executor_ray import RayExecutor

        return RayExecutor(jobs, address)
    raise UsageError(f"unknown executor '{name}'", hint="local or ray")


@dataclass
class _Child:
    job: Job
    proc: subprocess.Popen
    fd: int
    result: Path
    started: float
    log: IO[bytes]
    buffer: bytes = b""
    eof: bool = False
    exited_at: float | None = None
    killed: str | None = None  # why this process was stopped

    def feed(self, data: bytes) -> list[str]:
        self.buffer += data
        *done, self.buffer = self.buffer.split(b"\n")
        return [d.decode(errors="replace") for d in done if d.strip()]


class LocalExecutor:
    """Child processes on this machine, ``jobs`` at a time."""

    def __init__(self, jobs: int) -> None:
        self.jobs = max(1, jobs)

    def run(self, jobs: Sequence[Job], on_event: OnEvent) -> Iterator[Row]:
        pending = deque(jobs)
        running: dict[int, _Child] = {}
        sel = selectors.DefaultSelector()
        scratch = Path(tempfile.mkdtemp(prefix="convertkit-run-"))
        try:
            while pending or running:
                while pending and len(running) < self.jobs:
                    child = _start(pending.popleft(), scratch, len(running) + len(pending))
                    running[child.fd] = child
                    sel.register(child.fd, selectors.EVENT_READ, child)
                for key, _ in sel.select(timeout=0.2):
                    _read(key.data, sel, on_event)
                for child in list(running.values()):
                    row = _check(child, sel, on_event)
                    if row is not None:
                        del running[child.fd]
                        yield row
        finally:
            for child in running.values():  # interrupted (Ctrl-C, an error here): no job outlives the run
                _stop(child, "the run was interrupted")
                _close(child, sel)
            import shutil

            shutil.rmtree(scratch, ignore_errors=True)


def _start(job: Job, scratch: Path, n: int) -> _Child:
    job_file = scratch / f"{n}-{job.spec.model}-{job.spec.target}.json"
    result = job_file.with_suffix(".result.json")
    job_file.write_text(json.dumps(job.payload(result)))
    job.log.parent.mkdir(parents=True, exist_ok=True)
    log = job.log.open("wb")
    read_fd, write_fd = os.pipe()
    code_root = str(Path(__file__).resolve().parents[2])  # convertkit importable from the pipeline's folder
    env = {**os.environ, EVENTS_FD: str(write_fd),
           "PYTHONPATH": os.pathsep.join(p for p in (code_root, os.environ.get("PYTHONPATH")) if p)}
    try:
        proc = subprocess.Popen([sys.executable, "-m", "converter.ci.worker", str(job_file)], cwd=job.spec.base,
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                                pass_fds=(write_fd,), start_new_session=True)
    finally:
        os.close(write_fd)
    return _Child(job, proc, read_fd, result, time.monotonic(), log)


def _read(child: _Child, sel: selectors.BaseSelector, on_event: OnEvent) -> None:
    try:
        data = os.read(child.fd, 65536)
    except OSError:
        data = b""
    if not data:
        child.eof = True
        sel.unregister(child.fd)
        return
    for line in child.feed(data):
        try:
            d = json.loads(line)
            on_event(Event(child.job.spec.id, d["kind"], d["stage"], d["at"], d.get("ok", True)))
        except (ValueError, KeyError, TypeError):
            continue  # not an event line: nothing else writes to this pipe, but never fail the run for it


def _check(child: _Child, sel: selectors.BaseSelector, on_event: OnEvent) -> Row | None:
    """The row of a finished child, or None while it runs (stopped when past its timeout)."""
    timeout = child.job.spec.options.timeout
    if child.proc.poll() is None:
        if timeout and time.monotonic() - child.started > timeout and child.killed is None:
            _stop(child, f"timed out after {timeout:g} s (timeout in the pipeline file)")
        return None
    if child.exited_at is None:
        child.exited_at = time.monotonic()
    if not child.eof and time.monotonic() - child.exited_at < 2.0:
        return None  # the rest of its events are still in the pipe
    _close(child, sel)
    seconds = time.monotonic() - child.started
    spec = child.job.spec
    if child.killed is not None:
        on_event(Event(spec.id, "end", "stopped", time.time(), ok=False))
        return error_row(spec, 3, child.killed, seconds)
    try:
        row = Row(**json.loads(child.result.read_text()))
    except (OSError, ValueError, TypeError):
        return error_row(spec, 4, _died(child), seconds)
    row.seconds = round(seconds, 3)
    return row


def _died(child: _Child) -> str:
    code = child.proc.returncode
    if code is not None and code < 0:
        name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
        how = f"was killed by {name}" + (" (out of memory?)" if -code == signal.SIGKILL else "")
    else:
        how = f"exited with {code} before writing its result"
    tail = _last_line(child.job.log)
    return f"internal error: the process converting {child.job.spec.id} {how}; see {child.job.log}" + \
        (f" (last line: {tail})" if tail else "")


def _last_line(log: Path) -> str:
    try:
        lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1][:200] if lines else ""


def _stop(child: _Child, why: str) -> None:
    """Stop the child and what it started (its own session: Node, the source's process)."""
    child.killed = why
    try:
        os.killpg(child.proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    child.proc.wait()


def _close(child: _Child, sel: selectors.BaseSelector) -> None:
    if not child.eof:
        try:
            sel.unregister(child.fd)
        except (KeyError, ValueError):
            pass
        child.eof = True
    try:
        os.close(child.fd)
    except OSError:
        pass
    child.log.close()
