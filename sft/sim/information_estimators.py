"""Estimators of mutual information I(X; Y) from paired samples (x_s, y_s), s = 1..S, in nats.

Theory and the meaning of the variables (which ensemble, which precision scale): :mod:`sft.predict.information`.
All estimators take x (S,) or (S, d_x) and y (S,) or (S, d_y), float64, i.i.d. rows; they return a number
(error bars: repeat over independent samples, as the tests and the figure do).

- :func:`gaussian_plugin_information`: (1/2)[log det S_x + log det S_y - log det S_xy] from the sample
  covariances (ddof = 1), with the exact Wishart bias correction: for nu = S - 1 and a p-dim. Gaussian,
  E[log det S_p] = log det Sigma + sum_{i=1}^p psi((nu - i + 1)/2) + p log(2/nu) (Anderson, *An
  Introduction to Multivariate Statistical Analysis*, 3rd ed. 2003, sec. 7.5; Misra, Singh & Demchuk
  2005, J. Multivar. Anal. 92, 324), so the corrected estimate is unbiased for Gaussian data. Exact only
  for jointly Gaussian (x, y); otherwise it estimates the information of the Gaussian with the same
  covariance, a lower bound on I for a fixed covariance only in special cases (never assume it).
- :func:`edgeworth_plugin_information`: the Gaussian plug-in plus the Edgeworth negentropies,
  I = I_Gauss - J(x) - J(y) + J(x, y), J = (1/12) sum kappa~3^2 + (1/48) sum kappa~4^2 from the sample
  cumulants in sample-whitened coordinates (derivations/edgeworth_entropy.py for the coefficients). The sums
  are computed from the Gram matrix of the whitened samples: sum kappa~3^2 = mean_{s,s'} (w_s.w_s')^3,
  sum kappa~4^2 = mean (w_s.w_s')^4 - 6 mean |w_s|^4 + 3 p^2 + 6 p (O(S^2 p) work, chunked). Bias
  correction (leading order in 1/S): subtract the Gaussian noise floors E sum kappa^3^2 = p(p+1)(p+2)/S
  (Mardia 1970, Biometrika 57, 519: S b_{1,p}/6 ~ chi^2 with p(p+1)(p+2)/6 d.o.f.) and
  E sum kappa^4^2 = p(p+1)(p+2)(p+3)/S (sum over the 4! index permutations of p^(cycles)). Valid for
  weakly non-Gaussian laws (an asymptotic series; for strongly non-Gaussian data it can be worse than the
  plain Gaussian plug-in).
- :func:`ksg_information`: Kraskov, Stoegbauer & Grassberger, Phys. Rev. E 69, 066138 (2004), estimator 1
  (their eq. (8)): I = psi(k) + psi(S) - < psi(n_x + 1) + psi(n_y + 1) >, eps_s the max-norm distance to
  the k-th neighbour of (x_s, y_s) in the joint space, n_x (n_y) the number of other points strictly
  within eps_s in the x (y) space (scipy.spatial.cKDTree, p = inf). Known failures (shown in the tests):
  (i) deterministic or nearly deterministic maps, Y = f(X) + sigma eps with sigma -> 0: the joint
  samples lie near a manifold of lower dimension, the true I diverges like log(1/sigma) while KSG
  saturates (it cannot resolve below the sample spacing; measured for tanh(2 X) + sigma eps, S = 1000:
  4.29 against the exact 5.55 nats at sigma = 1e-3, within 0.02 at sigma = 0.03) - it returns a finite
  number for a quantity that diverges; exactly deterministic data with ties (eps_s = 0) is rejected (ValueError);
  (ii) high dimension / strong dependence: the bias grows with d_x + d_y and with I (KSG underestimates
  strongly dependent high-dimensional Gaussians; Gao, Ver Steeg & Galstyan 2015, AISTATS, "Efficient
  estimation of mutual information for strongly dependent variables"; measured, S = 1000: -5.1 nats at
  d_x = d_y = 8, I = 8.55, and -0.030 +- 0.008 already at d_x = d_y = 2, I = 1.52). Nearly unbiased for
  independent variables and weak dependence in low dimension (1 + 1 dims, I = 0.80: -0.001 +- 0.007).
- :func:`scale_mixture_information`: I(Z; Z + sigma eps) when Z | G ~ N(0, G) with sampled G (a network
  neuron given the previous layer): h(Y) = h_Gauss(mean G + sigma^2 I) - J(Y) with the negentropy J
  estimated from the leave-one-out mixture density p(Y_s) = mean_{s' != s} N(Y_s; 0, G_s' + sigma^2 I);
  error from the per-sample influence (delta method), bias of the log of the mixture O(1/S).
- :func:`metric_information`: I(G; Y) for the same mixture, the information between one noisy neuron of
  layer l and the whole layer l-1 (Markov: the layer acts only through G), by the same mixture density.
"""
from __future__ import annotations

import math

import numpy as np
import scipy.linalg
import scipy.spatial
import scipy.special

from ..conventions import check_array, check_int, check_real, psd_eigh

__all__ = ["gaussian_plugin_information", "edgeworth_plugin_information", "ksg_information",
           "scale_mixture_information", "metric_information"]

_GRAM_CHUNK = 512


def _samples(name, a):
    a = check_array(name, a, ndim=(1, 2))
    return a[:, None] if a.ndim == 1 else a


def _pair(x, y, minimum):
    x, y = _samples("x", x), _samples("y", y)
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x has {x.shape[0]} samples and y has {y.shape[0]}: the rows must be paired "
                         "(the same number of samples)")
    S, p = x.shape[0], x.shape[1] + y.shape[1]
    if S < minimum(p):
        raise ValueError(f"x and y have {S} samples: need at least {minimum(p)} for dimension "
                         f"d_x + d_y = {p}")
    return x, y


def _logdet_cov(name, a):
    C = np.atleast_2d(np.cov(a, rowvar=False))
    psd_eigh(f"the sample covariance of {name}", C, definite=True, vectors=False)
    return 2.0 * np.log(np.diag(np.linalg.cholesky(C))).sum()


def _wishart_bias(p, nu):
    """E[log det S] - log det Sigma for the sample covariance of nu + 1 Gaussian samples in p dims."""
    return float(sum(scipy.special.digamma((nu - i + 1) / 2.0) for i in range(1, p + 1)) + p * math.log(2.0 / nu))


def gaussian_plugin_information(x, y, *, bias_correction=True) -> float:
    """Gaussian plug-in estimate of I(X; Y) (module docstring); S > d_x + d_y + 1 samples.

    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal(20000); y = 0.8 * x + 0.6 * rng.standard_normal(20000)
    >>> bool(abs(gaussian_plugin_information(x, y) - (-0.5 * np.log(1 - 0.64))) < 0.02)
    True
    """
    x, y = _pair(x, y, lambda p: p + 2)
    xy = np.hstack([x, y])
    I = 0.5 * (_logdet_cov("x", x) + _logdet_cov("y", y) - _logdet_cov("(x, y)", xy))
    if bias_correction:
        nu = xy.shape[0] - 1
        I -= 0.5 * (_wishart_bias(x.shape[1], nu) + _wishart_bias(y.shape[1], nu) - _wishart_bias(xy.shape[1], nu))
    return float(I)


def _negentropy(a, bias_correction):
    """Edgeworth negentropy of the samples a (S, p) from sample cumulants (module docstring)."""
    S, p = a.shape
    c = a - a.mean(0)
    L = np.linalg.cholesky(np.atleast_2d(np.cov(c, rowvar=False, ddof=0)))
    w = scipy.linalg.solve_triangular(L, c.T, lower=True).T
    s3 = s4 = 0.0
    for i in range(0, S, _GRAM_CHUNK):
        g = w[i:i + _GRAM_CHUNK] @ w.T
        g2 = g * g                                  # (products, not ** : 30x faster)
        s3 += np.sum(g2 * g)
        s4 += np.sum(g2 * g2)
    sq = np.sum(w * w, axis=1)
    k3 = s3 / S ** 2
    k4 = s4 / S ** 2 - 6.0 * np.mean(sq ** 2) + 3.0 * p * p + 6.0 * p
    if bias_correction:
        k3 -= p * (p + 1) * (p + 2) / S
        k4 -= p * (p + 1) * (p + 2) * (p + 3) / S
    return k3 / 12.0 + k4 / 48.0


def edgeworth_plugin_information(x, y, *, bias_correction=True) -> float:
    """Edgeworth plug-in estimate of I(X; Y): Gaussian plug-in + negentropy terms (module docstring).

    >>> rng = np.random.default_rng(1)
    >>> x = rng.standard_normal(4000); y = x + rng.standard_normal(4000)
    >>> bool(abs(edgeworth_plugin_information(x, y) - 0.5 * np.log(2.0)) < 0.05)
    True
    """
    x, y = _pair(x, y, lambda p: p + 2)
    xy = np.hstack([x, y])
    for name, a in (("x", x), ("y", y), ("(x, y)", xy)):
        psd_eigh(f"the sample covariance of {name}", np.atleast_2d(np.cov(a, rowvar=False)), definite=True,
                 vectors=False)
    return float(gaussian_plugin_information(x, y, bias_correction=bias_correction)
                 - _negentropy(x, bias_correction) - _negentropy(y, bias_correction)
                 + _negentropy(xy, bias_correction))


def ksg_information(x, y, *, k=3) -> float:
    """Kraskov-Stoegbauer-Grassberger (2004) estimator 1 of I(X; Y), max-norm, k neighbours, 1 <= k < S.

    Ties (a zero distance to the k-th neighbour: duplicated or exactly deterministic discrete data)
    -> ValueError. Failure modes: module docstring.

    >>> rng = np.random.default_rng(2)
    >>> x = rng.standard_normal(2000); y = 0.8 * x + 0.6 * rng.standard_normal(2000)
    >>> bool(abs(ksg_information(x, y) - (-0.5 * np.log(1 - 0.64))) < 0.05)
    True
    """
    x, y = _pair(x, y, lambda p: 2)
    S = x.shape[0]
    k = check_int("k", k, 1)
    if k >= S:
        raise ValueError(f"k={k} is not allowed: the number of neighbours must be < the number of samples "
                         f"S = {S}")
    xy = np.hstack([x, y])
    eps = scipy.spatial.cKDTree(xy).query(xy, k=k + 1, p=np.inf)[0][:, -1]
    if np.any(eps <= 0):
        raise ValueError(f"x, y contain {int(np.sum(eps <= 0))} points whose k-th neighbour is at distance 0 "
                         "(ties: duplicated or deterministic discrete data); KSG needs continuous samples - "
                         "add a precision scale (noise)")
    r = np.nextafter(eps, 0.0)              # strictly within eps_s
    nx = scipy.spatial.cKDTree(x).query_ball_point(x, r, p=np.inf, return_length=True) - 1
    ny = scipy.spatial.cKDTree(y).query_ball_point(y, r, p=np.inf, return_length=True) - 1
    return float(scipy.special.digamma(k) + scipy.special.digamma(S)
                 - np.mean(scipy.special.digamma(nx + 1) + scipy.special.digamma(ny + 1)))


def _mixture(G, sigma, rng):
    """Checked inputs, Y_s ~ N(0, G_s + sigma^2 I), log p_loo(Y_s) and log N(Y_s; 0, G_s + sigma^2 I)
    (both without the common -(N/2) log 2 pi)."""
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng={rng!r} is not allowed: give a numpy.random.Generator")
    G = check_array("G", G, ndim=3)
    S, N = G.shape[0], G.shape[1]
    if G.shape[2] != N or S < 2:
        raise ValueError(f"G has shape {G.shape}: give S >= 2 covariances (S, N, N)")
    sigma = check_real("sigma", sigma, minimum=0, strict=True)
    psd_eigh("G", G, vectors=False)
    Lf = np.linalg.cholesky(G + sigma ** 2 * np.eye(N))
    Y = np.einsum("sab,sb->sa", Lf, rng.standard_normal((S, N)))
    logdet = 2.0 * np.log(np.diagonal(Lf, axis1=1, axis2=2)).sum(1)          # (S,)
    Ainv = np.linalg.inv(Lf)                                                  # triangular inverse factors
    log_q, log_own = np.empty(S), np.empty(S)
    for i in range(0, S, _GRAM_CHUNK):
        u = np.einsum("tab,sb->sta", Ainv, Y[i:i + _GRAM_CHUNK])              # L_t^{-1} Y_s
        e = -0.5 * np.sum(u * u, -1) - 0.5 * logdet[None, :]                  # (s, t)
        rows = np.arange(e.shape[0])
        log_own[i:i + _GRAM_CHUNK] = e[rows, i + rows]
        e[rows, i + rows] = -np.inf                                           # leave one out
        log_q[i:i + _GRAM_CHUNK] = scipy.special.logsumexp(e, axis=1) - math.log(S - 1)
    return G, sigma, Y, log_q, log_own


def scale_mixture_information(G, sigma, *, rng) -> tuple[float, float]:
    """(I, error) of I(Z; Z + sigma eps) with Z | G ~ N(0, G), from S sampled G (S, N, N) (module docstring).

    One Y_s ~ N(0, G_s + sigma^2 I) per sample (numpy Generator ``rng``: same seed, same result).
    I = (1/2) log det(I + Gbar/sigma^2) - J_hat, J_hat = mean_s [log p_loo(Y_s) - log N(Y_s; 0, Gbar + sigma^2)];
    error = std of the per-sample influence (1/2) tr[(Gbar + sigma^2)^{-1} (G_s - Gbar)] - (J term)_s over
    sqrt(S). Cost O(S^2 N^2) (chunked).

    >>> G = np.ones((500, 1, 1))          # a Gaussian neuron of variance 1 (no mixture): I = log(2)/2 at sigma 1
    >>> I, err = scale_mixture_information(G, 1.0, rng=np.random.default_rng(0))
    >>> bool(abs(I - 0.5 * np.log(2.0)) < 1e-12)
    True
    """
    G, sigma, Y, log_q, _ = _mixture(G, sigma, rng)
    S, N = G.shape[:2]
    Lbar = np.linalg.cholesky(G.mean(0) + sigma ** 2 * np.eye(N))
    v = scipy.linalg.solve_triangular(Lbar, Y.T, lower=True)
    log_gauss = -0.5 * np.sum(v * v, 0) - np.log(np.diag(Lbar)).sum()
    jterm = log_q - log_gauss
    I0 = np.log(np.diag(Lbar)).sum() - N * math.log(sigma)
    infl = 0.5 * np.einsum("ab,sba->s", scipy.linalg.cho_solve((Lbar, True), np.eye(N)), G - G.mean(0)) - jterm
    return float(I0 - jterm.mean()), float(infl.std(ddof=1) / math.sqrt(S))


def metric_information(G, sigma, *, rng) -> tuple[float, float]:
    """(I, error) of I(G; Y), Y | G ~ N(0, G + sigma^2 I), from S sampled G (S, N, N): the information that one
    noisy neuron of layer l carries about the whole previous layer (which acts only through the metric
    G^(l); :func:`sft.predict.layer_information`, field ``metric``).

    I = E[log N(Y; 0, G + sigma^2) - log p(Y)], estimated by mean_s [log N(Y_s; 0, G_s + sigma^2) - log p_loo(Y_s)]
    with the leave-one-out mixture p_loo; error = std / sqrt(S). The log of the mixture is biased low by
    O(1/S) (Jensen), so the estimate is biased high by O(Var_G / S). Cost O(S^2 N^2).

    >>> I, err = metric_information(np.ones((300, 1, 1)), 1.0, rng=np.random.default_rng(0))   # G fixed: I = 0
    >>> bool(abs(I) < 1e-12)
    True
    """
    G, sigma, Y, log_q, log_own = _mixture(G, sigma, rng)
    d = log_own - log_q
    return float(d.mean()), float(d.std(ddof=1) / math.sqrt(d.size))
