"""Report: everything the app shows about a model as one standalone HTML file (opens offline)."""

from __future__ import annotations

import streamlit as st

from dcnviz.app import effects, state, ui
from dcnviz.app.report import build_report_html

REPORT = "dcnviz_report"  # session_state: (model key, sha, tolerances, html bytes) of the last report built


def render() -> None:
    st.title("Report")
    entry, bundle = ui.require_model()
    tols = state.chosen_tolerances()
    st.markdown(
        f"One HTML file with the model card, block-norm heatmaps (raw and symmetric) and top crosses of every "
        f"cross layer, spectra, suggested ranks and the numerical-rank table of **{entry.label}** — and, when the "
        "model's data is on this server, its effect on predictions and the rank-truncation curve measured on it. "
        "plotly.js is inside the file, so it opens offline and can be shared as it is."
    )
    st.caption(
        f"Tolerances T = {', '.join(f'{t:g}' for t in tols)}: the ones chosen on the Spectrum page (change them there)."
    )
    has_experts = bundle.weights.has_mixture
    experts = has_experts and st.checkbox("Include each expert of the mixture layers", value=True, key="rep_experts")
    if st.button("Build the report", key="rep_build", type="primary"):
        with st.spinner("Building the report…"), ui.guard():
            analysis = state.model_analysis(entry, tols)
            measured = effects.explanation_for(entry, bundle)
            page = build_report_html(
                bundle, analysis, title=f"dcnviz report: {entry.label}", experts=experts, explanation=measured
            )
        st.session_state[REPORT] = (entry.key, bundle.sha256, tols, page.encode("utf-8"))
    built = st.session_state.get(REPORT)
    if built and built[0] == entry.key and built[1] == bundle.sha256 and built[2] == tols:
        data = built[3]
        st.success(f"Report ready: {len(data) / 1e6:.1f} MB.")
        st.download_button(
            "Download the report (HTML)",
            data=data,
            file_name=f"{ui.slug(entry.label)}-report.html",
            mime="text/html",
            key="rep_download",
            on_click="ignore",
            icon=":material/download:",
        )


if __name__ == "__main__":
    render()
