"""Per-session model registry and content-keyed caches of the app.

* **Shipped models** are the ``*.safetensors`` files in ``models/`` (or ``$DCNVIZ_MODELS_DIR``); every
  session sees them, read-only.
* **Session models** (uploaded or trained in this browser session) live in ``st.session_state`` only,
  as their bytes: two people using the app never see each other's. Nothing is written to disk.
* **Caches** are keyed by the file's SHA-256 (plus format, names and layer), never by a model object:
  :func:`bundle_of` (the loaded file) and :func:`layer_analysis` (block norms and spectrum of one
  layer) are cached once per content; callers must treat what they return as read-only. What comes
  from a **shipped** model sits in ``st.cache_resource``, shared by every session. What comes from a
  **session model** sits in that session's ``st.session_state`` (:func:`private_memo`), so it goes
  when the session ends: a server-wide cache would keep each ended session's models and analyses
  (~18 MiB a trained run) until its size limit (issue 16: memory back to its pre-run level).
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import streamlit as st

from dcnviz import isolation
from dcnviz.analysis import DEFAULT_TOLERANCES, LayerAnalysis, ModelAnalysis, analyze_layer, check_tolerances
from dcnviz.app.bundle import ModelBundle, load_bundle, sha256_of
from dcnviz.app.jobs import TrainingJob
from dcnviz.errors import DcnvizError
from dcnviz.gates import mean_gates_on
from dcnviz.modelfile import ServerDataset, not_on_server, server_datasets
from dcnviz.resources import MODELS_DIR

isolation.start()  # the warm fork server that parses uploads (dcnviz.isolation), ready by the first upload

MODELS_ENV = "DCNVIZ_MODELS_DIR"  # overrides the folder of shipped models (tests use it)
REGISTRY = "dcnviz_models"  # session_state: {key: ModelEntry} of uploaded and trained models
CURRENT = "model_key"  # session_state / sidebar selectbox: the key of the model the pages show
PENDING = "dcnviz_select_next"  # session_state: a key to select on the next run (set before the widget exists)
TRAIN_JOB = "train_job"  # session_state: this session's TrainingJob (see dcnviz.app.jobs)
TABLE6_JOB = "table6_job"  # session_state: this session's Table6Job (the Paper lab's Table 6)
PRIVATE_MEMO = "dcnviz_private_memo"  # session_state: {cache name: OrderedDict} of session-model results
COLLECTED = "dcnviz_collected_jobs"  # session_state: keys of the session-made models already registered
TOLERANCES = "dcnviz_tolerances"  # session_state: the tolerances T chosen on Spectrum (Report uses them too)


def models_dir() -> Path:
    """Folder of the shipped demo models: ``$DCNVIZ_MODELS_DIR``, else the repository's ``models/`` (or the
    installed package's copy, :data:`dcnviz.resources.MODELS_DIR`)."""
    env = os.environ.get(MODELS_ENV)
    return Path(env) if env else MODELS_DIR


T = TypeVar("T")


def private_memo(
    name: str, key: tuple[Any, ...], compute: Callable[[], T], *, max_entries: int, spinner: str = ""
) -> T:
    """``compute()`` once per ``key`` in this session (least recently used dropped beyond ``max_entries``).

    The session-model counterpart of ``st.cache_resource``: results live in ``st.session_state`` and end
    with the session. Exceptions are not cached (as with ``st.cache_resource``).
    """
    caches = st.session_state.setdefault(PRIVATE_MEMO, {})
    cache: OrderedDict[tuple[Any, ...], Any] = caches.setdefault(name, OrderedDict())
    if key in cache:
        cache.move_to_end(key)
        return cache[key]  # type: ignore[no-any-return]
    if spinner:
        with st.spinner(spinner):
            value = compute()
    else:
        value = compute()
    cache[key] = value
    while len(cache) > max_entries:
        cache.popitem(last=False)
    return value


def upload_limit_mb() -> int:
    """Streamlit's ``server.maxUploadSize`` (MB), set in ``.streamlit/config.toml``."""
    return int(st.get_option("server.maxUploadSize"))


def upload_limit_bytes() -> int:
    return upload_limit_mb() * 1024 * 1024


@dataclass(frozen=True)
class ModelEntry:
    """One model the session can show: a shipped file, an upload, or a model trained in this session."""

    key: str  # unique in the session, e.g. "shipped:dcnv2_ml100k.safetensors", "upload:3f2a…"
    label: str  # shown in pickers
    origin: str  # shipped | uploaded | trained (Train page) | table6 (the Paper lab's Table 6)
    sha256: str  # of the bytes
    size: int  # bytes
    filename: str  # for messages and downloads
    format: str = "auto"  # importer format (auto-detected unless the user forced one)
    names_json: str = ""  # JSON of user-given feature names ("" for none)
    path: str | None = None  # shipped: the file; its bytes are read (and cached) on demand
    data: bytes | None = None  # uploaded / trained: the bytes, kept in this session only

    @property
    def shared(self) -> bool:
        """A shipped model: the same for every session, so what is computed from it is cached server-wide."""
        return self.origin == "shipped"

    @property
    def names(self) -> list[Any] | None:
        return json.loads(self.names_json) if self.names_json else None


@st.cache_resource(max_entries=64, show_spinner=False)
def _file_bytes(path: str, mtime_ns: int, size: int) -> tuple[bytes, str]:
    """(bytes, sha256) of a shipped file, keyed by path, mtime and size."""
    data = Path(path).read_bytes()
    return data, sha256_of(data)


def shipped_entries() -> list[ModelEntry]:
    """The ``*.safetensors`` files of :func:`models_dir`, sorted by name."""
    folder = models_dir()
    if not folder.is_dir():
        return []
    out = []
    for p in sorted(folder.glob("*.safetensors")):
        st_ = p.stat()
        _, sha = _file_bytes(str(p), st_.st_mtime_ns, st_.st_size)
        out.append(
            ModelEntry(
                key=f"shipped:{p.name}",
                label=p.stem,
                origin="shipped",
                sha256=sha,
                size=st_.st_size,
                filename=p.name,
                path=str(p),
            )
        )
    return out


def session_entries() -> list[ModelEntry]:
    reg: dict[str, ModelEntry] = st.session_state.setdefault(REGISTRY, {})
    return list(reg.values())


def all_entries() -> list[ModelEntry]:
    """Shipped models first, then this session's uploads and trained models (newest last)."""
    return shipped_entries() + session_entries()


def entry_by_key(key: str | None) -> ModelEntry | None:
    for e in all_entries():
        if e.key == key:
            return e
    return None


def add_session_model(entry: ModelEntry, *, select: bool = True) -> None:
    """Register an upload or trained model in this session; optionally show it on the next run."""
    reg: dict[str, ModelEntry] = st.session_state.setdefault(REGISTRY, {})
    reg[entry.key] = entry
    if select:
        st.session_state[PENDING] = entry.key


def apply_pending_selection() -> None:
    """Call before the sidebar picker exists: select a model registered during the previous run."""
    key = st.session_state.pop(PENDING, None)
    if key is not None:
        st.session_state[CURRENT] = key


def session_owner() -> Callable[[], bool] | None:
    """Whether this browser session is still connected, as a callable a background run polls.

    The run pool cancels a run whose owner has said False for a few seconds (tab closed, session
    expired). None where Streamlit's runtime cannot tell (no server: bare mode).
    """
    from streamlit import runtime
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    if ctx is None or not runtime.exists():
        return None
    rt, session_id = runtime.get_instance(), ctx.session_id
    return lambda: rt.is_active_session(session_id)


def _register_made(key: str, label: str, origin: str, filename: str, data: bytes, *, select: bool) -> None:
    """Register a model file made in this session under ``key``, once (later calls with ``key`` do nothing)."""
    done: set[str] = st.session_state.setdefault(COLLECTED, set())
    if key in done:
        return
    done.add(key)
    entry = ModelEntry(
        key=key, label=label, origin=origin, sha256=sha256_of(data), size=len(data), filename=filename, data=data
    )
    add_session_model(entry, select=select)


def collect_finished_training() -> None:
    """Register the model of this session's finished training run (once) and select it.

    Called on every run before the sidebar picker, so a run that ends while the user is on another
    page shows up at the next interaction.
    """
    job: TrainingJob | None = st.session_state.get(TRAIN_JOB)
    if job is None:
        return
    snap = job.snapshot()
    if not snap.finished or snap.model_bytes is None:
        return
    label = job.request.label
    _register_made(f"trained:{job.id[:12]}", label, "trained", f"{label}.safetensors", snap.model_bytes, select=True)


def collect_table6_models() -> None:
    """Register the model files of this session's Table 6 run (each once, as they arrive; none selected).

    Each is the best run (lowest validation log loss) of one of the table's models, so the heatmaps of
    models trained on the same data can be read and compared on the other pages.
    """
    job = st.session_state.get(TABLE6_JOB)
    if job is None:
        return
    for name, data in job.models.items():  # an immutable mapping, replaced as files arrive
        filename = f"{name} · {job.request.label}.safetensors"
        key = f"table6:{job.id[:12]}:{name}"
        _register_made(key, f"{name} #{job.request.number}", "table6", filename, data, select=False)


def entry_bytes(entry: ModelEntry) -> bytes:
    if entry.data is not None:
        return entry.data
    if entry.path is None:
        raise ValueError(f"model entry {entry.key!r} has neither bytes nor a path")
    p = Path(entry.path)
    s = p.stat()
    return _file_bytes(str(p), s.st_mtime_ns, s.st_size)[0]


@st.cache_resource(max_entries=16, show_spinner="Reading the model file…")
def _bundle(
    sha: str, fmt: str, names_json: str, _data: bytes, _filename: str, _max_bytes: int, _trusted: bool
) -> ModelBundle:
    names = json.loads(names_json) if names_json else None
    return load_bundle(
        _data, format=fmt, names=names, filename=_filename, max_bytes=_max_bytes, trusted=_trusted, sha256=sha
    )


def bundle_of(entry: ModelEntry) -> ModelBundle:
    """The loaded model (cached by content hash, format and names). Raises DcnvizError for a bad file.

    Shipped models are ours: read in this process. Uploads go through the isolated worker
    (:mod:`dcnviz.isolation`) for containers whose parsers dcnviz does not own.
    """
    if entry.shared:
        limit = max(upload_limit_bytes(), entry.size)
        return _bundle(entry.sha256, entry.format, entry.names_json, entry_bytes(entry), entry.filename, limit, True)
    return _session_bundle(entry.sha256, entry.format, entry.names_json, entry_bytes(entry), entry.filename)


def _session_bundle(sha: str, fmt: str, names_json: str, data: bytes, filename: str) -> ModelBundle:
    """A session model's file, loaded once per session (:func:`private_memo`) through the isolated worker."""
    names = json.loads(names_json) if names_json else None
    limit = upload_limit_bytes()

    def load() -> ModelBundle:
        return load_bundle(data, format=fmt, names=names, filename=filename, max_bytes=limit, trusted=False, sha256=sha)

    return private_memo("bundle", (sha, fmt, names_json), load, max_entries=16, spinner="Reading the model file…")


def load_upload(data: bytes, *, filename: str, format: str, names: list[Any] | dict[str, Any] | None) -> ModelBundle:
    """Load an upload through the session's cache (so the pages reuse the result). Raises DcnvizError."""
    names_json = json.dumps(names) if names else ""
    return _session_bundle(sha256_of(data), format, names_json, data, filename)


@st.cache_resource(max_entries=256, show_spinner="Computing block norms and singular values…")
def _layer_analysis(
    sha: str,
    fmt: str,
    names_json: str,
    index: int,
    tolerances: tuple[float, ...],
    gate_label: str,
    _bundle: ModelBundle,
    _gates: Any = None,
) -> LayerAnalysis:
    return _analyse(_bundle, index, tolerances, gate_label, _gates)


def _analyse(
    bundle: ModelBundle, index: int, tolerances: tuple[float, ...], gate_label: str, gates: Any
) -> LayerAnalysis:
    return analyze_layer(bundle.weights, index, tolerances=tolerances, gate_weights=gates, gate_label=gate_label)


def layer_analysis(
    entry: ModelEntry,
    index: int,
    tolerances: tuple[float, ...] = DEFAULT_TOLERANCES,
    *,
    gate_data: ServerDataset | None = None,
) -> LayerAnalysis:
    """Block norms and spectrum of one cross layer (and its experts), cached per content and tolerances.

    ``gate_data``: a mixture layer is the gate-weighted average of its experts over that dataset of this
    server (:func:`mean_gates_of`) when that works, else (and by default) the mean of its experts.
    """
    tols = check_tolerances(tolerances)
    gates, label = None, ""
    if gate_data is not None:
        g = mean_gates_of(entry, gate_data)
        if not isinstance(g, str) and g[0][index] is not None:
            gates, label = g[0][index], g[1]
    b = bundle_of(entry)
    if entry.shared:
        return _layer_analysis(entry.sha256, entry.format, entry.names_json, index, tols, label, b, gates)
    return private_memo(
        "layer",
        (entry.sha256, entry.format, entry.names_json, index, tols, label),
        lambda: _analyse(b, index, tols, label, gates),
        max_entries=256,
        spinner="Computing block norms and singular values…",
    )


@st.cache_resource(max_entries=16, show_spinner="Running the model on its validation inputs for the mean gates…")
def _mean_gates(
    sha: str, source: str, data_dir: str | None, label: str, _bundle: ModelBundle
) -> tuple[tuple[Any, ...], str, tuple[str, ...]] | str:
    return _gates_or_why(source, data_dir, label, _bundle)


def _gates_or_why(
    source: str, data_dir: str | None, label: str, bundle: ModelBundle
) -> tuple[tuple[Any, ...], str, tuple[str, ...]] | str:
    try:
        if bundle.data is None:
            raise DcnvizError("not a dcnviz model file")
        options, warnings = bundle.data.options_at(source, data_dir=data_dir)
        gates, weighting = mean_gates_on(bundle, options)
    except (DcnvizError, OSError) as e:
        return f"the model could not be run on {label}: {e}"
    return tuple(gates), weighting, warnings


def gate_datasets(entry: ModelEntry) -> list[ServerDataset] | str:
    """The data on this server a dcnviz mixture model can be run on for its mean gates (the kind it was
    trained on: :meth:`dcnviz.modelfile.ModelFile.server_data`), or why there is none (a str).

    Only data the server offers (:func:`dcnviz.modelfile.server_datasets`) is ever read: a folder that an
    uploaded file names is never looked at.
    """
    b = bundle_of(entry)
    if b.format != "dcnviz" or not b.weights.has_mixture:
        return "gate weighting needs a dcnviz mixture model file: the gates are computed by running the model on data"
    found = b.server_data(server_datasets())
    if found:
        return found
    return not_on_server((b.data.source if b.data else None) or "sample")


def mean_gates_of(entry: ModelEntry, dataset: ServerDataset) -> tuple[tuple[Any, ...], str, tuple[str, ...]] | str:
    """(E_x[G(x_l)] per cross layer, a label, warnings about the data) of a dcnviz mixture model over the
    validation split it recorded, recreated on ``dataset`` of this server (:func:`dcnviz.gates.mean_gates_on`),
    cached by content; or why not (a str)."""
    b, args = bundle_of(entry), (entry.sha256, dataset.source, dataset.data_dir, dataset.label)
    if entry.shared:
        return _mean_gates(*args, b)
    return private_memo(
        "gates",
        args,
        lambda: _gates_or_why(*args[1:], b),
        max_entries=16,
        spinner="Running the model on its validation inputs for the mean gates…",
    )


def model_analysis(entry: ModelEntry, tolerances: tuple[float, ...] = DEFAULT_TOLERANCES) -> ModelAnalysis:
    """Every layer's analysis (each cached on its own), assembled as :class:`ModelAnalysis`."""
    b = bundle_of(entry)
    tols = check_tolerances(tolerances)
    layers = tuple(layer_analysis(entry, i, tols) for i in range(b.n_layers))
    cw = b.weights
    return ModelAnalysis(
        format=cw.format,
        detected=cw.detected,
        d=cw.d,
        blocks=tuple(cw.blocks),
        layers=layers,
        tolerances=tols,
        energy=layers[0].spectrum.energy if layers else 0.9,
        init_label=cw.init_label if cw.initial_layers is not None else "",
        warnings=tuple(cw.warnings),
    )


def chosen_tolerances() -> tuple[float, ...]:
    """The tolerances T the user chose on the Spectrum page (largest first), or the defaults."""
    return tuple(st.session_state.get(TOLERANCES) or DEFAULT_TOLERANCES)


def choose_tolerances(tolerances: tuple[float, ...]) -> None:
    """Remember the tolerances for every page of this session (largest first; the defaults when empty)."""
    st.session_state[TOLERANCES] = tuple(sorted(set(tolerances), reverse=True)) or DEFAULT_TOLERANCES


def default_entry(entries: list[ModelEntry]) -> ModelEntry | None:
    """The model shown first: a shipped model trained on the bundled sample (its crosses are known), else the first."""
    for e in entries:
        if e.origin == "shipped" and "sample" in e.filename.lower():
            return e
    return entries[0] if entries else None


def current_entry() -> ModelEntry | None:
    """The model chosen in the sidebar (by default :func:`default_entry`), or None when there is none."""
    entries = all_entries()
    chosen = entry_by_key(st.session_state.get(CURRENT))
    return chosen or default_entry(entries)
