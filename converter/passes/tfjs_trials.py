"""The candidates a TF.js weight pass tries (``tfjs_weights``, ``tfjs_weight_map``): each is written
with tensorflowjs's write_weights into its own directory, judged (the pipeline's check against the
ORIGINAL model, or else this pass's input model in TF.js on seeded feeds), and recorded; the chosen
one is moved into the pass's output directory."""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core import Artifact, Tolerance
from ..errors import ConvertkitError

if TYPE_CHECKING:
    from .tfjs_weights import Weights


@dataclass(frozen=True)
class Variant:
    dtypes: dict[str, str]  # float32 weight -> written dtype (float32: unchanged)
    kept: tuple[tuple[str, str, str], ...] = ()  # (weight, dtype, why) raised by a remedy
    label: str = "as asked"


class Trials:
    """Writes candidates under ``work``, judges each, records the attempts and the best one."""

    def __init__(self, w: Weights, work: Path, judge: Judge, aim: float | None = None) -> None:
        self.w, self.work, self.judge, self.aim = w, work, judge, aim
        self.attempts: list[dict[str, Any]] = []
        self.best: tuple[float, Path, Variant, dict[str, Any]] | None = None
        self.passed: list[tuple[int, Path, Variant]] = []  # (bytes, dir, variant) that met the tolerance
        self.aimed: list[Variant] = []  # ... and the aim

    def __call__(self, v: Variant) -> tuple[bool, dict[str, Any]]:
        """Whether ``v`` meets the tolerance (and the aim's cosine, where one is set)."""
        path = self.work / f"candidate-{len(self.attempts)}"
        nbytes = self.w.write(v.dtypes, path)
        passed, summary, info = self.judge(self.judge.src.with_(path=path))
        if passed:
            self.passed.append((nbytes, path, v))
            if self.aim is not None and (info.get("cosine") or 0.0) < self.aim:
                summary = f"passed the tolerance, short of the aim: cosine {info.get('cosine')} < {self.aim:.6g}"
                passed = False
            else:
                self.aimed.append(v)
        self.attempts.append({"variant": v.label, "weight_bytes": nbytes, "result": summary, **info})
        if self.best is None or _score(info) > self.best[0]:
            self.best = (_score(info), path, v, info)
        return passed, info

    def keep(self, chosen: Variant | None, out_dir: Path) -> Variant:
        """Move the chosen candidate (else the smallest that met the tolerance, else the best) to
        ``out_dir``."""
        assert self.best is not None
        if chosen is not None:
            path = next(p for _, p, v in self.passed if v is chosen)
        elif self.passed:
            _, path, chosen = min(self.passed, key=lambda t: t[0])
        else:
            path, chosen = self.best[1], self.best[2]
        for f in path.iterdir():
            shutil.move(str(f), str(out_dir / f.name))
        shutil.rmtree(self.work, ignore_errors=True)
        return chosen

    def verdict(self, v: Variant, target: str) -> str:
        assert self.best is not None
        if any(c is v for c in self.aimed):
            aim = f" and the aim, cosine >= {self.aim:.6g}" if self.aim is not None else ""
            return f"met the {target} tolerance{aim} ({v.label})"
        if any(c is v for *_, c in self.passed):
            return (f"met the {target} tolerance but no variant tried reached the aim (cosine >= {self.aim:.6g}); "
                    f"kept the smallest that met the tolerance ({v.label})")
        return (f"no variant met the tolerance (tried {len(self.attempts)}); the best ({v.label}, cosine "
                f"{self.best[3].get('cosine')}) is kept for inspection: validation will fail")


class Judge:
    """A candidate's parity: the pipeline's check (against the original) when given, else against
    this pass's input model, run in TF.js on seeded feeds."""

    def __init__(self, src: Artifact, check: Any, tolerance: Tolerance) -> None:
        self.src, self.check, self.tolerance = src, check, tolerance
        self._feeds: list[dict[str, Any]] | None = None
        self._refs: list[dict[str, Any]] | None = None

    @property
    def against(self) -> str:
        return "the original model (check)" if self.check else "this pass's input model, in TF.js (no check was given)"

    def __call__(self, artifact: Artifact) -> tuple[bool, str, dict[str, Any]]:
        from ..parity.validate import run, validate

        if self.check is None and self._feeds is None:
            from ..parity.inputs import make_feeds

            self._feeds = make_feeds(self.src.inputs, samples=3, seed=0)
            self._refs = run(self.src, self._feeds)
        try:
            report = self.check(artifact) if self.check is not None else \
                validate(self.src, artifact, self._feeds or [], self.tolerance, reference_outputs=self._refs)
        except ConvertkitError as exc:  # TF.js refused the candidate: a failed variant, not a failed pass
            return False, f"does not run in TF.js: {exc.one_line()[:250]}", {"cosine": None, "max_abs": None}
        cos = [o.cosine for o in report.outputs if o.cosine is not None]
        info: dict[str, Any] = {"cosine": round(min(cos), 6) if cos else None,
                                "max_abs": max((o.max_abs or 0.0) for o in report.outputs) if report.outputs else None}
        top = [o.top1 for o in report.outputs if o.top1 is not None]
        if top:
            info["top1"] = min(top)
        return bool(report), "passed" if report else report.summary()[:300], info


def _score(info: Mapping[str, Any]) -> float:
    c = info.get("cosine")
    return float(c) if c is not None else -2.0
