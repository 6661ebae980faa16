"""Tour (landing page): a notebook-style walk through one model in the order of the paper's story."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd
import streamlit as st

import dcnviz.data as data_mod
from dcnviz.analysis import BLOCK_MEANING, DEFAULT_SUGGEST_TOLERANCE, MatrixAnalysis
from dcnviz.app import effects, state, ui
from dcnviz.app.bundle import ModelBundle, pair_rank, sample_ground_truth
from dcnviz.figures import fig_block_norms, fig_spectrum
from dcnviz.layers import LATEX
from dcnviz.weights import FullRankWeights


def known_answer(meta: Mapping[str, Any], pairs: pd.DataFrame) -> None:
    """For a model trained on the bundled sample: where its planted crosses and the control pair rank."""
    info = meta.get("data_info") if meta else None
    if not isinstance(info, Mapping) or info.get("source") != "sample":
        return
    truth = sample_ground_truth(data_mod.SAMPLE_DIR)
    if truth is None:
        return
    planted = [tuple(p["pair"]) for p in truth["planted"] if isinstance(p, dict) and len(p.get("pair", ())) == 2]
    control = tuple(truth.get("control", {}).get("pair", ()))
    parts = []
    for a, b in planted:
        r = pair_rank(pairs, a, b)
        parts.append(f"**{a} × {b}** ranks #{r}" if r else f"{a} × {b} is not among this model's features")
    text = (
        "This model was trained on the bundled sample, whose answer is known (`sample_data/ground_truth.json`): "
        f"of the {len(pairs)} feature pairs, the planted crosses — {'; '.join(parts)}"
    )
    if len(control) == 2 and (rc := pair_rank(pairs, *control)):
        text += f" — and the control pair {control[0]} × {control[1]}, with no planted cross, ranks #{rc}"
    st.info(text + " (symmetric view of layer 0).")


def render() -> None:
    st.title("dcnviz: what did the cross network learn?")
    st.markdown(
        "DCN-V2 (Wang et al., 2021) models feature interactions with **cross layers**. dcnviz opens a trained "
        "model and shows which feature crosses its layers learned and how low-rank those layers are. This page "
        "walks through one model in the order of the paper's story; every figure is live."
    )
    entry = state.current_entry()
    if entry is None:
        st.info(
            "There is no model to walk through yet (the `models/` folder is empty). Upload a model on the "
            "**Model** page or train one on **Train**; it then appears in the sidebar."
        )
        ui.page_link("train", "Train a model")
        return
    entry, bundle = ui.require_model()
    st.caption(f"Walking through **{entry.label}** ({bundle.detected}). Pick another model in the sidebar.")
    if bundle.n_layers == 0:
        st.info("This model is a plain DNN without cross layers; pick a DCN model in the sidebar for the tour.")
        return
    ui.names_prompt(entry, bundle, key="tour_names")
    _what_a_cross_layer_is(bundle)
    la = _the_heatmap(entry, bundle)
    _the_spectrum(entry, bundle, la)
    _what_next()


def _what_a_cross_layer_is(bundle: ModelBundle) -> None:
    """Section 1: Eq. 1 and what one entry W_ab of a cross layer does."""
    names = bundle.names
    d = bundle.weights.d
    first = bundle.weights.layers[0]

    st.header("1 · What a cross layer is")
    st.markdown(
        f"The embedding layer turns every feature into a block of one long vector x₀ (here **{len(names)} "
        f"feature{'s' if len(names) != 1 else ''}**, d = **{d}**: "
        f"{', '.join(f'`{n}`' for n in names[:12])}{' …' if len(names) > 12 else ''}). "
        "A cross layer (paper Eq. 1) multiplies x₀, element by element, with a learned linear map of the "
        "previous layer's output:"
    )
    st.latex(LATEX["full"])
    st.markdown(
        "Because of the product x₀ ⊙ (W x), the entry W_ab decides how much input slot b is multiplied with slot "
        "a — a **feature cross**. Stacking L layers gives crosses up to order L + 1."
    )
    if not isinstance(first, FullRankWeights):
        st.markdown(f"This model's layers are of another kind ({first.kind}); their update rule is:")
        st.latex(LATEX[first.kind])


def _the_heatmap(entry: state.ModelEntry, bundle: ModelBundle) -> MatrixAnalysis:
    """Section 2: layer 0's block norms, its strongest pairs and (on the sample) the known answer."""
    names = bundle.names
    st.header("2 · The heatmap: which crosses were learned")
    with ui.guard():
        la = state.layer_analysis(entry, 0)
    fig = fig_block_norms(la.norms("raw"), names, mode="raw", title="Layer 0: block norms ‖W_ij‖_F (Fig. 6b)")
    ui.show_figure(fig, key="tour_heat", filename=f"{entry.label}-layer0-block-norms")
    top = la.top_crosses("symmetric", n=3)
    lines = [f"**{r.feature_i} × {r.feature_j}** ({r.pair_share:.1%} of ‖W‖²)" for r in top.itertuples()]
    st.markdown(
        f"Split W into blocks by feature; each cell is a block's Frobenius norm (paper Eq. 7). {BLOCK_MEANING} "
        "Bright cells are learned crosses. "
        + (f"In this model the strongest pairs (both directions together) are {', '.join(lines)}." if lines else "")
    )
    known_answer(bundle.meta, la.top_crosses("symmetric"))
    ui.page_link("crosses", "More views on Feature crosses")
    return la


def _the_spectrum(entry: state.ModelEntry, bundle: ModelBundle, la: MatrixAnalysis) -> None:
    """Section 3: layer 0's spectrum, its numerical rank against the initial one, the suggested rank."""
    st.header("3 · The spectrum: the low-rank lesson")
    sp = la.spectrum
    fig2 = fig_spectrum(sp, normalized=True, title="Layer 0: singular values σ_k / σ₁ (Fig. 3a)")
    ui.show_figure(fig2, key="tour_spec", filename=f"{entry.label}-layer0-spectrum")
    t = DEFAULT_SUGGEST_TOLERANCE
    r = sp.numerical_rank.get(t, sp.suggested.rank)
    msg = f"At tolerance T = {t:g}, **{r} of {sp.rank_bound}** possible singular values of layer 0 are kept (R_T)"
    if sp.initial_numerical_rank is not None and t in sp.initial_numerical_rank:
        msg += f"; the initial matrix kept {sp.initial_numerical_rank[t]} ({sp.initial_label})"
    st.markdown(
        msg + ". The paper saw learned W's spectra decay far faster than their random start, so a low-rank "
        "W ≈ U Vᵀ (Eq. 2) can keep the accuracy at a fraction of the cost."
    )
    picked = state.layer_analysis(entry, 0, state.chosen_tolerances()).spectrum  # the tolerances picked on Spectrum
    sug = effects.suggestion(entry, bundle, picked)
    whose = "this model" if sug.basis == "data" else "layer 0"
    st.markdown(f"**Suggested rank for {whose}:** {sug.text}.")
    ui.page_link("spectrum", "Tolerances and rank tables on Spectrum")


def _what_next() -> None:
    """Section 4: links to the other pages."""
    st.header("4 · What to try next")
    st.markdown(
        "- Look at the model card: features, recipe, metrics.\n"
        "- Compare two models (e.g. full rank against a mixture of experts) side by side.\n"
        "- Train your own on the bundled sample or MovieLens and watch the crosses appear.\n"
        "- Reproduce the paper's synthetic studies and its Table 6 model comparison in the Paper lab.\n"
        "- Export everything as one offline HTML report."
    )
    c = st.columns(3)
    ui.page_link("model", "Model card / upload", where=c[0])
    ui.page_link("compare", where=c[1])
    ui.page_link("train", where=c[2])
    c = st.columns(3)
    ui.page_link("paperlab", where=c[0])
    ui.page_link("report", where=c[1])


if __name__ == "__main__":
    render()
