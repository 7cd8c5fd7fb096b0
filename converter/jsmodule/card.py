"""The model card: what a converted model carries about itself (stdlib only).

Source format and sha256, convertkit and library versions, the stages and passes that made it,
the parity verdict with each output's worst error, and the licence. It goes into the artifact
(model.json's ``userDefinedMetadata.convertkit.card``, ONNX ``metadata_props``) and into the
generated module (``METADATA``). Nothing in it depends on where the files were (no absolute
paths) or when (no timestamps): the same input and options give the same card.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UsageError

SCHEMA = "convertkit.card/1"
UNKNOWN = "unknown"
#: environment() keys left out of the card: the machine, not the conversion
_MACHINE = ("platform",)


@dataclass(frozen=True)
class Licence:
    """A model's licence (an SPDX id as the model card writes it, e.g. apache-2.0) and where it came from."""

    id: str = UNKNOWN
    source: str | None = None  # "--license", "README.md front matter", "config.json"; None when unknown

    @property
    def known(self) -> bool:
        return self.id != UNKNOWN


def _front_matter_licence(text: str) -> str | None:
    """``license:`` of a Hugging Face README's YAML front matter: a scalar or a list of scalars.
    A YAML parser for one key of the two forms model cards use is not worth a dependency."""
    if not text.startswith("---"):
        return None
    head = text[3:].split("\n---", 1)[0]
    m = re.search(r"^license:[ \t]*(.*)$((?:\n[ \t]*-[ \t]*.+)*)", head, re.MULTILINE)
    if not m:
        return None
    items = [m.group(1)] if m.group(1).strip() else re.findall(r"-[ \t]*(.+)", m.group(2))
    ids = [i.strip().strip("'\"") for i in items if i.strip().strip("'\"")]
    return " AND ".join(ids) or None


def _converted_licence(path: Path) -> Licence:
    """The licence a model convertkit wrote carries (optimize keeps it): a TF.js model.json's card,
    an ONNX model's ``license`` metadata_props entry."""
    model_json = path / "model.json" if path.is_dir() else path if path.suffix == ".json" else None
    if model_json is not None and model_json.is_file():
        try:
            data = json.loads(model_json.read_text(encoding="utf-8"))
            value = data["userDefinedMetadata"]["convertkit"]["card"]["license"]
        except (OSError, ValueError, KeyError, TypeError):
            value = None
        return Licence(value, "the model's card (model.json)") if isinstance(value, str) and value != UNKNOWN else Licence()
    if path.suffix.lower() == ".onnx" and path.is_file():
        try:
            import onnx  # lazily: only for an ONNX source (0.15 s)

            props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
        except Exception:  # unreadable here: the source's own loader says why, later
            return Licence()
        value = props.get("license", "").strip()
        return Licence(value, "ONNX metadata_props") if value and value != UNKNOWN else Licence()
    return Licence()


def find_licence(source: Any) -> Licence:
    """The licence a Hugging Face model directory declares (README.md front matter ``license:``, or
    a ``license`` key in config.json), or that a model convertkit converted carries; else unknown."""
    if not isinstance(source, (str, Path)) or not Path(source).exists():
        return Licence()
    d = Path(source)
    converted = _converted_licence(d)
    if converted.known or not d.is_dir():
        return converted
    readme = d / "README.md"
    if readme.is_file():
        found = _front_matter_licence(readme.read_text(encoding="utf-8", errors="replace"))
        if found:
            return Licence(found, "README.md front matter")
    config = d / "config.json"
    if config.is_file():
        try:
            value = json.loads(config.read_text(encoding="utf-8")).get("license")
        except (OSError, ValueError, AttributeError):
            value = None
        if isinstance(value, str) and value.strip():
            return Licence(value.strip(), "config.json")
    return Licence()


def licence_for(source: Any, given: str | None = None, *, require: bool = False) -> Licence:
    """``--license`` if given, else what the source declares; ``require`` (``--require-license``)
    makes an unknown licence a usage error (exit 2), checked before any work."""
    if given is not None:
        if not given.strip() or given.strip().lower() == UNKNOWN:
            raise UsageError(f"--license '{given}' names no licence", hint="give an SPDX id, e.g. --license apache-2.0")
        return Licence(given.strip(), "--license")
    found = find_licence(source)
    if require and not found.known:
        where = source if isinstance(source, (str, Path)) else f"an in-memory {type(source).__name__}"
        raise UsageError(f"--require-license: {where} declares no licence (no README.md front matter "
                         f"'license:', no config.json 'license', no model card)",
                         hint="give --license SPDX-ID, e.g. --license mit")
    return found


def source_digest(source: Any, weights: str | None = None) -> tuple[str | None, str | None]:
    """(sha256, what it is of): a file's bytes; a directory's sorted listing of relative paths and
    each file's sha256; for package.module:callable, the --weights file. (None, None) otherwise."""
    paths = [Path(p) for p in (source, weights) if isinstance(p, (str, Path)) and p and Path(p).exists()]
    if not paths:
        return None, None
    p = paths[0]
    if p.is_file():
        return _file_sha(p), "file"
    h = hashlib.sha256()
    for f in sorted(x for x in p.rglob("*") if x.is_file()):
        h.update(f"{f.relative_to(p).as_posix()}\0{_file_sha(f)}\n".encode())
    return h.hexdigest(), "directory (sorted 'relative path NUL file sha256' lines)"


def _file_sha(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _num(v: float | None) -> float | str | None:
    """JSON has no NaN/Inf: those are written as strings."""
    return v if v is None or math.isfinite(v) else str(v)


@dataclass(frozen=True)
class OutputParityCard:
    name: str
    status: str
    max_abs: float | str | None
    cosine: float | str | None


@dataclass(frozen=True)
class ParityCard:
    verdict: str  # PASSED, FAILED or UNCHECKED (--no-check)
    samples: int = 0
    atol: float | None = None
    rtol: float | None = None
    worst_max_abs: float | str | None = None
    outputs: tuple[OutputParityCard, ...] = ()

    @classmethod
    def of(cls, verdict: str, parity: Any) -> ParityCard:
        if parity is None:
            return cls(verdict)
        outs = tuple(OutputParityCard(o.name, o.status, _num(o.max_abs), _num(o.cosine)) for o in parity.outputs)
        errors = [o.max_abs for o in parity.outputs if o.max_abs is not None]
        return cls(verdict, parity.samples, parity.tolerance.atol, parity.tolerance.rtol,
                   _num(max(errors)) if errors else None, outs)


@dataclass(frozen=True)
class PassCard:
    name: str
    config: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelCard:
    source_format: str
    source_kind: str | None
    source_name: str | None  # the file or directory name only
    source_sha256: str | None
    source_sha256_of: str | None
    target_format: str
    target_kind: str | None
    licence: Licence
    convertkit: str | None
    libraries: dict[str, str]
    stages: tuple[str, ...]
    passes: tuple[PassCard, ...]
    parity: ParityCard

    def to_json(self) -> dict[str, Any]:
        return {"schema": SCHEMA,
                "source": {"format": self.source_format, "kind": self.source_kind, "name": self.source_name,
                           "sha256": self.source_sha256, "sha256_of": self.source_sha256_of},
                "target": {"format": self.target_format, "kind": self.target_kind},
                "license": self.licence.id, "license_from": self.licence.source,
                "convertkit": self.convertkit, "libraries": dict(self.libraries),
                "stages": list(self.stages), "passes": [asdict(p) for p in self.passes],
                "parity": asdict(self.parity)}


def libraries(env: dict[str, Any]) -> dict[str, str]:
    return {k: str(v) for k, v in env.items() if k not in _MACHINE and k != "convertkit"}


def passes_of(stages: Sequence[Any]) -> tuple[PassCard, ...]:
    """The passes among ``stages`` (core.Pass instances), with their options."""
    from ..core import Pass

    return tuple(PassCard(s.name, s.config()) for s in stages if isinstance(s, Pass))
