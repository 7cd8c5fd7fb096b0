"""Handlers by (domain, op type, opset range); every ``ops_*.py`` module beside this one is imported
on first use (pkgutil), so adding ops is adding a file. No dispatch over op types anywhere else.

The table is filled by the ``@op`` decorators as the op modules are imported: it is a
registry of code (like a plugin list), not state that changes while models are converted.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .context import Ctx
    from .values import V

Handler = Callable[["Ctx", Any, list["V | None"]], Sequence["V | None"]]
_DEFAULT = ("", "ai.onnx")
_TABLE: dict[tuple[str, str], list[tuple[int, int | None, Handler]]] = {}


def _domain(domain: str) -> str:
    return "" if domain in _DEFAULT else domain


def op(op_type: str, since: int = 1, until: int | None = None, domain: str = "") -> Callable[[Handler], Handler]:
    """Register the decorated handler for ``op_type`` at opsets ``since..until`` (inclusive; None: open).
    Stack the decorator for several ranges or op types."""
    def register(handler: Handler) -> Handler:
        ranges = _TABLE.setdefault((_domain(domain), op_type), [])
        ranges.append((since, until, handler))
        ranges.sort(key=lambda r: -r[0])  # the newest range first: lookup takes the first that fits
        return handler

    return register


@functools.cache
def discover() -> tuple[str, ...]:
    """Import every ``ops_*`` module of this package once; their names."""
    names = []
    for info in pkgutil.iter_modules(_package_path()):
        if info.name.startswith("ops_"):
            importlib.import_module(f"{__package__}.{info.name}")
            names.append(info.name)
    return tuple(sorted(names))


def _package_path() -> list[str]:
    from pathlib import Path

    return [str(Path(__file__).parent)]


def lookup(op_type: str, opset: int, domain: str = "") -> Handler | None:
    """The handler for ``op_type`` at ``opset``, or None."""
    discover()
    for since, until, handler in _TABLE.get((_domain(domain), op_type), ()):
        if since <= opset and (until is None or opset <= until):
            return handler
    return None


def supported() -> dict[str, list[tuple[int, int | None]]]:
    """Op type (``domain.op`` outside the default domain) -> its opset ranges, oldest first."""
    discover()
    out: dict[str, list[tuple[int, int | None]]] = {}
    for (domain, op_type), ranges in sorted(_TABLE.items()):
        key = f"{domain}.{op_type}" if domain else op_type
        out[key] = sorted((s, u) for s, u, _ in ranges)
    return out
