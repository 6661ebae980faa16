"""The example notebook (``examples/dcnviz_tour.ipynb``) runs top to bottom in a real Jupyter kernel.

Executed with nbclient in a temporary working folder (what it writes lands there). A cell that raises fails
the test with the cell's traceback; the notebook's own checks (the planted crosses on top, the learned
spectrum lower than the initial one) run with it. The notebook is kept in git without outputs.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers import ROOT

nbformat = pytest.importorskip("nbformat", reason="pip install -r requirements-dev.txt (nbclient, ipykernel)")
nbclient = pytest.importorskip("nbclient")


NOTEBOOK = ROOT / "examples" / "dcnviz_tour.ipynb"


def test_the_example_notebook_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the kernel imports this checkout's dcnviz (a user has it installed: pip install .)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), "commit it without outputs"
    client = nbclient.NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "\n".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", "")) for o in outputs)
    assert "planted crosses on top" in text and "movie_id" in text
    figures = [o for o in outputs if "application/vnd.plotly.v1+json" in o.get("data", {})]
    assert len(figures) >= 3, "the heatmap, |W| and the spectrum are drawn"
    assert "Spearman ρ" in text and "suggested rank: r = " in text  # explain: effect table and rank curve
    assert (tmp_path / "dcnv2_sample-report.html").stat().st_size > 1_000_000  # plotly.js inlined
