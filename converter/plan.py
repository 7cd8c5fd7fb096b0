"""Plan a pipeline: the shortest route of exports from the source format to the target."""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Mapping
from typing import Any

from . import registry
from .core import Format, Pipeline, Stage
from .errors import UsageError


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


def plan(src: Format, dst: Format, options: Mapping[str, Any] | None = None) -> Pipeline:
    """``options`` are stage settings by field name (``opset=17``); each stage takes the ones it
    declares, so one ``--opset`` reaches every stage that writes ONNX."""
    options = {k: v for k, v in (options or {}).items() if v is not None}
    stages = []
    for cls in route(src, dst):
        fields = {f.name for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else set()
        kwargs = {k: v for k, v in options.items() if k in fields}
        try:
            stages.append(cls(**kwargs))
        except TypeError as exc:
            raise UsageError(f"bad options for stage {cls.name}: {exc}") from exc
    return Pipeline(tuple(stages))
