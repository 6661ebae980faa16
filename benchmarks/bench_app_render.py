"""Benchmark: how fast the app shows a model of width d = 1024 (issue 4: "within about a second").

Measures, for a 2-layer full-rank DCN-V2 over 41 features with d = 1024 saved as a dcnviz file:

1. **figures**: build the Feature crosses page's figures (41 × 41 block-norm heatmap, |W| max-pooled
   to ≤ 400 cells per side) and the Spectrum page's decay plot, then serialise each to JSON exactly as
   ``st.plotly_chart`` does (``plotly.io.to_json(fig, validate=False)``). Reference in the same run:
   the |W| heatmap without pooling (1024 × 1024 cells), what pooling replaces.
2. **first view** (cold): read the file + block norms and spectrum of layer 0 + the figures + JSON —
   what a user waits for the first time a model is opened.
3. **page runs** through Streamlit's AppTest (the whole script: sidebar, widgets, cached analysis,
   figures, JSON, tables): the Feature crosses and Spectrum pages, first run (cold cache) and again
   (cached by content hash, as when switching pages or layers). Browser drawing time is not included.

Run: ``.venv/bin/python benchmarks/bench_app_render.py [--repeat 5]``. Prints the median seconds of
``--repeat`` runs and the load average (the machine may be shared: numbers are noisy).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import plotly.io
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dcnviz.analysis import analyze_layer  # noqa: E402
from dcnviz.app.bundle import load_bundle  # noqa: E402
from dcnviz.checkpoint import model_to_bytes  # noqa: E402
from dcnviz.figures import fig_block_norms, fig_spectrum, fig_weight_matrix  # noqa: E402
from dcnviz.model import DCNModel, ModelConfig  # noqa: E402
from dcnviz.spec import FeatureSpec, Field  # noqa: E402

D, N_FEATURES = 1024, 41


def model_1024() -> DCNModel:
    widths = [D // N_FEATURES] * N_FEATURES
    widths[-1] += D - sum(widths)
    fields = tuple(
        Field(name=f"feature_{i:02d}", kind="categorical", embedding_dim=w, vocab=("a", "b"))
        for i, w in enumerate(widths)
    )
    torch.manual_seed(0)
    return DCNModel(FeatureSpec(fields), ModelConfig(model="dcnv2", cross_layers=2, hidden=(64,)))


def median_time(fn: Callable[[], object], repeat: int, *, warm: bool = True) -> float:
    if warm:
        fn()
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return statistics.median(out)


def figures(la, blocks, names, max_cells: int = 400) -> int:  # type: ignore[no-untyped-def]
    figs = [
        fig_block_norms(la.norms("raw"), names, title="layer 0"),
        fig_weight_matrix(la.matrix.weight, blocks, max_cells=max_cells),
        fig_spectrum(la.spectrum),
    ]
    return sum(len(plotly.io.to_json(f, validate=False)) for f in figs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    data = model_to_bytes(model_1024())
    print(f"model: d={D}, {N_FEATURES} features, 2 full-rank cross layers, file {len(data) / 1e6:.1f} MB")
    print(f"load average at start: {os.getloadavg()[0]:.2f} (1 min), {os.cpu_count()} CPUs")

    bundle = load_bundle(data)
    blocks, names = bundle.weights.blocks, bundle.names
    la = analyze_layer(bundle.weights, 0)
    size = figures(la, blocks, names)
    size_ref = figures(la, blocks, names, max_cells=D)
    t_fig = median_time(lambda: figures(la, blocks, names), args.repeat)
    t_ref = median_time(lambda: figures(la, blocks, names, max_cells=D), args.repeat)
    print(f"1. figures + JSON (heatmap, pooled |W|, spectrum; {size / 1e6:.2f} MB JSON): {t_fig:.3f} s")
    print(
        f"   reference, |W| not pooled (1024 × 1024 cells; {size_ref / 1e6:.2f} MB JSON): {t_ref:.3f} s "
        f"→ time ratio {t_ref / t_fig:.2f}, JSON sent to the browser {size_ref / size:.1f}× larger"
    )

    def cold() -> None:
        b = load_bundle(data)
        a = analyze_layer(b.weights, 0)
        figures(a, b.weights.blocks, b.names)

    t_cold = median_time(cold, args.repeat, warm=True)
    t_load = median_time(lambda: load_bundle(data), args.repeat)
    t_an = median_time(lambda: analyze_layer(bundle.weights, 0), args.repeat)
    print(f"2. first view: read file {t_load:.3f} s + analyse layer 0 {t_an:.3f} s + figures → total {t_cold:.3f} s")

    from streamlit.testing.v1 import AppTest

    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "wide_1024.safetensors").write_bytes(data)
        os.environ["DCNVIZ_MODELS_DIR"] = tmp
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
        at.run()  # imports, first script run (Tour: analyses layer 0)
        for page in ("crosses", "spectrum"):
            cold_runs, warm_runs = [], []
            for _ in range(args.repeat):
                # a fresh cache for the cold number: clear Streamlit's resource caches
                import streamlit as st

                st.cache_resource.clear()
                t = time.perf_counter()
                at.switch_page(f"dcnviz/app/pages/{page}.py").run()
                cold_runs.append(time.perf_counter() - t)
                t = time.perf_counter()
                at.run()
                warm_runs.append(time.perf_counter() - t)
                assert not at.exception, [e.message for e in at.exception]
            print(
                f"3. page '{page}' script run: first {statistics.median(cold_runs):.3f} s, "
                f"cached {statistics.median(warm_runs):.3f} s"
            )
    print(f"load average at end: {os.getloadavg()[0]:.2f} (1 min)")


if __name__ == "__main__":
    main()
