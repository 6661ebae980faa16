"""Parse untrusted model-file bytes in a worker process with memory and time limits (issue 11).

Parsers dcnviz does not own — torch's unpickler, Python's C unpickler, ``zipfile``, NumPy's ``.npy``
header parser, libhdf5 — can crash (a C stack overflow), allocate without bound or stall on crafted
bytes. :func:`read_tensor_file` runs :func:`dcnviz.importers.containers.read_tensor_file` on the bytes
in a **fresh child process per file**, which

* caps its address space (``RLIMIT_AS``: what it maps at the fork plus :func:`memory_allowance`),
  its CPU time (``RLIMIT_CPU``) and its wall time (killed by the parent past :func:`time_limit`),
  may not write files (``RLIMIT_FSIZE`` 0) or dump core, and runs torch on one thread;
* sends back plain arrays — a JSON header (keys, dtypes, shapes, notes) and the raw bytes of each
  array, never a pickle — which the parent checks against the header before viewing them;

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
"""

from __future__ import annotations

import contextlib
import json
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


def read_tensor_file(data: bytes, *, max_bytes: int) -> Any:
    """:func:`dcnviz.importers.containers.read_tensor_file` of ``data``, run in an isolated worker.

    Returns its :class:`~dcnviz.importers.containers.TensorFile` (NumPy arrays); raises
    :class:`CheckpointError` for a bad file, a worker that crashed, ran out of memory or time.
    """
    m = mode()
    if m == "off":
        from dcnviz.importers.containers import read_tensor_file as read

        return read(data, max_bytes=max_bytes)
    if m == "fork":
        status, body = _supervise(data, max_bytes)
    else:
        status, body = _server_instance().request(data, max_bytes)
    if status == b"E":
        raise CheckpointError(body.decode("utf-8", "replace"))
    return decode(body)


# --------------------------------------------------------------------------------------------------
# The result: plain arrays, never a pickle


def encode(tf: Any) -> tuple[bytes, list[memoryview]]:
    """A TensorFile → (header, array buffers): 8-byte header length, JSON header, then each array's bytes."""
    arrays = [np.ascontiguousarray(a) for a in tf.tensors.values()]
    header = {
        "container": tf.container,
        "metadata": tf.metadata,
        "notes": tf.notes,
        "ordered": tf.ordered,
        "tensors": [[k, a.dtype.str, list(a.shape), a.nbytes] for k, a in zip(tf.tensors, arrays, strict=True)],
    }
    raw = json.dumps(header).encode("utf-8")
    return struct.pack("<Q", len(raw)) + raw, [a.reshape(-1).view(np.uint8).data for a in arrays]


def decode(payload: bytes) -> Any:
    """The worker's bytes → TensorFile, checking every size and dtype against the header first."""
    from dcnviz.importers.containers import TensorFile

    def bad(why: str) -> CheckpointError:
        return CheckpointError(f"the isolated reader returned a malformed result ({why})")

    if len(payload) < 8:
        raise bad("too short")
    (n,) = struct.unpack("<Q", payload[:8])
    if 8 + n > len(payload):
        raise bad("header past the end")
    try:
        header = json.loads(payload[8 : 8 + n])
        entries = header["tensors"]
        offset = 8 + n
        tensors: dict[str, np.ndarray] = {}
        for key, dtype_str, shape, nbytes in entries:
            dtype = np.dtype(dtype_str)
            if dtype.kind not in _DTYPE_KINDS or dtype.hasobject or not isinstance(key, str):
                raise bad(f"dtype {dtype_str!r}")
            shape = tuple(int(s) for s in shape)
            count = int(np.prod(shape, dtype=np.int64)) if shape else 1
            if any(s < 0 for s in shape) or count * dtype.itemsize != nbytes or offset + nbytes > len(payload):
                raise bad("sizes")
            tensors[key] = np.frombuffer(payload, dtype=dtype, count=count, offset=offset).reshape(shape)
            offset += nbytes
        if offset != len(payload):
            raise bad("trailing bytes")
        return TensorFile(
            tensors=tensors,
            container=str(header["container"]),
            metadata={str(k): str(v) for k, v in header["metadata"].items()},
            notes=[str(x) for x in header["notes"]],
            ordered=bool(header["ordered"]),
        )
    except (KeyError, TypeError, ValueError) as e:
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


def _worker(data: bytes, max_bytes: int, fd: int, seconds: float) -> None:
    """In the forked child: set the limits, parse, write ``O`` + result or ``E`` + message to ``fd``."""
    allowance = memory_allowance(len(data))
    _limit(resource.RLIMIT_AS, _vm_size() + allowance)
    _limit(resource.RLIMIT_CPU, int(seconds) + 1)
    _limit(resource.RLIMIT_CORE, 0)
    _limit(resource.RLIMIT_FSIZE, 0)
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    try:
        import torch

        torch.set_num_threads(1)
        from dcnviz.importers.containers import read_tensor_file as read

        tf = read(data, max_bytes=max_bytes)
        head, buffers = encode(tf)
        _write_all(fd, [b"O", head, *buffers])
    except DcnvizError as e:
        _write_all(fd, [b"E" + str(e).encode("utf-8", "replace")])
    except MemoryError:
        _write_all(fd, [b"E" + _memory_message(allowance).encode()])
    except RuntimeError as e:  # torch's allocator: "DefaultCPUAllocator: can't allocate memory"
        text = str(e)
        if "allocate" in text or "memory" in text:
            _write_all(fd, [b"E" + _memory_message(allowance).encode()])
        else:
            _write_all(fd, [b"E" + f"could not read the file: RuntimeError: {text[:300]}".encode("utf-8", "replace")])
    except BaseException as e:  # a reader bug: still only this file's problem
        msg = f"could not read the file: {type(e).__name__}: {str(e)[:300]}"
        _write_all(fd, [b"E" + msg.encode("utf-8", "replace")])


def _memory_message(allowance: int) -> str:
    return (
        f"reading the file needed more than the {allowance / 2**30:.1f} GiB of memory allowed to the worker "
        "that parses it (a memory bomb, or a file far larger inside than it looks); nothing else was affected"
    )


def _supervise(data: bytes, max_bytes: int) -> tuple[bytes, bytes]:
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
            _worker(data, max_bytes, w, seconds)
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
        return b"E", (
            f"reading the file took longer than {seconds:.0f} s, the limit for a file of this size; the worker "
            "parsing it was stopped (nothing else was affected)"
        ).encode()
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
        if sig == signal.SIGXCPU:
            why = f"used more than {seconds:.0f} s of CPU time"
        elif sig == signal.SIGKILL:
            why = "was killed (out of memory?)"
        else:
            why = f"crashed ({name})"
        return b"E", (
            f"the worker parsing the file {why}: the file triggers a defect in a parser dcnviz does not own "
            "(torch's unpickler, zip, NumPy or HDF5); it was refused and nothing else was affected"
        ).encode()
    if body[:1] in (b"O", b"E") and os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
        return body[:1], body[1:]
    return b"E", f"the worker parsing the file exited without a result (status {status})".encode()


# --------------------------------------------------------------------------------------------------
# The warm fork server


def _preload() -> None:
    """What every worker needs, imported once in the server so that forks start warm."""
    import torch  # noqa: F401

    import dcnviz.importers.containers  # noqa: F401

    with contextlib.suppress(ImportError):
        import h5py  # type: ignore[import-untyped, unused-ignore]  # noqa: F401


def _recv_exact(conn: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = conn.recv(min(n - len(buf), 1 << 20))
        if not chunk:
            raise EOFError("connection closed")
        buf += chunk
    return bytes(buf)


def _handle(conn: socket.socket) -> None:
    """In a supervisor forked off the server: read one request, supervise its worker, answer."""
    (max_bytes, n) = struct.unpack("<QQ", _recv_exact(conn, 16))
    data = _recv_exact(conn, n)
    status, body = _supervise(data, max_bytes)
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
    live: set[int] = set()
    try:
        while True:
            while live:  # reap finished supervisors
                pid, _ = os.waitpid(-1, os.WNOHANG)
                if pid == 0:
                    break
                live.discard(pid)
            if len(live) >= MAX_WORKERS:
                pid, _ = os.waitpid(-1, 0)
                live.discard(pid)
                continue
            ready, _, _ = select.select([listener, sys.stdin], [], [], 1.0)
            if sys.stdin in ready and not os.read(sys.stdin.fileno(), 1):
                return  # the parent is gone
            if listener in ready:
                conn, _ = listener.accept()
                pid = os.fork()
                if pid == 0:
                    code = 0
                    try:
                        listener.close()
                        _handle(conn)
                    except BaseException:
                        code = 1
                    finally:
                        os._exit(code)
                conn.close()
                live.add(pid)
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
            env[var] = "1"  # a single-threaded server forks cleanly
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
                    raise CheckpointError("the isolated reader for model files did not start; the file was not read")
                self.path = line
            return self.path

    def alive(self) -> bool:
        return self.proc.poll() is None

    def request(self, data: bytes, max_bytes: int) -> tuple[bytes, bytes]:
        path = self.socket_path()
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.settimeout(time_limit(len(data)) * (MAX_WORKERS + 1) + 30)  # queueing behind other files included
        try:
            conn.connect(path)
            conn.sendall(struct.pack("<QQ", max_bytes, len(data)))
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


def start() -> None:
    """Start the fork server now without waiting for it (idempotent; not in ``fork``/``off`` mode)."""
    if mode() == "server":
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

    def request(self, data: bytes, max_bytes: int) -> tuple[bytes, bytes]:
        try:
            return self.server.request(data, max_bytes)
        except OSError:
            global _server
            with _server_lock:
                if _server is self.server:
                    _server = None
            fresh = _server_instance()
            try:
                return fresh.server.request(data, max_bytes)
            except OSError as e:
                raise CheckpointError(
                    f"the isolated reader for model files failed ({e}); the file was not read"
                ) from None
