"""The model file (dcnviz.checkpoint): the round trip, and every corrupt, adversarial or interrupted write.

* The round trip gives identical predictions for every kind and structure; the file gets the usual mode.
* Corrupt and adversarial files (issue 7): one test per kind, each asserting the error class and
  message. Every hostile file is derived from a valid dcnviz file by one precise edit, so each test
  shows that exactly that defect is what the loader names. Both readers are held to it:
  :func:`dcnviz.checkpoint.load_model` and :func:`dcnviz.importers.load_cross_weights` (``both``).
  Truncation, a shape/metadata mismatch, unknown format versions, NaN weights, and the defects the
  fuzzer (``tests/test_modelfile_fuzz.py``) found. Peer containers: ``tests/importers/test_hostile_files.py``.
* Interrupted writes: a process killed with SIGKILL in the middle of
  :func:`dcnviz.checkpoint.save_model`, many times over, never leaves a half-written model file (the
  target is absent or a complete earlier file); a control run with a naive ``open(path, "wb").write``
  under the same kills does leave torn files, so the harness can tell the difference. A write that
  fails midway (disk full at ``write``, ``fsync`` or ``rename``) leaves the previous file untouched and
  no temporary file.
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import multiprocessing
import os
import random
import re
import signal
import struct
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from dcnviz import checkpoint
from dcnviz.app.bundle import load_bundle
from dcnviz.checkpoint import FORMAT_VERSION, MAX_HEADER_BYTES, load_model, model_to_bytes, save_model
from dcnviz.errors import CheckpointError, ImportFormatError
from dcnviz.importers import load_cross_weights
from dcnviz.model import DCNModel, ModelConfig
from dcnviz.spec import FeatureSpec, Field
from tests.helpers.models import small_batch, small_spec


@pytest.mark.parametrize(
    "config", [ModelConfig(), ModelConfig(model="dcn-mix", expert_activation="tanh"), ModelConfig(model="dnn")]
)
def test_round_trip_gives_identical_predictions(tmp_path, config):
    torch.manual_seed(0)
    model = DCNModel(small_spec(), config).eval()
    with torch.no_grad():
        model.cross.layers[0].effective_weight() if model.cross else None
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    path = save_model(tmp_path / "m.safetensors", model, metrics={"test": {"auc": 0.8}}, history=[{"epoch": 1}])
    loaded = load_model(path)
    b = small_batch()
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(b.cat, b.dense, b.multi), model(b.cat, b.dense, b.multi))
    assert loaded.spec == model.spec and loaded.config == model.config
    assert loaded.meta["metrics"] == {"test": {"auc": 0.8}}
    assert loaded.meta["versions"]["torch"] == torch.__version__
    for k, v in model.initial_cross.items():
        torch.testing.assert_close(loaded.model.initial_cross[k], v)
    assert loaded.warnings == []
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]  # no temp file left


def _rewrite_metadata(data: bytes, **changes: str) -> bytes:
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    header["__metadata__"].update(changes)
    raw = json.dumps(header).encode()
    raw += b" " * ((8 - len(raw) % 8) % 8)
    return struct.pack("<Q", len(raw)) + raw + data[8 + n :]


def test_unknown_format_version_is_refused():
    data = model_to_bytes(DCNModel(small_spec(), ModelConfig()))
    bad = _rewrite_metadata(data, format_version=str(FORMAT_VERSION + 1))
    with pytest.raises(CheckpointError, match="unknown dcnviz format version '2'"):
        load_model(bad)


def test_metadata_that_does_not_match_tensors_is_refused():
    data = model_to_bytes(DCNModel(small_spec(), ModelConfig(cross_layers=2)))
    (n,) = struct.unpack("<Q", data[:8])
    meta = json.loads(json.loads(data[8 : 8 + n])["__metadata__"]["meta"])
    meta["model_config"]["cross_layers"] = 3
    with pytest.raises(CheckpointError, match="lacks tensors"):
        load_model(_rewrite_metadata(data, meta=json.dumps(meta)))
    meta["model_config"]["cross_layers"] = 2
    meta["model_config"]["hidden"] = [100, 100]
    with pytest.raises(CheckpointError, match="has shape"):
        load_model(_rewrite_metadata(data, meta=json.dumps(meta)))


def test_truncated_and_random_bytes_are_refused():
    data = model_to_bytes(DCNModel(small_spec(), ModelConfig()))
    with pytest.raises(CheckpointError, match="truncated|outside"):
        load_model(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="not a safetensors file"):
        load_model(b"\x00\x01")
    with pytest.raises(CheckpointError):
        load_model(bytes(range(256)) * 10)


def test_non_finite_weights_load_with_a_warning():
    model = DCNModel(small_spec(), ModelConfig())
    with torch.no_grad():
        model.cross.layers[0].linear.weight[0, 0] = float("nan")
    loaded = load_model(model_to_bytes(model))
    assert loaded.warnings and "NaN or Inf" in loaded.warnings[0]


def test_saved_file_gets_the_usual_mode(tmp_path):
    import os
    import stat

    path = save_model(tmp_path / "m.safetensors", DCNModel(small_spec(), ModelConfig()))
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask


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


def wide_model(seed: int) -> DCNModel:
    """A model whose file is ~4 MB, so that writing it takes long enough to be interrupted."""
    torch.manual_seed(seed)
    spec = FeatureSpec(tuple(Field(name=f"f{i}", kind="dense", embedding_dim=1) for i in range(400)))
    return DCNModel(spec, ModelConfig(model="crossnet", cross_layers=3))


def _save_forever(target: str, kind: str, files: list[bytes]) -> None:  # runs in a forked child
    i = 0
    while True:
        data = files[i % len(files)]
        if kind == "atomic":
            checkpoint.write_atomic(target, data)
        else:
            with open(target, "wb") as f:  # the naive way: truncate, then write in place
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        i += 1


def _kill_during_saves(tmp_path: Path, kind: str, rounds: int, seed: int, until_torn: bool = False) -> dict[str, int]:
    """Fork a child that saves in a loop, SIGKILL it at a random moment, inspect the target; repeat."""
    files = [model_to_bytes(wide_model(s)) for s in (1, 2)]
    complete = {hashlib.sha256(f).hexdigest() for f in files}
    target = tmp_path / f"{kind}.safetensors"
    ctx = multiprocessing.get_context("fork")
    rng = random.Random(seed)
    seen = {"absent": 0, "complete": 0, "torn": 0, "temp_left": 0}
    for _ in range(rounds):
        child = ctx.Process(target=_save_forever, args=(str(target), kind, files), daemon=True)
        child.start()
        time.sleep(rng.uniform(0.01, 0.25))
        assert child.pid is not None
        os.kill(child.pid, signal.SIGKILL)
        child.join(10)
        if not target.exists():
            seen["absent"] += 1
        elif hashlib.sha256(target.read_bytes()).hexdigest() in complete:
            if not seen["complete"]:
                load_model(target)  # byte-identical to a saved file, and that file is a valid model
            seen["complete"] += 1
        else:
            seen["torn"] += 1
        temps = list(tmp_path.glob(f".{target.name}.*.tmp"))
        seen["temp_left"] += bool(temps)
        for t in temps:  # a stray temporary file is all a kill can leave; its name never ends in .safetensors
            assert not t.name.endswith(".safetensors")
            t.unlink()
        if until_torn and seen["torn"]:
            break
    return seen


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_sigkill_mid_save_never_leaves_a_half_written_file(tmp_path):
    seen = _kill_during_saves(tmp_path, "atomic", rounds=20, seed=0)
    print("SIGKILL during save_model:", seen)
    assert seen["torn"] == 0, seen
    assert seen["complete"] > 0, seen
    assert seen["temp_left"] > 0, f"no kill landed inside a write, so this run proved nothing: {seen}"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_the_kill_harness_does_catch_a_non_atomic_writer(tmp_path):
    """Control: the same kills against a truncate-and-write saver leave torn (partial) files."""
    seen = _kill_during_saves(tmp_path, "naive", rounds=60, seed=0, until_torn=True)
    print("SIGKILL during a naive write:", seen)
    assert seen["torn"] > 0, seen


class _HalfWriter:
    """A file object whose write stores half the bytes, then fails as a full disk would."""

    def __init__(self, f) -> None:  # type: ignore[no-untyped-def]
        self.f = f

    def __enter__(self):  # type: ignore[no-untyped-def]
        return self

    def __exit__(self, *exc: object) -> None:
        self.f.close()

    def write(self, data: bytes) -> int:
        self.f.write(data[: len(data) // 2])
        self.f.flush()
        raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("where", ["write", "fsync", "rename"])
def test_a_save_that_fails_midway_keeps_the_previous_file(tmp_path, monkeypatch, where):
    target = tmp_path / "m.safetensors"
    save_model(target, DCNModel(FeatureSpec((Field(name="y", kind="dense", embedding_dim=1),)), ModelConfig()))
    before = target.read_bytes()
    real_fdopen = os.fdopen

    def fail(*a, **k):  # type: ignore[no-untyped-def]
        raise OSError(errno.ENOSPC, "No space left on device")

    if where == "write":
        monkeypatch.setattr(checkpoint.os, "fdopen", lambda *a, **k: _HalfWriter(real_fdopen(*a, **k)))
    elif where == "fsync":
        monkeypatch.setattr(checkpoint.os, "fsync", fail)
    else:
        monkeypatch.setattr(checkpoint.os, "replace", fail)
    other = wide_model(3)
    with pytest.raises(OSError, match="No space left on device"):
        save_model(target, other)
    assert target.read_bytes() == before
    load_model(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"], "no temporary file is left"
