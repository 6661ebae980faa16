"""Property-based fuzzing of the data loaders: any mutated file loads or raises DataFormatError, nothing else.

CI size: 150 examples per test (set DCNVIZ_FUZZ_EXAMPLES for a larger run, e.g. 5000).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dcnviz.data import DataOptions, load_ml1m, load_ml100k, load_own_table, load_splits
from dcnviz.errors import DataFormatError

FIXTURES = Path(__file__).parent / "fixtures" / "data"
EXAMPLES = int(os.environ.get("DCNVIZ_FUZZ_EXAMPLES", "150"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# Bytes that matter to the parsers: separators, digits, signs, newlines, NUL, high latin-1, quotes.
INTERESTING = st.sampled_from(
    [b":", b"::", b"|", b"\t", b",", b"\n", b"\r\n", b"\x00", b"\xe9", b"\xff", b"-", b"9" * 25, b"3", b'"', b" ", b""]
)


@st.composite
def mutated(draw: st.DrawFn, data: bytes) -> bytes:
    """``data`` with a few random edits: overwrite, insert, delete, truncate, duplicate a line."""
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["overwrite", "insert", "delete", "truncate", "dupline"]))
        pos = draw(st.integers(0, max(0, len(out) - 1)))
        if op == "overwrite" and out:
            out[pos : pos + 1] = draw(INTERESTING | st.binary(min_size=1, max_size=3))
        elif op == "insert":
            out[pos:pos] = draw(INTERESTING | st.binary(max_size=4))
        elif op == "delete":
            del out[pos : pos + draw(st.integers(1, 12))]
        elif op == "truncate":
            del out[pos:]
        elif op == "dupline":
            lines = bytes(out).split(b"\n")
            k = draw(st.integers(0, len(lines) - 1))
            lines.insert(k, lines[k])
            out = bytearray(b"\n".join(lines))
    return bytes(out)


def _check(folder: Path, loader, seen: dict[str, int]) -> None:  # type: ignore[no-untyped-def]
    try:
        loader(folder)
    except DataFormatError as e:
        assert str(e)  # a message, naming something
        seen["error"] += 1
        return
    seen["loaded"] += 1


@pytest.mark.parametrize("name", ["ratings.dat", "users.dat", "movies.dat"])
def test_fuzz_ml1m(name: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    folder = Path(shutil.copytree(FIXTURES / "ml-1m-tiny", tmp_path_factory.mktemp("ml1m") / "d"))
    original = (folder / name).read_bytes()
    seen = {"loaded": 0, "error": 0}

    @SETTINGS
    @given(mutated(original))
    def run(data: bytes) -> None:
        (folder / name).write_bytes(data)
        _check(folder, load_ml1m, seen)

    run()
    assert seen["error"] > 0 and seen["loaded"] > 0, seen  # the mutations reached both outcomes


@pytest.mark.parametrize("name", ["u.data", "u.user", "u.item"])
def test_fuzz_ml100k(name: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    folder = Path(shutil.copytree(FIXTURES / "ml-100k-tiny", tmp_path_factory.mktemp("ml100k") / "d"))
    original = (folder / name).read_bytes()
    seen = {"loaded": 0, "error": 0}

    @SETTINGS
    @given(mutated(original))
    def run(data: bytes) -> None:
        (folder / name).write_bytes(data)
        _check(folder, load_ml100k, seen)

    run()
    assert seen["error"] > 0 and seen["loaded"] > 0, seen  # the mutations reached both outcomes


CSV = b"user,item,tags,price,clicked\n" + b"".join(
    f"u{i % 7},i{i % 5},{'a|b' if i % 3 else ''},{i * 0.5},{i % 2}\n".encode() for i in range(20)
)
SCHEMA = '{"label": "clicked", "categorical": ["user", "item"], "multivalent": ["tags"], "dense": ["price"]}'


def test_fuzz_csv(tmp_path_factory: pytest.TempPathFactory) -> None:
    p = tmp_path_factory.mktemp("csv") / "t.csv"

    @SETTINGS
    @given(mutated(CSV), st.booleans())
    def run(data: bytes, with_schema: bool) -> None:
        p.write_bytes(data)
        try:
            load_own_table(p, SCHEMA if with_schema else None, fmt="csv")
        except DataFormatError as e:
            assert str(e)

    run()


def test_fuzz_load_splits_end_to_end(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Through the whole pipeline (split, spec, encode), with genres and year on."""
    folder = Path(shutil.copytree(FIXTURES / "ml-1m-tiny", tmp_path_factory.mktemp("e2e") / "d"))
    original = (folder / "movies.dat").read_bytes()
    opts = DataOptions(source="ml-1m", data_dir=str(folder), genres=True, dense=("year",))

    @settings(max_examples=max(20, EXAMPLES // 3), deadline=None)
    @given(mutated(original))
    def run(data: bytes) -> None:
        (folder / "movies.dat").write_bytes(data)
        try:
            s = load_splits(opts)
        except DataFormatError:
            return
        assert len(s.train) + len(s.val) + len(s.test) == s.info["examples"]

    run()
