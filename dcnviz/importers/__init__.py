"""Read cross-network weights of dcnviz and peer-library models into the common form.

:func:`load_cross_weights` takes a file (path or bytes) saved by dcnviz, torchrec, DeepCTR-Torch,
FuxiCTR, RecBole or TensorFlow Recommenders and returns :class:`~dcnviz.weights.CrossModelWeights`
in paper orientation (the layer computes ``W @ x``, W[out, in]; see ``../shared/PEERS.md`` for each
library's layout and how it is turned around). The format is detected from key names and shapes,
or forced with ``format=``; ``CrossModelWeights.detected`` says what was found.

Nothing a user uploads is unpickled: torch files go through ``torch.load(weights_only=True)`` or,
for checkpoint dicts with pickled objects, :mod:`dcnviz.importers.safe_pickle`; ``.npz`` files are read with
``allow_pickle=False``; safetensors headers are validated first.

Feature blocks (the heatmap axes) come from the file where it says them (dcnviz's FeatureSpec;
DeepCTR-Torch and FuxiCTR embedding tables; torchrec DLRM_DCN tables; RecBole's embedding size),
else x0 is one block ``"x0"``. ``names`` (a list, or a NAMES.json/CSV read by
:func:`read_names_file`) renames the blocks or defines them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

from dcnviz.checkpoint import DEFAULT_MAX_FILE_BYTES
from dcnviz.errors import CheckpointError, DataFormatError, ImportFormatError
from dcnviz.importers import deepctr, fuxictr, recbole, tfrs, torchrec
from dcnviz.importers.common import Imported, numel
from dcnviz.importers.containers import TensorFile, read_tensor_file
from dcnviz.importers.names import apply_names, read_names_file
from dcnviz.spec import Block
from dcnviz.untrusted import loads_json, shown_list
from dcnviz.weights import CrossLayerWeights, CrossModelWeights

FORMATS = ("auto", "dcnviz", "torchrec", "deepctr", "fuxictr", "recbole", "tfrs")
PEER_FORMATS = ("torchrec", "deepctr", "fuxictr", "recbole", "tfrs")
LIBRARY_NAMES = {
    "dcnviz": "dcnviz",
    "torchrec": "torchrec",
    "deepctr": "DeepCTR-Torch",
    "fuxictr": "FuxiCTR",
    "recbole": "RecBole",
    "tfrs": "TensorFlow Recommenders",
}
# Wrapper prefixes stripped when *every* key carries them: DataParallel, torch.compile, Lightning, DLRMTrain.
WRAPPERS = ("module.", "_orig_mod.", "model.", "net.", "network.", "_model.")
# Numbers in all tensors of a peer file together (embeddings and deep tower included), refused before any
# conversion; the cross weights alone are bounded by common.MAX_CROSS_ELEMENTS (1 << 26).
MAX_FILE_ELEMENTS = 1 << 30

__all__ = [
    "FORMATS",
    "CrossModelWeights",
    "detect_format",
    "import_tensor_file",
    "load_cross_weights",
    "read_names_file",
    "read_names_or_feature_map",
    "read_tensor_file",
]

_MODULES: dict[str, Any] = {
    "torchrec": torchrec,
    "deepctr": deepctr,
    "fuxictr": fuxictr,
    "recbole": recbole,
}
_DCNVIZ_KEY = re.compile(r"^model\.cross\.layers\.\d+\.")


def strip_wrappers(tensors: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    """Drop wrapper prefixes (``module.``, ``model.``, …) that every key shares; return (tensors, prefix)."""
    out = dict(tensors)
    stripped = ""
    changed = True
    while changed and out:
        changed = False
        for w in WRAPPERS:
            if all(k.startswith(w) and len(k) > len(w) for k in out):
                out = {k[len(w) :]: v for k, v in out.items()}
                stripped += w
                changed = True
                break
    return out, stripped


def _candidates(tensors: Mapping[str, Any]) -> dict[str, list[str]]:
    """Format → cross-net key prefixes where that format's anchor keys were found."""
    found: dict[str, list[str]] = {}
    if any(_DCNVIZ_KEY.match(k) for k in tensors) and any(k.startswith("initial_cross.") for k in tensors):
        found["dcnviz"] = [""]
    for fmt, mod in _MODULES.items():
        roots = mod.roots(tensors)
        if roots:
            found[fmt] = roots
    if not found and tfrs.looks_like(tensors):
        found["tfrs"] = [""]
    return found


def detect_format(tensors: Mapping[str, Any]) -> str:
    """The library whose key layout ``tensors`` has (after stripping wrapper prefixes).

    >>> import numpy as np
    >>> detect_format({"crossnet.kernels": np.zeros((2, 4, 4)), "crossnet.bias": np.zeros((2, 4, 1))})
    'deepctr'
    >>> detect_format({"module.inter_arch.crossnet.W_kernels.0": np.zeros((8, 2))})
    'torchrec'

    Raises :class:`ImportFormatError` when no layout matches or several do.
    """
    stripped, _ = strip_wrappers(tensors)
    found = _candidates(tensors) or _candidates(stripped)
    if not found:
        raise ImportFormatError(
            f"no known cross-network layout in the file's {len(tensors)} tensor(s) "
            f"(first keys: {shown_list(tensors, 8)}); "
            f"supported: {', '.join(LIBRARY_NAMES[f] for f in FORMATS[1:])}"
        )
    if len(found) > 1:
        raise ImportFormatError(f"the keys match several layouts ({', '.join(sorted(found))}); choose one with format=")
    return next(iter(found))


def _expected(fmt: str) -> str:
    mod = tfrs if fmt == "tfrs" else _MODULES.get(fmt)
    return getattr(mod, "EXPECTED", "")


def _import_peer(fmt: str, tensors: Mapping[str, Any], feature_map: Any) -> Imported:
    stripped, _ = strip_wrappers(tensors)
    if fmt == "tfrs":
        if not tfrs.looks_like(tensors):
            raise ImportFormatError(
                f"not TensorFlow Recommenders Cross weights: expected {tfrs.EXPECTED}; "
                f"the file's first keys are {shown_list(tensors, 8)}"
            )
        return tfrs.load(tensors)
    mod = _MODULES[fmt]
    roots = mod.roots(tensors) or mod.roots(stripped)
    src = tensors if mod.roots(tensors) else stripped
    if not roots:
        raise ImportFormatError(
            f"not a {LIBRARY_NAMES[fmt]} state dict: none of its cross-network keys were found "
            f"(expected {mod.EXPECTED}); the file's first keys are {shown_list(tensors, 8)}"
        )
    if len(roots) > 1:
        raise ImportFormatError(
            f"found {LIBRARY_NAMES[fmt]} cross layers under several prefixes {roots}; keep one model per file"
        )
    if fmt == "fuxictr":
        return fuxictr.load(src, roots[0], feature_map=feature_map)
    return mod.load(src, roots[0])  # type: ignore[no-any-return]


def read_names_or_feature_map(raw: bytes) -> list[Any] | dict[str, Any]:
    """An uploaded names file: NAMES.json / CSV (see :func:`read_names_file`), or a FuxiCTR
    ``feature_map.json`` (a JSON object with a ``features`` entry), returned parsed and checked, for
    ``load_cross_weights(feature_map=...)``.

    >>> read_names_or_feature_map(b'{"features": [{"user_id": {"type": "categorical"}}]}')["features"]
    [{'user_id': {'type': 'categorical'}}]
    >>> read_names_or_feature_map(b'["user", "movie"]')
    ['user', 'movie']
    """
    if len(raw) > 16 * 1024 * 1024:
        raise DataFormatError("the names file is over 16 MiB; a names file or feature map is one entry per feature")
    if not raw.lstrip().startswith(b"{"):
        return read_names_file(raw)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataFormatError(f"the names file is not UTF-8 (byte {e.start})") from None
    obj = loads_json(text, "the names file", error=DataFormatError)
    if not isinstance(obj, dict) or "features" not in obj:
        raise DataFormatError(
            "a names file that is a JSON object must be a FuxiCTR feature_map.json (with a 'features' entry); "
            'NAMES.json is a list: ["user_id", "movie_id", ...]'
        )
    fuxictr.feature_map_features(obj)  # checks its shape (DataFormatError naming the defect)
    return obj


def load_cross_weights(
    source: str | os.PathLike[str] | bytes,
    *,
    format: str = "auto",
    names: list[Any] | None = None,
    filename: str | None = None,
    max_bytes: int = DEFAULT_MAX_FILE_BYTES,
    feature_map: Any = None,
    trusted: bool = False,
) -> CrossModelWeights:
    """Read the cross network of a dcnviz or peer-library model file into the common form.

    A wrapper of :func:`dcnviz.modelfile.open_model_file` (which also returns the FeatureSpec,
    configs, recorded data options and metrics of dcnviz files): ``open_model_file(...).weights``.

    Args:
        source: a path, or the file's bytes (an upload).
        format: one of :data:`FORMATS`; ``"auto"`` detects it from the keys. A forced format that
            does not match raises :class:`ImportFormatError` naming what was expected.
        names: block names (``["a", "b"]``, widths inferred) or ``[{"name": .., "width": ..}]``
            (widths must sum to d), e.g. from :func:`read_names_file`.
        filename: the upload's name, used in messages only (the container is recognised by content).
        max_bytes: larger files are refused before they are read.
        feature_map: FuxiCTR ``feature_map.json`` (path, bytes or parsed dict) for x0 order and types.
        trusted: the file is your own: parse torch/npz/HDF5 containers in this process, not in the
            isolated worker (:mod:`dcnviz.isolation`).

    Raises:
        CheckpointError: unreadable, hostile or oversized file (ImportFormatError: layout mismatch);
        ConfigError: ``format`` unknown, or ``names`` that do not fit x0.
    """
    from dcnviz.modelfile import open_model_file

    return open_model_file(
        source,
        names=names,
        feature_map=feature_map,
        format=format,
        filename=filename,
        max_bytes=max_bytes,
        trusted=trusted,
    ).weights


def import_tensor_file(
    tf: TensorFile, *, format: str, names: list[Any] | None, feature_map: Any, label: str
) -> CrossModelWeights:
    """A peer library's tensors (read by :func:`~dcnviz.importers.containers.read_tensor_file`) in common form.

    ``format`` is ``auto`` (detected from the keys) or a peer format; ``label`` names the file in messages.
    """
    fmt = detect_format(tf.tensors) if format == "auto" else format
    if fmt == "dcnviz":
        raise ImportFormatError(
            f"{label} has dcnviz's key layout but not its file metadata (format=dcnviz); re-save it with dcnviz"
        )
    total = sum(numel(t) for t in tf.tensors.values())
    if total > MAX_FILE_ELEMENTS:
        raise CheckpointError(f"{label} holds {total} numbers in tensors, too many to inspect")
    imported = _import_peer(fmt, tf.tensors, feature_map)
    warnings = list(tf.notes) + imported.warnings
    layers = imported.layers
    d = layers[0].d
    blocks: list[Block] = imported.blocks or [Block("x0", 0, d, "unknown")]
    if imported.blocks and not tf.ordered and fmt in ("deepctr", "fuxictr", "torchrec") and feature_map is None:
        warnings.append(
            f"{tf.container} stores keys sorted by name, so the feature order of the blocks may not be x0's; "
            "give names with widths to be sure"
        )
    if names:
        blocks = apply_names(blocks if imported.blocks else None, d, names)
    bad = [i for i, layer in enumerate(layers) if not _finite(layer)]
    if bad:
        warnings.append(f"cross layer(s) {bad} hold NaN or Inf values; analyses of them are unreliable")
    detected = imported.detected
    if tf.container != "torch zip":
        detected += f" [{tf.container}]"
    return CrossModelWeights(
        format=fmt,
        d=d,
        layers=layers,
        blocks=blocks,
        detected=detected,
        initial_layers=imported.initial,
        init_label=imported.init_label,
        warnings=warnings,
    )


def _finite(layer: CrossLayerWeights) -> bool:
    import numpy as np

    return all(bool(np.isfinite(a).all()) for a in layer.arrays())
