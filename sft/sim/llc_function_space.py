"""The wide-network LLC at fixed localization gamma: a Gaussian in FUNCTION space, not in weight space.

Setting (:mod:`sft.sim.llc`): p(w) ∝ exp(-a L_n(w) - (gamma/2)|w - w*|^2), a = nbeta, squared loss
L_n = (1/2n) sum_i (f_i(w) - y_i)^2 over the P = n n_out training outputs. L_n depends on w only
through F = f(w), so exactly

    p(F) ∝ q_gamma(F) exp(-a L(F)),   q_gamma = the law of f(w* + d), d ~ N(0, I/gamma),

and lambda_hat = a (E_p[L(F)] - L*). For a wide network f_i is a sum of many independent neuron
contributions under d ~ N(0, I/gamma) (one hidden layer: exactly independent), so q_gamma is Gaussian
up to O(1/width) (central limit theorem), with mean m and covariance C that are NOT those of the
linearized network: each weight moves by O(1/sqrt(gamma)), which shifts and spreads the outputs at
O(1) for every width (sums over ~width null directions of O(1/sqrt(width)) Hessian terms). With
C = U diag(c) U^T, b = a/n and r = U^T (m - y):

    lambda_hat = (a/2n) [ sum_k r_k^2 / (1 + b c_k)^2 + sum_k c_k / (1 + b c_k) ] - a L*,

the Gaussian posterior N(mu, Sigma) of F, Sigma = (C^-1 + b)^-1, mu = Sigma (C^-1 m + b y)
(derivations/llc_perturbative.py, item 5). As gamma -> inf, m -> f(w*) and C -> J J^T / gamma, and
this becomes the weight-space (NTK) Gaussian :func:`sft.sim.ntk_llc`; its first correction in
1/gamma is :mod:`sft.sim.llc_correction`. m and C come from Monte Carlo draws of d
(:func:`output_pushforward`); the error bar of lambda_hat is a jackknife over batches of draws.

:func:`prior_reweighted_llc`: the same draws give lambda_hat with no Gaussian assumption by
self-normalized importance sampling, E_p[L] = E_q[L e^(-a L)] / E_q[e^(-a L)] (exact at every width;
reliable while a (L - min L) stays O(1) over the draws, i.e. at small a = nbeta), the independent check.
"""
from __future__ import annotations

import math
import numbers
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from ..conventions import psd_eigh, require_x64

__all__ = ["output_pushforward", "function_space_llc", "function_space_llc_from_samples",
           "prior_reweighted_llc"]


def _positive(name, value, *, strict=True):
    if (isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value)
            or not (value > 0 if strict else value >= 0)):
        raise ValueError(f"{name}={value!r} is not allowed: {name} must be a finite number "
                         f"{'>' if strict else '>='} 0")
    return float(value)


def _int(name, value, lo):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < lo:
        raise ValueError(f"{name}={value!r} is not allowed: {name} must be an integer >= {lo}")
    return int(value)


def output_pushforward(f: Callable, w_star, *, gamma, key, n_samples, batch=2000) -> np.ndarray:
    """Draws F_s = f(w* + d_s), d_s ~ N(0, I/gamma) (float64), shape (n_samples, P).

    f: (D,) -> (P,) the training outputs (flattened); w_star (D,); gamma > 0; draw s uses
    jax.random.fold_in(key, s // batch) for its batch (same key -> same draws).

    >>> F = output_pushforward(lambda w: w[:2] ** 2, jnp.zeros(3), gamma=4.0, key=jax.random.key(0), n_samples=4000)
    >>> F.shape, bool(abs(F.mean() - 0.25) < 0.03)       # E[d^2] = 1/gamma
    ((4000, 2), True)
    """
    require_x64("sft.sim.output_pushforward")
    gamma = _positive("gamma", gamma)
    n_samples, batch = _int("n_samples", n_samples, 2), _int("batch", batch, 1)
    w = jnp.asarray(w_star, jnp.float64)
    if w.ndim != 1 or not bool(jnp.all(jnp.isfinite(w))):
        raise ValueError(f"w_star has shape {w.shape}: it must be a finite (D,) vector")
    g = jax.jit(jax.vmap(lambda d: jnp.ravel(f(w + d))))
    out = [np.asarray(g(jax.random.normal(jax.random.fold_in(key, k), (min(batch, n_samples - s), w.shape[0]),
                                          jnp.float64) / math.sqrt(gamma)))
           for k, s in enumerate(range(0, n_samples, batch))]
    F = np.concatenate(out).astype(np.float64)
    if not np.all(np.isfinite(F)):
        raise ValueError("f returned NaN or inf on some draws w* + d: the network must be finite there")
    return F


def function_space_llc(mean, cov, y, *, n, nbeta, loss_star=0.0) -> float:
    """lambda_hat of the Gaussian output law N(mean, cov) (module docstring).

    mean, y: (P,); cov: (P, P) symmetric PSD; n: training samples (L_n a mean over n); nbeta > 0;
    loss_star = L_n(w*) >= 0.

    >>> round(function_space_llc(np.zeros(2), np.diag([1.0, 4.0]), np.zeros(2), n=2, nbeta=2.0), 6)
    0.65
    """
    m, y = np.asarray(mean, np.float64), np.asarray(y, np.float64)
    C = np.asarray(cov, np.float64)
    if m.ndim != 1 or y.shape != m.shape or C.shape != (len(m), len(m)):
        raise ValueError(f"mean {m.shape}, y {y.shape}, cov {C.shape}: they must be (P,), (P,), (P, P)")
    if not (np.all(np.isfinite(m)) and np.all(np.isfinite(y)) and np.all(np.isfinite(C))):
        raise ValueError("mean, cov and y must be finite (no NaN or inf)")
    n = _int("n", n, 1)
    a, loss_star = _positive("nbeta", nbeta), _positive("loss_star", loss_star, strict=False)
    c, U = psd_eigh("cov", 0.5 * (C + C.T), rtol=1e-10)
    c = np.clip(c, 0.0, None)
    b = a / n
    r = U.T @ (m - y)
    return float(a / (2 * n) * (np.sum(r ** 2 / (1 + b * c) ** 2) + np.sum(c / (1 + b * c))) - a * loss_star)


def _checked_samples(samples, y):
    F, y = np.asarray(samples, np.float64), np.asarray(y, np.float64)
    if F.ndim != 2 or F.shape[0] < 20 or y.shape != (F.shape[1],):
        raise ValueError(f"samples {F.shape} and y {y.shape}: they must be (S, P) with S >= 20 and (P,)")
    if not (np.all(np.isfinite(F)) and np.all(np.isfinite(y))):
        raise ValueError("samples and y must be finite (no NaN or inf)")
    return F, y


def _jackknife(fn, F, n_batches):
    n_batches = _int("n_batches", n_batches, 2)
    parts = np.array_split(np.arange(F.shape[0]), n_batches)
    loo = np.array([fn(np.delete(F, p, axis=0)) for p in parts])
    return fn(F), float(math.sqrt((n_batches - 1) / n_batches * np.sum((loo - loo.mean()) ** 2)))


def function_space_llc_from_samples(samples, y, *, n, nbeta, loss_star=0.0, n_batches=10):
    """(lambda_hat, stderr): :func:`function_space_llc` with the sample mean and covariance of
    ``samples`` (S, P) (from :func:`output_pushforward`); stderr the jackknife over n_batches batches.

    >>> F = np.random.default_rng(0).normal(size=(20000, 2)) * [1.0, 2.0]
    >>> lam, err = function_space_llc_from_samples(F, np.zeros(2), n=2, nbeta=2.0)
    >>> bool(abs(lam - 0.65) < 4 * err)
    True
    """
    F, y = _checked_samples(samples, y)
    fn = lambda F: function_space_llc(F.mean(0), np.atleast_2d(np.cov(F.T)), y, n=n, nbeta=nbeta,
                                      loss_star=loss_star)
    return _jackknife(fn, F, n_batches)


def prior_reweighted_llc(samples, y, *, n, nbeta, loss_star=0.0, n_batches=10):
    """(lambda_hat, stderr) by self-normalized importance sampling of the draws (module docstring):
    a (sum_s L_s e^(-a L_s) / sum_s e^(-a L_s) - L*), L_s = |F_s - y|^2 / (2n); jackknife stderr.

    >>> F = np.random.default_rng(0).normal(size=(20000, 1))
    >>> lam, err = prior_reweighted_llc(F, np.zeros(1), n=1, nbeta=1.0)   # N(0,1) x e^(-F^2/2): 1/4
    >>> bool(abs(lam - 0.25) < 4 * err)
    True
    """
    F, y = _checked_samples(samples, y)
    n = _int("n", n, 1)
    a, loss_star = _positive("nbeta", nbeta), _positive("loss_star", loss_star, strict=False)

    def fn(F):
        L = 0.5 * np.sum((F - y) ** 2, axis=1) / n
        wgt = np.exp(-a * (L - L.min()))
        return float(a * (np.sum(wgt * L) / np.sum(wgt) - loss_star))

    return _jackknife(fn, F, n_batches)
