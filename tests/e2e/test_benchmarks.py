"""The benchmark scripts keep working (dcnviz side only: the peer library is not a test dependency)."""

from __future__ import annotations

import importlib
import json
import sys

import numpy as np
import pytest
import torch

from tests.helpers import ROOT

BENCH = ROOT / "benchmarks"


def _script(monkeypatch, name):  # type: ignore[no-untyped-def]
    """Import ``benchmarks/<name>.py`` as a module (and forget it afterwards)."""
    monkeypatch.syspath_prepend(str(BENCH))
    yield importlib.import_module(name)
    sys.modules.pop(name, None)


@pytest.fixture
def throughput(monkeypatch):  # type: ignore[no-untyped-def]
    yield from _script(monkeypatch, "throughput")


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


@pytest.fixture
def sample_ceiling(monkeypatch):  # type: ignore[no-untyped-def]
    yield from _script(monkeypatch, "sample_ceiling")


def test_the_fitted_generative_family_recovers_the_planted_loadings_and_stays_below_known_z(sample_ceiling):
    rows = sample_ceiling.load_rows(1.0)
    assert (len(rows.train), len(rows.val), len(rows.test)) == (40_014, 5_002, 5_001)  # the benchmark's split
    best, fitted = sample_ceiling.known_z(rows), sample_ceiling.fit_generative(rows)
    assert fitted["grad_norm"] < 1e-3  # converged
    # it found the planted structure (a misaligned user or movie index would not) ...
    assert fitted["h_gender_corr"] > 0.9 and fitted["h_age_corr"] > 0.9
    # ... and, having to learn b_u and b_m from ~33 and ~100 ratings, scores below the model that knows z
    assert 0.85 < fitted["test"]["auc"] < best["auc"] and fitted["test"]["logloss"] > best["logloss"]


def test_the_fits_torch_link_is_the_samples_bayes_probability(sample_ceiling):
    from dcnviz.sample import SampleConfig, bayes_probability

    z = np.linspace(-8.0, 8.0, 161)
    thresholds = SampleConfig().thresholds
    torch_p = sample_ceiling._link(torch.from_numpy(z), thresholds).numpy()
    assert np.allclose(torch_p, bayes_probability(z, thresholds), rtol=1e-12, atol=1e-12)
