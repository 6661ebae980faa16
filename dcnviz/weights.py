"""The common form of a cross network's weights, whatever library trained it.

Importers (``dcnviz.importers``) turn peer state dicts into :class:`CrossModelWeights`;
:func:`from_model` does the same for a dcnviz model. Analysis reads only this form.

One small frozen class per layer kind, each checking its shapes once, when it is made
(:class:`CheckpointError` naming the array and the shapes):

* :class:`FullRankWeights` — W (d, d), Eq. (1);
* :class:`LowRankWeights` — W = U Vᵀ with U, V (d, r), Eq. (2);
* :class:`MixtureWeights` — K experts (:class:`ExpertWeights`), expert k's linear part U_k C_k Vᵀ_k, Eq. (3)/(4);
* :class:`VectorWeights` — DCN-V1's W = 1 wᵀ, w (d,).

:class:`CrossLayerWeights` is their common base: ``kind`` (a :data:`LayerKind`), ``factors`` (A, B with
W = A Bᵀ), ``rank_bound``, ``effective_weight()`` and ``linear_part_only``. Code that needs a kind's own
arrays dispatches on the class (``isinstance(layer, MixtureWeights)``), never on the ``kind`` string.

Everything is in **paper orientation**: the layer computes ``W @ x`` with ``W[out, in]``; low-rank
factors satisfy W = U Vᵀ with U, V of shape (d, r). Arrays are NumPy float64 (analysis precision;
files are float32 at most).

>>> layer = LowRankWeights(d=3, U=np.ones((3, 1)), V=np.array([[1.0], [2.0], [0.0]]))
>>> layer.kind, layer.rank_bound, layer.effective_weight()[0].tolist()
('lowrank', 1, [1.0, 2.0, 0.0])
>>> LowRankWeights(d=3, U=np.ones((3, 1)), V=np.ones((2, 1)))
Traceback (most recent call last):
...
dcnviz.errors.CheckpointError: low-rank cross layer: U and V must both be (d, r) with d=3; got (3, 1) and (2, 1)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np

from dcnviz.errors import CheckpointError
from dcnviz.spec import Block

if TYPE_CHECKING:
    from dcnviz.model import DCNModel

LayerKind = Literal["full", "lowrank", "mixture", "vector"]
LAYER_KINDS: tuple[LayerKind, ...] = ("full", "lowrank", "mixture", "vector")
Gate = Literal["softmax", "sigmoid", "constant"]
GATES: tuple[Gate, ...] = ("softmax", "sigmoid", "constant")
Activation = Literal["identity", "relu", "tanh", "hard_tanh"]
ACTIVATIONS: tuple[Activation, ...] = ("identity", "relu", "tanh", "hard_tanh")

#: How each kind is named in messages.
KIND_WORDS: dict[LayerKind, str] = {
    "full": "full-rank",
    "lowrank": "low-rank",
    "mixture": "mixture",
    "vector": "DCN-V1",
}


def _array(owner: object, name: str, a: Any, ndim: int, what: str) -> np.ndarray:
    """``a`` as a float64 array of ``ndim`` dimensions (the same object when it already is one)."""
    if a is None:
        raise CheckpointError(f"{what} lacks its {name!r} array")
    try:
        out = np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError):
        raise CheckpointError(f"{what}: {name} must be numeric; got {type(a).__name__}") from None
    if out.ndim != ndim:
        raise CheckpointError(f"{what}: {name} must have {ndim} dimension(s); got shape {tuple(out.shape)}")
    object.__setattr__(owner, name, out)  # frozen: set once, here
    return out


@dataclass(frozen=True, kw_only=True, eq=False)
class ExpertWeights:
    """One low-rank expert of a mixture: linear part U C Vᵀ (or U Vᵀ without C)."""

    U: np.ndarray  # (d, r)
    V: np.ndarray  # (d, r)
    C: np.ndarray | None = None  # (r, r)

    def __post_init__(self) -> None:
        U = _array(self, "U", self.U, 2, "mixture expert")
        V = _array(self, "V", self.V, 2, "mixture expert")
        if U.shape != V.shape:
            raise CheckpointError(
                f"mixture expert: U and V must both be (d, r); got {tuple(U.shape)} and {tuple(V.shape)}"
            )
        if self.C is not None:
            C = _array(self, "C", self.C, 2, "mixture expert")
            if C.shape != (U.shape[1], U.shape[1]):
                raise CheckpointError(f"mixture expert: C must be (r, r) with r={U.shape[1]}; got {tuple(C.shape)}")

    @property
    def r(self) -> int:
        return int(self.U.shape[1])

    @property
    def factors(self) -> tuple[np.ndarray, np.ndarray]:
        """(U C, V), each (d, r), with the expert's linear part = (U C) Vᵀ."""
        return (self.U if self.C is None else self.U @ self.C), self.V

    def weight(self) -> np.ndarray:
        A, B = self.factors
        return A @ B.T  # (d, d)


@dataclass(frozen=True, kw_only=True, eq=False)
class CrossLayerWeights:
    """One cross layer in common form: the base of the four kinds (never made itself)."""

    kind: ClassVar[LayerKind]
    bias_outside: ClassVar[bool] = False  # DCN-V1 adds b outside the product x0 ⊙ (W x)
    d: int  # width of x0
    b: np.ndarray | None = None  # (d,)
    notes: tuple[str, ...] = ()  # e.g. "W = Keras kernelᵀ"

    def __post_init__(self) -> None:
        kind = getattr(type(self), "kind", None)
        if kind is None:
            raise TypeError("CrossLayerWeights is the common base; make a FullRankWeights, LowRankWeights, ...")
        what = f"{KIND_WORDS[kind]} cross layer"
        if isinstance(self.d, bool) or not isinstance(self.d, int | np.integer) or self.d < 1:
            raise CheckpointError(f"{what}: d must be an integer >= 1; got d={self.d!r}")
        object.__setattr__(self, "d", int(self.d))
        object.__setattr__(self, "notes", tuple(str(n) for n in self.notes))
        if self.b is not None:
            b = _array(self, "b", self.b, 1, what)
            if b.shape != (self.d,):
                raise CheckpointError(f"{what}: b must have {self.d} entries; got {b.size}")
        self._check(what)

    def _check(self, what: str) -> None:
        """Check this kind's own arrays (each kind overrides it)."""

    @property
    def factors(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(A, B), each (d, R), with W = A Bᵀ; None when W is kept whole (full rank)."""
        raise NotImplementedError

    @property
    def rank_bound(self) -> int:
        """Largest possible rank of the effective W: d (full), r (low rank), min(d, Σ r_k) (mixture), 1 (vector)."""
        f = self.factors
        return self.d if f is None else min(self.d, int(f[0].shape[1]))

    @property
    def linear_part_only(self) -> bool:
        """True when a nonlinear expert activation makes U C Vᵀ only the expert's linear part."""
        return False

    def effective_weight(self) -> np.ndarray:
        """W (d, d): full W; U Vᵀ; mean of experts' linear parts (uniform gates); 1 wᵀ."""
        f = self.factors
        assert f is not None  # FullRankWeights overrides this method
        return f[0] @ f[1].T

    def arrays(self) -> list[np.ndarray]:
        """The arrays W is made of, and b (for checks such as finiteness; not the gates)."""
        return [] if self.b is None else [self.b]


@dataclass(frozen=True, kw_only=True, eq=False)
class FullRankWeights(CrossLayerWeights):
    """Full-rank layer, Eq. (1): W (d, d)."""

    kind: ClassVar[LayerKind] = "full"
    W: np.ndarray  # (d, d)

    def _check(self, what: str) -> None:
        W = _array(self, "W", self.W, 2, what)
        if W.shape != (self.d, self.d):
            raise CheckpointError(f"{what}: W must be ({self.d}, {self.d}); got {tuple(W.shape)}")

    @property
    def factors(self) -> None:
        return None

    def effective_weight(self) -> np.ndarray:
        return self.W

    def arrays(self) -> list[np.ndarray]:
        return [self.W, *super().arrays()]


@dataclass(frozen=True, kw_only=True, eq=False)
class LowRankWeights(CrossLayerWeights):
    """Low-rank layer, Eq. (2): W = U Vᵀ with U, V (d, r)."""

    kind: ClassVar[LayerKind] = "lowrank"
    U: np.ndarray  # (d, r)
    V: np.ndarray  # (d, r)

    def _check(self, what: str) -> None:
        U = _array(self, "U", self.U, 2, what)
        V = _array(self, "V", self.V, 2, what)
        if U.shape != V.shape or U.shape[0] != self.d:
            raise CheckpointError(
                f"{what}: U and V must both be (d, r) with d={self.d}; got {tuple(U.shape)} and {tuple(V.shape)}"
            )

    @property
    def factors(self) -> tuple[np.ndarray, np.ndarray]:
        return self.U, self.V

    def arrays(self) -> list[np.ndarray]:
        return [self.U, self.V, *super().arrays()]


@dataclass(frozen=True, kw_only=True, eq=False)
class VectorWeights(CrossLayerWeights):
    """DCN-V1 layer: x_{l+1} = x0 (x_lᵀ w) + b + x_l, i.e. W = 1 wᵀ with b outside the product."""

    kind: ClassVar[LayerKind] = "vector"
    bias_outside: ClassVar[bool] = True
    w: np.ndarray  # (d,)

    def _check(self, what: str) -> None:
        w = np.asarray(self.w, dtype=np.float64).reshape(-1) if self.w is not None else None
        w = _array(self, "w", w, 1, what)
        if w.shape != (self.d,):
            raise CheckpointError(f"{what}: w must have {self.d} entries; got {w.size}")

    @property
    def factors(self) -> tuple[np.ndarray, np.ndarray]:
        return np.ones((self.d, 1)), self.w[:, None]  # W = 1 wᵀ

    def arrays(self) -> list[np.ndarray]:
        return [self.w, *super().arrays()]


@dataclass(frozen=True, kw_only=True, eq=False)
class MixtureWeights(CrossLayerWeights):
    """Mixture of K low-rank experts, Eq. (3), with the nonlinear experts of Eq. (4) when g is not the identity."""

    kind: ClassVar[LayerKind] = "mixture"
    experts: tuple[ExpertWeights, ...]
    activation: Activation = "identity"  # expert nonlinearity g
    gates: np.ndarray | None = None  # (K, d) gate weights, if any
    gate_bias: np.ndarray | None = None  # (K,)
    gate_kind: Gate | None = None
    gates_shared: bool = False  # one set of gates for all layers (torchrec, DeepCTR-Torch, FuxiCTR, RecBole)

    def _check(self, what: str) -> None:
        experts = tuple(self.experts)
        object.__setattr__(self, "experts", experts)
        if not experts:
            raise CheckpointError(f"{what} has no experts")
        for k, e in enumerate(experts):
            if not isinstance(e, ExpertWeights):
                raise CheckpointError(f"{what}: expert {k} is a {type(e).__name__}, not ExpertWeights")
            if e.U.shape[0] != self.d:
                raise CheckpointError(
                    f"{what} expert {k}: U and V must both be (d, r) with d={self.d}; got {tuple(e.U.shape)}"
                )
        K = len(experts)
        if self.gates is not None:
            g = _array(self, "gates", self.gates, 2, what)
            if g.shape != (K, self.d):
                raise CheckpointError(f"{what}: gates must be ({K}, {self.d}); got {tuple(g.shape)}")
        if self.gate_bias is not None:
            gb = _array(self, "gate_bias", self.gate_bias, 1, what)
            if gb.shape != (K,):
                raise CheckpointError(f"{what}: gate_bias must have {K} entries; got {gb.size}")

    @property
    def K(self) -> int:
        return len(self.experts)

    @property
    def linear_part_only(self) -> bool:
        return self.activation != "identity"

    def weighted_factors(self, a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(A, B) with A Bᵀ = Σ_k a_k U_k C_k V_kᵀ: [a_1 U_1 C_1, …, a_K U_K C_K] and [V_1, …, V_K], each (d, Σ r_k)."""
        fs = [e.factors for e in self.experts]
        A = np.concatenate([ak * Ak for ak, (Ak, _) in zip(a, fs, strict=True)], axis=1)
        B = np.concatenate([Bk for _, Bk in fs], axis=1)
        return A, B

    @property
    def factors(self) -> tuple[np.ndarray, np.ndarray]:
        """Factors of the mean of the experts' linear parts (the effective W under uniform gates)."""
        return self.weighted_factors(np.full(self.K, 1.0 / self.K))

    def expert_weights(self) -> list[np.ndarray]:
        return [e.weight() for e in self.experts]

    def arrays(self) -> list[np.ndarray]:
        return [a for e in self.experts for a in (e.U, e.V, e.C) if a is not None] + super().arrays()


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

    @property
    def has_mixture(self) -> bool:
        """True when a cross layer is a mixture of experts (whose gates can weight them)."""
        return any(isinstance(layer, MixtureWeights) for layer in self.layers)


#: A cross layer's parameter by name (as in its state dict) given its current value: float64 NumPy.
Param = Callable[[str, Any], np.ndarray]


def _np(t: object) -> np.ndarray:
    import torch

    if isinstance(t, np.ndarray):
        return t.astype(np.float64)  # a copy, also of read-only views into a file's bytes
    assert isinstance(t, torch.Tensor)
    return t.detach().to("cpu", dtype=torch.float64).numpy()


def from_model(
    model: DCNModel,
    cross_state: Mapping[str, object] | None = None,
    initial_cross: Mapping[str, object] | None = None,
) -> CrossModelWeights:
    """Common form of a dcnviz model, with its saved initial cross weights as the Fig. 3a baseline.

    ``cross_state`` and ``initial_cross`` (the cross network's state dicts, keys ``layers.<l>.<name>``,
    tensors or arrays) replace the model's own parameters: with both, ``model`` may be a shape-only
    skeleton built on the meta device, as :mod:`dcnviz.checkpoint` checks files with. Each layer class
    of :mod:`dcnviz.layers` makes its own common form (``common_form``).
    """
    layers = model.cross_layers()

    def param(state: Mapping[str, object] | None, i: int) -> Param:
        if state is None:
            return lambda name, current: _np(current)
        prefix = f"layers.{i}."
        return lambda name, current: _np(state[prefix + name])

    current: list[CrossLayerWeights] = [layer.common_form(param(cross_state, i)) for i, layer in enumerate(layers)]
    init_state = model.initial_cross if initial_cross is None else initial_cross
    initial: list[CrossLayerWeights] | None = None
    if init_state and layers:
        initial = [layer.common_form(param(init_state, i)) for i, layer in enumerate(layers)]
    return CrossModelWeights(
        format="dcnviz",
        d=model.d,
        layers=current,
        blocks=model.spec.blocks(),
        detected=_describe(model, current),
        initial_layers=initial,
        init_label="saved initial weights" if initial is not None else "",
        initial_saved=initial is not None,
    )


def _describe(model: DCNModel, layers: list[CrossLayerWeights]) -> str:
    """E.g. "dcnviz dcn-mix (2 mixture cross layers, r=4, K=4, gate=softmax, g=identity)"."""
    c = model.config
    desc = f"dcnviz {c.model}"
    if layers:
        desc += f" ({len(layers)} {layers[0].kind} cross layer{'s' if len(layers) > 1 else ''}"
        if isinstance(layers[0], LowRankWeights | MixtureWeights):
            desc += f", r={c.rank}"
        if isinstance(layers[0], MixtureWeights):
            desc += f", K={c.experts}, gate={c.gate}, g={c.expert_activation}"
        desc += ")"
    return desc
