"""Check that a DCN-V2 trained on the sample finds the planted crosses (sample_data/ground_truth.json).

Trains a plain DCN-V2 (the model's default config) with Adam for a few epochs per seed — a minimal loop,
independent of dcnviz's trainer — then ranks the off-diagonal feature pairs of the first cross layer by
symmetric block norm √(‖W_ij‖² + ‖W_ji‖²) and reports where the planted pairs and the control pair land.

    .venv/bin/python scripts/verify_sample_crosses.py --seeds 0 1 2 --epochs 3

Prints one line per seed and a final JSON summary; exits 1 if the claim fails for any seed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dcnviz.analysis import block_norms
from dcnviz.data import DataOptions, load_splits
from dcnviz.model import DCNModel, ModelConfig


def auc(y: np.ndarray, p: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, p))


def evaluate(model: DCNModel, splits, planted: list, control: tuple) -> dict:  # type: ignore[no-untyped-def,type-arg]
    """Test AUC and where the planted / control pairs rank in layer 0's symmetric block norms."""
    model.eval()
    with torch.no_grad():
        p = torch.sigmoid(model(splits.test.cat, splits.test.dense, splits.test.multi)).numpy()
    W = model.cross_layers()[0].effective_weight().detach().double().numpy()
    S = block_norms(W, splits.spec.blocks(), "symmetric")
    names = splits.spec.names
    pairs = sorted(
        ((float(S[i, j]), names[i], names[j]) for i in range(len(names)) for j in range(i + 1, len(names))),
        reverse=True,
    )
    rank = {frozenset((a, b)): r for r, (_, a, b) in enumerate(pairs, start=1)}
    value = {frozenset((a, b)): v for v, a, b in pairs}
    m = len(planted)
    planted_ranks = [rank[frozenset(q)] for q in planted]
    ok = max(planted_ranks) <= m and all(value[frozenset(q)] > value[frozenset(control)] for q in planted)
    return {
        "test_auc": round(auc(splits.test.y.numpy(), p), 4),
        "planted_ranks": planted_ranks,
        "control_rank": rank[frozenset(control)],
        # weakest planted pair minus the strongest non-planted pair (> 0 iff the planted pairs are the top m)
        "margin": round(
            min(value[frozenset(q)] for q in planted)
            - max(v for v, a, b in pairs if frozenset((a, b)) not in {frozenset(q) for q in planted}),
            3,
        ),
        "top": [f"{a}×{b}={v:.2f}" for v, a, b in pairs[:5]],
        "ok_flag": ok,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=None, help="sample folder (default: the bundled sample_data/)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--embedding-dim", default="30")
    ap.add_argument("--structure", default="parallel")
    ap.add_argument("--hidden", type=int, nargs="*", default=[256, 256])
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    folder = Path(args.data_dir) if args.data_dir else Path(__file__).resolve().parents[1] / "sample_data"
    gt = json.loads((folder / "ground_truth.json").read_text())
    planted = [tuple(p["pair"]) for p in gt["planted"]]
    control = tuple(gt["control"]["pair"])
    emb: int | str = args.embedding_dim if args.embedding_dim == "auto" else int(args.embedding_dim)

    results, ok_all = [], True
    for seed in args.seeds:
        splits = load_splits(DataOptions(source="sample", data_dir=args.data_dir, seed=seed, embedding_dim=emb))
        torch.manual_seed(seed)
        cfg = ModelConfig(model="dcnv2", structure=args.structure, hidden=tuple(args.hidden))
        model = DCNModel(splits.spec, cfg)
        opt = torch.optim.Adam(model.parameters(), lr=args.lr)
        tr = splits.train
        g = torch.Generator().manual_seed(seed)
        t0 = time.perf_counter()
        for epoch in range(1, args.epochs + 1):
            model.train()
            perm = torch.randperm(len(tr), generator=g)
            for k in range(0, len(tr), args.batch_size):
                b = tr.index(perm[k : k + args.batch_size])
                loss = torch.nn.functional.binary_cross_entropy_with_logits(model(b.cat, b.dense, b.multi), b.y)
                opt.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
                opt.step()
            train_s = time.perf_counter() - t0
            res = evaluate(model, splits, planted, control)
            ok = res.pop("ok_flag")
            if epoch == args.epochs:
                ok_all &= ok
            top = res.pop("top")
            print(
                f"seed {seed} epoch {epoch}: test AUC {res['test_auc']:.4f}, train {train_s:.1f}s, "
                f"planted ranks {res['planted_ranks']}, control rank {res['control_rank']}, "
                f"margin {res['margin']:+.3f}, {'OK' if ok else 'FAIL'}; top: {', '.join(top)}",
                file=sys.stderr,
            )
            results.append({"seed": seed, "epoch": epoch, "train_s": round(train_s, 1), "ok": ok, **res})
    print(json.dumps({"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "runs": results}))
    return 0 if ok_all else 1


if __name__ == "__main__":
    raise SystemExit(main())
