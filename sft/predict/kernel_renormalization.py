"""Bayesian deep linear networks at finite P/N: back-propagating kernel renormalization (BPKR).

Network (conventions of :mod:`sft.conventions`, sigma(z) = z, NO biases, one output), L = depth:

    f(x) = W^(L+1) W^(L) ... W^(1) x,     W^(l) (n_l, n_{l-1}) with i.i.d. N(0, C_W^(l) / n_{l-1}),

n_0 the input dimension, n_{L+1} = 1 (W^(L+1) = a^T is the readout). Posterior at temperature T,

    p(W | X, y) ∝ prior(W) exp(-sum_{mu=1..P} (f(x_mu) - y_mu)^2 / (2 T)).

Relation to other conventions. Li & Sompolinsky (PRX 11, 031059 (2021)) write the Gibbs distribution
exp(-E/T - |Theta|^2 / (2 sigma^2)) with E = (1/2) sum_mu (f(x_mu) - y_mu)^2, f = a.x_L / sqrt(N_L),
x_l = W_l x_{l-1} / sqrt(N_{l-1}), weights of unit scale: that is this model with the same T and
C_W^(l) = sigma^2 in every layer (their beta = 1/T). :func:`sft.sim.network_log_posterior`
(likelihood (1/T') (f - y)^2 / (2 noise)) is this model with T = noise * T'.

Derivation (exact at any width). Let v_L = a (the readout vector, R^{n_L}) and v_{l-1} = W^(l)T v_l.
Given all layers but the first, f(x) = v_0 . x with v_0 = W^(1)T v_1 Gaussian, so f restricted to any
inputs is a Gaussian process with kernel |v_1|^2 C_W^(1) x.x' / n_0. Integrating the layers from the
output backwards (the "back-propagation" of the kernel renormalization), |v_{l-1}|^2 given v_l is
|v_l|^2 C_W^(l) chi^2_{n_{l-1}} / n_{l-1}, so

    f = sqrt(U) g,   g ~ GP(0, K),   U = prod_{l=1}^{L} u_l,   u_l = chi^2_{n_l} / n_l independent,

with K = prod_l C_W^(l) x.x'/n_0 the infinite-width NNGP kernel of the linear network
(``sft.kernels.nngp(x, depth=L, activation="linear", C_W=C_W, C_b=0)``) and u_l the per-layer scale
(u_L = |a|^2 / C_W^(L+1), u_{l-1} = |v_{l-1}|^2 / (C_W^(l) |v_l|^2)). Hence the posterior is a scale
mixture of Gaussian-process posteriors,

    p(U | y) ∝ p(U) N(y; 0, U K + T I),   E[f* | y] = E_{U|y}[m_U],   Cov[f* | y] = E[S_U] + Cov[m_U],
    m_U = U k*^T (U K + T)^{-1} y,         S_U = U K** - U^2 k*^T (U K + T)^{-1} k*,

evaluated exactly by 1-d quadrature in log U (:func:`exact_posterior`; the density of log U is the
convolution of the log-chi^2 densities (n_l/2)(s - e^s) of the layers).

BPKR limit. For N, P -> infinity at fixed alpha_l = P / n_l, log p(u_1..u_L | y) =
sum_l (n_l/2)(log u_l - u_l) - (1/2) log det(U K + T) - (1/2) y^T (U K + T)^{-1} y + O(1) is
extensive, and the u_l concentrate at its maximum (the saddle point). Stationarity in u_l gives

    n_l (1 - u_l) = R(U),   R(U) = U tr[(U K + T)^{-1} K] - U y^T (U K + T)^{-1} K (U K + T)^{-1} y,

the same right side for every layer, i.e. u_l = 1 - alpha_l r(U) with r = R/P (equal widths: all u_l
equal, U = u^L). Solved as one scalar equation lambda = R(U(lambda)), U(lambda) = prod_l (1 - lambda/n_l),
bracketed on a grid with brentq; if several roots exist the one with the largest log-posterior is
taken (:func:`saddle_point`). The renormalized kernel is U* K: the predictor is the GP posterior with
kernel U* K and noise T, i.e. mean k*^T (K + T/U*)^{-1} y (at T = 0 the mean is the NNGP mean and only
the variance is renormalized). Limits: alpha -> 0 (n_l -> infinity) gives u_l -> 1, the NNGP; L = 1,
T = 0 gives u^2 + (alpha - 1) u - alpha y^T K^{-1} y / P = 0. Corrections to the saddle point are O(1/N)
(fluctuations of U are O(N^{-1/2}); :func:`exact_posterior` includes them).

Sampler (:func:`gibbs_sample`). Given all other layers f is linear in W^(l): f(x_mu) = v_l^T W^(l)
h_mu, h_mu = W^(l-1)...W^(1) x_mu, so the conditional posterior of W^(l) is Gaussian. It is drawn
exactly by Matheron's rule: W = W0 + c v_l (H^T beta), W0 ~ prior, c = C_W^(l)/n_{l-1},
beta = (c |v_l|^2 H H^T + T)^{-1} (y - H W0^T v_l - eps), eps ~ N(0, T I). One sweep updates
layers 1 .. L+1 in turn (blocked Gibbs; exact at any step, no step size).
Checks (tests/test_kernel_renormalization.py): the blocked Gibbs sampler against the exact finite-width
posterior (mean, second moment and E[U]; P = 40, widths (40) and (30, 50); |z| < 4, while the NNGP fails
the same test); BPKR against a direct maximization of the action for unequal widths; N (E[U] - U*) -> const.
Figure ``kernel_renormalization``. Not implemented: biases, several outputs, nonlinear networks,
hidden-layer kernel statistics.
"""
from __future__ import annotations

import numbers
from typing import NamedTuple

import jax
import jax.scipy.linalg
import jax.numpy as jnp
import numpy as np
import scipy.optimize

from ..conventions import check_widths, layer_constants, psd_eigh, require_x64
from ..sim.networks import _check_cost
from ..kernels.recursion import nngp

__all__ = ["Saddle", "Prediction", "saddle_point", "bpkr_posterior", "exact_posterior", "gibbs_sample",
           "GibbsResult"]


class Saddle(NamedTuple):
    """BPKR saddle point: U (total kernel scale), u (L,) per-layer scales, lam = n_l (1 - u_l)."""
    U: float
    u: np.ndarray
    lam: float


class Prediction(NamedTuple):
    """Posterior of the test outputs: mean (M,), cov (M, M); U: the kernel scale (saddle value for
    BPKR, posterior mean E[U | y] for the exact posterior); u (L,): per-layer scales (saddle values;
    for the exact posterior: NaN, only U is integrated)."""
    mean: np.ndarray
    cov: np.ndarray
    U: float
    u: np.ndarray


class GibbsResult(NamedTuple):
    """f: (chains, draws, M) test outputs; U: (chains, draws) kernel scale |v_1|^2 / prod_{l>=2} C_W^(l)."""
    f: jax.Array
    U: jax.Array


# ------------------------------------------------------------------------------------- checks
def _temperature(T, positive=False):
    if isinstance(T, bool) or not isinstance(T, numbers.Real) or not np.isfinite(T) or T < 0 \
            or (positive and T == 0):
        raise ValueError(f"temperature={T!r} is not allowed: it must be a finite real "
                         f"{'> 0' if positive else '>= 0'}")
    return float(T)


def _kernel_data(K, y, temperature):
    """Eigen-decomposition (k (P,), V (P, P)) of K and y in its basis; K must be PD if T = 0."""
    K = np.asarray(K, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if K.ndim != 2 or K.shape[0] != K.shape[1] or K.shape[0] < 1:
        raise ValueError(f"K has shape {K.shape}: it must be (P, P) with P >= 1")
    if y.shape != (K.shape[0],):
        raise ValueError(f"y has shape {y.shape}: it must be (P,) = ({K.shape[0]},)")
    if not (np.all(np.isfinite(K)) and np.all(np.isfinite(y))):
        raise ValueError("K and y must be finite (no NaN or inf)")
    try:  # tolerance 10 P eps lam_max (sft.conventions.psd_eigh); eigenvalues within it clipped to 0
        k, V = psd_eigh("K", K, definite=temperature == 0)
    except ValueError as err:
        raise ValueError(f"{err}" + ("; at temperature=0 K must be invertible (use temperature > 0)"
                                     if temperature == 0 else "")) from None
    return k, V, V.T @ y


def _R(U, k, yt, T):
    """R(U) = U tr[(UK+T)^-1 K] - U y^T (UK+T)^-1 K (UK+T)^-1 y in the eigenbasis (U scalar or array)."""
    U = np.asarray(U, dtype=np.float64)[..., None]
    d = U * k + T
    return np.sum(U * k / d, -1) - np.sum(U * k * yt ** 2 / d ** 2, -1)


def _loglik(U, k, yt, T):
    """log N(y; 0, U K + T) + (P/2) log 2pi, vectorized over U."""
    d = np.asarray(U, dtype=np.float64)[..., None] * k + T
    return -0.5 * np.sum(np.log(d), -1) - 0.5 * np.sum(yt ** 2 / d, -1)


def saddle_point(K, y, *, widths, temperature, n_grid=4000) -> Saddle:
    """BPKR order parameters: solve n_l (1 - u_l) = R(prod_l u_l) (module docstring).

    K: (P, P) NNGP kernel of the linear network on the training inputs (its overall scale
    prod_l C_W^(l) included); y: (P,) labels; widths: (n_1, .., n_L) hidden widths (equal or not);
    temperature: T >= 0 (K positive definite if T = 0). Roots of lambda - R(U(lambda)) are
    bracketed on an ``n_grid`` grid of log u_min in [-30, 30] (u_min the scale of the narrowest layer),
    refined by brentq; of several, the one with the largest log-posterior is returned. Raises
    ValueError if none lies in the range.

    >>> import numpy as np
    >>> s = saddle_point(np.eye(4), 2.0 * np.ones(4), widths=[4], temperature=0.0)  # alpha = 1
    >>> round(s.U, 12)   # u^2 + (alpha - 1) u - alpha y^T K^-1 y / P = 0  ->  u = 2
    2.0
    """
    T = _temperature(temperature)
    n = np.array(check_widths(widths), dtype=np.float64)
    k, _, yt = _kernel_data(K, y, T)
    return _saddle(k, yt, n, T, n_grid)


def _saddle(k, yt, n, T, n_grid=4000):
    """:func:`saddle_point` on the eigenvalues k of K and y in its eigenbasis, widths n (float array)."""
    n_min = n.min()
    lam_of = lambda tau: n_min * (1.0 - np.exp(tau))            # u_min = e^tau
    U_of = lambda lam: np.prod(1.0 - np.asarray(lam)[..., None] / n, axis=-1)
    h = lambda tau: lam_of(tau) - _R(U_of(lam_of(tau)), k, yt, T)
    taus = np.linspace(-30.0, 30.0, n_grid)
    hs = h(taus)
    if not (hs[0] > 0 and hs[-1] < 0):
        raise ValueError(f"no BPKR saddle point with layer scales u_l in [e^-30, e^30] (widths={tuple(n.astype(int))}, "
                         f"temperature={T}); check the scales of K and y")
    roots = [scipy.optimize.brentq(h, taus[i], taus[i + 1], xtol=1e-15, rtol=1e-15)
             for i in np.nonzero(np.sign(hs[:-1]) != np.sign(hs[1:]))[0]]

    def action(tau):
        lam = lam_of(tau)
        u = 1.0 - lam / n
        return np.sum(0.5 * n * (np.log(u) - u)) + _loglik(np.prod(u), k, yt, T)

    tau = max(roots, key=action)
    lam = float(lam_of(tau))
    u = 1.0 - lam / n
    return Saddle(float(np.prod(u)), u, lam)


def _mixture(k, V, yt, Kx, Kt, U, w, T):
    """E_w[m_U] and E_w[S_U] + Cov_w[m_U] for U (G,), weights w (G,) summing to 1."""
    A = Kx @ V                                                  # (M, P)
    d = U[:, None] * k + T                                      # (G, P)
    m = (U[:, None] * yt / d) @ A.T                             # (G, M): U k*^T (UK+T)^-1 y
    mean = w @ m
    D = w @ (U[:, None] ** 2 / d)                               # (P,)
    cov = (w @ U) * Kt - (A * D) @ A.T + (m - mean).T @ ((m - mean) * w[:, None])
    return mean, 0.5 * (cov + cov.T)


def _linear_kernels(x_train, x_test, depth, C_W):
    x_train = np.asarray(x_train, dtype=np.float64)
    x_test = np.asarray(x_test, dtype=np.float64)
    if x_train.ndim != 2 or x_train.shape[0] < 1:
        raise ValueError(f"x_train has shape {x_train.shape}: it must be (P, n_0) with P >= 1")
    if x_test.ndim != 2 or x_test.shape[1] != x_train.shape[1]:
        raise ValueError(f"x_test has shape {x_test.shape}: it must be (M, {x_train.shape[1]})")
    kw = dict(depth=depth, activation="linear", C_W=C_W, C_b=0.0)
    return (np.asarray(nngp(x_train, **kw)), np.asarray(nngp(x_test, x_train, **kw)),
            np.asarray(nngp(x_test, **kw)))


def bpkr_posterior(x_train, y_train, x_test, *, widths, C_W, temperature) -> Prediction:
    """BPKR (N, P -> infinity, P/n_l fixed) posterior of a deep linear network at test inputs.

    x_train (P, n_0), y_train (P,), x_test (M, n_0); widths (n_1, .., n_L); C_W scalar or per layer
    (length L + 1, readout last); no biases; temperature T >= 0. Returns :class:`Prediction`: the GP
    posterior with the renormalized kernel U* K (K = the linear NNGP kernel) and noise T.

    >>> import numpy as np
    >>> x = np.eye(3); y = np.array([1.0, -1.0, 2.0])
    >>> p = bpkr_posterior(x, y, x[:1], widths=[10 ** 9], C_W=1.0, temperature=0.5)  # alpha -> 0
    >>> np.round(p.mean, 6), round(p.U, 6)    # NNGP: K = I/3, mean = (1/3)/(1/3 + 1/2) y_0
    (array([0.4]), 1.0)
    """
    widths = check_widths(widths)
    T = _temperature(temperature)
    K, Kx, Kt = _linear_kernels(x_train, x_test, len(widths), C_W)
    k, V, yt = _kernel_data(K, y_train, T)
    s = _saddle(k, yt, np.array(widths, dtype=np.float64), T)
    mean, cov = _mixture(k, V, yt, Kx, Kt, np.array([s.U]), np.ones(1), T)
    return Prediction(mean, cov, s.U, s.u)


def exact_posterior(x_train, y_train, x_test, *, widths, C_W, temperature, points_per_sd=40,
                    n_sd=14.0) -> Prediction:
    """Exact finite-width posterior of a deep linear network by quadrature over the kernel scale U.

    Same arguments as :func:`bpkr_posterior`. log U = sum_l s_l with s_l = log(chi^2_{n_l}/n_l) of
    density ∝ exp((n_l/2)(s - e^s)); each is tabulated on a common grid of spacing
    min_l sqrt(2/n_l)/points_per_sd covering its prior and its saddle value +- n_sd prior standard
    deviations, the layers are convolved, multiplied by N(y; 0, U K + T) and summed (trapezoid). The
    returned U is the posterior mean E[U | y]; u is NaN.
    """
    widths = check_widths(widths)
    T = _temperature(temperature)
    K, Kx, Kt = _linear_kernels(x_train, x_test, len(widths), C_W)
    k, V, yt = _kernel_data(K, y_train, T)
    n = np.array(widths, dtype=np.float64)
    s_star = _saddle(k, yt, n, T)
    sd = np.sqrt(2.0 / n)
    h = sd.min() / points_per_sd
    size = np.sum((2 * n_sd * sd + np.abs(np.log(s_star.u))) / h)
    if size > 2e5:
        raise ValueError(f"widths={widths} need a quadrature grid of {size:.3g} points (> 2e5): the widths are "
                         "too large or too unequal for exact_posterior; use bpkr_posterior for n -> infinity")
    logp, start = np.zeros(1), 0.0
    for n_l, sd_l, u_l in zip(n, sd, s_star.u):
        lo = min(0.0, np.log(u_l)) - n_sd * sd_l
        hi = max(0.0, np.log(u_l)) + n_sd * sd_l
        j0 = int(np.floor(lo / h))
        s = h * np.arange(j0, int(np.ceil(hi / h)) + 1)
        lp = 0.5 * n_l * (s - np.exp(s))
        a, b = logp.max(), lp.max()
        conv = np.convolve(np.exp(logp - a), np.exp(lp - b))
        logp = np.log(np.maximum(conv, 1e-300)) + a + b
        start += j0 * h
    s = start + h * np.arange(logp.size)
    U = np.exp(s)
    lw = logp + _loglik(U, k, yt, T)
    w = np.exp(lw - lw.max())
    if w[0] > 1e-12 or w[-1] > 1e-12 or np.any((conv < 1e-300) & (w > 1e-12)):
        raise ValueError("the posterior of U is not resolved on the quadrature grid (it reaches the grid's "
                         "edge or the prior's underflow): increase n_sd, or use bpkr_posterior")
    w /= w.sum()
    mean, cov = _mixture(k, V, yt, Kx, Kt, U, w, T)
    return Prediction(mean, cov, float(w @ U), np.full(len(widths), np.nan))


# ------------------------------------------------------------------------------------ sampler
def _gibbs_sweep(Ws, key, X, y, cs, T):
    """One blocked-Gibbs sweep over layers 1 .. L+1 (exact Gaussian conditionals, Matheron's rule).
    The prior draws W0 and the noise eps of all layers come from one normal vector per sweep."""
    Ws = list(Ws)
    key, sub = jax.random.split(key)
    P = y.shape[0]
    sizes = [W.size + P for W in Ws]
    z = jax.random.normal(sub, (sum(sizes),))
    offsets = np.cumsum([0] + sizes)
    for l in range(len(Ws)):
        zl = z[offsets[l]:offsets[l + 1]]
        W0 = jnp.sqrt(cs[l]) * zl[P:].reshape(Ws[l].shape)
        eps = jnp.sqrt(T) * zl[:P]
        H = X
        for W in Ws[:l]:
            H = H @ W.T                                          # (P, n_{l-1})
        v = jnp.ones((1,))
        for W in reversed(Ws[l + 1:]):
            v = W.T @ v                                          # (n_l,)
        G = cs[l] * (v @ v) * (H @ H.T) + T * jnp.eye(P)
        beta = jax.scipy.linalg.cho_solve((jnp.linalg.cholesky(G), True), y - H @ (W0.T @ v) - eps)
        Ws[l] = W0 + cs[l] * jnp.outer(v, H.T @ beta)
    return Ws, key


def gibbs_sample(key, x_train, y_train, x_test, *, widths, C_W, temperature, n_chains, n_sweeps,
                 burn_in=0, thin=1) -> GibbsResult:
    """Exact blocked-Gibbs samples of a deep linear network's posterior (module docstring), float64.

    x_train (P, n_0), y_train (P,), x_test (M, n_0); widths (n_1, .., n_L); C_W scalar or per layer
    (length L + 1); no biases; temperature T > 0. Chain c starts from the prior and draws its
    randomness from ``jax.random.fold_in(key, c)``; chains are vmapped, sweeps run in ``lax.scan``.
    Records every ``thin``-th sweep after ``burn_in`` sweeps: f(x_test) and U (the kernel scale,
    posterior mean comparable to :func:`exact_posterior`'s U). Returns :class:`GibbsResult`.
    All chains are held at once (vmap): memory ~4 n_chains sum_l n_{l-1} n_l x 8 bytes, and the request
    is refused up front (ValueError with the estimate) beyond the limits of :mod:`sft.sim.networks`
    (MAX_NETWORKS chains, MAX_BYTES, MAX_FLOPS ~ chains x sweeps x L (2 P sum_l n_{l-1} n_l + P^3)).
    """
    require_x64("sft.predict.gibbs_sample")
    widths = check_widths(widths)
    T = _temperature(temperature, positive=True)
    for name, v, lo in (("n_chains", n_chains, 1), ("n_sweeps", n_sweeps, 1), ("burn_in", burn_in, 0),
                        ("thin", thin, 1)):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < lo:
            raise ValueError(f"{name}={v!r} is not allowed: {name} must be an integer >= {lo}")
    X = jnp.asarray(x_train, jnp.float64)
    Xt = jnp.asarray(x_test, jnp.float64)
    y = jnp.asarray(y_train, jnp.float64)
    _linear_kernels(x_train, x_test, len(widths), C_W)           # shape checks
    if y.shape != (X.shape[0],):
        raise ValueError(f"y_train has shape {y.shape}: it must be (P,) = ({X.shape[0]},)")
    cw, _ = layer_constants(len(widths), C_W, 0.0)
    dims = (X.shape[1],) + widths + (1,)
    n_w, P, sweeps = sum(a * b for a, b in zip(dims[:-1], dims[1:])), X.shape[0], burn_in + n_sweeps
    _check_cost("gibbs_sample", n_chains, n_chains * sweeps * len(widths) * (2 * P * n_w + P ** 3),
                n_chains * sweeps * (Xt.shape[0] + 1) * 8, 4 * n_chains * n_w * 8)
    cs = tuple(float(c) / d for c, d in zip(cw, dims[:-1]))
    readout_gain = float(np.prod(cw[1:]))

    def record(Ws):
        F = Xt
        for W in Ws:
            F = F @ W.T
        v = jnp.ones((1,))
        for W in reversed(Ws[1:]):
            v = W.T @ v
        return F[:, 0], (v @ v) / readout_gain

    def chain(c):
        k = jax.random.fold_in(key, c)
        k0, k = jax.random.split(k)
        shapes = [(dims[l + 1], dims[l]) for l in range(len(dims) - 1)]
        offsets = np.cumsum([0] + [a * b for a, b in shapes])
        z = jax.random.normal(k0, (int(offsets[-1]),))
        Ws = [jnp.sqrt(cs[l]) * z[offsets[l]:offsets[l + 1]].reshape(shapes[l]) for l in range(len(shapes))]

        def step(carry, _):
            Ws, k = _gibbs_sweep(*carry, X, y, cs, T)
            return (Ws, k), record(Ws)

        _, out = jax.lax.scan(step, (Ws, k), None, length=burn_in + n_sweeps)
        return out

    f, U = jax.jit(jax.vmap(chain))(jnp.arange(n_chains, dtype=jnp.uint32))
    return GibbsResult(f[:, burn_in::thin], U[:, burn_in::thin])
