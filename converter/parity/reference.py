"""The source model's own outputs on the validation samples, computed once, before any export.

Run first because an error here is the user's, not the converter's:

- the source cannot run the first sample (``--input x:1,5`` for a model that takes 4 features, an
  ``--inputs`` array of the wrong shape): exit 2, "the source model does not run on these inputs:
  <the runtime's error> (check --input / --inputs ...)", for every source format (this runs it
  through its own Runner);
- it cannot run a generated sample of other sizes (dynamic dims it does not take at those sizes):
  exit 2 naming the inputs and dims to give with ``--input``;
- its outputs hold NaN or Inf. On a generated sample that is the sample's fault (Log, Sqrt, Div
  fed values outside their domain): the sample is left out of validation and the report says why,
  so the candidate is not called wrong for it; when every sample is left out, exit 2 (give real
  data). On the user's own data it is exit 2 as well: nothing can be validated there, and a
  comparison that skipped those values would pass silently.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import registry
from ..core import Artifact
from ..errors import ConvertkitError, InputError, MissingDependencyError
from .sizes import SizePlan, example_input
from .validate import KnownOutputs

CHECK_HINT = "check --input / --inputs"


@dataclass
class Reference:
    """The samples validation uses (those left out removed), the source's outputs on them (None
    when only the first sample was run, for ``--no-check``), and what the report should say."""

    feeds: list[dict[str, Any]]
    outputs: list[dict[str, Any]] | None
    notes: list[str] = field(default_factory=list)


def run_reference(src: Artifact, feeds: Sequence[Mapping[str, Any]], *, check: bool = True,
                  given: int = 0) -> Reference:
    """``given``: how many leading samples are the user's own data."""
    feeds = [dict(f) for f in feeds]
    if isinstance(src.obj, KnownOutputs) or not feeds:  # ran in the child process already (isolate.py)
        return Reference(feeds, None)
    with registry.runner_for(src) as runner:
        outputs = [_first(runner, feeds[0])]
        if not check:
            return Reference(feeds, None)
        for i, f in enumerate(feeds[1:], start=1):
            outputs.append(_other(runner, f, i, src))
    return _finite_only(feeds, outputs, given)


def _shapes(feed: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}[{','.join(map(str, v.shape))}] {v.dtype}" for k, v in feed.items())


_NOISE = ("Detected at node", "<stack trace", "File ", "[[", "Graph execution error", "Traceback", "Stack trace")


def _why(exc: BaseException) -> str:
    """The runtime's error on one line. TensorFlow puts the reason below a header ("Graph execution
    error:") and a stack: the first line that is neither is kept."""
    if isinstance(exc, ConvertkitError):
        msg = exc.message
        if msg.rstrip().endswith(":") and exc.__cause__ is not None:
            msg = f"{msg.rstrip()} {_reason(exc.__cause__)}"
        return msg
    return f"{type(exc).__name__}: {_reason(exc)}"


def _reason(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(getattr(exc, "message", None) or exc).splitlines() if ln.strip()]
    useful = [ln for ln in lines if not ln.startswith(_NOISE)]
    return " ".join((useful or lines or [type(exc).__name__])[0].split())[:300]


def _first(runner: Any, feed: Mapping[str, Any]) -> dict[str, Any]:
    try:
        return runner.infer(feed)
    except MissingDependencyError:
        raise  # a runtime that is not installed says so itself
    except Exception as exc:  # whatever the framework raises: the inputs do not fit the model
        raise InputError(f"the source model does not run on these inputs: {_why(exc)}",
                         hint=f"{CHECK_HINT}; it was given {_shapes(feed)}") from exc


def _other(runner: Any, feed: Mapping[str, Any], i: int, src: Artifact) -> dict[str, Any]:
    """A generated sample the source cannot run: the sizes convertkit chose for dynamic dims."""
    try:
        return runner.infer(feed)
    except MissingDependencyError:
        raise
    except Exception as exc:
        dynamic = [s for s in src.inputs if s.is_dynamic and s.name in feed]
        example = " ".join(f"--input {s.name}:{','.join(map(str, feed[s.name].shape))}" for s in dynamic) or \
            "--input NAME:DIMS"
        names = ", ".join(f"{s.name}{s.shape_str()}" for s in dynamic) or "its inputs"
        raise InputError(f"the source model does not run on sample {i} ({_shapes(feed)}), sizes convertkit chose "
                         f"for the dynamic dims of {names}: {_why(exc)}",
                         hint=f"give the sizes the model takes with --input, e.g. {example} (other numbers)") from exc


def nonfinite(outputs: Mapping[str, Any]) -> list[str]:
    """``y: 3 of 12 NaN/Inf`` for each float output with non-finite values."""
    import numpy as np

    found = []
    for name, v in outputs.items():
        a = np.asarray(v)
        if a.dtype.kind in "fc":
            bad = int(a.size - np.count_nonzero(np.isfinite(a)))
            if bad:
                found.append(f"{name}: {bad} of {a.size} NaN/Inf")
    return found


def _finite_only(feeds: list[dict[str, Any]], outputs: list[dict[str, Any]], given: int) -> Reference:
    keep_feeds, keep_outs, notes, dropped = [], [], [], []
    for i, (f, out) in enumerate(zip(feeds, outputs)):
        bad = nonfinite(out)
        if not bad:
            keep_feeds.append(f)
            keep_outs.append(out)
        elif i < given:
            raise InputError(f"the source model itself gives NaN/Inf on the given data (sample {i}; "
                             f"{'; '.join(bad)}): no conversion can be validated on it",
                             hint="check the data and the model (it is not a conversion error); "
                                  "--no-check converts without validating")
        else:
            dropped.append(f"{i} ({'; '.join(bad)})")
    if dropped and not keep_feeds:
        raise InputError(f"the source model itself gives NaN/Inf on every sample convertkit made "
                         f"({', '.join(dropped)}): its inputs need values from the domain it was built for",
                         hint="give real data with --inputs FEEDS.npz (the other samples then follow its "
                              "domain), or integer ranges with --input NAME:DIMS:DTYPE:LOW..HIGH")
    if dropped:
        notes.append(f"sample(s) {', '.join(dropped)} left out of validation: the source model itself gives "
                     f"NaN/Inf there (a domain the sample missed, not a conversion error)")
    return Reference(keep_feeds, keep_outs, notes)


def run_sized(src: Artifact, feeds: Sequence[Mapping[str, Any]], plans: Sequence[SizePlan],
              remake: Callable[[SizePlan], list[dict[str, Any]]], *, check: bool = True
              ) -> tuple[Reference, SizePlan | None]:
    """:func:`run_reference` on ``feeds`` (made with ``plans[0]``), then on the feeds of each next
    plan while the source cannot run them (parity.sizes). Returns the reference and the plan used
    (None: only one plan). When none works: exit 2 naming the inputs and dims to give."""
    errors = []
    for i, plan in enumerate(plans):
        try:
            return run_reference(src, feeds if i == 0 else remake(plan), check=check), plan
        except InputError as exc:
            if not str(exc).startswith("the source model does not run"):
                raise
            errors.append(exc)
    names = [d for s in src.inputs for d in (s.shape or ()) if isinstance(d, str)]
    carrying = ", ".join(f"{s.name}{s.shape_str()}" for s in src.inputs if s.is_dynamic)
    why = _why(errors[0].__cause__) if errors[0].__cause__ is not None else errors[0].message
    raise InputError(f"the source model does not run at any sizes convertkit tried for the dynamic dims of "
                     f"{carrying} ({'; '.join(p.label for p in plans)}): {why}",
                     hint=f"give the sizes it takes with --input, e.g. "
                          f"{example_input(src.inputs, list(dict.fromkeys(names)), plans)}") from errors[0]
