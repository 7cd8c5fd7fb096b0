"""``convertkit doctor``: is this machine's stack the one convertkit was tested with?

One small function per check, each returning a typed :class:`Check` row; :data:`CHECKS` is the
list the command runs (adding a check = adding a function to it). The rows:

- ``python``: the interpreter against the package's ``Requires-Python``;
- ``python packages (FILE)``: every pin of ``requirements/lock.txt`` and ``requirements/nodeps.txt``
  (or the files given with ``--lock`` / ``$CONVERTKIT_LOCK``) against the installed distributions
  (importlib.metadata; a local label such as ``+cpu`` matches, as pip's ``==`` does);
- ``node``: Node.js on PATH, at least the version ``package.json``'s ``engines`` asks;
- ``npm packages``: every package of the TF.js runtime's ``package-lock.json`` present, at its
  locked version, in ``node_modules`` (or ``$CONVERTKIT_NODE_MODULES``);
- ``cpu``: the int8-relevant CPU flags (converter.passes.int8_target.cpu_features);
- ``cache``: ``$CONVERTKIT_CACHE`` (default ``~/.cache/convertkit``) can be created and written;
- ``chromium``: a Chromium for the HTML report's browser check (informational unless ``--browser``,
  which also renders a page headless);
- ``ray``: with ``--ray``, Ray is installed (at its pinned version, when the lock pins it) and imports.

Exit 0 when nothing FAILs (WARN rows are advice), 2 (bad environment, as a missing framework is
for every other command) when something a command needs is broken. Stdlib and click at import
time; rich, packaging and the checks' own imports load when the command runs.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from .checks import CHECKS, DEFAULT_LOCKS, Check, Options, Result, Status, diagnose

__all__ = ["CHECKS", "Check", "Options", "Result", "Status", "default_options", "diagnose", "doctor", "render"]


def default_options(locks: tuple[str, ...] = (), ray: bool = False, browser: bool = False) -> Options:
    from ..ci.cache import default_root
    from ..formats.tfjs.runner import NODE_DIR

    modules = os.environ.get("CONVERTKIT_NODE_MODULES")
    lock_paths = tuple(Path(p) for p in locks) or tuple(p for p in DEFAULT_LOCKS if p.is_file())
    return Options(lock_paths, Path(modules).resolve() if modules else NODE_DIR / "node_modules",
                   NODE_DIR / "package-lock.json", default_root(), ray, browser)


def render(result: Result) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    colour = {Status.OK: "green", Status.WARN: "yellow", Status.FAIL: "bold red"}
    fixes = any(c.fix for c in result.checks)  # an all-OK table needs no "what to do" column
    table = Table(show_edge=False)
    for col in ("check", "status", "detail", "what to do")[:4 if fixes else 3]:
        table.add_column(col, overflow="fold")
    for c in result.checks:
        cells = [escape(c.name), f"[{colour[c.status]}]{c.status.value}[/]", escape(c.detail), escape(c.fix)]
        table.add_row(*cells[:4 if fixes else 3])
    console = Console()
    if not console.is_terminal:  # a CI log: long rows read better than narrow wrapped columns
        console.width = max(console.width, 140)
    console.print(table)


@click.command("doctor", context_settings={"help_option_names": ["-h", "--help"]}, epilog="""\b
Exit codes:
  0  nothing failed (WARN rows are advice)
  2  something a command needs is broken (a FAIL row)""")
@click.option("--lock", "locks", multiple=True, type=click.Path(dir_okay=False), metavar="FILE", envvar="CONVERTKIT_LOCK",
              help="Requirements file(s) to check the installed packages against, repeatable (also "
                   "CONVERTKIT_LOCK, paths separated by ':') [default: requirements/lock.txt and nodeps.txt].")
@click.option("--ray", is_flag=True, help="Also check Ray (convertkit run --executor ray).")
@click.option("--browser", is_flag=True, help="Require Chromium and render a page headless with it.")
@click.option("--json", "as_json", is_flag=True, help="Print the checks as JSON (schema convertkit.doctor/1).")
def doctor(locks: tuple[str, ...], ray: bool, browser: bool, as_json: bool) -> None:
    """Check this machine's stack against what convertkit was tested with: the Python
    packages against the lock, Node.js and the TF.js runtime's npm packages, the CPU's int8
    features, a writable cache, Chromium, and Ray if asked.

    \b
    Examples:
      convertkit doctor
      convertkit doctor --json
      convertkit doctor --ray --browser
    """
    from ..errors import UsageError

    missing = [p for p in locks if not Path(p).is_file()]
    if missing:
        raise UsageError(f"--lock {missing[0]}: no such file", hint="give a requirements file of name==version lines")
    result = diagnose(default_options(locks, ray, browser))
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2))
    else:
        render(result)
    if result.failed:
        names = ", ".join(c.name for c in result.failed)
        click.echo(f"convertkit doctor: {len(result.failed)} check(s) failed: {names}", err=True)
    sys.exit(result.exit_code)
