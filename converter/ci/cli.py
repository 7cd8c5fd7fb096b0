"""``convertkit run`` and ``convertkit cache``: click only at import time (``convertkit --help``
stays fast); the rest is imported when a command runs."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from typing import Any

import click

FILE_FORMAT = """\b
The pipeline file (TOML; paths are relative to it):
  [defaults]                      # any export option, for every model
  samples = 3                     # also: seed, atol, rtol, opset, exporter,
  tfjs_backend = "wasm"           #   tfjs_format, tfjs_layout, onnx_to_tf,
                                  #   validate = final|each|none, timeout, ...
  [[model]]
  name = "classifier"             # unique: OUTDIR/classifier/<target>/
  source = "models/classifier.pt2"  # anything `convertkit export` takes
  inputs = ["x:batch,3,224,224"]  # --input specs (optional)
  sample_data = "data/images.npz" # --inputs (optional)
  targets = ["onnx", "tfjs"]      # one artifact each [default: onnx]
  atol = 1e-4                     # any export option overrides [defaults]
  [model.passes]                  # optional, per target
  onnx = ["quantize"]
  tfjs = ["quantize:dtype=uint8"]

\b
Writes OUTDIR/NAME/TARGET/ (artifact + report.json), OUTDIR/NAME/TARGET.log
and OUTDIR/summary.json (one row per model x target). Artifacts are cached
in $CONVERTKIT_CACHE (default ~/.cache/convertkit): an unchanged model x
target is restored, not converted again.

\b
Exit codes:
  0  every model x target passed
  1  a parity check failed (and nothing worse)
  2  a bad pipeline file (each problem with its line and key; nothing
     was run), or bad input of a model
  3  a conversion failed (or a model x target ran past its timeout)
  4  internal error in convertkit (a bug)"""

REPORTS = {"junit": "JUnit XML", "markdown": "Markdown", "html": "HTML"}


@click.command("run", epilog=FILE_FORMAT, context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("pipeline", type=click.Path(dir_okay=False))
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False), required=True,
              help="Output directory: OUTDIR/NAME/TARGET/ per model x target, and OUTDIR/summary.json.")
@click.option("--only", metavar="NAME[,NAME]", help="Run these models only.")
@click.option("--target", metavar="TARGET", help="Make this target only (onnx, tf, tfjs).")
@click.option("-j", "--jobs", type=click.IntRange(1, 512), help="Model x target jobs at a time, each in its own "
              "process [default: one per core, ~1 GiB of free memory each].")
@click.option("--dry-run", is_flag=True, help="Print the planned stages per model x target and exit 0.")
@click.option("--no-cache", is_flag=True, help="Convert everything again; neither read nor write the cache.")
@click.option("-q", "--quiet", is_flag=True, help="Print only the final summary.")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: child processes here; ray: Ray tasks (pip install 'convertkit[ray]').")
@click.option("--address", metavar="ADDR", help="With --executor ray: the Ray cluster [default: RAY_ADDRESS, "
              "else a local Ray runtime].")
@click.option("--junit", type=click.Path(dir_okay=False), metavar="FILE", help="Also write a JUnit XML report.")
@click.option("--markdown", type=click.Path(dir_okay=False), metavar="FILE", help="Also write a Markdown summary.")
@click.option("--html", type=click.Path(dir_okay=False), metavar="FILE", help="Also write an HTML report.")
def run(pipeline: str, out_dir: str, only: str | None, target: str | None, jobs: int | None, dry_run: bool,
        no_cache: bool, quiet: bool, executor: str, address: str | None, **reports: str | None) -> None:
    """Convert and validate every model of a PIPELINE file, as a CI step.

    \b
    Examples:
      convertkit run models.toml -o out/
      convertkit run models.toml -o out/ --only classifier --target tfjs
      convertkit run models.toml -o out/ --junit out/junit.xml --markdown "$GITHUB_STEP_SUMMARY"
      convertkit run models.toml -o out/ --dry-run
    """
    import time

    from .. import registry
    from ..errors import UsageError
    from . import execute as ex
    from .cache import Cache
    from .spec import SpecError, load

    started = time.monotonic()
    writers = {kind: _writer(kind) for kind, path in reports.items() if path}  # missing one: exit 2 before work
    if target is not None and target not in registry.targets():
        raise UsageError(f"--target '{target}' is not a target", hint=f"one of {', '.join(registry.targets())}")
    try:
        spec = load(pipeline)
    except SpecError as exc:
        for line in exc.lines():
            click.echo(f"convertkit: error: {line}", err=True)
        click.echo("convertkit: nothing was run (exit 2)", err=True)
        sys.exit(2)
    specs = spec.jobs(only.split(",") if only else (), target)
    if not specs:
        raise UsageError(f"nothing to run: no model of {pipeline} has target '{target}'" if target else
                         f"nothing to run in {pipeline}")
    cache = None if no_cache else Cache()
    planned = ex.plan_jobs(specs, Path(out_dir), use_cache=cache is not None)
    if dry_run:
        for line in ex.dry_run_lines(planned, cache):
            click.echo(line)
        return
    summary = _execute(pipeline, planned, Path(out_dir), executor, address, jobs, quiet, cache, started)
    for kind, write in writers.items():
        write(summary, Path(reports[kind]))
    sys.exit(summary.exit_code)


def _execute(pipeline: str, planned: list, out_dir: Path, executor: str, address: str | None, jobs: int | None,
             quiet: bool, cache: Any, started: float) -> Any:
    from . import execute as ex
    from .executor import default_jobs, make_executor
    from .progress import make_progress, print_summary

    runner = make_executor(executor, jobs or default_jobs(len(planned)), address)
    summary = ex.execute(pipeline, planned, out_dir, runner, make_progress(quiet), cache, started)
    print_summary(summary, str(out_dir / ex.SUMMARY))
    return summary


def _writer(kind: str) -> Any:
    """``converter.ci.<kind>.write(summary, path)``, or exit 2 when this convertkit has none."""
    from ..errors import MissingDependencyError

    try:
        return importlib.import_module(f"converter.ci.{kind}").write
    except ModuleNotFoundError as exc:
        if exc.name != f"converter.ci.{kind}":
            raise
        raise MissingDependencyError(f"--{kind}: this convertkit has no {REPORTS[kind]} report writer "
                                     f"(converter/ci/{kind}.py)", hint=f"drop --{kind}") from None


@click.group("cache", context_settings={"help_option_names": ["-h", "--help"]})
def cache() -> None:
    """The artifact cache of `convertkit run` ($CONVERTKIT_CACHE, default ~/.cache/convertkit)."""


@cache.command("info")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def cache_info(as_json: bool) -> None:
    """Where the cache is, how many entries it holds and their size."""
    from .cache import Cache

    info = Cache().info()
    if as_json:
        click.echo(json.dumps({"root": str(info.root), "entries": info.entries, "bytes": info.bytes}))
        return
    click.echo(f"cache: {info.root}\nentries: {info.entries}\nbytes: {info.bytes:,}")


@cache.command("clear")
def cache_clear() -> None:
    """Delete every entry of the cache."""
    from .cache import Cache

    before = Cache().clear()
    click.echo(f"removed {before.entries} entries ({before.bytes:,} bytes) from {before.root}")
