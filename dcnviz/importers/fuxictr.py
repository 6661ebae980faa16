r"""FuxiCTR ``DCNv2`` / ``DCN`` state dicts (``fuxictr/pytorch/layers/interactions/cross_net.py``).

Layouts under ``crossnet.`` (x0 width N):

* ``CrossNetV2``: ``cross_layers.{l}.weight`` (N, N) (an ``nn.Linear``: paper orientation),
  ``cross_layers.{l}.bias`` (N,). x_{l+1} = x_l + x0 ⊙ (W x_l + b), Eq. (1).
* ``CrossNetMix``: ``U_list.{l}``, ``V_list.{l}`` (K, N, r), ``C_list.{l}`` (K, r, r), ``bias.{l}`` (N, 1),
  ``gating.{k}.weight`` (1, N) shared by all layers; tanh on both sides of C (as DeepCTR-Torch).
* ``CrossNet`` (DCN-V1): ``cross_net.{l}.weight.weight`` (1, N) = w_lᵀ, ``cross_net.{l}.bias`` (N,),
  added outside the product.

x0 = embeddings in ``feature_map.json`` feature order: ``embedding_layer.embedding_layer.
embedding_layers.<feat>.weight`` is (vocab, E) for categorical/sequence features and (E, 1) for numeric
ones (``nn.Linear(1, E, bias=False)``), so every feature is an ordinary block. The ModuleDict is built in
feature-map order, so the state dict's own order is x0 order; ``feature_map.json`` fixes the order
where it was lost (safetensors sorts keys) and gives the feature types.
Init (``BaseModel.reset_parameters``): ``xavier_normal_`` on every ``nn.Linear`` weight and on
U/V/C, zero biases.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from dcnviz.errors import DataFormatError, ImportFormatError
from dcnviz.importers.common import (
    MAX_EXPERTS,
    Array,
    Imported,
    blocks_from_widths,
    check_count,
    check_elements,
    check_float,
    check_rank,
    check_width,
    expect_shape,
    indexed,
    plural,
    shape,
    tanh_mixture_layer,
    to_np,
    vec,
    xavier_normal,
)
from dcnviz.importers.common import baseline as draw_baseline
from dcnviz.spec import Block
from dcnviz.untrusted import loads_json, shown, shown_list
from dcnviz.weights import CrossLayerWeights, FullRankWeights, VectorWeights

NAME = "FuxiCTR"
ANCHOR = re.compile(r"^(?P<root>(?:.*\.)?)(?:cross_layers\.\d+\.weight|U_list\.\d+|cross_net\.\d+\.weight\.weight)$")
EXPECTED = (
    "'crossnet.cross_layers.<l>.weight' (N, N) + '.bias', or 'crossnet.U_list.<l>'/'V_list.<l>'/'C_list.<l>' + "
    "'crossnet.bias.<l>', or 'crossnet.cross_net.<l>.weight.weight' (1, N)"
)
INIT_LABEL = "drawn from xavier_normal_ as FuxiCTR initialises (seed 0) — not this model's real initial weights"
CROSS_KEY = (
    r"cross_layers\.\d+\.(?:weight|bias)|cross_net\.\d+\.(?:weight\.weight|bias)|(?:U_list|V_list|C_list|bias)\.\d+"
)
EMBEDDING = "embedding_layer.embedding_layer.embedding_layers."


def roots(tensors: Mapping[str, Array]) -> list[str]:
    return sorted({m.group("root") for k in tensors if (m := ANCHOR.match(k))})


def _variant(t: Mapping[str, Array], p: str) -> str:
    if indexed(t, p, "cross_layers", ".weight"):
        return "v2"
    if indexed(t, p, "U_list"):
        return "mix"
    if indexed(t, p, "cross_net", ".weight.weight"):
        return "v1"
    raise ImportFormatError(f"no FuxiCTR cross layers under {p!r}; expected {EXPECTED}")


def build_layers(t: Mapping[str, Array], p: str) -> list[CrossLayerWeights]:
    variant = _variant(t, p)
    if variant == "v2":
        ws, bs = indexed(t, p, "cross_layers", ".weight"), indexed(t, p, "cross_layers", ".bias")
        d = shape(t[ws[0]])[0]
        if len(bs) != len(ws):
            raise ImportFormatError(f"found {len(ws)} '{p}cross_layers.<l>.weight' but {len(bs)} '.bias'")
        out: list[CrossLayerWeights] = []
        for w, b in zip(ws, bs, strict=True):
            expect_shape(w, t[w], (d, d), "nn.Linear(N, N).weight")
            out.append(FullRankWeights(d=d, W=to_np(t[w]), b=vec(t[b], b, d)))
        return out
    if variant == "v1":
        ws, bs = indexed(t, p, "cross_net", ".weight.weight"), indexed(t, p, "cross_net", ".bias")
        d = shape(t[ws[0]])[-1]
        if len(bs) != len(ws):
            raise ImportFormatError(f"found {len(ws)} '{p}cross_net.<l>.weight.weight' but {len(bs)} '.bias'")
        out = []
        for w, b in zip(ws, bs, strict=True):
            expect_shape(w, t[w], (1, d), "nn.Linear(N, 1).weight")
            out.append(VectorWeights(d=d, w=to_np(t[w])[0], b=vec(t[b], b, d)))
        return out
    Us, Vs, Cs = indexed(t, p, "U_list"), indexed(t, p, "V_list"), indexed(t, p, "C_list")
    bs = indexed(t, p, "bias")
    if not (len(Us) == len(Vs) == len(Cs) == len(bs)):
        raise ImportFormatError(
            f"'{p}U_list', 'V_list', 'C_list', 'bias' have {len(Us)}, {len(Vs)}, {len(Cs)}, {len(bs)} layers; "
            "expected equal"
        )
    K, d, r = shape(t[Us[0]])
    gate_keys: list[str] = []
    while f"{p}gating.{len(gate_keys)}.weight" in t:
        gk = f"{p}gating.{len(gate_keys)}.weight"
        expect_shape(gk, t[gk], (1, d), "a gate is nn.Linear(N, 1, bias=False)")
        gate_keys.append(gk)
    if gate_keys and len(gate_keys) != K:
        raise ImportFormatError(f"found {len(gate_keys)} '{p}gating.<k>.weight' for K={K} experts")
    gates = np.concatenate([vec(t[g], g, d)[None, :] for g in gate_keys]) if gate_keys else None  # (K, d)
    out = []
    for u, v, c, b in zip(Us, Vs, Cs, bs, strict=True):
        expect_shape(u, t[u], (K, d, r))
        expect_shape(v, t[v], (K, d, r), "V_list holds V (K, N, r), applied as Vᵀ x")
        expect_shape(c, t[c], (K, r, r))
        U, V, C = to_np(t[u]), to_np(t[v]), to_np(t[c])
        out.append(tanh_mixture_layer(U, V, C, vec(t[b], b, d), gates))
    return out


def _validate(t: Mapping[str, Array], p: str) -> tuple[str, int, int, int, int]:
    variant = _variant(t, p)
    if variant == "v2":
        ks = indexed(t, p, "cross_layers", ".weight")
        s = shape(t[ks[0]])
        if len(s) != 2:
            raise ImportFormatError(f"{ks[0]!r} has shape {list(s)}; expected (N, N)")
        check_width(s[0], ks[0])
        check_float(t, ks)
        return variant, len(ks), s[0], 0, 0
    if variant == "v1":
        ks = indexed(t, p, "cross_net", ".weight.weight")
        s = shape(t[ks[0]])
        if len(s) != 2:
            raise ImportFormatError(f"{ks[0]!r} has shape {list(s)}; expected (1, N)")
        check_width(s[1], ks[0])
        check_float(t, ks)
        return variant, len(ks), s[1], 0, 0
    ks = indexed(t, p, "U_list")
    s = shape(t[ks[0]])
    if len(s) != 3:
        raise ImportFormatError(f"{ks[0]!r} has shape {list(s)}; expected (K, N, r)")
    K, d, r = s
    check_count(K, "experts", MAX_EXPERTS)
    check_width(d, ks[0])
    check_rank(r, d, ks[0])
    check_float(t, ks)
    return variant, len(ks), d, K, r


def read_feature_map(feature_map: Any) -> Any:
    """A FuxiCTR ``feature_map.json`` (path, bytes, JSON text or parsed dict) as parsed JSON, bounded like any
    untrusted JSON (:func:`dcnviz.untrusted.loads_json`); its shape is checked by :func:`feature_map_features`."""
    if isinstance(feature_map, bytes | bytearray):
        return _parse_json(bytes(feature_map).decode("utf-8", "replace"))
    if isinstance(feature_map, str) and feature_map.lstrip().startswith("{"):
        return _parse_json(feature_map)
    if isinstance(feature_map, dict):
        return feature_map
    from pathlib import Path

    path = Path(feature_map)
    if not path.is_file():
        raise DataFormatError(f"no feature map at {shown(str(path))}")
    if path.stat().st_size > 16 * 1024 * 1024:
        raise DataFormatError(f"{path.name}: a feature map over 16 MiB is not plausible")
    return _parse_json(path.read_text(encoding="utf-8", errors="replace"))


def feature_map_features(feature_map: Any) -> list[tuple[str, str]]:
    """(name, type) in x0 order from a FuxiCTR ``feature_map.json`` (path, bytes, str or parsed dict).

    FuxiCTR writes ``"features"`` as a list of one-key objects ``[{"user_id": {"type": ...}}, ...]``;
    a plain object ``{"user_id": {...}, ...}`` is accepted too.
    """
    obj = read_feature_map(feature_map)
    if not isinstance(obj, dict) or "features" not in obj:
        raise DataFormatError("feature_map.json must be a JSON object with a 'features' entry")
    feats = obj["features"]
    items: list[tuple[str, Any]] = []
    if isinstance(feats, list):
        for i, entry in enumerate(feats):
            if not isinstance(entry, dict) or len(entry) != 1:
                raise DataFormatError(f"feature_map.json: features[{i}] must be a one-key object {{name: spec}}")
            items.extend(entry.items())
    elif isinstance(feats, dict):
        items = list(feats.items())
    else:
        raise DataFormatError("feature_map.json: 'features' must be a list or an object")
    out = []
    for name, spec in items:
        kind = spec.get("type", "?") if isinstance(spec, dict) else "?"
        out.append((str(name), str(kind)))
    return out


def _parse_json(text: str) -> Any:
    return loads_json(text, "feature_map.json", error=DataFormatError)


def _blocks(t: Mapping[str, Array], root: str, d: int, feature_map: Any, warnings: list[str]) -> list[Block] | None:
    emb = re.compile(re.escape(root + EMBEDDING) + r"(?P<name>[^.]+)\.weight$")
    tables = {m.group("name"): shape(v) for k, v in t.items() if (m := emb.match(k)) and len(shape(v)) == 2}
    if not tables:
        return None
    if feature_map is not None:
        order = [(n, k) for n, k in feature_map_features(feature_map) if k != "meta"]
        missing = [n for n, _ in order if n not in tables]
        if missing:
            warnings.append(f"feature_map.json lists features with no embedding in the file: {shown_list(missing)}")
            return None
    else:
        order = [(n, "numeric" if s[-1] == 1 and s[0] > 1 else "categorical") for n, s in tables.items()]
    items = []
    for name, kind in order:
        s = tables[name]
        if len(s) != 2:
            return None
        if kind == "numeric":
            items.append((name, s[0], "dense_embedded"))
        else:
            items.append((name, s[1], "sparse"))
    if sum(w for _, w, _ in items) != d:
        warnings.append(
            f"FuxiCTR embedding widths sum to {sum(w for _, w, _ in items)}, not x0's width d={d}; "
            "feature blocks not inferred"
        )
        return None
    return blocks_from_widths(items)


def load(tensors: Mapping[str, Array], root: str, *, feature_map: Any = None) -> Imported:
    p = root
    variant, L, d, K, r = _validate(tensors, p)
    template = {k: v for k, v in tensors.items() if k.startswith(p) and re.fullmatch(CROSS_KEY, k[len(p) :])}
    check_elements(template)
    layers = build_layers(tensors, p)
    detected = {
        "v2": f"{NAME} DCNv2 (CrossNetV2, full rank): {plural(L, 'layer')}, d={d}",
        "mix": f"{NAME} DCNv2 (CrossNetMix): {plural(L, 'layer')}, K={K} experts, r={r}, d={d}, g=tanh",
        "v1": f"{NAME} DCN (CrossNet, DCN-V1): {plural(L, 'layer')}, d={d}",
    }[variant]
    warnings: list[str] = []
    model_root = p[: -len("crossnet.")] if p.endswith("crossnet.") else p
    blocks = _blocks(tensors, model_root, d, feature_map, warnings)

    def draw(key: str, s: tuple[int, ...], gen):  # type: ignore[no-untyped-def]
        rest = key[len(p) :]
        return None if rest.endswith("bias") or rest.startswith("bias.") or len(s) < 2 else xavier_normal(s, gen)

    initial = draw_baseline(lambda t: build_layers(t, p), template, draw)
    return Imported(
        detected=detected, layers=layers, blocks=blocks, initial=initial, init_label=INIT_LABEL, warnings=warnings
    )
