"""Spectrum: singular-value decay of each cross layer's W against its initial matrix (paper §3.5, Fig. 3a)."""

from __future__ import annotations

import streamlit as st

from dcnviz.analysis import DEFAULT_TOLERANCES, ModelAnalysis, Spectrum, check_tolerance, rank_table
from dcnviz.app import effects, state, ui
from dcnviz.app.bundle import ModelBundle
from dcnviz.app.tables import rank_summary
from dcnviz.errors import ConfigError
from dcnviz.figures import fig_rank_vs_tolerance, fig_spectrum
from dcnviz.weights import LowRankWeights, MixtureWeights, VectorWeights

TOLERANCE_CHOICES: tuple[float, ...] = (0.5, 0.2, 0.1, 0.05, 0.02, 0.01, 0.005, 0.001, 1e-4)
TOLS = "sp_tols"  # the tolerance multiselect (its options are the values as text, so users can type new ones)
TOLS_REFUSED = "sp_tols_refused"  # what the user typed that is not a tolerance, for one message


def tolerance_text(t: float) -> str:
    return f"{t:g}"


def parse_tolerances(values: list[str]) -> tuple[list[float], list[str]]:
    """(valid tolerances, largest first and unique; the entries that are not numbers in (0, 1])."""
    good: set[float] = set()
    bad: list[str] = []
    for v in values:
        try:
            good.add(check_tolerance(float(str(v).strip())))
        except (ConfigError, ValueError):
            bad.append(str(v))
    return sorted(good, reverse=True), bad


def _tolerances_changed() -> None:
    """Keep the chips sorted (largest T first), drop what is not a tolerance, and share the choice."""
    good, bad = parse_tolerances(list(st.session_state.get(TOLS, [])))
    st.session_state[TOLS] = [tolerance_text(t) for t in good]
    st.session_state[TOLS_REFUSED] = bad
    state.choose_tolerances(tuple(good))


def tolerance_picker() -> tuple[float, ...]:
    """Several tolerances at once: pick from the usual ones or type any number in (0, 1]."""
    chosen = state.chosen_tolerances()
    if TOLS not in st.session_state:  # first visit (or back from another page): the session's choice
        st.session_state[TOLS] = [tolerance_text(t) for t in chosen]
    options = sorted({*TOLERANCE_CHOICES, *chosen}, reverse=True)
    st.multiselect(
        "Tolerances T (several at once; type another value and press Enter)",
        [tolerance_text(t) for t in options],
        key=TOLS,
        on_change=_tolerances_changed,
        accept_new_options=True,
        help="R_T = #{k : σ_k ≥ T·σ₁}, the number of singular values kept at tolerance T. Any number in (0, 1]; "
        "the Report uses the same tolerances.",
    )
    refused = st.session_state.pop(TOLS_REFUSED, [])
    if refused:
        st.warning(
            f"Not a tolerance: {', '.join(repr(v) for v in refused)}. A tolerance T is a number in (0, 1], "
            "e.g. 0.3 or 1e-3."
        )
    good, _ = parse_tolerances(list(st.session_state[TOLS]))
    return tuple(good)


LESSON = """
**The low-rank lesson (§3.5, Fig. 3a).** The paper found that the learned W of a cross layer has rapidly
decaying singular values — far faster than the random matrix it started from — so most of its "mass" lives in a
few directions and W ≈ U Vᵀ with a small rank r loses little. That is why DCN-V2 offers the low-rank layer of
Eq. (2) and the mixture of low-rank experts of Eq. (3), and why r ≈ d/4 kept full-rank accuracy on their data
(§8). The **numerical rank** R_T counts the singular values with σ_k ≥ T·σ₁.
"""


def bound_sentence(bundle: ModelBundle, layer: int) -> str:
    """What limits the rank of W for this layer's kind (low rank, mixture, DCN-V1, full)."""
    lw = bundle.weights.layers[layer]
    d = bundle.weights.d
    match lw:
        case LowRankWeights():
            return f"layer {layer} is low rank (Eq. 2): W = U Vᵀ with r = {lw.rank_bound}, so R_T ≤ {lw.rank_bound}."
        case MixtureWeights():
            rs = [e.r for e in lw.experts]
            return (
                f"layer {layer} mixes K = {len(rs)} experts of rank {', '.join(map(str, sorted(set(rs))))} (Eq. 3): "
                f"each expert has rank ≤ its r, and their mean has rank ≤ min(d, Σ r_k) = {lw.rank_bound}."
            )
        case VectorWeights():
            return f"layer {layer} is DCN-V1's W = 1 wᵀ: rank 1 by construction."
    return f"layer {layer} is full rank (Eq. 1): R_T can reach d = {d}."


def _rank_table(label: str, analysis: ModelAnalysis, *, experts: bool, measured: bool) -> None:
    """The numerical-rank table; without its R_T-based "suggested r" when the rank is ``measured`` on data."""
    table = rank_table(analysis, experts=experts)
    st.caption(
        "R_T of the learned W"
        + (", with the initial matrix's in brackets" if analysis.init_label else "")
        + (". The suggested rank is the one measured on data below" if measured else "")
        + ". The CSV holds every column (σ₁, energy rank, kind, d, the R_T-based suggestion)."
    )
    summary = rank_summary(table, suggested=not measured)
    ui.show_table(
        summary,
        key="sp_ranks",
        filename=f"{label}-numerical-ranks",
        csv=table,
        # "learned (initial)" cells are text: right-aligned like the numbers beside them
        column_config={c: st.column_config.TextColumn(alignment="right") for c in summary if c.startswith("R_")},
    )


def render() -> None:
    st.title("Spectrum")
    entry, bundle = ui.require_model()
    ui.require_cross_layers(bundle)
    st.caption(f"Model: **{entry.label}** · {bundle.detected}")
    st.markdown(LESSON)

    n = bundle.n_layers
    c1, c2 = st.columns(2)
    with c1:
        layers = st.multiselect(
            "Layers",
            list(range(n)),
            default=list(range(min(n, 4))),
            key="sp_layers",
            format_func=lambda i: f"layer {i}",
        )
    with c2:
        chosen = tolerance_picker()
    c3, c4, c5 = st.columns(3)
    with c3:
        normalized = st.toggle("σ_k / σ₁ (normalised)", value=True, key="sp_norm")
    with c4:
        show_initial = st.toggle("Show the initial matrix", value=True, key="sp_init")
    has_experts = bundle.weights.has_mixture
    with c5:
        experts = st.toggle("Each expert too", value=False, key="sp_experts", disabled=not has_experts)
    if not layers:
        st.info("Pick at least one layer.")
        return
    tols = chosen or DEFAULT_TOLERANCES
    if not chosen:
        st.caption(f"No tolerance chosen: using the defaults {', '.join(f'{t:g}' for t in DEFAULT_TOLERANCES)}.")

    with ui.guard():
        analysis = state.model_analysis(entry, tols)
    spectra: list[Spectrum] = []
    for i in layers:
        la = analysis.layers[i]
        spectra.append(la.spectrum)
        if experts:
            spectra.extend(e.spectrum for e in la.experts)

    if analysis.init_label:
        st.caption(f"Baseline (dotted): the initial matrix — {analysis.init_label}.")
    else:
        st.caption("This file holds no initial matrix, so only the learned spectrum is drawn.")
    fig = fig_spectrum(spectra, normalized=normalized, tolerances=list(tols), show_initial=show_initial)
    ui.show_figure(fig, key="sp_decay", filename=f"{entry.label}-spectrum")

    st.subheader("Numerical rank per layer")
    ranks_box = st.container()  # filled once it is known whether the suggested rank is measured on data
    measured = effects.rank_curve_view(entry, bundle)
    with ranks_box:
        _rank_table(entry.label, analysis, experts=experts, measured=measured is not None)
    st.subheader("Suggested rank and rank bounds")
    if measured is not None:
        st.markdown(f"**Every cross layer:** {measured.text}.")
    for i in layers:
        sp = analysis.layers[i].spectrum
        said = "" if measured is not None else f"{sp.suggested.text}. "
        st.markdown(f"- **layer {i}:** {said}*Bound:* {bound_sentence(bundle, i)}")

    with st.expander("Numerical rank as the tolerance varies"):
        figr = fig_rank_vs_tolerance(spectra, show_initial=show_initial)
        ui.show_figure(figr, key="sp_rank_T", filename=f"{entry.label}-rank-vs-tolerance")


if __name__ == "__main__":
    render()
