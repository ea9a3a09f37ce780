"""Probabilists' Hermite polynomials, univariate and tensor (multivariate, w.r.t. a covariance K).

Univariate (probabilists'), phi the standard normal density (Abramowitz & Stegun 22.2.15, 22.7.14):

    He_k(x) phi(x) = (-d/dx)^k phi(x),   He_{k+1} = x He_k - k He_{k-1},   He_0 = 1, He_1 = x,
    E[He_j(Z) He_k(Z)] = k! delta_jk,    Z ~ N(0, 1).

Tensor Hermite polynomials w.r.t. a covariance K (McCullagh, *Tensor Methods in Statistics* (1987),
sec. 5.6), phi_K the N(0, K) density, y = K^{-1} x:

    H_{i1..ir}(x; K) phi_K(x) = (-1)^r d_{i1} ... d_{ir} phi_K(x),
    H_{i S}   = y_i H_S - sum_{j in S} (K^{-1})_{i j} H_{S \\ j}        (recursion used here),
    phi_K(x - s) / phi_K(x) = exp(s.K^{-1}x - s.K^{-1}s / 2) = sum_r (1/r!) s_{i1}..s_{ir} H_{i1..ir}(x; K)

the last line being the Taylor expansion of phi_K(x - s) in s. With d = 1, K = 1: H_{1..1} = He_r.
"""
from __future__ import annotations

import numpy as np
import sympy as sp

from ..conventions import pd_inverse
from .cumulants import check_order

__all__ = ["hermite_he", "hermite_he_numeric", "hermite_tensor", "check_covariance"]


def hermite_he(k, x=None):
    """Probabilists' Hermite polynomial He_k(x) as a sympy expression (x defaults to Symbol('x')).

    >>> hermite_he(4)
    x**4 - 6*x**2 + 3
    """
    k = check_order(k, "k", 0)
    x = sp.Symbol("x", real=True) if x is None else x
    h_prev, h = sp.Integer(0), sp.Integer(1)
    for j in range(k):
        h_prev, h = h, sp.expand(x * h - j * h_prev)
    return h


def hermite_he_numeric(k, x):
    """He_k(x) in float64 by the three-term recurrence (any array shape of x).

    >>> hermite_he_numeric(3, np.array([1.0, 2.0, 3.0])).tolist()
    [-2.0, 2.0, 18.0]
    """
    k = check_order(k, "k", 0)
    x = np.asarray(x, dtype=np.float64)
    h_prev, h = np.zeros_like(x), np.ones_like(x)
    for j in range(k):
        h_prev, h = h, x * h - j * h_prev
    return h


def check_covariance(K, name="K"):
    """Validate a symmetric positive-definite covariance (d, d); return (K, K^{-1}) as float64
    arrays, or as object arrays of exact sympy entries if K holds sympy objects."""
    symbolic = any(isinstance(v, sp.Basic) for v in np.asarray(K, dtype=object).ravel())
    if symbolic:
        M = sp.Matrix(K)
        if M.shape[0] != M.shape[1] or M.shape[0] == 0 or M != M.T:
            raise ValueError(f"{name}={K!r} is not allowed: a covariance must be a symmetric (d, d) matrix")
        if M.is_positive_definite is False:
            raise ValueError(f"{name}={K!r} is not allowed: a covariance must be positive definite")
        return np.array(M.tolist(), dtype=object), np.array(M.inv().tolist(), dtype=object)
    a = np.atleast_2d(np.asarray(K, dtype=np.float64))
    if a.ndim != 2 or a.shape[0] != a.shape[1] or not np.all(np.isfinite(a)):
        raise ValueError(f"{name} has shape {np.shape(K)}: a covariance must be a finite (d, d) matrix")
    if not np.allclose(a, a.T, rtol=1e-12, atol=0):
        raise ValueError(f"{name}={a.tolist()} is not allowed: a covariance must be symmetric")
    try:  # positive definite within the psd_eigh tolerance; inverse in the eigenbasis
        return a, pd_inverse(name, a)
    except ValueError as err:
        raise ValueError(f"{name}={a.tolist()} is not allowed: a covariance must be positive definite "
                         f"({err})") from None


def hermite_tensor(x, K, order):
    """Tensor Hermite polynomial H_{i1..ir}(x; K) of order r = ``order``.

    x: (..., d) points; K: (d, d) covariance (float or sympy entries). Returns shape (..., d, ..., d)
    with r trailing axes of length d, symmetric in them. Recursion (McCullagh 1987 sec. 5.6):
    H_{i S} = y_i H_S - sum_{j in S} Kinv_{ij} H_{S minus j}, y = K^{-1} x.

    >>> K = np.array([[2.0, 0.5], [0.5, 1.0]]); x = np.array([0.3, -0.4])
    >>> y = np.linalg.solve(K, x)
    >>> bool(np.allclose(hermite_tensor(x, K, 2), np.outer(y, y) - np.linalg.inv(K)))
    True
    """
    order = check_order(order, "order", 0)
    K, Kinv = check_covariance(K)
    d = K.shape[0]
    x = np.asarray(x, dtype=K.dtype)
    if x.shape[-1:] != (d,):
        raise ValueError(f"x has shape {x.shape}: points must have shape (..., d) with d = {d}")
    y = x @ Kinv  # Kinv symmetric
    batch = x.shape[:-1]
    H_prev, H = None, np.ones(batch, dtype=K.dtype)
    for r in range(order):  # H has r trailing index axes; build order r + 1
        new = y.reshape(batch + (d,) + (1,) * r) * H[..., None, *([slice(None)] * r)]
        for p in range(r):  # remove index position p of the old tensor, paired with the new index
            # term_{i, s_0..s_{r-1}} = Kinv_{i s_p} H_prev_{s without s_p}
            kshape = [1] * (r + 1)
            kshape[0], kshape[p + 1] = d, d
            sub = np.expand_dims(H_prev, axis=(len(batch), len(batch) + 1 + p))
            new = new - Kinv.reshape(kshape) * sub
        H_prev, H = H, new
    return H
