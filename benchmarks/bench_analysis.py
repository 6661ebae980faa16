"""Benchmark of dcnviz.analysis: a 1024-wide cross layer, and load + analysis of a model file.

Prints measured numbers (median of ``--repeat`` runs, seconds) and ratios against a reference
computed in the same run:

1. One 1024 × 1024 full-rank W with ~40 feature blocks: float64 singular values + block norms
   (the issue's "well under a second" target). Reference: block norms by a Python double loop over
   block pairs (what vectorisation replaces).
2. A low-rank layer (d = 1024, r = 256) and a mixture (K = 4, r = 64): singular values from the
   factors (QR + r × r core) against the dense SVD of the d × d product.
3. App-level: read a model file + block norms + spectrum (learned and initial) of every cross layer,
   for each ``models/*.safetensors`` (the shipped models) or, when there are none yet, a
   MovieLens-sized stand-in; and a 2-layer model of width 1024 (one layer, as a page shows it, and
   all layers).
4. Building (and serialising to JSON) the figures of one 1024-wide layer.

Run: ``.venv/bin/python benchmarks/bench_analysis.py [--repeat 5]``. Timings on a shared machine are
noisy: the load average is printed with the results.
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

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dcnviz import analysis as A  # noqa: E402
from dcnviz import figures as F  # noqa: E402
from dcnviz.checkpoint import save_model  # noqa: E402
from dcnviz.importers import load_cross_weights  # noqa: E402
from dcnviz.model import DCNModel, ModelConfig  # noqa: E402
from dcnviz.spec import Block, FeatureSpec, Field  # noqa: E402
from dcnviz.weights import ExpertWeights, LowRankWeights, MixtureWeights  # noqa: E402


def timed(fn: Callable[[], object], repeat: int) -> float:
    fn()  # warm-up (imports, BLAS threads)
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return statistics.median(out)


def blocks_1024(n: int = 41) -> list[Block]:
    widths = [1024 // n] * n
    widths[-1] += 1024 - sum(widths)
    out, s = [], 0
    for i, w in enumerate(widths):
        out.append(Block(f"f{i}", s, s + w, "categorical"))
        s += w
    return out


def loop_block_norms(W: np.ndarray, blocks: list[Block]) -> np.ndarray:
    k = len(blocks)
    out = np.zeros((k, k))
    for i, bi in enumerate(blocks):
        for j, bj in enumerate(blocks):
            out[i, j] = np.linalg.norm(W[bi.start : bi.stop, bj.start : bj.stop])
    return out


def spec_of(widths: list[int]) -> FeatureSpec:
    return FeatureSpec(
        tuple(Field(name=f"f{i}", kind="categorical", embedding_dim=w, vocab=("a", "b")) for i, w in enumerate(widths))
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    r = args.repeat
    rng = np.random.default_rng(0)
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs; torch threads {torch.get_num_threads()}")
    print(f"median of {r} runs, seconds\n")

    # 1. one 1024-wide full-rank layer
    d = 1024
    blocks = blocks_1024()
    W = rng.normal(size=(d, d)) / np.sqrt(d)
    t_svd = timed(lambda: A.singular_values(W), r)  # one BLAS thread (dcnviz's choice)
    t_svd_mt = timed(lambda: np.linalg.svd(W, compute_uv=False), r)  # the BLAS library's default threads
    W180 = rng.normal(size=(180, 180))
    t_180 = timed(lambda: A.singular_values(W180), r)
    t_180_mt = timed(lambda: np.linalg.svd(W180, compute_uv=False), r)
    t_bn = timed(lambda: A.block_norms(W, blocks), r)
    t_sym = timed(lambda: A.block_norms(W, blocks, "symmetric"), r)
    t_loop = timed(lambda: loop_block_norms(W, blocks), max(1, r // 2))
    assert np.allclose(A.block_norms(W, blocks), loop_block_norms(W, blocks))
    print(f"[1] full W {d}×{d}, {len(blocks)} blocks")
    print(f"    singular values (float64, values only)   {t_svd:.4f}  (1 BLAS thread, as dcnviz runs it)")
    print(f"      same with the BLAS default threads      {t_svd_mt:.4f}  ({t_svd_mt / t_svd:.2f}× dcnviz's time)")
    print(f"      180×180: 1 thread {t_180:.4f}, default threads {t_180_mt:.4f}  ({t_180_mt / t_180:.2f}×)")
    print(f"    block norms raw (reduceat)                {t_bn:.5f}")
    print(f"    block norms symmetric                     {t_sym:.5f}")
    print(f"    SVD + block norms                         {t_svd + t_bn:.4f}")
    print(f"    reference: block norms by a double loop   {t_loop:.4f}  ({t_loop / t_bn:.1f}× the vectorised time)")

    # 2. factored spectra against the dense SVD of the product
    U, V = rng.normal(size=(d, 256)), rng.normal(size=(d, 256))
    lr = A.layer_matrix(LowRankWeights(d=d, U=U, V=V), 0)
    t_fac = timed(lambda: A.factored_singular_values(lr.left, lr.right), r)
    with A.one_blas_thread():  # same thread setting as the factored path, so the ratio is the algorithm's
        t_dense = timed(lambda: np.linalg.svd(U @ V.T, compute_uv=False), r)
    experts = [ExpertWeights(U=rng.normal(size=(d, 64)), V=rng.normal(size=(d, 64))) for _ in range(4)]
    mix = A.layer_matrix(MixtureWeights(d=d, experts=experts), 0)
    t_mfac = timed(lambda: A.factored_singular_values(mix.left, mix.right), r)
    with A.one_blas_thread():
        t_mdense = timed(lambda: np.linalg.svd(np.mean([e.weight() for e in experts], axis=0), compute_uv=False), r)
    print(f"\n[2] low rank d={d}, r=256: factored {t_fac:.4f} vs dense SVD of U Vᵀ {t_dense:.4f}", end="")
    print(f"  ({t_dense / t_fac:.1f}× faster)")
    print(f"    mixture K=4, r=64:    factored {t_mfac:.4f} vs dense SVD of the mean {t_mdense:.4f}", end="")
    print(f"  ({t_mdense / t_mfac:.1f}× faster)")

    # 3. app level: file → common form → block norms + spectra
    print("\n[3] load + block norms + spectrum (learned and initial) of every cross layer")
    files = sorted((ROOT / "models").glob("*.safetensors"))
    tmp = tempfile.TemporaryDirectory()
    if not files:
        torch.manual_seed(0)
        stand_in = Path(tmp.name) / "movielens_sized_standin.safetensors"
        save_model(stand_in, DCNModel(spec_of([30] * 6), ModelConfig(hidden=(256, 256))))
        files = [stand_in]
        print("    (no models/*.safetensors yet: a MovieLens-sized stand-in, 6 features × 30, DCN-V2 2 layers)")
    for f in files:

        def app(f: Path = f) -> None:
            cw = load_cross_weights(f)
            an = A.analyze(cw)
            for la in an.layers:
                la.top_crosses("symmetric", n=10)

        cw = load_cross_weights(f)
        t = timed(app, r)
        print(f"    {f.name:<40} d={cw.d:<5} {len(cw.layers)} layer(s)  {t:.4f}  ({cw.detected})")
    torch.manual_seed(0)
    wide = Path(tmp.name) / "wide1024.safetensors"
    save_model(wide, DCNModel(spec_of([b.width for b in blocks]), ModelConfig(hidden=(64,))))
    t_load = timed(lambda: load_cross_weights(wide), r)
    cw = load_cross_weights(wide)
    t_one = timed(lambda: A.analyze_layer(cw, 0), r)
    t_all = timed(lambda: A.analyze(cw), r)
    size = wide.stat().st_size / 2**20
    print(f"    wide1024 ({size:.0f} MiB, d=1024, 41 blocks, 2 full layers): load {t_load:.4f}")
    print(f"      + one layer (learned and initial SVD, block norms)  {t_load + t_one:.4f}")
    print(f"      + all layers                                        {t_load + t_all:.4f}")

    # 4. figures of the 1024-wide layer: build + serialise to JSON (what Streamlit sends to the browser)
    la = A.analyze_layer(cw, 0)
    names = [b.name for b in cw.blocks]
    figs = {
        "fig_block_norms (41×41)": lambda: F.fig_block_norms(la.block_norms, names).to_json(),
        "fig_weight_matrix (pooled to 342×342)": lambda: F.fig_weight_matrix(la.matrix.weight, cw.blocks).to_json(),
        "fig_spectrum (learned + initial)": lambda: F.fig_spectrum(la.spectrum).to_json(),
        "fig_rank_vs_tolerance": lambda: F.fig_rank_vs_tolerance(la.spectrum).to_json(),
    }
    print("\n[4] figures of one 1024-wide layer, build + to_json")
    total = 0.0
    for name, fn in figs.items():
        t = timed(fn, r)
        total += t
        print(f"    {name:<40} {t:.4f}  ({len(fn()) / 1e3:.0f} kB JSON)")
    print(f"    all four                                 {total:.4f}")
    tmp.cleanup()


if __name__ == "__main__":
    main()
