"""DCN-V2 model family: embedding layer → cross network and/or deep network → logit (paper §3).

Structures (§3.4): ``stacked`` feeds x0 to the cross network and its output to the deep network;
``parallel`` concatenates the cross and deep outputs. ``crossnet`` is the cross network alone and
``dnn`` the deep network alone. The prediction is σ(w_logitᵀ x_final).

Model names (the CLI's ``--model``):

* ``dcnv2``: full-rank cross layers (Eq. 1), low-rank (Eq. 2) when a rank is given;
* ``dcn-mix``: mixture of low-rank experts (Eq. 3, Eq. 4 with a nonlinear expert activation);
* ``dcn``: DCN-V1 vector cross layers (W = 1 wᵀ);
* ``crossnet``: the cross network alone (full/low-rank, or a mixture when ``experts`` is set);
* ``dnn``: no cross layers.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, cast

import torch
from torch import nn

from dcnviz.errors import ConfigError
from dcnviz.jsonconfig import JsonConfig, JsonList
from dcnviz.layers import (
    ACTIVATIONS,
    GATES,
    INITS,
    Activation,
    CrossLayer,
    CrossNetwork,
    Gate,
    Init,
    build_cross_layer,
    init_kernel_,
    truncated_normal,
)
from dcnviz.spec import FeatureSpec
from dcnviz.weights import LayerKind

ModelName = Literal["dcnv2", "dcn-mix", "dcn", "dnn", "crossnet"]
MODEL_NAMES: tuple[str, ...] = ("dcnv2", "dcn-mix", "dcn", "dnn", "crossnet")
STRUCTURES: tuple[str, ...] = ("stacked", "parallel")


@dataclass(frozen=True, kw_only=True)
class ModelConfig(JsonConfig):
    """Architecture of one model. Stored in model files as plain JSON."""

    _JSON_WHAT = "model config"
    _JSON_LISTS: ClassVar[dict[str, JsonList]] = {
        "hidden": JsonList(lambda h: _is_int(h), "hidden must be a list of ints; got {short}")
    }

    model: ModelName = "dcnv2"  # dcnv2 | dcn-mix | dcn | dnn | crossnet
    structure: str = (
        "parallel"  # stacked | parallel (ignored by dnn and crossnet); parallel was best on MovieLens (§7.3)
    )
    cross_layers: int = 2  # L_c
    rank: int | None = (
        None  # r: low rank for dcnv2/crossnet, per-expert rank for mixtures (None: full rank, or d/4 for mixtures)
    )
    experts: int | None = None  # K for mixtures (None: 4 for dcn-mix; crossnet without experts is not a mixture)
    gate: Gate = "softmax"  # softmax | sigmoid | constant
    expert_activation: Activation = "identity"  # g of Eq. (4): identity | relu | tanh | hard_tanh
    hidden: tuple[int, ...] = (256, 256)  # deep tower sizes
    dropout: float = 0.0  # dropout after each deep layer
    init: Init = "he_normal"  # he_normal | truncated_normal (kernels); biases start at zero

    def __post_init__(self) -> None:
        if self.model not in MODEL_NAMES:
            raise ConfigError(f"model must be one of {MODEL_NAMES}; got model={self.model!r}")
        if self.structure not in STRUCTURES:
            raise ConfigError(f"structure must be one of {STRUCTURES}; got structure={self.structure!r}")
        if self.model != "dnn" and self.cross_layers < 1:
            raise ConfigError(f"cross_layers must be >= 1; got cross_layers={self.cross_layers}")
        if self.rank is not None and self.rank < 1:
            raise ConfigError(f"rank must be >= 1; got rank={self.rank}")
        if self.experts is not None and self.experts < 1:
            raise ConfigError(f"experts must be >= 1; got experts={self.experts}")
        if self.gate not in GATES:
            raise ConfigError(f"gate must be one of {GATES}; got gate={self.gate!r}")
        if self.expert_activation not in ACTIVATIONS:
            raise ConfigError(
                f"expert_activation must be one of {ACTIVATIONS}; got expert_activation={self.expert_activation!r}"
            )
        if any(h < 1 for h in self.hidden):
            raise ConfigError(f"hidden sizes must be >= 1; got hidden={list(self.hidden)}")
        if self.model == "dnn" and not self.hidden:
            raise ConfigError("a dnn needs at least one hidden layer; got hidden=[]")
        if not (0.0 <= self.dropout < 1.0):
            raise ConfigError(f"dropout must be in [0, 1); got dropout={self.dropout}")
        if self.init not in INITS:
            raise ConfigError(f"init must be one of {INITS}; got init={self.init!r}")

    @property
    def cross_kind(self) -> LayerKind | None:
        """full | lowrank | mixture | vector, or None for a dnn."""
        if self.model == "dnn":
            return None
        if self.model == "dcn":
            return "vector"
        if self.model == "dcn-mix" or (self.model == "crossnet" and self.experts is not None):
            return "mixture"
        return "lowrank" if self.rank is not None else "full"

    @property
    def has_deep(self) -> bool:
        return self.model != "crossnet" and bool(self.hidden)

    def resolved(self, d: int) -> ModelConfig:
        """This config with defaults that depend on d filled in (stored in model files)."""
        kind = self.cross_kind
        rank, experts = self.rank, self.experts
        if kind == "mixture":
            experts = 4 if experts is None else experts
            rank = max(1, d // 4) if rank is None else rank
        if kind in ("lowrank", "mixture") and rank is not None and rank > d:
            raise ConfigError(f"rank must be in [1, d]; got rank={rank}, d={d}")
        return dataclasses.replace(self, rank=rank, experts=experts)

    @classmethod
    def from_json(cls, obj: Any) -> ModelConfig:
        kw = cls._json_lists(cls._json_object(obj))
        for key in ("cross_layers", "rank", "experts"):
            if kw.get(key) is not None and not _is_int(kw[key]):
                raise ConfigError(f"{key} must be an int; got {key}={str(kw[key])[:80]}")
        return cls._json_build(kw)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


class FeatureEmbedding(nn.Module):
    """Embedding layer (§3.1): x0 = [x_embed,1; …; x_embed,n; x_dense] in FeatureSpec order.

    Categorical fields look up one row; multivalent fields average the rows of their ids
    (padding -1 excluded); dense fields enter x0 as their normalised value.
    """

    def __init__(self, spec: FeatureSpec) -> None:
        super().__init__()
        self.spec = spec
        self.tables = nn.ModuleDict()
        shape_only = torch.empty(0).is_meta  # built under torch.device("meta") to check a file's shapes
        for f in spec.fields:
            if f.kind != "dense":
                if shape_only:  # skip nn.Embedding's normal_ init: on meta it imports torch._dynamo (~2 s)
                    table = nn.Embedding(
                        f.vocab_size, f.embedding_dim, _weight=torch.empty(f.vocab_size, f.embedding_dim)
                    )
                else:
                    table = nn.Embedding(f.vocab_size, f.embedding_dim)
                # TF feature-column default (the paper's TF v1 setup): truncated normal, std 1/√e.
                if not table.weight.is_meta:
                    with torch.no_grad():
                        table.weight.copy_(truncated_normal(table.weight.shape, f.embedding_dim**-0.5, None))
                self.tables[f.name] = table
        # Positions of each field within its input tensor.
        self._plan: list[tuple[str, str, int]] = []
        counters = {"categorical": 0, "multivalent": 0, "dense": 0}
        for f in spec.fields:
            self._plan.append((f.kind, f.name, counters[f.kind]))
            counters[f.kind] += 1

    def forward(self, cat: torch.Tensor, dense: torch.Tensor, multi: tuple[torch.Tensor, ...] = ()) -> torch.Tensor:
        parts = []
        for kind, name, j in self._plan:
            if kind == "categorical":
                parts.append(self.tables[name](cat[:, j]))  # (B, e)
            elif kind == "multivalent":
                ids = multi[j]  # (B, L)
                emb = self.tables[name](ids.clamp(min=0))  # (B, L, e)
                mask = (ids >= 0).unsqueeze(-1).to(emb.dtype)  # (B, L, 1)
                parts.append((emb * mask).sum(1) / mask.sum(1).clamp(min=1.0))  # (B, e)
            else:
                parts.append(dense[:, j : j + 1])  # (B, 1)
        return torch.cat(parts, dim=1)  # (B, d)


class DCNModel(nn.Module):
    """A DCN-family ranking model over a FeatureSpec.

    ``initial_cross`` holds a copy of the cross network's parameters as initialised, so the
    spectrum can later be compared with the initial matrix (Fig. 3a); model files store it.
    """

    def __init__(self, spec: FeatureSpec, config: ModelConfig) -> None:
        super().__init__()
        if not spec.fields:
            raise ConfigError("the FeatureSpec has no fields")
        d = spec.d
        config = config.resolved(d)
        self.spec, self.config, self.d = spec, config, d
        self.embedding = FeatureEmbedding(spec)
        kind = config.cross_kind
        self.cross: CrossNetwork | None = None
        if kind is not None:
            self.cross = CrossNetwork(
                [
                    build_cross_layer(
                        kind,
                        d,
                        rank=config.rank,
                        experts=config.experts or 1,
                        gate=config.gate,
                        activation=config.expert_activation,
                        init=config.init,
                    )
                    for _ in range(config.cross_layers)
                ]
            )
        self.deep: nn.Sequential | None = None
        deep_out = 0
        if config.has_deep:
            deep_in = d  # stacked: the cross output has width d too
            layers: list[nn.Module] = []
            for h in config.hidden:
                lin = nn.Linear(deep_in, h)
                init_kernel_(lin.weight, deep_in, config.init)
                nn.init.zeros_(lin.bias)
                layers += [lin, nn.ReLU()]
                if config.dropout > 0:
                    layers.append(nn.Dropout(config.dropout))
                deep_in = h
            self.deep = nn.Sequential(*layers)
            deep_out = deep_in
        if self.cross is None:
            final = deep_out
        elif self.deep is None:
            final = d
        elif config.structure == "stacked":
            final = deep_out
        else:
            final = d + deep_out
        self.logit = nn.Linear(final, 1)
        init_kernel_(self.logit.weight, final, config.init)
        nn.init.zeros_(self.logit.bias)
        self.initial_cross: dict[str, torch.Tensor] = (
            {k: v.detach().clone() for k, v in self.cross.state_dict().items()} if self.cross is not None else {}
        )

    def x0(self, cat: torch.Tensor, dense: torch.Tensor, multi: tuple[torch.Tensor, ...] = ()) -> torch.Tensor:
        return self.embedding(cat, dense, multi)

    def forward(self, cat: torch.Tensor, dense: torch.Tensor, multi: tuple[torch.Tensor, ...] = ()) -> torch.Tensor:
        """Logits (B,)."""
        return self.head(self.embedding(cat, dense, multi))

    def head(self, x0: torch.Tensor) -> torch.Tensor:
        """Logits (B,) from x0 (B, d): everything after the embedding layer (the trainer's fast path
        builds x0 itself)."""
        if self.cross is None:
            assert self.deep is not None
            x = self.deep(x0)
        elif self.deep is None:
            x = self.cross(x0)
        elif self.config.structure == "stacked":
            x = self.deep(self.cross(x0))
        else:
            x = torch.cat([self.cross(x0), self.deep(x0)], dim=1)
        return self.logit(x).squeeze(-1)

    def cross_layers(self) -> list[CrossLayer]:
        return cast("list[CrossLayer]", list(self.cross.layers)) if self.cross is not None else []

    def dense_param_count(self) -> int:
        """Parameters excluding embedding tables (the paper's Table 6 counts)."""
        emb = {id(p) for p in self.embedding.parameters()}
        return sum(p.numel() for p in self.parameters() if id(p) not in emb)
