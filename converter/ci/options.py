"""The options a pipeline file may set in ``[defaults]`` and in each ``[[model]]``: their types,
choices and meaning, checked before any work, and how they map to ``converter.api.export``
(as ``convertkit export`` maps its command-line options). Stdlib only."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Field:
    """One option: ``kind`` is the TOML type (str, int, float, bool, list = a list of strings,
    dict = the passes table); ``path``: a file relative to the pipeline file."""

    kind: type
    help: str
    choices: tuple[str, ...] = ()
    path: bool = False
    low: float | None = None  # numbers: the smallest value allowed
    high: float | None = None
    artifact: bool = True  # part of what makes the artifact (the cache key); timeout is not


FIELDS: dict[str, Field] = {
    "targets": Field(list, "formats to make, one artifact each: onnx, tf, tfjs [default: onnx]"),
    "passes": Field(dict, "passes per target ([model.passes] onnx = [\"quantize\"]), or a list for every target"),
    "inputs": Field(list, "--input specs, e.g. [\"x:batch,3,224,224\"]"),
    "sample_data": Field(str, "--inputs: real sample data, an .npz with one array per input", path=True),
    "weights": Field(str, "--weights: a state dict for a package.module:callable source", path=True),
    "calibration": Field(str, "--calibration: data for quantize:mode=static", path=True),
    "trust_code": Field(bool, "--trust-code"),
    "signature": Field(str, "--signature of a TF SavedModel"),
    "task": Field(str, "--task of a Hugging Face model directory"),
    "output_names": Field(list, "--output-names"),
    "atol": Field(float, "--atol", low=0.0),
    "rtol": Field(float, "--rtol", low=0.0),
    "samples": Field(int, "--samples", low=1, high=100),
    "seed": Field(int, "--seed"),
    "samples_from": Field(str, "--samples-from", choices=("data", "random", "mixed")),
    "validate": Field(str, "final (default), each (--validate each) or none (--no-check)",
                      choices=("final", "each", "none")),
    "tfjs_backend": Field(str, "--tfjs-backend", choices=("wasm", "cpu")),
    "tfjs_format": Field(str, "--tfjs-format", choices=("graph", "layers")),
    "tfjs_layout": Field(str, "--tfjs-layout", choices=("nchw", "nhwc")),
    "onnx_to_tf": Field(str, "--onnx-to-tf", choices=("auto", "own", "onnx2tf")),
    "opset": Field(int, "--opset", low=7, high=30),
    "exporter": Field(str, "--exporter", choices=("auto", "dynamo", "torchscript")),
    "keep_intermediates": Field(bool, "--keep-intermediates"),
    "timeout": Field(float, "seconds one model x target may take before it is stopped (exit 3)", low=1.0,
                     artifact=False),
}
#: keys only a [[model]] has
MODEL_KEYS: dict[str, Field] = {
    "name": Field(str, "unique; names the output folder OUTDIR/NAME and the test case"),
    "source": Field(str, "anything `convertkit export` takes; a path is relative to the pipeline file"),
}


@dataclass(frozen=True)
class ExportOptions:
    """Every option a pipeline may set; None: not set here (the layer below, or convertkit's default)."""

    inputs: tuple[str, ...] | None = None
    sample_data: Path | None = None
    weights: Path | None = None
    calibration: Path | None = None
    trust_code: bool | None = None
    signature: str | None = None
    task: str | None = None
    output_names: tuple[str, ...] | None = None
    atol: float | None = None
    rtol: float | None = None
    samples: int | None = None
    seed: int | None = None
    samples_from: str | None = None
    validate: str | None = None
    tfjs_backend: str | None = None
    tfjs_format: str | None = None
    tfjs_layout: str | None = None
    onnx_to_tf: str | None = None
    opset: int | None = None
    exporter: str | None = None
    keep_intermediates: bool | None = None
    timeout: float | None = None

    def over(self, base: ExportOptions) -> ExportOptions:
        """These options where set, else ``base``'s."""
        return dataclasses.replace(base, **{k: v for k, v in self.set_items()})

    def set_items(self) -> list[tuple[str, Any]]:
        return [(f.name, getattr(self, f.name)) for f in dataclasses.fields(self) if getattr(self, f.name) is not None]

    def effective(self) -> dict[str, Any]:
        """The options with convertkit's defaults filled in (as `convertkit export` has them), so
        that writing a default down changes nothing (the cache key)."""
        defaults = {"samples": 3, "seed": 0, "validate": "final", "tfjs_backend": "wasm", "onnx_to_tf": "auto",
                    "exporter": "auto", "trust_code": False, "keep_intermediates": False}
        return {**defaults, **dict(self.set_items())}


def export_kwargs(opts: ExportOptions, target: str, passes: tuple[str, ...], out_dir: Path) -> dict[str, Any]:
    """``converter.api.export`` keyword arguments, as ``convertkit export`` (cli.export) builds them."""
    eff = opts.effective()
    kw: dict[str, Any] = dict(
        to=target, out_dir=str(out_dir), inputs=tuple(opts.inputs or ()),
        feeds=str(opts.sample_data) if opts.sample_data else None,
        weights=str(opts.weights) if opts.weights else None, trust_code=eff["trust_code"],
        signature=opts.signature, task=opts.task, output_names=tuple(opts.output_names or ()),
        check=eff["validate"] != "none", validate_each=eff["validate"] == "each", atol=opts.atol, rtol=opts.rtol,
        samples=eff["samples"], seed=eff["seed"], samples_from=opts.samples_from, opset=opts.opset,
        exporter=eff["exporter"], onnx_to_tf=eff["onnx_to_tf"], keep_intermediates=eff["keep_intermediates"],
        passes=passes, calibration=str(opts.calibration) if opts.calibration and is_static(passes) else None,
        runner_options={"backend": eff["tfjs_backend"]})
    if opts.tfjs_format is not None:
        kw["tfjs_format"] = opts.tfjs_format
    if opts.tfjs_layout is not None:  # the stage's option: "source" (NCHW for a PyTorch model) or "nhwc"
        kw["tfjs_layout"] = "source" if opts.tfjs_layout == "nchw" else opts.tfjs_layout
    return kw


def is_static(passes: tuple[str, ...]) -> bool:
    """Whether a pass is a static quantization (what calibration data is for; a [defaults]
    calibration reaches only the models that quantize statically)."""
    return any(p.replace(" ", "").startswith("quantize") and "mode=static" in p for p in passes)


def stage_options(opts: ExportOptions) -> dict[str, Any]:
    """What converter.plan takes of the options (for --dry-run and the pre-check)."""
    kw = export_kwargs(opts, "", (), Path("."))
    keys = ("opset", "exporter", "onnx_to_tf", "tfjs_format", "tfjs_layout")
    return {k: kw[k] for k in keys if k in kw}


def check_value(key: str, fld: Field, value: Any) -> str | None:
    """Why ``value`` does not fit ``fld`` (a message), or None."""
    kind = fld.kind
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if kind is list:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            return f"must be a list of strings, not {_type_name(value)}"
        return None
    if kind is dict:
        return None  # the passes table has its own checks
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        return f"must be {_article(kind)}, not {_type_name(value)}"
    if fld.choices and value not in fld.choices:
        return f"'{value}' is not one of {', '.join(fld.choices)}"
    if fld.low is not None and value < fld.low or fld.high is not None and value > fld.high:
        bound = f">= {fld.low:g}" if fld.high is None else f"between {fld.low:g} and {fld.high:g}"
        return f"{value!r} is out of range (must be {bound})"
    return None


def coerce(key: str, value: Any) -> Any:
    """A checked TOML value as the ExportOptions field holds it (paths are resolved by the caller)."""
    kind = (FIELDS.get(key) or MODEL_KEYS[key]).kind
    if kind is list:
        return tuple([value] if isinstance(value, str) else value)
    if kind is float:
        return float(value)
    return value


def _article(kind: type) -> str:
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false"}.get(kind, kind.__name__)


def _type_name(value: Any) -> str:
    names = {str: "a string", bool: "a boolean", int: "an integer", float: "a number", list: "a list", dict: "a table"}
    return names.get(type(value), type(value).__name__)
