"""The Streamlit app (dcnviz.app), headless through AppTest: pages, layout, views on data, jobs."""
