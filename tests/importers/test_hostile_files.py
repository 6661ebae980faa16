"""Hostile peer-library files (issue 7): every mutated or truncated file loads or raises a DcnvizError.

* Truncated torch zip and ``.npz`` files, and peer tensors whose shapes disagree, each with its message.
* Property-based fuzzing with two mutators over the peer fixtures: raw byte edits (flips, truncation,
  insertion, deletion) of the files, and structure-aware edits of their state dicts (keys dropped,
  renamed or re-indexed; tensors reshaped, re-typed, made NaN; junk keys) re-saved as torch zip, .npz
  or safetensors, read with a random ``format=`` and ``names=``. CI runs ``DCNVIZ_FUZZ_EXAMPLES``
  (default 300) examples of each; set it higher for a longer run.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dcnviz.errors import CheckpointError, DcnvizError, ImportFormatError
from dcnviz.importers import FORMATS, load_cross_weights, read_tensor_file
from tests.helpers import PEERS


@pytest.mark.parametrize("name", ["deepctr_dcn_matrix.pt", "recbole_dcnv2_checkpoint.pth"])
def test_truncated_torch_zip(name):
    data = (PEERS / name).read_bytes()
    with pytest.raises(CheckpointError, match=r"not a readable zip archive: File is not a zip file"):
        load_cross_weights(data[: len(data) // 2])  # the zip directory sits at the end: it is gone


def test_truncated_npz():
    data = (PEERS / "tfrs_cross.npz").read_bytes()
    with pytest.raises(CheckpointError, match=r"not a readable zip archive"):
        load_cross_weights(data[:-30])


def torch_bytes(obj: object) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("state", "match"),
    [
        (
            {"crossnet.kernels": torch.zeros(2, 4, 4), "crossnet.bias": torch.zeros(2, 5, 1)},
            r"'crossnet.bias' has shape \[2, 5, 1\]; expected \[2, 4, 1\]",
        ),
        (
            {"W_kernels.0": torch.zeros(6, 2), "V_kernels.0": torch.zeros(3, 6), "bias.0": torch.zeros(6)},
            r"'V_kernels.0' has shape \[3, 6\]; expected \[2, 6\] \(V_kernels is Vᵀ \(r, N\)\)",
        ),
        (
            {
                "kernels.0": torch.zeros(4, 4),
                "bias.0": torch.zeros(4, 1),
                "kernels.1": torch.zeros(5, 5),
                "bias.1": torch.zeros(5, 1),
            },
            r"'kernels.1' has shape \[5, 5\]; expected \[4, 4\]",
        ),
        (
            {"cross_layer_w.0": torch.zeros(6, 6), "bias.0": torch.zeros(7, 1)},
            r"'bias.0' has shape \[7, 1\]; expected \[6\] or \[6, 1\]",
        ),
    ],
    ids=["deepctr-bias", "torchrec-U-vs-V", "torchrec-layer-widths", "recbole-bias"],
)
def test_peer_tensors_whose_shapes_disagree(state, match):
    with pytest.raises(ImportFormatError, match=match):
        load_cross_weights(torch_bytes(state))


FILES = sorted(p for p in PEERS.iterdir() if p.suffix in (".pt", ".pth", ".h5") or p.name == "tfrs_cross.npz")
EXAMPLES = int(os.environ.get("DCNVIZ_FUZZ_EXAMPLES", "300"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
KEYS = [
    "crossnet.kernels",
    "kernels.0",
    "bias.0",
    "crossnet.U_list",
    "cross_layer_w.0",
    "U_kernels.0",
    "cross/dense/kernel:0",
    "gating.0.weight",
    "crossnet.bias",
    "embedding_dict.x.weight",
    "W_kernels.1",
]


def _state(path: Path) -> dict[str, torch.Tensor]:
    tensors = read_tensor_file(path.read_bytes(), max_bytes=1 << 30).tensors
    return {k: v if isinstance(v, torch.Tensor) else torch.as_tensor(np.array(v)) for k, v in tensors.items()}


STATES = [_state(p) for p in FILES]


def _outcome(data: bytes, **kwargs: object) -> None:
    try:
        cw = load_cross_weights(data, **kwargs)  # type: ignore[arg-type]
    except DcnvizError:
        return
    for layer in cw.layers:
        assert layer.effective_weight().shape == (cw.d, cw.d)
    assert cw.blocks[0].start == 0 and cw.blocks[-1].stop == cw.d


@FUZZ
@given(
    which=st.integers(0, len(FILES) - 1),
    edits=st.lists(
        st.tuples(
            st.sampled_from(["set", "cut", "insert", "delete"]),
            st.integers(0, 1 << 30),
            st.binary(min_size=1, max_size=16),
        ),
        min_size=1,
        max_size=6,
    ),
)
def test_byte_mutations(which, edits):
    data = bytearray(FILES[which].read_bytes())
    for op, pos, blob in edits:
        i = pos % max(len(data), 1)
        if op == "set":
            data[i : i + len(blob)] = blob[: max(0, len(data) - i)]
        elif op == "cut":
            del data[i:]
        elif op == "insert":
            data[i:i] = blob
        else:
            del data[i : i + len(blob) * 4]
    _outcome(bytes(data))


tensor_edit = st.one_of(
    st.tuples(st.just("shape"), st.lists(st.integers(0, 9), max_size=5)),
    st.tuples(st.just("dtype"), st.sampled_from([torch.int64, torch.float16, torch.bool, torch.float64])),
    st.tuples(st.just("fill"), st.sampled_from([float("nan"), float("inf"), 0.0])),
    st.tuples(st.just("flatten"), st.none()),
    st.tuples(st.just("transpose"), st.none()),
)
key_edit = st.one_of(
    st.tuples(st.just("drop"), st.none()),
    st.tuples(st.just("rename"), st.sampled_from(KEYS)),
    st.tuples(st.just("prefix"), st.sampled_from(["module.", "model.", "x."])),
    st.tuples(st.just("reindex"), st.integers(0, 3)),
)


def _apply_tensor(t: torch.Tensor, edit: tuple) -> torch.Tensor:
    op, arg = edit
    if op == "shape":
        return torch.randn(arg)
    if op == "dtype":
        return t.to(arg)
    if op == "fill":
        return torch.full_like(t.float(), arg)
    if op == "flatten":
        return t.reshape(-1)
    return t.transpose(0, -1).contiguous() if t.dim() else t


def _apply_key(k: str, edit: tuple) -> str | None:
    op, arg = edit
    if op == "drop":
        return None
    if op == "rename":
        return arg
    if op == "prefix":
        return arg + k
    return "".join(str(arg) if c.isdigit() else c for c in k)


@FUZZ
@given(
    which=st.integers(0, len(STATES) - 1),
    edits=st.lists(st.tuples(st.integers(0, 1000), st.one_of(tensor_edit, key_edit)), min_size=1, max_size=5),
    container=st.sampled_from(["torch", "npz", "safetensors"]),
    fmt=st.sampled_from(FORMATS),
    names=st.sampled_from([None, ["a", "b"], [{"name": "a", "width": 3}, {"name": "b", "width": 3}]]),
)
def test_state_dict_mutations(which, edits, container, fmt, names):
    sd = dict(STATES[which])
    for pos, edit in edits:
        if not sd:
            break
        k = sorted(sd)[pos % len(sd)]
        if edit[0] in ("shape", "dtype", "fill", "flatten", "transpose"):
            sd[k] = _apply_tensor(sd[k], edit)
        else:
            t = sd.pop(k)
            new = _apply_key(k, edit)
            if new is not None:
                sd[new] = t
    buf = io.BytesIO()
    if container == "torch":
        torch.save(sd, buf)
        data = buf.getvalue()
    elif container == "npz":
        np.savez(buf, **{k.replace("/", "_") if k.count("/") > 8 else k: v.numpy() for k, v in sd.items()})
        data = buf.getvalue()
    else:
        from safetensors.torch import save

        if not sd:
            pytest.skip("safetensors cannot hold an empty dict here")
        data = save({k: v.contiguous() for k, v in sd.items()})
    _outcome(data, format=fmt, names=names)
