"""Model structures, the FeatureSpec, and the model file round trip."""

from __future__ import annotations

import json
import struct

import pytest
import torch

from dcnviz.checkpoint import FORMAT_VERSION, load_model, model_to_bytes, save_model
from dcnviz.encoded import Encoded
from dcnviz.errors import CheckpointError, ConfigError
from dcnviz.model import DCNModel, ModelConfig
from dcnviz.spec import FeatureSpec, Field, rule_of_thumb_dim


def small_spec() -> FeatureSpec:
    return FeatureSpec(
        (
            Field(name="user_id", kind="categorical", embedding_dim=4, vocab=tuple("abcdef")),
            Field(name="genres", kind="multivalent", embedding_dim=3, vocab=("Action", "Drama", "Comedy"), max_len=3),
            Field(name="gender", kind="categorical", embedding_dim=2, vocab=("F", "M")),
            Field(name="year", kind="dense", embedding_dim=1, mean=1990.0, std=10.0),
        )
    )


def small_batch(n: int = 5) -> Encoded:
    g = torch.Generator().manual_seed(0)
    return Encoded(
        cat=torch.stack([torch.randint(0, 7, (n,), generator=g), torch.randint(0, 3, (n,), generator=g)], 1),
        dense=torch.randn(n, 1, generator=g),
        y=torch.randint(0, 2, (n,), generator=g).float(),
        multi=(torch.tensor([[1, 2, -1], [3, -1, -1], [-1, -1, -1], [1, 1, 2], [0, -1, -1]])[:n],),
    )


def test_spec_blocks_follow_field_order():
    spec = small_spec()
    assert spec.d == 10
    assert [(b.name, b.start, b.stop) for b in spec.blocks()] == [
        ("user_id", 0, 4),
        ("genres", 4, 7),
        ("gender", 7, 9),
        ("year", 9, 10),
    ]
    assert spec.field("gender").vocab_size == 3  # F, M and the out-of-vocabulary bucket
    assert FeatureSpec.from_json(json.loads(json.dumps(spec.to_json()))) == spec


def test_rule_of_thumb():
    assert rule_of_thumb_dim(6040) == round(6 * 6040**0.25)
    with pytest.raises(ConfigError):
        rule_of_thumb_dim(0)


def test_spec_rejects_bad_fields():
    with pytest.raises(ConfigError, match="unique"):
        FeatureSpec((Field(name="a", kind="dense", embedding_dim=1), Field(name="a", kind="dense", embedding_dim=1)))
    with pytest.raises(ConfigError, match="kind"):
        Field(name="a", kind="sparse", embedding_dim=1)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="width 1"):
        Field(name="a", kind="dense", embedding_dim=3)


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


@pytest.mark.parametrize(
    "config", [ModelConfig(), ModelConfig(model="dcn-mix", expert_activation="tanh"), ModelConfig(model="dnn")]
)
def test_round_trip_gives_identical_predictions(tmp_path, config):
    torch.manual_seed(0)
    model = DCNModel(small_spec(), config).eval()
    with torch.no_grad():
        model.cross.layers[0].effective_weight() if model.cross else None
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    path = save_model(tmp_path / "m.safetensors", model, metrics={"test": {"auc": 0.8}}, history=[{"epoch": 1}])
    loaded = load_model(path)
    b = small_batch()
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(b.cat, b.dense, b.multi), model(b.cat, b.dense, b.multi))
    assert loaded.spec == model.spec and loaded.config == model.config
    assert loaded.meta["metrics"] == {"test": {"auc": 0.8}}
    assert loaded.meta["versions"]["torch"] == torch.__version__
    for k, v in model.initial_cross.items():
        torch.testing.assert_close(loaded.model.initial_cross[k], v)
    assert loaded.warnings == []
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]  # no temp file left


def _rewrite_metadata(data: bytes, **changes: str) -> bytes:
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    header["__metadata__"].update(changes)
    raw = json.dumps(header).encode()
    raw += b" " * ((8 - len(raw) % 8) % 8)
    return struct.pack("<Q", len(raw)) + raw + data[8 + n :]


def test_unknown_format_version_is_refused():
    data = model_to_bytes(DCNModel(small_spec(), ModelConfig()))
    bad = _rewrite_metadata(data, format_version=str(FORMAT_VERSION + 1))
    with pytest.raises(CheckpointError, match="unknown dcnviz format version '2'"):
        load_model(bad)


def test_metadata_that_does_not_match_tensors_is_refused():
    data = model_to_bytes(DCNModel(small_spec(), ModelConfig(cross_layers=2)))
    (n,) = struct.unpack("<Q", data[:8])
    meta = json.loads(json.loads(data[8 : 8 + n])["__metadata__"]["meta"])
    meta["model_config"]["cross_layers"] = 3
    with pytest.raises(CheckpointError, match="lacks tensors"):
        load_model(_rewrite_metadata(data, meta=json.dumps(meta)))
    meta["model_config"]["cross_layers"] = 2
    meta["model_config"]["hidden"] = [100, 100]
    with pytest.raises(CheckpointError, match="has shape"):
        load_model(_rewrite_metadata(data, meta=json.dumps(meta)))


def test_truncated_and_random_bytes_are_refused():
    data = model_to_bytes(DCNModel(small_spec(), ModelConfig()))
    with pytest.raises(CheckpointError, match="truncated|outside"):
        load_model(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="not a safetensors file"):
        load_model(b"\x00\x01")
    with pytest.raises(CheckpointError):
        load_model(bytes(range(256)) * 10)


def test_non_finite_weights_load_with_a_warning():
    model = DCNModel(small_spec(), ModelConfig())
    with torch.no_grad():
        model.cross.layers[0].linear.weight[0, 0] = float("nan")
    loaded = load_model(model_to_bytes(model))
    assert loaded.warnings and "NaN or Inf" in loaded.warnings[0]


def test_saved_file_gets_the_usual_mode(tmp_path):
    import os
    import stat

    path = save_model(tmp_path / "m.safetensors", DCNModel(small_spec(), ModelConfig()))
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask
