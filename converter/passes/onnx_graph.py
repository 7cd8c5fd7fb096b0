"""Helpers shared by the ONNX passes (quantize, fp16, prune): graph look-ups, the feeds a pass
measures with, a load test in a child process, intermediate activations, and candidate bookkeeping.

Why a child process for the load test: a converter can write a model that does not merely fail to
load but crashes onnxruntime (seen here: ``onnxconverter_common.float16`` on an attention block
segfaulted ORT 1.23 at session creation). A pass must never ship such a model, and must not die
finding out, so every candidate is first opened and run in a child with ORT's default graph
optimizations; only a candidate that survived that is run in this process.

onnx, numpy and onnxruntime are imported inside the functions (see converter/deps.py).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from ..core import Artifact, Tolerance
from ..deps import require
from ..formats import onnx as onnx_fmt

FP16_MAX = 65504.0
WEIGHT_OPS = {"Conv": 1, "Gemm": 1, "MatMul": 1}  # op -> index of the weight input


# -- graph look-ups ---------------------------------------------------------------------------------


def load_model(src: Artifact) -> Any:
    return onnx_fmt.load_proto(onnx_fmt.model_path(src.path))


def name_nodes(model: Any) -> Any:
    """Give every node a unique name (the quantizers and converters address nodes by name)."""
    seen: set[str] = set()
    for i, node in enumerate(model.graph.node):
        if not node.name or node.name in seen:
            node.name = f"{node.op_type}_{i}"
        seen.add(node.name)
    return model


def initializers(graph: Any) -> dict[str, Any]:
    return {t.name: t for t in graph.initializer}


def consumers(graph: Any) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            if name:
                out.setdefault(name, []).append(node)
    return out


def producers(graph: Any) -> dict[str, Any]:
    return {o: node for node in graph.node for o in node.output if o}


def attr(node: Any, name: str, default: Any = None) -> Any:
    onnx = require("onnx")
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def strip_value_info(model: Any) -> Any:
    """Drop intermediate shape annotations: tools re-infer them, and stale ones (an exporter's, or
    ours after a rewrite) make onnx shape inference fail ("Inferred shape and existing shape differ")."""
    del model.graph.value_info[:]
    return model


def save(model: Any, path: Path) -> Path:
    onnx = require("onnx")
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def artifact_for(src: Artifact, path: Path, meta: Mapping[str, Any] | None = None) -> Artifact:
    """A candidate or result written by a pass: its I/O read back from the file (dtypes may change)."""
    model = onnx_fmt.load_proto(path, weights=False)
    inputs, outputs = onnx_fmt.io_specs(model)
    known = {s.name: s for s in src.inputs}
    inputs = tuple(dataclasses.replace(s, layout=known[s.name].layout, int_range=known[s.name].int_range)
                   if s.name in known else s for s in inputs)
    return Artifact(onnx_fmt.FORMAT, path, inputs, outputs, meta=dict(meta or {}))


# -- feeds ------------------------------------------------------------------------------------------


def pass_feeds(src: Artifact, check: Any, samples: int = 3) -> tuple[list[dict[str, Any]], str]:
    """The feeds a pass measures with: the Checker's validation feeds when the pipeline hands them
    over (``check.feeds``), else seeded random feeds from the model's input specs."""
    feeds = getattr(check, "feeds", None)
    if feeds:
        return [dict(f) for f in feeds], "the validation feeds"
    from ..parity.inputs import make_feeds

    return make_feeds(src.inputs, samples=samples, seed=0), "seeded random feeds from the input specs"


def load_calibration(path: str, src: Artifact) -> list[dict[str, Any]]:
    """An .npz of real inputs (one array per input name). A leading batch axis is split into
    samples when the model's batch dimension is dynamic, so any number of rows calibrates."""
    from ..parity.inputs import check_feeds, load_feeds

    feeds = load_feeds(path)
    check_feeds(feeds, src.inputs, path)
    sizes = {v.shape[0] for v in feeds.values() if getattr(v, "ndim", 0) > 0}
    dynamic_batch = all(s.shape and not isinstance(s.shape[0], int) for s in src.inputs)
    if dynamic_batch and len(sizes) == 1 and (n := sizes.pop()) > 1:
        return [{k: v[i:i + 1] for k, v in feeds.items()} for i in range(n)]
    return [feeds]


# -- running models ---------------------------------------------------------------------------------


def session(model_or_path: Any, *, optimize: bool = True) -> Any:
    ort = require("onnxruntime")
    opts = ort.SessionOptions()
    opts.log_severity_level = 4
    if not optimize:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    data = model_or_path.SerializeToString() if hasattr(model_or_path, "SerializeToString") else str(model_or_path)
    return ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])


#: onnxruntime input type -> numpy dtype, to cast feeds the way the ONNX runner does
NP_TYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
            "tensor(int64)": "int64", "tensor(int32)": "int32", "tensor(int8)": "int8", "tensor(uint8)": "uint8",
            "tensor(bool)": "bool", "tensor(int16)": "int16"}


def run(sess: Any, feeds: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    names = [o.name for o in sess.get_outputs()]
    types = {i.name: NP_TYPES.get(i.type) for i in sess.get_inputs()}
    out = []
    for f in feeds:
        cast = {k: v.astype(types[k]) if types.get(k) and v.dtype != types[k] else v for k, v in f.items()}
        out.append(dict(zip(names, sess.run(None, cast))))
    return out


_PROBE = r"""
import json, sys
import numpy as np
import onnxruntime as ort
paths, feeds_file, out_dir, np_types = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
with np.load(feeds_file) as data:
    n = int(data["__n__"])
    feeds = [{k.split("/", 1)[1]: data[k] for k in data.files if k.startswith(f"{i}/")} for i in range(n)]
for j, path in enumerate(paths):
    try:
        opts = ort.SessionOptions()
        opts.log_severity_level = 4
        sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        types = {i.name: np_types.get(i.type) for i in sess.get_inputs()}
        names = [o.name for o in sess.get_outputs()]
        arrays = {}
        for i, f in enumerate(feeds):
            f = {k: v.astype(types[k]) if types.get(k) and v.dtype != types[k] else v for k, v in f.items()}
            for name, value in zip(names, sess.run(None, f)):
                arrays[f"{i}/{name}"] = np.asarray(value)
        np.savez(f"{out_dir}/{j}.npz", **arrays)
        print(json.dumps({"i": j, "ok": True}), flush=True)
    except Exception as exc:
        print(json.dumps({"i": j, "ok": False, "error": " ".join(str(exc).split())[:300]}), flush=True)
"""


@dataclass
class Probe:
    """What happened when onnxruntime opened and ran a candidate in a child process."""

    ok: bool
    error: str | None = None
    outputs: list[dict[str, Any]] = field(default_factory=list)


def probe(paths: Sequence[Path], feeds: Sequence[Mapping[str, Any]], timeout: float = 300) -> list[Probe]:
    """Open each model with onnxruntime's default graph optimizations and run it on ``feeds`` in a
    child process. A crash (signal) is caught: the models not yet reported are retried one by one,
    so the one that crashed is named."""
    np = require("numpy")
    if not paths:
        return []
    tmp = Path(tempfile.mkdtemp(prefix="convertkit-probe-"))
    try:
        arrays = {f"{i}/{k}": v for i, f in enumerate(feeds) for k, v in f.items()}
        np.savez(tmp / "feeds.npz", __n__=np.array(len(feeds)), **arrays)
        results = _probe_batch([str(p) for p in paths], tmp, len(feeds), timeout)
        if any(r is None for r in results) and len(paths) > 1:
            for j, r in enumerate(results):
                if r is None:
                    results[j] = _probe_batch([str(paths[j])], tmp, len(feeds), timeout)[0]
        return [r if r is not None else Probe(False, "onnxruntime crashed opening or running it") for r in results]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _probe_batch(paths: list[str], tmp: Path, n: int, timeout: float) -> list[Probe | None]:
    np = require("numpy")
    out_dir = tmp / "out"
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir()
    try:
        proc = subprocess.run([sys.executable, "-c", _PROBE, json.dumps(paths), str(tmp / "feeds.npz"), str(out_dir),
                               json.dumps(NP_TYPES)],
                              capture_output=True, text=True, timeout=timeout)
        stdout, rc, timed_out = proc.stdout, proc.returncode, False
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout or ""
        stdout, rc, timed_out = out.decode() if isinstance(out, bytes) else out, 0, True
    results: list[Probe | None] = [None] * len(paths)
    for line in stdout.splitlines():
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if not msg["ok"]:
            results[msg["i"]] = Probe(False, msg["error"])
            continue
        with np.load(out_dir / f"{msg['i']}.npz") as data:
            outs: list[dict[str, Any]] = [{} for _ in range(n)]
            for key in data.files:
                i, name = key.split("/", 1)
                outs[int(i)][name] = data[key]
        results[msg["i"]] = Probe(True, outputs=outs)
    if len(paths) == 1 and results[0] is None:
        why = f"timed out after {timeout:g} s" if timed_out else f"crashed (signal {-rc})" if rc < 0 else f"exit {rc}"
        results[0] = Probe(False, f"onnxruntime {why} opening or running it")
    return results


# -- intermediate activations ------------------------------------------------------------------------


def float_tensors(model: Any) -> dict[str, int]:
    """Every tensor a node produces whose type shape inference can tell -> its ONNX elem type."""
    onnx = require("onnx")
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # a model shape inference cannot handle: use what the file declares
        inferred = model
    types = {v.name: v.type.tensor_type.elem_type for v in
             [*inferred.graph.value_info, *inferred.graph.output, *inferred.graph.input]}
    return {o: types[o] for node in model.graph.node for o in node.output if o and types.get(o) in (1, 10)}


def with_outputs(model: Any, names: Iterable[str], types: Mapping[str, int]) -> Any:
    """A copy of ``model`` that also outputs the tensors ``names``."""
    onnx = require("onnx")
    m = onnx.ModelProto()
    m.CopyFrom(model)
    have = {o.name for o in m.graph.output}
    for n in names:
        if n not in have:
            m.graph.output.append(onnx.helper.make_tensor_value_info(n, types[n], None))
    return m


def activation_absmax(model: Any, feeds: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """max |x| of every float tensor (inputs and intermediates) over ``feeds``, from the fp32
    model run without graph optimizations (so that no fusion hides a tensor)."""
    np = require("numpy")
    types = float_tensors(model)
    sess = session(with_outputs(model, types, types), optimize=False)
    peak: dict[str, float] = {}
    for outs in run(sess, feeds):
        for name, v in outs.items():
            v = np.asarray(v)
            if v.dtype.kind == "f" and v.size:
                finite = np.abs(v[np.isfinite(v)]) if not np.all(np.isfinite(v)) else np.abs(v)
                m = float(finite.max()) if finite.size else float("inf")
                peak[name] = max(peak.get(name, 0.0), m if np.all(np.isfinite(v)) else float("inf"))
    for f in feeds:
        for name, v in f.items():
            v = np.asarray(v)
            if v.dtype.kind == "f" and v.size:
                peak[name] = max(peak.get(name, 0.0), float(np.abs(v).max()))
    return peak


class Touch(NamedTuple):
    """A node that reads or writes a tensor beyond a bound: the first such tensor, its side and its peak."""

    index: int  # the node's position in ``graph.node``
    node: Any
    tensor: str
    side: str  # "output" or "input"
    peak: float


def nodes_touching(model_or_graph: Any, peaks: Mapping[str, float], above: float, *, inclusive: bool,
                   skip_initializers: bool = False) -> list[Touch]:
    """The nodes (in graph order) with an output or input whose peak |x| in ``peaks`` (from
    :func:`activation_absmax`) is beyond ``above``: ``>= above`` when ``inclusive``, else ``> above``.

    Why one helper: static int8 quantization keeps fp32 the nodes that touch a sentinel (``>= 1e6``)
    and fp16 the nodes that would overflow (``> 65504 / 4``); both scan the graph the same way.
    Outputs are looked at before inputs and only the first tensor beyond the bound is reported per
    node. A tensor missing from ``peaks`` counts as 0 (never measured: a weight, an omitted optional
    input). ``skip_initializers`` leaves initializer inputs out (fp16 judges weights on their own
    values); graph inputs are looked at like any other tensor (their peaks come from the feeds)."""
    graph = getattr(model_or_graph, "graph", model_or_graph)
    inits = {t.name for t in graph.initializer} if skip_initializers else set()
    out: list[Touch] = []
    for i, node in enumerate(graph.node):
        for name in (*node.output, *(n for n in node.input if n not in inits)):
            peak = peaks.get(name, 0.0)
            if (peak >= above) if inclusive else (peak > above):
                out.append(Touch(i, node, name, "output" if name in node.output else "input", peak))
                break
    return out


def node_error_growth(ref_model: Any, cand_path: Path, feeds: Sequence[Mapping[str, Any]],
                      candidates: Iterable[str]) -> list[tuple[str, float]]:
    """Rank nodes of ``ref_model`` by how much relative error they ADD in the candidate: the error
    (||cand - ref|| / ||ref||) of the node's output minus the largest error among its inputs.
    Only tensors both models still carry by name are compared. The candidate must already have
    passed :func:`probe`."""
    np = require("numpy")
    cand = onnx_fmt.load_proto(cand_path)
    ref_types = float_tensors(ref_model)
    cand_names = {o for n in cand.graph.node for o in n.output} | {i.name for i in cand.graph.input}
    shared = [n for n in ref_types if n in cand_names]
    cand_types = float_tensors(cand)
    shared = [n for n in shared if n in cand_types]
    ref_outs = run(session(with_outputs(ref_model, shared, ref_types), optimize=False), feeds)
    got_outs = run(session(with_outputs(cand, shared, cand_types), optimize=False), feeds)
    num: dict[str, float] = {}
    den: dict[str, float] = {}
    for r, g in zip(ref_outs, got_outs):
        for n in shared:
            a, b = np.asarray(r[n], np.float64), np.asarray(g[n], np.float64)
            if a.shape != b.shape or not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
                continue
            num[n] = num.get(n, 0.0) + float(np.sum((a - b) ** 2))
            den[n] = den.get(n, 0.0) + float(np.sum(a ** 2))
    err = {n: float(np.sqrt(num[n] / den[n])) if den[n] > 0 else float(num[n] > 0) for n in num}
    wanted = set(candidates)
    ranked = []
    for node in ref_model.graph.node:
        if node.name not in wanted:
            continue
        outs = [err[o] for o in node.output if o in err]
        if not outs:
            continue
        ins = [err[i] for i in node.input if i in err]
        ranked.append((node.name, max(outs) - (max(ins) if ins else 0.0)))
    return sorted(ranked, key=lambda t: -t[1])


# -- measuring candidates ------------------------------------------------------------------------------


def output_error(refs: Sequence[Mapping[str, Any]], gots: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Worst cosine and worst relative RMS error over outputs (by position), NaN/Inf -> inf error."""
    np = require("numpy")
    worst_cos, worst_rel = 1.0, 0.0
    for ref, got in zip(refs, gots):
        for r, g in zip(ref.values(), got.values()):
            r, g = np.asarray(r, np.float64).ravel(), np.asarray(g, np.float64).ravel()
            if r.shape != g.shape or not np.all(np.isfinite(g)):
                return {"cosine": -1.0, "rel_rms": float("inf")}
            nr, ng = float(np.linalg.norm(r)), float(np.linalg.norm(g))
            cos = 1.0 if nr == 0 and ng == 0 else float(r @ g / (nr * ng)) if nr and ng else 0.0
            worst_cos = min(worst_cos, cos)
            worst_rel = max(worst_rel, float(np.linalg.norm(g - r) / nr) if nr else float(ng > 0))
    return {"cosine": round(worst_cos, 6), "rel_rms": round(worst_rel, 6)}


class Judge:
    """Measures a candidate: the pipeline's ``check`` (parity against the ORIGINAL model) when
    there is one, else a comparison with the pass's own input model under ``tolerance``."""

    def __init__(self, check: Callable[[Artifact], Any] | None, src_outputs: list[dict[str, Any]],
                 feeds: Sequence[Mapping[str, Any]], tolerance: Tolerance) -> None:
        self.check, self.src_outputs, self.feeds, self.tolerance = check, src_outputs, feeds, tolerance

    @property
    def against(self) -> str:
        return "the original model (check)" if self.check else "this pass's input model (no check was given)"

    def __call__(self, artifact: Artifact, outputs: list[dict[str, Any]]) -> tuple[bool, str, dict[str, Any]]:
        """(passed, one-line summary, {cosine, max_abs, top1, dtype_mismatch}) for a candidate
        whose outputs on the feeds are ``outputs`` (from :func:`probe`)."""
        if self.check is not None:
            report = self.check(artifact)
        else:
            from ..parity.compare import compare

            np = require("numpy")
            outputs = [{k: v.astype(np.float32) if getattr(v, "dtype", None) == np.float16 else v
                        for k, v in o.items()} for o in outputs]  # keep_io_types=false: compare the values
            report = compare(self.src_outputs, outputs, self.tolerance)
        cos = [o.cosine for o in report.outputs if o.cosine is not None]
        top = [o.top1 for o in report.outputs if o.top1 is not None]
        info: dict[str, Any] = {"cosine": round(min(cos), 6) if cos else None,
                                "max_abs": max((o.max_abs or 0.0) for o in report.outputs) if report.outputs else None}
        if top:
            info["top1"] = min(top)
        if any(o.status == "dtype" for o in report.outputs):
            info["dtype_mismatch"] = True  # no remedy changes an output dtype
        return bool(report), "passed" if report else report.summary(), info


def score(info: Mapping[str, Any]) -> float:
    """Higher is better: worst cosine (a candidate with none scores lowest)."""
    c = info.get("cosine")
    return float(c) if c is not None else -2.0


def finish(chosen: Path, out_dir: Path, work: Path) -> Path:
    """Move the chosen candidate to ``out_dir/model.onnx`` and drop the other candidates."""
    final = out_dir / onnx_fmt.FILENAME
    shutil.move(str(chosen), str(final))
    shutil.rmtree(work, ignore_errors=True)
    return final
