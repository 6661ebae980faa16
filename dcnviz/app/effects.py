"""Effect on predictions (issue 12): the views that run the model on data, for the pages to call.

* :func:`effect_view` — Feature crosses' "effect on predictions": the ablation (or contribution) heatmap
  and the block-norm heatmap of one cross layer (tabs, each sized to the column by
  :func:`dcnviz.figures.fig_block_norms`), one ranked table with both, one sentence on how far they agree,
  and a row picker for one example;
* :func:`rank_curve_view` — Spectrum's rank-truncation curve (AUC and log loss vs r, without retraining)
  with the suggested rank;
* :func:`suggestion` — the one-number rank suggestion of a model: measured when the curve is at hand,
  read off the weights at the user's tolerance otherwise (Spectrum, Tour, Report).

The data is what the user picks among the data on this server (:func:`dcnviz.modelfile.server_datasets`)
of the kind the model was trained on; a folder named in an uploaded file is never opened. Results are
cached per model content and data (``st.cache_resource`` holds one :class:`dcnviz.explain.Explainer`,
which memoises each layer, the curve and the figures), so switching layers, views or pages does not
recompute. Computation shows a progress bar.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd
import streamlit as st

from dcnviz import analysis as A
from dcnviz.app import state, ui
from dcnviz.app.bundle import ModelBundle
from dcnviz.errors import DcnvizError
from dcnviz.explain import DEFAULT_MAX_ROWS, NONLINEAR_RANK_NOTE, Explainer, Explanation, row_values
from dcnviz.figures import fig_block_norms
from dcnviz.figures_explain import fig_effect, fig_rank_curve
from dcnviz.modelfile import ServerDataset, not_on_server, server_datasets

EFFECT_HELP = (
    "Measured on data: each block (i, j) of this layer's W is set to 0 in turn (everything else unchanged, the bias "
    "kept) and the model is scored on the validation rows. Δ log loss > 0: the predictions got worse without the "
    "block, so the model uses that cross. The weights view only says the model *could* use it."
)
CONTRIBUTION_HELP = (
    "Root-mean-square over the validation rows of ‖x0_i ⊙ (W_ij x_j)‖: how large the term that block (i, j) adds "
    "to the layer's cross term is, whether or not the rest of the network relies on it."
)
TRUNCATION_HELP = (
    "Every cross layer's W is replaced by its best rank-r approximation (truncated SVD) and the model is scored "
    "again, without retraining. The paper's Fig. 5b retrains a model at each r, so a retrained model may need a "
    "lower rank than this curve suggests."
)


# --------------------------------------------------------------------------------------------------
# Data on this server


def datasets_for(bundle: ModelBundle) -> list[ServerDataset] | str:
    """The data on this server (:func:`dcnviz.modelfile.server_datasets`) of the kind the model was trained on,
    or why there is none (a sentence). A folder named in the model file is never looked at."""
    if bundle.format != "dcnviz":
        return (
            f"the effect on predictions needs a dcnviz model file: it runs the whole model on data, and this "
            f"{bundle.library} file holds only its cross weights"
        )
    recorded = bundle.data
    if recorded is None or recorded.options is None or recorded.source is None:
        return "this model file records no training data, so the split it was validated on cannot be recreated"
    found = bundle.server_data(server_datasets())
    if found:
        return found
    return not_on_server(recorded.source)


@st.cache_resource(max_entries=4, show_spinner="Loading the validation split and running the model on it…")
def _explainer(
    sha: str, source: str, data_dir: str | None, split: str, rows: int, _bundle: ModelBundle
) -> Explainer | str:
    return _explainer_or_why(source, data_dir, split, rows, _bundle)


def _explainer_or_why(source: str, data_dir: str | None, split: str, rows: int, bundle: ModelBundle) -> Explainer | str:
    from dcnviz.data import load_splits

    try:
        assert bundle.data is not None  # datasets_for checked it
        options, _ = bundle.data.options_at(source, data_dir=data_dir)
        splits = load_splits(options, spec=bundle.spec)
        part = splits.val if split == "val" else splits.test
        return Explainer(bundle.build_model(), part, split=split, max_rows=rows)
    except (DcnvizError, OSError) as e:
        return f"the model could not be run on this data: {e}"


def explainer_of(entry: state.ModelEntry, ds: ServerDataset, *, rows: int = DEFAULT_MAX_ROWS) -> Explainer | str:
    """The cached :class:`Explainer` of a model on a dataset's validation split (or why not, a str)."""
    args, b = (entry.sha256, ds.source, ds.data_dir, "val", rows), state.bundle_of(entry)
    if entry.shared:
        return _explainer(*args, b)
    return state.private_memo(
        "explainer",
        args,
        lambda: _explainer_or_why(*args[1:], b),
        max_entries=2,
        spinner="Loading the validation split and running the model on it…",
    )


def pick_dataset(bundle: ModelBundle, *, key: str) -> ServerDataset | None:
    """A data picker (shown only when there is a choice); None, with the reason shown, when there is no data."""
    found = datasets_for(bundle)
    if isinstance(found, str):
        st.info(f"Effect on predictions unavailable: {found}.")
        return None
    if len(found) == 1:
        st.caption(
            f"Data: {found[0].label}, the validation split the model file recorded (its first "
            f"{DEFAULT_MAX_ROWS:,} rows at most)."
        )
        return found[0]
    i = st.selectbox(
        "Data (on this server)", list(range(len(found))), key=key, format_func=lambda i: found[int(i)].label
    )
    return found[int(i)]


def _ready(entry: state.ModelEntry, bundle: ModelBundle, *, key: str) -> Explainer | None:
    ds = pick_dataset(bundle, key=key)
    if ds is None:
        return None
    ex = explainer_of(entry, ds)
    if isinstance(ex, str):
        st.warning(ex)
        return None
    return ex


class _Bar:
    """A progress bar that appears only while something is computed."""

    def __init__(self) -> None:
        self.bar: Any = None

    def __call__(self, fraction: float, what: str) -> None:
        if self.bar is None:
            self.bar = st.progress(0.0, text=what)
        self.bar.progress(min(1.0, max(0.0, fraction)), text=what)

    def done(self) -> None:
        if self.bar is not None:
            self.bar.empty()


# --------------------------------------------------------------------------------------------------
# Feature crosses: effect on predictions

VIEWS = {"weights": "Weights (block norms)", "effect": "Effect on predictions (measured on data)"}


def view_switch(*, key: str) -> str:
    """Feature crosses' choice between the weights view and the effect on predictions."""
    return str(
        st.radio(
            "Show",
            list(VIEWS),
            key=key,
            format_func=lambda v: VIEWS[v],
            horizontal=True,
            help="Weights: what the model could use (block norms of W). Effect: what its predictions depend on, "
            "measured by zeroing each block on validation data.",
        )
    )


def effect_view(entry: state.ModelEntry, bundle: ModelBundle, layer: int) -> None:
    """The "effect on predictions" view of one cross layer (see the module docstring)."""
    ex = _ready(entry, bundle, key="fx_data")
    if ex is None:
        return
    bar = _Bar()
    with ui.guard():
        le = ex.layer_effect(layer, progress=bar)
    bar.done()
    names = ex.names
    split = f"{ex.rows:,} validation rows"
    st.caption(
        f"Baseline on {split}: AUC {ex.baseline['auc']:.4f}, log loss {ex.baseline['logloss']:.4f}. "
        "Rows = output feature i, columns = input feature j, as in the weights view."
    )
    if le.ablation is None or le.contribution is None:
        st.info(f"Layer {layer}: {le.note}.")
        return
    tabs = st.tabs(["Effect: Δ log loss (ablation)", "Effect: contribution", "Weights: block norms ‖W_ij‖"])
    with tabs[0]:
        st.caption(EFFECT_HELP)
        fig = _figure(ex, entry, layer, "ablation", f"layer {layer}: Δ log loss when block (i, j) is 0")
        ui.show_figure(fig, key="fx_ablation", filename=f"{entry.label}-layer{layer}-ablation")
    with tabs[1]:
        st.caption(CONTRIBUTION_HELP)
        figc = _figure(ex, entry, layer, "contribution", f"layer {layer}: contribution")
        ui.show_figure(figc, key="fx_contribution", filename=f"{entry.label}-layer{layer}-contribution")
    with tabs[2]:
        st.caption(A.MODE_EXPLANATIONS["raw"])
        fign = _figure(ex, entry, layer, "block_norms", f"layer {layer}: block norms ‖W_ij‖_F")
        ui.show_figure(fign, key="fx_norms", filename=f"{entry.label}-layer{layer}-block-norms")

    st.subheader("Crosses by effect, with their weights")
    pairs = st.toggle(
        "Feature pairs (i, j) and (j, i) together", value=True, key="fx_pairs", help="Off: each directed block."
    )
    table = A.effect_table(le.ablation, le.block_norms, names, contribution=le.contribution, pairs=pairs)
    st.markdown(A.agreement_sentence(table, what="pairs" if pairs else "blocks", where=f"of layer {layer}"))
    st.caption(
        "`effect`: Δ log loss when the block is zeroed (for a pair, the two directions summed); `contribution`: "
        "RMS size of the block's term; `block_norm`: ‖W_ij‖ (a pair: √(‖W_ij‖² + ‖W_ji‖²)); `norm_rank`: the "
        "same cross's rank by block norm."
    )
    ui.show_table(table, key="fx_table", filename=f"{entry.label}-layer{layer}-effect-table")
    row_view(ex, entry, layer, names)


@st.cache_resource(max_entries=64, show_spinner=False)
def _figure_of(token: str, layer: int, what: str, title: str, _ex: Explainer) -> Any:
    return _build_figure(_ex, layer, what, title)


def _build_figure(ex: Explainer, layer: int, what: str, title: str) -> Any:
    le = ex.layer_effect(layer)
    if what == "block_norms":
        return fig_block_norms(le.block_norms, ex.names, mode="raw", title=title)
    return fig_effect(getattr(le, what), ex.names, what=what, title=title)


def _figure(ex: Explainer, entry: state.ModelEntry, layer: int, what: str, title: str) -> Any:
    """One layer's heatmap, built once per explainer (figures cost more to build than to show again); a
    session model's in its session (:func:`dcnviz.app.state.private_memo`)."""
    if entry.shared:
        return _figure_of(ex.token, layer, what, title, ex)
    key = (ex.token, layer, what, title)
    return state.private_memo("figure", key, lambda: _build_figure(ex, layer, what, title), max_entries=64)


def row_view(ex: Explainer, entry: state.ModelEntry, layer: int, names: Sequence[str]) -> None:
    """One example: which crosses moved its score (Δ logit when each block of the layer is zeroed)."""
    st.subheader("One example")
    n = len(ex.data)
    row = int(
        st.number_input(
            f"Row of the validation split (0 – {n - 1:,})",
            min_value=0,
            max_value=n - 1,
            value=0,
            step=1,
            key="fx_row",
            help="Any row of the split, also beyond the rows the averages above use.",
        )
    )
    with ui.guard():
        r = ex.row_effect(row, layers=[layer])
        values = row_values(ex.model.spec, ex.data, row)
    st.markdown(
        f"Row {row}: " + ", ".join(f"{k} = `{v}`" for k, v in values.items()) + f" · label **{r.label:g}**, "
        f"predicted probability **{r.score:.3f}** (logit {r.logit:+.3f})."
    )
    delta = r.ablation[layer]
    if delta is None:
        return
    fig = fig_effect(delta, names, what="row", title=f"row {row}, layer {layer}: Δ logit when block (i, j) is 0")
    ui.show_figure(fig, key="fx_row_heat", filename=f"{entry.label}-row{row}-layer{layer}-delta-logit")
    cells = [
        {"feature_i": names[i], "feature_j": names[j], "delta_logit": float(delta[i, j])}
        for i in range(len(names))
        for j in range(len(names))
    ]
    top = pd.DataFrame(cells).sort_values("delta_logit", key=abs, ascending=False).head(5).reset_index(drop=True)
    st.caption("Δ logit < 0: without the block this example's score falls, so the cross pushed it up.")
    st.dataframe(top, hide_index=True, key="fx_row_top")


# --------------------------------------------------------------------------------------------------
# Spectrum: the rank-truncation curve, and the suggestion everywhere


def rank_curve(entry: state.ModelEntry, bundle: ModelBundle, *, quiet: bool = False) -> tuple[Any, Explainer] | None:
    """(the curve as :func:`dcnviz.analysis.rank_curve_frame`, its explainer), computed with a progress bar;
    None (with the reason shown unless ``quiet``) when there is no data or the curve is undefined."""
    found = datasets_for(bundle)
    if isinstance(found, str):
        if not quiet:
            st.info(f"Rank truncation unavailable: {found}.")
        return None
    ds = found[0] if quiet else pick_dataset(bundle, key="rc_data")
    if ds is None:
        return None
    ex = explainer_of(entry, ds)
    if isinstance(ex, str):
        if not quiet:
            st.warning(ex)
        return None
    bar = _Bar()
    with ui.guard():
        curve = ex.rank_curve(progress=None if ex.has_curve() else bar)
    bar.done()
    if curve is None:
        if not quiet:
            st.info(f"Rank truncation unavailable: {NONLINEAR_RANK_NOTE}.")
        return None
    frame = A.rank_curve_frame([p.rank for p in curve], [p.auc for p in curve], [p.logloss for p in curve])
    return frame, ex


def suggestion(entry: state.ModelEntry, bundle: ModelBundle, spectrum: A.Spectrum) -> A.SuggestedRank:
    """The model's one-number rank suggestion: measured on the rank curve when data is at hand (computed with a
    progress bar, then cached), else the layer's tolerance-based one (``spectrum.suggested``, at the tolerance
    the user picked)."""
    got = rank_curve(entry, bundle, quiet=True)
    if got is None:
        return spectrum.suggested
    return _measured(bundle, *got)


def _measured(bundle: ModelBundle, frame: pd.DataFrame, ex: Explainer) -> A.SuggestedRank:
    return A.suggest_rank(
        curve=list(zip(frame["rank"], frame["auc"], strict=True)),
        d=bundle.weights.d,
        rank_bound=ex.largest_bound,
        rows=ex.rows,
        split=ex.split,
    )


def explanation_for(entry: state.ModelEntry, bundle: ModelBundle) -> Explanation | None:
    """Everything measured on data (every layer's ablation, the rank curve) for the report, with a progress bar;
    None when the model cannot be run on data of this server."""
    found = datasets_for(bundle)
    if isinstance(found, str):
        return None
    ex = explainer_of(entry, found[0])
    if isinstance(ex, str):
        return None
    bar = _Bar()
    result = ex.explain(progress=bar)
    bar.done()
    return result


def rank_curve_view(entry: state.ModelEntry, bundle: ModelBundle) -> A.SuggestedRank | None:
    """Spectrum's section: the curve, its table and the measured suggestion (returned; None without data)."""
    st.subheader("Rank truncation without retraining (measured on data)")
    st.caption(TRUNCATION_HELP)
    got = rank_curve(entry, bundle)
    if got is None:
        return None
    frame, ex = got
    sug = _measured(bundle, frame, ex)
    fig = fig_rank_curve(frame, title=f"every cross layer truncated to rank r, {ex.rows:,} validation rows")
    ui.show_figure(fig, key="rc_curve", filename=f"{entry.label}-rank-truncation")
    st.markdown(f"**Suggested rank:** {sug.text}.")
    ui.show_table(frame, key="rc_table", filename=f"{entry.label}-rank-truncation")
    return sug
