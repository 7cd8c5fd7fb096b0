"""Open a Keras model as a source artifact: classify it by content, check the name fits the content,
refuse code-carrying layers unless trusted, then load it with the library that wrote it.

Kinds (``meta["kind"]``) and loaders (``meta["library"]``):

- ``keras_archive``: a ``.keras`` zip (config.json + metadata.json + weights). metadata.json's
  ``keras_version`` says who wrote it: 3.x -> ``keras.saving.load_model``, 2.x (tf_keras's v3
  format) -> ``tf_keras.models.load_model``.
- ``h5``: a legacy HDF5 full model (HDF5 magic + a ``model_config`` attribute) -> tf_keras, or
  keras 3 when its ``keras_version`` attribute is 3.x. An HDF5 file without ``model_config`` holds
  only weights and is refused.
- ``saved_model``: a tf_keras SavedModel directory (saved_model.pb + keras_metadata.pb) -> tf_keras.

A file whose name says one format and whose content is another (an HDF5 model named ``.keras``, a
``.keras`` archive named ``.h5``) is refused: loaders pick their parser by suffix, and a mismatch is
how the wrong weights get loaded. Lambda layers carry Python bytecode that loading runs (tf_keras
runs it even in its safe mode): they are refused unless ``trust_code=True`` (``--trust-code``).
"""

from __future__ import annotations

import json
import os
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...core import Artifact, TensorSpec
from ...deps import require
from ...errors import InputError, UsageError, first_line
from ...quiet import quiet
from ..tf.common import select_outputs, spec
from . import FORMAT

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
ARCHIVE_SUFFIX = ".keras"
H5_SUFFIXES = (".h5", ".hdf5")
TRUST_FLAG = "--trust-code"
_LOGGERS = ("tensorflow", "absl", "keras", "tf_keras", "h5py")


@dataclass(frozen=True)
class Classified:
    kind: str  # keras_archive | h5 | saved_model
    library: str  # keras | tf_keras
    version: str  # keras_version that wrote it ("" if unknown)
    configs: tuple[Any, ...]  # parsed layer configs, scanned for Lambda layers


def _sniff(p: Path) -> str | None:
    try:
        with p.open("rb") as fh:
            head = fh.read(8)
    except OSError:
        return None
    if head == HDF5_MAGIC:
        return "hdf5"
    if head[:4] == b"PK\x03\x04":
        return "zip"
    return None


def _is_keras_zip(p: Path) -> bool:
    try:
        with zipfile.ZipFile(p) as zf:
            return {"config.json", "metadata.json"} <= set(zf.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def probe(location: str) -> bool:
    p = Path(location)
    if p.is_dir():
        return (p / "saved_model.pb").is_file() and (p / "keras_metadata.pb").is_file()
    if not p.is_file():
        return False
    if p.suffix.lower() in (ARCHIVE_SUFFIX, *H5_SUFFIXES):
        return True  # claimed by name so that open_source can say what the content really is
    kind = _sniff(p)
    return kind == "hdf5" or (kind == "zip" and _is_keras_zip(p))


def classify(p: Path) -> Classified:
    """What ``p`` is, from its content; InputError for anything that is not a loadable Keras model."""
    if p.is_dir():
        if not (p / "keras_metadata.pb").is_file():
            raise InputError(f"{p} is a directory without keras_metadata.pb, not a Keras SavedModel")
        return Classified("saved_model", "tf_keras", "", ())
    sniffed = _sniff(p)
    suffix = p.suffix.lower() or "(no suffix)"
    if sniffed == "zip":
        return _classify_archive(p, suffix)
    if sniffed == "hdf5":
        return _classify_h5(p, suffix)
    raise InputError(f"{p} is neither a Keras .keras archive nor an HDF5 .h5 model (truncated, corrupt, or "
                     f"another format)", hint="save the model with model.save('model.keras') or model.save('model.h5')")


def _classify_archive(p: Path, suffix: str) -> Classified:
    try:
        with zipfile.ZipFile(p) as zf:
            names = set(zf.namelist())
            if not {"config.json", "metadata.json"} <= names:
                raise InputError(f"{p} is a zip archive but not a Keras .keras file (no config.json/metadata.json)")
            metadata = json.loads(zf.read("metadata.json"))
            config = json.loads(zf.read("config.json"))
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise InputError(f"{p} is a damaged Keras .keras archive ({first_line(exc)})",
                         hint="re-save the model with model.save('model.keras')") from exc
    version = str(metadata.get("keras_version", ""))
    if suffix != ARCHIVE_SUFFIX:
        raise InputError(f"{p} is a Keras .keras archive (zip, saved by Keras {version or '?'}) but is named '{suffix}'",
                         hint=f"rename it to {p.stem}.keras; loaders choose the format by suffix, and a mismatch "
                              f"can load the wrong weights")
    if not version.startswith(("2.", "3.")):
        raise InputError(f"{p}: unknown Keras version '{version}' in metadata.json",
                         hint="re-save it with Keras 3 or tf_keras 2.x")
    return Classified("keras_archive", "keras" if version.startswith("3.") else "tf_keras", version, (config,))


def _classify_h5(p: Path, suffix: str) -> Classified:
    h5py = require("h5py")
    try:
        with h5py.File(p, "r") as f:
            attrs = {k: _text(v) for k, v in f.attrs.items()}
            keys = set(f.keys())
    except OSError as exc:
        raise InputError(f"{p} is a damaged HDF5 file ({first_line(exc)})") from exc
    if "model_config" not in attrs:
        if "layer_names" in attrs or keys & {"layers", "vars", "model_weights"} or "weight_names" in attrs:
            raise InputError(f"{p} holds only weights (model.save_weights), not a model",
                             hint="convertkit needs the architecture too: save the whole model with "
                                  "model.save('model.keras') (Keras 3) or model.save('model.h5') (tf_keras)")
        raise InputError(f"{p} is an HDF5 file but not a Keras model (no model_config attribute)")
    version = attrs.get("keras_version", "")
    if suffix not in H5_SUFFIXES:
        raise InputError(f"{p} is a legacy Keras HDF5 model (saved by Keras {version or '?'}) but is named '{suffix}'",
                         hint=f"rename it to {p.stem}.h5; a .keras file must be the zip archive Keras 3 writes, "
                              f"and loaders choose the format by suffix")
    try:
        config = json.loads(attrs["model_config"])
    except ValueError as exc:
        raise InputError(f"{p}: its model_config attribute is not JSON ({first_line(exc)})") from exc
    return Classified("h5", "keras" if version.startswith("3.") else "tf_keras", version, (config,))


def _text(v: Any) -> Any:
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else v


def lambda_layers(obj: Any) -> list[str]:
    """Names of the Lambda layers anywhere in a (nested) Keras config."""
    found: list[str] = []
    stack = [obj]
    while stack:
        cur = stack.pop()
        if isinstance(cur, dict):
            if cur.get("class_name") == "Lambda":
                cfg = cur.get("config")
                found.append(str((cfg.get("name") if isinstance(cfg, dict) else None) or cur.get("name") or "?"))
            stack.extend(cur.values())
        elif isinstance(cur, list):
            stack.extend(cur)
    return sorted(set(found))


def _saved_model_configs(p: Path) -> tuple[Any, ...]:
    pb2 = require("tf_keras.protobuf.saved_metadata_pb2")
    meta = pb2.SavedMetadata()
    try:
        meta.ParseFromString((p / "keras_metadata.pb").read_bytes())
    except Exception as exc:
        raise InputError(f"{p}/keras_metadata.pb is not readable ({first_line(exc)})") from exc
    configs = []
    for node in meta.nodes:
        try:
            configs.append(json.loads(node.metadata))
        except ValueError:
            continue
    return tuple(configs)


def open_source(location: str, *, weights: str | None = None, trust_code: bool = False,
                output_names: tuple[str, ...] = (), **_: Any) -> Artifact:
    p = Path(location)
    if weights:
        raise UsageError("--weights only applies to an import path source (package.module:callable)",
                         hint=f"{p} already holds its weights")
    if not p.exists():
        raise InputError(f"{p}: no such file")
    found = classify(p)
    configs = found.configs if found.kind != "saved_model" else _saved_model_configs(p)
    lambdas = sorted({n for c in configs for n in lambda_layers(c)})
    if lambdas and not trust_code:
        raise InputError(f"{p} has Lambda layer(s) {', '.join(lambdas)}, whose Python code loading the model would run",
                         hint=f"pass {TRUST_FLAG} if you trust where the file came from, or rebuild the model "
                              f"without Lambda layers")
    model = load_model(p, found, trust_code)
    inputs, outputs = model_specs(model)
    if outputs:
        select_outputs([o.name for o in outputs], output_names)  # UsageError now, not mid-conversion
    library = f"{found.library} {_version(found.library)}".strip()
    return Artifact(FORMAT, p, inputs, outputs,
                    meta={"kind": found.kind, "source": str(p), "library": library,
                          "saved_by": found.version or None, "signature": None, "trust_code": trust_code},
                    obj=model)


def keras_module(library: str) -> Any:
    """``keras`` (Keras 3 on the TensorFlow backend) or ``tf_keras``."""
    if library == "tf_keras":
        return require("tf_keras")
    if "keras" not in sys.modules:
        os.environ["KERAS_BACKEND"] = "tensorflow"  # convertkit traces Keras models with tf.function
    keras = require("keras")
    backend = keras.backend.backend()
    if backend != "tensorflow":
        raise UsageError(f"Keras 3 is running on the '{backend}' backend; convertkit needs 'tensorflow'",
                         hint="unset KERAS_BACKEND or set it to tensorflow")
    return keras


def load_model(p: Path, found: Classified, trust_code: bool) -> Any:
    require("tensorflow")
    lib = keras_module(found.library)
    try:
        with quiet(*_LOGGERS):
            if found.library == "keras":
                return lib.saving.load_model(str(p), compile=False, safe_mode=not trust_code)
            return lib.models.load_model(str(p), compile=False, safe_mode=not trust_code)
    except Exception as exc:
        msg = first_line(exc)
        if "safe_mode" in str(exc) or "Lambda" in str(exc):
            hint = f"the model runs code when loaded; pass {TRUST_FLAG} if you trust where it came from"
        elif any(s in str(exc) for s in ("Unknown layer", "Could not locate", "could not be deserialized",
                                         "Could not deserialize", "Unrecognized")):
            hint = ("the model needs a class this Python cannot import (a custom layer or model, or one from "
                    "another Keras version); convertkit loads models built from built-in Keras layers")
        else:
            hint = "check the file is complete; re-save it with the Keras that trained it"
        raise InputError(f"{p} could not be loaded by {found.library} ({msg})", hint=hint) from exc


def _version(library: str) -> str:
    from ...deps import version

    return version("keras" if library == "keras" else "tf_keras") or ""


# -- names and specs ------------------------------------------------------------------------------


def _history_name(t: Any) -> str | None:
    hist = getattr(t, "_keras_history", None)
    op = getattr(hist, "operation", None) or getattr(hist, "layer", None)
    return getattr(op, "name", None)


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for n in names:
        k = seen.get(n, 0)
        seen[n] = k + 1
        out.append(n if k == 0 else f"{n}_{k}")
    return out


def _tensors(model: Any, attr: str) -> list[Any]:
    try:
        tensors = getattr(model, attr)
    except (AttributeError, ValueError):  # a subclassed or unbuilt model has no symbolic inputs
        return []
    return list(tensors or [])


def input_names(model: Any) -> list[str]:
    struct = getattr(model, "_inputs_struct", None)
    if isinstance(struct, dict):
        return sorted(struct)  # Keras 3 flattens a dict by sorted keys; model.inputs follow that order
    tensors = _tensors(model, "inputs")
    given = getattr(model, "input_names", None)  # tf_keras: the InputLayer names
    if given and len(given) == len(tensors):
        return list(given)
    return _unique([_history_name(t) or getattr(t, "name", None) or f"input_{i}" for i, t in enumerate(tensors)])


def output_names(model: Any) -> list[str]:
    """The names TF.js's layers model uses too: the output layers' names (dict keys for dict outputs)."""
    struct = getattr(model, "_outputs_struct", None)
    if isinstance(struct, dict):
        return sorted(struct)
    tensors = _tensors(model, "outputs")
    try:
        given = list(getattr(model, "output_names", None) or [])
    except (AttributeError, ValueError):
        given = []
    if given and len(given) == len(tensors):
        return _unique(given)
    return _unique([_history_name(t) or f"output_{i}" for i, t in enumerate(tensors)])


def embedding_vocab(model: Any) -> int | None:
    """Integer inputs feeding an Embedding must stay inside its vocabulary: the smallest bounds them."""
    sizes, stack, seen = [], [model], set()
    while stack:
        layer = stack.pop()
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        if type(layer).__name__ == "Embedding" and hasattr(layer, "input_dim"):
            sizes.append(int(layer.input_dim))
        stack.extend(getattr(layer, "layers", None) or [])
    return min(sizes) if sizes else None


def model_specs(model: Any) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    vocab = embedding_vocab(model)
    rng = (0, vocab) if vocab else None
    ins = _tensors(model, "inputs")
    inputs = tuple(spec(n, t.shape, _dtype(t), rng) for n, t in zip(input_names(model), ins))
    outs = _tensors(model, "outputs")
    outputs = tuple(spec(n, t.shape, _dtype(t)) for n, t in zip(output_names(model), outs))
    return inputs, outputs


def _dtype(t: Any) -> Any:
    dt = getattr(t, "dtype", "float32")
    return require("tensorflow").as_dtype(dt) if isinstance(dt, str) else dt


def describe(artifact: Artifact) -> dict[str, Any]:
    from collections import Counter

    model = artifact.obj
    info: dict[str, Any] = {"kind": artifact.meta.get("kind"), "library": artifact.meta.get("library"),
                            "saved_by": artifact.meta.get("saved_by")}
    if model is not None:
        try:
            info["parameters"] = int(model.count_params())
        except Exception:  # an unbuilt model cannot count
            info["parameters"] = None
        info["layers"] = dict(sorted(Counter(type(layer).__name__ for layer in getattr(model, "layers", [])).items()))
    return info
