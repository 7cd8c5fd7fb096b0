"""Kernel preflight for onnxruntime-web (wasm): which ops of a model its build cannot run, all at once.

The npm package ships no list of the kernels its wasm build registers, and onnxruntime's
OperatorKernels.md describes the native CPU build, which differs (the web build leaves out
some ops and types, and versions move). So the real runtime is asked: every distinct node
signature of the model, (domain, op, the domain's opset, input and output element types), becomes
a one-node model, and onnxruntime-web tries to open it with graph optimizations off. An error
saying it has no implementation (or no schema) for the op marks it missing; any other error
(e.g. an attribute a standalone node cannot check) does not, since the whole model's load will say
more. Results are cached per onnxruntime-web version in ``$CONVERTKIT_CACHE/ort-web-kernels/``:
one probe costs a few ms once the wasm module is up (about 1 s, shared with the validation run).

Control-flow nodes (If, Loop, Scan) are not probed as one-node models (their bodies reference
outer values); the ops inside their bodies are.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...deps import require
from ...errors import ConversionError
from .. import nodeproc

_SUBGRAPH_OPS = frozenset({"If", "Loop", "Scan", "SequenceMap"})
#: ONNX element type -> name (the probe keys and messages)
_ELEM = {1: "float32", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64", 8: "string",
         9: "bool", 10: "float16", 11: "float64", 12: "uint32", 13: "uint64", 16: "bfloat16"}


@dataclass(frozen=True)
class OpSig:
    """One node signature the runtime must have a kernel for."""

    domain: str
    op_type: str
    opset: int
    inputs: tuple[int, ...]  # element types; 0 for an absent optional input
    outputs: tuple[int, ...]

    @property
    def key(self) -> str:
        return f"{self.domain or 'ai.onnx'}|{self.op_type}|{self.opset}|{self.inputs}|{self.outputs}"

    @property
    def op(self) -> str:
        return self.op_type if self.domain in ("", "ai.onnx") else f"{self.domain}.{self.op_type}"

    def label(self) -> str:
        types = ", ".join(_ELEM.get(t, str(t)) for t in self.inputs if t)
        return f"{self.op}({types})" if types else self.op


@dataclass(frozen=True)
class Preflight:
    """What the preflight found: ``missing`` ops (one label per op, its first failing signature)."""

    version: str
    checked: int  # distinct signatures
    probed: int  # of them, asked of the runtime now (the rest came from the cache)
    missing: tuple[str, ...]
    unknown: tuple[str, ...] = ()  # nodes whose types shape inference could not tell (not probed)

    def to_json(self) -> dict[str, Any]:
        return {"onnxruntime_web": self.version, "signatures": self.checked, "probed": self.probed,
                "missing": list(self.missing), **({"not_probed": list(self.unknown)} if self.unknown else {})}


def _walk(graph: Any) -> Iterator[Any]:
    for node in graph.node:
        yield node
        for attr in node.attribute:
            for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                yield from _walk(sub)


def _types(model: Any) -> dict[str, int]:
    """Element type of every value name (graph inputs, initializers, inferred intermediates)."""
    onnx = require("onnx")
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    except Exception:  # shape inference is a help: without it, declared types only
        inferred = model
    types: dict[str, int] = {}

    def collect(graph: Any) -> None:
        for v in (*graph.input, *graph.output, *graph.value_info):
            if v.type.HasField("tensor_type") and v.type.tensor_type.elem_type:
                types[v.name] = v.type.tensor_type.elem_type
        for t in graph.initializer:
            types[t.name] = t.data_type
        for node in graph.node:
            for attr in node.attribute:
                for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                    collect(sub)

    collect(inferred.graph)
    return types


def signatures(model: Any) -> tuple[dict[OpSig, Any], list[str]]:
    """{signature: a node with it} for every node (subgraphs too), and the nodes not probed."""
    opsets = {(o.domain or ""): o.version for o in model.opset_import}
    types = _types(model)
    found: dict[OpSig, Any] = {}
    unknown: list[str] = []
    for node in _walk(model.graph):
        if node.op_type in _SUBGRAPH_OPS:
            continue
        ins = tuple(types.get(i, -1) if i else 0 for i in node.input)
        outs = tuple(types.get(o, -1) if o else 0 for o in node.output)
        if -1 in ins or -1 in outs:
            unknown.append(f"{node.op_type} {node.name or node.output[0]}")
            continue
        domain = node.domain if node.domain != "ai.onnx" else ""
        found.setdefault(OpSig(domain, node.op_type, opsets.get(domain, 1), ins, outs), node)
    return found, unknown


def one_node_model(model: Any, sig: OpSig, node: Any) -> bytes:
    """``node`` alone, every input a graph input of its type, with the model's opsets and IR version."""
    onnx = require("onnx")
    h = onnx.helper
    names = iter(f"in{i}" for i in range(len(node.input)))
    ins = [next(names) if i else "" for i in node.input]
    outs = [f"out{i}" if o else "" for i, o in enumerate(node.output)]
    probe = h.make_node(node.op_type, ins, outs, domain=node.domain)
    probe.attribute.extend(node.attribute)
    graph = h.make_graph([probe], "probe",
                         [h.make_tensor_value_info(n, t, None) for n, t in zip(ins, sig.inputs) if n],
                         [h.make_tensor_value_info(n, t, None) for n, t in zip(outs, sig.outputs) if n])
    m = h.make_model(graph, opset_imports=list(model.opset_import))
    m.ir_version = model.ir_version
    return m.SerializeToString()


def cache_file(version: str) -> Path:
    root = os.environ.get("CONVERTKIT_CACHE")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "convertkit"
    return base / "ort-web-kernels" / f"onnxruntime-web-{version}.json"


def _load_cache(path: Path) -> dict[str, bool]:
    try:
        data = json.loads(path.read_text())
        return {k: bool(v) for k, v in data.items()} if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}  # missing or damaged: probe again


def _save_cache(path: Path, known: dict[str, bool]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(known, f, indent=0, sort_keys=True)
        os.replace(tmp, path)  # atomic: a concurrent reader sees the old or the new file
    except OSError:
        pass  # an unwritable cache only costs the next run the probes


def preflight(model: Any, node: nodeproc.NodeProcess, version: str) -> Preflight:
    """Probe ``model``'s node signatures in the running ort_web.mjs ``node`` (cache first)."""
    sigs, unknown = signatures(model)
    path = cache_file(version)
    known = _load_cache(path)
    todo = [s for s in sigs if s.key not in known]
    if todo:
        blobs = [one_node_model(model, s, sigs[s]) for s in todo]
        node.send({"type": "probe", "models": [{"key": s.key, "byteLength": len(b)} for s, b in zip(todo, blobs)]},
                  blobs)
        reply, _ = node.read()
        if reply.get("type") != "probed":  # Node could not start onnxruntime-web, or a protocol bug
            raise ConversionError(f"onnxruntime-web's kernel preflight failed: {reply.get('error', reply)}",
                                  hint="run `node converter/formats/tfjs/node/ort_web.mjs` by hand to see more")
        for r in reply["results"]:
            known[r["key"]] = not r["missing"]
        _save_cache(path, known)
    missing: dict[str, str] = {}
    for s in sigs:
        if not known.get(s.key, True):
            missing.setdefault(s.op, s.label())
    return Preflight(version, len(sigs), len(todo), tuple(missing.values()), tuple(unknown))

