"""Table 6 of the paper (§7.3) on MovieLens: DNN, DCN, DCN-V2 (stacked, parallel), DCN-Mix, CrossNet.

Every model is trained by :func:`dcnviz.train.fit` on the same :class:`~dcnviz.encoded.DatasetSplits`
(:func:`dcnviz.data.load_splits`: the paper's protocol, one random 80/10/10 split, six categorical
features embedded with 30 dimensions each, so x0 has d = 180) with the same recipe; run r uses seed
``seeds[r]`` for the initialisation and the batch order. Logloss and AUC are on the test split, from
the weights of the best validation epoch.

The models. Table 6's "Best Setting" column (DNN tower, then l, K, r) belongs to its **Criteo** group:
its towers — (3, 1024), (2, 768), (2, 512) — only fit Criteo's d = 1027, and with r read as the total
rank *per layer* (K experts sharing it) its parameter counts come out right
(:func:`criteo_model_configs`, tests/paperlab/test_table6.py). For MovieLens-1M the paper prints only
parameters and FLOPs: DNN 46K, DCN 110K, DCN-V2 110K, DCN-Mix 110K, CrossNet 65K. Our MovieLens
settings follow those counts at d = 180; where the counts cannot decide, we borrow the shape of the
Criteo setting and say so:

================  ==========================================================================================
``dnn``           DNN [256] (46,593: the paper's 46K)
``dcn``           DCN-V1, l = 4 (Criteo's; 360 parameters a layer, the count cannot tell), parallel with
                  DNN [256, 256] (114,005: the paper's 110K needs a ≈108K tower)
``dcnv2-stacked`` DCN-V2, l = 2 full-rank layers, then DNN [256] (111,753)
``dcnv2-parallel`` the same beside the tower (111,933: 110K = CrossNet's 65K + DNN's 46K; parallel was
                  best on MovieLens, §7.3)
``dcn-mix``       l = 3, K = 4 (Criteo's shape), constant gate, hard_tanh experts (Criteo's, §7.3),
                  r = 14 per expert fitted to 110K, parallel with DNN [256] (110,145)
``crossnet``      the cross network alone, l = 2 full-rank layers (65,341: exactly the paper's 65K)
``crossnet-mix``  ours, no MovieLens counterpart: Criteo's CrossNet shape (l = 4, K = 4, softmax gate,
                  identity experts) with r = 11 per expert (44 a layer ≈ d/4, as Criteo's 258 ≈ 1027/4)
================  ==========================================================================================

``hidden`` (CLI ``--hidden``) replaces every model's tower by one shared tower.

FLOPs per example (:func:`dense_flops`) count 2 per multiply-add of every matrix product plus 1 per
elementwise operation (bias add, Hadamard product, residual add, ReLU, gate softmax and weighting) of
the dense part; embedding look-ups are not counted, as parameters of the embedding tables are not.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from torch import nn

from dcnviz.encoded import DatasetSplits
from dcnviz.errors import ConfigError
from dcnviz.layers import FullRankCross, LowRankCross, MixtureCross, VectorCross
from dcnviz.model import DCNModel, ModelConfig
from dcnviz.options import TABLE6_MODELS, TABLE6_RECIPES
from dcnviz.paperlab.reference import PAPER_TABLE6

# The deep towers of the MovieLens rows, fitted to the paper's MovieLens parameter counts (see above).
TABLE6_TOWERS: dict[str, tuple[int, ...]] = {
    "dnn": (256,),
    "dcn": (256, 256),
    "dcnv2-stacked": (256,),
    "dcnv2-parallel": (256,),
    "dcn-mix": (256,),
}


def table6_model_configs(hidden: tuple[int, ...] | None = None) -> dict[str, ModelConfig]:
    """Our name → ModelConfig of every Table 6 model at MovieLens' d = 180 (see the module doc).

    ``hidden`` replaces every tower by one shared tower (None: the towers of :data:`TABLE6_TOWERS`).

    >>> cfgs = table6_model_configs()
    >>> cfgs["dcn-mix"].cross_layers, cfgs["dcn-mix"].experts, cfgs["dcn-mix"].rank, cfgs["dcn-mix"].gate
    (3, 4, 14, 'constant')
    """

    def tower(name: str) -> tuple[int, ...]:
        return TABLE6_TOWERS[name] if hidden is None else tuple(hidden)

    return {
        "dnn": ModelConfig(model="dnn", hidden=tower("dnn")),
        "dcn": ModelConfig(model="dcn", structure="parallel", cross_layers=4, hidden=tower("dcn")),
        "dcnv2-stacked": ModelConfig(model="dcnv2", structure="stacked", cross_layers=2, hidden=tower("dcnv2-stacked")),
        "dcnv2-parallel": ModelConfig(
            model="dcnv2", structure="parallel", cross_layers=2, hidden=tower("dcnv2-parallel")
        ),
        "dcn-mix": ModelConfig(
            model="dcn-mix",
            structure="parallel",
            cross_layers=3,
            experts=4,
            rank=14,
            gate="constant",
            expert_activation="hard_tanh",
            hidden=tower("dcn-mix"),
        ),
        "crossnet": ModelConfig(model="crossnet", cross_layers=2, hidden=()),
        "crossnet-mix": ModelConfig(model="crossnet", cross_layers=4, experts=4, rank=11, hidden=()),
    }


def criteo_model_configs() -> dict[str, ModelConfig]:
    """The paper's Criteo "Best Setting" of Table 6 for DCN-V2, DCN-Mix and CrossNet, for checking the reading.

    Towers and l, K as printed; r = 258 is the total rank of a layer (K = 4 experts of r = 64, i.e.
    256 — 258 is not a multiple of 4); DCN-Mix has a constant gate and hard_tanh experts, CrossNet a
    softmax gate and identity experts (§7.3); DCN-V2 and DCN-Mix stacked (best on Criteo, §7.3).
    With d = 26·39 + 13 = 1027 they have 3.49M, 2.42M and 2.12M parameters (FLOPs 6.99M, 4.85M,
    4.26M): the paper's 3.5M, 2.4M and 2.1M (7.0M, 4.8M, 4.2M); tests/paperlab/test_table6.py checks it.
    """
    return {
        "dcnv2": ModelConfig(model="dcnv2", structure="stacked", cross_layers=2, hidden=(768, 768)),
        "dcn-mix": ModelConfig(
            model="dcn-mix",
            structure="stacked",
            cross_layers=3,
            experts=4,
            rank=64,
            gate="constant",
            expert_activation="hard_tanh",
            hidden=(512, 512),
        ),
        "crossnet": ModelConfig(model="crossnet", cross_layers=4, experts=4, rank=64, hidden=()),
    }


def _linear_flops(lin: nn.Linear) -> int:
    return 2 * lin.in_features * lin.out_features + (lin.out_features if lin.bias is not None else 0)


def cross_layer_flops(layer: nn.Module) -> int:
    """FLOPs per example of one cross layer (2 per multiply-add, 1 per elementwise op)."""
    if isinstance(layer, FullRankCross):
        d = layer.d
        return _linear_flops(layer.linear) + d + (d if layer.residual else 0)  # W x + b, x0 ⊙, + x_l
    if isinstance(layer, LowRankCross):
        d = layer.d
        return _linear_flops(layer.V) + _linear_flops(layer.U) + d + (d if layer.residual else 0)
    if isinstance(layer, MixtureCross):
        d, K, r = layer.d, layer.K, layer.r
        n = 2 * d * K * r  # V_kᵀ x for every expert
        if layer.activation != "identity":
            n += K * r  # g(·)
        if layer.C is not None:
            n += 2 * K * r * r + K * r  # C_k h, g(·)
        if layer.gate is not None:
            n += 2 * d * K + 3 * K  # gate logits, softmax/sigmoid
        n += K * r  # G_k h_k
        n += 2 * K * r * d  # Σ_k U_k (G_k h_k)
        if layer.b is not None:
            n += K + 2 * d  # Σ_k G_k, times b, add
        return n + d + (d if layer.residual else 0)
    if isinstance(layer, VectorCross):
        d = layer.d
        n = 2 * d + d  # x_lᵀ w, x0 · scalar
        if layer.b is not None:
            n += d
        return n + (d if layer.residual else 0)
    raise ConfigError(f"unknown cross layer {type(layer).__name__}")


def dense_flops(model: DCNModel) -> int:
    """FLOPs per example of the model's dense part (cross layers, deep tower, logit), see the module doc."""
    n = sum(cross_layer_flops(layer) for layer in model.cross_layers())
    if model.deep is not None:
        for m in model.deep:
            if isinstance(m, nn.Linear):
                n += _linear_flops(m) + m.out_features  # + ReLU
    n += _linear_flops(model.logit)
    return n


@dataclass(frozen=True, kw_only=True)
class Table6Row:
    """One model of Table 6: mean ± sample std over runs of the test logloss and AUC."""

    model: str  # dnn | dcn | dcnv2-stacked | dcnv2-parallel | dcn-mix | crossnet | crossnet-mix
    logloss_mean: float
    logloss_std: float
    auc_mean: float
    auc_std: float
    params: int  # excluding embedding tables (DCNModel.dense_param_count)
    flops: int  # per example, dense part (dense_flops)
    paper_logloss: float | None  # the paper's MovieLens-1M number, None where it has none
    paper_auc: float | None
    runs: tuple[dict[str, Any], ...] = ()  # each run: seed, test logloss/auc, best epoch, epochs, seconds
    setting: str = ""  # our architecture in words
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "logloss_mean": self.logloss_mean,
            "logloss_std": self.logloss_std,
            "auc_mean": self.auc_mean,
            "auc_std": self.auc_std,
            "params": self.params,
            "flops": self.flops,
            "paper_logloss": self.paper_logloss,
            "paper_auc": self.paper_auc,
            "setting": self.setting,
            "runs": list(self.runs),
            "seconds": round(self.seconds, 3),
        }


@dataclass(frozen=True, kw_only=True)
class Table6Progress:
    model: str
    run: int  # 0-based
    runs: int
    epoch: int
    step: int
    loss: float  # recent training logloss
    fits_done: int
    fits_total: int


def describe(config: ModelConfig) -> str:
    """Our setting in the paper's notation, e.g. ``l=2, parallel, DNN [256]``."""
    parts = []
    if config.cross_kind is not None:
        parts.append(f"l={config.cross_layers}")
        if config.cross_kind == "mixture":
            parts.append(f"K={config.experts}, r={config.rank}/expert, {config.gate} gate, {config.expert_activation}")
        if config.has_deep:
            parts.append(config.structure)
    if config.has_deep:
        parts.append(f"DNN {list(config.hidden)}")
    return ", ".join(parts)


@dataclass(frozen=True, kw_only=True)
class Table6Config:
    """Which models, how many runs, and the shared training recipe of Table 6."""

    models: tuple[str, ...] = TABLE6_MODELS  # subset of TABLE6_MODELS, in table order
    hidden: tuple[int, ...] | None = None  # one deep tower for every model (None: TABLE6_TOWERS)
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)  # one run per seed
    train: Any = None  # dcnviz.train.TrainConfig (its seeds are replaced by ``seeds``); None: table6_train_config()
    extra: dict[str, Any] = field(default_factory=dict)  # recorded in the output (e.g. the data options)

    def __post_init__(self) -> None:
        bad = [m for m in self.models if m not in TABLE6_MODELS]
        if bad or not self.models:
            raise ConfigError(f"models must be among {TABLE6_MODELS}; got {list(self.models)}")
        if not self.seeds:
            raise ConfigError("at least one seed (run) is needed")


def table6_train_config(recipe: str = "paper") -> Any:
    """The recipe shared by every model.

    ``"paper"``: Adam lr 1e-3, batch 128 (§7.1.3 for MovieLens), clip norm 10, no L2, no weight EMA,
    at most 10 epochs with early stopping on the validation logloss (patience 2).
    ``"dcnviz"``: the recipe dcnviz ships (``TrainConfig()``'s defaults: lr 5e-3, batch auto (512 from
    25,600 training rows), embedding L2 4e-4 scaled to the data size, EMA 0.999, clip 10, at most 20 epochs,
    patience 2).

    Every field is set explicitly, so a change of ``TrainConfig``'s defaults cannot leak into "paper".
    """
    from dcnviz.train import TrainConfig

    if recipe == "dcnviz":
        return TrainConfig()
    if recipe != "paper":
        raise ConfigError(f"recipe must be one of {TABLE6_RECIPES}; got {recipe!r}")
    return TrainConfig(
        lr=1e-3,
        batch_size=128,
        epochs=10,
        patience=2,
        l2=0.0,
        l2_embedding=0.0,
        l2_embedding_rows=None,
        clip_norm=10.0,
        ema_decay=None,
        lr_decay=1.0,
    )


def table6_models(models: tuple[str, ...] | list[str] | None, *, flag: str = "models") -> tuple[str, ...]:
    """``models`` in table order (None: all of :data:`TABLE6_MODELS`); an unknown name is a ConfigError
    naming ``flag``."""
    bad = [m for m in models or () if m not in TABLE6_MODELS]
    if bad:
        raise ConfigError(f"{flag} must be among {TABLE6_MODELS} for table6; got {bad}")
    return tuple(m for m in TABLE6_MODELS if models is None or m in models)


def table6_setup(
    train_rows: int,
    *,
    recipe: str = "paper",
    seeds: tuple[int, ...] = (0,),
    models: tuple[str, ...] | list[str] | None = None,
    hidden: tuple[int, ...] | None = None,
    device: str = "auto",
    **overrides: Any,
) -> Table6Config:
    """The :class:`Table6Config` that ``paper table6`` and the app's Paper lab run.

    ``recipe`` (:func:`table6_train_config`) with one run per seed, on ``device``, with the ``overrides``
    that are not None (``lr``, ``batch_size``, ``epochs``: any :class:`~dcnviz.train.TrainConfig` field);
    an automatic batch size is resolved for ``train_rows`` training rows, so the size used is recorded.
    ``models`` are kept in table order (None: all of :data:`TABLE6_MODELS`).

    >>> c = table6_setup(58_284, recipe="dcnviz", seeds=(0, 1), models=["crossnet", "dnn"], epochs=3)
    >>> c.models, c.seeds, c.train.seeds, c.train.epochs, c.train.batch_size
    (('dnn', 'crossnet'), (0, 1), (0, 1), 3, 512)
    """
    chosen = table6_models(models)
    kept = {k: v for k, v in overrides.items() if v is not None}
    train = replace(table6_train_config(recipe), seeds=tuple(seeds), device=device, **kept).resolved(train_rows)
    return Table6Config(models=chosen, hidden=hidden, seeds=tuple(seeds), train=train)


def _run_record(seed: int, result: Any) -> dict[str, Any]:
    """One finished run of a model, as it appears in :attr:`Table6Row.runs` (``result``: a FitResult)."""
    return {
        "seed": seed,
        "logloss": result.test.get("logloss", math.nan),
        "auc": result.test.get("auc", math.nan),
        "best_epoch": result.best_epoch,
        "epochs": result.epochs,
        "seconds": round(result.wall_s, 3),
        "fault": result.fault,
    }


def _model_row(
    name: str, runs: list[dict[str, Any]], params: int, flops: int, setting: str, seconds: float
) -> Table6Row:
    """A model's mean (and sample std) logloss and AUC over its finished runs, beside the paper's."""
    ll = np.asarray([r["logloss"] for r in runs], dtype=float)
    auc = np.asarray([r["auc"] for r in runs], dtype=float)
    ref = PAPER_TABLE6.get(name)
    return Table6Row(
        model=name,
        logloss_mean=float(ll.mean()),
        logloss_std=float(ll.std(ddof=1)) if ll.size > 1 else 0.0,
        auc_mean=float(auc.mean()),
        auc_std=float(auc.std(ddof=1)) if auc.size > 1 else 0.0,
        params=params,
        flops=flops,
        paper_logloss=None if ref is None else ref.logloss,
        paper_auc=None if ref is None else ref.auc,
        runs=tuple(runs),
        setting=setting,
        seconds=seconds,
    )


def _progress_reporter(
    callback: Callable[[Table6Progress], None] | None, name: str, run: int, runs: int, done: int, total: int
) -> Callable[[Any], None]:
    """The fit's progress callback for run ``run`` of model ``name``, reporting a :class:`Table6Progress`."""

    def report(p: Any) -> None:  # p: dcnviz.train.Progress
        if callback is not None:
            callback(
                Table6Progress(
                    model=name,
                    run=run,
                    runs=runs,
                    epoch=p.epoch,
                    step=p.step,
                    loss=p.loss,
                    fits_done=done,
                    fits_total=total,
                )
            )

    return report


def run_table6(
    splits: DatasetSplits,
    config: Table6Config | None = None,
    *,
    callback: Callable[[Table6Progress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_model: Callable[[str, ModelConfig, list[Any]], None] | None = None,
) -> list[Table6Row]:
    """Train every model of ``config`` once per seed on ``splits``; one row per model.

    ``should_stop()`` ends the current run and returns the models with at least one finished run
    (a stopped run is not counted). ``on_model(name, model_config, results)`` sees each model's
    finished runs (:class:`dcnviz.train.TrainResult`, trained weights included) once they are done.
    """
    from dcnviz.train import build_model, fit

    config = config or Table6Config()
    base = config.train if config.train is not None else table6_train_config()
    cfgs = table6_model_configs(config.hidden)
    n_runs = len(config.seeds)
    total = len(config.models) * n_runs
    tconfig = replace(base, seeds=tuple(config.seeds))
    rows: list[Table6Row] = []
    done = 0
    for name in config.models:
        runs: list[dict[str, Any]] = []
        results: list[Any] = []
        params = flops = 0
        setting = ""
        t0 = time.perf_counter()
        stopped = False
        for i, seed in enumerate(config.seeds):
            model = build_model(splits.spec, cfgs[name], seed)
            params, flops, setting = model.dense_param_count(), dense_flops(model), describe(model.config)
            on_progress = _progress_reporter(callback, name, i, n_runs, done, total)
            result = fit(
                model, splits, tconfig, seed=seed, callback=on_progress, should_stop=should_stop, run=i, runs=n_runs
            )
            if result.stopped == "should_stop":
                stopped = True
                break
            runs.append(_run_record(seed, result))
            results.append(result)
            done += 1
        if runs:
            rows.append(_model_row(name, runs, params, flops, setting, time.perf_counter() - t0))
            if on_model is not None:
                on_model(name, cfgs[name], results)
        if stopped:
            break
    return rows
