"""The common form of a dcnviz model's cross weights matches the layers it came from."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dcnviz.model import DCNModel, ModelConfig
from dcnviz.spec import FeatureSpec, Field
from dcnviz.weights import from_model

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
