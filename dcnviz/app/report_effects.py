"""The report's "measured on data" section: an :class:`~dcnviz.explain.Explanation` as HTML (plain Python).

Per cross layer the ablation heatmap (Δ log loss when each block is zeroed), the ranked table with the
block norms beside the effect and the sentence on how far they agree; then the rank-truncation curve
(without retraining) with the suggested rank. Every text is HTML-escaped; figures go through the
report's own embedding function so their div ids stay unique.
"""

from __future__ import annotations

import html
from collections.abc import Callable

import pandas as pd
import plotly.graph_objects as go

from dcnviz.analysis import agreement_sentence, effect_table, rank_curve_frame
from dcnviz.explain import Explanation
from dcnviz.figures_explain import fig_effect, fig_rank_curve

INTRO = (
    "Measured by running the model on {rows:,} {split} rows: each block (i, j) of a layer's W is set to 0 in turn "
    "(the bias kept) and the log loss compared with the unchanged model (Δ > 0: the model uses the cross). "
    "Baseline AUC {auc:.4f}, log loss {logloss:.4f}."
)


def explanation_section(
    ex: Explanation, fig: Callable[[go.Figure], str], table: Callable[[pd.DataFrame], str], *, top_n: int = 10
) -> list[str]:
    """HTML parts of the section (``fig`` embeds a figure, ``table`` renders a DataFrame)."""
    e = html.escape
    split = {"val": "validation", "test": "test"}.get(ex.split, ex.split)
    b = ex.baseline
    parts = [
        "<h2>Effect on predictions and rank truncation (measured on data)</h2>",
        f'<p class="note">{e(INTRO.format(rows=ex.rows, split=split, auc=b["auc"], logloss=b["logloss"]))}</p>',
    ]
    names = ex.names
    for le in ex.layers:
        parts.append(f"<h3>Layer {le.index}: effect on predictions</h3>")
        if le.ablation is None:
            parts.append(f'<p class="note">{e(le.note)}</p>')
            continue
        parts.append(fig(fig_effect(le.ablation, names, title=f"Layer {le.index}: Δ log loss when block (i, j) is 0")))
        t = effect_table(le.ablation, le.block_norms, names, contribution=le.contribution)
        parts.append(f"<p>{e(agreement_sentence(t, where=f'of layer {le.index}'))}</p>")
        parts.append(table(t.head(top_n)))
    if ex.rank_curve is None:
        parts.append(f'<p class="note">Rank truncation: {e(ex.note)}</p>')
        return parts
    frame = rank_curve_frame(
        [p.rank for p in ex.rank_curve], [p.auc for p in ex.rank_curve], [p.logloss for p in ex.rank_curve]
    )
    parts.append("<h3>Rank truncation without retraining</h3>")
    parts.append(fig(fig_rank_curve(frame, title="Every cross layer truncated to rank r (without retraining)")))
    if ex.suggestion is not None:
        parts.append(f"<p><b>Suggested rank:</b> {e(ex.suggestion.text)}.</p>")
    parts.append(table(frame))
    return parts
