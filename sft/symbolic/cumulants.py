"""Moments <-> cumulants, univariate and multivariate (cumulant tensors of any order).

Conventions. Moments are raw (about zero): m_r = E[X^r], m_{i1..ir} = E[X_i1 ... X_ir]. Cumulants
kappa_r are the Taylor coefficients of the cumulant generating function log E[exp(t X)] =
sum_r kappa_r t^r / r!; kappa_1 is the mean, kappa_2 the variance.

Set-partition formulas (McCullagh, *Tensor Methods in Statistics* (1987), eqs. (2.9), (3.2)):

    m_{i1..ir}     = sum_{pi in P(r)} prod_{B in pi} kappa_{i_B},
    kappa_{i1..ir} = sum_{pi in P(r)} (-1)^{|pi|-1} (|pi| - 1)! prod_{B in pi} m_{i_B},

with P(r) the set partitions of {1..r} (Bell(r) of them) and i_B the indices in block B.
Univariate (d = 1) these reduce to the recursions (Smith 1995, *Int. Stat. Rev.* 63, 217, eq. (3))

    m_r = sum_{j=1}^{r} C(r-1, j-1) kappa_j m_{r-j},   m_0 = 1,

used here for speed. Everything works on numbers (float64 numpy) and on sympy expressions (exact):
numeric input gives float64 arrays, sympy input gives sympy objects (object arrays for tensors).

Shapes. Univariate: a sequence [c_1, ..., c_R] of length R >= 1. Multivariate: a list of tensors
[T_1, ..., T_R], T_r of shape (d,) * r (T_1 the mean, T_2 the covariance for cumulants).
"""
from __future__ import annotations

import math
import numbers

import numpy as np
import sympy as sp
from sympy.utilities.iterables import multiset_partitions

__all__ = ["check_order", "set_partitions", "moments_from_cumulants", "cumulants_from_moments",
           "moment_tensors_from_cumulants", "cumulant_tensors_from_moments",
           "gamma_cumulants", "cumulant_symbols"]


def check_order(order, name="order", minimum=0) -> int:
    """Validate an expansion order / tensor order: an integer >= ``minimum``."""
    if isinstance(order, bool) or not isinstance(order, (numbers.Integral, sp.Integer)) or order < minimum:
        raise ValueError(f"{name}={order!r} is not allowed: {name} must be an integer >= {minimum}")
    return int(order)


def check_coefficient(name, value):
    """A scalar coefficient for symbolic work: a number or a sympy expression, returned sympified.

    Numbers must be real and finite (NaN, +-oo, zoo and complex numbers are rejected); expressions with
    free symbols are accepted as they are. Strings, bools and arrays raise a ValueError naming ``name``.

    >>> check_coefficient("lambdas[0]", 0.5)
    0.500000000000000
    >>> check_coefficient("lambdas[0]", float("nan"))
    Traceback (most recent call last):
    ValueError: lambdas[0]=nan is not allowed: a coefficient must be a finite real number or a sympy expression
    """
    bad = isinstance(value, (str, bytes, bool, np.bool_)) or np.ndim(value) != 0
    try:
        v = None if bad else sp.sympify(value)
    except (sp.SympifyError, TypeError, ValueError):
        v = None
    if not isinstance(v, sp.Expr) or v.has(sp.nan, sp.zoo, sp.oo) \
            or (v.is_number and (v.is_real is False or v.is_finite is False)):
        raise ValueError(f"{name}={value!r} is not allowed: a coefficient must be a finite real number "
                         "or a sympy expression")
    return v


def _positive_if_number(name, v):
    """ValueError if the sympy value ``v`` is a number <= 0 (symbols pass)."""
    if v.is_number and not v > 0:
        raise ValueError(f"{name}={v} is not allowed: {name} must be > 0")
    return v


def set_partitions(r: int):
    """All set partitions of {0, ..., r-1}, as lists of blocks (lists of ints); Bell(r) of them.

    >>> [p for p in set_partitions(3)][:2]
    [[[0, 1, 2]], [[0, 1], [2]]]
    >>> sum(1 for _ in set_partitions(5))   # Bell(5)
    52
    """
    r = check_order(r, "r", 1)
    return multiset_partitions(list(range(r)))


def _is_symbolic(values) -> bool:
    return any(isinstance(v, sp.Basic) for v in np.asarray(values, dtype=object).ravel())


def _as_sequence(values, name):
    seq = list(values) if isinstance(values, (list, tuple, np.ndarray, sp.MatrixBase)) else None
    if seq is None or len(seq) == 0 or any(np.ndim(v) != 0 for v in seq):
        raise ValueError(f"{name}={values!r} is not allowed: give a non-empty 1-D sequence "
                         f"[c_1, ..., c_R] of numbers or sympy expressions")
    if _is_symbolic(seq):
        return [check_coefficient(f"{name}[{i}]", v) for i, v in enumerate(seq)], True
    if any(isinstance(v, (str, bytes)) for v in seq):
        raise ValueError(f"{name}={values!r} is not allowed: values must be numbers or sympy expressions")
    arr = np.asarray(seq, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}={values!r} is not allowed: values must be finite")
    return list(arr), False


def _finish(out, symbolic):
    return [sp.expand(v) for v in out] if symbolic else np.asarray(out, dtype=np.float64)


def moments_from_cumulants(cumulants):
    """Raw moments [m_1..m_R] from cumulants [kappa_1..kappa_R] (univariate).

    m_r = sum_{j=1}^r C(r-1, j-1) kappa_j m_{r-j}, m_0 = 1 (Smith 1995, eq. (3)).

    >>> k1, k2 = sp.symbols("kappa1 kappa2")
    >>> moments_from_cumulants([k1, k2, 0, 0])[3]
    kappa1**4 + 6*kappa1**2*kappa2 + 3*kappa2**2
    """
    kap, symbolic = _as_sequence(cumulants, "cumulants")
    m = [sp.Integer(1) if symbolic else 1.0]
    for r in range(1, len(kap) + 1):
        m.append(sum(math.comb(r - 1, j - 1) * kap[j - 1] * m[r - j] for j in range(1, r + 1)))
    return _finish(m[1:], symbolic)


def cumulants_from_moments(moments):
    """Cumulants [kappa_1..kappa_R] from raw moments [m_1..m_R] (univariate); inverse of
    :func:`moments_from_cumulants`: kappa_r = m_r - sum_{j=1}^{r-1} C(r-1, j-1) kappa_j m_{r-j}.

    >>> cumulants_from_moments([0, 1, 0, 3])      # standard normal
    array([0., 1., 0., 0.])
    """
    mom, symbolic = _as_sequence(moments, "moments")
    m = [sp.Integer(1) if symbolic else 1.0] + mom
    kap = []
    for r in range(1, len(mom) + 1):
        kap.append(m[r] - sum(math.comb(r - 1, j - 1) * kap[j - 1] * m[r - j] for j in range(1, r)))
    return _finish(kap, symbolic)


def _as_tensor_list(tensors, name):
    """Validate [T_1, ..., T_R] with T_r of shape (d,)*r; return (list of arrays, d, symbolic)."""
    if not isinstance(tensors, (list, tuple)) or len(tensors) == 0:
        raise ValueError(f"{name} is not allowed: give a non-empty list [T_1, ..., T_R] of tensors, "
                         f"T_r of shape (d,)*r")
    symbolic = any(_is_symbolic(np.asarray(t, dtype=object)) for t in tensors)
    arrs = [np.asarray(t, dtype=object if symbolic else np.float64) for t in tensors]
    d = arrs[0].shape[0] if arrs[0].ndim == 1 else None
    for r, a in enumerate(arrs, start=1):
        if d is None or a.shape != (d,) * r:
            raise ValueError(f"{name}[{r - 1}] has shape {a.shape}: the order-{r} tensor must have "
                             f"shape {(d,) * r if d else '(d,)*' + str(r)} (the first entry fixes d)")
        if not symbolic and not np.all(np.isfinite(a)):
            raise ValueError(f"{name}[{r - 1}] contains NaN or inf: values must be finite")
    if symbolic:
        arrs = [np.vectorize(sp.sympify, otypes=[object])(a) for a in arrs]
    return arrs, d, symbolic


def _block_product(tensors, partition, r):
    """prod_{B in pi} T_{|B|}[i_B] as an order-r tensor with axes in the original index order."""
    term = tensors[len(partition[0]) - 1]
    for block in partition[1:]:
        term = np.multiply.outer(term, tensors[len(block) - 1])
    positions = [p for block in partition for p in block]  # axis a of term carries index positions[a]
    return np.transpose(term, np.argsort(positions))


def _partition_sum(tensors, r, weight):
    total = 0
    for pi in set_partitions(r):
        total = total + weight(len(pi)) * _block_product(tensors, pi, r)
    return total


def moment_tensors_from_cumulants(cumulants):
    """Raw moment tensors [m_1..m_R] from cumulant tensors [kappa_1..kappa_R] (McCullagh 1987 (3.2)).

    m_{i1..ir} = sum over set partitions pi of {1..r} of prod_{B in pi} kappa_{i_B}.

    >>> m = moment_tensors_from_cumulants([np.zeros(2), np.eye(2), np.zeros((2,) * 3), np.zeros((2,) * 4)])
    >>> float(m[3][0, 0, 1, 1]), float(m[3][0, 0, 0, 0])   # Isserlis: 1, 3
    (1.0, 3.0)
    """
    kap, _, symbolic = _as_tensor_list(cumulants, "cumulants")
    out = [_partition_sum(kap, r, lambda b: 1) for r in range(1, len(kap) + 1)]
    return [np.vectorize(sp.expand, otypes=[object])(t) for t in out] if symbolic else out


def cumulant_tensors_from_moments(moments):
    """Cumulant tensors [kappa_1..kappa_R] from raw moment tensors [m_1..m_R] (McCullagh 1987 (2.9)).

    kappa_{i1..ir} = sum_pi (-1)^{|pi|-1} (|pi|-1)! prod_{B in pi} m_{i_B}.
    """
    mom, _, symbolic = _as_tensor_list(moments, "moments")
    out = [_partition_sum(mom, r, lambda b: (-1) ** (b - 1) * math.factorial(b - 1))
           for r in range(1, len(mom) + 1)]
    return [np.vectorize(sp.expand, otypes=[object])(t) for t in out] if symbolic else out


def gamma_cumulants(shape, order, scale=1):
    """Cumulants of Gamma(shape, scale): kappa_r = shape * scale^r * (r-1)!, r = 1..order.

    Exact (sympy) if ``shape`` or ``scale`` is a sympy object or a Python int/Rational, else float64.
    shape, scale > 0 (finite numbers or sympy expressions); else ValueError.

    >>> gamma_cumulants(2, 4)
    [2, 2, 4, 12]
    """
    order = check_order(order, "order", 1)
    for name, v in (("shape", shape), ("scale", scale)):
        _positive_if_number(name, check_coefficient(name, v))
    vals = [shape * scale ** r * math.factorial(r - 1) for r in range(1, order + 1)]
    if isinstance(shape, (numbers.Integral, sp.Basic)) and isinstance(scale, (numbers.Integral, sp.Basic)):
        return [sp.sympify(v) for v in vals]
    return np.asarray(vals, dtype=np.float64)


def cumulant_symbols(order, name="kappa", start=1):
    """Symbols [name_start, ..., name_order] (real) for symbolic work.

    >>> cumulant_symbols(4, "lambda", start=3)
    [lambda3, lambda4]
    """
    order = check_order(order, "order", 0)
    start = check_order(start, "start", 0)
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"name={name!r} is not allowed: give a symbol name such as 'kappa'")
    return [sp.Symbol(f"{name}{r}", real=True) for r in range(start, order + 1)]
