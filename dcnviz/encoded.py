"""Encoded datasets: the tensors a model consumes, kept whole on one device.

``Encoded`` holds every row of a split as tensors so the trainer can draw batches by index
(no per-batch DataLoader or NumPy work). Column order follows the FeatureSpec:

* ``cat``   (N, n_categorical) int64 — the categorical fields in spec order, 0 = out of vocabulary;
* ``multi`` one (N, max_len) int64 tensor per multivalent field in spec order, padded with -1;
* ``dense`` (N, n_dense) float32 — normalised dense fields in spec order;
* ``y``     (N,) float32 labels in {0, 1} (or real targets for regression).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from dcnviz.spec import FeatureSpec


@dataclass
class Encoded:
    cat: torch.Tensor  # (N, n_cat) int64
    dense: torch.Tensor  # (N, n_dense) float32
    y: torch.Tensor  # (N,) float32
    multi: tuple[torch.Tensor, ...] = ()  # each (N, L_f) int64, -1 = padding

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def to(self, device: torch.device | str) -> Encoded:
        return Encoded(
            cat=self.cat.to(device),
            dense=self.dense.to(device),
            y=self.y.to(device),
            multi=tuple(m.to(device) for m in self.multi),
        )

    def index(self, idx: torch.Tensor | slice) -> Encoded:
        """Rows ``idx`` (an index tensor on the same device, or a slice)."""
        return Encoded(
            cat=self.cat[idx],
            dense=self.dense[idx],
            y=self.y[idx],
            multi=tuple(m[idx] for m in self.multi),
        )

    @property
    def device(self) -> torch.device:
        return self.y.device


@dataclass
class DatasetSplits:
    """Train / validation / test splits encoded with one FeatureSpec (vocabularies from train)."""

    spec: FeatureSpec
    train: Encoded
    val: Encoded
    test: Encoded
    info: dict[str, Any] = field(default_factory=dict)  # source, seed, row counts, protocol notes
