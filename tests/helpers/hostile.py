"""Hostile inputs of every class in issue 11, generated small and fast (no file in the repository).

Each :class:`Hostile` says what it is (``kind``: which CLI option or loader takes it), how to make it,
and the message its clean refusal must contain. Used by the regression tests of each class
(``tests/test_modelfile.py`` for the library, ``tests/commands/test_inspect.py`` for the CLI,
``tests/app/test_hostile_inputs.py`` for the app), the fuzzer's extra shapes
(``tests/test_modelfile_fuzz.py``) and the measurement script ``benchmarks/bench_hostile.py`` (time
and peak memory per class, CLI and app paths).

``crash_class`` inputs used to kill the whole process (a C stack overflow, a multi-GB allocation);
:func:`crash_inputs` builds variants of them that our own pre-scan lets through, to show that the
isolated worker contains them (``tests/test_isolation.py``).
"""

from __future__ import annotations

import io
import json
import struct
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from tests.helpers import PEERS as PEERS  # re-exported: H.PEERS


@dataclass(frozen=True)
class Hostile:
    name: str  # short id
    issue_class: str  # the bullet of issue 11 it belongs to
    kind: str  # model | names | schema | feature_map | parquet | csv_schema
    make: Callable[[], bytes]
    expect: str  # a regex the clean error must match
    crash_class: bool = False  # used to crash or exhaust the process (must be contained by the worker)


# --- building blocks -------------------------------------------------------------------------------
def u(text: str) -> bytes:
    """BINUNICODE."""
    raw = text.encode()
    return b"X" + struct.pack("<I", len(raw)) + raw


def i32(n: int) -> bytes:
    return b"J" + struct.pack("<i", n)


def tensor_pickle(key: str, numel: int, size: tuple[int, ...], stride: tuple[int, ...], offset: int = 0) -> bytes:
    """Pickle opcodes (protocol 2) that rebuild one float tensor from storage ``key``, as torch.save writes."""

    def tup(items: list[bytes]) -> bytes:
        return b"(" + b"".join(items) + b"t"

    pid = tup([u("storage"), b"ctorch\nFloatStorage\n", u(key), u("cpu"), i32(numel)]) + b"Q"
    args = tup([pid, i32(offset), tup([i32(n) for n in size]), tup([i32(n) for n in stride]), b"\x89", b"}"])
    return b"ctorch._utils\n_rebuild_tensor_v2\n" + args + b"R"


def torch_zip(pkl: bytes, records: dict[str, bytes] | None = None) -> bytes:
    """A torch zip archive around ``data.pkl`` (as ``torch.save`` lays it out)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("archive/data.pkl", pkl)
        z.writestr("archive/byteorder", b"little")
        z.writestr("archive/version", b"3\n")
        for k, v in (records or {}).items():
            z.writestr(f"archive/data/{k}", v)
    return out.getvalue()


def torch_save(obj: Any) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def safetensors_bytes(header: dict[str, Any] | bytes, body: bytes = b"") -> bytes:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    raw += b" " * ((8 - len(raw) % 8) % 8)
    return struct.pack("<Q", len(raw)) + raw + body


def npz_bytes(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for k, v in members.items():
            z.writestr(f"{k}.npy", v)
    return out.getvalue()


def npy_bytes(header: str, payload: bytes) -> bytes:
    """A ``.npy`` member with a hand-written header dict (e.g. a negative shape)."""
    text = header + " " * ((64 - (10 + len(header) + 1) % 64) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text.encode() + payload


def dcnviz_file(
    edit: Callable[[dict[str, Any]], None] | None = None, text: Callable[[str], str] | None = None
) -> bytes:
    """A small valid dcnviz model file, its metadata document changed by ``edit`` (then its text by ``text``)."""
    from dcnviz.checkpoint import model_to_bytes
    from dcnviz.model import DCNModel, ModelConfig
    from dcnviz.spec import FeatureSpec, Field

    torch.manual_seed(0)
    spec = FeatureSpec(
        (
            Field(name="a", kind="categorical", embedding_dim=3, vocab=("x", "y")),
            Field(name="c", kind="dense", embedding_dim=1),
        )
    )
    data = model_to_bytes(DCNModel(spec, ModelConfig(hidden=(3,))))
    if edit is None and text is None:
        return data
    (n,) = struct.unpack("<Q", data[:8])
    header, body = json.loads(data[8 : 8 + n]), data[8 + n :]
    meta = json.loads(header["__metadata__"]["meta"])
    if edit is not None:
        edit(meta)
    header["__metadata__"]["meta"] = text(json.dumps(meta)) if text is not None else json.dumps(meta)
    return safetensors_bytes(header, body)


# --- the classes of issue 11 ----------------------------------------------------------------------
def deep_tuple_key(depth: int, refused_global: bool = False) -> bytes:
    """{"w": tensor, ((((None,),),)…): None}: a tuple nested ``depth`` deep used as a dict key (hashing it
    recurses in C: ~10**6 deep overflows the stack of torch's weights-only unpickler, exit 139).
    ``refused_global``: start with ``os.system``, which sends the file to dcnviz's own (C) unpickler."""
    pkl = b"\x80\x02}" + u("w") + tensor_pickle("0", 1, (1,), (1,)) + b"s"
    if refused_global:
        pkl += u("x") + b"cos\nsystem\ns"
    pkl += b"N" + b"\x85" * depth + b"Ns."
    return torch_zip(pkl, {"0": np.zeros(1, "<f4").tobytes()})


def memo_bomb(index: int) -> bytes:
    """A pickle naming a refused global (so dcnviz's C-unpickler path reads it) that memoises at ``index``:
    the C unpickler grows its memo table to the index (16 bytes per unit: 2**27 → ~2.3 GB)."""
    pkl = b"\x80\x02}" + u("w") + tensor_pickle("0", 1, (1,), (1,)) + b"s"
    pkl += b"cos\nsystem\n" + b"r" + struct.pack("<I", index) + b"0."
    return torch_zip(pkl, {"0": np.zeros(1, "<f4").tobytes()})


def many_zero_length_tensors(n: int) -> bytes:
    entries = b",".join(b'"t%d": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]}' % i for i in range(n))
    return safetensors_bytes(b"{" + entries + b"}")


def stride0_view(d: int) -> bytes:
    """DeepCTR-shaped weights whose d × d kernel is a stride-0 view of one stored number."""
    pkl = b"\x80\x02}" + u("crossnet.kernels") + tensor_pickle("0", 1, (1, d, d), (0, 0, 0)) + b"s"
    pkl += u("crossnet.bias") + tensor_pickle("1", 1, (1, d, 1), (0, 0, 0)) + b"s."
    zeros = np.zeros(1, "<f4").tobytes()
    return torch_zip(pkl, {"0": zeros, "1": zeros})


def duplicate_fields(n: int) -> bytes:
    def edit(meta: dict[str, Any]) -> None:
        meta["feature_spec"]["fields"] = [{"name": "a", "kind": "dense", "embedding_dim": 1}] * n

    return dcnviz_file(edit)


def build_on_storage_type() -> bytes:
    """BUILD applied to the allow-listed ``torch.FloatStorage`` stand-in (once shared by every load: a
    rewrite of its dtype broke every later restricted load in the process)."""
    pkl = b"\x80\x02}" + u("w") + b"ctorch\nFloatStorage\n" + b"}" + u("dtype") + b"cos\nsystem\n" + b"sb" + b"s."
    return torch_zip(pkl)


def build_renaming_a_function() -> bytes:
    """BUILD with slot state on the allow-listed ``collections.OrderedDict`` (a module-level function)."""
    state = b"N}" + u("__name__") + u("hacked") + b"s\x86"  # (None, {"__name__": "hacked"})
    pkl = b"\x80\x02}" + u("w") + b"ccollections\nOrderedDict\n" + state + b"b" + b"s" + u("x") + b"cos\nsystem\ns."
    return torch_zip(pkl)


def storage_enlarged() -> bytes:
    """The same storage record referenced first with 1 element, then with 2**20."""
    pkl = b"\x80\x02}" + u("a") + tensor_pickle("0", 1, (1,), (1,)) + b"s"
    pkl += u("b") + tensor_pickle("0", 1 << 20, (1 << 20,), (1,)) + b"s."
    return torch_zip(pkl, {"0": np.zeros(1, "<f4").tobytes()})


def big_int_pickle(digits: int) -> bytes:
    pkl = b"\x80\x02}" + u("w") + tensor_pickle("0", 1, (1,), (1,)) + b"s" + u("n") + b"I" + b"7" * digits + b"\ns."
    return torch_zip(pkl, {"0": np.zeros(1, "<f4").tobytes()})


def zero_length_huge_dims_pickle() -> bytes:
    pkl = b"\x80\x02}" + u("crossnet.kernels") + b"ctorch._utils\n_rebuild_tensor_v2\n("
    pkl += b"(" + u("storage") + b"ctorch\nFloatStorage\n" + u("0") + u("cpu") + i32(0) + b"tQ"
    pkl += i32(0) + b"(" + i32(0) + b"\x8a\x09" + (1 << 70).to_bytes(9, "little") + b"t(" + i32(1) + i32(1)
    pkl += b"t\x89}tRs."
    return torch_zip(pkl, {"0": b""})


def long_name_file(n: int) -> bytes:
    return torch_save({"x" * n: torch.zeros(1), "crossnet.kernels": torch.zeros(1, 2, 2)})


def nul_name_file() -> bytes:
    return torch_save({"a\x00b\x1b[31m": torch.zeros(2)})


def nested_tensor() -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "nested tensors are in prototype stage"
        return torch.nested.nested_tensor([torch.zeros(2), torch.zeros(3)])


def deep_json(depth: int, wrap: str = "{}") -> bytes:
    body = "[" * depth + "]" * depth
    return wrap.format(body).encode() if wrap != "{}" else body.encode()


HOSTILE: list[Hostile] = [
    # crash of the whole server
    Hostile(
        "deep-tuple-key-1e6",
        "crash",
        "model",
        lambda: deep_tuple_key(1_000_000),
        r"data\.pkl nests objects more than 100 levels deep",
        crash_class=True,
    ),
    Hostile(
        "deep-tuple-key-3000", "crash", "model", lambda: deep_tuple_key(3_000), r"nests objects more than 100 levels"
    ),
    # memory bombs
    Hostile(
        "memo-bomb-2^27",
        "memory",
        "model",
        lambda: memo_bomb(1 << 27),
        r"memo slot 134,217,728 .* memory bomb",
        crash_class=True,
    ),
    Hostile(
        "memo-bomb-2^30", "memory", "model", lambda: memo_bomb(1 << 30), r"memo slot 1,073,741,824", crash_class=True
    ),
    Hostile(
        "300k-zero-length-tensors",
        "memory",
        "model",
        lambda: many_zero_length_tensors(300_000),
        r"lists 300,000 tensors, more than the 20,000",
    ),
    # stalls
    Hostile("stride-0-view-4096", "stall", "model", lambda: stride0_view(4096), r"views that repeat stored values"),
    Hostile("60k-duplicate-fields", "stall", "model", lambda: duplicate_fields(60_000), r"60,000 fields, more than"),
    Hostile("9k-duplicate-fields", "stall", "model", lambda: duplicate_fields(9_000), r"field names must be unique"),
    # poisoning shared state
    Hostile("build-on-storage-type", "poison", "model", build_on_storage_type, r"BUILD to StorageType|tries to change"),
    Hostile(
        "build-renames-function", "poison", "model", build_renaming_a_function, r"BUILD to _Callable|tries to change"
    ),
    # tracebacks instead of error: …
    Hostile("deep-json-names", "traceback", "names", lambda: deep_json(200_000), r"nested more than 64 levels deep"),
    Hostile("deep-json-schema", "traceback", "schema", lambda: deep_json(200_000), r"nested more than 64 levels deep"),
    Hostile(
        "deep-json-feature-map",
        "traceback",
        "feature_map",
        lambda: ('{"features": ' + "[" * 200_000 + "]" * 200_000 + "}").encode(),
        r"nested more than 64 levels deep",
    ),
    Hostile(
        "5000-digit-int-safetensors-header",
        "traceback",
        "model",
        lambda: safetensors_bytes(b'{"w": {"dtype": "F32", "shape": [' + b"9" * 5000 + b'], "data_offsets": [0, 0]}}'),
        r"integer of 5,000 digits",
    ),
    Hostile(
        "5000-digit-int-metadata",
        "traceback",
        "model",
        lambda: dcnviz_file(
            lambda m: m["model_config"].update(cross_layers=424242), lambda t: t.replace("424242", "9" * 5000)
        ),
        r"model metadata holds an integer of 5,000 digits",
    ),
    Hostile(
        "5000-digit-int-names",
        "traceback",
        "names",
        lambda: b'[{"name": "a", "width": ' + b"9" * 5000 + b"}]",
        r"integer of 5,000 digits",
    ),
    Hostile(
        "5000-digit-int-schema",
        "traceback",
        "schema",
        lambda: b'{"label": "y", "categorical": ["a"], "label_threshold": ' + b"9" * 5000 + b"}",
        r"integer of 5,000 digits",
    ),
    Hostile("5000-digit-int-pickle", "traceback", "model", lambda: big_int_pickle(5000), r"integer of more than 4,300"),
    Hostile(
        "sparse-tensor", "traceback", "model", lambda: torch_save({"w": torch.eye(3).to_sparse()}), r"a sparse tensor"
    ),
    Hostile(
        "meta-tensor",
        "traceback",
        "model",
        lambda: torch_save({"w": torch.empty(3, 3, device="meta")}),
        r"a meta-device tensor",
    ),
    Hostile(
        "nested-tensor",
        "traceback",
        "model",
        lambda: torch_save({"w": nested_tensor()}),
        r"a nested tensor",
    ),
    Hostile(
        "zero-length-huge-dims-safetensors",
        "traceback",
        "model",
        lambda: safetensors_bytes({"w": {"dtype": "F32", "shape": [0, 2**64], "data_offsets": [0, 0]}}),
        r"a dimension of 2\*\*40 or more",
    ),
    Hostile(
        "zero-length-huge-dims-pickle",
        "traceback",
        "model",
        zero_length_huge_dims_pickle,
        r"a dimension of 2\*\*40 or more",
    ),
    Hostile(
        "npz-negative-shape",
        "traceback",
        "model",
        lambda: npz_bytes({"w": npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (-1, -4), }", bytes(16))}),
        r"negative shape",
    ),
    Hostile(
        "storage-enlarged",
        "traceback",
        "model",
        storage_enlarged,
        r"storage '0' is referenced with two sizes \(4 and 4,194,304 bytes\)",
    ),
    # untrusted text echoed unbounded
    Hostile("20MB-tensor-name", "text", "model", lambda: long_name_file(20_000_000), r"longer than the 1,024"),
    Hostile("NUL-in-tensor-name", "text", "model", nul_name_file, r"no known cross-network layout"),
]


def crash_inputs() -> dict[str, bytes]:
    """Inputs that crash or exhaust a process *if* our pre-scan is bypassed: the worker must contain them."""
    return {"deep-tuple-key-1e6": deep_tuple_key(1_000_000, refused_global=True), "memo-bomb-2^30": memo_bomb(1 << 30)}


def by_name(name: str) -> Hostile:
    return next(h for h in HOSTILE if h.name == name)
