"""Gaussian-equivalence constants of an activation and the law of a random-feature background given a
circuit's input (issue 6, item 4).

Conventions (z ~ N(0, 1), h = sqrt(q) z a preactivation of variance q, h_k = He_k / sqrt(k!)):

    mu0 = E[sigma(sqrt(q) z)],   mu1 = E[z sigma(sqrt(q) z)] = sqrt(q) E[sigma'(sqrt(q) z)]  (Stein),
    mu*^2 = E[sigma(sqrt(q) z)^2] - mu0^2 - mu1^2,

i.e. mu1 is the coefficient of h_1(z) = z in the Hermite expansion of sigma(sqrt(q) z) and *includes*
sqrt(q) (linear sigma: mu1 = sqrt(q)). Gaussian equivalence replaces sigma(h) by mu0 + mu1 z + mu* xi,
xi ~ N(0, 1) independent (Goldt et al. 2020; Hu & Lu 2022; Mei & Montanari 2019 sec. 2).
Closed forms (derived in the tests): relu mu0 = sqrt(q / 2 pi), mu1 = sqrt(q) / 2,
mu*^2 = q (1/4 - 1/(2 pi)); erf mu0 = 0, mu1 = 2 sqrt(q) / sqrt(pi (1 + 2q)),
E[erf^2] = (2/pi) arcsin(2q / (1 + 2q)); linear mu0 = 0, mu1 = sqrt(q), mu* = 0.

Background model. f(x) = sum_k b_k sigma(u_k . x) + f_bg(x),  f_bg(x) = N^{-1/2} sum_i a_i sigma(w_i . x),
a_i iid with mean a_mean and variance a_var, independent of the w_i. Circuit input s = u . x (|u| = 1).
Tilt toward the circuit (our convention): w_i = beta u + gamma P_perp g_i / sqrt(d), g_i ~ N(0, I_d),
P_perp = I - u u^T, so that given x

    w_i . x = beta s + r_i,   r_i ~ N(0, q_perp) iid,   q_perp = gamma^2 |P_perp x|^2 / d.

Untilted weights w_i ~ N(0, I/d) are the case beta = 0, q_perp = |x|^2 / d (law independent of the
direction of x, so f_bg depends on s only through |x|). Given x, over the background weights
(exact at every N, the sum of N iid terms):

    E[f_bg | x]   = sqrt(N) a_mean E_r[sigma(beta s + r)],
    Var[f_bg | x] = (a_var + a_mean^2) E_r[sigma(beta s + r)^2] - a_mean^2 E_r[sigma(beta s + r)]^2.

With q = beta^2 + q_perp and rho = beta / sqrt(q), beta s + r = sqrt(q) (rho s + sqrt(1 - rho^2) z), so
by Mehler's formula (the Ornstein-Uhlenbeck semigroup acting on Hermite polynomials; O'Donnell,
*Analysis of Boolean Functions* (2014) sec. 11.1) for any g in L^2(N(0,1)):

    E_r[g(beta s + r)] = sum_k c_k[g](q) rho^k h_k(s),   c_k[g](q) = E[g(sqrt(q) z) h_k(z)],

applied to g = sigma (c_0 = mu0, c_1 = mu1) and g = sigma^2. The circuit polarizes the background:
to first order E[sigma | s] = mu0 + mu1 rho s, the Gaussian-equivalence line.
"""
from __future__ import annotations

import numpy as np
import scipy.special

from .activations import get_activation
from .gaussian import gaussian_expectation

__all__ = ["equivalence_constants", "hermite_coefficients_1d", "background_conditional_moments",
           "background_moments_hermite"]

_NODES = 1600  # quadrature nodes per half line of sft.gaussian.gaussian_expectation


def _check_q(q, name="q"):
    q = np.asarray(q, dtype=np.float64)
    if not np.all(np.isfinite(q)) or np.any(q < 0):
        raise ValueError(f"{name}={q!r} is not allowed: variances must be finite and >= 0")
    return q


def _normalized_hermite(k, z):
    """h_k(z) = He_k(z) / sqrt(k!) (orthonormal under N(0, 1))."""
    return scipy.special.eval_hermitenorm(k, z) / np.sqrt(scipy.special.factorial(k))


def equivalence_constants(activation, *, q=1.0):
    """(mu0, mu1, mu_star) of ``activation`` at preactivation variance ``q`` (scalar or array).

    mu0 = E[sigma(sqrt q z)], mu1 = E[z sigma(sqrt q z)] (includes sqrt q), mu_star = sqrt(E[sigma^2]
    - mu0^2 - mu1^2) (module docstring). ``activation``: a name, an Activation or a JAX callable.
    Quadrature: :func:`sft.gaussian.gaussian_expectation`.

    >>> mu0, mu1, mus = equivalence_constants("linear", q=4.0)
    >>> round(float(mu1), 12), round(float(mus), 6)
    (2.0, 0.0)
    """
    act = get_activation(activation)
    q = _check_q(q)
    sq = np.sqrt(np.where(q > 0, q, 1.0))
    f = lambda t: np.asarray(act(t), dtype=np.float64)
    mu0 = gaussian_expectation(f, q, _NODES)
    mu1 = np.where(q > 0, gaussian_expectation(lambda t: (t / sq[..., None]) * f(t), q, _NODES), 0.0)
    ess = gaussian_expectation(lambda t: f(t) ** 2, q, _NODES)
    return mu0, mu1, np.sqrt(np.maximum(ess - mu0 ** 2 - mu1 ** 2, 0.0))


def hermite_coefficients_1d(g, q, order):
    """c_k = E[g(sqrt(q) z) h_k(z)], k = 0 .. order-1, shape q.shape + (order,); q > 0, g elementwise."""
    q = _check_q(q)
    if np.any(q <= 0):
        raise ValueError(f"q={q!r} is not allowed: need q > 0 for the Hermite expansion")
    if int(order) != order or order < 1:
        raise ValueError(f"order={order!r} is not allowed: need an integer >= 1")
    sq = np.sqrt(q)[..., None]
    return np.stack([gaussian_expectation(lambda t: g(t) * _normalized_hermite(k, t / sq), q, _NODES)
                     for k in range(int(order))], axis=-1)


def _check_model(beta, a_var, width):
    if not np.isfinite(beta):
        raise ValueError(f"beta={beta!r} is not allowed: the tilt must be finite")
    if not (np.isfinite(a_var) and a_var >= 0):
        raise ValueError(f"a_var={a_var!r} is not allowed: the variance of a_i must be finite and >= 0")
    if int(width) != width or width < 1:
        raise ValueError(f"width={width!r} is not allowed: need an integer N >= 1")


def background_conditional_moments(activation, s, *, beta, q_perp, a_mean=0.0, a_var=1.0, width=1):
    """Exact (E[f_bg | x], Var[f_bg | x]) over the background weights, given the circuit input s and
    the orthogonal variance q_perp (arrays broadcast together); formulas in the module docstring.

    One-dimensional quadrature over r ~ N(0, q_perp) (gaussian_expectation, 400 nodes per half line).
    """
    act = get_activation(activation)
    _check_model(beta, a_var, width)
    s, q_perp = np.broadcast_arrays(np.asarray(s, dtype=np.float64), _check_q(q_perp, "q_perp"))
    shift = (beta * s)[..., None]
    f = lambda t: np.asarray(act(shift + t), dtype=np.float64)
    m1 = gaussian_expectation(f, q_perp, 400)
    m2 = gaussian_expectation(lambda t: f(t) ** 2, q_perp, 400)
    return np.sqrt(width) * a_mean * m1, (a_var + a_mean ** 2) * m2 - a_mean ** 2 * m1 ** 2


def background_moments_hermite(activation, s, *, beta, q_perp, order, a_mean=0.0, a_var=1.0, width=1):
    """The same moments from the Mehler series truncated at ``order`` terms (module docstring):
    E_r[g(beta s + r)] = sum_{k < order} c_k[g](q) rho^k h_k(s), q = beta^2 + q_perp, rho = beta / sqrt q;
    scalar q_perp, s any shape. order = 2 for g = sigma is the Gaussian-equivalence line mu0 + mu1 rho s.
    """
    act = get_activation(activation)
    _check_model(beta, a_var, width)
    if int(order) != order or order < 1:
        raise ValueError(f"order={order!r} is not allowed: need an integer >= 1")
    q = beta ** 2 + float(_check_q(q_perp, "q_perp"))
    rho = beta / np.sqrt(q)
    s = np.asarray(s, dtype=np.float64)
    basis = np.stack([rho ** k * _normalized_hermite(k, s) for k in range(int(order))], axis=-1)
    sig = lambda t: np.asarray(act(t), dtype=np.float64)
    m1 = basis @ hermite_coefficients_1d(sig, q, order)
    m2 = basis @ hermite_coefficients_1d(lambda t: sig(t) ** 2, q, order)
    return np.sqrt(width) * a_mean * m1, (a_var + a_mean ** 2) * m2 - a_mean ** 2 * m1 ** 2
