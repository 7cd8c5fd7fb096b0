"""A typed JS/TS module beside every TF.js and ONNX artifact, and the model card it carries.

``finish`` runs once the final artifact is validated, inside the output's temporary directory
(fsutil.atomic_dir), so the card and the module appear with the model or not at all:

- the card (card.py) goes into the artifact (embed.py) and into the module's ``METADATA``;
- ``model.js`` (an ES module importing ``@tensorflow/tfjs`` or ``onnxruntime-web``, a peer
  dependency) and ``model.d.ts`` (its types) go beside model.json / model.onnx (render.py), built
  from the source's and the artifact's specs (spec.py): ``load(location, {backend})``,
  ``predict(inputs)`` by the source's names with shape and dtype checks, INPUTS, OUTPUTS, METADATA.

``licence_for`` resolves the licence before any work (``--license``, ``--require-license``).
Stdlib only at import time.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core import Artifact
from .card import Licence, ModelCard, ParityCard, libraries, licence_for, passes_of, source_digest
from .embed import into_model_json, into_onnx, read_card
from .render import render_dts, render_js
from .spec import module_spec

__all__ = ["Licence", "SourceFacts", "finish", "licence_for", "read_card"]

JS_FILES = ("model.js", "model.d.ts")
#: the final artifact's formats that get a card and a module
FORMATS = ("tfjs", "onnx")


@dataclass(frozen=True)
class SourceFacts:
    """What the card says of the source, as the user gave it (before it was loaded)."""

    source: Any  # the path or import path given, or an in-memory model
    weights: str | None
    licence: Licence

    @property
    def name(self) -> str:
        """The file or directory name (no absolute path goes into a shipped model), or the import path."""
        if isinstance(self.source, (str, Path)):
            return Path(self.source).name if Path(self.source).exists() else str(self.source)
        return type(self.source).__name__


def _locate(final: Artifact) -> tuple[Path, str, str, str | None] | None:
    """(directory, model file, kind, external data file) of the final artifact, or None without one."""
    if final.path is None:
        return None
    if final.format.name == "tfjs":
        d = final.path if final.path.is_dir() else final.path.parent
        return d, "model.json", str(final.meta.get("kind") or "graph-model"), None
    f = final.path if final.path.is_file() else final.path / "model.onnx"
    data = f.with_name(f.name + ".data")
    return f.parent, f.name, "onnx", data.name if data.is_file() else None


def build_card(facts: SourceFacts, src: Artifact, final: Artifact, report: Any, stages: Any) -> ModelCard:
    from ..report import environment

    env = environment()
    sha, sha_of = source_digest(facts.source, facts.weights)
    return ModelCard(src.format.name, src.meta.get("kind"), facts.name, sha, sha_of, final.format.name,
                     final.meta.get("kind") or final.format.name, facts.licence, env.get("convertkit"),
                     libraries(env), tuple(s.name for s in stages), passes_of(stages),
                     ParityCard.of(report.verdict, report.parity))


def finish(facts: SourceFacts, src: Artifact, final: Artifact, report: Any, stages: Any, *, js: bool = True) -> list[str]:
    """Write the card into the final artifact and, with ``js``, model.js + model.d.ts beside it.
    Returns the files written (relative to the artifact's directory), for the report's notes."""
    if final.format.name not in FORMATS:
        return []
    where = _locate(final)
    if where is None:
        return []
    directory, model_file, kind, external = where
    card = build_card(facts, src, final, report, stages).to_json()
    # the stages' bytes in the report stay those of the model as validated, without the card (1-2 KB
    # of metadata): a pass's size ratio compares models, and tiny models would be skewed by it
    (into_model_json if final.format.name == "tfjs" else into_onnx)(directory / model_file, card)
    if not js:
        return []
    spec = module_spec(src, final, report.parity, kind, model_file, external)
    (directory / "model.js").write_text(render_js(spec, card), encoding="utf-8")
    (directory / "model.d.ts").write_text(render_dts(spec, card), encoding="utf-8")
    return list(JS_FILES)
