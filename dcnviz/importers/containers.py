"""Read a weights file of any supported container into a flat ``{key: tensor}`` mapping.

The container is recognised from the file's first bytes, never from its name:

* torch zip (``.pt``/``.pth``/``.bin`` since PyTorch 1.6): checked by :mod:`dcnviz.importers.safe_pickle`
  (entry count, sizes, compression ratio), then ``torch.load(weights_only=True)``; a checkpoint dict
  that torch refuses (pickled objects, e.g. RecBole's Config) is read tensor-only by
  :func:`dcnviz.importers.safe_pickle.load_torch_zip`, whose pickle runs nothing;
* legacy (non-zip) torch files and bare pickles: refused;
* safetensors: :func:`dcnviz.checkpoint.read_safetensors` (validated header);
* ``.npz``: every member's ``.npy`` header is checked against its size before ``np.load``
  (``allow_pickle=False``);
* HDF5 (Keras ``.weights.h5``): read with h5py when installed, dataset sizes checked before reading.

From a checkpoint dict the tensors of its ``state_dict`` (or ``model_state_dict``/``model``/``net``
entry) and its top-level tensors are kept; every other entry is listed in ``notes`` as skipped.
"""

from __future__ import annotations

import io
import math
import pickle
import struct
import tokenize
import warnings
import zipfile
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from dcnviz.checkpoint import read_safetensors
from dcnviz.errors import CheckpointError, DcnvizError
from dcnviz.importers import safe_pickle
from dcnviz.untrusted import MAX_NAME_CHARS, MAX_TENSORS, check_shape, clip, shown, shown_list

ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
STATE_DICT_KEYS = ("state_dict", "model_state_dict", "model", "net")
MAX_H5_OBJECTS = 100_000
H5_BUILTIN_FILTERS = {1, 2, 3, 4, 5, 6}  # deflate, shuffle, fletcher32, szip, nbit, scaleoffset
# dtypes read (as NumPy); bfloat16 is widened to float32, which NumPy has
_NUMPY_OF_TORCH = {
    torch.float64: np.float64,
    torch.float32: np.float32,
    torch.float16: np.float16,
    torch.bfloat16: np.float32,
    torch.int64: np.int64,
    torch.int32: np.int32,
    torch.int16: np.int16,
    torch.int8: np.int8,
    torch.uint8: np.uint8,
    torch.bool: np.bool_,
}


@dataclass
class TensorFile:
    """Tensors read from one file, in file order."""

    tensors: dict[str, Any]  # key -> NumPy array, whatever the container (torch tensors only while reading)
    container: str  # safetensors | torch zip | torch zip (restricted unpickler) | npz | keras h5
    metadata: dict[str, str] = field(default_factory=dict)  # safetensors header metadata
    notes: list[str] = field(default_factory=list)  # what was skipped, and why
    ordered: bool = True  # False when the container sorts keys (safetensors): x0 order may be lost


def container_of(data: bytes) -> str:
    """``"zip"``, ``"hdf5"`` or ``"safetensors"``, recognised from the first bytes; anything else is refused."""
    if len(data) == 0:
        raise CheckpointError("the file is empty")
    if data.startswith(ZIP_MAGIC):
        return "zip"
    if data.startswith(HDF5_MAGIC):
        return "hdf5"
    if safe_pickle.is_legacy_torch(data):
        raise CheckpointError(safe_pickle.LEGACY_MESSAGE)
    # safetensors before the pickle check: a header length whose low byte is 0x80 (e.g. 128) looks like
    # a pickle protocol marker.
    if len(data) >= 9 and data[8:9] == b"{":
        return "safetensors"
    if data[:1] == b"\x80" and len(data) > 1 and data[1] <= pickle.HIGHEST_PROTOCOL:
        raise CheckpointError(
            "this is a bare pickle, not a torch zip archive or safetensors file; dcnviz never unpickles "
            "uploads: save the weights with torch.save(model.state_dict(), 'model.pt') or safetensors"
        )
    raise CheckpointError(
        "unrecognised file: not a torch zip archive (.pt/.pth/.bin), safetensors, .npz or HDF5 (.weights.h5)"
    )


def read_tensor_file(data: bytes, *, max_bytes: int) -> TensorFile:
    """Bytes of a weights file → :class:`TensorFile` of NumPy arrays; :class:`CheckpointError` names a problem.

    This runs the parsers of the container in *this* process; :func:`dcnviz.modelfile.open_model_file`
    runs it for zip and HDF5 files in an isolated worker (:mod:`dcnviz.isolation`).
    """
    kind = container_of(data)
    if kind == "zip":
        tf = _read_zip(data, max_bytes=max_bytes)
    elif kind == "hdf5":
        tf = _read_h5(data)
    else:
        tensors, metadata = read_safetensors(data)
        tf = TensorFile(tensors=dict(tensors), container="safetensors", metadata=metadata, ordered=False)
    long = next((k for k in tf.tensors if len(k) > MAX_NAME_CHARS), None)
    if long is not None:
        raise CheckpointError(
            f"tensor name {shown(long)} is longer than the {MAX_NAME_CHARS:,} characters dcnviz reads"
        )
    return tf


def _read_zip(data: bytes, *, max_bytes: int) -> TensorFile:
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        infos = zf.infolist()
    except safe_pickle.ZIP_ERRORS as e:
        raise CheckpointError(f"not a readable zip archive: {clip(str(e), 200)}") from None
    safe_pickle.check_zip_members(infos, compressed_size=len(data), max_bytes=max_bytes)
    names = [i.filename for i in infos]
    if any(n.endswith("data.pkl") for n in names):
        return _read_torch(data, max_bytes=max_bytes)
    if names and all(n.endswith(".npy") for n in names):
        return _read_npz(zf, infos)
    raise CheckpointError(f"zip archive is neither a torch checkpoint nor an .npz; it holds {shown_list(names)}")


def _read_torch(data: bytes, *, max_bytes: int) -> TensorFile:
    """A torch zip checkpoint: pre-scanned (:func:`dcnviz.importers.safe_pickle.prescan_torch_zip`), then torch's
    weights-only reader, or dcnviz's restricted one for files torch refuses."""
    scan = safe_pickle.prescan_torch_zip(data, max_bytes=max_bytes)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            warnings.filterwarnings("ignore", category=UserWarning, module="torch")
            obj = torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
    except pickle.UnpicklingError:
        # weights_only refused a global (a pickled object): read tensors only, running nothing.
        result = safe_pickle.load_torch_zip(data, max_bytes=max_bytes)
        out = extract_state_dict(result.root, tensor_of=_tensor_ref)
        if result.refused_globals:
            out.notes.append(
                "the pickle names objects that were not loaded (never imported or called): "
                + ", ".join(clip(g, 80) for g in result.refused_globals[:8])
                + (" …" if len(result.refused_globals) > 8 else "")
            )
        out.container = "torch zip (read tensor-only by dcnviz's restricted unpickler)"
        return _as_arrays(out, scan)
    except DcnvizError:
        raise
    except (  # torch's own parse errors (its weights-only unpickler validates with assert)
        AssertionError,
        NotImplementedError,
        zlib.error,
        RuntimeError,
        EOFError,
        ValueError,
        TypeError,
        KeyError,
        IndexError,
        AttributeError,
        OSError,
        OverflowError,
        struct.error,  # a short read inside torch's weights-only unpickler
        MemoryError,
        RecursionError,
        zipfile.BadZipFile,
        UnicodeDecodeError,
    ) as e:
        raise CheckpointError(
            f"torch could not read the checkpoint archive: {type(e).__name__}: {clip(str(e), 300)}"
        ) from None
    out = extract_state_dict(obj, tensor_of=lambda v: v if isinstance(v, torch.Tensor) else None)
    out.container = "torch zip"
    return _as_arrays(out, scan)


def _tensor_ref(v: Any) -> torch.Tensor | None:
    return v.tensor if isinstance(v, safe_pickle.TensorRef) else None


def _tensor_kind(t: torch.Tensor) -> str | None:
    """What about a loaded tensor dcnviz does not read, or None for a dense CPU tensor of a known dtype."""
    if t.is_nested:
        return "a nested tensor"
    if t.layout != torch.strided:
        return f"a sparse tensor (layout {t.layout})"
    if t.device.type != "cpu":
        return f"a tensor on the {t.device.type} device" + (" (shape only, no values)" if t.is_meta else "")
    if t.is_quantized:
        return "a quantized tensor"
    if type(t) not in (torch.Tensor, torch.nn.Parameter):
        return f"a tensor subclass ({type(t).__name__})"
    if t.dtype not in _NUMPY_OF_TORCH:
        return f"a tensor of dtype {t.dtype}"
    return None


def _as_arrays(tf: TensorFile, scan: safe_pickle.PickleScan) -> TensorFile:
    """Loaded torch tensors → NumPy arrays, after checking each is a dense CPU tensor and that together
    they view no more than the file holds (the elements an analysis would touch, not the bytes stored)."""
    archive_bytes = sum(scan.storages.values())
    budget = safe_pickle.view_budget(archive_bytes)
    viewed = 0
    for k, t in tf.tensors.items():
        what = _tensor_kind(t)
        if what is not None:
            raise CheckpointError(f"tensor {shown(k)} is {what}; dcnviz reads dense CPU tensors only")
        check_shape(t.shape, f"tensor {shown(k)}")
        viewed += t.numel() * t.element_size()
        if viewed > budget:
            raise CheckpointError(
                f"the checkpoint's tensors view more than {budget:,} bytes of values from storages of "
                f"{archive_bytes:,} bytes: views that repeat stored values (stride 0) are refused"
            )
    arrays: dict[str, np.ndarray] = {}
    for k, t in tf.tensors.items():
        t = t.detach()
        if t.dtype == torch.bfloat16:
            t = t.float()
        arrays[k] = np.ascontiguousarray(t.numpy())  # a view with stride 0 becomes the values it shows
    tf.tensors = arrays
    return tf


def extract_state_dict(obj: Any, *, tensor_of: Any) -> TensorFile:
    """Tensors of a state dict, or of a checkpoint dict's ``state_dict`` entry plus its top-level tensors."""
    if not isinstance(obj, dict):
        what = "a single tensor" if tensor_of(obj) is not None else f"a {type(obj).__name__}"
        raise CheckpointError(
            f"the checkpoint holds {what}, not a state dict; save it with torch.save(model.state_dict(), path)"
        )
    tensors: dict[str, Any] = {}
    notes: list[str] = []
    skipped: list[str] = []
    inner_key = next(
        (
            k
            for k in STATE_DICT_KEYS
            if isinstance(obj.get(k), dict) and any(tensor_of(v) is not None for v in obj[k].values())
        ),
        None,
    )
    if inner_key is not None:
        for k, v in obj[inner_key].items():
            t = tensor_of(v)
            if isinstance(k, str) and t is not None:
                tensors[k] = t
            else:
                skipped.append(f"{inner_key}[{shown(_key_text(k), 40)}] ({safe_pickle.describe(v)})")
    for k, v in obj.items():
        if k == inner_key:
            continue
        t = tensor_of(v)
        if isinstance(k, str) and t is not None and k not in tensors:
            tensors[k] = t
        else:
            skipped.append(f"{shown(_key_text(k), 40)} ({safe_pickle.describe(v)})")
    if len(tensors) > MAX_TENSORS:
        raise CheckpointError(f"the checkpoint holds {len(tensors):,} tensors, more than the {MAX_TENSORS:,} read")
    if inner_key is not None:
        notes.append(f"read the tensors of the checkpoint's {inner_key!r} entry")
    if skipped:
        notes.append(
            f"skipped {len(skipped)} non-tensor entr{'y' if len(skipped) == 1 else 'ies'}: "
            + "; ".join(skipped[:8])
            + (" …" if len(skipped) > 8 else "")
        )
    if not tensors:
        raise CheckpointError("the checkpoint holds no tensors" + (f" ({notes[-1]})" if notes else ""))
    return TensorFile(tensors=tensors, container="torch zip", notes=notes)


def _key_text(k: Any) -> str:
    """A checkpoint key as text for a note: strings as they are, anything else by its type (never its repr)."""
    return k if isinstance(k, str) else f"<{type(k).__name__}>"


def _read_npz(zf: zipfile.ZipFile, infos: list[zipfile.ZipInfo]) -> TensorFile:
    if len(infos) > MAX_TENSORS:
        raise CheckpointError(f"the .npz holds {len(infos):,} arrays, more than the {MAX_TENSORS:,} dcnviz reads")
    tensors: dict[str, Any] = {}
    for info in infos:
        name = info.filename[: -len(".npy")]
        member = shown(info.filename)
        try:
            with zf.open(info) as f:
                version = np.lib.format.read_magic(f)
                if version == (1, 0):
                    shp, fortran, dtype = np.lib.format.read_array_header_1_0(f)
                elif version in ((2, 0), (3, 0)):
                    shp, fortran, dtype = np.lib.format.read_array_header_2_0(f)
                else:
                    raise CheckpointError(f"npz member {member}: unsupported .npy version {version}")
                header_len = f.tell()
                if dtype.hasobject:
                    raise CheckpointError(f"npz member {member} holds Python objects; only numbers are read")
                if dtype.kind not in "fiub":
                    raise CheckpointError(f"npz member {member} has dtype {dtype}; weights must be numbers")
                if any(n < 0 for n in shp):
                    raise CheckpointError(f"npz member {member} has a negative shape {shown(list(shp), 80)}")
                check_shape(shp, f"npz member {member}")
                nbytes = math.prod(shp) * dtype.itemsize
                if header_len + nbytes != info.file_size:
                    raise CheckpointError(
                        f"npz member {member}: header says shape {list(shp)} of {dtype} ({nbytes} bytes) "
                        f"but the member holds {info.file_size - header_len}"
                    )
                raw = f.read(nbytes)
        except CheckpointError:
            raise
        except (
            *safe_pickle.ZIP_ERRORS,
            SyntaxError,
            TypeError,
            tokenize.TokenError,
            RecursionError,
            MemoryError,
        ) as e:  # numpy parses the header with tokenize and ast.literal_eval
            raise CheckpointError(f"npz member {member} is not a valid .npy array: {clip(str(e), 200)}") from None
        arr = np.frombuffer(raw, dtype=dtype)
        tensors[name] = arr.reshape(shp, order="F" if fortran else "C")
    return TensorFile(tensors=tensors, container="npz")


def _read_h5(data: bytes) -> TensorFile:
    """Numeric datasets of an HDF5 file, refusing anything that would read outside the file or run a plugin.

    Only hard-linked datasets are visited (soft and external links are not followed); datasets whose
    raw data lives in external files (``H5Pset_external``, e.g. pointing at a local file), virtual
    datasets (mapped from other files) and datasets with non-built-in filters (which HDF5 would load
    as plugins) are refused; a dataset's size is checked before it is read (decompression bombs).
    """
    try:
        import h5py  # type: ignore[import-untyped, unused-ignore]
    except ImportError:
        raise CheckpointError(
            "this is an HDF5 file (Keras .weights.h5); reading it needs the h5py package "
            "(pip install h5py), or export the Cross weights to .npz"
        ) from None
    tensors: dict[str, Any] = {}
    try:
        with h5py.File(io.BytesIO(data), "r") as f:
            items: list[tuple[str, Any]] = []

            def visit(name: str, obj: Any) -> None:
                if len(items) > MAX_H5_OBJECTS:
                    raise CheckpointError(f"HDF5 file has more than {MAX_H5_OBJECTS} objects")
                if isinstance(obj, h5py.Dataset):
                    items.append((name, obj))

            f.visititems(visit)
            if len(items) > MAX_TENSORS:
                raise CheckpointError(f"HDF5 file has {len(items):,} datasets, more than the {MAX_TENSORS:,} read")
            for name, ds in items:
                if ds.dtype.kind not in "fiub":
                    continue
                check_shape(ds.shape or (), f"HDF5 dataset {shown(name)}")
                if ds.is_virtual:
                    raise CheckpointError(
                        f"HDF5 dataset {shown(name)} is a virtual dataset mapped from other files; refused"
                    )
                dcpl = ds.id.get_create_plist()
                if dcpl.get_external_count() > 0:
                    raise CheckpointError(f"HDF5 dataset {shown(name)} keeps its data in an external file; refused")
                filters = [dcpl.get_filter(i)[0] for i in range(dcpl.get_nfilters())]
                if any(code not in H5_BUILTIN_FILTERS for code in filters):
                    raise CheckpointError(f"HDF5 dataset {shown(name)} needs filter plugin(s) {filters}; refused")
                nbytes = math.prod(ds.shape or ()) * ds.dtype.itemsize
                if nbytes > 8 * len(data) + (1 << 20):
                    raise CheckpointError(
                        f"HDF5 dataset {shown(name)} claims {nbytes} bytes, far more than the file holds"
                    )
                key = name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name)
                tensors[key] = np.asarray(ds[()])
    except DcnvizError:
        raise
    except Exception as e:  # h5py raises OSError, KeyError, ValueError, RuntimeError... for broken files
        raise CheckpointError(f"could not read the HDF5 file: {type(e).__name__}: {clip(str(e), 200)}") from None
    if not tensors:
        raise CheckpointError("the HDF5 file holds no numeric datasets")
    return TensorFile(tensors=tensors, container="keras h5")
