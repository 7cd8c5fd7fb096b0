"""ONNX -> TensorFlow frozen graph (``model.pb``): our own lowering first (``lower/``, ``own.py``),
onnx2tf in-process where it cannot (an op it has no handler for, or a failed self-check).

``onnx_to_tf``: ``auto`` (that order; the artifact's ``converter`` note says which made the model
and why), ``own`` (the lowering only: a missing op fails the stage, naming every one), ``onnx2tf``.
The rest of this docstring is about the onnx2tf path; the lowering keeps dynamic dims as they are.

onnx2tf is run on a copy of the model in a temporary directory (it rewrites its input file), with
its model saving off (``disable_model_save``: it returns a tf_keras model and writes no SavedModel,
.tflite or .h5), its calibration-image download replaced by seeded local data (it fetches a sample
file from the internet for static-batch 3-channel 4-D inputs), and its console output captured
(parsed for the failing node when it fails). The tf_keras model is traced as ONE concrete
function, inputs and outputs named as in the ONNX model, and frozen
(``convert_variables_to_constants_v2``): much faster than ``tf.saved_model.save``, and the frozen
graph is what the TF.js converter reads anyway.

Layout: onnx2tf computes channels-last. With ``tfjs_layout="source"`` (the default) every 3-/4-/5-D
input keeps the ONNX model's layout (onnx2tf's ``keep_ncw_or_nchw_or_ncdhw_input_names``: the
transposes go inside the graph), so the TF and TF.js models take the same arrays as the source;
with ``"nhwc"`` 4-D and 5-D inputs are channels-last (NHWC / NDHWC; 3-D inputs keep their layout)
and the artifact says so (``input_layout``). Outputs always keep the source's layout.

Shapes: onnx2tf often cannot convert a graph with dynamic dimensions, and sometimes converts one
wrongly without a word. Each attempt is therefore checked here against onnxruntime on the ONNX
model (seeded samples, other sizes for dynamic dims), and the attempts go from the model's own
shapes, to a dynamic batch with the other dynamic dims fixed, to fully static shapes. A fixed shape
is never silent: the artifact's ``fixed_shape`` and ``shape_note`` say which, and why.
"""

from __future__ import annotations

import contextlib
import gc
import io
import logging
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from ...core import KNOWN_WRONG, Artifact, Dim, Export, Format, TensorSpec
from ...deps import require
from ...errors import StageError, UsageError
from ...quiet import quiet
from .. import onnx as onnx_fmt
from . import FORMAT
from . import onnx_prep as prep
from .onnx_fold import fold_shape_arithmetic
from .messages import _describe_failure, _failure_hint, _first_line
from .naming import rename_outputs
from .self_check import self_check, worst

logger = logging.getLogger(__name__)
FILENAME = "model.pb"
LAYOUTS = ("source", "nhwc")
CONVERTERS = ("auto", "own", "onnx2tf")
ONNX2TF_IMPORTS = ("onnx", "onnxruntime", "onnx2tf", "tensorflow", "tf_keras")
OWN_IMPORTS = ("onnx", "onnxruntime", "tensorflow")
#: channels-first -> channels-last, by rank (what onnx2tf does to inputs it does not keep)
CHANNELS_LAST = {4: (0, 2, 3, 1), 5: (0, 2, 3, 4, 1)}
_LAYOUT_NAMES = {4: ("NCHW", "NHWC"), 5: ("NCDHW", "NDHWC")}
_LOGGERS = ("tensorflow", "absl", "onnx2tf", "tf_keras")
EXTERNAL_DATA_BYTES = 1_800_000_000  # protobuf's limit is 2 GiB


@dataclass(frozen=True)
class OnnxToTf(Export):
    name: ClassVar[str] = "onnx->tf"
    accepts: ClassVar[Format] = onnx_fmt.FORMAT
    produces: ClassVar[Format] = FORMAT
    tfjs_layout: str = "source"  # "source": inputs as the ONNX model takes them; "nhwc": 4-D/5-D channels-last
    onnx_to_tf: str = "auto"  # auto: the own lowering, onnx2tf where it cannot; own; onnx2tf

    # onnx2tf before TensorFlow, as its own CLI loads them: it sets TF_USE_LEGACY_KERAS=1 first, so that
    # TensorFlow aliases tf.keras (and tf.losses, ...) to tf_keras, which onnx2tf builds its models with,
    # instead of also importing Keras 3 (~0.35 s, ~20 MiB here, for nothing). What a caller may load ahead;
    # run() itself imports onnx2tf only when it falls back to it.
    imports: ClassVar[tuple[str, ...]] = ONNX2TF_IMPORTS

    def __post_init__(self) -> None:
        if self.tfjs_layout not in LAYOUTS:
            raise UsageError(f"unknown layout '{self.tfjs_layout}'", hint="one of: source (as the source model, "
                             "e.g. NCHW for PyTorch), nhwc (channels-last 4-D inputs)")
        if self.onnx_to_tf not in CONVERTERS:
            raise UsageError(f"unknown ONNX -> TensorFlow converter '{self.onnx_to_tf}'",
                             hint="one of: auto (the own lowering, onnx2tf where it cannot), own, onnx2tf")

    def prepare(self, src: Artifact) -> tuple[Any, tuple[TensorSpec, ...], tuple[TensorSpec, ...], dict[str, int]]:
        """The ONNX model, its inputs (with an ONNX source's --input sizes and int ranges), outputs, and
        the size each dynamic dim gets where one is fixed (localise.py re-runs conversions with them)."""
        model = onnx_fmt.load_proto(onnx_fmt.model_path(src.path))
        inputs, outputs = onnx_fmt.io_specs(model)
        given = {s.name: s for s in src.inputs}
        inputs = tuple(given[s.name] if s.name in given and given[s.name].shape is not None
                       and len(given[s.name].shape) == len(s.shape or ()) else s for s in inputs)
        return model, inputs, outputs, example_sizes(inputs, src.meta.get("example"))

    def fixed_shapes(self, src: Artifact) -> list[dict[str, list[Dim]]]:
        """Those of the fallbacks (``variants``), keyed by the ONNX model's input names."""
        if not any(s.is_dynamic for s in src.inputs) or self.onnx_to_tf == "own":
            return []  # nothing to fix (and no need to read the model); the lowering keeps dynamic dims
        model, inputs, _, sizes = self.prepare(src)
        if self.onnx_to_tf == "auto":
            from .lower import missing_ops

            if not missing_ops(model):
                return []  # the lowering will most likely do; a fallback's sizes are still run, later
        return [{n: list(v.shapes[n]) for n in v.fixed} for v in variants(inputs, sizes) if v.fixed]

    def run(self, src: Artifact, out_dir: Path) -> Artifact:
        os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # as onnx2tf sets it, should it be needed after TF
        for module in self.imports if self.onnx_to_tf == "onnx2tf" else OWN_IMPORTS:
            require(module)
        model, inputs, outputs, sizes = self.prepare(src)
        if not outputs:
            raise StageError(self.name, f"{src.label} has no outputs")
        reason = None
        if self.onnx_to_tf != "onnx2tf":
            from .own import convert_own

            own = convert_own(src, model, inputs, outputs, self.tfjs_layout)
            if own.result is not None and (not own.wrong or self.onnx_to_tf == "own"):
                if own.wrong:  # kept so that validation and localisation can measure it (exit 3)
                    own.result.notes[KNOWN_WRONG] = own.result.notes["lowering_check"]
                return _write(own.result, out_dir)
            if self.onnx_to_tf == "own":
                raise StageError(self.name, f"the own lowering cannot convert the model: {own.reason}",
                                 hint="use --onnx-to-tf auto to fall back to onnx2tf")
            reason = own.reason
        result = self._onnx2tf(src, model, inputs, outputs, sizes, reason)
        if reason:
            result.notes["converter"] = f"{result.notes['converter']} (fallback: {reason})"[:700]
            result.notes["lowering_fallback_reason"] = reason
        return _write(result, out_dir)

    def _onnx2tf(self, src: Artifact, model: Any, inputs: tuple[TensorSpec, ...], outputs: tuple[TensorSpec, ...],
                 sizes: Mapping[str, int], reason: str | None) -> _Result:
        """onnx2tf's attempts, from the model's own shapes to fully static ones; the first right one."""
        onnx, tf = require("onnx"), require("tensorflow")
        require("onnx2tf")
        try:
            prep.check_ops(model, self.name)
        except StageError as exc:  # neither converter has the op(s)
            raise StageError(self.name, exc.message + (f"; and the own {reason}" if reason else ""),
                             hint=exc.hint) from None
        ladder = variants(inputs, sizes)
        tried: list[str] = []
        fallback: tuple[float, _Result] | None = None  # the least wrong attempt, if none is right
        result: _Result | None = None
        with tempfile.TemporaryDirectory(prefix="convertkit-onnx2tf-") as tmp:
            for i, variant in enumerate(ladder):
                work = Path(tmp) / f"attempt{i}"
                work.mkdir()
                try:
                    attempt = self._convert(onnx, tf, model, variant, inputs, outputs, sizes, work)
                except _Failed as exc:
                    tried.append(f"{variant.label}: {exc}")
                    if i == len(ladder) - 1 and fallback is None:
                        raise StageError(self.name, f"onnx2tf could not convert the model: {exc}"
                                         + (f" (and the own {reason})" if reason else ""),
                                         hint=_failure_hint(tried)) from None
                    continue
                check = self_check(src.with_(inputs=inputs, outputs=outputs), attempt, variant)
                attempt.notes["onnx2tf_check"] = check.summary()
                if check:
                    result = attempt
                    break
                tried.append(f"{variant.label}: converted, but {check.summary()}")
                if fallback is None or worst(check) < fallback[0]:
                    fallback = (worst(check), attempt)
        if result is None:  # converted, but wrong: kept so that validation and localisation can measure it (exit 3)
            assert fallback is not None
            result = fallback[1]
            result.notes["warning"] = ("onnx2tf's TensorFlow model does not compute what the ONNX model does "
                                       "(checked against onnxruntime on seeded samples); see onnx2tf_attempts")
            result.notes[KNOWN_WRONG] = result.notes.get("onnx2tf_check", "differs from the ONNX model")
        if tried:
            result.notes["onnx2tf_attempts"] = tried
        return result

    def _convert(self, onnx: Any, tf: Any, model: Any, variant: Variant, inputs: Sequence[TensorSpec],
                 outputs: Sequence[TensorSpec], sizes: Mapping[str, int], work: Path) -> _Result:
        onnx2tf = require("onnx2tf")
        notes: dict[str, Any] = {"converter": f"onnx2tf {_version('onnx2tf')}", "shapes": variant.label}
        copy, simplified = prep.simplify(onnx, prep.fix_dims(onnx, model, variant.shapes))
        folded = fold_shape_arithmetic(onnx, copy, inputs, variant.shapes)
        pinned = prep.pin_axis0_transposes(onnx, copy)
        names = prep.rename_inputs(copy)
        path = work / "model.onnx"
        onnx.save(copy, str(path), save_as_external_data=copy.ByteSize() > EXTERNAL_DATA_BYTES)
        data = prep.sample_data(inputs, variant.shapes, names, sizes, work)
        keep_first = [n for s, n in zip(inputs, names)
                      if len(variant.shapes[s.name]) in (3, 4, 5)
                      and (self.tfjs_layout == "source" or len(variant.shapes[s.name]) == 3)]
        log = io.StringIO()
        try:
            with quiet(*_LOGGERS), prep.offline(onnx2tf), contextlib.redirect_stdout(log):
                require("tf_keras").backend.clear_session()  # layer names restart: same model, same graph
                keras_model = onnx2tf.convert(
                    input_onnx_file_path=str(path), output_folder_path=str(work / "tf"), disable_model_save=True,
                    non_verbose=True, verbosity="error", not_use_onnxsim=True, custom_input_op_name_np_data_path=data,
                    keep_ncw_or_nchw_or_ncdhw_input_names=keep_first or None,
                    onnxruntime_output_memmap_dir=str(work / "ort_memmap"))  # big models: not in /tmp at exit
        except BaseException as exc:  # onnx2tf raises anything, and calls sys.exit(1) on some errors
            if isinstance(exc, KeyboardInterrupt):
                raise
            logger.debug("onnx2tf (%s) failed; its output:\n%s", variant.label, log.getvalue())
            raise _Failed(_describe_failure(exc, log.getvalue(), copy)) from None
        if keras_model is None:
            raise _Failed(_describe_failure(None, log.getvalue(), copy))
        if simplified:
            notes["simplified"] = simplified
        rewrites = {}
        if pinned:
            rewrites["Transpose moving axis 0 -> Unsqueeze/Transpose/Squeeze (onnx2tf guesses those)"] = pinned
        rewrites.update(folded)
        if rewrites:
            notes["rewrites"] = rewrites
        try:
            return freeze(tf, keras_model, inputs, outputs, variant, self.tfjs_layout, notes)
        finally:  # the frozen graph holds the weights now
            del keras_model
            require("tf_keras").backend.clear_session()
            gc.collect()


def _write(result: _Result, out_dir: Path) -> Artifact:
    path = out_dir / FILENAME
    path.write_bytes(result.graph_def.SerializeToString(deterministic=True))
    meta = {"kind": "frozen_graph", "signature": None, **result.notes}
    return Artifact(FORMAT, path, result.inputs, result.outputs, meta=meta, obj=result.graph_def)


@dataclass(frozen=True)
class Variant:
    """One way to hand the model to onnx2tf: each input's dims (ints fixed, names dynamic)."""

    label: str
    shapes: Mapping[str, tuple[Dim, ...]]
    fixed: Mapping[str, list[int]] = field(default_factory=dict)  # inputs whose dynamic dims were fixed


@dataclass
class _Result:
    graph_def: Any
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    notes: dict[str, Any]
    fn: Any  # the frozen concrete function, for the self-check
    input_perms: dict[str, tuple[int, ...]]


class _Failed(Exception):
    pass


def example_sizes(inputs: Sequence[TensorSpec], example: Mapping[str, Any] | None) -> dict[str, int]:
    """The size each dynamic dim name gets when it has to be fixed: the export example's (what
    the validation's first sample has), else the seeded feeds' first sample's."""
    from ...parity.inputs import DYNAMIC_SIZES, dynamic_names

    sizes = {n: DYNAMIC_SIZES[0] + 2 * k for k, n in enumerate(dynamic_names(inputs))}
    for s in inputs:
        arr = (example or {}).get(s.name)
        if arr is not None and s.shape is not None and len(arr.shape) == len(s.shape):
            sizes.update({d: int(n) for d, n in zip(s.shape, arr.shape) if isinstance(d, str)})
    return sizes


def variants(inputs: Sequence[TensorSpec], sizes: Mapping[str, int]) -> list[Variant]:
    """The model's own shapes; then a dynamic batch (axis 0) with other dynamic dims fixed; then all static."""
    def shaped(keep: Any) -> tuple[dict[str, tuple[Dim, ...]], dict[str, list[int]]]:
        shapes, fixed = {}, {}
        for s in inputs:
            dims = tuple(s.shape or ())
            new = tuple(d if isinstance(d, int) or keep(i) else sizes.get(str(d), 1) for i, d in enumerate(dims))
            shapes[s.name] = new
            if new != dims:
                fixed[s.name] = [d if isinstance(d, int) else None for d in new]
        return shapes, fixed

    out = [Variant("as the model declares them", *shaped(lambda i: True))]
    batch_only = shaped(lambda i: i == 0)
    if batch_only[0] != out[0].shapes and any(not isinstance(v[0], int) for v in batch_only[0].values() if v):
        out.append(Variant("dynamic batch, other dims fixed", *batch_only))
    static = shaped(lambda i: False)
    if static[0] != out[-1].shapes:
        out.append(Variant("static", *static))
    return out


def freeze(tf: Any, keras_model: Any, inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec],
           variant: Variant, layout: str, notes: dict[str, Any]) -> _Result:
    """The tf_keras model as one frozen concrete function: inputs named as in ONNX (in the layout
    chosen), outputs named as in ONNX and transposed back to the ONNX layout where onnx2tf left
    them channels-last."""
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    from ...parity.validate import shapes_text
    from ..tfjs.graph import safe_name

    k_inputs, k_outputs = list(keras_model.inputs), list(keras_model.outputs)
    if len(k_inputs) != len(inputs) or len(k_outputs) != len(outputs):
        raise _Failed(f"onnx2tf's model has {len(k_inputs)} inputs / {len(k_outputs)} outputs; the ONNX model "
                      f"{len(inputs)} / {len(outputs)}")
    taken: set[str] = set()
    sig, specs, perms, layouts = _input_signature(tf, inputs, k_inputs, variant, taken)
    flags = list((getattr(keras_model, "onnx_output_layouts", None) or {}).values())  # ONNX output order
    out_perms = []
    for o, k, nhwc in zip(outputs, k_outputs, flags if len(flags) == len(outputs) else [None] * len(outputs)):
        rank = len(o.shape) if o.shape is not None else k.shape.rank
        out_perms.append(_to_channels_first(rank) if nhwc and rank and rank >= 3 else None)
    out_names = [safe_name(o.name, taken) for o in outputs]

    def fn(*args: Any) -> list[Any]:
        res = keras_model(list(args) if len(args) > 1 else args[0], training=False)
        res = list(res) if isinstance(res, (list, tuple)) else [res]
        return [tf.identity(tf.transpose(r, p) if p else r) for r, p in zip(res, out_perms)]

    try:
        with quiet(*_LOGGERS):
            concrete = tf.function(fn, input_signature=sig, autograph=False).get_concrete_function()
            # control flow stays functional (While): lowered v1 loops cannot be inlined when the graph is traced again
            frozen = convert_variables_to_constants_v2(concrete, lower_control_flow=False, aggressive_inlining=True)
    except Exception as exc:
        raise _Failed(f"could not freeze onnx2tf's model: {_first_line(exc)}") from None
    graph_def = frozen.graph.as_graph_def()
    in_tensors = [t.name.split(":")[0] for t in frozen.inputs if t.dtype != tf.resource]
    out_tensors = [t.name for t in frozen.outputs]
    if in_tensors != [s.name for s in specs]:
        raise _Failed(f"the frozen graph's inputs are {in_tensors}, expected {[s.name for s in specs]}")
    rename_outputs(graph_def, out_tensors, out_names)
    out_specs = tuple(TensorSpec(n, o.shape, o.dtype) for n, o in zip(out_names, outputs))
    if layouts:
        notes["input_layout"] = layouts
    if variant.fixed:
        names = dict(zip((s.name for s in inputs), (s.name for s in specs)))
        notes["fixed_shape"] = {names[n]: list(variant.shapes[n]) for n in variant.fixed}
        notes["shape_note"] = ("onnx2tf does not convert this model correctly with its dynamic dims (see "
                               "onnx2tf_attempts): the TensorFlow and TF.js models take fixed shapes "
                               + shapes_text(notes["fixed_shape"]) + "; choose the sizes with --input NAME:DIMS")
    return _Result(graph_def, tuple(specs), out_specs, notes, frozen, perms)


def _input_signature(tf: Any, inputs: Sequence[TensorSpec], k_inputs: Sequence[Any], variant: Variant,
                     taken: set[str]) -> tuple[list[Any], list[TensorSpec], dict[str, tuple[int, ...]], dict[str, Any]]:
    """The traced function's input signature (as in ONNX where onnx2tf kept the layout, else its own),
    the specs of the inputs, and their permutations and layouts where onnx2tf moved the channels."""
    from ..tfjs.graph import safe_name

    sig, specs, perms, layouts = [], [], {}, {}
    for s, k in zip(inputs, k_inputs):
        want = variant.shapes[s.name]
        got = tuple(k.shape.as_list())
        perm = _perm_between(want, got)
        if perm is None:
            raise _Failed(f"onnx2tf changed input '{s.name}' from {list(want)} to {list(got)}")
        name = safe_name(s.name, taken)
        sig.append(tf.TensorSpec([d if isinstance(d, int) else None for d in want] if perm == _identity(want)
                                 else got, k.dtype, name=name))
        layout_name = None
        if perm != _identity(want):
            perms[name] = perm
            first, last = _LAYOUT_NAMES.get(len(want), ("source", "channels-last"))
            layout_name = last
            layouts[name] = {"layout": last, "source_layout": first, "perm": list(perm)}
        specs.append(TensorSpec(name, tuple(want[p] for p in perm), tf.as_dtype(k.dtype).name, layout_name))
    return sig, specs, perms, layouts


def _identity(shape: Sequence[Any]) -> tuple[int, ...]:
    return tuple(range(len(shape)))


def _to_channels_first(rank: int) -> tuple[int, ...]:
    return (0, rank - 1, *range(1, rank - 1))


def _perm_between(want: Sequence[Dim], got: Sequence[int | None]) -> tuple[int, ...] | None:
    """How onnx2tf laid the input out: identity, or channels-last (got = want transposed)."""
    def same(a: Dim, b: int | None) -> bool:
        return (a == b) if isinstance(a, int) else b is None

    if len(want) != len(got):
        return None
    for perm in (_identity(want), CHANNELS_LAST.get(len(want)), (0, 2, 1) if len(want) == 3 else None):
        if perm is not None and all(same(want[p], g) for p, g in zip(perm, got)):
            return tuple(perm)
    return None


def _version(dist: str) -> str:
    from ...deps import version

    return version(dist) or "?"
