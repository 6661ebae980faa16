"""The script `dcnviz app` hands to Streamlit (alone in its folder: Streamlit puts the folder on sys.path)."""
