"""No code execution on load (issue 7): pickled payloads in torch files never run (dcnviz's pickle reader).

Each payload file is first shown to be *live*: an unrestricted ``torch.load(weights_only=False)`` (or
plain :func:`pickle.loads`, in a child process) does create the marker file (the payloads only touch a
file in the test's tmp dir). So a passing test here means dcnviz's loader stopped the payload, not that
the payload was broken. Then dcnviz loads the same bytes, the marker must not exist, and the state
dict's tensors still come out (or the file is refused cleanly).

Covered: every pickle protocol, dangerous globals, payloads hidden where a tensor is rebuilt (storage
key, size, rebuild function, BUILD state), legacy files carrying a payload, pickles that lie about
their lengths, hand-made archives, storage bounds, decompression bombs, deep nesting.
"""

from __future__ import annotations

import builtins
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
from dcnviz.importers.containers import read_tensor_file
from tests.helpers import PEERS

MAX = 1 << 26


class SystemPayload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, (f"touch {self.marker}",))


class ExecPayload(SystemPayload):
    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (builtins.exec, (f"open({str(self.marker)!r}, 'w').close()",))


class PopenPayload(SystemPayload):
    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (subprocess.Popen, (["touch", str(self.marker)],))


class BuildPayload(SystemPayload):
    """REDUCE to an allowed-looking container, then BUILD with a state whose creation runs a command."""

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (dict, (), {"x": SystemPayload(self.marker)})


PAYLOADS = {"os.system": SystemPayload, "builtins.exec": ExecPayload, "subprocess.Popen": PopenPayload}


def deepctr_state() -> dict:
    return torch.load(PEERS / "deepctr_dcn_matrix.pt", weights_only=True)


def torch_bytes(obj: object, protocol: int = 2) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf, pickle_protocol=protocol)
    return buf.getvalue()


def payload_runs_unrestricted(data: bytes, marker: Path) -> bool:
    """Load with plain ``torch.load(weights_only=False)``: does the (harmless, test-owned) payload fire?"""
    import time

    torch.load(io.BytesIO(data), weights_only=False)
    for _ in range(100):  # Popen/os.system may finish a moment later
        if marker.exists():
            marker.unlink()
            return True
        time.sleep(0.05)
    return False


def layouts(payload: object) -> dict[str, object]:
    sd = deepctr_state()
    return {
        "top-level": {**sd, "evil": payload},
        "nested": {"state_dict": sd, "meta": {"notes": [1, {"deep": payload}]}},
        "recbole-shaped": {
            "config": payload,
            "epoch": 3,
            "cur_step": 0,
            "best_valid_score": 0.5,
            "state_dict": sd,
            "other_parameter": {"p": payload},
            "optimizer": {"state": {}, "param_groups": [{"lr": 0.001, "hook": payload}]},
        },
    }


@pytest.mark.parametrize("kind", sorted(PAYLOADS))
@pytest.mark.parametrize("where", ["top-level", "nested", "recbole-shaped"])
def test_payload_never_runs_and_tensors_come_out(tmp_path, kind, where):
    marker = tmp_path / "pwned"
    data = torch_bytes(layouts(PAYLOADS[kind](marker))[where], protocol=4 if where == "recbole-shaped" else 2)
    if where == "top-level":  # prove once per payload kind that it is live (spawning a process is slow)
        assert payload_runs_unrestricted(data, marker), "the test payload itself is broken"
    cw = load_cross_weights(data)
    assert not marker.exists()
    ref = load_cross_weights(PEERS / "deepctr_dcn_matrix.pt")
    assert cw.format == "deepctr" and [b.name for b in cw.blocks] == ["user", "movie", "dense"]
    for a, b in zip(cw.layers, ref.layers, strict=True):
        np.testing.assert_array_equal(a.W, b.W)
    assert "restricted unpickler" in cw.detected
    refused = " ".join(cw.warnings)
    assert {"os.system": "posix.system", "builtins.exec": "builtins.exec", "subprocess.Popen": "subprocess.Popen"}[
        kind
    ] in refused
    assert not marker.exists()


def test_build_state_payload_is_inert(tmp_path):
    marker = tmp_path / "pwned"
    data = torch_bytes({**deepctr_state(), "b": BuildPayload(marker)})
    assert load_cross_weights(data).format == "deepctr"
    assert not marker.exists()


def test_posix_system_via_handwritten_reduce(tmp_path):
    """A pickle written by hand (GLOBAL 'posix system' + REDUCE) inside a real torch archive."""
    marker = tmp_path / "pwned"
    base = torch_bytes(deepctr_state())
    zin = zipfile.ZipFile(io.BytesIO(base))
    pkl_name = next(n for n in zin.namelist() if n.endswith("data.pkl"))
    pkl = zin.read(pkl_name)
    evil = b"cposix\nsystem\n(X" + len(f"touch {marker}").to_bytes(4, "little") + f"touch {marker}".encode() + b"tR"
    # splice the payload in as the value of an extra key: '}' dict ... we wrap: (payload, original_root) tuple
    assert pkl.startswith(b"\x80\x02") and pkl.endswith(b".")
    wrapped = b"\x80\x02" + evil + b"0" + pkl[2:]  # run payload (REDUCE), POP it, then the original pickle
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            zout.writestr(info, wrapped if info.filename == pkl_name else zin.read(info))
    data = out.getvalue()
    assert payload_runs_unrestricted(data, marker)
    cw = load_cross_weights(data)
    assert cw.format == "deepctr" and not marker.exists()


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_recbole_checkpoint_fixture_reads_tensor_only():
    data = (PEERS / "recbole_dcnv2_checkpoint.pth").read_bytes()
    with pytest.raises(pickle.UnpicklingError):
        torch.load(io.BytesIO(data), weights_only=True)  # why the restricted reader exists
    result = safe_pickle.load_torch_zip(data, max_bytes=MAX)
    assert "recbole.config.configurator.Config" in result.refused_globals
    assert isinstance(result.root["config"], safe_pickle.Inert)
    tf = read_tensor_file(data, max_bytes=MAX)
    assert "cross_layer_w.0" in tf.tensors and "'config' (a pickled recbole.config.configurator.Config" in tf.notes[1]


def test_never_imports_refused_modules():
    """Refused globals are not even imported: a module that does not exist gives a placeholder, no error."""
    body = b"\x80\x02}X\x01\x00\x00\x00acno_such_module_xyz\nEvil\n)Rs."
    archive = _archive(body, {})
    result = safe_pickle.load_torch_zip(archive, max_bytes=MAX)
    assert result.refused_globals == ["no_such_module_xyz.Evil"]
    assert "no_such_module_xyz" not in sys.modules


# --- hand-made archives: bounds ----------------------------------------------------------------
def _archive(pkl: bytes, records: dict[str, bytes], byteorder: bytes = b"little", compress: int = 0) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compress) as z:
        z.writestr("archive/data.pkl", pkl)
        z.writestr("archive/byteorder", byteorder)
        z.writestr("archive/version", b"3\n")
        for k, v in records.items():
            z.writestr(f"archive/data/{k}", v)
    return out.getvalue()


def _raw_tensor_pickle(numel: int, size: tuple[int, ...], stride: tuple[int, ...], offset: int = 0) -> bytes:
    """Hand-assembled protocol-2 pickle of {'w': tensor} exactly as torch.save writes one."""

    def tup(items: list[bytes]) -> bytes:
        return b"(" + b"".join(items) + b"t"

    def i(n: int) -> bytes:
        if -(1 << 31) <= n < 1 << 31:
            return b"J" + n.to_bytes(4, "little", signed=True)
        raw = pickle.encode_long(n)  # type: ignore[attr-defined]
        return b"\x8a" + bytes([len(raw)]) + raw  # LONG1

    def s(text: str) -> bytes:
        return b"X" + len(text).to_bytes(4, "little") + text.encode()

    pid = tup([s("storage"), b"ctorch\nFloatStorage\n", s("0"), s("cpu"), i(numel)]) + b"Q"
    args = tup([pid, i(offset), tup([i(n) for n in size]), tup([i(n) for n in stride]), b"\x89", b"}"])
    return b"\x80\x02}" + s("w") + b"ctorch._utils\n_rebuild_tensor_v2\n" + args + b"Rs."


def test_handmade_archive_reads():
    data = _archive(_raw_tensor_pickle(6, (2, 3), (3, 1)), {"0": np.arange(6, dtype="<f4").tobytes()})
    result = safe_pickle.load_torch_zip(data, max_bytes=MAX)
    np.testing.assert_array_equal(result.root["w"].tensor.numpy(), np.arange(6).reshape(2, 3))
    # a transposed view (stride (1, 2)) comes out as the view, not the raw storage
    data = _archive(_raw_tensor_pickle(6, (3, 2), (1, 3)), {"0": np.arange(6, dtype="<f4").tobytes()})
    t = safe_pickle.load_torch_zip(data, max_bytes=MAX).root["w"].tensor
    np.testing.assert_array_equal(t.numpy(), np.arange(6).reshape(2, 3).T)


@pytest.mark.parametrize(
    ("pkl", "records", "message"),
    [
        (_raw_tensor_pickle(1 << 40, (4,), (1,)), {"0": b"\0" * 16}, "over the"),  # storage claims 4 TiB
        (_raw_tensor_pickle(4, (4,), (1,)), {"0": b"\0" * 8}, "should hold 4 FloatStorage elements"),
        (_raw_tensor_pickle(4, (3, 3), (3, 1)), {"0": b"\0" * 16}, "past the end of its 4-element storage"),
        (_raw_tensor_pickle(4, (1 << 15, 1 << 15), (0, 0)), {"0": b"\0" * 16}, "views that repeat stored values"),
        (_raw_tensor_pickle(4, (2,), (1,), offset=-1), {"0": b"\0" * 16}, "offset must be an int >= 0"),
        (_raw_tensor_pickle(4, (2,), (1,)), {}, "has no record 'archive/data/0'"),
    ],
)
def test_storage_bounds(pkl, records, message):
    with pytest.raises(CheckpointError, match=message):
        safe_pickle.load_torch_zip(_archive(pkl, records), max_bytes=MAX)


def test_big_endian_archives_are_refused():
    data = _archive(_raw_tensor_pickle(1, (1,), (1,)), {"0": b"\0" * 4}, byteorder=b"big")
    with pytest.raises(CheckpointError, match="byte order is 'big'"):
        safe_pickle.load_torch_zip(data, max_bytes=MAX)


def test_decompression_bomb_is_refused_before_inflating():
    bomb = _archive(b"\x80\x02}.", {"0": b"\0" * (64 << 20)}, compress=zipfile.ZIP_DEFLATED)
    assert len(bomb) < 1 << 20
    with pytest.raises(CheckpointError, match="decompression bomb"):
        safe_pickle.load_torch_zip(bomb, max_bytes=1 << 30)
    with pytest.raises(CheckpointError, match="decompression bomb"):
        load_cross_weights(bomb)
    with pytest.raises(CheckpointError, match="unpacks to .* over the 1000-byte limit"):
        safe_pickle.load_torch_zip(_archive(b"\x80\x02}.", {"0": b"\1" * 2000}), max_bytes=1000)


def test_deep_nesting_is_bounded():
    n = 200_000
    deep = b"\x80\x02" + b"]" * n + b"a" * (n - 1) + b"."  # 200k nested lists, built without recursion
    with pytest.raises(CheckpointError, match="data.pkl nests objects more than 100 levels deep"):
        load_cross_weights(_archive(deep, {}))


def test_malformed_pickles_give_checkpoint_errors():
    for pkl in (b"\x80\x02}X\x01\x00\x00\x00a", b"garbage", b"\x80\x02(]\x86."):
        data = _archive(pkl, {})
        with pytest.raises(CheckpointError):
            safe_pickle.load_torch_zip(data, max_bytes=MAX)
    with pytest.raises(CheckpointError, match="unsupported persistent id"):
        safe_pickle.load_torch_zip(_archive(b"\x80\x02X\x03\x00\x00\x00abcQ.", {}), max_bytes=MAX)


def test_legacy_and_bare_pickles_are_refused(tmp_path):
    marker = tmp_path / "pwned"
    legacy = io.BytesIO()
    torch.save(deepctr_state(), legacy, _use_new_zipfile_serialization=False)
    with pytest.raises(CheckpointError, match=r"legacy \(non-zip\) torch file.*torch.save\(model.state_dict\(\)"):
        load_cross_weights(legacy.getvalue())
    bare = pickle.dumps({"w": SystemPayload(marker)})
    with pytest.raises(CheckpointError, match="bare pickle"):
        load_cross_weights(bare)
    assert not marker.exists()


def test_single_tensor_file_is_refused():
    with pytest.raises(CheckpointError, match="a single tensor, not a state dict"):
        load_cross_weights(torch_bytes(torch.zeros(3)))


def state() -> dict[str, torch.Tensor]:
    return torch.load(PEERS / "deepctr_dcn_matrix.pt", weights_only=True)


def reference_W() -> list[np.ndarray]:
    return [layer.W for layer in load_cross_weights(PEERS / "deepctr_dcn_matrix.pt").layers]


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


def _archive_without_version(pkl: bytes, records: dict[str, bytes] | None = None) -> bytes:
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


def _tensor_pickle(*, key: bytes, size: bytes, rebuild: bytes = b"ctorch._utils\n_rebuild_tensor_v2\n") -> bytes:
    """{'w': tensor} as torch writes it, with parts replaced by the given pickled fragments."""
    pid = b"(" + _s("storage") + b"ctorch\nFloatStorage\n" + key + _s("cpu") + b"J\x04\x00\x00\x00tQ"
    args = b"(" + pid + b"J\x00\x00\x00\x00" + size + b"(J\x01\x00\x00\x00t\x89}t"
    return b"\x80\x02}" + _s("w") + rebuild + args + b"Rs."


def test_payload_as_storage_key(tmp_path):
    marker = tmp_path / "pwned"
    pkl = _tensor_pickle(key=payloads(marker)["os.system"], size=b"(J\x04\x00\x00\x00t")
    with pytest.raises(CheckpointError, match="malformed storage reference in data.pkl"):
        safe_pickle.load_torch_zip(_archive_without_version(pkl, {"0": b"\0" * 16}), max_bytes=MAX)
    assert not marker.exists()


def test_payload_as_tensor_size(tmp_path):
    marker = tmp_path / "pwned"
    pkl = _tensor_pickle(key=_s("0"), size=b"(" + payloads(marker)["os.system"] + b"t")
    with pytest.raises(CheckpointError, match="tensor size must be a tuple of ints"):
        safe_pickle.load_torch_zip(_archive_without_version(pkl, {"0": b"\0" * 16}), max_bytes=MAX)
    assert not marker.exists()


def test_payload_as_rebuild_function(tmp_path):
    """``_rebuild_from_type_v2(func=os.system, ...)``: the refused func is never called; the entry is inert."""
    marker = tmp_path / "pwned"
    touch = _s(f"touch {marker}")
    pkl = (
        b"\x80\x02}" + _s("w") + b"ctorch._tensor\n_rebuild_from_type_v2\n"
        b"(cos\nsystem\nctorch\nTensor\n(" + touch + b"t}tRs."
    )
    result = safe_pickle.load_torch_zip(_archive_without_version(pkl), max_bytes=MAX)
    assert isinstance(result.root["w"], safe_pickle.Inert) and "os.system" in result.refused_globals
    assert not marker.exists()


def test_build_on_a_tensor_cannot_reach_its_methods(tmp_path):
    """BUILD (``__setstate__``) on a rebuilt tensor, with a state that is itself a payload."""
    marker = tmp_path / "pwned"
    pkl = _tensor_pickle(key=_s("0"), size=b"(J\x04\x00\x00\x00t")
    assert pkl.endswith(b"Rs.")
    pkl = pkl[:-2] + b"}" + _s("__class__") + payloads(marker)["os.system"] + b"sbs."  # BUILD, then SETITEM
    result = safe_pickle.load_torch_zip(
        _archive_without_version(pkl, {"0": np.arange(4, dtype="<f4").tobytes()}), max_bytes=MAX
    )
    np.testing.assert_array_equal(result.root["w"].tensor.numpy(), [0, 1, 2, 3])
    assert not marker.exists()


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


def test_counted_bytes_claiming_exabytes_is_a_clear_error():
    """BINBYTES8 claiming 2**62 bytes made the C unpickler raise MemoryError (it allocates first)."""
    pkl = b"\x80\x04\x8e" + (2**62).to_bytes(8, "little") + b"abc."
    with pytest.raises(MemoryError):
        pickle.Unpickler(io.BytesIO(pkl)).load()  # why the opcodes are walked first
    with pytest.raises(CheckpointError, match=r"data.pkl is not a valid pickle: .*bytes8.*only 4 remain"):
        safe_pickle.load_torch_zip(_archive_without_version(pkl), max_bytes=MAX)


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
