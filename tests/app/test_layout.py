"""AppTest (headless) tests of how the app presents things (issue 13): one source for each number a user
compares across pages, controls that follow the user's choices, warnings shown once, labels that fit.

Sizes in pixels (the heatmap filling the column) need a browser: ``tests/e2e/test_browser.py``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from dcnviz.app import ui
from dcnviz.app.pages.report import REPORT
from dcnviz.checkpoint import model_to_bytes
from dcnviz.commands.app import app_settings, parse_streamlit_args, streamlit_options
from dcnviz.errors import ConfigError
from dcnviz.sample import SampleConfig, make_sample, write_sample
from tests.helpers import PEERS
from tests.helpers.app import NAMES, charts, goto, ok, planted_full_model, start, upload

MIX = "shipped:b_dcnmix.safetensors"
FULL = "shipped:a_dcnv2_planted.safetensors"


@pytest.fixture(scope="module")
def sample_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("sample")
    write_sample(make_sample(SampleConfig(n_users=60, n_movies=30, n_ratings=800, min_ratings=5)), d)
    return d


def pick(at, key: str):  # type: ignore[no-untyped-def]
    at.sidebar.selectbox(key="model_key").set_value(key).run()
    ok(at)
    return at


def test_a_pairs_share_is_the_same_on_the_tour_and_on_feature_crosses(env: Path) -> None:
    at = start()
    text = " ".join(m.value for m in at.markdown)
    m = re.search(r"strongest pairs \(both directions together\) are \*\*(\w+) × (\w+)\*\* \(([\d.]+)% of ‖W‖²\)", text)
    assert m, text[:2000]
    a, b, tour_share = m.group(1), m.group(2), float(m.group(3)) / 100
    goto(at, "crosses")
    raw = at.dataframe[0].value
    assert list(raw.columns) == ["rank", "feature_i", "feature_j", "value", "share", "pair_share"]
    rows = raw[(raw.feature_i.isin([a, b])) & (raw.feature_j.isin([a, b]))]
    assert len(rows) >= 1 and (rows.pair_share.round(3) == round(tour_share, 3)).all()
    assert (rows.share < rows.pair_share).all(), "one block's share is part of the pair's"
    at.radio(key="cx_mode").set_value("symmetric").run()
    sym = at.dataframe[0].value
    assert list(sym.columns) == ["rank", "feature_i", "feature_j", "value", "pair_share"]
    assert round(float(sym.pair_share.iloc[0]), 3) == round(tour_share, 3)
    assert any("both directions together" in c.value for c in at.caption)


def test_tolerances_can_be_typed_and_stay_sorted(env: Path) -> None:
    at = goto(start(), "spectrum")
    box = at.multiselect(key="sp_tols")
    assert box.value == ["0.5", "0.1", "0.05", "0.01"]
    box.set_value(["0.01", "0.5", "0.3", "abc", "2"]).run()  # 0.3 typed; "abc" and "2" are not tolerances
    ok(at)
    assert at.multiselect(key="sp_tols").value == ["0.5", "0.3", "0.01"], "largest first"
    assert any("'abc'" in w.value and "'2'" in w.value and "(0, 1]" in w.value for w in at.warning)
    table = at.dataframe[0].value
    ranks = [c for c in table.columns if c.startswith("R_")]
    assert ranks == ["R_0.5 (initial)", "R_0.3 (initial)", "R_0.01 (initial)"]
    assert "0.3" in at.multiselect(key="sp_tols").options  # a typed value becomes an option
    at.run()
    assert not at.warning, "the message about a refused value is shown once"


def test_report_uses_the_tolerances_chosen_on_spectrum(env: Path) -> None:
    at = goto(start(), "spectrum")
    at.multiselect(key="sp_tols").set_value(["0.3", "0.02"]).run()
    goto(at, "report")
    ok(at)
    assert any("0.3, 0.02" in c.value and "Spectrum" in c.value for c in at.caption)
    assert not [c for c in at.checkbox if c.key == "rep_experts"], "a full-rank model has no experts to include"
    at.button(key="rep_build").click().run()
    ok(at)
    _, _, tols, data = at.session_state[REPORT]
    page = data.decode("utf-8")
    assert tols == (0.3, 0.02)
    assert "R_0.3 (initial)" in page and "R_0.02 (initial)" in page and "R_0.5" not in page
    # back on Spectrum the chips are the ones chosen
    goto(at, "spectrum")
    assert at.multiselect(key="sp_tols").value == ["0.3", "0.02"]
    pick(at, MIX)
    goto(at, "report")
    assert at.checkbox(key="rep_experts").value is True, "a mixture offers its experts"


def test_rank_tables_are_compact_in_the_app_and_the_report(env: Path) -> None:
    at = goto(start(), "spectrum")
    table = at.dataframe[0].value
    assert "expert" not in table and "suggestion" not in table and len(table.columns) <= 8
    cell = table["R_0.1 (initial)"].iloc[0]
    assert re.fullmatch(r"\d+ \(\d+\)", cell), cell  # learned (initial)
    goto(at, "report")
    at.button(key="rep_build").click().run()
    page = at.session_state[REPORT][3].decode("utf-8")
    ranks = page[page.index("<h2>Numerical ranks</h2>") :]
    assert 'class="dataframe tbl ranks"' in ranks
    header = re.search(r"<thead>(.*?)</thead>", ranks, re.S).group(1)  # type: ignore[union-attr]
    assert "suggestion" not in header and "expert" not in header and "initial" in header
    assert "white-space: nowrap" in page


def test_compare_follows_the_sidebar_and_swaps(env: Path) -> None:
    at = goto(start(), "compare")
    ok(at)
    a = at.sidebar.selectbox(key="model_key").value
    assert any("**A** (the model chosen in the sidebar)" in m.value for m in at.markdown)
    assert a not in at.selectbox(key="cmp_b").options, "B is one of the other models"
    titles = [ann["text"] for ann in charts(at)[0]["layout"]["annotations"]]
    assert titles[:2] == ["A · layer 0", "B · layer 0"]
    pick(at, MIX if a == FULL else FULL)
    new_a = at.sidebar.selectbox(key="model_key").value
    assert new_a != a and new_a not in at.selectbox(key="cmp_b").options
    b = at.selectbox(key="cmp_b").value
    at.button(key="cmp_swap").click().run()
    ok(at)
    assert at.sidebar.selectbox(key="model_key").value == b and at.selectbox(key="cmp_b").value == new_a


def test_notes_are_not_warnings_and_warnings_are_not_repeated(env: Path) -> None:
    at = upload(start(), "recbole_dcnv2_checkpoint.pth", (PEERS / "recbole_dcnv2_checkpoint.pth").read_bytes())
    ok(at)
    assert not at.warning, [w.value for w in at.warning]  # "read the tensors of the checkpoint's …" is a note
    notes = [e for e in at.expander if "Notes from reading the file" in e.label]
    assert notes and "state_dict" in " ".join(m.value for m in notes[0].markdown)
    for page in ("crosses", "spectrum", "tour", "compare", "report"):
        goto(at, page)
        ok(at)
        assert not at.warning, (page, [w.value for w in at.warning])
    # a real warning (NaN weights): in full on the Model page, one quiet line elsewhere
    model = planted_full_model()
    import torch

    with torch.no_grad():
        model.cross.layers[1].linear.weight[0, 0] = float("nan")  # type: ignore[union-attr,index]
    at = upload(at, "nan.safetensors", model_to_bytes(model))
    assert any("NaN" in w.value for w in at.warning)
    for page in ("crosses", "spectrum"):
        goto(at, page)
        assert not at.warning
        assert any("warning about this file" in c.value and "**Model**" in c.value for c in at.caption)


def test_split_warnings_keeps_problems_and_moves_notes() -> None:
    warns, notes = ui.split_warnings(
        [
            "read the tensors of the checkpoint's 'state_dict' entry",
            "skipped 2 non-tensor entries: 'epoch' (a value of type int); 'config' (…)",
            "the pickle names objects that were not loaded (never imported or called): recbole.Config",
            "cross layer(s) [1] hold NaN or Inf values; analyses of them are unreliable",
            "npz stores keys sorted by name, so the feature order of the blocks may not be x0's",
        ]
    )
    assert len(notes) == 3 and len(warns) == 2 and "NaN" in warns[0]


def test_labels_fit_the_sidebar_and_the_expert_picker(env: Path) -> None:
    long_name = "a_model_file_with_a_really_quite_long_descriptive_name.safetensors"
    data = model_to_bytes(planted_full_model(seed=3))
    at = upload(start(), long_name, data)
    ok(at)
    picker = at.sidebar.selectbox(key="model_key")
    shown = picker.options  # AppTest lists the labels the user sees
    assert all(len(s) <= ui.PICKER_CHARS for s in shown), shown
    assert len(set(shown)) == len(shown), "no two entries look alike"
    assert any(long_name in c.value for c in at.sidebar.caption), "the whole name under the picker"
    pick(at, MIX)
    goto(at, "crosses")
    box = at.selectbox(key="cx_expert")
    assert max(len(o) for o in box.options) <= 28 and "all experts (mean)" in box.options
    assert any("U_k C_k V_kᵀ" in c.value for c in at.caption), "the formula moved to a caption"


def test_the_model_card_shows_long_values_whole(env: Path) -> None:
    at = upload(start(), "tfrs_cross.npz", (PEERS / "tfrs_cross.npz").read_bytes())
    ok(at)
    arch = next(t.value for t in at.table if "property" in t.value)
    value = dict(zip(arch.property, arch.value, strict=True))["initial matrices (spectrum baseline)"]
    assert len(value) > 60 and "truncated_normal" in value  # a long value, in a table that wraps (st.table)


def test_dcnviz_app_passes_the_apps_settings_and_lets_the_user_override_them() -> None:
    settings = app_settings()
    assert settings["browser.gatherUsageStats"] == "false"
    assert settings["client.showErrorDetails"] == "type"
    assert settings["server.fileWatcherType"] == "none"
    assert settings["server.maxUploadSize"] == "200"
    opts = streamlit_options(["--server.port", "8555", "--server.fileWatcherType=auto", "--browser.serverAddress=h"])
    assert opts["server.port"] == "8555" and opts["server.fileWatcherType"] == "auto"
    assert opts["browser.serverAddress"] == "h" and opts["browser.gatherUsageStats"] == "false"
    assert parse_streamlit_args(["--theme.base", "dark"]) == {"theme.base": "dark"}
    for bad, what in ((["--server.port"], "needs a value"), (["8501"], "of the form"), (["-p", "1"], "of the form")):
        with pytest.raises(ConfigError, match=what):
            parse_streamlit_args(bad)


def test_dcnviz_app_refuses_an_unknown_streamlit_option_by_name(capsys: pytest.CaptureFixture[str]) -> None:
    from dcnviz.cli import main

    assert main(["app", "--server.nope", "1"]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "--server.nope" in err
    with pytest.raises(SystemExit):
        main(["inspect", "--server.port", "1"])  # other commands keep refusing unknown arguments


def test_the_tour_counts_features(env: Path) -> None:
    at = start()
    assert any(f"**{len(NAMES)} features**" in m.value for m in at.markdown)


def test_the_same_file_with_names_replaces_its_nameless_entry(env: Path) -> None:
    data = (PEERS / "deepctr_dcn_matrix.pt").read_bytes()
    at = upload(start(), "deepctr.pt", data)
    before = list(at.sidebar.selectbox(key="model_key").options)
    names = json.dumps(["u", "m", "d"]).encode()
    at = upload(at, "deepctr.pt", data, names=names)
    ok(at)
    after = list(at.sidebar.selectbox(key="model_key").options)
    assert len(after) == len(before) and len(set(after)) == len(after), after
    assert any("feature names from your file" in c.value for c in at.sidebar.caption)
    goto(at, "crosses")
    assert charts(at)[0]["data"][0]["x"] == ["u", "m", "d"]
    # two different files that happen to have the same name stay apart, and look apart
    at = upload(at, "deepctr.pt", (PEERS / "deepctr_dcnmix.pt").read_bytes())
    shown = list(at.sidebar.selectbox(key="model_key").options)
    assert len(shown) == len(after) + 1 and len(set(shown)) == len(shown), shown


def test_a_file_without_names_says_so_and_takes_them_on_the_page(env: Path) -> None:
    at = upload(start(), "tfrs_cross.npz", (PEERS / "tfrs_cross.npz").read_bytes())
    for page in ("crosses", "tour"):
        goto(at, page)
        ok(at)
        assert any("Feature names are missing" in m.value and "x0" in m.value for m in at.markdown), page
    assert any("**1 feature**" in m.value for m in at.markdown), "not '1 features'"
    n_models = len(at.sidebar.selectbox(key="model_key").options)
    goto(at, "crosses")
    widths = json.dumps([{"name": "user", "width": 2}, {"name": "item", "width": 4}]).encode()
    at.file_uploader(key="cx_names").upload("NAMES.json", widths, "application/json").run()
    ok(at)
    assert charts(at)[0]["data"][0]["x"] == ["user", "item"]
    assert not any("Feature names are missing" in m.value for m in at.markdown)
    assert len(at.sidebar.selectbox(key="model_key").options) == n_models, "the same upload, now named"
    # a names file that does not fit x0 is refused with the reason, and the page keeps working
    at = upload(at, "recbole_dcnv2.pt", (PEERS / "recbole_dcnv2.pt").read_bytes())
    goto(at, "crosses")
    assert any("field_0" in m.value for m in at.markdown), "sizes without names are named as such"
    at.file_uploader(key="cx_names").upload("NAMES.json", b'["a", "b", "c", "d", "e", "f", "g"]', "application/json")
    at.run()
    assert at.error and "Could not use NAMES.json" in at.error[0].value
    assert not at.exception
