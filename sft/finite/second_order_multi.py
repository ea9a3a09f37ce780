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

Gaussian derivatives (Price): d^j <F>_{K + theta} / d theta^j = <F(z) d^j rho(z; theta)> with
rho = phi_{K + theta}(z) / phi_K(z) the density ratio (theta over the pair variables), whose Taylor
coefficients at theta = 0 are computed by JAX forward-mode differentiation of the closed-form
log-density and summed on the split Gauss-Legendre rule of :mod:`sft.finite.vertex` (the
multivariate form of <F He_2j>/(2K)^j). The pair functions (k1) use the rule of their own <= 2
inputs; F2 and F3 the rule of all N inputs, so N <= 3 (ValueError otherwise).
"""
from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import jax.scipy.linalg
import numpy as np

from ..conventions import check_depth, check_inputs, check_widths, layer_constants, require_x64
from ..kernels.activations import get_activation
from ..kernels.recursion import nngp
from ..symbolic.cumulants import set_partitions
from .vertex import gaussian_rule, width_ratios

__all__ = ["SecondOrderMulti", "second_order_multi_input", "second_order_multi_step"]

_MAX_INPUTS = 3


def _pairs(N):
    return [(a, b) for a in range(N) for b in range(a, N)]


def _ratio_derivatives(K, z, order):
    """[d^j rho (M, p, .., p) for j = 0..order], rho(theta) = phi_{K(theta)}(z) / phi_K(z), K(theta) = K + sum_p
    theta_p E_p over the pairs p of K (E_p the symmetric unit matrix of the pair)."""
    N = K.shape[0]
    pairs = _pairs(N)
    E = np.zeros((len(pairs), N, N))
    for p, (a, b) in enumerate(pairs):
        E[p, a, b] = E[p, b, a] = 1.0
    return [np.asarray(d) for d in _ratio_derivatives_jit(jnp.asarray(K), jnp.asarray(E), jnp.asarray(z), order)]


def _pd_inverse_logdet(A):
    """(A^{-1}, log det A) by Cholesky, differentiable to any order; A is positive definite (the callers'
    covariances passed the psd_eigh check of :func:`sft.finite.gaussian_rule` first)."""
    L = jnp.linalg.cholesky(A)
    return jax.scipy.linalg.cho_solve((L, True), jnp.eye(A.shape[0])), 2 * jnp.sum(jnp.log(jnp.diag(L)))


@functools.partial(jax.jit, static_argnums=(3,))
def _ratio_derivatives_jit(K, E, z, order):
    Kinv, logdet = _pd_inverse_logdet(K)

    def rho(theta):
        Ktinv, logdet_t = _pd_inverse_logdet(K + jnp.einsum("p,pij->ij", theta, E))
        return jnp.exp(-0.5 * jnp.einsum("mi,ij,mj->m", z, Ktinv - Kinv, z) - 0.5 * (logdet_t - logdet))
    out, f = [], rho
    theta0 = jnp.zeros(E.shape[0])
    for _ in range(order + 1):
        out.append(f(theta0))
        f = jax.jacfwd(f)
    return out


def _taylor(F, w, drho):
    """[sum_m w_m F[..., m] d^j rho_m] for each j: F (..., M) -> (..., p^j)."""
    Fw = (F * w).reshape(-1, w.shape[0])
    return [(Fw @ d.reshape(w.shape[0], -1)).reshape(F.shape[:-1] + d.shape[1:]) for d in drho]


def _layer_tensors(act, K, C_W):
    """Taylor data at K over the P pair variables: k1 coefficients [a, B, C, D, E] (P, P^j), F2 (P, P) with
    F2' (P, P, P), F2'' (P, P, P, P), and F3 (P, P, P)."""
    N = K.shape[0]
    pairs = _pairs(N)
    P = len(pairs)
    index = {pq: i for i, pq in enumerate(pairs)}
    k1 = [np.zeros((P,) + (P,) * j) for j in range(5)]
    for i, (a, b) in enumerate(pairs):  # <s_a s_b> on the rule of {a, b}; local pair variables -> global
        sub = [a] if a == b else [a, b]
        Ks = K[np.ix_(sub, sub)]
        z, w = gaussian_rule(Ks)
        s = np.asarray(act.fn(z), dtype=np.float64)
        F = C_W * s[:, 0] * s[:, -1]
        local = [index[(sub[c], sub[d])] for c, d in _pairs(len(sub))]
        for j, T in enumerate(_taylor(F, w, _ratio_derivatives(Ks, z, 4))):
            k1[j][(i,) + np.ix_(*([local] * j))] = T
    z, w = gaussian_rule(K)
    s = np.asarray(act.fn(z), dtype=np.float64)
    X = C_W * np.stack([s[:, a] * s[:, b] for a, b in pairs])  # (P, M)
    drho = _ratio_derivatives(K, z, 2)
    m2 = _taylor(X, w, drho)                                   # <X_P> and derivatives
    m4 = _taylor(X[:, None] * X[None], w, drho)                # <X_P X_Q> and derivatives
    F2 = m4[0] - np.einsum("p,q->pq", m2[0], m2[0])
    F2p = m4[1] - np.einsum("pa,q->pqa", m2[1], m2[0]) - np.einsum("p,qa->pqa", m2[0], m2[1])
    F2pp = (m4[2] - np.einsum("pab,q->pqab", m2[2], m2[0]) - np.einsum("p,qab->pqab", m2[0], m2[2])
            - np.einsum("pa,qb->pqab", m2[1], m2[1]) - np.einsum("pb,qa->pqab", m2[1], m2[1]))
    mx = m2[0]
    xy = m4[0]
    xyz = np.einsum("pm,qm,rm,m->pqr", X, X, X, w, optimize=True)
    F3 = (xyz - np.einsum("pq,r->pqr", xy, mx) - np.einsum("pr,q->pqr", xy, mx) - np.einsum("qr,p->pqr", xy, mx)
          + 2 * np.einsum("p,q,r->pqr", mx, mx, mx))
    return k1, F2, F2p, F2pp, F3


def _sym3(T):
    """Sum over the 3 placements: T_ABC + T_ACB... for T = X_AB Y_C -> X_AB Y_C + X_AC Y_B + X_BC Y_A."""
    return T + np.swapaxes(T, 1, 2) + np.moveaxis(T, 2, 0)


def second_order_multi_step(state, tensors, r, *, C_b):
    """One layer over the pair variables: (K, G1, G2, V, V1, U) (P,), (P,), (P,), (P, P), (P, P), (P, P, P) -> l + 1.

    tensors = (k1, F2, F2', F2'', F3) from the layer's Gaussian expectations at K (module docstring), with
    C_W already inside them; C_b enters K' only.
    """
    _, g1, g2, V, V1, U = state
    (a, B, C, D, E), F2, F2p, F2pp, F3 = tensors
    gV = np.einsum("ab,c->abc", V, g1)
    VV_pair = np.einsum("ac,bd->abcd", V, V) + np.einsum("ad,bc->abcd", V, V)   # Cov(dd, dd) / eps^2
    VV_all = np.einsum("ab,cd->abcd", V, V) + VV_pair                             # E[d^4] / eps^2
    K_next = C_b + a
    G1 = r * (B @ g1 + 0.5 * np.einsum("pab,ab->p", C, V))
    G2 = r ** 2 * (B @ g2 + 0.5 * np.einsum("pab,ab->p", C, V1 + np.outer(g1, g1))
                   + np.einsum("pabc,abc->p", D, U + _sym3(gV)) / 6 + np.einsum("pabcd,abcd->p", E, VV_all) / 24)
    V_next = F2 + r * B @ V @ B.T
    cov = (B @ V1 @ B.T
           + 0.5 * (np.einsum("pa,abc,qbc->pq", B, U + gV + np.swapaxes(gV, 1, 2), C)
                    + np.einsum("qa,abc,pbc->pq", B, U + gV + np.swapaxes(gV, 1, 2), C))
           + 0.25 * np.einsum("pab,abcd,qcd->pq", C, VV_pair, C)
           + (np.einsum("pa,abcd,qbcd->pq", B, VV_all, D) + np.einsum("qa,abcd,pbcd->pq", B, VV_all, D)) / 6)
    V1_next = r * (np.einsum("pqa,a->pq", F2p, g1) + 0.5 * np.einsum("pqab,ab->pq", F2pp, V)) + r ** 2 * cov
    cross = np.einsum("pa,ab,qrb->pqr", B, V, F2p)   # n_l Cov(k1_P, k2_QR) / (eps V): the placement (P; QR)
    k3_k1 = (np.einsum("pa,qb,rc,abc->pqr", B, B, B, U)
             + 0.5 * (np.einsum("pa,qb,rcd,abcd->pqr", B, B, C, VV_pair)
                      + np.einsum("pa,rb,qcd,abcd->pqr", B, B, C, VV_pair)
                      + np.einsum("qa,rb,pcd,abcd->pqr", B, B, C, VV_pair)))
    U_next = F3 + r * (cross + np.transpose(cross, (1, 0, 2)) + np.transpose(cross, (1, 2, 0))) + r ** 2 * k3_k1
    return K_next, G1, G2, V_next, V1_next, U_next


class SecondOrderMulti(NamedTuple):
    """Multi-input data to O(1/n^2) over layers l = 1 .. depth+1 (module docstring for the definitions).

    K, G1, G2: (depth+1, N, N); V, V1: (depth+1, N, N, N, N), V[l-1, a1, a2, a3, a4] = V^(l)_{(a1a2)(a3a4)};
    U: (depth+1,) + (N,)*6, U[l-1, a1..a6] = U^(l)_{(a1a2)(a3a4)(a5a6)}; widths: the widths used (None: equal).
    """

    K: np.ndarray
    G1: np.ndarray
    G2: np.ndarray
    V: np.ndarray
    V1: np.ndarray
    U: np.ndarray
    widths: tuple | None

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


def second_order_multi_input(x, *, depth, activation, C_W, C_b, widths=None) -> SecondOrderMulti:
    """K, G1, G2, V, V1, U for N <= 3 inputs x (N, n_0) (module docstring). C_W, C_b: scalars or per layer
    (length depth + 1); widths None (equal) or (n_1, .., n_depth). K^(l) from :func:`sft.kernels.nngp`.

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
    if N > _MAX_INPUTS:
        raise ValueError(f"x has N={N} inputs: the O(1/n^2) multi-input recursion integrates products of six "
                         f"activations on all inputs at once and supports N <= {_MAX_INPUTS}")
    Ks = nngp(x, depth=depth, activation=act, C_W=cw, C_b=cb, all_layers=True)
    pairs = _pairs(N)
    P = len(pairs)
    idx = np.zeros((N, N), dtype=int)
    for i, (a, b) in enumerate(pairs):
        idx[a, b] = idx[b, a] = i
    rows, cols = np.array(pairs).T
    state = (Ks[0][rows, cols], np.zeros(P), np.zeros(P), np.zeros((P, P)), np.zeros((P, P)), np.zeros((P,) * 3))
    out = [state]
    for l in range(depth):
        state = second_order_multi_step(state, _layer_tensors(act, Ks[l], cw[l + 1]), r[l], C_b=cb[l + 1])
        out.append(state)
    g1, g2, V, V1, U = (np.stack([s[k] for s in out]) for k in range(1, 6))
    i2 = (slice(None), idx)
    i4 = (slice(None), idx[:, :, None, None], idx[None, None, :, :])
    i6 = (slice(None), idx[:, :, None, None, None, None], idx[None, None, :, :, None, None],
          idx[None, None, None, None, :, :])
    return SecondOrderMulti(Ks, g1[i2], g2[i2], V[i4], V1[i4], U[i6],
                            None if widths is None else check_widths(widths))
