"""The one front door for model files: :func:`open_model_file`.

Every model file — a dcnviz file (safetensors with ``format=dcnviz`` metadata) or a peer library's
weights (torchrec, DeepCTR-Torch, FuxiCTR, RecBole, TensorFlow Recommenders; ``.pt``/``.pth``/``.bin``/
``.ckpt``, safetensors, ``.npz``, Keras ``.weights.h5``) — is opened here, from a path or its bytes,
by the CLI (``inspect``, ``evaluate``), the app (uploads, shipped models, gate weighting), the HTML
report and the Python API (:func:`dcnviz.importers.load_cross_weights`,
:func:`dcnviz.app.bundle.load_bundle` and :func:`dcnviz.checkpoint.load_model` are wrappers). The
bytes are hashed once and the container parsed once; the result is one :class:`ModelFile`:

* ``weights``: the cross layers in common form (:class:`~dcnviz.weights.CrossModelWeights`, paper
  orientation, feature blocks), what analysis reads;
* for dcnviz files, ``spec`` (the FeatureSpec), ``config`` (the architecture), ``train_config``,
  ``metrics``, ``history``, and ``data``: the data options recorded at training time as a typed
  value (:class:`RecordedData`), whose folder is a *string the file says*, never opened on its own;
* ``warnings`` as values (NaN weights, an unsure feature order, skipped checkpoint entries);
* ``build_model()``: the :class:`~dcnviz.model.DCNModel`, built only when asked (evaluation, gates,
  explanations).

Untrusted bytes in containers whose parsers dcnviz does not own (torch zip/pickle, ``.npz``, HDF5) are
parsed in an isolated worker process with memory and time limits (:mod:`dcnviz.isolation`); dcnviz
files are read by dcnviz's own bounded safetensors reader. ``trusted=True`` (the app's shipped
models) parses everything in this process.

Data "on this server" (:func:`server_datasets`): the bundled sample plus MovieLens folders the
operator provides (``$DCNVIZ_DATA_DIR`` and the project's ``data/``, where ``dcnviz download``
writes). The app offers only these for gate weighting and explanations; a file's recorded folder is
used only by the command line, where the file is the user's own (:meth:`RecordedData.cli_options`).

Typical use (an explanation of a dcnviz file on data of this server)::

    mf = open_model_file(upload_bytes, filename="mine.safetensors")
    ds = mf.server_data()[0]                        # e.g. the bundled sample, if the model was trained on it
    options, warnings = mf.data.options_at(ds.source, data_dir=ds.data_dir)
    splits = dcnviz.data.load_splits(options, spec=mf.spec)
    model = mf.build_model()
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dcnviz.checkpoint import (
    DEFAULT_MAX_FILE_BYTES,
    NOT_DCNVIZ,
    DcnvizContents,
    build_model,
    is_dcnviz_file,
    read_dcnviz,
    read_safetensors,
    read_source,
)
from dcnviz.errors import CheckpointError, ConfigError, ImportFormatError
from dcnviz.importers import FORMATS, LIBRARY_NAMES, import_tensor_file
from dcnviz.importers.containers import HDF5_MAGIC, ZIP_MAGIC, TensorFile, container_of, read_tensor_file
from dcnviz.importers.names import apply_names
from dcnviz.model import DCNModel, ModelConfig
from dcnviz.spec import FeatureSpec
from dcnviz.untrusted import clip, shown
from dcnviz.weights import CrossModelWeights, from_model

DATA_ENV = "DCNVIZ_DATA_DIR"  # folder(s) (os.pathsep-separated) of MovieLens data the server offers
REPO_ROOT = Path(__file__).resolve().parent.parent  # the checkout (site-packages when installed)
OWN_TABLES = ("csv", "parquet")
_MOVIELENS_FILES = {"ml-100k": ("u.data", "u.user", "u.item"), "ml-1m": ("ratings.dat", "users.dat", "movies.dat")}
_MOVIELENS_NAMES = {"ml-100k": "MovieLens-100K", "ml-1m": "MovieLens-1M"}


# --------------------------------------------------------------------------------------------------
# Recorded data options and data on this server


@dataclass(frozen=True)
class RecordedData:
    """The data options a dcnviz file recorded at training time (``meta.data_info.options``), as a value.

    ``data_dir`` and ``schema`` are strings the file says; nothing here opens them.
    :meth:`options_at` recreates the split's options for data *you* point at (the app: a
    :class:`ServerDataset`); :meth:`cli_options` falls back to the recorded location, the command
    line's documented default for a file that is the user's own.
    """

    options: Mapping[str, Any] | None = None  # the recorded DataOptions JSON; None when the file records none

    @property
    def source(self) -> str | None:
        """``sample`` | ``ml-100k`` | ``ml-1m`` | ``csv`` | ``parquet`` as recorded (None: not recorded)."""
        v = self.options.get("source") if self.options else None
        return v if isinstance(v, str) else None

    @property
    def data_dir(self) -> str | None:
        """The folder the file says its data was in (display only; never opened by the library or app)."""
        v = self.options.get("data_dir") if self.options else None
        return v if isinstance(v, str) else None

    @property
    def seed(self) -> int | None:
        v = self.options.get("seed") if self.options else None
        return v if isinstance(v, int) and not isinstance(v, bool) else None

    def options_at(
        self, source: str, *, data_dir: str | None = None, schema: str | None = None
    ) -> tuple[Any, tuple[str, ...]]:
        """(:class:`~dcnviz.data.DataOptions`, warnings): the recorded split (seed, fields, encodings)
        of data of kind ``source`` in ``data_dir`` (None: the bundled sample), with ``schema`` for
        own tables. The recorded folder and a recorded schema *file* are never used; an inline
        recorded schema (JSON text) is kept for own tables.

        Warnings (values, for the caller to show): the data differs from what the model was trained
        on; MovieLens field choices dropped for own tables (and vice versa); no options recorded.
        """
        from dcnviz.data import DataOptions

        warnings: list[str] = []
        recorded = dict(self.options) if self.options else None
        if recorded is None:
            warnings.append("the model file records no data options; using the defaults (split seed 0)")
            return DataOptions(source=source, data_dir=data_dir, schema=schema), tuple(warnings)
        was = recorded.get("source")
        if was != source:
            warnings.append(f"the model was trained on {shown(was, 40)} data; using {source!r} data")
        base = dict(recorded)
        own_was, own_now = was in OWN_TABLES, source in OWN_TABLES
        if own_was or own_now:  # MovieLens field choices do not apply to own tables and vice versa
            keep = {"seed", "embedding_dim"} | ({"schema"} if own_was and own_now else set())
            base = {k: v for k, v in base.items() if k in keep}
        recorded_schema = base.get("schema")
        if not (isinstance(recorded_schema, str) and recorded_schema.lstrip().startswith("{")):
            base.pop("schema", None)  # a path the file names: not used
        base["source"] = source
        base["data_dir"] = data_dir
        if schema is not None:
            base["schema"] = schema
        return DataOptions.from_json(base), tuple(warnings)

    def cli_options(
        self, source: str, *, data_dir: str | None = None, schema: str | None = None
    ) -> tuple[Any, tuple[str, ...]]:
        """:meth:`options_at`, where a ``data_dir``/``schema`` left out means *where the file says*
        (``evaluate``'s and ``inspect --gates-data``'s documented default). For the command line
        only: the file is the user's own and so is the folder it names. The app never calls this.
        """
        rec = self.options or {}
        was = rec.get("source")
        own = was in OWN_TABLES or source in OWN_TABLES
        if data_dir is None and rec and not own and not (source == "sample" and was != "sample"):
            v = rec.get("data_dir")
            data_dir = v if isinstance(v, str) else None
        if schema is None and was in OWN_TABLES and source in OWN_TABLES:
            v = rec.get("schema")
            schema = v if isinstance(v, str) else None
        return self.options_at(source, data_dir=data_dir, schema=schema)


@dataclass(frozen=True)
class ServerDataset:
    """Data on this server that a model can be run on (gate weighting, explanations)."""

    source: str  # sample | ml-100k | ml-1m
    data_dir: str | None  # None: the bundled sample (dcnviz.data.SAMPLE_DIR)
    label: str  # what the app shows: never a path from an uploaded file


def _movielens_folders(root: Path, where: str) -> list[ServerDataset]:
    out = []
    for source, files in _MOVIELENS_FILES.items():
        for folder, shown_as in ((root / source, f"{where}/{source}"), (root, where)):
            if folder.is_dir() and all((folder / f).is_file() for f in files):
                out.append(ServerDataset(source, str(folder), f"{_MOVIELENS_NAMES[source]} ({shown_as})"))
                break
    return out


def server_datasets() -> list[ServerDataset]:
    """The data this server offers: the bundled sample, then MovieLens folders the operator provides.

    Looked up on each call (cheap): each folder of ``$DCNVIZ_DATA_DIR`` (``os.pathsep``-separated) and
    ``data/`` (what ``python -m dcnviz download ml-100k --dir data/`` writes: the checkout's, or the working
    directory's when dcnviz is installed), either holding ``ml-100k/`` / ``ml-1m/`` or being such a folder itself.
    """
    from dcnviz import data

    out = []
    if Path(data.SAMPLE_DIR).is_dir():
        out.append(ServerDataset("sample", None, "the bundled synthetic sample"))
    roots: list[tuple[Path, str]] = [
        (Path(p).expanduser(), f"${DATA_ENV}" if i == 0 else f"${DATA_ENV}[{i}]")
        for i, p in enumerate(p for p in os.environ.get(DATA_ENV, "").split(os.pathsep) if p)
    ]
    checkout = (REPO_ROOT / "pyproject.toml").is_file()
    roots.append(((REPO_ROOT if checkout else Path.cwd()) / "data", "data"))
    seen: set[str] = set()
    for root, where in roots:
        for ds in _movielens_folders(root, where):
            key = os.path.realpath(ds.data_dir or "")
            if key not in seen:
                seen.add(key)
                out.append(ds)
    return out


def not_on_server(source: str) -> str:
    """Why a model's training data cannot be used here: a sentence naming ``source`` (what the file records)."""
    if source in OWN_TABLES:
        return f"the model was trained on its own {source} table, which is not on this server"
    return (
        f"the model was trained on {source} data, which is not on this server (the operator can provide "
        "MovieLens folders in $DCNVIZ_DATA_DIR, or in data/: the checkout's, or the working folder's when dcnviz "
        "is installed)"
    )


# --------------------------------------------------------------------------------------------------
# The opened file


@dataclass(frozen=True, eq=False)
class ModelFile:
    """A model file, opened: cross weights in common form and everything the file says about the model.

    Shared between sessions by the app's cache: treat it as read-only. (``dcnviz.app.bundle.ModelBundle``
    is this class.)
    """

    weights: CrossModelWeights  # cross layers in paper orientation, with feature blocks
    format: str  # dcnviz | torchrec | deepctr | fuxictr | recbole | tfrs
    detected: str  # what was found, e.g. "DeepCTR-Torch DCNMix: 2 layers, K=4 experts, r=8, d=40"
    sha256: str  # of the file's bytes
    size: int  # file size in bytes
    filename: str = ""  # the file's name (display only)
    spec: FeatureSpec | None = None  # dcnviz files: the FeatureSpec
    config: ModelConfig | None = None  # dcnviz files: the architecture
    meta: Mapping[str, Any] = field(default_factory=dict)  # dcnviz files: the whole metadata document
    dense_params: int | None = None  # dcnviz files: parameters excluding embedding tables (Table 6's count)
    warnings: tuple[str, ...] = ()  # e.g. NaN weights, unsure feature order, skipped entries
    container: str = ""  # safetensors | torch zip | npz | keras h5 (how the bytes were stored)
    isolated: bool = False  # the container was parsed in an isolated worker process
    contents: DcnvizContents | None = field(default=None, repr=False)  # dcnviz files: the checked tensors

    @property
    def library(self) -> str:
        return LIBRARY_NAMES.get(self.format, self.format)

    @property
    def names(self) -> list[str]:
        """Feature (block) names in x0 order."""
        return [b.name for b in self.weights.blocks]

    @property
    def n_layers(self) -> int:
        return len(self.weights.layers)

    def _meta_dict(self, key: str) -> dict[str, Any]:
        v = self.meta.get(key) if self.meta else None
        return dict(v) if isinstance(v, Mapping) else {}

    @property
    def history(self) -> list[dict[str, Any]]:
        """Per-epoch training records of a dcnviz file (empty for peer files)."""
        h = self.meta.get("history") if self.meta else None
        return [r for r in h if isinstance(r, dict)] if isinstance(h, list) else []

    @property
    def train_config(self) -> dict[str, Any]:
        return self._meta_dict("train_config")

    @property
    def metrics(self) -> dict[str, Any]:
        return self._meta_dict("metrics")

    @property
    def data(self) -> RecordedData | None:
        """The recorded data options (dcnviz files; None for peer files, which record none)."""
        if self.format != "dcnviz":
            return None
        options = self._meta_dict("data_info").get("options")
        return RecordedData(dict(options) if isinstance(options, Mapping) else None)

    def build_model(self) -> DCNModel:
        """A new :class:`DCNModel` with the file's weights (float32, eval mode). dcnviz files only."""
        if self.contents is None:
            raise CheckpointError(
                f"{self.filename or 'this file'} is a {self.library} file: only dcnviz model files carry the "
                "whole model (embeddings, deep tower, FeatureSpec); peer files are read for their cross layers"
            )
        return build_model(self.contents)

    def server_data(self, datasets: Sequence[ServerDataset] | None = None) -> list[ServerDataset]:
        """The data on this server (:func:`server_datasets`) of the kind the model was trained on.

        Empty for peer files and for models trained on own tables (CSV/Parquet), which only their
        owner has.
        """
        if self.data is None:
            return []
        source = self.data.source or "sample"
        return [ds for ds in (server_datasets() if datasets is None else datasets) if ds.source == source]


def _label(source: str | os.PathLike[str] | bytes, filename: str | None) -> str:
    if filename:
        return clip(filename, 80)
    if isinstance(source, bytes | bytearray | memoryview):
        return "upload"
    return clip(Path(source).name, 80)


def open_model_file(
    source: str | os.PathLike[str] | bytes,
    *,
    names: Sequence[Any] | None = None,
    feature_map: Any = None,
    format: str = "auto",
    filename: str | None = None,
    max_bytes: int = DEFAULT_MAX_FILE_BYTES,
    trusted: bool = False,
    sha256: str | None = None,
) -> ModelFile:
    """Open any model file (a path or its bytes) into one :class:`ModelFile` (see the module docstring).

    Args:
        source: a path, or the file's bytes (an upload).
        names: block names (``["a", "b"]``, widths inferred) or ``[{"name": .., "width": ..}]`` (widths
            must sum to d), e.g. from :func:`dcnviz.importers.read_names_file`.
        feature_map: FuxiCTR ``feature_map.json`` (path, bytes or parsed dict): x0 order and types.
        format: ``auto`` (detected from the keys) or one of :data:`dcnviz.importers.FORMATS`.
        filename: the upload's name, for messages and the card (the container is recognised by content).
        max_bytes: larger files are refused before they are read.
        trusted: the file is dcnviz's own (a shipped model): parse every container in this process
            instead of an isolated worker.
        sha256: the bytes' SHA-256 when the caller has computed it already (the app's caches are keyed
            by it), so that the bytes are hashed once.

    Raises:
        DcnvizError: the file is unreadable, hostile, of another format than forced, or the names or
        feature map do not fit x0 — the message names the defect (``CheckpointError``,
        ``ImportFormatError``, ``ConfigError``, ``DataFormatError``).
    """
    if format not in FORMATS:
        raise ConfigError(f"format must be one of {FORMATS}; got format={shown(format, 40)}")
    data = read_source(source, max_bytes)
    label = _label(source, filename)
    sha = sha256 or hashlib.sha256(data).hexdigest()
    if format == "dcnviz" and data.startswith((*ZIP_MAGIC, HDF5_MAGIC)):  # dcnviz files are safetensors
        kind = "a zip archive (torch checkpoint or .npz)" if data.startswith(ZIP_MAGIC) else "an HDF5 file"
        raise ImportFormatError(f"{label}: {NOT_DCNVIZ} (it is {kind})")
    common: dict[str, Any] = {"sha256": sha, "size": len(data), "filename": filename or ""}
    names_list = list(names) if names else None
    if format == "dcnviz" or container_of(data) == "safetensors":  # dcnviz's own reader, in this process
        if format == "dcnviz":
            tensors, metadata = read_safetensors(data)  # its own messages: "not a safetensors file: …"
            tf = TensorFile(dict(tensors), "safetensors", metadata, ordered=False)
        else:
            tf = read_tensor_file(data, max_bytes=max_bytes)
        if is_dcnviz_file(tf.metadata):
            if format not in ("auto", "dcnviz"):
                raise ImportFormatError(f"{label} is a dcnviz model file (metadata format=dcnviz), not {format}")
            if feature_map is not None:
                raise ConfigError(
                    f"a FuxiCTR feature_map.json names the blocks of FuxiCTR models only; {label} is a dcnviz "
                    "model file, which carries its own feature names"
                )
            return _dcnviz_file(tf, names_list, **common)
        if format == "dcnviz":
            raise ImportFormatError(f"{label}: {NOT_DCNVIZ} (it was read as {tf.container})")
        cw = _import(tf, format=format, names=names_list, feature_map=feature_map, label=label)
        return _peer_file(cw, container=tf.container, isolated=False, **common)
    # torch zip, .npz, HDF5: parsers dcnviz does not own, run in an isolated worker unless trusted
    from dcnviz import isolation
    from dcnviz.importers.fuxictr import read_feature_map

    options: dict[str, Any] = {
        "format": format,
        "names": names_list,
        "feature_map": None if feature_map is None else read_feature_map(feature_map),  # parsed here, sent as JSON
        "label": label,
    }
    if trusted or isolation.mode() == "off":
        cw, container = import_peer_bytes(data, max_bytes=max_bytes, **options)
        return _peer_file(cw, container=container, isolated=False, **common)
    cw, container = isolation.import_file(data, options=options, max_bytes=max_bytes)
    return _peer_file(cw, container=container, isolated=True, **common)


def import_peer_bytes(
    data: bytes, *, max_bytes: int, format: str, names: list[Any] | None, feature_map: Any, label: str
) -> tuple[CrossModelWeights, str]:
    """A peer library's file (its bytes) → (cross layers in common form, container name).

    Container parsing and import in one call: what :mod:`dcnviz.isolation`'s worker runs on an untrusted
    torch zip, ``.npz`` or HDF5 file (only this result leaves the worker, not the file's other tensors).
    """
    tf = read_tensor_file(data, max_bytes=max_bytes)
    if is_dcnviz_file(tf.metadata):
        raise ImportFormatError(f"{label} is a dcnviz model file; open it with open_model_file")
    return _import(tf, format=format, names=names, feature_map=feature_map, label=label), tf.container


def _import(tf: TensorFile, *, format: str, names: list[Any] | None, feature_map: Any, label: str) -> CrossModelWeights:
    if format == "dcnviz":
        raise ImportFormatError(f"{label}: {NOT_DCNVIZ} (it was read as {tf.container})")
    cw = import_tensor_file(tf, format=format, names=names, feature_map=feature_map, label=label)
    if feature_map is not None and cw.format != "fuxictr":
        raise ConfigError(
            f"a FuxiCTR feature_map.json names the blocks of FuxiCTR models only; {label} was read as "
            f"{LIBRARY_NAMES.get(cw.format, cw.format)} ({cw.detected})"
        )
    return cw


def _peer_file(cw: CrossModelWeights, *, container: str, isolated: bool, **common: Any) -> ModelFile:
    return ModelFile(
        weights=cw,
        format=cw.format,
        detected=cw.detected,
        warnings=tuple(cw.warnings),
        container=container,
        isolated=isolated,
        **common,
    )


def _dcnviz_file(tf: TensorFile, names: Sequence[Any] | None, **common: Any) -> ModelFile:
    contents = read_dcnviz(tf.tensors, tf.metadata)
    t = contents.tensors
    cross = {k[len("model.cross.") :]: v for k, v in t.items() if k.startswith("model.cross.")}
    initial = {k[len("initial_cross.") :]: v for k, v in t.items() if k.startswith("initial_cross.")}
    cw = from_model(contents.skeleton, cross, initial)
    cw.warnings = [*contents.warnings, *cw.warnings]  # e.g. NaN/Inf weights, as for peer files
    if names:
        cw.blocks = apply_names(cw.blocks, cw.d, list(names))
    return ModelFile(
        weights=cw,
        format="dcnviz",
        detected=cw.detected,
        spec=contents.spec,
        config=contents.config,
        meta=contents.meta,
        dense_params=contents.skeleton.dense_param_count(),
        warnings=tuple(cw.warnings),
        container=tf.container,
        contents=contents,
        **common,
    )
