"""dcnviz model files: safetensors tensors plus JSON metadata. All reading and writing lives here.

One self-describing file per model. Tensors:

* ``model.<key>``         every entry of the model's state dict;
* ``initial_cross.<key>`` the cross network's parameters as initialised (Fig. 3a baseline).

The safetensors header metadata holds ``format = "dcnviz"``, ``format_version`` and ``meta``, a
JSON document with the model config, FeatureSpec, training config, metrics, history, library
versions and creation time. Writing uses the ``safetensors`` library; reading is dcnviz's own (the
header validated by hand — sizes, dtypes, offsets, tensor count, JSON depth — then
:func:`numpy.frombuffer`), never unpickles anything, and the tensors must match the architecture the
metadata describes. :func:`dcnviz.modelfile.open_model_file` is the front door that uses these
readers; :func:`load_model` is its shortcut for "a dcnviz file, with its model built".
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import itertools
import json
import math
import os
import platform
import struct
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dcnviz.errors import CheckpointError, ConfigError
from dcnviz.finite import finite_json
from dcnviz.model import DCNModel, ModelConfig
from dcnviz.spec import FeatureSpec
from dcnviz.untrusted import MAX_NAME_CHARS, MAX_TENSORS, check_shape, clip, loads_json, shown, shown_list

FORMAT = "dcnviz"
FORMAT_VERSION = 1
MAX_HEADER_BYTES = 64 * 1024 * 1024  # JSON header (vocabularies included) beyond this is refused
DEFAULT_MAX_FILE_BYTES = 512 * 1024 * 1024

# safetensors dtype name -> bytes per element; the float/int types a DCN model can hold.
DTYPE_SIZES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}
FLOAT_DTYPES = {"F64", "F32", "F16", "BF16"}
NUMPY_DTYPES = {
    "F64": "<f8",
    "F32": "<f4",
    "F16": "<f2",
    "I64": "<i8",
    "I32": "<i4",
    "I16": "<i2",
    "I8": "i1",
    "U8": "u1",
}
NUMPY_DTYPES["BOOL"] = "?"
MAX_FIELDS = 10_000  # fields of a FeatureSpec


@dataclass
class LoadedModel:
    """A model read from a file, with everything the file said about it."""

    model: DCNModel
    meta: dict[str, Any]
    sha256: str
    warnings: list[str] = field(default_factory=list)

    @property
    def spec(self) -> FeatureSpec:
        return self.model.spec

    @property
    def config(self) -> ModelConfig:
        return self.model.config


def _versions() -> dict[str, str]:
    import safetensors

    from dcnviz import __version__

    return {
        "dcnviz": __version__,
        "torch": torch.__version__,
        "safetensors": safetensors.__version__,
        "python": platform.python_version(),
    }


def model_to_bytes(
    model: DCNModel,
    *,
    train_config: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    history: list[dict[str, Any]] | None = None,
    data_info: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> bytes:
    """Serialise a model and its metadata to the bytes of a ``.safetensors`` file."""
    from safetensors.torch import save

    tensors: dict[str, torch.Tensor] = {}
    for k, v in model.state_dict().items():
        tensors[f"model.{k}"] = v.detach().to("cpu").contiguous()
    for k, v in model.initial_cross.items():
        tensors[f"initial_cross.{k}"] = v.detach().to("cpu").contiguous()
    meta = {
        "model_config": model.config.to_json(),
        "feature_spec": model.spec.to_json(),
        "train_config": train_config or {},
        "metrics": metrics or {},
        "history": history or [],
        "data_info": data_info or {},
        "extra": extra or {},
        "versions": _versions(),
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    header = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "meta": json.dumps(finite_json(meta), allow_nan=False),
    }
    return save(tensors, metadata=header)


def _umask() -> int:
    """The process umask, read without changing it (os.umask would race with other threads)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022


def write_atomic(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` via a temporary file in the same folder and a rename.

    A crash or kill mid-write leaves at most a stray temporary file, never a half-written ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
            os.fchmod(f.fileno(), 0o666 & ~_umask())  # mkstemp makes 0600; give the usual file mode
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def save_model(path: str | os.PathLike[str], model: DCNModel, **kwargs: Any) -> Path:
    """Save ``model`` to ``path`` atomically (temp file, then rename). See :func:`model_to_bytes`."""
    return write_atomic(path, model_to_bytes(model, **kwargs))


def parse_safetensors_header(data: bytes) -> tuple[dict[str, Any], dict[str, str]]:
    """Validate a safetensors header without trusting it; return (tensor entries, metadata).

    Checks: the 8-byte length prefix fits the file, the header lists at most :data:`MAX_TENSORS`
    tensors (counted in the raw bytes, before the JSON is parsed), is UTF-8 JSON of the expected
    shape and depth with no absurdly long integers, every dtype is known, every shape is a list of
    non-negative ints below 2**40 (zero-length tensors included), every byte range lies inside the
    data section, matches its shape × dtype size, and no two ranges overlap.
    """
    if len(data) < 8:
        raise CheckpointError(f"not a safetensors file: only {len(data)} bytes, fewer than the 8-byte header length")
    (n,) = struct.unpack("<Q", data[:8])
    if n > MAX_HEADER_BYTES:
        raise CheckpointError(f"safetensors header claims {n} bytes, more than the {MAX_HEADER_BYTES}-byte limit")
    if 8 + n > len(data):
        raise CheckpointError(
            f"file is truncated or not safetensors: header claims {n} bytes but only {len(data) - 8} follow"
        )
    raw = data[8 : 8 + n]
    count = raw.count(b'"data_offsets"')  # an upper bound on the tensors, found without parsing
    if count > MAX_TENSORS:
        raise CheckpointError(f"safetensors header lists {count:,} tensors, more than the {MAX_TENSORS:,} dcnviz reads")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CheckpointError(f"safetensors header is not UTF-8 (byte {e.start})") from None
    header = loads_json(text, "safetensors header", max_depth=4, error=CheckpointError)
    if not isinstance(header, dict):
        raise CheckpointError("safetensors header must be a JSON object")
    metadata = header.pop("__metadata__", {}) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise CheckpointError("safetensors __metadata__ must map strings to strings")
    if len(header) > MAX_TENSORS:
        raise CheckpointError(f"safetensors header lists {len(header):,} tensors, more than the {MAX_TENSORS:,} read")
    body = len(data) - 8 - n
    ranges = []
    for name, entry in header.items():
        if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
            raise CheckpointError(f"tensor {shown(name)}: header entry must have dtype, shape and data_offsets")
        dtype, shape, offs = entry["dtype"], entry["shape"], entry["data_offsets"]
        if not isinstance(dtype, str) or dtype not in DTYPE_SIZES:
            raise CheckpointError(f"tensor {shown(name)}: unsupported dtype {shown(dtype)}")
        if not isinstance(shape, list) or not all(
            isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape
        ):
            raise CheckpointError(
                f"tensor {shown(name)}: shape must be a list of non-negative ints; got {shown(shape)}"
            )
        check_shape(shape, f"tensor {shown(name)}")
        if (
            not isinstance(offs, list)
            or len(offs) != 2
            or not all(isinstance(o, int) and not isinstance(o, bool) for o in offs)
        ):
            raise CheckpointError(f"tensor {shown(name)}: data_offsets must be two ints; got {shown(offs)}")
        start, stop = offs
        if not (0 <= start <= stop <= body):
            raise CheckpointError(
                f"tensor {shown(name)}: byte range [{start}, {stop}) lies outside the {body}-byte data section"
            )
        numel = math.prod(shape)
        if numel * DTYPE_SIZES[dtype] != stop - start:
            raise CheckpointError(
                f"tensor {shown(name)}: shape {shape} of {dtype} needs {numel * DTYPE_SIZES[dtype]} bytes, "
                f"but its range holds {stop - start}"
            )
        ranges.append((start, stop, name))
    ranges.sort()
    for (_, e0, a), (s1, _, b) in itertools.pairwise(ranges):
        if s1 < e0:
            raise CheckpointError(f"tensors {shown(a)} and {shown(b)} have overlapping byte ranges")
    return header, metadata


def _np_dtype(dtype: str) -> np.dtype[Any]:
    return np.dtype(NUMPY_DTYPES[dtype])


def read_safetensors(data: bytes) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Validated safetensors bytes → (NumPy arrays in file order, metadata). Never unpickles.

    The arrays are read-only views of ``data`` (BF16 is widened to float32, which NumPy lacks); no
    parser but :func:`parse_safetensors_header` and :func:`numpy.frombuffer` touches the bytes.
    """
    header, metadata = parse_safetensors_header(data)
    start = 8 + struct.unpack("<Q", data[:8])[0]
    out: dict[str, np.ndarray] = {}
    for name, entry in header.items():
        a, b = entry["data_offsets"]
        shape = tuple(entry["shape"])
        if entry["dtype"] == "BF16":
            raw = np.frombuffer(data, dtype="<u2", count=math.prod(shape), offset=start + a)
            arr = (raw.astype("<u4") << 16).view("<f4").reshape(shape)
        else:
            dt = _np_dtype(entry["dtype"])
            arr = np.frombuffer(data, dtype=dt, count=(b - a) // dt.itemsize, offset=start + a).reshape(shape)
        out[name] = arr
    return out, metadata


def read_source(source: str | os.PathLike[str] | bytes, max_bytes: int) -> bytes:
    """The bytes of a file (a path or bytes), refusing anything over ``max_bytes``."""
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
        if len(data) > max_bytes:
            raise CheckpointError(f"file is {len(data)} bytes, over the {max_bytes}-byte limit")
        return data
    path = Path(source)
    if not path.is_file():
        raise CheckpointError(f"no model file at {shown(str(path))}")
    size = path.stat().st_size
    if size > max_bytes:
        raise CheckpointError(f"{clip(path.name, 80)} is {size} bytes, over the {max_bytes}-byte limit")
    return path.read_bytes()


def is_dcnviz_file(metadata: Mapping[str, str]) -> bool:
    return metadata.get("format") == FORMAT


NOT_DCNVIZ = (
    "not a dcnviz model file (its metadata has no format=dcnviz); "
    "to inspect a peer library's weights use the importers (inspect --format ...)"
)


def _check_sizes_fit_file(spec: FeatureSpec, config: ModelConfig, tensors: Mapping[str, Any]) -> None:
    """Refuse metadata that implies more layers, experts or width than the file's tensors can hold.

    Building even a shape-only (meta-device) skeleton takes time per layer and per expert, so
    ``cross_layers = 10**9`` must be refused *before* it is built. Each bound is a necessary
    condition of a real file: every cross or deep layer has at least one tensor of its own, and x0's
    width d and the expert count K each appear as a dimension of some tensor (W (d, d), U (K, d, r),
    the first deep layer (h, d)).
    """
    n = len(tensors)
    widest = max((max(t.shape, default=1) for t in tensors.values()), default=0)
    if spec.d > widest:
        raise CheckpointError(
            f"feature spec describes x0 of width {spec.d}, but no tensor in the file has a dimension that long "
            f"(the longest is {widest})"
        )
    if config.model != "dnn" and config.cross_layers > n:
        raise CheckpointError(
            f"model config has cross_layers={config.cross_layers}, but the file holds only {n} tensors"
        )
    if len(config.hidden) > n:
        raise CheckpointError(
            f"model config has {len(config.hidden)} hidden layers, but the file holds only {n} tensors"
        )
    if config.cross_kind == "mixture" and config.experts is not None and config.experts > widest:
        raise CheckpointError(
            f"model config has experts={config.experts}, but no tensor in the file has a dimension that long"
        )


@dataclass(frozen=True, eq=False)
class DcnvizContents:
    """What a dcnviz file holds, validated against its own metadata; the real model is not built yet.

    ``skeleton`` is the model built on the meta device (shapes only, no memory): the tensors were
    checked against it, and :func:`build_model` makes the real one.
    """

    spec: FeatureSpec
    config: ModelConfig
    meta: dict[str, Any]  # the metadata document: model/train config, FeatureSpec, metrics, history, data info
    skeleton: DCNModel  # on the meta device
    tensors: Mapping[str, np.ndarray]  # "model.<key>" and "initial_cross.<key>", checked shapes, float dtypes
    warnings: tuple[str, ...] = ()


def read_dcnviz(tensors: Mapping[str, np.ndarray], metadata: Mapping[str, str]) -> DcnvizContents:
    """Check a dcnviz file's tensors against its metadata (read by :func:`read_safetensors`).

    Raises :class:`CheckpointError` naming what is wrong: not a dcnviz file, unknown format version,
    metadata that is not JSON (or nested/sized beyond reason), tensors that do not match the
    architecture in the metadata. Non-finite weights pass, with a warning.
    """
    if not is_dcnviz_file(metadata):
        raise CheckpointError(NOT_DCNVIZ)
    version = metadata.get("format_version", "")
    if version != str(FORMAT_VERSION):
        raise CheckpointError(
            f"unknown dcnviz format version {shown(version)}; this dcnviz reads version {FORMAT_VERSION}"
        )
    meta = loads_json(metadata.get("meta", ""), "model metadata", error=CheckpointError)
    if not isinstance(meta, dict):
        raise CheckpointError("model metadata must be a JSON object")
    for key in ("model_config", "feature_spec"):
        if key not in meta:
            raise CheckpointError(f"model metadata lacks {key!r}")
    fields = meta["feature_spec"].get("fields") if isinstance(meta["feature_spec"], dict) else None
    if isinstance(fields, list) and len(fields) > MAX_FIELDS:
        raise CheckpointError(f"feature spec lists {len(fields):,} fields, more than the {MAX_FIELDS:,} dcnviz reads")
    if isinstance(fields, list):
        for f in fields:
            name = f.get("name") if isinstance(f, dict) else None
            if isinstance(name, str) and len(name) > MAX_NAME_CHARS:
                raise CheckpointError(
                    f"feature spec names a field {shown(name)}, longer than the {MAX_NAME_CHARS:,} characters read"
                )
    try:
        spec = FeatureSpec.from_json(meta["feature_spec"])
        config = ModelConfig.from_json(meta["model_config"])
        if spec.d > 1_000_000:
            raise CheckpointError(f"feature spec describes x0 of width {spec.d}, too wide to be real")
        _check_sizes_fit_file(spec, config, tensors)
        with torch.device("meta"):
            skeleton = DCNModel(spec, config)
    except ConfigError as e:
        raise CheckpointError(f"model metadata is inconsistent: {e}") from None
    expected = {f"model.{k}": tuple(v.shape) for k, v in skeleton.state_dict().items()}
    expected.update({f"initial_cross.{k}": tuple(v.shape) for k, v in skeleton.initial_cross.items()})
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing:
        raise CheckpointError(f"model file lacks tensors the metadata implies: {shown_list(missing)}")
    if unexpected:
        raise CheckpointError(f"model file has tensors the metadata does not describe: {shown_list(unexpected)}")
    for k, shape in expected.items():
        if tuple(tensors[k].shape) != shape:
            raise CheckpointError(
                f"tensor {k!r} has shape {list(tensors[k].shape)}, but the metadata implies {list(shape)}"
            )
        if tensors[k].dtype.kind != "f":
            raise CheckpointError(f"tensor {k!r} has dtype {_dtype_name(tensors[k])}; weights must be floating point")
    warnings: list[str] = []
    bad = [k for k, t in tensors.items() if not bool(np.isfinite(t).all())]
    if bad:
        warnings.append(
            f"{len(bad)} tensor(s) hold NaN or Inf values, e.g. {bad[0]!r}; analyses of them are unreliable"
        )
    return DcnvizContents(
        spec=spec, config=config, meta=meta, skeleton=skeleton, tensors=tensors, warnings=tuple(warnings)
    )


def _dtype_name(a: np.ndarray) -> str:
    """The tensor's dtype as torch names it (``torch.int64``), as earlier messages did."""
    return str(torch.from_numpy(np.zeros(0, dtype=a.dtype)).dtype)


def build_model(contents: DcnvizContents) -> DCNModel:
    """The real :class:`DCNModel` of a checked dcnviz file (float32 weights, eval mode)."""

    def tensor(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.array(a, dtype=np.float32))  # a copy: ``a`` may view read-only bytes

    model = DCNModel(contents.spec, contents.config)
    t = contents.tensors
    model.load_state_dict({k[len("model.") :]: tensor(v) for k, v in t.items() if k.startswith("model.")})
    model.initial_cross = {
        k[len("initial_cross.") :]: tensor(v) for k, v in t.items() if k.startswith("initial_cross.")
    }
    model.eval()
    return model


def load_model(source: str | os.PathLike[str] | bytes, *, max_bytes: int = DEFAULT_MAX_FILE_BYTES) -> LoadedModel:
    """Read a dcnviz model file (a path or its bytes) and build its model.

    The same reader as :func:`dcnviz.modelfile.open_model_file` (which also reads peer files and
    builds the model only when asked). Raises :class:`CheckpointError` naming what is wrong: not
    safetensors, truncated, not a dcnviz file, unknown format version, metadata that is not JSON,
    tensors that do not match the architecture in the metadata. Non-finite weights load, with a
    warning in ``warnings``.
    """
    from dcnviz.modelfile import open_model_file

    mf = open_model_file(source, format="dcnviz", max_bytes=max_bytes)
    return LoadedModel(model=mf.build_model(), meta=dict(mf.meta), sha256=mf.sha256, warnings=list(mf.warnings))
