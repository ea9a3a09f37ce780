"""Exact zero-dimensional phi^4 theory: the partition function and <x^2> in closed form (modified Bessel).

Convention (that of :mod:`sft.symbolic.feynman` with g4 = lam and of :func:`sft.symbolic.moment_series`):

    S(x) = x^2 / 2 + lam x^4 / 4!,    Z(lam) = int_R e^{-S(x)} dx,    <x^2> = int x^2 e^{-S} dx / Z,   lam >= 0.

Closed form. From int_0^oo exp(-a t^2 - b t^4) dt = (1/4) sqrt(a / b) e^{a^2/(8b)} K_{1/4}(a^2 / (8b))
(Gradshteyn & Ryzhik 3.323.3 with beta^2 = b, 2 gamma^2 = a) at a = 1/2, b = lam/24, z = 3/(4 lam):

    Z(lam) = sqrt(3 / lam) e^{z} K_{1/4}(z),
    <x^2>  = -d log Z / da at a = 1/2 = (3 / lam) [K_{3/4}(z) / K_{1/4}(z) - 1],

the second with K_nu' = -K_{nu+1} + (nu/z) K_nu (DLMF 10.29.2) and
the recurrence K_{5/4} = K_{3/4} + K_{1/4} / (2z) (DLMF 10.29.1). As lam -> 0, Z -> sqrt(2 pi) and
<x^2> -> 1 - lam/2 + 2 lam^2/3 - ..., the asymptotic series of the Feynman diagrams
(``one_component_series(2, k, kind="no_vacuum")``) and of the Schwinger-Dyson recursion;
log(Z / sqrt(2 pi)) is the sum of connected vacuum diagrams (``one_component_series(0, k, kind="connected")``). At lam = 0 the Gaussian values sqrt(2 pi) and 1
are returned.

Numerics: scipy.special.kve (K_nu(z) e^z, no overflow for small lam), float64. Relative error below
~1e-14 for Z (scipy's Bessel function, measured against mpmath), and ~1e-14 + 3e-16 / lam for <x^2>
(the bracket is ~lam/3: cancellation for small lam; 2e-13 at lam = 1e-3). Checked in
tests/test_phi4_exact.py against mpmath quadrature of the integrals (30 digits), Monte Carlo
(importance weights from N(0, 1)) and the diagram series.
"""
from __future__ import annotations

import numpy as np
import scipy.special

__all__ = ["phi4_partition_function", "phi4_second_moment"]


def _check_lam(lam) -> np.ndarray:
    lam = np.asarray(lam, dtype=np.float64)
    bad = ~(np.isfinite(lam) & (lam >= 0))
    if np.any(bad):
        raise ValueError(f"lam contains {lam[bad].ravel()[0]!r}: the phi^4 integral exists only for "
                         "finite couplings lam >= 0")
    return lam


def _bessel_argument(lam):
    """z = 3 / (4 lam) and lam with zeros replaced by 1 (those entries are overwritten by the caller)."""
    safe = np.where(lam > 0, lam, 1.0)
    return 0.75 / safe, safe


def phi4_partition_function(lam):
    """Z(lam) = int exp(-x^2/2 - lam x^4/4!) dx = sqrt(3/lam) e^z K_{1/4}(z), z = 3/(4 lam) (module
    docstring); lam >= 0, any shape, float64; Z(0) = sqrt(2 pi).

    >>> round(float(phi4_partition_function(0.0) ** 2 / np.pi), 12)   # 2 pi / pi
    2.0
    >>> round(float(phi4_partition_function(1.0)), 10)
    2.3033881117
    """
    lam = _check_lam(lam)
    z, safe = _bessel_argument(lam)
    return np.where(lam > 0, np.sqrt(3.0 / safe) * scipy.special.kve(0.25, z), np.sqrt(2 * np.pi))


def phi4_second_moment(lam):
    """<x^2> = (3/lam) [K_{3/4}(z) / K_{1/4}(z) - 1], z = 3/(4 lam), for S = x^2/2 + lam x^4/4! (module
    docstring); lam >= 0, any shape, float64; <x^2>(0) = 1.

    >>> round(float(phi4_second_moment(1e-3)), 6)   # 1 - lam/2 + 2 lam^2/3 - ...
    0.999501
    """
    lam = _check_lam(lam)
    z, safe = _bessel_argument(lam)
    ratio = scipy.special.kve(0.75, z) / scipy.special.kve(0.25, z)
    return np.where(lam > 0, 3.0 / safe * (ratio - 1.0), 1.0)
