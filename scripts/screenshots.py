"""Take the screenshots in docs/ from the running app, in a real browser (Playwright + Debian's Chromium).

    .venv/bin/python scripts/screenshots.py            # writes docs/screenshot-*.png

Serves `streamlit run app.py` (the shipped demo models) on a free port and captures, at 1280 × 1000:
the Tour, Feature crosses (the heatmap of the shipped dcnv2_sample model, scrolled to it), Spectrum and
Compare. Chromium: /usr/bin/chromium or $DCNVIZ_CHROMIUM.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
CHROMIUM = os.environ.get("DCNVIZ_CHROMIUM", "/usr/bin/chromium")
SHOTS = {  # page title in the sidebar → (file, the text to scroll to the top of the window, or None)
    "Tour": ("screenshot-tour.png", None),
    "Feature crosses": ("screenshot-crosses.png", "Frobenius norm ‖W_ij‖_F of block"),
    "Spectrum": ("screenshot-spectrum.png", None),
    "Compare": ("screenshot-compare.png", "Same colour scale for A and B"),
}


def main() -> int:
    from playwright.sync_api import sync_playwright

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("DCNVIZ_")}
    cmd = [sys.executable, "-m", "streamlit", "run", "app.py", f"--server.port={port}", "--server.headless=true"]
    server = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.read().strip() == b"ok":
                        break
            except OSError:
                time.sleep(0.5)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1280, "height": 1000}, device_scale_factor=1)
            page.goto(url)
            page.get_by_role("heading", level=1).first.wait_for(timeout=120_000)
            for title, (name, anchor) in SHOTS.items():
                page.get_by_test_id("stSidebarNav").get_by_text(title, exact=True).click(timeout=120_000)
                page.wait_for_timeout(1500)
                page.get_by_test_id("stSpinner").first.wait_for(state="detached", timeout=120_000)
                page.locator(".js-plotly-plot").first.wait_for(timeout=120_000)
                page.wait_for_timeout(2500)
                if anchor:
                    page.get_by_text(anchor, exact=False).first.evaluate("e => e.scrollIntoView({block: 'start'})")
                    page.wait_for_timeout(1000)
                page.screenshot(path=str(DOCS / name))
                print(f"wrote docs/{name}")
                page.evaluate("() => document.querySelector('[data-testid=\"stMain\"]').scrollTo(0, 0)")
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
