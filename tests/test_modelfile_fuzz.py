"""Property-based fuzzing of the model-file readers (issue 7).

Hypothesis mutates valid files (dcnviz model files of every cross kind, and the real peer fixtures in
``tests/fixtures/peers/``: torch zip ``.pt``/``.pth`` incl. RecBole's pickled checkpoint dict,
safetensors copies of them, ``.npz``, Keras ``.weights.h5`` when h5py is installed) and feeds each
mutant to :func:`dcnviz.checkpoint.load_model` and :func:`dcnviz.importers.load_cross_weights`.
Every outcome must be a successful load or a :class:`~dcnviz.errors.DcnvizError`: never another
exception, never a hang (a per-call deadline enforced with ``SIGALRM``), never a memory blow-up
(the fuzz runs in a child process under ``RLIMIT_AS``; its peak RSS is reported, and an error that
merely wraps a ``MemoryError`` counts as a failure too).

Mutations: bit flips, byte sets to boundary values, 4/8-byte little-endian integers overwritten with
boundary values (header lengths, zip sizes, pickle ints), truncation, deletion, insertion, splices of
two corpus files, JSON edits of the safetensors header (dtypes, shapes, byte ranges, metadata) and of
the dcnviz ``meta`` document inside it (model config, FeatureSpec), and byte mutations of one member
of a zip archive (``data.pkl``, a storage record, an ``.npy``) re-packed with a valid CRC so that
the mutation reaches the pickle / array parser instead of stopping at the zip checksum.

Issue 11's shapes of input: the corpus also holds the small hostile files of
``tests/helpers/hostile.py`` (stride-0 views, memo bombs, BUILD on the allow-listed stand-ins,
sparse/meta/nested tensors, zero-length tensors with 2**64 dims, negative ``.npz`` shapes, re-sized
storages, 5,000-digit integers, duplicate field names, ...), and two more mutation families splice
hostile constructs into valid files: ``pickle`` inserts an opcode snippet (a 5,000-deep tuple, a
``LONG_BINPUT``/``LONG_BINGET`` far past the memo, a 5,000-digit or 10,000-byte integer, a refused
tensor rebuilder, ``BUILD`` on ``torch.FloatStorage`` or ``collections.OrderedDict``) at an opcode
boundary of a torch file's ``data.pkl``; ``count`` adds 10 to 20,001 zero-length tensors (some with
2**64 dims) to a safetensors header. The readers run in-process here (``dcnviz.isolation`` mode
``off``): the fuzzer tests dcnviz's own checks, inside its own memory-capped child.

Size: ``DCNVIZ_FUZZ_EXAMPLES`` inputs (default 1000; each goes through both readers), seed
``DCNVIZ_FUZZ_SEED`` (default 0, reproducible; ``random`` for a fresh one). A longer local run::

    DCNVIZ_FUZZ_EXAMPLES=20000 DCNVIZ_FUZZ_SEED=random .venv/bin/python -m pytest tests/test_modelfile_fuzz.py -s

or run the worker directly, from the checkout's root:
``.venv/bin/python -m tests.test_modelfile_fuzz --examples 20000 --seed random``.
"""

from __future__ import annotations

import argparse
import collections
import importlib.util
import io
import json
import os
import random
import re
import resource
import signal
import struct
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.helpers import PEERS, ROOT

SUMMARY = "FUZZ SUMMARY "
DEEP = "\x00DEEP\x00"  # placeholder for a 100 000-deep JSON array (json.dumps itself would recurse)
DELETE = "\x00DELETE\x00"  # placeholder action: remove the key / item


# --- the corpus ----------------------------------------------------------------------------------
def build_corpus() -> list[tuple[str, bytes]]:
    """Valid files to mutate: dcnviz model files of each kind, peer fixtures, their safetensors/npz copies."""
    import numpy as np
    import torch
    from safetensors.torch import save

    from dcnviz.checkpoint import model_to_bytes
    from dcnviz.model import DCNModel, ModelConfig
    from dcnviz.spec import FeatureSpec, Field

    torch.manual_seed(0)
    spec = FeatureSpec(
        (
            Field(name="user", kind="categorical", embedding_dim=3, vocab=("a", "b", "c")),
            Field(name="genres", kind="multivalent", embedding_dim=2, vocab=("x", "y"), max_len=2),
            Field(name="year", kind="dense", embedding_dim=1, mean=1990.0, std=10.0),
        )
    )
    configs = {
        "dcnviz_full_parallel": ModelConfig(hidden=(4,)),
        "dcnviz_lowrank_stacked": ModelConfig(rank=2, structure="stacked", hidden=(3,)),
        "dcnviz_mixture": ModelConfig(model="dcn-mix", experts=2, rank=2, hidden=(3,), expert_activation="relu"),
        "dcnviz_v1": ModelConfig(model="dcn", cross_layers=1, hidden=(2,)),
        "dcnviz_dnn": ModelConfig(model="dnn", hidden=(3,)),
    }
    corpus = [
        (name, model_to_bytes(DCNModel(spec, cfg), metrics={"val": {"auc": 0.7}}, history=[{"epoch": 1}]))
        for name, cfg in configs.items()
    ]
    for p in sorted(PEERS.iterdir()):
        if p.suffix in (".pt", ".pth") or p.name == "tfrs_cross.npz":
            corpus.append((p.name, p.read_bytes()))
        if p.name.endswith(".weights.h5") and importlib.util.find_spec("h5py") is not None:
            corpus.append((p.name, p.read_bytes()))  # Keras HDF5: parsed by libhdf5 (C) through h5py
    for name in ("deepctr_dcnmix.pt", "torchrec_dlrm_dcn.pt", "recbole_dcnv2.pt"):
        sd = torch.load(PEERS / name, weights_only=True)
        corpus.append((f"{name}.safetensors", save({k: v.contiguous() for k, v in sd.items()})))
    sd = torch.load(PEERS / "fuxictr_dcnv2.pt", weights_only=True)
    buf = io.BytesIO()
    np.savez(buf, **{k: v.numpy() for k, v in sd.items()})
    corpus.append(("fuxictr_dcnv2.npz", buf.getvalue()))
    from tests.helpers import hostile as hostile_inputs

    for h in hostile_inputs.HOSTILE:  # issue 11's small hostile files, as seeds
        if h.kind == "model" and not h.crash_class and h.name not in BIG_HOSTILE:
            corpus.append((f"hostile:{h.name}", h.make()))
    return corpus


BIG_HOSTILE = {"300k-zero-length-tensors", "20MB-tensor-name", "60k-duplicate-fields"}  # too slow to mutate


# --- mutations -------------------------------------------------------------------------------------
INTERESTING_BYTES = (0x00, 0x01, 0x7F, 0x80, 0xFF, ord("{"), ord("}"), ord('"'), ord("."), ord("N"))
INTERESTING_INTS = (0, 1, 7, 8, 255, 2**16, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**40, 2**63 - 1, 2**64 - 1)
JSON_VALUES: tuple[Any, ...] = (
    DELETE,
    DEEP,
    0,
    -1,
    1,
    3,
    2**31 - 1,
    2**32,
    2**53 + 1,
    2**64,
    10**100,
    -(10**100),
    1.5,
    1e308,
    1e400,  # inf: json.dumps writes Infinity, which Python's json reads but serde (safetensors) refuses
    float("nan"),
    "",
    "x" * 2000,
    "F32",
    "F16",
    "BF16",
    "I64",
    "BOOL",
    "F8_E4M3",
    "C64",
    "dcnviz",
    "2",
    "1",
    "{",
    "\udcff",  # a lone surrogate: json.dumps escapes it; the bytes are not valid UTF-8 once decoded
    None,
    True,
    [],
    {},
    [0],
    [1, 2],
    [0, 2**63],
    [2**20, 2**20],
    ["a", "b"],
    {"name": "z", "kind": "dense", "embedding_dim": 1},
)


def _pos(n: int, p: int) -> int:
    return p % (n + 1)


def byte_op(data: bytes, op: tuple[Any, ...]) -> bytes:
    """Apply one byte-level mutation; positions are taken modulo the length."""
    kind, n = op[0], len(data)
    if kind == "flip":
        if not n:
            return data
        i = op[1] % n
        return data[:i] + bytes([data[i] ^ (1 << op[2])]) + data[i + 1 :]
    if kind == "set":
        if not n:
            return data
        i = op[1] % n
        return data[:i] + bytes([op[2]]) + data[i + 1 :]
    if kind == "int":
        i, width = _pos(n, op[1]), op[3]
        value = op[2] % (1 << (8 * width))
        return data[:i] + value.to_bytes(width, "little") + data[i + width :]
    if kind == "truncate":
        return data[: _pos(n, op[1])]
    if kind == "delete":
        i = _pos(n, op[1])
        return data[:i] + data[i + op[2] :]
    if kind == "insert":
        i = _pos(n, op[1])
        return data[:i] + op[2] + data[i:]
    raise ValueError(f"unknown byte op {kind}")


def _json_paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = []
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else ()
    for k, v in items:
        out.append((*prefix, k))
        out.extend(_json_paths(v, (*prefix, k)))
    return out


def edit_json(obj: Any, path_index: int, value: Any) -> Any:
    """Replace (or delete) the node at one path of a JSON tree."""
    paths = _json_paths(obj)
    if not paths:
        return value if value is not DELETE else obj
    path = paths[path_index % len(paths)]
    parent = obj
    for k in path[:-1]:
        parent = parent[k]
    if value == DELETE:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return obj


def dump_json(obj: Any) -> str:
    text = json.dumps(obj)  # NaN/Infinity allowed on purpose
    return text.replace(json.dumps(DEEP), "[" * 100_000 + "]" * 100_000)


def _split_safetensors(data: bytes) -> tuple[dict[str, Any], bytes] | None:
    if len(data) < 8:
        return None
    (n,) = struct.unpack("<Q", data[:8])
    if 8 + n > len(data):
        return None
    try:
        header = json.loads(data[8 : 8 + n])
    except (ValueError, RecursionError):
        return None
    return (header, data[8 + n :]) if isinstance(header, dict) else None


def _join_safetensors(header: dict[str, Any], body: bytes) -> bytes:
    raw = dump_json(header).encode("utf-8", "surrogatepass")
    raw += b" " * ((8 - len(raw) % 8) % 8)
    return struct.pack("<Q", len(raw)) + raw + body


def header_op(data: bytes, op: tuple[Any, ...]) -> bytes | None:
    """Edit the safetensors header JSON ("json") or the dcnviz meta document inside it ("meta")."""
    parts = _split_safetensors(data)
    if parts is None:
        return None
    header, body = parts
    value = JSON_VALUES[op[2] % len(JSON_VALUES)]
    if op[0] == "json":
        header = edit_json(header, op[1], value)
    else:
        meta_text = (
            (header.get("__metadata__") or {}).get("meta") if isinstance(header.get("__metadata__"), dict) else None
        )
        if not isinstance(meta_text, str):
            return None
        try:
            meta = json.loads(meta_text)
        except (ValueError, RecursionError):
            return None
        header["__metadata__"]["meta"] = dump_json(edit_json(meta, op[1], value))
    return _join_safetensors(header, body)


def member_op(data: bytes, op: tuple[Any, ...]) -> bytes | None:
    """Mutate one member of a zip archive and re-pack it with a valid CRC."""
    try:
        zin = zipfile.ZipFile(io.BytesIO(data))
        infos = zin.infolist()
        if not infos:
            return None
        target = infos[op[1] % len(infos)]
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w") as zout:
            for info in infos:
                content = zin.read(info)
                zout.writestr(info, byte_op(content, op[2]) if info is target else content)
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, NotImplementedError, RuntimeError, KeyError):
        return None
    return out.getvalue()


PICKLE_SNIPPETS: tuple[bytes, ...] = (
    b"N" + b"\x85" * 5000 + b"0",  # a 5,000-deep tuple
    b"N" + b"\x85" * 150 + b"0",
    b"Nr" + struct.pack("<I", 1 << 27) + b"0",  # memoise far past the memo (a memory bomb)
    b"j" + struct.pack("<I", 1 << 27) + b"0",  # read a memo slot never written
    b"I" + b"9" * 5000 + b"\n0",  # a 5,000-digit integer (Python's own 4,300-digit limit)
    b"I" + b"9" * 200 + b"\n0",
    b"\x8b" + struct.pack("<i", 10_000) + b"\x01" * 10_000 + b"0",  # a 10,000-byte LONG4
    b"ctorch._utils\n_rebuild_sparse_tensor\n0",
    b"ctorch._utils\n_rebuild_meta_tensor_no_storage\n0",
    b"ctorch._utils\n_rebuild_nested_tensor\n0",
    b"ctorch\nFloatStorage\n}X\x05\x00\x00\x00dtypecos\nsystem\nsb0",  # BUILD on a storage type
    b"ccollections\nOrderedDict\nN}X\x08\x00\x00\x00__name__X\x01\x00\x00\x00xs\x86b0",  # BUILD (slots)
    b"cos\nsystem\n0",  # a refused global: sends the file to dcnviz's restricted unpickler
)


def pickle_op(data: bytes, op: tuple[Any, ...]) -> bytes | None:
    """Insert a hostile opcode snippet at an opcode boundary of a torch zip's data.pkl (re-packed)."""
    import pickletools

    try:
        zin = zipfile.ZipFile(io.BytesIO(data))
        infos = zin.infolist()
        target = next((i for i in infos if i.filename.endswith("data.pkl")), None)
        if target is None:
            return None
        pkl = zin.read(target)
        cuts = [pos for _, _, pos in pickletools.genops(pkl) if pos]
        if not cuts:
            return None
        at = cuts[op[1] % len(cuts)]
        new_pkl = pkl[:at] + PICKLE_SNIPPETS[op[2] % len(PICKLE_SNIPPETS)] + pkl[at:]
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w") as zout:
            for info in infos:
                zout.writestr(info, new_pkl if info is target else zin.read(info))
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, NotImplementedError, RuntimeError, KeyError):
        return None
    return out.getvalue()


def count_op(data: bytes, op: tuple[Any, ...]) -> bytes | None:
    """Add ``op[1]`` zero-length tensors (some with 2**64 dims) to a safetensors header."""
    parts = _split_safetensors(data)
    if parts is None:
        return None
    header, body = parts
    n = (10, 100, 1_000, 20_001)[op[1] % 4]
    huge = op[2] % 3 == 0
    for i in range(n):
        header[f"zero.{i}"] = {
            "dtype": "F32",
            "shape": [0, 2**64] if huge and i % 7 == 0 else [0],
            "data_offsets": [0, 0],
        }
    return _join_safetensors(header, body)


def mutate(corpus: list[tuple[str, bytes]], index: int, ops: list[tuple[Any, ...]]) -> bytes:
    data = corpus[index % len(corpus)][1]
    for op in ops:
        kind = op[0]
        new: bytes | None
        if kind == "splice":
            other = corpus[op[1] % len(corpus)][1]
            new = data[: _pos(len(data), op[2])] + other[_pos(len(other), op[3]) :]
        elif kind in ("json", "meta"):
            new = header_op(data, op)
        elif kind == "member":
            new = member_op(data, op)
        elif kind == "pickle":
            new = pickle_op(data, op)
        elif kind == "count":
            new = count_op(data, op)
        else:
            new = byte_op(data, op)
        # a structural op that does not apply to these bytes becomes a bit flip at the same place
        data = new if new is not None else byte_op(data, ("flip", op[1] if len(op) > 1 else 0, 3))
    return data


# --- the worker --------------------------------------------------------------------------------------
class HangError(Exception):
    """A reader ran past the per-call deadline."""


def _on_alarm(signum: int, frame: Any) -> None:
    raise HangError("a reader ran past the per-call deadline")


def _limit_memory(headroom_mb: int) -> int:
    """Cap the address space at what the process already maps plus ``headroom_mb``; return the cap in MiB."""
    vm_kb = next(
        int(line.split()[1])
        for line in Path("/proc/self/status").read_text().splitlines()
        if line.startswith("VmSize:")
    )
    cap = vm_kb * 1024 + headroom_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    return cap // (1024 * 1024)


def run_fuzz(examples: int, seed: int, deadline_s: float, headroom_mb: int) -> dict[str, Any]:
    import torch
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hseed
    from hypothesis import strategies as st

    from dcnviz import isolation
    from dcnviz.checkpoint import load_model
    from dcnviz.errors import DcnvizError
    from dcnviz.importers import load_cross_weights

    isolation.set_mode("off")  # dcnviz's own checks, in this (memory-capped) process
    torch.set_num_threads(1)
    corpus = build_corpus()
    for name, data in corpus:  # warm up (first calls import and initialise lazily) and check the corpus is valid
        if name.startswith("hostile:"):
            try:
                load_cross_weights(data)
            except DcnvizError:
                continue
            raise AssertionError(f"{name} loaded: the hostile seed is no longer refused")
        load_cross_weights(data)
    cap_mb = _limit_memory(headroom_mb) if sys.platform.startswith("linux") else None
    signal.signal(signal.SIGALRM, _on_alarm)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    pos = st.integers(0, 2**31)
    byte_ops = st.one_of(
        st.tuples(st.just("flip"), pos, st.integers(0, 7)),
        st.tuples(st.just("set"), pos, st.sampled_from(INTERESTING_BYTES)),
        st.tuples(st.just("int"), pos, st.sampled_from(INTERESTING_INTS), st.sampled_from((4, 8))),
        st.tuples(st.just("truncate"), pos),
        st.tuples(st.just("delete"), pos, st.integers(1, 64)),
        st.tuples(st.just("insert"), pos, st.binary(min_size=1, max_size=16)),
    )
    ops = st.one_of(
        byte_ops,
        st.tuples(st.just("splice"), st.integers(0, len(corpus) - 1), pos, pos),
        st.tuples(st.just("json"), pos, st.integers(0, len(JSON_VALUES) - 1)),
        st.tuples(st.just("meta"), pos, st.integers(0, len(JSON_VALUES) - 1)),
        st.tuples(st.just("member"), pos, byte_ops),
        st.tuples(st.just("pickle"), pos, st.integers(0, len(PICKLE_SNIPPETS) - 1)),
        st.tuples(st.just("count"), st.integers(0, 3), st.integers(0, 2)),
    )
    loaders: list[tuple[str, Callable[[bytes], Any]]] = [
        ("checkpoint.load_model", load_model),
        ("importers.load_cross_weights", load_cross_weights),
    ]
    outcomes: dict[str, collections.Counter[str]] = {name: collections.Counter() for name, _ in loaders}
    messages: collections.Counter[str] = collections.Counter()
    stats: dict[str, Any] = {"inputs": 0, "slowest_s": 0.0, "slowest": None}

    @settings(
        max_examples=examples,
        deadline=None,  # the SIGALRM deadline below interrupts a hang instead of timing it afterwards
        database=None,
        derandomize=False,
        phases=(Phase.generate, Phase.shrink),
        suppress_health_check=list(HealthCheck),
        report_multiple_bugs=True,
    )
    @given(index=st.integers(0, len(corpus) - 1), ops=st.lists(ops, min_size=1, max_size=4))
    def check(index: int, ops: list[tuple[Any, ...]]) -> None:
        data = mutate(corpus, index, ops)
        stats["inputs"] += 1
        for name, load in loaders:
            t0 = time.perf_counter()
            signal.setitimer(signal.ITIMER_REAL, deadline_s)
            try:
                load(data)
                outcome = "loaded"
            except DcnvizError as e:
                text = str(e)
                if "MemoryError" in text or "can't allocate memory" in text:
                    raise AssertionError(f"{name}: an out-of-memory error was reported as {e!r}") from e
                outcome = type(e).__name__
                messages[re.sub(r"\d+", "N", text)[:60]] += 1
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            took = time.perf_counter() - t0
            if took > stats["slowest_s"]:
                stats["slowest_s"], stats["slowest"] = took, [name, corpus[index][0], repr(ops)[:300]]
            outcomes[name][outcome] += 1

    check = hseed(seed)(check)
    t0 = time.perf_counter()
    check()
    return {
        "inputs": stats["inputs"],
        "seed": seed,
        "corpus": [name for name, _ in corpus],
        "outcomes": {k: dict(v) for k, v in outcomes.items()},
        "seconds": round(time.perf_counter() - t0, 1),
        "slowest_call_s": round(stats["slowest_s"], 3),
        "slowest_call": stats["slowest"],
        "top_errors": messages.most_common(25),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "rss_before_mb": round(rss0 / 1024, 1),
        "address_space_cap_mb": cap_mb,
    }


def _env_examples() -> int:
    return int(os.environ.get("DCNVIZ_FUZZ_EXAMPLES", "1000"))


def _env_seed() -> str:
    return os.environ.get("DCNVIZ_FUZZ_SEED", "0")


# --- the pytest entry point -------------------------------------------------------------------------
def test_fuzz_model_readers_only_load_or_raise_dcnviz_errors():
    """≥ 1,000 mutated files through both readers, in a memory-capped child process."""
    examples = _env_examples()
    cmd = [sys.executable, str(Path(__file__).resolve()), "--examples", str(examples), "--seed", _env_seed()]
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    budget = max(600, examples // 2)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=budget, env=env, cwd=ROOT, check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"the fuzz worker failed:\n{output[-20000:]}"
    line = next(line for line in proc.stdout.splitlines() if line.startswith(SUMMARY))
    summary = json.loads(line[len(SUMMARY) :])
    print(line)
    assert summary["inputs"] >= examples
    for name, counts in summary["outcomes"].items():
        assert sum(counts.values()) == summary["inputs"], name
        # the mutants must exercise both paths: some still load, most are refused with a DcnvizError
        assert counts.get("loaded", 0) > 0 and sum(v for k, v in counts.items() if k != "loaded") > 0, counts


def main() -> None:
    ap = argparse.ArgumentParser(description="fuzz dcnviz's model-file readers")
    ap.add_argument("--examples", type=int, default=_env_examples())
    ap.add_argument("--seed", default=_env_seed(), help="an int, or 'random'")
    ap.add_argument("--deadline", type=float, default=float(os.environ.get("DCNVIZ_FUZZ_DEADLINE_S", "10")))
    ap.add_argument("--memory-mb", type=int, default=1024, help="address space allowed beyond the start")
    args = ap.parse_args()
    seed = random.randrange(2**32) if args.seed == "random" else int(args.seed)  # printed: rerun with --seed
    summary = run_fuzz(args.examples, seed, args.deadline, args.memory_mb)
    print(SUMMARY + json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
