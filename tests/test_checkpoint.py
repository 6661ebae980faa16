"""Corrupt and adversarial model files (issue 7): one test per kind, each asserting the error class and message.

Every hostile file here is derived from a valid dcnviz file (or a real peer fixture) by one precise
edit, so each test shows that exactly that defect is what the loader names. Both readers are held to
it: :func:`dcnviz.checkpoint.load_model` (dcnviz files) and :func:`dcnviz.importers.load_cross_weights`
(every format the app accepts). tests/test_model_checkpoint.py and tests/test_importers.py already
cover a first truncation, a shape/metadata mismatch, format version 2 and NaN weights; this module
covers the rest of the list and the defects the fuzzer (tests/test_fuzz.py) found.
"""

from __future__ import annotations

import io
import json
import math
import re
import struct
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from dcnviz.app.bundle import load_bundle
from dcnviz.checkpoint import MAX_HEADER_BYTES, load_model, model_to_bytes, save_model
from dcnviz.errors import CheckpointError, ImportFormatError
from dcnviz.importers import load_cross_weights
from dcnviz.model import DCNModel, ModelConfig
from dcnviz.spec import FeatureSpec, Field

PEERS = Path(__file__).parent / "fixtures" / "peers"
SPEC = FeatureSpec(
    (
        Field(name="user", kind="categorical", embedding_dim=3, vocab=("a", "b", "c")),
        Field(name="year", kind="dense", embedding_dim=1, mean=1990.0, std=10.0),
    )
)  # d = 4


def good(config: ModelConfig | None = None) -> bytes:
    torch.manual_seed(0)
    return model_to_bytes(DCNModel(SPEC, config or ModelConfig(hidden=(3,))))


def split(data: bytes) -> tuple[dict[str, Any], bytes]:
    (n,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8 : 8 + n]), data[8 + n :]


def join(header: dict[str, Any] | bytes, body: bytes) -> bytes:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    raw += b" " * ((8 - len(raw) % 8) % 8)
    return struct.pack("<Q", len(raw)) + raw + body


def edit_meta(data: bytes, **changes: Any) -> bytes:
    """The same file with ``__metadata__`` entries replaced (values are strings, or JSON-dumped)."""
    header, body = split(data)
    for k, v in changes.items():
        header["__metadata__"][k] = v if isinstance(v, str) else json.dumps(v)
    return join(header, body)


def edit_model_meta(data: bytes, edit: Any) -> bytes:
    """The same file with the dcnviz ``meta`` document changed by ``edit(meta)``."""
    header, _ = split(data)
    meta = json.loads(header["__metadata__"]["meta"])
    edit(meta)
    return edit_meta(data, meta=json.dumps(meta))


def both(data: bytes, cls: type[Exception], match: str) -> None:
    """Both readers refuse ``data`` with ``cls`` and a message matching ``match``."""
    with pytest.raises(cls, match=match):
        load_model(data)
    with pytest.raises(cls, match=match):
        load_cross_weights(data)


# --- random bytes and truncation ------------------------------------------------------------------


def test_random_bytes():
    data = np.random.default_rng(0).bytes(4096)
    n = struct.unpack("<Q", data[:8])[0]
    with pytest.raises(CheckpointError, match=f"safetensors header claims {n} bytes, more than the {MAX_HEADER_BYTES}"):
        load_model(data)
    with pytest.raises(CheckpointError, match=r"unrecognised file: not a torch zip archive .* safetensors, \.npz"):
        load_cross_weights(data)
    for seed in range(1, 40):  # and never anything but a CheckpointError, whatever the first bytes are
        junk = np.random.default_rng(seed).bytes(int(np.random.default_rng(seed).integers(1, 3000)))
        for load in (load_model, load_cross_weights):
            with pytest.raises(CheckpointError):
                load(junk)


@pytest.mark.parametrize(
    ("where", "match"),
    [
        ("in the length prefix", r"not a safetensors file: only 5 bytes, fewer than the 8-byte header length"),
        ("in the header", r"file is truncated or not safetensors: header claims \d+ bytes but only \d+ follow"),
        ("in the tensor data", r"tensor '.*': byte range \[\d+, \d+\) lies outside the \d+-byte data section"),
    ],
)
def test_truncated_dcnviz_file(where, match):
    data = good()
    n = struct.unpack("<Q", data[:8])[0]
    cut = {"in the length prefix": 5, "in the header": 8 + n // 2, "in the tensor data": len(data) - 3}[where]
    with pytest.raises(CheckpointError, match=match):
        load_model(data[:cut])
    if where != "in the length prefix":  # 5 bytes are too short to be recognised as safetensors at all
        with pytest.raises(CheckpointError, match=match):
            load_cross_weights(data[:cut])


@pytest.mark.parametrize("name", ["deepctr_dcn_matrix.pt", "recbole_dcnv2_checkpoint.pth"])
def test_truncated_torch_zip(name):
    data = (PEERS / name).read_bytes()
    with pytest.raises(CheckpointError, match=r"not a readable zip archive: File is not a zip file"):
        load_cross_weights(data[: len(data) // 2])  # the zip directory sits at the end: it is gone


def test_truncated_npz():
    data = (PEERS / "tfrs_cross.npz").read_bytes()
    with pytest.raises(CheckpointError, match=r"not a readable zip archive"):
        load_cross_weights(data[:-30])


# --- a safetensors header that lies --------------------------------------------------------------


def test_header_length_claims_huge_size():
    data = good()
    huge = struct.pack("<Q", 2**63) + data[8:]
    both(huge, CheckpointError, f"safetensors header claims {2**63} bytes, more than the {MAX_HEADER_BYTES}-byte limit")


def test_tensor_claims_huge_shape():
    header, body = split(good())
    header["model.logit.bias"]["shape"] = [2**10, 2**20]  # 4 GiB of F32 in a 4-byte range
    both(
        join(header, body),
        CheckpointError,
        re.escape(
            "tensor 'model.logit.bias': shape [1024, 1048576] of F32 needs 4294967296 bytes, but its range holds 4"
        ),
    )
    header["model.logit.bias"]["shape"] = [2**20, 2**20]  # 2**40 elements: not even a product to trust
    both(join(header, body), CheckpointError, r"shape \[1048576, 1048576\]: a dimension of 2\*\*40 or more")


def test_tensor_range_claims_huge_offsets():
    header, body = split(good())
    header["model.logit.bias"]["data_offsets"] = [0, 2**40]
    both(
        join(header, body),
        CheckpointError,
        re.escape(f"tensor 'model.logit.bias': byte range [0, {2**40}) lies outside the {len(body)}-byte data section"),
    )


def test_overlapping_byte_ranges():
    header, body = split(good())
    a, b = "model.cross.layers.0.linear.bias", "model.cross.layers.1.linear.bias"  # both (4,) F32
    header[b]["data_offsets"] = list(header[a]["data_offsets"])
    first, second = sorted([a, b], key=lambda k: (header[k]["data_offsets"][0], k))
    both(join(header, body), CheckpointError, f"tensors '{first}' and '{second}' have overlapping byte ranges")


def test_header_entry_with_missing_or_extra_keys():
    header, body = split(good())
    header["model.logit.bias"]["exec"] = "os.system('x')"
    both(
        join(header, body),
        CheckpointError,
        "tensor 'model.logit.bias': header entry must have dtype, shape and data_offsets",
    )


def test_negative_and_non_integer_shapes():
    header, body = split(good())
    header["model.logit.bias"]["shape"] = [-1]
    both(
        join(header, body),
        CheckpointError,
        r"tensor 'model.logit.bias': shape must be a list of non-negative ints; got \[-1\]",
    )
    header["model.logit.bias"]["shape"] = [1.0]
    both(join(header, body), CheckpointError, r"shape must be a list of non-negative ints; got \[1.0\]")


# --- dtypes ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["C64", "F8_E4M3", "U64", "object"])
def test_unsupported_dtype(dtype):
    header, body = split(good())
    header["model.logit.bias"]["dtype"] = dtype
    both(join(header, body), CheckpointError, f"tensor 'model.logit.bias': unsupported dtype '{dtype}'")


def test_dtype_that_is_not_a_string():
    """Found by the fuzzer: a list here crashed the header check with TypeError (unhashable)."""
    header, body = split(good())
    header["model.logit.bias"]["dtype"] = ["F32"]
    both(join(header, body), CheckpointError, re.escape("tensor 'model.logit.bias': unsupported dtype ['F32']"))


def test_integer_weights_are_refused():
    header, body = split(good())
    header["model.cross.layers.0.linear.weight"]["dtype"] = "I32"  # same byte size as F32
    with pytest.raises(
        CheckpointError,
        match=r"tensor 'model.cross.layers.0.linear.weight' has dtype torch.int32; weights must be floating point",
    ):
        load_model(join(header, body))


def test_wider_float_dtype_loads_the_same_values():
    """Not every unusual dtype is an attack: an F64 copy of a file loads, with the same weights."""
    data = good()
    tensors = st_load(data)
    metadata = split(data)[0]["__metadata__"]
    wide = st_save({k: v.double() for k, v in tensors.items()}, metadata=metadata)
    a, b = load_model(data).model.state_dict(), load_model(wide).model.state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)


# --- non-finite weights ------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_weights_load_with_a_warning_naming_the_tensor(value):
    model = DCNModel(SPEC, ModelConfig(hidden=(3,)))
    with torch.no_grad():
        model.cross.layers[1].linear.weight[2, 1] = value  # type: ignore[union-attr,index]
    data = model_to_bytes(model)
    expected = "1 tensor(s) hold NaN or Inf values, e.g. 'model.cross.layers.1.linear.weight'"
    loaded = load_model(data)
    assert loaded.warnings == [f"{expected}; analyses of them are unreliable"]
    # the importer path (CLI inspect, Compare) passes the warning on too
    assert any(expected in w for w in load_cross_weights(data).warnings)
    assert any(
        expected in w for w in load_bundle(data, format="auto", names=None, filename="m", max_bytes=1 << 30).warnings
    )


# --- shapes that do not match the metadata or each other --------------------------------------------


def test_initial_weights_shaped_unlike_the_model_are_refused():
    data = good()
    tensors = st_load(data)
    tensors["initial_cross.layers.0.linear.weight"] = torch.zeros(4, 5)
    bad = st_save(tensors, metadata=split(data)[0]["__metadata__"])
    both(
        bad,
        CheckpointError,
        re.escape("tensor 'initial_cross.layers.0.linear.weight' has shape [4, 5], but the metadata implies [4, 4]"),
    )


def test_spec_narrower_than_the_tensors_is_refused():
    data = edit_model_meta(good(), lambda m: m["feature_spec"]["fields"][0].update(embedding_dim=2))
    both(
        data,
        CheckpointError,
        re.escape("tensor 'model.embedding.tables.user.weight' has shape [4, 3], but the metadata implies [4, 2]"),
    )


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


# --- metadata that is not JSON, not UTF-8, or not a dcnviz file --------------------------------------


def test_model_metadata_not_json():
    both(
        edit_meta(good(), meta="{'model_config': 1}"),
        CheckpointError,
        "model metadata is not valid JSON: Expecting property name enclosed in double quotes at char 1",
    )
    both(edit_meta(good(), meta="[1, 2]"), CheckpointError, "model metadata must be a JSON object")
    both(edit_meta(good(), meta="{}"), CheckpointError, "model metadata lacks 'model_config'")


def test_header_not_json():
    header, body = split(good())
    raw = json.dumps(header).encode().replace(b'"format"', b"'format'", 1)
    both(
        join(raw, body),
        CheckpointError,
        r"safetensors header is not valid JSON: Expecting property name .* at char \d+",
    )


def test_header_nested_too_deeply():
    """Found by the fuzzer: a 100 000-deep JSON array raised RecursionError out of json.loads."""
    _, body = split(good())
    deep = b'{"x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    both(join(deep, body), CheckpointError, "safetensors header is nested more than 4 levels deep; at most 4 are read")
    meta = "[" * 100_000 + "]" * 100_000
    both(edit_meta(good(), meta=meta), CheckpointError, "model metadata is nested more than 64 levels deep")


def test_metadata_values_must_be_strings():
    header, body = split(good())
    header["__metadata__"]["format_version"] = 1
    both(join(header, body), CheckpointError, "safetensors __metadata__ must map strings to strings")


def test_header_not_utf8():
    header, body = split(good())
    raw = json.dumps(header).encode()
    pos = raw.index(b"dcnviz")
    raw = raw[:pos] + b"\xff\xfe" + raw[pos + 2 :]
    both(join(raw, body), CheckpointError, rf"safetensors header is not UTF-8 \(byte {pos}\)")


@pytest.mark.parametrize("version", ["0", "2", "1.0", "", "999999999999"])
def test_unknown_format_versions(version):
    both(
        edit_meta(good(), format_version=version),
        CheckpointError,
        re.escape(f"unknown dcnviz format version {version!r}; this dcnviz reads version 1"),
    )


def test_missing_format_version():
    header, body = split(good())
    del header["__metadata__"]["format_version"]
    both(join(header, body), CheckpointError, re.escape("unknown dcnviz format version ''"))


def test_not_a_dcnviz_file():
    data = edit_meta(good(), format="other")
    with pytest.raises(CheckpointError, match=r"not a dcnviz model file \(its metadata has no format=dcnviz\)"):
        load_model(data)
    # the importers then read it as a plain safetensors state dict, whose dcnviz key layout lacks the metadata
    with pytest.raises(ImportFormatError, match="has dcnviz's key layout but not its file metadata"):
        load_cross_weights(data)


# --- metadata that would make building the model hang or crash (found by the fuzzer) ----------------


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (
            lambda m: m["model_config"].update(cross_layers=10**7),
            "model config has cross_layers=10000000, but the file holds only 13 tensors",
        ),
        (
            lambda m: m["model_config"].update(hidden=[1] * 1000),
            "model config has 1000 hidden layers, but the file holds only 13 tensors",
        ),
        (
            lambda m: m["feature_spec"].update(
                fields=[{"name": f"f{i}", "kind": "dense", "embedding_dim": 1} for i in range(5000)]
            ),
            "feature spec describes x0 of width 5000, but no tensor in the file has a dimension that long",
        ),
    ],
    ids=["cross_layers", "hidden", "fields"],
)
def test_metadata_implying_more_than_the_file_holds_is_refused_quickly(edit, match):
    data = edit_model_meta(good(), edit)
    t0 = time.perf_counter()
    both(data, CheckpointError, re.escape(match))
    assert time.perf_counter() - t0 < 20  # before the fix, cross_layers=10**7 built layers for minutes


def test_mixture_experts_beyond_the_file_are_refused():
    data = edit_model_meta(
        good(ModelConfig(model="dcn-mix", experts=2, rank=2, hidden=(3,))),
        lambda m: m["model_config"].update(experts=10**7),
    )
    both(
        data, CheckpointError, "model config has experts=10000000, but no tensor in the file has a dimension that long"
    )


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda m: m["model_config"].update(hidden=[math.inf]), "hidden must be a list of ints; got [inf]"),
        (lambda m: m["model_config"].update(hidden=["a"]), "hidden must be a list of ints; got ['a']"),
        (lambda m: m["model_config"].update(hidden=[None]), "hidden must be a list of ints; got [None]"),
        (lambda m: m["model_config"].update(cross_layers=1.5), "cross_layers must be an int; got cross_layers=1.5"),
        (lambda m: m["model_config"].update(rank="2"), "rank must be an int; got rank=2"),
        (
            lambda m: m["feature_spec"]["fields"][0].update(embedding_dim=math.inf),
            "bad field value: cannot convert float infinity to integer",
        ),
    ],
    ids=["hidden-inf", "hidden-str", "hidden-null", "cross_layers-float", "rank-str", "embedding_dim-inf"],
)
def test_mistyped_metadata_values(edit, match):
    """Found by the fuzzer: these raised OverflowError/ValueError/TypeError instead of a CheckpointError."""
    both(edit_model_meta(good(), edit), CheckpointError, "model metadata is inconsistent: " + re.escape(match))


# --- size limits ---------------------------------------------------------------------------------------


def test_files_over_the_limit_are_refused_before_reading(tmp_path):
    data = good()
    p = save_model(tmp_path / "big.safetensors", DCNModel(SPEC, ModelConfig(hidden=(3,))))
    limit = p.stat().st_size - 1
    msg = rf"big.safetensors is {p.stat().st_size} bytes, over the {limit}-byte limit"
    with pytest.raises(CheckpointError, match=msg):
        load_model(p, max_bytes=limit)
    with pytest.raises(CheckpointError, match=msg):
        load_cross_weights(p, max_bytes=limit)
    with pytest.raises(CheckpointError, match=rf"file is {len(data)} bytes, over the {len(data) - 1}-byte limit"):
        load_model(data, max_bytes=len(data) - 1)
    with pytest.raises(CheckpointError, match=rf"up.pt is {len(data):,} bytes, over the {len(data) - 1:,}-byte limit"):
        load_bundle(data, format="auto", names=None, filename="up.pt", max_bytes=len(data) - 1)
