"""Run a transformers model eagerly in torch on the CPU (no_grad): the reference its exports are
compared against. Outputs are named as optimum names them (``logits``, ``last_hidden_state``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ...core import Runner
from ...deps import require
from ...errors import ConversionError


class HfRunner(Runner):
    def __enter__(self) -> HfRunner:
        from .source import call_options, open_source

        self.torch = require("torch")
        art = self.artifact
        if art.obj is None:  # an artifact described but not loaded (e.g. built by hand)
            task = art.meta.get("task")
            art = open_source(str(art.path), **({"task": task} if task else {}))
        self.model = art.obj
        self.options = call_options(self.model)
        return self

    def infer(self, feeds: Mapping[str, Any]) -> dict[str, Any]:
        import numpy as np

        torch = self.torch
        # token ids index embeddings, which take int64 only (a feeds file may hold int32)
        kwargs = {k: torch.from_numpy(np.array(v, dtype=np.int64 if np.asarray(v).dtype.kind in "iu" else None))
                  for k, v in feeds.items()}
        with torch.no_grad():
            out = self.model(**kwargs, **self.options)
        names = self.output_names or tuple(k for k, v in out.items() if isinstance(v, torch.Tensor))
        missing = [n for n in names if not isinstance(out.get(n), torch.Tensor)]
        if missing:
            raise ConversionError(f"{type(self.model).__name__} returned no {', '.join(missing)} "
                                  f"(it returned {', '.join(out.keys())})")
        return {n: out[n].detach().cpu().numpy() for n in names}
