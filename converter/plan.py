"""Plan a pipeline: the shortest route of exports from the source format to the target."""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

from . import registry
from .core import Format, Pipeline, Stage
from .errors import UsageError
from .passes import PassSpec
from .passes import build as build_pass


def route(src: Format, dst: Format) -> list[type[Stage]]:
    """Breadth-first search over the registered exports; the first (shortest) route wins."""
    if src == dst:
        return []
    exports = [s for s in registry.stages() if s.accepts != s.produces]
    prev: dict[Format, type[Stage]] = {}
    queue = deque([src])
    while queue:
        fmt = queue.popleft()
        for stage in exports:
            if stage.accepts == fmt and stage.produces not in prev and stage.produces != src:
                prev[stage.produces] = stage
                if stage.produces == dst:
                    path = [stage]
                    while path[0].accepts != src:
                        path.insert(0, prev[path[0].accepts])
                    return path
                queue.append(stage.produces)
    reachable = sorted({s.produces.name for s in exports if s.accepts == src})
    raise UsageError(f"no conversion route from {src} to {dst}",
                     hint=f"from {src} convertkit can produce: {', '.join(reachable) or 'nothing yet'}")


def plan(src: Format, dst: Format, options: Mapping[str, Any] | None = None,
         passes: Sequence[PassSpec] = ()) -> Pipeline:
    """``options`` are stage settings by field name (``opset=17``); each stage takes the ones it
    declares, so one ``--opset`` reaches every stage that writes ONNX.

    Each requested pass lands right after the stage that produces the format it accepts (or at
    the start, for the source's format). Where a pass exists for several formats on the route,
    the last one wins (``-p quantize`` on a route to TF.js quantizes the TF.js weights);
    ``NAME@FORMAT`` pins it."""
    options = {k: v for k, v in (options or {}).items() if v is not None}
    exports = route(src, dst)
    on_route = [src, *(s.produces for s in exports)]
    placed: dict[int, list[Stage]] = {}
    for spec in passes:
        candidates = [p for p in registry.passes() if p.name == spec.name]
        if not candidates:
            raise UsageError(f"unknown pass '{spec.name}'", hint=f"available: {', '.join(registry.pass_names())}")
        where = [i for i, f in enumerate(on_route) if any(p.accepts == f for p in candidates)
                 and (spec.format is None or f.name == spec.format)]
        if not where:
            formats = ", ".join(sorted({p.accepts.name for p in candidates}))
            raise UsageError(f"pass '{spec}' applies to {formats} models; this route has "
                             f"{' -> '.join(f.name for f in on_route)}",
                             hint=f"convert to one of {formats} (--to), or drop -p {spec.name}")
        i = where[-1]
        (cls,) = [p for p in candidates if p.accepts == on_route[i]]
        placed.setdefault(i, []).append(build_pass(cls, spec))
    stages: list[Stage] = list(placed.get(0, []))
    for n, cls in enumerate(exports, start=1):
        fields = {f.name for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else set()
        kwargs = {k: v for k, v in options.items() if k in fields}
        if "intermediate" in fields:  # a stage may export differently when its result is not the target
            kwargs["intermediate"] = n < len(exports)
        try:
            stages.append(cls(**kwargs))
        except TypeError as exc:
            raise UsageError(f"bad options for stage {cls.name}: {exc}") from exc
        stages.extend(placed.get(n, []))
    return Pipeline(tuple(stages))
