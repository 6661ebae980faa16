"""Table 6 (§7.3) machinery: the paper's model settings, parameter and FLOP counts, a 1-epoch run."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from dcnviz.cli import main
from dcnviz.data import SAMPLE_DIR, DataOptions, load_splits
from dcnviz.errors import ConfigError
from dcnviz.paperlab.reference import PAPER_TABLE6, PAPER_TABLE6_CRITEO
from dcnviz.paperlab.table6 import (
    TABLE6_MODELS,
    Table6Config,
    criteo_model_configs,
    dense_flops,
    run_table6,
    table6_model_configs,
    table6_train_config,
)
from dcnviz.spec import FeatureSpec, Field
from dcnviz.train import build_model

needs_sample = pytest.mark.skipif(not (SAMPLE_DIR / "ratings.dat").is_file(), reason="sample_data/ not generated")
T6_KEYS = [
    "model",
    "logloss_mean",
    "logloss_std",
    "auc_mean",
    "auc_std",
    "params",
    "flops",
    "paper_logloss",
    "paper_auc",
]


def movielens_like_spec(e: int = 30) -> FeatureSpec:
    """Six categorical fields of width e, as the paper's MovieLens x0 (d = 6e)."""
    names = ("user_id", "movie_id", "gender", "age", "occupation", "zip")
    return FeatureSpec(
        fields=tuple(
            Field(name=n, kind="categorical", embedding_dim=e, vocab=tuple(str(i) for i in range(5))) for n in names
        )
    )


def test_settings_follow_the_movielens_column() -> None:
    cfgs = table6_model_configs()
    assert tuple(cfgs) == TABLE6_MODELS
    assert (cfgs["dcn"].model, cfgs["dcn"].cross_layers, cfgs["dcn"].hidden) == ("dcn", 4, (256, 256))
    assert (cfgs["dcnv2-stacked"].structure, cfgs["dcnv2-parallel"].structure) == ("stacked", "parallel")
    assert cfgs["dcnv2-parallel"].cross_layers == 2 and cfgs["dcnv2-parallel"].rank is None
    mix, cn = cfgs["dcn-mix"], cfgs["crossnet-mix"]
    assert (mix.cross_layers, mix.experts, mix.rank, mix.gate, mix.expert_activation) == (
        3,
        4,
        14,
        "constant",
        "hard_tanh",
    )
    assert (cn.cross_layers, cn.experts, cn.rank, cn.gate) == (4, 4, 11, "softmax")
    assert not cfgs["crossnet"].has_deep and cfgs["crossnet"].cross_kind == "full"
    assert not cn.has_deep and cn.cross_kind == "mixture"
    # the paper's MovieLens CrossNet (65K) is the full-rank one; the mixture has no MovieLens number
    assert PAPER_TABLE6["crossnet"].params == 65_000 and "crossnet-mix" not in PAPER_TABLE6
    assert PAPER_TABLE6["dcnv2-parallel"].logloss == 0.3170 and "dcnv2-stacked" not in PAPER_TABLE6
    assert all(not ref.setting for ref in PAPER_TABLE6.values())  # the MovieLens column prints no settings
    assert "hard_tanh" in PAPER_TABLE6_CRITEO["dcn-mix"].setting


def test_param_counts_by_hand() -> None:
    spec = movielens_like_spec()
    d, h = 180, 256
    cfgs = table6_model_configs()
    tower = d * h + h
    count = {n: build_model(spec, c, 0).dense_param_count() for n, c in cfgs.items()}
    assert count["dnn"] == tower + h + 1  # 46,593: the paper's "46K"
    assert count["dcnv2-parallel"] == 2 * (d * d + d) + tower + (d + h) + 1  # 111,933: the paper's "110K"
    assert count["dcnv2-stacked"] == 2 * (d * d + d) + tower + h + 1
    assert count["dcn"] == 4 * (2 * d) + tower + (h * h + h) + (d + h) + 1  # 114,005: "110K"
    assert count["crossnet"] == 2 * (d * d + d) + d + 1  # 65,341: exactly the paper's MovieLens "65K"
    r = 11
    assert count["crossnet-mix"] == 4 * (4 * 2 * d * r + d + 4 * d) + d + 1  # U, V per expert; b; softmax gates
    r = 14  # constant gate: no gate weights; hard_tanh experts: U g(C g(Vᵀx)), C is r×r (Eq. 4)
    assert count["dcn-mix"] == 3 * (4 * (2 * d * r + r * r) + d) + tower + (d + h) + 1  # 110,145: "110K"
    for name, ref in PAPER_TABLE6.items():  # every MovieLens row within rounding of the paper's count
        assert abs(count[name] - ref.params) <= 0.05 * ref.params + 500, name


def test_criteo_best_settings_reproduce_the_criteo_counts() -> None:
    """Table 6's "Best Setting" column is Criteo's: at d = 1027 with r = 258 per layer the counts come out."""
    fields = tuple(
        Field(name=f"C{i}", kind="categorical", embedding_dim=39, vocab=("a", "b")) for i in range(26)
    ) + tuple(Field(name=f"I{i}", kind="dense", embedding_dim=1) for i in range(13))
    spec = FeatureSpec(fields=fields)
    assert spec.d == 1027
    for name, config in criteo_model_configs().items():
        model = build_model(spec, config, 0)
        ref = PAPER_TABLE6_CRITEO[name]
        assert abs(model.dense_param_count() / ref.params - 1) < 0.02, name  # 3.49M/3.5M, 2.42M/2.4M, 2.12M/2.1M
        assert abs(dense_flops(model) / ref.flops - 1) < 0.02, name


@pytest.mark.parametrize("name", ["dnn", "dcnv2-parallel", "dcnv2-stacked", "crossnet"])
def test_flops_are_matmuls_plus_elementwise(name: str) -> None:
    """dense_flops = the matrix products PyTorch's FLOP counter sees + our elementwise count, by hand."""
    spec = movielens_like_spec(4)
    d, h = 24, 16
    model = build_model(spec, table6_model_configs((h,))[name], 0)
    cat = torch.zeros(1, 6, dtype=torch.long)
    with FlopCounterMode(display=False) as fc:
        model(cat, torch.zeros(1, 0))
    cross = len(model.cross_layers()) * 3 * d  # per layer: + b, x0 ⊙, + x_l
    tower = 2 * h if model.deep is not None else 0  # + bias, ReLU
    assert dense_flops(model) == fc.get_total_flops() + cross + tower + 1  # + logit bias
    # "for most models, the FLOPS is roughly 2x of the #params" (§7.3)
    assert 1.9 < dense_flops(model) / model.dense_param_count() < 2.1


def test_mixture_flops_cover_the_counters_matmuls() -> None:
    spec = movielens_like_spec(4)
    for name in ("dcn-mix", "crossnet-mix", "dcn"):
        model = build_model(spec, table6_model_configs((16,))[name], 0)
        with FlopCounterMode(display=False) as fc:
            model(torch.zeros(1, 6, dtype=torch.long), torch.zeros(1, 0))
        assert fc.get_total_flops() < dense_flops(model) < 1.2 * fc.get_total_flops() + 2000


@needs_sample
def test_one_epoch_on_the_sample() -> None:
    splits = load_splits(DataOptions(source="sample", embedding_dim=4))
    train = dataclasses.replace(table6_train_config(), epochs=1, batch_size=1024, lr=0.01, device="cpu")
    config = Table6Config(models=("dnn", "dcnv2-parallel"), hidden=(16,), seeds=(0, 1), train=train)
    seen = []
    rows = run_table6(splits, config, callback=seen.append)
    assert [r.model for r in rows] == ["dnn", "dcnv2-parallel"]
    for r in rows:
        j = r.to_json()
        assert list(j)[: len(T6_KEYS)] == T6_KEYS
        assert 0.5 < r.auc_mean <= 1.0 and 0 < r.logloss_mean < 1.0
        assert len(r.runs) == 2 and r.logloss_std >= 0
        assert r.flops > r.params
    assert rows[1].paper_logloss == 0.3170 and rows[1].paper_auc == 0.8950
    assert seen and seen[-1].fits_total == 4


@needs_sample
def test_stop_keeps_finished_models() -> None:
    splits = load_splits(DataOptions(source="sample", embedding_dim=4))
    train = dataclasses.replace(table6_train_config(), epochs=1, batch_size=2048, device="cpu")
    calls = {"n": 0}

    def stop() -> bool:
        calls["n"] += 1
        return calls["n"] > 40

    config = Table6Config(models=("dnn", "crossnet", "dcn"), hidden=(8,), seeds=(0,), train=train)
    rows = run_table6(splits, config, should_stop=stop)
    assert len(rows) < 3


@needs_sample
def test_cli_table6_json_contract(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["paper", "table6", "--data", "sample", "--runs", "1", "--epochs", "1", "--embedding-dim", "4"]
    argv += ["--hidden", "16", "--batch-size", "2048", "--lr", "0.01", "--device", "cpu", "--quiet", "--json"]
    assert main([*argv, "--models", "dnn", "crossnet", "crossnet-mix"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [r["model"] for r in out["rows"]] == ["dnn", "crossnet", "crossnet-mix"]
    for r in out["rows"]:
        assert list(r)[: len(T6_KEYS)] == T6_KEYS
    assert out["rows"][1]["paper_logloss"] == 0.3185  # the paper's MovieLens CrossNet is the full-rank one
    assert out["rows"][2]["paper_logloss"] is None and out["rows"][2]["paper_auc"] is None
    assert out["config"]["hidden"] == [16]
    assert out["config"]["d"] == 24 and out["config"]["data"]["source"] == "sample"
    train = out["config"]["train"]  # the paper recipe with the three overrides; L2 and EMA stay off
    assert (train["lr"], train["batch_size"], train["epochs"]) == (0.01, 2048, 1)
    assert (train["l2"], train["l2_embedding"], train["ema_decay"], train["clip_norm"]) == (0.0, 0.0, None, 10.0)


def test_recipes() -> None:
    from dcnviz.commands import paper as paper_cmd
    from dcnviz.paperlab.table6 import TABLE6_RECIPES
    from dcnviz.train import TrainConfig

    assert paper_cmd.TABLE6_RECIPES == TABLE6_RECIPES
    paper = table6_train_config()
    assert (paper.lr, paper.batch_size, paper.epochs, paper.patience) == (1e-3, 128, 10, 2)
    # the paper recipe has no L2 and no EMA, whatever TrainConfig's defaults (the shipped recipe) are
    assert (paper.l2, paper.l2_embedding, paper.ema_decay, paper.lr_decay) == (0.0, 0.0, None, 1.0)
    assert table6_train_config("dcnviz") == TrainConfig()
    with pytest.raises(ConfigError, match="recipe must be one of"):
        table6_train_config("fast")


def test_cli_table6_recipe_dcnviz(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["paper", "table6", "--data", "sample", "--runs", "1", "--epochs", "1", "--embedding-dim", "4"]
    argv += ["--hidden", "16", "--device", "cpu", "--quiet", "--json", "--models", "dnn", "--recipe", "dcnviz"]
    assert main(argv) == 0
    train = json.loads(capsys.readouterr().out)["config"]["train"]
    assert (train["lr"], train["batch_size"], train["epochs"]) == (5e-3, 512, 1)
    assert (train["l2_embedding"], train["l2_embedding_rows"], train["ema_decay"]) == (4e-4, 58_284, 0.999)
