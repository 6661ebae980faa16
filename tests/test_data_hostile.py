"""Malformed and mutated data files (issue 7, issue 11): each raises DataFormatError naming the file and the line.

* Malformed files, one test per kind: ML-1M, ML-100K (a user missing from ``u.user``, empty and UTF-16
  files, Unicode separator characters), a download cut off mid-line; the loaders return nothing on
  error (no partially filled table). How the app's Train page shows the error:
  ``tests/app/test_hostile_inputs.py``.
* Own tables: a Parquet binary column that is not UTF-8, a schema delimiter that cannot separate fields.
* Property-based fuzzing of the loaders: any mutated file loads or raises DataFormatError, nothing
  else. CI size: 150 examples per test (set DCNVIZ_FUZZ_EXAMPLES for a larger run, e.g. 5000).
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dcnviz.data import DataOptions, load_ml1m, load_ml100k, load_own_table, load_splits
from dcnviz.errors import ConfigError, DataFormatError
from tests.helpers import TEST_FIXTURES

FIXTURES = TEST_FIXTURES / "data"


@pytest.fixture
def ml1m(tmp_path: Path) -> Path:
    return Path(shutil.copytree(FIXTURES / "ml-1m-tiny", tmp_path / "ml-1m"))


def _edit_line(path: Path, line_no: int, new: str) -> None:
    lines = path.read_text(encoding="latin-1").splitlines()
    lines[line_no - 1] = new
    path.write_text("\n".join(lines) + "\n", encoding="latin-1")


def _raises(folder: Path, match: str, loader=load_ml1m) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(DataFormatError, match=match):
        loader(folder)


def test_wrong_separator(ml1m: Path) -> None:
    p = ml1m / "ratings.dat"
    p.write_text(p.read_text().replace("::", "\t"))
    _raises(
        ml1m,
        re.escape(f"{p} line 1: expected 4 fields separated by '::' (UserID::MovieID::Rating::Timestamp), found 1")
        + r" — the line uses TAB; the separator must be '::'",
    )


def test_wrong_separator_users(ml1m: Path) -> None:
    p = ml1m / "users.dat"
    p.write_text(p.read_text().replace("::", ","))
    _raises(ml1m, re.escape(f"{p} line 1: expected 5 fields separated by '::'") + r".*found 1 — the line uses ','")


def test_missing_column(ml1m: Path) -> None:
    p = ml1m / "users.dat"
    _edit_line(p, 3, "3::M::25::15")  # zip code missing
    _raises(
        ml1m,
        re.escape(
            f"{p} line 3: expected 5 fields separated by '::' (UserID::Gender::Age::Occupation::Zip-code), found 4"
        ),
    )


def test_missing_column_in_ratings(ml1m: Path) -> None:
    p = ml1m / "ratings.dat"
    _edit_line(p, 7, "1::2::4")
    _raises(ml1m, re.escape(f"{p} line 7: expected 4 fields separated by '::'") + r".*found 3: '1::2::4'")


def test_extra_column_in_ratings(ml1m: Path) -> None:
    p = ml1m / "ratings.dat"
    _edit_line(p, 12, "1::2::4::978300000::9")
    _raises(ml1m, re.escape(f"{p} line 12: expected 4 fields") + r".*found 5")


def test_non_numeric_rating(ml1m: Path) -> None:
    p = ml1m / "ratings.dat"
    _edit_line(p, 5, "5::6::five::978300004")
    _raises(ml1m, re.escape(f"{p} line 5: Rating must be an integer; got 'five'"))


def test_rating_out_of_range(ml1m: Path) -> None:
    p = ml1m / "ratings.dat"
    _edit_line(p, 9, "5::6::7::978300004")
    _raises(ml1m, re.escape(f"{p} line 9: Rating must be 1..5; got 7"))


def test_line_numbers_count_blank_lines(ml1m: Path) -> None:
    p = ml1m / "ratings.dat"
    lines = p.read_text().splitlines()
    lines.insert(2, "")  # a blank line 3 is skipped, but counted
    lines[9] = "5::6::0::978300004"  # now line 10
    p.write_text("\n".join(lines) + "\n")
    _raises(ml1m, re.escape(f"{p} line 10: Rating must be 1..5; got 0"))


def test_non_numeric_user_id(ml1m: Path) -> None:
    p = ml1m / "users.dat"
    _edit_line(p, 2, "two::M::56::16::70072")
    _raises(ml1m, re.escape(f"{p} line 2: UserID must be an integer; got 'two'"))


def test_empty_file(ml1m: Path) -> None:
    p = ml1m / "ratings.dat"
    p.write_bytes(b"")
    _raises(ml1m, re.escape(f"{p} is empty"))


def test_blank_only_file(ml1m: Path) -> None:
    p = ml1m / "movies.dat"
    p.write_bytes(b"\n\n  \n")
    _raises(ml1m, re.escape(f"{p} is empty"))


def test_bad_encoding_utf16(ml1m: Path) -> None:
    p = ml1m / "movies.dat"
    p.write_bytes(p.read_text(encoding="latin-1").encode("utf-16"))
    _raises(ml1m, re.escape(f"{p} line 1: contains a NUL byte; this is not a latin-1 text file (saved as UTF-16"))


def test_binary_garbage(ml1m: Path) -> None:
    p = ml1m / "ratings.dat"
    p.write_bytes(b"1::1::5::978300000\n2::1::4::97\x00\x01\x02\n")
    _raises(ml1m, re.escape(f"{p} line 2: contains a NUL byte"))


def test_user_missing_from_users_dat(ml1m: Path) -> None:
    p = ml1m / "ratings.dat"
    _edit_line(p, 4, "99::2::4::978300003")
    _raises(ml1m, re.escape(f"{p} line 4: UserID 99 does not appear in users.dat (1 rating(s) refer to unknown ids)"))


def test_movie_missing_from_movies_dat(ml1m: Path) -> None:
    p = ml1m / "ratings.dat"
    _edit_line(p, 6, "1::4242::4::978300003")
    _raises(ml1m, re.escape(f"{p} line 6: MovieID 4242 does not appear in movies.dat"))


def test_duplicate_user(ml1m: Path) -> None:
    p = ml1m / "users.dat"
    _edit_line(p, 4, "2::M::45::7::02460")
    _raises(ml1m, re.escape(f"{p} line 4: UserID 2 appears twice"))


def test_bad_gender_and_age(ml1m: Path) -> None:
    p = ml1m / "users.dat"
    _edit_line(p, 2, "2::X::56::16::70072")
    _raises(ml1m, re.escape(f"{p} line 2: Gender must be F or M; got 'X'"))
    _edit_line(p, 2, "2::M::30::16::70072")
    _raises(ml1m, re.escape(f"{p} line 2: Age must be one of the groups (1, 18, 25, 35, 45, 50, 56); got 30"))


def test_missing_file_named(ml1m: Path) -> None:
    (ml1m / "movies.dat").unlink()
    _raises(
        ml1m,
        re.escape(
            f"data folder {ml1m} has no movies.dat; MovieLens-1M expects the files ratings.dat, users.dat, movies.dat"
        ),
    )


def test_missing_folder(tmp_path: Path) -> None:
    _raises(tmp_path / "nope", re.escape(f"data folder {tmp_path / 'nope'} does not exist"))


def test_crlf_line_endings_load(ml1m: Path) -> None:
    for f in ("ratings.dat", "users.dat", "movies.dat"):
        p = ml1m / f
        p.write_bytes(p.read_bytes().replace(b"\n", b"\r\n"))
    t = load_ml1m(ml1m)
    assert len(t.frame) == 24 and set(t.frame["zip"]) >= {"55455-1234"}  # no stray '\r' in the last field


def test_load_splits_surfaces_the_same_error(ml1m: Path) -> None:
    _edit_line(ml1m / "ratings.dat", 2, "oops")
    with pytest.raises(DataFormatError, match=r"ratings\.dat line 2: expected 4 fields"):
        load_splits(DataOptions(source="ml-1m", data_dir=str(ml1m)))


def test_100k_wrong_separator(ml100k: Path) -> None:
    p = ml100k / "u.data"
    p.write_text(p.read_text().replace("\t", "::"))
    _raises(ml100k, re.escape(f"{p} line 1: expected 4 fields separated by TAB") + r".*the line uses '::'", load_ml100k)


def test_100k_item_missing_columns(ml100k: Path) -> None:
    p = ml100k / "u.item"
    lines = p.read_text(encoding="latin-1").splitlines()
    _edit_line(p, 2, lines[1].rsplit("|", 3)[0])  # three genre flags cut off
    _raises(ml100k, re.escape(f"{p} line 2: expected 24 fields separated by '|'") + r".*found 21", load_ml100k)


def test_100k_bad_genre_flag(ml100k: Path) -> None:
    p = ml100k / "u.item"
    lines = p.read_text(encoding="latin-1").splitlines()
    _edit_line(p, 5, lines[4][:-1] + "x")
    _raises(ml100k, re.escape(f"{p} line 5: the 19 genre columns must be 0 or 1"), load_ml100k)


def test_100k_non_numeric_age(ml100k: Path) -> None:
    p = ml100k / "u.user"
    _edit_line(p, 3, "3|seventeen|M|student|E2A4H")
    _raises(ml100k, re.escape(f"{p} line 3: age must be an integer; got 'seventeen'"), load_ml100k)


def test_100k_unknown_item(ml100k: Path) -> None:
    p = ml100k / "u.data"
    _edit_line(p, 8, "1\t77\t4\t881250999")
    _raises(ml100k, re.escape(f"{p} line 8: item id 77 does not appear in u.item"), load_ml100k)


def test_100k_missing_file(ml100k: Path) -> None:
    (ml100k / "u.user").unlink()
    _raises(
        ml100k,
        re.escape(f"data folder {ml100k} has no u.user; MovieLens-100K expects the files u.data, u.user, u.item"),
        load_ml100k,
    )


def test_id_out_of_int64_range(ml1m: Path) -> None:
    p = ml1m / "ratings.dat"
    _edit_line(p, 3, "99999999999999999999999::2::4::978300003")
    _raises(ml1m, re.escape(f"{p} line 3: UserID 99999999999999999999999 is out of the 64-bit integer range"))


def test_too_few_labelled_rows(ml1m: Path) -> None:
    p = ml1m / "ratings.dat"
    p.write_text("".join(f"1::{m}::{r}::97830000{m}\n" for m, r in ((1, 5), (2, 3), (3, 1), (4, 3))))
    with pytest.raises(
        DataFormatError, match=re.escape(f"{p}: 2 labelled rows (2 rating-3 rows dropped); need at least 10")
    ):
        load_splits(DataOptions(source="ml-1m", data_dir=str(ml1m)))


def test_whitespace_lines_and_padded_numbers_still_load(ml1m: Path) -> None:
    p = ml1m / "ratings.dat"
    lines = p.read_text().splitlines()
    lines.insert(4, "   ")  # whitespace-only line: the C parser refuses it, the line-by-line path skips it
    lines[0] = " " + lines[0].replace("::", " :: ", 1)
    p.write_text("\n".join(lines) + "\n")
    assert len(load_ml1m(ml1m).frame) == 24


def test_integer_fields_take_ascii_digits_only(ml1m: Path) -> None:
    p = ml1m / "ratings.dat"
    _edit_line(p, 2, "1_0::1::4::978300001")
    _raises(ml1m, re.escape(f"{p} line 2: UserID must be an integer; got '1_0'"))


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


def _fuzz_file(fixture: str, name: str, loader, tmp_path_factory: pytest.TempPathFactory) -> None:  # type: ignore[no-untyped-def]
    """Mutations of one file of a tiny MovieLens folder: each loads or raises DataFormatError, both happen."""
    folder = Path(shutil.copytree(FIXTURES / fixture, tmp_path_factory.mktemp(fixture) / "d"))
    original = (folder / name).read_bytes()
    seen = {"loaded": 0, "error": 0}

    @SETTINGS
    @given(mutated(original))
    def run(data: bytes) -> None:
        (folder / name).write_bytes(data)
        _check(folder, loader, seen)

    run()
    assert seen["error"] > 0 and seen["loaded"] > 0, seen  # the mutations reached both outcomes


@pytest.mark.parametrize("name", ["ratings.dat", "users.dat", "movies.dat"])
def test_fuzz_ml1m(name: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    _fuzz_file("ml-1m-tiny", name, load_ml1m, tmp_path_factory)


@pytest.mark.parametrize("name", ["u.data", "u.user", "u.item"])
def test_fuzz_ml100k(name: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    _fuzz_file("ml-100k-tiny", name, load_ml100k, tmp_path_factory)


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


def test_100k_user_missing_from_u_user(ml100k: Path) -> None:
    p = ml100k / "u.data"
    _edit_line(p, 4, "99\t1\t4\t881250999")
    with pytest.raises(DataFormatError, match=re.escape(f"{p} line 4: user id 99 does not appear in u.user")):
        load_ml100k(ml100k)


@pytest.mark.parametrize("name", ["u.data", "u.user", "u.item"])
def test_100k_empty_file(ml100k: Path, name: str) -> None:
    (ml100k / name).write_bytes(b"")
    with pytest.raises(DataFormatError, match=re.escape(f"{ml100k / name} is empty")):
        load_ml100k(ml100k)


def test_100k_utf16_file(ml100k: Path) -> None:
    p = ml100k / "u.item"
    p.write_bytes(p.read_text(encoding="latin-1").encode("utf-16"))
    with pytest.raises(DataFormatError, match=re.escape(f"{p} line 1: contains a NUL byte; this is not a latin-1")):
        load_ml100k(ml100k)


@pytest.mark.parametrize("ch", ["\x1c", "\x1d", "\x1e", "\x1f", "\x85", "\xa0"])  # latin-1 chars \\s matches
def test_unicode_separator_characters_in_an_integer_field(ml100k: Path, ch: str) -> None:
    """Found by this file's data fuzzer: "\x1c4" passed the integer check (\\s matched it); int() raised ValueError.

    \x85 and \xa0 used to be stripped by int() and load as 4; integers are now ASCII digits and spaces only.
    """
    p = ml100k / "u.user"
    _edit_line(p, 1, f"1|{ch}4|M|technician|85711")
    with pytest.raises(DataFormatError, match=re.escape(f"{p} line 1: age must be an integer; got {ch + '4'!r}")):
        load_ml100k(ml100k)


def test_download_cut_off_mid_line(ml100k: Path) -> None:
    """A file that ends in the middle of a record names its last line instead of dropping it silently."""
    p = ml100k / "u.data"
    data = p.read_bytes()
    n = data.count(b"\n")
    p.write_bytes(data[:-12])  # "4\t3\t" is all that is left of the last record
    with pytest.raises(DataFormatError, match=re.escape(f"{p} line {n}: expected 4 fields separated by TAB")):
        load_ml100k(ml100k)
    with pytest.raises(DataFormatError, match=re.escape(f"{p} line {n}:")):
        load_splits(DataOptions(source="ml-100k", data_dir=str(ml100k)))


def test_parquet_binary_column_that_is_not_utf8_is_named(tmp_path) -> None:
    pa, pq = pytest.importorskip("pyarrow"), pytest.importorskip("pyarrow.parquet")
    from dcnviz.data import load_own_table

    n = 100
    users = [str(i % 7).encode() for i in range(n)]
    users[41] = b"\xff\xfe7"
    table = pa.table({"label": [i % 2 for i in range(n)], "user": pa.array(users, pa.binary())})
    pq.write_table(table, tmp_path / "t.parquet")
    with pytest.raises(DataFormatError, match=r"row 42: column 'user' holds bytes that are not UTF-8 text"):
        load_own_table(tmp_path / "t.parquet", None, fmt="parquet")
    users[41] = b"7"  # valid UTF-8 bytes are read as text
    pq.write_table(pa.table({"label": table["label"], "user": pa.array(users, pa.binary())}), tmp_path / "t.parquet")
    assert list(load_own_table(tmp_path / "t.parquet", None, fmt="parquet").frame["user"][:3]) == ["0", "1", "2"]


@pytest.mark.parametrize("delimiter", ["\n", "\r", '"', "\x00"])
def test_a_schema_delimiter_that_cannot_separate_fields_is_refused(delimiter: str) -> None:
    from dcnviz.data import TableSchema

    with pytest.raises(ConfigError, match="schema 'delimiter' must be a printable character"):
        TableSchema.from_json({"label": "y", "categorical": ["a"], "delimiter": delimiter})
    assert TableSchema.from_json({"label": "y", "categorical": ["a"], "delimiter": "\t"}).delimiter == "\t"
