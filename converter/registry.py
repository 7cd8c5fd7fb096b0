"""Discover formats, their sources, runners and stages from ``converter/formats`` (and, later,
``converter/passes``). Pure and cached: importing a format package imports no framework."""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache
from pathlib import Path
from collections.abc import Callable
from types import ModuleType
from typing import Any

from .core import Artifact, Format, Runner, Stage
from .errors import InputError, UsageError


def lazy(package: str, module: str, *names: str) -> Any:
    """Format package hooks that live in one of its modules: ``probe, open_source = lazy(__name__,
    ".source", "probe", "open_source")`` imports ``.source`` on a hook's first call, so discovering
    formats imports no framework. One name gives one hook; several give a tuple, in order."""
    def one(name: str) -> Callable[..., Any]:
        def hook(*args: Any, **kwargs: Any) -> Any:
            return getattr(importlib.import_module(module, package), name)(*args, **kwargs)

        hook.__name__ = hook.__qualname__ = name
        hook.__doc__ = f"{name} from {package}{module} (imported when first called)"
        return hook

    hooks = tuple(one(n) for n in names)
    return hooks[0] if len(hooks) == 1 else hooks


@cache
def format_modules() -> dict[str, ModuleType]:
    from . import formats

    mods = {}
    for info in sorted(pkgutil.iter_modules(formats.__path__), key=lambda i: i.name):
        mod = importlib.import_module(f"{formats.__name__}.{info.name}")
        if hasattr(mod, "FORMAT"):
            mods[mod.FORMAT.name] = mod
    return mods


def formats() -> dict[str, Format]:
    return {name: mod.FORMAT for name, mod in format_modules().items()}


def get_format(name: str) -> Format:
    try:
        return formats()[name]
    except KeyError:
        raise UsageError(f"unknown format '{name}'", hint=f"one of {', '.join(formats())}") from None


@cache
def stages() -> tuple[type[Stage], ...]:
    found: list[type[Stage]] = []
    for mod in format_modules().values():
        found.extend(mod.STAGES() if callable(getattr(mod, "STAGES", None)) else getattr(mod, "STAGES", ()))
    return tuple(found)


@cache
def passes() -> tuple[type[Stage], ...]:
    """Every pass class listed in a ``converter/passes/*.py`` module's PASSES."""
    from . import passes as pkg

    found: list[type[Stage]] = []
    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda i: i.name):
        mod = importlib.import_module(f"{pkg.__name__}.{info.name}")
        found.extend(getattr(mod, "PASSES", ()))
    return tuple(found)


def pass_names() -> list[str]:
    return sorted({p.name for p in passes()})


def targets() -> list[str]:
    return sorted({s.produces.name for s in stages()})


def _probe(location: str) -> list[ModuleType]:
    return [m for m in format_modules().values() if hasattr(m, "probe") and m.probe(location)]


def format_of(location: str) -> str | None:
    """The format whose probe recognises ``location`` (no framework is imported), or None."""
    matches = _probe(location)
    return matches[0].FORMAT.name if matches else None


def open_source(location: str, **options: Any) -> Artifact:
    """Find the format whose probe recognises ``location`` and open it."""
    matches = _probe(location)
    if not matches and not Path(location).exists():
        raise InputError(f"{location}: no such file", hint="check the path; an import path looks like package.module:callable")
    if not matches:
        raise InputError(f"{location}: not a model convertkit can read",
                         hint="give a .pt2, TorchScript .pt, .onnx, .keras, .h5 or frozen-graph .pb file, a "
                              "SavedModel, TF.js or Hugging Face model directory, or package.module:callable")
    return matches[0].open_source(location, **options)


def runner_for(artifact: Artifact, **options: Any) -> Runner:
    mod = format_modules().get(artifact.format.name)
    if mod is None or not hasattr(mod, "make_runner"):
        raise UsageError(f"convertkit cannot run {artifact.format} models")
    return mod.make_runner(artifact, **options)


def prewarm(format_name: str, **runner_options: Any) -> None:
    """Let a format start its runtime ahead of need (TF.js: Node), so that start-up overlaps the
    conversion. Formats without ``prewarm`` start theirs when a runner is entered."""
    fn = getattr(format_modules().get(format_name), "prewarm", None)
    if fn is not None:
        fn(**runner_options)


def describe(artifact: Artifact) -> dict[str, Any]:
    return format_modules()[artifact.format.name].describe(artifact)


def latency_ms(artifact: Artifact, feeds: Any, reference: Artifact | None = None) -> float | None:
    """Median latency in the format's runtime, where the format can measure it (``feeds``: the
    ``reference``'s, laid out as the artifact takes them by the format's function)."""
    fn = getattr(format_modules().get(artifact.format.name), "latency_ms", None)
    if fn is None or artifact.path is None:
        return None
    try:
        return fn(artifact, feeds, reference=reference)
    except Exception:  # informative only
        return None


def op_counts(artifact: Artifact) -> dict[str, int] | None:
    fn = getattr(format_modules().get(artifact.format.name), "op_counts", None)
    if fn is None or (artifact.path is None and artifact.obj is None):
        return None
    try:
        return fn(artifact)
    except Exception:  # op counts are informative; never fail a conversion for them
        return None
