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
Any number N of inputs: each integral above involves at most 4 distinct inputs (the fresh term's
multiset {a1..a4}; the derivatives' pair {a1, a2}) and is taken on the rule of those inputs alone.
Cost and accuracy of :func:`multi_input`: each entry comes from the <= 4 inputs it involves, so a sub-tensor
equals the result for those inputs alone; cost grows like C(N, 4) (N = 8 in seconds, N = 16 in about a
minute at depth 3). Limits, checked before any integral: the estimated node evaluations
depth x sum_{d<=4} C(N, d) (2 n_d)^d (n_d the nodes per side above) must be <= ``MAX_NODE_EVALUATIONS``
(1e12, ~1.5 h at the measured ~2e8 per second on 2 cores: N <= 50 at depth 1) and the memory
~(2 depth + 8) N^4 x 8 bytes <= ``MAX_BYTES`` (16 GiB); else ValueError stating the estimate and the
limit (raise the module attributes deliberately for bigger runs). At criticality V/(n K^2) ~ nu L/n with nu = 3 A4/A2^2 - 1 for scale-invariant sigma
(ReLU 5, linear 2) and nu -> 2/3 for the K* = 0 class (tanh, erf). Checks: tests/test_finite_width.py
(Monte Carlo ensembles with per-network metrics; the exact deep-linear law of :mod:`sft.finite.deep_linear`;
the symbolic derivation).
"""
from __future__ import annotations

import concurrent.futures
import functools
import itertools
import math
import os
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..kernels.activations import get_activation
from ..conventions import (check_array, check_depth, check_flag, check_int, check_real, check_widths,
                           layer_constants, pd_inverse, psd_eigh, require_x64)
from ..gaussian.expectations import _is_traced
from ..kernels.recursion import _traced_constants, nngp

__all__ = ["SingleInput", "MultiInput", "single_input", "multi_input", "single_input_step",
           "neuron_excess_kurtosis", "gaussian_rule", "nu_scale_invariant", "nu_from_recursion",
           "width_ratios"]

#: Limits of :func:`multi_input` (module docstring): estimated node evaluations, and bytes.
MAX_NODE_EVALUATIONS = 10 ** 12
MAX_BYTES = 2 ** 34
_CUTS = {1: 10.0, 2: 10.0}  # |u| cut by dimension (default 8): wide enough for He_4 weights
_NODES = {1: 48, 2: 32, 3: 32, 4: 20}  # Gauss-Legendre nodes per side of the split, by dimension


# ------------------------------------------------------------------------------- quadrature
@functools.lru_cache(maxsize=None)
def _legendre(m: int):
    return np.polynomial.legendre.leggauss(m)


def _cholesky(K):
    """Cholesky factors of a stack of covariances K (..., d, d); ValueError unless positive definite
    within the tolerance of :func:`sft.conventions.psd_eigh` (lam_min > 10 d eps lam_max: a matrix
    singular within rounding would give a degenerate rule and an O(1/eps) K^{-1})."""
    Ks = K.reshape((-1,) + K.shape[-2:])
    try:
        psd_eigh("the input covariance", Ks, definite=True, vectors=False)
    except ValueError as err:
        lam = np.linalg.eigvalsh(0.5 * (Ks + np.swapaxes(Ks, -1, -2)))
        top = np.abs(lam).max(1)
        bad = Ks[np.argmin(lam[:, 0] / np.where(top > 0, top, 1.0))]
        raise ValueError(f"K={bad.tolist()} is not allowed: the covariance of the inputs involved must be "
                         f"positive definite (distinct, linearly independent inputs or C_b > 0): {err}") from None
    return np.linalg.cholesky(K)


def _level_nodes(xp, proj, lkk, t, wt, cut):
    """One level of the nested rule: u_k nodes and weights (.., 2, n), split where proj + lkk u_k = 0.

    Gauss-Legendre nodes t, weights wt (n,) on [-cut, split] (side 0) and [split, cut] (side 1), times
    the N(0, 1) density; proj (..) is the part of z_k from the earlier coordinates.
    """
    split = xp.clip(-proj / lkk, -cut, cut)[..., None, None]
    sgn = np.array([[-1.0], [1.0]])
    h = 0.5 * (cut - sgn * split)
    x = h * t + 0.5 * (split + sgn * cut)
    return x, h * wt * xp.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)


def _rule_batch(L, n, cut):
    """gaussian_rule for a stack of Cholesky factors L (B, d, d): nodes z (B, P, d), weights w (B, P)."""
    t, wt = _legendre(n)
    B, d = L.shape[:2]
    U, W = np.zeros((B, 1, 0)), np.ones((B, 1))
    for k in range(d):
        x, w = _level_nodes(np, np.einsum("bpj,bj->bp", U, L[:, k, :k]), L[:, k, k, None], t, wt, cut)
        x, w = x.reshape(B, -1, 2 * n), w.reshape(B, -1, 2 * n)
        U = np.concatenate([np.repeat(U, x.shape[-1], 1), x.reshape(B, -1, 1)], 2)
        W = (W[..., None] * w).reshape(B, -1)
    return np.einsum("bpj,bkj->bpk", U, L), W


def gaussian_rule(K, n_nodes=None):
    """Nodes z (P, d) and weights w (P,) with sum_p w_p f(z_p) ~= E[f(z)], z ~ N(0, K), K (d, d) > 0.

    Nested Gauss-Legendre in the Cholesky coordinates z = L u, the u_k rule split where z_k = 0
    (module docstring). n_nodes per side of each split; default by d: 48, 32, 32, 20 (d = 1..4).
    """
    K = np.atleast_2d(check_array("K", K, ndim=(0, 2)))
    d = K.shape[0]
    if K.shape != (d, d):
        raise ValueError(f"K with shape {K.shape} is not allowed: give a finite square covariance")
    n_nodes = _NODES.get(d, 12) if n_nodes is None else check_int("n_nodes", n_nodes, 1)
    z, w = _rule_batch(_cholesky(K)[None], n_nodes, _CUTS.get(d, 8.0))
    return z[0], w[0]


def _sigma(act, z):
    return np.asarray(act.fn(z), dtype=np.float64)


@functools.partial(jax.jit, static_argnames=("fn", "n", "cut", "powers"))
def _nested_moments(L, *, fn, n, cut, powers):
    """<prod_k sigma(z_k)^p_k> (B, M) for each p in powers (M tuples of length d), z ~ N(0, L L^T), L (B, d, d).

    The gaussian_rule nodes, summed level by level (sigma(z_k) depends on u_1..u_k only), so the
    d-dimensional product is never formed; one exp and one sigma per node of the last level.
    """
    t, wt = _legendre(n)
    B, d = L.shape[:2]
    us, ws, ss = [], [], []  # level k: arrays (B,) + (2, n) * (k + 1); u_j broadcast along later levels
    for k in range(d):
        proj = sum((L[:, k, j].reshape((B,) + (1,) * 2 * k) * u.reshape(u.shape + (1,) * 2 * (k - 1 - j))
                    for j, u in enumerate(us)), jnp.zeros((B,) + (1,) * 2 * k))
        x, w = _level_nodes(jnp, proj, L[:, k, k].reshape((B,) + (1,) * 2 * k), t, wt, cut)
        ss.append(fn(proj[..., None, None] + L[:, k, k].reshape((B,) + (1,) * 2 * (k + 1)) * x))
        ws.append(w)
        us.append(x)
    out = []
    for p in powers:
        acc = (ws[-1] * ss[-1] ** p[-1]).sum((-2, -1))
        for k in reversed(range(d - 1)):
            acc = (ws[k] * ss[k] ** p[k] * acc).sum((-2, -1))
        out.append(acc)
    return jnp.stack(out, 1)


_CHUNK = {1: 64, 2: 64, 3: 16, 4: 2}  # subsets per batched call, by d: <= 5e6 nodes (~40 MB per array)


def _subset_moments(act, K, subsets, powers):
    """(S, M) moments <prod_k sigma(z_{s_k})^p_k>_K on the rule of each subset s (S, d) of inputs.

    Fixed batch shapes (padded with identity factors), so each (activation, d) compiles once; the
    batches run on a thread pool (XLA releases the GIL).
    """
    S, d = subsets.shape
    n, cut, chunk = _NODES[d], _CUTS.get(d, 8.0), _CHUNK[d]
    L = _cholesky(K[subsets[:, :, None], subsets[:, None, :]])
    L = np.concatenate([L, np.broadcast_to(np.eye(d), (-S % chunk, d, d))])

    def batch(i):
        return np.asarray(_nested_moments(jnp.asarray(L[i:i + chunk]), fn=act.fn, n=n, cut=cut, powers=powers))
    with concurrent.futures.ThreadPoolExecutor(min(4, os.cpu_count() or 1)) as pool:  # memory: 4 batches
        return np.concatenate(list(pool.map(batch, range(0, len(L), chunk))))[:S]


def _slots(p):
    """Slot tuple of a power pattern: (2, 1, 1) -> (0, 0, 1, 2)."""
    return tuple(k for k, m in enumerate(p) for _ in range(m))


def _symmetric_moments(act, K):
    """s2 (N, N) = <s_a s_b>_K and s4 (N,)*4 = <s_a1 s_a2 s_a3 s_a4>_K, each distinct multiset once.

    An entry with d <= 4 distinct inputs is integrated on the rule of those d inputs (in increasing
    order), so it does not depend on the other inputs; the integrals are batched over all subsets of d.
    """
    N = K.shape[0]
    s2, s4 = np.empty((N, N)), np.empty((N,) * 4)
    for d in range(1, min(N, 4) + 1):
        subsets = np.array(list(itertools.combinations(range(N), d)))
        p4 = [p for p in itertools.product(range(1, 5), repeat=d) if sum(p) == 4]
        p2 = {1: [(2,)], 2: [(1, 1)]}.get(d, [])
        vals = _subset_moments(act, K, subsets, tuple(p4 + p2))
        for m, p in enumerate(p4 + p2):
            T = s4 if sum(p) == 4 else s2
            for perm in set(itertools.permutations(_slots(p))):
                T[tuple(subsets[:, list(perm)].T)] = vals[:, m]
    return s2, s4


def _pair_derivatives(act, K):
    """M2 (N, N, 2, 2), M4 (N, N, 2, 2, 2, 2): <d_b1 .. d_bk (s_a1 s_a2)>_K with b_i in the slots (a1, a2).

    M2[a1, a2, i, j] = <d_{(a1, a2)_i} d_{(a1, a2)_j} (s_a1 s_a2)>; for a1 = a2 only slot 0 is used
    (the rest is 0), so that summing over slots sums over the distinct inputs {a1, a2} once.
    Integration by parts (module docstring) on the rule of {a1, a2}: <f H> with the Hermite tensors.
    """
    N = K.shape[0]
    M2, M4 = np.zeros((N, N, 2, 2)), np.zeros((N, N) + (2,) * 4)
    for d in (1, 2):
        sub = np.array(list(itertools.combinations(range(N), d)))
        if len(sub) == 0:
            continue
        Ks = K[sub[:, :, None], sub[:, None, :]]
        Ls = _cholesky(Ks)
        Kinv = pd_inverse("the input covariance", Ks)
        for lo in range(0, len(sub), 256):
            sl = slice(lo, lo + 256)
            z, w = _rule_batch(Ls[sl], _NODES[d], _CUTS[d])
            s = _sigma(act, z)
            fw_ = w * s[..., 0] * s[..., -1]
            d2, d4 = _hermite_moments(fw_, np.einsum("bpj,bjk->bpk", z, Kinv[sl]), Kinv[sl])
            a, b = sub[sl, 0], sub[sl, -1]
            if d == 1:
                M2[a, a, 0, 0], M4[a, a, 0, 0, 0, 0] = d2[:, 0, 0], d4[:, 0, 0, 0, 0]
            else:
                M2[a, b], M4[a, b] = d2, d4
                M2[b, a], M4[b, a] = d2[:, ::-1, ::-1], d4[:, ::-1, ::-1, ::-1, ::-1]
    return M2, M4


def _hermite_moments(fw_, y, Kinv):
    """<f H_bc> and <f H_bcde> (B, d, d), (B,) + (d,) * 4 from weights*f fw_ (B, P) and y = Kinv z (B, P, d).

    H_bc = y_b y_c - Kinv_bc; H_bcde = y_b y_c y_d y_e - (6 terms Kinv y y) + (3 terms Kinv Kinv).
    """
    B, P, d = y.shape
    yy = (y[..., :, None] * y[..., None, :]).reshape(B, P, d * d)
    m0 = fw_.sum(1)
    m2 = np.einsum("bp,bpk->bk", fw_, yy).reshape(B, d, d)
    m4 = np.einsum("bp,bpk,bpl->bkl", fw_, yy, yy).reshape((B,) + (d,) * 4)
    out4 = m4.copy()
    for p in ("bc,de", "bd,ce", "be,cd"):  # the three ways to pair (b, c, d, e)
        (i, j), (k, m) = p.split(",")
        out4 -= np.einsum(f"z{i}{j},z{k}{m}->zbcde", Kinv, m2) + np.einsum(f"z{k}{m},z{i}{j}->zbcde", Kinv, m2)
        out4 += np.einsum(f"z{i}{j},z{k}{m}->zbcde", Kinv, Kinv) * m0[:, None, None, None, None]
    return m2 - Kinv * m0[:, None, None], out4


def _propagate_vertex(M2, V):
    """(1/4) sum_{b1..b4} <d_b1 d_b2 (s_a1 s_a2)> V_{(b1b2)(b3b4)} <d_b3 d_b4 (s_a3 s_a4)>, (N,)*4.

    b1, b2 run over {a1, a2} and b3, b4 over {a3, a4} (M2 in slot form), applied on each pair axis.
    """
    def on_last_pair(T):  # sum_{kl} M2[c, d, k, l] T[.., slot_k(c, d), slot_l(c, d)]
        diag = np.einsum("...cc->...c", T)
        return (M2[..., 0, 0] * diag[..., :, None] + M2[..., 1, 1] * diag[..., None, :]
                + M2[..., 0, 1] * T + M2[..., 1, 0] * np.swapaxes(T, -1, -2))
    A = on_last_pair(V)
    return 0.25 * np.moveaxis(on_last_pair(np.moveaxis(A, (0, 1), (2, 3))), (2, 3), (0, 1))


def _shift_sources(M2, M4, G1, V):
    """(sum_{bc} <d_b d_c (s_a1 s_a2)> G1_bc, sum_{b..e} <d_b d_c d_d d_e (s_a1 s_a2)> V_{(bc)(de)}), (N, N)."""
    N = G1.shape[0]
    slot = np.stack(np.meshgrid(np.arange(N), np.arange(N), indexing="ij"), -1)  # slot[a1, a2] = (a1, a2)

    def at(axis, ndim):  # the slot index broadcast along one of ndim slot axes
        return slot.reshape((N, N) + tuple(2 if q == axis else 1 for q in range(ndim)))
    g = np.einsum("abij,abij->ab", M2, G1[at(0, 2), at(1, 2)])
    v = np.einsum("abijkl,abijkl->ab", M4, V[at(0, 4), at(1, 4), at(2, 4), at(3, 4)])
    return g, v


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
    """(<s^2>, <s^4>, d<s^2>/dK, d^2<s^2>/dK^2) at variance K > 0 (module docstring).
    K a float (numpy) or a traced JAX scalar (then the same rule in jax.numpy, differentiable in K)."""
    u, w = _std_normal_rule()
    s2 = (_sigma(act, math.sqrt(K) * u) if isinstance(K, float) else act.fn(jnp.sqrt(K) * u)) ** 2
    he2, he4 = u * u - 1.0, u ** 4 - 6.0 * u * u + 3.0
    return w @ s2, w @ (s2 * s2), (w @ (s2 * he2)) / (2 * K), (w @ (s2 * he4)) / (4 * K * K)


def single_input_step(K, V, G1, r, *, activation, C_W, C_b):
    """One layer of the single-input recursion: (K, V, G1) of layer l -> layer l + 1, and chi_par.

    K' = C_b + C_W <s^2>,  V' = C_W^2 (<s^4> - <s^2>^2) + r chi^2 V,
    G1' = r [chi G1 + (C_W/2) d^2<s^2>/dK^2 V],  chi = C_W d<s^2>/dK,  r = n_l / n_{l-1}.
    Returns (K', V', G1', chi). JAX-traceable in K, V, G1, C_W, C_b (values unchecked when traced).
    """
    require_x64("sft.finite.single_input_step")
    act = get_activation(activation)
    if _is_traced(K, V, G1, C_W, C_b):
        K = jnp.asarray(K, dtype=jnp.float64)
    else:
        K = check_real("K", K, minimum=0, strict=True)
        V, G1, r = check_real("V", V), check_real("G1", G1), check_real("r", r, minimum=0, strict=True)
        C_W, C_b = check_real("C_W", C_W, minimum=0, strict=True), check_real("C_b", C_b, minimum=0)
    m2, m4, dm2, d2m2 = _single_moments(act, K)
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

    JAX: traceable in K1, C_W and C_b (jit, vmap, grad; then the fields are JAX arrays, values unchecked).

    >>> out = single_input(1.0, depth=2, activation="linear", C_W=1.0, C_b=0.0)
    >>> np.round(out.V, 12).tolist(), bool(np.all(np.abs(out.G1) < 1e-12))   # V^(l)/K^2 = 2 (l - 1)
    ([0.0, 2.0, 4.0], True)
    >>> dV = jax.grad(lambda cw: single_input(1.0, depth=2, activation="linear", C_W=cw, C_b=0.0).V[-1])(1.0)
    >>> round(float(dV), 10)   # V^(3) = 4 K^2 C_W^4 with K^(l) = C_W^(l-1) K1 (linear, C_b = 0)
    16.0
    """
    depth = check_depth(depth)
    r = width_ratios(widths, depth)
    if _is_traced(K1, C_W, C_b):
        cw, cb = _traced_constants(depth, C_W, C_b)
        K, V, G1, chis = [jnp.asarray(K1, dtype=jnp.float64)], [0.0], [0.0], []
        for l in range(depth):
            k, v, g, chi = single_input_step(K[-1], V[-1], G1[-1], r[l], activation=activation,
                                             C_W=cw[l + 1], C_b=cb[l + 1])
            K.append(k), V.append(v), G1.append(g), chis.append(chi)
        return SingleInput(*(jnp.stack(jnp.broadcast_arrays(*x)) for x in (K, V, G1, chis)),
                           None if widths is None else check_widths(widths))
    cw, cb = layer_constants(depth, C_W, C_b)
    K, V, G1, chis = [check_real("K1", K1, minimum=0, strict=True)], [0.0], [0.0], []
    for l in range(depth):
        k, v, g, chi = single_input_step(K[-1], V[-1], G1[-1], r[l], activation=activation,
                                         C_W=cw[l + 1], C_b=cb[l + 1])
        K.append(k), V.append(v), G1.append(g), chis.append(chi)
    return SingleInput(np.array(K), np.array(V), np.array(G1), np.array(chis),
                       None if widths is None else check_widths(widths))


def neuron_excess_kurtosis(V, K, n_prev):
    """Excess kurtosis of one preactivation of layer l to first order: 3 V^(l) / (n_{l-1} K^(l)^2).

    V, K: finite, K > 0; n_prev >= 1 (scalars or broadcastable arrays)."""
    V, K, n = check_array("V", V), check_array("K", K), check_array("n_prev", n_prev)
    if np.asarray(n_prev).dtype.kind == "b" or np.any(n < 1) or np.any(n != np.round(n)):
        raise ValueError(f"n_prev={n_prev!r} is not allowed: widths are integers >= 1 (not booleans)")
    if np.any(K <= 0):
        raise ValueError(f"K={K!r} is not allowed: the kernel must be > 0")
    return 3.0 * V / (n * K ** 2)


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
    """Four-point vertex V^(l) and (if ``kernel_shift``) G1^(l) for N distinct inputs x (N, n_0), any N.

    Recursion and quadrature: module docstring. K^(l) from :func:`sft.kernels.nngp`. Every integral
    involves at most 4 inputs: the fresh term <s_a1 s_a2 s_a3 s_a4> is integrated once per multiset
    {a1..a4} on the rule of its d <= 4 distinct inputs (batched over all subsets of d inputs), the
    derivatives <d_b d_c (s_a1 s_a2)> once per pair {a1, a2}; the propagated term and G1 are then
    contractions over the slots {a1, a2} x {a3, a4} (no N^6 tensors). An entry's value depends only
    on the inputs it involves (so a sub-tensor equals the result for those inputs alone).
    Cost per layer: C(N, 4) four-input integrals of 40^4 nodes, ~15 ms each on 2 cores (tanh, depth 3:
    N = 8 ~3.5 s, N = 16 ~75 s, plus ~2 s of compilation on the first call); memory O(N^4).
    """
    require_x64("sft.finite.multi_input")
    act = get_activation(activation)
    depth = check_depth(depth)
    cw, cb = layer_constants(depth, C_W, C_b)
    r = width_ratios(widths, depth)
    kernel_shift = check_flag("kernel_shift", kernel_shift)
    x = check_array("x", x, ndim=2)
    N = np.shape(x)[0] if np.ndim(x) == 2 else 0
    evals = depth * sum(math.comb(N, d) * (2 * _NODES[d]) ** d for d in range(1, 5))
    mem = (2 * depth + 8) * N ** 4 * 8
    for what, val, lim, attr in (("node evaluations", evals, MAX_NODE_EVALUATIONS, "MAX_NODE_EVALUATIONS"),
                                 ("bytes of memory", mem, MAX_BYTES, "MAX_BYTES")):
        if val > lim:
            raise ValueError(f"multi_input with N = {N} inputs and depth = {depth} is too large: ~{val:.3g} "
                             f"{what}, above the limit {lim:.3g} (sft.finite.vertex.{attr}; about 2e8 "
                             "node evaluations per second on 2 cores); use fewer inputs (each entry depends "
                             "only on the <= 4 inputs it involves, so sub-tensors can be computed separately)")
    Ks = nngp(x, depth=depth, activation=act, C_W=cw, C_b=cb, all_layers=True)
    V, G1 = [np.zeros((Ks.shape[1],) * 4)], [np.zeros(Ks.shape[1:])]
    for l in range(depth):
        s2, s4 = _symmetric_moments(act, Ks[l])
        M2, M4 = _pair_derivatives(act, Ks[l])
        V.append(cw[l + 1] ** 2 * (s4 - np.einsum("ab,cd->abcd", s2, s2))
                 + r[l] * cw[l + 1] ** 2 * _propagate_vertex(M2, V[-1]))
        if kernel_shift:
            g, v = _shift_sources(M2, M4, G1[-1], V[-2])
            G1.append(r[l] * (cw[l + 1] / 2 * g + cw[l + 1] / 8 * v))
    return MultiInput(Ks, np.stack(V), np.stack(G1) if kernel_shift else None,
                      None if widths is None else check_widths(widths))


# ------------------------------------------------------------------------------- criticality
def nu_scale_invariant(a_plus, a_minus) -> float:
    """nu of V^(l) / K^2 = nu (l - 1) at criticality (C_b = 0, C_W = 1/A2) for scale-invariant sigma.

    From the single-input recursion with chi_par = 1, <s^2> = A2 K, <s^4> = 3 A4 K^2:
    V^(l+1) = (3 A4/A2^2 - 1) K^2 + V^(l), so nu = 3 A4 / A2^2 - 1, A_k = (a+^k + a-^k)/2
    (ReLU 5, linear 2, abs 2; cf. PDLT ch. 5, scale-invariant class). Same nu as the exact law in
    :mod:`sft.finite.deep_linear`, where it holds at any width.
    """
    from .deep_linear import scale_invariant_nu
    return scale_invariant_nu(check_real("a_plus", a_plus), check_real("a_minus", a_minus))


def nu_from_recursion(activation, *, C_W, C_b=0.0, K1=1.0, depth=1000) -> float:
    """nu estimated from the recursion: V^(L+1) / (L K^(L+1)^2) at depth L (equal widths).

    Scale-invariant sigma at criticality: exactly nu for any L. K* = 0 class (tanh, erf at C_W = 1/sigma_1^2,
    C_b = 0): K^(l) ~ 1/((-a1) l) and w = V/K^2 obeys w' = w + 2 - 2 w / l + ..., so nu = 2/3
    with corrections O(log L / L) (derivations/vertex_recursion.py).
    """
    out = single_input(K1, depth=depth, activation=activation, C_W=C_W, C_b=C_b)
    return float(out.V[-1] / (depth * out.K[-1] ** 2))
