r"""Does the heatmap tell the truth? Cross importance measured on data, and the rank-truncation curve.

The block norms of :mod:`dcnviz.analysis` (paper §7.6, Eq. 7, Fig. 6b) are read off the weights: a
bright ‖W_ij‖ says the model *could* use the cross "feature i × feature j". This module runs the model
on data and measures what the predictions depend on (torch side; the tables and sentences built from
its NumPy results live in :mod:`dcnviz.analysis`):

* **ablation** (k × k per cross layer l): Δ log loss when block (i, j) of layer l's effective W is set
  to 0, everything else unchanged (bias kept): Δ = logloss(ablated) − logloss(baseline), positive when
  the block helps. Rows = output feature i, columns = input feature j, as in the block norms.
* **contribution** (k × k): the root-mean-square over rows of ‖x0_i ⊙ (W_ij x_l,j)‖₂, the size of
  what block (i, j) adds to layer l's cross term x0 ⊙ (W x_l + b) at its input x_l.
* **rank curve**: AUC and log loss with every cross layer's W replaced by its best rank-r
  approximation (truncated SVD), **without retraining** (the paper's Fig. 5b retrains a model at each
  r, so this curve bounds from above the rank a retrained model needs). A layer at r ≥ its rank bound
  is left untouched, so the last point (the largest bound) is the baseline exactly.
* **one row**: the same ablation for one example, as Δ logit (ablated − baseline).

Effective W per layer kind (``dcnviz.layers``): full W (Eq. 1); U Vᵀ (Eq. 2); DCN-V1 1 wᵀ; a mixture
(Eq. 3) is handled expert by expert: the ablation zeroes block (i, j) of every W_k = U_k V_kᵀ and the
contribution is the per-row gated sum Σ_k G_k(x_l) x0_i ⊙ (W_k,ij x_l,j). Nonlinear experts (Eq. 4)
have no matrix to take a block of: their ablation, contribution and rank curve are ``None`` with a note.

**How it stays fast.** Zeroing block (i, j) of layer l changes x_{l+1} only in slot i, by
δ = −x0_i ⊙ (W_ij x_l,j) = −T_j[slot i] with T_j = x0 ⊙ (W[:, slot j] x_l,j); so one pass over the
cached activations gives the k partial products T_j, and with them every contribution and every δ.
The layers before l and (parallel structure) the deep tower cannot change and are reused. After
layer l the network is affine in x_{l+1} whenever the remaining cross layers are full, low-rank or
DCN-V1 and the logit reads x_L linearly (parallel structure, or the cross network alone): then
Δ logit = g_{l+1} · δ exactly, with the adjoint g_L = w_logit[:d] and
g_m = g_{m+1} + A_mᵀ (x0 ⊙ g_{m+1}) (A_m the layer's W; the residual term gives g_{m+1}), one
(B, d) × (d, d) product per layer for all k² ablations together. A mixture layer right after l is
handled through its factors (its gates see x + δ). Everything else (a stacked deep tower, a mixture
deeper down) reruns the rest of the network on all k ablations of a column at once, in row chunks.
:func:`naive_ablation` is the per-block reference the tests compare with.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from dcnviz import analysis as A
from dcnviz.encoded import Encoded
from dcnviz.errors import ConfigError
from dcnviz.finite import finite_list, finite_or_none
from dcnviz.layers import FullRankCross, LowRankCross, MixtureCross, VectorCross
from dcnviz.model import DCNModel
from dcnviz.spec import Block, FeatureSpec
from dcnviz.train import auc_score, log_loss
from dcnviz.weights import from_model

DEFAULT_MAX_ROWS = 20_000  # rows of the split used (the first N, in split order)
EVAL_BATCH = 65_536  # rows per forward pass: the default of ``train.predict_logits`` (so the baseline is evaluate's)
_WORK_FLOATS = 1 << 23  # temporaries of the generic path are kept under ~32 MB of float32 per chunk
SPLITS: tuple[str, ...] = ("val", "test")

NONLINEAR_NOTE = (
    "nonlinear experts (Eq. 4): an expert U_k g(C_k g(V_kᵀ x)) is not a matrix, so block (i, j) of its W is not "
    "defined and neither are its ablation and contribution"
)
NONLINEAR_RANK_NOTE = (
    "nonlinear experts (Eq. 4): the experts are not matrices, so there is no rank-r truncation of them"
)

Progress = Callable[[float, str], None]  # (fraction done in [0, 1], what is being computed)


# --------------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True, eq=False)
class LayerEffect:
    """Effect on predictions of one cross layer's blocks, with its block norms (k × k, rows = output feature i)."""

    index: int  # cross layer, from 0
    kind: str  # full | lowrank | mixture | vector
    block_norms: np.ndarray  # raw ‖W_ij‖_F, as ``inspect`` (a mixture: the uniform mean of its experts)
    ablation: np.ndarray | None  # Δ log loss when block (i, j) is zeroed; None where undefined or not asked
    contribution: np.ndarray | None  # RMS over rows of ‖x0_i ⊙ (W_ij x_l,j)‖₂
    note: str = ""  # why ablation/contribution are None


@dataclass(frozen=True)
class RankPoint:
    """AUC and log loss with every cross layer truncated to rank ``rank`` (without retraining)."""

    rank: int
    auc: float
    logloss: float


@dataclass(frozen=True, eq=False)
class RowEffect:
    """The ablation for one example: Δ logit (ablated − baseline) per layer, k × k (None where undefined)."""

    index: int  # row index within the split
    label: float
    score: float  # the model's predicted probability σ(logit)
    logit: float
    ablation: tuple[np.ndarray | None, ...]  # one entry per cross layer


@dataclass(frozen=True, eq=False)
class Explanation:
    """Everything ``python -m dcnviz explain`` prints (see :meth:`to_json`)."""

    split: str  # val | test
    rows: int  # rows used: the first ``rows`` of the split, in split order
    baseline: dict[str, float]  # {"auc", "logloss"} of the unchanged model on those rows
    blocks: tuple[Block, ...]  # feature blocks of x0
    layers: tuple[LayerEffect, ...]  # every cross layer
    rank_curve: tuple[RankPoint, ...] | None  # ascending rank; the last is the full rank (= baseline)
    note: str = ""  # why rank_curve is None
    row: RowEffect | None = None
    suggestion: A.SuggestedRank | None = None  # the rank suggestion read off rank_curve

    @property
    def names(self) -> list[str]:
        return A.unique_labels([b.name for b in self.blocks])

    def to_json(self) -> dict[str, Any]:
        """The ``explain --json`` object (non-finite numbers become null)."""
        out: dict[str, Any] = {
            "split": self.split,
            "rows": self.rows,
            "baseline": {
                "auc": finite_or_none(self.baseline["auc"]),
                "logloss": finite_or_none(self.baseline["logloss"]),
            },
            "features": [{"name": b.name, "start": int(b.start), "stop": int(b.stop)} for b in self.blocks],
            "layers": [_layer_json(le) for le in self.layers],
            "rank_curve": None
            if self.rank_curve is None
            else [
                {"rank": p.rank, "auc": finite_or_none(p.auc), "logloss": finite_or_none(p.logloss)}
                for p in self.rank_curve
            ],
        }
        if self.note:
            out["note"] = self.note
        if self.suggestion is not None:
            out["suggested_rank"] = {
                "rank": self.suggestion.rank,
                "basis": self.suggestion.basis,
                "text": self.suggestion.text,
            }
        if self.row is not None:
            r = self.row
            out["row"] = {
                "index": r.index,
                "label": finite_or_none(r.label),
                "score": finite_or_none(r.score),
                "logit": finite_or_none(r.logit),
                "ablation": [None if a is None else finite_list(a) for a in r.ablation],
            }
        return out


def _layer_json(le: LayerEffect) -> dict[str, Any]:
    out: dict[str, Any] = {
        "index": le.index,
        "kind": le.kind,
        "ablation": None if le.ablation is None else finite_list(le.ablation),
        "contribution": None if le.contribution is None else finite_list(le.contribution),
        "block_norms": finite_list(le.block_norms),
    }
    if le.note:
        out["note"] = le.note
    return out


# --------------------------------------------------------------------------------------------------
# Checks and defaults


def check_explainable(model: DCNModel) -> None:
    """ConfigError unless the model has cross layers (a ``dnn`` has no W to ablate or truncate)."""
    if model.cross is None or not model.cross_layers():
        raise ConfigError(
            f"this model ({model.config.model}) has no cross layers, so there are no blocks to ablate and no W to "
            "truncate; explain needs a DCN model (dcnv2, dcn-mix, dcn or crossnet)"
        )


def rank_bound(layer: torch.nn.Module) -> int:
    """The largest rank a layer's W can have, as the rank curve counts it: d (full), r (low rank), each
    expert's r (mixture), 1 (DCN-V1)."""
    if isinstance(layer, FullRankCross):
        return layer.d
    if isinstance(layer, LowRankCross | MixtureCross):
        return layer.r
    if isinstance(layer, VectorCross):
        return 1
    raise ConfigError(f"not a dcnviz cross layer: {type(layer).__name__}")


def default_ranks(largest: int) -> list[int]:
    """1, 2, 4, … below the largest rank bound, then the largest bound.

    >>> default_ranks(180)
    [1, 2, 4, 8, 16, 32, 64, 128, 180]
    >>> default_ranks(1), default_ranks(4)
    ([1], [1, 2, 4])
    """
    out, r = [], 1
    while r < largest:
        out.append(r)
        r *= 2
    return [*out, largest]


def resolve_ranks(ranks: Sequence[int] | None, largest: int) -> list[int]:
    """The ranks of the curve: the default ones, or ``ranks`` (each in [1, largest]) ascending, with the largest
    bound appended (so the curve always ends at full rank)."""
    if ranks is None:
        return default_ranks(largest)
    out = set()
    for r in ranks:
        if isinstance(r, bool) or not isinstance(r, int | np.integer) or not 1 <= int(r) <= largest:
            raise ConfigError(
                f"ranks must be integers in [1, {largest}] (the largest rank bound of this model's cross layers); "
                f"got {r!r}"
            )
        out.add(int(r))
    out.add(largest)
    return sorted(out)


def resolve_layers(layers: Sequence[int] | None, n: int) -> list[int]:
    """Cross-layer indices to ablate (all by default), each in [0, n)."""
    if layers is None:
        return list(range(n))
    out = []
    for i in layers:
        if isinstance(i, bool) or not isinstance(i, int | np.integer) or not 0 <= int(i) < n:
            raise ConfigError(f"layer indices must be in [0, {n}) for this model's {n} cross layers; got {i!r}")
        if int(i) not in out:
            out.append(int(i))
    return sorted(out)


# --------------------------------------------------------------------------------------------------
# The forward pass, kept


@dataclass
class _Chunk:
    """Activations of one batch of rows (at most EVAL_BATCH), computed as ``DCNModel.head`` does."""

    x0: torch.Tensor  # (B, d)
    xs: list[torch.Tensor]  # L + 1 tensors (B, d): x_0 … x_L (x_l is layer l's input; x_L the cross output)
    rest: torch.Tensor | None  # (B,) logit − w_logit[:d] · x_L when the readout is linear in x_L (never changes)
    z: torch.Tensor  # (B,) logits
    y: torch.Tensor  # (B,) labels


def _forward(model: DCNModel, rows: Encoded) -> list[_Chunk]:
    assert model.cross is not None
    layers = model.cross_layers()
    out = []
    for start in range(0, len(rows), EVAL_BATCH):
        part = rows.index(slice(start, start + EVAL_BATCH))
        x0 = model.x0(part.cat, part.dense, part.multi)  # (B, d)
        xs, x = [x0], x0
        for layer in layers:
            x = layer(x0, x)  # (B, d), as CrossNetwork.forward
            xs.append(x)
        rest = None
        w, bias = model.logit.weight[0], model.logit.bias  # (final,), (1,)
        if model.deep is None:
            z = model.logit(x)
            rest = bias.expand(x.shape[0])
        elif model.config.structure == "stacked":
            z = model.logit(model.deep(x))
        else:
            deep = model.deep(x0)  # (B, h)
            z = model.logit(torch.cat([x, deep], dim=1))
            rest = deep @ w[model.d :] + bias  # (B,)
        out.append(_Chunk(x0=x0, xs=xs, rest=rest, z=z.squeeze(-1), y=part.y))
    return out


def _tail_logits(model: DCNModel, xL: torch.Tensor, c: _Chunk) -> torch.Tensor:
    """Logits from a changed cross output x_L (B, d): the deep tower of a parallel model is reused."""
    if c.rest is not None:
        return xL @ model.logit.weight[0, : model.d] + c.rest
    assert model.deep is not None
    return model.logit(model.deep(xL)).squeeze(-1)


def _linear_readout(model: DCNModel) -> torch.Tensor | None:
    """w with logit = w · x_L + (terms that no cross ablation changes), or None (stacked: a deep tower follows)."""
    if model.deep is not None and model.config.structure == "stacked":
        return None
    return model.logit.weight[0, : model.d]  # (d,)


# --------------------------------------------------------------------------------------------------
# Per-layer pieces: the partial products T_j, adjoints, and the generic rerun


def _nonlinear(layer: torch.nn.Module) -> bool:
    return isinstance(layer, MixtureCross) and layer.C is not None


def _partial(layer: torch.nn.Module, x0: torch.Tensor, xl: torch.Tensor, sj: slice) -> torch.Tensor:
    """T_j = x0 ⊙ (W[:, slot j] x_l,j) (B, d): what input block j adds to every output slot of the cross term
    (a mixture: the per-row gated sum over its experts). Slot i of T_j is block (i, j)'s term."""
    xj = xl[:, sj]  # (B, e_j)
    if isinstance(layer, FullRankCross):
        y = F.linear(xj, layer.linear.weight[:, sj])  # (B, d)
    elif isinstance(layer, LowRankCross):
        y = F.linear(F.linear(xj, layer.V.weight[:, sj]), layer.U.weight)  # (B, r) → (B, d)
    elif isinstance(layer, VectorCross):
        return x0 * (xj @ layer.w[sj]).unsqueeze(-1)  # (B, d): x0 (w_jᵀ x_l,j)
    elif isinstance(layer, MixtureCross):
        B, K, r = xl.shape[0], layer.K, layer.r
        Vt = layer.V.transpose(1, 2).reshape(K * r, layer.d)  # (K r, d)
        h = F.linear(xj, Vt[:, sj]).view(B, K, r) * layer.gates(xl).unsqueeze(-1)  # (B, K, r): G_k V_k,jᵀ x_l,j
        Ucat = layer.U.permute(1, 0, 2).reshape(layer.d, K * r)  # (d, K r)
        y = F.linear(h.reshape(B, K * r), Ucat)  # (B, d)
    else:
        raise ConfigError(f"not a dcnviz cross layer: {type(layer).__name__}")
    return x0 * y


def _adjoint_step(layer: torch.nn.Module, x0: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """g_m from g_{m+1} for an affine layer x_{m+1} = x0 ⊙ (A x_m + b) [+ x_m]: g_m = [g] + Aᵀ (x0 ⊙ g)."""
    q = x0 * g  # (B, d)
    if isinstance(layer, FullRankCross):
        back = q @ layer.linear.weight  # (B, d) = (Wᵀ q)ᵀ
    elif isinstance(layer, LowRankCross):
        back = (q @ layer.U.weight) @ layer.V.weight  # (B, r) → (B, d)
    elif isinstance(layer, VectorCross):
        back = q.sum(dim=1, keepdim=True) * layer.w  # (B, d): w (1ᵀ q)
    else:
        raise ConfigError(f"no adjoint through {type(layer).__name__}")
    return back + g if layer.residual else back


def _affine(layer: torch.nn.Module) -> bool:
    return isinstance(layer, FullRankCross | LowRankCross | VectorCross)


class _Segments:
    """Sums over the slots of each feature block: (…, d) → (…, k)."""

    def __init__(self, blocks: Sequence[Block], d: int, like: torch.Tensor) -> None:
        widths = {b.stop - b.start for b in blocks}
        self.k = len(blocks)
        self.width = widths.pop() if len(widths) == 1 else None  # equal widths: a reshape and one sum
        self.S = torch.zeros(d, self.k, dtype=like.dtype, device=like.device)  # S[a, i] = 1 when slot a is in block i
        for i, b in enumerate(blocks):
            self.S[b.start : b.stop, i] = 1.0

    def __call__(self, P: torch.Tensor) -> torch.Tensor:
        if self.width is not None:
            return P.unflatten(-1, (self.k, self.width)).sum(-1)
        return P @ self.S.to(P.dtype)


class _Ablator:
    """Δ logit of every block ablation of one layer l, for one chunk of rows (see the module docstring)."""

    def __init__(self, model: DCNModel, blocks: Sequence[Block], li: int) -> None:
        self.model, self.blocks, self.li = model, list(blocks), li
        self.layers = model.cross_layers()
        self.w = _linear_readout(model)
        L = len(self.layers)
        after = self.layers[li + 1 :]
        self.mode = "generic"
        if self.w is not None and all(_affine(m) for m in after):
            self.mode = "adjoint"
        elif (
            self.w is not None
            and li + 1 < L
            and isinstance(self.layers[li + 1], MixtureCross)
            and not _nonlinear(self.layers[li + 1])
            and all(_affine(m) for m in self.layers[li + 2 :])
        ):
            self.mode = "mixture"

    def adjoint(self, c: _Chunk, m: int) -> torch.Tensor:
        """g_m (B, d): d logit / d x_m through the affine layers m … L−1 and the linear readout."""
        assert self.w is not None
        g = self.w.expand_as(c.x0)
        for k in range(len(self.layers) - 1, m - 1, -1):
            g = _adjoint_step(self.layers[k], c.x0, g)
        return g

    def deltas(self, c: _Chunk, tick: Callable[[int], None] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(Δz (B, k, k) float32, Σ_rows ‖T_j[slot i]‖² (k, k) float64) for this chunk; ``tick(j)`` before column j."""
        li, blocks = self.li, self.blocks
        layer, x0, xl = self.layers[li], c.x0, c.xs[li]
        B, k = x0.shape[0], len(blocks)
        seg = _Segments(blocks, x0.shape[1], x0)
        dz = torch.empty(B, k, k, dtype=x0.dtype, device=x0.device)
        sq = torch.empty(k, k, dtype=torch.float64)
        if self.mode == "adjoint":
            g = self.adjoint(c, li + 1)
        elif self.mode == "mixture":
            mix = _MixtureNext(self, c)
        for j, bj in enumerate(blocks):
            if tick is not None:
                tick(j)
            T = _partial(layer, x0, xl, slice(bj.start, bj.stop))  # (B, d)
            sq[:, j] = seg((T * T).sum(dim=0, dtype=torch.float64)).cpu()  # Σ_rows ‖T_j[slot i]‖² per i
            if self.mode == "adjoint":
                dz[:, :, j] = -seg(g * T)  # Δz_ij = g_{l+1} · δ_ij, δ_ij = −T_j[slot i]
            elif self.mode == "mixture":
                dz[:, :, j] = mix.deltas(T)
            else:
                dz[:, :, j] = self._rerun(c, T)
        return dz, sq

    def _rerun(self, c: _Chunk, T: torch.Tensor) -> torch.Tensor:
        """Δz (B, k) of the k ablations (i, j), i = 0…k−1, of one column j: rerun layers l+1… and the tail."""
        li, blocks, model = self.li, self.blocks, self.model
        B, d = c.x0.shape
        k = len(blocks)
        widest = max([d, *[m.out_features for m in (model.deep or []) if isinstance(m, torch.nn.Linear)]])
        step = max(1, _WORK_FLOATS // (k * widest))
        out = torch.empty(B, k, dtype=c.x0.dtype, device=c.x0.device)
        for s in range(0, B, step):
            rows = slice(s, s + step)
            x0 = c.x0[rows]
            b = x0.shape[0]
            x = c.xs[li + 1][rows].unsqueeze(0).repeat(k, 1, 1)  # (k, b, d): one copy per output block i
            for i, bi in enumerate(blocks):
                x[i, :, bi.start : bi.stop] -= T[rows, bi.start : bi.stop]
            x = x.reshape(k * b, d)
            x0k = x0.repeat(k, 1)  # (k b, d)
            for m in self.layers[li + 1 :]:
                x = m(x0k, x)
            if self.w is not None:  # the readout is linear in x_L
                out[rows] = ((x.view(k, b, d) - c.xs[-1][rows]) @ self.w).T  # (b, k)
            else:  # stacked: the deep tower on every ablated x_L
                assert model.deep is not None
                out[rows] = (model.logit(model.deep(x)).view(k, b) - c.z[rows]).T
        return out


class _MixtureNext:
    """Ablating layer l when layer l+1 is a linear mixture (Eq. 3) followed by affine layers and a linear readout.

    With x' = x + δ (x = x_{l+1}, δ = −T_j in slot i only), g = g_{l+2}, q = x0 ⊙ g, a_k = U_kᵀ q and
    h_k = V_kᵀ x, the change of the logit is exact:

        Δz = g · δ + Σ_k G_k(x') (a_k · h_k + q · b + a_k · V_kᵀ δ) − Σ_k G_k(x) (a_k · h_k + q · b),

    and a_k · V_kᵀ δ = Σ_{u ∈ slot i} (V_k a_k)_u δ_u, so with A = [V_k a_k]_k (B, K, d) kept, every output
    block i of a column j costs one (B, K, d) product and block sums — no (B, d) × (d, K r) product per ablation.
    The gate logits move by G_w δ, a block sum of G_w ⊙ δ.
    """

    def __init__(self, ab: _Ablator, c: _Chunk) -> None:
        self.ab = ab
        m: MixtureCross = ab.layers[ab.li + 1]  # type: ignore[assignment]
        self.m = m
        x0, x = c.x0, c.xs[ab.li + 1]
        B, K, r, d = x0.shape[0], m.K, m.r, m.d
        self.seg = _Segments(ab.blocks, d, x0)
        self.g = ab.adjoint(c, ab.li + 2)  # (B, d)
        q = x0 * self.g  # (B, d)
        a = (q @ m.U.permute(1, 0, 2).reshape(d, K * r)).view(B, K, r)  # (B, K, r): a_k = U_kᵀ q
        h = F.linear(x, m.V.transpose(1, 2).reshape(K * r, d)).view(B, K, r)  # (B, K, r): h_k = V_kᵀ x
        qb = (q @ m.b).unsqueeze(-1) if m.b is not None else x.new_zeros(B, 1)  # (B, 1)
        self.ahb = (a * h).sum(-1) + qb  # (B, K): a_k · h_k + q · b
        self.A = torch.einsum("bkr,kur->bku", a, m.V)  # (B, K, d): V_k a_k
        self.gate_logits = None if m.gate is None else m.gate(x)  # (B, K)
        self.gate_blocks: torch.Tensor | None = None  # (d, K k): column (k, i) is G_w's row k on slot i only
        if m.gate is not None:
            n = len(ab.blocks)
            Gb = x.new_zeros(d, K, n)
            for i, bi in enumerate(ab.blocks):
                Gb[bi.start : bi.stop, :, i] = m.gate.weight[:, bi.start : bi.stop].T
            self.gate_blocks = Gb.reshape(d, K * n)
        self.base = (self._gates(self.gate_logits) * self.ahb).sum(1)  # (B,)

    def _gates(self, logits: torch.Tensor | None) -> torch.Tensor | float:
        """G from gate logits (B, K[, k]) along the experts' axis 1; the constant 1/K without a gate."""
        m = self.m
        if logits is None:
            return 1.0 / m.K
        return torch.softmax(logits, dim=1) if m.gate_kind == "softmax" else torch.sigmoid(logits)

    def deltas(self, T: torch.Tensor) -> torch.Tensor:
        """Δz (B, k) of zeroing block (i, j), i = 0…k−1, given T = T_j (B, d)."""
        adh = -self.seg(self.A * T.unsqueeze(1))  # (B, K, k): a_k · V_kᵀ δ_i
        logits = None
        if self.gate_logits is not None and self.gate_blocks is not None:
            shift = -(T @ self.gate_blocks).view(T.shape[0], self.m.K, -1)  # (B, K, k): G_w δ_i
            logits = self.gate_logits.unsqueeze(-1) + shift
        G = self._gates(logits)  # (B, K, k), or 1/K
        new = (G * (self.ahb.unsqueeze(-1) + adh)).sum(1)  # (B, k)
        return -self.seg(self.g * T) + new - self.base.unsqueeze(-1)


# --------------------------------------------------------------------------------------------------
# Rank truncation (without retraining)


class _Truncation:
    """The SVD of one layer's W (of each expert's W_k), sliced to any rank r below the layer's bound."""

    def __init__(self, layer: torch.nn.Module) -> None:
        self.layer, self.bound = layer, rank_bound(layer)
        self.P: np.ndarray | None = None  # (…, d, R) left singular vectors
        self.s: np.ndarray | None = None  # (…, R)
        self.Q: np.ndarray | None = None  # (…, d, R) right singular vectors: W = P diag(s) Qᵀ
        if isinstance(layer, FullRankCross):
            with A.one_blas_thread():  # multi-threaded LAPACK spin-waits on a busy machine (see analysis)
                P, s, Qt = np.linalg.svd(_np(layer.linear.weight))
            self.P, self.s, self.Q = P, s, Qt.T
        elif isinstance(layer, LowRankCross | MixtureCross):  # W = U Vᵀ (each expert's W_k = U_k V_kᵀ)
            U, V = layer.factors()  # (…, d, r) each
            self.P, self.s, self.Q = _factored_svd(_np(U), _np(V))

    def factors(self, r: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(U_r, V_r) with U_r V_rᵀ the best rank-r approximation (each (…, d, r), float32 on W's device)."""
        assert self.P is not None and self.s is not None and self.Q is not None
        w = _weight(self.layer)
        U = torch.from_numpy(self.P[..., :r] * self.s[..., None, :r]).to(w.device, w.dtype)
        V = torch.from_numpy(np.ascontiguousarray(self.Q[..., :r])).to(w.device, w.dtype)
        return U, V

    def apply(self, r: int, x0: torch.Tensor, x: torch.Tensor, cache: dict[int, Any]) -> torch.Tensor:
        """The layer with W (each W_k) truncated to rank r; the layer itself when r ≥ its bound."""
        layer = self.layer
        if r >= self.bound:
            return layer(x0, x)
        if r not in cache:
            cache[r] = self.factors(r)
        U, V = cache[r]
        if isinstance(layer, MixtureCross):
            B, K = x.shape[0], layer.K
            h = F.linear(x, V.transpose(1, 2).reshape(K * r, layer.d)).view(B, K, r)  # (B, K, r)
            G = layer.gates(x)  # (B, K)
            y = F.linear((h * G.unsqueeze(-1)).reshape(B, K * r), U.permute(1, 0, 2).reshape(layer.d, K * r))
            if layer.b is not None:
                y = y + G.sum(dim=1, keepdim=True) * layer.b
        else:  # a dense d × d product is cheaper than two thin ones when 2r ≥ d
            b = _bias(layer)
            y = F.linear(x, U @ V.T, b) if 2 * r >= U.shape[0] else F.linear(F.linear(x, V.T), U, b)
        out = x0 * y
        return out + x if layer.residual else out


def _bias(layer: torch.nn.Module) -> torch.Tensor | None:
    """b of a full or low-rank layer (inside the product x0 ⊙ (W x + b))."""
    return layer.bias() if isinstance(layer, FullRankCross | LowRankCross) else None


def _dense_weights(layer: torch.nn.Module) -> torch.Tensor:
    """The effective W of a layer as (K, d, d): each expert's W_k for a mixture, else W itself (K = 1)."""
    if isinstance(layer, MixtureCross):
        return layer.expert_weights()
    if isinstance(layer, FullRankCross | LowRankCross | VectorCross):
        return layer.effective_weight().unsqueeze(0)
    raise ConfigError(f"not a dcnviz cross layer: {type(layer).__name__}")


def _weight(layer: torch.nn.Module) -> torch.Tensor:
    return next(p for p in layer.parameters())


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().to("cpu", torch.float64).numpy()


def _factored_svd(U: np.ndarray, V: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """SVD of U Vᵀ (U, V (…, d, r)) through QR of the factors, never forming the d × d product (float64):
    U = Q_U R_U, V = Q_V R_V, R_U R_Vᵀ = P s Qᵀ, so U Vᵀ = (Q_U P) s (Q_V Q)ᵀ."""
    with A.one_blas_thread():
        Qu, Ru = np.linalg.qr(U)  # (…, d, r), (…, r, r)
        Qv, Rv = np.linalg.qr(V)
        P, s, Qt = np.linalg.svd(Ru @ np.swapaxes(Rv, -1, -2))
        return Qu @ P, s, Qv @ np.swapaxes(Qt, -1, -2)


# --------------------------------------------------------------------------------------------------
# The explainer


class Explainer:
    """Cross importance and the rank curve of one model on the first ``max_rows`` rows of one split.

    The forward pass is run once and kept; each layer's ablation and the rank curve are computed on first
    use and memoised (thread-safe), so an app can show layer 0 first and switch views without recomputing.

    Args:
        model: a dcnviz model with cross layers (on any device; its data is moved there).
        data: the split's encoded rows (``Encoded``), encoded with the model's FeatureSpec.
        split: the split's name, for the results (``val`` or ``test``).
        max_rows: use the first ``max_rows`` rows of ``data`` (all when it has fewer).
    """

    def __init__(self, model: DCNModel, data: Encoded, *, split: str = "val", max_rows: int = DEFAULT_MAX_ROWS) -> None:
        check_explainable(model)
        if isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 1:
            raise ConfigError(f"max_rows must be an integer >= 1; got max_rows={max_rows!r}")
        if len(data) < 1:
            raise ConfigError(f"the {split} split has no rows to explain")
        self.model, self.data, self.split = model, data, split
        self.rows = min(len(data), max_rows)
        self.blocks = tuple(model.spec.blocks())
        self.layers = model.cross_layers()
        self.nonlinear = any(_nonlinear(m) for m in self.layers)
        self.bounds = [rank_bound(m) for m in self.layers]
        self.token = uuid.uuid4().hex  # names this explainer's results (e.g. in an app's caches)
        self._lock = threading.RLock()
        self._effects: dict[int, LayerEffect] = {}
        self._curves: dict[tuple[int, ...], tuple[RankPoint, ...]] = {}
        self._truncations: list[_Truncation] | None = None
        device = next(model.parameters()).device
        model.eval()
        with torch.no_grad():
            self._chunks = _forward(model, data.index(slice(0, self.rows)).to(device))
        z = torch.cat([c.z for c in self._chunks])
        y = torch.cat([c.y for c in self._chunks])
        self.baseline = {"auc": auc_score(y, z), "logloss": log_loss(y, z)}
        self._loss_sum = _bce_sum(z, y)
        cw = from_model(model)
        self._norms = [
            A.block_norms(A.layer_matrix(cw.layers[i], i).weight, self.blocks) for i in range(len(cw.layers))
        ]

    @property
    def names(self) -> list[str]:
        """Feature (block) names in x0 order, made unique."""
        return A.unique_labels([b.name for b in self.blocks])

    @property
    def largest_bound(self) -> int:
        return max(self.bounds)

    # ---------------------------------------------------------------- ablation and contribution

    def layer_effect(self, index: int, *, progress: Progress | None = None) -> LayerEffect:
        """Ablation and contribution of every block of cross layer ``index`` (memoised). ``progress(fraction,
        what)`` is called as the columns j of the layer are done."""
        (li,) = resolve_layers([index], len(self.layers))
        with self._lock:
            if li not in self._effects:
                self._effects[li] = self._layer_effect(li, progress)
            return self._effects[li]

    def _layer_effect(self, li: int, progress: Progress | None = None) -> LayerEffect:
        layer, norms = self.layers[li], self._norms[li]
        kind = str(layer.kind)
        if self.nonlinear:
            return LayerEffect(
                index=li, kind=kind, block_norms=norms, ablation=None, contribution=None, note=NONLINEAR_NOTE
            )
        k = len(self.blocks)
        ab = _Ablator(self.model, self.blocks, li)
        loss = torch.zeros(k, k, dtype=torch.float64)
        sq = torch.zeros(k, k, dtype=torch.float64)
        steps = len(self._chunks) * k
        with torch.no_grad():
            for n, c in enumerate(self._chunks):

                def tick(j: int, n: int = n) -> None:
                    if progress is not None:
                        progress((n * k + j) / steps, f"layer {li}: zeroing the blocks of input feature {j + 1} of {k}")

                dz, s = ab.deltas(c, tick)
                loss += _bce_sum(c.z.unsqueeze(-1).unsqueeze(-1), c.y.unsqueeze(-1).unsqueeze(-1), dz)
                sq += s
        ablation = ((loss - self._loss_sum) / self.rows).numpy()
        contribution = torch.sqrt(sq / self.rows).numpy()
        return LayerEffect(index=li, kind=kind, block_norms=norms, ablation=ablation, contribution=contribution)

    def not_asked(self, index: int) -> LayerEffect:
        """A layer left out by ``layers=``: its block norms only."""
        return LayerEffect(
            index=index,
            kind=str(self.layers[index].kind),
            block_norms=self._norms[index],
            ablation=None,
            contribution=None,
            note="not computed: this layer was not among the layers asked for",
        )

    # ---------------------------------------------------------------- the rank curve

    def rank_curve(
        self, ranks: Sequence[int] | None = None, *, progress: Progress | None = None
    ) -> tuple[RankPoint, ...] | None:
        """AUC and log loss with every cross layer truncated to each rank, ascending (memoised); None for
        nonlinear experts. ``progress(fraction, what)`` is called before each rank."""
        if self.nonlinear:
            return None
        rs = tuple(resolve_ranks(ranks, self.largest_bound))
        with self._lock:
            if rs not in self._curves:
                pts = []
                for n, r in enumerate(rs):
                    if progress is not None:
                        progress(n / len(rs), f"truncating every cross layer to rank {r}")
                    pts.append(self._rank_point(r))
                self._curves[rs] = tuple(pts)
            return self._curves[rs]

    def has_effect(self, index: int) -> bool:
        """True when layer ``index``'s ablation is already computed (a view can skip its progress bar)."""
        return index in self._effects

    def has_curve(self, ranks: Sequence[int] | None = None) -> bool:
        """True when the rank curve at these ranks is already computed (or undefined: nonlinear experts)."""
        return self.nonlinear or tuple(resolve_ranks(ranks, self.largest_bound)) in self._curves

    def _rank_point(self, r: int) -> RankPoint:
        if all(r >= b for b in self.bounds):  # nothing truncated: the model itself
            return RankPoint(rank=r, auc=self.baseline["auc"], logloss=self.baseline["logloss"])
        if self._truncations is None:
            with torch.no_grad():
                self._truncations = [_Truncation(m) for m in self.layers]
        caches: list[dict[int, Any]] = [{} for _ in self.layers]
        zs = []
        with torch.no_grad():
            for c in self._chunks:
                x = c.x0
                for t, cache in zip(self._truncations, caches, strict=True):
                    x = t.apply(r, c.x0, x, cache)
                zs.append(_tail_logits(self.model, x, c))
        z = torch.cat(zs)
        y = torch.cat([c.y for c in self._chunks])
        return RankPoint(rank=r, auc=auc_score(y, z), logloss=log_loss(y, z))

    # ---------------------------------------------------------------- one row

    def row_effect(self, index: int, layers: Sequence[int] | None = None) -> RowEffect:
        """The ablation for row ``index`` of the split (any row, not only the first ``max_rows``): Δ logit."""
        n = len(self.data)
        if isinstance(index, bool) or not isinstance(index, int | np.integer) or not 0 <= int(index) < n:
            raise ConfigError(f"row must be an index within the {self.split} split, in [0, {n}); got {index!r}")
        index = int(index)
        chosen = set(resolve_layers(layers, len(self.layers)))
        device = next(self.model.parameters()).device
        with torch.no_grad():
            (c,) = _forward(self.model, self.data.index(slice(index, index + 1)).to(device))
            out: list[np.ndarray | None] = []
            for li in range(len(self.layers)):
                if self.nonlinear or li not in chosen:
                    out.append(None)
                    continue
                dz, _ = _Ablator(self.model, self.blocks, li).deltas(c)
                out.append(dz[0].double().cpu().numpy())
        z = float(c.z[0])
        return RowEffect(
            index=index,
            label=float(c.y[0]),
            score=float(torch.sigmoid(c.z[0].double())),  # σ(z), no overflow at large |z|
            logit=z,
            ablation=tuple(out),
        )

    # ---------------------------------------------------------------- everything

    def explain(
        self,
        *,
        ranks: Sequence[int] | None = None,
        layers: Sequence[int] | None = None,
        row: int | None = None,
        progress: Progress | None = None,
    ) -> Explanation:
        """Every asked layer's ablation and contribution, the rank curve, and optionally one row."""
        chosen = resolve_layers(layers, len(self.layers))
        rs = None if self.nonlinear else resolve_ranks(ranks, self.largest_bound)
        steps = len(chosen) + (len(rs) if rs else 0) + (1 if row is not None else 0)
        done = 0

        def tick(what: str) -> None:
            if progress is not None:
                progress(min(1.0, done / max(1, steps)), what)

        def part(base: int, width: int) -> Progress:
            def report(fraction: float, what: str) -> None:
                if progress is not None:
                    progress(min(1.0, (base + fraction * width) / max(1, steps)), what)

            return report

        effects = []
        for li in range(len(self.layers)):
            if li in chosen:
                effects.append(self.layer_effect(li, progress=part(done, 1)))
                done += 1
            else:
                effects.append(self.not_asked(li))
        curve: tuple[RankPoint, ...] | None = None
        if rs is not None:
            curve = self.rank_curve(rs, progress=part(done, len(rs)))
            done += len(rs)
        row_effect = None
        if row is not None:
            tick(f"ablating for row {row}")
            row_effect = self.row_effect(row, chosen)
        if progress is not None:
            progress(1.0, "done")
        suggestion = None
        if curve is not None:
            suggestion = A.suggest_rank(
                curve=[(p.rank, p.auc) for p in curve],
                d=self.model.d,
                rank_bound=self.largest_bound,
                rows=self.rows,
                split=self.split,
            )
        return Explanation(
            split=self.split,
            rows=self.rows,
            baseline=dict(self.baseline),
            blocks=self.blocks,
            layers=tuple(effects),
            rank_curve=curve,
            note=NONLINEAR_RANK_NOTE if self.nonlinear else "",
            row=row_effect,
            suggestion=suggestion,
        )


def row_values(spec: FeatureSpec, data: Encoded, index: int) -> dict[str, str]:
    """The feature values of one encoded row, decoded with the FeatureSpec (what the row *is*: user, movie, …).

    Categorical ids map back to their vocabulary value (0 = out of vocabulary); multivalent fields list their
    values; dense fields are shown de-normalised.
    """
    if not 0 <= index < len(data):
        raise ConfigError(f"row must be in [0, {len(data)}); got {index}")
    out: dict[str, str] = {}
    counters = {"categorical": 0, "multivalent": 0, "dense": 0}
    for f in spec.fields:
        j = counters[f.kind]
        counters[f.kind] += 1
        if f.kind == "categorical":
            out[f.name] = _vocab(f.vocab, int(data.cat[index, j]))
        elif f.kind == "multivalent":
            ids = [int(i) for i in data.multi[j][index] if int(i) >= 0]
            out[f.name] = ", ".join(_vocab(f.vocab, i) for i in ids) or "(none)"
        else:
            out[f.name] = f"{float(data.dense[index, j]) * f.std + f.mean:.4g}"
    return out


def _vocab(vocab: Sequence[str], i: int) -> str:
    return vocab[i - 1] if 1 <= i <= len(vocab) else "(out of vocabulary)"


def _bce_sum(z: torch.Tensor, y: torch.Tensor, dz: torch.Tensor | None = None) -> torch.Tensor:
    """Σ over rows of the natural-log binary cross-entropy of σ(z + dz), in float64 (broadcast over dz's
    trailing axes: the result has dz's shape without its first axis)."""
    z64 = z.double()
    if dz is not None:
        z64 = z64 + dz.double()
    y64 = torch.broadcast_to(y.double(), z64.shape)
    return F.binary_cross_entropy_with_logits(z64, y64, reduction="none").sum(dim=0).cpu()


def explain(
    model: DCNModel,
    data: Encoded,
    *,
    split: str = "val",
    max_rows: int = DEFAULT_MAX_ROWS,
    ranks: Sequence[int] | None = None,
    layers: Sequence[int] | None = None,
    row: int | None = None,
    progress: Progress | None = None,
) -> Explanation:
    """Cross importance measured on data (ablation, contribution) and the rank-truncation curve of a model.

    ``data`` is the split (encoded with the model's FeatureSpec); the first ``max_rows`` rows are used.
    ``ranks``: the curve's ranks (default 1, 2, 4, … and the largest rank bound, which is always appended).
    ``layers``: the cross layers to ablate (all by default; the rank curve always truncates every layer).
    ``row``: also the ablation for that one row of the split, as Δ logit. See :class:`Explainer`.
    """
    return Explainer(model, data, split=split, max_rows=max_rows).explain(
        ranks=ranks, layers=layers, row=row, progress=progress
    )


# --------------------------------------------------------------------------------------------------
# The reference: one forward pass per ablated block


def naive_ablation(model: DCNModel, data: Encoded, index: int, *, max_rows: int = DEFAULT_MAX_ROWS) -> np.ndarray:
    """Δ log loss (k, k) of layer ``index``, one whole forward pass of the model per block: the layer is swapped
    for one whose effective W (each expert's W_k) has block (i, j) zeroed. The slow reference that
    :class:`Explainer` is tested against (and the benchmark's baseline); k² passes. Not for nonlinear experts."""
    check_explainable(model)
    layers = model.cross_layers()
    layer = layers[index]
    if _nonlinear(layer):
        raise ConfigError(NONLINEAR_NOTE)
    assert model.cross is not None
    rows = data.index(slice(0, min(len(data), max_rows)))
    blocks = model.spec.blocks()
    k = len(blocks)
    out = np.zeros((k, k))
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            base = float(_bce_sum(model(rows.cat, rows.dense, rows.multi), rows.y))
            Ws = _dense_weights(layer)
            for i, bi in enumerate(blocks):
                for j, bj in enumerate(blocks):
                    W = Ws.clone()  # (K, d, d)
                    W[:, bi.start : bi.stop, bj.start : bj.stop] = 0.0
                    model.cross.layers[index] = _AblatedCross(layer, W)
                    try:
                        z = model(rows.cat, rows.dense, rows.multi)
                    finally:
                        model.cross.layers[index] = layer
                    out[i, j] = (float(_bce_sum(z, rows.y)) - base) / len(rows)
    finally:
        model.train(was)
    return out


class _AblatedCross(torch.nn.Module):
    """A cross layer with its effective W replaced by dense matrices W (K, d, d) (K = 1 unless a mixture),
    computing what the original layer computes with that W: x0 ⊙ (W x + b) + x; Σ_k G_k(x) x0 ⊙ (W_k x + b) + x;
    DCN-V1 x0 ⊙ (W x) + b + x."""

    def __init__(self, layer: torch.nn.Module, W: torch.Tensor) -> None:
        super().__init__()
        self.layer, self.W = layer, W

    def forward(self, x0: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        layer = self.layer
        if isinstance(layer, MixtureCross):
            G = layer.gates(x)  # (B, K)
            y = sum(G[:, k : k + 1] * F.linear(x, self.W[k]) for k in range(self.W.shape[0]))  # Σ_k G_k W_k x
            if layer.b is not None:
                y = y + G.sum(dim=1, keepdim=True) * layer.b
            out = x0 * y
        elif isinstance(layer, VectorCross):
            out = x0 * F.linear(x, self.W[0])
            if layer.b is not None:
                out = out + layer.b
        else:
            out = x0 * F.linear(x, self.W[0], _bias(layer))
        return out + x if layer.residual else out
