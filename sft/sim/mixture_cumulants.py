"""Connected 2-, 4- and 6-point functions of a network's output from an ensemble, with and without
variance reduction by conditional Gaussianity.

Given the last hidden layer, the readout f = z^(L+1) on N inputs is exactly N(0, G) with G the
network's readout metric (per network s, from :func:`sft.sim.layer_kernels`; THEORY.md). By the law
of total cumulance (Brillinger 1969; McCullagh, *Tensor Methods in Statistics* (1987), sec. 2.9), the
conditional cumulants of order >= 3 vanishing,

    kappa2_ab        = E[G_ab],
    kappa4_abcd      = k(G_ab, G_cd) + k(G_ac, G_bd) + k(G_ad, G_bc),
    kappa6_abcdef    = sum over the 15 pairings {(ab)(cd)(ef), ..} of k(G_ab, G_cd, G_ef),

with k(.,.) and k(.,.,.) the joint second and third cumulants of the metric entries over networks
(estimated by the unbiased k-statistics S/(S-1) m2 and S^2/((S-1)(S-2)) m3 of central moments).
This is a Rao-Blackwellised estimator: it removes the Gaussian noise of f given G.

Without variance reduction (:func:`output_cumulants_from_samples`), the cumulant tensors come from
the raw sample moment tensors of f (S, N) through :func:`sft.symbolic.cumulant_tensors_from_moments`
(consistent; bias O(1/S), far below the O(S^-1/2) error bar).

Shapes: G (S, N, N) or f (S, N); returns [kappa2 (N, N), kappa4 (N,)*4, kappa6 (N,)*6], float64.
Error bars: pass either function to :func:`sft.sim.jackknife` (samples along axis 0).

Sampler (:func:`sample_metrics`): the per-network metrics G^(2), .., G^(L+1) of independent networks
drawn layer by layer from their exact conditional law: given G^(l) (S, N, N), the n_l neurons of
layer l are i.i.d. N(0, G^(l)), z = G^(l)^(1/2) u, and G^(l+1) = C_b + (C_W/n_l) sum_j sigma(z_j)
sigma(z_j)^T. This is the law of the metrics of :func:`sft.sim.layer_kernels` (real networks; the
same law, not the same draws), at O(S n N L) cost instead of O(S n^2 L).
"""
from __future__ import annotations

import numbers

import numpy as np

from ..conventions import check_widths, layer_constants, psd_eigh, require_x64
from ..kernels.activations import get_activation
from ..symbolic.cumulants import cumulant_tensors_from_moments, set_partitions

__all__ = ["output_cumulants_from_metrics", "output_cumulants_from_samples", "pair_sum", "sample_metrics"]


def pair_sum(t, n_pairs: int):
    """Sum over the pairings of 2 n_pairs indices of t with its axes (01)(23).. assigned to the pairs:
    the symmetric tensor sum_pi t[i_pi1, i_pi2, ..] (3 terms for n_pairs = 2, 15 for 3).

    >>> float(pair_sum(np.ones((1,) * 6), 3)[(0,) * 6])
    15.0
    """
    if n_pairs not in (1, 2, 3):
        raise ValueError(f"n_pairs={n_pairs!r} is not allowed: 1, 2 or 3")
    r = 2 * n_pairs
    out = 0
    for pi in set_partitions(r):
        if all(len(b) == 2 for b in pi):
            positions = [p for b in pi for p in b]
            out = out + np.transpose(t, np.argsort(positions))
    return out


def _metrics(G):
    G = np.asarray(G, dtype=np.float64)
    if G.ndim != 3 or G.shape[1] != G.shape[2] or G.shape[0] < 3 or not np.all(np.isfinite(G)):
        raise ValueError(f"G of shape {G.shape} is not allowed: give finite per-network metrics of "
                         "shape (S, N, N) with S >= 3 networks")
    return G


def output_cumulants_from_metrics(G):
    """[kappa2, kappa4, kappa6] of the output from per-network readout metrics G (S, N, N) (module
    docstring: law of total cumulance for the Gaussian mixture f | G ~ N(0, G)).

    >>> G = 1.0 + 0.1 * np.random.default_rng(0).standard_normal((4000, 1, 1))
    >>> k2, k4, k6 = output_cumulants_from_metrics(G)
    >>> round(float(k4[0, 0, 0, 0]) / 0.03, 1)   # 3 Var(G) = 3 * 0.01
    1.0
    """
    G = _metrics(G)
    S = G.shape[0]
    d = G - G.mean(axis=0)
    c2 = np.einsum("sab,scd->abcd", d, d) / (S - 1)
    c3 = np.einsum("sab,scd,sef->abcdef", d, d, d) * S / ((S - 1) * (S - 2))
    return [G.mean(axis=0), pair_sum(c2, 2), pair_sum(c3, 3)]


def output_cumulants_from_samples(f):
    """[kappa2, kappa4, kappa6] of samples f (S, N) of the output (no variance reduction): cumulant
    tensors from the raw sample moment tensors (odd moments included, module docstring).

    >>> f = np.random.default_rng(0).standard_normal((20000, 1))
    >>> k2, k4, k6 = output_cumulants_from_samples(f)
    >>> bool(abs(k2[0, 0] - 1) < 0.05 and abs(k4[0, 0, 0, 0]) < 0.2)
    True
    """
    f = np.asarray(f, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 7 or not np.all(np.isfinite(f)):
        raise ValueError(f"f of shape {f.shape} is not allowed: give finite output samples of shape "
                         "(S, N) with S >= 7")
    S, N = f.shape
    letters = "abcdef"
    moments = [np.einsum(",".join(f"s{c}" for c in letters[:r]) + "->" + letters[:r],
                         *([f] * r)) / S for r in range(1, 7)]
    kap = cumulant_tensors_from_moments(moments)
    return [kap[1], kap[3], kap[5]]


def sample_metrics(rng, K1, *, widths, activation, C_W, C_b, n_networks: int):
    """Per-network metrics G^(1..L+1) (S, L + 1, N, N), float64, of S independent networks with hidden
    widths (n_1, .., n_L), sampled layer by layer from the exact conditional law (module docstring);
    G^(1) = K1 (deterministic). ``rng``: numpy Generator (same seed -> same result). K1: (N, N)
    first-layer kernel C_b + C_W x x^T / n_0 (scalar for one input).

    >>> G = sample_metrics(np.random.default_rng(0), 1.0, widths=[4], activation="linear", C_W=1.0,
    ...                    C_b=0.0, n_networks=3)
    >>> G.shape, float(G[0, 0, 0, 0])
    ((3, 2, 1, 1), 1.0)
    """
    require_x64("sft.sim.sample_metrics")
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng={rng!r} is not allowed: give a numpy.random.Generator")
    if isinstance(n_networks, bool) or not isinstance(n_networks, numbers.Integral) or n_networks < 1:
        raise ValueError(f"n_networks={n_networks!r} is not allowed: an integer >= 1")
    ws = check_widths(widths)
    cw, cb = layer_constants(len(ws), C_W, C_b)
    act = get_activation(activation)
    K = np.atleast_2d(np.asarray(K1, dtype=np.float64))
    if K.ndim != 2 or K.shape[0] != K.shape[1] or not np.all(np.isfinite(K)):
        raise ValueError(f"K1 of shape {np.shape(K1)} is not allowed: a finite (N, N) kernel")
    if not np.any(K):
        raise ValueError(f"K1={K1!r} is not allowed: it must be nonzero")
    psd_eigh("K1", K, vectors=False)            # ValueError unless PSD within 10 N eps max|lambda|
    G = np.broadcast_to(K, (n_networks,) + K.shape).copy()
    out = [G]
    for l, n in enumerate(ws):
        lam, vec = psd_eigh(f"G^({l + 1})", G)      # PSD by construction; rounding-level lam < 0 -> 0
        root = vec * np.sqrt(lam)[:, None, :]
        z = np.einsum("sab,sjb->sja", root, rng.standard_normal((n_networks, n, K.shape[0])))
        s = np.asarray(act.fn(z), dtype=np.float64)
        G = cb[l + 1] + cw[l + 1] * np.einsum("sja,sjb->sab", s, s) / n
        out.append(G)
    return np.stack(out, axis=1)
