"""Issue 12: cross importance measured on data (ablation, contribution) and the rank-truncation curve.

* Known answers on hand-built models whose x0 is two dense values: zeroing a block changes the logit by
  what can be computed by hand; a rank-1 W's rank curve is flat.
* The batched ablation equals one whole forward pass per zeroed block (``naive_ablation``) for every
  layer kind and structure; the rank curve equals models rebuilt with each W truncated by NumPy's SVD.
* Ground truth: on the bundled sample, the planted crosses (movie_id × gender, movie_id × age) are the
  top two pairs of the first layer by Δ(i, j) + Δ(j, i), above the control occupation × movie_id, for a
  model trained here and for the shipped ``models/dcnv2_sample.safetensors``; the curve's last point is
  the baseline exactly and ``evaluate`` on the same split gives the same AUC.
* The CLI's JSON contract and its errors (peer files, ``dnn`` models, bad options).
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from dcnviz import analysis as A
from dcnviz.checkpoint import load_model, save_model
from dcnviz.cli import main
from dcnviz.data import DataOptions, load_splits
from dcnviz.encoded import Encoded
from dcnviz.errors import ConfigError
from dcnviz.explain import Explainer, _AblatedCross, default_ranks, explain, naive_ablation, resolve_ranks
from dcnviz.model import DCNModel, ModelConfig
from dcnviz.spec import FeatureSpec, Field
from dcnviz.train import TrainConfig, build_model, evaluate, fit

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "models" / "dcnv2_sample.safetensors"
TRUTH = ROOT / "sample_data" / "ground_truth.json"
PEERS = ROOT / "tests" / "fixtures" / "peers"


# ------------------------------------------------------------------------------------------ helpers


def dense_model(config: ModelConfig, widths: tuple[int, ...] = (1, 1)) -> DCNModel:
    """A model whose x0 is the dense inputs themselves (one width-1 block per dense field)."""
    assert all(w == 1 for w in widths)
    spec = FeatureSpec(tuple(Field(name=n, kind="dense", embedding_dim=1) for n in "ab"[: len(widths)]))
    return DCNModel(spec, config).eval()


def tiny_spec() -> FeatureSpec:
    def cat(name: str, n: int, dim: int) -> Field:
        return Field(name=name, kind="categorical", embedding_dim=dim, vocab=tuple(str(i) for i in range(n)))

    return FeatureSpec((cat("u", 20, 4), cat("m", 30, 3), cat("g", 2, 2), cat("o", 9, 3)))  # unequal widths


def random_rows(spec: FeatureSpec, n: int, seed: int = 0) -> Encoded:
    g = torch.Generator().manual_seed(seed)
    cat = torch.stack([torch.randint(0, f.vocab_size, (n,), generator=g) for f in spec.fields], dim=1)
    return Encoded(cat=cat, dense=torch.zeros(n, 0), y=(torch.rand(n, generator=g) < 0.4).float())


def tiny(config: ModelConfig, seed: int = 0) -> DCNModel:
    torch.manual_seed(seed)
    m = DCNModel(tiny_spec(), config).eval()
    with torch.no_grad():  # stronger crosses than at init, so every Δ is well above rounding
        for p in m.cross.parameters():  # type: ignore[union-attr]
            p.mul_(2.0)
    return m


def pair_order(le, names) -> list[frozenset[str]]:
    t = A.effect_table(le.ablation, le.block_norms, names)  # pairs by Δ(i, j) + Δ(j, i), off-diagonal
    return [frozenset((a, b)) for a, b in zip(t.feature_i, t.feature_j, strict=True)]


@pytest.fixture(scope="module")
def truth() -> dict:
    return json.loads(TRUTH.read_text(encoding="utf-8"))


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread: these small products gain nothing from two and lose a lot when the cores are busy."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ------------------------------------------------------------------------------------------ known answers


def test_zeroing_a_block_changes_the_logit_by_the_hand_computed_amount():
    # x0 = [p, q]; one full-rank layer x1 = x0 ⊙ (W x0 + b) + x0; logit = u x1_a + v x1_b + c (no deep tower).
    m = dense_model(ModelConfig(model="crossnet", cross_layers=1))
    W = torch.tensor([[0.7, 0.5], [-1.2, 0.3]])
    u, v = 1.5, -0.8
    with torch.no_grad():
        m.cross.layers[0].linear.weight.copy_(W)  # type: ignore[union-attr,index]
        m.cross.layers[0].linear.bias.copy_(torch.tensor([0.1, -0.2]))  # type: ignore[union-attr,index]
        m.logit.weight.copy_(torch.tensor([[u, v]]))
        m.logit.bias.fill_(0.05)
    p, q = 2.0, 3.0
    rows = Encoded(
        cat=torch.zeros(3, 0, dtype=torch.long), dense=torch.tensor([[p, q]] * 3), y=torch.tensor([1.0, 0, 1])
    )
    ex = Explainer(m, rows)
    row = ex.row_effect(0)
    # Zeroing W_ab takes p·W_ab·q out of slot a, which the logit reads with weight u; and so on.
    hand = np.array([[-u * p * 0.7 * p, -u * p * 0.5 * q], [-v * q * -1.2 * p, -v * q * 0.3 * q]])
    np.testing.assert_allclose(row.ablation[0], hand, rtol=1e-6)
    x1 = np.array([p, q]) * (W.double().numpy() @ [p, q] + [0.1, -0.2]) + [p, q]
    z = u * x1[0] + v * x1[1] + 0.05
    assert row.logit == pytest.approx(z, rel=1e-6) and row.score == pytest.approx(1 / (1 + math.exp(-z)), rel=1e-6)
    # Δ log loss over the three rows (labels 1, 0, 1), from the same Δ logit: softplus(−s·z) with s = ±1.
    s = np.array([1.0, -1.0, 1.0])
    loss = lambda zz: np.mean(np.log1p(np.exp(-s * zz)))  # noqa: E731
    effect = ex.layer_effect(0)
    want = np.array([[loss(z + hand[i, j]) - loss(z) for j in range(2)] for i in range(2)])
    np.testing.assert_allclose(effect.ablation, want, rtol=1e-5, atol=1e-9)
    # The contribution of block (i, j) is |x0_i W_ij x0_j| here (every row is the same).
    np.testing.assert_allclose(
        effect.contribution, np.abs([[p * 0.7 * p, p * 0.5 * q], [q * -1.2 * p, q * 0.3 * q]]), rtol=1e-6
    )
    np.testing.assert_allclose(effect.block_norms, np.abs(W.numpy()), rtol=1e-6)


def test_a_rank_one_w_has_a_flat_rank_curve():
    torch.manual_seed(0)
    m = tiny(ModelConfig(model="dcnv2", cross_layers=2, hidden=(8,)))
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for layer in m.cross_layers():
            d = layer.d
            layer.linear.weight.copy_(torch.outer(torch.randn(d, generator=g), torch.randn(d, generator=g)))
    ex = Explainer(m, random_rows(m.spec, 400))
    curve = ex.rank_curve()
    assert [p.rank for p in curve] == default_ranks(m.d) == [1, 2, 4, 8, m.d]
    for p in curve:
        assert p.auc == pytest.approx(ex.baseline["auc"], abs=1e-9)
        assert p.logloss == pytest.approx(ex.baseline["logloss"], rel=1e-6)
    assert (curve[-1].auc, curve[-1].logloss) == (ex.baseline["auc"], ex.baseline["logloss"])  # untouched: exact


def test_ranks_and_layers_are_checked():
    assert resolve_ranks([8, 3, 3], 12) == [3, 8, 12] and resolve_ranks(None, 45)[-2:] == [32, 45]
    for bad in ([0], [13], [2.5]):
        with pytest.raises(ConfigError, match=r"ranks must be integers in \[1, 12\]"):
            resolve_ranks(bad, 12)  # type: ignore[arg-type]
    m = tiny(ModelConfig(model="dcnv2", cross_layers=2, hidden=(8,)))
    ex = Explainer(m, random_rows(m.spec, 50))
    with pytest.raises(ConfigError, match=r"layer indices must be in \[0, 2\)"):
        ex.explain(layers=[2])
    with pytest.raises(ConfigError, match=r"row must be an index within the val split, in \[0, 50\)"):
        ex.row_effect(50)
    dnn = DCNModel(tiny_spec(), ModelConfig(model="dnn", hidden=(8,)))
    with pytest.raises(ConfigError, match="no cross layers"):
        Explainer(dnn, random_rows(dnn.spec, 10))


def test_progress_is_reported_in_order_and_results_are_memoised():
    m = tiny(ModelConfig(model="dcnv2", cross_layers=2, hidden=(8,)))
    ex = Explainer(m, random_rows(m.spec, 60))
    seen: list[tuple[float, str]] = []
    first = ex.explain(progress=lambda f, what: seen.append((f, what)))
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and len(seen) > 2 * 4 + 5
    assert any("rank 8" in w for _, w in seen) and any("layer 1" in w for _, w in seen)
    seen.clear()
    again = ex.explain(progress=lambda f, what: seen.append((f, what)))
    assert [f for f, _ in seen] == [1.0]  # nothing recomputed
    assert again.layers[0].ablation is first.layers[0].ablation and ex.has_effect(1) and ex.has_curve()


def test_the_suggested_rank_is_one_number_from_data_or_the_picked_tolerance():
    s = np.array([10.0, 6.0, 3.0, 0.8, 0.3, 0.05])
    # read off the weights: R_T at the picked tolerance closest to 0.1 (log scale)
    for tols, t, r in (((0.5, 0.1, 0.01), 0.1, 3), ((0.5, 0.05), 0.05, 4), ((0.5,), 0.5, 2), ((0.2, 0.02), 0.2, 3)):
        sp = A.spectrum(
            A.LayerMatrix(layer=0, expert=None, kind="full", label="x", d=6, dense=np.diag(s)), tolerances=tols
        )
        assert (sp.suggested.tolerance, sp.suggested.rank, sp.suggested.basis) == (t, r, "tolerance")
        assert f"≥ {t:g}·σ₁" in sp.suggested.text and "(§8)" in sp.suggested.text and "§7.5" not in sp.suggested.text
    # measured: the smallest rank within 0.001 AUC of full rank; one rank number in the sentence
    sug = A.suggest_rank(d=180, curve=[(1, 0.80), (2, 0.8985), (4, 0.8991), (8, 0.9003), (180, 0.9000)], rows=5002)
    assert (sug.rank, sug.basis, sug.tolerance) == (4, "data", None)
    assert "without retraining" in sug.text and "5,002 validation rows" in sug.text and "(§8)" in sug.text
    import re

    assert re.findall(r"\br = (\d+)", sug.text) == ["4"] and "d/4" in sug.text and "= 45" not in sug.text
    full = A.suggest_rank(d=10, rank_bound=4, curve=[(1, 0.7), (2, 0.75), (4, 0.8)])
    assert full.rank == 4 and "of its bound 4, d = 10" in full.text
    undefined = A.suggest_rank(d=10, curve=[(1, float("nan")), (10, float("nan"))])
    assert undefined.rank == 10 and "undefined" in undefined.text


# ------------------------------------------------------------------------------------------ batched = naive


CONFIGS = {
    "full parallel (adjoint)": ModelConfig(model="dcnv2", cross_layers=2, hidden=(8,)),
    "full 3 layers": ModelConfig(model="dcnv2", cross_layers=3, hidden=(8,)),
    "full stacked (rerun)": ModelConfig(model="dcnv2", structure="stacked", cross_layers=2, hidden=(8,)),
    "crossnet": ModelConfig(model="crossnet", cross_layers=2),
    "low rank": ModelConfig(model="dcnv2", cross_layers=2, rank=3, hidden=(8,)),
    "mixture (next layer through its factors)": ModelConfig(model="dcn-mix", cross_layers=2, rank=2, experts=3),
    "mixture 3 layers sigmoid (rerun)": ModelConfig(
        model="dcn-mix", cross_layers=3, rank=2, experts=2, gate="sigmoid", hidden=(8,)
    ),
    "mixture constant gates": ModelConfig(
        model="dcn-mix", cross_layers=2, rank=2, experts=2, gate="constant", hidden=(8,)
    ),
    "mixture stacked constant gates": ModelConfig(
        model="dcn-mix", structure="stacked", cross_layers=2, rank=2, experts=2, gate="constant", hidden=(8,)
    ),
    "DCN-V1": ModelConfig(model="dcn", cross_layers=2, hidden=(8,)),
    "DCN-V1 stacked": ModelConfig(model="dcn", structure="stacked", cross_layers=2, hidden=(8,)),
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_batched_ablation_equals_one_forward_pass_per_block(name):
    m = tiny(CONFIGS[name])
    rows = random_rows(m.spec, 200)
    ex = Explainer(m, rows)
    for layer in range(len(m.cross_layers())):
        got = ex.layer_effect(layer).ablation
        want = naive_ablation(m, rows, layer)
        assert np.abs(want).max() > 1e-3, "the test model's crosses are too weak to test anything"
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6 * np.abs(want).max())
        # one row: the batched Δ logit equals the difference of two whole forward passes
        row = ex.row_effect(7, layers=[layer]).ablation[layer]
        one = rows.index(slice(7, 8))
        W = _dense(m.cross_layers()[layer])
        b = m.spec.blocks()
        i, j = 1, 3
        W[:, b[i].start : b[i].stop, b[j].start : b[j].stop] = 0.0
        base = copy.deepcopy(m).double()  # the reference in float64: its difference of two logits is exact enough
        ablated = copy.deepcopy(base)
        ablated.cross.layers[layer] = _AblatedCross(ablated.cross.layers[layer], W.double())  # type: ignore[union-attr,index]
        with torch.no_grad():
            z = float(base(one.cat, one.dense.double()))
            delta = float(ablated(one.cat, one.dense.double())) - z
        assert row[i, j] == pytest.approx(delta, rel=1e-4, abs=1e-6 * (1 + abs(z)))


@pytest.mark.parametrize(
    "name", ["full parallel (adjoint)", "full stacked (rerun)", "mixture (next layer through its factors)"]
)
def test_row_chunks_give_the_same_results(name, monkeypatch):
    m = tiny(CONFIGS[name])
    rows = random_rows(m.spec, 230)
    whole = explain(m, rows, row=5)
    monkeypatch.setattr("dcnviz.explain.EVAL_BATCH", 64)  # 4 forward chunks
    monkeypatch.setattr("dcnviz.explain._WORK_FLOATS", 16 * 20 * 5)  # the rerun path in slices of 20 rows
    chunked = explain(m, rows, row=5)
    assert chunked.baseline == pytest.approx(whole.baseline, rel=1e-6)
    for a, b in zip(chunked.layers, whole.layers, strict=True):
        np.testing.assert_allclose(a.ablation, b.ablation, rtol=1e-4, atol=1e-8)
        np.testing.assert_allclose(a.contribution, b.contribution, rtol=1e-5)
    for a, b in zip(chunked.rank_curve, whole.rank_curve, strict=True):
        assert (a.rank, a.auc) == (b.rank, pytest.approx(b.auc, abs=1e-9))
    np.testing.assert_allclose(chunked.row.ablation[1], whole.row.ablation[1], rtol=1e-5, atol=1e-8)


def _dense(layer) -> torch.Tensor:
    from dcnviz.explain import _dense_weights

    with torch.no_grad():
        return _dense_weights(layer).clone()


@pytest.mark.parametrize(
    "name", ["full parallel (adjoint)", "low rank", "full stacked (rerun)", "mixture 3 layers sigmoid (rerun)"]
)
def test_rank_curve_equals_models_rebuilt_with_numpy_truncated_w(name):
    m = tiny(CONFIGS[name])
    rows = random_rows(m.spec, 300)
    ex = Explainer(m, rows)
    curve = {p.rank: p for p in ex.rank_curve()}
    for r in (1, 2):
        ref = copy.deepcopy(m)
        for k, layer in enumerate(ref.cross_layers()):
            W = _dense(layer).double().numpy()  # (K, d, d)
            P, s, Qt = np.linalg.svd(W)
            Wr = (P[..., :r] * s[..., None, :r]) @ Qt[..., :r, :]
            ref.cross.layers[k] = _AblatedCross(layer, torch.from_numpy(Wr).float())  # type: ignore[union-attr,index]
        res = evaluate(ref, rows)
        assert curve[r].auc == pytest.approx(res["auc"], abs=1e-6)
        assert curve[r].logloss == pytest.approx(res["logloss"], rel=1e-5)
    full = max(curve)
    assert (curve[full].auc, curve[full].logloss) == (ex.baseline["auc"], ex.baseline["logloss"])


def test_nonlinear_experts_give_null_with_notes():
    m = tiny(ModelConfig(model="dcn-mix", cross_layers=2, rank=2, experts=2, expert_activation="relu", hidden=(8,)))
    out = explain(m, random_rows(m.spec, 40), row=3).to_json()
    assert out["rank_curve"] is None and "nonlinear experts (Eq. 4)" in out["note"]
    for layer in out["layers"]:
        assert layer["ablation"] is None and layer["contribution"] is None and "Eq. 4" in layer["note"]
        assert np.shape(layer["block_norms"]) == (4, 4)
    assert out["row"]["ablation"] == [None, None]


def test_figures_label_what_they_show():
    from dcnviz.figures_explain import fig_effect, fig_rank_curve

    V = np.array([[0.0, 0.02], [-0.01, 0.005]])
    fig = fig_effect(V, ["a", "b"], what="ablation")
    heat = fig.data[0]
    assert heat.colorbar.title.text == "Δ log loss" and heat.zmid == 0 and (heat.zmin, heat.zmax) == (-0.02, 0.02)
    np.testing.assert_allclose(np.asarray(heat.z, dtype=float), V)
    assert "Δ log loss" in heat.hovertemplate and fig.layout.yaxis.title.text.startswith("output feature i")
    assert fig_effect(np.abs(V), ["a", "b"], what="contribution").data[0].zmid is None
    frame = A.rank_curve_frame([1, 2, 4, 8], [0.7, 0.79, 0.7995, 0.8], [0.6, 0.5, 0.45, 0.44])
    curve = fig_rank_curve(frame)
    stars = [t for t in curve.data if t.marker.symbol == "star"]
    assert [int(t.x[0]) for t in stars] == [4, 4] and curve.layout.xaxis2.type == "log"
    assert list(curve.layout.xaxis2.tickvals) == [1, 2, 4, 8] and "without retraining" in curve.layout.xaxis2.title.text
    with pytest.raises(ConfigError, match="what must be one of"):
        fig_effect(V, ["a", "b"], what="norms")


# ------------------------------------------------------------------------------------------ ground truth


@pytest.fixture(scope="module")
def shipped():
    loaded = load_model(SHIPPED)
    splits = load_splits(DataOptions(source="sample"), spec=loaded.spec)
    return loaded.model, splits


def test_shipped_sample_model_ranks_the_planted_pairs_first_and_matches_evaluate(shipped, truth):
    model, splits = shipped
    planted = [frozenset(p["pair"]) for p in truth["planted"]]
    control = frozenset(truth["control"]["pair"])
    ex = Explainer(model, splits.val, max_rows=len(splits.val))
    order = pair_order(ex.layer_effect(0), splits.spec.names)
    assert set(order[:2]) == set(planted), order[:3]
    assert order.index(control) >= 2
    # the rank curve's last point is the baseline exactly, and evaluate on the whole split agrees
    curve = ex.rank_curve()
    assert curve[-1].rank == 180 and (curve[-1].auc, curve[-1].logloss) == (ex.baseline["auc"], ex.baseline["logloss"])
    ev = evaluate(model, splits.val)
    assert ex.baseline["auc"] == ev["auc"] and ex.baseline["logloss"] == pytest.approx(ev["logloss"], rel=1e-12)
    assert ex.rows == len(splits.val)


def test_a_model_trained_here_ranks_the_planted_pairs_first(truth):
    # The cheapest recipe found to hold for seeds 0–9 (weaker planted pair 1.6–7× the strongest other pair;
    # see docs/analysis.md): ~2 s of training on one thread.
    splits = load_splits(DataOptions(source="sample", embedding_dim=8))
    model = build_model(splits.spec, ModelConfig(model="dcnv2", cross_layers=2, hidden=(16,)), 0)
    fit(model, splits, TrainConfig(epochs=2, batch_size=1024, lr=1e-2, seeds=(0,), device="cpu"))
    planted = [frozenset(p["pair"]) for p in truth["planted"]]
    control = frozenset(truth["control"]["pair"])
    effect = Explainer(model.cpu(), splits.val).layer_effect(0)
    order = pair_order(effect, splits.spec.names)
    assert set(order[:2]) == set(planted), order[:3]
    assert order.index(control) >= 2
    table = A.effect_table(effect.ablation, effect.block_norms, splits.spec.names)
    assert table.effect.iloc[1] > 0  # both planted crosses help the predictions


def test_the_python_example_in_docs_runs_as_written(capsys, monkeypatch):
    text = (ROOT / "docs" / "analysis.md").read_text(encoding="utf-8")
    start = text.index("<!-- explain-example -->")
    code = text[text.index("```python\n", start) + len("```python\n") : text.index("```\n", start + 30)]
    monkeypatch.chdir(ROOT)
    exec(compile(code, "docs/analysis.md", "exec"), {})
    out = capsys.readouterr().out
    assert "Spearman ρ" in out and "without retraining" in out


# ------------------------------------------------------------------------------------------ the CLI


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["explain", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_json_contract(capsys, truth):
    code, out, _ = run_cli(
        capsys, str(SHIPPED), "--json", "--max-rows", "3000", "--layers", "0", "--ranks", "50", "3", "--row", "4321"
    )
    assert code == 0
    obj = json.loads(out.strip().splitlines()[-1])
    assert {"split", "rows", "baseline", "features", "layers", "rank_curve", "row"} <= set(obj)
    assert obj["split"] == "val" and obj["rows"] == 3000
    names = [f["name"] for f in obj["features"]]
    assert names == ["user_id", "movie_id", "gender", "age", "occupation", "zip"]
    assert [(f["start"], f["stop"]) for f in obj["features"]][:2] == [(0, 30), (30, 60)]
    l0, l1 = obj["layers"]
    assert l0["index"] == 0 and np.shape(l0["ablation"]) == (6, 6) and np.shape(l0["contribution"]) == (6, 6)
    assert l1["ablation"] is None and l1["contribution"] is None and "not computed" in l1["note"]
    inspect_code = main(["inspect", str(SHIPPED), "--json"])
    norms = json.loads(capsys.readouterr()[0].strip().splitlines()[-1])["layers"]
    assert inspect_code == 0
    np.testing.assert_allclose(l0["block_norms"], norms[0]["block_norms"], rtol=1e-9)
    np.testing.assert_allclose(l1["block_norms"], norms[1]["block_norms"], rtol=1e-9)
    assert [p["rank"] for p in obj["rank_curve"]] == [3, 50, 180]
    last = obj["rank_curve"][-1]
    assert (last["auc"], last["logloss"]) == (obj["baseline"]["auc"], obj["baseline"]["logloss"])
    row = obj["row"]
    assert row["index"] == 4321 and row["label"] in (0.0, 1.0) and 0 < row["score"] < 1
    assert np.shape(row["ablation"][0]) == (6, 6) and row["ablation"][1] is None
    assert obj["suggested_rank"]["basis"] == "data" and "without retraining" in obj["suggested_rank"]["text"]


def test_cli_summary_names_the_crosses_and_says_without_retraining(capsys):
    code, out, _ = run_cli(capsys, str(SHIPPED), "--max-rows", "1000", "--layers", "1", "--ranks", "8")
    assert code == 0
    assert "1,000 validation rows" in out and "without retraining" in out
    assert "layer 1 · full" in out and "movie_id × " in out and "Spearman ρ" in out


def test_cli_refuses_peer_files_dnn_models_and_bad_options(tmp_path, capsys):
    code, _, err = run_cli(capsys, str(PEERS / "deepctr_dcn_matrix.pt"))
    assert code == 2 and err.startswith("error: ") and "not a dcnviz model file" in err and "peer" in err
    dnn = DCNModel(tiny_spec(), ModelConfig(model="dnn", hidden=(4,)))
    save_model(tmp_path / "dnn.safetensors", dnn)
    code, _, err = run_cli(capsys, str(tmp_path / "dnn.safetensors"), "--data", "sample")
    assert code == 2 and "no cross layers" in err
    norec = tiny(ModelConfig(model="dcnv2", cross_layers=1, hidden=(4,)))
    save_model(tmp_path / "norec.safetensors", norec)
    code, _, err = run_cli(capsys, str(tmp_path / "norec.safetensors"))
    assert code == 2 and "records no training data; give --data" in err
    code, _, err = run_cli(capsys, str(SHIPPED), "--ranks", "0")
    assert code == 2 and "ranks must be integers in [1, 180]" in err
    code, _, err = run_cli(capsys, str(SHIPPED), "--max-rows", "0")
    assert code == 2 and "--max-rows must be >= 1" in err
    code, _, err = run_cli(capsys, str(SHIPPED), "--row", "999999", "--max-rows", "10", "--ranks", "1")
    assert code == 2 and "row must be an index within the val split" in err


def test_inspect_json_suggests_one_rank_at_the_picked_tolerance(capsys):
    assert main(["inspect", str(SHIPPED), "--json", "--tolerance", "0.5", "0.05"]) == 0
    layers = json.loads(capsys.readouterr()[0].strip().splitlines()[-1])["layers"]
    for la in layers:  # no data is run by inspect: read off the weights at the picked T closest to 0.1
        sug = la["suggested_rank"]
        assert (sug["tolerance"], sug["basis"]) == (0.05, "tolerance")
        assert sug["rank"] == la["numerical_rank"]["0.05"] and sug["text"].count("r = ") == 1
    assert main(["inspect", str(SHIPPED), "--json", "--tolerance", "0.5", "0.05", "--suggest-tolerance", "0.5"]) == 0
    layers = json.loads(capsys.readouterr()[0].strip().splitlines()[-1])["layers"]
    assert [la["suggested_rank"]["rank"] for la in layers] == [la["numerical_rank"]["0.5"] for la in layers]


def test_cli_html_report_holds_the_measurements(tmp_path, capsys):
    out = tmp_path / "explained.html"
    code, text, err = run_cli(capsys, str(SHIPPED), "--max-rows", "1000", "--ranks", "8", "--html", str(out))
    assert code == 0 and "suggested rank: r = " in text and f"report: {out}" in err
    page = out.read_text(encoding="utf-8")
    assert "Effect on predictions and rank truncation (measured on data)" in page and "1,000" in page
    ranks = page[page.index("<h2>Numerical ranks</h2>") :]
    assert "suggested r" not in ranks[ranks.index("<thead>") : ranks.index("</thead>")]  # the measured one only
    code, _, err = run_cli(capsys, str(SHIPPED), "--html", "")  # refused before the model is run
    assert code == 2 and "--html needs a file name" in err
