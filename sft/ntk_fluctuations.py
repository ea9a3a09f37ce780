"""NTK fluctuations at initialization to first order in 1/n, one input (PDLT ch. 8, per-layer widths).

Conventions: :mod:`sft.conventions` (NTK parameterization, learning rates lambda_W = C_W, lambda_b = C_b);
widths = (n_1, .., n_L), L = depth, layer L + 1 is the readout (one output); r_l = n_l / n_{l-1}
(:func:`sft.finite_width.width_ratios`). Theta_hat^(l)_{ij} = sum_p dz^(l)_i/dp dz^(l)_j/dp is the
stochastic NTK of the preactivations of layer l (p over the parameters of layers 1..l), G^(l) the
stochastic metric (:mod:`sft.finite_width`). Implemented, for ONE input (all at O(1/n)):

    E[Theta_hat^(l)_{ij}]   = delta_ij (Theta^(l) + Theta1^(l) / n_{l-1}),
    Cov(Theta_hat_{i1i2}, Theta_hat_{i3i4}) = (1/n_{l-1}) [d12 d34 A^(l) + (d13 d24 + d14 d23) B^(l)],
    Cov(G^(l), Theta_hat_{i1i2}) = d12 D^(l) / n_{l-1},
    E[Theta_hat_{i1i2} z_i3 z_i4]_connected = (1/n_{l-1}) [d12 d34 D^(l) + (d13 d24 + d14 d23) F^(l)],

plus K, V, G1 from :mod:`sft.finite_width`. Not implemented: several inputs, the dNTK and ddNTKs
(PDLT ch. 11), anything at O(1/n^2) except the exact deep-linear law below.

Derivation (derivations/ntk_fluctuations.py; written out in derivations/out/ntk_fluctuations.md).
Given everything up to layer l (call it F_l), with W_ik = sqrt(C_W / n_l) omega_ik,

    Theta_hat^(l+1)_{ij} = delta_ij G^(l+1) + (C_W / n_l) sum_{k,m} omega_ik omega_jm M_km,
    M_km = sigma'_k sigma'_m Theta_hat^(l)_km,

(chain rule; the first term is the layer-(l+1) weights and biases, lambda_b + lambda_W sigma.sigma / n_l).
omega is Gaussian and independent of F_l, so by Wick's theorem
E[. | F_l] = delta_ij H, H = G^(l+1) + (C_W / n_l) sum_k sigma'_k^2 Theta_hat_kk, and
Cov(. | F_l) = (d13 d24 + d14 d23) (C_W / n_l)^2 sum_km M_km^2. Given F_{l-1} the pairs
(z_k, Theta_hat_kk) are i.i.d. over k, and E[Theta_hat_kk | z_k, F_{l-1}] = H^(l) + kappa (z_k^2 - G^(l))
with kappa = F^(l) / (n_{l-1} K^2) + ... (projection of omega_k on the direction of sigma^(l-1)).
The laws of total (co)variance then give, with <.> = <.>_{K^(l)}, Theta = Theta^(l), s = sigma(z),
d = sigma'(z), chi_par = C_W d<s^2>/dK, chi_perp = C_W <d^2>, p = chi_par + C_W Theta d<d^2>/dK:

    Theta^(l+1)  = K^(l+1) + chi_perp Theta,
    B^(l+1)      = C_W^2 <d^4> Theta^2 + r_l chi_perp^2 B,
    A^(l+1)      = C_W^2 Var(s^2 + Theta d^2) + r_l (p^2 V + 2 p chi_perp D + chi_perp^2 A),
    D^(l+1)      = C_W^2 Cov(s^2, s^2 + Theta d^2) + r_l chi_par (p V + chi_perp D),
    F^(l+1)      = C_W^2 <s^2 d^2> Theta + r_l chi_par^2 F,
    Theta1^(l+1) = G1^(l+1) + r_l [chi_perp Theta1 + C_W d<d^2>/dK (G1 Theta + D + 2 F)
                                   + (C_W/2) d^2<d^2>/dK^2 V Theta],

with A = B = D = F = V = G1 = Theta1 = 0 at l = 1 (Theta_hat^(1) = K^(1) is fixed). Here
C_W <z s d>/K = chi_par (Gaussian integration by parts) was used in F. The readout (n_{L+1} = 1):
Var(Theta_hat) = (A + 2 B)^(L+1) / n_L, Cov(Theta_hat, f^2) = (D + 2 F)^(L+1) / n_L.
d^k<f>_K/dK^k = <f(sqrt(K) u) He_2k(u)> / (2K)^k as in :mod:`sft.finite_width`.

Checks (tests/test_ntk_fluctuations.py): Monte Carlo over finite networks; the exact deep-linear law
(:func:`deep_linear_ntk_second_moment`) to O(1/n); symbolic checks in derivations/ntk_fluctuations.py.
"""
from __future__ import annotations

import numbers
from typing import NamedTuple

import numpy as np

from . import finite_width as fw
from .activations import get_activation
from .conventions import check_depth, check_widths, layer_constants

__all__ = ["NTKFluctuations", "ntk_fluctuations", "ntk_step", "ntk_relative_variance",
           "nu_theta_from_recursion", "deep_linear_ntk_second_moment", "deep_linear_ntk_relative_variance"]

_RULE_NODES = 200  # Gauss-Legendre nodes per side of the split at 0 (one input)


def _check_positive(name, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name}={value!r} is not allowed: {name} must be a finite number > 0")
    return float(value)


def _derivative_moments(act, K):
    """(<d^2>, <d^4>, <s^2 d^2>, <s^4>, <s^2>, d<d^2>/dK, d^2<d^2>/dK^2) at variance K, d = sigma', s = sigma."""
    z, w = fw.gaussian_rule(np.array([[K]]), n_nodes=_RULE_NODES)
    z = z[:, 0]
    s2 = np.asarray(act.fn(z), dtype=np.float64) ** 2
    d2 = np.asarray(act.derivative(z), dtype=np.float64) ** 2
    u2 = z * z / K
    he2, he4 = u2 - 1.0, u2 * u2 - 6.0 * u2 + 3.0
    return (w @ d2, w @ (d2 * d2), w @ (s2 * d2), w @ (s2 * s2), w @ s2,
            (w @ (d2 * he2)) / (2 * K), (w @ (d2 * he4)) / (4 * K * K))


def ntk_step(K, Theta, V, G1, A, B, D, F, Theta1, r, *, activation, C_W, C_b):
    """One layer of the single-input recursion (module docstring): layer l -> layer l + 1.

    All inputs are layer-l scalars (A, B, D, F, V, G1, Theta1 normalized by n_{l-1}); r = n_l / n_{l-1}.
    Returns (K, Theta, V, G1, A, B, D, F, Theta1) of layer l + 1 (normalized by n_l).
    """
    act = get_activation(activation)
    K = _check_positive("K", K)
    K_n, V_n, G1_n, chi_par = fw.single_input_step(K, V, G1, r, activation=act, C_W=C_W, C_b=C_b)
    d2, d4, s2d2, s4, s2, dd2, d2d2 = _derivative_moments(act, K)
    chi_perp = C_W * d2
    p = chi_par + C_W * Theta * dd2
    var_s2 = s4 - s2 * s2
    cov_s2_d2 = s2d2 - s2 * d2
    Theta_n = K_n + chi_perp * Theta
    A_n = (C_W ** 2 * (var_s2 + 2 * Theta * cov_s2_d2 + Theta ** 2 * (d4 - d2 * d2))
           + r * (p * p * V + 2 * p * chi_perp * D + chi_perp ** 2 * A))
    B_n = C_W ** 2 * d4 * Theta ** 2 + r * chi_perp ** 2 * B
    D_n = C_W ** 2 * (var_s2 + Theta * cov_s2_d2) + r * chi_par * (p * V + chi_perp * D)
    F_n = C_W ** 2 * s2d2 * Theta + r * chi_par ** 2 * F
    Theta1_n = G1_n + r * (chi_perp * Theta1 + C_W * dd2 * (G1 * Theta + D + 2 * F)
                           + 0.5 * C_W * d2d2 * V * Theta)
    return K_n, Theta_n, V_n, G1_n, A_n, B_n, D_n, F_n, Theta1_n


class NTKFluctuations(NamedTuple):
    """Single-input NTK statistics over layers l = 1 .. depth+1 (readout last), each (depth+1,).

    K, V, G1: as :class:`sft.finite_width.SingleInput`; Theta: infinite-width NTK; Theta1: NTK mean
    shift, E[Theta_hat^(l)] = Theta + Theta1 / n_{l-1}; A, B: NTK variance tensors; D: Cov(G, Theta_hat)
    n_{l-1}; F: the NTK-preactivation cross term (module docstring). widths: as given (or None).
    """

    K: np.ndarray
    Theta: np.ndarray
    V: np.ndarray
    G1: np.ndarray
    A: np.ndarray
    B: np.ndarray
    D: np.ndarray
    F: np.ndarray
    Theta1: np.ndarray
    widths: tuple | None


def ntk_fluctuations(K1, *, depth, activation, C_W, C_b, widths=None) -> NTKFluctuations:
    """K, Theta, V, G1, A, B, D, F, Theta1 for one input with K^(1) = Theta^(1) = K1 = C_b + C_W |x|^2 / n_0.

    C_W, C_b: scalars or per layer (length depth + 1). widths: None (equal) or (n_1, .., n_depth).

    >>> out = ntk_fluctuations(1.0, depth=1, activation="linear", C_W=1.0, C_b=0.0)
    >>> round(float((out.A[-1] + 2 * out.B[-1]) / out.Theta[-1] ** 2), 12)  # Var(Theta_hat)/Theta^2 = 1/n_1
    1.0
    """
    depth = check_depth(depth)
    cw, cb = layer_constants(depth, C_W, C_b)
    r = fw.width_ratios(widths, depth)
    state = [(_check_positive("K1", K1), float(K1)) + (0.0,) * 7]
    for l in range(depth):
        state.append(ntk_step(*state[-1], r[l], activation=activation, C_W=cw[l + 1], C_b=cb[l + 1]))
    cols = [np.array(c) for c in zip(*state)]
    K, Theta, V, G1, A, B, D, F, Theta1 = cols
    return NTKFluctuations(K, Theta, V, G1, A, B, D, F, Theta1,
                           None if widths is None else check_widths(widths))


def ntk_relative_variance(K1, *, widths, activation, C_W, C_b) -> float:
    """Var(Theta_hat) / Theta^2 of the scalar readout NTK to O(1/n): (A + 2 B)^(L+1) / (n_L Theta^2).

    widths = (n_1, .., n_L) (depth = L = len(widths)).

    >>> round(float(ntk_relative_variance(1.0, widths=(10,), activation="linear", C_W=1.0, C_b=0.0)), 12)
    0.1
    """
    ws = check_widths(widths)
    out = ntk_fluctuations(K1, depth=len(ws), activation=activation, C_W=C_W, C_b=C_b, widths=ws)
    return float((out.A[-1] + 2 * out.B[-1]) / (ws[-1] * out.Theta[-1] ** 2))


def nu_theta_from_recursion(activation, *, C_W, C_b=0.0, K1=1.0, depth=1000) -> float:
    """nu_Theta(L) = n Var(Theta_hat) / (L Theta^2) of the readout at depth L, equal widths.

    At criticality n Var/Theta^2 ~ nu_Theta L for large L. Exact for linear sigma at C_b = 0:
    (A + 2B)/Theta^2 = (2/3) L (2L + 1) / (L + 1) -> nu_Theta = 4/3 as L -> inf.
    """
    out = ntk_fluctuations(K1, depth=depth, activation=activation, C_W=C_W, C_b=C_b)
    return float((out.A[-1] + 2 * out.B[-1]) / (depth * out.Theta[-1] ** 2))


# ------------------------------------------------------------------------------- exact deep linear
def deep_linear_ntk_second_moment(widths) -> float:
    """Exact E[Theta_hat^2] / (K1 prod C_W)^2 of the readout NTK of a deep linear net, one input, C_b = 0.

    Theta_hat = sum_{l=1}^{L+1} G^(l) |delta^(l)|^2 = K1 sum_l prod_{m<l} F_m prod_{m>l} R_m, with the
    forward ratios F_m = |omega_m e|^2 / n_m and backward ratios R_m = |e'^T omega_m|^2 / n_{m-1} of
    weight matrix m (omega_m of shape n_m x n_{m-1}, e, e' unit vectors independent of omega_m). By
    rotation invariance, n_m F_m = g^2 + chi^2_{n_m - 1}, n_{m-1} R_m = g^2 + chi^2_{n_{m-1} - 1} with a
    shared g ~ N(0,1), all else independent (F_1 ~ chi^2_{n_1}/n_1, R_{L+1} ~ chi^2_{n_L}/n_L); so
    E[F_m^2] = 1 + 2/n_m, E[R_m^2] = 1 + 2/n_{m-1}, E[F_m R_m] = 1 + 2/(n_m n_{m-1}), E[F] = E[R] = 1:

        E[Theta_hat^2] / K1^2 = sum_{l, l'} prod_{m < min} (1 + 2/n_m) prod_{m > max} (1 + 2/n_{m-1})
                                            prod_{min < m < max} (1 + 2/(n_m n_{m-1})),

    and E[Theta_hat] = (L + 1) K1 exactly (derivations/ntk_fluctuations.py checks this symbolically).

    >>> deep_linear_ntk_second_moment((10,))    # 4 + 4/n_1
    4.4
    """
    n = np.array((0,) + check_widths(widths), dtype=np.float64)  # n[m] = n_m, n[0] unused
    L = len(n) - 1
    total = 0.0
    for l in range(1, L + 2):
        for lp in range(1, L + 2):
            lo, hi = min(l, lp), max(l, lp)
            t = np.prod([1 + 2 / n[m] for m in range(1, lo)])
            t *= np.prod([1 + 2 / n[m - 1] for m in range(hi + 1, L + 2)])
            t *= np.prod([1 + 2 / (n[m] * n[m - 1]) for m in range(lo + 1, hi)])
            total += t
    return float(total)


def deep_linear_ntk_relative_variance(widths) -> float:
    """Exact Var(Theta_hat) / E[Theta_hat]^2 of a deep linear readout NTK (C_b = 0, any C_W, K1)."""
    L = len(check_widths(widths))
    return deep_linear_ntk_second_moment(widths) / (L + 1) ** 2 - 1.0
