"""The dcnviz Streamlit app (issue 4) and its helpers.

Only the page modules (``dcnviz/app/pages/``), :mod:`dcnviz.app.state` and :mod:`dcnviz.app.ui` import
Streamlit. :mod:`dcnviz.app.bundle` (load any model file and describe it), :mod:`dcnviz.app.report`
(standalone HTML report) and :mod:`dcnviz.app.jobs` (background training runs) are plain Python, so
notebooks and tests can use them without Streamlit. Run the app with ``streamlit run app.py``.
"""
