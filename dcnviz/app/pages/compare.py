"""Compare: two models side by side (block norms and spectra) and their difference B − A."""

from __future__ import annotations

import dataclasses

import streamlit as st

from dcnviz.analysis import (
    MODE_EXPLANATIONS,
    MODES,
    block_norm_difference,
    rank_difference,
    spectrum_difference,
)
from dcnviz.app import state, ui
from dcnviz.errors import DcnvizError
from dcnviz.figures import fig_block_norms, fig_difference, fig_spectrum


def render() -> None:
    st.title("Compare two models")
    entries = state.all_entries()
    if len(entries) < 2:
        st.info("Comparing needs two models: upload one on **Model** or train one on **Train**.")
        return
    keys = [e.key for e in entries]
    labels = {e.key: e.label for e in entries}
    c1, c2 = st.columns(2)
    with c1:
        ka = st.selectbox("Model A", keys, index=0, key="cmp_a", format_func=lambda k: labels[k])
    with c2:
        kb = st.selectbox("Model B", keys, index=1, key="cmp_b", format_func=lambda k: labels[k])
    a, b = state.entry_by_key(ka), state.entry_by_key(kb)
    if a is None or b is None:
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
    na, nb = la.norms(mode), lb.norms(mode)
    top = float(max(na.max(), nb.max()))
    cols = st.columns(2)
    for col, tag, e, bundle, norms in ((cols[0], "A", a, ba, na), (cols[1], "B", b, bb, nb)):
        with col:
            st.markdown(f"**{tag}: {e.label}**  \n{bundle.detected}")
            fig = fig_block_norms(norms, bundle.names, mode=mode, title=f"{tag} · layer {layer}")
            if shared:
                fig.update_traces(zmin=0.0, zmax=top)
            ui.show_figure(fig, key=f"cmp_heat_{tag}", filename=f"{e.label}-layer{layer}-{mode}")

    st.subheader("Difference of block norms (B − A)")
    try:
        diff = block_norm_difference(la.matrix.weight, ba.weights.blocks, lb.matrix.weight, bb.weights.blocks, mode)
    except DcnvizError as err:
        st.info(f"No block-wise difference: {err}")
    else:
        figd = fig_difference(diff, title=f"Layer {layer}: B − A ({mode})")
        ui.show_figure(figd, key="cmp_diff", filename=f"diff-{a.label}-vs-{b.label}-layer{layer}-{mode}")
        ui.show_table(diff, key="cmp_diff_t", filename=f"diff-{a.label}-vs-{b.label}-layer{layer}", index=True)

    st.subheader("Spectra")
    sa = dataclasses.replace(la.spectrum, label=f"A: {a.label} · layer {layer}")
    sb = dataclasses.replace(lb.spectrum, label=f"B: {b.label} · layer {layer}")
    show_initial = st.toggle("Show initial matrices", value=False, key="cmp_init")
    fig_s = fig_spectrum([sa, sb], normalized=True, show_initial=show_initial, title=f"Layer {layer}: σ_k / σ₁")
    ui.show_figure(fig_s, key="cmp_spec", filename=f"spectra-{a.label}-vs-{b.label}-layer{layer}")
    c5, c6 = st.columns(2)
    with c5:
        st.caption("Numerical ranks R_T (diff = B − A)")
        ui.show_table(rank_difference(sa, sb), key="cmp_ranks", filename=f"ranks-{a.label}-vs-{b.label}")
    with c6:
        st.caption("Singular values by k")
        ui.show_table(spectrum_difference(sa, sb), key="cmp_sv", filename=f"sv-{a.label}-vs-{b.label}")


if __name__ == "__main__":
    render()
