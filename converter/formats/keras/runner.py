"""Run a Keras model in Keras (``model(x, training=False)``): named numpy feeds in, named numpy
outputs out, named by the output layers (dict keys for a dict-output model), as TF.js names them.

A Keras 3 model is called inside ``keras.StatelessScope``: the call then writes no variable.
Keras 3's RNN layers draw their dropout masks on every call, in inference too (``RNN.call`` ->
``_maybe_config_dropout_masks`` -> ``SeedGenerator.next``, an ``AssignVariableOp`` on the seed
state), though ``training=False`` never applies them. Traced, that write made a function that
cannot be frozen ("Input 0 of node .../lstm/AssignVariableOp was passed int64 ... expected
resource"); in the scope the write is only recorded, and the traced function is stateless. Reads
are unchanged (no state mapping is given: every variable reads its own value).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ...core import Artifact
from ...errors import InputError
from ..tf.common import CallableRunner, TfCallable, cast_all, select_outputs


class KerasRunner(CallableRunner):
    framework = "Keras"

    def build(self, artifact: Artifact, tf: Any) -> TfCallable:
        return keras_callable(artifact, tf)


def model_of(artifact: Artifact) -> Any:
    if artifact.obj is not None:
        return artifact.obj
    from .source import open_source

    return open_source(str(Path(artifact.path)), trust_code=bool(artifact.meta.get("trust_code"))).obj


def keras_callable(artifact: Artifact, tf: Any) -> TfCallable:
    """The model as one function of positional tensors, in ``artifact.inputs`` order."""
    from .source import _tensors, input_names, output_names

    model = model_of(artifact)
    native_in = input_names(model)
    names = tuple(s.name for s in artifact.inputs) or tuple(native_in)
    if native_in and sorted(names) != sorted(native_in):
        raise InputError(f"inputs {', '.join(names)} are not the inputs of {artifact.label}",
                         hint=f"its inputs: {', '.join(native_in)}")
    tensors = dict(zip(native_in, _tensors(model, "inputs")))
    dtypes = [_as_dtype(tf, getattr(tensors.get(n), "dtype", None)) for n in names]
    as_dict = isinstance(getattr(model, "_inputs_struct", None), dict)
    order = [names.index(n) for n in native_in] if native_in else list(range(len(names)))
    native_out = output_names(model) or _probe_outputs(model, artifact, tf)

    def run(*args: Any) -> list[Any]:
        xs = cast_all(tf, args, dtypes)
        xs = [xs[i] for i in order]  # the model's own input order
        if as_dict:
            x: Any = dict(zip(native_in, xs))
        else:
            x = xs[0] if len(xs) == 1 else xs
        with stateless(model):
            return flatten(model(x, training=False), native_out)

    pairs = select_outputs(native_out, [o.name for o in artifact.outputs])
    index = {n: i for i, n in enumerate(native_out)}

    def call(*args: Any) -> list[Any]:
        outs = run(*args)
        return [outs[index[k]] for k, _ in pairs]

    return TfCallable(call, names, tuple(n for _, n in pairs), keep=model)


def stateless(model: Any) -> contextlib.AbstractContextManager[Any]:
    """``keras.StatelessScope()`` for a Keras 3 model (variable writes recorded, not made); a no-op
    context for a tf_keras model (its RNNs make no dropout masks at inference)."""
    if not any(c.__module__.split(".")[0] == "keras" for c in type(model).__mro__):
        return contextlib.nullcontext()
    import keras

    return keras.StatelessScope()


def flatten(result: Any, names: list[str]) -> list[Any]:
    if isinstance(result, Mapping):
        keys = names if all(n in result for n in names) else sorted(result)
        return [result[k] for k in keys]
    if isinstance(result, (list, tuple)):
        return list(result)
    return [result]


def _as_dtype(tf: Any, dtype: Any) -> Any:
    return tf.as_dtype(dtype) if dtype is not None else None


def _probe_outputs(model: Any, artifact: Artifact, tf: Any) -> list[str]:
    """A model without symbolic outputs (subclassed): count them by running it once on ones."""
    from ...parity.inputs import concrete_shape

    if not artifact.inputs:
        raise InputError(f"{artifact.label}: convertkit needs to know the model's inputs",
                         hint="give --input NAME:DIMS[:DTYPE] (repeatable)")
    xs = [tf.ones(concrete_shape(s, {}), dtype=s.dtype) for s in artifact.inputs]
    out = model(xs[0] if len(xs) == 1 else xs, training=False)
    n = len(out) if isinstance(out, (list, tuple, Mapping)) else 1
    if isinstance(out, Mapping):
        return sorted(out)
    return ["output"] if n == 1 else [f"output_{i}" for i in range(n)]
