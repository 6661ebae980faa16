"""The real-browser harness: a Streamlit server on a free port (:func:`serve`, also used by
``benchmarks/load_app.py``), the Chromium settings, and the checks ``tests/e2e/test_browser.py`` and
``tests/e2e/test_install.py`` share (the Tour opens; the app's own settings apply).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import ROOT

ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM = os.environ.get("DCNVIZ_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _missing(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true and the browser test cannot run: {reason}")
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serve(cmd: list[str], *, cwd: Path, env: dict[str, str], log_path: Path) -> Iterator[tuple[str, subprocess.Popen]]:
    """Run a Streamlit server command (it must take --server.port) until the block ends; yield (url, process).

    The server log is copied to ``tests/artifacts/<log name>`` at the end.
    """
    port = _free_port()
    log = log_path.open("w")
    full = [*cmd, f"--server.port={port}", "--server.headless=true", "--server.address=127.0.0.1"]
    proc = subprocess.Popen(full, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.read().strip() == b"ok":
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                log.flush()
                raise AssertionError(f"the server did not start ({full}):\n{log_path.read_text()[-3000:]}")
            time.sleep(0.5)
        yield url, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        (ARTIFACTS / log_path.name).write_text(log_path.read_text())


def inotify_watches(pid: int) -> int:
    """How many inotify watches process ``pid`` holds (Linux: ``inotify wd:`` lines in /proc/PID/fdinfo)."""
    n = 0
    for fd in Path(f"/proc/{pid}/fdinfo").iterdir():
        with contextlib.suppress(OSError):
            n += fd.read_text().count("inotify wd:")
    return n


def open_the_tour(chromium: str, cmd: list[str], *, cwd: Path, env: dict[str, str], log_path: Path) -> dict:
    """Serve ``cmd`` from ``cwd``, open the Tour in Chromium; what a check of the app's settings needs:
    the heatmap's x labels, "Deploy" toolbar buttons, the server's inotify watches and its log."""
    from playwright.sync_api import sync_playwright

    with serve(cmd, cwd=cwd, env=env, log_path=log_path) as (url, proc), sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(url, wait_until="domcontentloaded")
            page.get_by_role("heading", name="dcnviz: what did the cross network learn?").wait_for(timeout=90_000)
            page.get_by_text("Walking through", exact=False).first.wait_for(timeout=90_000)
            chart = page.locator(".js-plotly-plot").first
            chart.wait_for(timeout=60_000)
            return {
                "labels": [t.strip() for t in chart.locator("g.xtick text").all_text_contents()],
                "deploy": page.get_by_text("Deploy", exact=True).count(),
                "watches": inotify_watches(proc.pid),
                "log": log_path,
            }
        finally:
            browser.close()


def assert_the_apps_settings(seen: dict) -> None:
    """.streamlit/config.toml applied: minimal toolbar, no usage statistics, no file watcher, no traceback."""
    text = seen["log"].read_text()
    assert seen["deploy"] == 0, "client.toolbarMode = minimal applies"
    assert "Collecting usage statistics" not in text, "browser.gatherUsageStats = false applies"
    assert seen["watches"] == 0, f"server.fileWatcherType = none applies; {seen['watches']} inotify watches"
    assert "Traceback" not in text, text[-3000:]
