"""Read tensors out of a torch zip checkpoint without running its pickle (issue 7, "no code execution").

``torch.load(weights_only=True)`` refuses checkpoint dicts that carry pickled objects, such as
RecBole's ``{"config": Config, "state_dict": ..., "other_parameter": ..., "optimizer": ...}``. This
module reads such files anyway, tensors only:

* the zip archive is opened with :mod:`zipfile` and checked first (member count, sizes, compression
  ratio: no decompression bombs), and every read is bounded;
* ``data.pkl`` is unpickled by :class:`RestrictedUnpickler`, whose ``find_class`` resolves **only**
  dcnviz's own tensor-rebuilding functions (which re-implement ``torch._utils._rebuild_tensor_v2``
  and friends with bounds checks) and a few inert containers. Every other global — ``os.system``,
  ``builtins.exec``, ``subprocess.Popen``, RecBole's ``Config`` class — becomes a freshly made
  :class:`Inert` placeholder type. The real object is never imported, never looked up, never
  called; REDUCE, NEWOBJ and BUILD on a placeholder only produce or update more inert records;
* ``persistent_load`` reads storages from the archive (``<root>/data/<key>``), checking that the
  record holds exactly the bytes the storage claims;
* tensors are rebuilt from those bytes only after their size, stride and offset were checked to lie
  inside the storage and under an element cap.

Nothing a rebuilt object exposes to the unpickler has behaviour: tensors travel as :class:`TensorRef`
records and dicts as :class:`SafeDict` until the pickle is done, so BUILD cannot reach
``Tensor.__setstate__``. Legacy (pre-1.6, non-zip) torch files are refused with a message asking for
``torch.save(model.state_dict(), path)`` in the zip format.
"""

from __future__ import annotations

import _compat_pickle
import io
import math
import pickle
import pickletools
import zipfile
import zlib
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import torch

from dcnviz.errors import CheckpointError

MAX_MEMBERS = 100_000  # zip entries beyond this are refused
MAX_PICKLE_BYTES = 64 * 1024 * 1024  # data.pkl (structure only; tensor data lives in storages)
MAX_RATIO = 50  # total uncompressed / compressed size beyond this is treated as a decompression bomb

# What zipfile raises on broken, encrypted or unsupported archives (zlib.error for corrupt deflate data).
ZIP_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    ValueError,
    OSError,
    EOFError,
    NotImplementedError,
    RuntimeError,
    KeyError,
    zlib.error,
)

# Legacy torch files begin with a protocol-2 pickle of this magic number (torch/serialization.py).
_LEGACY_MAGIC = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19"


@dataclass(frozen=True)
class StorageType:
    """Stand-in for ``torch.FloatStorage`` & co.: only says which dtype the storage bytes hold."""

    name: str
    dtype: torch.dtype

    @property
    def itemsize(self) -> int:
        return torch.empty((), dtype=self.dtype).element_size()


_STORAGE_TYPES = {
    "DoubleStorage": torch.float64,
    "FloatStorage": torch.float32,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
    "UntypedStorage": torch.uint8,
}


@dataclass
class Storage:
    """Bytes of one storage record, read from the archive."""

    key: str
    dtype: torch.dtype
    data: bytes

    _base: torch.Tensor | None = None

    @property
    def numel(self) -> int:
        return len(self.data) // torch.empty((), dtype=self.dtype).element_size()

    def base(self) -> torch.Tensor:
        """The storage as a flat tensor (made once, shared by every view of it)."""
        if self._base is None:
            self._base = torch.frombuffer(bytearray(self.data), dtype=self.dtype)  # (numel,)
        return self._base


@dataclass
class TensorRef:
    """A tensor rebuilt from the archive, wrapped so that pickle opcodes cannot reach its methods."""

    tensor: torch.Tensor

    def __setstate__(self, state: Any) -> None:  # BUILD on a tensor: ignored
        return None


class SafeDict(OrderedDict):  # type: ignore[type-arg]
    """The ``collections.OrderedDict`` the pickle asks for; BUILD on it is ignored."""

    def __setstate__(self, state: Any) -> None:
        return None


class Inert:
    """Placeholder for a refused global and for anything "made" from one. Never calls anything.

    Calling the placeholder type (REDUCE, NEWOBJ, INST) makes an :class:`Inert` instance that just
    remembers which global it stands for; calling that instance returns it again; BUILD, APPEND(S)
    and SETITEM(S) on it store nothing of consequence. Subclasses are made per refused global by
    :meth:`RestrictedUnpickler.find_class`.
    """

    global_name = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> Inert:
        return object.__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        return None

    def __setstate__(self, state: Any) -> None:
        return None

    def __call__(self, *args: Any, **kwargs: Any) -> Inert:
        """REDUCE on a placeholder *instance* (``getattr(__import__('os'), 'system')(...)``): still inert."""
        return self

    def __setitem__(self, key: Any, value: Any) -> None:
        return None

    def append(self, value: Any) -> None:
        return None

    def extend(self, values: Any) -> None:
        return None

    def __repr__(self) -> str:
        return f"<not loaded: {self.global_name}>"


def _inert_type(module: str, name: str) -> type[Inert]:
    return type("Inert", (Inert,), {"global_name": f"{module}.{name}", "__module__": __name__})


def _ints(value: Any, what: str) -> tuple[int, ...]:
    if not isinstance(value, tuple | list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise CheckpointError(f"tensor {what} must be a tuple of ints; got {type(value).__name__}")
    return tuple(int(v) for v in value)


def _ordered_dict(*args: Any) -> SafeDict:
    """``collections.OrderedDict``, from nothing or from a list of pairs only."""
    out = SafeDict()
    if args:
        items = args[0]
        if len(args) > 1 or not isinstance(items, list | tuple):
            raise CheckpointError("OrderedDict in the pickle must be built from a list of pairs")
        for pair in items:
            if not isinstance(pair, tuple | list) or len(pair) != 2:
                raise CheckpointError("OrderedDict in the pickle must be built from a list of pairs")
            out[pair[0]] = pair[1]
    return out


def _torch_size(*args: Any) -> tuple[int, ...]:
    return _ints(args[0] if args else (), "Size")


class _Marker:
    """A type the pickle may name (``torch.Tensor``, ``torch.nn.Parameter``) that is never instantiated."""


# Globals the pickle may name. Strings name RestrictedUnpickler methods (bounds-checked
# re-implementations of torch's rebuilders); everything else here is data or harmless.
ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("torch._utils", "_rebuild_tensor_v2"): "_rebuild_tensor_v2",
    ("torch._utils", "_rebuild_tensor"): "_rebuild_tensor",
    ("torch._utils", "_rebuild_parameter"): "_rebuild_parameter",
    ("torch._utils", "_rebuild_parameter_with_state"): "_rebuild_parameter",
    ("torch._tensor", "_rebuild_from_type_v2"): "_rebuild_from_type_v2",
    ("collections", "OrderedDict"): _ordered_dict,
    ("torch", "Size"): _torch_size,
    ("torch", "Tensor"): _Marker,
    ("torch.nn.parameter", "Parameter"): _Marker,
    **{("torch", name): StorageType(name, dtype) for name, dtype in _STORAGE_TYPES.items()},
    **{("torch.storage", name): StorageType(name, dtype) for name, dtype in _STORAGE_TYPES.items()},
}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only :data:`ALLOWED_GLOBALS`; everything else becomes :class:`Inert`.

    ``budget`` bounds the bytes of tensors it may materialise (views of one storage included).
    """

    def __init__(self, pkl: bytes, archive: _Archive, *, budget: int) -> None:
        super().__init__(io.BytesIO(pkl))
        self._archive = archive
        self._storages: dict[str, Storage] = {}
        self._budget = budget
        self.refused: list[str] = []  # fully qualified names of the globals that were *not* resolved

    def find_class(self, module: str, name: str) -> Any:
        allowed = ALLOWED_GLOBALS.get((module, name))
        if isinstance(allowed, str):
            return getattr(self, allowed)
        if allowed is not None:
            return allowed
        # protocol-2 pickles use Python 2 names (__builtin__.exec, commands.Popen): say the Python 3 ones
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        else:
            module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        qual = f"{module}.{name}"
        if qual not in self.refused:
            self.refused.append(qual)
        return _inert_type(module, name)

    def persistent_load(self, pid: Any) -> Any:
        if not isinstance(pid, tuple) or len(pid) != 5 or pid[0] != "storage":
            raise CheckpointError(f"unsupported persistent id in data.pkl: {str(pid)[:80]}")
        _, storage_type, key, _location, numel = pid
        if not isinstance(storage_type, StorageType):
            return _inert_type("torch", "storage")()
        if not isinstance(key, str) or not isinstance(numel, int) or isinstance(numel, bool) or numel < 0:
            raise CheckpointError(f"malformed storage reference in data.pkl: {str(pid)[:80]}")
        cached = self._storages.get(key)
        if cached is not None:
            if cached.dtype != storage_type.dtype or cached.numel != numel:
                raise CheckpointError(f"storage {key!r} is referenced with two different types or sizes")
            return cached
        expected = numel * storage_type.itemsize
        if expected > self._archive.budget:
            raise CheckpointError(
                f"storage {key!r} claims {numel} elements ({expected} bytes), over the "
                f"{self._archive.budget}-byte read budget left"
            )
        data = self._archive.read(f"data/{key}", limit=expected)
        if len(data) != expected:
            raise CheckpointError(
                f"storage {key!r} should hold {numel} {storage_type.name} elements ({expected} bytes); "
                f"the archive record has {len(data)} bytes"
            )
        storage = Storage(key=key, dtype=storage_type.dtype, data=data)
        self._storages[key] = storage
        return storage

    # --- bounds-checked stand-ins for torch's rebuilders -------------------------------------
    def _rebuild_tensor_v2(
        self,
        storage: Any,
        storage_offset: Any,
        size: Any,
        stride: Any,
        requires_grad: Any = False,
        backward_hooks: Any = None,
        metadata: Any = None,
    ) -> TensorRef | Inert:
        """``torch._utils._rebuild_tensor_v2`` with every index checked (grad flag, hooks, metadata ignored)."""
        if isinstance(storage, Inert):
            return _inert_type("torch._utils", "_rebuild_tensor_v2")()
        if not isinstance(storage, Storage):
            raise CheckpointError(f"tensor storage must come from the archive; got {type(storage).__name__}")
        if not isinstance(storage_offset, int) or isinstance(storage_offset, bool) or storage_offset < 0:
            raise CheckpointError(f"tensor storage offset must be an int >= 0; got {storage_offset!r}")
        shape, strides = _ints(size, "size"), _ints(stride, "stride")
        if len(shape) != len(strides) or len(shape) > 16:
            raise CheckpointError(f"tensor size {list(shape)[:17]} and stride {list(strides)[:17]} do not match")
        if any(s < 0 for s in shape) or any(s < 0 for s in strides):
            raise CheckpointError(f"tensor size {list(shape)} and stride {list(strides)} must be non-negative")
        numel = math.prod(shape)
        nbytes = numel * torch.empty((), dtype=storage.dtype).element_size()
        if nbytes > self._budget:
            raise CheckpointError(
                f"tensor of size {list(shape)} needs {nbytes} bytes, over what is left of the load budget "
                f"({self._budget} bytes)"
            )
        self._budget -= nbytes
        if not numel:
            return TensorRef(torch.empty(shape, dtype=storage.dtype))
        last = storage_offset + sum((n - 1) * s for n, s in zip(shape, strides, strict=True))
        if last >= storage.numel:
            raise CheckpointError(
                f"tensor of size {list(shape)}, stride {list(strides)}, offset {storage_offset} reaches element "
                f"{last}, past the end of its {storage.numel}-element storage {storage.key!r}"
            )
        return TensorRef(torch.as_strided(storage.base(), shape, strides, storage_offset).clone())

    def _rebuild_tensor(self, storage: Any, storage_offset: Any, size: Any, stride: Any) -> TensorRef | Inert:
        """Older ``torch._utils._rebuild_tensor`` (no grad flag)."""
        return self._rebuild_tensor_v2(storage, storage_offset, size, stride)

    def _rebuild_parameter(self, data: Any, *rest: Any) -> Any:
        """``torch._utils._rebuild_parameter[_with_state]``: a Parameter is read as its data tensor."""
        return data if isinstance(data, TensorRef) else _inert_type("torch._utils", "_rebuild_parameter")()

    def _rebuild_from_type_v2(self, func: Any, new_type: Any, args: Any, state: Any) -> Any:
        """``torch._tensor._rebuild_from_type_v2``: only when ``func`` is one of these rebuilders."""
        mine = (self._rebuild_tensor_v2, self._rebuild_tensor, self._rebuild_parameter)
        if any(func == m for m in mine) and isinstance(args, tuple):
            return func(*args)
        return _inert_type("torch._tensor", "_rebuild_from_type_v2")()


class _Archive:
    """A checked torch zip archive: one root folder holding ``data.pkl`` and ``data/<key>`` records."""

    def __init__(self, data: bytes, *, max_bytes: int) -> None:
        try:
            self.zf = zipfile.ZipFile(io.BytesIO(data))
            infos = self.zf.infolist()
        except ZIP_ERRORS as e:
            raise CheckpointError(f"not a readable zip archive: {e}") from None
        check_zip_members(infos, compressed_size=len(data), max_bytes=max_bytes)
        pkls = [i.filename for i in infos if i.filename.endswith("data.pkl") and i.filename.count("/") == 1]
        if len(pkls) != 1:
            raise CheckpointError(f"not a torch checkpoint archive: expected one '<name>/data.pkl', found {len(pkls)}")
        self.root = pkls[0][: -len("data.pkl")]
        self.names = {i.filename for i in infos}
        self.budget = max_bytes  # bytes still allowed to be read (storages and data.pkl together)

    def read(self, name: str, *, limit: int) -> bytes:
        """Read record ``<root>/<name>``: at most ``limit + 1`` bytes, and never past the read budget."""
        full = self.root + name
        if full not in self.names:
            raise CheckpointError(f"the archive has no record {full!r}")
        size = self.zf.getinfo(full).file_size
        if min(size, limit) > self.budget:
            raise CheckpointError(
                f"record {full!r} ({size} bytes) is over the remaining {self.budget}-byte read budget"
            )
        try:
            with self.zf.open(full) as f:
                out = f.read(min(limit, self.budget) + 1)
        except ZIP_ERRORS as e:
            raise CheckpointError(f"cannot read {full!r} from the archive: {e}") from None
        self.budget -= len(out)
        return out


def check_zip_members(infos: list[zipfile.ZipInfo], *, compressed_size: int, max_bytes: int) -> None:
    """Refuse archives whose entries could blow up memory: too many, too large, or too compressible."""
    if len(infos) > MAX_MEMBERS:
        raise CheckpointError(f"zip archive has {len(infos)} entries, more than the {MAX_MEMBERS} allowed")
    total = 0
    for info in infos:
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise CheckpointError(f"zip entry {info.filename!r} uses unsupported compression {info.compress_type}")
        total += info.file_size
    if total > max_bytes:
        raise CheckpointError(f"zip archive unpacks to {total} bytes, over the {max_bytes}-byte limit")
    if total > MAX_RATIO * compressed_size + (1 << 20):
        raise CheckpointError(
            f"zip archive unpacks to {total} bytes from {compressed_size}: a compression ratio over "
            f"{MAX_RATIO} looks like a decompression bomb"
        )


@dataclass
class SafeLoadResult:
    """What :func:`load_torch_zip` found: the pickle's root object with tensors as :class:`TensorRef`."""

    root: Any
    refused_globals: list[str] = field(default_factory=list)  # globals turned into inert placeholders


def is_legacy_torch(data: bytes) -> bool:
    """True for a pre-1.6 (non-zip) ``torch.save`` file."""
    return data.startswith(_LEGACY_MAGIC)


LEGACY_MESSAGE = (
    "this is a legacy (non-zip) torch file, which dcnviz does not read because its loader would have to "
    "trust sizes written in the pickle; re-save it in the zip format with "
    "torch.save(model.state_dict(), 'model.pt') (the default since PyTorch 1.6)"
)


def check_opcodes(pkl: bytes) -> None:
    """Walk the pickle's opcodes once (:func:`pickletools.genops`) before it is unpickled.

    The C unpickler allocates a counted bytes argument (``BINBYTES8``, ``BYTEARRAY8``) at the length
    the pickle *claims* before reading it, so a flipped length byte asks for up to 2**64 bytes (a
    ``MemoryError``, or a huge allocation under a lower claim). ``genops`` reads every argument with
    bounded reads and stops at the first opcode that is unknown or runs past the end, which turns
    those files into a clear error instead.
    """
    try:
        for _ in pickletools.genops(pkl):
            pass
    except (ValueError, EOFError, OverflowError) as e:  # UnicodeDecodeError is a ValueError
        raise CheckpointError(f"data.pkl is not a valid pickle: {str(e)[:200]}") from None


def load_torch_zip(data: bytes, *, max_bytes: int) -> SafeLoadResult:
    """Unpickle a torch zip checkpoint with :class:`RestrictedUnpickler`; never runs its globals.

    Raises :class:`CheckpointError` for legacy files, broken archives, bombs, malformed pickles and
    storages that do not match their records.
    """
    if is_legacy_torch(data):
        raise CheckpointError(LEGACY_MESSAGE)
    archive = _Archive(data, max_bytes=max_bytes)
    order = archive.names
    if f"{archive.root}byteorder" in order:
        byteorder = archive.read("byteorder", limit=16).decode("ascii", "replace").strip()
        if byteorder != "little":
            raise CheckpointError(f"the archive's byte order is {byteorder!r}; dcnviz reads little-endian files only")
    pkl = archive.read("data.pkl", limit=MAX_PICKLE_BYTES)
    if len(pkl) > MAX_PICKLE_BYTES:
        raise CheckpointError(f"data.pkl is over {MAX_PICKLE_BYTES} bytes; too large to be a checkpoint's structure")
    check_opcodes(pkl)
    unpickler = RestrictedUnpickler(pkl, archive, budget=max_bytes)
    try:
        root = unpickler.load()
    except CheckpointError:
        raise
    except (
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        TypeError,
        AttributeError,
        IndexError,
        KeyError,
        OverflowError,
        MemoryError,
        RecursionError,
        UnicodeDecodeError,
    ) as e:
        raise CheckpointError(f"data.pkl is not a valid checkpoint pickle: {type(e).__name__}: {e}") from None
    return SafeLoadResult(root=root, refused_globals=list(unpickler.refused))


def describe(value: Any) -> str:
    """Short description of a skipped checkpoint entry (never calls anything on inert objects)."""
    if isinstance(value, Inert):
        return f"a pickled {value.global_name} object, not loaded"
    if isinstance(value, TensorRef):
        return f"a tensor {list(value.tensor.shape)}"
    if isinstance(value, dict):
        return f"a dict of {len(value)} entries, not read"
    if isinstance(value, list | tuple):
        return f"a {type(value).__name__} of {len(value)} items, not read"
    return f"a value of type {type(value).__name__}"
