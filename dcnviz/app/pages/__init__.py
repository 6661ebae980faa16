"""The app's pages. Each file is a Streamlit page script (``st.Page(path)``) with a ``render()`` function."""
