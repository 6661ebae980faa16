"""No code execution on load (issue 7), beyond tests/test_safe_load.py: every pickle protocol, more
dangerous globals, payloads hidden where a tensor is rebuilt (storage key, size, rebuild function,
BUILD state), legacy files carrying a payload, and pickles that lie about their lengths.

Every payload's liveness is proven first: the same pickle, loaded by plain :func:`pickle.loads` or
``torch.load(weights_only=False)`` in a child process, does create its marker file. Then dcnviz
reads it and the marker must not exist.
"""

from __future__ import annotations

import io
import os
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from dcnviz.errors import CheckpointError
from dcnviz.importers import load_cross_weights, safe_pickle

PEERS = Path(__file__).parent / "fixtures" / "peers"
MAX = 1 << 26


def state() -> dict[str, torch.Tensor]:
    return torch.load(PEERS / "deepctr_dcn_matrix.pt", weights_only=True)


def reference_W() -> list[np.ndarray]:
    return [layer.W for layer in load_cross_weights(PEERS / "deepctr_dcn_matrix.pt").layers]


def torch_bytes(obj: object, protocol: int) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf, pickle_protocol=protocol)
    return buf.getvalue()


def fired_in_child(code: str, markers: list[Path]) -> list[bool]:
    """Run ``code`` in a fresh interpreter; which markers did it create? (They are removed again.)"""
    subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=180, check=False)
    out = [m.exists() for m in markers]
    for m in markers:
        if m.exists():
            m.unlink()
    return out


class Touch:
    """Pickles as ``os.system("touch <marker>")``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, (f"touch {self.marker}",))


# --- every pickle protocol ------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", [1, 2, 3, 4, 5])
def test_benign_state_dict_reads_in_every_protocol(protocol):
    """torch's own weights-only reader refuses protocols 1, 4 and 5; dcnviz's restricted one reads them."""
    cw = load_cross_weights(torch_bytes(state(), protocol))
    assert cw.format == "deepctr"
    for a, b in zip(cw.layers, reference_W(), strict=True):
        np.testing.assert_array_equal(a.W, b)


def test_protocol_0_is_refused_like_torch_refuses_it():
    """Protocol 0 writes the storage reference as a string, which torch.load itself cannot read."""
    data = torch_bytes(state(), 0)
    with pytest.raises(AssertionError, match="saved_id must be a tuple"):
        torch.load(io.BytesIO(data), weights_only=False)
    with pytest.raises(CheckpointError, match=r"unsupported persistent id in data.pkl: \('storage'"):
        load_cross_weights(data)


def test_payload_never_runs_in_any_protocol(tmp_path):
    files, markers = [], []
    for protocol in range(6):
        marker = tmp_path / f"pwned-{protocol}"
        f = tmp_path / f"evil-{protocol}.pt"
        f.write_bytes(torch_bytes({"evil": Touch(marker), **state()}, protocol))  # payload first: it runs first
        files.append(f)
        markers.append(marker)
    live = "import torch\n" + "".join(
        f"try:\n    torch.load({str(f)!r}, weights_only=False)\nexcept Exception:\n    pass\n" for f in files
    )
    assert fired_in_child(live, markers) == [True] * 6, "the test payloads must be live"
    for protocol, (f, marker) in enumerate(zip(files, markers, strict=True)):
        if protocol == 0:
            with pytest.raises(CheckpointError, match="unsupported persistent id"):
                load_cross_weights(f)
            assert not marker.exists()
            continue
        cw = load_cross_weights(f)
        assert not marker.exists(), f"protocol {protocol}"
        assert cw.format == "deepctr"
        assert any("posix.system" in w for w in cw.warnings), cw.warnings
        for a, b in zip(cw.layers, reference_W(), strict=True):
            np.testing.assert_array_equal(a.W, b)


# --- hand-written payloads: many dangerous globals ------------------------------------------------


def _s(text: str) -> bytes:
    raw = text.encode()
    return b"X" + len(raw).to_bytes(4, "little") + raw  # BINUNICODE


def _call(module: str, name: str, *args: bytes) -> bytes:
    """GLOBAL module.name, a tuple of the (already pickled) args, REDUCE."""
    return f"c{module}\n{name}\n".encode() + b"(" + b"".join(args) + b"tR"


def payloads(marker: Path) -> dict[str, bytes]:
    """Protocol-2 pickle fragments that, unpickled for real, each create ``marker``."""
    touch = f"touch {marker}"
    write = f"open({str(marker)!r}, 'w').close()"
    return {
        "os.system": _call("os", "system", _s(touch)),
        "posix.system": _call("posix", "system", _s(touch)),
        "builtins.eval": _call("builtins", "eval", _s(write)),
        "builtins.exec": _call("builtins", "exec", _s(write)),
        "__builtin__.eval (py2 name)": _call("__builtin__", "eval", _s(write)),
        "builtins.open": _call("builtins", "open", _s(str(marker)), _s("w")),
        "subprocess.call": _call("subprocess", "call", b"(" + _s("touch") + _s(str(marker)) + b"l"),
        "subprocess.check_output": _call("subprocess", "check_output", b"(" + _s("touch") + _s(str(marker)) + b"l"),
        "getattr(__import__('os'), 'system')": _call(
            "builtins", "getattr", _call("builtins", "__import__", _s("os")), _s("system")
        )
        + b"("
        + _s(touch)
        + b"tR",
        "importlib.import_module": _call(
            "builtins", "getattr", _call("importlib", "import_module", _s("os")), _s("system")
        )
        + b"("
        + _s(touch)
        + b"tR",
        "pty.spawn": _call("pty", "spawn", b"(" + _s("touch") + _s(str(marker)) + b"l"),
        "torch.load (a nested unrestricted load)": _call("torch", "load", _s(str(marker) + ".never")),
    }


def _archive(pkl: bytes, records: dict[str, bytes] | None = None) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("archive/data.pkl", pkl)
        z.writestr("archive/byteorder", b"little")
        for k, v in (records or {}).items():
            z.writestr(f"archive/data/{k}", v)
    return out.getvalue()


def _with_state(fragment: bytes) -> bytes:
    """A torch archive: run ``fragment``, POP its result, then unpickle the real state dict."""
    base = torch_bytes(state(), 2)
    zin = zipfile.ZipFile(io.BytesIO(base))
    name = next(n for n in zin.namelist() if n.endswith("data.pkl"))
    pkl = zin.read(name)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zout:
        for info in zin.infolist():
            zout.writestr(info, b"\x80\x02" + fragment + b"0" + pkl[2:] if info.filename == name else zin.read(info))
    return out.getvalue()


def test_dangerous_globals_are_never_resolved(tmp_path):
    markers = {name: tmp_path / f"m{i}" for i, name in enumerate(payloads(tmp_path / "x"))}
    frags = {name: payloads(m)[name] for name, m in markers.items()}
    proto = b"\x80\x02"
    live = "import pickle\n" + "".join(
        f"try:\n    pickle.loads({proto + f + b'.'!r})\nexcept Exception:\n    pass\n" for f in frags.values()
    )
    fired = dict(zip(frags, fired_in_child(live, list(markers.values())), strict=True))
    never = "torch.load (a nested unrestricted load)"  # no marker: it only shows the global is refused too
    assert all(v for k, v in fired.items() if k != never), f"payloads that are not live: {fired}"
    for name, frag in frags.items():
        cw = load_cross_weights(_with_state(frag))
        assert not markers[name].exists(), name
        assert cw.format == "deepctr", name
        assert any("the pickle names objects that were not loaded" in w for w in cw.warnings), name


# --- payloads where a tensor is rebuilt -----------------------------------------------------------


def _tensor_pickle(*, key: bytes, size: bytes, rebuild: bytes = b"ctorch._utils\n_rebuild_tensor_v2\n") -> bytes:
    """{'w': tensor} as torch writes it, with parts replaced by the given pickled fragments."""
    pid = b"(" + _s("storage") + b"ctorch\nFloatStorage\n" + key + _s("cpu") + b"J\x04\x00\x00\x00tQ"
    args = b"(" + pid + b"J\x00\x00\x00\x00" + size + b"(J\x01\x00\x00\x00t\x89}t"
    return b"\x80\x02}" + _s("w") + rebuild + args + b"Rs."


def test_payload_as_storage_key(tmp_path):
    marker = tmp_path / "pwned"
    pkl = _tensor_pickle(key=payloads(marker)["os.system"], size=b"(J\x04\x00\x00\x00t")
    with pytest.raises(CheckpointError, match="malformed storage reference in data.pkl"):
        safe_pickle.load_torch_zip(_archive(pkl, {"0": b"\0" * 16}), max_bytes=MAX)
    assert not marker.exists()


def test_payload_as_tensor_size(tmp_path):
    marker = tmp_path / "pwned"
    pkl = _tensor_pickle(key=_s("0"), size=b"(" + payloads(marker)["os.system"] + b"t")
    with pytest.raises(CheckpointError, match="tensor size must be a tuple of ints"):
        safe_pickle.load_torch_zip(_archive(pkl, {"0": b"\0" * 16}), max_bytes=MAX)
    assert not marker.exists()


def test_payload_as_rebuild_function(tmp_path):
    """``_rebuild_from_type_v2(func=os.system, ...)``: the refused func is never called; the entry is inert."""
    marker = tmp_path / "pwned"
    touch = _s(f"touch {marker}")
    pkl = (
        b"\x80\x02}" + _s("w") + b"ctorch._tensor\n_rebuild_from_type_v2\n"
        b"(cos\nsystem\nctorch\nTensor\n(" + touch + b"t}tRs."
    )
    result = safe_pickle.load_torch_zip(_archive(pkl), max_bytes=MAX)
    assert isinstance(result.root["w"], safe_pickle.Inert) and "os.system" in result.refused_globals
    assert not marker.exists()


def test_build_on_a_tensor_cannot_reach_its_methods(tmp_path):
    """BUILD (``__setstate__``) on a rebuilt tensor, with a state that is itself a payload."""
    marker = tmp_path / "pwned"
    pkl = _tensor_pickle(key=_s("0"), size=b"(J\x04\x00\x00\x00t")
    assert pkl.endswith(b"Rs.")
    pkl = pkl[:-2] + b"}" + _s("__class__") + payloads(marker)["os.system"] + b"sbs."  # BUILD, then SETITEM
    result = safe_pickle.load_torch_zip(_archive(pkl, {"0": np.arange(4, dtype="<f4").tobytes()}), max_bytes=MAX)
    np.testing.assert_array_equal(result.root["w"].tensor.numpy(), [0, 1, 2, 3])
    assert not marker.exists()


# --- legacy (non-zip) torch files carrying a payload ----------------------------------------------


def test_legacy_torch_file_with_payload_is_refused_unrun(tmp_path):
    marker = tmp_path / "pwned"
    f = tmp_path / "legacy.pt"
    buf = io.BytesIO()
    torch.save({**state(), "evil": Touch(marker)}, buf, _use_new_zipfile_serialization=False)
    f.write_bytes(buf.getvalue())
    assert fired_in_child(f"import torch\ntorch.load({str(f)!r}, weights_only=False)\n", [marker]) == [True]
    with pytest.raises(CheckpointError, match=r"legacy \(non-zip\) torch file, which dcnviz does not read"):
        load_cross_weights(f)
    assert not marker.exists()


# --- pickles that lie about their lengths (found by the fuzzer) -----------------------------------


def test_counted_bytes_claiming_exabytes_is_a_clear_error():
    """BINBYTES8 claiming 2**62 bytes made the C unpickler raise MemoryError (it allocates first)."""
    pkl = b"\x80\x04\x8e" + (2**62).to_bytes(8, "little") + b"abc."
    with pytest.raises(MemoryError):
        pickle.Unpickler(io.BytesIO(pkl)).load()  # why the opcodes are walked first
    with pytest.raises(CheckpointError, match=r"data.pkl is not a valid pickle: .*bytes8.*only 4 remain"):
        safe_pickle.load_torch_zip(_archive(pkl), max_bytes=MAX)


def test_truncated_pickle_inside_a_valid_archive():
    """Found by the fuzzer: torch's weights-only reader raised struct.error on a data.pkl cut short (now the
    opcode pre-scan, which runs before any unpickler, says so)."""
    base = (PEERS / "fuxictr_dcn.pt").read_bytes()
    zin = zipfile.ZipFile(io.BytesIO(base))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            zout.writestr(info, data[:7] if info.filename.endswith("data.pkl") else data)
    with pytest.raises(CheckpointError, match=r"data.pkl is not a valid pickle: not enough data in stream"):
        load_cross_weights(out.getvalue())


def test_npy_header_that_breaks_numpys_tokenizer():
    """Found by the fuzzer: a flipped bit in an .npy header raised tokenize.TokenError out of numpy."""
    data = (PEERS / "tfrs_cross.npz").read_bytes()
    zin = zipfile.ZipFile(io.BytesIO(data))
    first = zin.infolist()[0]
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zout:
        for info in zin.infolist():
            raw = zin.read(info)
            if info is first:
                raw = raw[:10] + bytes([raw[10] ^ 1]) + raw[11:]  # '{' -> 'z': an unbalanced '}' later
            zout.writestr(info, raw)
    with pytest.raises(CheckpointError, match=r"npz member '.*\.npy' is not a valid \.npy array: .*EOF in multi-line"):
        load_cross_weights(out.getvalue())
