"""The paper's published numbers (DCN-V2, Wang et al.), for printing beside ours.

* ``PAPER_TABLE1``: Table 1 (§6), mean RMSE of 5 runs and model size, keyed by (task, model).
* ``PAPER_TABLE2``: Table 2 (§6), combined-order polynomial, mean RMSE of 5 runs by (model, layers).
* ``PAPER_TABLE6``: Table 6 (§7.3), MovieLens-1M column, keyed by our model name. The paper's one
  DCN-V2 row is its best structure, parallel on MovieLens, so it sits beside ``dcnv2-parallel``; its
  MovieLens "CrossNet" has 65K parameters — exactly two full-rank layers at d = 180 — so it sits
  beside ``crossnet``. The MovieLens column prints no settings.
* ``PAPER_TABLE6_CRITEO``: the Criteo group of the same rows, with its "Best Setting" column (which
  belongs to Criteo: the towers fit d = 1027, and r = 258 is the total rank of a layer).

Sizes are the paper's rounded counts (``41_000`` for "41K"); see docs/paper.md for how ours compare.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class PaperRMSE:
    rmse: float  # mean RMSE of 5 runs
    params: int | None = None  # the paper's model size (rounded as printed)


PAPER_TABLE1: dict[tuple[str, str], PaperRMSE] = {
    ("f1", "dcn"): PaperRMSE(rmse=8.9e-13, params=12),
    ("f2", "dcn"): PaperRMSE(rmse=1.0e-1, params=9),
    ("f3", "dcn"): PaperRMSE(rmse=2.6e0, params=300),
    ("f1", "dcnv2"): PaperRMSE(rmse=5.1e-13, params=24),
    ("f2", "dcnv2"): PaperRMSE(rmse=4.5e-15, params=15),
    ("f3", "dcnv2"): PaperRMSE(rmse=6.7e-7, params=10_000),
    ("f1", "dnn"): PaperRMSE(rmse=2.7e-2, params=24),
    ("f2", "dnn"): PaperRMSE(rmse=3.0e-2, params=15),
    ("f3", "dnn"): PaperRMSE(rmse=2.7e-1, params=10_000),
    ("f1", "dnn-large"): PaperRMSE(rmse=4.7e-3, params=41_000),
    ("f2", "dnn-large"): PaperRMSE(rmse=1.4e-3, params=41_000),
    ("f3", "dnn-large"): PaperRMSE(rmse=7.8e-2, params=758_000),
}

PAPER_TABLE2: dict[tuple[str, int], float] = {
    ("dcnv2", 1): 1.43e-1,
    ("dcnv2", 2): 2.89e-2,
    ("dcnv2", 3): 9.82e-3,
    ("dcnv2", 4): 9.87e-3,
    ("dcnv2", 5): 9.92e-3,
    ("dnn", 1): 1.32e-1,
    ("dnn", 2): 1.03e-1,
    ("dnn", 3): 1.03e-1,
    ("dnn", 4): 1.09e-1,
    ("dnn", 5): 1.05e-1,
}


@dataclass(frozen=True, kw_only=True)
class PaperCTR:
    """One row of one dataset's group of Table 6."""

    logloss: float  # mean test logloss of 5 runs
    logloss_std: float  # its stddev
    auc: float  # mean test AUC of 5 runs
    auc_std: float
    params: int  # excluding embedding tables
    flops: int  # per example
    setting: str = ""  # the "Best Setting" column (DNN part; model part) — printed for Criteo only


PAPER_TABLE6: dict[str, PaperCTR] = {
    "dnn": PaperCTR(logloss=0.3201, logloss_std=4.1e-4, auc=0.8929, auc_std=2.3e-4, params=46_000, flops=92_000),
    "dcn": PaperCTR(logloss=0.3197, logloss_std=1.9e-4, auc=0.8935, auc_std=2.1e-4, params=110_000, flops=220_000),
    "dcnv2-parallel": PaperCTR(
        logloss=0.3170, logloss_std=3.6e-4, auc=0.8950, auc_std=2.7e-4, params=110_000, flops=220_000
    ),
    "dcn-mix": PaperCTR(logloss=0.3160, logloss_std=4.9e-4, auc=0.8964, auc_std=2.9e-4, params=110_000, flops=210_000),
    "crossnet": PaperCTR(logloss=0.3185, logloss_std=3.0e-4, auc=0.8937, auc_std=2.7e-4, params=65_000, flops=130_000),
}

# The Criteo group, keyed by the paper's row name; "Best Setting" = (DNN layers, width); model part.
PAPER_TABLE6_CRITEO: dict[str, PaperCTR] = {
    "dnn": PaperCTR(
        logloss=0.4421, logloss_std=6.5e-5, auc=0.8098, auc_std=5.9e-5, params=3_200_000, flops=6_300_000,
        setting="(3, 1024); –",
    ),
    "dcn": PaperCTR(
        logloss=0.4420, logloss_std=1.6e-4, auc=0.8099, auc_std=1.7e-4, params=2_100_000, flops=4_200_000,
        setting="(2, 1024); l=4",
    ),
    "dcnv2": PaperCTR(
        logloss=0.4406, logloss_std=6.2e-5, auc=0.8115, auc_std=7.1e-5, params=3_500_000, flops=7_000_000,
        setting="(2, 768); l=2 (stacked was best on Criteo)",
    ),
    "dcn-mix": PaperCTR(
        logloss=0.4408, logloss_std=1.0e-4, auc=0.8112, auc_std=9.8e-5, params=2_400_000, flops=4_800_000,
        setting="(2, 512); l=3, K=4, r=258 per layer; constant gate, hard_tanh (§7.3)",
    ),
    "crossnet": PaperCTR(
        logloss=0.4413, logloss_std=2.5e-4, auc=0.8107, auc_std=2.4e-4, params=2_100_000, flops=4_200_000,
        setting="–; l=4, K=4, r=258 per layer; softmax gate, identity (§7.3)",
    ),
}  # fmt: skip


def paper_table1_rmse(task: str, model: str) -> float | None:
    ref = PAPER_TABLE1.get((task, model))
    return None if ref is None else ref.rmse


def paper_table2_rmse(model: str, layers: int) -> float | None:
    return PAPER_TABLE2.get((model, layers))
