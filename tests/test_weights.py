"""The common form of a dcnviz model's cross weights matches the layers it came from."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from dcnviz.errors import CheckpointError
from dcnviz.layers import LowRankCross, MixtureCross
from dcnviz.model import DCNModel, ModelConfig
from dcnviz.spec import FeatureSpec, Field
from dcnviz.weights import (
    CrossLayerWeights,
    ExpertWeights,
    FullRankWeights,
    LowRankWeights,
    MixtureWeights,
    VectorWeights,
    from_model,
)

SPEC = FeatureSpec(
    (
        Field(name="a", kind="categorical", embedding_dim=3, vocab=("x", "y")),
        Field(name="b", kind="categorical", embedding_dim=2, vocab=("u",)),
        Field(name="c", kind="dense", embedding_dim=1),
    )
)


@pytest.mark.parametrize(
    ("config", "kind", "bound"),
    [
        (ModelConfig(), "full", 6),
        (ModelConfig(rank=2), "lowrank", 2),
        (ModelConfig(model="dcn-mix", rank=1, experts=3, expert_activation="tanh"), "mixture", 3),
        (ModelConfig(model="dcn"), "vector", 1),
    ],
)
def test_effective_weights_match_layers(config, kind, bound):
    torch.manual_seed(0)
    model = DCNModel(SPEC, config)
    cw = from_model(model)
    assert cw.format == "dcnviz" and cw.d == 6 and [b.name for b in cw.blocks] == ["a", "b", "c"]
    for layer, common in zip(model.cross_layers(), cw.layers, strict=True):
        assert common.kind == kind and common.rank_bound == bound
        np.testing.assert_allclose(
            common.effective_weight(), layer.effective_weight().detach().double().numpy(), rtol=1e-5, atol=1e-6
        )
    assert cw.initial_layers is not None and cw.init_label == "saved initial weights"


def test_initial_layers_come_from_saved_initial_weights():
    torch.manual_seed(0)
    model = DCNModel(SPEC, ModelConfig())
    w0 = model.cross.layers[1].linear.weight.detach().double().numpy().copy()
    with torch.no_grad():
        model.cross.layers[1].linear.weight.mul_(3.0)
    cw = from_model(model)
    np.testing.assert_allclose(cw.initial_layers[1].effective_weight(), w0)
    np.testing.assert_allclose(cw.layers[1].effective_weight(), 3.0 * w0, rtol=1e-6)


def test_dnn_has_no_layers():
    cw = from_model(DCNModel(SPEC, ModelConfig(model="dnn")))
    assert cw.layers == [] and cw.initial_layers is None


MYPY_SNIPPET = """\
from dcnviz.weights import LAYER_KINDS, LayerKind


def rank_word(kind: LayerKind) -> str:
    if kind == "vectr":
        return "1"
    return "r" if kind in ("lowrank", "mixture") else "d"


good: LayerKind = "lowrank"
rank_word("mixture")
bad: LayerKind = "lowrnak"
rank_word("mixtrue")
first: LayerKind = LAYER_KINDS[0]
"""


@pytest.mark.slow
def test_mypy_catches_a_misspelled_layer_kind(tmp_path):
    """LayerKind is a Literal: mypy (with pyproject's strict_equality) rejects a misspelled kind, also in a
    comparison, and accepts the real ones."""
    api = pytest.importorskip("mypy.api")
    snippet = tmp_path / "kinds.py"
    snippet.write_text(MYPY_SNIPPET)
    config = tmp_path / "mypy.ini"  # numpy/torch/pandas stubs skipped: only the kinds matter, and it stays quick
    config.write_text(
        f"[mypy]\nmypy_path = {Path(__file__).resolve().parents[1]}\nignore_missing_imports = True\n"
        "follow_imports = silent\nstrict_equality = True\n\n"
        "[mypy-numpy.*,torch.*,pandas.*]\nfollow_imports = skip\n"
    )
    out, err, code = api.run([str(snippet), f"--config-file={config}", f"--cache-dir={tmp_path / 'cache'}"])
    errors = [line for line in out.splitlines() if ": error:" in line]
    assert code == 1, out + err
    assert [line.split(":")[1] for line in errors] == ["5", "12", "13"], out  # only the three misspellings
    assert "Literal['vectr']" in errors[0] and "Non-overlapping equality check" in errors[0]  # strict_equality
    assert "Literal['lowrnak']" in errors[1] and "Literal['mixtrue']" in errors[2]
    assert "Literal['full', 'lowrank', 'mixture', 'vector']" in errors[1]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: FullRankWeights(d=3, W=np.ones((3, 2))), r"full-rank cross layer: W must be \(3, 3\); got \(3, 2\)"),
        (
            lambda: LowRankWeights(d=3, U=np.ones((3, 1)), V=np.ones((3, 2))),
            r"low-rank cross layer: U and V must both be \(d, r\) with d=3; got \(3, 1\) and \(3, 2\)",
        ),
        (lambda: LowRankWeights(d=3, U=np.ones((3, 1)), V=None), "low-rank cross layer lacks its 'V' array"),
        (lambda: VectorWeights(d=3, w=np.ones(4)), "DCN-V1 cross layer: w must have 3 entries; got 4"),
        (
            lambda: FullRankWeights(d=2, W=np.eye(2), b=np.ones(3)),
            "full-rank cross layer: b must have 2 entries; got 3",
        ),
        (lambda: MixtureWeights(d=2, experts=()), "mixture cross layer has no experts"),
        (
            lambda: MixtureWeights(d=3, experts=(ExpertWeights(U=np.ones((2, 1)), V=np.ones((2, 1))),)),
            r"mixture cross layer expert 0: U and V must both be \(d, r\) with d=3",
        ),
        (
            lambda: ExpertWeights(U=np.ones((3, 2)), V=np.ones((3, 2)), C=np.ones((2, 3))),
            r"mixture expert: C must be \(r, r\) with r=2; got \(2, 3\)",
        ),
        (
            lambda: MixtureWeights(
                d=3, experts=(ExpertWeights(U=np.ones((3, 1)), V=np.ones((3, 1))),), gates=np.ones((2, 3))
            ),
            r"mixture cross layer: gates must be \(1, 3\); got \(2, 3\)",
        ),
        (lambda: FullRankWeights(d=0, W=np.ones((0, 0))), "full-rank cross layer: d must be an integer >= 1; got d=0"),
    ],
)
def test_each_kind_checks_its_shapes_once_when_made(make, message):
    with pytest.raises(CheckpointError, match=message):
        make()


def test_the_common_base_is_not_a_layer_and_layers_are_frozen():
    with pytest.raises(TypeError, match="common base"):
        CrossLayerWeights(d=2)
    layer = FullRankWeights(d=2, W=[[1, 2], [3, 4]])  # any numeric array-like, kept as float64
    assert layer.W.dtype == np.float64 and layer.factors is None and layer.rank_bound == 2
    with pytest.raises(AttributeError):
        layer.W = np.eye(2)  # type: ignore[misc]


def test_factors_rank_bounds_and_effective_weights_of_each_kind():
    rng = np.random.default_rng(0)
    U, V, C = rng.normal(size=(4, 2)), rng.normal(size=(4, 2)), rng.normal(size=(2, 2))
    lr = LowRankWeights(d=4, U=U, V=V)
    np.testing.assert_allclose(lr.effective_weight(), U @ V.T)
    assert lr.rank_bound == 2 and lr.kind == "lowrank"
    w = np.array([1.0, 2.0, 3.0, 4.0])
    vec = VectorWeights(d=4, w=w)
    np.testing.assert_allclose(vec.effective_weight(), np.tile(w, (4, 1)))  # W = 1 wᵀ
    assert vec.rank_bound == 1 and vec.bias_outside and not lr.bias_outside
    e1, e2 = ExpertWeights(U=U, V=V, C=C), ExpertWeights(U=V, V=U)
    mix = MixtureWeights(d=4, experts=(e1, e2), activation="tanh")
    np.testing.assert_allclose(mix.effective_weight(), (U @ C @ V.T + V @ U.T) / 2)
    A, B = mix.weighted_factors(np.array([0.25, 0.75]))
    np.testing.assert_allclose(A @ B.T, 0.25 * U @ C @ V.T + 0.75 * V @ U.T)
    assert mix.rank_bound == 4 and mix.linear_part_only and mix.K == 2


def test_low_rank_and_mixture_factors_agree_between_torch_and_the_common_form():
    """LowRankCross stores Vᵀ in V.weight, MixtureCross stores V: both come out as the paper's V."""
    torch.manual_seed(0)
    for layer in (LowRankCross(5, 2), MixtureCross(5, 2, 3)):
        common = layer.common_form(lambda name, t: t.detach().double().numpy())
        A, B = (t.detach().double().numpy() for t in layer.factors())
        if isinstance(common, MixtureWeights):
            for k, e in enumerate(common.experts):
                np.testing.assert_allclose(e.factors[0], A[k], rtol=1e-6)
                np.testing.assert_allclose(e.factors[1], B[k], rtol=1e-6)
        else:
            np.testing.assert_allclose(common.U, A, rtol=1e-6)
            np.testing.assert_allclose(common.V, B, rtol=1e-6)
        torch_w = layer.effective_weight().detach().double().numpy()
        np.testing.assert_allclose(common.effective_weight(), torch_w, rtol=1e-5, atol=1e-6)
