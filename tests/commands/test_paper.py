"""`python -m dcnviz paper ...`: the --json contract of issue 6 at CI sizes."""

from __future__ import annotations

import json

import pytest

from dcnviz.cli import main
from dcnviz.commands import paper as paper_cmd
from dcnviz.paperlab.models import REGRESSION_MODELS

SYNTH_KEYS = ["task", "model", "layers", "rmse_mean", "rmse_std", "params", "paper_rmse"]
TINY = ["--runs", "1", "--samples", "200", "--test-samples", "200", "--steps", "20", "--warmup", "1"]
TINY += ["--large-epochs", "1", "--threads", "1", "--quiet"]


def test_cli_model_lists_match_the_library() -> None:
    # table6's --models are checked by the library itself (dcnviz.paperlab.table6.table6_models)
    assert set(paper_cmd.SYNTHETIC_MODELS) == set(REGRESSION_MODELS)


def test_table1_json_contract(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["paper", "table1", "--tasks", "f1", "f2", *TINY, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    rows = out["rows"]
    assert [(r["task"], r["model"]) for r in rows] == [
        (t, m) for t in ("f1", "f2") for m in ("dcn", "dcnv2", "dnn", "dnn-large")
    ]
    for r in rows:
        assert list(r)[: len(SYNTH_KEYS)] == SYNTH_KEYS
        assert isinstance(r["rmse_mean"], float) and r["rmse_mean"] >= 0
        assert isinstance(r["paper_rmse"], float)
    by = {(r["task"], r["model"]): r for r in rows}
    assert by[("f1", "dcnv2")]["params"] == 24 and by[("f2", "dcn")]["params"] == 9
    assert by[("f1", "dnn-large")]["layers"] == 2 and by[("f1", "dnn-large")]["paper_rmse"] == 4.7e-3
    assert out["config"]["runs"] == 1


def test_fig4_json_has_null_paper_rmse(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["paper", "fig4", "--tasks", "order3", "--models", "dcnv2-no-bias-no-residual", "dcn", "--layers", "1", "2"]
    assert main([*args, "--d", "6", *TINY, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert [(r["model"], r["layers"]) for r in rows] == [
        ("dcnv2-no-bias-no-residual", 1),
        ("dcnv2-no-bias-no-residual", 2),
        ("dcn", 1),
        ("dcn", 2),
    ]
    assert all(r["paper_rmse"] is None and r["task"] == "order3" for r in rows)


def test_defaults_per_experiment_and_quick(capsys: pytest.CaptureFixture[str]) -> None:
    """Each experiment's defaults are the recorded commands' settings; --quick shrinks them, flags still win."""
    from dcnviz.paperlab.synthetic import PAPER_DEFAULTS, QUICK_DEFAULTS

    assert PAPER_DEFAULTS["table1"] == {
        "samples": 10_000, "test_samples": 5_000, "steps": 1_500, "warmup": 50, "large_epochs": 20,
    }  # fmt: skip
    assert (PAPER_DEFAULTS["table2"]["steps"], PAPER_DEFAULTS["table2"]["warmup"]) == (1_500, 20)
    assert (PAPER_DEFAULTS["fig4"]["steps"], PAPER_DEFAULTS["fig4"]["warmup"]) == (500, 20)
    args = ["paper", "table1", "--tasks", "f2", "--models", "dcnv2", "--quick", "--runs", "1", "--quiet", "--json"]
    assert main([*args, "--steps", "30", "--threads", "1"]) == 0
    config = json.loads(capsys.readouterr().out)["config"]
    assert config["quick"] is True and config["steps"] == 30  # an explicit flag beats --quick
    for key, flag in (("samples", "samples"), ("test_samples", "test_samples"), ("warmup_epochs", "warmup")):
        assert config[key] == QUICK_DEFAULTS[flag]


def test_text_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["paper", "table2", "--models", "dcnv2", "--layers", "1", *TINY]) == 0
    text = capsys.readouterr().out
    assert "paper RMSE" in text and "combined" in text and "1.43e-01" in text


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["paper", "table1", "--tasks", "combined"], "table1 has tasks"),
        (["paper", "table1", "--models", "dcn-mix"], "--models must be among"),
        (["paper", "table2", "--models", "dcn"], "none of the models"),
        (["paper", "table1", "--data", "ml-100k"], "applies to table6 only"),
        (["paper", "table6"], "needs --data"),
        (["paper", "table6", "--data", "ml-100k"], "needs --data-dir"),
        (["paper", "table6", "--data", "sample", "--tasks", "f1"], "synthetic studies"),
        (["paper", "table6", "--data", "sample", "--quick"], "synthetic studies"),
        (["paper", "table6", "--data", "sample", "--steps", "5"], "synthetic studies"),
        (["paper", "table6", "--data", "sample", "--models", "dcnv3"], "--models must be among"),
    ],
)
def test_bad_options_are_clean_errors(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_bad_numbers_are_refused_by_argparse() -> None:
    with pytest.raises(SystemExit):
        main(["paper", "table1", "--runs", "0"])
