"""End to end in a real headless browser: `streamlit run app.py`, upload files, see the heatmap, train.

Starts the app on a free port (headless; the settings of .streamlit/config.toml), drives Debian's
Chromium with Playwright: uploads a peer library's file on the Model page and checks its heatmap on
Feature crosses — its name, its feature names, and its size (plot area at least half of the main
column's width, square cells, colour bar beside them) — uploads a dcnviz model, runs a one-epoch
training on a tiny sample and the Paper lab's Table 6 (one epoch per model; one of its models opened on
Feature crosses), and saves screenshots
under ``tests/artifacts/`` (the screenshots in docs/ come from ``scripts/screenshots.py``). Also: the
standalone heatmap for 2–40 features, and the app's settings when it is started from another folder.

Chromium: ``/usr/bin/chromium`` (or ``$DCNVIZ_CHROMIUM``). Under ``CI=true`` a missing browser or
Playwright is a failure; elsewhere the test skips with the reason.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from dcnviz.data import MOVIELENS_FEATURES
from dcnviz.sample import SampleConfig, make_sample, write_sample
from tests.helpers import PEERS, ROOT
from tests.helpers.app import NAMES, write_demo_models
from tests.helpers.browser import (
    ARTIFACTS,
    CHROMIUM_ARGS,
    _missing,
    assert_the_apps_settings,
    open_the_tour,
    serve,
)

pytestmark = pytest.mark.browser


SHIPPED_SAMPLE_MODEL = ROOT / "models"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """The app served by `streamlit run` on a free port, with tiny demo models and a tiny sample."""
    models = tmp_path / "models"
    write_demo_models(models)
    sample = tmp_path / "sample"
    write_sample(make_sample(SampleConfig(n_users=150, n_movies=60, n_ratings=3000, min_ratings=20)), sample)
    env = dict(os.environ, DCNVIZ_MODELS_DIR=str(models), DCNVIZ_SAMPLE_DIR=str(sample), PYTHONUNBUFFERED="1")
    # the app's own settings (.streamlit/config.toml: no usage statistics, no file watcher) apply as they are
    cmd = [sys.executable, "-m", "streamlit", "run", "app.py"]
    with serve(cmd, cwd=ROOT, env=env, log_path=tmp_path / "server.log") as (url, _):
        yield url, tmp_path / "server.log"


def _nav(page, title: str) -> None:  # type: ignore[no-untyped-def]
    """Client-side navigation through the sidebar (keeps the session, unlike loading a URL)."""
    page.get_by_test_id("stSidebarNav").get_by_text(title, exact=True).click()
    page.get_by_role("heading", level=1).first.wait_for()


def _idle(page, timeout: float = 120_000) -> None:  # type: ignore[no-untyped-def]
    """Wait until the page settles: no spinner (cached loads show none), then a short pause."""
    page.wait_for_timeout(500)
    page.get_by_test_id("stSpinner").first.wait_for(state="detached", timeout=timeout)
    page.wait_for_timeout(300)


def _type(page, label: str, value: str) -> None:  # type: ignore[no-untyped-def]
    """Type ``value`` into the input labelled ``label``, press Enter, wait for the page to settle."""
    box = page.get_by_label(label)
    box.fill(value)
    box.press("Enter")
    _idle(page)


def _heatmap_labels(page) -> list[str]:  # type: ignore[no-untyped-def]
    chart = page.locator(".js-plotly-plot").first
    chart.wait_for(timeout=60_000)
    return [t.strip() for t in chart.locator("g.xtick text").all_text_contents()]


SIZES_JS = """() => {
  const main = document.querySelector('[data-testid="stMainBlockContainer"]');
  const cs = getComputedStyle(main);
  const column = main.clientWidth - parseFloat(cs.paddingLeft) - parseFloat(cs.paddingRight);
  const charts = Array.from(document.querySelectorAll('.js-plotly-plot')).map(p => {
    const area = p.querySelector('.nsewdrag').getBoundingClientRect();
    const bar = p.querySelector('.colorbar');
    const cell = p.querySelector('g.heatmaplayer text, .textpoint text');
    const box = p.getBoundingClientRect();
    return {plot: [area.width, area.height],
            colorbar_gap: bar ? bar.getBoundingClientRect().left - area.right : null,
            inside: area.left >= box.left - 1
              && (bar ? bar.getBoundingClientRect().right : area.right) <= box.right + 1,
            cell_font: cell ? parseFloat(getComputedStyle(cell).fontSize) : null};
  });
  return {column, charts};
}"""


def heatmap_sizes(page) -> dict:  # type: ignore[no-untyped-def]
    """The main column's content width and, per Plotly chart, its plot area (px), colour-bar gap and cell font."""
    return page.evaluate(SIZES_JS)  # type: ignore[no-any-return]


def test_upload_heatmap_and_training_in_a_real_browser(chromium: str, server: tuple[str, Path], tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    url, log = server
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    # The file to upload: a demo model trained on the sample when models/ ships one, else the planted model.
    shipped = sorted(p for p in SHIPPED_SAMPLE_MODEL.glob("*sample*.safetensors"))
    if shipped:
        upload, expected = shipped[0], list(MOVIELENS_FEATURES)
    else:
        upload = tmp_path / "planted_dcnv2.safetensors"
        write_demo_models(tmp_path / "up")
        (tmp_path / "up" / "a_dcnv2_planted.safetensors").rename(upload)
        expected = NAMES

    with sync_playwright() as p:
        try:
            browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
        except Exception as e:  # the binary exists but cannot start
            _missing(f"Chromium at {chromium} does not start: {e}")
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000}, device_scale_factor=1)
            page.goto(url, wait_until="domcontentloaded")
            page.get_by_role("heading", name="dcnviz: what did the cross network learn?").wait_for(timeout=60_000)
            _idle(page)

            # A peer library's file, uploaded through the file input on the Model page: its name and its
            # heatmap on Feature crosses, the heatmap's plot area at least half of the main column's width.
            peer = PEERS / "deepctr_dcn_matrix.pt"
            _nav(page, "Model")
            page.locator("input[type=file]").first.set_input_files(str(peer))
            page.get_by_text(f"Model card: {peer.name}", exact=False).first.wait_for(timeout=60_000)
            _idle(page)
            _nav(page, "Feature crosses")
            _idle(page)
            page.get_by_test_id("stCaptionContainer").get_by_text(peer.name, exact=False).first.wait_for()
            assert _heatmap_labels(page) == ["user", "movie", "dense"]  # the file's embedding tables
            sizes = heatmap_sizes(page)
            heat = sizes["charts"][0]
            assert heat["plot"][0] >= 0.5 * sizes["column"], sizes  # the heatmap fills the column
            assert abs(heat["plot"][0] - heat["plot"][1]) <= 2, sizes  # square cells
            assert -2 <= heat["colorbar_gap"] <= 40, sizes  # the colour bar beside the cells
            assert heat["cell_font"] >= 12, sizes  # readable cell numbers
            assert heat["inside"], sizes  # nothing cut off: cells and colour bar inside the chart
            w_plot = sizes["charts"][1]["plot"][0]  # the |W| view below: not larger than the heatmap
            assert w_plot <= heat["plot"][0] + 2, sizes
            page.screenshot(path=str(ARTIFACTS / "crosses-peer.png"))
            page.set_viewport_size({"width": 1920, "height": 1080})  # a large screen: still at least half
            page.wait_for_timeout(1500)
            wide = heatmap_sizes(page)
            assert wide["charts"][0]["plot"][0] >= 0.5 * wide["column"], wide
            assert wide["charts"][0]["inside"] and -2 <= wide["charts"][0]["colorbar_gap"] <= 40, wide
            page.set_viewport_size({"width": 1280, "height": 1000})
            page.wait_for_timeout(1000)

            # Upload on the Model page; the card shows the file's detected format.
            _nav(page, "Model")
            page.locator("input[type=file]").first.set_input_files(str(upload))
            page.get_by_text(f"Model card: {upload.name}", exact=False).first.wait_for(timeout=60_000)
            _idle(page)
            page.screenshot(path=str(ARTIFACTS / "model.png"))

            # The heatmap of the uploaded model, with its feature names on the axis.
            _nav(page, "Feature crosses")
            _idle(page)
            assert _heatmap_labels(page) == expected
            page.wait_for_timeout(500)
            page.screenshot(path=str(ARTIFACTS / "crosses.png"))

            # A short training run on the (tiny) sample; the trained model opens in the other pages.
            _nav(page, "Train")
            _idle(page)
            for label, value in (
                ("Epochs (most)", "1"),
                ("Embedding size per feature", "4"),
                ("Deep tower sizes", "16"),
            ):
                _type(page, label, value)
            page.get_by_role("button", name="Start training").click()
            page.get_by_text("Test AUC", exact=False).wait_for(timeout=180_000)
            _idle(page)
            page.screenshot(path=str(ARTIFACTS / "train.png"), full_page=True)
            _nav(page, "Feature crosses")
            _idle(page)
            page.get_by_text("on sample #1", exact=False).first.wait_for()  # the trained model is the one shown
            assert _heatmap_labels(page) == list(MOVIELENS_FEATURES)

            # The Paper lab's Table 6: all seven models, one epoch each, on the tiny sample, beside the paper.
            _nav(page, "Paper lab")
            _idle(page)
            page.get_by_text("MovieLens models (§7.3, Table 6)", exact=True).click()
            _idle(page)
            _type(page, "Most epochs (0 = the recipe's)", "1")
            page.get_by_role("button", name="Run Table 6").click()
            page.get_by_text("(paper, MovieLens-1M)", exact=False).wait_for(timeout=180_000)
            _idle(page)
            chart = page.locator(".js-plotly-plot").first
            assert chart.locator("g.xtick text").all_text_contents()[:2] == ["DNN", "DCN (V1)"]
            assert chart.locator(".scatterlayer .point").count() == 7 + 5  # ours, and the paper's five models
            assert page.get_by_test_id("stDataFrame").count() == 1
            page.screenshot(path=str(ARTIFACTS / "paperlab-table6.png"), full_page=True)
            # its models are in the sidebar's picker: one opens on Feature crosses
            page.get_by_test_id("stSidebar").get_by_test_id("stSelectbox").first.click()
            page.get_by_text("dcn-mix #1 · Table 6", exact=True).click()
            _idle(page)
            _nav(page, "Feature crosses")
            _idle(page)
            page.get_by_test_id("stCaptionContainer").get_by_text("dcn-mix #1", exact=False).first.wait_for()
            assert _heatmap_labels(page) == list(MOVIELENS_FEATURES)
        finally:
            browser.close()
    text = log.read_text()
    assert "Traceback" not in text, text[-3000:]
    assert "deprecat" not in text.lower(), text[-3000:]  # Streamlit logs its deprecation warnings


@pytest.mark.parametrize("viewport", [(1280, 900), (1920, 1080)])
def test_heatmap_figures_fill_the_window_with_square_cells_for_2_to_40_features(
    chromium: str, tmp_path: Path, viewport: tuple[int, int]
) -> None:
    """The standalone heatmap (the figure download; the same CSS sizes it in the app) in a real browser."""
    import numpy as np
    from playwright.sync_api import sync_playwright

    from dcnviz.figures import fig_block_norms, figure_html

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
            for k in (2, 6, 12, 40):
                names = [f"feature_{i}" if i % 7 else f"a_longer_feature_name_{i}" for i in range(k)]
                N = np.random.default_rng(k).random((k, k))
                html = tmp_path / f"k{k}.html"
                html.write_text(figure_html(fig_block_norms(N, names, title=f"{k} features")), encoding="utf-8")
                page.goto(html.as_uri())
                page.locator(".js-plotly-plot .nsewdrag").wait_for()
                page.wait_for_timeout(300)
                got = page.evaluate(
                    """() => {
                      const area = document.querySelector('.nsewdrag').getBoundingClientRect();
                      const bar = document.querySelector('.colorbar').getBoundingClientRect();
                      const ticks = Array.from(document.querySelectorAll('g.xtick text')).map(
                        t => parseFloat(getComputedStyle(t).fontSize));
                      const chart = document.querySelector('.js-plotly-plot').getBoundingClientRect();
                      return {w: area.width, h: area.height, gap: bar.left - area.right, ticks,
                              bottom: chart.bottom, page: document.body.clientWidth, vh: window.innerHeight};
                    }"""
                )
                page.screenshot(path=str(tmp_path / f"k{k}.png"))
                assert abs(got["w"] - got["h"]) <= 2, (k, got)  # square cells
                # as large as the window allows: half its width at least, unless its height is the limit
                assert got["w"] >= 0.5 * got["page"] or got["bottom"] >= 0.9 * got["vh"], (k, got)
                assert got["bottom"] <= got["vh"] + 1, (k, got)  # the whole map fits in the window
                assert -2 <= got["gap"] <= 40, (k, got)  # the colour bar beside it (its box starts at the plot edge)
                assert len(got["ticks"]) == k and min(got["ticks"]) >= 10, (k, got)  # every label, readable
        finally:
            browser.close()


def test_the_apps_settings_apply_when_started_from_another_folder(chromium: str, tmp_path: Path) -> None:
    """`streamlit run /path/to/app.py` from elsewhere: no usage statistics, no file watcher, minimal toolbar."""
    away = tmp_path / "elsewhere"
    away.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMLIT_")}
    cmd = [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py")]
    assert_the_apps_settings(open_the_tour(chromium, cmd, cwd=away, env=env, log_path=tmp_path / "elsewhere.log"))
