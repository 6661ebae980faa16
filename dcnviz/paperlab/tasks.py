r"""The paper's synthetic regression tasks (§6), with their ground-truth coefficients.

Every task is a polynomial in x ∈ [-1, 1]^d (x_i ~ U[-1, 1] independently), optionally plus a
linear part, a sine perturbation and Gaussian noise:

.. math::

    f(x) = x^\top w + \sum_{\alpha \in S} w_\alpha x^\alpha + a \sin(\omega\, x^\top w_s + \phi) + \sigma \epsilon

* ``f1``, ``f2`` (Eq. 6, fixed):  f1 = x1² + x1x2 + x3x1 + x4x1 (d = 4);
  f2 = x1² + 0.1 x1x2 + x2x3 + 0.1 x3² (d = 3).
* ``f3`` (Eq. 6): Σ_{(i,j)∈S} w_ij x_i x_j with x ∈ R^100 and |S| = 100 random pairs.
* ``order3``, ``order4`` (Fig. 4): 20 random crosses of order 3 (resp. 4) over x ∈ R^50.
* ``combined`` (Table 2): xᵀw + |S2| = 20 order-2, |S3| = 10 order-3 and |S4| = 5 order-4 crosses
  + 0.1 sin(2 xᵀw_s + 0.1) + 0.01 ε, with d = 20 (the paper does not state d).

Choices the paper leaves open (documented in docs/paper.md): a random cross of order k picks k
*distinct* coordinates (no squares) uniformly, distinct crosses within a task. Cross weights are
N(0, 1) for f3, order3 and order4. For the combined task, w and the cross weights are N(0, 0.2²)
(``COMBINED_WEIGHT_STD``): with that scale the part of f that a degree-2 model cannot represent
(the order-3 and order-4 crosses) has an RMS of ≈ 0.13, the size of the paper's 1-layer error
(1.43e-1), so the 0.01 noise matters as much as in the paper; with N(0, 1) it would be ≈ 0.66.
w_s is N(0, 1/d), so xᵀw_s has standard deviation 1/√3 whatever d is and the sine is a perturbation,
not a high-frequency wave. The function is fixed by ``seed``; samples use their own seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from dcnviz.errors import ConfigError

TASKS: tuple[str, ...] = ("f1", "f2", "f3", "order3", "order4", "combined")
COMBINED_WEIGHT_STD = 0.2  # std of w and of the cross weights of the combined task (see above)
DEFAULT_D = {"f1": 4, "f2": 3, "f3": 100, "order3": 50, "order4": 50, "combined": 20}


@dataclass(frozen=True, kw_only=True)
class Monomial:
    """One term w_α x^α: ``indices`` lists the 0-based coordinates with multiplicity (x1² = (0, 0))."""

    indices: tuple[int, ...]  # sorted, repeated for powers
    coef: float  # w_α

    @property
    def order(self) -> int:
        return len(self.indices)

    def label(self) -> str:
        """Human-readable, 1-based like the paper: ``x1²``, ``x1·x2``.

        >>> Monomial(indices=(0, 0, 2), coef=1.0).label()
        'x1²·x3'
        """
        sup = {2: "²", 3: "³", 4: "⁴"}
        parts = []
        for i in sorted(set(self.indices)):
            k = self.indices.count(i)
            parts.append(f"x{i + 1}" + (sup.get(k, f"^{k}") if k > 1 else ""))
        return "·".join(parts)


@dataclass(frozen=True, kw_only=True)
class SyntheticTask:
    """A synthetic function and everything needed to redraw it (paper §6)."""

    name: str  # f1 | f2 | f3 | order3 | order4 | combined
    d: int  # input width (x ∈ [-1, 1]^d)
    terms: tuple[Monomial, ...]  # the crosses S with their weights
    linear: tuple[float, ...] | None = None  # w of xᵀw (combined task), (d,)
    sine_w: tuple[float, ...] | None = None  # w_s of the sine perturbation, (d,)
    sine_amp: float = 0.0  # a: 0.1 in Table 2
    sine_freq: float = 2.0  # ω: 2 in Table 2
    sine_phase: float = 0.1  # φ: 0.1 in Table 2
    noise: float = 0.0  # σ of the additive Gaussian noise (0.01 in Table 2)
    seed: int = 0  # seed that drew the random crosses and weights (ignored by f1, f2)

    @property
    def max_order(self) -> int:
        return max((t.order for t in self.terms), default=1)

    def formula(self) -> str:
        """The polynomial part as text (first terms only for long ones)."""
        shown = [f"{t.coef:+.3g}·{t.label()}" for t in self.terms[:8]]
        more = f" … ({len(self.terms)} crosses)" if len(self.terms) > 8 else ""
        extra = " + xᵀw" if self.linear is not None else ""
        if self.sine_amp:
            extra += f" + {self.sine_amp:g}·sin({self.sine_freq:g}·xᵀw_s + {self.sine_phase:g})"
        if self.noise:
            extra += f" + {self.noise:g}·ε"
        return " ".join(shown) + more + extra

    def evaluate(self, x: np.ndarray) -> np.ndarray:
        """The noise-free f(x) for x (N, d), float64 (N,).

        >>> t = build_task("f1")
        >>> float(t.evaluate(np.array([[1.0, 2.0, 3.0, 4.0]]))[0])  # 1 + 2 + 3 + 4
        10.0
        """
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.d:
            raise ConfigError(f"x must have shape (N, {self.d}) for task {self.name!r}; got {x.shape}")
        y = np.zeros(x.shape[0])  # (N,)
        for t in self.terms:
            y += t.coef * np.prod(x[:, list(t.indices)], axis=1)
        if self.linear is not None:
            y += x @ np.asarray(self.linear)
        if self.sine_amp and self.sine_w is not None:
            y += self.sine_amp * np.sin(self.sine_freq * (x @ np.asarray(self.sine_w)) + self.sine_phase)
        return y

    def sample(self, n: int, seed: int, *, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
        """n examples (x (n, d), y (n,)) with x ~ U[-1, 1]^d and the task's noise, from ``seed``.

        ``split`` (train | test) selects an independent random stream, so a run's test set never
        overlaps its training set.

        >>> x, y = build_task("f2").sample(5, seed=1)
        >>> x.shape, y.shape, bool((abs(x) <= 1).all())
        ((5, 3), (5,), True)
        """
        if n < 1:
            raise ConfigError(f"number of samples must be >= 1; got n={n}")
        if split not in ("train", "test"):
            raise ConfigError(f"split must be 'train' or 'test'; got split={split!r}")
        rng = np.random.default_rng([seed, 1 if split == "train" else 2])
        x = rng.uniform(-1.0, 1.0, size=(n, self.d))  # (n, d)
        y = self.evaluate(x)  # (n,)
        if self.noise:
            y = y + self.noise * rng.standard_normal(n)
        return x, y

    def cross_matrix(self) -> np.ndarray:
        """Coefficients of the order-2 terms as a symmetric (d, d) matrix.

        C[i, i] is the coefficient of x_i², C[i, j] = C[j, i] (i ≠ j) the coefficient of x_i x_j
        (so f's quadratic part is Σ_i C_ii x_i² + Σ_{i<j} C_ij x_i x_j). Higher-order terms are left out.

        >>> build_task("f2").cross_matrix()
        array([[1. , 0.1, 0. ],
               [0.1, 0. , 1. ],
               [0. , 1. , 0.1]])
        """
        C = np.zeros((self.d, self.d))
        for t in self.terms:
            if t.order == 2:
                i, j = t.indices
                C[i, j] += t.coef
                if i != j:
                    C[j, i] += t.coef
        return C


def _random_crosses(rng: np.random.Generator, d: int, order: int, count: int, std: float = 1.0) -> list[Monomial]:
    """``count`` distinct crosses of ``order`` distinct coordinates, weights N(0, std²)."""
    if order > d:
        raise ConfigError(f"a cross of order {order} needs d >= {order}; got d={d}")
    available = math.comb(d, order)
    if count > available:
        raise ConfigError(f"only {available} distinct order-{order} crosses exist for d={d}; asked for {count}")
    seen: set[tuple[int, ...]] = set()
    out: list[Monomial] = []
    while len(out) < count:
        idx = tuple(sorted(int(i) for i in rng.choice(d, size=order, replace=False)))
        if idx in seen:
            continue
        seen.add(idx)
        out.append(Monomial(indices=idx, coef=float(std * rng.standard_normal())))
    return out


def build_task(name: str, *, seed: int = 0, d: int | None = None) -> SyntheticTask:
    """The named task of §6; ``seed`` draws its random crosses, ``d`` overrides the input width.

    f1 and f2 are fixed functions of 4 and 3 variables (``d`` must be left out or match).

    >>> [t.label() for t in build_task("f1").terms]
    ['x1²', 'x1·x2', 'x1·x3', 'x1·x4']
    >>> t = build_task("combined", seed=3)
    >>> t.d, [sum(m.order == k for m in t.terms) for k in (2, 3, 4)]
    (20, [20, 10, 5])
    """
    if name not in TASKS:
        raise ConfigError(f"task must be one of {TASKS}; got task={name!r}")
    default = DEFAULT_D[name]
    if name in ("f1", "f2"):
        if d is not None and d != default:
            raise ConfigError(f"task {name} has d={default} variables (Eq. 6); got d={d}")
        if name == "f1":
            pairs = [((0, 0), 1.0), ((0, 1), 1.0), ((0, 2), 1.0), ((0, 3), 1.0)]
        else:
            pairs = [((0, 0), 1.0), ((0, 1), 0.1), ((1, 2), 1.0), ((2, 2), 0.1)]
        return SyntheticTask(
            name=name, d=default, terms=tuple(Monomial(indices=i, coef=c) for i, c in pairs), seed=seed
        )
    d = default if d is None else d
    if d < 2:
        raise ConfigError(f"d must be >= 2; got d={d}")
    rng = np.random.default_rng([seed, 0])
    if name == "f3":
        return SyntheticTask(name=name, d=d, terms=tuple(_random_crosses(rng, d, 2, 100)), seed=seed)
    if name in ("order3", "order4"):
        order = 3 if name == "order3" else 4
        return SyntheticTask(name=name, d=d, terms=tuple(_random_crosses(rng, d, order, 20)), seed=seed)
    std = COMBINED_WEIGHT_STD
    terms = (
        _random_crosses(rng, d, 2, 20, std) + _random_crosses(rng, d, 3, 10, std) + _random_crosses(rng, d, 4, 5, std)
    )
    linear = tuple(float(std * v) for v in rng.standard_normal(d))
    sine_w = tuple(float(v) for v in rng.standard_normal(d) / math.sqrt(d))
    return SyntheticTask(
        name=name,
        d=d,
        terms=tuple(terms),
        linear=linear,
        sine_w=sine_w,
        sine_amp=0.1,
        sine_freq=2.0,
        sine_phase=0.1,
        noise=0.01,
        seed=seed,
    )
