"""Feature crosses: block-norm heatmap of a cross layer's W (paper §7.6, Eq. 7, Fig. 6b), top crosses, |W|."""

from __future__ import annotations

from typing import Any

import streamlit as st

from dcnviz.analysis import BLOCK_MEANING, MODE_EXPLANATIONS, MODES, MatrixAnalysis, mixture_sentence
from dcnviz.app import effects, state, ui
from dcnviz.app.bundle import ModelBundle
from dcnviz.figures import fig_block_norms, fig_weight_matrix
from dcnviz.modelfile import ServerDataset
from dcnviz.weights import MixtureWeights

MODE_LABELS = {"raw": "raw ‖W_ij‖ (paper)", "normalized": "normalised by block size", "symmetric": "symmetric pair"}

HOW_TO_READ = (
    f"**How to read block (i, j).** {BLOCK_MEANING} A bright cell (i, j) means the model learned the cross "
    '"feature i × feature j"; a dark row or column means a feature takes little part in crosses. The *symmetric '
    "pair* view adds both directions. The diagonal (i, i) is a feature crossed with itself (e.g. x₁² in the "
    "paper's f₁)."
)

CHANGE_HELP = (
    "Block norms of W − W₀, with W₀ the layer's saved initial matrix: what training added. A random initial W "
    "gives every block a similar norm before any training, which can hide weaker learned crosses; not the "
    "paper's view (Fig. 6b shows W itself)."
)


GATES_HELP = (
    "A mixture layer's W is Σ_k G_k(x) W_k and depends on the input. On: weight each expert by its mean gate "
    "E_x[G_k(x_l)] over the validation split the model file recorded, recreated on data of this server (dcnviz "
    "mixture models trained on the bundled sample, or on MovieLens the operator provides). Off: the plain mean of "
    "the experts (uniform gates)."
)


def choose_matrix(la: MatrixAnalysis, key: str) -> MatrixAnalysis:
    """For a mixture layer, let the user pick the effective W or one expert (per expert, as the issue asks)."""
    experts = getattr(la, "experts", ())
    if not experts:
        return la
    options = list(range(-1, len(experts)))
    weighting = la.matrix.weighting or "uniform"
    uniform = weighting == "uniform"
    pick = st.selectbox(
        "Expert",
        options,
        key=key,
        format_func=lambda k: (
            ("all experts (mean)" if uniform else "all experts (gate-weighted)")
            if k < 0
            else f"expert {k} of {len(experts)}"
        ),
        help="A mixture layer (Eq. 3) has K low-rank experts U_k C_k V_kᵀ; pick their combined W or one of them.",
    )
    if pick < 0:
        st.caption(mixture_sentence(weighting))
    return la if pick < 0 else experts[int(pick)]


def gates_toggle(entry: state.ModelEntry, bundle: ModelBundle, layer: int) -> ServerDataset | None:
    """For a dcnviz mixture layer, offer the gate-weighted average of the experts over data of this server;
    the dataset to weight over when that is on and works, else None."""
    if bundle.format != "dcnviz" or not isinstance(bundle.weights.layers[layer], MixtureWeights):
        return None
    if not st.toggle("Weight experts by their mean gates", key="cx_gates", help=GATES_HELP):
        return None
    found = state.gate_datasets(entry)
    if isinstance(found, str):
        st.info(f"Shown with uniform gates: {found}.")
        return None
    dataset = found[0]
    if len(found) > 1:
        dataset = st.selectbox("Data for the mean gates", found, key="cx_gates_data", format_func=lambda ds: ds.label)
    g = state.mean_gates_of(entry, dataset)
    if isinstance(g, str):
        st.info(f"Shown with uniform gates: {g}")
        return None
    weights = g[0][layer]
    if weights is not None:
        st.caption(
            f"Mean gates E_x[G_k(x_l)] on {dataset.label}: "
            + ", ".join(f"expert {k} {w:.3f}" for k, w in enumerate(weights))
        )
    for w in g[2]:
        st.caption(f"Note: {w}.")
    return dataset


def render() -> None:
    st.title("Feature crosses")
    entry, bundle = ui.require_model()
    ui.require_cross_layers(bundle)
    st.caption(f"Model: **{entry.label}** · {bundle.detected}")
    ui.names_prompt(entry, bundle, key="cx_names")

    cols = st.columns([1, 1, 1])
    with cols[0]:
        layer = ui.layer_picker(bundle, key="cx_layer")
    if effects.view_switch(key="cx_view") == "effect":
        effects.effect_view(entry, bundle, layer)
        return
    gate_data = gates_toggle(entry, bundle, layer)
    with ui.guard():
        la = state.layer_analysis(entry, layer, gate_data=gate_data)
    with cols[1]:
        m = choose_matrix(la, key="cx_expert")
    mode, log_color, change = _view_controls(m, cols[2])
    stem = f"{entry.label}-{m.matrix.label}-{mode}{'-change' if change else ''}"
    _heatmap(bundle, m, mode, log_color, change, stem)
    _strongest_crosses(m, mode, change, stem)
    _whole_matrix(entry, bundle, m)


def _view_controls(m: MatrixAnalysis, column: Any) -> tuple[str, bool, bool]:
    """The block-norm view (in ``column``), log colours and the W − W₀ switch: (mode, log_color, change)."""
    with column:
        mode = st.radio(
            "View",
            list(MODES),
            key="cx_mode",
            format_func=lambda x: MODE_LABELS[x],
            horizontal=False,
        )
    st.caption(MODE_EXPLANATIONS[mode])
    t1, t2 = st.columns(2)
    with t1:
        log_color = st.toggle(
            "Log colour scale",
            key="cx_log",
            help="Colours on a log10 scale, for norms that span several decades (hover shows the value).",
        )
    with t2:
        change = st.toggle(
            "What training changed (W − W₀)",
            key="cx_change",
            disabled=not m.has_change,
            help=CHANGE_HELP if m.has_change else "Needs the model's saved initial weights (dcnviz model files).",
        )
    change = change and m.has_change
    return mode, log_color, change


def _heatmap(bundle: ModelBundle, m: MatrixAnalysis, mode: str, log_color: bool, change: bool, stem: str) -> None:
    """The block-norm heatmap (Fig. 6b) and how to read it; ``stem``: the download file names' start."""
    names = [b.name for b in bundle.weights.blocks]
    what = "W − W₀" if change else "W"
    title = f"{m.matrix.label} · block norms of {what}, {mode}"
    if m.matrix.linear_part_only:
        st.info("This mixture's experts are nonlinear (Eq. 4): U C Vᵀ is only each expert's linear part.")
    with ui.guard():
        fig = fig_block_norms(m.norms(mode, change=change), names, mode=mode, title=title, log_color=log_color)
    ui.show_figure(fig, key="cx_heat", filename=f"{stem}-block-norms")
    st.markdown(HOW_TO_READ)


def _strongest_crosses(m: MatrixAnalysis, mode: str, change: bool, stem: str) -> None:
    """The ranked table of the strongest crosses, with each block's share of ‖W‖²."""
    st.subheader("Strongest crosses")
    c1, c2 = st.columns(2)
    with c1:
        n = st.slider("How many", 3, 50, 10, key="cx_topn")
    with c2:
        include_self = st.checkbox("Include self-crosses (i, i)", key="cx_self")
    top = m.top_crosses(mode, include_self=include_self, n=n, change=change)
    of = "of ‖W − W₀‖²" if change else "of ‖W‖²" if mode != "normalized" else "of the view's Σ value²"
    if mode == "symmetric":
        st.caption(
            f"Each pair once; **share** = the pair's value² {of}, both directions together — the number the "
            "Tour quotes for the same pair."
        )
        shown = top[["rank", "feature_i", "feature_j", "value", "pair_share"]]
        labels = {"pair_share": "share (both directions)"}
    else:
        st.caption(
            f"`feature_i` is the output feature (row of W), `feature_j` the input feature (column). **share (this "
            f"block)** = the block's value² {of}; **share (both directions)** adds block (j, i), as the symmetric "
            "view and the Tour do, so the same pair shows the same number there."
        )
        shown = top[["rank", "feature_i", "feature_j", "value", "share", "pair_share"]]
        labels = {"share": "share (this block)", "pair_share": "share (both directions)"}
    ui.show_table(
        shown,
        key="cx_top",
        filename=f"{stem}-top-crosses",
        csv=top,
        column_config={
            col: st.column_config.NumberColumn(label, format="percent", help=f"value² {of}")
            for col, label in labels.items()
        },
    )


def _whole_matrix(entry: state.ModelEntry, bundle: ModelBundle, m: MatrixAnalysis) -> None:
    """Every entry of |W| with the feature blocks outlined (Fig. 6a)."""
    st.subheader("The whole matrix |W|")
    st.caption(
        "Every entry of W with the feature blocks outlined (white lines), as in the paper's Fig. 6a. Rows are "
        "output slots, columns input slots; wide matrices are max-pooled so strong entries stay visible."
    )
    if st.toggle("Show |W|", key="cx_showW", value=bundle.weights.d <= 512):
        with ui.guard():
            figW = fig_weight_matrix(m.matrix.weight, bundle.weights.blocks, title=f"{m.matrix.label}: |W|")
        ui.show_figure(figW, key="cx_W", filename=f"{entry.label}-{m.matrix.label}-abs-W")


if __name__ == "__main__":
    render()
