r"""RecBole ``DCNV2`` and ``DCN`` (``recbole/model/context_aware_recommender/dcnv2.py``, ``dcn.py``).

Layouts (ParameterLists; x0 width N = number of fields × embedding size E):

* DCNV2 ``mixed: False``: ``cross_layer_w.{l}`` (N, N) = W_l in paper orientation, ``bias.{l}`` (N, 1).
* DCNV2 ``mixed: True``: ``cross_layer_u.{l}``, ``cross_layer_v.{l}`` (K, N, r), ``cross_layer_c.{l}``
  (K, r, r), ``gating.{k}.weight`` (1, N) and ``gating.{k}.bias`` (1,) — gates **with** bias, shared
  by all layers, softmax over k; tanh on both sides of C.
* DCN (V1, ``dcn.py``) uses the same prefix with other shapes: ``cross_layer_w.{l}`` (N,) = w_l and
  ``cross_layer_b.{l}`` (N,), added outside the product. DCN and DCNV2 are told apart by shape.

Every field has the same embedding size E (``token_embedding_table.embedding.weight`` (vocab, E) and
the float/sequence tables say it), so x0 is N / E equal blocks; RecBole keeps field names in its
pickled Config, which dcnviz never unpickles, so the blocks get neutral names unless the user
supplies names. Init: DCNV2 cross weights are ``torch.randn`` (N(0, 1)) — ``xavier_normal_initialization``
touches only nn.Linear/nn.Embedding; DCN (V1) leaves them ``torch.empty`` (uninitialised memory), so no
baseline can be drawn for it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import numpy as np

from dcnviz.errors import ImportFormatError
from dcnviz.importers.common import (
    MAX_EXPERTS,
    Array,
    Imported,
    check_count,
    check_elements,
    check_float,
    check_rank,
    check_width,
    equal_blocks,
    expect_shape,
    indexed,
    plural,
    shape,
    standard_normal,
    tanh_mixture_layer,
    to_np,
    vec,
)
from dcnviz.importers.common import baseline as draw_baseline
from dcnviz.spec import Block
from dcnviz.weights import CrossLayerWeights, FullRankWeights, VectorWeights

NAME = "RecBole"
ANCHOR = re.compile(r"^(?P<root>(?:.*\.)?)cross_layer_[wu]\.\d+$")
EXPECTED = (
    "'cross_layer_w.<l>' (N, N) + 'bias.<l>', or 'cross_layer_u.<l>'/'cross_layer_v.<l>'/'cross_layer_c.<l>' + "
    "'gating.<k>.weight', or (DCN) 'cross_layer_w.<l>' (N,) + 'cross_layer_b.<l>'"
)
INIT_LABEL = "drawn from N(0, 1) (torch.randn) as RecBole initialises (seed 0) — not this model's real initial weights"
NO_INIT_LABEL = "no baseline: RecBole's DCN leaves its cross weights uninitialised (torch.empty)"
TABLES = (
    "token_embedding_table.embedding.weight",
    "float_embedding_table.embedding.weight",
    "float_embedding_table.weight",
    "token_seq_embedding_table.0.weight",
)


def roots(tensors: Mapping[str, Array]) -> list[str]:
    return sorted({m.group("root") for k in tensors if (m := ANCHOR.match(k))})


def _variant(t: Mapping[str, Array], p: str) -> str:
    if indexed(t, p, "cross_layer_u"):
        return "mixed"
    ws = indexed(t, p, "cross_layer_w")
    if not ws:
        raise ImportFormatError(f"no RecBole cross layers under {p!r}; expected {EXPECTED}")
    return "dcn" if len(shape(t[ws[0]])) == 1 else "unmixed"


def build_layers(t: Mapping[str, Array], p: str) -> list[CrossLayerWeights]:
    variant = _variant(t, p)
    if variant == "dcn":
        ws, bs = indexed(t, p, "cross_layer_w"), indexed(t, p, "cross_layer_b")
        d = shape(t[ws[0]])[0]
        if len(bs) != len(ws):
            raise ImportFormatError(f"found {len(ws)} '{p}cross_layer_w.<l>' but {len(bs)} '{p}cross_layer_b.<l>'")
        out: list[CrossLayerWeights] = []
        for w, b in zip(ws, bs, strict=True):
            expect_shape(w, t[w], (d,), "DCN's w_l")
            out.append(VectorWeights(d=d, w=to_np(t[w]), b=vec(t[b], b, d)))
        return out
    bs = indexed(t, p, "bias")
    if variant == "unmixed":
        ws = indexed(t, p, "cross_layer_w")
        d = shape(t[ws[0]])[0]
        if len(bs) != len(ws):
            raise ImportFormatError(f"found {len(ws)} '{p}cross_layer_w.<l>' but {len(bs)} '{p}bias.<l>'")
        out = []
        for w, b in zip(ws, bs, strict=True):
            expect_shape(w, t[w], (d, d), "DCNV2's W_l")
            out.append(FullRankWeights(d=d, W=to_np(t[w]), b=vec(t[b], b, d)))
        return out
    Us, Vs, Cs = indexed(t, p, "cross_layer_u"), indexed(t, p, "cross_layer_v"), indexed(t, p, "cross_layer_c")
    if not (len(Us) == len(Vs) == len(Cs) == len(bs)):
        raise ImportFormatError(
            f"'{p}cross_layer_u', '_v', '_c', 'bias' have {len(Us)}, {len(Vs)}, {len(Cs)}, {len(bs)} layers; "
            "expected equal"
        )
    K, d, r = shape(t[Us[0]])
    gw: list[np.ndarray] = []
    gb: list[float] = []
    while f"{p}gating.{len(gw)}.weight" in t:
        k = len(gw)
        wkey, bkey = f"{p}gating.{k}.weight", f"{p}gating.{k}.bias"
        expect_shape(wkey, t[wkey], (1, d), "a gate is nn.Linear(N, 1)")
        gw.append(vec(t[wkey], wkey, d))
        if bkey in t:
            expect_shape(bkey, t[bkey], (1,))
            gb.append(float(to_np(t[bkey])[0]))
    if gw and len(gw) != K:
        raise ImportFormatError(f"found {len(gw)} '{p}gating.<k>.weight' for K={K} experts")
    gates = np.stack(gw) if gw else None  # (K, d)
    gate_bias = np.array(gb) if gw and len(gb) == len(gw) else None  # (K,)
    out = []
    for u, v, c, b in zip(Us, Vs, Cs, bs, strict=True):
        expect_shape(u, t[u], (K, d, r))
        expect_shape(v, t[v], (K, d, r), "cross_layer_v holds V (K, N, r), applied as Vᵀ x")
        expect_shape(c, t[c], (K, r, r))
        U, V, C = to_np(t[u]), to_np(t[v]), to_np(t[c])
        out.append(tanh_mixture_layer(U, V, C, vec(t[b], b, d), gates, gate_bias))
    return out


def _validate(t: Mapping[str, Array], p: str) -> tuple[str, int, int, int, int]:
    variant = _variant(t, p)
    if variant == "mixed":
        ks = indexed(t, p, "cross_layer_u")
        s = shape(t[ks[0]])
        if len(s) != 3:
            raise ImportFormatError(f"{ks[0]!r} has shape {list(s)}; expected (K, N, r)")
        K, d, r = s
        check_count(K, "experts", MAX_EXPERTS)
        check_width(d, ks[0])
        check_rank(r, d, ks[0])
        check_float(t, ks)
        return variant, len(ks), d, K, r
    ks = indexed(t, p, "cross_layer_w")
    s = shape(t[ks[0]])
    if len(s) not in (1, 2):
        raise ImportFormatError(f"{ks[0]!r} has shape {list(s)}; expected (N, N) (DCNV2) or (N,) (DCN)")
    check_width(s[0], ks[0])
    check_float(t, ks)
    return variant, len(ks), s[0], 0, 0


def _blocks(t: Mapping[str, Array], root: str, d: int, warnings: list[str]) -> tuple[list[Block] | None, str]:
    for name in TABLES:
        v = t.get(root + name)
        if v is not None and len(shape(v)) == 2:
            E = shape(v)[1]
            if E >= 1 and d % E == 0:
                n = d // E
                seq = len(indexed(t, root, "token_seq_embedding_table", ".weight"))
                names = [f"seq_field_{i}" for i in range(seq)] + [f"field_{i}" for i in range(n - seq)]
                return equal_blocks(d, names, "sparse"), f"{n} fields of E={E}"
            warnings.append(f"embedding size E={E} from {name!r} does not divide x0's width d={d}")
            return None, ""
    return None, ""


def load(tensors: Mapping[str, Array], root: str) -> Imported:
    p = root
    variant, L, d, K, r = _validate(tensors, p)
    template = {
        k: v
        for k, v in tensors.items()
        if k.startswith(p) and re.fullmatch(r"(cross_layer_[wuvc]|bias)\.\d+", k[len(p) :])
    }
    template.update({k: v for k, v in tensors.items() if k.startswith(f"{p}gating.")})
    check_elements(template)
    layers = build_layers(tensors, p)
    detected = {
        "unmixed": f"{NAME} DCNV2 (mixed=False, full rank): {plural(L, 'layer')}, d={d}",
        "mixed": f"{NAME} DCNV2 (mixed=True): {plural(L, 'layer')}, K={K} experts, r={r}, d={d}, g=tanh, "
        "gates with bias",
        "dcn": f"{NAME} DCN (DCN-V1): {plural(L, 'layer')}, d={d}",
    }[variant]
    warnings: list[str] = []
    blocks, layout = _blocks(tensors, p, d, warnings)
    if layout:
        detected += f"; x0 = {layout} (RecBole files carry no field names)"
    if variant == "dcn":
        return Imported(
            detected=detected, layers=layers, blocks=blocks, initial=None, init_label=NO_INIT_LABEL, warnings=warnings
        )

    def draw(key: str, s: tuple[int, ...], gen):  # type: ignore[no-untyped-def]
        rest = key[len(p) :]
        if rest.startswith("gating."):
            return to_np(tensors[key])  # gates are not part of W: keep the file's own
        return None if rest.startswith("bias.") else standard_normal(s, gen)

    initial = draw_baseline(lambda t: build_layers(t, p), template, draw)
    return Imported(
        detected=detected, layers=layers, blocks=blocks, initial=initial, init_label=INIT_LABEL, warnings=warnings
    )
