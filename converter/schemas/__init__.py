"""The JSON Schemas (draft 2020-12) of what convertkit writes: ``report.schema.json`` for each
artifact's report.json (``convertkit.report/1``) and ``summary.schema.json`` for the summary.json
of ``convertkit run`` (``convertkit.summary/1``). Shipped as package data, so that a CI step can
check a report with any JSON Schema tool.

``problems(doc)`` checks a document against the schema its ``schema`` key names. It needs the
``jsonschema`` package (a test dependency, pinned in requirements/lock.txt; imported when called).
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

#: the ``schema`` key of a document -> its schema file
FILES = {"convertkit.report/1": "report.schema.json", "convertkit.summary/1": "summary.schema.json"}


@cache
def load(name: str) -> dict[str, Any]:
    """The schema for ``name`` (a key of FILES, e.g. ``convertkit.report/1``)."""
    return json.loads((resources.files(__package__) / FILES[name]).read_text())


def problems(doc: Any) -> list[str]:
    """One line per violation (``$.stages[0].seconds: -1 is less than the minimum of 0``); [] when valid."""
    name = doc.get("schema") if isinstance(doc, dict) else None
    if name not in FILES:
        return [f"$.schema: {name!r} is not one of {sorted(FILES)}"]
    from jsonschema.exceptions import best_match

    # a oneOf (parity or {"skipped": true}, a histogram or null) says only that nothing matched: name
    # the closest branch's own problem instead
    errors = [best_match(e.context) if e.context else e for e in _validator(name).iter_errors(doc)]
    errors.sort(key=lambda e: list(map(str, e.absolute_path)))
    return [f"{e.json_path}: {e.message[:300]}" for e in errors]


@cache
def _validator(name: str) -> Any:
    from jsonschema import Draft202012Validator
    from referencing import Registry, Resource

    registry = Registry().with_resources(
        (s["$id"], Resource.from_contents(s)) for s in (load(n) for n in FILES))
    schema = load(name)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, registry=registry)
