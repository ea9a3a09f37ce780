"""NTK fluctuations at initialization to first order in 1/n, one input (PDLT ch. 8, per-layer widths).

Conventions: :mod:`sft.conventions` (NTK parameterization, learning rates lambda_W = C_W, lambda_b = C_b);
widths = (n_1, .., n_L), L = depth, layer L + 1 is the readout (one output); r_l = n_l / n_{l-1}
(:func:`sft.finite.width_ratios`). Theta_hat^(l)_{ij} = sum_p dz^(l)_i/dp dz^(l)_j/dp is the
stochastic NTK of the preactivations of layer l (p over the parameters of layers 1..l), G^(l) the
stochastic metric (:mod:`sft.finite.vertex`). Implemented, for ONE input (all at O(1/n)):

    E[Theta_hat^(l)_{ij}]   = delta_ij (Theta^(l) + Theta1^(l) / n_{l-1}),
    Cov(Theta_hat_{i1i2}, Theta_hat_{i3i4}) = (1/n_{l-1}) [d12 d34 A^(l) + (d13 d24 + d14 d23) B^(l)],
    Cov(G^(l), Theta_hat_{i1i2}) = d12 D^(l) / n_{l-1},
    E[Theta_hat_{i1i2} z_i3 z_i4]_connected = (1/n_{l-1}) [d12 d34 D^(l) + (d13 d24 + d14 d23) F^(l)],

plus K, V, G1 from :mod:`sft.finite.vertex`. Several inputs (N <= 4): :func:`ntk_fluctuations_multi`
(the same quantities as tensors over the inputs; its docstring gives the recursion). Not implemented: the
dNTK and ddNTKs (PDLT ch. 11), anything at O(1/n^2) except the exact deep-linear law below.

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
d^k<f>_K/dK^k = <f(sqrt(K) u) He_2k(u)> / (2K)^k as in :mod:`sft.finite.vertex`.

Checks (tests/test_ntk_fluctuations.py; several inputs: tests/test_ntk_fluctuations_multi.py): Monte
Carlo over finite networks; the exact deep-linear law (:func:`deep_linear_ntk_second_moment`) to O(1/n);
symbolic checks in derivations/ntk_fluctuations.py.
"""
from __future__ import annotations

import itertools
import numbers
from typing import NamedTuple

import numpy as np

from . import vertex as fw
from ..kernels.activations import get_activation
from ..conventions import check_depth, check_widths, layer_constants, pd_inverse, require_x64

__all__ = ["NTKFluctuations", "ntk_fluctuations", "ntk_step", "ntk_relative_variance",
           "nu_theta_from_recursion", "deep_linear_ntk_second_moment", "deep_linear_ntk_relative_variance",
           "NTKFluctuationsMulti", "ntk_fluctuations_multi", "ntk_step_multi", "readout_ntk_covariance"]

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
    require_x64("sft.finite.ntk_step")
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

    K, V, G1: as :class:`sft.finite.SingleInput`; Theta: infinite-width NTK; Theta1: NTK mean
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


# ------------------------------------------------------------------------------- several inputs
class _GaussianLayer:
    """Gaussian expectations at kernel K (N, N) over the inputs each product involves (<= 4 distinct).

    Each expectation uses the rule of :func:`sft.finite.gaussian_rule` on its own subset of
    inputs, cached; "s" = sigma(z_a), "d" = sigma'(z_a).
    """

    def __init__(self, act, K):
        self.act, self.K, self._rules = act, K, {}

    def _rule(self, subset):
        if subset not in self._rules:
            z, w = fw.gaussian_rule(self.K[np.ix_(subset, subset)])
            vals = {"s": np.asarray(self.act.fn(z), dtype=np.float64),
                    "d": np.asarray(self.act.derivative(z), dtype=np.float64)}
            self._rules[subset] = (z, w, vals, pd_inverse("K", self.K[np.ix_(subset, subset)]))
        return self._rules[subset]

    def _weighted(self, kinds, idx):
        subset = tuple(sorted(set(idx)))
        z, w, vals, Kinv = self._rule(subset)
        f = w.copy()
        for k, a in zip(kinds, idx):
            f = f * vals[k][:, subset.index(a)]
        return subset, z, f, Kinv

    def moment(self, kinds):
        """T[a1..am] = <prod_i kinds[i](z_{a_i})>, shape (N,) * m; e.g. kinds = "ssdd"."""
        N = self.K.shape[0]
        T = np.empty((N,) * len(kinds))
        for idx in itertools.product(range(N), repeat=len(kinds)):
            T[idx] = np.sum(self._weighted(kinds, idx)[2])
        return T

    def derivative(self, kinds, order):
        """T[a1..am, c1..c_order] = <d_c1 .. d_c_order prod_i kinds[i](z_{a_i})>_K (order 1, 2, 4), by
        Gaussian integration by parts: <d^k f> = <f H_k>, H_1 = y, H_2 = y y - Kinv, H_4 (module
        :mod:`sft.finite.vertex`), y = Kinv z on the inputs f depends on (other derivatives vanish)."""
        N, m = self.K.shape[0], len(kinds)
        T = np.zeros((N,) * (m + order))
        for idx in itertools.product(range(N), repeat=m):
            subset, z, f, Kinv = self._weighted(kinds, idx)
            y = z @ Kinv
            H = y if order == 1 else _hermite(y, Kinv, order)
            vals = np.tensordot(f, H, axes=(0, 0))
            for cs in itertools.product(range(len(subset)), repeat=order):
                T[idx + tuple(subset[c] for c in cs)] = vals[cs]
        return T


def _hermite(y, Kinv, order):
    """Multivariate Hermite tensors of order 2 or 4 (as in :mod:`sft.finite.vertex`), y (P, d) = Kinv z."""
    if order == 2:
        return np.einsum("pb,pc->pbc", y, y) - Kinv
    out = np.einsum("pb,pc,pd,pe->pbcde", y, y, y, y)
    for p in ("bc,de", "bd,ce", "be,cd"):
        (i, j), (k, m) = p.split(",")
        out -= np.einsum(f"{i}{j},p{k},p{m}->pbcde", Kinv, y, y)
        out -= np.einsum(f"{k}{m},p{i},p{j}->pbcde", Kinv, y, y)
        out += np.einsum(f"{p}->bcde", Kinv, Kinv)[None]
    return out


def ntk_step_multi(K, Theta, V, G1, A, B, D, F, Theta1, r, *, activation, C_W, C_b, G1_next=None):
    """One layer of the multi-input recursion (docstring of :func:`ntk_fluctuations_multi`): l -> l + 1.

    Inputs: layer-l K, Theta, G1, Theta1 (N, N); V, A, B, D, F (N, N, N, N) in the storage convention
    of :class:`NTKFluctuationsMulti`; r = n_l / n_{l-1}. G1_next: G1^(l+1) (for Theta1; zeros if None).
    Returns (K, Theta, A, B, D, F, Theta1) of layer l + 1.
    """
    require_x64("sft.finite.ntk_step_multi")
    act = get_activation(activation)
    g = _GaussianLayer(act, np.asarray(K, dtype=np.float64))
    S2, D2 = g.moment("ss"), g.moment("dd")
    S4, D4, SSDD, DSDS = g.moment("ssss"), g.moment("dddd"), g.moment("ssdd"), g.moment("dsds")
    Hs, Hd, Hd4, Y = g.derivative("ss", 2), g.derivative("dd", 2), g.derivative("dd", 4), g.derivative("ds", 1)
    outer = lambda a, b: np.einsum("ab,cd->abcd", a, b)  # noqa: E731
    chi = C_W * D2                                                    # chi_perp_{ab}
    P = 0.5 * C_W * (Hs + Theta[:, :, None, None] * Hd)               # P_{ab;cd}
    Ps = 0.5 * C_W * Hs                                               # Ps_{ab;cd}
    ss_x = S4 - outer(S2, S2) + Theta[None, None] * (SSDD - outer(S2, D2))   # C_W^-2 Cov(s_a s_b, X_cd)
    cov_X = ss_x + Theta[:, :, None, None] * (SSDD.transpose(2, 3, 0, 1) - outer(D2, S2)
                                              + Theta[None, None] * (D4 - outer(D2, D2)))
    PD = np.einsum("abij,ijcd->abcd", P, D) * chi[None, None]
    A_n = C_W ** 2 * cov_X + r * (np.einsum("abij,ijkl,cdkl->abcd", P, V, P) + PD
                                  + PD.transpose(2, 3, 0, 1) + outer(chi, chi) * A)
    D_n = C_W ** 2 * ss_x + r * (np.einsum("abij,ijkl,cdkl->abcd", Ps, V, P)
                                 + np.einsum("abij,ijcd->abcd", Ps, D) * chi[None, None])
    B_n = C_W ** 2 * D4 * np.einsum("xz,yw->xyzw", Theta, Theta) + r * outer(chi, chi) * B
    F_n = (C_W ** 2 * DSDS * Theta[:, None, :, None]
           + r * C_W ** 2 * np.einsum("xyc,zwd,xczd->xyzw", Y, Y, F))
    G1_n = np.zeros_like(Theta) if G1_next is None else G1_next
    Theta1_n = G1_n + r * (chi * Theta1
                           + 0.5 * C_W * (np.einsum("abcd,cd->ab", Hd, G1) * Theta
                                          + np.einsum("abcd,cdab->ab", Hd, D))
                           + C_W * np.einsum("abcd,acbd->ab", Hd, F)
                           + C_W / 8 * np.einsum("abcdef,cdef->ab", Hd4, V) * Theta)
    Theta_n = C_b + C_W * S2 + chi * Theta
    return C_b + C_W * S2, Theta_n, A_n, B_n, D_n, F_n, Theta1_n


class NTKFluctuationsMulti(NamedTuple):
    """Multi-input NTK statistics over layers l = 1 .. depth+1 (readout last); N inputs.

    K, Theta, G1, Theta1: (depth+1, N, N); V, A, B, D, F: (depth+1, N, N, N, N), stored as
    X[l-1, a, b, c, d] = X^(l)_{(ab)(cd)}, with the pairings of :func:`ntk_fluctuations_multi`.
    widths: as given (or None).
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


def ntk_fluctuations_multi(x, *, depth, activation, C_W, C_b, widths=None) -> NTKFluctuationsMulti:
    """NTK mean, covariance and cross terms at O(1/n) for inputs x (N, n_0), N <= 4 (PDLT ch. 8).

    Definitions (layer l, neurons i, inputs a; normalized by n_{l-1}; stored X[a1, a2, a3, a4]):

        E[Theta_hat_{i1i2;a1a2}] = d12 (Theta_{a1a2} + Theta1_{a1a2} / n_{l-1}),
        n_{l-1} Cov(Theta_hat_{i1i2;a1a2}, Theta_hat_{i3i4;a3a4})
            = d12 d34 A_{(a1a2)(a3a4)} + d13 d24 B_{(a1a3)(a2a4)} + d14 d23 B_{(a1a4)(a2a3)},
        n_{l-1} Cov(G_{a1a2}, Theta_hat_{i1i2;a3a4}) = d12 D_{(a1a2)(a3a4)},
        n_{l-1} E[Theta_hat_{i1i2;a1a2} z_{i3;a3} z_{i4;a4}]_conn
            = d12 d34 D_{(a3a4)(a1a2)} + d13 d24 F_{(a1a3)(a2a4)} + d14 d23 F_{(a1a4)(a2a3)}.

    Readout (one output): n_L Cov(Theta_hat_{ab}, Theta_hat_{cd}) = A_{(ab)(cd)} + B_{(ac)(bd)} + B_{(ad)(bc)}
    (:func:`readout_ntk_covariance`). One input: A, B, D, F, Theta1 of :func:`ntk_fluctuations`.

    Recursion (same derivation as the module docstring, with Price's theorem for several inputs,
    d<f>_K = (1/2) sum_{cd} <d_c d_d f> dK_{cd}; <.> = <.>_{K^(l)}, s_a = sigma(z_a), d_a = sigma'(z_a),
    Theta = Theta^(l), chi_{ab} = C_W <d_a d_b>, X_{ab} = s_a s_b + Theta_{ab} d_a d_b,
    P_{ab;cd} = (C_W/2) <d_c d_d X_{ab}>, Ps_{ab;cd} = (C_W/2) <d_c d_d (s_a s_b)>, Y_{xy;c} = <d_c (d_x s_y)>):

        Theta^(l+1)_{ab} = C_b + C_W <s_a s_b> + chi_{ab} Theta_{ab},
        B^(l+1)_{(xy)(zw)} = C_W^2 <d_x d_y d_z d_w> Theta_{xz} Theta_{yw} + r_l chi_{xy} chi_{zw} B_{(xy)(zw)},
        A^(l+1)_{(ab)(cd)} = C_W^2 Cov(X_ab, X_cd) + r_l [P_{ab;ij} V_{(ij)(kl)} P_{cd;kl}
                             + P_{ab;ij} D_{(ij)(cd)} chi_cd + chi_ab P_{cd;ij} D_{(ij)(ab)}
                             + chi_ab chi_cd A_{(ab)(cd)}],
        D^(l+1)_{(ab)(cd)} = C_W^2 Cov(s_a s_b, X_cd)
                             + r_l [Ps_{ab;ij} V_{(ij)(kl)} P_{cd;kl} + Ps_{ab;ij} D_{(ij)(cd)} chi_cd],
        F^(l+1)_{(xy)(zw)} = C_W^2 <d_x s_y d_z s_w> Theta_{xz} + r_l C_W^2 Y_{xy;c} Y_{zw;d} F_{(xc)(zd)},
        Theta1^(l+1)_{ab} = G1^(l+1)_{ab} + r_l [chi_ab Theta1_ab
                            + (C_W/2) <d_c d_d (d_a d_b)> (G1_cd Theta_ab + D_{(cd)(ab)})
                            + C_W <d_c d_d (d_a d_b)> F_{(ac)(bd)}
                            + (C_W/8) <d_c d_d d_e d_f (d_a d_b)> V_{(cd)(ef)} Theta_ab]

    (repeated indices summed). Sources: B from the Wick contraction of the layer-(l+1) weights
    (diagonal k = m and off-diagonal k != m terms of sum_km omega_ik omega_jm M_km; the latter carries
    B^(l)); A, D from the law of total covariance over layer l - 1 and Price's theorem; F and the F
    term of Theta1 from Gaussian integration by parts over the rows omega_k of layer l (Stein's lemma),
    E[omega^T M omega g(z)] = tr M <g> + (C_W/n) sigma_c^T M sigma_d <d_c d_d g>. Theta^(1) = K^(1),
    A = B = D = F = Theta1 = 0 at l = 1. K, V, G1 from :func:`sft.finite.multi_input`.
    Quadrature: :func:`sft.finite.gaussian_rule` per subset of <= 4 inputs (hence N <= 4).

    >>> out = ntk_fluctuations_multi(np.eye(2), depth=1, activation="linear", C_W=1.0, C_b=0.0)
    >>> C = readout_ntk_covariance(out.A[-1], out.B[-1])  # K = I/2: n Cov = K_ac K_bd + K_ad K_bc + 2 K_ab K_cd
    >>> [round(float(C[0, 0, 0, 0]), 12), round(float(C[0, 0, 1, 1]), 12), round(float(C[0, 1, 0, 1]), 12)]
    [1.0, 0.5, 0.25]
    """
    act = get_activation(activation)
    depth = check_depth(depth)
    cw, cb = layer_constants(depth, C_W, C_b)
    r = fw.width_ratios(widths, depth)
    if np.ndim(x) != 2 or not 1 <= np.shape(x)[0] <= 4:
        raise ValueError(f"x with shape {np.shape(x)} is not allowed: give (N, n_0) with 1 <= N <= 4 inputs "
                         "(four-point Gaussian quadrature)")
    mi = fw.multi_input(x, depth=depth, activation=act, C_W=cw, C_b=cb, widths=widths)
    N = mi.K.shape[1]
    z4 = np.zeros((N,) * 4)
    state = [(mi.K[0], mi.K[0], z4, z4, z4, z4, np.zeros((N, N)))]
    for l in range(depth):
        K, Theta, A, B, D, F, Theta1 = state[-1]
        state.append(ntk_step_multi(K, Theta, mi.V[l], mi.G1[l], A, B, D, F, Theta1, r[l], activation=act,
                                    C_W=cw[l + 1], C_b=cb[l + 1], G1_next=mi.G1[l + 1]))
    K, Theta, A, B, D, F, Theta1 = (np.stack(c) for c in zip(*state))
    return NTKFluctuationsMulti(mi.K, Theta, mi.V, mi.G1, A, B, D, F, Theta1,
                                None if widths is None else check_widths(widths))


def readout_ntk_covariance(A, B):
    """n_L Cov(Theta_hat_{ab}, Theta_hat_{cd}) = A_{(ab)(cd)} + B_{(ac)(bd)} + B_{(ad)(bc)} for one output.

    A, B: (N, N, N, N) readout tensors of :func:`ntk_fluctuations_multi` (e.g. out.A[-1], out.B[-1]).
    """
    return A + np.einsum("acbd->abcd", B) + np.einsum("adbc->abcd", B)
