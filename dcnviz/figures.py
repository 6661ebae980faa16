"""Plotly figure builders for what :mod:`dcnviz.analysis` computes (figures only draw; nothing is computed here
that a table does not already hold).

* :func:`fig_block_norms` — block-norm heatmap by feature (paper Fig. 6b);
* :func:`fig_weight_matrix` — |W| with block boundaries (Fig. 6a), max-pooled to at most ``max_cells``
  per side so a 1024-wide W renders fast;
* :func:`fig_spectrum` — singular-value decay on a log axis against the initial matrix, with the
  tolerances drawn (Fig. 3a);
* :func:`fig_rank_vs_tolerance` — R_T as T varies;
* :func:`fig_training_curves` — loss / AUC per epoch from a training history;
* :func:`fig_difference` — B − A block norms on a diverging scale centred at 0;
* :func:`fig_table6` — Table 6's test AUC per model beside the paper's (§7.3).

Colour: the perceptual, colour-blind-safe ``Viridis`` scale for magnitudes (optionally on a log10 colour
axis, for ranges spanning decades) and the diverging ``RdBu`` (blue < 0 < red) for differences.

Sizing. Line charts autosize to their container's width. Heatmaps are the product and are drawn
**square** (square cells, paper Fig. 6): each carries a :class:`SquareFrame` (pixel margins for the
labels, title and colour bar around its square plot area(s), in ``layout.meta``) and a natural size
from the number of features (:func:`natural_side`), which notebooks and the HTML report use as it is.
:func:`square_css` turns the frame into CSS that sizes the figure to its container instead (the app's
main column; the standalone HTML export), so the cells fill the width, the colour bar sits beside them
and the whole map stays within the window's height, for 2 to ~40 features. Export: :func:`figure_html`
(standalone HTML with plotly.js inlined) and :func:`table_csv`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
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


def _cell_font(k: int) -> dict[str, int]:
    """Size of the numbers printed in the cells: larger cells (fewer features) get larger numbers."""
    return {"size": 14 if k <= 6 else 13 if k <= 9 else 12}


# --------------------------------------------------------------------------------------------------
# Square heatmaps: one frame, used by every heatmap builder and by the app's layout helper

_CHAR_PX = 7.2  # average width of a 12 px label character (Plotly's default font)
_MAX_LABEL = 24  # longer feature names are shortened on the axes (hover shows them whole)
MIN_SIDE, MAX_SIDE = 360, 720  # natural side of the square plot area, px (2 features … 20+ features)
COLORBAR_PX = 104  # colour bar: 14 px bar + 12 px gap + tick labels + its title


@dataclass(frozen=True)
class SquareFrame:
    """Pixel margins around a figure's square plot area(s): labels left and below, title above, colour bar right.

    ``panels`` square plot areas sit side by side, ``gap`` px apart (the Compare page's A | B).
    A figure's total size for plot areas of side ``s`` is :meth:`size` (s).

    >>> SquareFrame(left=80, right=100, top=40, bottom=60).size(400)
    (580, 500)
    >>> SquareFrame(left=80, right=100, top=40, bottom=60, panels=2, gap=90).size(300)
    (870, 400)
    """

    left: int
    right: int
    top: int
    bottom: int
    panels: int = 1
    gap: int = 0

    @property
    def horizontal(self) -> int:
        """Pixels of the width that are not plot area."""
        return self.left + self.right + (self.panels - 1) * self.gap

    @property
    def vertical(self) -> int:
        return self.top + self.bottom

    def size(self, side: int) -> tuple[int, int]:
        """(width, height) in px of the figure whose square plot areas have side ``side``."""
        return self.horizontal + self.panels * side, self.vertical + side


_META_KEY = "dcnviz_square"


def square_frame(fig: go.Figure) -> SquareFrame | None:
    """The :class:`SquareFrame` a heatmap builder stored in ``fig.layout.meta`` (None for other figures)."""
    meta = fig.layout.meta
    if isinstance(meta, Mapping) and isinstance(meta.get(_META_KEY), Mapping):
        return SquareFrame(**{k: int(v) for k, v in meta[_META_KEY].items()})
    return None


def natural_side(k: int) -> int:
    """Side (px) of the square plot area when nothing else decides it (notebooks, the HTML report).

    36 px per feature, within [MIN_SIDE, MAX_SIDE]: 2–10 features get 360 px, 20 or more 720 px.

    >>> natural_side(2), natural_side(12), natural_side(40)
    (360, 432, 720)
    """
    return int(min(MAX_SIDE, max(MIN_SIDE, 36 * k)))


def short_label(name: str, limit: int = _MAX_LABEL) -> str:
    """An axis label: ``name`` shortened in the middle to at most ``limit`` characters.

    >>> short_label("embedding_dict.user_id_hashed_bucket_feature")
    'embedding_di…ket_feature'
    """
    if len(name) <= limit:
        return name
    head = (limit - 1) // 2 + (limit - 1) % 2
    return name[:head] + "…" + name[len(name) - (limit - 1 - head) :]


def _tick_font(k: int) -> int:
    return 12 if k <= 24 else 11 if k <= 32 else 10


def square_layout(
    fig: go.Figure,
    labels: Sequence[str],
    *,
    title: str,
    panels: int = 1,
    colorbar: bool = True,
    axis_titles: bool = True,
    label_axes: bool = True,
    side: int | None = None,
) -> SquareFrame:
    """Lay out a heatmap figure square: margins from its labels, the colour bar beside the plot, square cells.

    Sets ``layout.width``/``height`` to the natural size (``side`` px plot areas, default
    :func:`natural_side`), stores the :class:`SquareFrame` in ``layout.meta`` and returns it. Every
    x/y axis of the figure gets the same treatment (``scaleanchor`` keeps cells square if margins
    ever differ from the estimate). ``label_axes``: the tick labels are the (shortened) ``labels``.
    """
    k = max(1, len(labels))
    font = _tick_font(k)
    longest = max((len(short_label(str(x))) for x in labels), default=1) * _CHAR_PX * font / 12
    side = natural_side(k) if side is None else int(side)
    flat = longest + 10 <= 300 / k  # the label fits under its column even at a small size: no rotation
    below = 18 if flat else int(0.72 * (longest + font)) + 8
    frame = SquareFrame(
        left=int(longest) + (30 if axis_titles else 12),
        right=COLORBAR_PX if colorbar else 12,
        top=44 if title else 14,
        bottom=below + (28 if axis_titles else 6),
        panels=panels,
        gap=int(longest) + 24 if panels > 1 else 0,
    )
    width, height = frame.size(side)
    fig.update_layout(
        title={"text": title, "x": 0.0, "xanchor": "left", "y": 1.0, "yanchor": "top", "pad": {"t": 10}},
        autosize=True,
        width=width,
        height=height,
        font=_FONT,
        margin={"l": frame.left, "r": frame.right, "t": frame.top, "b": frame.bottom, "pad": 2},
        meta={_META_KEY: asdict(frame)},
    )
    ticks: dict[str, Any] = {"tickfont": {"size": font}, "automargin": True, "showgrid": False}
    if label_axes:
        full = list(labels)
        ticks.update(tickmode="array", tickvals=full, ticktext=[short_label(str(x)) for x in full])
    fig.update_xaxes(tickangle=0 if flat else -45, side="bottom", constrain="domain", **ticks)
    fig.update_yaxes(autorange="reversed", constrain="domain", **ticks)
    for i in range(1, panels + 1):  # square cells in every panel
        suffix = "" if i == 1 else str(i)
        fig.update_layout({f"yaxis{suffix}": {"scaleanchor": f"x{suffix}", "scaleratio": 1}})
    if colorbar:
        fig.update_traces(
            colorbar={"x": 1.0, "xanchor": "left", "xpad": 12, "thickness": 14, "len": 1.0, "y": 0.5},
            selector={"type": "heatmap"},
        )
    return frame


def square_css(
    frame: SquareFrame, element: str, *, container: str, max_height: str = "85vh", share: float = 1.0
) -> str:
    """CSS that sizes a square-framed figure to the space it has: plot areas as wide as the ``container``
    allows, capped so the whole figure fits in ``max_height`` (the window's height by default). ``share``
    < 1 uses only that part of the container's width (a secondary map that must not dwarf the main one).

    ``container`` becomes a CSS size container (``cqw`` units are its width); ``element`` — the box the
    Plotly chart fills (Streamlit's element container of the chart; the div around it in the standalone
    page) — gets the figure's width and height, and every box inside it the height. Plotly, with
    ``autosize`` on, takes its width from that box (so the chart is never cut off) and keeps cells square.
    """
    n, h, v = frame.panels, frame.horizontal, frame.vertical
    side = f"min(calc(({100 * share:g}cqw - {h}px) / {n}), calc({max_height} - {v}px))"
    return (
        f"{container} {{ container-type: inline-size; }}\n"
        f"{element} {{ --dcnviz-side: max(120px, {side}); width: calc({n} * var(--dcnviz-side) + {h}px) !important; "
        "max-width: 100%; height: auto !important; overflow: visible !important; }\n"
        f"{element} > div, {element} .stPlotlyChart, {element} .js-plotly-plot "
        f"{{ height: calc(var(--dcnviz-side) + {v}px) !important; }}"
    )


def _block_heatmap(
    N: np.ndarray,
    labels: list[str],
    *,
    mode: str,
    log_color: bool,
    show: bool,
    colorbar_title: str | None = None,
    zrange: tuple[float, float] | None = None,
    **kw: Any,
) -> go.Heatmap:
    """The heatmap trace of a block-norm table (shared by the single and the side-by-side figures)."""
    z, ticks = _log_colour(N) if log_color else (N, {})
    what = _MODE_TITLES[mode]
    if mode == "symmetric":
        hover = "features %{y} × %{x}<br>" + what + " = %{customdata:.4g}<extra></extra>"
    else:
        hover = "output feature i: %{y}<br>input feature j: %{x}<br>" + what + " = %{customdata:.4g}<extra></extra>"
    title = colorbar_title if colorbar_title is not None else what + (" (log)" if log_color else "")
    if zrange is not None:
        lo, hi = zrange
        kw.update(zmin=math.log10(lo) if log_color and lo > 0 else lo, zmax=math.log10(hi) if log_color else hi)
    return go.Heatmap(
        z=z,
        x=labels,
        y=labels,
        customdata=N,  # the values themselves (z is their log10 on a log colour axis); k × k, so cheap
        hovertemplate=hover,
        colorscale=MAGNITUDE_SCALE,
        colorbar={"title": {"text": title, "side": "right"}, **ticks},
        text=_cell_text(N) if show else None,
        texttemplate="%{text}" if show else None,
        textfont=_cell_font(len(labels)),
        xgap=1,
        ygap=1,
        **kw,
    )


def _axis_titles(fig: go.Figure, mode: str, **kw: Any) -> None:
    sym = mode == "symmetric"
    fig.update_xaxes(title_text="feature j" if sym else "input feature j (columns of W)", **kw)
    fig.update_yaxes(title_text="feature i" if sym else "output feature i (rows of W)", **kw)


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
    ``show_values`` says otherwise. Square cells, colour bar beside the map (:func:`square_layout`).
    """
    if mode not in MODES:
        raise ConfigError(f"block-norm mode must be one of {MODES}; got mode={mode!r}")
    N, labels = _names(norms, names)
    show = len(labels) <= 12 if show_values is None else show_values
    fig = go.Figure(_block_heatmap(N, labels, mode=mode, log_color=log_color, show=show))
    square_layout(fig, labels, title=title or f"Block norms {_MODE_TITLES[mode]}")
    _axis_titles(fig, mode)
    return fig


def fig_block_norms_pair(
    a: np.ndarray | pd.DataFrame,
    names_a: Sequence[str] | None,
    b: np.ndarray | pd.DataFrame,
    names_b: Sequence[str] | None,
    *,
    mode: str = "raw",
    titles: tuple[str, str] = ("A", "B"),
    title: str = "",
    shared_scale: bool = True,
    log_color: bool = False,
) -> go.Figure:
    """Two block-norm heatmaps side by side in one figure (the Compare page): A left, B right, square cells.

    ``shared_scale``: one colour scale (0 … the larger maximum) and one colour bar, so equal colours
    mean equal norms; otherwise each map has its own. When both have the same feature names the rows
    are labelled once, on the left.
    """
    if mode not in MODES:
        raise ConfigError(f"block-norm mode must be one of {MODES}; got mode={mode!r}")
    NA, la = _names(a, names_a)
    NB, lb = _names(b, names_b)
    same = la == lb
    k = max(len(la), len(lb))
    show = k <= 12
    fig = make_subplots(rows=1, cols=2, subplot_titles=list(titles))
    top = float(np.nanmax([np.nanmax(NA), np.nanmax(NB)])) if NA.size and NB.size else 1.0
    low = 0.0
    if log_color:
        pos = np.concatenate([NA[NA > 0], NB[NB > 0]])
        low = float(pos.min()) / 10.0 if pos.size else 1e-12
    what = _MODE_TITLES[mode] + (" (log)" if log_color else "")
    for col, (N, labels) in enumerate(((NA, la), (NB, lb)), start=1):
        trace = _block_heatmap(
            N,
            labels,
            mode=mode,
            log_color=log_color,
            show=show,
            colorbar_title=what,
            zrange=(low, top) if shared_scale else None,
            showscale=col == 2 or not shared_scale,
        )
        fig.add_trace(trace, row=1, col=col)
    frame = square_layout(fig, la + lb, title=title, panels=2, label_axes=False)
    gap = 24 if same else frame.gap  # B's row labels need the gap only when they differ from A's
    top = max(frame.top, 40)  # room for the panel titles
    frame = SquareFrame(**{**asdict(frame), "gap": gap + (0 if shared_scale else COLORBAR_PX), "top": top})
    width, height = frame.size(natural_side(k))
    fig.update_layout(width=width, height=height, meta={_META_KEY: asdict(frame)}, margin={"t": frame.top})
    span = width - frame.left - frame.right  # the paper's width in px at the natural size
    end_a = (span - frame.gap) / 2 / span
    fig.update_xaxes(domain=[0.0, end_a], row=1, col=1)
    fig.update_xaxes(domain=[1.0 - end_a, 1.0], row=1, col=2)
    for col, labels in ((1, la), (2, lb)):
        short = [short_label(x) for x in labels]
        fig.update_xaxes(tickmode="array", tickvals=labels, ticktext=short, row=1, col=col)
        fig.update_yaxes(tickmode="array", tickvals=labels, ticktext=short, row=1, col=col)
    if same:
        fig.update_yaxes(showticklabels=False, row=1, col=2)
    if not shared_scale:
        fig.data[0].colorbar.update(x=end_a, xanchor="left", xpad=12)
    fig.update_xaxes(title_text="feature j" if mode == "symmetric" else "input feature j")
    fig.update_yaxes(title_text="feature i" if mode == "symmetric" else "output feature i", row=1, col=1)
    fig.layout.margin.l = frame.left
    return fig


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
        colorbar={"title": {"text": what + (" (log)" if log_color else ""), "side": "right"}, **ticks},
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
    pooled = f" (max-pooled {f}×{f})" if f > 1 else ""
    # the same square frame as the block-norm map (labels are the feature names, at block centres)
    square_layout(fig, names, title=(title or f"|W|, d = {d}") + pooled, label_axes=False)
    axis = {"tickmode": "array", "tickvals": centres, "ticktext": [short_label(n) for n in names]}
    fig.update_xaxes(title_text="input slot (columns of W)", **axis)
    fig.update_yaxes(title_text="output slot (rows of W)", **axis)
    return fig


def _as_list(spectra: Spectrum | Sequence[Spectrum]) -> list[Spectrum]:
    return [spectra] if isinstance(spectra, Spectrum) else list(spectra)


def _positive(y: np.ndarray) -> np.ndarray:
    y = np.asarray(y, dtype=np.float64)
    return np.where(y > 0, y, np.nan)  # a log axis cannot show 0


def _finite_values(fig: go.Figure, axis: str) -> np.ndarray:
    """Every finite x or y value of the figure's traces, as one array."""
    values = [np.asarray(getattr(t, axis), dtype=np.float64).ravel() for t in fig.data if getattr(t, axis) is not None]
    v = np.concatenate(values) if values else np.array([])
    return v[np.isfinite(v)]


def _integer_ticks(fig: go.Figure, axis: str, most: int = 12) -> dict[str, Any]:
    """Ticks at whole numbers for an axis of counts (k, R_T) that only reaches ``most``: Plotly's own choice puts
    ticks at 0.5, 1.5, … there (a DCN-V1 layer has one singular value). Over a longer range its choice is whole.

    >>> _integer_ticks(go.Figure(go.Scatter(x=[1, 2])), "x"), _integer_ticks(go.Figure(go.Scatter(x=[1, 99])), "x")
    ({'tick0': 0, 'dtick': 1}, {})
    """
    v = _finite_values(fig, axis)
    return {"tick0": 0, "dtick": 1} if v.size and v.max() <= most else {}


def _log_dtick(fig: go.Figure) -> str | None:
    """Tick spacing for a log y axis: ``"D2"`` (labels at 1, 2 and 5 of each decade) when the figure's values
    and horizontal lines span at most 3 decades, where Plotly's own choice labels every digit of the decade
    and the labels overlap near the top; None (Plotly's choice) over a wider span.

    >>> _log_dtick(go.Figure(go.Scatter(y=[1.0, 0.2]))), _log_dtick(go.Figure(go.Scatter(y=[1.0, 1e-5])))
    ('D2', None)
    """
    lines = [float(sh.y0) for sh in fig.layout.shapes if sh.y0 is not None]
    v = np.concatenate([_finite_values(fig, "y"), lines])
    v = v[np.isfinite(v) & (v > 0)]
    if v.size == 0:
        return None
    return "D2" if math.log10(v.max() / v.min()) <= 3.0 else None


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
    fig.update_xaxes(title_text="k (singular values, largest first)", automargin=True, **_integer_ticks(fig, "x"))
    fig.update_yaxes(type="log", title_text=ylab, automargin=True, exponentformat="power", dtick=_log_dtick(fig))
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
    fig.update_yaxes(title_text="numerical rank R_T", automargin=True, rangemode="tozero", **_integer_ticks(fig, "y"))
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
    """Difference heatmap (e.g. of two models' block norms) on a diverging scale centred at 0, square cells."""
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
            colorbar={"title": {"text": label, "side": "right"}},
            hovertemplate="output feature i: %{y}<br>input feature j: %{x}<br>" + label + " = %{z:+.4g}<extra></extra>",
            text=_cell_text(D, "+.2g") if show else None,
            texttemplate="%{text}" if show else None,
            textfont=_cell_font(k),
            xgap=1,
            ygap=1,
        )
    )
    square_layout(fig, labels, title=title or f"Difference of block norms ({label})")
    fig.update_xaxes(title_text="input feature j")
    fig.update_yaxes(title_text="output feature i")
    return fig


def fig_table6(
    rows: Sequence[Mapping[str, Any]], *, data_label: str, labels: Mapping[str, str] | None = None
) -> go.Figure:
    """Test AUC per Table 6 model (§7.3): this run's (mean ± std over runs) beside the paper's MovieLens-1M.

    ``rows``: :meth:`dcnviz.paperlab.table6.Table6Row.to_json` dicts, in table order. Two panels, each on
    its own y scale: the data differ, so the levels do not compare; the order of the models does. Models
    the paper has no number for are left out of its panel.
    """
    if not rows:
        raise ConfigError("no Table 6 rows to draw")
    names = [labels.get(r["model"], r["model"]) if labels else r["model"] for r in rows]
    fig = make_subplots(
        rows=1, cols=2, subplot_titles=(f"this run: {data_label}", "the paper: MovieLens-1M"), horizontal_spacing=0.1
    )
    fig.add_trace(
        go.Scatter(
            x=names,
            y=[r["auc_mean"] for r in rows],
            error_y={"type": "data", "array": [r["auc_std"] for r in rows], "visible": len(rows[0]["runs"]) > 1},
            mode="markers",
            marker={"size": 11},
            name=f"test AUC, {data_label}",
            hovertemplate="%{x}<br>test AUC %{y:.4f}<extra></extra>",
        ),
        row=1,
        col=1,
    )
    paper = [(n, r["paper_auc"]) for n, r in zip(names, rows, strict=True) if r.get("paper_auc") is not None]
    fig.add_trace(
        go.Scatter(
            x=[n for n, _ in paper],
            y=[a for _, a in paper],
            mode="markers",
            marker={"size": 11, "symbol": "diamond"},
            name="the paper's AUC, MovieLens-1M (Table 6)",
            hovertemplate="%{x}<br>paper: AUC %{y:.4f}<extra></extra>",
        ),
        row=1,
        col=2,
    )
    fig.update_xaxes(categoryorder="array", categoryarray=names, automargin=True, tickangle=-30)
    fig.update_yaxes(title_text="test AUC", tickformat=".4f", automargin=True)
    return _layout(
        fig,
        "Test AUC by model (each panel on its own scale: compare the order, not the level)",
        height=420,
        showlegend=False,
    )


def figure_html(fig: go.Figure) -> str:
    """A standalone HTML page of ``fig`` with plotly.js inlined: it opens offline and loads no remote script.

    A square heatmap (:func:`square_frame`) is sized to the browser window by :func:`square_css`.
    """
    config = {"responsive": True, "displaylogo": False}
    frame = square_frame(fig)
    if frame is None:
        return str(fig.to_html(include_plotlyjs=True, include_mathjax=False, full_html=True, config=config))
    fluid = go.Figure(fig).update_layout(width=None, height=None)
    div = fluid.to_html(
        include_plotlyjs=True,
        include_mathjax=False,
        full_html=False,
        config=config,
        default_width="100%",
        default_height="100%",
    )
    css = square_css(frame, ".dcnviz-square", container=".dcnviz-wrap", max_height="94vh")
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
        f"<style>body {{ margin: 8px; font-family: sans-serif; }}\n{css}</style></head>"
        f'<body><div class="dcnviz-wrap"><div class="dcnviz-square">{div}</div></div></body></html>'
    )


def table_csv(df: pd.DataFrame, *, index: bool | None = None) -> bytes:
    """UTF-8 CSV of a table; the index is written when it carries labels (not a plain 0…n−1 range)."""
    keep = not isinstance(df.index, pd.RangeIndex) if index is None else index
    return df.to_csv(index=keep).encode("utf-8")
