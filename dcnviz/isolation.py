"""Parse untrusted model-file bytes in a worker process with memory and time limits (issue 11).

Parsers dcnviz does not own — torch's unpickler, Python's C unpickler, ``zipfile``, NumPy's ``.npy``
header parser, libhdf5 — can crash (a C stack overflow), allocate without bound or stall on crafted
bytes. :func:`import_file` reads a peer library's file — container and import into the common form,
:func:`dcnviz.modelfile.import_peer_bytes` — in a **fresh child process per file**, which

* caps its address space (``RLIMIT_AS``: what it maps at the fork plus :func:`memory_allowance`),
  its CPU time (``RLIMIT_CPU``) and its wall time (killed by the parent past :func:`time_limit`),
  may not write files (``RLIMIT_FSIZE`` 0) or dump core, and runs torch on one thread;
* sends back only the result, as plain data: the cross layers in common form
  (:class:`~dcnviz.weights.CrossModelWeights`) as a JSON tree of the few allowed dataclasses plus the
  raw bytes of each array — never a pickle, never the file's other tensors (embedding tables stay in
  the worker) — which the parent checks against the header before it builds anything;

so a crash, a runaway allocation or a stall costs that one file a clean :class:`CheckpointError`
("reading the file crashed its parser (SIGSEGV) …") and nothing else: not the app, not another
session, not the CLI.

Where the child is forked from:

* ``server`` (processes with threads: the app, notebooks): a small **warm fork server**, started once
  per process by exec-ing a fresh interpreter (so it holds none of Streamlit's threads or locks,
  nothing of the caller's state, and a single BLAS/OpenMP thread), which imports torch, NumPy and the
  readers, then waits on a private Unix socket (in a ``0700`` temporary folder). Per file it forks a
  supervisor, which forks the worker, enforces the limits and relays the result. :func:`start` starts
  it without waiting (the app calls it when it loads, so it is warm by the first upload); a request
  made before it is ready waits for it (a few seconds, once per process). It exits with its parent.
* ``fork`` (processes with one Python thread: the CLI, scripts): the worker is forked straight from
  this process (``os.fork``), which is safe when no other thread can hold a lock at the fork, and
  costs milliseconds (the worker sets torch to one thread before touching a tensor).
* ``off``: parse in this process (the fuzzer, which runs inside its own capped child process).

By default (``auto``) each file takes ``fork`` when only one Python thread runs, else ``server``.
Force a mode with :func:`set_mode` or the ``DCNVIZ_ISOLATION`` environment variable.

The same fork server also starts the app's **long-running workers** (training runs, issue 16):
:func:`start_worker` runs a trusted function of dcnviz's own in a fresh child with an address-space
limit, talking to it over a :class:`multiprocessing.connection.Connection` for as long as it runs; its
supervisor reports how the child ended (exit code or signal), so a crashed or killed run can say why.
"""

from __future__ import annotations

import contextlib
import json
import mmap
import os
import resource
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

from dcnviz.errors import CheckpointError, DcnvizError

MODES = ("auto", "server", "fork", "off")
MODE_ENV = "DCNVIZ_ISOLATION"
MEMORY_BASE = 1 << 30  # bytes a worker may map beyond what it maps when forked ...
MEMORY_PER_BYTE = 3  # ... plus this many times the file's size
TIME_BASE_S = 10.0  # wall-clock (and CPU) seconds a worker may run ...
TIME_PER_MB_S = 0.1  # ... plus this per MB of the file
MAX_WORKERS = 4  # files parsed at once by one fork server (more wait their turn)
SERVER_START_S = 120.0  # how long the first request waits for the fork server to import torch
FILE_REQUEST, WORKER_REQUEST = b"F", b"W"  # the first byte of a connection to the fork server
WORKER_PID, WORKER_EXIT = "__pid__", "__exit__"  # a long-running worker's first and its supervisor's last message

_DTYPE_KINDS = "fiub"
_mode: str | None = None
_server: _ForkServer | None = None
_server_lock = threading.Lock()


def set_mode(mode: str | None) -> None:
    """Choose where workers are forked from: ``auto`` | ``server`` | ``fork`` | ``off`` (see the module
    docstring); None goes back to ``$DCNVIZ_ISOLATION`` (default ``auto``)."""
    global _mode
    if mode is not None and mode not in MODES:
        raise ValueError(f"isolation mode must be one of {MODES}; got {mode!r}")
    _mode = mode


def mode() -> str:
    """The mode the next file is read in: ``server``, ``fork`` or ``off`` (``auto`` resolved now)."""
    chosen = _mode or os.environ.get(MODE_ENV, "auto")
    if chosen not in MODES:
        chosen = "auto"
    if chosen == "auto":
        if not hasattr(os, "fork"):
            return "off"
        return "fork" if threading.active_count() == 1 else "server"
    return chosen


def memory_allowance(n_bytes: int) -> int:
    """Address space a worker reading an ``n_bytes`` file may add to what it maps when it starts."""
    return MEMORY_BASE + MEMORY_PER_BYTE * n_bytes


def time_limit(n_bytes: int) -> float:
    """Seconds (wall clock, and CPU) a worker reading an ``n_bytes`` file may run."""
    return TIME_BASE_S + TIME_PER_MB_S * n_bytes / 1e6


def import_file(data: bytes, *, options: dict[str, Any], max_bytes: int) -> tuple[Any, str]:
    """:func:`dcnviz.modelfile.import_peer_bytes` of ``data`` run in an isolated worker:
    (:class:`~dcnviz.weights.CrossModelWeights`, container name).

    ``options`` (JSON-able): ``format``, ``names``, ``feature_map`` (parsed), ``label``. Raises the
    reader's own :class:`DcnvizError` (same class and message), or :class:`CheckpointError` for a
    worker that crashed, ran out of memory or time.
    """
    m = mode()
    if m == "off":
        from dcnviz.modelfile import import_peer_bytes

        return import_peer_bytes(data, max_bytes=max_bytes, **options)  # type: ignore[no-any-return]
    request = json.dumps(options).encode()
    if m == "fork":
        status, body = _supervise(data, request, max_bytes)
    else:
        status, body = _server_instance().request(data, request, max_bytes)
    if status == b"E":
        raise _error(body)
    return decode(body)


# --------------------------------------------------------------------------------------------------
# The result: plain data, never a pickle

_ERRORS = ("CheckpointError", "ImportFormatError", "ConfigError", "DataFormatError", "DcnvizError")


def _error(body: bytes) -> DcnvizError:
    """The worker's error, as the class it raised (among dcnviz's own) with its message."""
    from dcnviz import errors

    try:
        obj = json.loads(body)
        cls = getattr(errors, obj["class"]) if obj.get("class") in _ERRORS else CheckpointError
        return cls(str(obj["message"]))  # type: ignore[no-any-return]
    except (ValueError, KeyError, TypeError, AttributeError):
        return CheckpointError(body[:2000].decode("utf-8", "replace"))


def _error_body(cls: str, message: str) -> bytes:
    return json.dumps({"class": cls, "message": message}).encode()


def _plain(obj: Any, arrays: list[np.ndarray], seen: dict[int, int]) -> Any:
    """A tree of the allowed dataclasses, lists and scalars as JSON; arrays by index (shared ones once)."""
    import dataclasses

    if isinstance(obj, np.ndarray):
        if id(obj) not in seen:
            seen[id(obj)] = len(arrays)
            arrays.append(np.ascontiguousarray(obj))
        return {"array": seen[id(obj)]}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        fields = {f.name: _plain(getattr(obj, f.name), arrays, seen) for f in dataclasses.fields(obj)}
        return {"class": type(obj).__name__, "fields": fields}
    if isinstance(obj, list | tuple):
        return [_plain(v, arrays, seen) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, str | int | float | bool):
        return obj
    raise TypeError(f"cannot send a {type(obj).__name__} from the worker")


def encode(weights: Any, container: str) -> tuple[bytes, list[memoryview]]:
    """(header, array buffers) of a result: 8-byte header length, JSON header, then each array's bytes."""
    arrays: list[np.ndarray] = []
    tree = _plain(weights, arrays, {})
    header = {
        "container": container,
        "weights": tree,
        "arrays": [[a.dtype.str, list(a.shape), a.nbytes] for a in arrays],
    }
    raw = json.dumps(header).encode("utf-8")
    return struct.pack("<Q", len(raw)) + raw, [a.reshape(-1).view(np.uint8).data for a in arrays]


def _classes() -> dict[str, type]:
    from dcnviz.spec import Block
    from dcnviz.weights import (
        CrossModelWeights,
        ExpertWeights,
        FullRankWeights,
        LowRankWeights,
        MixtureWeights,
        VectorWeights,
    )

    layers = (FullRankWeights, LowRankWeights, MixtureWeights, VectorWeights)
    return {c.__name__: c for c in (CrossModelWeights, *layers, ExpertWeights, Block)}


def decode(payload: bytes) -> tuple[Any, str]:
    """The worker's bytes → (CrossModelWeights, container), checking every size, dtype and class first."""

    def bad(why: str) -> CheckpointError:
        return CheckpointError(f"the isolated reader returned a malformed result ({why})")

    if len(payload) < 8:
        raise bad("too short")
    (n,) = struct.unpack("<Q", payload[:8])
    if 8 + n > len(payload):
        raise bad("header past the end")
    classes = _classes()
    try:
        header = json.loads(payload[8 : 8 + n])
        offset = 8 + n
        arrays: list[np.ndarray] = []
        for dtype_str, shape, nbytes in header["arrays"]:
            dtype = np.dtype(dtype_str)
            if dtype.kind not in _DTYPE_KINDS or dtype.hasobject:
                raise bad(f"dtype {str(dtype_str)[:20]!r}")
            shape = tuple(int(s) for s in shape)
            count = int(np.prod(shape, dtype=np.int64)) if shape else 1
            if any(s < 0 for s in shape) or count * dtype.itemsize != nbytes or offset + nbytes > len(payload):
                raise bad("sizes")
            arrays.append(np.frombuffer(payload, dtype=dtype, count=count, offset=offset).reshape(shape).copy())
            offset += nbytes
        if offset != len(payload):
            raise bad("trailing bytes")

        def build(node: Any) -> Any:
            if isinstance(node, list):
                return [build(v) for v in node]
            if isinstance(node, dict):
                if set(node) == {"array"}:
                    return arrays[int(node["array"])]
                cls = classes.get(node.get("class", ""))
                if cls is None or set(node) != {"class", "fields"}:
                    raise bad(f"object {str(node.get('class'))[:40]!r}")
                return cls(**{str(k): build(v) for k, v in node["fields"].items()})
            if node is None or isinstance(node, str | int | float | bool):
                return node
            raise bad(type(node).__name__)

        weights = build(header["weights"])
        if not isinstance(weights, classes["CrossModelWeights"]):
            raise bad("not cross weights")
        return weights, str(header["container"])
    except CheckpointError:
        raise
    except (KeyError, TypeError, ValueError, IndexError, RecursionError) as e:
        raise bad(type(e).__name__) from None


# --------------------------------------------------------------------------------------------------
# The worker and its supervisor


def _vm_size() -> int:
    """Bytes of address space this process maps now (``VmSize``)."""
    with contextlib.suppress(OSError, ValueError, StopIteration):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def _limit(kind: int, value: int) -> None:
    _soft, hard = resource.getrlimit(kind)
    if hard != resource.RLIM_INFINITY:
        value = min(value, hard)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(kind, (value, hard))


def _write_all(fd: int, chunks: list[bytes | memoryview]) -> None:
    for chunk in chunks:
        view = memoryview(chunk)
        while len(view):
            n = os.write(fd, view[: 1 << 20])
            view = view[n:]


def _worker(data: Any, request: bytes, max_bytes: int, fd: int, seconds: float) -> None:
    """In the forked child: set the limits, read the file, write ``O`` + result or ``E`` + error to ``fd``."""
    allowance = memory_allowance(len(data))
    _limit(resource.RLIMIT_AS, _vm_size() + allowance)
    _limit(resource.RLIMIT_CPU, int(seconds) + 1)
    _limit(resource.RLIMIT_CORE, 0)
    _limit(resource.RLIMIT_FSIZE, 0)
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    try:
        import torch

        torch.set_num_threads(1)
        from dcnviz.modelfile import import_peer_bytes

        if not isinstance(data, bytes):
            data = bytes(data)  # a mapped memory file: the readers want bytes
        weights, container = import_peer_bytes(data, max_bytes=max_bytes, **json.loads(request))
        head, buffers = encode(weights, container)
        _write_all(fd, [b"O", head, *buffers])
    except DcnvizError as e:
        _write_all(fd, [b"E" + _error_body(type(e).__name__, str(e))])
    except MemoryError:
        _write_all(fd, [b"E" + _error_body("CheckpointError", _memory_message(allowance))])
    except RuntimeError as e:  # torch's allocator: "DefaultCPUAllocator: can't allocate memory"
        text = str(e)
        memory = "allocate" in text or "memory" in text
        msg = _memory_message(allowance) if memory else f"could not read the file: RuntimeError: {text[:300]}"
        _write_all(fd, [b"E" + _error_body("CheckpointError", msg)])
    except BaseException as e:  # a reader bug: still only this file's problem
        msg = f"could not read the file: {type(e).__name__}: {str(e)[:300]}"
        _write_all(fd, [b"E" + _error_body("CheckpointError", msg)])


def _memory_message(allowance: int) -> str:
    return (
        f"reading the file needed more than the {allowance / 2**30:.1f} GiB of memory allowed to the worker "
        "that parses it (a memory bomb, or a file far larger inside than it looks); nothing else was affected"
    )


def _supervise(data: Any, request: bytes, max_bytes: int) -> tuple[bytes, bytes]:
    """Fork a worker for ``data``, collect its result within the time limit; (``O``|``E``, body).

    Runs in the process that asks (``fork`` mode) or in a supervisor forked off the fork server.
    """
    seconds = time_limit(len(data))
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the worker
        code = 0
        try:
            os.close(r)
            _worker(data, request, max_bytes, w, seconds)
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(w)
    chunks: list[bytes] = []
    deadline = time.monotonic() + seconds
    timed_out = False
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                timed_out = True
                break
            ready, _, _ = select.select([r], [], [], min(left, 1.0))
            if ready:
                chunk = os.read(r, 1 << 20)
                if not chunk:
                    break
                chunks.append(chunk)
    finally:
        os.close(r)
        if timed_out:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
    body = b"".join(chunks)
    if timed_out:
        return b"E", _error_body(
            "CheckpointError",
            f"reading the file took longer than {seconds:.0f} s, the limit for a file of this size; the worker "
            "parsing it was stopped (nothing else was affected)",
        )
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
        if sig == signal.SIGXCPU:
            why = f"used more than {seconds:.0f} s of CPU time"
        elif sig == signal.SIGKILL:
            why = "was killed (out of memory?)"
        else:
            why = f"crashed ({name})"
        return b"E", _error_body(
            "CheckpointError",
            f"the worker parsing the file {why}: the file triggers a defect in a parser dcnviz does not own "
            "(torch's unpickler, zip, NumPy or HDF5); it was refused and nothing else was affected",
        )
    if body[:1] in (b"O", b"E") and os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
        return body[:1], body[1:]
    return b"E", _error_body("CheckpointError", f"the worker parsing the file exited without a result ({status})")


# --------------------------------------------------------------------------------------------------
# The warm fork server


def _preload() -> None:
    """What every worker needs, imported once in the server so that forks start warm."""
    import torch  # noqa: F401

    import dcnviz.modelfile
    import dcnviz.train  # noqa: F401  (the app's training workers)

    with contextlib.suppress(ImportError):
        import h5py  # type: ignore[import-untyped, unused-ignore]  # noqa: F401


def _recv_exact(conn: socket.socket, n: int) -> bytes:
    buf = bytearray(n)
    view, got = memoryview(buf), 0
    while got < n:
        k = conn.recv_into(view[got:], min(n - got, 1 << 22))
        if not k:
            raise EOFError("connection closed")
        got += k
    return bytes(buf) if n < (1 << 20) else buf  # type: ignore[return-value]


def _handle(conn: socket.socket) -> None:
    """In a supervisor forked off the server: read one request, supervise its worker, answer.

    The file's bytes come as a memory file descriptor (``memfd``, mapped here without a copy) where the
    platform has them, else over the socket.
    """
    (max_bytes, n_request, n_data, via_fd) = struct.unpack("<QQQB", _recv_exact(conn, 25))
    request = _recv_exact(conn, n_request)
    data: Any
    if via_fd:
        _, fds, _, _ = socket.recv_fds(conn, 1, 1)
        if len(fds) != 1:
            raise OSError("no file descriptor came with the request")
        data = mmap.mmap(fds[0], n_data, prot=mmap.PROT_READ) if n_data else b""
        os.close(fds[0])
    else:
        data = _recv_exact(conn, n_data)
    status, body = _supervise(data, request, max_bytes)
    conn.sendall(status + body)


def serve() -> None:
    """The fork server's main loop (run as ``python -c "from dcnviz.isolation import serve; serve()"``).

    Binds a Unix socket in a private temporary folder, prints its path, then forks one supervisor per
    connection (at most :data:`MAX_WORKERS` at once). Exits when its parent closes stdin.
    """
    _preload()
    folder = tempfile.mkdtemp(prefix="dcnviz-isolation-")
    path = os.path.join(folder, "socket")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    sys.stdout.write(path + "\n")
    sys.stdout.flush()
    live: set[int] = set()  # supervisors of files being parsed (at most MAX_WORKERS)
    workers: set[int] = set()  # supervisors of long-running workers (the app's run pool bounds them)
    try:
        while True:
            while live or workers:  # reap finished supervisors
                pid, _ = os.waitpid(-1, os.WNOHANG)
                if pid == 0:
                    break
                live.discard(pid)
                workers.discard(pid)
            if len(live) >= MAX_WORKERS:
                pid, _ = os.waitpid(-1, 0)
                live.discard(pid)
                workers.discard(pid)
                continue
            ready, _, _ = select.select([listener, sys.stdin], [], [], 1.0)
            if sys.stdin in ready and not os.read(sys.stdin.fileno(), 1):
                return  # the parent is gone
            if listener in ready:
                conn, _ = listener.accept()
                conn.settimeout(5.0)  # the kind byte comes with the connection (our own client)
                try:
                    kind = conn.recv(1)
                except OSError:
                    kind = b""
                conn.settimeout(None)
                if kind not in (FILE_REQUEST, WORKER_REQUEST):
                    conn.close()
                    continue
                pid = os.fork()
                if pid == 0:
                    code = 0
                    try:
                        listener.close()
                        if kind == FILE_REQUEST:
                            _handle(conn)
                        else:
                            _supervise_worker(conn)
                    except BaseException:
                        code = 1
                    finally:
                        os._exit(code)
                conn.close()
                (live if kind == FILE_REQUEST else workers).add(pid)
    finally:
        listener.close()
        with contextlib.suppress(OSError):
            os.unlink(path)
            os.rmdir(folder)


class _ForkServer:
    """The parent's handle on one fork server process."""

    def __init__(self) -> None:
        package_root = str(Path(__file__).resolve().parent.parent)
        env = dict(os.environ)
        env["PYTHONPATH"] = package_root + os.pathsep + env.get("PYTHONPATH", "")
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env[var] = "1"  # a single-threaded server forks cleanly (a training worker sets its own count)
        # OpenMP threads of the training workers sleep while they wait instead of spinning: several runs'
        # spinning threads (or other programs') starve each other on a shared machine (docs/app.md).
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from dcnviz.isolation import serve; serve()"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            close_fds=True,
            start_new_session=True,  # Ctrl-C in the terminal stops the app, which then closes our stdin
        )
        self.path: str | None = None
        self.owner = os.getpid()  # a forked child starts its own server
        self._ready = threading.Lock()

    def socket_path(self) -> str:
        with self._ready:
            if self.path is None:
                assert self.proc.stdout is not None
                ready, _, _ = select.select([self.proc.stdout], [], [], SERVER_START_S)
                line = self.proc.stdout.readline().decode().strip() if ready else ""
                if not line:
                    raise CheckpointError("the isolated worker server did not start; nothing was read or run")
                self.path = line
            return self.path

    def alive(self) -> bool:
        return self.proc.poll() is None

    def request(self, data: bytes, request: bytes, max_bytes: int) -> tuple[bytes, bytes]:
        path = self.socket_path()
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.settimeout(time_limit(len(data)) * (MAX_WORKERS + 1) + 30)  # queueing behind other files included
        try:
            conn.connect(path)
            via_fd = hasattr(os, "memfd_create") and len(data) > 0
            conn.sendall(FILE_REQUEST + struct.pack("<QQQB", max_bytes, len(request), len(data), via_fd) + request)
            if via_fd:  # one copy into a memory file, mapped by the supervisor: no stream through the socket
                fd = os.memfd_create("dcnviz-upload", os.MFD_CLOEXEC)
                try:
                    _write_all(fd, [data])
                    socket.send_fds(conn, [b"F"], [fd])
                finally:
                    os.close(fd)
            else:
                conn.sendall(data)
            conn.shutdown(socket.SHUT_WR)
            chunks = []
            while True:
                chunk = conn.recv(1 << 20)
                if not chunk:
                    break
                chunks.append(chunk)
        except TimeoutError:
            raise CheckpointError("the isolated reader did not answer in time; the file was not read") from None
        finally:
            conn.close()
        body = b"".join(chunks)
        if body[:1] not in (b"O", b"E"):
            raise OSError("the fork server closed the connection without an answer")
        return body[:1], body[1:]


def start(*, workers: bool = False) -> None:
    """Start the fork server now without waiting for it (idempotent; not in ``fork``/``off`` mode unless
    ``workers``: long-running workers always come from the server)."""
    if workers or mode() == "server":
        with contextlib.suppress(OSError):
            _server_instance(wait=False)


def _server_instance(wait: bool = True) -> _Requester:
    global _server
    with _server_lock:
        if _server is None or _server.owner != os.getpid() or not _server.alive():
            _server = _ForkServer()
        server = _server
    if wait:
        server.socket_path()
    return _Requester(server)


class _Requester:
    """Sends a request, restarting a fork server that died (once) before giving up."""

    def __init__(self, server: _ForkServer) -> None:
        self.server = server

    def request(self, data: bytes, request: bytes, max_bytes: int) -> tuple[bytes, bytes]:
        try:
            return self.server.request(data, request, max_bytes)
        except OSError:
            global _server
            with _server_lock:
                if _server is self.server:
                    _server = None
            fresh = _server_instance()
            try:
                return fresh.server.request(data, request, max_bytes)
            except OSError as e:
                raise CheckpointError(
                    f"the isolated reader for model files failed ({e}); the file was not read"
                ) from None


# --------------------------------------------------------------------------------------------------
# Long-running workers (the app's training runs)


def start_worker(target: Callable[..., None], args: tuple[Any, ...], *, memory_bytes: int | None) -> Worker:
    """Run ``target(channel, *args)`` in a fresh child of the fork server; returns the app's handle on it.

    ``target`` is a module-level function of dcnviz (sent by name, with ``args``, as a pickle from this
    process to the child: trusted code, never a user's bytes). The child gets an address-space limit of
    ``memory_bytes`` (None: none) and no core dumps; ``channel`` is its end of a
    :class:`~multiprocessing.connection.Connection` to the returned :class:`Worker`. Blocks until the
    child runs (the first call waits for the fork server to import torch).
    """
    server = _server_instance().server
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(server.socket_path())
        sock.sendall(WORKER_REQUEST)
    except OSError:
        sock.close()
        raise
    conn = Connection(sock.detach())
    try:
        conn.send(sys.path)  # first, so that the child finds ``target``'s module as this process does
        conn.send((target, args, memory_bytes))
        if not conn.poll(SERVER_START_S):
            raise OSError("the worker did not start")
        kind, pid = conn.recv()
        if kind != WORKER_PID:
            raise OSError(f"the worker started with {kind!r}")
    except BaseException:
        conn.close()
        raise
    return Worker(conn, int(pid))


class Worker:
    """The app's handle on one long-running worker: messages both ways, how it ended, stopping it.

    Messages from the worker are unpickled here: the worker runs only dcnviz's own code on data the
    app chose (never a user's model file; those go through :func:`import_file`).
    """

    def __init__(self, conn: Connection, pid: int) -> None:
        self.conn, self.pid = conn, pid
        self.exitcode: int | None = None  # as multiprocessing has it: -N for signal N; None: not known
        self._ended = threading.Event()
        self._send_lock = threading.Lock()

    def recv(self) -> tuple[str, Any] | None:
        """The worker's next message (kind, payload); None once it has ended (then :attr:`exitcode`)."""
        try:
            kind, payload = self.conn.recv()
        except (EOFError, OSError):
            self._ended.set()
            return None
        if kind == WORKER_EXIT:
            self.exitcode = int(payload)
            self._ended.set()
            return None
        return str(kind), payload

    def send(self, message: Any) -> None:
        """Send ``message`` to the worker (dropped once it has ended)."""
        with self._send_lock, contextlib.suppress(OSError, ValueError):
            self.conn.send(message)

    def is_alive(self) -> bool:
        return not self._ended.is_set()

    def terminate(self, wait_s: float) -> None:
        """SIGTERM, then SIGKILL if it has not ended ``wait_s`` later (someone must be reading :meth:`recv`)."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if self._ended.is_set():
                return
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)
            self._ended.wait(wait_s)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.close()


def _supervise_worker(conn: socket.socket) -> None:
    """In a supervisor forked off the server: fork the worker, wait for it, tell the app how it ended."""
    fd = conn.detach()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            _run_worker(Connection(fd))
        except BaseException:
            import traceback

            traceback.print_exc()  # the app's log (the server shares its stderr)
            code = 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    channel = Connection(fd)
    with contextlib.suppress(OSError):
        channel.send((WORKER_EXIT, os.waitstatus_to_exitcode(status)))


def _run_worker(channel: Connection) -> None:
    """In the worker: limits, then the app's function on its end of the connection."""
    _limit(resource.RLIMIT_CORE, 0)
    sys.path[:] = [str(p) for p in channel.recv()]
    target, args, memory_bytes = channel.recv()
    if memory_bytes:
        _limit(resource.RLIMIT_AS, int(memory_bytes))
    channel.send((WORKER_PID, os.getpid()))
    target(channel, *args)
