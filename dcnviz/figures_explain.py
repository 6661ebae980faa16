"""Plotly figures for :mod:`dcnviz.explain` (figures only draw what its tables hold).

* :func:`fig_effect` — the ablation (Δ log loss) or contribution heatmap by feature, drawn by
  :func:`dcnviz.figures.fig_block_norms` (so it is sized and laid out like every block heatmap) with its own
  colour bar, hover text and, for the ablation, a diverging scale centred at 0 (a block whose removal
  *lowers* the loss is blue);
* :func:`fig_rank_curve` — AUC and log loss against the rank r every cross layer is truncated to
  (without retraining), log-x, the smallest r within the AUC tolerance of full rank marked.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from dcnviz.analysis import AUC_TOLERANCE
from dcnviz.errors import ConfigError
from dcnviz.figures import DIVERGING_SCALE, MAGNITUDE_SCALE, fig_block_norms

EFFECT_LABELS = {
    "ablation": "Δ log loss",
    "contribution": "RMS ‖x0_i ⊙ (W_ij x_j)‖",
    "row": "Δ logit",
}


def fig_effect(values: np.ndarray, names: Sequence[str], *, what: str = "ablation", title: str = "") -> go.Figure:
    """Heatmap of an effect table (k × k, rows = output feature i, columns = input feature j).

    ``what``: ``ablation`` (Δ log loss when block (i, j) is zeroed; diverging colours centred at 0),
    ``row`` (Δ logit of one example; diverging) or ``contribution`` (RMS size of the block's term; Viridis).
    """
    if what not in EFFECT_LABELS:
        raise ConfigError(f"what must be one of {tuple(EFFECT_LABELS)}; got what={what!r}")
    V = np.asarray(values, dtype=np.float64)
    label = EFFECT_LABELS[what]
    fig = fig_block_norms(V, names, mode="raw", title=title or label)
    hover = "output feature i: %{y}<br>input feature j: %{x}<br>" + label + " = %{customdata:.4g}<extra></extra>"
    style: dict[str, object] = {
        "hovertemplate": hover,
        "colorbar": {"title": {"text": label, "side": "right"}},
    }
    if what == "contribution":
        style["colorscale"] = MAGNITUDE_SCALE
    else:
        finite = V[np.isfinite(V)]
        top = float(np.max(np.abs(finite))) if finite.size else 1.0
        top = top if top > 0 else 1.0
        style.update(colorscale=DIVERGING_SCALE, zmid=0.0, zmin=-top, zmax=top)
    if fig.data and fig.data[0].text is not None:  # cell numbers: fixed decimals, not 8.03e-06 beside 0.00673
        style["text"] = _fixed_text(V)
    fig.update_traces(selector={"type": "heatmap"}, **style)
    return fig


def _fixed_text(V: np.ndarray) -> list[list[str]]:
    """Cell labels with as many decimals as the largest |value| needs for two significant digits; values that
    round to zero read "0".

    >>> _fixed_text(np.array([[0.00673, -8e-06], [0.0, 0.0012]]))
    [['0.0067', '0'], ['0', '0.0012']]
    """
    finite = np.abs(V[np.isfinite(V)])
    top = float(finite.max()) if finite.size else 0.0
    dec = max(1, int(np.ceil(-np.log10(top))) + 1) if top > 0 else 1
    out = []
    for row in V:
        cells = []
        for v in row:
            t = f"{v:.{dec}f}" if np.isfinite(v) else ""
            cells.append("0" if t and float(t) == 0.0 else t)
        out.append(cells)
    return out


def fig_rank_curve(frame: pd.DataFrame, *, title: str = "", auc_tolerance: float = AUC_TOLERANCE) -> go.Figure:
    """AUC (top) and log loss (bottom) against r on a log x axis, from
    :func:`dcnviz.analysis.rank_curve_frame`; the suggested rank (``suggested``) is marked and the band
    "within ``auc_tolerance`` of full rank" drawn as a dotted line."""
    need = {"rank", "auc", "logloss"}
    if not need <= set(frame.columns):
        raise ConfigError(f"a rank curve table needs the columns {sorted(need)}; got {list(frame.columns)}")
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08, subplot_titles=("AUC", "log loss"))
    r = frame["rank"].to_numpy()
    for row, col, fmt in ((1, "auc", ".4f"), (2, "logloss", ".4f")):
        fig.add_trace(
            go.Scatter(
                x=r,
                y=frame[col],
                mode="lines+markers",
                name=col,
                showlegend=False,
                hovertemplate="every cross layer at rank r = %{x}<br>" + col + " = %{y:" + fmt + "}<extra></extra>",
            ),
            row=row,
            col=1,
        )
    full = float(frame["auc"].iloc[-1])
    fig.add_hline(
        y=full - auc_tolerance,
        line_dash="dot",
        line_color="grey",
        row=1,
        col=1,
        annotation_text=f"full rank − {auc_tolerance:g}",
        annotation_position="bottom right",
    )
    if "suggested" in frame.columns and bool(frame["suggested"].any()):
        best = frame[frame["suggested"]].iloc[0]
        for row, col in ((1, "auc"), (2, "logloss")):
            fig.add_trace(
                go.Scatter(
                    x=[int(best["rank"])],
                    y=[float(best[col])],
                    mode="markers",
                    marker={"size": 14, "symbol": "star", "color": "crimson"},
                    name=f"smallest r within {auc_tolerance:g} AUC: {int(best['rank'])}",
                    showlegend=row == 1,
                    hovertemplate=f"suggested r = {int(best['rank'])}<extra></extra>",
                ),
                row=row,
                col=1,
            )
    ranks = [int(v) for v in r]
    lo, hi = np.log10(max(1, min(ranks))), np.log10(max(ranks))
    pad = max(0.05, 0.04 * (hi - lo))
    axis = {"type": "log", "tickvals": ranks, "ticktext": [str(v) for v in ranks], "range": [lo - pad, hi + pad]}
    fig.update_xaxes(title_text="rank r of every cross layer (truncated SVD, without retraining)", row=2, col=1, **axis)
    fig.update_xaxes(row=1, col=1, **axis)
    fig.update_layout(
        title={"text": title or "Rank truncation without retraining", "x": 0.0, "xanchor": "left"},
        autosize=True,
        height=520,
        font={"size": 12},
        margin={"l": 10, "r": 10, "t": 60, "b": 10},
        legend={"orientation": "h", "y": 1.02, "yanchor": "bottom", "x": 1.0, "xanchor": "right"},
    )
    return fig
