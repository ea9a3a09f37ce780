"""Independent references for tests and benchmarks (like ``numpy.testing``): deliberately simple,
brute-force methods that share no code with the fast paths they check."""
from __future__ import annotations

import numpy as np
from numpy.polynomial.legendre import leggauss

__all__ = ["polar_expectation"]


def polar_expectation(f, g, q1, q2, c, n=240, r_max=12.0):
    """E[f(u) g(v)] for (u, v) ~ N(0, [[q1, c], [c, q2]]) by 2-D Gauss-Legendre in polar coordinates.

    With whitened (z1, z2) = R (cos theta, sin theta), u = sqrt(q1) z1 and v = sqrt(q2) (rho z1 +
    sqrt(1 - rho^2) z2): the kinks u = 0 and v = 0 lie on rays of fixed angle, so the angle is split
    there (kinked activations such as ReLU converge exponentially), and R runs over [0, r_max] with
    weight R exp(-R^2/2) / 2 pi. ``f``, ``g``: numpy elementwise functions (not the library's).

    >>> round(float(polar_expectation(np.sign, np.sign, 1.0, 1.0, 0.5)), 12)   # (2/pi) arcsin(1/2) = 1/3
    0.333333333333
    """
    s1, s2 = np.sqrt(q1), np.sqrt(q2)
    rho = float(np.clip(c / np.sqrt(q1 * q2), -1, 1)) if q1 * q2 > 0 else 0.0
    rc = np.sqrt(max(0.0, 1 - rho * rho))
    cuts = np.sort(np.mod([np.pi / 2, 3 * np.pi / 2, np.arctan2(-rho, rc), np.arctan2(rho, -rc)], 2 * np.pi))
    edges = np.concatenate([[0.0], cuts, [2 * np.pi]])
    x, w = leggauss(n)
    th = np.concatenate([0.5 * (b - a) * (x + 1) + a for a, b in zip(edges[:-1], edges[1:])])
    wt = np.concatenate([0.5 * (b - a) * w for a, b in zip(edges[:-1], edges[1:])])
    R = 0.5 * r_max * (x + 1)
    wR = 0.5 * r_max * w * R * np.exp(-R * R / 2)
    u = np.outer(R, s1 * np.cos(th))
    v = np.outer(R, s2 * (rho * np.cos(th) + rc * np.sin(th)))
    return wR @ (f(u) * g(v)) @ wt / (2 * np.pi)
