"""Run a PyTorch model eagerly on the CPU: the reference every export is compared against."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ...core import Runner
from ...deps import require


def output_leaves(out: Any) -> list[Any]:
    """Flatten whatever forward() returned (tensor, tuple, list, dict) into its tensors, in order."""
    torch = require("torch")
    leaves = torch.utils._pytree.tree_leaves(out)
    return [x for x in leaves if isinstance(x, torch.Tensor)]


def callable_of(obj: Any) -> Any:
    return obj.module() if hasattr(obj, "graph_signature") else obj  # ExportedProgram -> GraphModule


def output_names(count: int, given: tuple[str, ...] = ()) -> tuple[str, ...]:
    if given and len(given) == count:
        return given
    return ("output",) if count == 1 else tuple(f"output_{i}" for i in range(count))


class TorchRunner(Runner):
    def __enter__(self) -> TorchRunner:
        self.torch = require("torch")
        self.fn = callable_of(self.artifact.obj)
        self.names = tuple(s.name for s in self.artifact.inputs)
        return self

    def infer(self, feeds: Mapping[str, Any]) -> dict[str, Any]:
        torch = self.torch
        order = self.names or tuple(feeds)
        args = [torch.from_numpy(feeds[n].copy()) for n in order]
        with torch.no_grad():
            leaves = output_leaves(self.fn(*args))
        names = output_names(len(leaves), tuple(o.name for o in self.artifact.outputs))
        return {n: t.detach().cpu().numpy() for n, t in zip(names, leaves)}
