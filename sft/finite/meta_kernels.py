"""Meta-kernels at O(1/n): the dNTK and the two ddNTKs of an MLP of any depth (PDLT ch. 11), one output.

Conventions: :mod:`sft.conventions` (NTK parameterization; trained parameters omega, beta ~ N(0, 1),
W = sqrt(C_W / n_{l-1}) omega, b = sqrt(C_b) beta; D_mu = d/d omega_mu over ALL parameters, so
lambda_W = C_W, lambda_b = C_b as in :mod:`sft.finite.ntk_variance`). For the preactivations z^(l) of
layer l (neurons i, inputs a; sums over the parameters of layers <= l):

    H_{i1i2;a1a2}          = sum_mu D_mu z_{i1;a1} D_mu z_{i2;a2}                              (NTK)
    dH_{i0i1i2;a0a1a2}     = sum_{mu nu} D_mu D_nu z_{i0;a0} D_mu z_{i1;a1} D_nu z_{i2;a2}       (dNTK)
    ddHI_{i0..i3;a0..a3}   = sum D_mu D_nu D_rho z_0 D_mu z_1 D_nu z_2 D_rho z_3                 (ddNTK I)
    ddHII_{i0..i3;a0..a3}  = sum D_mu D_nu z_0 D_rho D_nu z_1 D_mu z_2 D_rho z_3                 (ddNTK II)

Leading order (normalized by n_{l-1}; the deltas are over neuron indices, 0..3 stand for (i_k, a_k)):

    n E[dH_{012} z_3]  = d03 d12 P_{a0a1a2a3} + d01 d23 Q_{a0a1a2a3} + d02 d13 Q_{a0a2a1a3},
    n E[ddHI_{0123}]   = d01 d23 R_{a0a1a2a3} + d02 d13 R_{a0a2a3a1} + d03 d12 R_{a0a3a1a2},
    n E[ddHII_{0123}]  = d01 d23 S_{a0a1a2a3} + d02 d13 T_{a0a1a2a3} + d03 d12 U_{a0a1a2a3},

(RYH's P, Q, R, S, T, U up to the order of the input labels). E[dH] = 0 and E[dH z z z] is
E[dH z] E[z z] + O(1/n^2) (derivations/meta_kernels.py; checked by Monte Carlo).

Derivation (by hand, as in :mod:`sft.finite.ntk_variance`): write the first, second and third parameter
derivatives of z^(l+1) = b + W sigma(z^(l)) by the chain rule (new-layer parameters enter linearly, so
at most one new-layer derivative survives in each term), take the Wick contractions of the layer-(l+1)
weights (independent of layers <= l), then the expectation over layer l: diagonal neuron sums give the
fresh terms; off-diagonal sums pick up B (pairs of NTKs), F (one NTK, linear response by Stein's lemma
over the weight rows: E[H_jk g(z_j) h(z_k)] = F_(0c)(2c') <d_c g> <d_c' h> / n), P and Q (the dNTK,
likewise linear in the row of the lone index) and R .. U (flat at this order). Products of an
off-diagonal NTK and an off-diagonal dNTK, and three off-diagonal NTKs, are O(1/n^2). Checks:
tests/test_meta_kernels.py (Monte Carlo, one hidden layer, exact deep-linear law and the closed form
of this recursion for linear sigma in derivations/meta_kernels.py).

Recursion. Layer l -> l + 1, C = C_W^(l+1), r = n_l / n_{l-1}; all
layer-l quantities K, Theta, B, F (:func:`sft.finite.ntk_fluctuations_multi`), P .. U on the right;
<.> = <.>_{K^(l)}; s, d, e, t = sigma, sigma', sigma'', sigma''' at the input of the label
(d0 = sigma'(z_{a0}) ...); repeated c, c' summed over inputs; DD_ab = <d_a d_b>;
psi_ab = d_a s_b + Theta_ab e_a d_b, phi_ab = e_a s_b + Theta_ab t_a d_b; <d_c f> = <f (K^-1 z)_c>
(Gaussian integration by parts on the inputs f depends on):

    P'_0123 = C^2 [Th01 Th02 <e0 d1 d2 s3> + r B_(00)(12) <e0 s3> DD12 + r P_012c <d_c(d0 s3)> DD12]
    Q'_0123 = C^2 [Th02 <psi01 d2 s3> + r F_(0c)(2c') <d_c psi01> <d_c'(d2 s3)> + r Q_012c DD01 <d_c(d2 s3)>]
    R'_0123 = C^2 [Th02 Th03 <phi01 d2 d3>
                   + r (B_(00)(23) <phi01> DD23 + P_023c <d_c psi01> DD23 + R_0123 DD01 DD23)]
    S'_0123 = C^2 [Th02 Th13 <d0 d1 d2 d3> + Th01 Th02 Th13 <e0 e1 d2 d3>
                   + r (B_(01)(23) (DD01 + Th01 <e0 e1>) DD23 + S_0123 DD01 DD23)]
    T'_0123 = C^2 [Th01 <psi02 psi13> + r (F_(0c)(1c') <d_c psi02> <d_c' psi13>
                   + Q_130c <d_c psi02> DD13 + Q_021c DD02 <d_c psi13> + T_0123 DD02 DD13)]
    U'_0123 = C^2 [Th01 Th02 Th13 <e0 e1 d2 d3> + r U_0123 DD03 DD12]

with P = .. = U = 0 at l = 1 (z^(1) is linear in the parameters). The readout (layer L + 1, one neuron,
n_{L+1} = 1) sums the neuron structures:

    n_L E[dH_abc f_d] = P_abcd + Q_abcd + Q_acbd,   n_L E[ddHI_abcd] = R_abcd + R_acdb + R_adbc,
    n_L E[ddHII_abcd] = S_abcd + T_abcd + U_abcd.

Kinked activations (scale-invariant sigma = a+ z (z > 0), a- z (z < 0): relu, leaky_relu, abs): sigma''
= (a+ - a-) delta(z), sigma''' = (a+ - a-) delta'(z); each product of factors at ONE input is taken as
the limit of smooth sigma (e d^k -> (a+^(k+1) - a-^(k+1))/(k+1) delta, e s^m d^k -> 0, t s ->
-(a+^2 - a-^2)/2 delta, t -> (a+ - a-) delta') and integrated exactly: <delta(z_a) g> = p_a(0)
E[g | z_a = 0], <delta'(z_b) g> = <delta(z_b) g (K^-1 z)_b>. The products sigma''(z_a)^2,
sigma''' sigma'(z_a) at one input diverge in that limit (like the inverse smoothing scale): the
ddNTK entries that contain them (coinciding inputs in those slots) are returned as +inf. The dNTK
is finite for all inputs.
"""
from __future__ import annotations

import functools
import itertools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from . import vertex as fw
from .ntk_variance import _GaussianLayer, ntk_fluctuations_multi, readout_ntk_covariance
from ..kernels.activations import get_activation
from ..conventions import (check_array, check_depth, check_real, check_widths, layer_constants, pd_inverse,
                           require_x64)

__all__ = ["OutputMetaKernels", "output_meta_kernels", "meta_kernel_step", "gaussian_factor_mean",
           "LayerMetaKernels", "layer_meta_kernels"]

_KINDS = "sdet"  # sigma, sigma', sigma'', sigma'''
_NODES = {1: 96, 2: 64, 3: 32, 4: 20}  # Gauss-Legendre nodes per side of each split, by dimension


@functools.lru_cache(maxsize=64)
def _derivative_fns(fn):
    """jit-compiled elementwise sigma and its first three derivatives (nested jvp along ones, valid because
    sigma acts elementwise)."""
    def deriv(g):
        return lambda z: jax.jvp(g, (z,), (jnp.ones_like(z),))[1]
    g1 = deriv(fn)
    g2 = deriv(g1)
    g3 = deriv(g2)
    return tuple(jax.jit(g) for g in (fn, g1, g2, g3))


class _Gauss:
    """Gaussian means of products of sigma-derivatives at K (N, N), <= 4 distinct inputs per product.

    factors: tuple of (kind, input), kind in "sdet"; weight: an input c (multiply by (K_S^-1 z_S)_c,
    S the inputs of the factors, i.e. take <d_c (product)>) or None. Smooth sigma: quadrature of
    :func:`sft.finite.gaussian_rule` on the subset S. Kinked sigma: same-input groups as distributions
    (module docstring); returns inf for a divergent product.
    """

    def __init__(self, act, K):
        self.act, self.K = act, np.asarray(K, dtype=np.float64)
        self.slopes = act.slopes
        self._rules, self._cache, self._vals = {}, {}, {}
        if self.slopes is None:
            self._fns = _derivative_fns(act.fn)

    def _rule(self, S):
        if S not in self._rules:
            self._rules[S] = fw.gaussian_rule(self.K[np.ix_(S, S)], n_nodes=_NODES[len(S)])
        return self._rules[S]

    def values(self, S, kind):
        """sigma^(kind)(z) at the nodes of the rule of subset S, (P, len(S)), cached."""
        key = (S, kind)
        if key not in self._vals:
            self._vals[key] = np.asarray(self._fns[_KINDS.index(kind)](self._rule(S)[0]), dtype=np.float64)
        return self._vals[key]

    def mean(self, factors, weight=None):
        key = (tuple(sorted(factors)), weight)
        if key not in self._cache:
            self._cache[key] = self._smooth(*key) if self.slopes is None else self._kinked(*key)
        return self._cache[key]

    def _smooth(self, factors, weight):
        S = tuple(sorted({a for _, a in factors}))
        if weight is not None and weight not in S:
            return 0.0
        z, w = self._rule(S)
        f = w.copy()
        for kind, a in factors:
            f = f * np.asarray(self._fns[_KINDS.index(kind)](z[:, S.index(a)]), dtype=np.float64)
        if weight is not None:
            f = f * (z @ pd_inverse("K", self.K[np.ix_(S, S)]))[:, S.index(weight)]
        return float(np.sum(f))

    def _kinked(self, factors, weight):
        ap, am = self.slopes
        jump = ap - am
        S = tuple(sorted({a for _, a in factors}))
        if weight is not None and weight not in S:
            return 0.0
        groups = {a: {k: 0 for k in _KINDS} for a in S}
        for kind, a in factors:
            groups[a][kind] += 1
        coef, deltas, primes, regular = 1.0, [], [], {}
        for a, g in groups.items():
            ns, nd, ne, nt = g["s"], g["d"], g["e"], g["t"]
            if ne + nt == 0:
                regular[a] = (ns, nd)
                continue
            if abs(jump) == 0.0:          # linear: sigma'' = sigma''' = 0
                return 0.0
            if ne == 1 and nt == 0:
                if ns > 0:                # e s^m d^k -> s(0) (jump of d^(k+1)) delta = 0
                    return 0.0
                coef *= (ap ** (nd + 1) - am ** (nd + 1)) / (nd + 1)
                deltas.append(a)
            elif nt == 1 and ne == 0 and nd == 0:
                if ns == 0:
                    coef *= jump
                    primes.append(a)
                    deltas.append(a)
                elif ns == 1:             # t s -> -(e d) -> -(a+^2 - a-^2)/2 delta
                    coef *= -(ap ** 2 - am ** 2) / 2
                    deltas.append(a)
                else:
                    return 0.0
            else:
                return np.inf
        if primes and weight is not None:
            raise AssertionError("delta' with a weight does not occur in the recursion")
        Kinv = pd_inverse("K", self.K[np.ix_(S, S)])
        D = [S.index(a) for a in deltas]
        R = [i for i in range(len(S)) if S[i] not in deltas]
        KS = self.K[np.ix_(S, S)]
        if D:
            KDD = KS[np.ix_(D, D)]
            coef *= (2 * math.pi) ** (-len(D) / 2) / math.sqrt(np.linalg.det(KDD))
        if not R:
            # everything at z = 0: y = 0, so a weight or a delta' factor gives 0
            return coef if (weight is None and not primes) else 0.0
        if D:
            KRD = KS[np.ix_(R, D)]
            Kc = KS[np.ix_(R, R)] - KRD @ np.linalg.solve(KDD, KRD.T)
        else:
            Kc = KS[np.ix_(R, R)]
        zr, w = fw.gaussian_rule(0.5 * (Kc + Kc.T), n_nodes=_NODES[len(R)])
        zS = np.zeros((len(w), len(S)))
        zS[:, R] = zr
        f = w * coef
        for i in R:
            ns, nd = regular[S[i]]
            x = zS[:, i]
            f = f * np.where(x >= 0, ap ** (ns + nd), am ** (ns + nd)) * x ** ns
        y = zS @ Kinv
        for a in primes:
            f = f * y[:, S.index(a)]
        if weight is not None:
            f = f * y[:, S.index(weight)]
        return float(np.sum(f))


def gaussian_factor_mean(factors, K, *, activation, weight=None) -> float:
    """<prod_k sigma^(m_k)(z_{a_k})>_K (times (K^-1 z)_c if weight = c, i.e. <d_c prod>): the Gaussian
    mean used by the recursion, exact for kinked sigma (module docstring; inf if divergent).

    factors: sequence of (kind, input) with kind in "s", "d", "e", "t" (sigma .. sigma'''), inputs
    indices into K (N, N) positive definite on the inputs involved.

    >>> K = np.array([[1.0, 0.3], [0.3, 1.0]])
    >>> round(float(gaussian_factor_mean([("e", 0)], K, activation="relu") * np.sqrt(2 * np.pi)), 12)  # <delta>
    1.0
    >>> round(float(gaussian_factor_mean([("e", 0), ("d", 0)], K, activation="relu") * np.sqrt(2 * np.pi)), 12)
    0.5
    """
    require_x64("sft.finite.gaussian_factor_mean")
    act = get_activation(activation)
    K = check_array("K", K, ndim=2)
    fac = []
    for item in factors:
        kind, a = item
        if kind not in _KINDS or not isinstance(a, (int, np.integer)) or not 0 <= a < K.shape[0]:
            raise ValueError(f"factors entry {item!r} is not allowed: give (kind, input) with kind in "
                             f"{tuple(_KINDS)} and 0 <= input < {K.shape[0]}")
        fac.append((kind, int(a)))
    if weight is not None and (isinstance(weight, bool) or not isinstance(weight, (int, np.integer))
                               or not 0 <= weight < K.shape[0]):
        raise ValueError(f"weight={weight!r} is not allowed: give None or an input index 0 <= c < {K.shape[0]}")
    return _Gauss(act, K).mean(tuple(fac), None if weight is None else int(weight))


def _tensor(g, kinds, rank, weight=False):
    """T[a_1..a_rank(, c)] = <prod_k kinds[k](z_{a_k}) (y_c)>: batched per subset of inputs (smooth sigma)
    or entry by entry (kinked sigma, whose delta rules depend on which inputs coincide)."""
    if g.slopes is None:
        return _tensor_smooth(g, kinds, rank, weight)
    N = g.K.shape[0]
    T = np.empty((N,) * (rank + (1 if weight else 0)))
    for idx in itertools.product(range(N), repeat=T.ndim):
        fac = tuple(zip(kinds, idx[:rank]))
        T[idx] = g.mean(fac, idx[rank] if weight else None)
    return T


@functools.lru_cache(maxsize=None)
def _surjections(d, m):
    """All m-tuples of positions 0..d-1 that use every position (index array (T, m))."""
    return np.array([t for t in itertools.product(range(d), repeat=m) if len(set(t)) == d], dtype=int)


_CHUNK_NODES = 2 ** 18


def _tensor_smooth(g, kinds, rank, weight):
    """Smooth sigma: for each subset S of d <= rank distinct inputs, one rule and one matrix product
    sum_p w_p F_k0(z_p)[i0] F_k1[i1] .. (positions i in S) gives every entry whose inputs are exactly S.
    rank 4: the (d^2 x P) (P x d^2) product in chunks of nodes; rank 2 (optionally with the weight y_c = (K_S^-1 z)_c)."""
    N = g.K.shape[0]
    T = np.zeros((N,) * (rank + (1 if weight else 0)))
    for d in range(1, min(N, rank) + 1):
        surj = _surjections(d, rank)
        for S in itertools.combinations(range(N), d):
            z, w = g._rule(S)
            V = [g.values(S, k) for k in kinds]
            if rank == 4:
                M = np.zeros((d * d, d * d))
                for lo in range(0, len(w), _CHUNK_NODES):
                    c = slice(lo, lo + _CHUNK_NODES)
                    A = (w[c, None, None] * V[0][c, :, None] * V[1][c, None, :]).reshape(-1, d * d)
                    B = (V[2][c, :, None] * V[3][c, None, :]).reshape(-1, d * d)
                    M += np.einsum("pa,pb->ab", A, B)  # (A.T @ B is 50x slower: tall-skinny BLAS)
                M = M.reshape((d,) * 4)
            elif weight:
                y = z @ pd_inverse("K", g.K[np.ix_(S, S)])
                M = np.einsum("p,pa,pb,pc->abc", w, V[0], V[1], y)
            else:
                M = np.einsum("p,pa,pb->ab", w, V[0], V[1])
            Sa = np.array(S)
            if weight:
                for cpos in range(d):
                    T[tuple(Sa[surj.T]) + (Sa[cpos],)] = M[tuple(surj.T) + (cpos,)]
            else:
                T[tuple(Sa[surj.T])] = M[tuple(surj.T)]
    return T


def _finite(T):
    """(T with divergent entries set to 0, mask of divergent entries)."""
    bad = ~np.isfinite(T)
    return np.where(bad, 0.0, T), bad


def meta_kernel_step(K, Theta, B, F, P, Q, R, S, T, U, r, *, activation, C_W):
    """One layer of the recursion (module docstring): layer-l tensors -> (P, Q, R, S, T, U) of layer l + 1.

    K, Theta (N, N); B, F (N,)*4 as stored by :class:`sft.finite.NTKFluctuationsMulti`; P .. U (N,)*4 of
    layer l (normalized by n_{l-1}; inf marks a divergent entry); r = n_l / n_{l-1}; C_W of layer l + 1.
    """
    require_x64("sft.finite.meta_kernel_step")
    K = check_array("K", K, ndim=2)
    N = K.shape[0]
    Th = check_array("Theta", Theta, ndim=2)
    if K.shape != (N, N) or Th.shape != (N, N):
        raise ValueError(f"K with shape {K.shape} and Theta with shape {Th.shape} are not allowed: both (N, N)")
    for name, X in (("B", B), ("F", F), ("P", P), ("Q", Q), ("R", R), ("S", S), ("T", T), ("U", U)):
        if np.shape(X) != (N,) * 4:
            raise ValueError(f"{name} with shape {np.shape(X)} is not allowed: give ({N},)*4 like K ({N}, {N})")
    r = check_real("r", r, minimum=0, strict=True)
    C_W = check_real("C_W", C_W, minimum=0, strict=True)
    g = _Gauss(get_activation(activation), K)
    C2 = C_W ** 2
    DD, bad_dd = _finite(_tensor(g, "dd", 2))
    EE, bad_ee = _finite(_tensor(g, "ee", 2))
    ES, _ = _finite(_tensor(g, "es", 2))
    PHI2, bad_phi2 = _finite(_tensor(g, "es", 2) + Th * _tensor(g, "td", 2))
    Yds, _ = _finite(_tensor(g, "ds", 2, weight=True))
    Ypsi, _ = _finite(Yds + Th[:, :, None] * _tensor(g, "ed", 2, weight=True))
    m4 = {k: _finite(_tensor(g, k, 4)) for k in ("edds", "dsds", "esdd", "tddd", "dddd", "eedd", "ddss", "desd")}
    E4, bad_e4 = m4["edds"]
    o = np.einsum
    Bd = o("aabc->abc", B)
    P_, bad_p = _finite(P)
    Q_, _ = _finite(Q)
    R_, bad_r = _finite(R)
    S_, bad_s = _finite(S)
    T_, bad_t = _finite(T)
    U_, bad_u = _finite(U)

    Pn = C2 * (o("ab,ac,abcd->abcd", Th, Th, E4) + r * o("abc,ad,bc->abcd", Bd, ES, DD)
               + r * o("abcx,adx,bc->abcd", P_, Yds, DD))
    PSI4 = m4["dsds"][0] + Th[:, :, None, None] * E4
    Qn = C2 * (o("ac,abcd->abcd", Th, PSI4) + r * o("axcy,abx,cdy->abcd", F, Ypsi, Yds)
               + r * o("abcx,ab,cdx->abcd", Q_, DD, Yds))
    PHI4 = m4["esdd"][0] + Th[:, :, None, None] * m4["tddd"][0]
    Rn = C2 * (o("ac,ad,abcd->abcd", Th, Th, PHI4)
               + r * (o("acd,ab,cd->abcd", Bd, PHI2, DD) + o("acdx,abx,cd->abcd", P_, Ypsi, DD)
                      + o("abcd,ab,cd->abcd", R_, DD, DD)))
    EEDD = m4["eedd"][0]
    Sn = C2 * (o("ac,bd,abcd->abcd", Th, Th, m4["dddd"][0]) + o("ab,ac,bd,abcd->abcd", Th, Th, Th, EEDD)
               + r * (o("abcd,ab,cd->abcd", B, DD + Th * EE, DD) + o("abcd,ab,cd->abcd", S_, DD, DD)))
    # <psi02 psi13> = <d0 d1 s2 s3> + Th13 <d0 e1 s2 d3> + Th02 <e0 d1 d2 s3> + Th02 Th13 <e0 e1 d2 d3>
    TT4 = (m4["ddss"][0] + o("bd,abcd->abcd", Th, m4["desd"][0]) + o("ac,abcd->abcd", Th, E4)
           + o("ac,bd,abcd->abcd", Th, Th, EEDD))
    Tn = C2 * (o("ab,abcd->abcd", Th, TT4)
               + r * (o("axby,acx,bdy->abcd", F, Ypsi, Ypsi) + o("bdax,acx,bd->abcd", Q_, Ypsi, DD)
                      + o("acbx,ac,bdx->abcd", Q_, DD, Ypsi) + o("abcd,ac,bd->abcd", T_, DD, DD)))
    Un = C2 * (o("ab,ac,bd,abcd->abcd", Th, Th, Th, EEDD) + r * o("abcd,ad,bc->abcd", U_, DD, DD))
    # divergent entries (kinked sigma): fresh products sigma''^2 or sigma''' sigma' at one input, or propagated
    # (a divergent <phi_ab> or <e_a e_b> needs a = b, where the fresh 4-point mean diverges too)
    bad_rn = m4["esdd"][1] | m4["tddd"][1] | bad_r | bad_phi2[:, :, None, None]
    bad_eedd = m4["eedd"][1]
    bad_sn = bad_eedd | bad_s | bad_ee[:, :, None, None]
    bad_tn = bad_eedd | bad_t | m4["desd"][1]
    bad_un = bad_eedd | bad_u
    out = [Pn, Qn, Rn, Sn, Tn, Un]
    for X, bad in zip(out[2:], (bad_rn, bad_sn, bad_tn, bad_un)):
        X[bad] = np.inf
    if np.any(bad_p) or np.any(bad_e4) or np.any(bad_dd):
        raise AssertionError("the dNTK recursion met a divergent Gaussian mean")
    return tuple(out)


class OutputMetaKernels(NamedTuple):
    """O(1/n) statistics of the NTK and meta-kernels of a one-output MLP, n = n_L (last hidden width).

    Every field is a float64 array over the N inputs; O(1/n) fields are coefficients of 1/n:
    E[f_a f_b] = K + G1/n; kappa_4(f_a,f_b,f_c,f_d) = (V_(ab)(cd) + V_(ac)(bd) + V_(ad)(bc))/n;
    E[H_ab] = Theta + Theta1/n; Cov(H_ab, H_cd) = ntk_cov/n; E[H_ab f_c f_d] - E[H_ab] E[f_c f_d] = ntk_f2/n;
    E[dH_abc f_d] = dntk_f/n; connected E[dH_abc f_d f_e f_g] = dntk_f3/n (zero at this order);
    E[ddHI_abcd] = ddntk_I/n, E[ddHII_abcd] = ddntk_II/n (inf: divergent, kinked sigma only); widths.
    """

    K: np.ndarray
    G1: np.ndarray
    V: np.ndarray
    Theta: np.ndarray
    Theta1: np.ndarray
    ntk_cov: np.ndarray
    ntk_f2: np.ndarray
    dntk_f: np.ndarray
    dntk_f3: np.ndarray
    ddntk_I: np.ndarray
    ddntk_II: np.ndarray
    widths: tuple | None


def _network_setup(x, depth, activation, C_W, C_b, widths):
    """Checked arguments, width ratios and the O(1/n) NTK statistics (ntk_fluctuations_multi) at N <= 4."""
    act = get_activation(activation)
    depth = check_depth(depth)
    cw, cb = layer_constants(depth, C_W, C_b)
    r = fw.width_ratios(widths, depth)
    x = check_array("x", x, ndim=2)
    if not 1 <= x.shape[0] <= 4:
        raise ValueError(f"x with shape {x.shape} is not allowed: give (N, n_0) with 1 <= N <= 4 inputs "
                         "(four-point Gaussian quadrature)")
    nf = ntk_fluctuations_multi(x, depth=depth, activation=act, C_W=cw, C_b=cb, widths=widths)
    return act, depth, cw, cb, r, nf, x.shape[0]


def output_meta_kernels(x, *, depth, activation, C_W, C_b, widths=None) -> OutputMetaKernels:
    """NTK, dNTK and ddNTK statistics of the output at O(1/n) for inputs x (N, n_0), N <= 4 (module docstring).

    Cost: N <= 3 in seconds; N = 4 about 10 s per layer for the meta-kernel step plus
    :func:`sft.finite.ntk_fluctuations_multi` (the larger part) on 2 cores. Each entry depends only on
    the inputs it involves, so sub-tensors for more inputs can be assembled from runs on subsets.

    depth: hidden layers L >= 1; C_W, C_b: scalars or per layer (length depth + 1); widths: None (equal)
    or (n_1, .., n_L). K, G1, V, Theta, Theta1, ntk_cov, ntk_f2 from :func:`sft.finite.ntk_fluctuations_multi`.

    >>> out = output_meta_kernels(np.ones((1, 1)), depth=1, activation="linear", C_W=1.0, C_b=0.0)
    >>> round(float(out.dntk_f[0, 0, 0, 0]), 12)   # deep linear: n E[dH f] = 2 K^2 (one hidden layer, K = 1)
    2.0
    """
    require_x64("sft.finite.output_meta_kernels")
    act, depth, cw, cb, r, nf, N = _network_setup(x, depth, activation, C_W, C_b, widths)
    z4 = np.zeros((N,) * 4)
    state = (z4,) * 6
    for l in range(depth):
        state = meta_kernel_step(nf.K[l], nf.Theta[l], nf.B[l], nf.F[l], *state, r[l], activation=act,
                                 C_W=cw[l + 1])
    P, Q, R, S, T, U = state
    dntk_f = P + Q + Q.transpose(0, 2, 1, 3)
    ddI = R + R.transpose(0, 3, 1, 2) + R.transpose(0, 2, 3, 1)
    ddII = S + T + U
    A, B, D, F = nf.A[-1], nf.B[-1], nf.D[-1], nf.F[-1]
    ntk_f2 = D.transpose(2, 3, 0, 1) + F.transpose(0, 2, 1, 3) + F.transpose(0, 2, 3, 1)
    return OutputMetaKernels(nf.K[-1], nf.G1[-1], nf.V[-1], nf.Theta[-1], nf.Theta1[-1],
                             readout_ntk_covariance(A, B), ntk_f2, dntk_f, np.zeros((N,) * 6), ddI, ddII,
                             None if widths is None else check_widths(widths))


class LayerMetaKernels(NamedTuple):
    """The output meta-kernels restricted to the parameters of one layer in one slot (layers m = 1 .. L + 1,
    readout last; coefficients of 1/n, n = n_L; :func:`layer_meta_kernels`). With D^(m) the derivatives
    wrt the parameters of layer m and D all derivatives (sums over repeated indices):

        Theta[m-1]_ab        = E D^(m)_mu f_a D^(m)_mu f_b               (infinite width; sums to Theta),
        dntk_f[m-1]_xabc     = n E[D^(m)_mu D_nu f_x D^(m)_mu f_a D_nu f_b f_c],
        ddntk_I[m-1]_xyab    = n E[D^(m)_mu D_nu D_rho f_x D^(m)_mu f_y D_nu f_a D_rho f_b],
        ddntk_II_nu[m-1]     = n E[D_mu D^(m)_nu f_x D_rho D^(m)_nu f_y D_mu f_a D_rho f_b],
        ddntk_II_mu[m-1]     = n E[D^(m)_mu D_nu f_x D_rho D_nu f_y D^(m)_mu f_a D_rho f_b],

    each (L + 1, N, ...); summed over m they are the fields of :class:`OutputMetaKernels`.
    """

    Theta: np.ndarray
    dntk_f: np.ndarray
    ddntk_I: np.ndarray
    ddntk_II_nu: np.ndarray
    ddntk_II_mu: np.ndarray


def _layer_step(mo, K_next, Th, full, flav, new, r, C2, C_W, ntk_mo):
    """One layer of the restricted recursion (docstring of :func:`layer_meta_kernels`) for one flavour.

    mo: Gaussian tensors at K^(l); full = (B, F, P, Q, R); flav = (ThS, BS, FS, PS, Q1, Q2, R1, R2, Snu,
    Smu, Tnu, Tmu, Unu, Umu) of layer l; new = 1.0 if the layer-(l+1) weights are the restricted ones.
    ntk_mo = (chi, <dddd>, <dsds>, Y) on the quadrature of :func:`sft.finite.ntk_step_multi` (so that the
    flavours of Theta, B, F sum to its Theta, B, F to rounding). Returns the flavour's tuple at layer l + 1."""
    o = np.einsum
    B, F, P, Q, R = full
    ThS, BS, FS, PS, Q1, Q2, R1, R2, Snu, Smu, Tnu, Tmu, Unu, Umu = flav
    DD, EE, ES, TD, Yds, Yed = (mo[k] for k in ("dd", "ee", "es", "td", "Yds", "Yed"))
    E4, DSDS, ESDD, TDDD, DDDD, EEDD, DDSS, DESD = (mo[k] for k in ("edds", "dsds", "esdd", "tddd", "dddd",
                                                                      "eedd", "ddss", "desd"))
    Bd, BSd = o("aabc->abc", B), o("aabc->abc", BS)
    Ypsi, YpsiS = Yds + Th[:, :, None] * Yed, new * Yds + ThS[:, :, None] * Yed
    PHI2, PHI2S = ES + Th * TD, new * ES + ThS * TD
    PSI4, PSI4S = DSDS + Th[:, :, None, None] * E4, new * DSDS + ThS[:, :, None, None] * E4
    PHI4, PHI4S = ESDD + Th[:, :, None, None] * TDDD, new * ESDD + ThS[:, :, None, None] * TDDD
    TT4 = DDSS + o("bd,abcd->abcd", Th, DESD) + o("ac,abcd->abcd", Th, E4) + o("ac,bd,abcd->abcd", Th, Th, EEDD)
    TT4S = new * (DDSS + o("bd,abcd->abcd", Th, DESD)) + o("ac,abcd->abcd", ThS, E4) \
        + o("ac,bd,abcd->abcd", ThS, Th, EEDD)
    chi, D4, DS4, Y = ntk_mo
    ThS_n = new * K_next + chi * ThS
    BS_n = C2 * D4 * o("xz,yw->xyzw", ThS, Th) + r * o("ab,cd->abcd", chi, chi) * BS
    FS_n = C2 * DS4 * ThS[:, None, :, None] + r * C2 * o("xyc,zwd,xczd->xyzw", Y, Y, FS)
    PS_n = C2 * (o("ab,ac,abcd->abcd", ThS, Th, E4) + r * o("abc,ad,bc->abcd", BSd, ES, DD)
                 + r * o("abcx,adx,bc->abcd", PS, Yds, DD))
    Q1_n = C2 * (o("ac,abcd->abcd", Th, PSI4S) + r * o("axcy,abx,cdy->abcd", F, YpsiS, Yds)
                 + r * o("abcx,ab,cdx->abcd", Q1, DD, Yds))
    Q2_n = C2 * (o("ac,abcd->abcd", ThS, PSI4) + r * o("axcy,abx,cdy->abcd", FS, Ypsi, Yds)
                 + r * o("abcx,ab,cdx->abcd", Q2, DD, Yds))
    R1_n = C2 * (o("ac,ad,abcd->abcd", Th, Th, PHI4S)
                 + r * (o("acd,ab,cd->abcd", Bd, PHI2S, DD) + o("acdx,abx,cd->abcd", P, YpsiS, DD)
                        + o("abcd,ab,cd->abcd", R1, DD, DD)))
    R2_n = C2 * (o("ac,ad,abcd->abcd", ThS, Th, PHI4)
                 + r * (o("acd,ab,cd->abcd", BSd, PHI2, DD) + o("acdx,abx,cd->abcd", PS, Ypsi, DD)
                        + o("abcd,ab,cd->abcd", R2, DD, DD)))
    Snu_n = C2 * (new * o("ac,bd,abcd->abcd", Th, Th, DDDD) + o("ab,ac,bd,abcd->abcd", ThS, Th, Th, EEDD)
                  + r * (o("abcd,ab,cd->abcd", B, new * DD + ThS * EE, DD) + o("abcd,ab,cd->abcd", Snu, DD, DD)))
    Smu_n = C2 * (o("ac,bd,abcd->abcd", ThS, Th, DDDD) + o("ab,ac,bd,abcd->abcd", Th, ThS, Th, EEDD)
                  + r * (o("abcd,ab,cd->abcd", BS, DD + Th * EE, DD) + o("abcd,ab,cd->abcd", Smu, DD, DD)))
    Tnu_n = C2 * (o("ab,abcd->abcd", ThS, TT4)
                  + r * (o("axby,acx,bdy->abcd", FS, Ypsi, Ypsi) + o("bdax,acx,bd->abcd", Q2, Ypsi, DD)
                         + o("acbx,ac,bdx->abcd", Q2, DD, Ypsi) + o("abcd,ac,bd->abcd", Tnu, DD, DD)))
    Tmu_n = C2 * (o("ab,abcd->abcd", Th, TT4S)
                  + r * (o("axby,acx,bdy->abcd", F, YpsiS, Ypsi) + o("bdax,acx,bd->abcd", Q, YpsiS, DD)
                         + o("acbx,ac,bdx->abcd", Q1, DD, Ypsi) + o("abcd,ac,bd->abcd", Tmu, DD, DD)))
    Unu_n = C2 * (o("ab,ac,bd,abcd->abcd", ThS, Th, Th, EEDD) + r * o("abcd,ad,bc->abcd", Unu, DD, DD))
    Umu_n = C2 * (o("ab,ac,bd,abcd->abcd", Th, ThS, Th, EEDD) + r * o("abcd,ad,bc->abcd", Umu, DD, DD))
    return (ThS_n, BS_n, FS_n, PS_n, Q1_n, Q2_n, R1_n, R2_n, Snu_n, Smu_n, Tnu_n, Tmu_n, Unu_n, Umu_n)


def layer_meta_kernels(x, *, depth, activation, C_W, C_b, widths=None) -> LayerMetaKernels:
    """The dNTK and ddNTKs with the NTK index restricted to the parameters of one layer (smooth sigma).

    Why: the NTK is a sum over layers, H = sum_m H^(m), H^(m)_ab = sum_{mu in layer m} D_mu f_a D_mu f_b;
    during training H^(m) moves by the restricted meta-kernels of :class:`LayerMetaKernels` (see
    :func:`sft.predict.ntk_change_by_layer_gd`). Arguments as :func:`output_meta_kernels`.

    Derivation (the recursion of the module docstring with a flavour on one derivative index; written
    out here, checked by the sum rule and by Monte Carlo in tests/test_ntk_change.py). A layer-l object
    with the index mu restricted to layer m is the full recursion of that object in which (i) the
    terms where mu is a weight of the new layer l + 1 (the sigma-factors: d_a s_b in psi_ab, e_a s_b in
    phi_ab, the fresh <d d d d> term and the DD part of (DD + Th <e e>) of S) are kept only if
    l + 1 = m, and (ii) every layer-l factor that carries mu is replaced by its restricted version:
    Theta -> Theta^(m) (Theta^(m),(l+1) = [l+1 = m] K^(l+1) + chi_perp Theta^(m),(l), Theta^(m),(1) =
    [m = 1] K^(1)); B_(xy)(zw) -> B^(m) (the NTK with inputs (x, z) restricted: B^(m)' = C_W^2 <dddd>
    Theta^(m)_xz Theta_yw + r chi chi B^(m)); F -> F^(m) (F^(m)' = C_W^2 <dsds> Theta^(m)_xz + r C_W^2
    Y Y F^(m)); P -> P^(m); Q_0123 -> Q^(1) or Q^(2) (index of slot 1 or 2 restricted); R -> R^(1),
    R^(2) (R^(3)_0123 = R^(2)_0132); S, T, U -> S^nu, S^mu, ... (the index shared by slots 0, 1 or by
    slots 0, 2). Slot by slot (mu of the slot restricted, Th = Theta, ThS = Theta^(m), psiS, phiS the
    restricted psi, phi):

        P^(m)'  = C^2 [ThS01 Th02 <e0 d1 d2 s3> + r B^(m)_(00)(12) <e0 s3> DD12 + r P^(m)_012c <d_c(d0 s3)> DD12]
        Q^(1)'  = Q' with psi01 -> psiS01 and Q -> Q^(1);   Q^(2)' = Q' with Th02 -> ThS02, F -> F^(m), Q -> Q^(2)
        R^(1)'  = R' with phi01 -> phiS01, psi01 -> psiS01, R -> R^(1)
        R^(2)'  = R' with Th02 -> ThS02, B -> B^(m), P -> P^(m), R -> R^(2)
        S^nu'   = S' with Th01 -> ThS01, the nu-new terms times [l+1 = m], S -> S^nu
        S^mu'   = S' with Th02 -> ThS02, B -> B^(m), S -> S^mu
        T^nu'   = T' with Th01 -> ThS01, F -> F^(m), Q -> Q^(2), T -> T^nu
        T^mu'   = T' with psi02 -> psiS02, Q_021c -> Q^(1)_021c, T -> T^mu
        U^nu', U^mu' = U' with Th01 -> ThS01, resp. Th02 -> ThS02

    The readout sums the neuron structures: dntk_f^(m) = P^(m) + Q^(1) + Q^(2)_0213, ddntk_I^(m) = R^(1)
    + R^(3)_0231 + R^(2)_0312, ddntk_II_nu = S^nu + T^nu + U^nu, ddntk_II_mu = S^mu + T^mu + U^mu.

    Checks (tests/test_ntk_change.py): the fields sum over m to :func:`output_meta_kernels` (1e-10; the
    flavours of Theta, B, F use the quadrature of :func:`sft.finite.ntk_step_multi`, so the sum is exact to
    rounding); one hidden layer: equal to single-neuron averages of the restricted parameter derivatives
    (linear sigma exactly, erf to 6e-10 with a converged Gauss-Hermite rule); the NTK change of trained
    depth-2 tanh ensembles per layer (|z| < 4). Measured once (not a test; 3 inputs, depth 2, tanh at
    C_W = 1, C_b = 0, float64, 400 networks per width, the restricted sums over parameters by jax autodiff):
    n x (Monte Carlo) at n = 64 and 128 extrapolated as 2 X_128 - X_64 agrees with every entry of all four
    restricted fields, every layer, |z| <= 2.6 (rms z 0.6 .. 0.9); the unextrapolated n = 32 values differ by
    up to 11% of the scale (O(1/n), as the unrestricted ddNTKs do). Smooth sigma only (and linear).

    >>> lm = layer_meta_kernels(np.array([[1.0, 0.5], [0.3, -1.0]]), depth=2, activation="tanh", C_W=1.0, C_b=0.0)
    >>> out = output_meta_kernels(np.array([[1.0, 0.5], [0.3, -1.0]]), depth=2, activation="tanh", C_W=1.0,
    ...                           C_b=0.0)
    >>> lm.dntk_f.shape, bool(np.abs(lm.dntk_f.sum(0) - out.dntk_f).max() < 1e-10 * np.abs(out.dntk_f).max())
    ((3, 2, 2, 2, 2), True)
    """
    require_x64("sft.finite.layer_meta_kernels")
    act = get_activation(activation)
    if act.slopes is not None and act.slopes[0] != act.slopes[1]:
        raise ValueError(f"activation={activation!r} is not allowed: layer_meta_kernels needs a smooth sigma "
                         "(for kinked sigma the ddNTK diverges at coinciding inputs; see output_meta_kernels)")
    act, depth, cw, cb, r, nf, N = _network_setup(x, depth, act, C_W, C_b, widths)
    z2, z4 = np.zeros((N, N)), np.zeros((N,) * 4)
    full = (z4,) * 6
    flavs = [(nf.K[0] if m == 0 else z2, z4, z4) + (z4,) * 11 for m in range(depth + 1)]
    Kn = nf.K[0]
    for l in range(depth):
        K, Th = nf.K[l], nf.Theta[l]
        g = _Gauss(act, K)
        mo = {k: _tensor(g, k, 2) for k in ("dd", "ee", "es", "td")}
        mo.update({k: _tensor(g, k, 4) for k in ("edds", "dsds", "esdd", "tddd", "dddd", "eedd", "ddss", "desd")})
        mo["Yds"], mo["Yed"] = _tensor(g, "ds", 2, weight=True), _tensor(g, "ed", 2, weight=True)
        gn = _GaussianLayer(act, Kn)  # ntk_step_multi's own kernel recursion Kn (nf.K is sft.finite.multi_input's)
        ntk_mo = (cw[l + 1] * gn.moment("dd"), gn.moment("dddd"), gn.moment("dsds"), gn.derivative("ds", 1))
        P, Q, R = full[:3]
        K_new = cb[l + 1] + cw[l + 1] * gn.moment("ss")  # the new layer's NTK part, as ntk_step_multi
        flavs = [_layer_step(mo, K_new, Th, (nf.B[l], nf.F[l], P, Q, R), fl, float(m == l + 1), r[l],
                             cw[l + 1] ** 2, cw[l + 1], ntk_mo) for m, fl in enumerate(flavs)]
        full = meta_kernel_step(K, Th, nf.B[l], nf.F[l], *full, r[l], activation=act, C_W=cw[l + 1])
        Kn = K_new
    out = []
    for fl in flavs:
        ThS, PS, Q1, Q2, R1, R2 = fl[0], *fl[3:8]
        Snu, Smu, Tnu, Tmu, Unu, Umu = fl[8:]
        R3 = R2.transpose(0, 1, 3, 2)
        out.append((ThS, PS + Q1 + Q2.transpose(0, 2, 1, 3),
                    R1 + R3.transpose(0, 3, 1, 2) + R2.transpose(0, 2, 3, 1), Snu + Tnu + Unu, Smu + Tmu + Umu))
    return LayerMetaKernels(*(np.stack(c) for c in zip(*out)))
