"""Core types: formats, artifacts, tensor specs, tolerances, stages, runners, pipelines.

Stdlib only (numpy arrays pass through ``Runner.infer`` but are not needed here), so that
importing this module costs nothing.
"""

from __future__ import annotations

import dataclasses
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

Dim = int | str | None  # an int is static; a str names a dynamic dimension; None is unknown


@dataclass(frozen=True)
class Format:
    """A kind of model on disk (or in memory). Instances live in ``converter/formats/*``."""

    name: str
    description: str = ""

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[Dim, ...] | None  # None: rank unknown
    dtype: str  # numpy dtype name: float32, int64, bool, ...
    layout: str | None = None  # e.g. NCHW, when it matters to the user
    int_range: tuple[int, int] | None = None  # [low, high) for integer sample data

    @property
    def is_dynamic(self) -> bool:
        return self.shape is None or any(not isinstance(d, int) for d in self.shape)

    def shape_str(self) -> str:
        if self.shape is None:
            return "?"
        return "[" + ",".join("?" if d is None else str(d) for d in self.shape) + "]"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "shape": list(self.shape) if self.shape is not None else None,
                               "dtype": self.dtype}
        if self.layout:
            out["layout"] = self.layout
        if self.int_range:
            out["int_range"] = list(self.int_range)
        return out


@dataclass(frozen=True)
class Artifact:
    """A model: immutable once created. ``path`` is never modified after the stage that wrote it."""

    format: Format
    path: Path | None
    inputs: tuple[TensorSpec, ...] = ()
    outputs: tuple[TensorSpec, ...] = ()
    meta: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)
    obj: Any = field(default=None, compare=False, hash=False, repr=False)  # in-memory model, if any

    def with_(self, **changes: Any) -> Artifact:
        return dataclasses.replace(self, **changes)

    @property
    def label(self) -> str:
        return str(self.path) if self.path is not None else f"<in-memory {self.format.name} model>"

    def size_bytes(self) -> int | None:
        if self.path is None or not self.path.exists():
            return None
        return sum(p.stat().st_size for p in model_files(self.path))


#: what convertkit writes beside a model in its folder, which is not the model (nor counted in its size)
COMPANIONS = frozenset({"report.json", "model.js", "model.d.ts"})


def model_files(path: Path) -> list[Path]:
    """The files of the model at ``path``: the file itself, or every file of its folder but the
    report, the generated JS module and kept intermediates (an `optimize` of a convertkit output
    sizes the model, not what was written beside it)."""
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*") if p.is_file() and p.name not in COMPANIONS
                  and "intermediates" not in p.relative_to(path).parts[:-1])


@dataclass(frozen=True)
class Tolerance:
    """How far a result may be from the reference. Elementwise: |got-ref| <= atol + rtol*|ref|."""

    atol: float = 1e-4
    rtol: float = 1e-3
    min_cosine: float | None = None  # if set, each output's cosine similarity must reach it
    min_top1: float | None = None  # if set, classifier-like outputs must agree this often
    #: output dtype changes a stage makes on purpose (fp16 with keep_io_types=false: float32 -> float16)
    dtype_changes: tuple[tuple[str, str], ...] = ()

    def loosened_by(self, other: Tolerance) -> Tolerance:
        """The tolerance after a stage that may add ``other``'s error."""

        def _min(a: float | None, b: float | None) -> float | None:
            vals = [v for v in (a, b) if v is not None]
            return min(vals) if vals else None

        return Tolerance(max(self.atol, other.atol), max(self.rtol, other.rtol),
                         _min(self.min_cosine, other.min_cosine), _min(self.min_top1, other.min_top1),
                         tuple(dict.fromkeys(self.dtype_changes + other.dtype_changes)))

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


FP32 = Tolerance()

#: artifact meta key a stage sets when its own check found its result wrong (a fallback kept so that
#: validation and localisation can measure it); the run then stops with exit 3, nothing written
KNOWN_WRONG = "known_wrong"
#: artifact meta key: {ONNX node name: where it comes from in the source model}. In memory only, for
#: error messages: meta keys that start with "_" stay out of the report (a BERT has thousands of nodes)
SOURCE_MAP = "_source_map"
#: source artifact meta key: {name: what it is} for tensors the model computes unless they are fed,
#: which ``--input`` may name besides (or instead of) its inputs: a frozen TF graph's
#: PlaceholderWithDefault nodes (formats/tf/source.py). Unnamed, they are not inputs.
OPTIONAL_INPUTS = "optional_inputs"


def reported_meta(meta: Mapping[str, Any]) -> dict[str, Any]:
    """The part of an artifact's meta that goes into the report: keys starting with "_" stay in memory."""
    return {k: v for k, v in meta.items() if not k.startswith("_")}


def accumulated_tolerance(stages: Sequence[Stage]) -> Tolerance:
    """fp32 defaults, loosened by the error each stage declares it may add."""
    tol = FP32
    for s in stages:
        tol = tol.loosened_by(s.tolerance)
    return tol


class Stage(ABC):
    """Turns one artifact into a new one in a new directory. Concrete stages are frozen
    dataclasses whose fields are their configuration."""

    name: ClassVar[str]
    accepts: ClassVar[Format]
    produces: ClassVar[Format]
    tolerance: ClassVar[Tolerance] = FP32  # error this stage may add
    #: the heavy modules run() imports (through deps.require), in order: a caller may load them ahead
    #: of the stage, e.g. while another process runs the stage before it (isolate.py's overlap mode)
    imports: ClassVar[tuple[str, ...]] = ()

    @abstractmethod
    def run(self, src: Artifact, out_dir: Path) -> Artifact:
        """Write the result under ``out_dir`` (which exists and is empty) and describe it."""

    def fixed_shapes(self, src: Artifact) -> list[dict[str, list[Dim]]]:
        """The ``fixed_shape`` metas (input name -> dims; see parity.validate.FEED_META) that this
        stage may give its result of ``src`` where it cannot keep the dynamic dims: validation then
        runs the source on other samples too (fitted_feeds), which isolate.py runs ahead."""
        return []

    def config(self) -> dict[str, Any]:
        if dataclasses.is_dataclass(self):
            return {f.name: _jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}
        return {}

    def __str__(self) -> str:
        return self.name


class Export(Stage):
    """A stage that changes the format."""


class Pass(Stage):
    """A stage that keeps the format (quantize, fp16, prune, simplify).

    A pass may be handed a ``check``: a callable that runs an artifact against the ORIGINAL
    model (the pipeline's source) on the validation feeds and returns a ParityReport under the
    pass's tolerance. Passes that choose between variants (per-channel or not, which nodes to
    keep in higher precision) use it to keep the smallest variant that passes."""

    def run(self, src: Artifact, out_dir: Path, check: Any = None) -> Artifact:  # type: ignore[override]
        raise NotImplementedError


class Runner(ABC):
    """Executes an artifact in its real runtime. Use as a context manager: the heavy import and
    the model load happen in ``__enter__``."""

    def __init__(self, artifact: Artifact) -> None:
        self.artifact = artifact

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    @abstractmethod
    def infer(self, feeds: Mapping[str, Any]) -> dict[str, Any]:
        """Run once. ``feeds`` maps input names to numpy arrays; returns output name -> array."""

    @property
    def output_names(self) -> tuple[str, ...] | None:
        return tuple(o.name for o in self.artifact.outputs) or None


@dataclass
class StageRecord:
    """What one stage did, for the report."""

    stage: str
    config: dict[str, Any]
    seconds: float
    bytes_in: int | None
    bytes_out: int | None
    ops_in: dict[str, int] | None = None
    ops_out: dict[str, int] | None = None
    notes: dict[str, Any] = field(default_factory=dict)
    path: str | None = None
    gzip_bytes_in: int | None = None  # what a web server actually sends (passes only)
    gzip_bytes_out: int | None = None
    latency_ms_in: float | None = None  # median runtime latency on the sample inputs (passes only)
    latency_ms_out: float | None = None
    parity: dict[str, Any] | None = None  # this stage's result against the original (passes, --validate each)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Pipeline:
    """A checked tuple of stages: each accepts what the one before produces."""

    stages: tuple[Stage, ...]

    def __post_init__(self) -> None:
        for a, b in zip(self.stages, self.stages[1:]):
            if b.accepts != a.produces:
                raise TypeError(f"pipeline does not chain: {a.name} produces {a.produces}, "
                                f"{b.name} accepts {b.accepts}")

    def __str__(self) -> str:
        return " -> ".join(s.name for s in self.stages) or "(nothing to do)"

    def __len__(self) -> int:
        return len(self.stages)


def _jsonable(v: Any) -> Any:
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    if isinstance(v, Path):
        return str(v)
    if isinstance(v, Mapping):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, Sequence):
        return [_jsonable(x) for x in v]
    return str(v)


def now() -> float:
    return time.perf_counter()
