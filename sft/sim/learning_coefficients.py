"""Known learning coefficients and exact tempered-posterior LLCs: references for the LLC estimator.

lambda_hat(nbeta, gamma) = nbeta (E[L] - L(w*)) under p(w) ∝ exp(-nbeta L(w) - (gamma/2)|w - w*|^2)
(:mod:`sft.sim.llc`), computed exactly for potentials where it can be:

- :func:`quadratic_llc`: L = L* + g.d + d.H.d/2 (d = w - w*), a Gaussian posterior. With
  H = sum_k h_k u_k u_k^T, a_k = nbeta h_k + gamma > 0, g_k = u_k.g:
      lambda_hat = sum_k [ nbeta h_k / (2 a_k) - (nbeta g_k)^2 (nbeta h_k / 2 + gamma) / a_k^2 ].
  The bias from d/2 (regular model, g = 0, gamma -> 0) is -sum_k gamma / (2 a_k). With ``step_size``
  eps, the stationary value of full-batch SGLD instead: the variance 1/a_k becomes
  1/(a_k (1 - eps a_k / 4)) (an AR(1) process), the mean is unchanged.
  Derivation: derivations/llc_gaussian.py (items 1, 3).
- :func:`ntk_llc`: the linearized network at an interpolating w* (zero residuals), L_n = mean of
  |f - y|^2/2, has Hessian J^T J / n with J the (P, D) Jacobian of the P = n n_out training outputs;
  its nonzero eigenvalues are mu_k / n with mu_k those of the empirical NTK Theta = J J^T, so
      lambda_hat = sum_k (nbeta/n) mu_k / (2 ((nbeta/n) mu_k + gamma)),
  the wide-network prediction (derivations/llc_gaussian.py, item 2; the O(1/width) correction is
  not included).
- :func:`power_llc`: L = w^(2k) in one dimension: lambda = 1/(2k) exactly at gamma = 0 for every
  nbeta (scaling); for gamma > 0 by quadrature.
- :func:`normal_crossing_llc`: L = s (w1 w2)^2, lambda = 1/2 with multiplicity m = 2 (Watanabe 2009,
  *Algebraic Geometry and Statistical Learning Theory*, ch. 2 and 7: Z(n) ~ n^(-lambda) (log n)^(m-1)).
  Exactly, with q = gamma^2 / (8 nbeta s): Z ∝ (nbeta s)^(-1/2) e^q K_0(q), so
      lambda_hat = 1/2 + q (1 - K_1(q) / K_0(q)) = 1/2 - 1/(log(2/q) - gamma_E) + ...   (q -> 0),
  the slow 1/log(nbeta) approach to 1/2 that signals m = 2 (derivations/llc_gaussian.py, item 5).
- :func:`reduced_rank_learning_coefficient`: the learning coefficient of reduced-rank regression
  (two-layer linear networks), Aoyagi & Watanabe (2005), Neural Networks 18, 924-933, Main Theorem.
"""
from __future__ import annotations

import math
import numbers
from fractions import Fraction

import numpy as np
from scipy import integrate, special

from ..conventions import psd_eigh

__all__ = ["quadratic_llc", "ntk_llc", "power_llc", "normal_crossing_llc",
           "reduced_rank_learning_coefficient"]


def _real(name, value, lo, lo_open):
    if (isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value)
            or not (value > lo if lo_open else value >= lo)):
        raise ValueError(f"{name}={value!r} is not allowed: {name} must be a finite number "
                         f"{'>' if lo_open else '>='} {lo}")
    return float(value)


def _symmetric(name, m):
    m = np.asarray(m, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] < 1:
        raise ValueError(f"{name} has shape {m.shape}: it must be a square (D, D) matrix, D >= 1")
    if not np.all(np.isfinite(m)):
        raise ValueError(f"{name} contains NaN or inf: it must be finite")
    scale = np.abs(m).max()
    if np.abs(m - m.T).max() > 1e-10 * scale:
        raise ValueError(f"{name} is not symmetric: max |{name} - {name}^T| = "
                         f"{np.abs(m - m.T).max():.3g} > 1e-10 max|{name}| = {1e-10 * scale:.3g}")
    return 0.5 * (m + m.T)


def quadratic_llc(hessian, *, nbeta, gamma, gradient=None, step_size=None) -> float:
    """Exact lambda_hat for L = L* + g.d + d.H.d/2 (module docstring); with ``step_size`` the
    stationary value of full-batch SGLD (:mod:`sft.sim.sgld`) instead.

    hessian: (D, D) symmetric; gradient: (D,) or None (zero); nbeta > 0; gamma >= 0; nbeta H + gamma I
    must be positive definite, and step_size (nbeta h_max + gamma) < 4 (SGLD stability).

    >>> quadratic_llc(np.eye(3), nbeta=1e6, gamma=0.0)          # regular model: d/2
    1.5
    >>> round(quadratic_llc(np.eye(3), nbeta=10.0, gamma=1.0), 6)  # finite-gamma bias: 3 * 10/22
    1.363636
    """
    H = _symmetric("hessian", hessian)
    nbeta, gamma = _real("nbeta", nbeta, 0, True), _real("gamma", gamma, 0, False)
    h, U = np.linalg.eigh(H)
    a = nbeta * h + gamma
    if a.min() <= 1e-12 * max(np.abs(a).max(), gamma):
        raise ValueError(f"nbeta*hessian + gamma*I has eigenvalue {a.min():.4g}: it must be positive "
                         f"definite (relative to its scale {np.abs(a).max():.4g}); the posterior is "
                         "improper otherwise")
    var = 1.0 / a
    if step_size is not None:
        eps = _real("step_size", step_size, 0, True)
        if eps * a.max() >= 4:
            raise ValueError(f"step_size={eps!r} is not allowed: SGLD diverges when step_size "
                             f"(nbeta h_max + gamma) = {eps * a.max():.4g} >= 4")
        var = var / (1.0 - eps * a / 4.0)
    g = np.zeros_like(h) if gradient is None else U.T @ np.asarray(gradient, dtype=np.float64)
    if g.shape != h.shape or not np.all(np.isfinite(g)):
        raise ValueError(f"gradient must be a finite (D,) = ({len(h)},) vector")
    mean = -nbeta * g / a
    return float(np.sum(0.5 * nbeta * h * var + nbeta * g * mean + 0.5 * nbeta * h * mean ** 2))


def ntk_llc(ntk, *, n, nbeta, gamma) -> float:
    """Gaussian (linearized-network) LLC from the empirical NTK on the training set (module docstring):
    sum_k (nbeta/n) mu_k / (2 ((nbeta/n) mu_k + gamma)), mu_k the eigenvalues of ``ntk``.

    ntk: (P, P) symmetric PSD Gram matrix Theta = J J^T of the P training outputs (P = n n_out);
    n: the number of training samples over which L_n is a mean; gamma > 0 (zero modes are then
    harmless; gamma = 0 allowed when Theta is positive definite). Eigenvalues below
    -1e-10 max|mu| raise ValueError; smaller negative ones (round-off) count as 0.

    >>> round(ntk_llc(np.diag([1.0, 4.0]), n=2, nbeta=2.0, gamma=1.0), 6)  # 1/4 + 4/10
    0.65
    """
    T = _symmetric("ntk", ntk)
    n = int(_real("n", n, 0, True))
    nbeta, gamma = _real("nbeta", nbeta, 0, True), _real("gamma", gamma, 0, False)
    mu = psd_eigh("ntk", T, rtol=1e-10, vectors=False)  # J J^T assembled from Jacobians: round-off ~1e-10
    x = nbeta / n * mu
    if gamma == 0 and x.min() <= 1e-12 * x.max():
        raise ValueError("gamma=0 with a singular ntk: the posterior is improper; use gamma > 0")
    return float(np.sum(x / (2.0 * (x + gamma))))


def power_llc(k, *, nbeta, gamma) -> float:
    """Exact lambda_hat for L = w^(2k) in one dimension (w* = 0): E[nbeta w^(2k)] under
    exp(-nbeta w^(2k) - gamma w^2 / 2). gamma = 0: 1/(2k) exactly; gamma > 0: with u = nbeta^(1/(2k)) w
    and c = gamma / (2 nbeta^(1/k)), the ratio of integral_0^inf u^(2k) e^(-u^(2k) - c u^2) du to
    integral_0^inf e^(-u^(2k) - c u^2) du (scipy.integrate.quad).

    >>> power_llc(2, nbeta=50.0, gamma=0.0)
    0.25
    >>> round(power_llc(1, nbeta=50.0, gamma=2.0), 6)   # quadratic: (1/2) 100 / (100 + 2)
    0.490196
    """
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
        raise ValueError(f"k={k!r} is not allowed: k must be an integer >= 1 (L = w^(2k))")
    nbeta, gamma = _real("nbeta", nbeta, 0, True), _real("gamma", gamma, 0, False)
    if gamma == 0:
        return 1.0 / (2 * k)
    c = gamma / (2.0 * nbeta ** (1.0 / k))
    weight = lambda u: math.exp(-u ** (2 * k) - c * u * u)
    num = integrate.quad(lambda u: u ** (2 * k) * weight(u), 0, np.inf, epsabs=0, epsrel=1e-12)[0]
    den = integrate.quad(weight, 0, np.inf, epsabs=0, epsrel=1e-12)[0]
    return num / den


def normal_crossing_llc(*, nbeta, gamma, scale=1.0) -> float:
    """Exact lambda_hat for L = scale (w1 w2)^2 at w* = 0 (module docstring):
    1/2 + q (1 - K_1(q)/K_0(q)), q = gamma^2 / (8 nbeta scale); gamma > 0 (gamma = 0 is improper).

    >>> round(normal_crossing_llc(nbeta=1e12, gamma=1.0), 4)    # -> 1/2, slowly (1/log nbeta)
    0.4665
    """
    nbeta, gamma = _real("nbeta", nbeta, 0, True), _real("gamma", gamma, 0, True)
    scale = _real("scale", scale, 0, True)
    q = gamma ** 2 / (8.0 * nbeta * scale)
    return float(0.5 + q * (1.0 - special.k1e(q) / special.k0e(q)))


def reduced_rank_learning_coefficient(M, N, H, r) -> tuple[Fraction, int]:
    """(lambda, m): learning coefficient and its multiplicity for reduced-rank regression y = B A x,
    A (H x M), B (N x H), with a true map of rank r <= min(H, M, N) (Aoyagi & Watanabe 2005, Neural
    Networks 18, 924-933, Main Theorem). Cases:

    1. N + r <= M + H, M + r <= N + H, H + r <= M + N:
       M + H + N + r even: lambda = [2(H + r)(M + N) - (M - N)^2 - (H + r)^2] / 8, m = 1;
       odd: lambda = [2(H + r)(M + N) - (M - N)^2 - (H + r)^2 + 1] / 8, m = 2.
    2. M + H < N + r: lambda = (H M - H r + N r) / 2, m = 1.
    3. N + H < M + r: lambda = (H N - H r + M r) / 2, m = 1.
    4. M + N < H + r: lambda = M N / 2, m = 1.

    For an sft network with linear activation, one hidden layer of width H, input dimension M,
    n_out = N and C_b = 0 (biases flat), this is the learning coefficient of a rank-r teacher.

    Verification (the paper's text could not be retrieved here, so the statement above is checked,
    not quoted): the multiplicity rule (m = 2 iff case 1 and M + N + H + r odd) and case 3 agree with
    independent public re-implementations of the 2005 result; tests/test_llc.py checks the regular
    limit H = r (r (M + N - r)/2, and the Hessian rank of the sft linear network), the bottleneck
    H = 1, r = 0 (K = |a|^2 |b|^2: lambda = min(M, N)/2, m = 2 iff M = N, derived independently), the
    symmetry M <-> N, the saturation lambda = M N / 2 for H >= M + N - r + 1, and (M, N, H, r) =
    (1, 1, 1, 0) against MALA samples of the normal crossing.

    >>> reduced_rank_learning_coefficient(1, 1, 1, 0)    # (w1 w2)^2: lambda = 1/2, m = 2
    (Fraction(1, 2), 2)
    >>> reduced_rank_learning_coefficient(3, 2, 2, 2)    # H = r: regular, r (M + N - r) / 2
    (Fraction(3, 1), 1)
    """
    for name, v in (("M", M), ("N", N), ("H", H)):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
            raise ValueError(f"{name}={v!r} is not allowed: {name} must be an integer >= 1")
    if isinstance(r, bool) or not isinstance(r, numbers.Integral) or not 0 <= r <= min(H, M, N):
        raise ValueError(f"r={r!r} is not allowed: the true rank must be an integer in 0 .. "
                         f"min(H, M, N) = {min(H, M, N)}")
    if M + H < N + r:
        return Fraction(H * M - H * r + N * r, 2), 1
    if N + H < M + r:
        return Fraction(H * N - H * r + M * r, 2), 1
    if M + N < H + r:
        return Fraction(M * N, 2), 1
    base = 2 * (H + r) * (M + N) - (M - N) ** 2 - (H + r) ** 2
    if (M + H + N + r) % 2 == 0:
        return Fraction(base, 8), 1
    return Fraction(base + 1, 8), 2
