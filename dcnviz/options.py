"""The values dcnviz's options accept, in one module that imports neither torch nor pandas.

The library checks its configs against these tuples (and re-exports them where they are documented:
``dcnviz.data.SOURCES``, ``dcnviz.train.DEVICES``, ``dcnviz.paperlab.models.REGRESSION_MODELS``,
``dcnviz.paperlab.table6.TABLE6_MODELS``, ...); the command line takes its argparse ``choices`` from
here, so ``python -m dcnviz paper --help`` stays quick and the two lists cannot drift apart.
"""

from __future__ import annotations

SOURCES: tuple[str, ...] = ("sample", "ml-1m", "ml-100k", "csv", "parquet")  # DataOptions.source
DEFAULT_EMBEDDING_DIM = 30  # DataOptions.embedding_dim's default (§7.1.3)
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda", "mps")  # TrainConfig.device

# The Paper lab (dcnviz.paperlab): §6's synthetic studies and §7.3's Table 6.
SYNTHETIC_EXPERIMENTS: tuple[str, ...] = ("table1", "table2", "fig4")
CROSS_MODELS: tuple[str, ...] = ("dcnv2", "dcnv2-no-bias", "dcnv2-no-residual", "dcnv2-no-bias-no-residual", "dcn")
REGRESSION_MODELS: tuple[str, ...] = (*CROSS_MODELS, "dnn", "dnn-large")
DTYPES: tuple[str, ...] = ("float64", "float32")  # SyntheticConfig.dtype
TABLE6_MODELS: tuple[str, ...] = (
    "dnn",
    "dcn",
    "dcnv2-stacked",
    "dcnv2-parallel",
    "dcn-mix",
    "crossnet",
    "crossnet-mix",
)
TABLE6_RECIPES: tuple[str, ...] = ("paper", "dcnviz")
