"""Transformations that keep the format: one module per pass (quantize.py, fp16.py, prune.py,
simplify.py, ...). Each module lists its pass classes in ``PASSES``; a pass class is a frozen
dataclass whose fields are its options, with ClassVars ``name`` (what ``-p NAME`` says) and
``accepts``/``produces`` (the same Format). One name may exist for several formats (``quantize``
on ONNX and on TF.js): the planner picks by where the pass lands on the route.

``-p NAME[:key=value,...]`` is parsed here; values are coerced to the field's type.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass
from typing import Any

from ..errors import UsageError

_SPEC = re.compile(r"^(?P<name>[a-z][a-z0-9_\-]*)(?:@(?P<fmt>[a-z0-9_]+))?(?::(?P<opts>.*))?$")


@dataclass(frozen=True)
class PassSpec:
    name: str
    options: tuple[tuple[str, str], ...] = ()
    format: str | None = None  # NAME@FORMAT pins the format the pass applies to

    def __str__(self) -> str:
        opts = ",".join(f"{k}={v}" for k, v in self.options)
        return self.name + (f"@{self.format}" if self.format else "") + (f":{opts}" if opts else "")


def parse_pass_spec(text: str) -> PassSpec:
    """``prune:sparsity=0.3,structured=true`` -> PassSpec. Raises UsageError with the syntax."""
    m = _SPEC.match(text.strip())
    syntax = "write -p NAME[:key=value,...], e.g. -p quantize, -p prune:sparsity=0.5,structured=true"
    if not m:
        raise UsageError(f"-p '{text}' does not parse", hint=syntax)
    opts = []
    for item in filter(None, (m.group("opts") or "").split(",")):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"-p '{text}': option '{item}' is not key=value", hint=syntax)
        opts.append((key.strip(), value.strip()))
    return PassSpec(m.group("name"), tuple(opts), m.group("fmt"))


def build(cls: type, spec: PassSpec) -> Any:
    """Instantiate pass ``cls`` from ``spec``'s options, coerced to the fields' types."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for key, raw in spec.options:
        if key not in fields:
            known = ", ".join(f for f in fields) or "none"
            raise UsageError(f"pass '{spec.name}' ({cls.accepts}) has no option '{key}'", hint=f"its options: {known}")
        kwargs[key] = _coerce(raw, hints.get(key, str), f"-p {spec}: {key}")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"-p {spec}: {exc}") from exc


def _coerce(raw: str, hint: Any, where: str) -> Any:
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    target = args[0] if args and typing.get_origin(hint) in (typing.Union, types.UnionType) else hint
    if raw.lower() in ("none", "null") and type(None) in typing.get_args(hint):
        return None
    try:
        if target is bool:
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if target in (int, float):
            return target(raw)
        if typing.get_origin(target) is tuple:
            return tuple(x for x in raw.split("|") if x)
    except ValueError:
        raise UsageError(f"{where}: '{raw}' is not a valid {getattr(target, '__name__', target)}") from None
    return raw
