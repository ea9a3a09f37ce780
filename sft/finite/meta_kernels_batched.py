"""Meta-kernels at O(1/n) for any number N of inputs and smooth sigma: the recursion of
:mod:`sft.finite.meta_kernels` with every Gaussian mean of a layer computed in one batched pass per subset size.

Same quantities, conventions and recursion as :func:`sft.finite.output_meta_kernels` (P .. U, module
docstring there) and, for the NTK covariances it needs, :func:`sft.finite.ntk_step_multi` (K, Theta, B, F:
the P .. U recursion needs no A, D, V, G1, Theta1; with ``ntk_statistics=True`` also A, D, Theta1 by
ntk_step_multi's formulas and V, G1 from :func:`sft.finite.multi_input`, so that every field of
:class:`sft.finite.OutputMetaKernels` is filled and :func:`sft.predict.trained_ensemble_gd` / ``_flow`` run
for any N; the recursion of P .. U is generated in derivations/meta_kernel_step.py):

    K' = C_b + C_W <s_a s_b>,   Theta' = K' + C_W <d_a d_b> Theta,
    B'_{xyzw} = C_W^2 <d_x d_y d_z d_w> Th_xz Th_yw + r C_W^2 <d_x d_y> <d_z d_w> B_{xyzw},
    F'_{xyzw} = C_W^2 <d_x s_y d_z s_w> Th_xz + r C_W^2 <d_c (d_x s_y)> <d_c' (d_z s_w)> F_{xczc'}.

Where the time goes. Every mean is a product of one-input factors sigma^(k)(z_a) at <= 4 distinct inputs.
A product over the input subset S (|S| = d) is integrated with the rule of :func:`sft.finite.gaussian_rule`
(nested Gauss-Legendre split at z_k = 0, 2 n_d nodes per dimension, P_d = (2 n_d)^d nodes).
meta_kernel_step loops over subsets and products in Python; here, for each d, all C(N, d) subsets are
integrated together: one stacked Cholesky, one batched rule, sigma .. sigma''' evaluated once per node, and
one jitted call per block of nodes with four matrix products, one per right pair of factors
((#lefts d^2 x P) (P x d^2): es.dd, td.dd, dd.dd, ee.dd | ed.ds, ds.ds | dd.ss | de.sd), which give the 8
four-factor products for every assignment of the four slots to the inputs of S; the entries are scattered
into the (N,)*4 tensors. Cost per layer ~ C(N, 4) P_4 (2 x 8 x 256 + 4 evaluations) flops for N >> 4;
memory ~ 30 N^4 x 8 bytes (the tensors; nodes are streamed in blocks of 2^17). With the default nodes of
:mod:`sft.finite.meta_kernels` (n_4 = 20: P_4 = 2.56e6) every mean is the same sum as there (agreement to
rounding). Fewer nodes lose accuracy fast (tanh, N = 4, depth 3: n = 48/32/16/10 for d = 1..4 is 1e-4
off, relative; a product Gauss-Hermite rule with 32 nodes per dimension 2e-4: the integrands with several
sigma' factors are narrow around z = 0), so the node count is not a free knob at a 1e-10 target.
Measured: sims/benchmarks/bench_meta_kernels_large.py.

Smooth activations only (jax-differentiable sigma with finite sigma'''); kinked sigma: output_meta_kernels.
Checks (tests/test_meta_kernel_contractions.py): equal to :func:`sft.finite.output_meta_kernels` to 1e-10
(relative to the largest entry) for tanh and erf at N <= 3 with the node counts of
ntk_fluctuations_multi for the NTK part (``ntk_nodes``); the Monte Carlo tests of output_meta_kernels
(tests/test_meta_kernels.py) carry over through that agreement. ntk_statistics=True
(tests/test_meta_kernels_batched.py): all eleven fields equal output_meta_kernels to 1e-10 (N = 2, depth 2,
unequal widths; measured once at N = 3: <= 3e-14 relative, every field); N = 5, one hidden layer, tanh:
K, Theta, V, ntk_cov, ntk_f2, dntk_f, ddntk_I, ddntk_II against single-neuron Monte Carlo (projections and
single entries with four distinct inputs, |z| < Z_MAX; with the test's reduced nodes the largest |z| is
2.6, with the default nodes 1.9: the quadrature error of n_4 = 10 is visible on a single entry of ddntk_I).
Near-singular 4-input blocks of K need more nodes (one hidden layer, three features, a block with
eigenvalue 2e-4: an entry of ntk_cov at n_3, n_4 = 16, 10 was 11% below its value at the default nodes).
"""
from __future__ import annotations

import functools
import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np

from . import vertex as fw
from .meta_kernels import OutputMetaKernels, _NODES, _derivative_fns, _surjections
from .ntk_variance import readout_ntk_covariance
from ..kernels.activations import get_activation
from ..conventions import (check_array, check_depth, check_flag, check_int, check_widths, layer_constants,
                           pd_inverse, require_x64)

__all__ = ["batched_gaussian_means", "batched_meta_kernels", "cost_estimate"]

_FOUR = ("edds", "dsds", "esdd", "tddd", "dddd", "eedd", "ddss", "desd")
_TWO = ("ss", "dd", "ee", "es", "td")
_KINDS = "sdet"
_BLOCK = 2 ** 17  # nodes per compiled call (its pair factors: 12 d^2 float64 per node, ~ 200 MiB at d = 4)
# the 8 four-factor products grouped by their right pair (slots 2, 3): {right: lefts (slots 0, 1)}
_GROUPS = {"dd": ("es", "td", "dd", "ee"), "ds": ("ed", "ds"), "ss": ("dd",), "sd": ("de",)}
# with the NTK statistics (ntk=True): also <s s s s> and <s s d d> (A, D of ntk_step_multi)
_GROUPS_NTK = {"dd": ("es", "td", "dd", "ee", "ss"), "ds": ("ed", "ds"), "ss": ("dd", "ss"), "sd": ("de",)}


@functools.partial(jax.jit, static_argnums=(0, 3))
def _pair_products(fn, z, w, groups):
    """{right: M (S, #lefts, d, d, d, d)}, M[s, i, a, b, c, e] = sum_p w_sp L_i[a, b] R[c, e] with
    L_i = f(z_a) g(z_b) for the pair (f, g) = _GROUPS[right][i], R likewise; z (S, P, d), w (S, P).
    One (#lefts d^2 x P) (P x d^2) matrix product per right pair."""
    V = dict(zip(_KINDS, (g(z) for g in _derivative_fns(fn))))
    S, P, d = z.shape
    pair = lambda k: (V[k[0]][..., :, None] * V[k[1]][..., None, :]).reshape(S, P, d * d)  # noqa: E731
    out = {}
    for right, lefts in groups:
        L = w[:, :, None] * jnp.concatenate([pair(k) for k in lefts], 2)
        out[right] = jnp.einsum("spa,spb->sab", L, pair(right)).reshape(S, len(lefts), d, d, d, d)
    return out


def _four_point(fn, z, w, step, groups):
    """_pair_products over a chunk of subsets (padded to ``step`` subsets) or, for P > _BLOCK nodes per
    subset, over node blocks of one subset (padded with zero weights): fixed shapes, one compilation each."""
    S, P, d = z.shape
    if P <= _BLOCK:
        pad = step - S
        zp = np.concatenate([z, np.zeros((pad, P, d))]) if pad else z
        wp = np.concatenate([w, np.zeros((pad, P))]) if pad else w
        return {k: np.asarray(v)[:S] for k, v in _pair_products(fn, jnp.asarray(zp), jnp.asarray(wp),
                                                                 groups).items()}
    M = {k: 0.0 for k, _ in groups}
    for lo in range(0, P, _BLOCK):
        zb, wb = z[:, lo:lo + _BLOCK], w[:, lo:lo + _BLOCK]
        pad = _BLOCK - zb.shape[1]
        if pad:
            zb = np.concatenate([zb, np.zeros((S, pad, d))], 1)
            wb = np.concatenate([wb, np.zeros((S, pad))], 1)
        for k, v in _pair_products(fn, jnp.asarray(zb), jnp.asarray(wb), groups).items():
            M[k] = M[k] + np.asarray(v)
    return M


def _rule_stack(K, subsets, n):
    """Nodes z (S, P, d), weights w (S, P) of gaussian_rule on K[s, s] for each subset s (S, d)."""
    d = subsets.shape[1]
    return fw._rule_batch(fw._cholesky(K[subsets[:, :, None], subsets[:, None, :]]), n, fw._CUTS.get(d, 8.0))


def batched_gaussian_means(K, *, activation, n_nodes=None, dims=(1, 2, 3, 4), out=None, ntk=False):
    """All Gaussian means one layer of the recursion needs, at kernel K (N, N), for every input tuple.

    Returns {kinds: (N,)*4} for the four-factor products (kinds as in :mod:`sft.finite.meta_kernels`:
    s, d, e, t = sigma .. sigma''', slot k at input a_k), {kinds: (N, N)} for "ss", "dd", "ee", "es", "td",
    and "Yds", "Yed" (N, N, N) = <d_c (d_a s_b)>, <d_c (e_a d_b)> (Gaussian integration by parts: the
    product times (K_S^-1 z)_c). n_nodes: {d: nodes per side} overriding the defaults of meta_kernels
    (n = 96, 64, 32, 20 for d = 1..4). dims: the subset sizes to integrate; out: a dict of this form whose
    entries for those sizes are overwritten (None: zeros).

    ntk=True adds what :func:`sft.finite.ntk_step_multi` needs for A, D and Theta1: "ssss", "ssdd" (N,)*4
    (two more products in the same pass), "Hss", "Hdd" (N,)*4 = <d_c d_e (s_a s_b)>, <d_c d_e (d_a d_b)>
    (nonzero only for c, e in {a, b}) and "Hdd4" = [(subsets (S, d), T (S, d, d, d, d, d, d))] for d = 1, 2,
    T[s, i, j, c, e, f, g] = <d d d d (d_a d_b)> on the inputs of subset s (the second and fourth Hermite
    tensors of the subset, as ntk_step_multi; kept per pair, not as an (N,)*6 tensor).

    >>> K = np.array([[1.0, 0.3], [0.3, 0.8]])
    >>> m = batched_gaussian_means(K, activation="erf")
    >>> from sft.finite.meta_kernels import gaussian_factor_mean
    >>> ref = gaussian_factor_mean([("e", 0), ("d", 1), ("d", 1), ("s", 0)], K, activation="erf")
    >>> bool(abs(m["edds"][0, 1, 1, 0] - ref) < 1e-13)
    True
    """
    require_x64("sft.finite.batched_gaussian_means")
    act = get_activation(activation)
    if act.slopes is not None:
        raise ValueError(f"activation={activation!r} is not allowed: batched_gaussian_means is for smooth "
                         "sigma (kinked activations: sft.finite.output_meta_kernels, exact delta rules)")
    K = check_array("K", K, ndim=2)
    N = K.shape[0]
    if K.shape != (N, N):
        raise ValueError(f"K with shape {K.shape} is not allowed: give a square (N, N) kernel")
    nodes = dict(_NODES)
    if n_nodes is not None:
        if not isinstance(n_nodes, dict) or not set(n_nodes) <= set(nodes):
            raise ValueError(f"n_nodes={n_nodes!r} is not allowed: give a dict {{d: nodes per side}} with d in 1..4")
        nodes.update({d: check_int(f"n_nodes[{d}]", v, 1) for d, v in n_nodes.items()})
    fns = _derivative_fns(act.fn)
    groups = _GROUPS_NTK if ntk else _GROUPS
    four = _FOUR + (("ssss", "ssdd") if ntk else ())
    if out is None:
        out = {k: np.zeros((N,) * 4) for k in four}
        out.update({k: np.zeros((N, N)) for k in _TWO})
        out.update({k: np.zeros((N, N, N)) for k in ("Yds", "Yed")})
        if ntk:
            out.update({k: np.zeros((N,) * 4) for k in ("Hss", "Hdd")}, Hdd4=[])
    if ntk:
        out["Hdd4"] = [h for h in out["Hdd4"] if h[0].shape[1] not in dims]
    for d in (d for d in dims if d <= N):
        subsets = np.array(list(itertools.combinations(range(N), d)), dtype=int)
        s4, P = _surjections(d, 4), (2 * nodes[d]) ** d
        step = max(1, _BLOCK // P)
        for lo in range(0, len(subsets), step):
            S = subsets[lo:lo + step]
            z, w = _rule_stack(K, S, nodes[d])
            M = _four_point(act.fn, z, w, step, tuple(groups.items()))
            for kinds in four:
                Mk = M[kinds[2:]][:, groups[kinds[2:]].index(kinds[:2])]  # (S, d, d, d, d)
                out[kinds][tuple(S[:, s4].transpose(2, 0, 1))] = Mk[(slice(None),) + tuple(s4.T)]
            if d <= 2:
                s2 = _surjections(d, 2)
                V = {k: np.asarray(fns[_KINDS.index(k)](z), dtype=np.float64) for k in _KINDS}
                Kinv = pd_inverse("K", K[S[:, :, None], S[:, None, :]])
                y = np.einsum("spa,sab->spb", z, Kinv)
                idx = tuple(S[:, s2].transpose(2, 0, 1))
                for kinds in _TWO:
                    M2 = np.einsum("sp,spa,spb->sab", w, V[kinds[0]], V[kinds[1]])
                    out[kinds][idx] = M2[(slice(None),) + tuple(s2.T)]
                for name, (k0, k1) in (("Yds", "ds"), ("Yed", "ed")):
                    M3 = np.einsum("sp,spa,spb,spc->sabc", w, V[k0], V[k1], y)
                    for c in range(d):
                        out[name][idx + (S[:, c][:, None],)] = M3[(slice(None),) + tuple(s2.T) + (c,)]
                if ntk:
                    _hermite_means(out, S, w, V, y, Kinv, s2)
    return out


def _hermite_means(out, S, w, V, y, Kinv, s2):
    """<d_c d_e (f_a f_b)> = <f_a f_b He2_ce> (f = s, d) and <d^4 (d_a d_b)> = <d_a d_b He4> on the subsets
    S (n_S, d) of one size: He2 = y y - K^-1, He4 as sft.finite.ntk_variance._hermite, y = K_S^-1 z."""
    o = np.einsum
    d = S.shape[1]
    H2 = o("spc,spe->spce", y, y) - Kinv[:, None]
    H4 = o("spb,spc,spd,spe->spbcde", y, y, y, y)
    for (i, j), (k, m) in (("bc", "de"), ("bd", "ce"), ("be", "cd")):
        H4 = H4 - o(f"s{i}{j},sp{k},sp{m}->spbcde", Kinv, y, y) - o(f"s{k}{m},sp{i},sp{j}->spbcde", Kinv, y, y)
        H4 = H4 + o(f"s{i}{j},s{k}{m}->sbcde", Kinv, Kinv)[:, None]
    pairs = tuple(S[:, s2].transpose(2, 0, 1))
    for name, k in (("Hss", "s"), ("Hdd", "d")):
        M = o("sp,spi,spj,spce->sijce", w, V[k], V[k], H2)
        for c, e in itertools.product(range(d), repeat=2):
            out[name][pairs + (S[:, c][:, None], S[:, e][:, None])] = M[(slice(None),) + tuple(s2.T) + (c, e)]
    out["Hdd4"].append((S, o("sp,spi,spj,spcefg->sijcefg", w, V["d"], V["d"], H4)))


def _hdd4_contract(hdd4, V, N):
    """sum_{cefg} <d_c d_e d_f d_g (d_a d_b)> V_cefg (N, N), from the per-subset tensors "Hdd4" of
    batched_gaussian_means(ntk=True) (the derivatives of a pair (a, b) act on its own <= 2 inputs only)."""
    out = np.zeros((N, N))
    for S, T in hdd4:
        s2 = _surjections(S.shape[1], 2)
        VS = V[S[:, :, None, None, None], S[:, None, :, None, None], S[:, None, None, :, None],
               S[:, None, None, None, :]]
        C = np.einsum("sijcefg,scefg->sij", T, VS)
        out[tuple(S[:, s2].transpose(2, 0, 1))] = C[(slice(None),) + tuple(s2.T)]
    return out


def _meta_step(g, Th, Bt, Ft, state, r, C_W):
    """P .. U of layer l + 1 from layer l (the smooth-sigma formulas of meta_kernel_step, same order)."""
    P_, Q_, R_, S_, T_, U_ = state
    o, C2 = functools.partial(np.einsum, optimize=True), C_W ** 2  # pairwise: N^5, not N^6
    DD, EE, ES = g["dd"], g["ee"], g["es"]
    PHI2 = ES + Th * g["td"]
    Yds = g["Yds"]
    Ypsi = Yds + Th[:, :, None] * g["Yed"]
    E4 = g["edds"]
    Bd = o("aabc->abc", Bt)
    Pn = C2 * (o("ab,ac,abcd->abcd", Th, Th, E4) + r * o("abc,ad,bc->abcd", Bd, ES, DD)
               + r * o("abcx,adx,bc->abcd", P_, Yds, DD))
    PSI4 = g["dsds"] + Th[:, :, None, None] * E4
    Qn = C2 * (o("ac,abcd->abcd", Th, PSI4) + r * o("axcy,abx,cdy->abcd", Ft, Ypsi, Yds)
               + r * o("abcx,ab,cdx->abcd", Q_, DD, Yds))
    PHI4 = g["esdd"] + Th[:, :, None, None] * g["tddd"]
    Rn = C2 * (o("ac,ad,abcd->abcd", Th, Th, PHI4)
               + r * (o("acd,ab,cd->abcd", Bd, PHI2, DD) + o("acdx,abx,cd->abcd", P_, Ypsi, DD)
                      + o("abcd,ab,cd->abcd", R_, DD, DD)))
    EEDD = g["eedd"]
    Sn = C2 * (o("ac,bd,abcd->abcd", Th, Th, g["dddd"]) + o("ab,ac,bd,abcd->abcd", Th, Th, Th, EEDD)
               + r * (o("abcd,ab,cd->abcd", Bt, DD + Th * EE, DD) + o("abcd,ab,cd->abcd", S_, DD, DD)))
    TT4 = (g["ddss"] + o("bd,abcd->abcd", Th, g["desd"]) + o("ac,abcd->abcd", Th, E4)
           + o("ac,bd,abcd->abcd", Th, Th, EEDD))
    Tn = C2 * (o("ab,abcd->abcd", Th, TT4)
               + r * (o("axby,acx,bdy->abcd", Ft, Ypsi, Ypsi) + o("bdax,acx,bd->abcd", Q_, Ypsi, DD)
                      + o("acbx,ac,bdx->abcd", Q_, DD, Ypsi) + o("abcd,ac,bd->abcd", T_, DD, DD)))
    Un = C2 * (o("ab,ac,bd,abcd->abcd", Th, Th, Th, EEDD) + r * o("abcd,ad,bc->abcd", U_, DD, DD))
    return Pn, Qn, Rn, Sn, Tn, Un


def _ntk_step(g, Th, V, G1, A, D, F, Th1, G1_next, r, C_W):
    """A, D, Theta1 of layer l + 1 (the formulas of :func:`sft.finite.ntk_step_multi`, same order) from the
    means g of batched_gaussian_means(ntk=True) at K^(l); V, G1 of layers l and G1 of l + 1 from
    :func:`sft.finite.multi_input`. The products with the sparse Hermite tensors are dense einsums (N^6
    flops, N^4 memory) except the fourth-order one (per pair of inputs)."""
    o = functools.partial(np.einsum, optimize=True)
    N = Th.shape[0]
    S2, D2, S4, D4, SSDD = g["ss"], g["dd"], g["ssss"], g["dddd"], g["ssdd"]
    outer = lambda a, b: np.einsum("ab,cd->abcd", a, b)  # noqa: E731
    chi = C_W * D2
    P = 0.5 * C_W * (g["Hss"] + Th[:, :, None, None] * g["Hdd"])
    Ps = 0.5 * C_W * g["Hss"]
    ss_x = S4 - outer(S2, S2) + Th[None, None] * (SSDD - outer(S2, D2))
    cov_X = ss_x + Th[:, :, None, None] * (SSDD.transpose(2, 3, 0, 1) - outer(D2, S2)
                                           + Th[None, None] * (D4 - outer(D2, D2)))
    PD = o("abij,ijcd->abcd", P, D) * chi[None, None]
    VP = o("ijkl,cdkl->ijcd", V, P)
    A_n = C_W ** 2 * cov_X + r * (o("abij,ijcd->abcd", P, VP) + PD + PD.transpose(2, 3, 0, 1) + outer(chi, chi) * A)
    D_n = C_W ** 2 * ss_x + r * (o("abij,ijcd->abcd", Ps, VP) + o("abij,ijcd->abcd", Ps, D) * chi[None, None])
    Hd = g["Hdd"]
    Th1_n = G1_next + r * (chi * Th1 + 0.5 * C_W * (o("abcd,cd->ab", Hd, G1) * Th + o("abcd,cdab->ab", Hd, D))
                           + C_W * o("abcd,acbd->ab", Hd, F) + C_W / 8 * _hdd4_contract(g["Hdd4"], V, N) * Th)
    return A_n, D_n, Th1_n


def batched_meta_kernels(x, *, depth, activation, C_W, C_b, widths=None, n_nodes=None, ntk_nodes=None,
                         ntk_statistics=False):
    """dntk_f, ddntk_I, ddntk_II (N,)*4 and K, Theta (N, N) of the readout for any N inputs x (N, n_0), smooth
    sigma; with ``ntk_statistics=True`` also G1, V, Theta1, ntk_cov, ntk_f2 (every field of
    :func:`sft.finite.output_meta_kernels`, so :func:`sft.predict.trained_ensemble_gd` / ``_flow`` run on it).

    Arguments as :func:`sft.finite.output_meta_kernels` (same normalization: coefficients of 1/n, n = n_L);
    n_nodes as :func:`batched_gaussian_means`; ntk_nodes: {d: nodes} for the means of the K, Theta, B, F
    (and A, D, Theta1) recursion on subsets of d <= 2 inputs (None: as n_nodes). ``ntk_nodes={1: 48, 2: 32}``
    reproduces the rules of :func:`sft.finite.ntk_fluctuations_multi` (hence output_meta_kernels to
    rounding); those are ~5e-10 (relative) less accurate than the default at N = 3, depth 2 (measured
    against 160/100/48 nodes).

    ntk_statistics: False: G1, V, Theta1, ntk_cov, ntk_f2 are None (not computed). True: V, G1 from
    :func:`sft.finite.multi_input` (any N, with its size limits) and A, D, Theta1 by the recursion of
    :func:`sft.finite.ntk_fluctuations_multi` (same formulas, ``_ntk_step``), whose means ("ssss", "ssdd"
    and the Hermite-weighted pair means) are added to the same batched pass; every entry involves <= 4
    inputs, so nothing limits N but time and the N^4 tensors. Readout as output_meta_kernels: ntk_cov =
    A + B_(ac)(bd) + B_(ad)(bc), ntk_f2 = D_(cd)(ab) + F_(ac)(bd) + F_(ad)(bc).
    dntk_f3 is zeros((N,)*6) for N <= 4 and None above: it vanishes at this order (derivations/meta_kernels.py,
    "Why E[dH f f f] has no connected part"), and :mod:`sft.predict.trained_ensemble` reads None as zero.

    Measured once (not a test: ~1 min on 2 cores): the trained ensemble on these meta-kernels for N = 6
    inputs (4 training, 2 test; x ~ 0.8 N(0, 1) in 3 features, numpy seed 2), depth 2, tanh, C_W = 1.5,
    C_b = 0.1, n_nodes = {1: 48, 2: 32, 3: 16, 4: 10}, k = 8 GD steps at eta = 0.3 x the stability limit,
    against sft.sim.train_ensemble (float64, 4000 networks per width, seeds n = 32, 64; n (MC - infinite
    width) extrapolated as 2 X_64 - X_32, jackknife errors, the control variate of
    tests/test_trained_ensemble.py): 37 numbers (mean correction 6, covariance correction 21, NTK change on
    the training block 10), max |z| = 2.5, rms z = 1.1; with the dNTK set to zero max |z| = 20, with both
    ddNTKs set to zero 10.8.

    >>> x = np.array([[1.0, 0.5]])
    >>> out = batched_meta_kernels(x, depth=2, activation="erf", C_W=1.5, C_b=0.1, ntk_nodes={1: 48})
    >>> from sft.finite.meta_kernels import output_meta_kernels
    >>> ref = output_meta_kernels(x, depth=2, activation="erf", C_W=1.5, C_b=0.1)
    >>> bool(np.abs(out.dntk_f - ref.dntk_f).max() < 1e-10 * np.abs(ref.dntk_f).max())
    True
    """
    require_x64("sft.finite.batched_meta_kernels")
    act = get_activation(activation)
    if act.slopes is not None:
        raise ValueError(f"activation={activation!r} is not allowed: batched_meta_kernels is for smooth sigma "
                         "(kinked: sft.finite.output_meta_kernels; linear: "
                         "sft.finite.meta_kernel_contractions.linear_meta_kernels)")
    ntk_statistics = check_flag("ntk_statistics", ntk_statistics)
    depth = check_depth(depth)
    cw, cb = layer_constants(depth, C_W, C_b)
    r = fw.width_ratios(widths, depth)
    x = check_array("x", x, ndim=2)
    N = x.shape[0]
    K = cb[0] + cw[0] * (x @ x.T) / x.shape[1]
    Th = K
    z4, z2 = np.zeros((N,) * 4), np.zeros((N, N))
    Bt, Ft, state = z4, z4, (z4,) * 6
    if ntk_statistics:
        mi = fw.multi_input(x, depth=depth, activation=act, C_W=cw, C_b=cb, widths=widths)
        At, Dt, Th1 = z4, z4, z2
    for l in range(depth):
        g = batched_gaussian_means(K, activation=act, n_nodes=n_nodes, ntk=ntk_statistics)
        C = cw[l + 1]
        state = _meta_step(g, Th, Bt, Ft, state, r[l], C)
        if ntk_nodes is not None:
            g = batched_gaussian_means(K, activation=act, n_nodes=ntk_nodes, dims=(1, 2), ntk=ntk_statistics,
                                       out={k: (list(v) if k == "Hdd4" else np.array(v)) for k, v in g.items()})
        if ntk_statistics:
            At, Dt, Th1 = _ntk_step(g, Th, mi.V[l], mi.G1[l], At, Dt, Ft, Th1, mi.G1[l + 1], r[l], C)
        chi = C * g["dd"]
        Bt = (C ** 2 * g["dddd"] * np.einsum("xz,yw->xyzw", Th, Th)
              + r[l] * np.einsum("xy,zw,xyzw->xyzw", chi, chi, Bt))
        Ft = C ** 2 * (g["dsds"] * Th[:, None, :, None]
                       + r[l] * np.einsum("xyc,zwd,xczd->xyzw", g["Yds"], g["Yds"], Ft, optimize=True))
        K = cb[l + 1] + C * g["ss"]
        Th = K + chi * Th
    P, Q, R, S, T, U = state
    dntk_f = P + Q + Q.transpose(0, 2, 1, 3)
    ddI = R + R.transpose(0, 3, 1, 2) + R.transpose(0, 2, 3, 1)
    ntk = (None,) * 5
    if ntk_statistics:
        ntk = (mi.G1[-1], mi.V[-1], Th1, readout_ntk_covariance(At, Bt),
               Dt.transpose(2, 3, 0, 1) + Ft.transpose(0, 2, 1, 3) + Ft.transpose(0, 2, 3, 1))
    G1, V, Th1, ntk_cov, ntk_f2 = ntk
    return OutputMetaKernels(K, G1, V, Th, Th1, ntk_cov, ntk_f2, dntk_f,
                             np.zeros((N,) * 6) if N <= 4 else None, ddI, S + T + U,
                             None if widths is None else check_widths(widths))


def cost_estimate(N, n_nodes=None):
    """(input subsets, quadrature nodes) per layer: sum_d C(N, d) and sum_d C(N, d) (2 n_d)^d over d = 1..4.

    >>> cost_estimate(4)   # 4 + 6 + 4 + 1 subsets; 4 * 192 + 6 * 128^2 + 4 * 64^3 + 40^4 nodes
    (15, 3707648)
    """
    nodes = dict(_NODES, **(n_nodes or {}))
    return sum(math.comb(N, d) for d in range(1, 5)), sum(math.comb(N, d) * (2 * nodes[d]) ** d for d in range(1, 5))
