"""MovieLens download: served from a local http.server on 127.0.0.1 (no test touches the network)."""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import io
import json
import socket
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from dcnviz import download as dl
from dcnviz.cli import main
from dcnviz.data import DataOptions, load_splits
from dcnviz.errors import DownloadError
from tests.helpers import TEST_FIXTURES

FIXTURE = TEST_FIXTURES / "data" / "ml-100k-tiny"
ROWS = {"u.data": 24, "u.user": 5, "u.item": 5}


def make_zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def good_members() -> dict[str, bytes]:
    m = {f"ml-100k/{f}": (FIXTURE / f).read_bytes() for f in ROWS}
    m["ml-100k/README"] = b"synthetic test archive\n"
    return m


class Server:
    """Serves ``routes[path] = bytes`` on 127.0.0.1; counts requests."""

    def __init__(self) -> None:
        self.routes: dict[str, bytes] = {}
        self.hits = 0
        self.truncate = False
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.hits += 1
                body = outer.routes.get(self.path)
                if body is None:
                    self.send_error(404, "Not Found")
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/zip")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2] if outer.truncate else body)

            def log_message(self, *a: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[Server]:
    s = Server()
    yield s
    s.close()


@pytest.fixture(autouse=True)
def small_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    """Expect the synthetic archive's row counts instead of the real ML-100K's."""
    info = dataclasses.replace(dl.DATASETS["ml-100k"], rows=dict(ROWS))
    monkeypatch.setitem(dl.DATASETS, "ml-100k", info)
    for key in ("DCNVIZ_ML_100K_URL", "DCNVIZ_ML_100K_MD5"):
        monkeypatch.delenv(key, raising=False)


def leftovers(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir() if p.name.startswith("."))


def test_official_urls_and_checksums() -> None:
    assert dl.DATASETS["ml-1m"].url == "https://files.grouplens.org/datasets/movielens/ml-1m.zip"
    assert dl.DATASETS["ml-1m"].md5 == "c4d9eecfca2ab87c1945afe126590906"
    assert dl.DATASETS["ml-1m"].rows == {"ratings.dat": 1_000_209, "users.dat": 6_040, "movies.dat": 3_883}


def test_download_verifies_extracts_and_reports_progress(server: Server, tmp_path: Path) -> None:
    body = make_zip(good_members())
    server.routes["/ml-100k.zip"] = body
    calls: list[tuple[int, int | None]] = []
    folder = dl.download_dataset(
        "ml-100k",
        tmp_path,
        url=server.url("/ml-100k.zip"),
        md5=hashlib.md5(body).hexdigest(),
        progress=lambda done, total: calls.append((done, total)),
        chunk_size=256,
    )
    assert folder == tmp_path / "ml-100k"
    for f in ROWS:
        assert (folder / f).read_bytes() == (FIXTURE / f).read_bytes()
    assert calls[0] == (0, len(body)) and calls[-1] == (len(body), len(body))
    assert [c[0] for c in calls] == sorted(c[0] for c in calls) and len(calls) > 3
    assert leftovers(tmp_path) == []  # no temp zip / extract folder left behind
    # the result loads with the data loader
    s = load_splits(DataOptions(source="ml-100k", data_dir=str(folder)))
    assert s.info["examples"] == 19
    # a complete copy is kept: no second request
    hits = server.hits
    assert dl.download_dataset("ml-100k", tmp_path, url=server.url("/ml-100k.zip"), md5="0" * 32) == folder
    assert server.hits == hits


def test_checksum_mismatch_removes_download(server: Server, tmp_path: Path) -> None:
    server.routes["/ml-100k.zip"] = make_zip(good_members())
    with pytest.raises(DownloadError, match=r"checksum mismatch .* expected MD5 0{32}, got [0-9a-f]{32}; the corrupt"):
        dl.download_dataset("ml-100k", tmp_path, url=server.url("/ml-100k.zip"), md5="0" * 32)
    assert list(tmp_path.iterdir()) == []  # neither the zip nor a partial folder


def test_env_overrides_url_and_md5(server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    body = make_zip(good_members())
    server.routes["/mirror.zip"] = body
    monkeypatch.setenv("DCNVIZ_ML_100K_URL", server.url("/mirror.zip"))
    monkeypatch.setenv("DCNVIZ_ML_100K_MD5", hashlib.md5(body).hexdigest().upper())
    assert (dl.download_dataset("ml-100k", tmp_path) / "u.data").is_file()


def test_offline_gives_clear_error(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DownloadError, match=r"could not download http://127\.0\.0\.1:\d+/x\.zip: .*Are you offline\?"):
        dl.download_dataset("ml-100k", tmp_path, url=f"http://127.0.0.1:{port}/x.zip", md5="0" * 32)
    assert leftovers(tmp_path) == []


def test_http_error(server: Server, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match=r"the server answered 404 Not Found for http://127\.0\.0\.1"):
        dl.download_dataset("ml-100k", tmp_path, url=server.url("/missing.zip"), md5="0" * 32)
    assert list(tmp_path.iterdir()) == []


def test_truncated_download(server: Server, tmp_path: Path) -> None:
    body = make_zip(good_members())
    server.routes["/ml-100k.zip"] = body
    server.truncate = True
    with pytest.raises(DownloadError, match=r"ended after|connection broke"):
        dl.download_dataset("ml-100k", tmp_path, url=server.url("/ml-100k.zip"), md5=hashlib.md5(body).hexdigest())
    assert list(tmp_path.iterdir()) == []


def _serve(server: Server, members: dict[str, bytes]) -> tuple[str, str]:
    body = make_zip(members)
    server.routes["/a.zip"] = body
    return server.url("/a.zip"), hashlib.md5(body).hexdigest()


def test_archive_missing_file(server: Server, tmp_path: Path) -> None:
    members = good_members()
    del members["ml-100k/u.item"]
    url, md5 = _serve(server, members)
    with pytest.raises(DownloadError, match=r"the archive lacks ml-100k/u\.item"):
        dl.download_dataset("ml-100k", tmp_path, url=url, md5=md5)
    assert list(tmp_path.iterdir()) == []


def test_archive_wrong_row_count(server: Server, tmp_path: Path) -> None:
    members = good_members()
    members["ml-100k/u.data"] = members["ml-100k/u.data"] + b"1\t1\t5\t881250999\n"
    url, md5 = _serve(server, members)
    with pytest.raises(DownloadError, match=r"u\.data has 25 rows; expected 24"):
        dl.download_dataset("ml-100k", tmp_path, url=url, md5=md5)
    assert list(tmp_path.iterdir()) == []


def test_archive_unsafe_member(server: Server, tmp_path: Path) -> None:
    members = good_members()
    members["../evil.txt"] = b"x"
    url, md5 = _serve(server, members)
    with pytest.raises(DownloadError, match=r"unsafe member path '\.\./evil\.txt'"):
        dl.download_dataset("ml-100k", tmp_path / "d", url=url, md5=md5)
    assert not (tmp_path / "evil.txt").exists()


def test_not_a_zip(server: Server, tmp_path: Path) -> None:
    server.routes["/a.zip"] = b"<html>a captive portal</html>"
    with pytest.raises(DownloadError, match=r"not a zip archive"):
        dl.download_dataset(
            "ml-100k", tmp_path, url=server.url("/a.zip"), md5=hashlib.md5(b"<html>a captive portal</html>").hexdigest()
        )


def test_incomplete_existing_folder_needs_force(server: Server, tmp_path: Path) -> None:
    (tmp_path / "ml-100k").mkdir()
    (tmp_path / "ml-100k" / "u.data").write_text("1\t1\t5\t1\n")
    url, md5 = _serve(server, good_members())
    with pytest.raises(DownloadError, match=r"exists but is not a complete copy .* use --force"):
        dl.download_dataset("ml-100k", tmp_path, url=url, md5=md5)
    folder = dl.download_dataset("ml-100k", tmp_path, url=url, md5=md5, force=True)
    assert dl.check_folder(folder, dl.DATASETS["ml-100k"]) == ROWS
    assert leftovers(tmp_path) == []


def test_unknown_dataset_and_bad_url(tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match=r"unknown data set 'ml-20m'"):
        dl.download_dataset("ml-20m", tmp_path)
    with pytest.raises(DownloadError, match=r"download URL must be http\(s\); got 'file:///etc/passwd'"):
        dl.download_dataset("ml-100k", tmp_path, url="file:///etc/passwd")


def test_cli_download(server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url, md5 = _serve(server, good_members())
    rc = main(["download", "ml-100k", "--dir", str(tmp_path), "--url", url, "--md5", md5])
    out, err = capsys.readouterr()
    assert rc == 0
    result = json.loads(out.strip().splitlines()[-1])
    assert result["dataset"] == "ml-100k" and result["rows"] == ROWS
    assert Path(result["path"]) == tmp_path / "ml-100k"
    assert "may not be redistributed" in err and "100.0%" in err
    # a failure is a clean error, exit status 2
    rc = main(["download", "ml-100k", "--dir", str(tmp_path / "x"), "--url", url, "--md5", "1" * 32])
    assert rc == 2 and "error: ml-100k: checksum mismatch" in capsys.readouterr().err


def test_download_corrupted_in_transit_fails_the_checksum_and_is_removed(tmp_path):
    from dcnviz import download as dl

    good = make_zip(good_members())
    bad = bytearray(good)
    bad[len(bad) // 3] ^= 0x01  # one bit flipped somewhere in the compressed data
    server = Server()
    try:
        server.routes["/ml-100k.zip"] = bytes(bad)
        md5 = hashlib.md5(good, usedforsecurity=False).hexdigest()
        with pytest.raises(DownloadError, match=rf"checksum mismatch .* expected MD5 {md5}, got [0-9a-f]{{32}}"):
            dl.download_dataset("ml-100k", tmp_path, url=server.url("/ml-100k.zip"), md5=md5)
    finally:
        server.close()
    assert list(tmp_path.iterdir()) == [], "neither the corrupt zip nor a partial folder is left"
