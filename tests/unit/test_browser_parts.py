"""converter/browser without a browser: what the page server serves and refuses, the frame channel,
and how the precision a page reports sets the tolerance and the note."""

from __future__ import annotations

import json
import struct
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from converter.browser import check_options, find_chromium
from converter.browser.runner import FP16_CLASS, ChromiumTfjsRunner, precision_text
from converter.browser.server import PageServer
from converter.core import Artifact, Format
from converter.errors import MissingDependencyError, UsageError


@pytest.fixture()
def server(tmp_path: Path):
    npm = tmp_path / "node_modules"
    (npm / "onnxruntime-web" / "dist").mkdir(parents=True)
    (npm / "onnxruntime-web" / "dist" / "ort.wasm").write_bytes(b"\0asm")
    (npm / "left-pad").mkdir()
    (npm / "left-pad" / "index.js").write_text("x")
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.json").write_text("{}")
    (tmp_path / "secret.txt").write_text("no")
    s = PageServer({"/npm/": npm, "/model/": model})
    yield s
    s.close()


def _get(url: str) -> tuple[int, bytes, str]:
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status, r.read(), r.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        return exc.code, b"", ""


def test_server_serves_the_model_and_listed_packages_only(server: PageServer) -> None:
    assert server.origin.startswith("http://127.0.0.1:")
    assert _get(server.origin + "/model/model.json") == (200, b"{}", "application/json")
    assert _get(server.origin + "/npm/onnxruntime-web/dist/ort.wasm") == (200, b"\0asm", "application/wasm")
    assert _get(server.origin + "/npm/left-pad/index.js")[0] == 404  # not a package the page loads
    assert _get(server.origin + "/model/../secret.txt")[0] == 404
    assert _get(server.origin + "/model/%2e%2e/secret.txt")[0] == 404


def test_frames_go_to_the_page_and_back(server: PageServer) -> None:
    server.requests.put(b"frame-1")
    assert _get(server.origin + "/ck/next")[:2] == (200, b"frame-1")
    req = urllib.request.Request(server.origin + "/ck/reply", data=b"answer", method="POST")
    with urllib.request.urlopen(req, timeout=30) as r:
        assert r.status == 204
    assert server.replies.get(timeout=5) == b"answer"


def _runner_with(precision: dict) -> ChromiumTfjsRunner:
    r = ChromiumTfjsRunner(Artifact(Format("tfjs"), Path("m")), backend="webgl")
    r.info = {"precision": precision, "tfjs": "4.22.0", "backend": "webgl",
              "user_agent": "Mozilla/5.0 (X11; Linux x86_64) HeadlessChrome/156.0.0.0 Safari/537.36"}
    return r


def test_webgl_at_16_bits_widens_the_tolerance_and_says_so() -> None:
    p16 = {"backend": "webgl", "webgl_version": 2, "render_float32": False, "highp_bits": 10, "float_bits": 16}
    r = _runner_with(p16)
    assert r.tolerance == FP16_CLASS
    assert r.notes == ["ran in headless Chromium/156.0.0.0 (TF.js 4.22.0, webgl backend; WebGL 2, float16 render "
                       "targets, highp 10-bit mantissa: 16-bit); tolerance widened to atol 0.01, rtol 0.01 for 16-bit "
                       "float"]
    p32 = {**p16, "render_float32": True, "highp_bits": 23, "float_bits": 32}
    assert _runner_with(p32).tolerance is None
    assert precision_text(p32) == "WebGL 2, float32 render targets, highp 23-bit mantissa: 32-bit"


def test_options_refused_before_any_work(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="runs in a browser"):
        check_options(backend="webgl", browser=None)
    with pytest.raises(UsageError, match="unknown browser 'firefox'"):
        check_options(browser="firefox")
    monkeypatch.setenv("CONVERTKIT_CHROMIUM", str(tmp_path / "none"))
    assert find_chromium() is None
    with pytest.raises(MissingDependencyError) as exc:
        check_options(backend="wasm", browser="chromium")
    assert exc.value.exit_code == 2 and "make install-browser" in str(exc.value)


def test_frame_layout_matches_nodeproc(server: PageServer) -> None:
    """What BrowserSession.send queues for the page: u32 LE header length, JSON, payload (nodeproc.py's frame)."""
    from converter.browser.session import BrowserSession

    s = BrowserSession("tfjs", "wasm", Path("."))
    s.server = server
    s.send({"type": "infer", "inputs": []}, [b"\x01\x02"])
    body = _get(server.origin + "/ck/next")[1]
    n = struct.unpack_from("<I", body)[0]
    assert json.loads(body[4:4 + n]) == {"type": "infer", "inputs": []} and body[4 + n:] == b"\x01\x02"
