"""Benchmark: ``explain`` on a MovieLens-1M-sized model (issue 12: the whole explain < 5 s on 2 cores).

The model: DCN-V2 over ML-1M's six categorical fields with ML-1M's vocabulary sizes (user_id 6,040,
movie_id 3,706, gender 2, age 7, occupation 21, zip 3,439), embedding 30 each (d = 180), 2 full-rank
cross layers, DNN 256 × 256, parallel (dcnviz's default) — and the same with ``--structure stacked``
or ``--model dcn-mix`` for the other code paths. Weights are He-normal at seed 0 and the 20,000 rows are
random ids with random labels (the time does not depend on the values; MovieLens-1M is not on this
machine). Both sides use the same model, rows, torch threads and float32.

Measured (median of ``--repeat`` runs, seconds):

1. **dcnviz explain**: ``Explainer`` (one forward pass, kept) + both layers' ablations and contributions
   + the rank curve at the default ranks (1, 2, 4, …, 128, 180: 9 points) — what ``python -m dcnviz explain``
   computes after loading;
2. its parts: the forward pass, one layer's ablation, the rank curve;
3. **naive reference** (same run): one whole forward pass per ablated block, k² = 36 per layer, 72 in all
   (``dcnviz.explain.naive_ablation``), measured once per layer (it is slow), and the ratio to 1.;
4. **first heatmap**: the first ablation heatmap (Explainer + layer 0's ablation + the heatmap figure serialised
   as ``st.plotly_chart`` does) and a view switch served from the memo (layer 0 again, the rank curve again);
5. **app** (``--app``; Streamlit's AppTest runs the real page scripts, browser drawing not included): the
   shipped ``models/dcnv2_sample.safetensors`` (the same shape: d = 180, 6 features, 2 full layers, DNN
   256 × 256) on the bundled sample's 5,002 validation rows — Feature crosses switched to "effect on
   predictions" with cold caches (reading the sample, the forward pass, layer 0's ablation, the figures),
   then cached switches (layer 1, back to layer 0, weights and back), and Spectrum's rank curve cold and cached.

Run: ``.venv/bin/python benchmarks/bench_explain.py [--repeat 3] [--threads 2] [--structure stacked]
[--model dcn-mix] [--app]``; prints the load average, which says how busy the shared machine was.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_app_render import median_time  # noqa: E402

from dcnviz.encoded import Encoded  # noqa: E402
from dcnviz.explain import Explainer, naive_ablation  # noqa: E402
from dcnviz.model import DCNModel, ModelConfig  # noqa: E402
from dcnviz.spec import FeatureSpec, Field  # noqa: E402

ML1M_VOCAB = {"user_id": 6040, "movie_id": 3706, "gender": 2, "age": 7, "occupation": 21, "zip": 3439}


def ml1m_sized(model: str, structure: str, seed: int = 0) -> DCNModel:
    fields = tuple(
        Field(name=n, kind="categorical", embedding_dim=30, vocab=tuple(str(i) for i in range(v)))
        for n, v in ML1M_VOCAB.items()
    )
    torch.manual_seed(seed)
    config = ModelConfig(model=model, structure=structure, cross_layers=2, hidden=(256, 256))
    return DCNModel(FeatureSpec(fields), config).eval()


def random_rows(model: DCNModel, n: int, seed: int = 0) -> Encoded:
    g = torch.Generator().manual_seed(seed)
    cats = [torch.randint(0, f.vocab_size, (n,), generator=g) for f in model.spec.fields]
    return Encoded(cat=torch.stack(cats, dim=1), dense=torch.zeros(n, 0), y=(torch.rand(n, generator=g) < 0.58).float())


def median(fn: Callable[[], object], repeat: int) -> float:
    return median_time(fn, repeat, warm=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2, help="torch threads (both sides)")
    ap.add_argument("--rows", type=int, default=20_000)
    ap.add_argument("--structure", choices=("parallel", "stacked"), default="parallel")
    ap.add_argument("--model", choices=("dcnv2", "dcn-mix"), default="dcnv2")
    ap.add_argument("--no-naive", action="store_true", help="skip the slow reference")
    ap.add_argument("--app", action="store_true", help="also time the app's pages through AppTest")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = ml1m_sized(args.model, args.structure)
    data = random_rows(model, args.rows)
    c = model.config
    print(
        f"model: {c.model} {c.structure}, d = {model.d}, {len(model.spec.fields)} features, {c.cross_layers} "
        f"{c.cross_kind} cross layers{f' (K = {c.experts}, r = {c.rank})' if c.cross_kind == 'mixture' else ''}, "
        f"DNN {'×'.join(map(str, c.hidden))}; {args.rows:,} rows; torch {torch.__version__}, {args.threads} threads"
    )
    print(f"load average at start: {os.getloadavg()[0]:.2f} (1 min), {os.cpu_count()} CPUs")

    def whole() -> Explainer:
        ex = Explainer(model, data)
        ex.explain()
        return ex

    whole()  # warm-up (allocator, kernels)
    t_all = median(whole, args.repeat)
    t_fwd = median(lambda: Explainer(model, data), args.repeat)
    ex = Explainer(model, data)
    t_l0 = median(lambda: ex._layer_effect(0), args.repeat)  # not memoised: computed each time
    t_l1 = median(lambda: ex._layer_effect(1), args.repeat)
    t_curve = median(lambda: tuple(ex._rank_point(r) for r in (1, 2, 4, 8, 16, 32, 64, 128, 180)), args.repeat)
    print(f"1. dcnviz explain (forward + 2 layers' ablations and contributions + 9-point rank curve): {t_all:.3f} s")
    print(
        f"2.   forward pass, kept {t_fwd:.3f} s; layer 0 ablation {t_l0:.3f} s; layer 1 {t_l1:.3f} s; "
        f"rank curve {t_curve:.3f} s"
    )

    if not args.no_naive:
        t0 = time.perf_counter()
        naive_ablation(model, data, 0)
        t_n0 = time.perf_counter() - t0
        t0 = time.perf_counter()
        naive_ablation(model, data, 1)
        t_n1 = time.perf_counter() - t0
        t_naive = t_n0 + t_n1
        print(
            f"3. naive reference, 72 ablated forward passes (36 per layer): {t_naive:.3f} s "
            f"(layer 0 {t_n0:.3f} s, layer 1 {t_n1:.3f} s) → dcnviz's ablations are "
            f"{t_naive / (t_l0 + t_l1):.1f}× faster; the whole explain {t_naive / t_all:.1f}× faster than the naive "
            "ablations alone"
        )

    import plotly.io

    from dcnviz.figures_explain import fig_effect

    def first_heatmap() -> None:
        e = Explainer(model, data)
        le = e.layer_effect(0)
        plotly.io.to_json(fig_effect(le.ablation, [f.name for f in model.spec.fields], title="layer 0"), validate=False)

    t_first = median(first_heatmap, args.repeat)
    ex2 = Explainer(model, data)
    ex2.explain()
    t_switch = median(lambda: (ex2.layer_effect(0), ex2.layer_effect(1), ex2.rank_curve()), args.repeat)
    print(
        f"4. app: first ablation heatmap (forward + layer 0 + figure JSON) {t_first:.3f} s; "
        f"switching views (memo) {t_switch * 1e3:.2f} ms"
    )
    if args.app:
        app_runs(args.repeat)
    print(f"load average at end: {os.getloadavg()[0]:.2f} (1 min)")


def app_runs(repeat: int) -> None:
    import shutil
    import tempfile

    import streamlit as st
    from streamlit.testing.v1 import AppTest

    def timed(at: AppTest, change: Callable[[AppTest], object]) -> float:
        t = time.perf_counter()
        change(at)
        at.run()
        dt = time.perf_counter() - t
        assert not at.exception and not at.error, [e.message for e in at.exception] + [e.value for e in at.error]
        return dt

    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(ROOT / "models" / "dcnv2_sample.safetensors", tmp)
        os.environ["DCNVIZ_MODELS_DIR"] = tmp
        cold, switch, spectrum_cold, spectrum_warm = [], [], [], []
        for _ in range(repeat):
            at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=600)
            at.run()  # the Tour (it measures the rank curve for its suggestion)
            at.switch_page("dcnviz/app/pages/crosses.py").run()
            st.cache_resource.clear()  # cold: the model file, the sample and the explainer are read again
            cold.append(timed(at, lambda a: a.radio(key="cx_view").set_value("effect")))
            times = [
                timed(at, lambda a: a.selectbox(key="cx_layer").set_value(1)),
                timed(at, lambda a: a.selectbox(key="cx_layer").set_value(0)),
                timed(at, lambda a: a.radio(key="cx_view").set_value("weights")),
                timed(at, lambda a: a.radio(key="cx_view").set_value("effect")),
            ]
            switch.append(statistics.median(times[2:]))  # layer 1 is computed the first time: not a cached switch
            st.cache_resource.clear()
            spectrum_cold.append(timed(at, lambda a: a.switch_page("dcnviz/app/pages/spectrum.py")))
            spectrum_warm.append(timed(at, lambda a: None))
        print(
            "5. app (AppTest, shipped dcnv2_sample, 5,002 validation rows): Feature crosses → effect view, cold "
            f"caches {statistics.median(cold):.3f} s; cached view switch {statistics.median(switch):.3f} s; "
            f"Spectrum with the rank curve: cold {statistics.median(spectrum_cold):.3f} s, cached "
            f"{statistics.median(spectrum_warm):.3f} s"
        )


if __name__ == "__main__":
    main()
