"""dcnviz app: `streamlit run app.py` (or, installed, `dcnviz app`). A thin router; see dcnviz/app/router.py."""

from dcnviz.app.router import run

run()
