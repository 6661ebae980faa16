"""The FeatureSpec (dcnviz.spec): feature blocks in field order, the embedding-size rule of thumb, refused fields."""

from __future__ import annotations

import json

import pytest

from dcnviz.errors import ConfigError
from dcnviz.spec import FeatureSpec, Field, rule_of_thumb_dim
from tests.helpers.models import small_spec


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
