"""Issue 11, measured: every class of hostile input ends in a clean error, fast and small; isolation's cost.

1. **Hostile inputs** (``tests/helpers/hostile.py``, every class of the issue): each is run through
   the CLI in a fresh process (``python -m dcnviz inspect FILE``, or the option that takes it:
   ``--names``, ``--feature-map``, ``evaluate --schema``; timed from the call of ``main``, after the
   interpreter's and torch's start-up, which are the same for every input) and through the app's path
   (:func:`dcnviz.modelfile.open_model_file` on the bytes, with the warm fork server). Printed per
   input: exit code and last line of stderr, seconds, stderr size, the larger peak RSS of the CLI
   process and of the workers it forked, and the app path's seconds. A *failure* is anything but
   exit 2 with ``error: …`` and no traceback, a time over 5 s, or a peak RSS over 1.5 GB.
2. **The crash-class inputs with dcnviz's pre-scan switched off**: what the worker contains on its own
   (a SIGSEGV, a memory bomb under ``RLIMIT_AS``), time and the worker's peak RSS.
3. **Isolation's cost per upload**: opening real peer files and larger synthetic state dicts in this
   process (``trusted=True``) against the isolated worker (warm fork server, as the app; and direct
   fork, as the CLI), medians of ``--repeat`` runs, wall and CPU seconds.

Run: ``.venv/bin/python benchmarks/bench_hostile.py [--repeat 5] [--json out.json]``. The load average
is printed: on a shared machine, wall times are upper bounds.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from dcnviz import isolation  # noqa: E402
from dcnviz.errors import DcnvizError  # noqa: E402
from dcnviz.modelfile import open_model_file  # noqa: E402
from tests.helpers import hostile as H  # noqa: E402

LIMIT_S = 5.0
LIMIT_RSS_MB = 1536
PEERS = ROOT / "tests" / "fixtures" / "peers"

# Runs the CLI in a fresh process: ``main(argv)`` is timed after its imports (Python and torch start-up
# are the same for every input); prints its exit code, stderr, and the peak RSS of the CLI process and of
# every worker it forked (RUSAGE_SELF, RUSAGE_CHILDREN).
LAUNCHER = r"""
import contextlib, io, json, resource, sys, time
from dcnviz.cli import build_parser, main
build_parser()  # imports every command
err = io.StringIO()
t = time.perf_counter()
with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
    code = main(sys.argv[1:])
wall = time.perf_counter() - t
rss = max(resource.getrusage(w).ru_maxrss for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)) / 1024
print(json.dumps({"code": code, "wall_s": wall, "stderr": err.getvalue(), "peak_rss_mb": rss}))
"""


def cli_argv(h: H.Hostile, path: Path, folder: Path) -> list[str]:
    py: list[str] = []
    if h.kind == "model":
        return [*py, "inspect", str(path)]
    good = folder / "good.safetensors"
    if not good.exists():
        good.write_bytes(H.dcnviz_file())
        (folder / "t.csv").write_text("label,a\n" + "".join(f"{i % 2},{i % 5}\n" for i in range(100)))
    if h.kind == "names":
        return [*py, "inspect", str(good), "--names", str(path)]
    if h.kind == "feature_map":
        return [*py, "inspect", str(PEERS / "fuxictr_dcnv2.pt"), "--feature-map", str(path)]
    return [*py, "evaluate", str(good), "--data", "csv", "--data-dir", str(folder / "t.csv"), "--schema", str(path)]


def run_cli(argv: list[str]) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-c", LAUNCHER, *argv], capture_output=True, text=True, cwd=ROOT, timeout=600, check=True
    )
    return json.loads(out.stdout)


def app_path(h: H.Hostile, data: bytes) -> tuple[float, str]:
    """The app's reader on the bytes (warm fork server); names/schema/feature maps through their readers."""
    from dcnviz.data import read_schema
    from dcnviz.importers import read_names_or_feature_map

    t = time.perf_counter()
    try:
        if h.kind == "model":
            open_model_file(data, filename="upload")
        elif h.kind in ("names", "feature_map"):
            read_names_or_feature_map(data)
        else:
            with tempfile.NamedTemporaryFile(suffix=".json") as f:
                f.write(data)
                f.flush()
                read_schema(f.name)
        outcome = "LOADED"
    except DcnvizError as e:
        outcome = f"{type(e).__name__}: {str(e)[:90]}"
    return time.perf_counter() - t, outcome


def hostile_table() -> tuple[list[dict[str, Any]], int]:
    rows, failures = [], 0
    isolation.set_mode("server")
    open_model_file((PEERS / "deepctr_dcn_matrix.pt").read_bytes())  # warm the server, as the app does at start
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for h in H.HOSTILE:
            data = h.make()
            path = folder / f"{h.name}.{'json' if h.kind != 'model' else 'pt'}"
            path.write_bytes(data)
            cli = run_cli(cli_argv(h, path, folder))
            app_s, app_outcome = app_path(h, data)
            last = cli["stderr"].strip().splitlines()[-1] if cli["stderr"].strip() else ""
            ok = (
                cli["code"] == 2
                and last.startswith("error: ")
                and "Traceback" not in cli["stderr"]
                and cli["wall_s"] <= LIMIT_S
                and cli["peak_rss_mb"] <= LIMIT_RSS_MB
                and app_s <= LIMIT_S
                and app_outcome != "LOADED"
            )
            failures += not ok
            rows.append(
                {
                    "input": h.name,
                    "class": h.issue_class,
                    "bytes": len(data),
                    "cli_exit": cli["code"],
                    "cli_s": round(cli["wall_s"], 2),
                    "cli_peak_rss_mb": round(cli["peak_rss_mb"]),
                    "stderr_chars": len(cli["stderr"]),
                    "app_s": round(app_s, 3),
                    "ok": ok,
                    "error": last[:110],
                }
            )
            print(
                f"{'ok  ' if ok else 'FAIL'} {h.name:34s} {len(data):>10,} B  cli exit {cli['code']} "
                f"{cli['wall_s']:5.2f} s {cli['peak_rss_mb']:6.0f} MB stderr {len(cli['stderr']):5d}  "
                f"app {app_s:5.2f} s  {last[:80]}",
                flush=True,
            )
    return rows, failures


CONTAINED = r"""
import json, resource, sys, time
from tests.helpers import hostile as H
from dcnviz import isolation
from dcnviz.importers import safe_pickle
from dcnviz.errors import DcnvizError
from dcnviz.modelfile import open_model_file
safe_pickle.scan_pickle = lambda pkl: safe_pickle.PickleScan()
isolation.set_mode("fork")
out = {}
for name, data in H.crash_inputs().items():
    t = time.perf_counter()
    try:
        open_model_file(data)
        msg = "LOADED"
    except DcnvizError as e:
        msg = str(e)
    out[name] = {"s": round(time.perf_counter() - t, 2), "error": msg[:160],
                 "worker_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)}
print(json.dumps(out))
"""


def contained() -> dict[str, Any]:
    p = subprocess.run(
        [sys.executable, "-c", CONTAINED], capture_output=True, text=True, cwd=ROOT, timeout=600, check=True
    )
    out = json.loads(p.stdout.strip().splitlines()[-1])
    for name, r in out.items():
        print(f"  {name:22s} {r['s']:6.2f} s  worker peak RSS {r['worker_peak_rss_mb']} MB  {r['error'][:90]}")
    print("  (RSS: the larger of the worker's and the fork's parent's; the worker's address space is capped)")
    return out


def state_dict_bytes(mb: int) -> bytes:
    """A DeepCTR-shaped state dict of about ``mb`` MB (a full-rank 2-layer cross net plus a big embedding)."""
    d = 64
    rows = max(1, mb * (1 << 20) // (4 * d))
    sd = {
        "embedding_dict.big.weight": torch.randn(rows, d),
        "crossnet.kernels": torch.randn(2, d, d),
        "crossnet.bias": torch.zeros(2, d, 1),
    }
    buf = io.BytesIO()
    torch.save(sd, buf)
    return buf.getvalue()


def cpu_now() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def overhead(repeat: int) -> list[dict[str, Any]]:
    files = {p.name: p.read_bytes() for p in (PEERS / "deepctr_dcnmix.pt", PEERS / "recbole_dcnv2_checkpoint.pth")}
    files["tfrs_cross.npz"] = (PEERS / "tfrs_cross.npz").read_bytes()
    for mb in (20, 100):
        files[f"synthetic {mb} MB .pt"] = state_dict_bytes(mb)
    rows = []
    for name, data in files.items():
        row: dict[str, Any] = {"file": name, "bytes": len(data)}
        for label, mode, trusted in (
            ("in-process", "off", True),
            ("fork server", "server", False),
            ("fork", "fork", False),
        ):
            isolation.set_mode(mode)
            open_model_file(data, trusted=trusted)  # warm-up
            walls, cpus = [], []
            for _ in range(repeat):
                c, t = cpu_now(), time.perf_counter()
                open_model_file(data, trusted=trusted)
                walls.append(time.perf_counter() - t)
                cpus.append(cpu_now() - c)
            row[label] = (round(statistics.median(walls), 3), round(statistics.median(cpus), 3))
        row["overhead_server_s"] = round(row["fork server"][0] - row["in-process"][0], 3)
        row["overhead_fork_s"] = round(row["fork"][0] - row["in-process"][0], 3)
        rows.append(row)
        print(
            f"  {name:32s} {len(data) / 1e6:7.1f} MB  in-process {row['in-process'][0]:.3f} s  "
            f"fork server {row['fork server'][0]:.3f} s (+{row['overhead_server_s']:.3f})  "
            f"fork {row['fork'][0]:.3f} s (+{row['overhead_fork_s']:.3f})   [CPU s of this process and its "
            f"children: {row['in-process'][1]:.3f} / {row['fork server'][1]:.3f} (server's not counted) / "
            f"{row['fork'][1]:.3f}]",
            flush=True,
        )
    isolation.set_mode(None)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json", type=Path, default=None, help="also write the results to this file")
    ap.add_argument("--skip-overhead", action="store_true")
    args = ap.parse_args()
    print(f"load average before: {os.getloadavg()}; {os.cpu_count()} CPUs; torch {torch.__version__}")
    print(f"\n1. hostile inputs (limits: clean error, <= {LIMIT_S} s, <= {LIMIT_RSS_MB} MB peak RSS per process)")
    rows, failures = hostile_table()
    print(f"   inputs tried: {len(rows)}, failures: {failures}")
    print("\n2. crash-class inputs with dcnviz's pre-scan switched off (the worker alone contains them)")
    crash = contained()
    over = []
    if not args.skip_overhead:
        print(f"\n3. isolation's cost per file (median of {args.repeat}; wall s, and CPU s of this process tree)")
        over = overhead(args.repeat)
    print(f"\nload average after: {os.getloadavg()}")
    if args.json:
        args.json.write_text(json.dumps({"hostile": rows, "failures": failures, "contained": crash, "overhead": over}))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
