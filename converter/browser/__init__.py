"""Validation inside a real browser (``--browser chromium``): TF.js on webgl, wasm or cpu and
onnxruntime-web on wasm run in headless Chromium (Debian's ``chromium``; no browser download),
where a web app runs them.

- ``server.py``: a local HTTP server on 127.0.0.1 that serves the artifact, the npm packages'
  browser builds, the runner page, and carries convertkit's frames (nodeproc.py) to and from it;
- ``driver.mjs``: a Node process that opens the page in Chromium with playwright-core;
- ``session.py``: both together, speaking frames like a Node runner (send/read);
- ``page/``: the runner page (TF.js and onnxruntime-web, the same protocol as the Node runners);
- ``runner.py``: the Runner classes validation uses, and the tolerance WebGL's precision asks for.

Stdlib only at import time.
"""

from __future__ import annotations

import os
import shutil

from ..errors import MissingDependencyError, UsageError

#: --browser values
BROWSERS = ("chromium",)
CHROMIUM_HINT = ("run `make install-browser` (Debian's chromium) or `apt-get install chromium`, "
                 "or point CONVERTKIT_CHROMIUM at a Chromium executable")


def find_chromium() -> str | None:
    """``$CONVERTKIT_CHROMIUM``, else ``chromium`` on PATH, else /usr/bin/chromium, when it can be run
    (the order doctor and the tests use)."""
    exe = os.environ.get("CONVERTKIT_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    return exe if os.path.isfile(exe) and os.access(exe, os.X_OK) else None


def chromium() -> str:
    """The Chromium executable, or MissingDependencyError (exit 2) saying how to get one."""
    exe = find_chromium()
    if exe is None:
        where = os.environ.get("CONVERTKIT_CHROMIUM") or "chromium on PATH or /usr/bin/chromium"
        raise MissingDependencyError(f"--browser chromium: no Chromium found ({where})", hint=CHROMIUM_HINT)
    return exe


def check_browser(browser: str | None) -> None:
    """A --browser value convertkit knows (None: validation stays in Node/Python)."""
    if browser is not None and browser not in BROWSERS:
        raise UsageError(f"unknown browser '{browser}'", hint=f"use one of: {', '.join(BROWSERS)}")


def check_options(backend: str = "wasm", browser: str | None = None, **_: object) -> None:
    """Runner options that cannot work, refused before any conversion (exit 2): an unknown browser,
    no Chromium, or the webgl backend outside a browser."""
    check_browser(browser)
    if browser is None:
        if backend == "webgl":
            raise UsageError("--tfjs-backend webgl runs in a browser", hint="add --browser chromium")
        return
    chromium()
    from .session import check_packages

    check_packages("driver", backend)  # playwright-core; the runtimes' packages are checked when used
