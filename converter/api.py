"""The Python API. The CLI is a thin layer over these functions.

    import converter
    report = converter.export("model.pt2", to="onnx", out_dir="out/")
    report = converter.export(my_module, to="onnx", out_dir="out/", example_inputs=(torch.randn(1, 3, 32, 32),))
    parity = converter.validate("model.pt2", "out/model.onnx")
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import shutil
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from . import isolate, jsmodule, registry
from .core import Artifact, Format, TensorSpec
from .deps import framework_loading
from .errors import UsageError
from .fsutil import atomic_dir, check_destination, work_dir
from .parity import runtimes
from .parity.validate import KnownOutputs
from .parity.validate import run as run_outputs
from .passes import PassSpec, parse_pass_spec
from .pipeline import Checker, localise, refuse_known_wrong, run_pipeline, stage_dir
from .plan import plan
from .prepare import InputsArg, parse_inputs, prepare_inputs, reference_checker
from .report import RunReport

log = logging.getLogger(__name__)


def load(source: Any, *, weights: str | None = None, trust_code: bool = False, signature: str | None = None,
         output_names: Sequence[str] = (), task: str | None = None) -> Artifact:
    """Open a model (path, import path, or in-memory torch.nn.Module) as an Artifact. ``signature``
    picks a TF SavedModel's signature (default serving_default); ``output_names`` lets a format
    check them early (a frozen TF graph's output tensors); ``task`` picks a Hugging Face model's head
    (text-classification, feature-extraction, ...; default: from its config.json)."""
    if isinstance(source, Artifact):
        return source
    if isinstance(source, (str, Path)):
        with framework_loading():  # in the CLI: a model's code imports its framework (transformers, ...)
            art = _open(source, weights=weights, trust_code=trust_code, signature=signature,
                        output_names=output_names, task=task)
        if signature and art.meta.get("signature") != signature:
            kind = art.meta.get("kind") or art.format.name
            raise UsageError(f"--signature applies to a TensorFlow SavedModel, not to {art.label} ({art.format}: {kind})")
        _check_task(task, art)
        return art
    if task:
        raise UsageError("--task applies to a Hugging Face model directory, not to an in-memory model")
    if hasattr(source, "forward") and hasattr(source, "parameters"):
        fmt = registry.get_format("torch")
        return Artifact(fmt, None, meta={"kind": "module", "source": type(source).__name__}, obj=source.eval())
    raise UsageError(f"cannot use a {type(source).__name__} as a model",
                     hint="give a file path, package.module:callable, or a torch.nn.Module")


def _open(source: str | Path, *, signature: str | None = None, output_names: Sequence[str] = (),
          task: str | None = None, **options: Any) -> Artifact:
    if signature:
        options["signature"] = signature  # only when given: not every format takes them
    if task:
        options["task"] = task
    if output_names:
        options["output_names"] = tuple(output_names)
    return registry.open_source(str(source), **options)


def _check_task(task: str | None, *arts: Artifact) -> None:
    if task and not any(a.meta.get("kind") == "transformers" for a in arts):
        where = " nor ".join(f"{a.label} ({a.format})" for a in arts)
        raise UsageError(f"--task applies to a Hugging Face model directory, not to {where}")


def export(source: Any, to: str | Format | None = "onnx", out_dir: str | Path = "convertkit-out", *,
           inputs: InputsArg = None, feeds: str | Path | Mapping | None = None, example_inputs: Any = None,
           output_names: Sequence[str] = (), weights: str | None = None, trust_code: bool = False,
           signature: str | None = None, task: str | None = None, check: bool = True, atol: float | None = None,
           rtol: float | None = None, samples: int = 3, seed: int = 0, samples_from: str | None = None,
           opset: int | None = None, exporter: str | None = None,
           keep_intermediates: bool = False, force: bool = False, passes: Sequence[str | PassSpec] = (),
           validate_each: bool = False, runner_options: Mapping[str, Any] | None = None,
           calibration: str | Path | None = None, license: str | None = None, require_license: bool = False,
           js_module: bool = True, **stage_options: Any) -> RunReport:
    """Convert ``source`` to ``to`` in ``out_dir``, apply ``passes`` (``"quantize"``,
    ``"prune:sparsity=0.5"``, ...), and validate the result against the source.
    ``to=None`` keeps the source's format (what ``optimize`` does). ``samples_from`` (data, random,
    mixed; default data) says where the samples besides ``feeds`` come from. ``calibration`` (an .npz) is the
    data for every ``quantize:mode=static`` pass that names none. Extra keyword arguments are
    stage options by field name (e.g. ``tfjs_format="layers"``, or ``onnx_to_tf="own"`` / ``"onnx2tf"`` to
    choose the ONNX -> TensorFlow converter; default ``"auto"``); ``runner_options`` go to the
    runtimes (e.g. ``{"backend": "cpu"}`` for TF.js, ``{"onnx_runtime": "web"}`` to validate ONNX in
    onnxruntime-web, ``"both"`` in both runtimes; parity.runtimes).
    A TF.js or ONNX result carries a model card (jsmodule: source sha256, versions, passes, parity,
    ``license``: an SPDX id, else what a Hugging Face source declares, else "unknown"; with
    ``require_license`` unknown is a UsageError before any work) and, with ``js_module``, gets
    model.js + model.d.ts beside it (``load``/``predict`` for JavaScript and TypeScript apps).

    Raises a ConvertkitError subclass for bad input (exit 2) or a failed conversion (exit 3: also a
    stage whose own check found its result wrong, named with the first node it gets wrong where
    that can be found). Any other parity failure is not raised: the model is written for
    inspection and ``report.verdict`` is FAILED (exit 1)."""
    specs = tuple(p if isinstance(p, PassSpec) else parse_pass_spec(p) for p in passes)
    if calibration is not None:
        specs = _with_calibration(specs, str(calibration))
    inputs = parse_inputs(inputs)  # bad specs fail before any framework loads
    facts = jsmodule.SourceFacts(source, weights, jsmodule.licence_for(source, license, require=require_license))
    runner_options = dict(runner_options or {})
    if check and isinstance(to, (str, Format)):  # the target's runtime starts while the source loads
        _prewarm(str(to), runner_options)
    load_options = dict(weights=weights, trust_code=trust_code, signature=signature, output_names=tuple(output_names),
                        task=task)
    # a PyTorch source on a route through TensorFlow: its half may run in a child process (isolate.py)
    fmt = isolate.source_format(source, example_inputs)
    src = load(source, **load_options) if fmt is None else None
    src_format = src.format if src is not None else registry.get_format(fmt)
    target = src_format if to is None else to if isinstance(to, Format) else registry.get_format(to)
    if target == src_format and not specs:
        label = src.label if src is not None else str(source)
        raise UsageError(f"{label} is already a {target} model and no pass was asked for",
                         hint="give --to another format, or -p PASS")
    pipeline = plan(src_format, target, {"opset": opset, "exporter": exporter, **stage_options}, specs)
    if src is None and not isolate.worth_it(pipeline):
        src = load(source, **load_options)
    if check and target == src_format:
        _prewarm(src_format.name, runner_options)  # optimize: the source runs in the same runtime
    sources = (src.path,) if src is not None and src.path is not None else \
        (Path(source),) if src is None and Path(source).exists() else ()
    dest = check_destination(Path(out_dir), sources=sources, force=force)
    half = None
    if src is None:
        half = isolate.run(dict(source=str(source), load=load_options, inputs=inputs, feeds=feeds, samples=samples,
                                seed=seed, samples_from=samples_from, pipeline=pipeline, check=check, atol=atol, rtol=rtol,
                                runner_options=runner_options, validate_each=validate_each))
        # the model stayed in the child: its outputs did not (a sample it did not run loads it here)
        known = KnownOutputs(half.known, functools.partial(_reference_here, source, load_options, half.src))
        src, notes = half.src.with_(obj=known), half.notes
        checker = Checker(src, half.feeds, atol, rtol, runner_options) if check else None
    else:
        src, feed_list, notes = prepare_inputs(src, inputs, feeds, example_inputs=example_inputs, samples=samples,
                                               seed=seed, samples_from=samples_from)
        src = with_output_names(src, output_names)
        src, feed_list, checker = reference_checker(src, feed_list, notes, check=check, atol=atol, rtol=rtol,
                                                    runner_options=runner_options)
    report = RunReport("export" if to is not None else "optimize", {"location": src.meta.get("source"), "format": src.format.name,
                                  "kind": src.meta.get("kind")}, target.name,
                       inputs=[s.to_json() for s in src.inputs], notes=notes)
    _write(report, pipeline, src, dest, half, checker, facts, validate_each=validate_each,
           keep_intermediates=keep_intermediates, js_module=js_module)
    return report


def _write(report: RunReport, pipeline: Any, src: Artifact, dest: Path, half: isolate.SourceHalf | None,
           checker: Checker | None, facts: Any, *, validate_each: bool, keep_intermediates: bool,
           js_module: bool) -> None:
    """Run the pipeline into a temporary directory beside ``dest``, validate the result, add the card
    and the JS module, and rename it into place: whole or not at all."""
    # intermediates live beside OUTDIR, not in it, so that no stage's size counts another's files
    with _cleaned(half), atomic_dir(dest) as tmp, work_dir(dest) as work:
        done = [_adopt(half, stage_dir(work, 0, pipeline.stages[0]))] if half is not None else []
        final, report.stages, artifacts = run_pipeline(pipeline, src, tmp, work, checker=checker,
                                                       validate_each=validate_each, done=done)
        report.outputs = [s.to_json() for s in final.outputs]
        report.artifact = str(dest / final.path.relative_to(tmp)) if final.path else None
        if checker is not None:
            report.parity = runtimes.final_parity(checker, final, checker.tolerance_for(pipeline.stages))
            if not report.parity and len(pipeline.stages) > 1:
                report.notes.append(localise(pipeline, report.stages, artifacts, checker))
        # a stage that found its own result wrong: exit 3 (validated or not), nothing written
        refuse_known_wrong(pipeline, report.stages, artifacts, src, report.parity)
        if checker is None:
            report.notes.append("validation skipped (--no-check): nothing proves this model computes the same")
        # the card into the artifact, model.js + model.d.ts beside it: inside tmp, so whole or not at all
        jsmodule.finish(facts, src, final, report, pipeline.stages, js=js_module)
        for rec in report.stages[:-1]:
            rec.path = f"intermediates/{Path(rec.path).relative_to(work).parts[0]}" \
                if keep_intermediates and rec.path and Path(rec.path).is_relative_to(work) else None
        if keep_intermediates and any(work.iterdir()):
            shutil.copytree(work, tmp / "intermediates")
        report.write(tmp / "report.json")


def with_output_names(src: Artifact, output_names: Sequence[str]) -> Artifact:
    """Names for the outputs of a model that declares none (PyTorch)."""
    if output_names and not src.outputs:
        return src.with_(outputs=tuple(TensorSpec(n, None, "float32") for n in output_names))
    return src


@contextlib.contextmanager
def _cleaned(half: isolate.SourceHalf | None) -> Iterator[None]:
    """The child's directory goes, whatever happens (normally _adopt has moved its content already)."""
    try:
        yield
    finally:
        if half is not None:
            shutil.rmtree(half.where.parent, ignore_errors=True)


def _reference_here(source: Any, load_options: Mapping[str, Any], described: Artifact) -> Artifact:
    """The source the child described, with its model loaded in this process."""
    return described.with_(obj=load(source, **load_options).obj)


def _adopt(half: isolate.SourceHalf, target: Path) -> tuple[Any, Artifact]:
    """The first stage's result, written by the child, moved to where that stage writes here."""
    shutil.move(str(half.where), str(target))  # what is left of its directory goes in _cleaned
    result = half.result
    if result.path is not None and result.path.is_relative_to(half.where):
        result = result.with_(path=target / result.path.relative_to(half.where))
    record = dataclasses.replace(half.record, path=str(result.path) if result.path is not None else None)
    return record, result


def _prewarm(format_name: str, runner_options: Mapping[str, Any]) -> None:
    if format_name in registry.formats():
        registry.prewarm(format_name, **runner_options)


def _with_calibration(specs: tuple[PassSpec, ...], path: str) -> tuple[PassSpec, ...]:
    """``--calibration FEEDS.npz``: the data of each static quantization that names none."""
    static = [p.name == "quantize" and ("mode", "static") in p.options for p in specs]
    if not any(static):
        raise UsageError("--calibration applies to static quantization, which no -p asks for",
                         hint="add -p quantize:mode=static (dynamic quantization needs no data)")
    return tuple(dataclasses.replace(p, options=(*p.options, ("calibration", path)))
                 if is_static and "calibration" not in dict(p.options) else p for p, is_static in zip(specs, static))


def optimize(model: Any, passes: Sequence[str | PassSpec], out_dir: str | Path, **options: Any) -> RunReport:
    """Apply passes to an existing model (ONNX, TF.js) and validate the result against it."""
    if not passes:
        raise UsageError("optimize needs at least one pass", hint="e.g. -p quantize, -p fp16, -p simplify")
    return export(model, to=None, out_dir=out_dir, passes=passes, **options)


def validate(reference: Any, candidate: Any, *, inputs: InputsArg = None, feeds: str | Path | Mapping | None = None,
             example_inputs: Any = None, weights: str | None = None, trust_code: bool = False,
             signature: str | None = None, task: str | None = None, atol: float | None = None,
             rtol: float | None = None, samples: int = 3, seed: int = 0, samples_from: str | None = None,
             runner_options: Mapping[str, Any] | None = None) -> RunReport:
    """Compare any two models convertkit can run, on the same (given or seeded) inputs. ``signature``
    applies to whichever of the two is a TF SavedModel."""
    inputs = parse_inputs(inputs)
    runner_options = dict(runner_options or {})
    if isinstance(candidate, (str, Path)) and (fmt := registry.format_of(str(candidate))):
        _prewarm(fmt, runner_options)  # e.g. Node for a TF.js candidate starts while the reference loads
    ref = _load_for_signature(reference, signature, weights=weights, trust_code=trust_code, task=task)
    cand = _load_for_signature(candidate, signature, trust_code=trust_code, task=task)
    _check_task(task, ref, cand)
    if signature and signature not in (ref.meta.get("signature"), cand.meta.get("signature")):
        raise UsageError(f"--signature applies to a TensorFlow SavedModel; neither {ref.label} nor {cand.label} is one")
    if not ref.inputs and cand.inputs and not inputs and feeds is None and example_inputs is None:
        ref = ref.with_(inputs=cand.inputs)  # e.g. TorchScript vs ONNX: take the ONNX model's specs
    ref, feed_list, notes = prepare_inputs(ref, inputs, feeds, example_inputs=example_inputs, samples=samples, seed=seed,
                                           samples_from=samples_from)
    ref, feed_list, checker = reference_checker(ref, feed_list, notes, check=True, atol=atol, rtol=rtol,
                                                runner_options=runner_options)
    report = RunReport("validate", {"location": ref.meta.get("source"), "format": ref.format.name,
                                    "kind": ref.meta.get("kind")}, cand.format.name,
                       inputs=[s.to_json() for s in ref.inputs], artifact=cand.label, notes=notes)
    report.parity = runtimes.final_parity(checker, cand, checker.tolerance_for(()))
    return report


def _load_for_signature(source: Any, signature: str | None, *, task: str | None = None, **kw: Any) -> Artifact:
    """``load``, where ``signature`` and ``task`` (validate takes them for either side) may not apply
    to this one."""
    if (signature or task) and isinstance(source, (str, Path)):
        return _open(source, signature=signature, task=task, **kw)
    return load(source, **kw)


def inspect(model: Any, *, weights: str | None = None, trust_code: bool = False,
            signature: str | None = None, task: str | None = None) -> dict[str, Any]:
    art = load(model, weights=weights, trust_code=trust_code, signature=signature, task=task)
    info = {"format": art.format.name, "path": art.label, "bytes": art.size_bytes(),
            "inputs": [s.to_json() for s in art.inputs], "outputs": [s.to_json() for s in art.outputs]}
    info.update(registry.describe(art))
    return info


def outputs(model: Any, feeds: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Run a model on feeds in its own runtime (handy in notebooks)."""
    return run_outputs(load(model), feeds)
