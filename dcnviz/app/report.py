"""One standalone HTML report of a model: card, block-norm heatmaps, top crosses, spectra, rank tables.

Plain Python (no Streamlit). plotly.js is inlined once in the page head and every figure is drawn by
an inline script, so the file opens offline and loads nothing over the network. Every text that came
from the file (feature names, labels) is HTML-escaped.

>>> import numpy as np
>>> from dcnviz.analysis import analyze
>>> from dcnviz.app.bundle import ModelBundle
>>> from dcnviz.spec import Block
>>> from dcnviz.weights import CrossModelWeights, FullRankWeights
>>> cw = CrossModelWeights(format="deepctr", d=2, blocks=[Block("a", 0, 1, "x"), Block("b", 1, 2, "x")],
...                        layers=[FullRankWeights(d=2, W=np.eye(2))])
>>> b = ModelBundle(weights=cw, format="deepctr", detected="test", sha256="0" * 64, size=1)
>>> html = build_report_html(b, analyze(cw), title="<demo>")
>>> html.startswith("<!DOCTYPE html>"), "&lt;demo&gt;" in html, "<script src=" in html
(True, True, False)
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import html
import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from dcnviz import __version__
from dcnviz.analysis import (
    BLOCK_MEANING,
    MODE_EXPLANATIONS,
    LayerAnalysis,
    ModelAnalysis,
    mixture_sentence,
    rank_table,
)
from dcnviz.app.bundle import (
    ModelBundle,
    architecture_table,
    feature_table,
    layer_table,
    metrics_table,
    recipe_table,
)
from dcnviz.app.report_effects import explanation_section
from dcnviz.app.tables import rank_summary
from dcnviz.errors import DcnvizError
from dcnviz.explain import Explanation
from dcnviz.figures import fig_block_norms, fig_spectrum, fig_training_curves

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0 auto; max-width: 1100px;
       padding: 1rem; color: #222; line-height: 1.45; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.3rem; border-bottom: 1px solid #ddd; padding-bottom: .2rem; }
h3 { font-size: 1.1rem; }
table.tbl { border-collapse: collapse; font-size: .85rem; margin: .5rem 0 1rem; display: block; overflow-x: auto;
            max-width: 100%; }
table.tbl th, table.tbl td { border: 1px solid #ddd; padding: .25rem .5rem; text-align: left; vertical-align: top; }
table.tbl td { max-width: 32rem; overflow-wrap: anywhere; }
table.ranks th, table.ranks td { white-space: nowrap; text-align: right; }
table.ranks td:first-child, table.ranks th:first-child { text-align: left; }
table.tbl th { background: #f4f4f4; }
.note { color: #555; font-size: .9rem; }
.warn { background: #fff4e5; border-left: 4px solid #f0a020; padding: .4rem .8rem; }
.fig { width: 100%; }
"""

HOW_TO_READ = f"{BLOCK_MEANING} (Paper §7.6, Eq. 7.) Numerical rank R_T = #{{k : σ_k ≥ T·σ_1}} (§3.5)."


def _table_html(df: pd.DataFrame, *, index: bool = False, cls: str = "") -> str:
    if df.empty:
        return '<p class="note">(nothing recorded)</p>'
    classes = ["tbl", cls] if cls else "tbl"
    return str(df.to_html(index=index, escape=True, classes=classes, border=0, float_format=lambda x: f"{x:.4g}"))


class _Figures:
    """Numbers the figure divs so every id in the page is unique."""

    def __init__(self) -> None:
        self.n = 0

    def __call__(self, fig: go.Figure) -> str:
        self.n += 1
        return str(
            fig.to_html(
                full_html=False,
                include_plotlyjs=False,
                include_mathjax=False,
                div_id=f"fig{self.n}",
                config={"responsive": True, "displaylogo": False},
            )
        )


def _page_head(title: str, bundle: ModelBundle) -> list[str]:
    """The HTML head (CSS, plotly.js inlined), the title and where the report came from."""
    e = html.escape
    created = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{e(title)}</title>",
        f"<style>{_CSS}</style>",
        f'<script type="text/javascript">{get_plotlyjs()}</script>',
        "</head><body>",
        f"<h1>{e(title)}</h1>",
        f'<p class="note">Made by dcnviz {e(__version__)} on {created}. Self-contained: opens offline. '
        f"Model file sha256 {e(bundle.sha256[:16])}…, {bundle.size:,} bytes. {e(bundle.detected)}</p>",
    ]
    return parts + [f'<p class="warn">⚠ {e(w)}</p>' for w in bundle.warnings]


def _model_card(bundle: ModelBundle, fig: _Figures) -> list[str]:
    """Architecture, features, cross layers, recipe, metrics and training curves."""
    parts = [
        "<h2>Model card</h2>",
        "<h3>Architecture</h3>",
        _table_html(architecture_table(bundle)),
        "<h3>Features (blocks of x0, in order)</h3>",
        _table_html(feature_table(bundle)),
    ]
    if bundle.n_layers:
        parts += ["<h3>Cross layers</h3>", _table_html(layer_table(bundle))]
    recipe, metrics = recipe_table(bundle), metrics_table(bundle)
    if not recipe.empty:
        parts += ["<h3>Training recipe</h3>", _table_html(recipe)]
    if not metrics.empty:
        parts += ["<h3>Metrics</h3>", _table_html(metrics)]
    if bundle.history:
        with contextlib.suppress(DcnvizError):  # a history without loss/AUC columns: no curves
            parts.append(fig(fig_training_curves(bundle.history)))
    return parts


def _layer_section(
    i: int,
    la: LayerAnalysis,
    names: list[str],
    fig: _Figures,
    *,
    top_n: int,
    experts: bool,
    modes: Sequence[str],
    measured_suggestion: bool,
) -> list[str]:
    """One cross layer: its block norms per view, top crosses, spectrum, suggested rank and experts."""
    e = html.escape
    parts = [f"<h2>Layer {i}: {e(la.matrix.label)}</h2>"]
    if la.matrix.weighting:  # a mixture layer (Eq. 3): which average of the experts the maps show
        parts.append(f'<p class="note">{e(mixture_sentence(la.matrix.weighting))}.</p>')
    if la.matrix.linear_part_only:
        parts.append('<p class="note">Nonlinear experts (Eq. 4): U C Vᵀ is only their linear part.</p>')
    for mode in modes:
        parts.append(f'<p class="note">{e(MODE_EXPLANATIONS[mode])}</p>')
        parts.append(fig(fig_block_norms(la.norms(mode), names, mode=mode, title=f"Layer {i}: {mode} block norms")))
    parts += [
        f"<h3>Top {top_n} crosses (symmetric pairs)</h3>",
        _table_html(la.top_crosses("symmetric", n=top_n)),
        fig(fig_spectrum(la.spectrum, normalized=True, title=f"Layer {i}: singular values σ_k / σ₁")),
    ]
    if not measured_suggestion:  # one suggested rank: the measured one if any
        parts.append(f'<p class="note">Suggested rank: {e(la.spectrum.suggested.text)}.</p>')
    if experts:
        for ex in la.experts:
            parts.append(f"<h3>{e(ex.matrix.label)}</h3>")
            parts.append(fig(fig_block_norms(ex.norms("raw"), names, title=f"{ex.matrix.label}: block norms")))
    return parts


def _ranks_section(analysis: ModelAnalysis, experts: bool, measured_suggestion: bool) -> list[str]:
    """R_T at every tolerance, the suggested (unless measured on data) and the stable rank of every layer (and
    expert)."""
    tols = ", ".join(f"{t:g}" for t in analysis.tolerances)
    init = " (in brackets: the initial matrix's)" if analysis.init_label else ""
    what = "suggested rank and stable rank"
    if measured_suggestion:
        what = "stable rank (the suggested rank is the one measured on data above)"
    return [
        "<h2>Numerical ranks</h2>",
        f'<p class="note">R_T = #{{k : σ_k ≥ T·σ_1}} at T = {html.escape(tols)}{init}; {what}.</p>',
        _table_html(
            rank_summary(rank_table(analysis, experts=experts), suggested=not measured_suggestion), cls="ranks"
        ),
    ]


def build_report_html(
    bundle: ModelBundle,
    analysis: ModelAnalysis,
    *,
    title: str,
    top_n: int = 10,
    experts: bool = True,
    modes: Sequence[str] = ("raw", "symmetric"),
    explanation: Explanation | None = None,
) -> str:
    """The whole report as one HTML string (a few MB: plotly.js is inlined).

    Args:
        bundle: the loaded model (card).
        analysis: its analysis, e.g. ``dcnviz.analysis.analyze(bundle.weights)`` (tolerances and spectra).
        title: page title (escaped).
        top_n: rows of each top-crosses table.
        experts: also draw each expert of a mixture layer.
        modes: block-norm views drawn per layer (``raw`` is the paper's Fig. 6b).
        explanation: the model measured on data (:mod:`dcnviz.explain`): adds the effect on predictions and
            the rank-truncation curve, whose measured suggestion replaces the per-layer tolerance-based one.
    """
    fig = _Figures()
    e = html.escape
    names = [b.name for b in bundle.weights.blocks]
    parts = _page_head(title, bundle) + _model_card(bundle, fig)
    if not analysis.layers:
        parts.append("<p>This model has no cross network (a plain DNN): nothing else to show.</p>")
    else:
        parts += [f'<p class="note">{e(HOW_TO_READ)}</p>']
        if analysis.init_label:
            parts.append(f'<p class="note">Spectrum baseline: the initial matrix ({e(analysis.init_label)}).</p>')
    # what the analysis adds to the file's own warnings (e.g. a layer left out for NaN or Inf: `inspect`)
    parts += [f'<p class="warn">⚠ {e(w)}</p>' for w in analysis.warnings if w not in bundle.warnings]
    measured = explanation is not None and explanation.suggestion is not None
    for la in analysis.layers:  # numbered as in the file: a layer left out keeps the others' numbers
        parts += _layer_section(
            la.matrix.layer, la, names, fig, top_n=top_n, experts=experts, modes=modes, measured_suggestion=measured
        )
    if explanation is not None:
        parts += explanation_section(explanation, fig, _table_html)
    if analysis.layers:
        parts += _ranks_section(analysis, experts, measured)
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(
    path: str | os.PathLike[str],
    bundle: ModelBundle,
    analysis: ModelAnalysis,
    *,
    title: str,
    explanation: Explanation | None = None,
) -> Path:
    """:func:`build_report_html` (every expert and both views, as the app's Report page) written to ``path``
    atomically (temporary file, then rename): a failure leaves no half-written report. The CLI's ``--html``."""
    from dcnviz.checkpoint import write_atomic

    page = build_report_html(bundle, analysis, title=title, explanation=explanation)
    return write_atomic(path, page.encode("utf-8"))
