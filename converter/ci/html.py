"""``convertkit run --html FILE``: one self-contained static page, usable from a CI artifact.

Per artifact: the parity table, a histogram of absolute errors per output (the report's
``abs_error_hist``, see parity/compare.py), bars of bytes (raw and gzip) and latency per pass
(the report's stages), and which nodes or weights stayed at a higher precision (the quantize and
fp16 passes' ``kept_fp32`` / ``kept`` notes). Everything is inline: CSS and the one script come
from converter/ci/assets/, charts are SVG, and a Content-Security-Policy forbids any network load,
so the page looks the same from a zip of CI artifacts as from a server. Stdlib only.
"""

from __future__ import annotations

import re
from html import escape
from importlib import resources
from pathlib import Path

from . import svg, views
from .summary import ERROR, FAILED, PASSED, UNCHECKED, Row, Summary

CSP = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:"


def write(summary: Summary, path: Path) -> None:
    views.write_whole(path, render(summary).encode("utf-8"))


def render(summary: Summary) -> str:
    assets = resources.files(__package__) / "assets"
    title = f"convertkit: {Path(summary.pipeline).name}"
    body = [_header(summary), _overview(summary.rows)] + [_artifact(r) for r in summary.rows]
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{_e(title)}</title><style>{(assets / 'report.css').read_text()}</style></head>\n<body>\n"
            + "\n".join(body)
            + f"\n<script>{(assets / 'report.js').read_text()}</script>\n</body></html>\n")


def anchor(row: Row) -> str:
    """The section id of a row: ``a-MODEL--TARGET-passes`` (letters, digits, ``-`` and ``_`` only)."""
    return "a-" + re.sub(r"[^A-Za-z0-9_-]+", "-", f"{row.model}--{views.case_name(row)}")


def _header(s: Summary) -> str:
    c = views.counts(s.rows)
    counts = ", ".join([f"{c[PASSED]} passed"] + [t for n, t in (
        (c[FAILED], f"{c[FAILED]} failed"), (c[ERROR], views.plural(c[ERROR], "error")),
        (c[UNCHECKED], f"{c[UNCHECKED]} not validated")) if n])
    env = ", ".join(f"{k} {v}" for k, v in sorted((s.environment or {}).items()) if isinstance(v, (str, int, float)))
    return (f"<header><h1>convertkit report</h1>"
            f'<p><b>{_e("PASS" if s.exit_code == 0 else "FAIL")}</b> (exit {s.exit_code}): {_e(counts)} of '
            f"{len(s.rows)} model x target, {s.seconds:.1f} s; pipeline <code>{_e(s.pipeline)}</code></p>"
            + (f'<p class="muted">{_e(env)}</p>' if env else "")
            + '<p class="controls"><label><input type="checkbox" id="only-bad"> show only what did not pass'
              "</label></p></header>")


def _overview(rows: list[Row]) -> str:
    head = "".join(f"<th>{h}</th>" for h in ("model", "target", "verdict", "size", "vs fp32", "latency",
                                             "worst cosine", "failing outputs", "seconds"))
    trs = []
    for r in rows:
        ratio, lat = views.size_ratio(r), views.latency_ms(r)
        cells = [f'<a href="#{anchor(r)}">{_e(r.model)}</a>', _e(views.case_name(r)), _badge(r),
                 _n(views.size(r.bytes)), _n("-" if ratio is None else f"{ratio:.2f}x"), _n(svg.latency_text(lat)),
                 _n(views.num(views.worst_cosine(r), ".5f")), _e(", ".join(views.failing(r)) or "-"),
                 _n(f"{r.seconds:.1f}" + (" (cached)" if r.cached else ""))]
        trs.append(f'<tr data-verdict="{_e(r.verdict)}">' + "".join(
            c if c.startswith("<td") else f"<td>{c}</td>" for c in cells) + "</tr>")
    return f'<table class="overview"><thead><tr>{head}</tr></thead><tbody>{"".join(trs)}</tbody></table>'


def _artifact(r: Row) -> str:
    ratio = views.size_ratio(r)
    facts = [f"exit {r.exit_code}", f"{r.seconds:.1f} s" + (" (from the cache)" if r.cached else ""),
             f"size {views.size(r.bytes)}" + (f" ({ratio:.2f}x the source)" if ratio is not None else ""),
             f"latency {svg.latency_text(views.latency_ms(r))}", f"worst cosine {views.num(views.worst_cosine(r), '.6f')}"]
    if r.artifact:
        facts.append(f"artifact {r.artifact}")
    parts = [f'<section class="artifact" id="{anchor(r)}" data-verdict="{_e(r.verdict)}">',
             f"<h2>{_e(r.model)} <small>{_e(views.case_name(r))}</small> {_badge(r, cell=False)}</h2>",
             f'<p class="facts">{_e(" · ".join(facts))}</p>']
    if r.verdict == ERROR:
        parts.append(f'<p class="error">{_e(views.line(r.error) or f"exit {r.exit_code}")}</p>')
    elif r.verdict != PASSED:
        parts.append(f'<p class="error">{_e(views.parity_line(r))}</p>')
    if r.report is not None:
        parts += [_parity(r), _histograms(r), _stage_bars(r), _kept(r)]
    elif r.verdict != ERROR:
        parts.append('<p class="muted">no report.json in this summary (written without reports)</p>')
    parts.append("</section>")
    return "\n".join(p for p in parts if p)


def _parity(r: Row) -> str:
    outs = views.outputs(r)
    if not outs:
        return "<h3>Parity</h3><p class=\"muted\">not validated</p>"
    parity = (r.report or {}).get("parity") or {}
    tol = parity.get("tolerance") or {}
    caption = (f"{parity.get('samples', '?')} sample(s); atol {tol.get('atol', '?')}, rtol {tol.get('rtol', '?')}"
               + (f", min cosine {tol['min_cosine']}" if tol.get("min_cosine") is not None else ""))
    head = "".join(f"<th>{h}</th>" for h in ("output", "status", "max abs", "mean abs", "p99 abs", "cosine", "top-1",
                                             "needs atol", "message"))
    trs = "".join(f'<tr class="{"" if o.passed else "bad"}"><td>{_e(o.name)}</td><td>{_e(o.status)}</td>'
                  + "".join(_n(x) for x in (views.num(o.max_abs), views.num(o.mean_abs), views.num(o.p99_abs),
                                            views.num(o.cosine, ".6f"), views.num(o.top1, ".3f"),
                                            views.num(o.atol_needed)))
                  + f"<td>{_e(o.message)}</td></tr>" for o in outs)
    return (f'<h3>Parity <span class="muted">({_e(caption)})</span></h3>'
            f"<table><thead><tr>{head}</tr></thead><tbody>{trs}</tbody></table>")


def _histograms(r: Row) -> str:
    outs = [o for o in views.outputs(r) if o.hist is not None]
    if not outs:
        return ""
    atol = (((r.report or {}).get("parity") or {}).get("tolerance") or {}).get("atol")
    figs = "".join(f"<figure>{svg.histogram(o.hist, o.name, atol)}<figcaption>{_e(o.name)}: |got - ref| per "
                   f"decade, {sum(o.hist.counts)} element(s)</figcaption></figure>" for o in outs if o.hist)
    return f'<h3>Absolute error per output</h3><div class="charts">{figs}</div>'


def _stage_bars(r: Row) -> str:
    stages = views.stages(r)
    if not stages:
        return ""
    first = stages[0]
    steps = [("source", first.bytes_in, first.gzip_in, first.latency_in)]
    steps += [(s.stage, s.bytes_out, s.gzip_out, s.latency_out) for s in stages]
    size_bars = [b for label, raw, gz, _ in steps
                 for b in (svg.Bar(f"{label} (raw)", raw, views.size(raw), "raw"),
                           svg.Bar(f"{label} (gzip)", gz, views.size(gz), "gzip"))]
    lat_bars = [svg.Bar(label, lat, svg.latency_text(lat), "latency") for label, _, _, lat in steps]
    lat_chart = (svg.bars("latency per step", lat_bars) if any(b.value is not None for b in lat_bars)
                 else '<p class="muted">latency is measured around passes only; this route has none</p>')
    return ('<h3>Size and latency per pass</h3><div class="charts">'
            f"<figure>{svg.bars('bytes per step', size_bars)}<figcaption>bytes on disk and gzip (level 6) after each "
            "step</figcaption></figure>"
            f"<figure>{lat_chart}<figcaption>median latency on the sample inputs</figcaption></figure></div>")


def _kept(r: Row) -> str:
    kept = views.kept(r)
    if not kept:
        quantized = any(s.stage in ("quantize", "fp16") for s in views.stages(r))
        return ("<h3>Kept at higher precision</h3><p class=\"muted\">"
                + ("none: the pass kept no node or weight at a higher precision" if quantized
                   else "no precision-reducing pass ran")
                + "</p>")
    trs = "".join(f"<tr><td>{_e(k.stage)}</td><td><code>{_e(k.name)}</code></td><td>{_e(k.kind)}</td>"
                  f"<td>{_e(k.why)}</td></tr>" for k in kept)
    return ("<h3>Kept at higher precision</h3><table><thead><tr><th>pass</th><th>node / weight</th><th>op / dtype</th>"
            f"<th>why</th></tr></thead><tbody>{trs}</tbody></table>")


def _badge(r: Row, *, cell: bool = True) -> str:
    b = f'<span class="badge {_e(r.verdict)}">{_e(views.MARKERS.get(r.verdict, r.verdict))}</span>'
    return f"<td>{b}</td>" if cell else b


def _n(text: str) -> str:
    return f'<td class="n">{_e(text)}</td>'


def _e(text: object) -> str:
    return escape(str(text), quote=True)
