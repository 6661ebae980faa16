"""Experiment (issue 14): one GEMM over [W; W_1] for the parallel structure's first cross and deep layers.

In the parallel DCN-V2, the first cross layer's W x0 and the deep tower's first layer W_1 x0 multiply
the same x0. This script trains the benchmark's DCN (full rank, 2 cross layers, DNN 256×256, batch
4096 by default, ML-1M-shaped data of ``benchmarks/throughput.py``) with the model's own ``head`` and
with a head that computes both products as one ``F.linear`` over the stacked weights (so the backward
pass also does one GEMM for dL/dx0 and one for the stacked weight gradient), alternating the two,
and prints training examples per second (wall or this process's CPU time). The logits are checked
equal first. dcnviz keeps the plain head: see docs/speed.md for the measured result.

Usage::

    flock /tmp/dcnviz-bench.lock python benchmarks/fused_first_gemm.py [--threads 1] [--clock cpu]
        [--rows 200000] [--batch 4096] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch
import torch.nn.functional as F
from _common import loadavg
from throughput import dcnviz_config, make_data

from dcnviz.encoded import DatasetSplits
from dcnviz.model import DCNModel
from dcnviz.train import TrainConfig, build_model, fit

PLAIN = DCNModel.head


def fused_head(self: DCNModel, x0: torch.Tensor) -> torch.Tensor:
    """DCNModel.head for parallel models whose first cross layer is full rank, with one stacked GEMM."""
    cross, deep = self.cross, self.deep
    if cross is None or deep is None or self.config.structure != "parallel" or cross.layers[0].kind != "full":
        return PLAIN(self, x0)
    first, lin1 = cross.layers[0].linear, deep[0]
    y = F.linear(x0, torch.cat([first.weight, lin1.weight]), torch.cat([first.bias, lin1.bias]))  # (B, d + h1)
    d = self.d
    xl = x0 * y[:, :d] + x0  # Eq. (1), layer 0
    for layer in list(cross.layers)[1:]:
        xl = layer(x0, xl)
    h = torch.relu(y[:, d:])
    for m in list(deep)[2:]:
        h = m(h)
    return self.logit(torch.cat([xl, h], dim=1)).squeeze(-1)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    p.add_argument("--rows", type=int, default=200_000)
    p.add_argument("--batch", type=int, default=4096)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    spec, data = make_data(args.rows)
    small = data.index(slice(0, 2048))
    splits = DatasetSplits(spec=spec, train=data, val=small, test=small)
    warm = DatasetSplits(spec=spec, train=data.index(slice(0, args.batch * 10)), val=small, test=small)
    config = TrainConfig(batch_size=args.batch, epochs=1, device="cpu", seeds=(0,))
    model = build_model(spec, dcnviz_config("dcn"), 0)
    with torch.no_grad():
        x0 = model.x0(small.cat, small.dense)
        diff = float((PLAIN(model, x0) - fused_head(model, x0)).abs().max())
    load0 = loadavg()
    runs: dict[str, list[float]] = {"plain": [], "fused": []}
    try:
        for _ in range(args.repeats):
            for name, head in (("plain", PLAIN), ("fused", fused_head)):
                DCNModel.head = head  # type: ignore[method-assign]
                fit(build_model(spec, dcnviz_config("dcn"), 0), warm, config)
                m = build_model(spec, dcnviz_config("dcn"), 0)
                c0 = time.process_time()
                r = fit(m, splits, config)
                cpu = time.process_time() - c0
                runs[name].append(len(data) / cpu if args.clock == "cpu" else float(r.history[0]["examples_per_s"]))
    finally:
        DCNModel.head = PLAIN  # type: ignore[method-assign]
    best = {k: max(v) for k, v in runs.items()}
    out = {
        "threads": args.threads,
        "clock": args.clock,
        "batch": args.batch,
        "max_logit_diff": diff,
        "examples_per_s": {k: [round(x) for x in v] for k, v in runs.items()},
        "best": {k: round(v) for k, v in best.items()},
        "fused_vs_plain": round(best["fused"] / best["plain"], 3),
        "loadavg": [load0, loadavg()],
    }
    print(json.dumps(out))
    print(f"fused/plain = {out['fused_vs_plain']:.3f} (threads {args.threads}, {args.clock} clock)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
