"""Runs the README's notebook example exactly as written.

The block is the ```python fence right after the ``<!-- notebook-example -->`` marker. It runs in a
temporary working folder holding ``models/`` with the model file it names: a copy of the shipped demo
model when the repository has it, else a stand-in written with the test helpers (same name). What it
writes (HTML files) must appear there, and what it prints must name the model's features.
"""

from __future__ import annotations

import contextlib
import io
import re
import shutil
from pathlib import Path

import pytest

from dcnviz.checkpoint import load_model, save_model
from tests.helpers import ROOT
from tests.helpers.app import planted_full_model

DOC = ROOT / "README.md"
MARKER = "<!-- notebook-example -->"


def example_code() -> str:
    text = DOC.read_text(encoding="utf-8")
    start = text.index(MARKER)
    m = re.compile(r"```python\n(.*?)```", re.S).search(text, start)
    assert m is not None, "no ```python block after the notebook-example marker"
    return m.group(1)


def test_notebook_example_runs_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code = example_code()
    paths = sorted(set(re.findall(r"models/[\w.\-]+\.safetensors", code)))
    assert paths, "the example loads a model file from models/"
    shipped = sorted(p.name for p in (ROOT / "models").glob("*.safetensors"))
    (tmp_path / "models").mkdir()
    for rel in paths:
        name = Path(rel).name
        if shipped:  # once demo models ship, the example must name one of them
            assert name in shipped, f"README.md names {rel}, but models/ holds {shipped}"
            shutil.copy(ROOT / rel, tmp_path / rel)
        else:
            save_model(tmp_path / rel, planted_full_model())
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, str(DOC), "exec"), {"__name__": "__notebook__"})
    printed = out.getvalue()
    features = load_model(tmp_path / paths[0]).spec.names
    assert all(f in printed for f in features), printed[:2000]
    written = [p for p in tmp_path.glob("*.html")]
    assert written, "the example writes its figures / report as HTML"
    for p in written:
        page = p.read_text(encoding="utf-8")
        assert "<script src=" not in page, f"{p.name} must open offline (plotly.js inlined)"
