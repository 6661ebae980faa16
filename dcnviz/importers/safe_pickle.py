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
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from dcnviz.errors import CheckpointError
from dcnviz.untrusted import MAX_TENSORS, check_shape, clip, shown

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


class _NoBuild:
    """Mixin: ``BUILD`` (``__setstate__``) on this object is refused, so a pickle cannot rewrite it."""

    __slots__ = ()

    def __setstate__(self, state: Any) -> None:
        raise CheckpointError(f"data.pkl applies BUILD to {type(self).__name__}, which a checkpoint never does")


class StorageType(_NoBuild):
    """Stand-in for ``torch.FloatStorage`` & co.: only says which dtype the storage bytes hold.

    Made afresh for every load (:meth:`RestrictedUnpickler.find_class`), immutable, and refusing BUILD:
    no pickle can change what the next load sees.
    """

    __slots__ = ("dtype", "name")
    name: str
    dtype: torch.dtype

    def __init__(self, name: str, dtype: torch.dtype) -> None:
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "dtype", dtype)

    def __setattr__(self, key: str, value: Any) -> None:
        raise CheckpointError(f"data.pkl tries to change the storage type {self.name}")

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


class Storage(_NoBuild):
    """Bytes of one storage record, read from the archive (immutable; BUILD on it is refused)."""

    __slots__ = ("_base", "data", "dtype", "key")
    key: str
    dtype: torch.dtype
    data: bytes
    _base: torch.Tensor | None

    def __init__(self, key: str, dtype: torch.dtype, data: bytes) -> None:
        object.__setattr__(self, "key", key)
        object.__setattr__(self, "dtype", dtype)
        object.__setattr__(self, "data", data)
        object.__setattr__(self, "_base", None)

    def __setattr__(self, key: str, value: Any) -> None:
        raise CheckpointError(f"data.pkl tries to change the storage record {shown(self.key)}")

    @property
    def numel(self) -> int:
        return len(self.data) // torch.empty((), dtype=self.dtype).element_size()

    def base(self) -> torch.Tensor:
        """The storage as a flat tensor (made once, shared by every view of it)."""
        if self._base is None:
            object.__setattr__(self, "_base", torch.frombuffer(bytearray(self.data), dtype=self.dtype))  # (numel,)
        return self._base  # type: ignore[return-value]


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


class _Callable(_NoBuild):
    """A per-load wrapper around one allowed function: the pickle can call it, never rewrite it.

    BUILD on a bare function (or on a bound method, whose ``__dict__`` is its function's) would change
    that function for the whole process; the wrapper is fresh per load and refuses BUILD.
    """

    __slots__ = ("fn", "qual")
    qual: str
    fn: Any

    def __init__(self, qual: str, fn: Any) -> None:
        object.__setattr__(self, "qual", qual)
        object.__setattr__(self, "fn", fn)

    def __setattr__(self, key: str, value: Any) -> None:
        raise CheckpointError(f"data.pkl tries to change {self.qual}")

    def __call__(self, *args: Any) -> Any:
        return self.fn(*args)


# Globals the pickle may name. Strings name RestrictedUnpickler methods (bounds-checked
# re-implementations of torch's rebuilders); functions are wrapped per load (:class:`_Callable`);
# the storage types and markers are made afresh per load.
ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("torch._utils", "_rebuild_tensor_v2"): "_rebuild_tensor_v2",
    ("torch._utils", "_rebuild_tensor"): "_rebuild_tensor",
    ("torch._utils", "_rebuild_parameter"): "_rebuild_parameter",
    ("torch._utils", "_rebuild_parameter_with_state"): "_rebuild_parameter",
    ("torch._tensor", "_rebuild_from_type_v2"): "_rebuild_from_type_v2",
    ("collections", "OrderedDict"): _ordered_dict,
    ("torch", "Size"): _torch_size,
    ("torch", "Tensor"): "marker",
    ("torch.nn.parameter", "Parameter"): "marker",
    **{("torch", name): dtype for name, dtype in _STORAGE_TYPES.items()},
    **{("torch.storage", name): dtype for name, dtype in _STORAGE_TYPES.items()},
}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only :data:`ALLOWED_GLOBALS`; everything else becomes :class:`Inert`.

    Every object it hands the pickle is made for this load alone (a fresh storage type, a fresh
    wrapper of each allowed function, a fresh marker class), so nothing one file does with
    ``BUILD`` reaches another load. ``budget`` bounds the bytes of tensors it may materialise
    (views of one storage included).
    """

    def __init__(self, pkl: bytes, archive: _Archive, *, budget: int) -> None:
        super().__init__(io.BytesIO(pkl))
        self._archive = archive
        self._storages: dict[str, Storage] = {}
        self._budget = budget
        self._resolved: dict[tuple[str, str], Any] = {}
        self.refused: list[str] = []  # fully qualified names of the globals that were *not* resolved

    def find_class(self, module: str, name: str) -> Any:
        key = (module, name)
        if key in self._resolved:
            return self._resolved[key]
        allowed = ALLOWED_GLOBALS.get(key)
        qual = f"{module}.{name}"
        if allowed is not None:
            if allowed == "marker":
                out: Any = type(name, (), {"__module__": __name__})  # a type that is never instantiated
            elif isinstance(allowed, str):
                out = _Callable(qual, getattr(self, allowed))
            elif isinstance(allowed, torch.dtype):
                out = StorageType(name, allowed)
            else:
                out = _Callable(qual, allowed)
            self._resolved[key] = out
            return out
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
            raise CheckpointError(f"unsupported persistent id in data.pkl: {clip(str(pid), 120)}")
        _, storage_type, key, _location, numel = pid
        if not isinstance(storage_type, StorageType):
            return _inert_type("torch", "storage")()
        if not isinstance(key, str) or not isinstance(numel, int) or isinstance(numel, bool) or numel < 0:
            raise CheckpointError(f"malformed storage reference in data.pkl: {clip(str(pid), 120)}")
        cached = self._storages.get(key)
        if cached is not None:
            if cached.dtype != storage_type.dtype or cached.numel != numel:
                raise CheckpointError(f"storage {shown(key)} is referenced with two different types or sizes")
            return cached
        expected = numel * storage_type.itemsize
        if expected > self._archive.budget:
            raise CheckpointError(
                f"storage {shown(key)} claims {numel} elements ({expected} bytes), over the "
                f"{self._archive.budget}-byte read budget left"
            )
        data = self._archive.read(f"data/{key}", limit=expected)
        if len(data) != expected:
            raise CheckpointError(
                f"storage {shown(key)} should hold {numel} {storage_type.name} elements ({expected} bytes); "
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
            raise CheckpointError(f"tensor storage offset must be an int >= 0; got {shown(storage_offset, 40)}")
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
            check_shape(shape, "a tensor in data.pkl")
            return TensorRef(torch.empty(shape, dtype=storage.dtype))
        last = storage_offset + sum((n - 1) * s for n, s in zip(shape, strides, strict=True))
        if last >= storage.numel:
            raise CheckpointError(
                f"tensor of size {list(shape)}, stride {list(strides)}, offset {storage_offset} reaches element "
                f"{last}, past the end of its {storage.numel}-element storage {shown(storage.key)}"
            )
        return TensorRef(torch.as_strided(storage.base(), shape, strides, storage_offset).clone())

    def _rebuild_tensor(self, storage: Any, storage_offset: Any, size: Any, stride: Any) -> TensorRef | Inert:
        """Older ``torch._utils._rebuild_tensor`` (no grad flag)."""
        return self._rebuild_tensor_v2(storage, storage_offset, size, stride)

    def _rebuild_parameter(self, data: Any, *rest: Any) -> Any:
        """``torch._utils._rebuild_parameter[_with_state]``: a Parameter is read as its data tensor."""
        return data if isinstance(data, TensorRef) else _inert_type("torch._utils", "_rebuild_parameter")()

    def _rebuild_from_type_v2(self, func: Any, new_type: Any, args: Any, state: Any) -> Any:
        """``torch._tensor._rebuild_from_type_v2``: only when ``func`` is one of this load's rebuilders."""
        mine = [
            self._resolved.get(("torch._utils", n))
            for n in ("_rebuild_tensor_v2", "_rebuild_tensor", "_rebuild_parameter", "_rebuild_parameter_with_state")
        ]
        if isinstance(func, _Callable) and any(func is m for m in mine) and isinstance(args, tuple):
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
        self.unpacked = sum(i.file_size for i in infos)  # bytes the archive holds, unpacked
        self.budget = max_bytes  # bytes still allowed to be read (storages and data.pkl together)

    def read(self, name: str, *, limit: int) -> bytes:
        """Read record ``<root>/<name>``: at most ``limit + 1`` bytes, and never past the read budget."""
        full = self.root + name
        if full not in self.names:
            raise CheckpointError(f"the archive has no record {shown(full)}")
        size = self.zf.getinfo(full).file_size
        if min(size, limit) > self.budget:
            raise CheckpointError(
                f"record {shown(full)} ({size} bytes) is over the remaining {self.budget}-byte read budget"
            )
        try:
            with self.zf.open(full) as f:
                out = f.read(min(limit, self.budget) + 1)
        except ZIP_ERRORS as e:
            raise CheckpointError(f"cannot read {shown(full)} from the archive: {e}") from None
        self.budget -= len(out)
        return out


def check_zip_members(infos: list[zipfile.ZipInfo], *, compressed_size: int, max_bytes: int) -> None:
    """Refuse archives whose entries could blow up memory: too many, too large, or too compressible."""
    if len(infos) > MAX_MEMBERS:
        raise CheckpointError(f"zip archive has {len(infos)} entries, more than the {MAX_MEMBERS} allowed")
    total = 0
    for info in infos:
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise CheckpointError(f"zip entry {shown(info.filename)} uses unsupported compression {info.compress_type}")
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


MAX_OPCODES = 2_000_000  # a 20,000-tensor state dict needs about 500,000
MAX_DEPTH = 100  # nesting of the objects the pickle builds (a state dict: under 10; RecBole's config: ~10)
MAX_LONG_BYTES = 64  # LONG1/LONG4 integers (sizes, offsets, seeds: at most 8 bytes)
MAX_INT_DIGITS = 100
_TRACKED_STR = 256  # strings shorter than this are remembered (module and class names for STACK_GLOBAL)
_REBUILDERS = {"torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_tensor", "torch._utils._rebuild_tensor_v3"}
# Tensor kinds whose rebuilders are refused before torch sees them: dcnviz reads dense CPU tensors only.
_REFUSED_KINDS = {
    "sparse": "a sparse tensor",
    "nested": "a nested tensor",
    "meta": "a meta-device tensor (shape only, no values)",
    "qtensor": "a quantized tensor",
    "wrapper_subclass": "a tensor subclass",
    "device_tensor": "a tensor of another device",
    "xla": "an XLA tensor",
    "mtia": "an MTIA tensor",
    "mkldnn": "an MKL-DNN tensor",
}


@dataclass
class PickleScan:
    """What :func:`scan_pickle` found, counted before anything is unpickled."""

    opcodes: int = 0
    depth: int = 0  # deepest nesting of built objects (exact for tuples, whose hash recurses)
    globals: list[str] = field(default_factory=list)  # every global named, in order of appearance
    tensors: int = 0  # calls of torch's tensor rebuilders
    logical_bytes: int = 0  # elements × element size of every tensor view, as it would be analysed
    storages: dict[str, int] = field(default_factory=dict)  # storage key -> bytes it claims


_ITEMSIZE = {
    "DoubleStorage": 8,
    "FloatStorage": 4,
    "HalfStorage": 2,
    "BFloat16Storage": 2,
    "LongStorage": 8,
    "IntStorage": 4,
    "ShortStorage": 2,
    "CharStorage": 1,
    "ByteStorage": 1,
    "BoolStorage": 1,
    "UntypedStorage": 1,
}


def _refused_kind(qual: str) -> str | None:
    module, _, name = qual.rpartition(".")
    if module.startswith("torch.nested") or (module == "torch" and name.startswith("nested")):
        return _REFUSED_KINDS["nested"]
    if module in ("torch._utils", "torch._tensor", "torch") and name.startswith("_rebuild"):
        for key, what in _REFUSED_KINDS.items():
            if key in name:
                return what
    return None


_MARK = object()  # a MARK on the walk's stack; every other entry is (depth, value)


class _PickleWalk:
    """The stack machine of :func:`scan_pickle`: one handler per opcode family, over *shapes* of values.

    Stack entries are ``(depth, value)``; a value is an int, a short str, a tuple of tracked values,
    ``("G", name)`` for a global, ``("P", itemsize)`` for a storage, ``("T",)`` for a tensor, or None.
    """

    def __init__(self) -> None:
        self.scan = PickleScan()
        self.stack: list[Any] = []
        self.marks: list[int] = []
        self.memo: dict[int, Any] = {}
        self.puts = 0

    # -- the stack ---------------------------------------------------------------------------------
    def pop(self) -> Any:
        if not self.stack or self.stack[-1] is _MARK:
            raise CheckpointError(f"data.pkl is not a valid pickle: stack underflow at opcode {self.scan.opcodes}")
        return self.stack.pop()

    def pop_mark(self) -> list[Any]:
        if not self.marks:
            raise CheckpointError(f"data.pkl is not a valid pickle: no MARK at opcode {self.scan.opcodes}")
        k = self.marks.pop()
        items = self.stack[k + 1 :]
        del self.stack[k:]
        return items

    def push(self, depth: int, value: Any = None) -> None:
        if depth > MAX_DEPTH:
            raise CheckpointError(
                f"data.pkl nests objects more than {MAX_DEPTH} levels deep; a checkpoint's structure is shallow "
                "(deep nesting crashes unpicklers)"
            )
        self.scan.depth = max(self.scan.depth, depth)
        self.stack.append((depth, value))

    def container(self, items: list[Any], track: bool) -> None:
        depth = 1 + max((it[0] for it in items), default=0)
        value = tuple(it[1] for it in items) if track and len(items) <= 32 else None  # None: not tracked
        self.push(depth, value)

    def grow(self, items: list[Any]) -> None:
        """APPEND/SETITEM/BUILD into the object on top of the stack: its own depth grows."""
        stack = self.stack
        if not stack or stack[-1] is _MARK:
            raise CheckpointError(f"data.pkl is not a valid pickle: nothing to add to at opcode {self.scan.opcodes}")
        d, v = stack[-1]
        depth = max([d, *(1 + it[0] for it in items)])
        if depth > MAX_DEPTH:
            self.push(depth)  # raises
        self.scan.depth = max(self.scan.depth, depth)
        stack[-1] = (depth, v)

    # -- what the checks look at -------------------------------------------------------------------
    def global_(self, qual: str) -> None:
        what = _refused_kind(qual)
        if what is not None:
            raise CheckpointError(f"the checkpoint holds {what} ({shown(qual)}); dcnviz reads dense tensors only")
        if len(self.scan.globals) < 1000:
            self.scan.globals.append(qual)
        self.push(0, ("G", qual))

    def reduce(self, func: Any, args: Any) -> None:
        """A call: counted (with its viewed size) when it is one of torch's tensor rebuilders."""
        f, a = func[1], args[1]
        value = None
        if isinstance(f, tuple) and f[:1] == ("G",) and f[1] in _REBUILDERS and isinstance(a, tuple) and len(a) >= 4:
            self.scan.tensors += 1
            storage, size = a[0], a[2]
            if isinstance(size, tuple) and all(isinstance(n, int) for n in size):
                if any(n < 0 for n in size):
                    raise CheckpointError(f"a tensor in data.pkl has a negative size {list(size)[:17]}")
                check_shape(size, "a tensor in data.pkl")
                itemsize = storage[1] if isinstance(storage, tuple) and storage[:1] == ("P",) else 8
                self.scan.logical_bytes += math.prod(size) * itemsize
            value = ("T",)
        self.push(1 + max(func[0], args[0]), value)

    # -- opcode handlers: (name, arg) -> None ------------------------------------------------------
    def op_skip(self, name: str, arg: Any) -> None:
        pass

    def op_int(self, name: str, arg: Any) -> None:
        if isinstance(arg, bool):  # INT 01/00 is True/False
            self.push(0, None)
            return
        if name in ("LONG1", "LONG4") and abs(arg).bit_length() > 8 * MAX_LONG_BYTES:
            raise CheckpointError(
                f"data.pkl holds an integer of {abs(arg).bit_length():,} bits; at most {8 * MAX_LONG_BYTES}"
            )
        if abs(arg) >= 10**MAX_INT_DIGITS:
            raise CheckpointError(
                f"data.pkl holds an integer of {len(str(abs(arg))):,} digits; at most {MAX_INT_DIGITS}"
            )
        self.push(0, arg)

    def op_string(self, name: str, arg: Any) -> None:
        self.push(0, arg if isinstance(arg, str) and len(arg) < _TRACKED_STR else "")

    def op_scalar(self, name: str, arg: Any) -> None:
        self.push(0, "" if "UNICODE" in name else None)

    def op_readonly_buffer(self, name: str, arg: Any) -> None:
        self.stack.append(self.pop())

    def op_empty(self, name: str, arg: Any) -> None:
        self.push(1, () if name == "EMPTY_TUPLE" else None)

    def op_mark(self, name: str, arg: Any) -> None:
        self.marks.append(len(self.stack))
        self.stack.append(_MARK)

    def op_marked_container(self, name: str, arg: Any) -> None:
        self.container(self.pop_mark(), track=name == "TUPLE")

    def op_small_tuple(self, name: str, arg: Any) -> None:
        items = [self.pop() for _ in range(int(name[-1]))][::-1]
        self.container(items, track=True)

    def op_pop(self, name: str, arg: Any) -> None:
        if name == "POP" and not (self.stack and self.stack[-1] is _MARK):
            self.pop()
        else:
            self.pop_mark()

    def op_dup(self, name: str, arg: Any) -> None:
        top = self.pop()
        self.stack += [top, top]

    def op_put(self, name: str, arg: Any) -> None:
        idx = len(self.memo) if name == "MEMOIZE" else int(arg)
        self.puts += 1
        if idx > 2 * self.puts + 1024:  # pickle numbers its memo 0, 1, 2, ...
            raise CheckpointError(
                f"data.pkl stores into memo slot {idx:,} after {self.puts:,} stores; an unpickler would "
                "allocate a table that large (a memory bomb)"
            )
        if not self.stack or self.stack[-1] is _MARK:
            raise CheckpointError(f"data.pkl is not a valid pickle: nothing to memoise at opcode {self.scan.opcodes}")
        self.memo[idx] = self.stack[-1]

    def op_get(self, name: str, arg: Any) -> None:
        idx = int(arg)
        if idx not in self.memo:
            raise CheckpointError(f"data.pkl reads memo slot {idx:,}, which it never wrote")
        d, v = self.memo[idx]
        self.push(d, v)

    def op_global(self, name: str, arg: Any) -> None:
        module, _, cls = str(arg).partition(" ")
        self.global_(f"{module}.{cls}")

    def op_stack_global(self, name: str, arg: Any) -> None:
        cls, module = self.pop()[1], self.pop()[1]
        if not isinstance(module, str) or not isinstance(cls, str) or not module or not cls:
            raise CheckpointError("data.pkl names a global by something other than two short strings")
        self.global_(f"{module}.{cls}")

    def op_reduce(self, name: str, arg: Any) -> None:
        args = self.pop()
        self.reduce(self.pop(), args)

    def op_newobj_ex(self, name: str, arg: Any) -> None:
        kwargs, args, cls = self.pop(), self.pop(), self.pop()
        self.push(1 + max(kwargs[0], args[0], cls[0]))

    def op_inst(self, name: str, arg: Any) -> None:
        module, _, cls = str(arg).partition(" ")
        items = self.pop_mark()
        self.global_(f"{module}.{cls}")
        g = self.pop()
        self.push(1 + max([g[0], *(it[0] for it in items)]))

    def op_obj(self, name: str, arg: Any) -> None:
        items = self.pop_mark()
        if not items:
            raise CheckpointError("data.pkl is not a valid pickle: OBJ without a class")
        self.push(1 + max(it[0] for it in items))

    def op_add_one(self, name: str, arg: Any) -> None:  # BUILD, APPEND
        self.grow([self.pop()])

    def op_setitem(self, name: str, arg: Any) -> None:
        value, key = self.pop(), self.pop()
        self.grow([key, value])

    def op_add_marked(self, name: str, arg: Any) -> None:  # APPENDS, SETITEMS, ADDITEMS
        self.grow(self.pop_mark())

    def op_persid(self, name: str, arg: Any) -> None:
        self.push(1)

    def op_binpersid(self, name: str, arg: Any) -> None:
        """A storage reference ``("storage", type, key, location, numel)``: its claimed bytes are recorded."""
        pid = self.pop()
        v = pid[1]
        value = None
        if isinstance(v, tuple) and len(v) == 5 and v[0] == "storage":
            stype, key, numel = v[1], v[2], v[4]
            itemsize = _ITEMSIZE.get(stype[1].rpartition(".")[2], 8) if isinstance(stype, tuple) else 8
            if isinstance(key, str) and isinstance(numel, int):
                if numel < 0:
                    raise CheckpointError(f"storage {shown(key)} claims {numel} elements")
                before = self.scan.storages.setdefault(key, numel * itemsize)
                if before != numel * itemsize:
                    raise CheckpointError(
                        f"storage {shown(key)} is referenced with two sizes ({before:,} and {numel * itemsize:,} bytes)"
                    )
            value = ("P", itemsize)
        self.push(1 + pid[0], value)

    def step(self, name: str, arg: Any) -> None:
        handler = _OPCODE_HANDLERS.get(name)
        if handler is None:  # an opcode this walk does not model: refuse rather than guess
            raise CheckpointError(f"data.pkl uses the pickle opcode {name}, which dcnviz does not read")
        handler(self, name, arg)


_W = _PickleWalk
_OPCODE_FAMILIES: dict[Callable[[_PickleWalk, str, Any], None], tuple[str, ...]] = {
    _W.op_skip: ("PROTO", "FRAME", "STOP"),
    _W.op_int: ("INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4"),
    _W.op_string: ("STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "SHORT_BINUNICODE", "BINUNICODE"),
    _W.op_scalar: (
        *("BINUNICODE8", "BINBYTES", "SHORT_BINBYTES", "BINBYTES8", "BYTEARRAY8", "FLOAT", "BINFLOAT"),
        *("NONE", "NEWTRUE", "NEWFALSE", "NEXT_BUFFER", "EXT1", "EXT2", "EXT4"),
    ),
    _W.op_readonly_buffer: ("READONLY_BUFFER",),
    _W.op_empty: ("EMPTY_LIST", "EMPTY_DICT", "EMPTY_SET", "EMPTY_TUPLE"),
    _W.op_mark: ("MARK",),
    _W.op_marked_container: ("TUPLE", "LIST", "DICT", "FROZENSET"),
    _W.op_small_tuple: ("TUPLE1", "TUPLE2", "TUPLE3"),
    _W.op_pop: ("POP", "POP_MARK"),
    _W.op_dup: ("DUP",),
    _W.op_put: ("PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"),
    _W.op_get: ("GET", "BINGET", "LONG_BINGET"),
    _W.op_global: ("GLOBAL",),
    _W.op_stack_global: ("STACK_GLOBAL",),
    _W.op_reduce: ("REDUCE", "NEWOBJ"),
    _W.op_newobj_ex: ("NEWOBJ_EX",),
    _W.op_inst: ("INST",),
    _W.op_obj: ("OBJ",),
    _W.op_add_one: ("BUILD", "APPEND"),
    _W.op_setitem: ("SETITEM",),
    _W.op_add_marked: ("APPENDS", "SETITEMS", "ADDITEMS"),
    _W.op_persid: ("PERSID",),
    _W.op_binpersid: ("BINPERSID",),
}
_OPCODE_HANDLERS = {name: handler for handler, names in _OPCODE_FAMILIES.items() for name in names}
del _W


def scan_pickle(pkl: bytes) -> PickleScan:
    """Walk a pickle's opcodes once, as a stack machine over *shapes* of values, before it is unpickled.

    Bounded reads (:func:`pickletools.genops` reads every argument against the bytes present, so a
    counted string claiming 2**64 bytes is an error, not an allocation) and, in linear time:

    * at most :data:`MAX_OPCODES` opcodes;
    * memo indices: a ``PUT`` index beyond what the pickle could have stored (the C unpickler grows its
      memo table to the index: ``LONG_BINPUT 2**27`` asks for ~2 GB) and a ``GET`` of an index never
      written are refused;
    * nesting depth of the objects built (:data:`MAX_DEPTH`): a tuple nested 10**6 deep used as a dict
      key overflows the C stack when it is hashed;
    * integers longer than :data:`MAX_INT_DIGITS` digits or :data:`MAX_LONG_BYTES` bytes;
    * every tensor rebuild call's size, for the elements it would *view* (a stride-0 4096 × 4096 view
      of one number is 16.7 M elements backed by 4 bytes), and its storage's claimed size;
    * globals that rebuild tensor kinds dcnviz does not read (sparse, nested, meta, quantized,
      subclasses) are refused by name.

    Raises :class:`CheckpointError` naming the first problem.
    """
    walk = _PickleWalk()
    scan = walk.scan
    try:
        arg: Any
        for op, arg, _pos in pickletools.genops(pkl):
            scan.opcodes += 1
            if scan.opcodes > MAX_OPCODES:
                raise CheckpointError(
                    f"data.pkl has more than {MAX_OPCODES:,} opcodes; a checkpoint's structure needs far fewer"
                )
            walk.step(op.name, arg)
    except CheckpointError:
        raise
    except ValueError as e:  # UnicodeDecodeError, bad digits, Python's 4,300-digit int limit, bad arguments
        text = str(e)
        if "digits" in text and "integer" in text:
            raise CheckpointError(
                f"data.pkl holds an integer of more than 4,300 digits; at most {MAX_INT_DIGITS} are read"
            ) from None
        raise CheckpointError(f"data.pkl is not a valid pickle: {text[:200]}") from None
    except (EOFError, OverflowError) as e:
        raise CheckpointError(f"data.pkl is not a valid pickle: {str(e)[:200]}") from None
    if scan.tensors > MAX_TENSORS:
        raise CheckpointError(f"data.pkl rebuilds {scan.tensors:,} tensors, more than the {MAX_TENSORS:,} dcnviz reads")
    return scan


def view_budget(archive_bytes: int) -> int:
    """Bytes of tensor *views* a file of ``archive_bytes`` (unpacked) may ask to analyse: twice what it holds
    (tied weights under two names), plus 1 MiB for tiny files. The work of an analysis follows the
    elements viewed, not the bytes stored."""
    return 2 * archive_bytes + (1 << 20)


def check_views(scan: PickleScan, archive_bytes: int) -> None:
    """Refuse a pickle whose tensor views ask for more elements than the file holds (see :func:`view_budget`)."""
    budget = view_budget(archive_bytes)
    if scan.logical_bytes > budget:
        raise CheckpointError(
            f"the checkpoint's tensors view {scan.logical_bytes:,} bytes of values from an archive of "
            f"{archive_bytes:,} bytes (at most {budget:,}): views that repeat stored values (stride 0) are refused"
        )


def _open_checked(data: bytes, *, max_bytes: int) -> tuple[_Archive, bytes, PickleScan]:
    """Open a torch zip archive, read its ``data.pkl`` (bounded) and pre-scan it (:func:`scan_pickle`)."""
    if is_legacy_torch(data):
        raise CheckpointError(LEGACY_MESSAGE)
    archive = _Archive(data, max_bytes=max_bytes)
    if f"{archive.root}byteorder" in archive.names:
        byteorder = archive.read("byteorder", limit=16).decode("ascii", "replace").strip()
        if byteorder != "little":
            raise CheckpointError(
                f"the archive's byte order is {shown(byteorder, 20)}; dcnviz reads little-endian files only"
            )
    pkl = archive.read("data.pkl", limit=MAX_PICKLE_BYTES)
    if len(pkl) > MAX_PICKLE_BYTES:
        raise CheckpointError(f"data.pkl is over {MAX_PICKLE_BYTES} bytes; too large to be a checkpoint's structure")
    scan = scan_pickle(pkl)
    check_views(scan, archive.unpacked)
    return archive, pkl, scan


def prescan_torch_zip(data: bytes, *, max_bytes: int) -> PickleScan:
    """The checks of :func:`load_torch_zip` that run before any unpickler: archive, sizes, :func:`scan_pickle`.

    Run on every torch zip file before ``torch.load(weights_only=True)`` sees it.
    """
    return _open_checked(data, max_bytes=max_bytes)[2]


def load_torch_zip(data: bytes, *, max_bytes: int) -> SafeLoadResult:
    """Unpickle a torch zip checkpoint with :class:`RestrictedUnpickler`; never runs its globals.

    Raises :class:`CheckpointError` for legacy files, broken archives, bombs, malformed pickles
    (:func:`scan_pickle`) and storages that do not match their records.
    """
    archive, pkl, _ = _open_checked(data, max_bytes=max_bytes)
    unpickler = RestrictedUnpickler(pkl, archive, budget=view_budget(archive.unpacked))
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
        raise CheckpointError(
            f"data.pkl is not a valid checkpoint pickle: {type(e).__name__}: {clip(str(e), 200)}"
        ) from None
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
