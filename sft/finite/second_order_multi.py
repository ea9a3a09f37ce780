"""Multi-input finite-width statistics to O(1/n^2): kernel shift G2, vertex correction V1, six-point vertex U.

Conventions: :mod:`sft.conventions`; the single-input definitions of :mod:`sft.finite.second_order`
with the metric's entries as variables. For N inputs, pairs P = (a, b), a <= b, and n = n_{l-1}:

    E[G_P]                = K_P + G1_P / n + G2_P / n^2,
    Cov(G_P, G_Q)         = V_PQ / n + V1_PQ / n^2,
    kappa_3(G_P, G_Q, G_R) = U_PQR / n^2                         (+ O(1/n^3) each),

returned as symmetric tensors G2 (N, N), V1 (N,)*4 with V1[a1, a2, a3, a4] = V1_{(a1a2)(a3a4)}, and
U (N,)*6 with U[a1..a6] = U_{(a1a2)(a3a4)(a5a6)}. The connected six-point function of layer l is
E[z_{i1;a1} .. z_{i6;a6}]_c = (1/n^2) sum over the 15 pairings {(jk)(lm)(op)} of
d_{i_j i_k} d_{i_l i_m} d_{i_o i_p} U_{(a_j a_k)(a_l a_m)(a_o a_p)} (d the Kronecker delta; conditional Gaussianity).

Recursion: the law of total cumulance (Brillinger 1969) over the metric of layer l, the steps of
derivations/second_order_recursion.py with tensor indices, derived symbolically in
derivations/second_order_multi.py (tests/test_second_order_multi.py asserts exact equality).
Given G = K + delta, the conditional cumulants of G' = G^(l+1) are k1 = C_b + C_W <s_a s_b>_G (so K' = k1(K)),
k2 = (1/n_l) F2(G),
F2_PQ = C_W^2 (<s_a s_b s_c s_d> - <s_a s_b><s_c s_d>), k3 = (1/n_l^2) F3(G), F3 the third joint
cumulant of C_W s_a s_b, C_W s_c s_d, C_W s_e s_f (z ~ N(0, G)). Taylor coefficients in delta (over the pair
variables) B = dk1, C = d^2 k1, D = d^3 k1, E = d^4 k1, F2' = dF2, F2'' = d^2 F2 at K; with r = n_l / n_{l-1},

    G1' = r [B g1 + C:V / 2]
    G2' = r^2 [B g2 + C:(V1 + g1 g1) / 2 + D:(U + S3(V g1)) / 6 + E:(V V)_3 / 24]
    V'  = F2 + r B V B^T
    V1' = r [F2' g1 + F2'':V / 2] + r^2 [B V1 B^T + (B (U + V g1 + g1 V) C^T + transpose) / 2
          + C (V V)_2 C / 4 + (B (V V)_3 D^T + transpose) / 6]
    U'  = F3 + r S3(B V F2'^T) + r^2 [B B B : U + S3(B B C : (V V)_2) / 2]

with, over pair indices A..D, (V g1)_ABC = V_AB g1_C, S3 the sum over the 3 placements of the distinct
index (S3(V g1)_ABC = V_AB g1_C + V_AC g1_B + V_BC g1_A), (V V)_2 = V_AC V_BD + V_AD V_BC (the eps^2 part of
Cov(d_A d_B, d_C d_D)), (V V)_3 = V_AB V_CD + (V V)_2 (of E[d_A d_B d_C d_D]), (B V F2'^T)_PQR =
B_PA V_AB F2'_QR,B (n_l Cov(k1_P, k2_QR) / eps^2) and (B B C : (V V)_2)_PQR = B_PA B_QB C_R,CD (V V)_2,ABCD
(kappa_3(B d, B d, C d d / 2) is half of it)
(written out in :func:`second_order_multi_step`; at N = 1 it is :func:`sft.finite.second_order_step`, tested).

Gaussian derivatives (Price), in closed form: with theta over the pair variables (c_P = 1 for a < b, 1/2 for
a = b), rho = phi_{K + theta}(z) / phi_K(z), y = K^{-1} z, Lam = K^{-1}, d^j rho = prod c H_{a1 b1 .. aj bj}(y), the
multivariate Hermite polynomials H_{S+i} = y_i H_S - sum_{j in S} Lam_ij H_{S-j} (H_ab = y_a y_b - Lam_ab; checked
against sympy derivatives of the density ratio). The step never forms F2'' (P^4), d^2 rho (M P^2) or E (P^5): it
takes the contractions F2':g1 (P, P), F2'':V (P, P) and B V F2'^T (P, P, P), whose weights are scalars per node,
rho_g = (y G y - tr Lam G) / 2 (G_ab = g1_(ab)) and rho_V = (1/4) W_ijkl H_ijkl(y) (W_ijkl = V_(ij)(kl)); k1_P
depends on its own <= 3 pair variables only, so C, D, E are stored on those (work O(P^4) per layer, not O(P^6)).

Integration and what is exact:
- K: the pair rules below (equal to :func:`sft.kernels.nngp` within ~1e-12).
- k1 and its derivatives to 4th order: each <s_a s_b> on the nested Gauss-Legendre rule of its own <= 2 inputs
  (:func:`sft.finite.gaussian_rule`), for every N: exact to quadrature accuracy (~1e-12).
- F2, F3 and the contractions (up to 4 and 6 activations on all N inputs):
  ``integration="rule"``: the nested rule of all N inputs ((2 x 32)^3 = 262144 nodes at N = 3, 40^4 at N = 4;
  the default for N <= MAX_RULE_INPUTS = 3, allowed to N = 4): exact to quadrature accuracy. Measured: equal to
  the previous route (jax.jacfwd of the log-density, full tensors) to 1e-11 (tanh, relu, erf; N = 1..3, depth
  2-3); linear activation vs the Wick closed forms, relative 2e-9 (N = 3) and 3e-8 (N = 4, V1), the |u| <= 8
  truncation of the rule.
  ``integration="qmc"`` (default for N >= 4): randomized quasi-Monte Carlo, z = L Phi^{-1}(u) with u from
  ``n_scrambles`` independent scrambled Sobol sequences (scipy.stats.qmc.Sobol, seeded by ``seed``) of
  ``n_points`` points each; the whole recursion runs once per scramble (the same points at every layer), the
  result is the mean over scrambles and ``stderr`` its standard error (the integration error of G1, G2, V, V1,
  U; K is exact). For the smooth activations of SMOOTH_ACTIVATIONS (tanh, erf, ..., linear) the contractions
  are integrated by parts, E[F H_S(y)] = E[d_S F] (Stein): bounded integrands, no polynomial weights; for the
  rest (relu family, custom callables) the Hermite weights are used as on the rule (larger errors). Every node
  sum is centred on the node set (control variates for <X> and <rho>). Same seed -> same result.
  Measured relative integration errors, max stderr / max |entry| at the readout (depth 10, C_W = 1 (relu 2),
  C_b = 0, N random inputs on the sphere |x|^2/n_0 = 1 of R^8, seed 0; 8 scrambles):
      tanh N = 4, 2^13 points: U 6.5e-4, V1 5.9e-4, V 5.8e-4, G1 7.2e-4, G2 1.7e-3
      erf  N = 4, 2^13:        U 5.4e-4, V1 7.4e-4, V 4.1e-4, G1 9.9e-4, G2 6.5e-3
      tanh N = 8, 2^15:        U 4.4e-4, V1 8.5e-4, V 6.3e-4, G1 9.3e-4, G2 3.2e-3  (2^13: U 4.4e-3)
      erf  N = 8, 2^13:        U 4.6e-3 (2^15 not measured)
      relu N = 4, 2^13:        U 1.3e-2, V1 9.4e-2, G2 0.27;  N = 8: U 6.3e-2, V1 0.35, G2 0.68 (Hermite
                               weights: G2 and V1 of deep relu networks need far more points)
  and at N = 3, depth 3, tanh, 2^13: U 2e-4 with the estimates within their errors of the rule's values.
Cost: ~depth x M x (2 P^3 + 80 P^2) operations (M the nodes, P = N(N+1)/2), outputs N^6 per layer; ValueError
above MAX_FLOPS or MAX_BYTES with the estimate.
"""
from __future__ import annotations

import functools
import itertools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from scipy import linalg, special
from scipy.stats import qmc

from ..conventions import check_depth, check_inputs, check_int, check_widths, layer_constants, require_x64
from ..kernels.activations import get_activation
from ..symbolic.cumulants import set_partitions
from ..threads import limit_threads
from .vertex import _CUTS, _NODES, _cholesky, _rule_batch, _sigma, gaussian_rule, width_ratios

__all__ = ["SecondOrderMulti", "second_order_multi_input", "second_order_multi_step"]

#: Largest N integrated on the nested rule of all N inputs by ``integration="auto"`` (module docstring).
MAX_RULE_INPUTS = 3
#: Limits checked before any integral (module docstring): estimated floating-point operations, and bytes.
MAX_FLOPS = 2 * 10 ** 12
MAX_BYTES = 2 ** 34
_CHUNK_ENTRIES = 2 ** 22  # nodes x P^2 per block of the three-activation sums (32 MiB)


def _pairs(N):
    return [(a, b) for a in range(N) for b in range(a, N)]


def _pair_layout(N):
    """(rows, cols, c, idx): the pairs a <= b, c_p = 1 (a < b) or 1/2 (a = b), idx[a, b] = pair index."""
    rows, cols = np.array(_pairs(N)).reshape(-1, 2).T
    idx = np.zeros((N, N), dtype=int)
    idx[rows, cols] = idx[cols, rows] = np.arange(rows.size)
    return rows, cols, np.where(rows == cols, 0.5, 1.0), idx


def _inverse(K):
    """K^{-1} by Cholesky (K passed the positive-definiteness check of vertex._cholesky)."""
    return linalg.cho_solve((np.linalg.cholesky(K), True), np.eye(K.shape[-1]))


def _hermite(y, Lam, order):
    """{counts: H (B, M)} for every multiset of input indices of size <= order (counts[i] = multiplicity of i):
    H_S = (-1)^|S| (d_S phi_K)(z) / phi_K(z), y = K^{-1} z (B, M, d), Lam = K^{-1} (B, d, d), by the multivariate
    Hermite recursion H_{S+i} = y_i H_S - sum_j S_j Lam_ij H_{S-j} (symmetric: one array per multiset)."""
    d = y.shape[-1]
    H = {(0,) * d: np.ones(y.shape[:-1])}
    for k in range(order):
        for T in [t for t in itertools.product(range(k + 2), repeat=d) if sum(t) == k + 1]:
            i = next(j for j in range(d) if T[j])
            S = tuple(t - (j == i) for j, t in enumerate(T))
            h = y[..., i] * H[S]
            for j in range(d):
                if S[j]:
                    h = h - S[j] * Lam[:, i, j, None] * H[tuple(t - (m == j) for m, t in enumerate(S))]
            H[T] = h
    return H


def _pair_ratio_derivatives(y, Lam, order):
    """[d^j rho (B, M, p, .., p) for j = 0..order] over the p = d(d+1)/2 pair variables theta of K (d <= 2 here):
    rho(theta) = phi_{K + theta}(z) / phi_K(z), d rho / d theta_(ab) = c_ab H_ab (Price; c = 1 off the diagonal,
    1/2 on it), so d^j rho = prod c H at the multiset of the pairs' indices."""
    d = y.shape[-1]
    rows, cols, c, _ = _pair_layout(d)
    H = _hermite(y, Lam, 2 * order)
    out = []
    for j in range(order + 1):
        D = np.empty(y.shape[:-1] + (rows.size,) * j)
        for ps in itertools.product(range(rows.size), repeat=j):
            counts = np.bincount(np.concatenate([rows[list(ps)], cols[list(ps)]]).astype(int), minlength=d)
            D[(Ellipsis,) + ps] = np.prod(c[list(ps)]) * H[tuple(counts)]
        out.append(D)
    return out


class _PairData(NamedTuple):
    """Taylor coefficients of k1_P = C_W <s_a s_b> at K over its own <= 3 pair variables loc[P] (global pair
    indices): a (P,), B (P, P) dense; C, D, E local, C[P] (p_P,)*2, D[P] (p_P,)*3, E[P] (p_P,)*4 on loc[P]."""
    a: np.ndarray
    B: np.ndarray
    C: list
    D: list
    E: list
    loc: list


def _pair_taylor(Fw, y, Lam, order):
    """[sum_m Fw[b, m] d^j rho[b, m, ...] (B, p^j) for j = 0..order] (d^j rho of :func:`_pair_ratio_derivatives`):
    the node sums of the Hermite polynomials of each index multiset first, then placed on the pair tuples."""
    d = y.shape[-1]
    rows, cols, c, _ = _pair_layout(d)
    H = {k: np.einsum("bm,bm->b", Fw, h) for k, h in _hermite(y, Lam, 2 * order).items()}
    out = []
    for j in range(order + 1):
        T = np.empty((y.shape[0],) + (rows.size,) * j)
        for ps in itertools.product(range(rows.size), repeat=j):
            counts = np.bincount(np.concatenate([rows[list(ps)], cols[list(ps)]]).astype(int), minlength=d)
            T[(slice(None),) + ps] = np.prod(c[list(ps)]) * H[tuple(counts)]
        out.append(T)
    return out


def _pair_data(act, K, C_W):
    """k1 and its derivatives to 4th order, each <s_a s_b> on the nested rule of its own d <= 2 inputs (exact
    route for every N: the Gauss-Legendre rule of :func:`sft.finite.gaussian_rule`, batched over pairs)."""
    N = K.shape[0]
    rows, cols, _, idx = _pair_layout(N)
    P = rows.size
    a, B = np.zeros(P), np.zeros((P, P))
    C, D, E, loc = [None] * P, [None] * P, [None] * P, [None] * P
    for d, sel in ((1, np.flatnonzero(rows == cols)), (2, np.flatnonzero(rows != cols))):
        if sel.size == 0:
            continue
        sub = np.stack([rows[sel], cols[sel]], 1)[:, :d]
        Ks = K[sub[:, :, None], sub[:, None, :]]
        z, w = _rule_batch(_cholesky(Ks), _NODES[d], _CUTS.get(d, 8.0))
        Lam = _inverse(Ks)
        s = _sigma(act, z)
        T = _pair_taylor(C_W * s[..., 0] * s[..., -1] * w, np.einsum("bmi,bij->bmj", z, Lam), Lam, 4)
        lr, lc, _, _ = _pair_layout(d)
        locs = idx[sub[:, lr], sub[:, lc]]                      # (S, p_d) global index of each local pair
        for i, p in enumerate(sel):
            a[p], B[p, locs[i]] = T[0][i], T[1][i]
            C[p], D[p], E[p], loc[p] = T[2][i], T[3][i], T[4][i], locs[i]
    return _PairData(a, B, C, D, E, loc)


def _rho_V(y, Lam, W):
    """sum_PQ V_PQ d^2 rho / d theta_P d theta_Q at the nodes, W_ijkl = V_(ij)(kl) (N,)*4: one quarter of
    W(y,y,y,y) - 2 y Q y - 4 y R y + W:Lam:Lam + 2 W_ijkl Lam_ik Lam_jl, Q_kl = Lam_ij W_ijkl, R_jl = Lam_ik W_ijkl
    (W contracted with the multivariate Hermite polynomial H_ijkl, using W's pair symmetries)."""
    M, N = y.shape
    yy = (y[:, :, None] * y[:, None, :]).reshape(M, N * N)
    Q = np.einsum("ij,ijkl->kl", Lam, W)
    R = np.einsum("ik,ijkl->jl", Lam, W)
    c0 = np.einsum("ij,kl,ijkl->", Lam, Lam, W) + 2 * np.einsum("ik,jl,ijkl->", Lam, Lam, W)
    quartic = np.einsum("mi,mi->m", yy @ W.reshape(N * N, N * N), yy)
    return 0.25 * (quartic - 2 * yy @ Q.ravel() - 4 * yy @ R.ravel() + c0)


class _Contractions(NamedTuple):
    """What the step needs of F2 and F3 (module docstring): F2 (P, P), F2':g1 (P, P), F2'':V (P, P),
    cross_PQR = sum_b (B V)_Pb F2'_QR,b (P,)*3, F3 (P,)*3."""
    F2: np.ndarray
    F2p_g1: np.ndarray
    F2pp_V: np.ndarray
    cross: np.ndarray
    F3: np.ndarray


#: Activations integrated by parts (Stein) on the randomized route: smooth, derivatives to 4th order by JAX.
SMOOTH_ACTIVATIONS = ("tanh", "erf", "sigmoid", "gelu", "swish", "silu", "softplus", "sin", "cos", "linear")


@functools.lru_cache(maxsize=32)
def _derivatives_fn(fn):
    fs = [fn]
    for _ in range(4):
        fs.append(jax.grad(fs[-1]))
    return jax.jit(lambda z: jnp.stack([jax.vmap(f)(z) for f in fs]))


def _activation_derivatives(act, z):
    """[sigma^(k)(z) for k = 0..4] (5,) + z.shape, float64, by JAX autodiff (one compilation per shape)."""
    return np.asarray(_derivatives_fn(act.fn)(jnp.asarray(z.ravel()))).reshape((5,) + z.shape)


def _stein_contractions(act, C_W, z, w, g1, V, BV, idx, X):
    """F2':g1, F2'':V and cross integrated by parts (Stein / Price: <F H_S> = <d_S F>): with Gamma = g1 as an (N, N)
    matrix, E[F (y Gamma y - tr Lam Gamma) / 2] = (1/2) Gamma_ij E[d_i d_j F], and W_ijkl = V_(ij)(kl),
    E[F rho_V] = (1/4) W_ijkl E[d_ijkl F]. For F = X_P X_Q = C_W^2 s_a s_b s_c s_d the product rule sends each
    derivative index to one slot (a, b, c, d): the sum over the 4^j slot sequences of T[slot inputs] times
    E[s^(n1)_a s^(n2)_b s^(n3)_c s^(n4)_d] (n the derivatives per slot); the slot pairs without derivatives are
    centred (the -<X_P><X_Q rho> terms). Bounded integrands for bounded sigma^(k): no polynomial weights."""
    rows, cols, c, _ = _pair_layout(idx.shape[0])
    S = _activation_derivatives(act, z)
    v = {}
    for i in range(5):
        for j in range(5 - i):
            f = S[i][:, rows] * S[j][:, cols]
            v[i, j] = f - w @ f if i == j == 0 else f
    Ev = {}

    def expect(n):  # E[v_(n1 n2)_P v_(n3 n4)_Q] (P, P)
        if n not in Ev:
            Ev[n] = (v[n[:2]] * w[:, None]).T @ v[n[2:]]
        return Ev[n]
    slot = [rows[:, None], cols[:, None], rows[None, :], cols[None, :]]

    def weighted(gather, order):
        out = 0
        for seq in itertools.product(range(4), repeat=order):
            out = out + gather([slot[k] for k in seq]) * expect(tuple(seq.count(k) for k in range(4)))
        return C_W ** 2 / 2 ** (order // 2) * out
    G, W, Gp = g1[idx], V[idx[:, :, None, None], idx[None, None, :, :]], BV[:, idx]
    F2p_g1 = weighted(lambda s: G[s[0], s[1]], 2)
    mean2 = {n: w @ v[n] for n in ((2, 0), (1, 1), (0, 2))}
    D1 = np.zeros((rows.size, rows.size))   # <X_P rho_R> = c_R C_W <d_i d_j (s_a s_b)>, R = (i, j)
    for s0, s1 in itertools.product(range(2), repeat=2):
        a0, a1 = (rows, cols)[s0][:, None], (rows, cols)[s1][:, None]
        counts = (int(s0 == 0) + int(s1 == 0), int(s0 == 1) + int(s1 == 1))
        D1 += (a0 == rows[None, :]) * (a1 == cols[None, :]) * mean2[counts][:, None]
    D1 *= C_W * c[None, :]
    F2pp_V = weighted(lambda s: W[s[0], s[1], s[2], s[3]], 4) - 2 * D1 @ V @ D1.T
    cross = weighted(lambda s: Gp[:, s[0], s[1]], 2)
    return F2p_g1, F2pp_V, cross


def _global_contractions(act, K, C_W, z, w, g1, V, BV, stein=False):
    """_Contractions from nodes z (M, N) and weights w (M,) of z ~ N(0, K): the Price derivatives of the density
    ratio contracted with g1, V and the rows of B V in closed form (polynomials in y = K^{-1} z), O(M P^3); with
    ``stein`` those three by parts on the activation's derivatives (:func:`_stein_contractions`)."""
    N = K.shape[0]
    rows, cols, c, idx = _pair_layout(N)
    P = rows.size
    Lam = _inverse(K)
    y = z @ Lam
    s = _sigma(act, z)
    X = C_W * s[:, rows] * s[:, cols]                       # (M, P)
    # centred: E[(X_P - <X_P>)(X_Q - <X_Q>) rho] = <X_P X_Q rho> - <X_P rho><X_Q> - <X_P><X_Q rho> as <rho> = 0,
    # so centring X and rho on the nodes changes nothing in expectation (and by ~1e-13 on the rule) but removes
    # the node-set fluctuations of <X> and <rho> from the randomized estimates (control variates)
    X = X - w @ X
    Xw = X * w[:, None]
    F2 = Xw.T @ X
    if stein:
        F2p_g1, F2pp_V, cross = _stein_contractions(act, C_W, z, w, g1, V, BV, idx, X)
        Y = Xw
    else:
        rho1 = c * (y[:, rows] * y[:, cols] - Lam[rows, cols])  # d rho / d theta_P
        rho_g = rho1 @ g1
        rho_v = _rho_V(y, Lam, V[idx[:, :, None, None], idx[None, None, :, :]])
        rho_p = rho1 @ BV.T                                     # column P: sum_b (B V)_Pb d rho / d theta_b
        rho1, rho_g, rho_v, rho_p = (f - w @ f for f in (rho1, rho_g, rho_v, rho_p))
        D1 = Xw.T @ rho1                                        # <X_P d rho / d theta_a>
        F2p_g1 = (Xw * rho_g[:, None]).T @ X
        F2pp_V = (Xw * rho_v[:, None]).T @ X - 2 * D1 @ V @ D1.T
        Y = np.concatenate([Xw, rho_p * w[:, None]], 1)         # (M, 2P)
    tq, tr = np.triu_indices(P)                             # the sums are symmetric in (Q, R): Q <= R only
    Tu = np.zeros((tq.size, Y.shape[1]))
    step = max(1, _CHUNK_ENTRIES // tq.size)
    for i in range(0, z.shape[0], step):
        Tu += (X[i:i + step, tq] * X[i:i + step, tr]).T @ Y[i:i + step]
    T = np.empty((P, P, Y.shape[1]))
    T[tq, tr], T[tr, tq] = Tu, Tu
    F3 = T[..., :P]                                         # third central moment = third cumulant
    if not stein:
        cross = np.moveaxis(T[..., P:], 2, 0)               # [P, Q, R] = <X_Q X_R rho_P> (centred)
    return _Contractions(F2, F2p_g1, F2pp_V, cross, F3)


def _sym3(T):
    """Sum over the 3 placements: T_ABC + T_ACB... for T = X_AB Y_C -> X_AB Y_C + X_AC Y_B + X_BC Y_A."""
    return T + np.swapaxes(T, 1, 2) + np.moveaxis(T, 2, 0)


def _ein(spec, *ops):
    """einsum with a contraction order for large P (no P^5+ intermediates); plain for small P (the path
    search costs more than the contraction there)."""
    return np.einsum(spec, *ops, optimize=max(np.shape(o)[0] if np.ndim(o) else 0 for o in ops) > 8)


def _local(T, l, lead=0):
    """T restricted to the local pair indices l on its axes after the first ``lead`` ones."""
    return T[(slice(None),) * lead + np.ix_(*([l] * (T.ndim - lead)))]


def _step(state, a, B, k1, con, r, C_b):
    """The layer map of the module docstring from the k1 coefficients (a, B dense; k1 = (C, D, E, loc) local, as in
    :class:`_PairData`) and the contractions of F2, F3 (:class:`_Contractions`). Work O(P^4) (k1_P depends on
    its own <= 3 pair variables only), largest intermediates (V V) (P,)*4; any dtype (sympy objects included)."""
    _, g1, g2, V, V1, U = state
    C, D, E, loc = k1
    P = len(loc)
    gV = _ein("ab,c->abc", V, g1)
    VV_pair = _ein("ac,bd->abcd", V, V) + _ein("ad,bc->abcd", V, V)   # Cov(dd, dd) / eps^2
    VV_all = _ein("ab,cd->abcd", V, V) + VV_pair                       # E[d^4] / eps^2

    def per_pair(T, local, lead=0):  # [sum over the local indices of local[P] * T restricted to loc[P]]
        return np.array([np.tensordot(_local(T, loc[p], lead), local[p], local[p].ndim) for p in range(P)])
    K_next = C_b + a
    G1 = r * (B @ g1 + 0.5 * per_pair(V, C))
    G2 = r ** 2 * (B @ g2 + 0.5 * per_pair(V1 + np.outer(g1, g1), C) + per_pair(U + _sym3(gV), D) / 6
                   + per_pair(VV_all, E) / 24)
    V_next = con.F2 + r * B @ V @ B.T
    CV = per_pair(VV_pair, C, 2)                                 # [q, a, b] = C_q,cd (V V)_2,abcd
    BUC = B @ per_pair(U + gV + np.swapaxes(gV, 1, 2), C, 1).T   # B_pa (U + gV + g V)_abc C_q,bc
    BVD = B @ per_pair(VV_all, D, 1).T
    CVC = per_pair(CV, C, 1)                                     # [p, q] = C_p,ab (V V)_2,abcd C_q,cd
    cov = B @ V1 @ B.T + 0.5 * (BUC + BUC.T) + 0.25 * CVC + (BVD + BVD.T) / 6
    V1_next = r * (con.F2p_g1 + 0.5 * con.F2pp_V) + r ** 2 * cov
    cross = con.cross                          # n_l Cov(k1_P, k2_QR) / (eps V): the placement (P; QR)
    BBC = _ein("pa,qb,rab->pqr", B, B, CV)
    k3_k1 = (_ein("pa,qb,rc,abc->pqr", B, B, B, U)
             + 0.5 * (BBC + np.transpose(BBC, (0, 2, 1)) + np.transpose(BBC, (2, 1, 0))))
    U_next = (con.F3 + r * (cross + np.transpose(cross, (1, 0, 2)) + np.transpose(cross, (1, 2, 0)))
              + r ** 2 * k3_k1)
    return K_next, G1, G2, V_next, V1_next, U_next


def second_order_multi_step(state, tensors, r, *, C_b):
    """One layer over the pair variables: (K, G1, G2, V, V1, U) (P,), (P,), (P,), (P, P), (P, P), (P, P, P) -> l + 1.

    tensors = (k1, F2, F2', F2'', F3) from the layer's Gaussian expectations at K (module docstring), with
    C_W already inside them; C_b enters K' only. Full tensors (any dtype, sympy objects included: the
    derivation test); :func:`second_order_multi_input` evaluates the same map from contractions
    (F2':g1, F2'':V, B V F2'^T) without forming F2'' or E.

    >>> P = 1; z = np.zeros
    >>> state = (z(P), z(P), z(P), z((P, P)), z((P, P)), z((P,) * 3))
    >>> k1 = [z(P), np.eye(P), z((P,) * 3), z((P,) * 4), z((P,) * 5)]
    >>> out = second_order_multi_step(state, (k1, np.ones((P, P)), z((P,) * 3), z((P,) * 4), z((P,) * 3)), 1.0, C_b=0)
    >>> float(out[3][0, 0])   # V' = F2 + r B V B^T
    1.0
    """
    _, g1, _, V, _, _ = state
    (a, B, C, D, E), F2, F2p, F2pp, F3 = tensors
    F2pp_V = _ein("pqab,ab->pq", F2pp, V)
    con = _Contractions(F2, _ein("pqa,a->pq", F2p, g1), F2pp_V, _ein("pa,ab,qrb->pqr", B, V, F2p), F3)
    P = len(a)
    k1 = ([np.asarray(t) for t in C], [np.asarray(t) for t in D], [np.asarray(t) for t in E], [np.arange(P)] * P)
    return _step(state, a, B, k1, con, r, C_b)


class SecondOrderMulti(NamedTuple):
    """Multi-input data to O(1/n^2) over layers l = 1 .. depth+1 (module docstring for the definitions).

    K, G1, G2: (depth+1, N, N); V, V1: (depth+1, N, N, N, N), V[l-1, a1, a2, a3, a4] = V^(l)_{(a1a2)(a3a4)};
    U: (depth+1,) + (N,)*6, U[l-1, a1..a6] = U^(l)_{(a1a2)(a3a4)(a5a6)}; widths: the widths used (None: equal).
    stderr: None on the exact route ("rule"); on the randomized route ("qmc") a dict name -> the integration
    error (standard error over the scrambles) of G1, G2, V, V1, U, same shapes (K: the pair rules, no such error).
    integration: "rule" or "qmc", the route used (module docstring).
    """

    K: np.ndarray
    G1: np.ndarray
    G2: np.ndarray
    V: np.ndarray
    V1: np.ndarray
    U: np.ndarray
    widths: tuple | None
    stderr: dict | None = None
    integration: str = "rule"

    def output_cumulants(self, n):
        """[kappa_2 (N, N), kappa_4 (N,)*4, kappa_6 (N,)*6] of the readout to O(1/n^2), n = n_L the last hidden width.

        kappa_2 = K + G1/n + G2/n^2, kappa_4 = sum over the 3 pairings of (V/n + V1/n^2), kappa_6 = sum over the 15
        pairings of U/n^2 (f | G ~ N(0, G) and the law of total cumulance).
        """
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"n={n!r} is not allowed: the last hidden width, an integer >= 1")
        if self.widths is not None and n != self.widths[-1]:
            raise ValueError(f"n={n} is not allowed: these results were computed for widths={self.widths}, "
                             f"whose last hidden width is {self.widths[-1]}")
        return [self.K[-1] + self.G1[-1] / n + self.G2[-1] / n ** 2,
                _pairing_sum(self.V[-1] / n + self.V1[-1] / n ** 2), _pairing_sum(self.U[-1] / n ** 2)]


def _pairing_sum(T):
    """sum over the pairings of T's axes, with T's axes (01)(23).. assigned to the pairs (3 terms for order 4, 15
    for order 6): the symmetric tensor built from a tensor over pairs."""
    out = 0
    for pi in set_partitions(T.ndim):
        if all(len(b) == 2 for b in pi):
            out = out + np.transpose(T, np.argsort([p for b in pi for p in b]))
    return out


def _cost(N, depth, route, n_points, n_scrambles):
    """(floating-point operations, bytes) estimated for second_order_multi_input (module docstring)."""
    P = N * (N + 1) // 2
    runs = 1 if route == "rule" else n_scrambles
    M = (2 * _NODES.get(N, 12)) ** N if route == "rule" else n_points * n_scrambles
    flops = depth * (M * (2 * P ** 3 + 2 * N ** 4 + 80 * P ** 2) + runs * 12 * P ** 5)
    mem = 8 * ((depth + 1) * (N ** 6 + 2 * N ** 4) * (3 if runs > 1 else 1) + runs * (depth + 1) * (P ** 3 + 3 * P ** 2)
               + depth * 2 * P ** 4 + 6 * P ** 4 + 3 * _CHUNK_ENTRIES + M // runs * (3 * P + N * N + 4 * N))
    return flops, mem


def _check_power_of_two(name, n):
    n = check_int(name, n, 16)
    if n & (n - 1):
        raise ValueError(f"{name}={n} is not allowed: a power of 2 >= 16 (a full Sobol block)")
    return n


@limit_threads()
def second_order_multi_input(x, *, depth, activation, C_W, C_b, widths=None, integration="auto",
                             n_points=None, n_scrambles=8, seed=0) -> SecondOrderMulti:
    """K, G1, G2, V, V1, U for N inputs x (N, n_0) (module docstring). C_W, C_b: scalars or per layer
    (length depth + 1); widths None (equal) or (n_1, .., n_depth). K^(1) = C_b + C_W x x^T / n_0, K^(l+1) = C_b +
    C_W <s_a s_b> from the pair rules that also give k1's derivatives (equal to :func:`sft.kernels.nngp` within
    ~1e-12, tested; calling nngp cost more than the rest at N = 2).

    integration: "rule" (the nested Gauss-Legendre rule of all N inputs: exact to quadrature accuracy ~1e-12,
    affordable for N <= 4), "qmc" (randomized quasi-Monte Carlo: ``n_scrambles`` independent scrambles of
    ``n_points`` Sobol points each (None: 2^13 for N <= 4, 2^15 above), seeded by ``seed``; ``stderr`` holds
    the integration errors), or "auto"
    ("rule" for N <= MAX_RULE_INPUTS = 3, else "qmc"). ValueError if the estimated cost exceeds MAX_FLOPS or
    MAX_BYTES.

    >>> out = second_order_multi_input(np.array([[1.0, 0.0]]), depth=2, activation="linear", C_W=1.0, C_b=0.0)
    >>> round(float(out.U[-1, 0, 0, 0, 0, 0, 0]), 10)   # 12 L^2 - 4 L at K = 1/2: (48 - 8) / 8
    5.0
    """
    require_x64("sft.finite.second_order_multi_input")
    act = get_activation(activation)
    depth = check_depth(depth)
    cw, cb = layer_constants(depth, C_W, C_b)
    r = width_ratios(widths, depth)
    x, _ = check_inputs(x)
    N = x.shape[0]
    if integration not in ("auto", "rule", "qmc"):
        raise ValueError(f"integration={integration!r} is not allowed: 'auto', 'rule' or 'qmc'")
    route = ("rule" if N <= MAX_RULE_INPUTS else "qmc") if integration == "auto" else integration
    if route == "rule" and N > 4:
        raise ValueError(f"x has N={N} inputs: integration='rule' integrates on the nested rule of all N inputs "
                         f"({2 * _NODES.get(N, 12)}^{N} nodes) and is allowed for N <= 4; use integration='qmc'")
    n_points = _check_power_of_two("n_points", (2 ** 13 if N <= 4 else 2 ** 15) if n_points is None else n_points)
    n_scrambles = check_int("n_scrambles", n_scrambles, 2)
    seed = check_int("seed", seed, 0)
    flops, mem = _cost(N, depth, route, n_points, n_scrambles)
    for what, val, lim, attr in (("floating-point operations", flops, MAX_FLOPS, "MAX_FLOPS"),
                                 ("bytes of memory", mem, MAX_BYTES, "MAX_BYTES")):
        if val > lim:
            raise ValueError(f"x has N={N} inputs: second_order_multi_input at depth = {depth} with integration="
                             f"{route!r} is too large: ~{val:.3g} {what}, above the limit {lim:.3g} "
                             f"(sft.finite.second_order_multi.{attr}; about 1e10 operations per second on 2 cores; "
                             "the outputs hold N^6 entries per layer); use fewer inputs"
                             + (" or integration='qmc'" if route == "rule" else " or fewer points"))
    rows, cols, _, idx = _pair_layout(N)
    P = rows.size
    K = cb[0] + cw[0] * (x @ x.T) / x.shape[1]
    Ks, pair_data = [0.5 * (K + K.T)], []
    for l in range(depth):   # K^(l+1) = C_b + C_W <s_a s_b> on the pair rules (sft.kernels.nngp within ~1e-12)
        pair_data.append(_pair_data(act, Ks[l], cw[l + 1]))
        K = np.empty((N, N))
        K[rows, cols] = K[cols, rows] = cb[l + 1] + pair_data[-1].a
        Ks.append(K)
    Ks = np.stack(Ks)
    if route == "rule":
        nodes = [None]
    else:
        nodes = [special.ndtri(np.clip(qmc.Sobol(N, scramble=True, seed=np.random.default_rng(ss)).random_base2(int(math.log2(n_points))),
                                       2.0 ** -40, 1 - 2.0 ** -40))
                 for ss in np.random.SeedSequence(seed).spawn(n_scrambles)]
    runs = []
    for u in nodes:
        state = (Ks[0][rows, cols], np.zeros(P), np.zeros(P), np.zeros((P, P)), np.zeros((P, P)), np.zeros((P,) * 3))
        out = [state]
        for l in range(depth):
            pd = pair_data[l]
            if u is None:
                z, w = gaussian_rule(Ks[l])
            else:
                z, w = u @ _cholesky(Ks[l]).T, np.full(n_points, 1.0 / n_points)
            con = _global_contractions(act, Ks[l], cw[l + 1], z, w, state[1], state[3], pd.B @ state[3],
                                       stein=u is not None and act.name in SMOOTH_ACTIVATIONS)

            state = _step(state, pd.a, pd.B, (pd.C, pd.D, pd.E, pd.loc), con, r[l], cb[l + 1])
            out.append(state)
        runs.append([np.stack([s[k] for s in out]) for k in range(1, 6)])
    i2 = (slice(None), idx)
    i4 = (slice(None), idx[:, :, None, None], idx[None, None, :, :])
    i6 = (slice(None), idx[:, :, None, None, None, None], idx[None, None, :, :, None, None],
          idx[None, None, None, None, :, :])
    names, where = ("G1", "G2", "V", "V1", "U"), (i2, i2, i4, i4, i6)
    mean = [np.mean([run[k] for run in runs], 0)[ix] for k, ix in enumerate(where)]
    stderr = None
    if len(runs) > 1:
        stderr = {name: (np.std([run[k] for run in runs], 0, ddof=1) / math.sqrt(len(runs)))[ix]
                  for k, (name, ix) in enumerate(zip(names, where))}
    return SecondOrderMulti(Ks, *mean, None if widths is None else check_widths(widths), stderr, route)
