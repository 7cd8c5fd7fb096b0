"""The source half of an export in a child process, so that PyTorch and TensorFlow are never
resident together.

On a route from a PyTorch (or Hugging Face) model through TensorFlow (``--to tf`` / ``tfjs``) the
child loads the model, decides the inputs and the validation feeds, runs the first stage (export
to ONNX) and computes the reference outputs; it exits before TensorFlow loads in this process.
Measured here: torch takes 224 MiB once imported (a transformers model more), the TensorFlow side
with Node about 750 MiB; in one process their sum was the peak (about 960 MiB for a small CNN),
above what the manual chain's worst step (the onnx2tf CLI, 766 MiB) needs. The cost is a second
interpreter start (~0.2 s); the child ends without the interpreter's teardown (``deps.exit_now``:
~1.1 s with PyTorch and transformers loaded), and meanwhile this process loads what the next stages
import short of TensorFlow (onnx, onnxruntime: nothing added to the peak, which comes with
TensorFlow). Everything the rest of the export needs crosses back pickled: the
source's description (without the model object), the feeds, the first stage's record and artifact
(the ONNX file, moved into the export's work directory), and the reference outputs: on the feeds,
and on the samples validation will put in their place if the next stage fixes dynamic dims
(``Stage.fixed_shapes``); the parent's source carries them as ``parity.validate.KnownOutputs``.

In-process instead: in-memory models (the Python API), example tensors, a process that has torch
loaded already (nothing to save), routes without a TensorFlow stage, and ``CONVERTKIT_ISOLATE=0``.
``CONVERTKIT_ISOLATE=overlap`` trades the memory back for time: a thread here loads TensorFlow
while the child runs (the tiny BERT: ~1.4 s sooner, 1013 MiB instead of 676 MiB).
Errors keep their class, message and exit code; a crash of the child is an internal error (exit 4)
with its traceback.
"""

from __future__ import annotations

import logging
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .core import Artifact, Pipeline, Stage, StageRecord
from .errors import ConvertkitError

if TYPE_CHECKING:
    from .pipeline import Checker

#: source formats whose half is worth a child: their frameworks are the other half of the memory
FORMATS = ("torch", "hf")
#: formats whose runtime is TensorFlow's: a route through one of them loads TensorFlow here
_TF_FORMATS = ("tf", "tfjs")


@dataclass
class SourceHalf:
    src: Artifact  # without its model object
    feeds: list[dict[str, Any]]
    notes: list[str]
    record: StageRecord  # the first stage's
    result: Artifact  # the first stage's, under ``where``
    where: Path  # the directory the first stage wrote into (moved by the caller)
    known: dict[str, dict[str, Any]]  # the source's outputs by feed digest (parity.validate.KnownOutputs)


def source_format(source: Any, example_inputs: Any) -> str | None:
    """The format of ``source`` when its half may run in a child (else None), found without
    importing any framework."""
    from . import registry

    if os.environ.get("CONVERTKIT_ISOLATE", "1") == "0" or example_inputs is not None:
        return None
    if not isinstance(source, (str, Path)) or "torch" in sys.modules:  # loaded already: nothing to save
        return None
    fmt = registry.format_of(str(source))
    return fmt if fmt in FORMATS else None


def worth_it(pipeline: Pipeline) -> bool:
    """The first stage exports the source, and a later one runs in TensorFlow's world."""
    stages = pipeline.stages
    return len(stages) > 1 and stages[0].accepts.name in FORMATS and stages[0].produces != stages[0].accepts \
        and any(s.produces.name in _TF_FORMATS for s in stages[1:])


def overlapped() -> bool:
    """``CONVERTKIT_ISOLATE=overlap``: load TensorFlow here while the child runs (faster; both
    frameworks in memory at once, as in one process)."""
    return os.environ.get("CONVERTKIT_ISOLATE") == "overlap"


def _load_ahead(stages: Sequence[Stage], with_tensorflow: bool) -> None:
    """Import what ``stages`` will import (their ``imports``), in order; those that load TensorFlow
    only ``with_tensorflow`` (the others, onnx and onnxruntime, are small: they add nothing to the
    peak, which comes once TensorFlow is loaded)."""
    from .deps import loads_tensorflow, require

    for module in dict.fromkeys(m for stage in stages for m in stage.imports):
        if loads_tensorflow(module) and not with_tensorflow:
            continue
        try:
            require(module)
        except ConvertkitError:
            return  # missing: the stage that needs it says so


def run(request: Mapping[str, Any]) -> SourceHalf:
    """Run :func:`source_half` with ``request`` in a child Python; its errors are raised here."""
    where = Path(tempfile.mkdtemp(prefix="convertkit-source-"))
    answer = where / "answer.pickle"
    stage_dir = where / "stage"
    stage_dir.mkdir()
    job = {**request, "dir": str(stage_dir), "answer": str(answer), "sys_path": list(sys.path),
           "log_level": logging.getLogger().getEffectiveLevel()}  # --debug: nothing silenced there either
    loader = None
    try:
        # the child's stdout goes to our stderr (fd 2): a library's prints must not reach `--json` output
        proc = subprocess.Popen([sys.executable, "-c", f"from {__name__} import _child; _child()"],
                                stdin=subprocess.PIPE, stdout=2, env=os.environ.copy())
        # this thread only waits on the child: another loads what the next stages import meanwhile, started
        # after the spawn (quiet() redirects fd 2 while TensorFlow loads, which the child must not inherit)
        import threading

        loader = threading.Thread(target=_load_ahead, args=(request["pipeline"].stages[1:], overlapped()), daemon=True)
        loader.start()
        proc.communicate(pickle.dumps(job))
        if not answer.is_file():
            raise RuntimeError(f"the process that loads the source model ended with status {proc.returncode} "
                               "before answering (killed, or out of memory?)")
        kind, payload = pickle.loads(answer.read_bytes())
        if kind == "error":
            raise payload
        if kind == "crash":
            raise RuntimeError(f"internal error in the process that loads the source model:\n{payload}")
        return payload
    except BaseException:
        shutil.rmtree(where, ignore_errors=True)
        raise
    finally:
        answer.unlink(missing_ok=True)
        if loader is not None:
            loader.join()


def source_half(request: Mapping[str, Any]) -> SourceHalf:
    """What export does up to its first stage's result and the reference outputs (api.py)."""
    from . import api
    from .pipeline import run_stage

    src = api.load(request["source"], **request["load"])
    src, feeds, notes = api.prepare_inputs(src, request["inputs"], request["feeds"], samples=request["samples"],
                                           seed=request["seed"], samples_from=request.get("samples_from"))
    src = api.with_output_names(src, request["load"].get("output_names") or ())
    src, feeds, checker = api.reference_checker(src, feeds, notes, check=request["check"], atol=request["atol"],
                                                rtol=request["rtol"], runner_options=request["runner_options"])
    where = Path(request["dir"])
    record, result = run_stage(request["pipeline"], 0, src, where, where, checker=checker,
                               validate_each=request["validate_each"])
    known = _known_outputs(request["pipeline"], src, checker, result) if checker is not None else {}
    return SourceHalf(src.with_(obj=None), feeds, notes, record, result, where, known)


def _known_outputs(pipeline: Pipeline, src: Artifact, checker: Checker, result: Artifact) -> dict[str, dict[str, Any]]:
    """The source's outputs on the validation feeds, and on the samples validation puts in their
    place where the next stage fixes dynamic dims (its ``fixed_shapes``): the parent has no model to
    run them on. A sample not foreseen here is run there after loading the model (slower, correct)."""
    from .parity.validate import feed_digest, fitted_feeds
    from .parity.validate import run as run_outputs

    feeds = list(checker.feeds)
    known = {feed_digest(f): out for f, out in zip(feeds, checker.reference_outputs)}
    extra: dict[str, dict[str, Any]] = {}
    try:
        names = [s.name for s in result.inputs]
        for fixed in (pipeline.stages[1].fixed_shapes(result) if len(pipeline.stages) > 1 else []):
            for f in fitted_feeds(src.inputs, names, fixed, feeds)[0]:
                extra.setdefault(feed_digest(f), f)
    except Exception as exc:  # foreseeing is an optimisation: never fail the export for it
        logging.getLogger(__name__).debug("could not foresee fixed shapes: %s", exc)
    extra = {k: f for k, f in extra.items() if k not in known}
    if extra:
        known.update(zip(extra, run_outputs(src, list(extra.values()))))
    return known


def _child() -> None:
    """The child's side: ``python -c 'from converter.isolate import _child; _child()'``, the job on stdin."""
    from .deps import exit_now, short_lived, torch_side_env

    job = pickle.loads(sys.stdin.buffer.read())
    sys.path[:0] = [p for p in job["sys_path"] if p not in sys.path]
    short_lived()  # this process ends with its job
    torch_side_env()  # this process is PyTorch's side: a model's own `import transformers` too (tiny BERT: -97 MiB)
    logging.basicConfig(level=job["log_level"], format="%(name)s: %(message)s")  # as cli.main sets it
    try:
        answer: tuple[str, Any] = ("ok", source_half(job))
    except ConvertkitError as exc:
        if job["log_level"] <= logging.DEBUG:  # --debug shows tracebacks: where it was raised, in the child
            import traceback

            exc.add_note("raised in the process that loads the source model:\n" + traceback.format_exc())
        answer = ("error", exc)
    except BaseException:  # a bug, or a library's own crash: the caller shows the traceback (exit 4)
        import traceback

        answer = ("crash", traceback.format_exc())
    Path(job["answer"]).write_bytes(pickle.dumps(answer))
    exit_now(0)  # the parent waits for this process to end: not for PyTorch's teardown (~1 s)
