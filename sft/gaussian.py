"""Gaussian expectations of activations: the numerics tier of sft.

One-dimensional:  E[f(sqrt(q) z)], z ~ N(0, 1), for a vector of variances q.
Two-dimensional:  E[sigma(u) sigma(v)] and E[sigma'(u) sigma'(v)] over (u, v) ~ N(0, [[q1, c], [c, q2]]).
"""
from __future__ import annotations

import functools

import numpy as np


@functools.lru_cache(maxsize=None)
def _half_line_rule(n: int, cutoff: float = 40.0):
    """Gauss-Legendre nodes/weights on [0, cutoff] folded with the standard normal density.

    Splitting at z = 0 makes kinks at the origin (ReLU family) harmless; cutoff 40 leaves a tail
    below exp(-800).
    """
    x, w = np.polynomial.legendre.leggauss(n)
    z = 0.5 * cutoff * (x + 1.0)
    w = 0.5 * cutoff * w * np.exp(-0.5 * z * z) / np.sqrt(2 * np.pi)
    return z, w


def gaussian_expectation(f, q, n_nodes: int = 400):
    """E[f(sqrt(q) z)] for z ~ N(0, 1), vectorized over the variances q (any shape, q >= 0).

    ``f`` is elementwise (numpy or JAX). Quadrature: Gauss-Legendre on each half line (split at the
    origin), ``n_nodes`` per half.
    """
    q = np.asarray(q, dtype=np.float64)
    if np.any(q < 0) or not np.all(np.isfinite(q)):
        raise ValueError(f"variances q must be finite and >= 0; got min {q.min()}")
    z, w = _half_line_rule(int(n_nodes))
    s = np.sqrt(q)[..., None]
    vals = np.asarray(f(s * z), dtype=np.float64) + np.asarray(f(-s * z), dtype=np.float64)
    return vals @ w


def diag_expectations(activation, q):
    """(E[sigma(u)^2], E[sigma'(u)^2]) for u ~ N(0, q), vectorized over q."""
    q = np.asarray(q, dtype=np.float64)
    if activation.has_closed_form:
        return activation.gauss_ss(q, q, q), activation.gauss_dd(q, q, q)
    f = activation.fn
    return (gaussian_expectation(lambda z: f(z) ** 2, q),
            gaussian_expectation(lambda z: activation.derivative(z) ** 2, q))


def pair_expectations(activation, q1, q2, c):
    """(E[sigma(u)sigma(v)], E[sigma'(u)sigma'(v)]) of shape (N1, N2).

    q1: (N1,) variances of u, q2: (N2,) variances of v, c: (N1, N2) covariances.
    Closed forms where the activation has them, otherwise the Mehler series (see below).
    """
    q1 = np.asarray(q1, dtype=np.float64)[:, None]
    q2 = np.asarray(q2, dtype=np.float64)[None, :]
    c = np.asarray(c, dtype=np.float64)
    if activation.has_closed_form:
        return activation.gauss_ss(q1, q2, c), activation.gauss_dd(q1, q2, c)
    raise NotImplementedError("numerical bivariate expectations: Mehler series")
