"""Malformed data files (issue 7): the cases tests/test_data_malformed.py leaves to ML-1M only, for ML-100K,
a download cut off mid-line, and the error as the app's Train page shows it.

Each raises :class:`~dcnviz.errors.DataFormatError` naming the file and the line; the loaders return
nothing on error (no partially filled table), and in the app a training run on such data fails with
that message and registers no model.
"""

from __future__ import annotations

import re
import shutil
import sys
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

import dcnviz.data
from dcnviz.data import DataOptions, load_ml100k, load_splits
from dcnviz.errors import DataFormatError

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_app_support import APP, PAGES, write_demo_models
from test_data_malformed import _edit_line

FIXTURES = Path(__file__).parent / "fixtures" / "data"


def test_100k_user_missing_from_u_user(ml100k: Path) -> None:
    p = ml100k / "u.data"
    _edit_line(p, 4, "99\t1\t4\t881250999")
    with pytest.raises(DataFormatError, match=re.escape(f"{p} line 4: user id 99 does not appear in u.user")):
        load_ml100k(ml100k)


@pytest.mark.parametrize("name", ["u.data", "u.user", "u.item"])
def test_100k_empty_file(ml100k: Path, name: str) -> None:
    (ml100k / name).write_bytes(b"")
    with pytest.raises(DataFormatError, match=re.escape(f"{ml100k / name} is empty")):
        load_ml100k(ml100k)


def test_100k_utf16_file(ml100k: Path) -> None:
    p = ml100k / "u.item"
    p.write_bytes(p.read_text(encoding="latin-1").encode("utf-16"))
    with pytest.raises(DataFormatError, match=re.escape(f"{p} line 1: contains a NUL byte; this is not a latin-1")):
        load_ml100k(ml100k)


@pytest.mark.parametrize("ch", ["\x1c", "\x1d", "\x1e", "\x1f", "\x85", "\xa0"])  # latin-1 chars \\s matches
def test_unicode_separator_characters_in_an_integer_field(ml100k: Path, ch: str) -> None:
    """Found by tests/test_data_fuzz.py: "\x1c4" passed the integer check (\\s matched it); int() raised ValueError.

    \x85 and \xa0 used to be stripped by int() and load as 4; integers are now ASCII digits and spaces only.
    """
    p = ml100k / "u.user"
    _edit_line(p, 1, f"1|{ch}4|M|technician|85711")
    with pytest.raises(DataFormatError, match=re.escape(f"{p} line 1: age must be an integer; got {ch + '4'!r}")):
        load_ml100k(ml100k)


def test_download_cut_off_mid_line(ml100k: Path) -> None:
    """A file that ends in the middle of a record names its last line instead of dropping it silently."""
    p = ml100k / "u.data"
    data = p.read_bytes()
    n = data.count(b"\n")
    p.write_bytes(data[:-12])  # "4\t3\t" is all that is left of the last record
    with pytest.raises(DataFormatError, match=re.escape(f"{p} line {n}: expected 4 fields separated by TAB")):
        load_ml100k(ml100k)
    with pytest.raises(DataFormatError, match=re.escape(f"{p} line {n}:")):
        load_splits(DataOptions(source="ml-100k", data_dir=str(ml100k)))


@pytest.mark.skipif(not (dcnviz.data.SAMPLE_DIR / "ratings.dat").is_file(), reason="sample_data/ not generated")
def test_app_training_on_malformed_data_fails_with_the_file_and_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sample = Path(shutil.copytree(dcnviz.data.SAMPLE_DIR, tmp_path / "sample"))
    ratings = sample / "ratings.dat"
    lines = ratings.read_text(encoding="latin-1").splitlines()
    lines[41] = "1::2::five::978300000"
    ratings.write_text("\n".join(lines) + "\n", encoding="latin-1")
    write_demo_models(tmp_path / "models")
    monkeypatch.setenv("DCNVIZ_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.setattr(dcnviz.data, "SAMPLE_DIR", sample)
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    at.switch_page(f"{PAGES}/train.py").run()
    at.number_input(key="tr_epochs").set_value(1)
    at.run()
    at.button(key="tr_start").click().run()
    job = at.session_state["train_job"]
    deadline = time.monotonic() + 120
    while not job.snapshot().finished:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    for _ in range(2):
        at.run()
    snap = job.snapshot()
    assert snap.status == "failed" and snap.model_bytes is None
    expected = f"Training failed: {ratings} line 42: Rating must be an integer; got 'five'"
    assert [e.value for e in at.error] == [expected]
    assert not at.exception
    registry = dict(at.session_state["dcnviz_models"]) if "dcnviz_models" in at.session_state else {}
    assert registry == {}, "no model was registered"
