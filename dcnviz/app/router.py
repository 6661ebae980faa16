"""The app's router: page config, the sidebar model picker and ``st.navigation``.

Run by the repository's ``app.py`` (``streamlit run app.py``) and by the installed package's
``dcnviz/app/entry/streamlit_app.py`` (``dcnviz app``). Pages come from one table,
:data:`dcnviz.app.ui.PAGES`, and are registered by absolute path (:func:`dcnviz.app.ui.page`), so the
app works whichever of the two scripts Streamlit runs.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from dcnviz.app import server
from dcnviz.app.ui import PAGES, model_picker, page


def run() -> None:
    server.prepare()  # once per process: start-up objects frozen for the collector, freed memory returned
    st.set_page_config(page_title="dcnviz — what did the cross network learn?", page_icon="✖️", layout="wide")
    groups: dict[str, list[Any]] = {}
    for info in PAGES:  # the first page is the landing page
        entry = st.Page(page(info.name), title=info.title, icon=info.icon, default=info is PAGES[0])
        groups.setdefault(info.group, []).append(entry)
    navigation = st.navigation(groups)
    model_picker(training_line=navigation.url_path != "train")  # the Train page shows its run itself
    navigation.run()
