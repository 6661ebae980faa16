"""Compare: two models side by side (block norms and spectra) and their difference B − A."""

from __future__ import annotations

import dataclasses

import streamlit as st

from dcnviz.analysis import (
    MODE_EXPLANATIONS,
    MODES,
    LayerAnalysis,
    block_norm_difference,
    rank_difference,
    spectrum_difference,
)
from dcnviz.app import state, ui
from dcnviz.app.bundle import ModelBundle
from dcnviz.errors import DcnvizError
from dcnviz.figures import fig_block_norms_pair, fig_difference, fig_spectrum

# short headers for the singular-value table so its six columns fit its column of the page; the CSV keeps the names
SV_COLUMNS = {
    "k": st.column_config.NumberColumn("k", width="small"),
    "sigma_a": st.column_config.NumberColumn("σ A", format="%.4g"),
    "sigma_b": st.column_config.NumberColumn("σ B", format="%.4g"),
    "normalized_a": st.column_config.NumberColumn("σ/σ₁ A", format="%.4f"),
    "normalized_b": st.column_config.NumberColumn("σ/σ₁ B", format="%.4f"),
    "normalized_diff": st.column_config.NumberColumn("B − A", format="%+.4f"),
}
RANK_COLUMNS = {
    "tolerance": st.column_config.NumberColumn("T", format="%g"),
    "rank_a": st.column_config.NumberColumn("R_T A"),
    "rank_b": st.column_config.NumberColumn("R_T B"),
    "diff": st.column_config.NumberColumn("B − A", format="%+d"),
}


def _swap(a_key: str, b_key: str) -> None:
    """B becomes the sidebar's model (A) and A becomes B."""
    st.session_state[state.CURRENT] = b_key
    st.session_state["cmp_b"] = a_key


def render() -> None:
    st.title("Compare two models")
    a = state.current_entry()
    others = [e for e in state.all_entries() if a is None or e.key != a.key]
    if a is None or not others:
        st.info("Comparing needs two models: upload one on **Model** or train one on **Train**.")
        return
    labels = {e.key: ui.entry_label(e) for e in others}
    c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
    with c1:
        st.markdown(f"**A** (the model chosen in the sidebar): {ui.entry_label(a)}")
        kb = st.selectbox("Model B", list(labels), key="cmp_b", format_func=lambda k: labels[k])
    with c2:
        st.button(
            "Swap A and B",
            key="cmp_swap",
            icon=":material/swap_horiz:",
            on_click=_swap,
            args=(a.key, kb),
            help="Make B the model of every page (the sidebar's) and compare it with A.",
        )
    b = state.entry_by_key(kb)
    if b is None:
        st.stop()
        return
    with ui.guard():
        ba, bb = state.bundle_of(a), state.bundle_of(b)
    if ba.n_layers == 0 or bb.n_layers == 0:
        st.info("Both models need a cross network; one of them is a plain DNN.")
        return
    n = min(ba.n_layers, bb.n_layers)
    c3, c4 = st.columns(2)
    with c3:
        layer = int(st.selectbox("Cross layer", list(range(n)), key="cmp_layer", format_func=lambda i: f"layer {i}"))
    with c4:
        mode = st.radio("View", list(MODES), key="cmp_mode", horizontal=True)
    st.caption(MODE_EXPLANATIONS[mode])
    with ui.guard():
        la, lb = state.layer_analysis(a, layer), state.layer_analysis(b, layer)

    shared = st.toggle(
        "Same colour scale for A and B",
        value=True,
        key="cmp_shared",
        help="Both heatmaps span 0 … the larger maximum, so equal colours mean equal norms.",
    )
    st.caption(f"A: {ba.detected}  \nB: {bb.detected}")
    fig = fig_block_norms_pair(
        la.norms(mode),
        ba.names,
        lb.norms(mode),
        bb.names,
        mode=mode,
        titles=(f"A · layer {layer}", f"B · layer {layer}"),
        shared_scale=shared,
    )
    ui.show_figure(fig, key="cmp_heat", filename=f"{a.label}-vs-{b.label}-layer{layer}-{mode}")

    _difference(a, b, ba, bb, la, lb, layer, mode)
    _spectra(a, b, la, lb, layer)


def _difference(
    a: state.ModelEntry,
    b: state.ModelEntry,
    ba: ModelBundle,
    bb: ModelBundle,
    la: LayerAnalysis,
    lb: LayerAnalysis,
    layer: int,
    mode: str,
) -> None:
    """B − A of the block norms, where the two models' feature blocks match."""
    st.subheader("Difference of block norms (B − A)")
    try:
        diff = block_norm_difference(la.matrix.weight, ba.weights.blocks, lb.matrix.weight, bb.weights.blocks, mode)
    except DcnvizError as err:
        st.info(f"No block-wise difference: {err}")
    else:
        figd = fig_difference(diff, title=f"Layer {layer}: B − A ({mode})")
        # secondary: about as large as each of the maps above, not larger than both together
        ui.show_figure(figd, key="cmp_diff", filename=f"diff-{a.label}-vs-{b.label}-layer{layer}-{mode}", share=0.6)
        ui.show_table(diff, key="cmp_diff_t", filename=f"diff-{a.label}-vs-{b.label}-layer{layer}", index=True)


def _spectra(a: state.ModelEntry, b: state.ModelEntry, la: LayerAnalysis, lb: LayerAnalysis, layer: int) -> None:
    """Both layers' spectra on one plot, with their numerical ranks and singular values side by side."""
    st.subheader("Spectra")
    sa = dataclasses.replace(la.spectrum, label=f"A: {a.label} · layer {layer}")
    sb = dataclasses.replace(lb.spectrum, label=f"B: {b.label} · layer {layer}")
    show_initial = st.toggle("Show initial matrices", value=False, key="cmp_init")
    fig_s = fig_spectrum([sa, sb], normalized=True, show_initial=show_initial, title=f"Layer {layer}: σ_k / σ₁")
    ui.show_figure(fig_s, key="cmp_spec", filename=f"spectra-{a.label}-vs-{b.label}-layer{layer}")
    # the ranks table has four short columns, the singular values six: give the second the room
    c5, c6 = st.columns([2, 3])
    with c5:
        st.caption("Numerical ranks R_T = #{k : σ_k ≥ T·σ₁}")
        ui.show_table(
            rank_difference(sa, sb),
            key="cmp_ranks",
            filename=f"ranks-{a.label}-vs-{b.label}",
            column_config=RANK_COLUMNS,
        )
    with c6:
        st.caption("Singular values by k (σ_k; σ_k / σ₁; B − A of σ_k / σ₁)")
        ui.show_table(
            spectrum_difference(sa, sb),
            key="cmp_sv",
            filename=f"sv-{a.label}-vs-{b.label}",
            column_config=SV_COLUMNS,
        )


if __name__ == "__main__":
    render()
