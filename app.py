"""dcnviz app: `streamlit run app.py`. A thin router; the pages live in dcnviz/app/pages/."""

from __future__ import annotations

import streamlit as st

from dcnviz.app.ui import model_picker

st.set_page_config(page_title="dcnviz — what did the cross network learn?", page_icon="✖️", layout="wide")

PAGES = "dcnviz/app/pages"
navigation = st.navigation(
    {
        "Understand a model": [
            st.Page(f"{PAGES}/tour.py", title="Tour", icon=":material/school:", default=True),
            st.Page(f"{PAGES}/model.py", title="Model", icon=":material/description:"),
            st.Page(f"{PAGES}/crosses.py", title="Feature crosses", icon=":material/grid_on:"),
            st.Page(f"{PAGES}/spectrum.py", title="Spectrum", icon=":material/show_chart:"),
            st.Page(f"{PAGES}/compare.py", title="Compare", icon=":material/compare:"),
            st.Page(f"{PAGES}/report.py", title="Report", icon=":material/summarize:"),
        ],
        "Train and reproduce": [
            st.Page(f"{PAGES}/train.py", title="Train", icon=":material/model_training:"),
            st.Page(f"{PAGES}/paperlab.py", title="Paper lab", icon=":material/science:"),
        ],
    }
)
model_picker()
navigation.run()
