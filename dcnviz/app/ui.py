"""Small UI helpers shared by the pages: figure/table with download buttons, the model picker, error guard.

Helpers only draw widgets and return values; nothing here computes an analysis.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from dcnviz.app import state
from dcnviz.app.bundle import ModelBundle
from dcnviz.errors import DcnvizError
from dcnviz.figures import figure_html, table_csv

PAGES_DIR = Path(__file__).resolve().parent / "pages"
ORIGIN_SUFFIX = {"shipped": "", "uploaded": " · uploaded", "trained": " · trained here"}  # plain text: any font
PLOTLY_CONFIG = {"displaylogo": False, "responsive": True}


def page(name: str) -> str:
    """The absolute path of page ``name`` (``"crosses"``), for ``st.Page`` and ``st.page_link``.

    Absolute, so links work whichever script Streamlit runs (``app.py`` or the installed entry script).
    """
    path = PAGES_DIR / f"{name}.py"
    if not path.is_file():
        raise ValueError(f"no app page named {name!r} in {PAGES_DIR}")
    return str(path)


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


def show_figure(fig: go.Figure, *, key: str, filename: str) -> None:
    """Draw a Plotly figure full-width with a download button for a standalone HTML copy (plotly.js inlined).

    The HTML is built only when the button is clicked (deferred download).
    """
    st.plotly_chart(fig, width="stretch", key=f"{key}_chart", config=PLOTLY_CONFIG)
    st.download_button(
        "Download figure (HTML)",
        data=lambda: figure_html(fig).encode("utf-8"),
        file_name=f"{slug(filename)}.html",
        mime="text/html",
        key=f"{key}_html",
        on_click="ignore",
        icon=":material/download:",
    )


def show_table(df: pd.DataFrame, *, key: str, filename: str, index: bool = False) -> None:
    """Show a table full-width with a CSV download button."""
    st.dataframe(df, width="stretch", hide_index=not index, key=f"{key}_table")
    st.download_button(
        "Download table (CSV)",
        data=table_csv(df, index=index),
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


def model_picker() -> None:
    """Sidebar: choose which model the pages show (shipped, uploaded or trained in this session)."""
    state.collect_finished_training()
    state.apply_pending_selection()
    entries = state.all_entries()
    with st.sidebar:
        job = st.session_state.get(state.TRAIN_JOB)
        if job is not None:
            snap = job.snapshot()
            if not snap.finished:
                st.caption(f"Training: {snap.message}")
        if not entries:
            st.info("No model yet: upload one on **Model** or train one on **Train**.")
            return
        keys = [e.key for e in entries]
        labels = {e.key: f"{e.label}{ORIGIN_SUFFIX.get(e.origin, '')}" for e in entries}
        if st.session_state.get(state.CURRENT) not in keys:
            first = state.default_entry(entries)
            st.session_state[state.CURRENT] = first.key if first else keys[0]
        st.selectbox(
            "Model",
            keys,
            key=state.CURRENT,
            format_func=lambda k: labels.get(k, k),
            help="Shipped demo models, then the models you uploaded or trained in this session. "
            "Uploads and trained models are visible to you only and are never saved on the server.",
        )


def require_model() -> tuple[state.ModelEntry, ModelBundle]:
    """The chosen model and its bundle; stops the page with a hint when there is none or it cannot load."""
    entry = state.current_entry()
    if entry is None:
        st.info("No model to show yet. Upload a model file on the **Model** page or train one on **Train**.")
        st.stop()
        raise AssertionError("unreachable")  # st.stop raises; this keeps type checkers informed
    with guard():
        bundle = state.bundle_of(entry)
    for w in bundle.warnings:
        st.warning(w)
    return entry, bundle


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
