"""Training throughput: dcnviz vs DeepCTR-Torch 0.3.0 on MovieLens-1M-shaped data, in one run (issue 5).

Data: synthetic, shaped like MovieLens-1M under the paper's protocol — 6 categorical fields with
vocabularies 6040/3706/2/7/21/3439 (plus the out-of-vocabulary row), 591,210 training rows (80% of
739,012), labels from a planted cross. Models: embedding 30 (d = 180), 2 cross layers, DNN 256×256,
parallel structure, Adam; DCN = full-rank (DeepCTR-Torch ``DCN(cross_parameterization="matrix")``),
DCN-Mix = r 32, K 4, tanh experts, softmax gates (DeepCTR-Torch ``DCNMix``). Both libraries train the
same rows at the same batch size with the same thread count; validation is outside the timed window
for both (dcnviz's ``fit`` reports training-step time only; the peer's ``fit`` runs without validation
data). Each timed pass follows a short warm-up. Reported: training examples per second, the time of a
full 591k-row epoch at that speed, and the ratio dcnviz / peer.

Usage::

    python benchmarks/throughput.py [--rows 591210] [--batch 128 4096] [--models dcn dcnmix] [--threads 2]
        [--device cpu|cuda] [--repeats 1]

Writes ``benchmarks/results/throughput_<device>.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from _common import build_peer, import_deepctr, loadavg, machine_info, quiet_stdout, write_result
from torch import nn

from dcnviz.encoded import DatasetSplits, Encoded
from dcnviz.model import ModelConfig
from dcnviz.spec import FeatureSpec, Field
from dcnviz.train import TrainConfig, build_model, fit

VOCABS = {"user_id": 6040, "movie_id": 3706, "gender": 2, "age": 7, "occupation": 21, "zip": 3439}
TRAIN_ROWS = 591_210
EMBEDDING = 30
HIDDEN = (256, 256)


def make_data(rows: int, seed: int = 0) -> tuple[FeatureSpec, Encoded]:
    """ML-1M-shaped ids (1..vocab; 0 = OOV) and labels from a planted user × movie and age × gender cross."""
    spec = FeatureSpec(
        tuple(
            Field(name=n, kind="categorical", embedding_dim=EMBEDDING, vocab=tuple(str(i) for i in range(v)))
            for n, v in VOCABS.items()
        )
    )
    g = torch.Generator().manual_seed(seed)
    cat = torch.stack([torch.randint(1, v + 1, (rows,), generator=g) for v in VOCABS.values()], 1)  # (N, 6)
    logit = ((cat[:, 0] % 7) - 3) * ((cat[:, 1] % 5) - 2) * 0.3 + (cat[:, 3] - 4) * (cat[:, 2] - 1.5) * 0.2
    y = (torch.rand(rows, generator=g) < torch.sigmoid(logit.float() + 0.5)).float()
    return spec, Encoded(cat=cat, dense=torch.zeros(rows, 0), y=y)


def dcnviz_config(kind: str) -> ModelConfig:
    if kind == "dcn":
        return ModelConfig(model="dcnv2", structure="parallel", cross_layers=2, hidden=HIDDEN)
    return ModelConfig(
        model="dcn-mix",
        structure="parallel",
        cross_layers=2,
        rank=32,
        experts=4,
        gate="softmax",
        expert_activation="tanh",
        hidden=HIDDEN,
    )


def time_dcnviz(kind: str, spec: FeatureSpec, data: Encoded, batch: int, device: str, amp: bool, clock: str) -> float:
    small = data.index(slice(0, 2048))
    splits = DatasetSplits(spec=spec, train=data, val=small, test=small)
    warm = DatasetSplits(spec=spec, train=data.index(slice(0, batch * 20)), val=small, test=small)
    config = TrainConfig(batch_size=batch, epochs=1, device=device, amp=amp, seeds=(0,))
    fit(build_model(spec, dcnviz_config(kind), 0), warm, config)  # warm-up: allocator, kernels
    model = build_model(spec, dcnviz_config(kind), 0)
    c0 = time.process_time()
    r = fit(model, splits, config)
    if clock == "cpu":  # CPU seconds of this process (one thread): robust to other load on the machine
        return len(data) / (time.process_time() - c0)
    return float(r.history[0]["examples_per_s"])


def time_peer(kind: str, spec: FeatureSpec, data: Encoded, batch: int, device: str, clock: str) -> float:
    from deepctr_torch.inputs import SparseFeat

    columns = [SparseFeat(f.name, vocabulary_size=f.vocab_size, embedding_dim=EMBEDDING) for f in spec.fields]
    x = {f.name: data.cat[:, j].numpy() for j, f in enumerate(spec.fields)}
    y = data.y.numpy().astype(np.float32)
    model = build_peer(kind, columns, 0, hidden=HIDDEN, device="cuda:0" if device == "cuda" else device)
    n_warm = batch * 20
    with quiet_stdout():
        model.fit({k: v[:n_warm] for k, v in x.items()}, y[:n_warm], batch_size=batch, epochs=1, verbose=0)
        timer = time.process_time if clock == "cpu" else time.perf_counter
        t0 = timer()
        model.fit(x, y, batch_size=batch, epochs=1, verbose=0)
        if device == "cuda":
            torch.cuda.synchronize()
        dt = timer() - t0
    return len(y) / dt


def time_bare(spec: FeatureSpec, data: Encoded, batch: int, clock: str) -> float:
    """The issue's reference "40-line loop" for DCN: the same sizes (one ``nn.Embedding`` per field,
    2 full-rank cross layers in parallel with DNN 256×256), data resident, index batching,
    ``torch.optim.Adam``; no clipping, L2 or EMA. A ceiling for this machine, not a product."""
    torch.manual_seed(0)
    d = spec.d
    embs = nn.ModuleList(nn.Embedding(f.vocab_size, EMBEDDING) for f in spec.fields)
    cross = nn.ModuleList(nn.Linear(d, d) for _ in range(2))
    deep = nn.Sequential(nn.Linear(d, HIDDEN[0]), nn.ReLU(), nn.Linear(HIDDEN[0], HIDDEN[1]), nn.ReLU())
    head = nn.Linear(d + HIDDEN[1], 1)
    opt = torch.optim.Adam([*embs.parameters(), *cross.parameters(), *deep.parameters(), *head.parameters()])

    def step(idx: torch.Tensor) -> None:
        c = data.cat[idx]
        x0 = torch.cat([e(c[:, j]) for j, e in enumerate(embs)], 1)
        x = x0
        for layer in cross:  # Eq. (1): x_{l+1} = x0 ⊙ (W x_l + b) + x_l
            x = x0 * layer(x) + x
        logit = head(torch.cat([x, deep(x0)], 1)).squeeze(1)
        loss = F.binary_cross_entropy_with_logits(logit, data.y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    perm = torch.randperm(len(data))
    for i in range(20):  # warm-up
        step(perm[i * batch : (i + 1) * batch])
    timer = time.process_time if clock == "cpu" else time.perf_counter
    t0 = timer()
    for i in range(0, len(data), batch):
        step(perm[i : i + batch])
    return len(data) / (timer() - t0)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=TRAIN_ROWS, help="training rows timed per measurement")
    p.add_argument("--batch", type=int, nargs="+", default=[128, 4096])
    p.add_argument("--models", nargs="+", choices=("dcn", "dcnmix"), default=["dcn", "dcnmix"])
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--amp", action="store_true", help="dcnviz with bfloat16 mixed precision (CUDA)")
    p.add_argument("--repeats", type=int, default=1, help="alternate dcnviz/peer this many times; best kept")
    p.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="wall time, or CPU time of this process (use with --threads 1 on a busy machine)",
    )
    p.add_argument("--skip-peer", action="store_true", help="dcnviz only (no ratio)")
    p.add_argument(
        "--bare",
        action="store_true",
        help="also time the issue's bare 40-line DCN loop (CPU): what this machine allows for the model's GEMMs",
    )
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.clock == "cpu" and args.threads != 1:
        raise SystemExit("--clock cpu measures one thread's CPU time; use it with --threads 1")
    if not args.skip_peer:
        import_deepctr()
    info = machine_info(args.threads)
    spec, data = make_data(args.rows)
    print(f"{args.rows} rows, d={spec.d}, threads {args.threads}, device {args.device}", file=sys.stderr)
    rows: list[dict[str, Any]] = []
    for kind in args.models:
        for batch in args.batch:
            ours, peer = [], []
            for _ in range(args.repeats):  # alternate the two libraries, same thread count for both
                torch.set_num_threads(args.threads)
                ours.append(time_dcnviz(kind, spec, data, batch, args.device, args.amp, args.clock))
                if not args.skip_peer:
                    torch.set_num_threads(args.threads)
                    peer.append(time_peer(kind, spec, data, batch, args.device, args.clock))
            row: dict[str, Any] = {
                "model": kind,
                "batch": batch,
                "threads": torch.get_num_threads(),
                "dcnviz_examples_per_s": round(max(ours), 1),
                "dcnviz_epoch_s": round(TRAIN_ROWS / max(ours), 2),
                "dcnviz_runs": [round(v, 1) for v in ours],
            }
            if args.bare and kind == "dcn" and args.device == "cpu":
                bare = time_bare(spec, data, batch, args.clock)
                row |= {"bare_loop_examples_per_s": round(bare, 1), "dcnviz_vs_bare": round(max(ours) / bare, 2)}
                print(f"        bare 40-line loop: {bare:>10,.0f} ex/s", file=sys.stderr)
            if peer:
                row |= {
                    "peer_examples_per_s": round(max(peer), 1),
                    "peer_epoch_s": round(TRAIN_ROWS / max(peer), 2),
                    "peer_runs": [round(v, 1) for v in peer],
                    "ratio": round(max(ours) / max(peer), 2),
                }
            rows.append(row)
            ratio = f"  ratio {row['ratio']:.2f}x" if peer else ""
            peer_txt = f"peer {row['peer_examples_per_s']:>10,.0f} ex/s" if peer else ""
            print(
                f"{kind:7s} batch {batch:5d} threads {row['threads']}: "
                f"dcnviz {row['dcnviz_examples_per_s']:>10,.0f} ex/s "
                f"(epoch {row['dcnviz_epoch_s']:.1f} s)  {peer_txt}{ratio}   load {loadavg()}",
                file=sys.stderr,
            )
    info["loadavg_end"] = loadavg()
    payload = {
        "benchmark": "throughput",
        "command": "python benchmarks/throughput.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": info,
        "setup": {
            "vocabs": VOCABS,
            "rows_timed": args.rows,
            "epoch_rows": TRAIN_ROWS,
            "embedding_dim": EMBEDDING,
            "cross_layers": 2,
            "hidden": list(HIDDEN),
            "structure": "parallel",
            "dcnmix": {"rank": 32, "experts": 4, "activation": "tanh", "gate": "softmax"},
            "optimizer": "Adam (dcnviz: its recipe's lr/clip; peer: Adam defaults)",
            "device": args.device,
            "amp": args.amp,
            "clock": args.clock,
        },
        "results": rows,
    }
    path = write_result(args.out or f"throughput_{args.device}.json", payload)
    print(f"wrote {path}", file=sys.stderr)
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
