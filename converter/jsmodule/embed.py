"""The model card into the artifact itself, after validation, without changing what was validated.

TF.js: model.json's ``userDefinedMetadata.convertkit.card`` (TF.js exposes it as
``model.metadata``); the topology and the weights manifest are checked unchanged. ONNX: the
``metadata_props`` entries ``convertkit.card`` (JSON) and ``license``; the model is re-saved with
only those changed, and the rest of the proto (graph, weights, opsets, functions) is checked
byte-identical to what was validated, or nothing is written.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CARD_KEY = "convertkit.card"
LICENSE_KEY = "license"


class MetadataChangedModel(AssertionError):
    """Writing the card changed more than metadata: a bug in convertkit, never shipped silently."""


def into_model_json(path: Path, card: dict[str, Any]) -> None:
    data = json.loads(path.read_text())
    before = {k: v for k, v in data.items() if k != "userDefinedMetadata"}
    meta = data.setdefault("userDefinedMetadata", {})
    meta.setdefault("convertkit", {})["card"] = card
    path.write_text(json.dumps(data))
    after = {k: v for k, v in json.loads(path.read_text()).items() if k != "userDefinedMetadata"}
    if after != before:
        raise MetadataChangedModel(f"{path}: writing the model card changed more than userDefinedMetadata")


def into_onnx(path: Path, card: dict[str, Any]) -> None:
    import onnx

    model = onnx.load(str(path), load_external_data=False)  # weights past 2 GiB stay where they are
    before = _without_props(model)
    keep = [(p.key, p.value) for p in model.metadata_props if p.key not in (CARD_KEY, LICENSE_KEY)]
    del model.metadata_props[:]
    for key, value in [*keep, (CARD_KEY, json.dumps(card, sort_keys=True)), (LICENSE_KEY, card["license"])]:
        model.metadata_props.add(key=key, value=value)
    tmp = path.with_name(path.name + ".card")
    onnx.save(model, str(tmp))
    if _without_props(onnx.load(str(tmp), load_external_data=False)) != before:
        tmp.unlink()
        raise MetadataChangedModel(f"{path}: re-saving with the model card changed more than metadata_props")
    tmp.replace(path)


def _without_props(model: Any) -> bytes:
    copy = type(model)()
    copy.CopyFrom(model)
    del copy.metadata_props[:]
    return copy.SerializeToString(deterministic=True)


def read_card(path: Path) -> dict[str, Any] | None:
    """The card an artifact carries (model.json or model.onnx), or None."""
    if path.suffix == ".json":
        return ((json.loads(path.read_text()).get("userDefinedMetadata") or {}).get("convertkit") or {}).get("card")
    import onnx

    props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    return json.loads(props[CARD_KEY]) if CARD_KEY in props else None
