"""The trainer (dcnviz.train): metrics, early stopping, stop button, faults, EMA, seeds, exact Adam math."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import log_loss as sk_log_loss
from sklearn.metrics import roc_auc_score

from dcnviz.checkpoint import model_to_bytes
from dcnviz.encoded import DatasetSplits, Encoded
from dcnviz.errors import ConfigError, TrainingError
from dcnviz.model import DCNModel, ModelConfig
from dcnviz.spec import FeatureSpec, Field
from dcnviz.train import (
    Progress,
    TrainConfig,
    auc_score,
    build_model,
    evaluate,
    fit,
    fit_seeds,
    log_loss,
    resolve_device,
)

SPEC = FeatureSpec(
    (
        Field(name="a", kind="categorical", embedding_dim=4, vocab=tuple("abcdefgh")),
        Field(name="b", kind="categorical", embedding_dim=4, vocab=tuple("pqrs")),
        Field(name="tags", kind="multivalent", embedding_dim=3, vocab=("x", "y", "z"), max_len=2),
        Field(name="u", kind="dense", embedding_dim=1),
    )
)
SMALL = ModelConfig(model="dcnv2", structure="parallel", cross_layers=2, hidden=(16,))


def make_encoded(n: int, seed: int, *, random_labels: bool = False) -> Encoded:
    """Labels from a planted cross: y = 1 when (a + b) is even (with 10% noise)."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randint(1, 9, (n,), generator=g)
    b = torch.randint(1, 5, (n,), generator=g)
    tags = torch.randint(-1, 4, (n, 2), generator=g)
    u = torch.randn(n, 1, generator=g)
    y = ((a + b) % 2 == 0).float()
    flip = torch.rand(n, generator=g) < 0.1
    y = torch.where(flip, 1 - y, y)
    if random_labels:
        y = (torch.rand(n, generator=g) < 0.5).float()
    return Encoded(cat=torch.stack([a, b], 1), dense=u, y=y, multi=(tags,))


def make_splits(n: int = 2000, *, random_labels: bool = False) -> DatasetSplits:
    return DatasetSplits(
        spec=SPEC,
        train=make_encoded(n, 0, random_labels=random_labels),
        val=make_encoded(n // 4, 1, random_labels=random_labels),
        test=make_encoded(n // 4, 2, random_labels=random_labels),
    )


def cfg(**kw) -> TrainConfig:  # type: ignore[no-untyped-def]
    # independent of the shipped recipe's defaults: no EMA, no L2 unless a test asks for them
    base = {"device": "cpu", "batch_size": 64, "epochs": 3, "lr": 3e-3, "ema_decay": None, "l2_embedding": 0.0}
    base["l2_embedding_rows"] = None  # λ per step, as written (the data-size scaling has its own test)
    base.update(kw)
    return TrainConfig(**base)


def params_finite(model: torch.nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


def test_auc_matches_sklearn_with_and_without_ties():
    rng = np.random.default_rng(0)
    for trial in range(20):
        n = int(rng.integers(2, 300))
        y = rng.integers(0, 2, n)
        if y.min() == y.max():
            y[0] = 1 - y[0]
        # coarse scores make many ties; trial 0 is all ties
        s = rng.integers(0, 1 if trial == 0 else 5, n).astype(np.float32) if trial % 2 == 0 else rng.random(n)
        assert auc_score(torch.tensor(y), torch.tensor(s)) == pytest.approx(roc_auc_score(y, s), abs=1e-12)


def test_auc_known_answers_and_one_class():
    # 4 positive-negative pairs: (0.35 > 0.1), (0.35 < 0.4), (0.8 > 0.1), (0.8 > 0.4) -> 3/4
    assert auc_score([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == 0.75
    assert auc_score([1, 0], [0.2, 0.2]) == 0.5  # a tie counts one half
    assert auc_score([0, 1], [0.9, 0.1]) == 0.0
    assert math.isnan(auc_score([1, 1, 1], [0.1, 0.2, 0.3]))


def test_log_loss_matches_sklearn():
    g = torch.Generator().manual_seed(3)
    z = torch.randn(500, generator=g) * 3
    y = (torch.rand(500, generator=g) < torch.sigmoid(z)).float()
    p = torch.sigmoid(z.double()).numpy()
    assert log_loss(y, z) == pytest.approx(sk_log_loss(y.numpy(), p), rel=1e-9)


def test_evaluate_returns_auc_and_logloss_of_the_model():
    splits = make_splits(400)
    model = build_model(SPEC, SMALL, 0)
    m = evaluate(model, splits.val, batch_size=7)  # uneven chunks give the same numbers
    logits = model(splits.val.cat, splits.val.dense, splits.val.multi).detach()
    assert m["auc"] == pytest.approx(roc_auc_score(splits.val.y.numpy(), logits.numpy()), abs=1e-9)
    assert m["logloss"] == pytest.approx(log_loss(splits.val.y, logits), abs=1e-6)


def test_the_automatic_batch_size_gives_an_epoch_at_least_50_steps_up_to_512():
    from dcnviz.train import batch_size_for

    assert [batch_size_for(n) for n in (1, 1_599, 1_600, 3_200, 12_800, 25_599, 25_600, 10**7)] == [
        32, 32, 32, 64, 256, 256, 512, 512
    ]  # fmt: skip
    for n in (3_200, 14_662, 25_600, 58_284):
        assert n // batch_size_for(n) >= 50  # the rule itself, where it is not capped
    assert TrainConfig().batch_size is None  # auto is the default ...
    assert TrainConfig().resolved(14_662).batch_size == 256  # ... and resolves from the training rows
    assert TrainConfig(batch_size=128).resolved(10**6).batch_size == 128  # a chosen size is kept
    auto = TrainConfig(batch_size=None)
    assert TrainConfig.from_json(json.loads(json.dumps(auto.to_json()))) == auto


def test_fit_trains_with_the_batch_size_of_its_data():
    splits = make_splits()
    steps: list[int] = []
    r = fit(
        build_model(SPEC, SMALL, 0), splits, cfg(epochs=1, batch_size=None), callback=lambda p: steps.append(p.step)
    )
    expected = -(-len(splits.train) // TrainConfig().resolved(len(splits.train)).batch_size)
    assert r.epochs == 1 and max(steps) == expected


def test_train_config_json_round_trip_and_errors():
    c = TrainConfig(lr=2e-3, seeds=(3, 4), ema_decay=0.99, clip_norm=None)
    assert TrainConfig.from_json(json.loads(json.dumps(c.to_json()))) == c
    with pytest.raises(ConfigError, match=r"`batch_size` must be an integer >= 1; got batch_size=0"):
        TrainConfig(batch_size=0)
    with pytest.raises(ConfigError, match="lr"):
        TrainConfig(lr=-1.0)
    with pytest.raises(ConfigError, match="ema_decay"):
        TrainConfig(ema_decay=1.0)
    with pytest.raises(ConfigError, match="distinct"):
        TrainConfig(seeds=(1, 1))
    with pytest.raises(ConfigError, match="device"):
        TrainConfig(device="tpu")
    with pytest.raises(ConfigError, match="unknown train config keys"):
        TrainConfig.from_json({"learning_rate": 1.0})


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message when CUDA is missing")
def test_explicit_cuda_without_gpu_is_a_clear_error():
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        resolve_device("cuda")
    with pytest.raises(ConfigError, match="amp"):
        fit(build_model(SPEC, SMALL, 0), make_splits(200), cfg(amp=True))
    with pytest.raises(ConfigError, match="compile"):
        fit(build_model(SPEC, SMALL, 0), make_splits(200), cfg(compile=True))


def test_model_and_data_spec_must_match():
    other = FeatureSpec((Field(name="a", kind="categorical", embedding_dim=4, vocab=tuple("ab")),))
    with pytest.raises(ConfigError, match="FeatureSpec"):
        fit(DCNModel(other, SMALL), make_splits(200), cfg())


def test_loss_decreases_and_the_planted_cross_is_learned():
    splits = make_splits(2000)
    ticks: list[Progress] = []
    r = fit(build_model(SPEC, SMALL, 0), splits, cfg(epochs=4, patience=4, lr=1e-2), callback=ticks.append)
    losses = [h["train_logloss"] for h in r.history]
    assert losses[-1] < losses[0] - 0.05
    assert r.val["auc"] > 0.8 and r.test["auc"] > 0.8  # the parity cross (noise 10%) is learnable
    assert r.best_epoch >= 1 and r.epochs == len(r.history)
    ends = [t for t in ticks if t.metrics is not None]
    assert [t.epoch for t in ends] == [h["epoch"] for h in r.history]
    assert all(t.examples_per_s > 0 and t.steps_per_epoch == math.ceil(2000 / 64) for t in ticks)
    j = r.to_json()
    assert set(j) >= {"test", "val", "epochs", "best_epoch", "wall_s", "device", "examples_per_s"}
    assert j["device"] == "cpu" and j["examples_per_s"] > 0
    assert r.examples == r.epochs * 2000
    json.dumps(j, allow_nan=False)
    model_to_bytes(r.model)  # parameters got their own storage back (safetensors refuses shared memory)


def test_early_stopping_keeps_the_best_epoch():
    # Random labels and a large learning rate: validation loss gets worse after the first epochs.
    splits = make_splits(1000, random_labels=True)
    r = fit(build_model(SPEC, SMALL, 0), splits, cfg(epochs=30, patience=2, lr=0.03, batch_size=32))
    vals = [h["val"]["logloss"] for h in r.history]
    assert r.stopped == "early_stopping"
    assert r.best_epoch == int(np.argmin(vals)) + 1
    assert r.epochs == r.best_epoch + 2  # patience 2
    assert r.val["logloss"] == pytest.approx(min(vals))
    # the model holds the best epoch's weights: scoring it again gives that epoch's numbers
    assert evaluate(r.model, splits.val)["logloss"] == pytest.approx(min(vals), abs=1e-6)


def test_progress_passes_fits_own_history_rows_and_one_speed():
    seen: list[Progress] = []
    r = fit(build_model(SPEC, SMALL, 0), make_splits(1000), cfg(epochs=3, patience=5), callback=seen.append)
    rows = [p.row for p in seen if p.row is not None]
    assert rows == r.history and all(a is b for a, b in zip(rows, r.history, strict=True))  # the same dicts
    assert [p.metrics is not None for p in seen] == [p.row is not None for p in seen]
    ticks = [p for p in seen if p.row is None]
    assert ticks and all(p.examples > 0 and p.train_s > 0 for p in ticks)
    assert [p.examples for p in seen] == sorted(p.examples for p in seen)  # running totals
    last = seen[-1]
    assert last.examples == r.examples and last.train_s == r.train_s
    assert last.run_examples_per_s == r.examples_per_s  # the live number ends at the final one


def test_model_size_is_checked_before_any_allocation():
    from dcnviz.train import MAX_PARAMETERS, check_model_size

    assert check_model_size(SPEC, SMALL) == sum(p.numel() for p in build_model(SPEC, SMALL, 0).parameters())
    huge = ModelConfig(model="dcnv2", cross_layers=2, hidden=(100_000, 100_000))
    with pytest.raises(
        ConfigError, match=r"more than the 268,435,456 dcnviz trains; the largest part is the deep tower"
    ):
        build_model(SPEC, huge, 0)
    assert MAX_PARAMETERS == 1 << 28


def test_should_stop_keeps_the_best_model_so_far():
    splits = make_splits(1000, random_labels=True)
    calls = {"n": 0}
    steps_per_epoch = math.ceil(1000 / 32)

    def should_stop() -> bool:
        calls["n"] += 1
        return calls["n"] > 2 * steps_per_epoch + 5  # mid epoch 3 (one poll per step with progress_every=1)

    r = fit(
        build_model(SPEC, SMALL, 0),
        splits,
        cfg(epochs=10, patience=10, lr=0.03, batch_size=32),
        should_stop=should_stop,
        progress_every=1,
    )
    assert r.stopped == "should_stop"
    assert r.epochs == 3 and r.history[-1]["partial"] and not r.history[0]["partial"]
    vals = [h["val"]["logloss"] for h in r.history]
    assert r.best_epoch == int(np.argmin(vals)) + 1
    assert evaluate(r.model, splits.val)["logloss"] == pytest.approx(min(vals), abs=1e-6)


def test_non_finite_loss_stops_with_a_message_and_keeps_the_last_good_model():
    splits = make_splits(800)
    poisoned = {"done": False}

    def poison(p: Progress) -> None:  # in epoch 2, a weight turns NaN (as a diverging run would)
        if p.epoch == 2 and p.metrics is None and not poisoned["done"]:
            poisoned["done"] = True
            with torch.no_grad():
                next(iter(model.cross.parameters())).view(-1)[0] = float("nan")  # type: ignore[union-attr]

    model = build_model(SPEC, SMALL, 0)
    r = fit(model, splits, cfg(epochs=5, patience=5), callback=poison, progress_every=3)
    assert r.stopped == "fault"
    assert r.fault is not None and "non-finite" in r.fault and "epoch 2" in r.fault and "epoch 1" in r.fault
    assert r.best_epoch == 1 and r.epochs == 2
    assert params_finite(r.model)
    assert evaluate(r.model, splits.val)["logloss"] == pytest.approx(r.history[0]["val"]["logloss"], abs=1e-6)
    assert r.to_json()["fault"] == r.fault


def test_nan_in_the_data_from_the_start_keeps_finite_weights():
    splits = make_splits(400)
    splits.train.dense[5, 0] = float("nan")
    r = fit(build_model(SPEC, SMALL, 0), splits, cfg(epochs=3))
    assert r.stopped == "fault" and r.best_epoch == 0 and "last good weights" in (r.fault or "")
    assert params_finite(r.model)


def test_out_of_memory_becomes_a_training_error_suggesting_a_smaller_batch(monkeypatch):
    model = build_model(SPEC, SMALL, 0)

    def boom(*a, **k):  # type: ignore[no-untyped-def]
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(model, "forward", boom)
    with pytest.raises(TrainingError, match=r"out of memory .* batch size 64; try a smaller batch.*--batch-size 32"):
        fit(model, make_splits(200), cfg())


def test_ema_weights_are_the_average_of_the_trajectory():
    """One epoch with EMA: the kept model is e_t = e_{t-1} + (1 - d_t)(w_t - e_{t-1}), d_t = min(d, (1+t)/(10+t))."""
    splits = make_splits(320)
    model = build_model(SPEC, SMALL, 0)
    names = [n for n, _ in model.named_parameters()]
    ema = {n: p.detach().clone() for n, p in model.named_parameters()}
    t = {"n": 0}
    decay = 0.8

    def track(p: Progress) -> None:
        if p.metrics is not None:
            return
        t["n"] += 1
        d = min(decay, (1.0 + t["n"]) / (10.0 + t["n"]))
        for n, w in model.named_parameters():
            ema[n] += (1.0 - d) * (w.detach() - ema[n])

    r = fit(model, splits, cfg(epochs=1, batch_size=32, ema_decay=decay), callback=track, progress_every=1)
    assert t["n"] == 10
    final = dict(r.model.named_parameters())
    for n in names:
        torch.testing.assert_close(final[n].detach(), ema[n], atol=1e-5, rtol=1e-5)
    # and the raw trajectory is the same as without EMA (the average does not feed back)
    r2 = fit(build_model(SPEC, SMALL, 0), splits, cfg(epochs=1, batch_size=32))
    assert not torch.allclose(dict(r2.model.named_parameters())[names[-1]], final[names[-1]])


def test_embedding_l2_is_scaled_to_the_data_size() -> None:
    """l2_embedding_rows = R on N training rows applies λ·R/N per step: the same model as λ·R/N unscaled,
    and a different one from λ unscaled (so the scaling is really applied)."""
    splits = make_splits(256)  # 256 training rows
    ref = build_model(SPEC, SMALL, 1)

    def trained(**kw: object) -> list[torch.Tensor]:
        model = copy.deepcopy(ref)
        fit(model, splits, cfg(epochs=1, lr=1e-2, **kw), seed=3)
        return [p.detach().clone() for p in model.parameters()]

    scaled = trained(l2_embedding=1e-2, l2_embedding_rows=1024)  # 4× the rows it was set for: 4× per step
    plain = trained(l2_embedding=4e-2)
    unscaled = trained(l2_embedding=1e-2)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(scaled, plain, strict=True))
    assert not all(torch.allclose(a, b, atol=1e-4) for a, b in zip(scaled, unscaled, strict=True))
    # a file recorded before the scaling existed keeps its per-step meaning
    old = TrainConfig().to_json()
    del old["l2_embedding_rows"]
    assert TrainConfig.from_json(old).l2_embedding_rows is None
    assert TrainConfig.from_json(TrainConfig().to_json()) == TrainConfig()
    with pytest.raises(ConfigError, match="l2_embedding_rows"):
        TrainConfig(l2_embedding_rows=0)


@pytest.mark.parametrize("l2,l2_emb,clip", [(0.0, 0.0, 10.0), (1e-3, 0.0, 0.05), (1e-3, 3e-3, 10.0), (0.0, 3e-3, 0.05)])
def test_flat_buffer_training_is_exactly_adam_with_l2_and_clipping(l2, l2_emb, clip):
    """The fused flat-buffer step equals the textbook loop: loss + λ‖W‖² (§3.4), clip, torch Adam."""
    splits = make_splits(256)
    seed = 7
    ref = build_model(SPEC, SMALL, 1)
    model = copy.deepcopy(ref)
    fit(model, splits, cfg(epochs=1, batch_size=64, l2=l2, l2_embedding=l2_emb, clip_norm=clip, lr=1e-2), seed=seed)

    opt = torch.optim.Adam(ref.parameters(), lr=1e-2)
    perm = torch.randperm(256, generator=torch.Generator().manual_seed(seed))
    data = splits.train.index(perm)
    named = list(ref.named_parameters())
    kernels = [p for n, p in named if not n.startswith("embedding") and n.rsplit(".", 1)[-1] not in ("bias", "b")]
    for start in range(0, 256, 64):
        bt = data.index(slice(start, start + 64))
        loss = F.binary_cross_entropy_with_logits(ref(bt.cat, bt.dense, bt.multi), bt.y)
        loss = loss + l2 * sum((k**2).sum() for k in kernels)
        loss = loss + l2_emb * sum((e**2).sum() for e in ref.embedding.parameters())
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(ref.parameters(), clip)
        opt.step()
    got = dict(model.named_parameters())
    for n, p in ref.named_parameters():
        torch.testing.assert_close(got[n], p, atol=2e-6, rtol=1e-5)


def test_several_seeds_report_mean_and_std():
    splits = make_splits(600)
    res = fit_seeds(SMALL, splits, cfg(epochs=1, seeds=(0, 1, 2)))
    j = res.to_json()
    assert [r["seed"] for r in j["runs"]] == [0, 1, 2] and j["seeds"] == [0, 1, 2]
    for split in ("val", "test"):
        for k in ("auc", "logloss"):
            vals = [getattr(r, split)[k] for r in res.runs]
            assert j[split][k]["mean"] == pytest.approx(float(np.mean(vals)))
            assert j[split][k]["std"] == pytest.approx(float(np.std(vals, ddof=1)))
    assert len({r.test["logloss"] for r in res.runs}) == 3  # different seeds, different models
    assert j["best_seed"] == min(res.runs, key=lambda r: r.val["logloss"]).seed
    assert j["epochs"] == 3
    json.dumps(j, allow_nan=False)


def test_same_seed_same_result():
    splits = make_splits(300)
    a = fit(build_model(SPEC, SMALL, 4), splits, cfg(epochs=2), seed=4)
    b = fit(build_model(SPEC, SMALL, 4), splits, cfg(epochs=2), seed=4)
    assert a.val == b.val and a.test == b.test


@pytest.mark.parametrize(
    "mc",
    [
        ModelConfig(model="dcn-mix", rank=2, experts=2, hidden=(8,)),
        ModelConfig(model="dcn", structure="stacked", hidden=(8,)),
        ModelConfig(model="dnn", hidden=(8,)),
        ModelConfig(model="crossnet", rank=3),
        ModelConfig(model="dcn-mix", rank=2, experts=3, expert_activation="tanh", gate="sigmoid", hidden=(8,)),
    ],
)
def test_every_model_kind_trains(mc):
    r = fit(build_model(SPEC, mc, 0), make_splits(400), cfg(epochs=1, l2=1e-4, l2_embedding=1e-4, ema_decay=0.9))
    assert math.isfinite(r.val["logloss"]) and params_finite(r.model)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_training_with_mixed_precision():
    splits = make_splits(3000)
    r = fit(build_model(SPEC, SMALL, 0), splits, cfg(device="cuda", amp=True, epochs=3))
    assert r.device == "cuda" and r.val["auc"] > 0.75


def test_flat_adam_fused_kernel_equals_the_textbook_update():
    from dcnviz.train import _FlatAdam

    g = torch.Generator().manual_seed(0)
    p0 = torch.randn(1000, generator=g)
    grads = [torch.randn(1000, generator=g) for _ in range(5)]
    out = []
    for fused in (True, False):
        p, gr = p0.clone(), torch.zeros(1000)
        opt = _FlatAdam(p, gr, lr=0.01, betas=(0.9, 0.99), eps=1e-8)
        opt.fused = fused
        for x in grads:
            gr.copy_(x)
            opt.step()
        out.append(p)
    ref = torch.nn.Parameter(p0.clone())
    topt = torch.optim.Adam([ref], lr=0.01, betas=(0.9, 0.99), eps=1e-8)
    for x in grads:
        ref.grad = x.clone()
        topt.step()
    torch.testing.assert_close(out[0], ref.detach(), atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(out[1], ref.detach(), atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("dims", [(4, 4), (4, 3)])
def test_fast_x0_path_trains_exactly_like_the_models_own_forward(dims, monkeypatch):
    """One gather for all categorical tables (same dims), or the fallback (mixed dims): same numbers."""
    import dcnviz.train as train_mod

    spec = FeatureSpec(
        (
            Field(name="a", kind="categorical", embedding_dim=dims[0], vocab=tuple("abcdefgh")),
            Field(name="tags", kind="multivalent", embedding_dim=3, vocab=("x", "y", "z"), max_len=2),
            Field(name="b", kind="categorical", embedding_dim=dims[1], vocab=tuple("pqrs")),
            Field(name="u", kind="dense", embedding_dim=1),
        )
    )
    base = make_splits(300)
    splits = DatasetSplits(spec=spec, train=base.train, val=base.val, test=base.test)
    out = []
    for fast in (True, False):
        monkeypatch.setattr(train_mod, "FAST_X0", fast)
        r = fit(build_model(spec, SMALL, 0), splits, cfg(epochs=1, l2_embedding=1e-3))
        out.append(dict(r.model.named_parameters()))
    for n, p in out[0].items():
        torch.testing.assert_close(p, out[1][n], atol=1e-6, rtol=1e-5)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_training_with_torch_compile_matches_eager_quality():
    splits = make_splits(3000)
    eager = fit(build_model(SPEC, SMALL, 0), splits, cfg(device="cuda", epochs=2))
    compiled = fit(build_model(SPEC, SMALL, 0), splits, cfg(device="cuda", epochs=2, compile=True))
    assert compiled.val["logloss"] == pytest.approx(eager.val["logloss"], abs=0.02)
