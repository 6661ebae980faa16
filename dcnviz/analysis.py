r"""What a cross network learned: block norms (paper §7.6, Eq. 7, Fig. 6) and spectra (§3.5, Fig. 3a).

NumPy in, tables out — no plotting here (:mod:`dcnviz.figures` draws what this module computes).
Input is the common form of :mod:`dcnviz.weights`, always in paper orientation (a layer computes
``W @ x``; rows = output slot, columns = input slot). Arithmetic is float64.

* **Effective W** (:class:`LayerMatrix`): full W; U Vᵀ (low rank, Eq. 2); for a mixture (Eq. 3/4)
  each expert's U_k C_k V_kᵀ — only the expert's *linear part* when g is not the identity — and
  their mean (the effective W under uniform gates) or, with data at hand, the gate-weighted average
  E_x[Σ_k G_k(x_l) W_k] (:func:`mean_gates`); 1 wᵀ for DCN-V1. Low-rank matrices are kept as factors
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
from typing import TYPE_CHECKING, Literal, Protocol, cast

import numpy as np
import pandas as pd

from dcnviz.errors import CheckpointError, ConfigError
from dcnviz.weights import CrossLayerWeights, CrossModelWeights

if TYPE_CHECKING:
    from dcnviz.encoded import Encoded
    from dcnviz.model import DCNModel

BlockNormMode = Literal["raw", "normalized", "symmetric"]
MODES: tuple[str, ...] = ("raw", "normalized", "symmetric")

#: One sentence per block-norm view, shown wherever the view is offered.
MODE_EXPLANATIONS: dict[str, str] = {
    "raw": (
        "Frobenius norm ‖W_ij‖_F of block (i, j), as in the paper's Fig. 6b: how strongly input feature j "
        "feeds the slot that is multiplied by x0's feature i."
    ),
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
DEFAULT_SUGGEST_TOLERANCE = 0.1  # T behind the one-line suggested rank


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
    the slot multiplied by x0's feature i**. W is not symmetric in general, and neither is this
    table: rows = output feature i, columns = input feature j.

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


@dataclass(frozen=True)
class SuggestedRank:
    """A one-line rank suggestion for one layer (paper §3.5, §7.5, §8)."""

    tolerance: float  # T behind the suggestion
    rank: int  # smallest r keeping every σ_k ≥ T·σ_1, i.e. R_T
    text: str  # the one-line explanation shown to users


def suggest_rank(
    s: np.ndarray | Sequence[float],
    *,
    d: int,
    tolerance: float = DEFAULT_SUGGEST_TOLERANCE,
    rank_bound: int | None = None,
    n_features: int | None = None,
) -> SuggestedRank:
    """The smallest rank r whose U Vᵀ keeps every singular value ≥ T·σ_1 (that is R_T), with the paper's advice.

    The paper found r ≈ d/4 kept full-rank accuracy (§8, Practical Learnings; on Criteo, Table 6's
    DCN-Mix uses r = 258 per layer of d = 1027) and expects the *threshold rank* to be O(#features) (§7.5).

    >>> suggest_rank([4.0, 2.0, 0.1], d=3, tolerance=0.1, n_features=2).rank
    2
    """
    t = check_tolerance(tolerance)
    r = numerical_rank(s, t)
    bound = d if rank_bound is None else rank_bound
    where = f"of d = {d}" if bound >= d else f"of its rank bound {bound}, d = {d}"
    feats = f"; threshold rank O(#features) = O({n_features})" if n_features else ""
    if r == 0:
        text = "all singular values are zero: this layer learned no cross"
    else:
        text = (
            f"r = {r} ({where}) keeps every singular value ≥ {t:g}·σ₁; "
            f"the paper kept full-rank accuracy with r ≈ d/4 = {max(1, d // 4)} (§8){feats}"
        )
    return SuggestedRank(tolerance=t, rank=r, text=text)


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
    kind: str  # the layer's kind: full | lowrank | mixture | vector
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


def _arrays(layer: CrossLayerWeights, index: int, *names: str) -> list[np.ndarray]:
    out = []
    for n in names:
        a = getattr(layer, n)
        if a is None:
            raise CheckpointError(f"cross layer {index} of kind {layer.kind!r} lacks its {n!r} array")
        out.append(np.asarray(a, dtype=np.float64))
    return out


def _expert_factors(layer: CrossLayerWeights, index: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(U_k C_k, V_k) for each expert, each (d, r_k)."""
    if not layer.experts:
        raise CheckpointError(f"cross layer {index} is a mixture without experts")
    out = []
    for k, e in enumerate(layer.experts):
        U = np.asarray(e.U, dtype=np.float64)
        V = np.asarray(e.V, dtype=np.float64)
        if U.ndim != 2 or U.shape != V.shape or U.shape[0] != layer.d:
            raise CheckpointError(
                f"cross layer {index} expert {k}: U and V must both be (d, r) with d={layer.d}; "
                f"got {tuple(U.shape)} and {tuple(V.shape)}"
            )
        if e.C is not None:
            C = np.asarray(e.C, dtype=np.float64)
            if C.shape != (U.shape[1], U.shape[1]):
                raise CheckpointError(
                    f"cross layer {index} expert {k}: C must be (r, r) with r={U.shape[1]}; got {tuple(C.shape)}"
                )
            U = U @ C  # (d, r)
        out.append((U, V))
    return out


def layer_matrix(
    layer: CrossLayerWeights,
    index: int,
    *,
    gate_weights: np.ndarray | Sequence[float] | None = None,
    gate_label: str = "",
) -> LayerMatrix:
    """A layer's effective W (paper orientation).

    full → W; lowrank → U Vᵀ; vector (DCN-V1) → 1 wᵀ; mixture → Σ_k a_k U_k C_k V_kᵀ with
    a_k = 1/K (the mean of the experts' linear parts: the effective W under uniform gates) or, given
    ``gate_weights`` (K,) from :func:`mean_gates`, a_k = E_x[G_k(x_l)], which is E_x[Σ_k G_k(x_l) W_k].
    Mixture factors are stacked, [a_1 U_1 C_1, …, a_K U_K C_K] and [V_1, …, V_K], so the rank bound is
    min(d, Σ r_k) and no d × d product is needed for the spectrum.
    """
    d = int(layer.d)
    notes = tuple(layer.notes)
    label = f"layer {index}"
    if layer.kind == "full":
        (W,) = _arrays(layer, index, "W")
        if W.shape != (d, d):
            raise CheckpointError(f"cross layer {index}: W must be ({d}, {d}); got {tuple(W.shape)}")
        return LayerMatrix(layer=index, expert=None, kind="full", label=label, d=d, dense=W, notes=notes)
    if layer.kind == "lowrank":
        U, V = _arrays(layer, index, "U", "V")
        if U.ndim != 2 or U.shape != V.shape or U.shape[0] != d:
            raise CheckpointError(
                f"cross layer {index}: U and V must both be (d, r) with d={d}; "
                f"got {tuple(U.shape)} and {tuple(V.shape)}"
            )
        return LayerMatrix(layer=index, expert=None, kind="lowrank", label=label, d=d, left=U, right=V, notes=notes)
    if layer.kind == "vector":
        (w,) = _arrays(layer, index, "w")
        w = w.reshape(-1)
        if w.shape != (d,):
            raise CheckpointError(f"cross layer {index}: w must have {d} entries; got {w.size}")
        return LayerMatrix(
            layer=index,
            expert=None,
            kind="vector",
            label=label,
            d=d,
            left=np.ones((d, 1)),
            right=w[:, None].copy(),
            notes=notes,
        )
    if layer.kind == "mixture":
        factors = _expert_factors(layer, index)
        K = len(factors)
        if gate_weights is None:
            a = np.full(K, 1.0 / K)
            weighting = "uniform"
        else:
            a = np.asarray(gate_weights, dtype=np.float64).reshape(-1)
            if a.shape != (K,):
                raise ConfigError(f"cross layer {index} has {K} experts; got {a.size} gate weights")
            weighting = gate_label or "gate-weighted"
        left = np.concatenate([ak * Uk for ak, (Uk, _) in zip(a, factors, strict=True)], axis=1)  # (d, Σr)
        right = np.concatenate([Vk for _, Vk in factors], axis=1)  # (d, Σr)
        part = " (linear part)" if layer.linear_part_only else ""
        what = "mean of experts" if gate_weights is None else "gate-weighted experts"
        return LayerMatrix(
            layer=index,
            expert=None,
            kind="mixture",
            label=f"{label} · {what}{part}",
            d=d,
            left=left,
            right=right,
            linear_part_only=layer.linear_part_only,
            weighting=weighting,
            notes=notes,
        )
    raise CheckpointError(f"cross layer {index} has unknown kind {layer.kind!r}")


def expert_matrices(layer: CrossLayerWeights, index: int) -> list[LayerMatrix]:
    """Each expert's U_k C_k V_kᵀ (or U_k V_kᵀ) of a mixture layer; [] for other kinds."""
    if layer.kind != "mixture":
        return []
    part = " (linear part)" if layer.linear_part_only else ""
    return [
        LayerMatrix(
            layer=index,
            expert=k,
            kind="mixture",
            label=f"layer {index} · expert {k}{part}",
            d=int(layer.d),
            left=U,
            right=V,
            linear_part_only=layer.linear_part_only,
        )
        for k, (U, V) in enumerate(_expert_factors(layer, index))
    ]


def mean_gates(model: DCNModel, data: Encoded, *, max_rows: int = 20_000) -> list[np.ndarray | None]:
    """E_x[G(x_l)] (K,) for each mixture cross layer over (up to ``max_rows`` of) ``data``; None elsewhere.

    Because each W_k is fixed, E_x[Σ_k G_k(x_l) W_k] = Σ_k E_x[G_k(x_l)] W_k: pass the result as
    ``gate_weights`` to :func:`layer_matrix` (or :func:`analyze`) for the gate-weighted average.
    The inputs x_l come from ``model.cross.layer_inputs(x0)``.
    """
    import torch

    from dcnviz.layers import MixtureCross

    layers = model.cross_layers()
    if model.cross is None or not layers:
        return []
    n = min(len(data), max_rows)
    if n < 1:
        raise ConfigError("mean_gates needs at least one input row; got an empty dataset")
    device = next(model.parameters()).device
    sample = data.index(slice(0, n)).to(device)  # the model's device (a GPU-trained model stays there)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            x0 = model.x0(sample.cat, sample.dense, sample.multi)  # (n, d)
            xs = model.cross.layer_inputs(x0)  # L × (n, d)
            out: list[np.ndarray | None] = []
            for layer, xl in zip(layers, xs, strict=True):
                if isinstance(layer, MixtureCross):
                    out.append(layer.gates(xl).double().mean(dim=0).cpu().numpy())  # (K,)
                else:
                    out.append(None)
    finally:
        model.train(was_training)
    return out


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
    suggest_tolerance: float = DEFAULT_SUGGEST_TOLERANCE,
    n_features: int | None = None,
) -> Spectrum:
    """Spectrum and ranks of one matrix, and the same singular values of its initial matrix."""
    tols = check_tolerances(tolerances)
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
        suggested=suggest_rank(
            s, d=matrix.d, tolerance=suggest_tolerance, rank_bound=matrix.rank_bound, n_features=n_features
        ),
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
    suggest_tolerance: float = DEFAULT_SUGGEST_TOLERANCE,
    gate_weights: np.ndarray | Sequence[float] | None = None,
    gate_label: str = "",
    experts: bool = True,
) -> LayerAnalysis:
    """Block norms and spectrum of one cross layer (and each of its experts), against its initial matrix.

    Computes only this layer, so a page showing one layer at a time pays for one layer's SVDs.
    ``gate_weights``: this layer's E_x[G(x_l)] (K,) from :func:`mean_gates`; without it a mixture
    layer is the mean of its experts (uniform gates). The initial matrix comes from
    ``cw.initial_layers`` when present (the uniform mean for mixtures).
    """
    tols = check_tolerances(tolerances)
    share = check_share(energy)
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
            n_features=len(blocks),
        )
        return block_norms(m.weight, blocks, "raw"), sp, w0

    m = layer_matrix(layer, index, gate_weights=gate_weights, gate_label=gate_label)
    m0 = layer_matrix(initial[index], index) if initial is not None else None
    norms, sp, w0 = one(m, m0)
    ex: list[MatrixAnalysis] = []
    if experts and layer.kind == "mixture":
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
    suggest_tolerance: float = DEFAULT_SUGGEST_TOLERANCE,
    gate_weights: Sequence[np.ndarray | None] | None = None,
    gate_label: str = "",
    experts: bool = True,
) -> ModelAnalysis:
    """Block norms and spectra of every cross layer (and every expert) of a model in common form.

    ``gate_weights``: per layer, E_x[G(x_l)] from :func:`mean_gates` (None entries for non-mixture
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
