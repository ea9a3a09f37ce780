"""Maximum-marginal-likelihood hyperparameters (C_W, C_b, noise) of the NNGP prior, depth fixed.

Model (Rasmussen & Williams 2006, sec. 5.4.1; conventions of :mod:`sft.conventions`): the k columns of
y (P, k) are independent draws of y = f(X) + eps, f ~ GP(0, K_theta), eps ~ N(0, noise I), with
K_theta = :func:`sft.kernels.nngp` (the readout kernel of a depth-``depth`` network, any activation)
and theta = (C_W, C_b, noise), the same C_W, C_b in every layer. Then

    log p(y | theta) = -1/2 tr(y^T A^{-1} y) - (k/2) log det A - (k P / 2) log(2 pi),   A = K_theta + noise I

(eq. (2.30) there, summed over columns), evaluated by :func:`sft.predict.gp_posterior`.

Fit (:func:`fit_hyperparameters`): L-BFGS-B (scipy.optimize) on -log p / (k P) in u = log theta
(positivity), with the exact gradient by JAX autodiff through the kernel recursion (jitted), from
several starts; the best optimum is kept. Error bars: the observed information
H = -d^2 log p / d theta^2 at the optimum (central differences, step 1e-4 in log theta, of the exact JAX
gradient; relative error ~1e-8), covariance H^{-1} (asymptotic normality of
the maximum-likelihood estimate; the Laplace approximation), inverted in the eigenbasis with a PD check
(:func:`sft.conventions.psd_eigh`). tests/test_hyperparameters.py recovers known theta from data
drawn from the GP itself within these error bars.

Bounds of the search (u = log theta): C_W in [1e-3, 20], C_b in [1e-8, 20], noise in [1e-8, 1e2] times
the mean of y^2. A fit on a bound is reported (``on_bound``); then H^{-1} is not a valid error bar.
Activations without closed forms (tanh, ...) go through the Mehler series on the host at every step
(slower; variances beyond the series' range raise, e.g. tanh q > ~60: narrow ``bounds``).
"""
from __future__ import annotations

import warnings

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from scipy import optimize

from ..conventions import check_depth, check_inputs, psd_eigh, require_x64
from ..kernels.activations import get_activation
from ..kernels.recursion import nngp
from .infinite_width import gp_posterior

__all__ = ["log_marginal_likelihood", "HyperparameterFit", "fit_hyperparameters", "PARAMETERS"]

#: Order of the fitted parameters in every array of a :class:`HyperparameterFit`.
PARAMETERS = ("C_W", "C_b", "noise")
_BOUNDS = ((1e-3, 20.0), (1e-8, 20.0), (1e-8, 1e2))  # noise bounds are relative to mean(y^2)


def log_marginal_likelihood(x, y, *, depth, activation, C_W, C_b, noise):
    """log p(y | C_W, C_b, noise) of the NNGP prior (module docstring); x (P, d), y (P,) or (P, k).

    JAX-traceable in x, y, C_W, C_b and noise (jit, vmap, grad, hessian).

    >>> import numpy as np
    >>> x, y = np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([0.5, -0.2])
    >>> K = 2.0 + np.eye(2) / 2     # linear, depth 1, C_W = C_b = 1: K = C_b + C_W (C_b + C_W x.x'/d)
    >>> A = K + 0.1 * np.eye(2)
    >>> ref = -0.5 * y @ np.linalg.solve(A, y) - 0.5 * np.log(np.linalg.det(A)) - np.log(2 * np.pi)
    >>> val = log_marginal_likelihood(x, y, depth=1, activation="linear", C_W=1.0, C_b=1.0, noise=0.1)
    >>> bool(abs(val - ref) < 1e-14)
    True
    """
    require_x64("sft.predict.log_marginal_likelihood")
    K = nngp(x, depth=depth, activation=activation, C_W=C_W, C_b=C_b)
    return gp_posterior(K, K[:1], K[:1, :1], y, noise=noise).log_marginal_likelihood


def _observed_information(objective, u, theta, h=1e-4):
    """Hessian of f(theta) = objective(log theta) by central differences (step h in u = log theta) of the
    exact (JAX) gradient g_u = theta f_theta:  f_ij = (d g_u_i / d u_j - delta_ij g_u_i) / (theta_i theta_j).
    Truncation ~ h^2 (fourth derivative) / 6 ~ 1e-8 relative; reuses the compiled gradient (no
    second compilation, which costs more than the fit itself)."""
    g0 = np.asarray(objective(u)[1], dtype=np.float64)
    Hu = np.empty((u.size, u.size))
    for j in range(u.size):
        e = np.zeros_like(u)
        e[j] = h
        Hu[:, j] = (np.asarray(objective(u + e)[1]) - np.asarray(objective(u - e)[1])) / (2 * h)
    Hu = 0.5 * (Hu + Hu.T) - np.diag(g0)
    return Hu / np.outer(theta, theta)


class HyperparameterFit(NamedTuple):
    """Result of :func:`fit_hyperparameters`; arrays ordered as :data:`PARAMETERS`.

    theta (3,): (C_W, C_b, noise) at the best optimum; log_marginal_likelihood: its value;
    cov (3, 3): H^{-1}, H the observed information (restricted to the parameters not on a bound; rows
    and columns of parameters on a bound are 0: no error bar there); stderr (3,): sqrt(diag cov);
    starts (S, 3) and optima (S, 3): every start and where it ended; values (S,): log p there;
    on_bound (3,): whether the best optimum sits on a search bound; n_evaluations: objective calls.
    """

    theta: np.ndarray
    log_marginal_likelihood: float
    cov: np.ndarray
    stderr: np.ndarray
    starts: np.ndarray
    optima: np.ndarray
    values: np.ndarray
    on_bound: np.ndarray
    n_evaluations: int


def _check_labels(y, P):
    y = np.asarray(y, dtype=np.float64)
    if y.ndim not in (1, 2) or y.shape[0] != P or not np.all(np.isfinite(y)):
        raise ValueError(f"y has shape {y.shape} (or non-finite entries): it must be finite with shape "
                         f"(P,) or (P, k), P = {P} the number of inputs")
    return y


_H_RTOL = 1e-6  # accuracy of the finite-difference observed information, with a safety factor 100


def fit_hyperparameters(x, y, *, depth, activation, n_starts=4, seed=0, starts=None, bounds=None
                        ) -> HyperparameterFit:
    """Maximum-marginal-likelihood (C_W, C_b, noise) for inputs x (P, d) and labels y (P,) or (P, k).

    ``starts``: (S, 3) starting points (C_W, C_b, noise); default ``n_starts`` points drawn
    log-uniformly (seed ``seed``) in C_W [0.5, 4], C_b [0.01, 1], noise [0.01, 1] x mean(y^2).
    ``bounds``: ((lo, hi),) * 3 in natural units (default: module docstring). Method and error bars:
    module docstring.

    >>> import numpy as np
    >>> x = np.random.default_rng(0).normal(size=(20, 2))
    >>> y = np.sin(x[:, 0]) + 0.1 * np.random.default_rng(1).normal(size=20)
    >>> fit = fit_hyperparameters(x, y, depth=1, activation="erf", n_starts=1)
    >>> fit.theta.shape, fit.cov.shape, bool(fit.values.max() == fit.log_marginal_likelihood)
    ((3,), (3, 3), True)
    """
    require_x64("sft.predict.fit_hyperparameters")
    depth = check_depth(depth)
    act = get_activation(activation)
    x, _ = check_inputs(x)
    y = _check_labels(y, x.shape[0])
    scale = float(np.mean(y * y))
    if not scale > 0:
        raise ValueError("y is identically zero: the noise scale (mean of y^2) must be > 0")
    kP = y.size
    lo_hi = np.array(_BOUNDS if bounds is None else bounds, dtype=np.float64)
    if bounds is None:
        lo_hi[2] *= scale
    if lo_hi.shape != (3, 2) or not np.all(np.isfinite(lo_hi)) or np.any(lo_hi[:, 0] <= 0) \
            or np.any(lo_hi[:, 0] >= lo_hi[:, 1]):
        raise ValueError(f"bounds={bounds!r} is not allowed: give ((lo, hi),) * 3 with 0 < lo < hi, finite, "
                         f"for {PARAMETERS}")
    if starts is None:
        if isinstance(n_starts, bool) or not isinstance(n_starts, (int, np.integer)) or n_starts < 1:
            raise ValueError(f"n_starts={n_starts!r} is not allowed: give an integer >= 1")
        box = np.log([[0.5, 4.0], [0.01, 1.0], [0.01 * scale, scale]])
        u = np.random.default_rng(seed).uniform(box[:, 0], box[:, 1], size=(int(n_starts), 3))
        starts = np.exp(u)
    starts = np.atleast_2d(np.asarray(starts, dtype=np.float64))
    if starts.ndim != 2 or starts.shape[1] != 3 or np.any(starts < lo_hi[:, 0]) or np.any(starts > lo_hi[:, 1]):
        raise ValueError(f"starts has shape {starts.shape} or leaves the bounds {lo_hi.tolist()}: give (S, 3) "
                         f"points (C_W, C_b, noise) inside them")

    def neg_log_p(theta):
        return -log_marginal_likelihood(x, y, depth=depth, activation=act, C_W=theta[0], C_b=theta[1],
                                        noise=theta[2])

    objective = jax.jit(jax.value_and_grad(lambda u: neg_log_p(jnp.exp(u)) / kP))
    count = [0]

    def fun(u):
        count[0] += 1
        v, g = objective(u)
        return float(v), np.asarray(g, dtype=np.float64)

    optima, values = [], []
    for s in starts:
        res = optimize.minimize(fun, np.log(s), jac=True, method="L-BFGS-B", bounds=np.log(lo_hi),
                                options=dict(maxiter=500, ftol=1e-14, gtol=1e-9))
        optima.append(np.exp(res.x))
        values.append(-res.fun * kP)
    optima, values = np.array(optima), np.array(values)
    best = int(np.argmax(values))
    theta = optima[best]
    H = _observed_information(objective, np.log(theta), theta) * kP
    on_bound = np.any(np.abs(np.log(theta)[:, None] - np.log(lo_hi)) < 1e-6, axis=1)
    free = ~on_bound
    cov = np.zeros((3, 3))
    if free.any():  # Laplace covariance of the free parameters (those on a bound held fixed)
        # H comes from finite differences (relative error ~1e-8): eigenvalues within 1e-6 max|lam| of 0 are
        # flat directions (parameters not determined by the data: infinite error bar, with a warning);
        # a clearly negative one (< -1e-6 max|lam|) means a saddle, not a maximum: ValueError.
        lam, V = psd_eigh("observed information -d^2 log p / d theta^2 at the optimum (free parameters)",
                          0.5 * (H + H.T)[np.ix_(free, free)], rtol=_H_RTOL)
        flat = lam <= _H_RTOL * lam.max()
        idx = np.flatnonzero(free)
        cov[np.ix_(idx, idx)] = (V[:, ~flat] / lam[~flat]) @ V[:, ~flat].T
        undetermined = idx[np.any(np.abs(V[:, flat]) > 1e-3, axis=1)] if flat.any() else idx[:0]
        if undetermined.size:
            cov[undetermined, undetermined] = np.inf
            warnings.warn(f"fit_hyperparameters: the observed information has {int(flat.sum())} flat "
                          f"direction(s) (eigenvalue <= {_H_RTOL:g} x max = {_H_RTOL * lam.max():.3g}, the "
                          "finite-difference accuracy): "
                          f"{', '.join(PARAMETERS[i] for i in undetermined)} not determined by the data "
                          "(infinite error bar)", RuntimeWarning, stacklevel=2)
    return HyperparameterFit(theta, float(values[best]), cov, np.sqrt(np.diag(cov)), starts, optima, values,
                             on_bound, count[0])
