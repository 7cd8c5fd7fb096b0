"""Helpers shared by the TensorFlow and Keras formats and the exports that read them: TF dtypes and
shapes -> TensorSpec, choosing outputs by ``--output-names``, and a model as one TF callable.

Stdlib at import time; callers pass the ``tensorflow`` module they already required.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ...core import Artifact, Dim, Runner, TensorSpec
from ...deps import require
from ...errors import ConversionError, InputError, UsageError, first_line

#: TF dtypes that numpy sample data cannot stand in for
_NO_NUMPY = {"string", "resource", "variant"}


def dtype_name(dtype: Any) -> str:
    """A tf.DType (or anything tf.as_dtype takes) -> numpy dtype name: float32, int64, bool, ..."""
    name = getattr(dtype, "name", str(dtype))
    if name in _NO_NUMPY:
        return name
    try:
        import numpy as np

        return np.dtype(dtype.as_numpy_dtype).name
    except Exception:  # a dtype numpy does not know (bfloat16, qint8): keep TF's name
        return name


def dims(shape: Any) -> tuple[Dim, ...] | None:
    """A TF/Keras shape -> TensorSpec dims: an unknown axis 0 is "batch", another unknown axis i "d{i}"."""
    if shape is None:
        return None
    try:
        items = list(shape.as_list()) if hasattr(shape, "as_list") else list(shape)
    except ValueError:  # TensorShape of unknown rank
        return None
    return tuple(int(d) if d is not None and int(d) >= 0 else ("batch" if i == 0 else f"d{i}")
                 for i, d in enumerate(items))


def spec(name: str, shape: Any, dtype: Any, int_range: tuple[int, int] | None = None) -> TensorSpec:
    dt = dtype_name(dtype)
    return TensorSpec(name, dims(shape), dt, int_range=int_range if dt.startswith(("int", "uint")) else None)


def strip_port(name: str) -> str:
    """``probs:0`` -> ``probs`` (the first output of a node is named after the node)."""
    return name[:-2] if name.endswith(":0") else name


def tensor_name(name: str) -> str:
    """``probs`` -> ``probs:0``; ``split:1`` stays."""
    node, _, port = name.rpartition(":")
    return name if node and port.isdigit() else f"{name}:0"


def select_outputs(native: Sequence[str], wanted: Sequence[str]) -> list[tuple[str, str]]:
    """Pairs (the model's output name, the name to give it). ``wanted`` (from ``--output-names``)
    either picks some of the model's outputs by name, or renames all of them in order."""
    wanted = [strip_port(w) for w in wanted]
    if not wanted or list(wanted) == list(native):
        return [(n, n) for n in native]
    if all(w in native for w in wanted):
        return [(w, w) for w in wanted]
    if len(wanted) == len(native):
        return list(zip(native, wanted))
    raise UsageError(f"--output-names {', '.join(wanted)} neither name the model's outputs nor are as many",
                     hint=f"the model's outputs: {', '.join(native)}")


@dataclass
class TfCallable:
    """A model as one function: positional tensors in ``input_names`` order (cast to what the model
    takes inside ``fn``) -> a list of tensors in ``output_names`` order. Usable eagerly (runners)
    and inside ``tf.function`` (exports)."""

    fn: Callable[..., list[Any]]
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    keep: Any = field(default=None, repr=False)  # objects that must stay alive (a loaded SavedModel)


def cast_all(tf: Any, args: Sequence[Any], dtypes: Sequence[Any]) -> list[Any]:
    """Cast each argument to the dtype the model takes (None: leave it)."""
    out = []
    for a, d in zip(args, dtypes):
        t = tf.convert_to_tensor(a)
        out.append(tf.cast(t, d) if d is not None and t.dtype != d else t)
    return out


def to_numpy(outputs: Sequence[Any], names: Sequence[str]) -> dict[str, Any]:
    import numpy as np

    return {n: np.asarray(o.numpy() if hasattr(o, "numpy") else o) for n, o in zip(names, outputs)}




class CallableRunner(Runner):
    """Runs an artifact through the TfCallable that ``build(artifact, tf)`` makes: the shared body
    of the TensorFlow and Keras runners."""

    framework = "TensorFlow"

    def build(self, artifact: Artifact, tf: Any) -> TfCallable:
        raise NotImplementedError

    def __enter__(self) -> CallableRunner:
        self.tf = require("tensorflow")
        self.call = self.build(self.artifact, self.tf)
        return self

    def infer(self, feeds: Any) -> dict[str, Any]:
        missing = [n for n in self.call.input_names if n not in feeds]
        if missing:
            raise InputError(f"no feed for input(s) {', '.join(missing)} of {self.artifact.label}",
                             hint=f"the model takes: {', '.join(self.call.input_names)}")
        try:
            outs = self.call.fn(*[feeds[n] for n in self.call.input_names])
        except Exception as exc:
            raise ConversionError(f"{self.framework} failed running {self.artifact.label}: {first_line(exc)}") from exc
        return to_numpy(outs, self.call.output_names)
