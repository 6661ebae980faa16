"""AppTest of the views that run the model on data (issue 12; issue 13 items 2 and 9).

A DCN-V2 is trained here on a tiny generated sample (``dcnviz.data.SAMPLE_DIR`` patched), so the app finds
its data "on this server". Checked: Feature crosses' "effect on predictions" (ablation heatmap equal to the
library's, the table with both views, the agreement sentence, the row picker), Spectrum's rank-truncation
curve and the one-number suggestion (measured with data; following the picked tolerance without), the
Tour's low-rank lesson, the report, and the reasons shown for models that cannot be run on data.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import dcnviz.data
from dcnviz.app.pages.report import REPORT
from dcnviz.checkpoint import load_model
from dcnviz.cli import main
from dcnviz.data import DataOptions, load_splits
from dcnviz.explain import Explainer
from dcnviz.sample import SampleConfig, make_sample, write_sample
from tests.helpers.app import arr, charts, goto, ok, start, write_demo_models


@pytest.fixture(scope="module")
def sample_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("sample")
    write_sample(make_sample(SampleConfig(n_users=150, n_movies=60, n_ratings=3000, min_ratings=20)), d)
    return d


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory, sample_dir: Path) -> Path:
    """The demo models (no recorded data) and a DCN-V2 trained on the tiny sample (its name says so): the
    shipped-model folder of conftest's ``env``."""
    d = tmp_path_factory.mktemp("models")
    write_demo_models(d)
    old = dcnviz.data.SAMPLE_DIR
    dcnviz.data.SAMPLE_DIR = sample_dir
    try:
        argv = ["train", "--data", "sample", "--embedding-dim", "4", "--hidden", "8", "--epochs", "1"]
        assert main([*argv, "--device", "cpu", "--out", str(d / "c_sample_dcnv2.safetensors")]) == 0
    finally:
        dcnviz.data.SAMPLE_DIR = old
    return d


def library_explainer(models: Path) -> Explainer:
    loaded = load_model(models / "c_sample_dcnv2.safetensors")
    splits = load_splits(DataOptions(source="sample", embedding_dim=4), spec=loaded.spec)
    return Explainer(loaded.model, splits.val)


def z_of(fig: dict) -> np.ndarray:
    return arr(fig["data"][0]["z"])


def table_with(at, column: str):  # type: ignore[no-untyped-def]
    return next(d.value for d in at.dataframe if column in d.value.columns)


def test_effect_on_predictions_view_matches_the_library(env: Path) -> None:
    at = start()
    assert at.sidebar.selectbox(key="model_key").value == "shipped:c_sample_dcnv2.safetensors"
    goto(at, "crosses")
    at.radio(key="cx_view").set_value("effect").run()
    ok(at)
    ex = library_explainer(env)
    want = ex.layer_effect(0)
    figs = charts(at)
    ablation = figs[0]
    assert ablation["data"][0]["colorbar"]["title"]["text"] == "Δ log loss"
    assert ablation["data"][0]["x"] == ex.names
    np.testing.assert_allclose(z_of(ablation), want.ablation, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(z_of(figs[1]), want.contribution, rtol=1e-4)
    np.testing.assert_allclose(z_of(figs[2]), want.block_norms, rtol=1e-5)
    table = table_with(at, "effect")
    assert {"feature_i", "feature_j", "effect", "contribution", "block_norm", "norm_rank"} <= set(table.columns)
    assert table.effect.is_monotonic_decreasing
    assert any("Spearman ρ" in m.value for m in at.markdown)
    # one example: the row picker's Δ logit heatmap is the library's for that row
    at.number_input(key="fx_row").set_value(5).run()
    ok(at)
    row = ex.row_effect(5, layers=[0]).ablation[0]
    np.testing.assert_allclose(z_of(charts(at)[3]), row, rtol=1e-4, atol=1e-6)
    assert any("Row 5:" in m.value and "predicted probability" in m.value for m in at.markdown)
    # another layer; then back to the weights view (the old page)
    at.selectbox(key="cx_layer").set_value(1).run()
    ok(at)
    np.testing.assert_allclose(z_of(charts(at)[0]), ex.layer_effect(1).ablation, rtol=1e-4, atol=1e-7)
    at.radio(key="cx_view").set_value("weights").run()
    ok(at)
    assert at.radio(key="cx_mode")


def test_models_that_cannot_be_run_on_data_say_why(env: Path) -> None:
    at = goto(start(), "crosses")
    at.sidebar.selectbox(key="model_key").set_value("shipped:a_dcnv2_planted.safetensors").run()
    at.radio(key="cx_view").set_value("effect").run()
    ok(at)
    assert any("records no training data" in i.value for i in at.info)
    goto(at, "spectrum")
    ok(at)
    assert any("Rank truncation unavailable" in i.value for i in at.info)


def test_spectrum_rank_curve_and_one_suggested_rank(env: Path) -> None:
    at = goto(start(), "spectrum")
    ok(at)
    curve = next(f for f in charts(at) if "truncated" in f["layout"]["title"]["text"])
    assert curve["layout"]["xaxis2"]["type"] == "log" or curve["layout"]["xaxis"]["type"] == "log"
    ex = library_explainer(env)
    want = ex.rank_curve()
    table = table_with(at, "auc")
    assert list(table["rank"]) == [p.rank for p in want]
    np.testing.assert_allclose(table["auc"], [p.auc for p in want], atol=1e-9)
    assert table["suggested"].sum() == 1
    text = " ".join(m.value for m in at.markdown)
    assert "**Every cross layer:** r = " in text and "without retraining" in text and "(§8)" in text
    assert "§7.5" not in text.split("Every cross layer:")[1].split(".")[0]
    assert "suggested r" not in table_with(at, "rank bound")  # the measured rank is the page's only suggestion
    # a model without data: the suggestion is read off the weights at the tolerance the user picked
    at.sidebar.selectbox(key="model_key").set_value("shipped:a_dcnv2_planted.safetensors").run()
    at.multiselect(key="sp_tols").set_value([0.5, 0.05]).run()
    ok(at)
    lines = [m.value for m in at.markdown if m.value.startswith("- **layer")]
    assert lines and all("0.05·σ₁" in line and "0.1·σ₁" not in line for line in lines)
    assert all(line.count("r = ") == 1 and "O(" not in line for line in lines)  # one rank number
    ranks = table_with(at, "rank bound")  # and the ranks table suggests the same R_0.05 as the sentences
    assert list(ranks["suggested r"]) == [int(c.split()[0]) for c in ranks["R_0.05 (initial)"]]


def test_tour_lesson_and_report_use_the_measured_rank(env: Path) -> None:
    at = start()
    ok(at)
    sug = [m.value for m in at.markdown if m.value.startswith("**Suggested rank for this model:**")]
    assert sug and "without retraining" in sug[0]
    # a model without data: the Tour's suggestion is read off layer 0 at the tolerance picked on Spectrum
    at.sidebar.selectbox(key="model_key").set_value("shipped:a_dcnv2_planted.safetensors").run()
    goto(at, "spectrum")
    at.multiselect(key="sp_tols").set_value([0.5, 0.05]).run()
    goto(at, "tour")
    ok(at)
    sug = [m.value for m in at.markdown if m.value.startswith("**Suggested rank for layer 0:**")]
    assert sug and "0.05·σ₁" in sug[0] and "read off the weights" in sug[0] and sug[0].count("r = ") == 1
    at.sidebar.selectbox(key="model_key").set_value("shipped:c_sample_dcnv2.safetensors").run()
    goto(at, "report")
    at.button(key="rep_build").click().run()
    ok(at)
    page = at.session_state[REPORT][-1].decode("utf-8")
    assert "Effect on predictions and rank truncation (measured on data)" in page
    assert "Rank truncation without retraining" in page and "Suggested rank:</b> r = " in page
    ranks = page[page.index("<h2>Numerical ranks</h2>") :]
    header = ranks[ranks.index("<thead>") : ranks.index("</thead>")]
    assert "stable rank" in header and "suggested r" not in header and "measured on data above" in ranks
