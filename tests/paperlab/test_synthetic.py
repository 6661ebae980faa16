"""Tiny runs of the synthetic studies: the shape of Table 1 holds, rows and progress are well formed."""

from __future__ import annotations

import math

import pytest

from dcnviz.errors import ConfigError
from dcnviz.paperlab.fit import FitConfig
from dcnviz.paperlab.synthetic import (
    EXPERIMENT_PLAN,
    SyntheticConfig,
    SyntheticProgress,
    run_experiment,
    run_synthetic,
)

TINY = SyntheticConfig(samples=400, test_samples=400, fit=FitConfig(steps=100, report_every=25))


def test_tiny_table1_f2_dcnv2_far_better_than_dnn() -> None:
    seen: list[SyntheticProgress] = []
    rows = run_synthetic("f2", ["dcnv2", "dcn", "dnn"], [1], 2, config=TINY, callback=seen.append)
    by = {r.model: r for r in rows}
    assert set(by) == {"dcnv2", "dcn", "dnn"}
    # Table 1's shape: DCN-V2 fits f2 to rounding error, DCN and the same-size DNN cannot.
    assert by["dcnv2"].rmse_mean < 1e-8
    assert by["dnn"].rmse_mean > 1e-2
    assert by["dcn"].rmse_mean > 1e-2
    assert by["dnn"].rmse_mean > 1e5 * by["dcnv2"].rmse_mean
    assert [by[m].params for m in ("dcnv2", "dcn", "dnn")] == [15, 9, 15]
    assert by["dcnv2"].paper_rmse == 4.5e-15 and by["dnn"].paper_rmse == 3.0e-2
    for r in rows:
        assert len(r.rmse_runs) == 2
        assert r.rmse_mean == pytest.approx(sum(r.rmse_runs) / 2)
        assert r.rmse_std == pytest.approx(abs(r.rmse_runs[0] - r.rmse_runs[1]) / math.sqrt(2))
        j = r.to_json()
        assert list(j)[:7] == ["task", "model", "layers", "rmse_mean", "rmse_std", "params", "paper_rmse"]
    assert seen and all(p.fits_total == 6 for p in seen)
    assert seen[-1].fits_done == 5 and seen[-1].model == "dnn"


def test_fig4_rows_have_no_paper_number_and_ablation_names() -> None:
    cfg = SyntheticConfig(samples=200, test_samples=100, d=6, fit=FitConfig(steps=5))
    rows = run_synthetic("order3", ["dcnv2-no-bias-no-residual", "dcnv2-no-bias"], [1, 2], 1, config=cfg)
    assert [(r.model, r.layers) for r in rows] == [
        ("dcnv2-no-bias-no-residual", 1),
        ("dcnv2-no-bias-no-residual", 2),
        ("dcnv2-no-bias", 1),
        ("dcnv2-no-bias", 2),
    ]
    assert all(r.paper_rmse is None for r in rows)
    assert rows[0].params == 6 * 6 + 6


def test_paper_rmse_only_at_the_papers_width() -> None:
    cfg = SyntheticConfig(samples=100, test_samples=50, d=12, fit=FitConfig(steps=2))
    (row,) = run_synthetic("combined", ["dcnv2"], [3], 1, config=cfg)
    assert row.paper_rmse is None  # the table-2 number belongs to the paper-sized task (d=20 here)
    cfg = SyntheticConfig(samples=100, test_samples=50, fit=FitConfig(steps=2))
    (row,) = run_synthetic("combined", ["dcnv2"], [3], 1, config=cfg)
    assert row.paper_rmse == 9.82e-3


def test_dnn_large_runs_once_at_its_fixed_depth() -> None:
    cfg = SyntheticConfig(samples=50, test_samples=50, fit=FitConfig(steps=2))
    rows = run_synthetic("f1", ["dnn-large"], [1, 2, 3], 1, config=cfg)
    assert [(r.model, r.layers, r.params) for r in rows] == [("dnn-large", 2, 41_400)]


def test_should_stop_keeps_only_finished_cells() -> None:
    calls = {"n": 0}

    def stop() -> bool:
        calls["n"] += 1
        return calls["n"] > 3  # let the first fit (a few reports) finish, then stop

    cfg = SyntheticConfig(samples=100, test_samples=50, fit=FitConfig(steps=10, report_every=5))
    rows = run_synthetic("f1", ["dcnv2", "dnn"], [1], 3, config=cfg, should_stop=stop)
    assert len(rows) == 1 and rows[0].model == "dcnv2"
    assert 1 <= len(rows[0].rmse_runs) < 3


def test_experiment_plan_is_the_papers() -> None:
    assert [p[0] for p in EXPERIMENT_PLAN["table1"]] == ["f1", "f2", "f3"]
    assert EXPERIMENT_PLAN["table2"][0][2] == (1, 2, 3, 4, 5)
    assert {p[0] for p in EXPERIMENT_PLAN["fig4"]} == {"order3", "order4"}
    cfg = SyntheticConfig(samples=50, test_samples=50, fit=FitConfig(steps=1))
    rows = run_experiment("table1", 1, config=cfg, tasks=("f1",))
    assert [r.model for r in rows] == ["dcn", "dcnv2", "dnn", "dnn-large"]


def test_bad_arguments() -> None:
    with pytest.raises(ConfigError, match="runs must be >= 1"):
        run_synthetic("f1", ["dcnv2"], [1], 0)
    with pytest.raises(ConfigError, match="model must be one of"):
        run_synthetic("f1", ["xgboost"], [1], 1)
    with pytest.raises(ConfigError, match="layers"):
        run_synthetic("f1", ["dcnv2"], [0], 1)
    with pytest.raises(ConfigError, match="experiment must be one of"):
        run_experiment("table9", 1)
    with pytest.raises(ConfigError, match="table2 has tasks"):
        run_experiment("table2", 1, tasks=("f1",))
    with pytest.raises(ConfigError, match="samples"):
        SyntheticConfig(samples=0)
    with pytest.raises(ConfigError, match="optimizer"):
        FitConfig(optimizer="sgd")


@pytest.mark.parametrize("task", ["f1", "f2"])
def test_dcnv2_reaches_the_float64_rounding_floor(task: str) -> None:
    """The paper's 1e-13..1e-15 regime: every run ends near float64 rounding (PyTorch's L-BFGS alone,
    without the loss rescaling in fit.py, stalls around 1e-9 on some seeds)."""
    cfg = SyntheticConfig(samples=1000, test_samples=1000, fit=FitConfig(steps=600, warmup_epochs=20))
    (row,) = run_synthetic(task, ["dcnv2"], [1], 4, config=cfg)
    assert max(row.rmse_runs) < 1e-13
