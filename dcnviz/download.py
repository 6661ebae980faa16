"""Download the official MovieLens archives from GroupLens, verified and written atomically.

``download_dataset("ml-1m", "data")`` fetches ``ml-1m.zip``, checks its MD5, checks that the archive
holds the expected files with the expected row counts, extracts it next to the destination and only
then renames it into place as ``data/ml-1m/``. A failed or interrupted download leaves no partial
folder and no corrupt archive behind (temporary files are removed; a checksum mismatch deletes the
download). Offline, it raises :class:`~dcnviz.errors.DownloadError` with a clear message.

The URL and the expected checksum can be overridden per call (``url=``, ``md5=``) or by the
environment (``DCNVIZ_ML_1M_URL`` / ``DCNVIZ_ML_1M_MD5``, ``DCNVIZ_ML_100K_URL`` /
``DCNVIZ_ML_100K_MD5``), e.g. for a mirror; tests use that to serve a synthetic archive locally.

MovieLens licence: the data sets may be used for research but **may not be redistributed**
(see the README inside each archive); dcnviz never ships them and prints this note when downloading.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from dcnviz.errors import DownloadError

ProgressFn = Callable[[int, int | None], None]  # (bytes so far, total bytes or None when unknown)

LICENCE_NOTE = (
    "MovieLens data sets are provided by GroupLens Research (University of Minnesota) for research use. "
    "They may not be redistributed: do not commit or share the downloaded files. "
    "See the README inside the archive and https://grouplens.org/datasets/movielens/ for the full terms."
)
MAX_UNPACKED_BYTES = 2 * 1024**3  # refuse archives that would unpack to more than this (zip bombs)


@dataclass(frozen=True, kw_only=True)
class DatasetInfo:
    """Where a MovieLens archive lives and what a good copy contains."""

    name: str  # ml-1m | ml-100k
    url: str  # official GroupLens URL
    md5: str  # MD5 of the zip as published by GroupLens
    folder: str  # top-level folder inside the zip (and under the destination)
    rows: dict[str, int] = field(default_factory=dict)  # expected file -> non-blank line count

    def env_key(self, what: str) -> str:
        return f"DCNVIZ_{self.name.upper().replace('-', '_')}_{what}"


DATASETS: dict[str, DatasetInfo] = {
    "ml-1m": DatasetInfo(
        name="ml-1m",
        url="https://files.grouplens.org/datasets/movielens/ml-1m.zip",
        md5="c4d9eecfca2ab87c1945afe126590906",
        folder="ml-1m",
        rows={"ratings.dat": 1_000_209, "users.dat": 6_040, "movies.dat": 3_883},
    ),
    "ml-100k": DatasetInfo(
        name="ml-100k",
        url="https://files.grouplens.org/datasets/movielens/ml-100k.zip",
        md5="0e33842e24a9c977be4e0107933c0723",
        folder="ml-100k",
        rows={"u.data": 100_000, "u.user": 943, "u.item": 1_682},
    ),
}


def dataset_info(name: str) -> DatasetInfo:
    if name not in DATASETS:
        raise DownloadError(f"unknown data set {name!r}; choose one of {sorted(DATASETS)}")
    return DATASETS[name]


def count_rows(path: Path) -> int:
    """Non-blank lines of a file (what the loaders read as records)."""
    n = 0
    with path.open("rb") as f:
        for line in f:
            if line.strip():
                n += 1
    return n


def check_folder(folder: Path, info: DatasetInfo) -> dict[str, int]:
    """Row counts of ``info``'s files in ``folder``; a missing file or a wrong count is an error."""
    counts = {}
    for name, expected in info.rows.items():
        p = folder / name
        if not p.is_file():
            raise DownloadError(f"{info.name}: {p} is missing; expected the files {', '.join(info.rows)}")
        n = count_rows(p)
        if n != expected:
            raise DownloadError(
                f"{info.name}: {p} has {n:,} rows; expected {expected:,} (a damaged or different archive)"
            )
        counts[name] = n
    return counts


def _fetch(url: str, out: Path, *, progress: ProgressFn | None, timeout: float, chunk_size: int) -> str:
    """Stream ``url`` into ``out``; return the MD5 hex digest of what was written."""
    md5 = hashlib.md5(usedforsecurity=False)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp, out.open("wb") as f:
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            done = 0
            if progress is not None:
                progress(0, total)
            while True:
                chunk = resp.read(chunk_size)
                if not chunk:
                    break
                f.write(chunk)
                md5.update(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(done, total)
            if total is not None and done != total:
                raise DownloadError(f"download of {url} ended after {done:,} of {total:,} bytes")
    except urllib.error.HTTPError as e:
        raise DownloadError(f"the server answered {e.code} {e.reason} for {url}") from None
    except urllib.error.URLError as e:
        raise DownloadError(
            f"could not download {url}: {e.reason}. Are you offline? Check the connection, or download the "
            "archive by hand and unzip it into the data folder"
        ) from None
    except TimeoutError as e:
        raise DownloadError(f"could not download {url}: timed out after {timeout:g}s ({e})") from None
    except (http.client.HTTPException, ConnectionError) as e:
        raise DownloadError(f"could not download {url}: the connection broke ({type(e).__name__}: {e})") from None
    return md5.hexdigest()


def _extract(archive: Path, into: Path, info: DatasetInfo) -> Path:
    """Extract the members under ``info.folder/`` into ``into``; return ``into / info.folder``."""
    try:
        zf = zipfile.ZipFile(archive)
    except zipfile.BadZipFile:
        raise DownloadError(f"{info.name}: the download is not a zip archive") from None
    with zf:
        members = zf.infolist()
        total = 0
        for m in members:
            p = PurePosixPath(m.filename)
            if p.is_absolute() or ".." in p.parts or "\\" in m.filename:
                raise DownloadError(f"{info.name}: the archive has an unsafe member path {m.filename!r}")
            total += m.file_size
        if total > MAX_UNPACKED_BYTES:
            raise DownloadError(f"{info.name}: the archive would unpack to {total:,} bytes; refusing")
        names = {m.filename for m in members}
        missing = [f for f in info.rows if f"{info.folder}/{f}" not in names]
        if missing:
            raise DownloadError(f"{info.name}: the archive lacks {', '.join(f'{info.folder}/{f}' for f in missing)}")
        prefix = f"{info.folder}/"
        for m in members:
            if not m.filename.startswith(prefix) or m.is_dir():
                continue
            target = into / m.filename
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                with zf.open(m) as src, target.open("wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
            except (zipfile.BadZipFile, OSError, EOFError) as e:  # CRC errors and truncated members
                raise DownloadError(f"{info.name}: could not extract {m.filename}: {e}") from None
    return into / info.folder


def download_dataset(
    name: str,
    dest_dir: str | os.PathLike[str],
    *,
    progress: ProgressFn | None = None,
    url: str | None = None,
    md5: str | None = None,
    force: bool = False,
    timeout: float = 60.0,
    chunk_size: int = 1 << 16,
) -> Path:
    """Download, verify and unpack MovieLens ``name`` ("ml-1m" | "ml-100k") into ``dest_dir/<name>/``.

    Args:
        name: the data set.
        dest_dir: parent folder; the data ends in ``dest_dir / name`` (pass that to ``--data-dir``).
        progress: called as ``progress(bytes_done, total_bytes_or_None)`` while downloading.
        url, md5: override the official URL / checksum (else ``DCNVIZ_<NAME>_URL`` / ``_MD5``, else official).
        force: replace an existing folder; without it a complete existing copy is kept and returned.
        timeout: seconds of socket inactivity before giving up.

    Returns the folder holding the files. Raises :class:`DownloadError` on any failure, leaving
    ``dest_dir`` as it was (apart from creating it).
    """
    info = dataset_info(name)
    url = url or os.environ.get(info.env_key("URL")) or info.url
    expected_md5 = (md5 or os.environ.get(info.env_key("MD5")) or info.md5).strip().lower()
    if not url.startswith(("https://", "http://")):
        raise DownloadError(f"download URL must be http(s); got {url!r}")
    dest = Path(dest_dir).expanduser()
    final = dest / info.folder
    if final.exists() and not force:
        try:
            check_folder(final, info)
        except DownloadError as e:
            raise DownloadError(f"{final} exists but is not a complete copy ({e}); remove it or use --force") from None
        return final
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DownloadError(f"cannot create {dest}: {e}") from None

    fd, tmp_zip_name = tempfile.mkstemp(prefix=f".{info.name}.", suffix=".zip.part", dir=dest)
    os.close(fd)
    tmp_zip = Path(tmp_zip_name)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{info.name}.", suffix=".extract", dir=dest))
    try:
        got = _fetch(url, tmp_zip, progress=progress, timeout=timeout, chunk_size=chunk_size)
        if got != expected_md5:
            raise DownloadError(
                f"{info.name}: checksum mismatch for {url}: expected MD5 {expected_md5}, got {got}; "
                "the corrupt download was removed"
            )
        unpacked = _extract(tmp_zip, tmp_dir, info)
        check_folder(unpacked, info)
        unpacked.chmod(0o755)  # temp folders are private (0700); the data is not
        for p in unpacked.rglob("*"):
            p.chmod(0o755 if p.is_dir() else 0o644)
        if final.exists():  # force: move the old copy aside, then drop it once the new one is in place
            old = tmp_dir / ".old"
            os.replace(final, old)
        os.replace(unpacked, final)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp_zip.unlink()
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return final
