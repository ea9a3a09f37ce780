"""Wick's theorem: Gaussian moments as sums over pairings (perfect matchings).

For x ~ N(0, C) (real, zero mean, covariance C of shape (d, d)) and vectors a_1 .. a_n in R^d,

    E[(a_1 . x)(a_2 . x) ... (a_n . x)] = sum_{pairings P of {1..n}} prod_{(i, j) in P} a_i^T C a_j,

zero for odd n. A set of n = 2k items has (2k - 1)!! = (2k)! / (2^k k!) pairings. The special case
a_i = e_{m_i} gives E[x_{m_1} ... x_{m_n}] = sum_P prod C_{m_i m_j}.
Sources: Wick, Phys. Rev. 80, 268 (1950); Isserlis, Biometrika 12, 134 (1918); Zee, *QFT in a
Nutshell*, ch. I.2 (the "baby problem"); Srednicki, *QFT*, ch. 8-9.

Entries may be numbers (numpy, float64) or sympy expressions (a sympy Matrix covariance gives an
exact symbolic answer). The sum has (2k - 1)!! terms, so this is meant for n <= ~14.
"""
from __future__ import annotations

import math
import numbers
from typing import Iterator, Sequence

import numpy as np
import sympy

from ..conventions import check_array, psd_eigh

__all__ = ["double_factorial", "perfect_matchings", "number_of_pairings", "gaussian_moment",
           "gaussian_moment_of_linear_forms"]


def double_factorial(n: int) -> int:
    """n!! = n (n - 2) (n - 4) ... (1 or 2), with (-1)!! = 0!! = 1.

    >>> [double_factorial(n) for n in (-1, 0, 1, 5, 7)]
    [1, 1, 1, 15, 105]
    """
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < -1:
        raise ValueError(f"n={n!r} is not allowed: the double factorial needs an integer >= -1")
    return math.prod(range(int(n), 0, -2))


def number_of_pairings(n: int) -> int:
    """Number of perfect matchings of n items: (n - 1)!! for even n, 0 for odd n.

    >>> number_of_pairings(6), number_of_pairings(5)
    (15, 0)
    """
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 0:
        raise ValueError(f"n={n!r} is not allowed: the number of items must be an integer >= 0")
    return 0 if n % 2 else double_factorial(int(n) - 1)


def perfect_matchings(items: Sequence) -> Iterator[tuple[tuple, ...]]:
    """All pairings of ``items`` as tuples of pairs; the first item is always paired first.

    Each pairing is yielded once (no ordering of pairs or within pairs), (n - 1)!! in all for n even,
    none for n odd.

    >>> list(perfect_matchings("abcd"))
    [(('a', 'b'), ('c', 'd')), (('a', 'c'), ('b', 'd')), (('a', 'd'), ('b', 'c'))]
    """
    try:  # checked now, not when the generator is first iterated
        items = tuple(items)
    except TypeError:
        raise ValueError(f"items={items!r} is not allowed: give a sequence of the items to pair (a list, "
                         "tuple or string)") from None
    return _matchings(items)


def _matchings(items: tuple) -> Iterator[tuple[tuple, ...]]:
    if len(items) % 2:
        return
    if not items:
        yield ()
        return
    first, rest = items[0], items[1:]
    for k, partner in enumerate(rest):
        for sub in _matchings(rest[:k] + rest[k + 1:]):
            yield ((first, partner),) + sub


def _check_covariance(cov):
    """Validate a covariance: square, symmetric; numeric ones finite and positive semi-definite."""
    if isinstance(cov, sympy.MatrixBase):
        if cov.rows != cov.cols or cov != cov.T:
            raise ValueError(f"cov={cov!r} is not allowed: a covariance must be a symmetric square "
                             "matrix")
        return cov
    c = check_array("cov", cov, min_size=0)
    if c.ndim != 2 or c.shape[0] != c.shape[1]:
        raise ValueError(f"cov of shape {c.shape} is not allowed: give a square (d, d) matrix")
    if not np.all(np.isfinite(c)) or not np.allclose(c, c.T, rtol=1e-12, atol=0.0):
        raise ValueError(f"cov={cov!r} is not allowed: a covariance must be finite and symmetric")
    if c.size:
        try:  # PSD within the psd_eigh tolerance (10 d eps max|lambda|)
            psd_eigh("cov", c, vectors=False)
        except ValueError as err:
            raise ValueError(f"cov={cov!r} is not allowed: a covariance must be positive semi-definite ({err})") from None
    return c


def gaussian_moment(indices: Sequence[int], cov):
    """E[x_{m_1} x_{m_2} ... x_{m_n}] for x ~ N(0, cov), by Wick's theorem: sum_P prod C_{m_i m_j}.

    Args:
      indices: component indices m_1 .. m_n (integers in [0, d)).
      cov: (d, d) covariance, numeric (float result) or a sympy Matrix (sympy result).

    >>> gaussian_moment([0, 0, 0, 0], [[2.0]])  # 3 C^2
    12.0
    >>> a, b, c = sympy.symbols("a b c")
    >>> gaussian_moment([0, 0, 1, 1], sympy.Matrix([[a, c], [c, b]]))
    a*b + 2*c**2
    """
    cov = _check_covariance(cov)
    d = cov.shape[0]
    if not isinstance(indices, (list, tuple, range, np.ndarray)):
        raise ValueError(f"indices={indices!r} is not allowed: give a sequence of component indices")
    idx = list(indices)
    for m in idx:
        if isinstance(m, bool) or not isinstance(m, numbers.Integral) or not 0 <= m < d:
            raise ValueError(f"indices={idx!r} is not allowed: entries must be integers in [0, {d})")
    total = sum(math.prod(cov[idx[i], idx[j]] for i, j in p) for p in perfect_matchings(range(len(idx))))
    return sympy.expand(total) if isinstance(cov, sympy.MatrixBase) else float(total)


def gaussian_moment_of_linear_forms(vectors, cov):
    """E[(a_1 . x) ... (a_n . x)] for x ~ N(0, cov): sum over pairings of prod a_i^T cov a_j.

    Args:
      vectors: (n, d) array (or list of n sympy/number sequences) whose rows are a_1 .. a_n.
      cov: (d, d) covariance, numeric or a sympy Matrix.
    Returns a float (numeric input) or an expanded sympy expression (any sympy input).

    >>> gaussian_moment_of_linear_forms([[1.0, 1.0]] * 4, [[1.0, 0.0], [0.0, 1.0]])  # 3 (a.a)^2
    12.0
    """
    if not isinstance(vectors, (list, tuple, np.ndarray, sympy.MatrixBase)) or \
            any(np.ndim(row) != 1 and not isinstance(row, (list, tuple)) for row in vectors):
        raise ValueError(f"vectors={vectors!r} is not allowed: give an (n, d) array or a list of n rows")
    symbolic = isinstance(cov, sympy.MatrixBase) or any(
        isinstance(v, sympy.Basic) for row in vectors for v in row)
    if symbolic:
        cov = _check_covariance(sympy.Matrix(cov))
        a = sympy.Matrix([list(row) for row in vectors]) if len(vectors) else sympy.zeros(0, cov.rows)
        if a.cols != cov.rows and len(vectors):
            raise ValueError(f"vectors of shape {a.shape} is not allowed: rows must have length "
                             f"d = {cov.rows} (the covariance size)")
        gram = a * cov * a.T
    else:
        cov = _check_covariance(cov)
        a = check_array("vectors", vectors, min_size=0).reshape(len(vectors), -1) if len(vectors) else \
            np.zeros((0, cov.shape[0]))
        if a.ndim != 2 or a.shape[1] != cov.shape[0]:
            raise ValueError(f"vectors of shape {a.shape} is not allowed: give an (n, d) array with "
                             f"d = {cov.shape[0]} (the covariance size)")
        gram = a @ cov @ a.T
    n = a.shape[0]
    total = sum(math.prod(gram[i, j] for i, j in p) for p in perfect_matchings(range(n)))
    return sympy.expand(total) if symbolic else float(total)
