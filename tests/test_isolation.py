"""The isolated worker (dcnviz.isolation) contains what parsers we do not own do with hostile bytes (issue 11).

The crash-class inputs (``tests/helpers/hostile.py``) are run with dcnviz's own pre-scan switched off,
to show that the worker contains a SIGSEGV, a MemoryError and a stall; the fork server reads like this
process and comes back after dying; the worker's answer is checked before it is used.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from dcnviz import isolation
from dcnviz.errors import CheckpointError
from dcnviz.modelfile import open_model_file
from tests.helpers import PEERS, ROOT


def test_the_crash_class_inputs_are_contained_by_the_worker_even_without_the_pre_scan() -> None:
    """With dcnviz's opcode pre-scan switched off, the 10**6-deep key overflows the C stack and the memo
    bomb asks for gigabytes — inside the worker, which dies or fails alone; a stalled worker is stopped.
    Run in a fresh single-threaded interpreter (the worker is forked from it); it must survive and
    report each as a clean error."""
    script = r"""
import json, sys, time
from tests.helpers import hostile as H
from dcnviz import isolation
from dcnviz.importers import safe_pickle
from dcnviz.errors import DcnvizError
from dcnviz import modelfile
from dcnviz.modelfile import open_model_file
safe_pickle.scan_pickle = lambda pkl: safe_pickle.PickleScan()  # dcnviz's own checks off
isolation.set_mode("fork")
out = {}
for name, data in H.crash_inputs().items():
    try:
        open_model_file(data)
        out[name] = "loaded"
    except DcnvizError as e:
        out[name] = str(e)
isolation.TIME_BASE_S = 1.0
modelfile.read_tensor_file = lambda data, max_bytes: time.sleep(60)  # a parser that hangs
try:
    open_model_file((H.PEERS / "deepctr_dcn_matrix.pt").read_bytes())
except DcnvizError as e:
    out["stall"] = str(e)
print(json.dumps(out))
"""
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "crashed (SIGSEGV)" in out["deep-tuple-key-1e6"] and "nothing else was affected" in out["deep-tuple-key-1e6"]
    assert "MemoryError" in out["memo-bomb-2^30"] or "memory" in out["memo-bomb-2^30"], out
    assert "took longer than 1 s" in out["stall"], out


def test_the_fork_server_reads_like_this_process_and_comes_back_after_dying() -> None:
    data = (PEERS / "fuxictr_dcnv2_mix.pt").read_bytes()
    isolation.set_mode("off")
    try:
        expected = open_model_file(data).weights
        isolation.set_mode("server")
        got = open_model_file(data)
        assert got.isolated
        for a, b in zip(got.weights.layers, expected.layers, strict=True):
            np.testing.assert_array_equal(a.effective_weight(), b.effective_weight())
        assert isolation._server is not None
        isolation._server.proc.kill()  # the server dies (it never parses a file, but still)
        isolation._server.proc.wait()
        again = open_model_file(data)
        np.testing.assert_array_equal(again.weights.layers[0].effective_weight(), expected.layers[0].effective_weight())
    finally:
        isolation.set_mode(None)


def test_the_workers_answer_is_checked_before_it_is_used() -> None:
    """Only the common form comes back from the worker (shared arrays stay shared), and the parent checks
    every size, dtype and class of it before building anything."""
    isolation.set_mode("off")
    try:
        cw = open_model_file(PEERS / "deepctr_dcnmix.pt").weights
    finally:
        isolation.set_mode(None)
    head, bufs = isolation.encode(cw, "torch zip")
    good = head + b"".join(bytes(b) for b in bufs)
    back, container = isolation.decode(good)
    assert container == "torch zip" and back.detected == cw.detected and back.blocks == cw.blocks
    np.testing.assert_array_equal(back.layers[1].effective_weight(), cw.layers[1].effective_weight())
    assert back.layers[0].gates is back.layers[1].gates  # shared across layers, as the importer made them
    for bad in (
        good[:-1],
        good + b"x",
        good[:6],
        good.replace(b"<f8", b"|O8"),
        good.replace(b"ExpertWeights", b"Popen"),
    ):
        with pytest.raises(CheckpointError, match="malformed result"):
            isolation.decode(bad)
