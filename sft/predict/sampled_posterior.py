"""Exact finite-width Bayesian posterior of a network's outputs by importance sampling of its metrics, with
control variates of exactly zero mean (precise enough to resolve the O(1/n^2) part of the posterior).

Prior: a depth-L MLP of hidden widths (n_1, .., n_L) (:mod:`sft.conventions`), one output, Gaussian
observation noise sigma^2 on the P training outputs. Given the last hidden layer the outputs f at the N
points are exactly N(0, G), G = G^(L+1) the readout metric, so (Rao-Blackwellization, as
:func:`sft.predict.importance_posterior`) with A = G_train + sigma^2 I, weight w(G) = N(y; 0, A),
m(G) = G_*train A^{-1} y and C(G) = G_** - G_*train A^{-1} G_train*:

    <f_*> = E[w m] / E[w],    Cov(f_*) = E[w (C + m m^T)] / E[w] - <f_*><f_*>^T,

expectations over the prior law of the metrics, sampled layer by layer from its exact conditional law
(:func:`sft.sim.sample_metrics`): given G^(l), the neurons of layer l are i.i.d. z_i ~ N(0, G^(l)) and
G^(l+1) = C_b + C_W mean_i X_i with X_i = sigma(z_i) sigma(z_i)^T (over the pairs a <= b).

Control variates. Monte Carlo error of E[w m] is ~ n^(-1/2) S^(-1/2) (the metric fluctuates by n^(-1/2));
the O(1/n^2) part of the posterior needs far less. With eps^(l) = G^(l+1) - E[G^(l+1) | G^(l)] the
functions

    eps^(l)_p,   eps^(l)_p eps^(k)_q (k < l),   eps^(l)_p eps^(l)_q - C_W^2 Shat^(l)_pq / n_l,

Shat^(l) the unbiased (ddof = 1) sample covariance of the X_i over the n_l neurons, have EXACTLY zero mean
(E[eps^(l) | G^(l)] = 0 and E[Shat | G^(l)] = Cov(X | G^(l)) = n_l Cov(G^(l+1) | G^(l)) / C_W^2). They
are the first- and second-order Taylor monomials of the metric fluctuations, so the regression estimator
(Glasserman, *Monte Carlo Methods in Financial Engineering* (2004), sec. 4.1: E[h] ~ mean(h - F beta),
beta the least-squares fit of h on the features F) leaves the third-order remainder, variance
~ n^-3 instead of ~ n^-1, and stays consistent (bias O(1/S)). E[G^(l+1) | G^(l)] = C_b + C_W
<sigma sigma>_{G^(l)}: for the first hidden layer from :func:`sft.kernels.nngp` (any activation); for
deeper layers from the activation's closed form (erf, relu, linear, ...); a deeper layer of an activation
without one (tanh) contributes no features (the estimator stays exact, with less variance reduction).

The perturbative series of the same posterior (:func:`sft.predict.perturbative_posterior`) takes the
network's prior data to O(1/n^2), equal widths n: :func:`network_prior_cumulants`.

Error bars: delta method for the ratio with the residual (co)variances of the regression, all from
running sums over chunks (nothing of size S kept). float64 throughout; rng = numpy Generator (same seed
-> same result).
"""
from __future__ import annotations

import numbers
from typing import NamedTuple

import numpy as np
import scipy.special

from ..conventions import check_widths, layer_constants, psd_eigh, require_x64
from ..kernels.activations import get_activation
from ..kernels.recursion import nngp
from ..threads import limit_threads
from .posterior_correction import _finite, _indices, _inputs

__all__ = ["SampledPosterior", "sampled_network_posterior", "network_prior_cumulants"]

CHUNK = 4096  # networks per chunk (memory ~ CHUNK x n x N(N+1)/2 x 8 bytes x 3)
#: numpy versions of activations (same function; avoids a JAX dispatch per chunk)
_NUMPY_FN = {"erf": scipy.special.erf, "tanh": np.tanh, "relu": lambda z: np.maximum(z, 0.0),
             "linear": lambda z: z}


class SampledPosterior(NamedTuple):
    """Posterior mean (M,), cov (M, M), their standard errors, the Kish effective sample size of the weights,
    the number of control variates and the fraction of the variance of the weighted mean they remove."""

    mean: np.ndarray
    cov: np.ndarray
    mean_err: np.ndarray
    cov_err: np.ndarray
    ess: float
    n_features: int
    variance_reduction: np.ndarray


def _layer(rng, G, n, act, cw, cb, cond_mean, iu):
    """One hidden layer for a chunk: G^(l) (s, N, N) -> G^(l+1) (s, N, N), eps (s, Q) or None, phi (s, Q, Q)."""
    try:
        root = np.linalg.cholesky(G)
    except np.linalg.LinAlgError:   # singular metric (n < N without bias): PSD square root
        lam, vec = psd_eigh("metric", G)
        root = vec * np.sqrt(lam)[:, None, :]
    z = rng.standard_normal((G.shape[0], n, G.shape[1])) @ np.swapaxes(root, 1, 2)          # (s, n, N)
    s = np.asarray(_NUMPY_FN.get(act.name, act.fn)(z), dtype=np.float64)
    X = s[:, :, iu[0]] * s[:, :, iu[1]]                                        # (s, n, Q)
    Xbar = X.mean(1)
    Gp = np.zeros_like(G)
    Gp[:, iu[0], iu[1]] = cb + cw * Xbar
    Gp[:, iu[1], iu[0]] = cb + cw * Xbar
    if cond_mean is None:
        return Gp, None
    eps = cb + cw * Xbar - cond_mean(G)
    D = X - Xbar[:, None, :]
    Shat = np.swapaxes(D, 1, 2) @ D / (n - 1)
    return Gp, (eps, np.einsum("sp,sq->spq", eps, eps) - cw ** 2 * Shat / n)


def _features(layers, iq):
    """Feature matrix (s, F): eps^(l), eps^(k) eps^(l) (k < l), phi^(l) over pairs p <= q."""
    eps = [e for e, _ in layers]
    cols = list(eps)
    for l in range(len(eps)):
        for k in range(l):
            cols.append(np.einsum("sp,sq->spq", eps[k], eps[l]).reshape(eps[l].shape[0], -1))
    cols += [phi[:, iq[0], iq[1]] for _, phi in layers]
    return np.concatenate(cols, axis=1)


@limit_threads()
def sampled_network_posterior(x, y, *, train, test, widths, activation, C_W, C_b, noise, n_networks, rng,
                              control_variates=True) -> SampledPosterior:
    """Exact posterior mean and covariance of a finite network's output at x[test] given y at x[train].

    x (N, n_0) inputs; y (P,) labels at x[train]; train (P,), test (M,) integer indices into x; widths
    (n_1, .., n_L), each >= 2; C_W, C_b scalars or per layer (L + 1); noise sigma^2 > 0; n_networks S;
    rng a numpy Generator. Module docstring for the estimator and its error bars.

    >>> x = np.array([[1.0, 0.5], [0.3, -1.0]])
    >>> r = sampled_network_posterior(x, np.array([0.7]), train=[0], test=[1], widths=[16], activation="linear",
    ...                               C_W=1.0, C_b=0.0, noise=0.5, n_networks=4096, rng=np.random.default_rng(0))
    >>> r.mean.shape, bool(r.mean_err[0] < 1e-3), r.n_features   # 3 pairs: 3 eps + 6 phi
    ((1,), True, 9)
    """
    require_x64("sft.predict.sampled_network_posterior")
    x = _inputs("x", x)
    N = x.shape[0]
    train, test = _indices("train", train, N), _indices("test", test, N)
    if np.intersect1d(train, test).size:
        raise ValueError(f"train={train.tolist()} and test={test.tolist()} overlap: give distinct points")
    y = _finite("y", y, 1)
    if y.shape != train.shape:
        raise ValueError(f"y has shape {y.shape}: it must be ({train.size},), one label per training index")
    noise = float(noise)
    if not (np.isfinite(noise) and noise > 0):
        raise ValueError(f"noise = {noise}: it must be a finite variance > 0")
    ws = check_widths(widths)
    if min(ws) < 2:
        raise ValueError(f"widths={ws!r} is not allowed: each width must be >= 2 (the neuron sample covariance)")
    if isinstance(n_networks, bool) or not isinstance(n_networks, numbers.Integral) or n_networks < 2:
        raise ValueError(f"n_networks={n_networks!r} is not allowed: an integer >= 2")
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng={rng!r} is not allowed: give a numpy.random.Generator")
    act = get_activation(activation)
    L = len(ws)
    cw, cb = layer_constants(L, C_W, C_b)
    Ks = np.asarray(nngp(x, depth=L, activation=act, C_W=cw, C_b=cb, all_layers=True))
    iu = np.triu_indices(N)
    Q = iu[0].size
    iq = np.triu_indices(Q)

    def cond_mean(l):
        """E[G^(l+2) | G^(l+1)] over pairs (s, Q), or None (no closed form beyond the first layer)."""
        if l == 0:
            return lambda G: Ks[1][iu]
        if act.gauss_ss is None or not control_variates:
            return None
        return lambda G: cb[l + 1] + cw[l + 1] * np.asarray(act.gauss_ss(G[:, iu[0], iu[0]], G[:, iu[1], iu[1]],
                                                                           G[:, iu[0], iu[1]]), dtype=np.float64)

    means = [cond_mean(l) if control_variates else None for l in range(L)]
    P, M = train.size, test.size
    # reference log weight at the mean metric: keeps the weights O(1) without a pass over all samples
    A0 = Ks[-1][np.ix_(train, train)] + noise * np.eye(P)
    L0 = np.linalg.cholesky(A0)
    ref = -0.5 * np.sum(np.linalg.solve(L0, y) ** 2) - np.log(np.diag(L0)).sum()
    im = np.triu_indices(M)
    sums = None
    done = 0
    while done < n_networks:
        s = min(CHUNK, n_networks - done)
        done += s
        G = np.broadcast_to(Ks[0], (s, N, N)).copy()
        layers = []
        for l in range(L):
            G, f = _layer(rng, G, ws[l], act, cw[l + 1], cb[l + 1], means[l], iu)
            if f is not None:
                layers.append(f)
        Lc = np.linalg.cholesky(G[:, train][:, :, train] + noise * np.eye(P))
        Li_y = np.linalg.solve(Lc, np.broadcast_to(y, (s, P))[..., None])[..., 0]
        Li_x = np.linalg.solve(Lc, np.swapaxes(G[:, test][:, :, train], 1, 2))                 # (s, P, M)
        w = np.exp(-0.5 * np.sum(Li_y ** 2, 1) - np.log(np.diagonal(Lc, axis1=1, axis2=2)).sum(1) - ref)
        m = np.einsum("spm,sp->sm", Li_x, Li_y)
        second = G[:, test][:, :, test] - np.einsum("spm,spk->smk", Li_x, Li_x) + np.einsum("sm,sk->smk", m, m)
        h = np.concatenate([w[:, None], w[:, None] * m, w[:, None] * second[:, im[0], im[1]]], axis=1)
        F = _features(layers, iq) if layers else np.zeros((s, 0))
        Z = np.concatenate([h, F], axis=1)
        part = (Z.sum(0), Z.T @ Z)
        sums = part if sums is None else (sums[0] + part[0], sums[1] + part[1])
    S = float(n_networks)
    H = 1 + M + im[0].size
    mu = sums[0] / S
    cov_all = (sums[1] - S * np.outer(mu, mu)) / (S - 1)
    Chh, Chf, Cff = cov_all[:H, :H], cov_all[:H, H:], cov_all[H:, H:]
    nF = Cff.shape[0]
    if nF:  # beta = Cff^{-1} Cfh by eigh on the correlation matrix, directions below 1e-10 of the top dropped
        d = np.sqrt(np.diag(Cff))
        lam, vec = np.linalg.eigh(Cff / np.outer(d, d))
        keep = lam > 1e-10 * lam.max()
        beta = (vec[:, keep] / lam[keep]) @ vec[:, keep].T @ (Chf.T / d[:, None]) / d[:, None]  # (F, H)
        hbar = mu[:H] - mu[H:] @ beta                        # E[F] = 0 exactly
        Crr = Chh - Chf @ beta - beta.T @ Chf.T + beta.T @ Cff @ beta
    else:
        hbar, Crr = mu[:H], Chh
    W, Wm = hbar[0], hbar[1:1 + M]
    Wsec = np.zeros((M, M))
    Wsec[im] = hbar[1 + M:]
    Wsec[im[::-1]] = hbar[1 + M:]
    mean = Wm / W
    cov = Wsec / W - np.outer(mean, mean)
    # delta method: d mean = (d Wm - mean dW) / W; d cov = (d Wsec - second dW) / W - mean dmean^T - dmean mean^T
    Jm = np.zeros((M, H))
    Jm[:, 0] = -mean / W
    Jm[:, 1:1 + M] = np.eye(M) / W
    Jc = np.zeros((im[0].size, H))
    secW = Wsec / W
    for k, (a, b) in enumerate(zip(*im)):
        Jc[k, 0] = -secW[a, b] / W
        Jc[k, 1 + M + k] = 1.0 / W
        Jc[k] -= mean[a] * Jm[b] + mean[b] * Jm[a]
    var_m = np.einsum("mh,hk,mk->m", Jm, Crr, Jm) / S
    var_c = np.einsum("mh,hk,mk->m", Jc, Crr, Jc) / S
    raw_m = np.einsum("mh,hk,mk->m", Jm, Chh, Jm) / S
    cov_err = np.zeros((M, M))
    cov_err[im] = np.sqrt(var_c)
    cov_err[im[::-1]] = np.sqrt(var_c)
    ess = S * mu[0] ** 2 / (cov_all[0, 0] * (S - 1) / S + mu[0] ** 2)
    return SampledPosterior(mean, 0.5 * (cov + cov.T), np.sqrt(var_m), cov_err, float(ess), nF, 1 - var_m / raw_m)


def network_prior_cumulants(x, *, depth, activation, C_W, C_b) -> dict:
    """Prior data of an MLP's output at x (N <= 3 points) for :func:`sft.predict.perturbative_posterior`, equal
    hidden widths n: {'K', 'dK': [G1, G2], 'kappa4': [V~, V1~], 'kappa6': U~} with kappa_2 = K + G1/n + G2/n^2,
    kappa_4 = V~/n + V1~/n^2, kappa_6 = U~/n^2 (~: the sum over pairings; :func:`sft.finite.second_order_multi_input`
    and its ``output_cumulants``). Exact for depth 1 (G1 = G2 = V1 = 0; equal to
    :func:`sft.finite.one_hidden_layer_cumulants` to quadrature accuracy).

    >>> p = network_prior_cumulants(np.array([[1.0, 0.0]]), depth=2, activation="linear", C_W=1.0, C_b=0.0)
    >>> [round(float(t), 10) for t in (p["K"][0, 0], p["kappa4"][0][0, 0, 0, 0], p["kappa6"][(0,) * 6])]  # 3 V, 15 U
    [0.5, 3.0, 75.0]
    """
    from ..finite.second_order_multi import second_order_multi_input
    from ..sim.mixture_cumulants import pair_sum
    so = second_order_multi_input(x, depth=depth, activation=activation, C_W=C_W, C_b=C_b)
    return dict(K=so.K[-1], dK=[so.G1[-1], so.G2[-1]], kappa4=[pair_sum(so.V[-1], 2), pair_sum(so.V1[-1], 2)],
                kappa6=pair_sum(so.U[-1], 3))
