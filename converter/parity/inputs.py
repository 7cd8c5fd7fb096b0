"""Example inputs: parse ``--input`` specs, make seeded feeds from specs, load/save ``.npz`` feeds.

A spec is ``NAME:DIMS[:DTYPE[:LOW..HIGH]]``: DIMS is comma-separated; a name instead of a number
marks a dynamic dimension (``x:batch,3,224,224``); DTYPE defaults to float32; ``LOW..HIGH`` is
the range of integer sample data, HIGH exclusive (``ids:1,16:int64:0..30522``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..core import Dim, TensorSpec
from ..errors import InputError, UsageError

DTYPES = ("float32", "float16", "float64", "int64", "int32", "int16", "int8", "uint8", "bool")
DEFAULT_INT_RANGE = (0, 10)
#: sizes given to dynamic dimensions, one tuple per sample set; the k-th distinct dynamic name
#: gets SIZES[i] + 2*k, so that batch and sequence differ. The first set is the export example.
DYNAMIC_SIZES = (2, 3, 1)
_NAME = re.compile(r"^[A-Za-z_][\w.\-/]*$")
_DIM = re.compile(r"^[A-Za-z_]\w*$")


def parse_input_spec(text: str) -> TensorSpec:
    """``x:batch,3,224,224`` -> TensorSpec. Raises UsageError with the expected syntax."""
    syntax = "expected NAME:DIMS[:DTYPE[:LOW..HIGH]], e.g. x:batch,3,224,224 or ids:1,16:int64:0..1000"
    parts = text.split(":")
    if len(parts) < 2 or len(parts) > 4 or not parts[0] or not _NAME.match(parts[0]):
        raise UsageError(f"--input '{text}' does not parse", hint=syntax)
    name, dims_txt = parts[0], parts[1]
    dims: list[Dim] = []
    for d in dims_txt.split(",") if dims_txt else []:
        d = d.strip()
        if d.isdigit() and int(d) > 0:
            dims.append(int(d))
        elif _DIM.match(d):
            dims.append(d)
        else:
            raise UsageError(f"--input '{text}': dimension '{d}' is neither a positive integer nor a name",
                             hint=syntax)
    dtype = parts[2] if len(parts) > 2 and parts[2] else "float32"
    if dtype not in DTYPES:
        raise UsageError(f"--input '{text}': unknown dtype '{dtype}'", hint=f"one of {', '.join(DTYPES)}")
    int_range = None
    if len(parts) == 4:
        m = re.fullmatch(r"(-?\d+)\.\.(-?\d+)", parts[3])
        if not m or int(m.group(1)) >= int(m.group(2)):
            raise UsageError(f"--input '{text}': range '{parts[3]}' does not parse",
                             hint="write LOW..HIGH with LOW < HIGH (HIGH exclusive), e.g. 0..1000")
        if not _is_int(dtype):
            raise UsageError(f"--input '{text}': a value range only applies to integer dtypes")
        int_range = (int(m.group(1)), int(m.group(2)))
    return TensorSpec(name, tuple(dims), dtype, int_range=int_range)


def _is_int(dtype: str) -> bool:
    return dtype.startswith(("int", "uint"))


def dynamic_names(specs: Iterable[TensorSpec]) -> list[str]:
    seen: list[str] = []
    for s in specs:
        for d in s.shape or ():
            if isinstance(d, str) and d not in seen:
                seen.append(d)
    return seen


def concrete_shape(spec: TensorSpec, sizes: Mapping[str, int]) -> tuple[int, ...]:
    if spec.shape is None:
        raise UsageError(f"input '{spec.name}' has unknown rank", hint="give its shape with --input NAME:DIMS")
    # a negative int is an unknown dim some exporters write as -1: sized like an unnamed one
    return tuple(d if isinstance(d, int) and d >= 0 else sizes.get(d, 1) if isinstance(d, str) else 1
                 for d in spec.shape)


def make_feeds(specs: Sequence[TensorSpec], *, samples: int = 3, seed: int = 0,
               sizes: Sequence[Mapping[str, int]] = ()) -> list[dict]:
    """Seeded random feeds. Sample i gives dynamic dims the i-th entry of DYNAMIC_SIZES, so with
    dynamic dimensions at least two sizes are exercised; ``sizes[i % len(sizes)]`` overrides that
    for the names it gives (parity.sizes: sizes the model accepts)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    names = dynamic_names(specs)
    out = []
    for i in range(samples):
        base = DYNAMIC_SIZES[i % len(DYNAMIC_SIZES)]
        chosen = {n: base + 2 * k for k, n in enumerate(names)}
        sizes_i = {**chosen, **(sizes[i % len(sizes)] if sizes else {})}
        feeds = {}
        for s in specs:
            shape = concrete_shape(s, sizes_i)
            _check_makeable(s, shape)
            if s.dtype == "bool":
                feeds[s.name] = rng.integers(0, 2, size=shape).astype(bool)
            elif _is_int(s.dtype) and is_padding_mask(s):
                feeds[s.name] = _padding_mask(rng, shape).astype(s.dtype)
            elif _is_int(s.dtype) or s.int_range:  # a float input with a range is cast to indices in the model
                lo, hi = s.int_range or DEFAULT_INT_RANGE
                feeds[s.name] = rng.integers(lo, hi, size=shape).astype(s.dtype)
            else:
                feeds[s.name] = rng.standard_normal(shape).astype(s.dtype)
        out.append(feeds)
    return out


#: the most elements one generated sample of one input may have (a float32 array of 1 GiB)
MAX_ELEMENTS = 1 << 28


def _check_makeable(spec: TensorSpec, shape: tuple[int, ...]) -> None:
    """A dtype numpy cannot make (string, bfloat16, an ONNX sequence) or a size no machine holds is
    the user's to give as data, not a crash in numpy."""
    import math

    if spec.dtype not in DTYPES and not _is_int(spec.dtype):
        raise UsageError(f"input '{spec.name}' is of type {spec.dtype}, for which convertkit cannot make samples",
                         hint="give real data for it with --inputs FEEDS.npz")
    if math.prod(shape) > MAX_ELEMENTS:
        raise UsageError(f"input '{spec.name}' of shape {list(shape)} is too large to sample "
                         f"({math.prod(shape):,} elements)", hint="give smaller sizes with --input NAME:DIMS, "
                         "or real data with --inputs FEEDS.npz")


def is_padding_mask(spec: TensorSpec) -> bool:
    """An integer input named ``attention_mask`` (the transformers convention) sampled in 0..2."""
    return spec.name.split("/")[-1].endswith("attention_mask") and tuple(spec.int_range or ()) == (0, 2)


def _padding_mask(rng: Any, shape: tuple[int, ...]) -> Any:
    """Rows of ones then zeros along the last axis, each with at least one token, the first row
    padded whenever it can be: what tokenizers produce. Random 0/1 would mask whole rows, which no
    real batch has and whose softmax over nothing is undefined (NaN in fp16); all ones would hide a
    mask applied along the wrong axis."""
    import numpy as np

    if not shape or shape[-1] == 0:
        return np.ones(shape, dtype=np.int64)
    n = shape[-1]
    lengths = rng.integers(1, n + 1, size=shape[:-1])
    if lengths.size and n > 1:
        lengths.flat[0] = rng.integers(1, n)  # padding in every sample
    return (np.arange(n) < lengths[..., None]).astype(np.int64)


def load_feeds(path: str | Path) -> dict:
    """Read a ``.npz`` of arrays keyed by input name."""
    import numpy as np

    p = Path(path)
    if not p.is_file():
        raise InputError(f"feeds file {p} does not exist", hint="give an .npz with one array per input name")
    try:
        with np.load(p, allow_pickle=False) as data:
            feeds = {k: data[k] for k in data.files}
    except Exception as exc:  # numpy raises many kinds for a bad file
        raise InputError(f"feeds file {p} is not a readable .npz ({type(exc).__name__}: {exc})",
                         hint="save it with numpy.savez(path, name=array, ...)") from exc
    if not feeds:
        raise InputError(f"feeds file {p} holds no arrays", hint="save one array per input name")
    return feeds


def specs_from_feeds(feeds: Mapping[str, object]) -> tuple[TensorSpec, ...]:
    return tuple(TensorSpec(k, tuple(v.shape), str(v.dtype)) for k, v in feeds.items())  # type: ignore[attr-defined]


def check_feeds(feeds: Mapping[str, object], specs: Sequence[TensorSpec], where: str) -> None:
    """Feeds must name exactly the model's inputs, with a fitting rank."""
    want = [s.name for s in specs]
    missing = [n for n in want if n not in feeds]
    extra = [n for n in feeds if n not in want]
    if missing or extra:
        raise InputError(f"feeds from {where} do not match the model's inputs "
                         f"(missing: {', '.join(missing) or '-'}; unexpected: {', '.join(extra) or '-'})",
                         hint=f"the model takes: {', '.join(want)}")
    for s in specs:
        arr = feeds[s.name]
        if s.shape is not None and len(arr.shape) != len(s.shape):  # type: ignore[attr-defined]
            raise InputError(f"feed '{s.name}' from {where} has rank {len(arr.shape)}, the model expects "  # type: ignore[attr-defined]
                             f"{s.shape_str()}")
        for d, n in zip(s.shape or (), arr.shape):  # type: ignore[attr-defined]
            if isinstance(d, int) and d != n:
                raise InputError(f"feed '{s.name}' from {where} has shape {tuple(arr.shape)}, "  # type: ignore[attr-defined]
                                 f"the model expects {s.shape_str()}")
