"""Small UI helpers shared by the pages: figure/table with download buttons, the model picker, error guard.

Helpers only draw widgets and return values; nothing here computes an analysis.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from dcnviz.app import state
from dcnviz.app.bundle import ModelBundle
from dcnviz.app.jobs import TrainingJob
from dcnviz.errors import DcnvizError
from dcnviz.figures import figure_html, short_label, square_css, square_frame, table_csv
from dcnviz.importers import read_names_or_feature_map

PAGES_DIR = Path(__file__).resolve().parent / "pages"
PICKER_CHARS = 28  # what the sidebar's picker shows of a model's label without cutting it off
ORIGIN_SUFFIX = {"shipped": "", "uploaded": " · uploaded", "trained": " · trained", "table6": " · Table 6"}
ORIGIN_TEXT = {
    "shipped": "shipped demo model",
    "uploaded": "uploaded in this session",
    "trained": "trained here",
    "table6": "trained in the Paper lab's Table 6 (its best run)",
}
PLOTLY_CONFIG = {"displaylogo": False, "responsive": True}
STATUS_S = 2.0  # seconds between refreshes of the sidebar's training status


@dataclasses.dataclass(frozen=True)
class PageInfo:
    """One page of the app: its module under ``pages/``, its title and icon, and its sidebar group."""

    name: str  # the module name under dcnviz/app/pages/ ("crosses")
    title: str  # what the sidebar and links call it
    icon: str  # a Material icon
    group: str  # the sidebar section


#: The app's pages in sidebar order: the router and every link between pages read this one table.
PAGES: tuple[PageInfo, ...] = (
    PageInfo("tour", "Tour", ":material/school:", "Understand a model"),
    PageInfo("model", "Model", ":material/description:", "Understand a model"),
    PageInfo("crosses", "Feature crosses", ":material/grid_on:", "Understand a model"),
    PageInfo("spectrum", "Spectrum", ":material/show_chart:", "Understand a model"),
    PageInfo("compare", "Compare", ":material/compare:", "Understand a model"),
    PageInfo("report", "Report", ":material/summarize:", "Understand a model"),
    PageInfo("train", "Train", ":material/model_training:", "Train and reproduce"),
    PageInfo("paperlab", "Paper lab", ":material/science:", "Train and reproduce"),
)


def page_info(name: str) -> PageInfo:
    """The registry entry of page ``name``; ValueError naming the pages there are for any other name."""
    for info in PAGES:
        if info.name == name:
            return info
    raise ValueError(f"no app page named {name!r}; the pages are {[p.name for p in PAGES]}")


def page(name: str) -> str:
    """The absolute path of page ``name`` (``"crosses"``), for ``st.Page`` and ``st.page_link``.

    Absolute, so links work whichever script Streamlit runs (``app.py`` or the installed entry script).
    """
    path = PAGES_DIR / f"{name}.py"
    if not path.is_file():
        raise ValueError(f"no app page named {name!r} in {PAGES_DIR}")
    return str(path)


def page_link(name: str, label: str | None = None, *, where: Any = st) -> None:
    """A link to page ``name`` with its registered icon (``label``: the link text, default its title);
    ``where``: a column or container to draw in."""
    info = page_info(name)
    where.page_link(page(name), label=label or info.title, icon=info.icon)


def slug(text: str) -> str:
    """A file-name-safe version of ``text``.

    >>> slug("layer 0 · expert 2 (linear part)")
    'layer-0-expert-2-linear-part'
    """
    return re.sub(r"[^A-Za-z0-9_.]+", "-", text).strip("-")[:80] or "figure"


@contextlib.contextmanager
def guard() -> Iterator[None]:
    """Show a dcnviz error (bad file, bad option) as ``st.error`` and stop the page; real bugs still raise."""
    try:
        yield
    except DcnvizError as e:
        st.error(str(e))
        st.stop()


def show_figure(fig: go.Figure, *, key: str, filename: str, share: float = 1.0) -> None:
    """Draw a Plotly figure with a download button for a standalone HTML copy (plotly.js inlined).

    Line charts stretch to the column's width. A square heatmap (one built with
    :func:`dcnviz.figures.square_layout`: every heatmap of :mod:`dcnviz.figures`) is sized to the column
    by CSS (:func:`dcnviz.figures.square_css`): square cells as large as the column and the window's
    height allow, the colour bar beside them. Its download keeps the same behaviour in a browser window.
    ``share`` < 1 gives a heatmap only that part of the column's width (a secondary map).
    The HTML is built only when the button is clicked (deferred download).
    """
    frame = square_frame(fig)
    shown = fig
    if frame is not None:
        # the figure's own width/height are its natural (notebook) size; here CSS sizes it to the column
        shown = go.Figure(fig).update_layout(width=None, height=None)
        box = f".st-key-{key}_chart"  # Streamlit's element container of the chart; its block is the container
        css = square_css(frame, box, container=f".stVerticalBlock:has(> {box})", share=share)
        st.html(f"<style>{css}</style>")
    st.plotly_chart(shown, width="stretch", key=f"{key}_chart", config=PLOTLY_CONFIG)
    st.download_button(
        "Download figure (HTML)",
        data=lambda: figure_html(fig).encode("utf-8"),
        file_name=f"{slug(filename)}.html",
        mime="text/html",
        key=f"{key}_html",
        on_click="ignore",
        icon=":material/download:",
    )


def show_table(
    df: pd.DataFrame,
    *,
    key: str,
    filename: str,
    index: bool = False,
    csv: pd.DataFrame | None = None,
    static: bool = False,
    column_config: dict[str, Any] | None = None,
) -> None:
    """Show a table full-width with a CSV download button (of ``csv`` when the page shows a compact view).

    ``static``: a plain table whose cells wrap (model-card property/value tables: long values stay
    readable) instead of the interactive one (sorting, scrolling; cells cut at the column's width).
    """
    if static:
        st.table(df, hide_index=not index)
    else:
        st.dataframe(df, width="stretch", hide_index=not index, key=f"{key}_table", column_config=column_config)
    st.download_button(
        "Download table (CSV)",
        data=table_csv(df if csv is None else csv, index=index),
        file_name=f"{slug(filename)}.csv",
        mime="text/csv",
        key=f"{key}_csv",
        on_click="ignore",
        icon=":material/download:",
    )


def download_csv(df: pd.DataFrame, *, key: str, filename: str, label: str = "Download table (CSV)") -> None:
    """A CSV download button for a table that is drawn some other way (e.g. a built-in chart)."""
    st.download_button(
        label,
        data=table_csv(df, index=False),
        file_name=f"{slug(filename)}.csv",
        mime="text/csv",
        key=key,
        on_click="ignore",
        icon=":material/download:",
    )


def lab_progress(job: Any, *, key: str) -> Any | None:
    """A Paper lab run's progress bar and stop button (key ``key``), redrawn twice a second by a fragment
    while it runs; the page reruns once when it ends. Returns the finished run's snapshot, or None while
    it runs or when it failed (the error shown)."""
    snap = job.snapshot()

    @st.fragment(run_every=0.5 if not snap.finished else None)
    def _live() -> None:
        s = job.snapshot()
        st.progress(s.fraction, text=s.message)
        if not s.finished:
            st.button("Stop", key=key, on_click=job.stop, disabled=job.stop_requested)
        elif not snap.finished:
            st.rerun(scope="app")

    _live()
    if not snap.finished:
        return None
    if snap.error:
        st.error(f"The run failed: {snap.error}")
        return None
    return snap


def model_picker(*, training_line: bool = True) -> None:
    """Sidebar: choose which model the pages show (shipped, uploaded or trained in this session).

    ``training_line``: show the session's running training run in a line refreshed every STATUS_S
    seconds (False on the Train page, whose live view says more: one refreshing fragment, not two).
    """
    state.collect_finished_training()
    state.collect_table6_models()
    state.apply_pending_selection()
    entries = state.all_entries()
    with st.sidebar:
        job = st.session_state.get(state.TRAIN_JOB)
        if training_line and job is not None and not job.finished:
            training_status(job)
        if not entries:
            st.info("No model yet: upload one on **Model** or train one on **Train**.")
            return
        keys = [e.key for e in entries]
        labels = picker_labels(entries)
        index = 0  # the widget's own value wins once it has one (Session State)
        if st.session_state.get(state.CURRENT) not in keys:
            # No valid choice yet: start on the default model through the widget's index, so that the
            # browser's picker and the pages agree from the first run (a value put into Session State
            # before the widget first exists was shown as the first option in the browser).
            st.session_state.pop(state.CURRENT, None)
            first = state.default_entry(entries)
            index = keys.index(first.key) if first else 0
        st.selectbox(
            "Model",
            keys,
            index=index,
            key=state.CURRENT,
            format_func=lambda k: labels.get(k, k),
            help="Shipped demo models, then the models you uploaded or trained in this session. "
            "Uploads and trained models are visible to you only and are never saved on the server.",
        )
        chosen = state.entry_by_key(st.session_state.get(state.CURRENT))
        if chosen is not None:
            st.caption(entry_caption(chosen))


def entry_label(entry: state.ModelEntry) -> str:
    """A model's name in pickers and captions: its label and where it came from."""
    return f"{entry.label}{ORIGIN_SUFFIX.get(entry.origin, '')}"


def picker_labels(entries: list[state.ModelEntry], limit: int = PICKER_CHARS) -> dict[str, str]:
    """{key: label} for the sidebar picker: short enough for the sidebar (shortened in the middle; the
    caption under the picker has the whole name) and never two alike (`` #2``, `` #3`` …)."""
    out: dict[str, str] = {}
    seen: dict[str, int] = {}
    for e in entries:
        suffix = ORIGIN_SUFFIX.get(e.origin, "")
        text = short_label(e.label, max(8, limit - len(suffix))) + suffix
        seen[text] = seen.get(text, 0) + 1
        out[e.key] = text if seen[text] == 1 else f"{text} #{seen[text]}"
    return out


def entry_caption(entry: state.ModelEntry) -> str:
    """The whole story of the chosen model, under the picker (wraps, so long names are readable)."""
    parts = [f"**{entry.label}**", ORIGIN_TEXT.get(entry.origin, entry.origin)]
    if entry.names_json:
        parts.append("feature names from your file")
    return " · ".join(parts)


def training_status(job: TrainingJob) -> None:
    """Sidebar line for the session's training run, refreshed every STATUS_S seconds while it goes."""

    @st.fragment(run_every=STATUS_S)
    def _status() -> None:
        if job.finished:  # it ended since the last refresh: a full run registers and selects the model
            st.rerun(scope="app")
        st.caption(f"Training: {job.snapshot().message}")

    _status()


def require_model(*, warnings: bool = True) -> tuple[state.ModelEntry, ModelBundle]:
    """The chosen model and its bundle; stops the page with a hint when there is none or it cannot load.

    ``warnings``: say in one line when the file has warnings (the Model page shows them in full itself).
    """
    entry = state.current_entry()
    if entry is None:
        st.info("No model to show yet. Upload a model file on the **Model** page or train one on **Train**.")
        st.stop()
        raise AssertionError("unreachable")  # st.stop raises; this keeps type checkers informed
    with guard():
        bundle = state.bundle_of(entry)
    if warnings:
        file_warnings(bundle, full=False)
    return entry, bundle


# What reading a file reports that is information, not a problem (dcnviz.importers.containers' notes on
# which checkpoint entry was read and what was skipped); everything else (NaN weights, an unsure feature
# order, weights a peer does not store) is a warning about what the pages show.
NOTE_PREFIXES = (
    "read the tensors of the checkpoint's",
    "skipped ",
    "the pickle names objects that were not loaded",
)


def split_warnings(messages: tuple[str, ...] | list[str]) -> tuple[list[str], list[str]]:
    """(warnings, informational notes) of a file's messages.

    >>> split_warnings(["read the tensors of the checkpoint's 'state_dict' entry", "layer 1 holds NaN"])
    (['layer 1 holds NaN'], ["read the tensors of the checkpoint's 'state_dict' entry"])
    """
    notes = [m for m in messages if m.startswith(NOTE_PREFIXES)]
    return [m for m in messages if m not in notes], notes


def file_warnings(bundle: ModelBundle, *, full: bool) -> None:
    """A file's warnings and notes: in full on the Model page (``full``), as one quiet line elsewhere.

    Every page used to repeat each warning as a yellow banner; now only the Model page shows them,
    notes there go into a collapsed "Notes" box, and the other pages say in one caption that there is
    something to read (and where).
    """
    warns, notes = split_warnings(bundle.warnings)
    if full:
        for w in warns:
            st.warning(w, icon=":material/warning:")
        if notes:
            with st.expander(f"Notes from reading the file ({len(notes)})", icon=":material/info:"):
                st.markdown("\n".join(f"- {n}" for n in notes))
    elif warns:
        n = len(warns)
        st.caption(
            f":material/warning: {n} warning{'s' if n > 1 else ''} about this file (e.g. {warns[0][:80]}"
            f"{'…' if len(warns[0]) > 80 else ''}) — read {'them' if n > 1 else 'it'} on the **Model** page."
        )


def require_cross_layers(bundle: ModelBundle) -> None:
    """Stop the page with an explanation when the model has no cross network (a DNN)."""
    if bundle.n_layers == 0:
        st.info(
            "This model has no cross network (it is a plain DNN), so there is no W to show. "
            "Pick a DCN model in the sidebar."
        )
        st.stop()


def layer_picker(bundle: ModelBundle, *, key: str, label: str = "Cross layer") -> int:
    """Select a cross layer (the first by default, as in the paper's Fig. 6b)."""
    n = bundle.n_layers
    return int(
        st.selectbox(
            label,
            list(range(n)),
            key=key,
            format_func=lambda i: f"layer {i}" + (" (first)" if i == 0 else ""),
        )
    )


def missing_names(bundle: ModelBundle) -> str | None:
    """What the file does not say about x0's features (one sentence), or None when its blocks have names.

    Two cases: no layout at all (x0 is one block, ``x0``; e.g. TFRS weights, a bare CrossNet state dict),
    or sizes without names (RecBole's ``field_0`` …, from its embedding size).
    """
    blocks = bundle.weights.blocks
    d = bundle.weights.d
    if len(blocks) == 1 and str(blocks[0].kind) == "unknown":
        return (
            f"{bundle.library} weights do not say which feature each part of x0 is, so the heatmap has one block "
            f"(all of x0, d = {d}) and there are no feature crosses to rank."
        )
    if len(blocks) > 1 and all(re.fullmatch(r"field_\d+", b.name) for b in blocks):
        return (
            f"The file gives the embedding size, so x0 is split into {len(blocks)} blocks, but not the features' "
            "names: they are shown as field_0, field_1, …"
        )
    return None


def names_prompt(entry: state.ModelEntry, bundle: ModelBundle, *, key: str) -> None:
    """When an upload's feature names are missing: say what is missing and take the names file right here.

    The names (NAMES.json / CSV of ``name[,width]`` in x0 order, or FuxiCTR's feature_map.json) are applied
    to the same upload, which then replaces the nameless entry in the sidebar and is shown at once.
    """
    why = missing_names(bundle)
    if why is None or entry.data is None:  # shipped and trained models carry their names
        return
    with st.container(border=True):
        st.markdown(
            f":material/label_off: **Feature names are missing.** {why} Give them in x0 order to see the crosses "
            'by feature: `["user_id", "movie_id", …]` (one per block) or `[{"name": "user_id", "width": 16}, …]` '
            "(widths summing to d), as JSON or as `name,width` CSV rows."
        )
        up = st.file_uploader("Feature names for this model", type=["json", "csv", "txt"], key=key)
    if up is None:
        return
    try:
        names = read_names_or_feature_map(up.getvalue())
        state.load_upload(entry.data, filename=entry.filename, format=entry.format, names=names)
    except DcnvizError as e:
        st.error(f"Could not use {up.name} as feature names: {e}")
        return
    state.add_session_model(dataclasses.replace(entry, names_json=json.dumps(names)))
    st.rerun()
