"""AppTest (headless) tests of every page of the Streamlit app, on tiny demo models written per test module.

The shipped-model folder is pointed at a temporary folder (``DCNVIZ_MODELS_DIR``) holding two small
models: a full-rank DCN-V2 whose first layer has a planted (gender, movie_id) cross, and a DCN-Mix.
Training runs on a tiny generated sample in the ML-1M format (``dcnviz.data.SAMPLE_DIR`` patched).
"""

from __future__ import annotations

import io
import json
import os
import pickle
import re
import socket
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from streamlit.testing.v1 import AppTest

import dcnviz.data
from dcnviz.analysis import block_norms
from dcnviz.app.pages.report import REPORT
from dcnviz.checkpoint import load_model, model_to_bytes, save_model
from dcnviz.options import TABLE6_MODELS
from dcnviz.sample import SampleConfig, make_sample, write_sample
from dcnviz.weights import from_model
from tests.helpers import PEERS, ROOT, TEST_FIXTURES
from tests.helpers.app import (
    NAMES,
    PLANTED,
    arr,
    charts,
    goto,
    no_deprecations,
    ok,
    planted_full_model,
    run_job,
    start,
    upload,
    write_demo_models,
)


def test_planted_model_has_the_planted_block_on_top() -> None:
    from dcnviz.analysis import analyze
    from dcnviz.weights import from_model

    a = analyze(from_model(planted_full_model()))
    top = a.layers[0].top_crosses("raw", n=1)
    assert (top.feature_i[0], top.feature_j[0]) == PLANTED


ALL_PAGES = ("tour", "model", "crosses", "spectrum", "compare", "report", "train", "paperlab")


@pytest.fixture(scope="module")
def sample_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("sample")
    write_sample(make_sample(SampleConfig(n_users=150, n_movies=60, n_ratings=3000, min_ratings=20)), d)
    return d


def test_every_page_loads_without_errors_or_deprecation_warnings(env: Path) -> None:
    with no_deprecations():
        at = start()
        assert at.title[0].value.startswith("dcnviz")  # the Tour is the landing page
        assert at.get("plotly_chart"), "the tour shows live figures"
        for page in ALL_PAGES:
            goto(at, page)
            ok(at)
            assert at.title, page


def test_tour_walks_through_the_first_shipped_model(env: Path) -> None:
    at = start()
    headers = [h.value for h in at.header]
    assert [h.split(" · ")[0] for h in headers] == ["1", "2", "3", "4"]
    assert at.latex, "Eq. (1) is shown with st.latex"
    heat = charts(at)[0]
    assert heat["data"][0]["x"] == NAMES
    text = " ".join(m.value for m in at.markdown)
    strongest = re.search(r"strongest pairs \(both directions together\) are \*\*(\w+) × (\w+)\*\*", text)
    assert strongest and set(strongest.groups()) == set(PLANTED)  # the planted pair is named first


def test_tour_checks_a_sample_trained_model_against_the_known_answer(env: Path) -> None:
    data = model_to_bytes(planted_full_model(), data_info={"source": "sample", "seed": 0})
    at = upload(start(), "from_sample.safetensors", data)
    goto(at, "tour")
    ok(at)
    known = [i.value for i in at.info if "answer is known" in i.value]
    assert known and "**gender × movie_id** ranks #1" in known[0]  # the planted block of this model
    assert "control pair occupation × movie_id" in known[0]


def test_empty_models_folder_gives_hints_not_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DCNVIZ_MODELS_DIR", str(tmp_path))
    at = start()
    assert any("no model" in i.value.lower() for i in at.info)
    for page in ("crosses", "spectrum", "model", "compare", "report"):
        goto(at, page)
        ok(at)
        assert at.info, page


def test_a_shipped_model_trained_on_the_sample_is_shown_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_demo_models(tmp_path)
    (tmp_path / "b_dcnmix.safetensors").rename(tmp_path / "z_dcnmix_sample.safetensors")
    monkeypatch.setenv("DCNVIZ_MODELS_DIR", str(tmp_path))
    at = start()
    assert at.sidebar.selectbox(key="model_key").value == "shipped:z_dcnmix_sample.safetensors"


def test_crosses_heatmap_has_feature_names_and_planted_cross_on_top(env: Path) -> None:
    at = goto(start(), "crosses")
    ok(at)
    heat = charts(at)[0]
    assert heat["data"][0]["x"] == NAMES and heat["data"][0]["y"] == NAMES
    expected = block_norms(from_model(planted_full_model()).layers[0].W, planted_full_model().spec.blocks())
    np.testing.assert_allclose(arr(heat["data"][0]["z"]), expected, rtol=1e-5)
    top = at.dataframe[0].value
    assert (top.feature_i[0], top.feature_j[0]) == PLANTED
    assert "How to read block (i, j)" in " ".join(m.value for m in at.markdown)
    assert len(charts(at)) == 2, "block norms and the full |W| view"
    assert {b.key for b in at.download_button} >= {"cx_heat_html", "cx_top_csv", "cx_W_html"}


def test_crosses_switch_layer_mode_log_and_experts(env: Path) -> None:
    at = goto(start(), "crosses")
    at.selectbox(key="cx_layer").set_value(1).run()
    ok(at)
    assert "layer 1" in charts(at)[0]["layout"]["title"]["text"]
    for mode in ("normalized", "symmetric", "raw"):
        at.radio(key="cx_mode").set_value(mode).run()
        ok(at)
        assert at.caption[1].value.split()[0] in {"Frobenius", "‖W_ij‖_F", "√(‖W_ij‖²"}
    at.toggle(key="cx_log").set_value(True).run()
    ok(at)
    assert "(log)" in charts(at)[0]["data"][0]["colorbar"]["title"]["text"]
    at.slider(key="cx_topn").set_value(3).run()
    assert len(at.dataframe[0].value) == 3
    # the mixture model: an expert picker appears, and each expert has its own heatmap
    at.sidebar.selectbox(key="model_key").set_value("shipped:b_dcnmix.safetensors").run()
    ok(at)
    at.selectbox(key="cx_expert").set_value(1).run()
    ok(at)
    assert "expert 1" in charts(at)[0]["layout"]["title"]["text"]


def test_spectrum_several_tolerances_rank_table_and_baseline(env: Path) -> None:
    at = goto(start(), "spectrum")
    ok(at)
    at.multiselect(key="sp_tols").set_value(["0.5", "0.01", "0.001"]).run()
    ok(at)
    table = at.dataframe[0].value  # learned R_T with the initial matrix's in brackets, one column per T
    assert {"R_0.5 (initial)", "R_0.01 (initial)", "R_0.001 (initial)"} <= set(table.columns)
    assert list(table.matrix) == ["layer 0", "layer 1"]
    assert (table["rank bound"] == 16).all()  # d = 4 + 4 + 2 + 3 + 3
    assert any("saved initial weights" in c.value for c in at.caption), "the baseline's origin is labelled"
    fig = charts(at)[0]
    names = [t["name"] for t in fig["data"]]
    assert any("initial" in n for n in names) and any("learned" in n for n in names)
    assert "full rank (Eq. 1)" in " ".join(m.value for m in at.markdown)
    # the mixture: its rank bound and the per-expert spectra
    at.sidebar.selectbox(key="model_key").set_value("shipped:b_dcnmix.safetensors").run()
    at.toggle(key="sp_experts").set_value(True).run()
    ok(at)
    table = at.dataframe[0].value
    assert len(table) == 2 + 2 * 2  # 2 layers + 2 experts each
    assert (table[~table.matrix.str.contains("expert")]["rank bound"] == 6).all()  # min(d, Σ r_k) = 2·3
    assert "Σ r_k" in " ".join(m.value for m in at.markdown)


def test_model_card_of_a_shipped_model(env: Path) -> None:
    at = goto(start(), "model")
    ok(at)
    frames = [t.value for t in at.table] + [d.value for d in at.dataframe]  # property/value tables are static
    arch = next(f for f in frames if "property" in f and "model" in set(f.property))
    assert dict(zip(arch.property, arch.value, strict=True))["model"] == "dcnv2"
    feats = next(f for f in frames if "feature" in f)
    assert list(feats.feature) == NAMES and list(feats["embedding size"]) == [4, 4, 2, 3, 3]
    metrics = next(f for f in frames if "property" in f and "test.auc" in set(f.property))
    assert dict(zip(metrics.property, metrics.value, strict=True))["test.auc"] == "0.75"
    assert any("200 MB" in m.value for m in at.markdown), "the upload limit is stated"


def test_upload_dcnviz_file_is_selected_and_shown(env: Path) -> None:
    model = planted_full_model(seed=5)
    at = upload(start(), "mine.safetensors", model_to_bytes(model))
    ok(at)
    key = at.sidebar.selectbox(key="model_key").value
    assert key.startswith("upload:")
    goto(at, "crosses")
    ok(at)
    assert "mine.safetensors" in at.caption[0].value
    assert os.listdir(env) == sorted(os.listdir(env)) and len(os.listdir(env)) == 2, "nothing written to models/"


def test_upload_peer_state_dict_detected_with_names_file(env: Path) -> None:
    data = (PEERS / "deepctr_dcn_matrix.pt").read_bytes()
    at = upload(start(), "deepctr.pt", data)
    ok(at)
    frames = [t.value for t in at.table] + [d.value for d in at.dataframe]
    arch = next(f for f in frames if "property" in f and "file format" in set(f.property))
    assert "DeepCTR-Torch" in dict(zip(arch.property, arch.value, strict=True))["file format"]
    feats = next(f for f in frames if "feature" in f)
    n = len(feats)
    # the same file with a names file renames its blocks
    names = [f"feat{i}" for i in range(n)]
    at = upload(at, "deepctr.pt", data, names=json.dumps(names).encode())
    ok(at)
    feats = next(d.value for d in at.dataframe if "feature" in d.value)
    assert list(feats.feature) == names
    goto(at, "crosses")
    ok(at)
    assert charts(at)[0]["data"][0]["x"] == names


def test_upload_fuxictr_with_its_feature_map(env: Path) -> None:
    data = (PEERS / "fuxictr_dcnv2.pt").read_bytes()
    # the feature map decides x0's block order (reversed here on purpose; the file's own order is user_id, price)
    fmap = {"features": [{"price": {"type": "numeric"}}, {"user_id": {"type": "categorical"}}]}
    at = upload(start(), "fuxictr.pt", data, names=json.dumps(fmap).encode())
    ok(at)
    feats = next(d.value for d in at.dataframe if "feature" in d.value)
    assert list(feats.feature) == ["price", "user_id"]
    # a feature map is refused for another library's file, with a message that says why
    other = (PEERS / "deepctr_dcn_matrix.pt").read_bytes()
    at = upload(at, "deepctr.pt", other, names=json.dumps(fmap).encode())
    assert not at.exception
    assert at.error and "FuxiCTR models only" in at.error[0].value and "DeepCTR-Torch" in at.error[0].value


def test_forced_wrong_format_is_a_clear_error(env: Path) -> None:
    data = (PEERS / "deepctr_dcn_matrix.pt").read_bytes()
    at = upload(start(), "deepctr.pt", data, fmt="recbole")
    assert not at.exception
    assert at.error and "RecBole" in at.error[0].value


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("kind", ["random", "truncated", "pickle_torch", "pickle_plain"])
def test_bad_upload_shows_error_and_app_keeps_working(env: Path, tmp_path: Path, kind: str) -> None:
    marker = tmp_path / "pwned"
    if kind == "random":
        data = np.random.default_rng(0).bytes(5000)
    elif kind == "truncated":
        data = model_to_bytes(planted_full_model())[:3000]
    elif kind == "pickle_torch":
        buf = io.BytesIO()
        torch.save({"crossnet.kernels": torch.zeros(2, 4, 4), "evil": _Payload(marker)}, buf)
        data = buf.getvalue()
    else:
        data = pickle.dumps({"evil": _Payload(marker)}, protocol=2)
    at = upload(start(), f"bad-{kind}.pt", data)
    assert not at.exception, [e.message for e in at.exception]
    assert at.error, "a clear message"
    assert "Could not read" in at.error[0].value and "Traceback" not in at.error[0].value
    assert not marker.exists(), "the pickle payload must never run"
    assert at.sidebar.selectbox(key="model_key").value.startswith("shipped:"), "the bad file was not registered"
    goto(at, "crosses")
    ok(at)
    assert charts(at)[0]["data"][0]["x"] == NAMES


def test_nan_weights_are_shown_as_a_warning(env: Path) -> None:
    model = planted_full_model()
    with torch.no_grad():
        model.cross.layers[1].linear.weight[0, 0] = float("nan")  # type: ignore[union-attr,index]
    at = upload(start(), "nan.safetensors", model_to_bytes(model))
    ok(at)
    assert any("NaN" in w.value for w in at.warning)


def test_two_sessions_do_not_see_each_others_uploads(env: Path) -> None:
    a, b = start(), start()
    a = upload(a, "private.safetensors", model_to_bytes(planted_full_model(seed=9)))
    ok(a)
    a_keys = a.sidebar.selectbox(key="model_key").options
    b.run()
    b_keys = b.sidebar.selectbox(key="model_key").options
    assert any("private" in k for k in a_keys)
    assert not any("private" in k for k in b_keys)


def test_compare_shows_both_models_and_their_difference(env: Path, tmp_path: Path) -> None:
    at = goto(start(), "compare")
    ok(at)
    figs = charts(at)
    assert len(figs) == 3  # A | B side by side, B − A, spectra
    diff = next(d.value for d in at.dataframe if d.value.index.name == "output feature i")
    za, zb = (arr(t["customdata"]) for t in figs[0]["data"])
    np.testing.assert_allclose(diff.to_numpy(), zb - za, rtol=1e-6, atol=1e-9)
    top = max(za.max(), zb.max())  # one colour scale for both heatmaps
    assert all(t["zmin"] == 0 and t["zmax"] == pytest.approx(top) for t in figs[0]["data"])
    # the ranks table counts the singular values table's rows: R_T = #{k : σ_k ≥ T·σ₁} (§3.5)
    sv = next(d.value for d in at.dataframe if "normalized_a" in d.value.columns)
    ranks = next(d.value for d in at.dataframe if "rank_a" in d.value.columns)
    assert len(ranks) >= 2
    for row in ranks.itertuples():
        na, nb = (int((sv[f"sigma_{s}"] >= row.tolerance * sv[f"sigma_{s}"].iloc[0]).sum()) for s in "ab")
        assert (row.rank_a, row.rank_b, row.diff) == (na, nb, nb - na)
    at.radio(key="cmp_mode").set_value("symmetric").run()
    ok(at)
    # a peer model with other blocks: the heatmaps show, the difference explains why it cannot be taken
    at = upload(at, "deepctr.pt", (PEERS / "deepctr_dcn_matrix.pt").read_bytes())
    goto(at, "compare")  # A is the upload (the sidebar's model), B the first shipped model
    ok(at)
    assert any("different feature blocks" in i.value for i in at.info)


def test_report_is_one_offline_html_file(env: Path) -> None:
    at = goto(start(), "report")
    ok(at)
    at.button(key="rep_build").click().run()
    ok(at)
    key, _, _, data = at.session_state[REPORT]
    page = data.decode("utf-8")
    assert key.startswith("shipped:")
    assert at.download_button(key="rep_download")
    # loads no script (or anything else) over the network: every <script> is inline
    tags = re.findall(r"<script\b[^>]*>", page, flags=re.I)
    assert tags and all("src=" not in t.lower() for t in tags)
    assert not re.search(r"<(link|img|iframe)\b[^>]*(href|src)\s*=\s*[\"']?(https?:)?//", page, flags=re.I)
    assert "Plotly.newPlot" in page and len(page) > 1_000_000  # plotly.js inlined
    for name in NAMES:
        assert name in page
    assert "Numerical ranks" in page and "Model card" in page


def wait_for(at: AppTest, done, timeout: float = 120.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        at.run()
        if done():
            return
        time.sleep(0.2)
    raise AssertionError("timed out waiting for the training run")


def test_one_epoch_training_on_the_sample_opens_in_every_page(env: Path) -> None:
    with no_deprecations():
        one_epoch_training()


def one_epoch_training() -> None:
    other = start()  # a second session, to check it never sees this one's run or model
    at = goto(start(), "train")
    ok(at)
    assert any("CPU" in m.value or "GPU" in m.value for m in at.markdown), "the device is stated"
    at.number_input(key="tr_epochs").set_value(1)
    at.number_input(key="tr_emb").set_value(4)
    at.text_input(key="tr_hidden").set_value("16")
    at.run()
    job = run_job(at, "tr_start", "train_job")
    snap = job.snapshot()
    assert snap.status == "done", snap.error
    assert snap.history and snap.history[0]["epoch"] == 1 and snap.ticks
    assert at.success and "Test AUC" in at.success[0].value
    assert at.download_button(key="tr_download") and at.download_button(key="tr_log_csv")
    key = at.sidebar.selectbox(key="model_key").value
    assert key.startswith("trained:"), "the trained model is selected at once"
    loaded = load_model(snap.model_bytes)
    assert loaded.meta["metrics"]["epochs"] == 1 and loaded.spec.names == list(dcnviz.data.MOVIELENS_FEATURES)
    for page in ("crosses", "spectrum", "model"):
        goto(at, page)
        ok(at)
    assert any("trained here" in c.value for c in at.caption)
    other.run()
    assert "train_job" not in other.session_state
    assert any(o.endswith(" · trained") for o in at.sidebar.selectbox(key="model_key").options)  # option labels
    assert not any(o.endswith(" · trained") for o in other.sidebar.selectbox(key="model_key").options)


def test_stop_button_keeps_the_best_model_so_far(env: Path) -> None:
    at = goto(start(), "train")
    at.number_input(key="tr_epochs").set_value(100)
    at.number_input(key="tr_emb").set_value(4)
    at.text_input(key="tr_hidden").set_value("512,512")  # slow enough to stop mid-run
    at.select_slider(key="tr_lr").set_value(1e-5)  # improves a little every epoch: no early stop
    at.selectbox(key="tr_batch").set_value(128)
    at.run()
    at.button(key="tr_start").click().run()
    job = at.session_state["train_job"]
    deadline = time.monotonic() + 120
    while not job.snapshot().history:  # at least one epoch validated
        assert time.monotonic() < deadline and not job.snapshot().finished, job.snapshot().message
        time.sleep(0.05)
    at.run()
    assert not job.snapshot().finished
    at.button(key="tr_stop").click().run()
    wait_for(at, lambda: job.snapshot().finished)
    at.run()  # the run that sees the finished job (the fragment asks the browser for it)
    ok(at)
    snap = job.snapshot()
    assert snap.status == "stopped", snap.message
    assert snap.result is not None and snap.result["stopped"] == "should_stop" and snap.result["best_epoch"] >= 1
    assert load_model(snap.model_bytes).meta["metrics"]["best_epoch"] == snap.result["best_epoch"]
    assert at.sidebar.selectbox(key="model_key").value.startswith("trained:")


def test_shipped_models_folder_if_present() -> None:
    """The real models/ folder (when the demo models are there) loads on every analysis page."""
    real = ROOT / "models"
    files = sorted(real.glob("*.safetensors"))
    if not files:
        pytest.skip("models/ holds no demo models yet")
    os.environ.pop("DCNVIZ_MODELS_DIR", None)
    at = start()
    for f in files:
        at.sidebar.selectbox(key="model_key").set_value(f"shipped:{f.name}").run()
        for page in ("crosses", "spectrum", "model"):
            goto(at, page)
            ok(at)


def test_save_model_helper_round_trip(tmp_path: Path) -> None:
    # guards the fixture itself: the planted model survives a save/load and keeps its planted block
    p = save_model(tmp_path / "m.safetensors", planted_full_model())
    W = from_model(load_model(p).model).layers[0].W
    assert W is not None and float(np.abs(W).max()) == pytest.approx(3.0)


def test_paper_lab_tiny_run_table_beside_the_paper_and_learned_coefficients(env: Path) -> None:
    at = goto(start(), "paperlab")
    ok(at)
    at.selectbox(key="pl_task").set_value("f2").run()
    assert at.multiselect(key="pl_models_f2").value == ["dcn", "dcnv2", "dnn", "dnn-large"]  # Table 1's models
    at.multiselect(key="pl_models_f2").set_value(["dcnv2", "dnn"])
    at.number_input(key="pl_samples").set_value(300)
    at.number_input(key="pl_test").set_value(200)
    at.number_input(key="pl_steps").set_value(20)
    at.run()
    run_job(at, "pl_run", "paperlab_job")
    table = at.dataframe[0].value
    assert list(table.model) == ["dcnv2", "dnn"] and list(table.params) == [15, 15]  # d² + 2d for d = 3
    assert list(table.paper_rmse) == [4.5e-15, 3.0e-2]  # Table 1, f2
    assert (table.rmse_mean > 0).all()
    figs = charts(at)
    assert [f["layout"]["title"]["text"] for f in figs] == ["True coefficients", "Learned (1-layer DCN-V2)"]
    true = arr(figs[0]["data"][0]["z"])
    np.testing.assert_allclose(true, [[1.0, 0.1, 0.0], [0.1, 0.0, 1.0], [0.0, 1.0, 0.1]])  # f2's crosses
    assert arr(figs[1]["data"][0]["z"]).shape == (3, 3)


def test_paper_lab_table6_tiny_run_beside_the_papers_movielens_numbers(env: Path) -> None:
    at = goto(start(), "model")
    assert "card_download" not in [b.key for b in at.download_button]  # a shipped model: no download here
    at = goto(at, "paperlab")
    at.radio(key="pl_study").set_value("table6").run()
    ok(at)
    assert at.radio(key="t6_source").value == "sample"
    assert at.multiselect(key="t6_models").value == list(TABLE6_MODELS)  # every model, in table order
    at.multiselect(key="t6_models").set_value(["crossnet-mix", "dnn", "dcnv2-parallel"])  # kept in table order
    at.number_input(key="t6_epochs").set_value(1)
    at.run()
    job = run_job(at, "t6_run", "table6_job")
    assert job.snapshot().status == "done" and job.request.epochs == 1
    assert "Table 6 #1 on sample: 3 models × 1 run, dcnviz's recipe" in [h.value for h in at.subheader]
    table = at.dataframe[0].value
    assert list(table.model) == ["DNN", "DCN-V2 parallel", "CrossNet-Mix"]
    assert list(table.params) == [46_593, 111_933, 67_141]  # d = 6 x 30, whatever the sample's vocabularies
    assert table["paper params"].tolist()[:2] == [46_000, 110_000] and pd.isna(table["paper params"][2])
    assert table["paper auc"].tolist()[:2] == [0.8929, 0.8950] and pd.isna(table["paper auc"][2])
    # ranks among the models the paper also ran, so they compare: DCN-V2 parallel above DNN in the paper
    assert table["rank (paper)"].tolist()[:2] == [2, 1] and pd.isna(table["rank (paper)"][2])
    here = 1 if table["test auc"][0] > table["test auc"][1] else 2
    assert table["rank (here)"].tolist()[:2] == [here, 3 - here] and pd.isna(table["rank (here)"][2])
    assert table["test auc"].between(0.0, 1.0).all()
    assert (table["runs"] == 1).all() and (table["best epochs"] == "1").all()
    fig = charts(at)[0]
    ours, paper = fig["data"]
    assert list(ours["x"]) == list(table.model) and arr(ours["y"]).tolist() == table["test auc"].tolist()
    assert list(paper["x"]) == ["DNN", "DCN-V2 parallel"] and arr(paper["y"]).tolist() == [0.8929, 0.8950]
    assert any("order" in m.value and "(paper, MovieLens-1M)" in m.value for m in at.markdown)
    rows = job.snapshot().info["rows"]
    line = f"{rows['train']:,} train / {rows['val']:,} validation / {rows['test']:,} test rows, d = 180"
    assert any(line in c.value and "seed 0." in c.value for c in at.caption)
    assert any(c.value.startswith("One run per model: run-to-run noise is not measured") for c in at.caption)

    # each model's weights are in the picker (not selected), labelled, and open on Feature crosses
    picker = at.sidebar.selectbox(key="model_key")
    assert picker.value.startswith("shipped:")  # the user's choice stands
    shown = [o for o in picker.options if o.endswith(" · Table 6")]  # whole labels, not cut short
    assert shown == ["dnn #1 · Table 6", "dcnv2-parallel #1 · Table 6", "crossnet-mix #1 · Table 6"]
    assert job.snapshot().models.keys() == {"dnn", "dcnv2-parallel", "crossnet-mix"}
    picker.set_value(f"table6:{job.id[:12]}:dcnv2-parallel").run()
    assert "**dcnv2-parallel #1** · trained in the Paper lab's Table 6" in at.sidebar.caption[0].value
    goto(at, "model")  # made in this session, so its card offers the file (a shipped model's does not)
    assert [b.key for b in at.download_button if b.key == "card_download"] == ["card_download"]
    goto(at, "crosses")
    ok(at)
    assert "dcnv2-parallel #1" in " ".join(c.value for c in at.caption)
    top = at.dataframe[0].value  # the strongest crosses of its first cross layer, by the sample's feature names
    assert set(top.feature_i) | set(top.feature_j) <= {"user_id", "movie_id", "gender", "age", "occupation", "zip"}


def test_paper_lab_table6_finds_movielens_in_the_folder_typed(env: Path, ml100k: Path) -> None:
    at = goto(start(), "paperlab")
    at.radio(key="pl_study").set_value("table6").run()
    at.radio(key="t6_source").set_value("ml-100k").run()
    at.text_input(key="t6_root").set_value(str(ml100k.parent)).run()  # a folder holding ml-100k/
    ok(at)
    assert any(f"Found MovieLens-100K in {ml100k.parent}" in m.value for m in at.success)
    at.multiselect(key="t6_models").set_value(["dnn"])
    at.number_input(key="t6_epochs").set_value(1)
    at.run()
    job = run_job(at, "t6_run", "table6_job")
    assert job.request.data.source == "ml-100k" and job.request.data.data_dir == str(ml100k.parent)
    table = at.dataframe[0].value
    assert list(table.model) == ["DNN"] and list(table.params) == [46_593]  # six fields of 30: d = 180
    assert any(c.value.startswith("MovieLens-100K: ") and "d = 180" in c.value for c in at.caption)


def test_movielens_download_offline_is_a_clear_message(env: Path, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    with socket.socket() as s:  # a port nothing listens on: the download cannot connect
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("DCNVIZ_ML_100K_URL", f"http://127.0.0.1:{port}/ml-100k.zip")
    at = goto(start(), "train")
    at.radio(key="tr_source").set_value("ml-100k").run()
    at.text_input(key="tr_root").set_value(str(tmp_path / "data")).run()
    ok(at)
    assert any("No MovieLens-100K files" in w.value for w in at.warning)
    at.button(key="tr_fetch").click().run()
    assert not at.exception
    assert at.error and "Download failed" in at.error[0].value and "offline" in at.error[0].value
    assert at.button(key="tr_start").disabled


def test_movielens_download_with_progress_then_ready_to_train(env: Path, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import dataclasses
    import functools
    import hashlib
    import http.server
    import threading
    import zipfile

    from dcnviz import download as dl

    tiny = TEST_FIXTURES / "data" / "ml-100k-tiny"
    rows = {f: dl.count_rows(tiny / f) for f in ("u.data", "u.user", "u.item")}
    monkeypatch.setitem(dl.DATASETS, "ml-100k", dataclasses.replace(dl.DATASETS["ml-100k"], rows=rows))
    served = tmp_path / "www"
    served.mkdir()
    with zipfile.ZipFile(served / "ml-100k.zip", "w") as z:
        for f in rows:
            z.write(tiny / f, f"ml-100k/{f}")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *a: None  # type: ignore[attr-defined]
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("DCNVIZ_ML_100K_URL", f"http://127.0.0.1:{httpd.server_address[1]}/ml-100k.zip")
        monkeypatch.setenv("DCNVIZ_ML_100K_MD5", hashlib.md5((served / "ml-100k.zip").read_bytes()).hexdigest())
        at = goto(start(), "train")
        at.radio(key="tr_source").set_value("ml-100k").run()
        at.text_input(key="tr_root").set_value(str(tmp_path / "data")).run()
        at.button(key="tr_fetch").click().run()
        ok(at)
        assert at.get("progress"), "a progress bar while downloading"
        assert any("Downloaded and verified" in s.value for s in at.success)
        assert (tmp_path / "data" / "ml-100k" / "u.data").is_file()
        at.run()
        assert any("Found MovieLens-100K" in s.value for s in at.success)
        assert not at.button(key="tr_start").disabled
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_train_page_names_the_gpu_when_cuda_is_there(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = goto(start(), "train")
    if not torch.cuda.is_available():
        assert any("**CPU**" in m.value for m in at.markdown), "without CUDA the page says CPU plainly"
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: "NVIDIA Test GPU")
    at.run()
    ok(at)
    name = torch.cuda.get_device_name(0)
    assert any(f"GPU: **{name}**" in m.value for m in at.markdown)
    assert "cuda" in at.radio(key="tr_device").options


PEER_FILES = sorted(
    p.name for p in PEERS.glob("*") if p.suffix in (".pt", ".pth", ".npz", ".h5") and ".expected" not in p.name
)


@pytest.mark.parametrize("name", PEER_FILES)
def test_every_peer_fixture_opens_on_the_analysis_pages(env: Path, name: str) -> None:
    at = upload(start(), name, (PEERS / name).read_bytes())
    ok(at)
    assert at.sidebar.selectbox(key="model_key").value.startswith("upload:")
    for page in ("crosses", "spectrum", "tour"):
        goto(at, page)
        ok(at)
        assert charts(at), page


def test_every_model_kind_opens_on_every_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """DCN-V1, low-rank CrossNet, a mixture with nonlinear experts (Eq. 4) and a plain DNN."""
    from dcnviz.model import DCNModel, ModelConfig
    from tests.helpers.app import tiny_spec

    configs = {
        "dcn": ModelConfig(model="dcn", hidden=(8,)),
        "lowrank": ModelConfig(model="crossnet", rank=3),
        "mixrelu": ModelConfig(model="dcn-mix", rank=2, experts=3, expert_activation="relu", hidden=(8,)),
        "dnn": ModelConfig(model="dnn", hidden=(8,)),
    }
    for name, cfg in configs.items():
        save_model(tmp_path / f"{name}.safetensors", DCNModel(tiny_spec(), cfg))
    monkeypatch.setenv("DCNVIZ_MODELS_DIR", str(tmp_path))
    at = start()
    for name in configs:
        at.sidebar.selectbox(key="model_key").set_value(f"shipped:{name}.safetensors").run()
        for page in ("tour", "model", "crosses", "spectrum", "compare", "report"):
            goto(at, page)
            if page == "report":
                at.button(key="rep_build").click().run()
            ok(at)
        if name == "dnn":
            goto(at, "crosses")
            assert any("plain DNN" in i.value for i in at.info)
        if name == "mixrelu":
            goto(at, "crosses")
            assert any("linear part" in i.value for i in at.info)


def test_crosses_change_view_subtracts_the_saved_initial_matrix(env: Path) -> None:
    at = goto(start(), "crosses")
    at.sidebar.selectbox(key="model_key").set_value("shipped:a_dcnv2_planted.safetensors").run()
    at.toggle(key="cx_change").set_value(True).run()
    ok(at)
    model = planted_full_model()
    cw = from_model(model)
    W, W0 = cw.layers[0].W, cw.initial_layers[0].W
    heat = charts(at)[0]
    np.testing.assert_allclose(arr(heat["data"][0]["z"]), block_norms(W - W0, model.spec.blocks()), rtol=1e-5)
    assert "W − W₀" in heat["layout"]["title"]["text"]
    top = at.dataframe[0].value
    assert (top.feature_i[0], top.feature_j[0]) == PLANTED


def test_crosses_gate_weighted_mixture_matches_the_library(env: Path, tmp_path: Path) -> None:
    from dcnviz.cli import main
    from dcnviz.gates import recorded_mean_gates

    path = tmp_path / "mix.safetensors"
    argv = ["train", "--data", "sample", "--model", "dcn-mix", "--experts", "3", "--rank", "4", "--embedding-dim", "4"]
    assert main([*argv, "--hidden", "8", "--epochs", "1", "--device", "cpu", "--out", str(path)]) == 0
    at = goto(upload(start(), "mix.safetensors", path.read_bytes()), "crosses")
    ok(at)
    assert at.selectbox(key="cx_expert").format_func(-1) == "all experts (mean)"
    at.toggle(key="cx_gates").set_value(True).run()
    ok(at)
    # the heatmap is the block norms of Σ_k E[G_k] U_k V_kᵀ, with the mean gates computed by the library
    gates, label = recorded_mean_gates(path)
    assert np.abs(gates[0] - 1 / 3).max() > 1e-3, "gates this close to uniform could not tell the views apart"
    cw = from_model(load_model(path).model)
    W = sum(a * e.weight() for a, e in zip(gates[0], cw.layers[0].experts, strict=True))
    heat = charts(at)[0]
    np.testing.assert_allclose(arr(heat["data"][0]["z"]), block_norms(W, cw.blocks), rtol=1e-5)
    assert "gate-weighted" in heat["layout"]["title"]["text"]
    assert "gate-weighted" in at.selectbox(key="cx_expert").format_func(-1)
    assert any(label in c.value for c in at.caption)
    assert any("Mean gates" in c.value for c in at.caption)
    # a shipped full-rank model has no such toggle
    at.sidebar.selectbox(key="model_key").set_value("shipped:a_dcnv2_planted.safetensors").run()
    ok(at)
    assert not [t for t in at.toggle if t.key == "cx_gates"]
