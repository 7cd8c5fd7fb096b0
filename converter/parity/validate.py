"""Run the reference and the candidate in their own runtimes on the same feeds and compare."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import registry
from ..core import Artifact, TensorSpec, Tolerance
from ..errors import ConvertkitError
from .compare import ERROR, OutputParity, ParityReport, compare, match_names

logger = logging.getLogger(__name__)


def feed_digest(feed: Mapping[str, Any]) -> str:
    """The identity of one sample: its inputs' names, dtypes, shapes and bytes."""
    h = hashlib.sha256()
    for name in sorted(feed):
        arr = feed[name]
        h.update(f"{name}|{arr.dtype.str}|{arr.shape}|".encode())
        h.update(arr.tobytes())
    return h.hexdigest()


@dataclass
class KnownOutputs:
    """The model object of a reference that ran in another process (isolate.py): its outputs on the
    samples it was given there, by :func:`feed_digest`, and ``load``, which loads the model in this
    process for a sample it was not given (once; slower, and the framework is resident here then)."""

    outputs: dict[str, dict[str, Any]]
    load: Callable[[], Artifact]
    _loaded: Artifact | None = field(default=None, repr=False)

    def loaded(self, missing: int) -> Artifact:
        if self._loaded is None:
            logger.info("the source model ran in another process; loading it here for %d sample(s) it did "
                        "not run there", missing)
            self._loaded = self.load()
        return self._loaded


def run(artifact: Artifact, feeds: Sequence[Mapping[str, Any]], **runner_options: Any) -> list[dict[str, Any]]:
    """All samples through one runner (one runtime start per validation, not per sample)."""
    if isinstance(artifact.obj, KnownOutputs):
        known = [artifact.obj.outputs.get(feed_digest(f)) for f in feeds]
        if all(k is not None for k in known):
            return [dict(k) for k in known if k is not None]
        artifact = artifact.obj.loaded(sum(k is None for k in known))
    with registry.runner_for(artifact, **runner_options) as runner:
        return [runner.infer(f) for f in feeds]


#: artifact meta that changes how the original's feeds reach a model; exports that carry a model
#: to another format keep them. ``input_layout``: {input: {"perm": [...], "layout": ..., ...}}, the
#: model takes ``feed.transpose(perm)``; ``fixed_shape``: {input: dims}, the model takes only these
#: sizes (a str dim stays dynamic), in the source's layout, keyed by the model's input names.
FEED_META = ("input_layout", "fixed_shape")


def feeds_for(candidate: Artifact, feeds: Sequence[Mapping[str, Any]], reference: Artifact | None = None
              ) -> tuple[list[dict[str, Any]], str | None]:
    """Rename feeds to the candidate's input names where they differ only in name, and lay them
    out as the candidate takes them (``input_layout``), relative to the ``reference`` whose feeds
    they are: a reference that takes the same layout (an NHWC TF.js model optimized: its passes
    take what it takes) needs no transpose."""
    if not feeds or not candidate.inputs:
        return [dict(f) for f in feeds], None
    mapping, note = match_names(list(feeds[0]), [s.name for s in candidate.inputs])
    out = [{mapping[k]: v for k, v in f.items() if k in mapping} for f in feeds] if note else [dict(f) for f in feeds]
    layout = _relative_layout(candidate, reference)
    if layout:
        out = [{k: v.transpose(layout[k]["perm"]) if k in layout else v for k, v in f.items()} for f in out]
        note = "; ".join(filter(None, ["inputs " + note if note else None, "inputs transposed as the model takes them: "
                                       + ", ".join(f"{k} {v.get('source_layout', '?')}->{v.get('layout', '?')}"
                                                   for k, v in layout.items())]))
        return out, note
    return out, "inputs " + note if note else None


def _relative_layout(candidate: Artifact, reference: Artifact | None) -> dict[str, Any]:
    """The candidate's ``input_layout`` as seen from feeds laid out for ``reference`` (which may
    have an ``input_layout`` of its own): feeds ``x_ref = x_src.transpose(p_ref)``, the candidate
    takes ``x_src.transpose(p_cand) = x_ref.transpose(argsort(p_ref)[p_cand])``."""
    layout = dict(candidate.meta.get("input_layout") or {})
    ref_layout = (reference.meta.get("input_layout") or {}) if reference is not None else {}
    for name, entry in ref_layout.items():
        back = sorted(range(len(entry["perm"])), key=lambda i: entry["perm"][i])  # argsort: undo the reference's
        perm = [back[p] for p in layout[name]["perm"]] if name in layout else back
        if perm == list(range(len(perm))):
            layout.pop(name, None)
        else:
            layout[name] = {**layout.get(name, {}), "perm": perm,
                            "source_layout": entry.get("layout", "?"),
                            "layout": layout.get(name, {}).get("layout", entry.get("source_layout", "?"))}
    return layout


def fit_fixed_shape(reference: Artifact, candidate: Artifact, feeds: Sequence[Mapping[str, Any]],
                    refs: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]], str | None]:
    """For a candidate that declares ``fixed_shape`` (it takes only those sizes): each sample of
    another shape is replaced by a seeded sample of that shape, run through the reference too, so
    the comparison still covers as many samples; the note says so. Others: unchanged."""
    fixed = candidate.meta.get("fixed_shape") or {}
    if not fixed or not feeds:
        return list(map(dict, feeds)), refs, None
    out_feeds, replaced = fitted_feeds(reference.inputs, [s.name for s in candidate.inputs], fixed, feeds)
    out_refs = [r for i, r in enumerate(refs) if i not in replaced]
    if replaced:
        new_refs = run(reference, [out_feeds[i] for i in replaced])
        for i, r in zip(replaced, new_refs):
            out_refs.insert(i, r)
    note = f"the model takes fixed shapes {shapes_text(fixed)}"
    if replaced:
        note += f"; sample(s) {', '.join(map(str, replaced))} of other sizes were replaced by seeded samples of that shape"
    return out_feeds, out_refs, note


def fitted_feeds(reference_inputs: Sequence[TensorSpec], candidate_inputs: Sequence[str],
                 fixed: Mapping[str, Sequence[Any]], feeds: Sequence[Mapping[str, Any]]
                 ) -> tuple[list[dict[str, Any]], list[int]]:
    """``feeds`` as a model that takes only the ``fixed`` shapes (keyed by its ``candidate_inputs``
    names) can run them: each sample of another shape replaced by a seeded sample of that shape
    (the same one every time). Returns the feeds and the indices replaced."""
    from .inputs import make_feeds

    to_ref = {c: r for r, c in match_names(list(feeds[0]), list(candidate_inputs))[0].items()}
    want = {to_ref.get(k, k): dims for k, dims in fixed.items()}
    specs = {s.name: s for s in reference_inputs}

    def fits(f: Mapping[str, Any]) -> bool:
        return all(k not in f or (len(f[k].shape) == len(d) and all(not isinstance(a, int) or a == n
                                                                     for a, n in zip(d, f[k].shape)))
                   for k, d in want.items())

    out_feeds, replaced = [], []
    for i, f in enumerate(feeds):
        if fits(f):
            out_feeds.append(dict(f))
            continue
        replaced.append(i)
        new = {}
        for k, v in f.items():
            dims = want.get(k)
            if dims is None:
                new[k] = v
                continue
            spec = specs.get(k)
            shape = tuple(a if isinstance(a, int) else n for a, n in zip(dims, v.shape))
            new[k] = make_feeds([TensorSpec(k, shape, v.dtype.name, int_range=spec.int_range if spec else None)],
                                samples=1, seed=1000 + i)[0][k]
        out_feeds.append(new)
    return out_feeds, replaced


def shapes_text(fixed: Mapping[str, Sequence[Any]]) -> str:
    """``x[batch,4,32] (batch stays dynamic)``: fixed shapes as a user writes them in --input."""
    text = ", ".join(f"{k}[{','.join(str(d) for d in dims)}]" for k, dims in fixed.items())
    dynamic = sorted({str(d) for dims in fixed.values() for d in dims if isinstance(d, str)})
    if dynamic:
        text += f" ({', '.join(dynamic)} {'stays' if len(dynamic) == 1 else 'stay'} dynamic)"
    return text


def validate(reference: Artifact, candidate: Artifact, feeds: Sequence[Mapping[str, Any]], tol: Tolerance, *,
             reference_outputs: list[dict[str, Any]] | None = None, **runner_options: Any) -> ParityReport:
    """A candidate that cannot load raises (the conversion failed); one that loads but fails on some
    sample (e.g. a dimension the exporter fixed) is a parity failure, reported per output."""
    refs = reference_outputs if reference_outputs is not None else run(reference, feeds)
    feeds, refs, fixed_note = fit_fixed_shape(reference, candidate, feeds, refs)
    cand_feeds, note = feeds_for(candidate, feeds, reference)
    note = "; ".join(filter(None, [note, fixed_note])) or None
    gots: list[dict[str, Any]] = []
    with registry.runner_for(candidate, **runner_options) as runner:
        # a runtime that computes at lower precision than asked (WebGL at 16 bits: converter/browser)
        # widens the tolerance by what it adds, and says where and how it ran
        tol = tol.loosened_by(runner.tolerance) if getattr(runner, "tolerance", None) else tol
        runner_notes = list(getattr(runner, "notes", ()))
        for i, f in enumerate(cand_feeds):
            try:
                gots.append(runner.infer(f))
            except ConvertkitError as exc:
                shapes = ", ".join(f"{k}{list(v.shape)}" for k, v in f.items())
                msg = f"the candidate failed to run on sample {i} ({shapes}): {exc.message}"
                return ParityReport([OutputParity(name, ERROR, message=msg) for name in refs[0]], tol, len(feeds),
                                    [n for n in [note, *runner_notes] if n])
    report = compare(refs, gots, tol)
    report.notes[0:0] = [n for n in [note, *runner_notes] if n]
    return report
