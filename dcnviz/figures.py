"""Plotly figure builders for what :mod:`dcnviz.analysis` computes (figures only draw; nothing is computed here
that a table does not already hold).

* :func:`fig_block_norms` — block-norm heatmap by feature (paper Fig. 6b);
* :func:`fig_weight_matrix` — |W| with block boundaries (Fig. 6a), max-pooled to at most ``max_cells``
  per side so a 1024-wide W renders fast;
* :func:`fig_spectrum` — singular-value decay on a log axis against the initial matrix, with the
  tolerances drawn (Fig. 3a);
* :func:`fig_rank_vs_tolerance` — R_T as T varies;
* :func:`fig_training_curves` — loss / AUC per epoch from a training history;
* :func:`fig_difference` — B − A block norms on a diverging scale centred at 0.

Colour: the perceptual, colour-blind-safe ``Viridis`` scale for magnitudes (optionally on a log10 colour
axis, for ranges spanning decades) and the diverging ``RdBu`` (blue < 0 < red) for differences.
Every figure autosizes to its container (no fixed width) so it works in a narrow window. Export:
:func:`figure_html` (standalone HTML with plotly.js inlined) and :func:`table_csv`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from dcnviz.analysis import MODES, BlockLike, Spectrum, block_bounds, unique_labels
from dcnviz.errors import ConfigError

MAGNITUDE_SCALE = "Viridis"  # perceptual, readable in grey and for colour-blind readers
DIVERGING_SCALE = "RdBu_r"  # blue (negative) → white (0) → red (positive)
_FONT = {"size": 12}
_MARGIN = {"l": 10, "r": 10, "t": 50, "b": 10}

_MODE_TITLES = {
    "raw": "‖W_ij‖_F",
    "normalized": "‖W_ij‖_F / √(e_i e_j)",
    "symmetric": "√(‖W_ij‖² + ‖W_ji‖²)",
}


def _layout(fig: go.Figure, title: str, **kw: Any) -> go.Figure:
    fig.update_layout(
        title={"text": title, "x": 0.0, "xanchor": "left"}, autosize=True, font=_FONT, margin=_MARGIN, **kw
    )
    return fig


def _log_colour(values: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
    """log10 of the values (non-positive ones floored at the smallest positive / 10) and colour-bar ticks.

    Ticks sit at 1, 2 and 5 × 10^k inside the range, labelled with the values themselves.
    """
    v = np.asarray(values, dtype=np.float64)
    pos = v[np.isfinite(v) & (v > 0)]
    if pos.size == 0:
        return np.zeros_like(v), {}
    floor = float(pos.min()) / 10.0
    z = np.log10(np.where(np.isfinite(v), np.maximum(v, floor), np.nan))
    lo, hi = float(np.nanmin(z)), float(np.nanmax(z))
    decades = range(math.floor(lo), math.ceil(hi) + 1)
    steps = (1.0,) if hi - lo > 3 else (1.0, 2.0, 5.0)
    ticks = [math.log10(m) + k for k in decades for m in steps if lo - 1e-9 <= math.log10(m) + k <= hi + 1e-9]
    if not ticks:
        ticks = [lo, hi]
    return z, {"tickvals": ticks, "ticktext": [f"{10**t:.3g}" for t in ticks]}


def _names(norms: np.ndarray | pd.DataFrame, names: Sequence[str] | None) -> tuple[np.ndarray, list[str]]:
    if isinstance(norms, pd.DataFrame):
        N = norms.to_numpy(dtype=np.float64)
        labels = [str(c) for c in norms.columns] if names is None else list(names)
    else:
        N = np.asarray(norms, dtype=np.float64)
        if names is None:
            raise ConfigError("feature names are needed to label the heatmap")
        labels = list(names)
    if N.ndim != 2 or N.shape != (len(labels), len(labels)):
        raise ConfigError(f"a block table must be (k, k) for k = {len(labels)} names; got shape {N.shape}")
    return N, unique_labels(labels)


def _cell_text(N: np.ndarray, fmt: str = ".3g") -> list[list[str]]:
    return [[format(x, fmt) if np.isfinite(x) else "" for x in row] for row in N]


def fig_block_norms(
    norms: np.ndarray | pd.DataFrame,
    names: Sequence[str] | None = None,
    *,
    mode: str = "raw",
    title: str = "",
    log_color: bool = False,
    show_values: bool | None = None,
) -> go.Figure:
    """Block-norm heatmap, rows = output feature i, columns = input feature j (paper Fig. 6b).

    ``norms`` is a (k, k) table from :func:`dcnviz.analysis.block_norms` (with ``names``) or a
    DataFrame from :func:`~dcnviz.analysis.block_norm_frame`. ``log_color`` puts the colour axis on a
    log10 scale (hover still shows the value). Cell values are printed when k ≤ 12 unless
    ``show_values`` says otherwise.
    """
    if mode not in MODES:
        raise ConfigError(f"block-norm mode must be one of {MODES}; got mode={mode!r}")
    N, labels = _names(norms, names)
    k = len(labels)
    z, ticks = _log_colour(N) if log_color else (N, {})
    what = _MODE_TITLES[mode]
    if mode == "symmetric":
        hover = "features %{y} × %{x}<br>" + what + " = VALUE<extra></extra>"
    else:
        hover = "output feature i: %{y}<br>input feature j: %{x}<br>" + what + " = VALUE<extra></extra>"
    show = k <= 12 if show_values is None else show_values
    heat = go.Heatmap(
        z=z,
        x=labels,
        y=labels,
        customdata=N,  # the values themselves (z is their log10 on a log colour axis); k × k, so cheap
        hovertemplate=hover.replace("VALUE", "%{customdata:.4g}"),
        colorscale=MAGNITUDE_SCALE,
        colorbar={"title": {"text": what + (" (log)" if log_color else ""), "side": "right"}, **ticks},
        text=_cell_text(N) if show else None,
        texttemplate="%{text}" if show else None,
        xgap=1,
        ygap=1,
    )
    fig = go.Figure(heat)
    side = "feature" if mode == "symmetric" else None
    fig.update_xaxes(
        title_text=f"{side} j" if side else "input feature j (columns of W)",
        tickangle=-45,
        automargin=True,
        side="bottom",
        constrain="domain",
    )
    fig.update_yaxes(
        title_text=f"{side} i" if side else "output feature i (rows of W)",
        autorange="reversed",
        automargin=True,
        scaleanchor="x",
        constrain="domain",
    )
    return _layout(fig, title or f"Block norms {what}", height=max(360, min(900, 120 + 28 * k)))


def _pool_abs(W: np.ndarray, f: int) -> np.ndarray:
    """max |W| over f × f tiles (the last tiles may be partial)."""
    d = W.shape[0]
    n = -(-d // f)
    P = np.zeros((n * f, n * f))
    P[:d, :d] = np.abs(W)
    return P.reshape(n, f, n, f).max(axis=(1, 3))  # (n, n)


def _tile_labels(starts_tile: np.ndarray, f: int, d: int, blocks: Sequence[BlockLike]) -> list[str]:
    bstarts = np.array([int(b.start) for b in blocks])
    out = []
    for a in starts_tile:
        z = min(int(a) + f, d) - 1  # last x0 index in the tile
        ia = int(np.searchsorted(bstarts, a, side="right")) - 1
        iz = int(np.searchsorted(bstarts, z, side="right")) - 1
        oa, oz = int(a) - int(bstarts[ia]), z - int(bstarts[iz])
        if ia == iz:
            out.append(f"{blocks[ia].name}[{oa}]" if oa == oz else f"{blocks[ia].name}[{oa}:{oz + 1}]")
        else:
            out.append(f"{blocks[ia].name}[{oa}]…{blocks[iz].name}[{oz}]")
    return out


def fig_weight_matrix(
    W: np.ndarray,
    blocks: Sequence[BlockLike],
    *,
    title: str = "",
    max_cells: int = 400,
    log_color: bool = False,
) -> go.Figure:
    """|W| with feature-block boundaries drawn (paper Fig. 6a); rows = output slot, columns = input slot.

    For d > ``max_cells`` the matrix is max-pooled over f × f tiles (f = ⌈d / max_cells⌉), which keeps
    every strong entry visible; the title says so. Hover names the x0 slot (feature[offset]) of the
    row and the column.
    """
    A = np.asarray(W, dtype=np.float64)
    if A.ndim != 2 or A.shape[0] != A.shape[1]:
        raise ConfigError(f"`W` must be a square (d, d) matrix; got shape {tuple(A.shape)}")
    if max_cells < 1:
        raise ConfigError(f"max_cells must be >= 1; got max_cells={max_cells}")
    d = A.shape[0]
    starts, _ = block_bounds(blocks, d)
    f = max(1, -(-d // max_cells))
    P = _pool_abs(A, f) if f > 1 else np.abs(A)
    labels = _tile_labels(np.arange(0, d, f), f, d, blocks)
    z, ticks = _log_colour(P) if log_color else (P, {})
    what = "max |W| in tile" if f > 1 else "|W|"
    heat = go.Heatmap(
        z=z.astype(np.float32),
        x=labels,
        y=labels,
        customdata=P.astype(np.float32) if log_color else None,  # only a log colour axis needs the raw values
        hovertemplate="row (output) %{y}<br>column (input) %{x}<br>"
        + what
        + (" = %{customdata:.4g}" if log_color else " = %{z:.4g}")
        + "<extra></extra>",
        colorscale=MAGNITUDE_SCALE,
        colorbar={"title": {"text": what + (" (log)" if log_color else "")}, **ticks},
    )
    fig = go.Figure(heat)
    line = {"color": "rgba(255,255,255,0.9)", "width": 1}
    shapes = []  # set in one go: add_shape re-validates every earlier shape (quadratic: seconds for 40 blocks)
    for s in starts[1:]:
        pos = s / f - 0.5
        shapes.append({"type": "line", "x0": pos, "x1": pos, "y0": -0.5, "y1": len(labels) - 0.5, "line": line})
        shapes.append({"type": "line", "y0": pos, "y1": pos, "x0": -0.5, "x1": len(labels) - 0.5, "line": line})
    fig.update_layout(shapes=shapes)
    centres = [labels[min(len(labels) - 1, int((int(b.start) + int(b.stop) - 1) / 2) // f)] for b in blocks]
    names = unique_labels([b.name for b in blocks])
    axis = {"tickmode": "array", "tickvals": centres, "ticktext": names, "automargin": True, "constrain": "domain"}
    fig.update_xaxes(title_text="input slot (columns of W)", tickangle=-45, **axis)
    fig.update_yaxes(title_text="output slot (rows of W)", autorange="reversed", scaleanchor="x", **axis)
    pooled = f" (max-pooled {f}×{f})" if f > 1 else ""
    return _layout(fig, (title or f"|W|, d = {d}") + pooled, height=640)


def _as_list(spectra: Spectrum | Sequence[Spectrum]) -> list[Spectrum]:
    return [spectra] if isinstance(spectra, Spectrum) else list(spectra)


def _positive(y: np.ndarray) -> np.ndarray:
    y = np.asarray(y, dtype=np.float64)
    return np.where(y > 0, y, np.nan)  # a log axis cannot show 0


def fig_spectrum(
    spectra: Spectrum | Sequence[Spectrum],
    *,
    normalized: bool = True,
    tolerances: Sequence[float] | None = None,
    show_initial: bool = True,
    title: str = "",
) -> go.Figure:
    """Singular-value decay on a log y axis (paper Fig. 3a): learned (×) against initial (+), tolerances drawn.

    ``normalized`` plots σ_k / σ_1 and draws each tolerance T as a horizontal line; otherwise raw σ_k
    with lines at T·σ_1 of the first spectrum. ``tolerances`` defaults to the first spectrum's.
    """
    items = _as_list(spectra)
    if not items:
        raise ConfigError("no spectrum to draw")
    fig = go.Figure()
    ylab = "σ_k / σ_1" if normalized else "σ_k"
    for sp in items:
        y = sp.normalized if normalized else sp.singular_values
        k = np.arange(1, y.size + 1)
        fig.add_trace(
            go.Scatter(
                x=k,
                y=_positive(y),
                mode="lines+markers",
                marker={"symbol": "x", "size": 6},
                name=f"{sp.label} (learned)",
                hovertemplate=f"{sp.label}<br>k = %{{x}}<br>{ylab} = %{{y:.4g}}<extra></extra>",
            )
        )
        if show_initial and sp.initial_singular_values is not None and sp.initial_normalized is not None:
            y0 = sp.initial_normalized if normalized else sp.initial_singular_values
            lab = f"{sp.label} (initial: {sp.initial_label})" if sp.initial_label else f"{sp.label} (initial)"
            fig.add_trace(
                go.Scatter(
                    x=np.arange(1, y0.size + 1),
                    y=_positive(y0),
                    mode="lines+markers",
                    marker={"symbol": "cross-thin-open", "size": 7},
                    line={"dash": "dot"},
                    name=lab,
                    hovertemplate=f"{lab}<br>k = %{{x}}<br>{ylab} = %{{y:.4g}}<extra></extra>",
                )
            )
    tols = list(items[0].tolerances if tolerances is None else tolerances)
    s1 = float(items[0].singular_values[0]) if items[0].singular_values.size else 0.0
    for t in tols:
        level = t if normalized else t * s1
        if level > 0:
            fig.add_hline(y=level, line={"dash": "dash", "width": 1, "color": "grey"})
            fig.add_annotation(  # on a log axis an annotation's y is log10 of the value (shapes take the value)
                x=1.0,
                xref="paper",
                xanchor="right",
                y=math.log10(level),
                yanchor="bottom",
                text=f"T = {t:g}",
                showarrow=False,
                font={"size": 10, "color": "grey"},
            )
    fig.update_xaxes(title_text="k (singular values, largest first)", automargin=True)
    fig.update_yaxes(type="log", title_text=ylab, automargin=True, exponentformat="power")
    return _layout(
        fig,
        title or "Singular-value decay",
        height=440,
        legend={"orientation": "h", "yanchor": "top", "y": -0.18, "x": 0},
    )


def fig_rank_vs_tolerance(
    spectra: Spectrum | Sequence[Spectrum],
    *,
    grid: np.ndarray | None = None,
    show_initial: bool = True,
    title: str = "",
) -> go.Figure:
    """Numerical rank R_T = #{k : σ_k ≥ T·σ_1} as T varies (log x axis), chosen tolerances marked."""
    from dcnviz.analysis import rank_versus_tolerance

    items = _as_list(spectra)
    if not items:
        raise ConfigError("no spectrum to draw")
    fig = go.Figure()
    for sp in items:
        df = rank_versus_tolerance(sp.singular_values, grid)
        fig.add_trace(
            go.Scatter(
                x=df.tolerance,
                y=df["rank"],
                mode="lines",
                line_shape="hv",
                name=f"{sp.label} (learned)",
                hovertemplate=f"{sp.label}<br>T = %{{x:.3g}}<br>R_T = %{{y}}<extra></extra>",
            )
        )
        if show_initial and sp.initial_singular_values is not None:
            d0 = rank_versus_tolerance(sp.initial_singular_values, grid)
            fig.add_trace(
                go.Scatter(
                    x=d0.tolerance,
                    y=d0["rank"],
                    mode="lines",
                    line_shape="hv",
                    line={"dash": "dot"},
                    name=f"{sp.label} (initial)",
                    hovertemplate=f"{sp.label} initial<br>T = %{{x:.3g}}<br>R_T = %{{y}}<extra></extra>",
                )
            )
        ts = list(sp.numerical_rank)
        fig.add_trace(
            go.Scatter(
                x=ts,
                y=[sp.numerical_rank[t] for t in ts],
                mode="markers",
                marker={"size": 9, "symbol": "circle-open"},
                name=f"{sp.label} at chosen T",
                hovertemplate=f"{sp.label}<br>T = %{{x:g}}<br>R_T = %{{y}}<extra></extra>",
            )
        )
    fig.update_xaxes(type="log", title_text="tolerance T", automargin=True, exponentformat="power")
    fig.update_yaxes(title_text="numerical rank R_T", automargin=True, rangemode="tozero")
    return _layout(
        fig,
        title or "Numerical rank versus tolerance",
        height=420,
        legend={"orientation": "h", "yanchor": "top", "y": -0.2, "x": 0},
    )


def _flatten(row: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in row.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(_flatten(v, key + "_"))
        else:
            out[key] = v
    return out


_LOSS_KEYS = ("train_loss", "loss", "train_logloss", "val_logloss", "valid_logloss", "val_loss")
_AUC_KEYS = ("train_auc", "val_auc", "valid_auc")


def fig_training_curves(history: Sequence[Mapping[str, Any]], *, title: str = "") -> go.Figure:
    """Loss (left) and AUC (right) per epoch from a training history (one dict per epoch).

    Reads ``epoch`` (else the position from 1) and whichever of ``train_loss`` / ``loss``,
    ``val_logloss``, ``val_auc`` (nested ``{"val": {"auc": …}}`` is flattened to ``val_auc``) are
    present; ``examples_per_s`` shows in the hover text.
    """
    rows = [_flatten(r) for r in history]
    if not rows:
        raise ConfigError("the training history is empty")
    df = pd.DataFrame(rows)
    x = df["epoch"] if "epoch" in df else pd.Series(range(1, len(df) + 1))
    losses = [k for k in _LOSS_KEYS if k in df]
    aucs = [k for k in _AUC_KEYS if k in df]
    if not losses and not aucs:
        raise ConfigError(f"the training history has no loss or AUC columns; it has {sorted(df.columns)}")
    speed = df.get("examples_per_s", None)
    fig = make_subplots(rows=1, cols=2, subplot_titles=("log loss", "AUC"), horizontal_spacing=0.12)
    for col, keys in ((1, losses), (2, aucs)):
        for key in keys:
            extra = [f"<br>{v:,.0f} examples/s" if pd.notna(v) else "" for v in speed] if speed is not None else None
            fig.add_trace(
                go.Scatter(
                    x=x,
                    y=df[key],
                    mode="lines+markers",
                    name=key,
                    customdata=extra,
                    hovertemplate=f"epoch %{{x}}<br>{key} = %{{y:.4f}}"
                    + ("%{customdata}" if extra is not None else "")
                    + "<extra></extra>",
                ),
                row=1,
                col=col,
            )
    fig.update_xaxes(title_text="epoch", automargin=True)
    fig.update_yaxes(automargin=True)
    return _layout(
        fig, title or "Training curves", height=380, legend={"orientation": "h", "yanchor": "top", "y": -0.2, "x": 0}
    )


def fig_difference(
    diff: np.ndarray | pd.DataFrame,
    names: Sequence[str] | None = None,
    *,
    title: str = "",
    label: str = "B − A",
) -> go.Figure:
    """Difference heatmap (e.g. of two models' block norms) on a diverging scale centred at 0."""
    D, labels = _names(diff, names)
    k = len(labels)
    m = float(np.nanmax(np.abs(D))) if np.isfinite(D).any() else 0.0
    m = m if m > 0 else 1.0
    show = k <= 12
    fig = go.Figure(
        go.Heatmap(
            z=D,
            x=labels,
            y=labels,
            zmid=0.0,
            zmin=-m,
            zmax=m,
            colorscale=DIVERGING_SCALE,
            colorbar={"title": {"text": label}},
            hovertemplate="output feature i: %{y}<br>input feature j: %{x}<br>" + label + " = %{z:+.4g}<extra></extra>",
            text=_cell_text(D, "+.2g") if show else None,
            texttemplate="%{text}" if show else None,
            xgap=1,
            ygap=1,
        )
    )
    fig.update_xaxes(title_text="input feature j", tickangle=-45, automargin=True, constrain="domain")
    fig.update_yaxes(
        title_text="output feature i", autorange="reversed", automargin=True, scaleanchor="x", constrain="domain"
    )
    return _layout(fig, title or f"Difference of block norms ({label})", height=max(360, min(900, 120 + 28 * k)))


def figure_html(fig: go.Figure) -> str:
    """A standalone HTML page of ``fig`` with plotly.js inlined: it opens offline and loads no remote script."""
    return str(
        fig.to_html(
            include_plotlyjs=True,
            include_mathjax=False,
            full_html=True,
            config={"responsive": True, "displaylogo": False},
        )
    )


def table_csv(df: pd.DataFrame, *, index: bool | None = None) -> bytes:
    """UTF-8 CSV of a table; the index is written when it carries labels (not a plain 0…n−1 range)."""
    keep = not isinstance(df.index, pd.RangeIndex) if index is None else index
    return df.to_csv(index=keep).encode("utf-8")
