r"""What a cross network learned: block norms (paper §7.6, Eq. 7, Fig. 6) and spectra (§3.5, Fig. 3a).

NumPy in, tables out — no plotting here (:mod:`dcnviz.figures` draws what this module computes).
Input is the common form of :mod:`dcnviz.weights`, always in paper orientation (a layer computes
``W @ x``; rows = output slot, columns = input slot). Arithmetic is float64.

* **Effective W** (:class:`LayerMatrix`): full W; U Vᵀ (low rank, Eq. 2); for a mixture (Eq. 3/4)
  each expert's U_k C_k V_kᵀ — only the expert's *linear part* when g is not the identity — and
  their mean (the effective W under uniform gates) or, with data at hand, the gate-weighted average
  E_x[Σ_k G_k(x_l) W_k] (:func:`dcnviz.gates.mean_gates`); 1 wᵀ for DCN-V1. Low-rank matrices are kept as factors
  W = A Bᵀ so that their spectra never need the d × d product.
* **Block norms** (:func:`block_norms`): block (i, j) of W, Eq. (7), in three views
  (:data:`MODE_EXPLANATIONS`), and a ranked table of the strongest crosses (:func:`top_crosses`).
* **Spectra** (:func:`spectrum`): singular values, raw and σ_k/σ_1, against the initial matrix;
  numerical rank R_T = #{k : σ_k ≥ T·σ_1} (:func:`numerical_rank`); the rank holding a share of
  Σσ² (:func:`energy_rank`); the stable rank ‖W‖_F²/‖W‖_2² (:func:`stable_rank`); a suggested rank.
* **Comparing two models** (:func:`block_norm_difference`, :func:`spectrum_difference`).

Example (a 2-feature x0 of widths 2 and 1; W couples input feature "b" into "a"'s slot):

>>> from dcnviz.spec import Block
>>> blocks = [Block("a", 0, 2, "categorical"), Block("b", 2, 3, "dense")]
>>> W = np.array([[0.0, 0.0, 3.0], [0.0, 0.0, 4.0], [0.0, 0.0, 0.0]])
>>> block_norms(W, blocks).tolist()
[[0.0, 5.0], [0.0, 0.0]]
>>> numerical_rank(singular_values(W), 0.5)
1
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal, Protocol, cast

import numpy as np
import pandas as pd

from dcnviz.errors import CheckpointError, ConfigError
from dcnviz.weights import CrossLayerWeights, CrossModelWeights, LayerKind, MixtureWeights

BlockNormMode = Literal["raw", "normalized", "symmetric"]
MODES: tuple[str, ...] = ("raw", "normalized", "symmetric")

#: What block (i, j) of a cross layer's W measures (§7.6, Eq. 7): every page, report and CLI quotes this.
BLOCK_FEEDS = "how strongly input feature j feeds the slot that is multiplied by x0's feature i"
#: The same, with where the block sits in W and why (the "how to read" text of the app, report and Tour).
BLOCK_MEANING = (
    "Block (i, j) of W holds the rows of feature i and the columns of feature j. A cross layer computes "
    "x0 ⊙ (W x + b): the slot of feature i in its output is x0's feature i multiplied, element by element, "
    f"by Σ_j W_ij x_j, so block (i, j) measures {BLOCK_FEEDS}. W need not be symmetric: (i, j) and (j, i) "
    "can differ."
)

#: One sentence per block-norm view, shown wherever the view is offered.
MODE_EXPLANATIONS: dict[str, str] = {
    "raw": f"Frobenius norm ‖W_ij‖_F of block (i, j), as in the paper's Fig. 6b: {BLOCK_FEEDS}.",
    "normalized": (
        "‖W_ij‖_F / √(e_i·e_j), the root-mean-square weight of the block, so that features with wider "
        "embeddings do not dominate merely by their size."
    ),
    "symmetric": (
        "√(‖W_ij‖² + ‖W_ji‖²), the strength of the cross between features i and j in both directions "
        "together (each pair listed once; a self-cross is ‖W_ii‖_F)."
    ),
}

DEFAULT_TOLERANCES: tuple[float, ...] = (0.5, 0.1, 0.05, 0.01)  # T of R_T (§3.5)
DEFAULT_ENERGY = 0.9  # share of Σσ² for energy_rank
DEFAULT_SUGGEST_TOLERANCE = 0.1  # preferred T of a tolerance-based suggestion (the picked T closest to it is used)


class BlockLike(Protocol):
    """Anything with a name and an x0 slice [start, stop), e.g. :class:`dcnviz.spec.Block`."""

    @property
    def name(self) -> str: ...
    @property
    def start(self) -> int: ...
    @property
    def stop(self) -> int: ...


# --------------------------------------------------------------------------------------------------
# Checks


def check_tolerance(T: float) -> float:
    """T as a float, or ConfigError unless 0 < T ≤ 1.

    >>> check_tolerance(1e-5)
    1e-05
    """
    try:
        t = float(T)
    except (TypeError, ValueError):
        raise ConfigError(f"tolerance T must be a number in (0, 1]; got T={T!r}") from None
    if not (math.isfinite(t) and 0.0 < t <= 1.0):
        raise ConfigError(f"tolerance T must be in (0, 1]; got T={T!r}")
    return t


def check_tolerances(tolerances: Iterable[float]) -> tuple[float, ...]:
    """Validated tolerances in the order given, duplicates dropped; at least one."""
    out: list[float] = []
    for T in tolerances:
        t = check_tolerance(T)
        if t not in out:
            out.append(t)
    if not out:
        raise ConfigError("at least one tolerance T is needed")
    return tuple(out)


def check_share(share: float) -> float:
    try:
        s = float(share)
    except (TypeError, ValueError):
        raise ConfigError(f"energy share must be a number in (0, 1]; got share={share!r}") from None
    if not (math.isfinite(s) and 0.0 < s <= 1.0):
        raise ConfigError(f"energy share must be in (0, 1]; got share={share!r}")
    return s


def tolerance_key(T: float) -> str:
    """The JSON key of a tolerance: ``str(float(T))``.

    >>> [tolerance_key(t) for t in (0.1, 0.05, 1e-5, 1)]
    ['0.1', '0.05', '1e-05', '1.0']
    """
    return str(float(T))


def _square(W: np.ndarray | Sequence[Sequence[float]], what: str = "W") -> np.ndarray:
    A = np.asarray(W, dtype=np.float64)
    if A.ndim != 2 or A.shape[0] != A.shape[1]:
        raise ConfigError(f"`{what}` must be a square (d, d) matrix; got shape {tuple(A.shape)}")
    return A


def block_bounds(blocks: Sequence[BlockLike], d: int) -> tuple[np.ndarray, np.ndarray]:
    """(starts, widths) of blocks that tile x0 = [0, d) in order; ConfigError otherwise."""
    if len(blocks) == 0:
        raise ConfigError("no feature blocks given")
    starts = np.array([int(b.start) for b in blocks], dtype=np.int64)
    stops = np.array([int(b.stop) for b in blocks], dtype=np.int64)
    if starts[0] != 0 or stops[-1] != d or np.any(stops <= starts) or np.any(stops[:-1] != starts[1:]):
        shown = ", ".join(f"{b.name}[{b.start}:{b.stop}]" for b in list(blocks)[:8])
        more = ", …" if len(blocks) > 8 else ""
        raise ConfigError(
            f"feature blocks must tile x0 = [0, {d}) in order, each non-empty; got {shown}{more} for d={d}"
        )
    return starts, stops - starts


def same_blocks(a: Sequence[BlockLike], b: Sequence[BlockLike]) -> bool:
    """True when two block lists have the same names and x0 slices, in the same order."""
    return [(x.name, int(x.start), int(x.stop)) for x in a] == [(x.name, int(x.start), int(x.stop)) for x in b]


# --------------------------------------------------------------------------------------------------
# Block norms (§7.6, Eq. 7)


def squared_block_norms(W: np.ndarray, blocks: Sequence[BlockLike]) -> np.ndarray:
    """‖W_ij‖_F² for every block pair (k, k): two ``reduceat`` sums over W², no loop over blocks."""
    W = _square(W)
    starts, _ = block_bounds(blocks, W.shape[0])
    S = np.add.reduceat(W * W, starts, axis=1)  # (d, k): along contiguous rows first (≈6× faster)
    return np.add.reduceat(S, starts, axis=0)  # (k, k)


def block_norms(W: np.ndarray, blocks: Sequence[BlockLike], mode: str = "raw") -> np.ndarray:
    r"""Block-wise norms of W by feature, (k, k) for k blocks (paper §7.6, Eq. 7, Fig. 6b).

    Block (i, j) is W[rows of feature i, columns of feature j]. In x ⊙ (W x) the output slot of
    feature i is x_i ⊙ (Σ_j W_ij x_j), so block (i, j) measures **how strongly input feature j feeds
    the slot multiplied by x0's feature i** (the text the app and CLI show: :data:`BLOCK_MEANING`).
    W is not symmetric in general, and neither is this table: rows = output feature i, columns =
    input feature j.

    Modes (one sentence each in :data:`MODE_EXPLANATIONS`):

    * ``raw``: ‖W_ij‖_F (the paper's);
    * ``normalized``: ‖W_ij‖_F / √(e_i e_j) with e_i the width of block i;
    * ``symmetric``: √(‖W_ij‖² + ‖W_ji‖²) off the diagonal and ‖W_ii‖_F on it (the pair (i, i) has
      one block), so the upper triangle's squares add up to ‖W‖_F².

    >>> from dcnviz.spec import Block
    >>> blocks = [Block("a", 0, 2, "categorical"), Block("b", 2, 4, "categorical")]
    >>> W = np.zeros((4, 4)); W[0:2, 2:4] = 1.0; W[2, 0] = 3.0
    >>> block_norms(W, blocks).tolist()
    [[0.0, 2.0], [3.0, 0.0]]
    >>> block_norms(W, blocks, "normalized").tolist()
    [[0.0, 1.0], [1.5, 0.0]]
    >>> block_norms(W, blocks, "symmetric").round(4).tolist()
    [[0.0, 3.6056], [3.6056, 0.0]]
    """
    if mode not in MODES:
        raise ConfigError(f"block-norm mode must be one of {MODES}; got mode={mode!r}")
    S = squared_block_norms(W, blocks)  # (k, k)
    if mode == "raw":
        return np.sqrt(S)
    if mode == "normalized":
        _, widths = block_bounds(blocks, np.asarray(W).shape[0])
        return np.sqrt(S / np.outer(widths, widths).astype(np.float64))
    T = S + S.T
    np.fill_diagonal(T, np.diag(S))
    return np.sqrt(T)


def unique_labels(names: Sequence[str]) -> list[str]:
    """Names made unique (``x``, ``x#2``, …) so they can label table rows and heatmap axes."""
    seen: dict[str, int] = {}
    out = []
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        out.append(n if seen[n] == 1 else f"{n}#{seen[n]}")
    return out


def block_norm_frame(norms: np.ndarray, blocks: Sequence[BlockLike]) -> pd.DataFrame:
    """A (k, k) block-norm table as a DataFrame: index = output feature i, columns = input feature j."""
    names = unique_labels([b.name for b in blocks])
    N = np.asarray(norms, dtype=np.float64)
    if N.shape != (len(names), len(names)):
        raise ConfigError(f"block norms have shape {N.shape}, but there are {len(names)} blocks")
    df = pd.DataFrame(N, index=pd.Index(names, name="output feature i"), columns=pd.Index(names))
    df.columns.name = "input feature j"
    return df


def top_crosses(
    norms: np.ndarray,
    names: Sequence[str],
    *,
    mode: str = "raw",
    include_self: bool = False,
    n: int | None = None,
) -> pd.DataFrame:
    """The strongest crosses in a block-norm table, strongest first.

    Columns: ``rank`` (from 1), ``i`` / ``feature_i`` (output feature, the row), ``j`` / ``feature_j``
    (input feature, the column), ``value`` and ``share`` (value² over the sum of value² of every cell
    of the view; in the raw and symmetric views that is the share of ‖W‖_F²), and ``pair_share``: the
    share of both directions (i, j) and (j, i) together — the same number for the same pair in every
    view's table (in the ``symmetric`` view it is ``share``). In the ``symmetric`` view each unordered
    pair appears once (i ≤ j). Self-crosses (i = j) are left out unless ``include_self``. Ties keep
    (i, j) order.

    >>> N = np.array([[9.0, 1.0, 2.0], [0.5, 4.0, 3.0], [0.0, 0.0, 1.0]])
    >>> top_crosses(N, ["a", "b", "c"], n=2)[["feature_i", "feature_j", "value"]].values.tolist()
    [['b', 'c', 3.0], ['a', 'c', 2.0]]
    """
    if mode not in MODES:
        raise ConfigError(f"block-norm mode must be one of {MODES}; got mode={mode!r}")
    N = np.asarray(norms, dtype=np.float64)
    k = len(names)
    if N.shape != (k, k):
        raise ConfigError(f"block norms have shape {N.shape}, but {k} names were given")
    if n is not None and n < 0:
        raise ConfigError(f"n must be >= 0; got n={n}")
    if mode == "symmetric":
        ii, jj = np.triu_indices(k, 0 if include_self else 1)
        total = float(np.sum(np.triu(N) ** 2))
    else:
        ii, jj = np.indices((k, k)).reshape(2, -1)
        if not include_self:
            keep = ii != jj
            ii, jj = ii[keep], jj[keep]
        total = float(np.sum(N**2))
    vals = N[ii, jj]
    order = np.lexsort((jj, ii, -vals))  # value descending, then (i, j)
    if n is not None:
        order = order[:n]
    labels = list(names)
    ii, jj, vals = ii[order], jj[order], vals[order]
    # both directions (i, j) and (j, i) together, a self-cross once; the symmetric view's values already are
    both = vals**2 if mode == "symmetric" else np.where(ii == jj, vals**2, vals**2 + N[jj, ii] ** 2)
    return pd.DataFrame(
        {
            "rank": np.arange(1, len(order) + 1),
            "i": ii,
            "feature_i": [labels[a] for a in ii],
            "j": jj,
            "feature_j": [labels[b] for b in jj],
            "value": vals,
            "share": vals**2 / total if total > 0 else np.zeros(len(order)),
            "pair_share": both / total if total > 0 else np.zeros(len(order)),
        }
    )


# --------------------------------------------------------------------------------------------------
# Singular values and ranks (§3.5, Fig. 3a)

_BLAS: list[object] = []  # a cached threadpoolctl.ThreadpoolController (or None when it is missing)


@contextlib.contextmanager
def one_blas_thread() -> Iterator[None]:
    """Run the block inside with BLAS/LAPACK limited to one thread.

    Multi-threaded OpenBLAS spin-waits when its cores are busy (a shared 2-core machine, or the app
    training a model at the same time): measured at load ~10 on 2 cores, the values-only SVD of a
    180 × 180 W took 0.53 s with 2 threads and 0.009 s with 1; of a 1024 × 1024 W, 6.5 s and 0.8 s
    (benchmarks/bench_analysis.py measures both on an idle machine too).
    """
    if not _BLAS:
        try:
            from threadpoolctl import ThreadpoolController

            _BLAS.append(ThreadpoolController())
        except ImportError:  # threadpoolctl comes with scikit-learn; without it, leave threads alone
            _BLAS.append(None)
    ctl = _BLAS[0]
    if ctl is None:
        yield
        return
    with ctl.limit(limits=1, user_api="blas"):  # type: ignore[attr-defined]
        yield


def _finite(A: np.ndarray, what: str) -> None:
    if not np.all(np.isfinite(A)):
        raise CheckpointError(f"{what} holds NaN or Inf values; its singular values are undefined")


def singular_values(W: np.ndarray, *, what: str = "W") -> np.ndarray:
    """Singular values of W, descending, in float64 (values only: ``compute_uv=False``).

    >>> Q = np.linalg.qr(np.random.default_rng(0).normal(size=(4, 4)))[0]
    >>> singular_values(Q @ np.diag([8.0, 4.0, 2.0, 1.0]) @ Q.T).round(10).tolist()
    [8.0, 4.0, 2.0, 1.0]
    """
    A = np.asarray(W, dtype=np.float64)
    if A.ndim != 2:
        raise ConfigError(f"`W` must be a 2-d matrix; got shape {tuple(A.shape)}")
    if A.size == 0:
        return np.zeros(0)
    _finite(A, what)
    with one_blas_thread():
        return np.linalg.svd(A, compute_uv=False)


def factored_singular_values(A: np.ndarray, B: np.ndarray, *, what: str = "W") -> np.ndarray:
    """Singular values of A Bᵀ (A, B of shape (d, R)) without forming the d × d product.

    QR of both factors, A = Q_A R_A and B = Q_B R_B, gives A Bᵀ = Q_A (R_A R_Bᵀ) Q_Bᵀ with
    orthonormal Q's, so the singular values are those of the small core R_A R_Bᵀ: exactly
    min(d, R) values (r for a low-rank layer U Vᵀ), descending.

    >>> U = np.array([[1.0], [0.0], [0.0]]); V = np.array([[0.0], [3.0], [4.0]])
    >>> factored_singular_values(U, V).tolist()
    [5.0]
    """
    A = np.asarray(A, dtype=np.float64)
    B = np.asarray(B, dtype=np.float64)
    if A.ndim != 2 or A.shape != B.shape:
        raise ConfigError(f"factors must both be (d, r); got shapes {tuple(A.shape)} and {tuple(B.shape)}")
    _finite(A, f"the left factor of {what}")
    _finite(B, f"the right factor of {what}")
    if A.shape[1] == 0:
        return np.zeros(0)
    with one_blas_thread():
        RA = cast(np.ndarray, np.linalg.qr(A, mode="r"))  # (m, R), m = min(d, R)
        RB = cast(np.ndarray, np.linalg.qr(B, mode="r"))  # (m, R)
        return np.linalg.svd(RA @ RB.T, compute_uv=False)  # (m,)


def numerical_rank(s: np.ndarray | Sequence[float], T: float) -> int:
    """R_T = #{k : σ_k ≥ T·σ_1} (paper §3.5, read as in PAPER-NOTES): singular values kept at tolerance T.

    A value exactly at T·σ_1 is kept; an all-zero spectrum (σ_1 = 0) has rank 0.

    >>> s = [1.0, 0.5, 0.25, 0.125]
    >>> [numerical_rank(s, T) for T in (1.0, 0.5, 0.4, 0.25, 0.125, 0.1)]
    [1, 2, 2, 3, 4, 4]
    >>> numerical_rank([0.0, 0.0], 0.1)
    0
    """
    t = check_tolerance(T)
    a = np.asarray(s, dtype=np.float64)
    if a.size == 0:
        return 0
    s1 = float(a.max())
    if not s1 > 0:
        return 0
    return int(np.count_nonzero(a >= t * s1))


def numerical_ranks(s: np.ndarray | Sequence[float], tolerances: Iterable[float]) -> dict[float, int]:
    """{T: R_T} for each tolerance (validated, duplicates dropped)."""
    return {t: numerical_rank(s, t) for t in check_tolerances(tolerances)}


def energy_rank(s: np.ndarray | Sequence[float], share: float = DEFAULT_ENERGY) -> int:
    """Smallest k with σ_1² + … + σ_k² ≥ share · Σσ² (0 for an all-zero spectrum).

    >>> energy_rank([3.0, 2.0, 1.0, 1.0, 1.0], 0.8)   # Σσ² = 16; 9 < 12.8 ≤ 13
    2
    >>> energy_rank([3.0, 2.0, 1.0, 1.0, 1.0], 13 / 16)
    2
    """
    p = check_share(share)
    a = np.sort(np.asarray(s, dtype=np.float64))[::-1]
    if a.size == 0:
        return 0
    cum = np.cumsum(a * a)
    total = float(cum[-1])
    if not total > 0:
        return 0
    k = int(np.searchsorted(cum, p * total, side="left")) + 1
    return min(k, int(a.size))


def stable_rank(s: np.ndarray | Sequence[float]) -> float:
    """Stable rank ‖W‖_F² / ‖W‖_2² = Σσ² / σ_1² (0 for an all-zero spectrum).

    >>> stable_rank([2.0, 1.0, 1.0])
    1.5
    """
    a = np.asarray(s, dtype=np.float64)
    if a.size == 0:
        return 0.0
    s1 = float(a.max())
    return float(np.sum(a * a) / (s1 * s1)) if s1 > 0 else 0.0


def normalized_spectrum(s: np.ndarray) -> np.ndarray:
    """σ_k / σ_1 (zeros when σ_1 = 0)."""
    a = np.asarray(s, dtype=np.float64)
    if a.size == 0 or not a.max() > 0:
        return np.zeros_like(a)
    return a / a.max()


def rank_versus_tolerance(s: np.ndarray, tolerances: np.ndarray | None = None) -> pd.DataFrame:
    """R_T over a grid of tolerances (default 10⁻⁴ … 1, log-spaced): columns ``tolerance``, ``rank``."""
    grid = np.logspace(-4, 0, 81) if tolerances is None else np.asarray(tolerances, dtype=np.float64)
    for t in grid:
        check_tolerance(float(t))
    a = np.asarray(s, dtype=np.float64)
    if a.size == 0 or not a.max() > 0:
        ranks = np.zeros(grid.shape, dtype=np.int64)
    else:
        asc = np.sort(a)
        ranks = a.size - np.searchsorted(asc, grid * a.max(), side="left")  # #{σ ≥ T σ_1}
    return pd.DataFrame({"tolerance": grid, "rank": ranks.astype(np.int64)})


AUC_TOLERANCE = 0.001  # "within 0.001 AUC of full rank" (the paper counts 0.001 as significant, §7.2)


@dataclass(frozen=True)
class SuggestedRank:
    """A one-number rank suggestion (paper §3.5; §8 for r ≈ d/4).

    ``basis`` says where the number comes from: ``"tolerance"`` — read off the weights, R_T at the tolerance
    ``tolerance`` (the smallest r whose U Vᵀ keeps every σ_k ≥ T·σ₁); ``"data"`` — measured: the smallest
    rank whose AUC, with every cross layer truncated to it without retraining, stays within ``AUC_TOLERANCE``
    of full rank (:func:`smallest_rank_within`; ``tolerance`` is then None).
    """

    tolerance: float | None  # T behind a tolerance-based suggestion; None when measured on data
    rank: int  # the suggested r
    text: str  # the one sentence shown to users
    basis: str = "tolerance"  # tolerance | data


def suggestion_tolerance(tolerances: Iterable[float]) -> float:
    """The tolerance behind a tolerance-based suggestion: of the tolerances the user picked, the one closest to
    0.1 on a log scale (the larger on a tie), so the suggested number is always one of the table's R_T.

    >>> suggestion_tolerance([0.5, 0.1, 0.01]), suggestion_tolerance([0.5, 0.05]), suggestion_tolerance([1e-4])
    (0.1, 0.05, 0.0001)
    """
    tols = check_tolerances(tolerances)
    target = math.log10(DEFAULT_SUGGEST_TOLERANCE)
    return min(tols, key=lambda t: (abs(math.log10(t) - target), -t))


def _of(rank_bound: int, d: int) -> str:
    return f"of d = {d}" if rank_bound >= d else f"of its bound {rank_bound}, d = {d}"


_PAPER = "the paper found r ≈ d/4 kept full-rank accuracy (§8)"


def smallest_rank_within(ranks: Sequence[int], aucs: Sequence[float], tolerance: float = AUC_TOLERANCE) -> int | None:
    """The smallest rank whose AUC is within ``tolerance`` of the last (full-rank) entry's; None when that AUC is
    undefined (one class only).

    >>> smallest_rank_within([1, 2, 4, 8], [0.70, 0.7995, 0.8005, 0.8])
    2
    """
    r = np.asarray(ranks, dtype=np.int64)
    a = np.asarray(aucs, dtype=np.float64)
    if r.size == 0 or r.shape != a.shape:
        raise ConfigError(f"a rank curve needs as many AUCs as ranks; got {r.size} ranks and {a.size} AUCs")
    full = float(a[-1])
    if not math.isfinite(full):
        return None
    ok = np.isfinite(a) & (a >= full - tolerance)
    return int(r[np.argmax(ok)])


def suggest_rank(
    s: np.ndarray | Sequence[float] | None = None,
    *,
    d: int,
    tolerance: float = DEFAULT_SUGGEST_TOLERANCE,
    rank_bound: int | None = None,
    curve: Sequence[tuple[int, float]] | None = None,
    auc_tolerance: float = AUC_TOLERANCE,
    rows: int | None = None,
    split: str = "val",
) -> SuggestedRank:
    """One suggested rank r, in one sentence that holds one rank number.

    * With data at hand (``curve``: (rank, AUC) pairs of the rank-truncation curve, ascending, the last at full
      rank; see :mod:`dcnviz.explain`): the smallest rank whose AUC stays within ``auc_tolerance`` of full rank
      when every cross layer is truncated to it **without retraining** (the paper's Fig. 5b retrains at each r,
      so a retrained model may need less).
    * Otherwise, from the singular values ``s``: R_T at ``tolerance``, the smallest r whose U Vᵀ keeps every
      σ_k ≥ T·σ₁ (§3.5), read off the weights alone. Callers pass the tolerance the user picked
      (:func:`suggestion_tolerance`).

    Both cite the paper's practical advice r ≈ d/4 (§8), without computing a second number.

    >>> suggest_rank([4.0, 2.0, 0.1], d=3, tolerance=0.1).rank
    2
    >>> suggest_rank(d=8, rank_bound=8, curve=[(1, 0.6), (2, 0.7995), (8, 0.8)]).rank
    2
    """
    bound = d if rank_bound is None else int(rank_bound)
    if curve is not None:
        pairs = [(int(r), float(a)) for r, a in curve]
        if not pairs:
            raise ConfigError("a rank curve needs at least one point")
        ranks, aucs = [p[0] for p in pairs], [p[1] for p in pairs]
        best = smallest_rank_within(ranks, aucs, auc_tolerance)
        on = f" on {rows:,} {_split_name(split)} rows" if rows else ""
        if best is None:
            return SuggestedRank(
                tolerance=None,
                rank=ranks[-1],
                basis="data",
                text=f"the AUC is undefined{on} (one class only), so no smaller rank could be measured; {_PAPER}",
            )
        full = aucs[-1]
        auc_b = aucs[ranks.index(best)]
        if best >= ranks[-1]:
            text = (
                f"r = {best} ({_of(bound, d)}): every smaller rank loses more than {auc_tolerance:g} AUC{on} when the "
                f"cross layers are truncated without retraining (a model retrained at a lower rank may not); {_PAPER}"
            )
        else:
            text = (
                f"r = {best} ({_of(bound, d)}): the smallest rank whose AUC stays within {auc_tolerance:g} of full "
                f"rank ({auc_b:.4f} vs {full:.4f}{on}) with every cross layer truncated to it without retraining "
                f"(a model retrained at that rank may need less); {_PAPER}"
            )
        return SuggestedRank(tolerance=None, rank=best, basis="data", text=text)
    if s is None:
        raise ConfigError("suggest_rank needs the singular values s, or a rank curve measured on data")
    t = check_tolerance(tolerance)
    r = numerical_rank(s, t)
    if r == 0:
        text = "all singular values are zero: this layer learned no cross"
    else:
        text = (
            f"r = {r} ({_of(bound, d)}): the smallest rank keeping every singular value ≥ {t:g}·σ₁, read off the "
            f"weights alone (not measured on data); {_PAPER}"
        )
    return SuggestedRank(tolerance=t, rank=r, text=text)


def _split_name(split: str) -> str:
    return {"val": "validation", "test": "test"}.get(split, split)


# --------------------------------------------------------------------------------------------------
# Effective W of a layer, an expert, or a gate-weighted mixture


@dataclass(frozen=True, eq=False)
class LayerMatrix:
    """One matrix to analyse: a layer's effective W, one expert's, or a gate-weighted mixture average.

    A full layer keeps W (``dense``); every other kind keeps factors W = A Bᵀ (``left`` A, ``right``
    B, each (d, R)) so its spectrum comes from :func:`factored_singular_values`.
    """

    layer: int  # cross layer index, from 0
    expert: int | None  # expert index from 0; None for the layer's own effective W
    kind: LayerKind  # the layer's kind: full | lowrank | mixture | vector
    label: str  # e.g. "layer 0", "layer 1 · expert 2 (linear part)"
    d: int  # width of x0
    dense: np.ndarray | None = None  # W (d, d) when not factored
    left: np.ndarray | None = None  # A (d, R), W = A Bᵀ
    right: np.ndarray | None = None  # B (d, R)
    linear_part_only: bool = False  # True when a nonlinear g makes this only the experts' linear part
    weighting: str = ""  # mixtures: "uniform" (mean of experts) or "gate-weighted over N inputs"
    notes: tuple[str, ...] = ()  # importer notes (e.g. TFRS diag_scale)

    @property
    def rank_bound(self) -> int:
        """The largest rank W can have: d for a full W, min(d, R) for factors."""
        if self.left is not None:
            return min(self.d, int(self.left.shape[1]))
        return self.d

    @cached_property
    def weight(self) -> np.ndarray:
        """W (d, d) in paper orientation (formed once, on first use)."""
        if self.dense is not None:
            return self.dense
        assert self.left is not None and self.right is not None  # set by the constructors below
        with one_blas_thread():
            return self.left @ self.right.T  # (d, d)

    @cached_property
    def singular_values(self) -> np.ndarray:
        """Descending singular values: d for a full W, exactly min(d, R) for factors (never forms A Bᵀ)."""
        if self.dense is not None:
            return singular_values(self.dense, what=self.label)
        assert self.left is not None and self.right is not None
        return factored_singular_values(self.left, self.right, what=self.label)


def layer_matrix(
    layer: CrossLayerWeights,
    index: int,
    *,
    gate_weights: np.ndarray | Sequence[float] | None = None,
    gate_label: str = "",
) -> LayerMatrix:
    """A layer's effective W (paper orientation), from the factors its common form exposes.

    full → W; lowrank → U Vᵀ; vector (DCN-V1) → 1 wᵀ; mixture → Σ_k a_k U_k C_k V_kᵀ with
    a_k = 1/K (the mean of the experts' linear parts: the effective W under uniform gates) or, given
    ``gate_weights`` (K,) from :func:`dcnviz.gates.mean_gates`, a_k = E_x[G_k(x_l)], which is
    E_x[Σ_k G_k(x_l) W_k]. Mixture factors are stacked, [a_1 U_1 C_1, …, a_K U_K C_K] and [V_1, …, V_K],
    so the rank bound is min(d, Σ r_k) and no d × d product is needed for the spectrum. The shapes were
    checked when the common form was made (:mod:`dcnviz.weights`).
    """
    dense = left = right = None
    label, weighting = f"layer {index}", ""
    if isinstance(layer, MixtureWeights):
        if gate_weights is None:
            a, weighting = np.full(layer.K, 1.0 / layer.K), "uniform"
        else:
            a = np.asarray(gate_weights, dtype=np.float64).reshape(-1)
            if a.shape != (layer.K,):
                raise ConfigError(f"cross layer {index} has {layer.K} experts; got {a.size} gate weights")
            weighting = gate_label or "gate-weighted"
        left, right = layer.weighted_factors(a)
        label += " · " + ("mean of experts" if gate_weights is None else "gate-weighted experts")
        label += " (linear part)" if layer.linear_part_only else ""
    elif (factors := layer.factors) is None:  # W is kept whole (full rank)
        dense = layer.effective_weight()
    else:
        left, right = factors
    return LayerMatrix(
        layer=index,
        expert=None,
        kind=layer.kind,
        label=label,
        d=layer.d,
        dense=dense,
        left=left,
        right=right,
        linear_part_only=layer.linear_part_only,
        weighting=weighting,
        notes=layer.notes,
    )


def expert_matrices(layer: CrossLayerWeights, index: int) -> list[LayerMatrix]:
    """Each expert's U_k C_k V_kᵀ (or U_k V_kᵀ) of a mixture layer; [] for other kinds."""
    if not isinstance(layer, MixtureWeights):
        return []
    part = " (linear part)" if layer.linear_part_only else ""
    return [
        LayerMatrix(
            layer=index,
            expert=k,
            kind="mixture",
            label=f"layer {index} · expert {k}{part}",
            d=layer.d,
            left=e.factors[0],
            right=e.factors[1],
            linear_part_only=layer.linear_part_only,
        )
        for k, e in enumerate(layer.experts)
    ]


# --------------------------------------------------------------------------------------------------
# Spectrum of one matrix, and the analysis of a whole model


@dataclass(frozen=True, eq=False)
class Spectrum:
    """Singular values of one matrix (and of its initial matrix), with the rank summaries of §3.5."""

    label: str  # e.g. "layer 0"
    singular_values: np.ndarray  # σ_1 ≥ σ_2 ≥ … (raw)
    normalized: np.ndarray  # σ_k / σ_1
    numerical_rank: dict[float, int]  # {T: R_T}
    energy: float  # share of Σσ² behind energy_rank
    energy_rank: int  # smallest k holding `energy` of Σσ²
    stable_rank: float  # ‖W‖_F² / ‖W‖_2²
    rank_bound: int  # d, r, min(d, Σ r_k) or 1
    d: int  # width of x0
    suggested: SuggestedRank  # one-line rank suggestion
    initial_singular_values: np.ndarray | None = None  # the initial matrix's σ (Fig. 3a baseline)
    initial_normalized: np.ndarray | None = None  # its σ_k / σ_1
    initial_numerical_rank: dict[float, int] | None = None  # its R_T
    initial_label: str = ""  # where the initial matrix came from

    @property
    def tolerances(self) -> tuple[float, ...]:
        return tuple(self.numerical_rank)


def spectrum(
    matrix: LayerMatrix,
    *,
    initial: LayerMatrix | None = None,
    initial_label: str = "",
    tolerances: Iterable[float] = DEFAULT_TOLERANCES,
    energy: float = DEFAULT_ENERGY,
    suggest_tolerance: float | None = None,
) -> Spectrum:
    """Spectrum and ranks of one matrix, and the same singular values of its initial matrix.

    The suggested rank is R_T at ``suggest_tolerance``; by default at the tolerance picked among
    ``tolerances`` by :func:`suggestion_tolerance`, so it follows the user's choice."""
    tols = check_tolerances(tolerances)
    t_suggest = suggestion_tolerance(tols) if suggest_tolerance is None else check_tolerance(suggest_tolerance)
    s = matrix.singular_values
    s0 = initial.singular_values if initial is not None else None
    return Spectrum(
        label=matrix.label,
        singular_values=s,
        normalized=normalized_spectrum(s),
        numerical_rank=numerical_ranks(s, tols),
        energy=check_share(energy),
        energy_rank=energy_rank(s, energy),
        stable_rank=stable_rank(s),
        rank_bound=matrix.rank_bound,
        d=matrix.d,
        suggested=suggest_rank(s, d=matrix.d, tolerance=t_suggest, rank_bound=matrix.rank_bound),
        initial_singular_values=s0,
        initial_normalized=None if s0 is None else normalized_spectrum(s0),
        initial_numerical_rank=None if s0 is None else numerical_ranks(s0, tols),
        initial_label=initial_label if initial is not None else "",
    )


@dataclass(frozen=True, eq=False)
class MatrixAnalysis:
    """Block norms and spectrum of one matrix (a layer's effective W or one expert)."""

    matrix: LayerMatrix
    block_norms: np.ndarray  # (k, k) raw ‖W_ij‖_F; other views via `norms(mode)`
    spectrum: Spectrum
    blocks: tuple[BlockLike, ...]
    initial_weight: np.ndarray | None = None  # W0 (d, d) when the model's real initial weights were saved

    @property
    def has_change(self) -> bool:
        """True when :meth:`norms` can show what training changed (W − W0 with the saved W0)."""
        return self.initial_weight is not None

    def norms(self, mode: str = "raw", *, change: bool = False) -> np.ndarray:
        """Block norms in the given view (raw is precomputed).

        ``change=True`` uses W − W0, what training changed, instead of W: the random initial matrix
        (He normal gives every 30×30 block of a 180-wide W a norm near 3.2 before any training) no longer hides the
        crosses the model learned. Only for models whose real initial weights were saved.
        """
        if change:
            if self.initial_weight is None:
                raise ConfigError("this model's initial weights were not saved, so what training changed is unknown")
            return block_norms(self.matrix.weight - self.initial_weight, self.blocks, mode)
        return self.block_norms if mode == "raw" else block_norms(self.matrix.weight, self.blocks, mode)

    def top_crosses(
        self, mode: str = "raw", *, include_self: bool = False, n: int | None = None, change: bool = False
    ) -> pd.DataFrame:
        return top_crosses(
            self.norms(mode, change=change),
            unique_labels([b.name for b in self.blocks]),
            mode=mode,
            include_self=include_self,
            n=n,
        )


@dataclass(frozen=True, eq=False)
class LayerAnalysis(MatrixAnalysis):
    """One cross layer: its effective W, and each expert's for a mixture."""

    experts: tuple[MatrixAnalysis, ...] = ()


@dataclass(frozen=True, eq=False)
class ModelAnalysis:
    """Every cross layer of a model, with its feature blocks."""

    format: str  # dcnviz | torchrec | deepctr | fuxictr | recbole | tfrs
    detected: str  # what was found in the file
    d: int  # width of x0
    blocks: tuple[BlockLike, ...]  # x0 slices in x0 order
    layers: tuple[LayerAnalysis, ...]
    tolerances: tuple[float, ...]
    energy: float
    init_label: str = ""  # where the initial matrices came from
    warnings: tuple[str, ...] = field(default_factory=tuple)

    @property
    def names(self) -> list[str]:
        return unique_labels([b.name for b in self.blocks])


def analyze_layer(
    cw: CrossModelWeights,
    index: int,
    *,
    tolerances: Iterable[float] = DEFAULT_TOLERANCES,
    energy: float = DEFAULT_ENERGY,
    suggest_tolerance: float | None = None,
    gate_weights: np.ndarray | Sequence[float] | None = None,
    gate_label: str = "",
    experts: bool = True,
) -> LayerAnalysis:
    """Block norms and spectrum of one cross layer (and each of its experts), against its initial matrix.

    Computes only this layer, so a page showing one layer at a time pays for one layer's SVDs.
    ``gate_weights``: this layer's E_x[G(x_l)] (K,) from :func:`dcnviz.gates.mean_gates`; without it a mixture
    layer is the mean of its experts (uniform gates). The initial matrix comes from
    ``cw.initial_layers`` when present (the uniform mean for mixtures).
    """
    tols = check_tolerances(tolerances)
    share = check_share(energy)
    if suggest_tolerance is not None:
        check_tolerance(suggest_tolerance)
    if not (0 <= index < len(cw.layers)):
        raise ConfigError(f"layer index must be in [0, {len(cw.layers)}); got index={index}")
    blocks = tuple(cw.blocks)
    block_bounds(blocks, cw.d)
    initial = cw.initial_layers
    if initial is not None and len(initial) != len(cw.layers):
        raise CheckpointError(f"{len(initial)} initial layers for {len(cw.layers)} cross layers")
    layer = cw.layers[index]
    if layer.d != cw.d:
        raise CheckpointError(f"cross layer {index} has width {layer.d}, but x0 has width {cw.d}")

    def one(m: LayerMatrix, m0: LayerMatrix | None) -> tuple[np.ndarray, Spectrum, np.ndarray | None]:
        # W − W0 is meaningful only against the model's own saved W0, and only for W itself (a
        # gate-weighted mixture average has no initial counterpart).
        gated = gate_weights is not None and m.expert is None
        w0 = m0.weight if (m0 is not None and cw.initial_saved and not gated) else None
        sp = spectrum(
            m,
            initial=m0,
            initial_label=cw.init_label,
            tolerances=tols,
            energy=share,
            suggest_tolerance=suggest_tolerance,
        )
        return block_norms(m.weight, blocks, "raw"), sp, w0

    m = layer_matrix(layer, index, gate_weights=gate_weights, gate_label=gate_label)
    m0 = layer_matrix(initial[index], index) if initial is not None else None
    norms, sp, w0 = one(m, m0)
    ex: list[MatrixAnalysis] = []
    if experts and isinstance(layer, MixtureWeights):
        init_experts = expert_matrices(initial[index], index) if initial is not None else []
        for k, e in enumerate(expert_matrices(layer, index)):
            e0 = init_experts[k] if k < len(init_experts) else None
            en, es, ew0 = one(e, e0)
            ex.append(MatrixAnalysis(matrix=e, block_norms=en, spectrum=es, blocks=blocks, initial_weight=ew0))
    return LayerAnalysis(matrix=m, block_norms=norms, spectrum=sp, blocks=blocks, initial_weight=w0, experts=tuple(ex))


def analyze(
    cw: CrossModelWeights,
    *,
    tolerances: Iterable[float] = DEFAULT_TOLERANCES,
    energy: float = DEFAULT_ENERGY,
    suggest_tolerance: float | None = None,
    gate_weights: Sequence[np.ndarray | None] | None = None,
    gate_label: str = "",
    experts: bool = True,
) -> ModelAnalysis:
    """Block norms and spectra of every cross layer (and every expert) of a model in common form.

    ``gate_weights``: per layer, E_x[G(x_l)] from :func:`dcnviz.gates.mean_gates` (None entries for non-mixture
    layers). See :func:`analyze_layer` for one layer at a time.
    """
    tols = check_tolerances(tolerances)
    share = check_share(energy)
    blocks = tuple(cw.blocks)
    block_bounds(blocks, cw.d)
    if gate_weights is not None and len(gate_weights) != len(cw.layers):
        raise ConfigError(f"{len(gate_weights)} gate-weight entries for {len(cw.layers)} cross layers")
    layers = tuple(
        analyze_layer(
            cw,
            i,
            tolerances=tols,
            energy=share,
            suggest_tolerance=suggest_tolerance,
            gate_weights=None if gate_weights is None else gate_weights[i],
            gate_label=gate_label,
            experts=experts,
        )
        for i in range(len(cw.layers))
    )
    return ModelAnalysis(
        format=cw.format,
        detected=cw.detected,
        d=cw.d,
        blocks=blocks,
        layers=layers,
        tolerances=tols,
        energy=share,
        init_label=cw.init_label if cw.initial_layers is not None else "",
        warnings=tuple(cw.warnings),
    )


# --------------------------------------------------------------------------------------------------
# Tables


def spectrum_frame(sp: Spectrum) -> pd.DataFrame:
    """One row per k: ``k`` (from 1), ``sigma``, ``normalized`` (+ ``initial_sigma``, ``initial_normalized``)."""
    n = max(sp.singular_values.size, 0 if sp.initial_singular_values is None else sp.initial_singular_values.size)
    df = pd.DataFrame({"k": np.arange(1, n + 1)})
    df["sigma"] = _pad(sp.singular_values, n)
    df["normalized"] = _pad(sp.normalized, n)
    if sp.initial_singular_values is not None and sp.initial_normalized is not None:
        df["initial_sigma"] = _pad(sp.initial_singular_values, n)
        df["initial_normalized"] = _pad(sp.initial_normalized, n)
    return df


def rank_table(analysis: ModelAnalysis, *, experts: bool = True) -> pd.DataFrame:
    """One row per layer (and expert): kind, d, rank bound, σ_1, stable/energy rank, R_T, initial R_T, suggestion."""
    rows = []
    items: list[MatrixAnalysis] = []
    for la in analysis.layers:
        items.append(la)
        if experts:
            items.extend(la.experts)
    for it in items:
        sp, m = it.spectrum, it.matrix
        row: dict[str, object] = {
            "matrix": m.label,
            "layer": m.layer,
            "expert": "" if m.expert is None else m.expert,
            "kind": m.kind,
            "d": m.d,
            "rank_bound": sp.rank_bound,
            "sigma_1": float(sp.singular_values[0]) if sp.singular_values.size else 0.0,
            "stable_rank": sp.stable_rank,
            f"energy_rank_{sp.energy:g}": sp.energy_rank,
        }
        for t, r in sp.numerical_rank.items():
            row[f"R_{t:g}"] = r
        if sp.initial_numerical_rank is not None:
            for t, r in sp.initial_numerical_rank.items():
                row[f"initial R_{t:g}"] = r
        row["suggested_rank"] = sp.suggested.rank
        row["suggestion"] = sp.suggested.text
        rows.append(row)
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------------
# Effect on predictions (the tables behind ``dcnviz.explain``)


def pair_values(N: np.ndarray, how: str = "sum") -> np.ndarray:
    """A (k, k) block table folded onto unordered pairs: cell (i, j) of the result, i < j, is
    N_ij + N_ji (``sum``, for ablation Δs: both directions removed) or √(N_ij² + N_ji²) (``norm``, as the
    symmetric block-norm view); the diagonal keeps N_ii. The lower triangle mirrors the upper one.

    >>> pair_values(np.array([[1.0, 2.0], [3.0, 4.0]])).tolist()
    [[1.0, 5.0], [5.0, 4.0]]
    """
    M = np.asarray(N, dtype=np.float64)
    if M.ndim != 2 or M.shape[0] != M.shape[1]:
        raise ConfigError(f"a block table must be (k, k); got shape {M.shape}")
    if how == "sum":
        P = M + M.T
    elif how == "norm":
        P = np.sqrt(M * M + M.T * M.T)
    else:
        raise ConfigError(f"how must be 'sum' or 'norm'; got how={how!r}")
    np.fill_diagonal(P, np.diag(M))
    return P


def effect_table(
    ablation: np.ndarray,
    block_norms: np.ndarray,
    names: Sequence[str],
    *,
    contribution: np.ndarray | None = None,
    pairs: bool = True,
    include_self: bool = False,
) -> pd.DataFrame:
    """Effect on predictions and weights of each cross, strongest effect first: one table with both.

    ``pairs=True`` ranks unordered feature pairs with ``effect`` = Δ(i, j) + Δ(j, i) (log-loss increase when
    both blocks are zeroed one at a time), ``contribution`` = √(c_ij² + c_ji²) and ``block_norm`` =
    √(‖W_ij‖² + ‖W_ji‖²); ``pairs=False`` ranks the directed blocks (i = output feature, j = input feature).
    Columns: ``rank`` (by effect, from 1), ``feature_i``, ``feature_j``, ``effect``, ``contribution`` (when
    given), ``block_norm``, ``norm_rank`` (the same cross's rank by block norm).

    >>> N = np.array([[1, 1, 5.0], [1, 1, 1], [1, 1, 1]])
    >>> t = effect_table(np.array([[0, 3.0, 0], [1.0, 0, 0], [0, 0, 0]]), N, "abc")
    >>> t[["feature_i", "feature_j", "effect", "norm_rank"]].values.tolist()
    [['a', 'b', 4.0, 2], ['a', 'c', 0.0, 1], ['b', 'c', 0.0, 3]]
    """
    k = len(names)
    E = np.asarray(ablation, dtype=np.float64)
    N = np.asarray(block_norms, dtype=np.float64)
    C = None if contribution is None else np.asarray(contribution, dtype=np.float64)
    for what, M in (("ablation", E), ("block norms", N), ("contribution", C)):
        if M is not None and M.shape != (k, k):
            raise ConfigError(f"{what} have shape {M.shape}, but {k} names were given")
    if pairs:
        E, N = pair_values(E, "sum"), pair_values(N, "norm")
        C = None if C is None else pair_values(C, "norm")
        ii, jj = np.triu_indices(k, 0 if include_self else 1)
    else:
        ii, jj = np.indices((k, k)).reshape(2, -1)
        if not include_self:
            keep = ii != jj
            ii, jj = ii[keep], jj[keep]
    labels = unique_labels(list(names))
    eff, norm = E[ii, jj], N[ii, jj]
    order = np.lexsort((jj, ii, -eff))
    norm_rank = np.empty(len(ii), dtype=np.int64)
    norm_rank[np.lexsort((jj, ii, -norm))] = np.arange(1, len(ii) + 1)
    df = pd.DataFrame(
        {
            "rank": np.arange(1, len(ii) + 1),
            "feature_i": [labels[a] for a in ii[order]],
            "feature_j": [labels[b] for b in jj[order]],
            "effect": eff[order],
        }
    )
    if C is not None:
        df["contribution"] = C[ii, jj][order]
    df["block_norm"] = norm[order]
    df["norm_rank"] = norm_rank[order]
    return df


def spearman(a: np.ndarray | Sequence[float], b: np.ndarray | Sequence[float]) -> float:
    """Spearman rank correlation (ties share their average rank); NaN when either side is constant.

    >>> round(spearman([1, 2, 3, 4], [10, 20, 30, 25]), 6)
    0.8
    """
    x = pd.Series(np.asarray(a, dtype=np.float64)).rank().to_numpy()
    y = pd.Series(np.asarray(b, dtype=np.float64)).rank().to_numpy()
    if x.size < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan
    return float(np.corrcoef(x, y)[0, 1])


def mixture_sentence(weighting: str) -> str:
    """What a mixture layer's one W is (Eq. 3), for a :attr:`LayerMatrix.weighting`.

    >>> mixture_sentence("uniform")
    "W = mean of the experts' U_k C_k V_kᵀ (uniform gates)"
    >>> mixture_sentence("gate-weighted over 7,286 validation inputs")
    'W = Σ_k E[G_k] U_k C_k V_kᵀ (gate-weighted over 7,286 validation inputs)'
    """
    if not weighting or weighting == "uniform":
        return "W = mean of the experts' U_k C_k V_kᵀ (uniform gates)"
    return f"W = Σ_k E[G_k] U_k C_k V_kᵀ ({weighting})"


def agreement_sentence(table: pd.DataFrame, *, what: str = "pairs", where: str = "") -> str:
    """One honest sentence on how far the effect on predictions and the block norms of an :func:`effect_table`
    agree: their Spearman rank correlation, and where the strongest cross by effect ranks by weight.

    >>> N = np.array([[1, 1, 5.0], [1, 1, 1], [1, 1, 1]])
    >>> t = effect_table(np.array([[0, 3.0, 0], [1.0, 0, 1], [0, 0, 0]]), N, "abc")
    >>> print(agreement_sentence(t))  # doctest: +NORMALIZE_WHITESPACE
    Weights and effect rank the 3 pairs differently (Spearman ρ = -0.87): the strongest by effect, a × b, is #2 by
    block norm.
    """
    n = len(table)
    if n < 2:
        return f"With {n} {what} there is nothing to rank."
    rho = spearman(table["effect"], table["block_norm"])
    first = table.iloc[0]
    sep = "×" if what == "pairs" else "←"
    top = f"{first.feature_i} {sep} {first.feature_j}"
    at = f" {where}" if where else ""
    if not math.isfinite(rho):
        return f"Weights and effect cannot be rank-correlated{at}: one of them is the same for all {n} {what}."
    if rho >= 0.8:
        how = "closely"
    elif rho >= 0.5:
        how = "moderately"
    elif rho >= 0.2:
        how = "only weakly"
    else:
        how = None
    agree = f"agree {how} on" if how else "rank"
    tail = " differently" if how is None else ""
    return (
        f"Weights and effect {agree} the {n} {what}{tail}{at} (Spearman ρ = {rho:.2f}): the strongest by effect, "
        f"{top}, is #{int(first.norm_rank)} by block norm."
    )


def rank_curve_frame(
    ranks: Sequence[int], aucs: Sequence[float], loglosses: Sequence[float], *, auc_tolerance: float = AUC_TOLERANCE
) -> pd.DataFrame:
    """The rank-truncation curve as a table: ``rank``, ``auc``, ``logloss``, ``auc_drop`` (full-rank AUC − AUC),
    ``logloss_rise``, ``within`` (AUC within ``auc_tolerance`` of full rank) and ``suggested`` (the smallest
    such rank, :func:`smallest_rank_within`)."""
    df = pd.DataFrame(
        {
            "rank": np.asarray(ranks, dtype=np.int64),
            "auc": np.asarray(aucs, dtype=np.float64),
            "logloss": np.asarray(loglosses, dtype=np.float64),
        }
    )
    if df.empty:
        raise ConfigError("a rank curve needs at least one point")
    df["auc_drop"] = df["auc"].iloc[-1] - df["auc"]
    df["logloss_rise"] = df["logloss"] - df["logloss"].iloc[-1]
    df["within"] = df["auc"] >= df["auc"].iloc[-1] - auc_tolerance
    best = smallest_rank_within(list(df["rank"]), list(df["auc"]), auc_tolerance)
    df["suggested"] = df["rank"] == best
    return df


# --------------------------------------------------------------------------------------------------
# Comparing two models


def block_norm_difference(
    W_a: np.ndarray,
    blocks_a: Sequence[BlockLike],
    W_b: np.ndarray,
    blocks_b: Sequence[BlockLike],
    mode: str = "raw",
) -> pd.DataFrame:
    """Block norms of B minus those of A (rows = output feature i, columns = input feature j).

    Both models must have the same feature blocks (names and x0 slices); ConfigError otherwise.
    """
    if not same_blocks(blocks_a, blocks_b):
        a = ", ".join(f"{b.name}[{b.start}:{b.stop}]" for b in list(blocks_a)[:6])
        b = ", ".join(f"{x.name}[{x.start}:{x.stop}]" for x in list(blocks_b)[:6])
        raise ConfigError(
            f"the two models have different feature blocks, so their block norms cannot be compared: {a} vs {b}"
        )
    diff = block_norms(W_b, blocks_b, mode) - block_norms(W_a, blocks_a, mode)
    return block_norm_frame(diff, blocks_a)


def spectrum_difference(a: Spectrum, b: Spectrum) -> pd.DataFrame:
    """Spectra of A and B side by side by k, padded with NaN to the longer one.

    Columns: ``k``, ``sigma_a``, ``sigma_b``, ``normalized_a``, ``normalized_b``, ``normalized_diff`` (B − A).
    """
    n = max(a.singular_values.size, b.singular_values.size)
    df = pd.DataFrame({"k": np.arange(1, n + 1)})
    df["sigma_a"] = _pad(a.singular_values, n)
    df["sigma_b"] = _pad(b.singular_values, n)
    df["normalized_a"] = _pad(a.normalized, n)
    df["normalized_b"] = _pad(b.normalized, n)
    df["normalized_diff"] = df["normalized_b"] - df["normalized_a"]
    return df


def rank_difference(a: Spectrum, b: Spectrum) -> pd.DataFrame:
    """R_T of A and B for the tolerances both were computed with: ``tolerance``, ``rank_a``, ``rank_b``, ``diff``."""
    tols = [t for t in a.numerical_rank if t in b.numerical_rank]
    ra = [a.numerical_rank[t] for t in tols]
    rb = [b.numerical_rank[t] for t in tols]
    return pd.DataFrame({"tolerance": tols, "rank_a": ra, "rank_b": rb, "diff": np.subtract(rb, ra)})


def _pad(x: np.ndarray, n: int) -> np.ndarray:
    out = np.full(n, np.nan)
    out[: x.size] = x
    return out
