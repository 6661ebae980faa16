"""Benchmark: what watching a training run costs, in CPU-seconds per process (issue 16, item 1).

The load benchmark's watched / unwatched ratio of examples/s swings with whatever else the machine runs.
This probe measures what the live view *spends* instead, which the load hardly changes: one ``streamlit
run`` server, one Chromium session (Playwright) that starts a long training run, then CPU-seconds (user
+ system, from ``/proc``) per ``--window`` seconds of training for each process:

* **server** — the Streamlit process (every thread: script runs, the websocket, each run's reader);
* **worker** — the training worker(s) below the server's fork server (the trainer itself);
* **browser** — every Chromium process of this benchmark (the page's rendering);

in three phases, one after the other in the same run: **watched** (the Train page open, its live view
refreshing), **unwatched** (the session on the Tour: only the sidebar's status line refreshes) and
**no page** (the tab closed: the run's grace period keeps it training a few seconds; ``DCNVIZ_RUN_GRACE_S``
is raised so the window fits). The server's share per live-view refresh is printed too. With
``--threads`` the server's busiest threads are listed (names from ``/proc/PID/task/TID/comm``).

Run (hold the benchmark lock; the load averages are printed)::

    flock /tmp/dcnviz-bench.lock .venv/bin/python benchmarks/watch_cost.py [--window 10] [--repeat 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from load_app import CHROMIUM, CHROMIUM_ARGS, ROOT, TIMEOUT_MS, Session, descendants, loadavg, workers

TICK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of one process (all its threads); 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime (fields 14, 15 of stat)


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds per thread name of process ``pid`` (threads of one name summed)."""
    out: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            name = (task / "comm").read_text().strip()
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / TICK
    return out


def chromium_pids() -> list[int]:
    """Every Chromium process started by this benchmark (below Playwright's driver, below us)."""
    out = []
    for pid in descendants(os.getpid()):
        try:
            if b"chrom" in Path(f"/proc/{pid}/cmdline").read_bytes():
                out.append(pid)
        except OSError:
            continue
    return out


def sample(server: int) -> dict[str, float]:
    return {
        "server": cpu_s(server),
        "worker": sum(cpu_s(p) for p in workers(server)),
        "browser": sum(cpu_s(p) for p in chromium_pids()),
    }


def window(server: int, seconds: float, show_threads: bool) -> dict[str, float]:
    """CPU-seconds per process over ``seconds`` (workers and browser processes alive at the start)."""
    w0, b0 = workers(server), chromium_pids()
    t0 = thread_cpu(server) if show_threads else {}
    c0 = {"server": cpu_s(server), "worker": sum(map(cpu_s, w0)), "browser": sum(map(cpu_s, b0))}
    start = time.perf_counter()
    time.sleep(seconds)
    elapsed = time.perf_counter() - start
    c1 = {"server": cpu_s(server), "worker": sum(map(cpu_s, w0)), "browser": sum(map(cpu_s, b0))}
    if show_threads:
        t1 = thread_cpu(server)
        busy = sorted(((t1[k] - t0.get(k, 0.0), k) for k in t1), reverse=True)[:5]
        print("    server threads: " + ", ".join(f"{k} {v:.2f}" for v, k in busy))
    return {k: (c1[k] - c0[k]) * seconds / elapsed for k in c0}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--window", type=float, default=10.0, help="seconds per measurement window")
    p.add_argument("--repeat", type=int, default=2, help="watched / unwatched / no-page rounds")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--threads", action="store_true", help="also list the server's busiest threads")
    p.add_argument("--log", type=Path, default=Path(tempfile.gettempdir()) / "dcnviz-watch-cost-server.log")
    args = p.parse_args()
    from playwright.sync_api import sync_playwright

    from tests.helpers.browser import serve

    refresh_s = 2.0  # the Train page's LIVE_S (read from the page module, without importing Streamlit pages)
    text = (ROOT / "dcnviz/app/pages/train.py").read_text()
    for line in text.splitlines():
        if line.startswith("LIVE_S = "):
            refresh_s = float(line.split("=")[1].split("#")[0])
    grace = args.window + 15
    env = dict(os.environ, PYTHONUNBUFFERED="1", DCNVIZ_RUN_GRACE_S=str(grace))
    cmd = [sys.executable, "-m", "streamlit", "run", "app.py", "--browser.gatherUsageStats=false"]
    cmd += ["--server.fileWatcherType=none"]
    print(
        f"settings: default DCN-V2 on the bundled sample, batch {args.batch_size}, cpu; windows of "
        f"{args.window:g} s; live view every {refresh_s:g} s; load average before: {loadavg()}"
    )
    rows: dict[str, list[dict[str, float]]] = {"watched": [], "unwatched": [], "no page": []}
    with serve(cmd, cwd=ROOT, env=env, log_path=args.log) as (url, proc), sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        for r in range(args.repeat):
            s = Session(browser, url)
            s.open()
            s.start_training(200, args.batch_size)  # far longer than the windows: the tab's close ends it
            s.page.get_by_text("step ", exact=False).first.wait_for(timeout=TIMEOUT_MS)
            time.sleep(3)
            print(f"round {r + 1} (load {loadavg()})")
            for phase in ("watched", "unwatched", "no page"):
                if phase == "unwatched":
                    s.nav("Tour")
                    time.sleep(3)
                elif phase == "no page":
                    s.close()
                    time.sleep(1)
                cpu = window(proc.pid, args.window, args.threads)
                rows[phase].append(cpu)
                print(f"  {phase:<10} " + "  ".join(f"{k} {v:5.2f}" for k, v in cpu.items()) + " CPU-s")
            deadline = time.monotonic() + grace + 30
            while workers(proc.pid) and time.monotonic() < deadline:  # the run's grace period ends it
                time.sleep(0.5)
        browser.close()
    print(f"\nmedians, CPU-seconds per {args.window:g} s of a training run (load average now {loadavg()}):")
    print(f"  {'phase':<10} {'server':>7} {'worker':>7} {'browser':>8}")
    for phase, got in rows.items():
        m = {k: statistics.median(g[k] for g in got) for k in ("server", "worker", "browser")}
        print(f"  {phase:<10} {m['server']:7.2f} {m['worker']:7.2f} {m['browser']:8.2f}")
    watched = statistics.median(g["server"] for g in rows["watched"])
    base = statistics.median(g["server"] for g in rows["no page"])
    print(
        f"server CPU per live-view refresh (watched − no page) / {args.window / refresh_s:g} refreshes: "
        f"{(watched - base) / (args.window / refresh_s):.3f} s"
    )


if __name__ == "__main__":
    main()
