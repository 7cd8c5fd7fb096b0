"""Sizes for dynamic dims that the model accepts.

Without data, convertkit picks the sizes of dynamic dims itself (``inputs.DYNAMIC_SIZES``: 2, 3,
1, ...). A detector that wants H and W as multiples of 32, or a head with anchors for 320x320, fails
at those. So, for the spatial dims of image-like inputs (axes 2.. of a 3- to 5-D input, NCHW;
axes 1..-2 for the channels-last formats: Keras, TF, TF.js), plans are tried in this order:

1. the sizes in the model's own metadata (ONNX ``metadata_props`` such as ``imgsz`` = ``[320, 320]``,
   as Ultralytics writes it; ``image_size``, ``input_size``, ``img_size``);
2. multiples of the graph's total stride (the largest product of Conv / pooling strides along any
   path: 32 for a 5-stage backbone): ``stride * (2, 3, 1)[sample] + stride * k`` for the k-th name;
3. the small default sizes.

The first plan the source runs on all samples is used, and the report says which. When none works,
exit 2 names the inputs and dims to give with ``--input`` and shows the runtime's error. The total
stride is read from ONNX, Keras and TF.js graphs (parity.strides); other sources (a SavedModel, a
PyTorch module before export) try the small sizes, and say the same when they fail.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..core import Artifact, TensorSpec
from . import strides
from .inputs import DYNAMIC_SIZES

_META_KEYS = ("imgsz", "image_size", "img_size", "input_size", "imagesize")


@dataclass(frozen=True)
class SizePlan:
    """Sizes for dynamic dim names, one mapping per sample set (cycled), and what they are."""

    label: str
    sizes: tuple[Mapping[str, int], ...] = field(default=())
    hint_size: int = 32  # a size worth suggesting for --input when no plan works

    def for_sample(self, i: int) -> Mapping[str, int]:
        return self.sizes[i % len(self.sizes)] if self.sizes else {}


#: formats whose image inputs are channels-last (NHWC): spatial dims are axes 1..-2, not 2..
CHANNELS_LAST = frozenset({"keras", "tf", "tfjs"})


def spatial_names(specs: Sequence[TensorSpec], fmt: str = "onnx") -> list[str]:
    """Dynamic dim names on the spatial axes of 3- to 5-D inputs (2.. for NCHW; 1..-2 for a
    channels-last format)."""
    names: list[str] = []
    for s in specs:
        if s.shape is not None and 3 <= len(s.shape) <= 5:
            for d in (s.shape[1:-1] if fmt in CHANNELS_LAST else s.shape[2:]):
                if isinstance(d, str) and d not in names:
                    names.append(d)
    return names


def plans(src: Artifact, specs: Sequence[TensorSpec]) -> list[SizePlan]:
    """The plans to try, best first; the last is always the small default sizes."""
    default = SizePlan("the small default sizes")
    spatial = spatial_names(specs, src.format.name)
    if not spatial:
        return [default]
    try:
        meta, stride = _read(src)
    except Exception:  # a model this cannot read: the default sizes, and the runtime says the rest
        return [default]
    out = []
    if meta:
        sizes = {n: meta[min(i, len(meta) - 1)] for i, n in enumerate(spatial[-2:])}
        out.append(SizePlan(f"the sizes in the model's metadata ({', '.join(f'{k}={v}' for k, v in sizes.items())})",
                            (sizes,), meta[0]))
    if stride > 1:
        per_sample = tuple({n: stride * (base + k) for k, n in enumerate(spatial)} for base in DYNAMIC_SIZES)
        out.append(SizePlan(f"multiples of {stride}, the total stride of the graph's Conv/pooling nodes "
                            f"({', '.join(spatial)})", per_sample, stride * 10))
    return [*out, default]


def _read(src: Artifact) -> tuple[list[int], int]:
    """The sizes in the model's metadata and its total stride (parity.strides), per format."""
    fmt = src.format.name
    if fmt == "onnx" and src.path is not None:
        from ..formats.onnx import load_proto, model_path

        model = load_proto(model_path(src.path), weights=False)
        return metadata_size(model), strides.onnx_stride(model)
    if fmt == "keras" and src.obj is not None:
        return [], strides.keras_stride(src.obj.get_config())
    if fmt == "tfjs" and src.path is not None:
        from ..formats.tfjs import model_dir, read_model_json

        topology = read_model_json(model_dir(src.path)).get("modelTopology") or {}
        if "node" in topology:
            return [], strides.tfjs_graph_stride(topology["node"])
        return [], strides.keras_stride(topology.get("model_config", topology))
    return [], 1


def metadata_size(model: Any) -> list[int]:
    for prop in model.metadata_props:
        if prop.key.lower() in _META_KEYS:
            nums = [int(n) for n in re.findall(r"\d+", prop.value) if int(n) > 0]
            if nums:
                return nums[-2:]
    return []


def example_input(specs: Sequence[TensorSpec], names: Sequence[str], plan_list: Sequence[SizePlan]) -> str:
    """``--input x:1,3,320,320``: the inputs that carry dynamic ``names``, those dims filled with a
    size worth trying (the metadata's, else ten times the total stride) and axis 0 with 1."""
    guess = plan_list[0].hint_size if plan_list else 32
    parts = []
    for s in specs:
        if s.shape is None or not any(isinstance(d, str) and d in names for d in s.shape):
            continue
        dims = [str(d) if isinstance(d, int) else ("1" if i == 0 else str(guess)) for i, d in enumerate(s.shape)]
        parts.append(f"--input {s.name}:{','.join(dims)}" + (f":{s.dtype}" if s.dtype != "float32" else ""))
    return " ".join(parts)
