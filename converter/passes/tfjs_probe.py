"""Runs a TF.js model many times in ONE Node process (``formats/tfjs/node/probe_weights.mjs``), each
time with some of its weights replaced by their uint8/uint16/float16 round trip: what the TF.js
weight-map search (``tfjs_weight_map``) measures sensitivities and screens maps with, without a
Node start and a model load per variant."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..core import Artifact
from ..deps import require
from ..errors import ConversionError, MissingDependencyError

SCRIPT = Path(__file__).resolve().parents[1] / "formats" / "tfjs" / "node" / "probe_weights.mjs"
_WIRE = {"f": "float32", "i": "int32", "u": "int32", "b": "bool"}

#: one probe: the (weight, dtype) pairs rounded for that run; the other weights stay as loaded
Probe = Sequence[tuple[str, str]]


def run_probes(src: Artifact, data: Mapping[str, Any], probes: Sequence[Probe], feeds: Sequence[Mapping[str, Any]],
               backend: str = "wasm") -> list[list[dict[str, Any]]]:
    """``outputs[r][s]``: {output name: array} of run ``r`` on sample ``s``; run 0 is the model as
    loaded, run r the model with ``probes[r - 1]`` rounded (``data``: weight name -> float32 array)."""
    np = require("numpy")
    from ..formats.tfjs import model_dir
    from ..formats.tfjs.runner import node_env  # the npm packages' check and module path, as the runner's

    node = shutil.which("node")
    if node is None:
        raise MissingDependencyError("Node.js (`node`) is not on PATH; TF.js models run in Node",
                                     hint="install Node.js >= 18, then run `make install`")
    with tempfile.TemporaryDirectory(prefix="convertkit-probe-") as tmp:
        blob = _Blob(Path(tmp) / "data.bin", data)
        with blob:
            job = {"model_dir": str(model_dir(src.path)), "backend": backend, "data": str(blob.path),
                   "out": str(Path(tmp) / "out.bin"),
                   "feeds": [[blob.put(k, np.asarray(v)) for k, v in f.items()] for f in feeds],
                   "probes": [[blob.weight(n, d) for n, d in p] for p in probes]}
        (Path(tmp) / "job.json").write_text(json.dumps(job))
        done = subprocess.run([node, str(SCRIPT), str(Path(tmp) / "job.json")], capture_output=True, text=True,
                              env=node_env(backend), check=False)
        answer = _last_json(done.stdout)
        if done.returncode != 0 or "outputs" not in answer:
            raise ConversionError("running weight probes in TF.js failed: "
                                  f"{answer.get('error') or done.stderr.strip()[-300:]}")
        flat = np.fromfile(Path(tmp) / "out.bin", dtype="<f4")
    specs = answer["outputs"]
    runs, at = [], 0
    for _ in range(len(probes) + 1):
        samples = []
        for sample in specs:
            outs = {}
            for o in sample:
                n = int(np.prod(o["shape"], dtype=np.int64))
                outs[o["name"]] = flat[at:at + n].reshape(o["shape"])
                at += n
            samples.append(outs)
        runs.append(samples)
    return runs


class _Blob:
    """The feeds and rounded weights, each (weight, dtype) written once, however many probes use it."""

    def __init__(self, path: Path, data: Mapping[str, Any]) -> None:
        self.path, self.data, self.offset = path, data, 0
        self.specs: dict[tuple[str, str], dict[str, Any]] = {}

    def __enter__(self) -> _Blob:
        self.file = open(self.path, "wb")
        return self

    def __exit__(self, *exc: object) -> None:
        self.file.close()

    def put(self, name: str, arr: Any) -> dict[str, Any]:
        np = require("numpy")
        arr = np.ascontiguousarray(arr, dtype=_WIRE[arr.dtype.kind])
        self.file.write(arr.tobytes())
        spec = {"name": name, "dtype": arr.dtype.name, "shape": list(arr.shape), "offset": self.offset,
                "byteLength": arr.nbytes}
        self.offset += arr.nbytes
        return spec

    def weight(self, name: str, dtype: str) -> dict[str, Any]:
        if (name, dtype) not in self.specs:
            self.specs[(name, dtype)] = self.put(name, rounded(self.data[name], dtype))
        return self.specs[(name, dtype)]


def rounded(w: Any, dtype: str) -> Any:
    """``w`` after tensorflowjs's quantize/dequantize round trip at ``dtype`` (what TF.js loads)."""
    np = require("numpy")
    quantization = require("tensorflowjs.quantization")
    if dtype == "float32":
        return w
    q, meta = quantization.quantize_weights(w, quantization.QUANTIZATION_OPTION_TO_DTYPES[dtype])
    with np.errstate(over="ignore", invalid="ignore"):
        return quantization.dequantize_weights(q, meta, np.float32)


def _last_json(text: str) -> dict[str, Any]:
    for line in reversed(text.strip().splitlines()):
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return {}
