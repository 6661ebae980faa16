"""The common form of a cross network's weights, whatever library trained it.

Importers (``dcnviz.importers``) turn peer state dicts into :class:`CrossModelWeights`;
:func:`from_model` does the same for a dcnviz model. Analysis reads only this form.

Everything is in **paper orientation**: the layer computes ``W @ x`` with ``W[out, in]``; low-rank
factors satisfy W = U Vᵀ with U, V of shape (d, r); a mixture expert's linear part is U C Vᵀ.
Arrays are NumPy float64 (analysis precision; files are float32 at most).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from dcnviz.spec import Block

if TYPE_CHECKING:
    from dcnviz.model import DCNModel

LayerKind = str  # full | lowrank | mixture | vector


@dataclass
class ExpertWeights:
    """One low-rank expert: linear part U C Vᵀ (or U Vᵀ without C)."""

    U: np.ndarray  # (d, r)
    V: np.ndarray  # (d, r)
    C: np.ndarray | None = None  # (r, r)

    def weight(self) -> np.ndarray:
        core = self.U if self.C is None else self.U @ self.C
        return core @ self.V.T  # (d, d)


@dataclass
class CrossLayerWeights:
    """One cross layer in common form."""

    kind: LayerKind  # full | lowrank | mixture | vector
    d: int
    W: np.ndarray | None = None  # full: (d, d)
    U: np.ndarray | None = None  # lowrank: (d, r)
    V: np.ndarray | None = None  # lowrank: (d, r)
    w: np.ndarray | None = None  # vector (DCN-V1): (d,), W = 1 wᵀ
    experts: list[ExpertWeights] = field(default_factory=list)  # mixture
    activation: str = "identity"  # mixture expert nonlinearity g (identity | relu | tanh | hard_tanh)
    b: np.ndarray | None = None  # (d,)
    bias_outside: bool = False  # DCN-V1 adds b outside the product
    gates: np.ndarray | None = None  # (K, d) gate weights, if any
    gate_bias: np.ndarray | None = None  # (K,)
    gate_kind: str | None = None  # softmax | sigmoid | constant
    gates_shared: bool = False  # one set of gates for all layers (torchrec, DeepCTR-Torch, FuxiCTR, RecBole)
    notes: list[str] = field(default_factory=list)  # e.g. "TFRS diag_scale=0.1 added to W"

    @property
    def rank_bound(self) -> int:
        """Largest possible rank of the effective W: d (full), r (low rank), Σ r_k (mixture), 1 (vector)."""
        if self.kind == "lowrank" and self.U is not None:
            return int(self.U.shape[1])
        if self.kind == "mixture":
            return min(self.d, sum(int(e.U.shape[1]) for e in self.experts))
        if self.kind == "vector":
            return 1
        return self.d

    @property
    def linear_part_only(self) -> bool:
        """True when a nonlinear expert activation makes U C Vᵀ only the expert's linear part."""
        return self.kind == "mixture" and self.activation != "identity"

    def expert_weights(self) -> list[np.ndarray]:
        return [e.weight() for e in self.experts]

    def effective_weight(self) -> np.ndarray:
        """W (d, d): full W; U Vᵀ; mean of experts' linear parts (uniform gates); 1 wᵀ."""
        if self.kind == "full" and self.W is not None:
            return self.W
        if self.kind == "lowrank" and self.U is not None and self.V is not None:
            return self.U @ self.V.T
        if self.kind == "mixture" and self.experts:
            return np.mean(self.expert_weights(), axis=0)
        if self.kind == "vector" and self.w is not None:
            return np.broadcast_to(self.w[None, :], (self.d, self.d)).copy()
        raise ValueError(f"layer of kind {self.kind!r} lacks the arrays it needs")


@dataclass
class CrossModelWeights:
    """A model's cross network in common form, with its feature blocks."""

    format: str  # dcnviz | torchrec | deepctr | fuxictr | recbole | tfrs
    d: int  # width of x0
    layers: list[CrossLayerWeights]
    blocks: list[Block]  # x0 slices in x0 order (one block "x0" when unknown)
    detected: str = ""  # human-readable description of what was found, e.g. "DeepCTR-Torch DCNMix"
    initial_layers: list[CrossLayerWeights] | None = None  # the initial matrices (saved or drawn)
    init_label: str = ""  # e.g. "saved initial weights" or "drawn from N(0, 1) as RecBole inits (not the real init)"
    initial_saved: bool = False  # initial_layers are this model's real initial weights (not a drawn stand-in)
    warnings: list[str] = field(default_factory=list)


def _np(t: object) -> np.ndarray:
    import torch

    if isinstance(t, np.ndarray):
        return t.astype(np.float64)  # a copy, also of read-only views into a file's bytes
    assert isinstance(t, torch.Tensor)
    return t.detach().to("cpu", dtype=torch.float64).numpy()


def _layer_from_module(layer: object, state: Mapping[str, object] | None = None) -> CrossLayerWeights:
    """Common form of one dcnviz cross layer; ``state`` overrides its parameters (initial weights)."""
    from dcnviz.layers import FullRankCross, LowRankCross, MixtureCross, VectorCross

    def p(name: str, current: object) -> np.ndarray:
        return _np(state[name]) if state is not None else _np(current)

    if isinstance(layer, FullRankCross):
        b = layer.linear.bias
        return CrossLayerWeights(
            kind="full",
            d=layer.d,
            W=p("linear.weight", layer.linear.weight),
            b=None if b is None else p("linear.bias", b),
        )
    if isinstance(layer, LowRankCross):
        b = layer.U.bias
        return CrossLayerWeights(
            kind="lowrank",
            d=layer.d,
            U=p("U.weight", layer.U.weight),
            V=p("V.weight", layer.V.weight).T.copy(),
            b=None if b is None else p("U.bias", b),
        )
    if isinstance(layer, MixtureCross):
        U, V = p("U", layer.U), p("V", layer.V)
        C = p("C", layer.C) if layer.C is not None else None
        experts = [ExpertWeights(U=U[k], V=V[k], C=None if C is None else C[k]) for k in range(layer.K)]
        return CrossLayerWeights(
            kind="mixture",
            d=layer.d,
            experts=experts,
            activation=layer.activation,
            b=None if layer.b is None else p("b", layer.b),
            gates=None if layer.gate is None else p("gate.weight", layer.gate.weight),
            gate_kind=layer.gate_kind,
        )
    if isinstance(layer, VectorCross):
        return CrossLayerWeights(
            kind="vector",
            d=layer.d,
            w=p("w", layer.w),
            b=None if layer.b is None else p("b", layer.b),
            bias_outside=True,
        )
    raise TypeError(f"not a dcnviz cross layer: {type(layer).__name__}")


def from_model(
    model: DCNModel,
    cross_state: Mapping[str, object] | None = None,
    initial_cross: Mapping[str, object] | None = None,
) -> CrossModelWeights:
    """Common form of a dcnviz model, with its saved initial cross weights as the Fig. 3a baseline.

    ``cross_state`` and ``initial_cross`` (the cross network's state dicts, keys ``layers.<l>.<name>``,
    tensors or arrays) replace the model's own parameters: with both, ``model`` may be a shape-only
    skeleton built on the meta device, as :mod:`dcnviz.checkpoint` checks files with.
    """
    layers = model.cross_layers()

    def layer_state(state: Mapping[str, object], i: int) -> dict[str, object]:
        prefix = f"layers.{i}."
        return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}

    if cross_state is None:
        current = [_layer_from_module(layer) for layer in layers]
    else:
        current = [_layer_from_module(layer, layer_state(cross_state, i)) for i, layer in enumerate(layers)]
    init_state = model.initial_cross if initial_cross is None else initial_cross
    initial = None
    if init_state and layers:
        initial = [_layer_from_module(layer, layer_state(init_state, i)) for i, layer in enumerate(layers)]
    c = model.config
    desc = f"dcnviz {c.model}"
    if layers:
        desc += f" ({len(layers)} {c.cross_kind} cross layer{'s' if len(layers) > 1 else ''}"
        if c.cross_kind in ("lowrank", "mixture"):
            desc += f", r={c.rank}"
        if c.cross_kind == "mixture":
            desc += f", K={c.experts}, gate={c.gate}, g={c.expert_activation}"
        desc += ")"
    return CrossModelWeights(
        format="dcnviz",
        d=model.d,
        layers=current,
        blocks=model.spec.blocks(),
        detected=desc,
        initial_layers=initial,
        init_label="saved initial weights" if initial is not None else "",
        initial_saved=initial is not None,
    )
