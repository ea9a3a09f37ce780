"""Exact finite-width law of ReLU-type (scale-invariant) networks at one input, and its 1/n expansion.

sigma(z) = a+ z (z > 0), a- z (z < 0) (ReLU: (1, 0); linear: (1, 1)), C_b = 0 in every layer, one
input (conventions of :mod:`sft.conventions`). Given layer l the n_l neurons are i.i.d. N(0, G^(l)),
z_j = sqrt(G^(l)) u_j, so sigma(z_j)^2 = G^(l) s_j^2 u_j^2 with s_j = a+ if u_j > 0 else a-, and

    G^(l+1) = C_W^(l+1) G^(l) Y_l,    Y_l = (1/n_l) sum_j s_j^2 u_j^2 = (a+^2 chi^2_B + a-^2 chi^2_{n_l - B}) / n_l,

with B ~ Binomial(n_l, 1/2) the number of active units and, given B, independent chi-squares
(u^2 is independent of the sign of u). The Y_l of different layers are independent, so

    E[G^(L+1)^k] = (K^(1) prod_l C_W^(l+1))^k prod_{l=1}^{L} E[Y_l^k],     E[f^(2k)] = (2k-1)!! E[G^(L+1)^k]

(f | G ~ N(0, G)), and the output's cumulants are kappa_{2k}(f) = (2k-1)!! kappa_k(G^(L+1)).
Per layer (chi-square moments E[(chi^2_m)^i] = m (m+2) .. (m+2i-2), binomial moments
E[B^p] = sum_j S(p, j) n^(j falling) / 2^j with S the Stirling numbers of the second kind):

    n^k E[Y^k] = sum_i C(k, i) a+^(2i) a-^(2(k-i)) E[R_i(B) R_{k-i}(n - B)],   R_i(m) = prod_{t<i} (m + 2t),

a polynomial in n of degree k, computed exactly (sympy). Ratios such as kappa_4/kappa_2^2 and
kappa_6/kappa_2^3 are rational functions of the widths, exact at any width; their expansion in
1/n (widths n_l = rho_l n) to any order is :func:`cumulant_ratio_series`. Linear (a+ = a- = 1): the
deep linear law of :mod:`sft.finite.deep_linear`. These are the exact references for
:mod:`sft.finite.second_order`.
"""
from __future__ import annotations

import functools
import math
import numbers

import numpy as np
import sympy as sp

from ..conventions import check_real, check_widths, layer_constants
from ..symbolic.cumulants import cumulants_from_moments

__all__ = ["layer_gain_moment", "output_moment", "output_cumulant_ratios", "cumulant_ratio_series"]

_n = sp.Symbol("n", positive=True)


def _slope(a, name):
    if isinstance(a, sp.Basic) and a.is_Number:   # an exact sympy number is fine
        a = float(a)
    return sp.Rational(repr(check_real(name, a)))  # a real number, not a str, bool, complex or array


def _check_k(k, name="k", minimum=0):
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < minimum:
        raise ValueError(f"{name}={k!r} is not allowed: an integer >= {minimum}")
    return int(k)


@functools.lru_cache(maxsize=None)
def _gain_polynomial(k, a_plus, a_minus):
    """n^k E[Y^k] as a polynomial in the symbol n (exact), a_plus/a_minus sympy Rationals."""
    B = sp.Symbol("B")
    rising = lambda m, i: sp.prod([m + 2 * t for t in range(i)])  # noqa: E731  E[(chi^2_m)^i]
    P = sp.Poly(sp.expand(sum(sp.binomial(k, i) * a_plus ** (2 * i) * a_minus ** (2 * (k - i))
                              * rising(B, i) * rising(_n - B, k - i) for i in range(k + 1))), B)
    bin_moment = lambda p: sum(sp.functions.combinatorial.numbers.stirling(p, j) * sp.ff(_n, j) / 2 ** j  # noqa: E731
                               for j in range(p + 1))
    return sp.expand(sum(c * bin_moment(m[0]) for m, c in zip(P.monoms(), P.coeffs())))


def layer_gain_moment(k, width, *, a_plus=1.0, a_minus=0.0):
    """E[Y^k], Y = (1/n) sum_{j<=n} s_j^2 u_j^2 the one-layer gain of the metric (module docstring).

    width: an integer n >= 1 (returns float) or a sympy expression (returns the exact rational function).

    >>> layer_gain_moment(2, 10) / layer_gain_moment(1, 10) ** 2   # ReLU: 1 + 5/n
    1.5
    """
    k = _check_k(k)
    poly = _gain_polynomial(k, _slope(a_plus, "a_plus"), _slope(a_minus, "a_minus"))
    if isinstance(width, sp.Basic) and not width.is_Number:
        return sp.simplify(poly.subs(_n, width) / width ** k)
    n = check_widths([width])[0]
    return float(sp.Rational(poly.subs(_n, n)) / sp.Integer(n) ** k)


def _check_K1(K1):
    return check_real("K1", K1, minimum=0, strict=True)   # the first-layer kernel, a finite real > 0


def output_moment(order, *, K1, widths, C_W=2.0, a_plus=1.0, a_minus=0.0) -> float:
    """Exact E[f^order] of the output at one input (module docstring); order even >= 2.

    K1 = K^(1) = C_W^(1) |x|^2 / n_0 > 0; widths (n_1, .., n_L); C_W scalar or per layer (L + 1).

    >>> output_moment(4, K1=1.0, widths=[10])   # ReLU at C_W = 2: 3 (1 + 5/10)
    4.5
    """
    order = _check_k(order, "order", 2)
    if order % 2:
        raise ValueError(f"order={order} is not allowed: give an even order (odd moments vanish)")
    ws = check_widths(widths)
    cw, _ = layer_constants(len(ws), C_W, 0.0)
    k = order // 2
    gain = math.prod(layer_gain_moment(k, n, a_plus=a_plus, a_minus=a_minus) for n in ws)
    return float(math.prod(range(1, order, 2)) * (_check_K1(K1) * np.prod(cw[1:])) ** k * gain)


def _metric_cumulant_ratios(depth_moments, max_order):
    """[(2k-1)!! kappa_k(G) / kappa_1(G)^k for k = 2..max_order/2] from E[G^k]/E[G]^k (exact sympy)."""
    mom = [depth_moments(k) for k in range(1, max_order // 2 + 1)]
    kap = cumulants_from_moments(mom)
    return [math.prod(range(1, 2 * k, 2)) * kap[k - 1] / kap[0] ** k for k in range(2, max_order // 2 + 1)]


def output_cumulant_ratios(widths, *, max_order=6, a_plus=1.0, a_minus=0.0) -> np.ndarray:
    """Exact [kappa_4/kappa_2^2, kappa_6/kappa_2^3, .., kappa_R/kappa_2^(R/2)] of the output, R = max_order.

    Independent of K1 and C_W. widths (n_1, .., n_L).

    >>> output_cumulant_ratios([10], max_order=6).round(12).tolist()   # ReLU, one hidden layer
    [1.5, 6.6]
    """
    R = _check_k(max_order, "max_order", 4)
    if R % 2:
        raise ValueError(f"max_order={R} is not allowed: give an even order >= 4")
    ws = check_widths(widths)
    ap, am = _slope(a_plus, "a_plus"), _slope(a_minus, "a_minus")

    def moment(k):  # E[G^k] / E[G]^k = prod_l E[Y_l^k] / E[Y_l]^k
        return sp.prod([_gain_polynomial(k, ap, am).subs(_n, n) / _gain_polynomial(1, ap, am).subs(_n, n) ** k
                        for n in ws])
    return np.array([float(v) for v in _metric_cumulant_ratios(moment, R)])


def cumulant_ratio_series(width_factors, *, order=2, max_order=6, a_plus=1.0, a_minus=0.0):
    """Exact expansion of kappa_{2k}/kappa_2^k in eps = 1/n, widths n_l = rho_l n: {2k: [c_1, .., c_order]}.

    kappa_{2k}/kappa_2^k = sum_{j=1}^{order} c_j eps^j + O(eps^(order+1)), c_j exact sympy numbers
    (width_factors rho_l: positive rationals, one per hidden layer).

    >>> cumulant_ratio_series([1, 1], order=2, a_plus=1, a_minus=1)   # linear, depth 2
    {4: [12, 12], 6: [0, 600]}
    """
    order = _check_k(order, "order", 1)
    R = _check_k(max_order, "max_order", 4)
    if R % 2:
        raise ValueError(f"max_order={R} is not allowed: give an even order >= 4")
    try:
        rho = [sp.nsimplify(r) for r in width_factors]
    except (TypeError, sp.SympifyError):
        rho = None
    if not rho or any(not (r.is_number and r.is_positive) for r in rho):
        raise ValueError(f"width_factors={width_factors!r} is not allowed: give positive numbers rho_l, "
                         "one per hidden layer (widths n_l = rho_l n)")
    eps = sp.Symbol("epsilon", positive=True)
    ap, am = _slope(a_plus, "a_plus"), _slope(a_minus, "a_minus")

    def moment(k):
        out = 1
        for r in rho:
            n = r / eps
            out *= _gain_polynomial(k, ap, am).subs(_n, n) / (_gain_polynomial(1, ap, am).subs(_n, n)) ** k
        return sp.expand(out)
    ratios = _metric_cumulant_ratios(moment, R)
    out = {}
    for k, val in enumerate(ratios, start=2):
        s = sp.series(sp.together(val), eps, 0, order + 1).removeO()
        out[2 * k] = [sp.nsimplify(s.coeff(eps, j)) for j in range(1, order + 1)]
    return out
