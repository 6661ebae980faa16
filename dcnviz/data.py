"""Datasets for dcnviz: MovieLens-1M / -100K, the synthetic sample, and your own CSV/Parquet tables.

Everything ends as a :class:`~dcnviz.encoded.DatasetSplits`: CPU tensors in the layout of
:mod:`dcnviz.encoded`, encoded with one :class:`~dcnviz.spec.FeatureSpec` whose vocabularies come from
the training split only.

Protocol (paper §7.1.1, MovieLens): ratings 1–2 → label 0, 4–5 → label 1, rating 3 dropped; a random
80/10/10 train/validation/test split drawn with ``numpy.random.default_rng(seed).permutation``. The six
default features are the paper's: user_id, movie_id, gender, age, occupation, zip; genres (a multivalent
field, mean-pooled, §3.1) and the release year (a dense field) are options.

Pipeline (each step public, so the app and tests can use it on its own)::

    load_table(options)            -> Table          # parse + validate the files, one row per example
    split_indices(n, seed)         -> (train, val, test) index arrays
    build_spec(table, train, opts) -> FeatureSpec    # vocabularies / dense stats from the train rows
    encode_frame(frame, spec)      -> Encoded        # CPU tensors, spec order
    load_splits(options, spec=...) -> DatasetSplits  # all of the above

Every malformed input raises :class:`~dcnviz.errors.DataFormatError` naming the file and, where there
is one, the line; nothing is half-loaded silently.
"""

from __future__ import annotations

import csv
import io
import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import numpy as np
import pandas as pd
import torch

from dcnviz import resources
from dcnviz.encoded import DatasetSplits, Encoded
from dcnviz.errors import ConfigError, DataFormatError
from dcnviz.jsonconfig import JsonConfig, JsonList
from dcnviz.options import DEFAULT_EMBEDDING_DIM, SOURCES
from dcnviz.spec import FeatureSpec, Field, FieldKind, rule_of_thumb_dim
from dcnviz.untrusted import loads_json

MOVIELENS_FEATURES: tuple[str, ...] = ("user_id", "movie_id", "gender", "age", "occupation", "zip")
MOVIELENS_DENSE: tuple[str, ...] = ("year",)
AGE_ENCODINGS: tuple[str, ...] = ("groups", "raw")
ML1M_AGE_GROUPS: tuple[int, ...] = (1, 18, 25, 35, 45, 50, 56)
ML100K_GENRES: tuple[str, ...] = (
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)
ML1M_FILES: tuple[str, ...] = ("ratings.dat", "users.dat", "movies.dat")
ML100K_FILES: tuple[str, ...] = ("u.data", "u.user", "u.item")
LABEL = "label"  # name of the label column in a Table's frame
SPLIT_FRACTIONS = (0.8, 0.1, 0.1)
MIN_EXAMPLES = 10  # fewer labelled rows cannot make three non-empty splits

SAMPLE_DIR = resources.SAMPLE_DIR  # the bundled sample_data/ (checkout or installed package)


def _default_features() -> tuple[str, ...]:
    return MOVIELENS_FEATURES


@dataclass(frozen=True, kw_only=True)
class DataOptions(JsonConfig):
    """Everything needed to recreate a dataset split; stored in model files as JSON.

    For ``csv``/``parquet`` the schema decides the fields, and ``features``/``genres``/``dense`` must be
    left at their defaults (they describe MovieLens columns).

    >>> o = DataOptions(source="ml-100k", data_dir="data/ml-100k", genres=True)
    >>> DataOptions.from_json(o.to_json()) == o
    True
    """

    _JSON_WHAT = "data options"
    _JSON_KEYS = "data option keys"
    _JSON_LISTS: ClassVar[dict[str, JsonList]] = {
        key: JsonList(str, "`{key}` must be a list of names; got {value!r}") for key in ("features", "dense")
    }

    source: str  # sample | ml-1m | ml-100k | csv | parquet
    data_dir: str | None = None  # folder (ml-*, sample: None = the bundled sample_data/), file or folder (csv/parquet)
    schema: str | None = None  # schema JSON file (or inline JSON text) for csv/parquet; see docs/data.md
    seed: int = 0  # split seed: numpy default_rng(seed).permutation draws the random 80/10/10 split
    features: tuple[str, ...] = field(default_factory=_default_features)  # categorical MovieLens fields, x0 order
    genres: bool = False  # add genres as a multivalent field (mean-pooled), after the categorical ones
    dense: tuple[str, ...] = ()  # dense MovieLens features, normalised with train stats: ("year",) = release year
    age_encoding: str = "groups"  # ML-100K: "groups" (ML-1M's 1/18/25/35/45/50/56) or "raw" ages
    embedding_dim: int | str = (
        DEFAULT_EMBEDDING_DIM  # one size for every sparse field, or "auto" = 6·vocab^¼ per field (§7.1.3)
    )

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ConfigError(f"`source` must be one of {SOURCES}; got source={self.source!r}")
        if self.source in ("ml-1m", "ml-100k", "csv", "parquet") and not self.data_dir:
            what, get = "file or folder", ""
            if self.source.startswith("ml-"):
                what = "folder with the MovieLens files"
                get = f"; to fetch it: python -m dcnviz download {self.source} --dir data/"
            raise ConfigError(
                f"`data_dir` (the {what}; --data-dir on the command line) is required for source={self.source!r}{get}"
            )
        if self.schema is not None and self.source not in ("csv", "parquet"):
            raise ConfigError(f"`schema` applies to csv/parquet only; got schema for source={self.source!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"`seed` must be an integer >= 0; got seed={self.seed!r}")
        if isinstance(self.features, str) or isinstance(self.dense, str):
            raise ConfigError("`features` and `dense` must be sequences of names, not one string")
        object.__setattr__(self, "features", tuple(self.features))
        object.__setattr__(self, "dense", tuple(self.dense))
        if self.source in ("csv", "parquet"):
            if self.features != MOVIELENS_FEATURES or self.genres or self.dense:
                raise ConfigError(
                    "for csv/parquet the schema lists the fields; leave `features`, `genres` and `dense` at their "
                    f"defaults; got features={list(self.features)}, genres={self.genres}, dense={list(self.dense)}"
                )
        else:
            unknown = [f for f in self.features if f not in MOVIELENS_FEATURES]
            if unknown:
                raise ConfigError(f"`features` must be among {MOVIELENS_FEATURES}; got unknown {unknown}")
            if len(set(self.features)) != len(self.features):
                raise ConfigError(f"`features` has duplicates: {list(self.features)}")
            bad_dense = [f for f in self.dense if f not in MOVIELENS_DENSE]
            if bad_dense or len(set(self.dense)) != len(self.dense):
                raise ConfigError(f"`dense` must be distinct names among {MOVIELENS_DENSE}; got {list(self.dense)}")
            if not self.features and not self.genres and not self.dense:
                raise ConfigError("no fields selected: `features`, `genres` and `dense` are all empty")
        if self.age_encoding not in AGE_ENCODINGS:
            raise ConfigError(f"`age_encoding` must be one of {AGE_ENCODINGS}; got age_encoding={self.age_encoding!r}")
        e = self.embedding_dim
        if isinstance(e, str):
            if e != "auto":
                raise ConfigError(f"`embedding_dim` must be an integer >= 1 or 'auto'; got embedding_dim={e!r}")
        elif isinstance(e, bool) or not isinstance(e, int) or e < 1:
            raise ConfigError(f"`embedding_dim` must be an integer >= 1 or 'auto'; got embedding_dim={e!r}")

    @classmethod
    def from_json(cls, obj: Any) -> DataOptions:
        kw = cls._json_object(obj)
        if "source" not in kw:
            raise ConfigError("data options need a 'source'")
        return cls._json_build(cls._json_lists(kw))


@dataclass
class Table:
    """A parsed dataset: one row per labelled example, before splitting and encoding.

    ``frame`` has an int8 ``label`` column and one column per available feature: categorical and
    multivalent features as pandas ``Categorical`` of strings (a multivalent value is its ids joined
    by ``separators[name]``; "" = none), dense features as float64 (NaN = missing).
    """

    frame: pd.DataFrame
    kinds: dict[str, FieldKind]  # every available feature column -> its kind
    order: tuple[str, ...]  # the selected fields, in x0 order
    source: str
    files: tuple[str, ...]  # files read
    rows_read: int  # rows in the ratings/table file
    rows_dropped: int  # rows removed by the protocol (MovieLens: rating 3)
    separators: dict[str, str] = field(default_factory=dict)  # multivalent column -> token separator


# ----------------------------------------------------------------------------------------------------------
# Small helpers


def _natural_key(v: str) -> tuple[int, int, str]:
    """Sort integer strings numerically before other strings ("2" < "10" < "abc")."""
    s = v.strip()
    if s.lstrip("-").isdigit() and len(s) < 19:
        return (0, int(s), v)
    return (1, 0, v)


def _natural_sorted(values: Sequence[str]) -> list[str]:
    return sorted(values, key=_natural_key)


def _read_text(path: Path, encoding: str = "latin-1") -> str:
    """File contents as text; empty files, NUL bytes (UTF-16, binary) and undecodable bytes are errors."""
    if not path.is_file():
        raise DataFormatError(f"{path}: not found")
    raw = path.read_bytes()
    if not raw.strip():
        raise DataFormatError(f"{path} is empty")
    nul = raw.find(b"\x00")
    if nul >= 0:
        line = raw.count(b"\n", 0, nul) + 1
        raise DataFormatError(
            f"{path} line {line}: contains a NUL byte; this is not a {encoding} text file "
            "(saved as UTF-16, or binary?) — save it as plain text"
        )
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise DataFormatError(
            f"{path} line {line}: bytes {raw[e.start : e.start + 4]!r} are not valid {encoding}; "
            "set the schema's 'encoding' to the file's real encoding"
        ) from None
    text = text[1:] if text.startswith("\ufeff") else text
    # One line terminator everywhere, so line numbers agree between pandas and the line-by-line paths.
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _split_lines(
    path: Path, text: str, sep: str, columns: Sequence[str], *, at_least: bool = False
) -> list[tuple[int, list[str]]]:
    """(line number, fields) of every non-blank line; each must have len(columns) fields (or more if at_least)."""
    out = []
    shown = "TAB" if sep == "\t" else repr(sep)
    for no, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        parts = line.split(sep)
        if len(parts) != len(columns) and not (at_least and len(parts) > len(columns)):
            hint = ""
            if len(parts) == 1:
                for other, name in (("::", "'::'"), ("\t", "TAB"), ("|", "'|'"), (",", "','"), (";", "';'")):
                    if other != sep and other in line:
                        hint = f" — the line uses {name}; the separator must be {shown}"
                        break
            raise DataFormatError(
                f"{path} line {no}: expected {len(columns)} fields separated by {shown} "
                f"({sep.join(columns)}), found {len(parts)}{hint}: {line[:80]!r}"
            )
        out.append((no, parts))
    if not out:
        raise DataFormatError(f"{path} is empty")
    return out


_INT = re.compile(r"\s*[+-]?[0-9]+\s*", re.ASCII)  # ASCII whitespace only: int() refuses "\x1c4"


def _int_field(path: Path, no: int, column: str, value: str) -> int:
    if not _INT.fullmatch(value):  # plain ASCII digits only (int() would also take "1_000" or other scripts' digits)
        raise DataFormatError(f"{path} line {no}: {column} must be an integer; got {value!r}")
    v = int(value)
    if not -(2**63) <= v < 2**63:
        raise DataFormatError(f"{path} line {no}: {column} {value.strip()} is out of the 64-bit integer range")
    return v


def _nonblank_line_numbers(text: str) -> np.ndarray:
    """Line numbers (1-based) of the non-blank lines, i.e. of the rows pandas parsed."""
    return np.array([i for i, line in enumerate(text.split("\n"), start=1) if line.strip()], dtype=np.int64)


def _parse_ratings(path: Path, text: str, sep: str) -> pd.DataFrame:
    """UserID, MovieID, Rating, Timestamp (all integers), vectorised; errors name the line.

    The fast path is pandas' C parser; any failure there re-reads the file line by line, which
    reports the first bad line precisely (or, for oddities the C parser refuses but that are valid,
    such as whitespace-only lines or spaces around numbers, returns the slow parse).
    """
    columns = ["UserID", "MovieID", "Rating", "Timestamp"]
    one = sep
    if len(sep) > 1:
        if "\x1f" in text:
            raise DataFormatError(f"{path}: contains the control character \\x1f; not a MovieLens ratings file")
        text_c = text.replace(sep, "\x1f")
        one = "\x1f"
    else:
        text_c = text
    df: pd.DataFrame | None
    try:
        df = pd.read_csv(
            io.StringIO(text_c),
            sep=one,
            header=None,
            names=columns,
            dtype=np.int64,
            engine="c",
            quoting=csv.QUOTE_NONE,
            skip_blank_lines=True,
        )
    except (ValueError, pd.errors.ParserError, OverflowError):
        df = None
    if df is None:
        rows = [
            [_int_field(path, no, c, v) for c, v in zip(columns, parts, strict=True)]
            for no, parts in _split_lines(path, text, sep, columns)
        ]
        df = pd.DataFrame(rows, columns=columns, dtype=np.int64)
    if len(df) == 0:
        raise DataFormatError(f"{path} is empty")
    bad = ~df["Rating"].between(1, 5).to_numpy()
    if bad.any():
        k = int(np.argmax(bad))
        no = int(_nonblank_line_numbers(text)[k])
        raise DataFormatError(f"{path} line {no}: Rating must be 1..5; got {int(df['Rating'].iloc[k])}")
    return df


def _check_ids(path: Path, text: str, ids: pd.Series, known: pd.Index, column: str, other: str) -> np.ndarray:
    """Positions of ``ids`` in ``known``; an id missing from ``other`` is an error naming the line."""
    pos = known.get_indexer(ids.to_numpy())
    missing = pos < 0
    if missing.any():
        k = int(np.argmax(missing))
        no = int(_nonblank_line_numbers(text)[k])
        raise DataFormatError(
            f"{path} line {no}: {column} {int(ids.iloc[k])} does not appear in {other} "
            f"({int(missing.sum())} rating(s) refer to unknown ids)"
        )
    return pos


def _unique_ids(path: Path, ids: list[int], lines: list[int], column: str) -> pd.Index:
    index = pd.Index(ids)
    if not index.is_unique:
        dup = index.duplicated()
        k = int(np.argmax(dup))
        raise DataFormatError(f"{path} line {lines[k]}: {column} {ids[k]} appears twice")
    return index


def _find_dir(data_dir: str | Path, files: Sequence[str], what: str, sub: str) -> Path:
    """The folder holding ``files``: ``data_dir`` itself or ``data_dir/sub`` (as unzipped)."""
    base = Path(data_dir).expanduser()
    if not base.exists():
        raise DataFormatError(f"data folder {base} does not exist")
    if not base.is_dir():
        raise DataFormatError(f"{base} is not a folder; {what} needs a folder with {', '.join(files)}")
    for cand in (base, base / sub):
        if all((cand / f).is_file() for f in files):
            return cand
    missing = [f for f in files if not (base / f).is_file()]
    raise DataFormatError(
        f"data folder {base} has no {', '.join(missing)}; {what} expects the files {', '.join(files)} "
        f"(in the folder or in {sub}/ inside it)"
    )


def _from_level(values: Sequence[str], pos: np.ndarray) -> pd.Categorical:
    """Per-example categorical from per-entity string values (users, movies) and each example's entity."""
    level = pd.Categorical(list(values))
    return pd.Categorical.from_codes(level.codes[pos], categories=level.categories)


def _year_from_title(title: str) -> float:
    m = re.search(r"\((\d{4})\)\s*$", title.strip())
    return float(m.group(1)) if m else math.nan


# ----------------------------------------------------------------------------------------------------------
# MovieLens


def _movielens_frame(
    ratings: pd.DataFrame,
    user_pos: np.ndarray,
    movie_pos: np.ndarray,
    users: dict[str, list[str]],
    movies: dict[str, Any],
) -> pd.DataFrame:
    keep = (ratings["Rating"] != 3).to_numpy()
    up, mp = user_pos[keep], movie_pos[keep]
    cols: dict[str, Any] = {
        LABEL: (ratings["Rating"].to_numpy()[keep] >= 4).astype(np.int8),
        "user_id": _from_level(users["user_id"], up),
        "movie_id": _from_level(movies["movie_id"], mp),
        "gender": _from_level(users["gender"], up),
        "age": _from_level(users["age"], up),
        "occupation": _from_level(users["occupation"], up),
        "zip": _from_level(users["zip"], up),
        "genres": _from_level(movies["genres"], mp),
        "year": np.asarray(movies["year"], dtype=np.float64)[mp],
    }
    return pd.DataFrame(cols)


MOVIELENS_KINDS: dict[str, FieldKind] = {
    **{f: "categorical" for f in MOVIELENS_FEATURES},
    "genres": "multivalent",
    "year": "dense",
}


class _Side(NamedTuple):
    """The users or the movies of a MovieLens folder, read from their file."""

    path: Path  # users.dat / u.user, movies.dat / u.item
    rows: dict[str, Any]  # column -> values, in file order
    index: pd.Index  # the ids, in file order (unique)
    id_name: str  # what the ratings file's messages call the id ("UserID", "item id")


def _ratings_table(rpath: Path, sep: str, source: str, users: _Side, movies: _Side) -> Table:
    """The shared tail of the MovieLens loaders: read the ratings, check that every rating names a known user
    and movie, join them into one frame (the paper's protocol: :func:`_movielens_frame`)."""
    rtext = _read_text(rpath)
    ratings = _parse_ratings(rpath, rtext, sep)
    user_pos = _check_ids(rpath, rtext, ratings["UserID"], users.index, users.id_name, users.path.name)
    movie_pos = _check_ids(rpath, rtext, ratings["MovieID"], movies.index, movies.id_name, movies.path.name)
    frame = _movielens_frame(ratings, user_pos, movie_pos, users.rows, movies.rows)
    return Table(
        frame=frame,
        kinds=dict(MOVIELENS_KINDS),
        order=MOVIELENS_FEATURES,  # load_table replaces this with the selected fields
        source=source,
        files=tuple(str(p) for p in (rpath, users.path, movies.path)),
        rows_read=len(ratings),
        rows_dropped=len(ratings) - len(frame),
        separators={"genres": "|"},
    )


def load_ml1m(data_dir: str | Path, *, source: str = "ml-1m") -> Table:
    """Read the MovieLens-1M files (``ratings.dat``, ``users.dat``, ``movies.dat``; ``::``, latin-1).

    Values kept as in the files: gender F/M, age group 1/18/25/35/45/50/56, occupation code 0–20,
    zip code as a string, genres ``|``-separated; release year from ``Title (Year)``.
    """
    folder = _find_dir(data_dir, ML1M_FILES, "MovieLens-1M", "ml-1m")
    rpath, upath, mpath = (folder / f for f in ML1M_FILES)

    utext = _read_text(upath)
    u_cols = ["UserID", "Gender", "Age", "Occupation", "Zip-code"]
    users: dict[str, list[str]] = {k: [] for k in ("user_id", "gender", "age", "occupation", "zip")}
    uids, ulines = [], []
    for no, p in _split_lines(upath, utext, "::", u_cols):
        uid = _int_field(upath, no, "UserID", p[0])
        g = p[1].strip()
        if g not in ("F", "M"):
            raise DataFormatError(f"{upath} line {no}: Gender must be F or M; got {p[1]!r}")
        age = _int_field(upath, no, "Age", p[2])
        if age not in ML1M_AGE_GROUPS:
            raise DataFormatError(f"{upath} line {no}: Age must be one of the groups {ML1M_AGE_GROUPS}; got {age}")
        occ = _int_field(upath, no, "Occupation", p[3])
        if not 0 <= occ <= 20:
            raise DataFormatError(f"{upath} line {no}: Occupation must be a code 0..20; got {occ}")
        uids.append(uid)
        ulines.append(no)
        users["user_id"].append(str(uid))
        users["gender"].append(g)
        users["age"].append(str(age))
        users["occupation"].append(str(occ))
        users["zip"].append(p[4].strip())
    user_index = _unique_ids(upath, uids, ulines, "UserID")

    mtext = _read_text(mpath)
    movies: dict[str, Any] = {"movie_id": [], "genres": [], "year": []}
    mids, mlines = [], []
    for no, p in _split_lines(mpath, mtext, "::", ["MovieID", "Title", "Genres"], at_least=True):
        mid = _int_field(mpath, no, "MovieID", p[0])
        title = "::".join(p[1:-1])  # a title containing '::' stays whole
        mids.append(mid)
        mlines.append(no)
        movies["movie_id"].append(str(mid))
        movies["genres"].append("|".join(g for g in p[-1].strip().split("|") if g))
        movies["year"].append(_year_from_title(title))
    movie_index = _unique_ids(mpath, mids, mlines, "MovieID")

    return _ratings_table(
        rpath, "::", source, _Side(upath, users, user_index, "UserID"), _Side(mpath, movies, movie_index, "MovieID")
    )


def age_group(age: int) -> int:
    """ML-1M's age group of a raw age: 1 (<18), 18 (18–24), 25, 35, 45 (45–49), 50 (50–55), 56 (56+).

    >>> [age_group(a) for a in (7, 18, 24, 25, 44, 49, 50, 55, 56, 73)]
    [1, 18, 18, 25, 35, 45, 50, 50, 56, 56]
    """
    for lo in reversed(ML1M_AGE_GROUPS[1:]):
        if age >= lo:
            return lo
    return 1


def load_ml100k(data_dir: str | Path, *, age_encoding: str = "groups") -> Table:
    """Read the MovieLens-100K files (``u.data`` TAB-separated, ``u.user`` and ``u.item`` ``|``-separated).

    Ages become ML-1M's groups (``age_encoding="groups"``, default) or stay raw (``"raw"``); occupation
    is the name from ``u.user``; zip codes stay strings (some are not numeric); genres are the names of
    the 19 flag columns of ``u.item`` that are 1; the release year comes from the title's ``(Year)``,
    else from the release date.
    """
    if age_encoding not in AGE_ENCODINGS:
        raise ConfigError(f"`age_encoding` must be one of {AGE_ENCODINGS}; got age_encoding={age_encoding!r}")
    folder = _find_dir(data_dir, ML100K_FILES, "MovieLens-100K", "ml-100k")
    rpath, upath, ipath = (folder / f for f in ML100K_FILES)

    utext = _read_text(upath)
    users: dict[str, list[str]] = {k: [] for k in ("user_id", "gender", "age", "occupation", "zip")}
    uids, ulines = [], []
    for no, p in _split_lines(upath, utext, "|", ["user id", "age", "gender", "occupation", "zip code"]):
        uid = _int_field(upath, no, "user id", p[0])
        age = _int_field(upath, no, "age", p[1])
        if not 0 < age < 130:
            raise DataFormatError(f"{upath} line {no}: age must be in 1..129; got {age}")
        g = p[2].strip()
        if g not in ("F", "M"):
            raise DataFormatError(f"{upath} line {no}: gender must be F or M; got {p[2]!r}")
        occ = p[3].strip()
        if not occ:
            raise DataFormatError(f"{upath} line {no}: occupation is empty")
        uids.append(uid)
        ulines.append(no)
        users["user_id"].append(str(uid))
        users["gender"].append(g)
        users["age"].append(str(age_group(age) if age_encoding == "groups" else age))
        users["occupation"].append(occ)
        users["zip"].append(p[4].strip())
    user_index = _unique_ids(upath, uids, ulines, "user id")

    itext = _read_text(ipath)
    i_cols = ["movie id", "movie title", "release date", "video release date", "IMDb URL", *ML100K_GENRES]
    movies: dict[str, Any] = {"movie_id": [], "genres": [], "year": []}
    mids, mlines = [], []
    for no, p in _split_lines(ipath, itext, "|", i_cols):
        mid = _int_field(ipath, no, "movie id", p[0])
        flags = p[5:]
        if any(f.strip() not in ("0", "1") for f in flags):
            raise DataFormatError(f"{ipath} line {no}: the 19 genre columns must be 0 or 1; got {'|'.join(flags)!r}")
        year = _year_from_title(p[1])
        date = p[2].strip()
        if math.isnan(year) and re.fullmatch(r".*\d{4}", date):
            year = float(date[-4:])
        mids.append(mid)
        mlines.append(no)
        movies["movie_id"].append(str(mid))
        movies["genres"].append("|".join(g for g, f in zip(ML100K_GENRES, flags, strict=True) if f.strip() == "1"))
        movies["year"].append(year)
    movie_index = _unique_ids(ipath, mids, mlines, "movie id")

    return _ratings_table(
        rpath, "\t", "ml-100k", _Side(upath, users, user_index, "user id"), _Side(ipath, movies, movie_index, "item id")
    )


# ----------------------------------------------------------------------------------------------------------
# Your own tables: CSV / Parquet with a schema


@dataclass(frozen=True, kw_only=True)
class TableSchema(JsonConfig):
    """Columns of an own-data table (the schema JSON file; see docs/data.md).

    >>> s = TableSchema.from_json({"label": "clicked", "categorical": ["user", "item"], "dense": ["price"]})
    >>> s.columns
    ('user', 'item', 'price')
    """

    _JSON_WHAT = "schema"  # from_json below names the file (``where``) in its messages
    _JSON_LISTS: ClassVar[dict[str, JsonList]] = {
        key: JsonList(str, "'{key}' must be a list of column names; got {value!r}")
        for key in ("categorical", "multivalent", "dense")
    }

    label: str  # the label column: 0/1 (or any values with label_threshold)
    categorical: tuple[str, ...] = ()  # one id per row
    multivalent: tuple[str, ...] = ()  # several ids per row, joined by multivalent_separator (Parquet: or lists)
    dense: tuple[str, ...] = ()  # numbers, normalised with train mean/std; empty cells = the train mean
    multivalent_separator: str = "|"  # token separator inside a multivalent cell
    label_threshold: float | None = None  # label = 1 where value >= threshold (e.g. 4 for 1..5 ratings)
    delimiter: str = ","  # CSV field delimiter
    encoding: str = "utf-8"  # CSV text encoding

    def __post_init__(self) -> None:
        cols = [self.label, *self.columns]
        if not self.label:
            raise ConfigError("schema needs a non-empty 'label' column name")
        dup = sorted({c for c in cols if cols.count(c) > 1})
        if dup:
            raise ConfigError(f"schema lists these columns twice: {dup}")
        if not self.columns:
            raise ConfigError("schema lists no feature columns: give 'categorical', 'multivalent' or 'dense'")
        if not self.multivalent_separator:
            raise ConfigError("schema 'multivalent_separator' must be non-empty")
        if len(self.delimiter) != 1:
            raise ConfigError(f"schema 'delimiter' must be one character; got {self.delimiter[:20]!r}")
        if not (self.delimiter == "\t" or self.delimiter.isprintable()) or self.delimiter == '"':
            raise ConfigError(
                f"schema 'delimiter' must be a printable character other than '\"', or a tab; got {self.delimiter!r} "
                "(a line break or quote cannot separate fields)"
            )
        if self.label_threshold is not None and not math.isfinite(self.label_threshold):
            raise ConfigError(f"schema 'label_threshold' must be a finite number; got {self.label_threshold!r}")

    @property
    def columns(self) -> tuple[str, ...]:
        """Feature columns in x0 order: categorical, multivalent, dense."""
        return (*self.categorical, *self.multivalent, *self.dense)

    @classmethod
    def from_json(cls, obj: Any, *, where: str = "schema") -> TableSchema:
        if not isinstance(obj, dict):
            raise ConfigError(f"{where}: must be a JSON object; got {type(obj).__name__}")
        names = cls.json_fields()
        unknown = set(obj) - names
        if unknown:
            raise ConfigError(f"{where}: unknown keys {sorted(unknown)}; known keys are {sorted(names)}")
        if "label" not in obj or not isinstance(obj["label"], str):
            raise ConfigError(f"{where}: needs 'label', the name of the label column")
        kw: dict[str, Any] = {"label": obj["label"]}
        for key in ("categorical", "multivalent", "dense"):
            v = obj.get(key, [])
            if not isinstance(v, list) or not all(isinstance(c, str) and c for c in v):
                raise ConfigError(f"{where}: '{key}' must be a list of column names; got {v!r}")
            kw[key] = tuple(v)
        for key in ("multivalent_separator", "delimiter", "encoding"):
            if key in obj:
                if not isinstance(obj[key], str):
                    raise ConfigError(f"{where}: '{key}' must be a string; got {obj[key]!r}")
                kw[key] = obj[key]
        if obj.get("label_threshold") is not None:
            t = obj["label_threshold"]
            if isinstance(t, bool) or not isinstance(t, int | float):
                raise ConfigError(f"{where}: 'label_threshold' must be a number; got {t!r}")
            kw["label_threshold"] = float(t)
        try:
            return cls(**kw)
        except ConfigError as e:
            raise ConfigError(f"{where}: {e}") from None


def read_schema(schema: str | None) -> TableSchema | None:
    """The schema from a file path or inline JSON text (starting with ``{``); None stays None."""
    if schema is None:
        return None
    if schema.lstrip().startswith("{"):
        where, text = "inline schema", schema
    else:
        path = Path(schema).expanduser()
        where = str(path)
        if not path.is_file():
            raise ConfigError(f"schema file {path} not found")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise ConfigError(f"schema file {path} is not UTF-8 text") from None
    obj = loads_json(text, where, error=ConfigError, position="line")
    return TableSchema.from_json(obj, where=where)


def infer_schema(frame: pd.DataFrame, where: str) -> TableSchema:
    """Without a schema: the column ``label`` is the label; a column whose every value is a number and
    not all are integers is dense; every other column is categorical."""
    if LABEL not in frame.columns:
        raise DataFormatError(
            f"{where}: no schema given and no column named 'label'; pass --schema FILE naming the label column "
            f"(columns are {[str(c) for c in frame.columns][:20]})"
        )
    cat: list[str] = []
    dense: list[str] = []
    for c in frame.columns:
        if c == LABEL:
            continue
        v = frame[c]
        num = pd.to_numeric(v, errors="coerce")
        is_dense = bool(v.notna().any()) and int(num.notna().sum()) == int(v.notna().sum()) and not _all_ints(num)
        (dense if is_dense else cat).append(str(c))
    return TableSchema(label=LABEL, categorical=tuple(cat), dense=tuple(dense))


def _table_files(data: Path, suffixes: tuple[str, ...]) -> list[Path]:
    if data.is_dir():
        files = sorted(p for p in data.iterdir() if p.is_file() and p.suffix.lower() in suffixes)
        if not files:
            raise DataFormatError(f"data folder {data} holds no {'/'.join(suffixes)} file")
        return files
    if not data.is_file():
        raise DataFormatError(f"data file {data} not found")
    return [data]


def _read_csv(path: Path, schema: TableSchema | None) -> tuple[pd.DataFrame, np.ndarray]:
    """Every column as text (ids stay exact: "007" is not 7; empty cells are NaN), and each row's line number.

    Blank lines are skipped but counted; a quoted cell spanning several lines shifts later line numbers.
    """
    encoding = schema.encoding if schema is not None else "utf-8"
    delimiter = schema.delimiter if schema is not None else ","
    try:
        text = _read_text(path, encoding)
    except LookupError:
        raise ConfigError(f"schema 'encoding' {encoding!r} is not a known text encoding") from None
    try:
        frame = pd.read_csv(io.StringIO(text), sep=delimiter, dtype=str, engine="c", skip_blank_lines=False)
    except pd.errors.ParserError as e:
        msg = str(e)
        m = re.search(r"line (\d+)", msg)
        where = f"{path} line {m.group(1)}" if m else str(path)
        raise DataFormatError(f"{where}: {msg.split('C error: ')[-1]} (is the delimiter {delimiter!r}?)") from None
    except pd.errors.EmptyDataError:
        raise DataFormatError(f"{path} is empty") from None
    if len(frame.columns) == 1:
        header = str(frame.columns[0])
        hint = next((s for s in (";", "\t", "|", ",") if s != delimiter and s in header), None)
        if hint:
            raise DataFormatError(
                f"{path} line 1: found one column {header[:60]!r}; the header uses {hint!r}, "
                f"but the delimiter is {delimiter!r} (set the schema's 'delimiter')"
            )
    lines = np.arange(2, len(frame) + 2)  # the header is line 1
    keep = frame.notna().any(axis=1).to_numpy()
    if not keep.all():
        frame, lines = frame[keep].reset_index(drop=True), lines[keep]
    return frame, lines


def _all_ints(s: pd.Series) -> bool:
    v = s.dropna().to_numpy(dtype=np.float64)
    return bool(np.all(np.isfinite(v)) and np.all(v == np.round(v)))


def _read_parquet(path: Path) -> pd.DataFrame:
    """A Parquet file as a DataFrame; binary columns must hold UTF-8 text (they are read as text)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
        for i, f in enumerate(table.schema):
            if pa.types.is_binary(f.type) or pa.types.is_large_binary(f.type) or pa.types.is_fixed_size_binary(f.type):
                table = table.set_column(i, f.name, _utf8_column(path, f.name, table.column(i)))
        return table.to_pandas()
    except DataFormatError:
        raise
    except (pa.ArrowException, OSError, ValueError) as e:
        raise DataFormatError(f"{path}: not a readable Parquet file ({str(e)[:300]})") from None


def _utf8_column(path: Path, name: str, col: Any) -> Any:
    """A binary Parquet column as text, or a :class:`DataFormatError` naming the first row that is not UTF-8."""
    import pyarrow as pa

    try:
        return col.cast(pa.large_string())
    except pa.ArrowInvalid:
        for k, v in enumerate(col.to_pylist()):
            if isinstance(v, bytes):
                try:
                    v.decode("utf-8")
                except UnicodeDecodeError:
                    raise DataFormatError(
                        f"{path} row {k + 1}: column {str(name)[:80]!r} holds bytes that are not UTF-8 text "
                        f"({v[:20]!r}); dcnviz reads text and numbers"
                    ) from None
        raise DataFormatError(f"{path}: column {str(name)[:80]!r} cannot be read as text") from None


def _line(lines: np.ndarray | None, k: int) -> str:
    """Human position of data row k (0-based): its CSV line, or the Parquet row (from 1)."""
    return f"line {int(lines[k])}" if lines is not None else f"row {k + 1}"


def _label_column(values: pd.Series, schema: TableSchema, where: str, lines: np.ndarray | None) -> np.ndarray:
    num = pd.to_numeric(values, errors="coerce")
    bad = num.isna().to_numpy()
    if bad.any():
        k = int(np.argmax(bad))
        raise DataFormatError(
            f"{where} {_line(lines, k)}: label {schema.label!r} must be a number; got {_show(values.iloc[k])}"
        )
    y = num.to_numpy(dtype=np.float64)
    if schema.label_threshold is not None:
        return (y >= schema.label_threshold).astype(np.int8)
    ok = (y == 0) | (y == 1)
    if not ok.all():
        k = int(np.argmax(~ok))
        raise DataFormatError(
            f"{where} {_line(lines, k)}: label {schema.label!r} must be 0 or 1; got {_show(values.iloc[k])} "
            "(set the schema's 'label_threshold' to binarise other values)"
        )
    return y.astype(np.int8)


def _show(v: Any) -> str:
    """A cell value for an error message: strings quoted, NumPy scalars as plain numbers."""
    if isinstance(v, np.generic):
        v = v.item()
    return repr(v) if isinstance(v, str) else str(v)


def _as_text(v: pd.Series) -> pd.Series:
    """Values as stripped strings, missing values kept missing (vectorised)."""
    return v.where(v.isna(), v.astype(str).str.strip())


def _numeric_input(v: pd.Series) -> pd.Series:
    """A column ready for ``pd.to_numeric``: numbers as they are, text stripped."""
    return v if pd.api.types.is_numeric_dtype(v) else _as_text(v)


def _token_string(v: Any, sep: str) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, list | tuple | np.ndarray):
        return sep.join(str(t) for t in v if t is not None)
    return sep.join(t.strip() for t in str(v).split(sep) if t.strip())


def load_own_table(data: str | Path, schema: TableSchema | str | None, *, fmt: str) -> Table:
    """Read a CSV (``fmt="csv"``) or Parquet table (one file, or every such file in a folder, concatenated).

    The schema (a :class:`TableSchema`, a file path or inline JSON) names the label column and the
    categorical / multivalent / dense columns; without one, see :func:`infer_schema`.
    """
    if fmt not in ("csv", "parquet"):
        raise ConfigError(f"fmt must be 'csv' or 'parquet'; got fmt={fmt!r}")
    sch = read_schema(schema) if isinstance(schema, str) or schema is None else schema
    path = Path(data).expanduser()
    files = _table_files(path, (".csv", ".tsv", ".txt") if fmt == "csv" else (".parquet", ".pq"))
    frames = []
    for f in files:
        lines: np.ndarray | None = None
        if fmt == "csv":
            df, lines = _read_csv(f, sch)
        else:
            df = _read_parquet(f)
        if len(df) == 0:
            raise DataFormatError(f"{f} has a header but no data rows")
        s = sch if sch is not None else infer_schema(df, str(f))
        missing = [c for c in (s.label, *s.columns) if c not in df.columns]
        if missing:
            raise DataFormatError(
                f"{f}: missing column(s) {missing} named in the schema; the file's columns are "
                f"{[str(c) for c in df.columns][:30]}"
            )
        cols: dict[str, Any] = {LABEL: _label_column(_numeric_input(df[s.label]), s, str(f), lines)}
        for c in s.categorical:  # text ids; an empty cell stays missing and encodes as 0 (out of vocabulary)
            cols[c] = _as_text(df[c])
        for c in s.multivalent:
            cols[c] = df[c].map(lambda v, sep=s.multivalent_separator: _token_string(v, sep))
        for c in s.dense:
            raw = _numeric_input(df[c])
            num = pd.to_numeric(raw, errors="coerce")
            bad = (num.isna() & raw.notna() & (raw.astype(str) != "")).to_numpy()
            if bad.any():
                k = int(np.argmax(bad))
                raise DataFormatError(
                    f"{f} {_line(lines, k)}: dense column {c!r} must be numeric; got {_show(df[c].iloc[k])}"
                )
            vals = num.to_numpy(dtype=np.float64)
            if np.isinf(vals).any():
                k = int(np.argmax(np.isinf(vals)))
                raise DataFormatError(f"{f} {_line(lines, k)}: dense column {c!r} is infinite")
            cols[c] = vals
        frames.append((s, pd.DataFrame(cols)))
    s0 = frames[0][0]
    for f, (s, _) in zip(files, frames, strict=True):
        if s.columns != s0.columns:
            raise DataFormatError(f"{f}: columns differ from {files[0]} (inferred schemas disagree); pass a schema")
    frame = pd.concat([fr for _, fr in frames], ignore_index=True)
    for c in (*s0.categorical, *s0.multivalent):
        frame[c] = pd.Categorical(frame[c])
    kinds: dict[str, FieldKind] = {
        **{c: "categorical" for c in s0.categorical},
        **{c: "multivalent" for c in s0.multivalent},
        **{c: "dense" for c in s0.dense},
    }
    return Table(
        frame=frame,
        kinds=kinds,
        order=s0.columns,
        source=fmt,
        files=tuple(str(f) for f in files),
        rows_read=len(frame),
        rows_dropped=0,
        separators={c: s0.multivalent_separator for c in s0.multivalent},
    )


# ----------------------------------------------------------------------------------------------------------
# Protocol: table -> split -> spec -> tensors


def load_table(options: DataOptions) -> Table:
    """Parse and validate the data files of ``options`` into a :class:`Table` (fields in ``order``)."""
    if options.source in ("sample", "ml-1m"):
        table = load_ml1m(options.data_dir or SAMPLE_DIR, source=options.source)
    elif options.source == "ml-100k":
        assert options.data_dir is not None  # checked by DataOptions
        table = load_ml100k(options.data_dir, age_encoding=options.age_encoding)
    else:
        assert options.data_dir is not None
        return load_own_table(options.data_dir, options.schema, fmt=options.source)
    table.order = (*options.features, *(("genres",) if options.genres else ()), *options.dense)
    return table


def split_indices(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random 80/10/10 split of ``range(n)``: (train, val, test) index arrays, each sorted.

    Sizes are round(0.8 n), round(0.1 n) and the rest; the permutation is
    ``numpy.random.default_rng(seed).permutation(n)``, stable across NumPy versions.

    >>> [len(a) for a in split_indices(1001, 0)]
    [801, 100, 100]
    """
    if n < MIN_EXAMPLES:
        raise DataFormatError(f"need at least {MIN_EXAMPLES} labelled rows to make a 80/10/10 split; got {n}")
    perm = np.random.default_rng(seed).permutation(n)
    n_train = round(SPLIT_FRACTIONS[0] * n)
    n_val = round(SPLIT_FRACTIONS[1] * n)
    parts = perm[:n_train], perm[n_train : n_train + n_val], perm[n_train + n_val :]
    return tuple(np.sort(p) for p in parts)  # type: ignore[return-value]


def _present_categories(col: pd.Series, rows: np.ndarray) -> list[str]:
    cat = col.cat
    codes = cat.codes.to_numpy()[rows]
    present = np.unique(codes[codes >= 0])
    return [str(v) for v in cat.categories[present]]


def build_spec(table: Table, train: np.ndarray, options: DataOptions) -> FeatureSpec:
    """FeatureSpec of ``table.order`` from the training rows: vocabularies (sorted, numbers numerically),
    multivalent ``max_len``, dense mean/std (population std; 1 when constant), embedding sizes."""
    fields = []
    for name in table.order:
        if name not in table.kinds:
            raise DataFormatError(f"the data has no column {name!r}; available: {sorted(table.kinds)}")
        kind = table.kinds[name]
        col = table.frame[name]
        if kind == "dense":
            v = col.to_numpy(dtype=np.float64)[train]
            v = v[np.isfinite(v)]
            mean = float(v.mean()) if len(v) else 0.0
            std = float(v.std()) if len(v) else 1.0
            fields.append(Field(name=name, kind="dense", embedding_dim=1, mean=mean, std=std if std > 0 else 1.0))
            continue
        present = _present_categories(col, train)
        max_len = 1
        if kind == "multivalent":
            sep = table.separators.get(name, "|")
            tokens: set[str] = set()
            for combo in present:
                parts = [t for t in combo.split(sep) if t]
                tokens.update(parts)
                max_len = max(max_len, len(parts))
            present = list(tokens)
        vocab = tuple(_natural_sorted(present))
        e = options.embedding_dim
        dim = rule_of_thumb_dim(len(vocab) + 1) if e == "auto" else int(e)
        fields.append(Field(name=name, kind=kind, embedding_dim=dim, vocab=vocab, max_len=max_len))
    return FeatureSpec(tuple(fields))


def encode_frame(frame: pd.DataFrame, spec: FeatureSpec, *, separators: dict[str, str] | None = None) -> Encoded:
    """Encode a Table's ``frame`` with ``spec``'s vocabularies: CPU tensors in :mod:`dcnviz.encoded` layout.

    Unknown categorical values get index 0 (out of vocabulary); multivalent cells become up to
    ``max_len`` ids (unknown tokens 0, extra tokens dropped) padded with -1; dense values are
    normalised with the spec's mean/std, missing ones set to the mean (0 after normalising).
    """
    separators = separators or {}
    missing = [f.name for f in spec.fields if f.name not in frame.columns]
    if missing:
        raise DataFormatError(f"the model's features {missing} are not in the data (it has {list(frame.columns)})")
    n = len(frame)
    cats, multis, denses = [], [], []
    for f in spec.fields:
        col = frame[f.name]
        if f.kind == "dense":
            v = col.to_numpy(dtype=np.float64)
            v = np.where(np.isfinite(v), (v - f.mean) / f.std, 0.0)
            denses.append(torch.from_numpy(v.astype(np.float32)))
            continue
        if not isinstance(col.dtype, pd.CategoricalDtype):
            col = col.astype("category")
        categories = [str(c) for c in col.cat.categories]
        codes = col.cat.codes.to_numpy()
        if f.kind == "categorical":
            lookup = {v: i + 1 for i, v in enumerate(f.vocab)}
            per_cat = np.array([lookup.get(c, 0) for c in categories] + [0], dtype=np.int64)  # [-1] -> 0
            cats.append(torch.from_numpy(per_cat[codes]))
        else:
            sep = separators.get(f.name, "|")
            lookup = {v: i + 1 for i, v in enumerate(f.vocab)}
            table = np.full((len(categories) + 1, f.max_len), -1, dtype=np.int64)  # last row: missing cell
            for i, combo in enumerate(categories):
                ids = [lookup.get(t, 0) for t in combo.split(sep) if t][: f.max_len]
                table[i, : len(ids)] = ids
            multis.append(torch.from_numpy(table[codes]))
    cat_t = torch.stack(cats, dim=1) if cats else torch.zeros((n, 0), dtype=torch.int64)  # (N, n_cat)
    dense_t = torch.stack(denses, dim=1) if denses else torch.zeros((n, 0), dtype=torch.float32)  # (N, n_dense)
    y = torch.from_numpy(frame[LABEL].to_numpy(dtype=np.float32)) if LABEL in frame.columns else torch.zeros(n)
    return Encoded(cat=cat_t.contiguous(), dense=dense_t.contiguous(), y=y, multi=tuple(multis))


def load_splits(options: DataOptions, *, spec: FeatureSpec | None = None) -> DatasetSplits:
    """Load, split 80/10/10 with ``options.seed`` and encode (paper §7.1.1 for MovieLens).

    Without ``spec`` the FeatureSpec is built from the training split (vocabularies, dense stats);
    with ``spec`` (a trained model's) the data is encoded with its vocabularies and dims instead.
    ``info`` records source, seed, row counts and label balance. Tensors stay on the CPU.
    """
    t0 = time.perf_counter()
    table = load_table(options)
    n = len(table.frame)
    if n < MIN_EXAMPLES:
        dropped = f" ({table.rows_dropped} rating-3 rows dropped)" if table.rows_dropped else ""
        raise DataFormatError(
            f"{table.files[0]}: {n} labelled rows{dropped}; need at least {MIN_EXAMPLES} for a 80/10/10 split"
        )
    train, val, test = split_indices(n, options.seed)
    if spec is None:
        spec = build_spec(table, train, options)
    full = encode_frame(table.frame, spec, separators=table.separators)
    parts = {name: full.index(torch.from_numpy(idx)) for name, idx in (("train", train), ("val", val), ("test", test))}
    info: dict[str, Any] = {
        "source": options.source,
        "seed": options.seed,
        "options": options.to_json(),
        "files": list(table.files),
        "rows_read": table.rows_read,
        "rows_dropped": table.rows_dropped,
        "examples": n,
        "rows": {k: len(v) for k, v in parts.items()},
        "positive_rate": {k: float(v.y.mean()) if len(v) else math.nan for k, v in parts.items()},
        "oov_rate_test": {
            f.name: float((parts["test"].cat[:, j] == 0).float().mean())
            for j, f in enumerate(spec.by_kind("categorical"))
        },
        "protocol": (
            "rating 3 dropped, 1-2 -> 0, 4-5 -> 1; random 80/10/10 split; vocabularies from train (0 = OOV)"
            if options.source not in ("csv", "parquet")
            else "random 80/10/10 split; vocabularies from train (0 = OOV)"
        ),
        "load_s": round(time.perf_counter() - t0, 3),
    }
    return DatasetSplits(spec=spec, train=parts["train"], val=parts["val"], test=parts["test"], info=info)
