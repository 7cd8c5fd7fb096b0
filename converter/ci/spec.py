"""The pipeline file of ``convertkit run``: TOML (stdlib ``tomllib``) into typed specs, checked
whole before any work starts.

    [defaults]                 # any export option (converter.ci.options.FIELDS), for every model
    samples = 3
    [[model]]
    name = "classifier"        # unique: OUTDIR/classifier/<target>/
    source = "models/classifier.pt2"
    targets = ["onnx", "tfjs"]
    [model.passes]             # per target (or passes = [...] for every target)
    onnx = ["quantize"]

Every problem (unknown key, wrong type, duplicate name, missing file, unknown target or pass, a
pass that does not fit the route) is collected with its line; :class:`SpecError` carries them
all (exit 2). Nothing heavy is imported: the route of each model x target is planned with
converter.plan, which imports no framework.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConvertkitError, UsageError
from .options import FIELDS, MODEL_KEYS, ExportOptions, check_value, coerce, export_kwargs, is_static
from .toml_lines import Lines, TablePath, scan

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_IMPORT_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
TOP_KEYS = ("defaults", "model")


@dataclass(frozen=True)
class Problem:
    line: int | None
    where: str  # "[defaults]", "[[model]] 'classifier'"
    key: str | None
    message: str

    def render(self, file: str) -> str:
        at = f"{file}:{self.line}" if self.line else file
        key = f", key '{self.key}'" if self.key else ""
        return f"{at}: {self.where}{key}: {self.message}"


class SpecError(UsageError):
    """A pipeline file that cannot run: every problem found, one line each."""

    def __init__(self, file: str, problems: list[Problem]):
        self.file = file
        self.problems = sorted(problems, key=lambda p: p.line or 0)
        more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
        super().__init__(self.problems[0].render(file) + more, hint="nothing was run")

    def lines(self) -> list[str]:
        return [p.render(self.file) for p in self.problems]


@dataclass(frozen=True)
class TargetSpec:
    """One model x target: what one artifact is made from, and how."""

    model: str
    target: str
    source: str  # an absolute path, or package.module:callable
    passes: tuple[str, ...]
    options: ExportOptions
    base: str  # the pipeline file's directory: import paths resolve there
    stages: tuple[str, ...] = ()  # the planned stages (converter.plan)

    @property
    def id(self) -> str:
        return f"{self.model}/{self.target}"

    def export_kwargs(self, out_dir: Path) -> dict[str, Any]:
        return export_kwargs(self.options, self.target, self.passes, out_dir)

    def to_json(self) -> dict[str, Any]:
        opts = {k: (str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v)
                for k, v in self.options.set_items()}
        return {"model": self.model, "target": self.target, "source": self.source, "passes": list(self.passes),
                "options": opts, "base": self.base, "stages": list(self.stages)}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> TargetSpec:
        paths = {k for k, f in FIELDS.items() if f.path}
        opts = {k: Path(v) if k in paths else tuple(v) if isinstance(v, list) else v for k, v in d["options"].items()}
        return cls(d["model"], d["target"], d["source"], tuple(d["passes"]), ExportOptions(**opts), d["base"],
                   tuple(d.get("stages", ())))


@dataclass(frozen=True)
class ModelSpec:
    name: str
    source: str
    targets: tuple[str, ...]
    passes: Mapping[str, tuple[str, ...]]
    options: ExportOptions  # the defaults, overridden by the model's own
    line: int | None = None
    stages: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class PipelineSpec:
    path: Path
    models: tuple[ModelSpec, ...]

    def jobs(self, only: Iterable[str] = (), target: str | None = None) -> list[TargetSpec]:
        """Each model x target, in file order; ``only`` model names, ``target`` one target."""
        names = {m.name for m in self.models}
        only = [n for n in only if n]
        unknown = [n for n in only if n not in names]
        if unknown:
            raise UsageError(f"--only {','.join(unknown)}: no such model in {self.path}",
                             hint=f"models: {', '.join(m.name for m in self.models)}")
        return [TargetSpec(m.name, t, m.source, m.passes.get(t, ()), m.options, str(self.path.parent),
                           m.stages.get(t, ()))
                for m in self.models if not only or m.name in only
                for t in m.targets if target is None or t == target]


def load(path: str | Path) -> PipelineSpec:
    """Read and check a pipeline file; raises SpecError with every problem found (exit 2)."""
    path = Path(path)
    label = str(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise SpecError(label, [Problem(None, "pipeline file", None, "no such file")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(label, [Problem(None, "pipeline file", None, f"cannot be read: {exc}")]) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"\(at line (\d+), column (\d+)\)", str(exc))
        msg = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc))
        where = f"column {m.group(2)}" if m else "TOML"
        raise SpecError(label, [Problem(int(m.group(1)) if m else None, where, None,
                                        f"invalid TOML: {msg}")]) from None
    checker = _Checker(path.resolve().parent, scan(text))
    spec = checker.pipeline(data, path)
    if checker.problems:
        raise SpecError(label, checker.problems)
    return spec


class _Checker:
    """Collects the problems of one pipeline file while building its specs."""

    def __init__(self, base: Path, lines: Lines) -> None:
        self.base = base
        self.lines = lines
        self.problems: list[Problem] = []

    def add(self, table: TablePath, where: str, key: str | None, message: str) -> None:
        self.problems.append(Problem(self.lines.of(table, key), where, key, message))

    def pipeline(self, data: dict[str, Any], path: Path) -> PipelineSpec:
        for key in data:
            if key not in TOP_KEYS:
                self.add((), "top level", key, f"unknown key{_did_you_mean(key, TOP_KEYS)}; a pipeline has "
                                               "[defaults] and [[model]] tables")
        defaults_raw = data.get("defaults", {})
        if not isinstance(defaults_raw, dict):
            self.add((), "top level", "defaults", "must be a table: [defaults]")
            defaults_raw = {}
        defaults, default_targets, default_passes = self.options(defaults_raw, ("defaults",), "[defaults]", False)
        models_raw = data.get("model", [])
        if not isinstance(models_raw, list) or not all(isinstance(m, dict) for m in models_raw):
            self.add((), "top level", "model", "must be an array of tables: [[model]]")
            models_raw = []
        if not models_raw and not self.problems:
            self.add((), "pipeline", None, "no [[model]] table: nothing to run")
        models: list[ModelSpec] = []
        seen: dict[str, int | None] = {}
        for i, raw in enumerate(models_raw):
            name = raw.get("name")
            if isinstance(name, str) and name in seen:
                self.add(("model", i), f"[[model]] '{name}'", "name",
                         f"duplicate name (also the model on line {seen[name]}); names must be unique")
                continue
            seen[name] = self.lines.of(("model", i), "name")
            model = self.model(i, raw, defaults, default_targets, default_passes)
            if model is not None:
                models.append(model)
        return PipelineSpec(path, tuple(models))

    def options(self, raw: dict[str, Any], table: TablePath, where: str, is_model: bool
                ) -> tuple[ExportOptions, tuple[str, ...] | None, Any]:
        """The export options of one table, plus its raw targets and passes (checked later)."""
        known = {**FIELDS, **(MODEL_KEYS if is_model else {})}
        values: dict[str, Any] = {}
        for key, value in raw.items():
            fld = known.get(key)
            if fld is None:
                extra = " (name and source belong in a [[model]])" if key in MODEL_KEYS else ""
                self.add(table, where, key, f"unknown key{_did_you_mean(key, known)}{extra}")
                continue
            why = check_value(key, fld, value)
            if why:
                self.add(table, where, key, why)
                continue
            if key in ("targets", "passes") or key in MODEL_KEYS:
                continue
            values[key] = self.path(table, where, key, value) if fld.path else coerce(key, value)
        targets = tuple(coerce("targets", raw["targets"])) if isinstance(raw.get("targets"), (list, str)) \
            and check_value("targets", FIELDS["targets"], raw["targets"]) is None else None
        return ExportOptions(**{k: v for k, v in values.items() if v is not None}), targets, raw.get("passes")

    def path(self, table: TablePath, where: str, key: str, value: str) -> Path | None:
        p = (self.base / Path(value).expanduser()).resolve()
        if not p.exists():
            self.add(table, where, key, f"no such file: {p}")
            return None
        return p

    def model(self, i: int, raw: dict[str, Any], defaults: ExportOptions, default_targets: tuple[str, ...] | None,
              default_passes: Any) -> ModelSpec | None:
        table: TablePath = ("model", i)
        name = raw.get("name")
        where = f"[[model]] '{name}'" if isinstance(name, str) else f"[[model]] #{i + 1}"
        own, targets, passes = self.options(raw, table, where, True)
        if "name" not in raw:
            self.add(table, where, "name", "missing: every model needs a unique name")
        elif isinstance(name, str) and not _NAME.match(name):
            self.add(table, where, "name", "must be letters, digits, '.', '_' or '-' (it names a folder), "
                                           "starting with a letter or digit")
        source = self.source(table, where, raw)
        targets = targets if targets is not None else default_targets or ("onnx",)
        if source is None or not isinstance(name, str) or not _NAME.match(name):
            return None
        options = own.over(defaults)
        passes_by_target = self.passes(table, where, passes if "passes" in raw else default_passes, targets,
                                       "passes" in raw)
        stages = _Planner(self, table, where).plan(source, targets, passes_by_target, options, own)
        return ModelSpec(name, source, targets, passes_by_target, options, self.lines.of(table), stages)

    def source(self, table: TablePath, where: str, raw: dict[str, Any]) -> str | None:
        src = raw.get("source")
        if src is None:
            self.add(table, where, "source", "missing: what to convert (a file, a directory or package.module:callable)")
            return None
        if not isinstance(src, str):
            return None  # said already by options()
        path = (self.base / Path(src).expanduser()).resolve()
        if path.exists():
            return str(path)
        if _IMPORT_PATH.match(src):
            return src
        self.add(table, where, "source", f"no such file: {path}")
        return None

    def passes(self, table: TablePath, where: str, raw: Any, targets: tuple[str, ...], own: bool
               ) -> dict[str, tuple[str, ...]]:
        if raw is None:
            return {}
        ptable = table if own else ("defaults",)
        if isinstance(raw, (list, str)) or not isinstance(raw, dict):
            specs = tuple(raw) if isinstance(raw, list) else (raw,)
            if not all(isinstance(s, str) for s in specs):
                self.add(ptable, where, "passes", "must be a list of pass specs, or a table of such lists "
                                                       "per target ([model.passes] onnx = [\"quantize\"])")
                return {}
            return dict.fromkeys(targets, specs)
        out: dict[str, tuple[str, ...]] = {}
        for target, specs in raw.items():
            if check_value(target, FIELDS["inputs"], specs):
                self.add(ptable, where, f"passes.{target}", "must be a list of pass specs, e.g. [\"quantize\"]")
            elif target not in targets and own:
                self.add(ptable, where, f"passes.{target}",
                         f"'{target}' is not one of this model's targets ({', '.join(targets)})")
            elif target in targets:
                out[target] = tuple([specs] if isinstance(specs, str) else specs)
        return out


class _Planner:
    """Each model x target planned with converter.plan (no framework is imported): an unknown
    target or pass, a pass that does not fit the route, bad pass options: problems, before any work."""

    def __init__(self, checker: _Checker, table: TablePath, where: str) -> None:
        self.checker, self.table, self.where = checker, table, where

    def plan(self, source: str, targets: tuple[str, ...], passes: Mapping[str, tuple[str, ...]],
             options: ExportOptions, own: ExportOptions) -> dict[str, tuple[str, ...]]:
        from .. import registry
        from ..passes import parse_pass_spec
        from ..plan import plan
        from .options import stage_options

        fmt = registry.format_of(source)
        if fmt is None:
            self.checker.add(self.table, self.where, "source", "not a model convertkit can read (a .pt2, .pt, .onnx, "
                             ".keras, .h5, .pb file, a SavedModel, TF.js or Hugging Face directory, or "
                             "package.module:callable)")
            return {}
        self._options(options, own, passes)
        known = registry.targets()
        stages: dict[str, tuple[str, ...]] = {}
        for target in targets:
            if target not in known:
                self.checker.add(self.table, self.where, "targets",
                                 f"unknown target '{target}'{_did_you_mean(target, known)}; one of {', '.join(known)}")
                continue
            key = f"passes.{target}" if target in passes else "targets"
            try:
                specs = [parse_pass_spec(p) for p in passes.get(target, ())]
                if target == fmt and not specs:
                    raise UsageError(f"the source is already a {target} model and no pass is asked for it",
                                     hint=f"add [model.passes] {target} = [...] or drop the target")
                pipeline = plan(registry.get_format(fmt), registry.get_format(target), stage_options(options), specs)
            except ConvertkitError as exc:
                self.checker.add(self.table, self.where, key, exc.one_line())
                continue
            stages[target] = tuple(s.name for s in pipeline.stages)
        return stages

    def _options(self, options: ExportOptions, own: ExportOptions, passes: Mapping[str, tuple[str, ...]]) -> None:
        """Options that only fit together with others (as api.export checks them at run time)."""
        from ..errors import UsageError as _Usage
        from ..parity.inputs import parse_input_spec

        for spec in options.inputs or ():
            try:
                parse_input_spec(spec)
            except _Usage as exc:
                self.checker.add(self.table, self.where, "inputs", exc.one_line())
        if options.samples_from in ("data", "mixed") and options.sample_data is None:
            self.checker.add(self.table, self.where, "samples_from",
                             f"'{options.samples_from}' needs real data: set sample_data")
        if own.calibration is not None and not any(is_static(specs) for specs in passes.values()):
            self.checker.add(self.table, self.where, "calibration",
                             "applies to static quantization, which no pass of this model asks for "
                             "(add quantize:mode=static)")


def _did_you_mean(word: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(known), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""
