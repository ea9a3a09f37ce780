"""Single-input finite-width statistics to O(1/n^2): kernel shift G2, vertex correction V1, six-point vertex U.

Conventions: :mod:`sft.conventions`; widths (n_1, .., n_L), L = depth, layer L + 1 the readout;
G^(l) the stochastic metric of layer l (given layer l-1 the neurons of layer l are exactly i.i.d.
N(0, G^(l))). Definitions, at one input, with n = n_{l-1} the width of the layer below:

    E[G^(l)]        = K^(l) + G1^(l) / n + G2^(l) / n^2 + O(1/n^3),
    Var(G^(l))      = V^(l) / n + V1^(l) / n^2 + O(1/n^3),
    kappa_3(G^(l))  = U^(l) / n^2 + O(1/n^3),            G1 = G2 = V = V1 = U = 0 at l = 1.

K, G1, V are those of :mod:`sft.finite.vertex`. In terms of the preactivations z_{i} of layer l (one
input), conditional Gaussianity gives kappa_{2k} of the joint law from kappa_k(G): the connected
four-point function E[z_i1 z_i2 z_i3 z_i4]_c = (d_12 d_34 + d_13 d_24 + d_14 d_23) (V/n + V1/n^2) and
the connected six-point function

    E[z_i1 .. z_i6]_c = (sum over the 15 pairings of i1..i6 of d d d) U^(l) / n^2 + O(1/n^3),

so U is the six-point vertex (one neuron: kappa_6(z) = 15 U / n^2), V1 the 1/n correction to the
four-point vertex and G2 the 1/n^2 kernel shift (kappa_2(z) = E[G]).

Recursion (derived in derivations/second_order_recursion.py; tested equal, symbolically):
with m_k = <sigma^k>_K, m_k^(j) = d^j m_k / dK^j, F2 = m4 - m2^2, F3 = m6 - 3 m2 m4 + 2 m2^3 (the
conditional cumulants of sigma^2), r = n_l / n_{l-1}, and (K, G1, G2, V, V1, U) of layer l,

    K'  = C_b + C_W m2
    G1' = r C_W [m2' G1 + m2'' V / 2]
    G2' = r^2 C_W [m2' G2 + m2'' (G1^2 + V1) / 2 + m2''' (G1 V / 2 + U / 6) + m2'''' V^2 / 8]
    V'  = C_W^2 F2 + r C_W^2 m2'^2 V
    V1' = r C_W^2 [F2' G1 + F2'' V / 2] + r^2 C_W^2 [m2'^2 V1 + m2' m2'' (U + 2 G1 V) + (m2' m2''' + m2''^2 / 2) V^2]
    U'  = C_W^3 F3 + 3 r C_W^3 m2' F2' V + r^2 C_W^3 [m2'^3 U + 3 m2'^2 m2'' V^2].

Gaussian derivatives: d^j <g>_K / dK^j = <g(sqrt(K) u) He_{2j}(u)> / (2K)^j, u ~ N(0, 1) (checked
symbolically for j <= 4 in the derivation), on the split Gauss-Legendre rule of :mod:`sft.finite.vertex`
(200 nodes per side, cut 12).

Output (readout, l = L + 1, n = n_L): f | G ~ N(0, G) gives kappa_{2k}(f) = (2k-1)!! kappa_k(G), so

    kappa_4 / kappa_2^2 = 3 V / (n K^2) + (3 V1 / K^2 - 6 V G1 / K^3) / n^2 + O(1/n^3),
    kappa_6 / kappa_2^3 = 15 U / (n^2 K^3) + O(1/n^3).

Checked against the exact laws of deep linear and ReLU networks (:mod:`sft.finite.relu_exact`) and
against Monte Carlo (tests/test_second_order.py). Size of the truncation: for ReLU at C_W = 2 the exact
series (:func:`sft.finite.relu_exact.cumulant_ratio_series`) is kappa_6/kappa_2^3 = 3570/n^2 + 19800/n^3 + ..
at depth 2 and 16140/n^2 + 298800/n^3 + .. at depth 4, so at n = 32 the O(1/n^2) term alone is 15% (depth 2)
and 44% (depth 4) below the exact value; kappa_4/kappa_2^2 is exact at second order for depth <= 2.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from ..conventions import check_depth, check_widths, layer_constants, require_x64
from ..kernels.activations import get_activation
from .vertex import _sigma, _std_normal_rule, width_ratios

__all__ = ["SecondOrder", "second_order_single_input", "second_order_step", "gaussian_moment_derivatives"]

_HE = [np.polynomial.hermite_e.HermiteE.basis(2 * j) for j in range(5)]  # He_0, He_2, .., He_8


def gaussian_moment_derivatives(K, *, activation):
    """(m2, m2', m2'', m2''', m2'''', m4, m4', m4'', m6) at variance K > 0; m_k^(j) = d^j <sigma^k>_K / dK^j.

    d^j <g>_K / dK^j = <g(sqrt(K) u) He_2j(u)> / (2K)^j (module docstring). At small K the projection on He_2j
    cancels: the relative error of d^4 m2 / dK^4 for erf against its closed form is 2e-14 at K = 0.1, 1e-11 at
    0.01, 1e-8 at 1e-3 and 1e-5 at 1e-4 (lower derivatives lose less).

    >>> [round(float(m), 9) + 0.0 for m in gaussian_moment_derivatives(2.0, activation="linear")]
    [2.0, 1.0, 0.0, 0.0, 0.0, 12.0, 12.0, 6.0, 120.0]
    """
    require_x64("sft.finite.gaussian_moment_derivatives")
    act = get_activation(activation)
    K = float(K)
    if not (np.isfinite(K) and K > 0):
        raise ValueError(f"K={K!r} is not allowed: the kernel must be finite and > 0")
    u, w = _std_normal_rule()
    s2 = _sigma(act, math.sqrt(K) * u) ** 2
    d = lambda g, j: (w @ (g * _HE[j](u))) / (2 * K) ** j  # noqa: E731
    return (*(d(s2, j) for j in range(5)), *(d(s2 * s2, j) for j in range(3)), d(s2 ** 3, 0))


def second_order_step(state, derivatives, r, *, C_W, C_b):
    """One layer of the O(1/n^2) recursion (module docstring): (K, G1, G2, V, V1, U) -> layer l + 1.

    derivatives: (m2, m2', m2'', m2''', m2'''', m4, m4', m4'', m6) at K (:func:`gaussian_moment_derivatives`).
    Pure arithmetic: works on floats and on sympy symbols (tests/test_second_order.py compares it with
    the derivation exactly).
    """
    K, G1, G2, V, V1, U = state
    m2, d1, d2, d3, d4, m4, e1, e2, m6 = derivatives
    F2, F3 = m4 - m2 ** 2, m6 - 3 * m2 * m4 + 2 * m2 ** 3
    F2p, F2pp = e1 - 2 * m2 * d1, e2 - 2 * d1 ** 2 - 2 * m2 * d2
    return (C_b + C_W * m2,
            r * C_W * (d1 * G1 + d2 * V / 2),
            r ** 2 * C_W * (d1 * G2 + d2 * (G1 ** 2 + V1) / 2 + d3 * (G1 * V / 2 + U / 6) + d4 * V ** 2 / 8),
            C_W ** 2 * F2 + r * C_W ** 2 * d1 ** 2 * V,
            r * C_W ** 2 * (F2p * G1 + F2pp * V / 2)
            + r ** 2 * C_W ** 2 * (d1 ** 2 * V1 + d1 * d2 * (U + 2 * G1 * V) + (d1 * d3 + d2 ** 2 / 2) * V ** 2),
            C_W ** 3 * F3 + 3 * r * C_W ** 3 * d1 * F2p * V
            + r ** 2 * C_W ** 3 * (d1 ** 3 * U + 3 * d1 ** 2 * d2 * V ** 2))


class SecondOrder(NamedTuple):
    """Single-input data to O(1/n^2), arrays over layers l = 1 .. depth+1 (readout last).

    K, G1, G2, V, V1, U: module docstring (normalized by n_{l-1}). kappa4 (depth+1, 2): the coefficients
    (a1, a2) of kappa_4/kappa_2^2 = a1/n + a2/n^2 of one neuron of layer l; kappa6 (depth+1,): b2 of
    kappa_6/kappa_2^3 = b2/n^2 (n = n_{l-1}). widths: the widths used (None: equal).
    """

    K: np.ndarray
    G1: np.ndarray
    G2: np.ndarray
    V: np.ndarray
    V1: np.ndarray
    U: np.ndarray
    kappa4: np.ndarray
    kappa6: np.ndarray
    widths: tuple | None

    def cumulant_ratios(self, n):
        """(kappa_4/kappa_2^2, kappa_6/kappa_2^3) of the output to O(1/n^2), n = n_L the last hidden width."""
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"n={n!r} is not allowed: the last hidden width, an integer >= 1")
        if self.widths is not None and n != self.widths[-1]:
            raise ValueError(f"n={n} is not allowed: these results were computed for widths={self.widths}, "
                             f"whose last hidden width is {self.widths[-1]}")
        a1, a2 = self.kappa4[-1]
        return float(a1 / n + a2 / n ** 2), float(self.kappa6[-1] / n ** 2)


def second_order_single_input(K1, *, depth, activation, C_W, C_b, widths=None) -> SecondOrder:
    """K, G1, G2, V, V1, U over layers for one input with K^(1) = K1 > 0 (module docstring).

    C_W, C_b: scalars or per layer (length depth + 1). widths: None (equal) or (n_1, .., n_depth);
    the recursion depends on them only through r_l = n_l / n_{l-1}.

    >>> out = second_order_single_input(1.0, depth=2, activation="linear", C_W=1.0, C_b=0.0)
    >>> [round(c, 10) for c in out.cumulant_ratios(10)]   # exact: 3 (1.2^2 - 1); 15 (12 L^2 - 4 L) / n^2
    [1.32, 6.0]
    """
    require_x64("sft.finite.second_order_single_input")
    depth = check_depth(depth)
    cw, cb = layer_constants(depth, C_W, C_b)
    r = width_ratios(widths, depth)
    K1 = np.asarray(K1, dtype=np.float64)
    if K1.ndim != 0 or not np.isfinite(K1) or K1 <= 0:
        raise ValueError(f"K1={K1!r} is not allowed: the first-layer kernel must be a finite scalar > 0")
    act = get_activation(activation)
    states = [(float(K1), 0.0, 0.0, 0.0, 0.0, 0.0)]
    for l in range(depth):
        der = gaussian_moment_derivatives(states[-1][0], activation=act)
        states.append(tuple(float(s) for s in second_order_step(states[-1], der, r[l], C_W=cw[l + 1],
                                                                 C_b=cb[l + 1])))
    K, G1, G2, V, V1, U = (np.array(c) for c in zip(*states))
    kappa4 = np.stack([3 * V / K ** 2, 3 * V1 / K ** 2 - 6 * V * G1 / K ** 3], axis=1)
    return SecondOrder(K, G1, G2, V, V1, U, kappa4, 15 * U / K ** 3,
                       None if widths is None else check_widths(widths))
