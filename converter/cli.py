"""The ``convertkit`` command: parse -> plan -> run -> render -> exit code. Thin on purpose; the
work is in :mod:`converter.api`. Nothing heavy is imported until a command runs."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from .errors import ConvertkitError

EXIT_CODES = """\b
Exit codes:
  0  converted and validated (or validated, for `validate`)
  1  parity failed: the model was written for inspection, the report says FAILED
  2  usage or bad input (missing/corrupt file, bad --input, missing dependency,
     inputs the source model itself cannot run, an -o that cannot be written)
  3  conversion failed (converter error, unsupported op, a result the converter's
     own check found wrong: the hop and first diverging node are named)
  4  internal error in convertkit (a bug: the traceback is shown)"""


class _Cli(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ConvertkitError as exc:
            if ctx.params.get("debug") or os.environ.get("CONVERTKIT_DEBUG"):
                raise
            click.echo(f"convertkit: error: {exc.one_line()}", err=True)
            ctx.exit(exc.exit_code)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except Exception:
            import traceback

            traceback.print_exc()
            click.echo("convertkit: internal error (a bug in convertkit; please report it with the traceback above)",
                       err=True)
            ctx.exit(4)


@click.group(cls=_Cli, epilog=EXIT_CODES, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks for errors (also CONVERTKIT_DEBUG=1).")
@click.version_option(package_name="convertkit", prog_name="convertkit")
def main(debug: bool) -> None:
    """Convert PyTorch, ONNX, Hugging Face, Keras and TensorFlow models to ONNX and TF.js, optimize
    them, and prove, by running the result in its own runtime, that it computes what the original did."""
    import logging

    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, format="%(name)s: %(message)s")


def _input_options(f: Any) -> Any:
    opts = [
        click.option("--input", "-i", "inputs", multiple=True, metavar="NAME:DIMS[:DTYPE[:LOW..HIGH]]",
                     help="An input spec, repeatable, e.g. x:batch,3,224,224 (a name marks a dynamic dim) or "
                          "ids:1,16:int64:0..30522 (integer range, HIGH exclusive)."),
        click.option("--inputs", "feeds", type=click.Path(dir_okay=False), metavar="FEEDS.npz",
                     help="Real sample data: an .npz with one array per input name."),
        click.option("--weights", type=click.Path(dir_okay=False), help="State dict (.pt/.pth or .safetensors) "
                     "for a package.module:callable source."),
        click.option("--trust-code", is_flag=True, help="Allow loaders that run code from the file "
                     "(pickled nn.Module, Keras Lambda layers)."),
        click.option("--signature", metavar="NAME", help="The signature of a TF SavedModel to use "
                     "[default: serving_default]."),
        click.option("--task", metavar="TASK", help="The head of a Hugging Face model directory: "
                     "text-classification, feature-extraction, ... [default: from its config.json]."),
        click.option("--atol", type=float, help="Absolute tolerance (default 1e-4 for fp32)."),
        click.option("--rtol", type=float, help="Relative tolerance (default 1e-3 for fp32)."),
        click.option("--samples", type=click.IntRange(1, 100), default=3, show_default=True,
                     help="Seeded samples to validate on (dynamic dims get several sizes)."),
        click.option("--seed", type=int, default=0, show_default=True, help="Seed for the sample inputs."),
        click.option("--samples-from", type=click.Choice(["data", "random", "mixed"]), help="With --inputs: the other "
                     "samples follow the data's domain (data, the default), are seeded random, or alternate (mixed)."),
        click.option("--tfjs-backend", type=click.Choice(["wasm", "cpu", "webgl"]), default="wasm", show_default=True,
                     help="TF.js backend that runs TF.js models during validation (webgl: with --browser)."),
        click.option("--browser", type=click.Choice(["chromium"]), help="Validate TF.js (and, with --onnx-runtime "
                     "web, onnxruntime-web) inside headless Chromium, served from 127.0.0.1, instead of Node "
                     "(`make install-browser`; CONVERTKIT_CHROMIUM picks the executable)."),
        click.option("--onnx-runtime", type=click.Choice(["python", "web", "both"]), default="python",
                     show_default=True, help="Where ONNX models are validated: onnxruntime in Python, onnxruntime-web "
                     "(wasm, under Node; ops it lacks are named first, exit 3), or both. With web, -p quantize picks "
                     "formats onnxruntime-web runs."),
        click.option("--json", "as_json", is_flag=True, help="Print the report as JSON on stdout."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def _pass_option(f: Any) -> Any:
    f = click.option("--calibration", type=click.Path(dir_okay=False), metavar="FEEDS.npz",
                     help="Calibration data for -p quantize:mode=static (default: the seeded validation samples, "
                          "with a warning: real data is better).")(f)
    return click.option("-p", "--pass", "passes", multiple=True, metavar="NAME[:key=value,...]",
                        help="An optimization pass, repeatable, applied in order: quantize, "
                             "quantize:mode=static, fp16, prune:sparsity=0.5, simplify, ... "
                             "(NAME@FORMAT picks the format on the route).")(f)


def _card_options(f: Any) -> Any:
    """The model card's licence and the typed JS/TS module beside a TF.js or ONNX model (converter.jsmodule)."""
    f = click.option("--no-js", "no_js", is_flag=True, help="Do not write model.js + model.d.ts (a typed module "
                     "for JS/TS apps: load, predict) beside a TF.js or ONNX model.")(f)
    f = click.option("--require-license", is_flag=True, help="Exit 2 before any work when the model's licence is "
                     "unknown (no --license, none in a Hugging Face README.md or config.json).")(f)
    return click.option("--license", metavar="SPDX", help="The model's licence for its model card, e.g. apache-2.0 "
                        "[default: what a Hugging Face model declares, else unknown].")(f)


def _js_module(kw: dict[str, Any]) -> dict[str, Any]:
    kw["js_module"] = not kw.pop("no_js")
    return kw


def _runtime(kw: dict[str, Any]) -> dict[str, Any]:
    """CLI options that go to the runtimes rather than to the stages."""
    options = {"backend": kw.pop("tfjs_backend"), "onnx_runtime": kw.pop("onnx_runtime"), "browser": kw.pop("browser")}
    from .browser import check_options

    check_options(**options)  # no Chromium, or webgl without a browser: exit 2 before any work
    return options


def _finish(report: Any, as_json: bool) -> None:
    from .report import render

    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
    render(report)
    sys.exit(report.exit_code)


@main.command()
@click.argument("source")
@click.option("--to", "to", default="onnx", show_default=True, metavar="FORMAT", help="Target format: onnx, tf or tfjs.")
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False), help="Output directory "
              "[default: ./convertkit-out/<source name>-<format>].")
@_input_options
@click.option("--output-names", help="Comma-separated names for the model's outputs (default output, output_N); "
              "for a frozen TF graph, the output tensors (e.g. probs:0).")
@click.option("--opset", type=int, help="ONNX opset (default 18).")
@click.option("--exporter", type=click.Choice(["auto", "dynamo", "torchscript"]), default="auto", show_default=True,
              help="torch.onnx exporter; auto tries dynamo, then TorchScript (TorchScript first when the "
                   "route goes on to tf/tfjs; for a Hugging Face model: optimum first).")
@click.option("--tfjs-format", type=click.Choice(["graph", "layers"]), help="TF.js model format "
              "[default: graph; layers is for Keras sources: trainable in the browser].")
@click.option("--tfjs-layout", type=click.Choice(["nchw", "nhwc"]), help="Layout of 4-D inputs of a TF.js (or TF) "
              "model converted from ONNX/PyTorch [default: nchw, as the source takes them]; nhwc is faster in TF.js.")
@click.option("--onnx-to-tf", "onnx_to_tf", type=click.Choice(["auto", "own", "onnx2tf"]), default="auto",
              show_default=True, help="ONNX -> TensorFlow converter (routes to tf/tfjs from ONNX/PyTorch): auto tries "
              "convertkit's own lowering (dynamic dims kept), then onnx2tf; own fails naming ops it lacks.")
@_pass_option
@_card_options
@click.option("--no-check", is_flag=True, help="Skip validation (the report says so).")
@click.option("--validate", "validate_mode", type=click.Choice(["final", "each"]), default="final", show_default=True,
              help="each: also compare every intermediate artifact with the source, to see which hop drifts.")
@click.option("--keep-intermediates", is_flag=True, help="Keep every stage's artifact under OUT/intermediates.")
@click.option("--force", is_flag=True, help="Replace OUT even if convertkit did not write it.")
def export(source: str, to: str, out_dir: str | None, output_names: str | None, no_check: bool,
           validate_mode: str, **kw: Any) -> None:
    """Convert SOURCE to another format and validate it.

    \b
    SOURCE is a torch.export .pt2, a TorchScript .pt, an .onnx file,
    package.module:callable (returning an nn.Module; add --weights FILE),
    a Keras .keras / .h5 model or tf_keras SavedModel directory, a TF
    SavedModel directory (add --signature NAME for another signature), a
    frozen TF graph .pb (add --output-names), or a Hugging Face model
    directory (config.json + weights; add --task to pick the head).

    \b
    Examples:
      convertkit export model.pt2 --to onnx -o out/
      convertkit export model.pt2 --to tfjs --validate each -o web/
      convertkit export mypkg.models:build --weights w.safetensors -i x:batch,3,224,224 -o out/
      convertkit export net.ts.pt -i ids:batch,128:int64:0..30522 --atol 1e-5 -o out/
      convertkit export model.keras -o out/
      convertkit export saved_model_dir/ --signature predict -o out/
      convertkit export frozen.pb -i x:batch,10 --output-names probs:0 -o out/
      convertkit export bert_dir/ --task feature-extraction -o out/
    """
    from . import api

    as_json = kw.pop("as_json")
    if out_dir is None:
        name = Path(source.split(":")[-1]).name.split(".")[0] or "model"
        out_dir = str(Path("convertkit-out") / f"{name}-{to}")
    names = tuple(n.strip() for n in output_names.split(",")) if output_names else ()
    for key in ("tfjs_format", "tfjs_layout"):
        if kw.get(key) is None:
            kw.pop(key)
    if "tfjs_layout" in kw:  # the stage's option: "source" (NCHW for a PyTorch model) or "nhwc"
        kw["tfjs_layout"] = "source" if kw["tfjs_layout"] == "nchw" else kw["tfjs_layout"]
    report = api.export(source, to=to, out_dir=out_dir, check=not no_check, output_names=names,
                        validate_each=validate_mode == "each", runner_options=_runtime(kw), **_js_module(kw))
    _finish(report, as_json)


@main.command()
@click.argument("model")
@_pass_option
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False), required=True, help="Output directory.")
@_input_options
@_card_options
@click.option("--no-check", is_flag=True, help="Skip validation (the report says so).")
@click.option("--force", is_flag=True, help="Replace OUT even if convertkit did not write it.")
def optimize(model: str, passes: tuple[str, ...], out_dir: str, no_check: bool, **kw: Any) -> None:
    """Apply passes to an existing ONNX or TF.js MODEL and validate the result against it.

    \b
    Examples:
      convertkit optimize model.onnx -p quantize -o out/int8
      convertkit optimize model.onnx -p simplify -p fp16 -o out/fp16
      convertkit optimize tfjs_dir/ -p quantize:dtype=uint16 -o out/web
    """
    from . import api

    as_json = kw.pop("as_json")
    report = api.optimize(model, passes, out_dir, check=not no_check, runner_options=_runtime(kw), **_js_module(kw))
    _finish(report, as_json)


@main.command()
@click.argument("reference")
@click.argument("candidate")
@_input_options
def validate(reference: str, candidate: str, **kw: Any) -> None:
    """Run REFERENCE and CANDIDATE on the same inputs and compare their outputs.

    \b
    Example:
      convertkit validate model.pt2 out/model.onnx --samples 5
    """
    from . import api

    as_json = kw.pop("as_json")
    _finish(api.validate(reference, candidate, runner_options=_runtime(kw), **kw), as_json)


@main.command()
@click.argument("model")
@click.option("--weights", type=click.Path(dir_okay=False), help="State dict for a package.module:callable model.")
@click.option("--trust-code", is_flag=True, help="Allow loaders that run code from the file "
                     "(pickled nn.Module, Keras Lambda layers).")
@click.option("--signature", metavar="NAME", help="The signature of a TF SavedModel to show "
              "[default: serving_default].")
@click.option("--task", metavar="TASK", help="The head of a Hugging Face model directory "
              "[default: from its config.json].")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def inspect(model: str, weights: str | None, trust_code: bool, signature: str | None, task: str | None,
            as_json: bool) -> None:
    """Show a model's inputs, outputs, op histogram, parameters, size, opset and producer."""
    from . import api

    info = api.inspect(model, weights=weights, trust_code=trust_code, signature=signature, task=task)
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    from rich.console import Console
    from rich.markup import escape  # paths and names may hold brackets rich reads as markup
    from rich.table import Table

    console = Console()
    for key in ("format", "path", "bytes", "parameters", "kind", "task", "architecture", "library", "signature",
                "signatures", "opset", "producer", "nodes"):
        if info.get(key) is not None:
            console.print(f"[bold]{key}[/]: {escape(str(info[key]))}")
    for kind in ("inputs", "outputs"):
        if info.get(kind):
            t = Table(title=kind, title_justify="left", show_edge=False)
            for col in ("name", "shape", "dtype"):
                t.add_column(col)
            for s in info[kind]:
                t.add_row(escape(s["name"]), escape(str(s["shape"])), escape(str(s["dtype"])))
            console.print(t)
    if info.get("ops"):
        t = Table(title="ops", title_justify="left", show_edge=False)
        t.add_column("op")
        t.add_column("count", justify="right")
        for op, n in sorted(info["ops"].items(), key=lambda kv: (-kv[1], kv[0])):
            t.add_row(escape(op), str(n))
        console.print(t)


from .ci import cli as _ci  # noqa: E402  (click only: `convertkit run` and `convertkit cache`)
from .doctor import doctor as _doctor  # noqa: E402  (stdlib + click: `convertkit doctor`)

main.add_command(_ci.run)
main.add_command(_ci.cache)
main.add_command(_doctor)


def run(argv: list[str] | None = None) -> None:
    """The ``convertkit`` console script: :func:`main`, then a quick exit. Once TensorFlow is
    loaded, the interpreter's own teardown takes about a second after the work is done; by then
    every output is written (atomically) and the report printed (``deps.exit_now``)."""
    from .deps import exit_now, short_lived

    short_lived()  # this process ends with its command
    try:
        main.main(args=argv, prog_name="convertkit")
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
    exit_now(code)


if __name__ == "__main__":
    run()
