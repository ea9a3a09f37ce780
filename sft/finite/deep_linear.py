"""Exact finite-width laws of deep linear (and scale-invariant) networks for one input.

Deep linear network (sigma(z) = z, C_b = 0; conventions of :mod:`sft.conventions`). Given layer l,
the n_l neurons z^(l)_j are i.i.d. N(0, G^(l)), so the stochastic metric obeys exactly

    G^(l+1) = (C_W^(l+1) / n_l) sum_j z^(l)_j^2 = C_W^(l+1) G^(l) chi^2_{n_l} / n_l,

with independent chi-squares, and the readout f = z^(L+1) (L = depth) is

    f = sqrt(K^(1) prod_{l=1}^{L} C_W^(l+1) chi^2_{n_l} / n_l) * g,      g ~ N(0, 1)

(Zavatone-Veth & Pehlevan 2021; PDLT sec. 3.3). Hence, with E[(chi^2_n / n)^k] = prod_{j<k} (1 + 2j/n),

    E[f^(2k)] = (2k - 1)!! (K^(1) prod C_W)^k prod_l prod_{j=0}^{k-1} (1 + 2j / n_l),
    Var(G^(L+1)) / E[G^(L+1)]^2 = prod_l (1 + 2 / n_l) - 1,
    excess kurtosis of f = E[f^4] / E[f^2]^2 - 3 = 3 [prod_l (1 + 2/n_l) - 1].

Scale-invariant sigma (slopes a+, a-), C_b = 0, any C_W: sigma(z)^2 = G u^2 s^2 with u ~ N(0, 1) and
s = a+ (u > 0) or a- (u < 0) independent of G, so G^(l+1) = G^(l) x (an independent factor) and

    Var(G^(L+1)) / E[G^(L+1)]^2 = prod_l (1 + nu / n_l) - 1,   nu = 3 A4 / A2^2 - 1,  A_k = (a+^k + a-^k)/2

exactly at any width (per layer: E[(sum_j s_j^2 u_j^2)^2] = n 3 A4 + n (n - 1) A2^2). Linear: nu = 2;
ReLU: nu = 5 (the Binomial(n, 1/2) mixture of THEORY.md). The 1/n expansion of these laws is what
:mod:`sft.finite.vertex` must reproduce: first order, 3 V / (n_L K^2) = 3 nu sum_l 1/n_l.
"""
from __future__ import annotations

import numpy as np

from ..conventions import check_real, check_widths, layer_constants

__all__ = ["output_moment", "metric_relative_variance", "excess_kurtosis", "first_order_excess_kurtosis",
           "scale_invariant_nu", "sample_outputs"]


def _check_K1(K1) -> float:
    return check_real("K1", K1, minimum=0, strict=True)   # the first-layer kernel, a finite real > 0


def _readout_gain(widths, C_W) -> float:
    """prod_{l=1}^{L} C_W^(l+1) with C_W a scalar or a sequence of length L + 1 (layer 1 first, its
    value is already inside K^(1))."""
    cw, _ = layer_constants(len(widths), C_W, 0.0)
    return float(np.prod(cw[1:]))


def output_moment(order, *, K1, widths, C_W=1.0) -> float:
    """Exact E[f^order] of a deep linear network's output for one input (module docstring).

    order: even integer >= 0 (odd moments vanish and are returned as 0). K1 = K^(1) =
    C_W^(1) |x|^2 / n_0 > 0. widths = (n_1, .., n_L). C_W: scalar or per layer (length L + 1).

    >>> output_moment(4, K1=1.0, widths=[10])   # 3 (1 + 2/10)
    3.5999999999999996
    """
    if isinstance(order, bool) or not isinstance(order, (int, np.integer)) or order < 0:
        raise ValueError(f"order={order!r} is not allowed: give an integer >= 0")
    ws = np.array(check_widths(widths), dtype=np.float64)
    if order % 2:
        return 0.0
    k = order // 2
    j = np.arange(k)
    double_factorial = float(np.prod(2 * j + 1.0))
    chi_moments = float(np.prod(1.0 + 2.0 * j[None, :] / ws[:, None]))
    return double_factorial * (_check_K1(K1) * _readout_gain(ws.astype(int), C_W)) ** k * chi_moments


def scale_invariant_nu(a_plus=1.0, a_minus=1.0) -> float:
    """nu = 3 A4 / A2^2 - 1, A_k = (a+^k + a-^k) / 2: the per-layer relative variance of the metric times n.

    >>> scale_invariant_nu(1.0, 0.0)   # ReLU
    5.0
    """
    a_plus, a_minus = check_real("a_plus", a_plus), check_real("a_minus", a_minus)
    if a_plus == 0 and a_minus == 0:
        raise ValueError("slopes (a_plus=0, a_minus=0) are not allowed: not both 0 (the network output is 0)")
    a2 = 0.5 * (a_plus ** 2 + a_minus ** 2)
    nu = 3.0 * 0.5 * (a_plus ** 4 + a_minus ** 4) / a2 ** 2 - 1.0
    if not np.isfinite(nu):
        raise ValueError(f"slopes (a_plus={a_plus!r}, a_minus={a_minus!r}) are not allowed: a_k^4 over- or "
                         "underflows float64; rescale them (nu depends only on a_minus / a_plus)")
    return nu


def metric_relative_variance(widths, *, a_plus=1.0, a_minus=1.0) -> float:
    """Exact Var(G^(L+1)) / E[G^(L+1)]^2 = prod_l (1 + nu / n_l) - 1 of the readout metric, one input.

    Deep linear network by default (nu = 2); other scale-invariant slopes with C_b = 0 (module docstring).
    This is also the normalized connected four-point function E[f_i^2 f_j^2]_c / E[f^2]^2 (i != j).
    """
    ws = np.array(check_widths(widths), dtype=np.float64)
    nu = scale_invariant_nu(a_plus, a_minus)
    return float(np.expm1(np.sum(np.log1p(nu / ws))))


def excess_kurtosis(widths, *, a_plus=1.0, a_minus=1.0) -> float:
    """Exact excess kurtosis E[f^4]/E[f^2]^2 - 3 = 3 Var(G)/E[G]^2 of the output, one input.

    >>> round(excess_kurtosis([10, 10]), 12)   # 3 (1.2^2 - 1)
    1.32
    """
    return 3.0 * metric_relative_variance(widths, a_plus=a_plus, a_minus=a_minus)


def first_order_excess_kurtosis(widths, *, a_plus=1.0, a_minus=1.0) -> float:
    """The O(1/n) term of :func:`excess_kurtosis`: 3 nu sum_l 1/n_l (nu = 2 for linear networks)."""
    ws = np.array(check_widths(widths), dtype=np.float64)
    return 3.0 * scale_invariant_nu(a_plus, a_minus) * float(np.sum(1.0 / ws))


def sample_outputs(rng, n_samples, *, K1, widths, C_W=1.0) -> np.ndarray:
    """Draw n_samples outputs f of independent deep linear networks from the exact law (module docstring).

    rng: a numpy Generator (or seed). Returns float64 (n_samples,). Cost O(n_samples * depth), any width.
    """
    rng = np.random.default_rng(rng)
    ws = check_widths(widths)
    if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) or n_samples < 1:
        raise ValueError(f"n_samples={n_samples!r} is not allowed: give an integer >= 1")
    scale = _check_K1(K1) * _readout_gain(ws, C_W)
    G = np.full(n_samples, scale)
    for n in ws:
        G *= rng.chisquare(n, size=n_samples) / n
    return np.sqrt(G) * rng.standard_normal(n_samples)
