"""The benchmark scripts keep working (dcnviz side only: the peer library is not a test dependency)."""

from __future__ import annotations

import json
import sys

import pytest

from tests.helpers import ROOT

BENCH = ROOT / "benchmarks"


@pytest.fixture
def throughput(monkeypatch):  # type: ignore[no-untyped-def]
    monkeypatch.syspath_prepend(str(BENCH))
    import throughput as module

    yield module
    sys.modules.pop("throughput", None)


def test_ml1m_shaped_data_has_the_issue_5_shape(throughput):
    spec, data = throughput.make_data(1000)
    assert [f.vocab_size - 1 for f in spec.fields] == [6040, 3706, 2, 7, 21, 3439]
    assert spec.d == 180 and data.cat.shape == (1000, 6)
    for j, f in enumerate(spec.fields):
        assert int(data.cat[:, j].min()) >= 1 and int(data.cat[:, j].max()) <= f.vocab_size - 1
    assert 0.2 < float(data.y.mean()) < 0.9
    assert round(0.8 * 739_012) == throughput.TRAIN_ROWS


def test_throughput_runs_dcnviz_side_and_writes_its_result(throughput, tmp_path, capsys):
    out = tmp_path / "tp.json"
    argv = ["--rows", "3000", "--batch", "256", "--models", "dcn", "dcnmix", "--skip-peer", "--threads", "1"]
    assert throughput.main([*argv, "--out", str(out)]) == 0
    rows = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [r["model"] for r in rows] == ["dcn", "dcnmix"] and all(r["dcnviz_examples_per_s"] > 0 for r in rows)
    saved = json.loads(out.read_text())
    assert saved["machine"]["torch"] and saved["setup"]["dcnmix"]["rank"] == 32
