"""Regenerate ``sample_data/``: the synthetic MovieLens-1M-format sample with planted feature crosses.

    .venv/bin/python scripts/make_sample_data.py            # writes sample_data/ (deterministic)
    .venv/bin/python scripts/make_sample_data.py --out DIR --seed 7 --n-ratings 100000
    .venv/bin/python scripts/make_sample_data.py --out /tmp/sample10x --scale 10   # 10× the users and ratings

The generator is :func:`dcnviz.sample.make_sample` (model and planted crosses in its docstring); the
same config always gives byte-identical files. Besides ``ratings.dat``, ``users.dat`` and
``movies.dat`` it writes ``ground_truth.json`` (planted pairs, strengths, control pair, counts) and
``item_groups.csv`` (each movie's planted loadings).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dcnviz.sample import SampleConfig, make_sample, write_sample


def main() -> int:
    default = SampleConfig()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "sample_data"))
    ap.add_argument("--seed", type=int, default=default.seed)
    ap.add_argument("--n-users", type=int, default=default.n_users)
    ap.add_argument("--n-movies", type=int, default=default.n_movies)
    ap.add_argument("--n-ratings", type=int, default=default.n_ratings)
    ap.add_argument("--gender-strength", type=float, default=default.gender_strength)
    ap.add_argument("--age-strength", type=float, default=default.age_strength)
    ap.add_argument(
        "--scale", type=float, default=1.0, help="factor× users and ratings, √factor× movies (SampleConfig.scaled)"
    )
    args = ap.parse_args()
    config = dataclasses.replace(
        default.scaled(args.scale) if args.scale != 1.0 else default,
        seed=args.seed,
        **(
            {"n_users": args.n_users, "n_movies": args.n_movies, "n_ratings": args.n_ratings}
            if args.scale == 1.0
            else {}
        ),
        gender_strength=args.gender_strength,
        age_strength=args.age_strength,
    )
    sample = make_sample(config)
    for path in write_sample(sample, args.out):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
        print(f"{path}  {path.stat().st_size:>9,} bytes  sha256 {digest}…")
    counts = sample.ground_truth()["counts"]
    print(
        f"{counts['users']} users, {counts['movies']} movies, {counts['ratings']:,} ratings "
        f"({counts['ratings_after_dropping_3']:,} after dropping 3s, "
        f"positive rate {counts['positive_rate_after_dropping_3']})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
