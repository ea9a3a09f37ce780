"""Ensemble estimators: k-statistics, jackknife error bars, the vertex from per-network metrics, 1/n fits.

All estimators take samples along axis 0 (the ensemble axis: one row per independent network) and
broadcast over the remaining axes. Error bars are one standard error.

- k-statistics (Fisher 1930; Kendall & Stuart, *Advanced Theory of Statistics* vol. 1, sec. 12.10),
  unbiased for the cumulants kappa_2, kappa_4 of i.i.d. samples, with m_r = (1/S) sum (x - xbar)^r:
      k2 = S m2 / (S - 1),
      k4 = S^2 [(S + 1) m4 - 3 (S - 1) m2^2] / ((S - 1)(S - 2)(S - 3)).
- Delete-a-block jackknife (Efron & Stein 1981; Quenouille 1956) with B blocks: estimates
  theta_b on the data without block b, error^2 = (B - 1)/B sum_b (theta_b - mean theta)^2.
- Vertex estimator. Given layer l-1, the neurons of layer l are exactly i.i.d. N(0, G^(l)) (THEORY.md),
  so the connected four-point function of layer l is carried entirely by the network-to-network
  fluctuations of G^(l): n_{l-1} Cov_s(G^(l)_{a1a2}, G^(l)_{a3a4}) = V^(l) + O(1/n). Estimating it
  from G (from :func:`sft.sim.layer_kernels`) instead of from fourth moments of z removes the
  Gaussian noise of the z's (a variance-reduced estimator of the same quantity).
- Conditional (Rao-Blackwell) mean of the next metric: E[G^(l+1) | G^(l)] = C_b + C_W <s s>_{G^(l)}
  exactly, so averaging it over networks estimates E[G^(l+1)] without the sampling noise of layer l.
- 1/n fit: weighted least squares of y(n) = sum_p c_p n^(-p) over the given powers p.
"""
from __future__ import annotations

import numbers

import numpy as np
import scipy.linalg

from ..conventions import check_array, check_int, check_real

__all__ = ["k2", "k4", "jackknife", "excess_kurtosis", "vertex_from_metrics", "conditional_next_metric",
           "fit_inverse_width", "relative_variance", "nu_from_relative_variance"]


def _samples(x, minimum, name="x"):
    x = check_array(name, x, min_size=0)
    if x.ndim < 1 or x.shape[0] < minimum:
        raise ValueError(f"{name} has shape {x.shape}: need at least {minimum} samples along axis 0 "
                         "for this estimator and its error bar")
    return x


def k2(x):
    """Unbiased variance k2 over axis 0 (S >= 2)."""
    x = _samples(x, 2)
    return np.var(x, axis=0, ddof=1)


def k4(x):
    """Unbiased fourth cumulant k4 over axis 0 (S >= 4)."""
    x = _samples(x, 4)
    S = x.shape[0]
    d = x - x.mean(axis=0)
    m2, m4 = np.mean(d ** 2, axis=0), np.mean(d ** 4, axis=0)
    return S * S * ((S + 1) * m4 - 3 * (S - 1) * m2 * m2) / ((S - 1) * (S - 2) * (S - 3))


def _check_blocks(n_blocks, S):
    if isinstance(n_blocks, bool) or not isinstance(n_blocks, numbers.Integral) or not 2 <= n_blocks <= S:
        raise ValueError(f"n_blocks={n_blocks!r} is not allowed: an integer with 2 <= n_blocks <= "
                         f"number of samples ({S})")
    return int(n_blocks)


def jackknife(statistic, x, *, n_blocks=20):
    """(estimate, error) of ``statistic`` (a function of samples (S, ...)) by the delete-a-block jackknife.

    The estimate is statistic(x) on all samples; blocks are contiguous (samples must be i.i.d.).
    Returns arrays of the statistic's shape.

    >>> x = np.random.default_rng(0).standard_normal(4000)
    >>> est, err = jackknife(lambda s: s.mean(0), x)
    >>> bool(abs(est) < 4 * err)
    True
    """
    if not callable(statistic):
        raise ValueError(f"statistic={statistic!r} is not allowed: give a function of samples (S, ...)")
    x = _samples(x, 2)
    B = _check_blocks(n_blocks, x.shape[0])
    edges = np.linspace(0, x.shape[0], B + 1).astype(int)
    theta = np.stack([np.asarray(statistic(np.concatenate([x[:edges[b]], x[edges[b + 1]:]])))
                      for b in range(B)])
    err = np.sqrt((B - 1) / B * np.sum((theta - theta.mean(0)) ** 2, axis=0))
    return np.asarray(statistic(x)), err


def excess_kurtosis(x, *, n_blocks=20):
    """(k4 / k2^2, jackknife error) over axis 0 (S >= 4 n_blocks is sensible; S >= 8 required)."""
    x = _samples(x, 8)
    _nonzero("the variance k2 of x", k2(x), np.max(np.abs(x - x.mean(axis=0))) ** 2)
    return jackknife(lambda s: k4(s) / k2(s) ** 2, x, n_blocks=n_blocks)


def _nonzero(what, value, scale):
    """ValueError if ``value`` vanishes within 1e-12 x ``scale`` anywhere (a ratio would be inf/NaN)."""
    tol = 1e-12 * scale
    if np.any(np.abs(value) <= tol):
        raise ValueError(f"{what} is zero within 1e-12 x its scale ({float(np.max(tol)):.3g}): the ratio "
                         "is undefined (constant samples?)")


def vertex_from_metrics(G, n_prev):
    """(V_hat, error): n_{l-1} x the unbiased ensemble covariance of the metric G^(l).

    G: (S, N, N) per-network metrics of one layer (e.g. ``layer_kernels(...)[:, l - 1]``);
    n_prev = n_{l-1}, the width of the layer below. Returns V_hat[a1, a2, a3, a4] =
    n_prev Cov_s(G_{a1a2}, G_{a3a4}) (N, N, N, N) and its standard error, from the per-network
    products u_s = (G_s - Gbar)(G_s - Gbar): V_hat = n_prev sum_s u_s / (S - 1),
    error = n_prev std(u) sqrt(S) / (S - 1). This equals V^(l) + O(1/n) (module docstring).
    """
    G = _samples(G, 3, "G")
    if G.ndim != 3 or G.shape[1] != G.shape[2]:
        raise ValueError(f"G has shape {G.shape}: give per-network metrics of shape (S, N, N)")
    n_prev = check_int("n_prev", n_prev, 1)
    S = G.shape[0]
    d = G - G.mean(axis=0)
    u = np.einsum("sab,scd->sabcd", d, d)
    return n_prev * u.sum(0) / (S - 1), n_prev * u.std(0, ddof=1) * np.sqrt(S) / (S - 1)


def conditional_next_metric(G, *, activation, C_W, C_b, n_nodes=64):
    """Per-network E[G^(l+1) | G^(l)] = C_b + C_W <sigma_a sigma_b>_{G^(l)}: shape (S, N, N).

    G: (S, N, N) per-network metrics G^(l). The Gaussian expectation uses the activation's closed form
    (relu family, erf, ...) if it has one, else an n_nodes^2 Gauss-Hermite product rule in the Cholesky
    coordinates of each 2x2 block (smooth activations only; diagonal: n_nodes-point 1-D rule).
    Its ensemble mean is an unbiased estimator of E[G^(l+1)] (module docstring).
    """
    from ..kernels.activations import get_activation
    act = get_activation(activation)
    C_W, C_b = check_real("C_W", C_W, minimum=0, strict=True), check_real("C_b", C_b, minimum=0)
    n_nodes = check_int("n_nodes", n_nodes, 1)
    G = check_array("G", G, min_size=0)
    if G.ndim != 3 or G.shape[0] < 1 or G.shape[1] < 1 or G.shape[1] != G.shape[2]:
        raise ValueError(f"G has shape {G.shape}: give per-network metrics of shape (S, N, N), S, N >= 1")
    q = np.einsum("saa->sa", G)
    q1, q2 = q[:, :, None], q[:, None, :]
    scale = np.max(np.abs(G))
    if np.any(q < 0) or np.any(np.abs(G - np.swapaxes(G, 1, 2)) > 1e-10 * scale) \
            or np.any(G * G > q1 * q2 * (1 + 1e-10) + 1e-20 * scale ** 2):
        raise ValueError("G is not allowed: each metric must be symmetric with G_aa >= 0 and "
                         "G_ab^2 <= G_aa G_bb (a covariance; rtol 1e-10)")
    if act.has_closed_form:
        return C_b + C_W * act.gauss_ss(q1, q2, G)
    u, w = np.polynomial.hermite_e.hermegauss(n_nodes)
    w = w / np.sqrt(2 * np.pi)
    a = np.sqrt(q1) + 0 * q2                       # z1 = a u1, z2 = c u1 + e u2 (z1 = 0 when a = 0)
    c = np.where(a > 0, G, 0.0) / np.where(a > 0, a, 1.0)
    e = np.sqrt(np.maximum(q2 - c * c, 0.0))
    s1 = np.asarray(act.fn(a[..., None] * u), dtype=np.float64)                          # (S, N, N, m)
    s2 = np.asarray(act.fn(c[..., None, None] * u[:, None] + e[..., None, None] * u), dtype=np.float64)
    return C_b + C_W * np.einsum("i,j,sabi,sabij->sab", w, w, s1, s2)


def fit_inverse_width(widths, values, errors, *, powers=(0, 1)):
    """Weighted least-squares fit y(n) = sum_p c_p n^(-p): returns (c, c_error, chi2), c ordered as powers.

    widths (M,), values (M,), errors (M,) > 0, with M >= len(powers) + 1 (so that chi2 has a degree of
    freedom). E.g. powers=(1, 2) for an excess kurtosis c1/n + c2/n^2; (0, 1) for n Cov = V + c/n.
    """
    n, y, e, p = (check_array(name, v, min_size=0) for name, v in
                  (("widths", widths), ("values", values), ("errors", errors), ("powers", powers)))
    if n.ndim != 1 or y.shape != n.shape or e.shape != n.shape:
        raise ValueError(f"widths {n.shape}, values {y.shape}, errors {e.shape}: give three 1-D arrays "
                         "of equal length")
    if p.ndim != 1 or p.size < 1:
        raise ValueError(f"powers={powers!r} is not allowed: give a non-empty sequence of exponents")
    if n.size < p.size + 1:
        raise ValueError(f"{n.size} widths are too few for powers={tuple(powers)}: need at least "
                         f"{p.size + 1} for an error bar with a degree of freedom")
    if np.any(n <= 0) or np.any(~(e > 0)) or not np.all(np.isfinite(y)):
        raise ValueError("widths must be > 0, errors > 0 and values finite")
    A = n[:, None] ** (-p[None, :]) / e[:, None]
    b = y / e
    # least squares by QR (stable; no normal equations): A = Q R, c = R^-1 Q^T b, cov = R^-1 R^-T
    Q, Rm = np.linalg.qr(A)
    d = np.abs(np.diag(Rm))
    if d.min() <= A.shape[0] * np.finfo(np.float64).eps * d.max():
        raise ValueError(f"powers={tuple(powers)} with widths={n.tolist()}: the fit is degenerate (design "
                         f"matrix rank-deficient, |R_ii| min/max = {d.min() / d.max():.3g} <= n eps); use "
                         "distinct powers and distinct widths")
    c = scipy.linalg.solve_triangular(Rm, Q.T @ b)
    Rinv = scipy.linalg.solve_triangular(Rm, np.eye(p.size))
    chi2 = float(np.sum((A @ c - b) ** 2))
    return c, np.sqrt(np.sum(Rinv ** 2, axis=1)), chi2


# ----------------------------------------------------------------- normalized vertex and nu (added)
def relative_variance(x, *, n_blocks=20):
    """(R_hat, jackknife error) with R_hat = k2(x) / mean(x)^2 over axis 0 (broadcast over the rest).

    For per-network single-input metrics G^(l) (S, ...), e.g. ``layer_kernels(...)[:, :, 0, 0]``, it
    estimates Var(G^(l)) / E[G^(l)]^2 = V^(l) / (n_{l-1} K^(l)^2) + O(1/n^2), the normalized vertex:
    one third of the excess kurtosis of one preactivation of layer l (:mod:`sft.finite.vertex`), from
    the metric instead of fourth moments of z (variance reduced, module docstring). For ReLU-like
    sigma at C_b = 0 it equals prod_l (1 + nu / n_l) - 1 exactly (:mod:`sft.finite.deep_linear`).

    >>> x = np.random.default_rng(0).chisquare(10, size=20000) / 10   # Var/mean^2 = 2/10
    >>> R, err = relative_variance(x)
    >>> bool(abs(R - 0.2) < 4 * err)
    True
    """
    x = _samples(x, 3)
    _nonzero("the mean of x", x.mean(axis=0), np.max(np.abs(x)))
    return jackknife(lambda s: k2(s) / s.mean(axis=0) ** 2, x, n_blocks=n_blocks)


def nu_from_relative_variance(R, widths):
    """nu solving prod_l (1 + nu / n_l) - 1 = R, the inverse of :func:`sft.finite.metric_relative_variance`.

    Exact for scale-invariant sigma at C_b = 0 (any width): R = Var(G^(L+1)) / E[G^(L+1)]^2 of the
    readout metric of a network with hidden widths (n_1, .., n_L). Equal widths n:
    nu = n ((1 + R)^(1/L) - 1); otherwise a root find (the left side increases with nu > -min n_l).
    R: scalar or array, every entry finite and > -1.

    >>> round(nu_from_relative_variance(1.2 ** 2 - 1, [10, 10]), 12)   # linear network: nu = 2
    2.0
    """
    from ..conventions import check_widths
    ws = np.array(check_widths(widths), dtype=np.float64)
    R = check_array("R", R)
    if np.any(R <= -1):
        raise ValueError(f"R={R!r} is not allowed: a relative variance must be finite and > -1")
    if np.all(ws == ws[0]):
        nu = ws[0] * np.expm1(np.log1p(R) / ws.size)
        return float(nu) if nu.ndim == 0 else nu
    from scipy.optimize import brentq

    def solve(r):
        f = lambda nu: np.sum(np.log1p(nu / ws)) - np.log1p(r)
        lo, hi = -ws.min() * (1 - 1e-12), max(1.0, ws.max())
        while f(hi) < 0:
            hi *= 2
        return brentq(f, lo, hi, xtol=1e-14, rtol=1e-14)
    nu = np.vectorize(solve, otypes=[np.float64])(R)
    return float(nu) if nu.ndim == 0 else nu
