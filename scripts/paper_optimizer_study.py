"""Why our synthetic RMSEs differ from the paper's: precision and optimizer (docs/paper.md).

Fits a 1-layer DCN-V2 to f1 and f2 with {float32, float64} × {mini-batch Adam, full-batch L-BFGS}
and prints the test RMSE of each; then follows DCN (V1) on f1 for more and more L-BFGS iterations,
printing the RMSE and the sizes of its output weights v and cross vector w (the fit is exact only
in the limit v → 0, |w| → ∞: see docs/paper.md).

    .venv/bin/python scripts/paper_optimizer_study.py [--samples 10000] [--runs 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a clone without installing

from dcnviz.paperlab.fit import FitConfig, fit_regression, rmse
from dcnviz.paperlab.models import build_regressor
from dcnviz.paperlab.tasks import build_task


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    recipes = {
        "Adam (200 epochs, lr 1e-2 cosine, batch 256)": FitConfig(optimizer="adam", steps=200, lr=1e-2),
        "L-BFGS (500 iterations, strong Wolfe)": FitConfig(steps=500),
    }
    print(f"1-layer DCN-V2, test RMSE, mean (min–max) of {args.runs} runs, {args.samples} training examples")
    for task in ("f1", "f2"):
        t = build_task(task)
        for dtype in (torch.float32, torch.float64):
            for name, cfg in recipes.items():
                out, t0 = [], time.perf_counter()
                for r in range(args.runs):
                    x, y = (torch.as_tensor(a, dtype=dtype) for a in t.sample(args.samples, r))
                    xt, yt = (torch.as_tensor(a, dtype=dtype) for a in t.sample(5000, r, split="test"))
                    net = build_regressor("dcnv2", t.d, 1, seed=r, dtype=dtype)
                    fit_regression(net, x, y, cfg, seed=r)
                    out.append(rmse(net, xt, yt))
                a = np.asarray(out)
                print(
                    f"  {task} {str(dtype).replace('torch.', ''):8} {name:46} {a.mean():.2e} "
                    f"({a.min():.1e}–{a.max():.1e})  {time.perf_counter() - t0:.0f} s",
                    flush=True,
                )
    print("\nDCN (V1) on f1, float64 L-BFGS, seed 0: RMSE and weight sizes as iterations grow")
    t = build_task("f1")
    x, y = (torch.as_tensor(a) for a in t.sample(args.samples, 0))
    xt, yt = (torch.as_tensor(a) for a in t.sample(5000, 0, split="test"))
    net = build_regressor("dcn", 4, 1, seed=0)
    done = 0
    for total in (100, 300, 1000, 3000):
        fit_regression(net, x, y, FitConfig(steps=total - done))
        done = total
        layer = net.cross.layers[0]  # type: ignore[union-attr, index]
        v = float(net.head.weight.detach().norm())  # type: ignore[union-attr, operator]
        w = float(layer.w.detach().norm())
        print(f"  {total:5d} iterations: test RMSE {rmse(net, xt, yt):.2e}  |v| {v:.2e}  |w| {w:.2e}", flush=True)


if __name__ == "__main__":
    main()
