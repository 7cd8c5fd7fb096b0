"""Before any export: the input specs and validation samples (given, generated or both, their integer
ranges and sizes), and the source's own outputs on them (the reference run, which fails with exit 2
when the inputs are the user's problem). Used by :mod:`converter.api` and, for a PyTorch source on
a route through TensorFlow, by the child process of :mod:`converter.isolate`."""

from __future__ import annotations

import dataclasses
import functools
import inspect as _inspect
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .core import OPTIONAL_INPUTS, Artifact, TensorSpec
from .errors import UsageError
from .parity import int_ranges
from .parity import inputs as feeds_mod
from .parity import reference as reference_mod
from .parity import samples as samples_mod
from .parity import sizes as sizes_mod
from .pipeline import Checker

InputsArg = Sequence[str | TensorSpec] | None
#: source meta: how many leading validation samples are the user's own data (in memory only)
GIVEN = "_given_samples"
#: source meta: (the size plans for dynamic dims, best first, the seed) when convertkit chose the sizes
SIZES = "_size_plans"


def prepare_inputs(src: Artifact, inputs: InputsArg = None, feeds: str | Path | Mapping | None = None, *,
                   example_inputs: Any = None, samples: int = 3, seed: int = 0, samples_from: str | None = None
                   ) -> tuple[Artifact, list[dict[str, Any]], list[str]]:
    """Decide the input specs and the feeds for validation. Returns (source with specs, feeds, notes).
    ``samples_from`` (data, random, mixed): where the samples besides given data come from
    (parity.samples); the source's meta ``GIVEN`` counts the leading samples that are the user's."""
    notes: list[str] = []
    specs = parse_inputs(inputs)
    user_ranges = {s.name for s in specs if s.int_range}  # --input ranges win over inferred ones
    user_feeds = _example_feeds(src, example_inputs, specs) if example_inputs is not None else None
    if feeds is not None:
        user_feeds = dict(feeds) if isinstance(feeds, Mapping) else feeds_mod.load_feeds(feeds)
    mode = samples_mod.check_mode(samples_from, user_feeds is not None)
    if not specs:
        specs = src.inputs or (feeds_mod.specs_from_feeds(user_feeds) if user_feeds else ())
    if not specs:
        raise UsageError(f"{src.label}: convertkit needs to know the model's inputs",
                         hint="give --input NAME:DIMS[:DTYPE] (repeatable) or --inputs FEEDS.npz")
    notes.extend(_check_input_names(src, specs))
    found = int_ranges.inferred(src, specs)
    specs = tuple(_with_int_range(s, None if s.name in user_ranges else found.get(s.name)) for s in specs)
    notes.extend(found[s.name].note() for s in specs if s.name in found and s.name not in user_ranges)
    if user_feeds is not None:
        feeds_mod.check_feeds(user_feeds, specs, str(feeds) if feeds is not None else "example_inputs")
        generated, note = samples_mod.extra_samples(user_feeds, specs, max(samples, 1) - 1, seed=seed, mode=mode)
        feed_list = [user_feeds, *generated]
        notes.extend([note] if note else [])
        plan_list: list[sizes_mod.SizePlan] = []
    else:
        plan_list = sizes_mod.plans(src, specs) if feeds_mod.dynamic_names(specs) else []
        feed_list = feeds_mod.make_feeds(specs, samples=max(samples, 1), seed=seed,
                                         sizes=plan_list[0].sizes if plan_list else ())
    meta = {**src.meta, "example": feed_list[0], GIVEN: 1 if user_feeds is not None else 0,
            SIZES: (plan_list, seed)}
    return src.with_(inputs=specs, meta=meta), feed_list, notes


def _check_input_names(src: Artifact, specs: Sequence[TensorSpec]) -> list[str]:
    """UsageError unless ``specs`` name the model's inputs, or name at least one of the tensors it can
    also be fed (``OPTIONAL_INPUTS``: a frozen TF graph's PlaceholderWithDefault nodes) and nothing
    else. Returns a note for each such tensor: fed, or computing its default."""
    optional = dict(src.meta.get(OPTIONAL_INPUTS) or {})
    names, own = {s.name for s in specs}, {s.name for s in src.inputs}
    if src.inputs and names != own and not (names & optional.keys() and names <= own | optional.keys()):
        extra = f" (or tensors it can be fed: {', '.join(optional)})" if optional else ""
        raise UsageError(f"--input names {', '.join(s.name for s in specs)} do not match the model's inputs "
                         f"{', '.join(s.name for s in src.inputs)}{extra}", hint="use the model's input names")
    return [f"{name}, {what}: fed as an input (--input)" if name in names else
            f"{name}, {what}: not fed, so it computes its default (to feed it, name it with --input)"
            for name, what in optional.items()]


def reference_checker(src: Artifact, feed_list: list[dict[str, Any]], notes: list[str], *, check: bool,
                      atol: float | None = None, rtol: float | None = None, runner_options: Mapping[str, Any] | None = None
                      ) -> tuple[Artifact, list[dict[str, Any]], Checker | None]:
    """Run the source on the samples before any export (parity.reference): exit 2 when it cannot run
    them or gives NaN/Inf on the user's data; samples it gives NaN/Inf on otherwise are left out
    (``notes`` says so); dynamic dims convertkit sized get the next size plan where the source fails
    (parity.sizes). Returns the source (its example: the first sample), the samples kept and the
    Checker primed with the source's outputs."""
    plan_list, seed = src.meta.get(SIZES) or ([], 0)
    if len(plan_list) > 1 or (plan_list and sizes_mod.spatial_names(src.inputs, src.format.name)):
        # sizes convertkit chose for dynamic dims: the next plan where the source fails; none: exit 2 naming them
        ref, used = reference_mod.run_sized(src, feed_list, plan_list, functools.partial(
            _sized_feeds, src.inputs, len(feed_list), seed), check=check)
        if used is not None and used.sizes:
            notes.append(f"dynamic dims sized to {used.label}")
            src = src.with_(meta={**src.meta, "example": ref.feeds[0]})
    else:
        ref = reference_mod.run_reference(src, feed_list, check=check, given=int(src.meta.get(GIVEN, 0)))
    notes.extend(ref.notes)
    if not check:
        return src, ref.feeds, None
    checker = Checker(src, ref.feeds, atol, rtol, dict(runner_options or {}))
    return src, ref.feeds, checker.with_reference_outputs(ref.outputs)


def _sized_feeds(specs: Sequence[TensorSpec], samples: int, seed: int, plan: sizes_mod.SizePlan) -> list[dict[str, Any]]:
    return feeds_mod.make_feeds(specs, samples=samples, seed=seed, sizes=plan.sizes)


def parse_inputs(inputs: InputsArg) -> tuple[TensorSpec, ...]:
    return tuple(feeds_mod.parse_input_spec(s) if isinstance(s, str) else s for s in (inputs or ()))


def _with_int_range(spec: TensorSpec, found: int_ranges.IntRange | None) -> TensorSpec:
    """The range of ``spec``'s samples: the one inferred from the graph (floats cast to indices too),
    else the format's or the user's, else DEFAULT_INT_RANGE for integers."""
    if found is not None:
        return dataclasses.replace(spec, int_range=(found.low, found.high))
    if spec.int_range or not spec.dtype.startswith(("int", "uint")):
        return spec
    return dataclasses.replace(spec, int_range=feeds_mod.DEFAULT_INT_RANGE)


def _example_feeds(src: Artifact, example_inputs: Any, specs: tuple[TensorSpec, ...]) -> dict[str, Any]:
    """Tensors given to the API (a tensor, tuple, or dict) -> named numpy feeds."""
    if isinstance(example_inputs, Mapping):
        return {k: _np(v) for k, v in example_inputs.items()}
    items = example_inputs if isinstance(example_inputs, (tuple, list)) else (example_inputs,)
    names = [s.name for s in specs]
    if not names:
        try:
            params = list(_inspect.signature(src.obj.forward).parameters)
        except (TypeError, ValueError, AttributeError):
            params = []
        names = params[: len(items)] if len(params) >= len(items) else [f"input_{i}" for i in range(len(items))]
    return {n: _np(v) for n, v in zip(names, items)}


def _np(v: Any) -> Any:
    import numpy as np

    return v.detach().cpu().numpy() if hasattr(v, "detach") else np.asarray(v)
