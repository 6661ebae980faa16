"""Helpers shared by the peer importers: shape checks, array conversion, init baselines.

Every importer reads a flat ``{key: tensor}`` mapping and returns an :class:`Imported`: cross layers
in dcnviz's common form (:mod:`dcnviz.weights`, paper orientation, W[out, in]), x0 blocks where the
file lets us infer them, and an initial-matrix baseline drawn from that library's own init.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from dcnviz.errors import ImportFormatError
from dcnviz.spec import Block
from dcnviz.weights import CrossLayerWeights, ExpertWeights, MixtureWeights

MAX_D = 8192  # widest x0 accepted: a full-rank layer at this width is already 64 M weights
MAX_LAYERS = 64  # more cross layers than this is not a real model
MAX_EXPERTS = 64
INIT_SEED = 0  # fixed seed of the drawn init baselines, so two runs show the same baseline

Array = Any  # np.ndarray | torch.Tensor: tensors as the container gave them (never converted eagerly)


@dataclass
class Imported:
    """What one importer found in a state dict."""

    detected: str  # e.g. "DeepCTR-Torch DCNMix: 2 layers, K=4 experts, r=32, d=180"
    layers: list[CrossLayerWeights]
    blocks: list[Block] | None  # None when the file does not say how x0 is laid out
    initial: list[CrossLayerWeights] | None = None  # drawn init baseline
    init_label: str = ""
    warnings: list[str] = field(default_factory=list)


def shape(t: Array) -> tuple[int, ...]:
    return tuple(int(s) for s in t.shape)


def to_np(t: Array) -> np.ndarray:
    """A float64 copy of a tensor or array (shapes were checked before this is called)."""
    if isinstance(t, torch.Tensor):
        return t.detach().to("cpu", dtype=torch.float64).numpy().copy()
    a = np.asarray(t)
    if a.dtype.kind not in "fiub":
        raise ImportFormatError(f"expected a numeric array; got dtype {a.dtype}")
    return a.astype(np.float64, copy=True)


def is_float(t: Array) -> bool:
    if isinstance(t, torch.Tensor):
        return t.is_floating_point()
    return np.asarray(t).dtype.kind == "f"


def check_float(tensors: Mapping[str, Array], keys: list[str]) -> None:
    for k in keys:
        if not is_float(tensors[k]):
            dtype = getattr(tensors[k], "dtype", "?")
            raise ImportFormatError(f"{k!r} has dtype {dtype}; cross weights must be floating point")


def check_width(d: int, where: str) -> None:
    if d < 1 or d > MAX_D:
        raise ImportFormatError(f"x0 width must be in [1, {MAX_D}]; got d={d} from {where}")


def check_count(n: int, what: str, cap: int) -> None:
    if n < 1 or n > cap:
        raise ImportFormatError(f"number of {what} must be in [1, {cap}]; got {n}")


def check_rank(r: int, d: int, where: str) -> None:
    if r < 1 or r > d:
        raise ImportFormatError(f"rank must be in [1, d]; got r={r}, d={d} from {where}")


def expect_shape(key: str, t: Array, expected: tuple[int, ...], legend: str = "") -> None:
    if shape(t) != expected:
        extra = f" ({legend})" if legend else ""
        raise ImportFormatError(f"{key!r} has shape {list(shape(t))}; expected {list(expected)}{extra}")


def indexed(tensors: Mapping[str, Array], prefix: str, name: str, suffix: str = "") -> list[str]:
    """Keys ``{prefix}{name}.{l}{suffix}`` for l = 0..L-1; the indices must be contiguous from 0."""
    pat = re.compile(re.escape(f"{prefix}{name}.") + r"(\d+)" + re.escape(suffix) + "$")
    found: dict[int, str] = {}
    for k in tensors:
        m = pat.match(k)
        if m:
            found[int(m.group(1))] = k
    if not found:
        return []
    idx = sorted(found)
    if idx != list(range(len(idx))):
        raise ImportFormatError(f"'{prefix}{name}.<l>{suffix}' indices must run 0..L-1; found {idx[:10]}")
    if len(idx) > MAX_LAYERS:
        raise ImportFormatError(f"found {len(idx)} '{prefix}{name}.<l>' entries, more than {MAX_LAYERS}")
    return [found[i] for i in idx]


def require(tensors: Mapping[str, Array], key: str, what: str) -> Array:
    if key not in tensors:
        raise ImportFormatError(f"missing {key!r} ({what})")
    return tensors[key]


def vec(t: Array, key: str, d: int) -> np.ndarray:
    """A bias-like (d,) or (d, 1) tensor as (d,)."""
    if shape(t) not in ((d,), (d, 1), (1, d)):
        raise ImportFormatError(f"{key!r} has shape {list(shape(t))}; expected [{d}] or [{d}, 1]")
    return to_np(t).reshape(d)


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


# --- init baselines --------------------------------------------------------------------------


def generator() -> torch.Generator:
    return torch.Generator().manual_seed(INIT_SEED)


def xavier_normal(shape_: tuple[int, ...], gen: torch.Generator) -> np.ndarray:
    """``torch.nn.init.xavier_normal_`` on a tensor of exactly this shape (fans depend on it)."""
    if len(shape_) < 2:
        raise ImportFormatError(f"xavier_normal_ needs a matrix; got shape {list(shape_)}")
    t = torch.empty(shape_)
    torch.nn.init.xavier_normal_(t, generator=gen)
    return t.double().numpy()


def standard_normal(shape_: tuple[int, ...], gen: torch.Generator) -> np.ndarray:
    """``torch.randn``: N(0, 1)."""
    return torch.randn(shape_, generator=gen).double().numpy()


def truncated_normal(shape_: tuple[int, ...], std: float, gen: torch.Generator) -> np.ndarray:
    """Keras ``TruncatedNormal(stddev=std)``: N(0, std²) with draws beyond ±2·std redrawn."""
    from dcnviz.layers import truncated_normal as draw

    return draw(torch.Size(shape_), std, gen).double().numpy()


def baseline(
    build: Callable[[Mapping[str, Array]], list[CrossLayerWeights]],
    template: Mapping[str, Array],
    draw: Callable[[str, tuple[int, ...], torch.Generator], np.ndarray | None],
) -> list[CrossLayerWeights]:
    """Draw an init baseline: replace each template tensor by ``draw(key, shape)`` (None: zeros)
    and run the importer's own ``build`` on it, so orientation is handled exactly as for the file."""
    gen = generator()
    drawn: dict[str, Array] = {}
    for k, t in template.items():
        s = shape(t)
        v = draw(k, s, gen)
        drawn[k] = np.zeros(s) if v is None else v
    return build(drawn)


def equal_blocks(d: int, names: list[str], kind: str) -> list[Block]:
    w = d // len(names)
    return [Block(n, i * w, (i + 1) * w, kind) for i, n in enumerate(names)]


def blocks_from_widths(items: list[tuple[str, int, str]]) -> list[Block]:
    out, start = [], 0
    for name, width, kind in items:
        out.append(Block(name, start, start + width, kind))
        start += width
    return out


def blocks_from_tables(items: list[tuple[str, int, str]], d: int, what: str, warnings: list[str]) -> list[Block] | None:
    """Blocks from embedding tables (name, width, kind) in x0 order, then one raw ``dense`` block for the rest.

    None (with a warning naming ``what``) when the widths exceed x0's width d; None when there are no tables.
    """
    if not items:
        return None
    used = total(items)
    if used > d:
        warnings.append(f"{what} widths sum to {used}, more than x0's width d={d}; feature blocks not inferred")
        return None
    if used < d:
        items = [*items, ("dense", d - used, "dense_raw")]
    return blocks_from_widths(items)


def total(items: list[tuple[str, int, str]]) -> int:
    return sum(w for _, w, _ in items)


def numel(t: Array) -> int:
    return math.prod(shape(t))


MAX_CROSS_ELEMENTS = 1 << 26  # numbers in all cross tensors together (512 MiB as float64)


def check_elements(template: Mapping[str, Array]) -> None:
    """Refuse cross weights too large to convert, before any float64 copy is made."""
    n = sum(numel(t) for t in template.values())
    if n > MAX_CROSS_ELEMENTS:
        raise ImportFormatError(
            f"the cross layers hold {n} numbers, over the {MAX_CROSS_ELEMENTS} that dcnviz inspects"
        )


TANH_NOTE = "experts apply tanh on both sides of C (Eq. 4): U C Vᵀ is only each expert's linear part"


def tanh_mixture_layer(
    U: np.ndarray,
    V: np.ndarray,
    C: np.ndarray,
    b: np.ndarray,
    gates: np.ndarray | None,
    gate_bias: np.ndarray | None = None,
) -> MixtureWeights:
    """One CrossNetMix layer as DeepCTR-Torch, FuxiCTR and RecBole store it, in common form.

    U, V (K, d, r) with each expert applied as U_k tanh(C_k tanh(V_kᵀ x)) (Eq. 4), C (K, r, r), b (d,);
    gates (K, d) shared across layers, softmax over experts (absent: K = 1).
    """
    K, d, _ = U.shape
    return MixtureWeights(
        d=d,
        experts=tuple(ExpertWeights(U=U[k], V=V[k], C=C[k]) for k in range(K)),
        activation="tanh",
        b=b,
        gates=gates,
        gate_bias=gate_bias,
        gate_kind="softmax" if gates is not None else None,
        gates_shared=True,
        notes=(TANH_NOTE,),
    )
