"""The app's dataset picker (Train page, Paper lab's Table 6): the bundled sample or MovieLens in a folder.

MovieLens is found in the folder the user names (its files, or a ``ml-100k/`` / ``ml-1m/`` folder inside),
or downloaded there from GroupLens on request (:func:`dcnviz.download.download_dataset`: MD5 and row
counts checked). ``$DCNVIZ_SAMPLE_DIR`` replaces the bundled sample (the browser test uses a tiny one).
"""

from __future__ import annotations

import os
from pathlib import Path

import streamlit as st

import dcnviz.data as data_mod
from dcnviz.data import ML1M_FILES, ML100K_FILES
from dcnviz.download import LICENCE_NOTE, download_dataset
from dcnviz.errors import DcnvizError

SAMPLE_ENV = "DCNVIZ_SAMPLE_DIR"  # overrides the bundled sample folder (the browser test trains on a tiny one)
SOURCES = {
    "sample": "Bundled synthetic sample (ML-1M format, planted crosses)",
    "ml-100k": "MovieLens-100K",
    "ml-1m": "MovieLens-1M",
}


def movielens_files(folder: Path, source: str) -> bool:
    files = ML1M_FILES if source == "ml-1m" else ML100K_FILES
    return any(all((c / f).is_file() for f in files) for c in (folder, folder / source))


def pick_dataset(key: str) -> tuple[str, str | None] | None:
    """The dataset radio (widget keys ``{key}_source``, ``{key}_root``, ``{key}_fetch``) and what it needs.

    Returns ``(source, data_dir)`` for :class:`~dcnviz.data.DataOptions` (``data_dir`` None: the bundled
    sample), or None (after saying why on the page) while the chosen data is not there.
    """
    source = st.radio("Dataset", list(SOURCES), key=f"{key}_source", format_func=lambda s: SOURCES[s], horizontal=True)
    if source == "sample":
        override = os.environ.get(SAMPLE_ENV)
        folder = Path(override) if override else Path(data_mod.SAMPLE_DIR)
        if not (folder / "ratings.dat").is_file():
            st.error(f"The sample data is missing from {folder}; regenerate it with scripts/make_sample_data.py.")
            return None
        st.caption(
            "A synthetic MovieLens-like dataset with known planted crosses (gender × movie, age × movie; "
            "occupation × movie is a control with none). See sample_data/README.md."
            + (f" Read from {folder} (${SAMPLE_ENV})." if override else "")
        )
        return "sample", override or None
    root = Path(
        st.text_input(
            f"Folder with {SOURCES[source]} (the files, or a folder holding {source}/)", value="data", key=f"{key}_root"
        )
    ).expanduser()
    if movielens_files(root, source):
        st.success(f"Found {SOURCES[source]} in {root}.")
        return source, str(root)
    st.warning(f"No {SOURCES[source]} files in {root}. Download them from GroupLens (needs internet):")
    st.caption(LICENCE_NOTE)
    if not st.button(f"Download {SOURCES[source]} into {root}", key=f"{key}_fetch"):
        return None
    bar = st.progress(0.0, text="connecting to files.grouplens.org…")

    def progress(done: int, total: int | None) -> None:
        if total:
            bar.progress(min(1.0, done / total), text=f"{done / 1e6:.1f} of {total / 1e6:.1f} MB")
        else:
            bar.progress(0.0, text=f"{done / 1e6:.1f} MB")

    try:
        where = download_dataset(source, root, progress=progress)
    except DcnvizError as e:
        st.error(f"Download failed: {e}")
        return None
    bar.progress(1.0, text=f"done: {where}")
    st.success(f"Downloaded and verified into {where}.")
    return source, str(root)
