"""`python -m dcnviz inspect`: the JSON contract of issue 3, the summary, and clean errors."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dcnviz import analysis as A
from dcnviz.checkpoint import save_model
from dcnviz.cli import main
from dcnviz.gates import mean_gates
from dcnviz.model import DCNModel, ModelConfig
from dcnviz.spec import FeatureSpec, Field
from tests.helpers import PEERS, ROOT, TEST_FIXTURES
from tests.helpers import hostile as H

SPEC = FeatureSpec(
    (
        Field(name="user_id", kind="categorical", embedding_dim=4, vocab=tuple("abcdef")),
        Field(name="genres", kind="multivalent", embedding_dim=3, vocab=("Action", "Drama"), max_len=2),
        Field(name="gender", kind="categorical", embedding_dim=2, vocab=("F", "M")),
        Field(name="year", kind="dense", embedding_dim=1),
    )
)
BOUNDS = [("user_id", 0, 4), ("genres", 4, 7), ("gender", 7, 9), ("year", 9, 10)]


def saved(tmp_path: Path, config: ModelConfig, name: str = "m.safetensors") -> tuple[Path, DCNModel]:
    torch.manual_seed(0)
    model = DCNModel(SPEC, config)
    with torch.no_grad():  # differ from the saved initial weights
        for p in model.cross.parameters() if model.cross is not None else []:
            p.mul_(0.5).add_(0.05)
    path = tmp_path / name
    save_model(path, model)
    return path, model


def inspect_json(capsys, *argv: str) -> dict:
    assert main(["inspect", *argv, "--json"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    return json.loads(out[-1])


def test_json_of_a_full_rank_model_matches_the_analysis(tmp_path, capsys):
    path, model = saved(tmp_path, ModelConfig(hidden=(8,)))
    obj = inspect_json(capsys, str(path), "--tolerance", "0.1", "0.05", "1e-5")
    assert obj["format"] == "dcnviz"
    assert [(f["name"], f["start"], f["stop"]) for f in obj["features"]] == BOUNDS
    assert [la["index"] for la in obj["layers"]] == [0, 1]
    for la, layer in zip(obj["layers"], model.cross_layers(), strict=True):
        W = layer.effective_weight().detach().double().numpy()
        assert la["kind"] == "full"
        np.testing.assert_allclose(la["block_norms"], A.block_norms(W, SPEC.blocks()), rtol=1e-6)
        s = np.linalg.svd(W, compute_uv=False)
        np.testing.assert_allclose(la["singular_values"], s, rtol=1e-6)
        assert list(la["numerical_rank"]) == ["0.1", "0.05", "1e-05"]
        assert la["numerical_rank"] == {
            "0.1": A.numerical_rank(s, 0.1),
            "0.05": A.numerical_rank(s, 0.05),
            "1e-05": A.numerical_rank(s, 1e-5),
        }
        assert la["experts"] == [] and la["rank_bound"] == 10
        assert len(la["initial_singular_values"]) == 10
        assert la["suggested_rank"]["rank"] == A.numerical_rank(s, 0.1)


def test_default_tolerances_and_low_rank_layers_list_exactly_r_values(tmp_path, capsys):
    path, model = saved(tmp_path, ModelConfig(rank=3, hidden=(8,)))
    obj = inspect_json(capsys, str(path))
    assert obj["tolerances"] == [0.5, 0.1, 0.05, 0.01]
    for la, layer in zip(obj["layers"], model.cross_layers(), strict=True):
        assert la["kind"] == "lowrank" and la["rank_bound"] == 3
        assert list(la["numerical_rank"]) == ["0.5", "0.1", "0.05", "0.01"]
        W = layer.effective_weight().detach().double().numpy()
        assert len(la["singular_values"]) == 3
        np.testing.assert_allclose(la["singular_values"], np.linalg.svd(W, compute_uv=False)[:3], rtol=1e-6)


def test_mixture_layers_describe_the_mean_of_experts_and_list_experts(tmp_path, capsys):
    config = ModelConfig(model="dcn-mix", rank=2, experts=3, expert_activation="relu", hidden=(8,))
    path, model = saved(tmp_path, config)
    obj = inspect_json(capsys, str(path))
    for la, layer in zip(obj["layers"], model.cross_layers(), strict=True):
        Wk = layer.expert_weights().detach().double().numpy()  # (K, d, d)
        mean = Wk.mean(axis=0)
        assert la["kind"] == "mixture" and la["linear_part_only"] is True
        np.testing.assert_allclose(la["block_norms"], A.block_norms(mean, SPEC.blocks()), rtol=1e-6)
        assert len(la["singular_values"]) == 6  # Σ r_k
        np.testing.assert_allclose(la["singular_values"], np.linalg.svd(mean, compute_uv=False)[:6], rtol=1e-5)
        assert [e["index"] for e in la["experts"]] == [0, 1, 2]
        for e, W in zip(la["experts"], Wk, strict=True):
            assert len(e["singular_values"]) == 2
            np.testing.assert_allclose(e["block_norms"], A.block_norms(W, SPEC.blocks()), rtol=1e-6)
            assert set(e) >= {"block_norms", "singular_values", "numerical_rank"}


def test_a_model_without_cross_layers_has_no_layers(tmp_path, capsys):
    path, _ = saved(tmp_path, ModelConfig(model="dnn", hidden=(8,)))
    obj = inspect_json(capsys, str(path))
    assert obj["layers"] == [] and len(obj["features"]) == 4
    assert main(["inspect", str(path)]) == 0
    assert "no cross layers" in capsys.readouterr().out


def test_summary_names_the_one_planted_cross(tmp_path, capsys):
    torch.manual_seed(0)
    model = DCNModel(SPEC, ModelConfig(cross_layers=1, hidden=(8,)))
    with torch.no_grad():
        W = model.cross.layers[0].linear.weight
        W.zero_()
        W[7:9, 4:7] = 1.0  # input genres feeds gender's slot
        W[0, 0] = 0.1
    path = tmp_path / "planted.safetensors"
    save_model(path, model)
    assert main(["inspect", str(path), "--top", "2"]) == 0
    out = capsys.readouterr().out
    first = next(ln for ln in out.splitlines() if ln.strip().startswith("1."))
    assert "genres × gender" in first and "99.8%" in first  # 6 / (6 + 0.1²) of ‖W‖_F²
    assert "R_T: T=0.5: 1" in out
    assert main(["inspect", str(path), "--mode", "raw", "--top", "1"]) == 0
    assert "gender ← genres" in capsys.readouterr().out


def test_errors_go_to_stderr_without_traceback(tmp_path, capsys):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 3)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run(  # the real entry point, once
        [sys.executable, "-m", "dcnviz", "inspect", str(bad), "--json"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=120,
    )
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.startswith("error:") and "Traceback" not in r.stderr and "safetensors" in r.stderr
    for argv, what in (
        ([str(tmp_path / "missing.safetensors")], "no model file"),
        ([str(bad), "--tolerance", "0"], ""),
    ):
        assert main(["inspect", *argv, "--json"]) == 2
        captured = capsys.readouterr()
        assert captured.out == "" and captured.err.startswith("error:") and what in captured.err


@pytest.mark.parametrize("argv", [["--tolerance", "1.5"], ["--energy", "0"], ["--top", "-1"]])
def test_bad_options_are_refused(tmp_path, capsys, argv):
    path, _ = saved(tmp_path, ModelConfig(hidden=(8,)))
    assert main(["inspect", str(path), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:")


@pytest.mark.skipif(not (PEERS / "deepctr_dcnmix.pt").is_file(), reason="peer fixtures not present")
def test_a_peer_library_file_goes_through_the_importers(capsys):
    obj = inspect_json(capsys, str(PEERS / "deepctr_dcnmix.pt"))
    assert obj["format"] == "deepctr" and "DCNMix" in obj["detected"]
    d = obj["d"]
    assert obj["features"][0]["start"] == 0 and obj["features"][-1]["stop"] == d
    for la in obj["layers"]:
        assert la["kind"] == "mixture" and len(la["experts"]) >= 1
        k = len(obj["features"])
        assert np.shape(la["block_norms"]) == (k, k)
        assert len(la["singular_values"]) == la["rank_bound"] == sum(len(e["singular_values"]) for e in la["experts"])
    assert main(["inspect", str(PEERS / "deepctr_dcnmix.pt"), "--format", "torchrec"]) == 2
    assert capsys.readouterr().err.startswith("error:")


def test_names_file_relabels_the_blocks(tmp_path, capsys):
    path, _ = saved(tmp_path, ModelConfig(hidden=(8,)))
    names = tmp_path / "in" / "names.json"
    names.parent.mkdir()
    names.write_text(json.dumps([{"name": n, "width": w} for n, w in (("u", 4), ("g", 3), ("s", 2), ("y", 1))]))
    obj = inspect_json(capsys, str(path), "--names", str(names))
    assert [(f["name"], f["start"], f["stop"]) for f in obj["features"]] == [
        ("u", 0, 4),
        ("g", 4, 7),
        ("s", 7, 9),
        ("y", 9, 10),
    ]


def test_non_finite_weights_are_named_in_a_warning(tmp_path, capsys):
    """Issue 11: a layer holding NaN is left out with a warning naming it; the others are analysed (exit 0)."""
    torch.manual_seed(0)
    model = DCNModel(SPEC, ModelConfig(hidden=(8,)))
    with torch.no_grad():
        model.cross.layers[1].linear.weight[0, 0] = float("nan")
    path = tmp_path / "nan.safetensors"
    save_model(path, model)
    assert main(["inspect", str(path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [layer["index"] for layer in out["layers"]] == [0]
    assert any("layer 1" in w and "NaN" in w for w in out["warnings"])


def test_a_file_without_feature_blocks_asks_for_names(tmp_path, capsys):
    from safetensors.torch import save_file

    torch.manual_seed(0)
    path = tmp_path / "torchrec_crossnet.safetensors"  # torchrec CrossNet keys: no feature names or widths
    save_file({"kernels.0": torch.randn(12, 12), "bias.0": torch.zeros(12, 1)}, str(path))
    obj = inspect_json(capsys, str(path))
    assert obj["format"] == "torchrec" and obj["features"] == [{"name": "x0", "start": 0, "stop": 12}]
    assert np.shape(obj["layers"][0]["block_norms"]) == (1, 1)
    assert main(["inspect", str(path)]) == 0
    assert "--names" in capsys.readouterr().out


def test_fuxictr_feature_map_names_the_blocks(capsys):
    peers = TEST_FIXTURES / "peers"
    fmap = peers / "fuxictr_feature_map.json"
    features = json.loads(fmap.read_text())["features"]
    want = [next(iter(f)) if isinstance(f, dict) else f for f in features]
    out = inspect_json(capsys, str(peers / "fuxictr_dcnv2.pt"), "--feature-map", str(fmap))
    assert out["format"] == "fuxictr"
    assert [f["name"] for f in out["features"]] == want
    assert main(["inspect", str(peers / "fuxictr_dcnv2.pt"), "--feature-map", "/no/such/map.json"]) == 2
    assert "no feature map" in capsys.readouterr().err


def test_json_carries_what_training_changed_for_dcnviz_files(tmp_path, capsys):
    torch.manual_seed(0)
    model = DCNModel(SPEC, ModelConfig(cross_layers=1, hidden=(4,)))
    with torch.no_grad():
        model.cross.layers[0].linear.weight[0, -1] += 2.0  # Δ in block (first feature, last feature)
    path = save_model(tmp_path / "m.safetensors", model)
    layer = inspect_json(capsys, str(path))["layers"][0]
    change = np.array(layer["change_block_norms"])
    want = np.zeros_like(change)
    want[0, -1] = 2.0
    np.testing.assert_allclose(change, want, atol=1e-6)
    peer = inspect_json(capsys, str(TEST_FIXTURES / "peers" / "deepctr_dcn_matrix.pt"))
    assert all("change_block_norms" not in lay for lay in peer["layers"])  # its init is drawn, not saved


def test_gates_data_weights_each_expert_by_its_mean_gate(tmp_path, capsys):
    from dcnviz.checkpoint import load_model
    from dcnviz.data import DataOptions, load_splits
    from dcnviz.weights import from_model

    path = tmp_path / "mix.safetensors"
    argv = ["train", "--data", "sample", "--model", "dcn-mix", "--experts", "3", "--rank", "4", "--embedding-dim", "4"]
    argv += ["--hidden", "8", "--epochs", "1", "--device", "cpu", "--out", str(path)]
    assert main(argv) == 0
    capsys.readouterr()
    assert main(["inspect", str(path), "--gates-data", "sample", "--gates-rows", "500", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    # the same from the library: mean gates over the first 500 rows of the recorded validation split,
    # then W = Σ_k a_k U_k V_kᵀ from the weights
    loaded = load_model(path)
    val = load_splits(DataOptions(source="sample", embedding_dim=4), spec=loaded.spec).val
    gates = mean_gates(loaded.model, val.index(slice(0, 500)))
    cw = from_model(loaded.model)
    assert len(out["layers"]) == len(cw.layers) == 2
    for i, layer in enumerate(out["layers"]):
        assert layer["weighting"] == "gate-weighted over 500 validation inputs"
        a = np.asarray(layer["gate_weights"])
        assert np.allclose(a, gates[i]) and abs(a.sum() - 1) < 1e-6  # softmax gates
        W = sum(a[k] * e.weight() for k, e in enumerate(cw.layers[i].experts))
        assert np.allclose(layer["block_norms"], A.block_norms(W, cw.blocks), rtol=1e-5, atol=1e-7)
    # the report says which average of the experts its maps show
    gated = ["inspect", str(path), "--gates-data", "sample", "--gates-rows", "500", "--html", str(tmp_path / "g.html")]
    assert main(gated) == 0
    capsys.readouterr()
    page = (tmp_path / "g.html").read_text(encoding="utf-8")
    assert page.count("W = Σ_k E[G_k] U_k C_k V_kᵀ (gate-weighted over 500 validation inputs)") == 2  # per layer
    # uniform weighting is the default, and is said
    assert main(["inspect", str(path), "--json", "--html", str(tmp_path / "u.html")]) == 0
    assert json.loads(capsys.readouterr().out)["layers"][0]["weighting"] == "uniform"
    assert (tmp_path / "u.html").read_text(encoding="utf-8").count("W = mean of the experts&#x27; U_k") == 2
    # a model without mixtures is refused with a clear error
    full, _ = saved(tmp_path, ModelConfig(model="dcnv2", cross_layers=1, hidden=(4,)))
    assert main(["inspect", str(full), "--gates-data", "sample"]) == 2
    assert "--gates-data: mean gates apply to mixture models" in capsys.readouterr().err
    peer = TEST_FIXTURES / "peers" / "deepctr_dcn_matrix.pt"
    assert main(["inspect", str(peer), "--gates-data", "sample"]) == 2
    assert "needs a dcnviz model file" in capsys.readouterr().err


MODEL_CASES = [h for h in H.HOSTILE if h.kind == "model"]


def _cli(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, str]:
    code = main(argv)
    return code, capsys.readouterr().err


def test_cli_inspect_refuses_every_hostile_file_with_error_and_no_traceback(tmp_path, capsys, made) -> None:
    for h in MODEL_CASES:
        path = tmp_path / f"{h.name}.pt"
        path.write_bytes(made[h.name])
        code, err = _cli(capsys, ["inspect", str(path)])
        assert code == 2, (h.name, err[:500])
        assert err.startswith("error: ") and "Traceback" not in err, (h.name, err[:500])
        assert re.search(h.expect, err), (h.name, err[:500])
        assert len(err) < 4200 and "\x00" not in err and "\x1b" not in err, (h.name, len(err))


@pytest.mark.parametrize("kind", ["names", "feature_map", "schema"])
def test_cli_json_options_nested_or_with_huge_integers_give_an_error(tmp_path, capsys, made, kind: str) -> None:
    good = tmp_path / "good.safetensors"
    good.write_bytes(H.dcnviz_file())
    fuxictr = PEERS / "fuxictr_dcnv2.pt"
    table = tmp_path / "t.csv"
    table.write_text("label,a\n" + "".join(f"{i % 2},{i % 5}\n" for i in range(100)))
    for h in (h for h in H.HOSTILE if h.kind == kind):
        bad = tmp_path / f"{h.name}.json"
        bad.write_bytes(made[h.name])
        argv = {
            "names": ["inspect", str(good), "--names", str(bad)],
            "feature_map": ["inspect", str(fuxictr), "--feature-map", str(bad)],
            "schema": ["evaluate", str(good), "--data", "csv", "--data-dir", str(table), "--schema", str(bad)],
        }[kind]
        code, err = _cli(capsys, argv)
        last = err.strip().splitlines()[-1]
        assert code == 2 and last.startswith("error: ") and "Traceback" not in err, (h.name, err[:300])
        assert re.search(h.expect, err), (h.name, err[:300])


def test_inspect_warns_for_a_nan_layer_and_analyses_the_others(tmp_path, capsys) -> None:
    from dcnviz.checkpoint import save_model
    from dcnviz.model import DCNModel, ModelConfig
    from tests.helpers.app import tiny_spec

    model = DCNModel(tiny_spec(), ModelConfig(hidden=(4,)))
    with torch.no_grad():
        model.cross.layers[1].linear.weight[0, 0] = float("nan")  # type: ignore[union-attr,index]
    path = save_model(tmp_path / "nan.safetensors", model)
    assert main(["inspect", str(path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [layer["index"] for layer in out["layers"]] == [0]
    assert any("cross layer 1 is left out: layer 1 holds NaN or Inf" in w for w in out["warnings"])
    assert main(["inspect", str(path)]) == 0
    text = capsys.readouterr().out
    assert "warning: cross layer 1 is left out" in text and "layer 0 · full" in text
    # layer 1 fine, layer 0 left out: the report numbers the layer as the file does and says why one is missing
    with torch.no_grad():
        model.cross.layers[1].linear.weight[0, 0] = 0.0  # type: ignore[union-attr,index]
        model.cross.layers[0].linear.weight[0, 0] = float("nan")  # type: ignore[union-attr,index]
    save_model(path, model)
    assert main(["inspect", str(path), "--html", str(tmp_path / "nan.html")]) == 0
    capsys.readouterr()
    page = (tmp_path / "nan.html").read_text(encoding="utf-8")
    assert re.findall(r"<h2>Layer (\d+)", page) == ["1"] and "cross layer 0 is left out" in page
    with torch.no_grad():
        model.cross.layers[1].linear.weight[0, 0] = float("inf")  # type: ignore[union-attr,index]
    save_model(path, model)
    code, err = _cli(capsys, ["inspect", str(path)])
    assert code == 2 and err.startswith("error: every cross layer holds NaN or Inf")


def _undated(page: str) -> str:
    return re.sub(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC", "<date>", page)


def test_html_report_is_the_apps_report_of_this_analysis_and_stdout_keeps_the_json(tmp_path, capsys):
    from dcnviz.app.report import build_report_html
    from dcnviz.modelfile import open_model_file

    path, _ = saved(tmp_path, ModelConfig(hidden=(8,)))
    plain = inspect_json(capsys, str(path), "--tolerance", "0.5", "0.05")
    out = tmp_path / "reports" / "m.html"  # the folder is made
    assert main(["inspect", str(path), "--tolerance", "0.5", "0.05", "--json", "--html", str(out)]) == 0
    stdout, stderr = capsys.readouterr()
    assert json.loads(stdout.strip().splitlines()[-1]) == plain  # the JSON contract is untouched
    assert f"report: {out}" in stderr
    mf = open_model_file(path)
    want = build_report_html(mf, A.analyze(mf.weights, tolerances=[0.5, 0.05]), title="dcnviz report: m.safetensors")
    assert _undated(out.read_text(encoding="utf-8")) == _undated(want)
    assert "T = 0.5, 0.05" in want and "genres" in want
    assert [p.name for p in out.parent.iterdir()] == ["m.html"]  # no temporary file left beside it


def test_html_report_of_a_peer_file_and_a_clear_error_where_it_cannot_be_written(tmp_path, capsys):
    out = tmp_path / "deepctr.html"
    assert main(["inspect", str(PEERS / "deepctr_dcn_matrix.pt"), "--html", str(out)]) == 0
    page = out.read_text(encoding="utf-8")
    assert "DeepCTR" in page and "Numerical ranks" in page and "<script src=" not in page
    # feature names are the file's words: escaped in the tables and inside the figures' inline scripts
    names = tmp_path / "in" / "names.json"
    names.parent.mkdir()
    names.write_text(json.dumps(["</script><script>alert(1)</script>", "b<img src=x onerror=alert(2)>"]))
    assert main(["inspect", str(PEERS / "deepctr_dcn_matrix.pt"), "--names", str(names), "--html", str(out)]) == 0
    page = out.read_text(encoding="utf-8")
    assert "&lt;script&gt;alert(1)" in page and "<script>alert" not in page and "<img src=x" not in page
    taken = tmp_path / "a_folder"
    taken.mkdir()
    capsys.readouterr()
    assert main(["inspect", str(PEERS / "deepctr_dcn_matrix.pt"), "--html", str(taken)]) == 2
    err = capsys.readouterr().err
    assert "--html" in err and str(taken) in err
    for empty in ("", f"{tmp_path}/new/"):
        assert main(["inspect", str(PEERS / "deepctr_dcn_matrix.pt"), "--html", empty]) == 2
        assert "--html needs a file name" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_folder", "deepctr.html", "in"]  # nothing half-written
