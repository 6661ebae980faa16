"""Hostile inputs in the app (issues 7 and 11): uploads, concurrent sessions, malformed training data.

tests/app/test_pages.py already shows random bytes, a truncated file and two pickle payloads giving an
error after which the app keeps working, a NaN upload giving a warning, and one session's upload
not showing in another. Here:

* every other kind of adversarial model file (lying safetensors header, overlapping ranges, bad
  dtype, metadata that is not JSON / not UTF-8, unknown format version, metadata that used to hang
  the loader) shows its *specific* message, and afterwards a shipped model still draws its heatmap;
* each hostile input of issue 11 (``tests/helpers/hostile.py``) gets the app's own message (no
  exception box), a hostile names upload and file name are shown escaped, and gate weighting runs
  only on data of this server;
* a file over the upload limit is refused with the limit in the message;
* NaN/Inf weights (a dcnviz file and a peer file) load with a warning, and every analysis page
  still renders for them;
* two sessions training at the same time keep their runs and models apart, and a third session
  inspecting meanwhile sees neither;
* nothing a user uploads is written to disk: ``models/`` is unchanged, and no new file anywhere
  in the repository or the temp folder holds the upload's bytes;
* a training run on malformed data fails with the file and line and registers no model.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import struct
import tempfile
import time
from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest

import dcnviz.data
from dcnviz.app import state
from dcnviz.checkpoint import MAX_HEADER_BYTES, load_model, model_to_bytes
from dcnviz.sample import SampleConfig, make_sample, write_sample
from tests.helpers import PEERS, ROOT
from tests.helpers import hostile as H
from tests.helpers.app import APP, NAMES, PAGES, goto, ok, planted_full_model, start, write_demo_models


@pytest.mark.skipif(not (dcnviz.data.SAMPLE_DIR / "ratings.dat").is_file(), reason="sample_data/ not generated")
def test_app_training_on_malformed_data_fails_with_the_file_and_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sample = Path(shutil.copytree(dcnviz.data.SAMPLE_DIR, tmp_path / "sample"))
    ratings = sample / "ratings.dat"
    lines = ratings.read_text(encoding="latin-1").splitlines()
    lines[41] = "1::2::five::978300000"
    ratings.write_text("\n".join(lines) + "\n", encoding="latin-1")
    write_demo_models(tmp_path / "models")
    monkeypatch.setenv("DCNVIZ_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.setattr(dcnviz.data, "SAMPLE_DIR", sample)
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    at.switch_page(f"{PAGES}/train.py").run()
    at.number_input(key="tr_epochs").set_value(1)
    at.run()
    at.button(key="tr_start").click().run()
    job = at.session_state["train_job"]
    deadline = time.monotonic() + 120
    while not job.snapshot().finished:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    for _ in range(2):
        at.run()
    snap = job.snapshot()
    assert snap.status == "failed" and snap.model_bytes is None
    expected = f"Training failed: {ratings} line 42: Rating must be an integer; got 'five'"
    assert [e.value for e in at.error] == [expected]
    assert not at.exception
    registry = dict(at.session_state["dcnviz_models"]) if "dcnviz_models" in at.session_state else {}
    assert registry == {}, "no model was registered"


@pytest.fixture(scope="module")
def sample_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("sample")
    write_sample(make_sample(SampleConfig(n_users=120, n_movies=50, n_ratings=2500, min_ratings=20)), d)
    return d


def upload(at: AppTest, name: str, data: bytes) -> AppTest:
    at = goto(at, "model")
    at.file_uploader(key="up_file").upload(name, data)
    return at.run()


def registry(at: AppTest) -> dict:
    """The session's uploaded and trained models ({key: ModelEntry})."""
    return dict(at.session_state[state.REGISTRY]) if state.REGISTRY in at.session_state else {}


def heatmap_x(at: AppTest) -> list[str]:
    return json.loads(at.get("plotly_chart")[0].proto.spec)["data"][0]["x"]


def shipped_heatmap_still_works(at: AppTest) -> None:
    at.sidebar.selectbox(key="model_key").set_value("shipped:a_dcnv2_planted.safetensors")
    goto(at, "crosses")
    ok(at)
    assert heatmap_x(at) == NAMES


def _split(data: bytes) -> tuple[dict, bytes]:
    (n,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8 : 8 + n]), data[8 + n :]


def _join(header: dict | bytes, body: bytes) -> bytes:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    raw += b" " * ((8 - len(raw) % 8) % 8)
    return struct.pack("<Q", len(raw)) + raw + body


def _hostile(kind: str) -> tuple[bytes, str]:
    """(file bytes, a piece of the message the page must show)."""
    data = model_to_bytes(planted_full_model())
    header, body = _split(data)
    w0 = "model.cross.layers.0.linear.weight"
    if kind == "huge header length":
        return struct.pack("<Q", 2**62) + data[8:], f"more than the {MAX_HEADER_BYTES}-byte limit"
    if kind == "huge tensor shape":
        header[w0]["shape"] = [2**10, 2**20]
        return _join(header, body), f"tensor '{w0}': shape [1024, 1048576] of F32 needs"
    if kind == "overlapping ranges":
        b1 = "model.cross.layers.1.linear.bias"
        header[b1]["data_offsets"] = list(header["model.cross.layers.0.linear.bias"]["data_offsets"])
        return _join(header, body), "have overlapping byte ranges"
    if kind == "unsupported dtype":
        header[w0]["dtype"] = "C64"
        return _join(header, body), f"tensor '{w0}': unsupported dtype 'C64'"
    if kind == "integer weights":
        header[w0]["dtype"] = "I32"
        return _join(header, body), "weights must be floating point"
    if kind == "metadata not JSON":
        header["__metadata__"]["meta"] = "{not json"
        return _join(header, body), "model metadata is not valid JSON"
    if kind == "header not UTF-8":
        raw = json.dumps(header).encode()
        i = raw.index(b"dcnviz")
        return _join(raw[:i] + b"\xff" + raw[i + 1 :], body), "safetensors header is not UTF-8"
    if kind == "unknown format version":
        header["__metadata__"]["format_version"] = "7"
        return _join(header, body), "unknown dcnviz format version '7'; this dcnviz reads version 1"
    if kind == "metadata implying 10**7 layers":
        meta = json.loads(header["__metadata__"]["meta"])
        meta["model_config"]["cross_layers"] = 10**7
        header["__metadata__"]["meta"] = json.dumps(meta)
        return _join(header, body), "model config has cross_layers=10000000, but the file holds only"
    if kind == "shapes unlike the metadata":
        meta = json.loads(header["__metadata__"]["meta"])
        meta["model_config"]["hidden"] = [9]
        header["__metadata__"]["meta"] = json.dumps(meta)
        return _join(header, body), "has shape [8, 16], but the metadata implies [9, 16]"
    raise ValueError(kind)


KINDS = [
    "huge header length",
    "huge tensor shape",
    "overlapping ranges",
    "unsupported dtype",
    "integer weights",
    "metadata not JSON",
    "header not UTF-8",
    "unknown format version",
    "metadata implying 10**7 layers",
    "shapes unlike the metadata",
]


@pytest.mark.parametrize("kind", KINDS)
def test_each_adversarial_file_gets_its_own_message_and_the_app_keeps_working(env: Path, kind: str) -> None:
    data, message = _hostile(kind)
    t0 = time.perf_counter()
    at = upload(start(), "hostile.safetensors", data)
    assert not at.exception, [e.message for e in at.exception]
    assert len(at.error) == 1, [e.value for e in at.error]
    text = at.error[0].value
    assert text.startswith("Could not read **hostile.safetensors**: ") and message in text, text
    assert "Traceback" not in text
    assert time.perf_counter() - t0 < 60
    assert at.sidebar.selectbox(key="model_key").value.startswith("shipped:"), "the bad file was not registered"
    assert not registry(at), "nothing was added to the session's models"
    shipped_heatmap_still_works(at)


def test_a_file_over_the_upload_limit_is_refused_with_the_limit(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(state, "upload_limit_mb", lambda: 1)
    data = model_to_bytes(planted_full_model()) + b" " * (1 << 20)  # a valid file padded past 1 MB
    at = upload(start(), "big.safetensors", data)
    assert any("Files up to **1 MB**" in m.value for m in at.markdown), "the page states the limit"
    assert at.error and f"big.safetensors is {len(data):,} bytes, over the 1,048,576-byte limit" in at.error[0].value
    shipped_heatmap_still_works(at)


def test_inf_weights_in_a_dcnviz_file_warn_and_every_page_still_renders(env: Path) -> None:
    model = planted_full_model()
    with torch.no_grad():
        model.cross.layers[0].linear.weight[1, 2] = float("inf")  # type: ignore[union-attr,index]
    at = upload(start(), "inf.safetensors", model_to_bytes(model))
    ok(at)
    expected = "1 tensor(s) hold NaN or Inf values, e.g. 'model.cross.layers.0.linear.weight'"
    assert any(expected in w.value for w in at.warning), [w.value for w in at.warning]
    for page in ("crosses", "spectrum", "compare", "report", "tour"):
        goto(at, page)
        assert not at.exception, (page, [e.message for e in at.exception])
        # the broken layer is named, not analysed; nothing crashes
        assert [e.value for e in at.error] in (
            [],
            ["layer 0 holds NaN or Inf values; its singular values are undefined"],
        )
    goto(at, "crosses")  # the warning is read on the Model page; the other pages point there in one line
    assert not at.warning and any("NaN or Inf" in c.value and "**Model**" in c.value for c in at.caption)
    at.selectbox(key="cx_layer").set_value(1).run()  # the finite layer still draws its heatmap
    ok(at)
    assert heatmap_x(at) == NAMES


def test_nan_weights_in_a_peer_file_warn_and_the_heatmap_renders(env: Path) -> None:
    sd = torch.load(PEERS / "deepctr_dcn_matrix.pt", weights_only=True)
    sd["crossnet.kernels"][1, 0, 0] = float("nan")
    buf = io.BytesIO()
    torch.save(sd, buf)
    at = upload(start(), "nan-deepctr.pt", buf.getvalue())
    ok(at)
    assert any("cross layer(s) [1] hold NaN or Inf values" in w.value for w in at.warning)
    for page in ("crosses", "spectrum"):
        goto(at, page)
        assert not at.exception, (page, [e.message for e in at.exception])


def _start_training(at: AppTest, hidden: str, emb: int) -> AppTest:
    at = goto(at, "train")
    at.number_input(key="tr_epochs").set_value(1)
    at.number_input(key="tr_emb").set_value(emb)
    at.text_input(key="tr_hidden").set_value(hidden)
    at.run()
    at.button(key="tr_start").click().run()
    ok(at)
    return at


def test_two_sessions_training_at_once_keep_their_models_apart(env: Path) -> None:
    a = _start_training(start(), hidden="12", emb=2)
    b = _start_training(start(), hidden="20", emb=3)
    viewer = start()  # a third session inspects a shipped model meanwhile
    job_a, job_b = a.session_state["train_job"], b.session_state["train_job"]
    assert job_a is not job_b and job_a.id != job_b.id
    goto(viewer, "crosses")
    ok(viewer)
    assert heatmap_x(viewer) == NAMES
    deadline = time.monotonic() + 240
    while not (job_a.snapshot().finished and job_b.snapshot().finished):
        assert time.monotonic() < deadline, "training runs did not finish"
        time.sleep(0.3)
    for _ in range(2):  # the first run after the end sees the finished job, the next one shows its model
        a.run()
        b.run()
        viewer.run()
    ok(a)
    ok(b)
    snap_a, snap_b = job_a.snapshot(), job_b.snapshot()
    assert snap_a.status == snap_b.status == "done", (snap_a.error, snap_b.error)
    model_a, model_b = load_model(snap_a.model_bytes).model, load_model(snap_b.model_bytes).model
    # each run trained the architecture its own session asked for (no crossed wires between threads)
    assert model_a.config.hidden == (12,) and model_a.spec.fields[0].embedding_dim == 2
    assert model_b.config.hidden == (20,) and model_b.spec.fields[0].embedding_dim == 3
    trained_a, trained_b = list(registry(a)), list(registry(b))
    assert trained_a == [f"trained:{job_a.id[:12]}"] and trained_b == [f"trained:{job_b.id[:12]}"]
    assert registry(a)[trained_a[0]].data == snap_a.model_bytes and registry(b)[trained_b[0]].data == snap_b.model_bytes
    assert registry(viewer) == {}
    for at, n in ((a, 1), (b, 1), (viewer, 0)):  # what each sidebar offers
        assert sum(o.endswith(" · trained") for o in at.sidebar.selectbox(key="model_key").options) == n
    # each session shows its own model on the Model page
    assert a.sidebar.selectbox(key="model_key").value == trained_a[0]
    assert b.sidebar.selectbox(key="model_key").value == trained_b[0]


def test_an_upload_in_one_session_does_not_change_what_another_shows(env: Path) -> None:
    a, b = start(), start()
    goto(b, "crosses")
    before = heatmap_x(b)
    peer = (PEERS / "deepctr_dcn_matrix.pt").read_bytes()
    a = upload(a, "peer.pt", peer)
    ok(a)
    assert a.sidebar.selectbox(key="model_key").value.startswith("upload:") and len(registry(a)) == 1
    b.run()
    ok(b)
    assert registry(b) == {}
    assert b.sidebar.selectbox(key="model_key").value.startswith("shipped:")
    assert heatmap_x(b) == before == NAMES


def _snapshot(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def _files_holding(marker: bytes, roots: list[Path], since: float) -> list[str]:
    """Files under ``roots`` modified since ``since`` whose bytes contain ``marker``."""
    hits = []
    skip = {".git", ".venv", "node_modules", "__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache"}
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if d not in skip]
            for name in filenames:
                p = Path(dirpath) / name
                try:
                    if p.stat().st_mtime >= since and p.stat().st_size < 64 << 20 and marker in p.read_bytes():
                        hits.append(str(p))
                except OSError:
                    continue
    return hits


def test_uploads_are_never_written_to_disk(env: Path, tmp_path: Path) -> None:
    marker = hashlib.sha256(str(time.time_ns()).encode()).hexdigest()  # unique bytes inside every upload
    since = time.time() - 1
    probe = tmp_path / "probe.bin"  # the scanner itself finds a file holding the marker
    probe.write_bytes(b"x" + marker.encode() + b"y")
    assert _files_holding(marker.encode(), [Path(tempfile.gettempdir())], since) == [str(probe)]
    probe.unlink()
    models_before = _snapshot(env)
    real_models = ROOT / "models"
    real_before = _snapshot(real_models) if real_models.is_dir() else {}
    model = planted_full_model(seed=3)
    good = model_to_bytes(model, extra={"marker": marker})
    sd = torch.load(PEERS / "deepctr_dcn_matrix.pt", weights_only=True)
    buf = io.BytesIO()
    torch.save({**sd, f"junk_{marker}": torch.zeros(1)}, buf)
    at = start()
    for name, data in [("good.safetensors", good), ("peer.pt", buf.getvalue()), ("bad.safetensors", good[:-7])]:
        at = upload(at, name, data)
        assert not at.exception
    for page in ("crosses", "spectrum", "report", "compare"):
        goto(at, page)
    assert _snapshot(env) == models_before, "the shipped-models folder is unchanged"
    if real_models.is_dir():
        assert _snapshot(real_models) == real_before, "the repository's models/ is unchanged"
    roots = [ROOT, Path(tempfile.gettempdir())]
    assert _files_holding(marker.encode(), roots, since) == [], "an upload's bytes were written to disk"


APP_CASES = [
    "deep-tuple-key-1e6",
    "memo-bomb-2^27",
    "stride-0-view-4096",
    "sparse-tensor",
    "5000-digit-int-metadata",
    "NUL-in-tensor-name",
]


def _shipped_heatmap_works(at) -> None:
    at.sidebar.selectbox(key="model_key").set_value("shipped:a_dcnv2_planted.safetensors")
    goto(at, "crosses")
    ok(at)
    assert json.loads(at.get("plotly_chart")[0].proto.spec)["data"][0]["x"] == NAMES


@pytest.mark.parametrize("name", APP_CASES)
def test_the_app_refuses_each_hostile_upload_with_its_own_message(env: Path, made, name: str) -> None:
    h = H.by_name(name)
    at = goto(start(), "model")
    at.file_uploader(key="up_file").upload("hostile.pt", made[name])
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    assert len(at.error) == 1, [e.value for e in at.error]
    text = at.error[0].value
    assert text.startswith("Could not read **hostile.pt**: ") and re.search(h.expect, text), text
    assert "\x00" not in text and len(text) < 4200
    _shipped_heatmap_works(at)


def test_a_hostile_names_upload_and_file_name_are_shown_escaped(env: Path, made) -> None:
    at = goto(start(), "model")
    at.file_uploader(key="up_file").upload("[x](http://evil)<b>.pt", (PEERS / "deepctr_dcn_matrix.pt").read_bytes())
    at.file_uploader(key="up_names").upload("names.json", made["deep-json-names"])
    at.run()
    assert not at.exception
    text = at.error[0].value
    assert text.startswith(r"Could not read **\[x\]\(http://evil\)\<b\>.pt**: ") and "nested more than 64" in text
    _shipped_heatmap_works(at)


def test_gate_weighting_runs_only_on_data_of_this_server(env: Path, tmp_path, ml100k, monkeypatch) -> None:
    """An uploaded mixture file names a real folder of MovieLens-100K on this machine: the app does not look
    there. It offers the data the operator put under $DCNVIZ_DATA_DIR, and only that."""
    from dcnviz.checkpoint import model_to_bytes
    from dcnviz.data import DataOptions, load_splits
    from dcnviz.model import DCNModel, ModelConfig

    options = DataOptions(source="ml-100k", data_dir=str(ml100k), embedding_dim=2)
    splits = load_splits(options)
    torch.manual_seed(0)
    model = DCNModel(splits.spec, ModelConfig(model="dcn-mix", experts=2, rank=2, hidden=(4,)))
    data = model_to_bytes(model, data_info=splits.info)
    monkeypatch.delenv("DCNVIZ_DATA_DIR", raising=False)
    monkeypatch.setattr("dcnviz.modelfile.REPO_ROOT", tmp_path / "no-project")  # not a checkout: ./data/
    monkeypatch.chdir(tmp_path)  # and there is no data/ folder here either
    at = goto(start(), "model")
    at.file_uploader(key="up_file").upload("mix.safetensors", data)
    goto(at.run(), "crosses")
    at.toggle(key="cx_gates").set_value(True).run()
    ok(at)
    info = " ".join(i.value for i in at.info)
    assert "trained on ml-100k data, which is not on this server" in info, info
    assert str(ml100k) not in info and "gate-weighted" not in json.dumps(at.get("plotly_chart")[0].proto.spec)
    # the operator provides the data: now it is offered and used
    server = tmp_path / "server-data"
    (server / "ml-100k").parent.mkdir()
    (server / "ml-100k").symlink_to(ml100k, target_is_directory=True)
    monkeypatch.setenv("DCNVIZ_DATA_DIR", str(server))
    at.toggle(key="cx_gates").set_value(False).run()
    at.toggle(key="cx_gates").set_value(True).run()
    ok(at)
    assert any("Mean gates E_x[G_k(x_l)] on MovieLens-100K ($DCNVIZ_DATA_DIR/ml-100k)" in c.value for c in at.caption)
    assert "gate-weighted" in json.dumps(at.get("plotly_chart")[0].proto.spec)
