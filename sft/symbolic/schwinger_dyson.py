"""Schwinger-Dyson recursion for the moments of one-component phi^p theory, to any order.

Theory (zero-dimensional, Euclidean weight e^{-S}, the coupling carries 1/p!):

    S(x) = x^2 / 2 + g x^p / p!,    <f> = int f e^{-S} dx / int e^{-S} dx,   p >= 3.

Integrating a total derivative, int d/dx (x^n e^{-S}) dx = 0, gives the Schwinger-Dyson equations

    n <x^{n-1}> = <x^n S'(x)> = <x^{n+1}> + g/(p-1)! <x^{n+p-1}>,     n >= 0,   <x^0> = 1.

With <x^n> = sum_k a_{n,k} g^k as formal power series in g this is, order by order,

    a_{n+1,k} = n a_{n-1,k} - a_{n+p-1,k-1} / (p-1)!,     a_{0,k} = delta_{k0},  a_{-1,k} = 0,

a triangular recursion (a_{m,k} needs only orders k and k-1), solved here in exact rationals. At
g = 0 it reduces to the Gaussian moments a_{2j,0} = (2j-1)!!. The series is asymptotic (zero radius
of convergence): for p = 4 the coefficients of <x^2> grow like (-2/3)^k k! (up to a power of k).
Sources: Argyres, van Hameren, Kleiss & Papadopoulos, Eur. Phys. J. C 19, 567 (2001), sec. 2
(zero-dimensional Schwinger-Dyson equations); Zinn-Justin, *Quantum Field Theory and Critical
Phenomena*, ch. 41 (large-order behaviour). The same series is the sum over Feynman diagrams of
:mod:`sft.symbolic.feynman` (kind "no_vacuum", coupling g{p} = g), checked in tests/test_derivations_symbolic.py.

Cost: O(order^2 * (n + order p)) rational operations; <x^2> of phi^4 to order 40 takes milliseconds.
"""
from __future__ import annotations

import math
import numbers
from fractions import Fraction

import sympy

__all__ = ["moment_series"]


def _check_int(name, value, lo):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < lo:
        raise ValueError(f"{name}={value!r} is not allowed: {name} must be an integer >= {lo}")
    return int(value)


def moment_series(n: int, order: int, degree: int = 4) -> list:
    """[a_0, ..., a_order]: <x^n> = sum_k a_k g^k + O(g^{order+1}) for S = x^2/2 + g x^p/p!, p = degree.

    Exact sympy Rationals from the Schwinger-Dyson recursion (module docstring).

    >>> moment_series(2, 3)   # phi^4: <x^2> = 1 - g/2 + 2 g^2/3 - 11 g^3/8 + ...
    [1, -1/2, 2/3, -11/8]
    >>> moment_series(1, 1, degree=3)   # phi^3 tadpole: <x> = -g/2 + ...
    [0, -1/2]
    """
    n = _check_int("n", n, 0)
    order = _check_int("order", order, 0)
    p = _check_int("degree", degree, 3)
    inv = Fraction(1, math.factorial(p - 1))
    # a[k][m] = a_{m,k}; at order k the moments up to m_max(k) = n + (order - k)(p - 2) are needed.
    prev: list = []
    coeffs = []
    for k in range(order + 1):
        m_max = n + (order - k) * (p - 2)
        cur = [Fraction(0)] * (m_max + 1)
        cur[0] = Fraction(1 if k == 0 else 0)
        for m in range(1, m_max + 1):  # a_{m,k} = (m-1) a_{m-2,k} - a_{m+p-2,k-1}/(p-1)!
            val = (m - 1) * cur[m - 2] if m >= 2 else Fraction(0)
            if k > 0:
                val -= inv * prev[m + p - 2]
            cur[m] = val
        prev = cur
        coeffs.append(cur[n])
    return [sympy.Rational(c.numerator, c.denominator) for c in coeffs]
