"""Model structures (dcnviz.model): x0 built from the embeddings in spec order, every cross kind and
structure predicts and is wired as the paper says, mixture defaults, the config's JSON round trip, the
initial cross weights kept for the change view.
"""

from __future__ import annotations

import json

import pytest
import torch

from dcnviz.errors import ConfigError
from dcnviz.model import DCNModel, ModelConfig
from tests.helpers.models import small_batch, small_spec


def test_embedding_builds_x0_in_spec_order():
    spec = small_spec()
    model = DCNModel(spec, ModelConfig())
    b = small_batch()
    x0 = model.x0(b.cat, b.dense, b.multi)
    assert x0.shape == (5, spec.d)
    tables = model.embedding.tables
    torch.testing.assert_close(x0[:, 0:4], tables["user_id"](b.cat[:, 0]))
    torch.testing.assert_close(x0[:, 7:9], tables["gender"](b.cat[:, 1]))
    torch.testing.assert_close(x0[:, 9], b.dense[:, 0])
    g = tables["genres"].weight
    torch.testing.assert_close(x0[0, 4:7], (g[1] + g[2]) / 2)  # mean of present ids
    torch.testing.assert_close(x0[1, 4:7], g[3])
    torch.testing.assert_close(x0[2, 4:7], torch.zeros(3))  # no id: zero vector
    torch.testing.assert_close(x0[3, 4:7], (2 * g[1] + g[2]) / 3)


@pytest.mark.parametrize(
    "config",
    [
        ModelConfig(model="dcnv2", structure="stacked"),
        ModelConfig(model="dcnv2", structure="parallel"),
        ModelConfig(model="dcnv2", rank=3),
        ModelConfig(model="dcn-mix", rank=2, experts=3, expert_activation="relu"),
        ModelConfig(model="dcn-mix", gate="constant", structure="stacked"),
        ModelConfig(model="dcn"),
        ModelConfig(model="crossnet", cross_layers=3),
        ModelConfig(model="crossnet", experts=2, rank=2),
        ModelConfig(model="dnn", hidden=(8, 4)),
    ],
)
def test_every_kind_and_structure_predicts(config):
    spec = small_spec()
    model = DCNModel(spec, config)
    b = small_batch()
    assert model(b.cat, b.dense, b.multi).shape == (5,)
    kinds = {layer.kind for layer in model.cross_layers()}
    assert kinds == ({config.cross_kind} if config.cross_kind else set())


def test_structures_wire_as_the_paper_says():
    spec = small_spec()
    stacked = DCNModel(spec, ModelConfig(structure="stacked", hidden=(8,)))
    parallel = DCNModel(spec, ModelConfig(structure="parallel", hidden=(8,)))
    crossnet = DCNModel(spec, ModelConfig(model="crossnet"))
    assert stacked.logit.in_features == 8  # x_final = h_{L_d}, h_0 = x_{L_c}
    assert stacked.deep[0].in_features == spec.d
    assert parallel.logit.in_features == spec.d + 8  # x_final = [x_{L_c}; h_{L_d}]
    assert crossnet.logit.in_features == spec.d and crossnet.deep is None


def test_resolved_defaults_for_mixtures():
    model = DCNModel(small_spec(), ModelConfig(model="dcn-mix"))
    assert model.config.experts == 4 and model.config.rank == 10 // 4
    with pytest.raises(ConfigError, match="rank must be in"):
        DCNModel(small_spec(), ModelConfig(model="dcnv2", rank=50))


def test_model_config_json_round_trip_and_errors():
    c = ModelConfig(model="dcn-mix", hidden=(3, 2), experts=2)
    assert ModelConfig.from_json(json.loads(json.dumps(c.to_json()))) == c
    with pytest.raises(ConfigError, match="unknown model config keys"):
        ModelConfig.from_json({"model": "dcnv2", "layers": 3})
    with pytest.raises(ConfigError, match="model must be one of"):
        ModelConfig(model="xdeepfm")


def test_initial_cross_weights_are_kept():
    torch.manual_seed(0)
    model = DCNModel(small_spec(), ModelConfig())
    w0 = model.cross.layers[0].linear.weight.detach().clone()
    with torch.no_grad():
        model.cross.layers[0].linear.weight.add_(1.0)
    torch.testing.assert_close(model.initial_cross["layers.0.linear.weight"], w0)
