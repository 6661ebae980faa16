"""The app's router: page config, the sidebar model picker and ``st.navigation``.

Run by the repository's ``app.py`` (``streamlit run app.py``) and by the installed package's
``dcnviz/app/entry/streamlit_app.py`` (``dcnviz app``). Pages are registered by absolute path
(:func:`dcnviz.app.ui.page`), so the app works whichever of the two scripts Streamlit runs.
"""

from __future__ import annotations

import streamlit as st

from dcnviz.app.ui import model_picker, page


def run() -> None:
    st.set_page_config(page_title="dcnviz — what did the cross network learn?", page_icon="✖️", layout="wide")
    navigation = st.navigation(
        {
            "Understand a model": [
                st.Page(page("tour"), title="Tour", icon=":material/school:", default=True),
                st.Page(page("model"), title="Model", icon=":material/description:"),
                st.Page(page("crosses"), title="Feature crosses", icon=":material/grid_on:"),
                st.Page(page("spectrum"), title="Spectrum", icon=":material/show_chart:"),
                st.Page(page("compare"), title="Compare", icon=":material/compare:"),
                st.Page(page("report"), title="Report", icon=":material/summarize:"),
            ],
            "Train and reproduce": [
                st.Page(page("train"), title="Train", icon=":material/model_training:"),
                st.Page(page("paperlab"), title="Paper lab", icon=":material/science:"),
            ],
        }
    )
    model_picker()
    navigation.run()
