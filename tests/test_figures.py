"""dcnviz.figures draws exactly what dcnviz.analysis computed, labelled by feature, and exports offline."""

from __future__ import annotations

import io
import re

import numpy as np
import pandas as pd
import pytest

from dcnviz import analysis as A
from dcnviz import figures as F
from dcnviz.errors import ConfigError
from dcnviz.spec import Block
from dcnviz.weights import FullRankWeights

BLOCKS = [Block("user", 0, 3, "categorical"), Block("item", 3, 5, "categorical"), Block("year", 5, 6, "dense")]
NAMES = ["user", "item", "year"]


def w6(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(6, 6))


def heat(fig):
    (trace,) = [t for t in fig.data if t.type == "heatmap"]
    return trace


def test_block_norm_heatmap_shows_the_table_with_feature_names_on_both_axes():
    N = A.block_norms(w6(), BLOCKS)
    fig = F.fig_block_norms(N, NAMES)
    h = heat(fig)
    assert list(h.x) == NAMES and list(h.y) == NAMES
    np.testing.assert_array_equal(np.asarray(h.z), N)
    np.testing.assert_array_equal(np.asarray(h.customdata), N)
    assert "output feature i: %{y}" in h.hovertemplate and "input feature j: %{x}" in h.hovertemplate
    assert fig.layout.yaxis.autorange == "reversed"  # row 0 on top, as a matrix is read
    frame = F.square_frame(fig)  # a square heatmap: natural size for notebooks, CSS-sized in the app
    assert frame is not None and (fig.layout.width, fig.layout.height) == frame.size(F.natural_side(3))
    assert h.texttemplate == "%{text}" and h.text[0][1] == format(N[0, 1], ".3g")
    # a DataFrame carries its own names
    fig2 = F.fig_block_norms(A.block_norm_frame(N, BLOCKS), mode="raw")
    assert list(heat(fig2).x) == NAMES
    sym = heat(F.fig_block_norms(A.block_norms(w6(), BLOCKS, "symmetric"), NAMES, mode="symmetric"))
    assert "features %{y} × %{x}" in sym.hovertemplate


def test_block_norm_heatmap_log_colour_keeps_values_in_hover():
    N = np.array([[1.0, 1e-3, 0.0], [10.0, 1.0, 1.0], [1.0, 1.0, 100.0]])
    h = heat(F.fig_block_norms(N, NAMES, log_color=True))
    z = np.asarray(h.z, dtype=float)
    np.testing.assert_allclose(z[0, 0], 0.0)
    np.testing.assert_allclose(z[1, 0], 1.0)
    np.testing.assert_allclose(z[0, 2], -4.0)  # zero floored at (smallest positive) / 10
    np.testing.assert_array_equal(np.asarray(h.customdata), N)  # hover shows the value, not its log
    assert "%{customdata:.4g}" in h.hovertemplate
    assert list(h.colorbar.tickvals) == [-4, -3, -2, -1, 0, 1, 2]  # > 3 decades: powers of ten only
    assert list(h.colorbar.ticktext) == ["0.0001", "0.001", "0.01", "0.1", "1", "10", "100"]
    narrow = heat(F.fig_block_norms(np.array([[1.0, 3.0, 9.0]] * 3), NAMES, log_color=True))
    assert list(narrow.colorbar.ticktext) == ["1", "2", "5"]  # within a decade: 1-2-5 ticks


def test_block_norm_heatmap_rejects_mismatched_names():
    with pytest.raises(ConfigError, match=r"\(k, k\)"):
        F.fig_block_norms(np.ones((3, 3)), ["a", "b"])
    with pytest.raises(ConfigError, match="mode"):
        F.fig_block_norms(np.ones((3, 3)), NAMES, mode="nope")


def test_weight_matrix_small_is_abs_w_with_block_boundaries():
    W = w6()
    fig = F.fig_weight_matrix(W, BLOCKS)
    h = heat(fig)
    np.testing.assert_allclose(np.asarray(h.z, dtype=float), np.abs(W), rtol=1e-6)
    assert list(h.x) == ["user[0]", "user[1]", "user[2]", "item[0]", "item[1]", "year[0]"]
    assert h.customdata is None and "%{z:.4g}" in h.hovertemplate  # no second d × d array in the page
    positions = sorted({s.x0 for s in fig.layout.shapes if s.x0 == s.x1})
    assert positions == [2.5, 4.5]  # before item and before year
    assert list(fig.layout.xaxis.ticktext) == NAMES


def test_weight_matrix_of_width_1024_is_max_pooled():
    rng = np.random.default_rng(0)
    d = 1024
    W = rng.normal(size=(d, d)) * 0.01
    W[700, 3] = -5.0  # one strong entry must survive pooling
    widths = [25] * 40 + [24]
    blocks, s = [], 0
    for i, w in enumerate(widths):
        blocks.append(Block(f"f{i}", s, s + w, "categorical"))
        s += w
    fig = F.fig_weight_matrix(W, blocks, max_cells=400)
    z = np.asarray(heat(fig).z, dtype=float)
    f = 3  # ⌈1024 / 400⌉
    assert z.shape == (342, 342)
    assert z[700 // f, 3 // f] == 5.0
    np.testing.assert_allclose(z[5, 7], np.abs(W[15:18, 21:24]).max(), rtol=1e-6)
    labels = list(heat(fig).x)
    assert len(set(labels)) == len(labels) and labels[8] == "f0[24]…f1[1]"
    assert "max-pooled 3×3" in fig.layout.title.text


def spectra_pair() -> A.Spectrum:
    s = np.array([8.0, 4.0, 1.0, 0.0])
    P = np.eye(4)[[2, 0, 3, 1]]  # a permutation keeps the spectrum exact
    m = A.layer_matrix(FullRankWeights(d=4, W=P @ np.diag(s) @ P.T), 0)
    m0 = A.layer_matrix(FullRankWeights(d=4, W=np.eye(4)), 0)
    return A.spectrum(m, initial=m0, initial_label="saved initial weights", tolerances=[0.5, 0.1])


def test_spectrum_figure_draws_learned_initial_and_tolerances_on_a_log_axis():
    sp = spectra_pair()
    fig = F.fig_spectrum(sp)
    assert fig.layout.yaxis.type == "log"
    learned, initial = fig.data
    np.testing.assert_allclose(np.asarray(learned.y, dtype=float)[:3], [1.0, 0.5, 0.125], atol=1e-12)
    assert np.isnan(np.asarray(learned.y, dtype=float)[3])  # σ = 0 cannot sit on a log axis
    np.testing.assert_allclose(np.asarray(initial.y, dtype=float), 1.0)
    assert "saved initial weights" in initial.name
    lines = [s for s in fig.layout.shapes if s.type == "line"]
    assert sorted(s.y0 for s in lines) == [0.1, 0.5]
    labels = {a.text: a.y for a in fig.layout.annotations}
    assert labels == pytest.approx({"T = 0.5": np.log10(0.5), "T = 0.1": -1.0})  # log axis: annotations take log10
    raw = F.fig_spectrum(sp, normalized=False, show_initial=False)
    assert len(raw.data) == 1
    assert sorted(s.y0 for s in raw.layout.shapes) == pytest.approx([0.8, 4.0])
    # 1 … 0.1 is one decade: labels at 1, 2, 5 of it, not every digit (they overlap near σ_1)
    assert fig.layout.yaxis.dtick == "D2"
    wide = A.spectrum(A.layer_matrix(FullRankWeights(d=2, W=np.diag([1.0, 1e-6])), 0), tolerances=[0.5])
    assert F.fig_spectrum(wide).layout.yaxis.dtick is None  # six decades: Plotly's own spacing
    assert (fig.layout.xaxis.tick0, fig.layout.xaxis.dtick) == (0, 1)  # k = 1 … 4: whole ticks, not 0.5, 1.5, …
    many = A.spectrum(A.layer_matrix(FullRankWeights(d=40, W=np.eye(40)), 0), tolerances=[0.5])
    assert F.fig_spectrum(many).layout.xaxis.dtick is None


def test_rank_versus_tolerance_figure_matches_numerical_rank():
    sp = spectra_pair()
    fig = F.fig_rank_vs_tolerance(sp)
    curve = fig.data[0]
    for T, r in zip(curve.x, curve.y, strict=True):
        assert r == A.numerical_rank(sp.singular_values, T)
    marks = fig.data[-1]
    assert list(marks.x) == [0.5, 0.1] and list(marks.y) == [2, 3]
    assert fig.layout.xaxis.type == "log"


def test_training_curves_from_flat_and_nested_history():
    hist = [
        {"epoch": 1, "train_loss": 0.6, "val_logloss": 0.55, "val_auc": 0.70, "examples_per_s": 12000.0},
        {"epoch": 2, "train_loss": 0.5, "val_logloss": 0.50, "val_auc": 0.75, "examples_per_s": 13000.0},
    ]
    fig = F.fig_training_curves(hist)
    names = [t.name for t in fig.data]
    assert names == ["train_loss", "val_logloss", "val_auc"]
    assert list(fig.data[2].y) == [0.70, 0.75]
    assert "examples/s" in fig.data[0].customdata[0]
    nested = [{"epoch": 1, "loss": 0.6, "val": {"auc": 0.7, "logloss": 0.5}}]
    assert [t.name for t in F.fig_training_curves(nested).data] == ["loss", "val_logloss", "val_auc"]
    with pytest.raises(ConfigError, match="empty"):
        F.fig_training_curves([])
    with pytest.raises(ConfigError, match="no loss or AUC"):
        F.fig_training_curves([{"epoch": 1, "lr": 0.1}])


def test_difference_heatmap_is_diverging_and_centred_at_zero():
    D = np.array([[0.0, -2.0, 0.5], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    h = heat(F.fig_difference(D, NAMES))
    assert h.zmid == 0.0 and h.zmin == -2.0 and h.zmax == 2.0
    colours = [c for _, c in h.colorscale]
    assert len(set(colours)) > 2 and h.colorscale[0][1] != h.colorscale[-1][1]
    assert "B − A" in h.hovertemplate


def test_figure_html_inlines_plotly_and_loads_nothing_remote():
    html = F.figure_html(F.fig_block_norms(np.eye(3), NAMES))
    assert html.lstrip().lower().startswith(("<!doctype html>", "<html"))
    assert len(html) > 1_000_000  # plotly.js itself is inside
    assert not re.search(r"<script[^>]+src\s*=\s*[\"']?(https?:)?//", html, flags=re.IGNORECASE)
    assert not re.search(r"<link[^>]+href\s*=\s*[\"']?(https?:)?//", html, flags=re.IGNORECASE)


def test_table_csv_round_trips():
    N = A.block_norm_frame(np.arange(9.0).reshape(3, 3), BLOCKS)
    back = pd.read_csv(io.BytesIO(F.table_csv(N)), index_col=0)
    assert list(back.index) == NAMES and list(back.columns) == NAMES
    np.testing.assert_array_equal(back.to_numpy(), N.to_numpy())
    t = A.top_crosses(N.to_numpy(), NAMES, n=2)
    back2 = pd.read_csv(io.BytesIO(F.table_csv(t)))
    assert list(back2.columns) == list(t.columns) and len(back2) == 2


def test_training_curves_read_the_trainers_history_shape():
    # dcnviz.train.fit's history: one dict per epoch, validation metrics nested under "val"
    hist = [
        {"epoch": 1, "train_logloss": 0.52, "val": {"logloss": 0.48, "auc": 0.80}, "epoch_s": 1.2,
         "examples_per_s": 33000.0, "lr": 1e-3, "partial": False},
        {"epoch": 2, "train_logloss": 0.45, "val": {"logloss": 0.46, "auc": 0.82}, "epoch_s": 1.1,
         "examples_per_s": 36000.0, "lr": 1e-3, "partial": False},
        {"epoch": 3, "train_logloss": None, "val": None, "epoch_s": 0.2, "examples_per_s": None,
         "lr": 1e-3, "partial": True, "fault": "non-finite loss"},
    ]  # fmt: skip
    fig = F.fig_training_curves(hist)
    by_name = {t.name: t for t in fig.data}
    assert set(by_name) == {"train_logloss", "val_logloss", "val_auc"}
    assert list(by_name["val_auc"].y[:2]) == [0.80, 0.82]
    assert by_name["val_auc"].xaxis == "x2"  # AUC in the right-hand panel


@pytest.mark.parametrize("k", [2, 6, 12, 40])
def test_heatmaps_are_square_with_the_colour_bar_beside_them(k: int) -> None:
    names = [f"feature_{i}" for i in range(k)]
    N = np.random.default_rng(k).random((k, k))
    for fig in (F.fig_block_norms(N, names, title="t"), F.fig_difference(N - 0.5, names)):
        frame = F.square_frame(fig)
        assert frame is not None
        side = F.natural_side(k)
        assert F.MIN_SIDE <= side <= F.MAX_SIDE and (fig.layout.width, fig.layout.height) == frame.size(side)
        # margins leave exactly a side × side plot area at the natural size: square cells, nothing to shrink
        m = fig.layout.margin
        assert (m.l, m.r, m.t, m.b) == (frame.left, frame.right, frame.top, frame.bottom)
        assert fig.layout.width - m.l - m.r == fig.layout.height - m.t - m.b == side
        assert fig.layout.yaxis.scaleanchor == "x" and fig.layout.xaxis.constrain == "domain"
        cb = heat(fig).colorbar
        assert (cb.x, cb.xanchor) == (1.0, "left") and cb.xpad <= 16, "the colour bar sits right beside the cells"
        assert list(fig.layout.xaxis.ticktext) == names and list(fig.layout.xaxis.tickvals) == names  # every label
        shown = heat(fig).texttemplate is not None
        assert shown == (k <= 12), "cell numbers for up to 12 features"
        if shown:
            assert heat(fig).textfont.size >= 12


def test_long_feature_names_are_shortened_on_the_axes_and_whole_in_the_hover() -> None:
    names = ["embedding_dict.user_id_hashed_bucket_feature", "movie", "c"]
    fig = F.fig_block_norms(np.eye(3), names)
    assert list(heat(fig).x) == names  # hover and data keep the whole name
    short = list(fig.layout.xaxis.ticktext)
    assert short[0] == F.short_label(names[0]) and len(short[0]) <= 24 and short[1:] == ["movie", "c"]
    assert F.square_frame(fig).left < 24 * 8 + 40, "the margin follows the shortened label"


def test_side_by_side_pair_shares_one_colour_scale_and_labels_rows_once() -> None:
    a, b = np.random.default_rng(0).random((3, 3)), 2 * np.random.default_rng(1).random((3, 3))
    fig = F.fig_block_norms_pair(a, NAMES, b, NAMES, titles=("A", "B"))
    ha, hb = fig.data
    np.testing.assert_array_equal(np.asarray(ha.customdata), a)
    np.testing.assert_array_equal(np.asarray(hb.customdata), b)
    assert ha.zmin == hb.zmin == 0 and ha.zmax == hb.zmax == pytest.approx(b.max())
    assert (ha.showscale, hb.showscale) == (False, True)  # one colour bar, right of B
    frame = F.square_frame(fig)
    assert frame.panels == 2 and fig.layout.yaxis2.showticklabels is False  # same names: rows labelled once
    assert fig.layout.yaxis.scaleanchor == "x" and fig.layout.yaxis2.scaleanchor == "x2"
    (d1, d2) = fig.layout.xaxis.domain, fig.layout.xaxis2.domain
    assert d1[1] - d1[0] == pytest.approx(d2[1] - d2[0]) and d1[1] < d2[0]  # equal panels, apart
    own = F.fig_block_norms_pair(a, NAMES, b, ["p", "q", "r"], shared_scale=False)
    assert all(t.showscale for t in own.data) and own.data[0].zmax is None
    assert F.square_frame(own).gap > frame.gap  # room for B's own labels and A's colour bar


def test_square_css_sizes_the_chart_from_its_container_and_the_window() -> None:
    frame = F.SquareFrame(left=80, right=104, top=44, bottom=70)
    css = F.square_css(frame, ".st-key-x_chart", container=".block:has(> .st-key-x_chart)")
    assert ".block:has(> .st-key-x_chart) { container-type: inline-size; }" in css
    assert "100cqw - 184px" in css and "85vh - 114px" in css  # column width and window height, less the frame
    assert "width: calc(1 * var(--dcnviz-side) + 184px)" in css and "height: calc(var(--dcnviz-side) + 114px)" in css
    assert "60cqw - 184px" in F.square_css(frame, ".x", container=".y", share=0.6)  # a secondary map
    page = F.figure_html(F.fig_block_norms(np.eye(3), NAMES))
    assert ".dcnviz-wrap { container-type: inline-size;" in page and 'class="dcnviz-square"' in page
    assert "<script src=" not in page


def test_table6_figure_puts_each_run_beside_the_papers_models_in_table_order() -> None:
    def row(model: str, auc: float, std: float, paper: float | None, runs: int) -> dict:
        return {"model": model, "auc_mean": auc, "auc_std": std, "paper_auc": paper, "runs": [{}] * runs}

    rows = [
        row("dnn", 0.87, 0.002, 0.8929, 3),
        row("crossnet-mix", 0.88, 0.001, None, 3),
        row("dcn", 0.86, 0, 0.8935, 3),
    ]
    fig = F.fig_table6(rows, data_label="MovieLens-100K", labels={"dnn": "DNN", "dcn": "DCN (V1)"})
    ours, paper = fig.data
    assert list(ours.x) == ["DNN", "crossnet-mix", "DCN (V1)"] and list(ours.y) == [0.87, 0.88, 0.86]
    assert list(ours.error_y.array) == [0.002, 0.001, 0] and ours.error_y.visible
    assert list(paper.x) == ["DNN", "DCN (V1)"] and list(paper.y) == [0.8929, 0.8935]  # no paper CrossNet-Mix
    assert paper.xaxis == "x2" and fig.layout.xaxis2.categoryarray == ("DNN", "crossnet-mix", "DCN (V1)")
    assert [a.text for a in fig.layout.annotations] == ["this run: MovieLens-100K", "the paper: MovieLens-1M"]
    one = F.fig_table6([row("dnn", 0.87, 0.0, 0.8929, 1)], data_label="sample")
    assert not one.data[0].error_y.visible  # one run: no error bar to draw
    with pytest.raises(ConfigError, match="no Table 6 rows"):
        F.fig_table6([], data_label="sample")
