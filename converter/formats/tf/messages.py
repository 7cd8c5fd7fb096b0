"""onnx2tf's and TensorFlow's failures as one line for people: the error, and the ONNX node (and op
type) or TF node it happened at."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from ...errors import ANSI_ESCAPE, first_line

_NODE = re.compile(r"onnx_op_name:\s*(\S+)")


def _describe_failure(exc: BaseException | None, log: str, model: Any) -> str:
    """One line: onnx2tf's error, and the ONNX node (and op type) it failed on when its log names it."""
    plain = re.sub(r"\x1b\[[0-9;]*m", "", log)
    where = ""
    names = _NODE.findall(plain)
    if names:
        node = names[-1].removeprefix("wa/")
        ops = {n.name: n.op_type for n in model.graph.node}
        op = ops.get(node) or ops.get(node.lstrip("/"))
        where = f" at node '{node}'" + (f" ({op})" if op else "")
    if isinstance(exc, SystemExit) or exc is None:
        errors = [ln.strip() for ln in plain.splitlines() if "ERROR:" in ln]
        what = errors[-1].split("ERROR:", 1)[1].strip() if errors else "onnx2tf stopped without a model"
    else:
        what = f"{type(exc).__name__}: {_first_line(exc)}"
    return f"{what[:300]}{where}"


def _failure_hint(tried: Sequence[str]) -> str:
    return ("tried " + "; ".join(tried))[:700] + "; fix the node named above in the ONNX model, or give static " \
        "shapes with --input NAME:DIMS"


_NOISE = re.compile(r"^(Graph execution error:|Detected at node|<stack traces|\[\[|Call arguments received|"
                    r"Exception encountered)")


def _noise(line: str) -> bool:
    return bool(_NOISE.match(line)) or line.startswith("\u2022")


def _first_line(exc: BaseException) -> str:
    """The line of an error that says what went wrong (TensorFlow's first lines rarely do), and the TF node."""
    lines = (ln.strip() for ln in ANSI_ESCAPE.sub("", str(exc)).splitlines())
    node = next((m.group(1) for ln in lines if (m := re.match(r"Detected at node (\S+)", ln))), None)
    return (first_line(exc, strip_ansi=True, skip=_noise) + (f" (TF node {node})" if node else ""))[:300]
