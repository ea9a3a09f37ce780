"""Leading finite-width (1/n) corrections at initialization: the four-point vertex V and the kernel shift G1.

Conventions: :mod:`sft.conventions`; widths = (n_1, .., n_L), L = depth; layer L + 1 is the readout.
Stochastic metric G^(l) (THEORY.md, PDLT eq. (4.70)); given layer l-1, the neurons of layer l are
exactly i.i.d. N(0, G^(l)). Definitions (to first order in 1/n, n_0 never enters since G^(1) is fixed):

    n_{l-1} Cov(G^(l)_{a1a2}, G^(l)_{a3a4}) = V^(l)_{(a1a2)(a3a4)} + O(1/n),
    E[G^(l)_{a1a2}]                      = K^(l)_{a1a2} + G1^(l)_{a1a2} / n_{l-1} + O(1/n^2),
    V^(1) = 0,  G1^(1) = 0.

Derivation (derivations/vertex_recursion.py writes it out with sympy; PDLT sec. 4.3 for equal widths).
Write G^(l) = K^(l) + dG with E[dG] = G1/n_{l-1}, Cov(dG) = V/n_{l-1}. By the law of total covariance,
n_l Cov(G^(l+1)) = n_l E[Cov(. | G^(l))] + n_l Cov(E[. | G^(l)]), E[G^(l+1) | G^(l)] = C_b + C_W <ss>_{G^(l)},
and Price's theorem d<f>_K = (1/2) sum_{bc} <d_b d_c f>_K dK_{bc} (sum over ordered pairs, dK symmetric):

    V^(l+1)_{(a1a2)(a3a4)} = C_W^2 [<s1 s2 s3 s4> - <s1 s2><s3 s4>]_{K^(l)}
        + r_l (C_W^2 / 4) sum_{b1..b4} <d_b1 d_b2 (s_a1 s_a2)> V^(l)_{(b1b2)(b3b4)} <d_b3 d_b4 (s_a3 s_a4)>,
    G1^(l+1)_{a1a2} = r_l [ (C_W/2) sum_{b1b2} <d_b1 d_b2 (s_a1 s_a2)> G1^(l)_{b1b2}
        + (C_W/8) sum_{b1..b4} <d_b1 d_b2 d_b3 d_b4 (s_a1 s_a2)> V^(l)_{(b1b2)(b3b4)} ],

    with the width ratio r_l = n_l / n_{l-1} (the width of layer l over that of layer l-1): it multiplies
    the terms carried over from layer l, because V^(l) was normalized by n_{l-1} and V^(l+1) by n_l.

Single input (d_b d_c -> d^2, <(s^2)''>/2 = d<s^2>/dK, <(s^2)''''>/4 = d^2<s^2>/dK^2):

    V^(l+1)  = C_W^2 (<s^4> - <s^2>^2) + r_l chi_par^2 V^(l),       chi_par = C_W d<s^2>_K/dK,
    G1^(l+1) = r_l [chi_par G1^(l) + (C_W/2) (d^2<s^2>_K/dK^2) V^(l)],
    d^k<f>_K/dK^k = <f(sqrt(K) u) He_{2k}(u)> / (2K)^k   (u ~ N(0,1), He the probabilists' Hermite).

<s^2>_K linear in K (linear, ReLU, any scale-invariant sigma) gives G1 = 0 for one input. Connected
four-point function of layer l: E[z^4] - 3 E[z^2]^2 = 3 Var(G^(l)), so the excess kurtosis of one
neuron of layer l is 3 V^(l) / (n_{l-1} K^(l)^2) + O(1/n^2) (readout: l = L + 1, n_L).

Gaussian derivatives by integration by parts (THEORY.md; f depends only on the inputs S = {a1, a2}):
<d_b d_c f>_K = <f H_bc>, H_bc = y_b y_c - Kinv_bc, and <d^4 f> = <f H_bcde> with y = Kinv z and
H_bcde = y_b y_c y_d y_e - (6 terms Kinv y y) + (3 terms Kinv Kinv), Kinv the inverse of K restricted to S.

Quadrature (multi-input): nested one-dimensional Gauss-Legendre rules in the Cholesky coordinates
z = L u of the covariance of the d <= 4 distinct inputs involved, each u_k split at the point where
z_k = 0 (the kink of ReLU-type sigma), cut at |u| = 10 for d <= 2 (used with Hermite weights of
degree 4) and 8 for d = 3, 4 (tail 1.2e-15). Each 1-D integrand is then
smooth on both sides of its split. Measured errors for relu/erf products and polynomial moments:
< 1e-13 (d = 2, 32 nodes per side), < 1e-11 (d = 3, 32), < 1e-8 (d = 4, 20; 2.6e6 points)
(tests/test_finite_width.py). Single input: a 1-D rule split at 0, 200 nodes per side, cut 12.
"""
from __future__ import annotations

import functools
import itertools
import math
from typing import NamedTuple

import numpy as np

from .activations import get_activation
from .conventions import check_depth, check_widths, layer_constants
from .kernels import nngp

__all__ = ["SingleInput", "MultiInput", "single_input", "multi_input", "single_input_step",
           "neuron_excess_kurtosis", "gaussian_rule", "nu_scale_invariant", "nu_from_recursion",
           "width_ratios"]

_CUTS = {1: 10.0, 2: 10.0}  # |u| cut by dimension (default 8): wide enough for He_4 weights
_NODES = {1: 48, 2: 32, 3: 32, 4: 20}  # Gauss-Legendre nodes per side of the split, by dimension


# ------------------------------------------------------------------------------- quadrature
@functools.lru_cache(maxsize=None)
def _legendre(m: int):
    return np.polynomial.legendre.leggauss(m)


def gaussian_rule(K, n_nodes=None):
    """Nodes z (P, d) and weights w (P,) with sum_p w_p f(z_p) ~= E[f(z)], z ~ N(0, K), K (d, d) > 0.

    Nested Gauss-Legendre in the Cholesky coordinates z = L u, the u_k rule split where z_k = 0
    (module docstring). n_nodes per side of each split; default by d: 48, 32, 32, 20 (d = 1..4).
    """
    K = np.atleast_2d(np.asarray(K, dtype=np.float64))
    d = K.shape[0]
    if K.shape != (d, d) or not np.all(np.isfinite(K)):
        raise ValueError(f"K with shape {K.shape} is not allowed: give a finite square covariance")
    try:
        L = np.linalg.cholesky(K)
    except np.linalg.LinAlgError:
        raise ValueError(f"K={K.tolist()} is not allowed: the covariance of the inputs involved must be "
                         "positive definite (distinct, linearly independent inputs or C_b > 0)") from None
    t, wt = _legendre(int(n_nodes or _NODES.get(d, 12)))
    cut = _CUTS.get(d, 8.0)
    U, W = np.zeros((1, 0)), np.ones(1)
    for k in range(d):
        split = np.clip(-(U @ L[k, :k]) / L[k, k], -cut, cut)
        xs, ws = [], []
        for a, b in ((np.full_like(split, -cut), split), (split, np.full_like(split, cut))):
            h = 0.5 * (b - a)
            x = h[:, None] * t + 0.5 * (a + b)[:, None]
            xs.append(x)
            ws.append(h[:, None] * wt * np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi))
        x, w = np.concatenate(xs, 1), np.concatenate(ws, 1)
        U = np.concatenate([np.repeat(U, x.shape[1], 0), x.reshape(-1, 1)], 1)
        W = (W[:, None] * w).reshape(-1)
    return U @ L.T, W


def _sigma(act, z):
    return np.asarray(act.fn(z), dtype=np.float64)


class _Layer:
    """Gaussian expectations of one layer at kernel K (N, N), each on the rule of its own inputs."""

    def __init__(self, act, K):
        self.act, self.K = act, K
        self._rules = {}

    def rule(self, subset):
        if subset not in self._rules:
            z, w = gaussian_rule(self.K[np.ix_(subset, subset)])
            self._rules[subset] = (_sigma(self.act, z), z, w)
        return self._rules[subset]

    def product_moment(self, idx):
        """<prod_i sigma(z_{idx_i})>."""
        subset = tuple(sorted(set(idx)))
        s, _, w = self.rule(subset)
        return float(w @ np.prod(s[:, [subset.index(i) for i in idx]], axis=1))

    def symmetric_tensor(self, order):
        """T[a1..a_order] = <sigma_a1 .. sigma_a_order>, shape (N,) * order."""
        N = self.K.shape[0]
        T = np.empty((N,) * order)
        for idx in itertools.combinations_with_replacement(range(N), order):
            val = self.product_moment(idx)
            for p in set(itertools.permutations(idx)):
                T[p] = val
        return T

    def derivative_tensor(self, order):
        """D[a1, a2, b_1..b_order] = <d_b1 .. d_b_order (sigma_a1 sigma_a2)>_K by integration by parts."""
        N = self.K.shape[0]
        D = np.zeros((N,) * (2 + order))
        for a1, a2 in itertools.combinations_with_replacement(range(N), 2):
            subset = tuple(sorted({a1, a2}))
            s, z, w = self.rule(subset)
            Kinv = np.linalg.inv(self.K[np.ix_(subset, subset)])
            fw = w * s[:, subset.index(a1)] * s[:, subset.index(a2)]
            H = _hermite_tensor(z @ Kinv, Kinv, order)  # (P,) + (d,) * order
            vals = np.tensordot(fw, H, axes=(0, 0))
            for bs in itertools.product(range(len(subset)), repeat=order):
                g = tuple(subset[b] for b in bs)
                D[(a1, a2) + g] = D[(a2, a1) + g] = vals[bs]
        return D


def _hermite_tensor(y, Kinv, order):
    """Multivariate Hermite tensors for <d^order f> = <f H>: y (P, d) = Kinv z. order 2 or 4."""
    yy = np.einsum("pb,pc->pbc", y, y)
    if order == 2:
        return yy - Kinv
    if order == 4:
        pairs = ("bc,de", "bd,ce", "be,cd")  # the three ways to pair (b, c, d, e)
        out = np.einsum("pb,pc,pd,pe->pbcde", y, y, y, y)
        for p in pairs:
            (i, j), (k, m) = p.split(",")
            out -= np.einsum(f"{i}{j},p{k},p{m}->pbcde", Kinv, y, y)
            out -= np.einsum(f"{k}{m},p{i},p{j}->pbcde", Kinv, y, y)
            out += np.einsum(f"{p}->bcde", Kinv, Kinv)[None]
        return out
    raise ValueError(f"order={order!r} is not allowed: 2 or 4")


# ------------------------------------------------------------------------------- widths
def width_ratios(widths, depth) -> np.ndarray:
    """r (depth,), r[l-1] = n_l / n_{l-1} multiplying the layer-l terms in the layer-(l+1) recursion.

    widths: None (all equal: r = 1) or (n_1, .., n_depth). r[0] multiplies V^(1) = G1^(1) = 0 and is 1.
    """
    depth = check_depth(depth)
    r = np.ones(depth)
    if widths is None:
        return r
    ws = check_widths(widths)
    if len(ws) != depth:
        raise ValueError(f"widths={ws!r} has {len(ws)} entries but depth={depth}: give one width per "
                         "hidden layer (n_1, .., n_depth), or None for equal widths")
    r[1:] = np.array(ws[1:], dtype=np.float64) / np.array(ws[:-1], dtype=np.float64)
    return r


# ------------------------------------------------------------------------------- single input
@functools.lru_cache(maxsize=8)
def _std_normal_rule(n: int = 200, cut: float = 12.0):
    """u nodes and weights for E[g(u)], u ~ N(0,1): Gauss-Legendre on [-cut, 0] and [0, cut]."""
    t, w = _legendre(n)
    x = 0.5 * cut * (t + 1.0)
    w = 0.5 * cut * w * np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)
    return np.concatenate([-x, x]), np.concatenate([w, w])


def _single_moments(act, K):
    """(<s^2>, <s^4>, d<s^2>/dK, d^2<s^2>/dK^2) at variance K > 0 (module docstring)."""
    u, w = _std_normal_rule()
    s2 = _sigma(act, math.sqrt(K) * u) ** 2
    he2, he4 = u * u - 1.0, u ** 4 - 6.0 * u * u + 3.0
    return w @ s2, w @ (s2 * s2), (w @ (s2 * he2)) / (2 * K), (w @ (s2 * he4)) / (4 * K * K)


def single_input_step(K, V, G1, r, *, activation, C_W, C_b):
    """One layer of the single-input recursion: (K, V, G1) of layer l -> layer l + 1, and chi_par.

    K' = C_b + C_W <s^2>,  V' = C_W^2 (<s^4> - <s^2>^2) + r chi^2 V,
    G1' = r [chi G1 + (C_W/2) d^2<s^2>/dK^2 V],  chi = C_W d<s^2>/dK,  r = n_l / n_{l-1}.
    Returns (K', V', G1', chi).
    """
    act = get_activation(activation)
    if not (np.isfinite(K) and K > 0):
        raise ValueError(f"K={K!r} is not allowed: the kernel must be finite and > 0")
    m2, m4, dm2, d2m2 = _single_moments(act, float(K))
    chi = C_W * dm2
    return (C_b + C_W * m2, C_W ** 2 * (m4 - m2 * m2) + r * chi * chi * V,
            r * (chi * G1 + 0.5 * C_W * d2m2 * V), chi)


class SingleInput(NamedTuple):
    """Single-input finite-width data, arrays over layers l = 1 .. depth+1 (readout last).

    K: kernel K^(l); V: vertex V^(l) (normalized by n_{l-1}); G1: E[G^(l)] = K + G1/n_{l-1};
    chi_par: (depth,) the susceptibility at K^(l), l = 1..depth; widths: the widths used (or None).
    """

    K: np.ndarray
    V: np.ndarray
    G1: np.ndarray
    chi_par: np.ndarray
    widths: tuple | None


def single_input(K1, *, depth, activation, C_W, C_b, widths=None) -> SingleInput:
    """K^(l), V^(l), G1^(l) for one input with K^(1) = K1 = C_b + C_W |x|^2 / n_0 (module docstring).

    C_W, C_b: scalars or per layer (length depth + 1). widths: None (equal) or (n_1, .., n_depth).

    >>> out = single_input(1.0, depth=2, activation="linear", C_W=1.0, C_b=0.0)
    >>> np.round(out.V, 12).tolist(), bool(np.all(np.abs(out.G1) < 1e-12))   # V^(l)/K^2 = 2 (l - 1)
    ([0.0, 2.0, 4.0], True)
    """
    depth = check_depth(depth)
    cw, cb = layer_constants(depth, C_W, C_b)
    r = width_ratios(widths, depth)
    K, V, G1, chis = [float(K1)], [0.0], [0.0], []
    for l in range(depth):
        k, v, g, chi = single_input_step(K[-1], V[-1], G1[-1], r[l], activation=activation,
                                         C_W=cw[l + 1], C_b=cb[l + 1])
        K.append(k), V.append(v), G1.append(g), chis.append(chi)
    return SingleInput(np.array(K), np.array(V), np.array(G1), np.array(chis),
                       None if widths is None else check_widths(widths))


def neuron_excess_kurtosis(V, K, n_prev):
    """Excess kurtosis of one preactivation of layer l to first order: 3 V^(l) / (n_{l-1} K^(l)^2)."""
    return 3.0 * np.asarray(V) / (np.asarray(n_prev, dtype=np.float64) * np.asarray(K) ** 2)


# ------------------------------------------------------------------------------- multi input
class MultiInput(NamedTuple):
    """Multi-input finite-width data over layers l = 1 .. depth+1.

    K (depth+1, N, N); V (depth+1, N, N, N, N), V[l-1, a1, a2, a3, a4] = V^(l)_{(a1a2)(a3a4)};
    G1 (depth+1, N, N) or None; widths.
    """

    K: np.ndarray
    V: np.ndarray
    G1: np.ndarray | None
    widths: tuple | None


def multi_input(x, *, depth, activation, C_W, C_b, widths=None, kernel_shift=True) -> MultiInput:
    """Four-point vertex V^(l) and (if ``kernel_shift``) G1^(l) for inputs x (N, n_0), N <= 4 distinct.

    Recursion and quadrature: module docstring. Cost per layer: one quadrature per subset of <= 4
    inputs (up to 40^4 points); meant for a few inputs. K^(l) from :func:`sft.kernels.nngp`.
    """
    act = get_activation(activation)
    depth = check_depth(depth)
    cw, cb = layer_constants(depth, C_W, C_b)
    r = width_ratios(widths, depth)
    Ks = nngp(x, depth=depth, activation=act, C_W=cw, C_b=cb, all_layers=True)
    N = Ks.shape[1]
    if N > 4:
        raise ValueError(f"x has {N} inputs: multi_input handles at most 4 (four-point quadrature)")
    V, G1 = [np.zeros((N,) * 4)], [np.zeros((N, N))]
    for l in range(depth):
        lay = _Layer(act, Ks[l])
        s2 = lay.symmetric_tensor(2)
        fresh = lay.symmetric_tensor(4) - np.einsum("ab,cd->abcd", s2, s2)
        D2 = lay.derivative_tensor(2)
        V.append(cw[l + 1] ** 2 * fresh
                 + r[l] * cw[l + 1] ** 2 / 4 * np.einsum("abij,ijkl,cdkl->abcd", D2, V[-1], D2))
        if kernel_shift:
            D4 = lay.derivative_tensor(4)
            G1.append(r[l] * (cw[l + 1] / 2 * np.einsum("abij,ij->ab", D2, G1[-1])
                              + cw[l + 1] / 8 * np.einsum("abijkl,ijkl->ab", D4, V[-2])))
    return MultiInput(Ks, np.stack(V), np.stack(G1) if kernel_shift else None,
                      None if widths is None else check_widths(widths))


# ------------------------------------------------------------------------------- criticality
def nu_scale_invariant(a_plus, a_minus) -> float:
    """nu of V^(l) / K^2 = nu (l - 1) at criticality (C_b = 0, C_W = 1/A2) for scale-invariant sigma.

    From the single-input recursion with chi_par = 1, <s^2> = A2 K, <s^4> = 3 A4 K^2:
    V^(l+1) = (3 A4/A2^2 - 1) K^2 + V^(l), so nu = 3 A4 / A2^2 - 1, A_k = (a+^k + a-^k)/2
    (ReLU 5, linear 2, abs 2; cf. PDLT ch. 5, scale-invariant class). Same nu as the exact law in
    :mod:`sft.deep_linear`, where it holds at any width.
    """
    from .deep_linear import scale_invariant_nu
    return scale_invariant_nu(a_plus, a_minus)


def nu_from_recursion(activation, *, C_W, C_b=0.0, K1=1.0, depth=1000) -> float:
    """nu estimated from the recursion: V^(L+1) / (L K^(L+1)^2) at depth L (equal widths).

    Scale-invariant sigma at criticality: exactly nu for any L. K* = 0 class (tanh, erf at C_W = 1/sigma_1^2,
    C_b = 0): K^(l) ~ 1/((-a1) l) and w = V/K^2 obeys w' = w + 2 - 2 w / l + ..., so nu = 2/3
    with corrections O(log L / L) (derivations/vertex_recursion.py).
    """
    out = single_input(K1, depth=depth, activation=activation, C_W=C_W, C_b=C_b)
    return float(out.V[-1] / (depth * out.K[-1] ** 2))
