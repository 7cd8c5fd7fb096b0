"""``convertkit run --executor ray [--address ADDR]``: each model x target as a Ray task.

The task runs the same worker process as the local executor (converter.ci.worker, one process per
model x target, with its timeout), on whichever node Ray picks (1 CPU and 1 GiB of memory
reserved per task), into a temporary folder there; the artifact comes back as a tar and is
written into OUTDIR/NAME/TARGET here, atomically, its report's ``artifact`` path rewritten to
that folder. Stage starts and ends come back live through a Ray queue. The cache and the summary
stay with the caller (converter.ci.execute), so outputs and cache semantics are those of
``--executor local``.

What is shipped per task: the job (a TargetSpec as JSON) and, for every input path (source,
sample data, weights, calibration) that the node does not see, its bytes (one tar in Ray's object
store per pipeline run). Nodes need convertkit, with the same version and frameworks, installed;
a ``package.module:callable`` source must be importable there. Without ADDR (or RAY_ADDRESS) a
local Ray runtime is started for the run, ``--jobs`` CPUs wide.
"""

from __future__ import annotations

import io
import json
import logging
import os
import tarfile
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from ..errors import MissingDependencyError, first_line
from ..fsutil import atomic_dir
from .executor import GIB, Event, Job, LocalExecutor, OnEvent
from .spec import TargetSpec
from .summary import Row
from .worker import error_row

_PATH_OPTIONS = ("sample_data", "weights", "calibration")


def _ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise MissingDependencyError(f"--executor ray: Ray is not installed ({exc})",
                                     hint="pip install 'convertkit[ray]', or use --executor local") from None
    return ray


class RayExecutor:
    def __init__(self, jobs: int, address: str | None = None) -> None:
        self.ray = _ray()  # before any work: a missing Ray is exit 2 with nothing written
        self.jobs = max(1, jobs)
        self.address = address or os.environ.get("RAY_ADDRESS") or None

    def run(self, jobs: Sequence[Job], on_event: OnEvent) -> Iterator[Row]:
        if not jobs:
            return
        ray = self.ray
        started_here = not ray.is_initialized()
        if started_here:
            with warnings.catch_warnings():  # a FutureWarning about GPU env vars: no GPU is asked for
                warnings.simplefilter("ignore", FutureWarning)
                ray.init(address=self.address, num_cpus=None if self.address else self.jobs, include_dashboard=False,
                         log_to_driver=False, logging_level=logging.WARNING, configure_logging=False)
        try:
            yield from self._run(ray, jobs, on_event)
        finally:
            if started_here:
                ray.shutdown()

    def _run(self, ray: Any, jobs: Sequence[Job], on_event: OnEvent) -> Iterator[Row]:
        from ray.util.queue import Empty, Queue

        events = Queue()
        shipped, names = _pack(jobs)
        inputs = ray.put(shipped)
        task = ray.remote(_task).options(num_cpus=1, memory=GIB, max_retries=0)
        refs = {task.remote(j.spec.to_json(), names, inputs, events): j for j in jobs}
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1, timeout=0.2)
            _drain(events, Empty, on_event)
            for ref in done:
                job = refs[ref]
                try:
                    result = ray.get(ref)
                except Exception as exc:  # the task itself failed (a node lost, Ray's own error)
                    yield error_row(job.spec, 4, f"internal error: the Ray task for {job.spec.id} failed: "
                                                 f"{first_line(exc, with_type=True)}", 0.0)
                    continue
                _drain(events, Empty, on_event)
                yield _land(job, result)


def _drain(queue: Any, empty: type[Exception], on_event: OnEvent) -> None:
    while True:
        try:
            d = queue.get_nowait()
        except empty:
            return
        on_event(Event(**d))


def _pack(jobs: Sequence[Job]) -> tuple[bytes, dict[str, str]]:
    """Every input path of the jobs in one tar: member ``N/<name>`` for path number N."""
    names: dict[str, str] = {}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for job in jobs:
            for path in _inputs(job.spec):
                if path not in names:
                    names[path] = f"{len(names)}/{Path(path).name}"
                    tar.add(path, arcname=names[path])
    return buf.getvalue(), names


def _inputs(spec: TargetSpec) -> list[str]:
    paths = [spec.source] if Path(spec.source).exists() else []
    return paths + [str(getattr(spec.options, k)) for k in _PATH_OPTIONS if getattr(spec.options, k) is not None]


def _task(spec_json: dict[str, Any], names: dict[str, str], inputs: bytes, events: Any) -> dict[str, Any]:
    """On a Ray worker: the job through the local executor (one child process, its timeout), into
    a temporary folder; the artifact back as tar bytes."""
    spec = TargetSpec.from_json(spec_json)
    with tempfile.TemporaryDirectory(prefix="convertkit-ray-") as tmp:
        work = Path(tmp)
        spec = _localise(spec, names, inputs, work)
        dest = work / "out" / spec.model / spec.target
        job = Job(spec, dest, work / "out" / spec.model / f"{spec.target}.log")
        (row,) = LocalExecutor(1).run([job], lambda ev: events.put(asdict(ev)))
        artifact = None
        if dest.is_dir():
            buf = io.BytesIO()
            with tarfile.open(fileobj=buf, mode="w") as tar:
                tar.add(dest, arcname=".")
            artifact = buf.getvalue()
        log = job.log.read_bytes() if job.log.is_file() else b""
        return {"row": row.to_json(), "artifact": artifact, "log": log, "made_at": str(dest)}


def _localise(spec: TargetSpec, names: dict[str, str], inputs: bytes, work: Path) -> TargetSpec:
    """The spec with each input path this node does not see replaced by its shipped copy."""
    missing = [p for p in (spec.source, *[str(getattr(spec.options, k)) for k in _PATH_OPTIONS
                                          if getattr(spec.options, k) is not None]) if p in names and not Path(p).exists()]
    if missing:
        with tarfile.open(fileobj=io.BytesIO(inputs)) as tar:
            wanted = [m for m in tar.getmembers() if any(m.name == names[p] or m.name.startswith(names[p] + "/")
                                                         for p in missing)]
            tar.extractall(work / "inputs", members=wanted, filter="data")
    where = {p: str(work / "inputs" / names[p]) for p in missing}
    opts = {k: Path(where[str(v)]) for k in _PATH_OPTIONS if (v := getattr(spec.options, k)) is not None
            and str(v) in where}
    base = spec.base if Path(spec.base).is_dir() else str(work)
    return replace(spec, source=where.get(spec.source, spec.source), options=replace(spec.options, **opts), base=base)


def _land(job: Job, result: dict[str, Any]) -> Row:
    """The task's artifact into OUTDIR/NAME/TARGET (atomically), its log beside it, its row."""
    row = Row(**result["row"])
    job.log.parent.mkdir(parents=True, exist_ok=True)
    job.log.write_bytes(result["log"])
    if result["artifact"] is None:
        return row
    with atomic_dir(job.dest) as tmp:
        with tarfile.open(fileobj=io.BytesIO(result["artifact"])) as tar:
            tar.extractall(tmp, filter="data")
        report = tmp / "report.json"
        if report.is_file():
            doc = json.loads(report.read_text())
            made_at = result["made_at"]
            if isinstance(doc.get("artifact"), str) and doc["artifact"].startswith(made_at):
                doc["artifact"] = str(job.dest) + doc["artifact"][len(made_at):]
                report.write_text(json.dumps(doc, indent=2) + "\n")
            row.report = doc
    return row
