"""A small FeatureSpec (categorical, multivalent and dense fields) and a batch of it, for the spec, model
and model-file tests.
"""

from __future__ import annotations

import torch

from dcnviz.encoded import Encoded
from dcnviz.spec import FeatureSpec, Field


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
