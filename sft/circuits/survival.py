"""Circuits against temperature: the tempered local posterior (TLBP) as a precision dial on planted circuits.

Model (a linear layer, the exactly solvable case). f(x) = W x, W (n, m); training inputs x_a (N, m)
with empirical covariance S = X^T X / N; labels y_a = W_teacher x_a with a teacher made of r planted
circuits in a Gaussian background,

    W_teacher = C + rho G_0,   C = sum_k theta_k u_k v_k^T  (u_k, v_k orthonormal, Haar),  G_0 iid N(0, 1).

The loss is the mean L_N(W) = (1/N) sum_a |W x_a - y_a|^2 / 2 = L_N(w*) + tr[(W - w*) S (W - w*)^T] / 2,
w* = W_teacher (least squares, :func:`planted_linear_layer`). The TLBP p_t(W) ∝ exp(-L_N/t - gamma |W - w*|^2/2)
(t = 1/(n beta), :mod:`sft.sim.sgld`) is therefore EXACTLY Gaussian:

    W = w* + Z A,   A = (S/t + gamma)^{-1/2},   Z (n, m) iid N(0, 1).

Whitened inputs (S = 1): W = C + [rho G_0 + sigma(t) Z], sigma(t)^2 = t / (1 + gamma t) -- a spiked
rectangular random matrix whose bulk has per-entry variance rho^2 + sigma(t)^2. In the units of
:mod:`sft.circuits.planted` (bulk G / sqrt(L), L = max(n, m), c = min(n, m) / L) the circuits have
strengths x_k = theta_k / s(t), s(t)^2 = L (rho^2 + sigma(t)^2), and each circuit's k-th singular pair of the
sample follows Benaych-Georges & Nadakuditi (2012, Adv. Math. 111, 120; Sec. 3.1, the Gaussian example
of their Thm 2.9-2.10), :func:`sft.circuits.rectangular_outlier`:

    x_k > c^{1/4}:  sigma_k = s sqrt((1 + x^2)(c + x^2)) / x,
                    |<u_short, u_hat>|^2 = 1 - c (1 + x^2) / (x^2 (x^2 + c)),
                    |<u_long, u_hat>|^2  = 1 - (c + x^2) / (x^2 (x^2 + 1)),
    x_k <= c^{1/4}: sigma_k = s (1 + sqrt c) (the bulk edge), overlaps -> 0.

Output of a circuit. The k-th pair of the sample reproduces a fraction
a_k = <sigma_k u_hat v_hat^T, theta_k u_k v_k^T>_F / theta_k^2 = sigma_k <u_hat, u_k><v_hat, v_k> / theta_k of the
circuit's output; the product of the closed forms above simplifies to

    a_k = 1 - c / x_k^4   (x_k > c^{1/4}),   0 below,

(positive: the joint sign is fixed by the T-matrix null vector, derivations/circuit_survival.py checks
the algebra). Held-out score of the interpretation that keeps the top K singular pairs of a sample,
W_K = sum_{k<=K} sigma_k u_hat_k v_hat_k^T, on held-out isotropic inputs (the Frobenius norm):
S_K = 1 - |W_K - C|_F^2 / |C|_F^2 -> sum_{k<=K} (2 theta_k^2 a_k - sigma_k^2) / sum_k theta_k^2
(cross-overlaps between different circuits vanish as n -> oo). Keeping a pair stops paying off
(2 theta^2 a < sigma^2) already BELOW the circuit's threshold temperature.

Threshold temperature (loss benefit against entropy cost). Circuit k survives iff x_k > c^{1/4}, i.e.
rho^2 + sigma(t)^2 < theta_k^2 / sqrt(n m):

    t_k = tau_k / (1 - gamma tau_k),   tau_k = theta_k^2 / sqrt(n m) - rho^2

(t_k = 0: hidden by the background at every t; gamma tau_k >= 1: t_k = inf, the localization alone keeps it).
For gamma = rho = 0: theta_k^2 / 2 = sqrt(n m) t_k / 2 -- the circuit's loss benefit (removing it
raises L_N by theta_k^2 / 2 on whitened inputs) equals the thermal loss of sqrt(n m) degrees of freedom
(equipartition: each of the n m parameters carries t / 2 of loss). The dial does not compare the benefit
with the t/2 of one parameter, nor with that of the n + m - 1 parameters of a rank-1 circuit, but with
the geometric mean sqrt(n m) that sets the top of the noise's singular spectrum.

Above t_k. For n, m -> oo at fixed c the transition is sharp (BBP): the overlaps vanish continuously,
LINEARLY in t_k - t at the threshold (x^4 - c ∝ t_k - t for gamma = rho = 0), and are 0 above. At finite
size it is a crossover: above t_k the top singular vector of the sample is a noise direction and its
overlap with u_k decays like a power of the size (1/n for t >> t_k), not exponentially in t. Measured
(figure ``circuit_temperature`` panel (f): exact draws, m = 2n, n = 12 .. 192, 200 draws per point): the
squared overlap of circuit 1 scales as n^0.03 at t = t_1/2 (it converges to the n -> oo value), n^-0.34
at t = t_1 (the n^{-1/3} critical window), n^-0.76, n^-0.93, n^-1.01 at t/t_1 = 2, 4, 16. At fixed size
(n = 24 and 96, t/t_1 = 1 .. 32) the excess over the random-direction level 1/n falls like a power of t
(local d log / d log t between -2.3 and -0.8), with no exponential regime. Exponential (Boltzmann) decay
exp(-Delta L / t) belongs to a DISCRETE on/off circuit (two basins), not to this continuous one.

Non-isotropic curvature (inputs not whitened, S = O diag(lambda) O^T). In S's eigenbasis the bulk
B = rho G_0 + Z A has independent columns of variances tau_j(t) = rho^2 + 1 / (lambda_j / t + gamma),
B B^T = sum_j tau_j z_j z_j^T (z_j ~ N(0, 1_n)). Its Stieltjes transform g_n(w) = (1/n) tr (w - B B^T)^{-1}
solves (Silverstein & Bai 1995; the Marchenko-Pastur equation with a general population, derived in
:func:`column_background_stieltjes` by Sherman-Morrison)

    w g = 1 + sum_j tau_j g / (1 - n tau_j g),

and g_m(w) = (n/m) g_n(w) + (1 - n/m) / w for B^T B. For directions u, v Haar (independent of S) the
circuit block of the Hermitisation's resolvent is M(z) = diag(z g_n(z^2) 1_r, z g_m(z^2) 1_r)
(:mod:`sft.circuits.planted`), and the outliers and overlaps follow from
:func:`sft.circuits.t_matrix_outliers` (:func:`anisotropic_survival`). Constant tau reduces to the
closed forms above (tested).

Shapes: thetas (r,), circuits sorted by decreasing strength in every output; temperatures (T,).
Sources: Benaych-Georges & Nadakuditi 2012 (overlaps); Silverstein & Bai 1995, J. Multivar. Anal. 54, 175
(generalised Marchenko-Pastur); derivations/circuit_survival.py (output coefficient, score, threshold).
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import jax.numpy as jnp
import numpy as np
from scipy import optimize

from ..conventions import check_array, check_int, check_real, pd_inverse, psd_eigh
from ..threads import limit_threads
from .planted import rectangular_outlier, t_matrix_outliers

__all__ = ["CircuitSurvival", "LinearCircuitProblem", "tlbp_noise_variance", "threshold_temperature",
           "isotropic_survival", "column_background_stieltjes", "column_background_edge",
           "anisotropic_survival", "anisotropic_threshold_temperature", "planted_linear_layer",
           "tlbp_gaussian_draws", "survival_statistics"]


class CircuitSurvival(NamedTuple):
    """Large-size theory of each circuit's survival; arrays (T, r) over temperatures x circuits
    (thetas sorted descending). singular_value: the k-th singular value of the sample; left, right:
    |<u_hat_k, u_k>|^2 and |<v_hat_k, v_k>|^2 (u: the n-dimensional output side); output: a_k;
    score: S_K for K = k (the interpretation keeping the top k pairs); thetas (r,); temperatures (T,)."""
    singular_value: np.ndarray
    left: np.ndarray
    right: np.ndarray
    output: np.ndarray
    score: np.ndarray
    thetas: np.ndarray
    temperatures: np.ndarray


class LinearCircuitProblem(NamedTuple):
    """A linear layer with planted circuits as a TLBP problem (:func:`planted_linear_layer`).

    loss(w, (x, y)): mean of |W x_a - y_a|^2 / 2 with W = w.reshape(n, m); w_star (n m,) the least-squares
    solution; data (x (N, m), y (N, n)); U (n, r), V (m, r), thetas (r,) descending; covariance (m, m) = S;
    teacher (n, m); background rho; seed."""
    loss: Callable
    w_star: np.ndarray
    data: tuple
    U: np.ndarray
    V: np.ndarray
    thetas: np.ndarray
    covariance: np.ndarray
    teacher: np.ndarray
    background: float
    seed: int


# ------------------------------------------------------------------------------------ checks
def _thetas(thetas):
    t = np.atleast_1d(check_array("thetas", thetas, ndim=(0, 1)))
    if np.any(t <= 0) or np.unique(t).size != t.size:
        raise ValueError(f"thetas={thetas!r} is not allowed: give distinct, finite, positive circuit strengths")
    return -np.sort(-t)


def _temperatures(t):
    tt = np.atleast_1d(check_array("t", t, ndim=(0, 1)))
    if np.any(tt <= 0):
        raise ValueError(f"t={t!r} is not allowed: temperatures t = 1/(n beta) must be > 0")
    return tt


def _size(n, m):
    return check_int("n", n, 1), check_int("m", m, 1)


def _gamma(gamma):
    return check_real("gamma", gamma, minimum=0)


def _background(background):
    return check_real("background", background, minimum=0)


# ------------------------------------------------------------------------- isotropic theory
def tlbp_noise_variance(t, gamma=0.0, curvature=1.0):
    """Variance of the TLBP of a quadratic loss along a Hessian eigendirection of eigenvalue ``curvature``:
    1 / (curvature / t + gamma); whitened inputs (curvature 1): sigma(t)^2 = t / (1 + gamma t).

    >>> float(tlbp_noise_variance(0.5, gamma=2.0))
    0.25
    """
    tt = _temperatures(t)
    gamma = _gamma(gamma)
    h = check_real("curvature", curvature, minimum=0, strict=True)
    out = 1.0 / (h / tt + gamma)
    return out if np.ndim(t) else float(out[0])


def threshold_temperature(thetas, *, n, m, gamma=0.0, background=0.0):
    """t_k = tau / (1 - gamma tau), tau = theta_k^2 / sqrt(n m) - rho^2 (module docstring), whitened inputs.

    Returns (r,) for thetas sorted descending; 0 where the background alone hides the circuit
    (tau <= 0), inf where gamma tau >= 1 (never lost).

    >>> threshold_temperature([6.0, 3.0], n=4, m=9).tolist()
    [6.0, 1.5]
    """
    th = _thetas(thetas)
    n, m = _size(n, m)
    gamma, rho = _gamma(gamma), _background(background)
    tau = th ** 2 / np.sqrt(n * m) - rho ** 2
    with np.errstate(divide="ignore"):
        return np.where(tau <= 0, 0.0, np.where(gamma * tau >= 1, np.inf, tau / (1 - gamma * tau)))


def _score(th, sv, out):
    """S_K, K = 1..r, from the per-circuit singular values and output coefficients (module docstring)."""
    gain = (2 * th ** 2 * out - sv ** 2) / np.sum(th ** 2)
    return np.cumsum(gain, axis=-1)


def isotropic_survival(thetas, t, *, n, m, gamma=0.0, background=0.0) -> CircuitSurvival:
    """Survival of each circuit in the TLBP sample W = C + rho G_0 + sigma(t) Z (whitened inputs), n, m -> oo
    at fixed c = min(n, m)/max(n, m): BGN 2012 closed forms with x_k = theta_k / s(t) (module docstring).

    >>> s = isotropic_survival([6.0, 3.0], [1.0, 3.0], n=4, m=9)
    >>> np.round(s.left, 4).tolist()            # t_1 = 6, t_2 = 1.5: circuit 2 is lost at t = 3
    [[0.875, 0.3846], [0.5625, 0.0]]
    >>> np.round(s.output, 4).tolist()          # a_k = 1 - (t / t_k)^2 for gamma = rho = 0
    [[0.9722, 0.5556], [0.75, 0.0]]
    """
    th = _thetas(thetas)
    tt = _temperatures(t)
    n, m = _size(n, m)
    gamma, rho = _gamma(gamma), _background(background)
    L, c = max(n, m), min(n, m) / max(n, m)
    s = np.sqrt(L * (rho ** 2 + tt / (1 + gamma * tt)))[:, None]           # (T, 1)
    x = th[None, :] / s
    sig, short, long_ = (np.asarray(a).reshape(x.shape) for a in rectangular_outlier(x.ravel(), c))
    left, right = (short, long_) if n <= m else (long_, short)
    out = np.where(x > c ** 0.25, 1 - c / x ** 4, 0.0)
    sv = s * sig
    return CircuitSurvival(sv, left, right, out, _score(th, sv, out), th, tt)


# ---------------------------------------------------------------------- anisotropic theory
def _column_variances(tau, n):
    tau = check_array("variances", tau, ndim=1)
    if np.any(tau <= 0):
        raise ValueError(f"variances={tau!r} is not allowed: column variances must be > 0")
    return tau, check_int("n", n, 1)


def column_background_edge(variances, n):
    """Upper edge w_+ of the spectrum of B B^T, B (n, m) with independent columns of ``variances`` tau_j.

    With h(g) = sum_j tau_j g / (1 - n tau_j g), the map F(g) = w g - 1 - h(g) is concave on
    (0, 1/(n max tau)); w lies above the bulk iff max F > 0, so at the edge g h'(g) - h(g) = 1 (a unique
    root g_+, g h' - h increasing) and w_+ = h'(g_+). Returns (w_+, g_+ = g_n(w_+)).
    Marchenko-Pastur check (tau_j = 1/m): w_+ = (1 + sqrt(n/m))^2.

    >>> w, g = column_background_edge(np.full(8, 1 / 8), 2)
    >>> round(w, 12), round((1 + 0.5) ** 2, 12)
    (2.25, 2.25)
    """
    tau, n = _column_variances(variances, n)
    g_hi = 1.0 / (n * tau.max())
    h = lambda g: np.sum(tau * g / (1 - n * tau * g))
    hp = lambda g: np.sum(tau / (1 - n * tau * g) ** 2)
    g = optimize.brentq(lambda g: g * hp(g) - h(g) - 1, 0.0, g_hi * (1 - 1e-15), xtol=1e-300, rtol=1e-14)
    return float(hp(g)), float(g)


def column_background_stieltjes(w, variances, n):
    """g_n(w) = (1/n) tr (w - B B^T)^{-1} in the large-size limit, for real w above the edge
    (:func:`column_background_edge`); B (n, m) with independent N(0, tau_j) columns.

    Derivation (Sherman-Morrison, R = (w - B B^T)^{-1}, B B^T = sum_j tau_j z_j z_j^T):
    w R - sum_j tau_j R z_j z_j^T = 1, z_j^T R z_j = q_j / (1 - tau_j q_j), q_j = z_j^T R_{-j} z_j -> n g,
    so the normalised trace gives w g = 1 + sum_j tau_j g / (1 - n tau_j g) (Silverstein & Bai 1995);
    the physical root (g ~ 1/w as w -> oo) is the smaller root of the concave F of the edge.

    >>> from sft.circuits import marchenko_pastur_stieltjes
    >>> round(float(column_background_stieltjes(4.0, np.full(8, 1 / 8), 2) / marchenko_pastur_stieltjes(4.0, 0.25)), 12)
    1.0
    """
    tau, n = _column_variances(variances, n)
    w = check_real("w", w)
    w_edge, g_edge = column_background_edge(tau, n)
    if w <= w_edge:
        raise ValueError(f"w={w!r} is not allowed: need w > the bulk edge {w_edge!r}")
    return _stieltjes_above_edge(w, tau, n, g_edge)


def _stieltjes_above_edge(w, tau, n, g_edge):
    """The smaller root of F(g) = w g - 1 - sum_j tau_j g / (1 - n tau_j g) in (0, g_edge) (w above the edge)."""
    return optimize.brentq(lambda g: w * g - 1 - np.sum(tau * g / (1 - n * tau * g)), 0.0, g_edge,
                           xtol=1e-300, rtol=1e-14)


def _d_transform(z, tau, n, m, g_edge):
    """D(z) = z^2 g_n(z^2) g_m(z^2) (BGN 2012), decreasing above the edge: an outlier at z > z0 iff
    theta^2 D(z0) > 1."""
    gn = _stieltjes_above_edge(z * z, tau, n, g_edge)
    return z * z * gn * ((n / m) * gn + (1 - n / m) / (z * z))


def _anisotropic_tau(covariance_eigenvalues, t, gamma, rho):
    lam = check_array("input_variances", covariance_eigenvalues, ndim=1)
    if np.any(lam <= 0):
        raise ValueError(f"input_variances={covariance_eigenvalues!r} is not allowed: the input covariance "
                         "must be positive definite (all eigenvalues > 0)")
    return rho ** 2 + 1.0 / (lam / t + gamma)


def anisotropic_survival(thetas, t, input_variances, *, n, gamma=0.0, background=0.0,
                         z_max_factor=20.0, n_grid=200) -> CircuitSurvival:
    """Survival of each circuit when the TLBP curvature is S = O diag(input_variances) O^T (not whitened), by
    the T-matrix of the bulk resolvent: M(z) = diag(z g_n(z^2) 1_r, z g_m(z^2) 1_r) with g_n from
    :func:`column_background_stieltjes` at column variances tau_j(t) = rho^2 + 1/(lambda_j / t + gamma),
    roots of det(1 - Theta M(z)) = 0 by :func:`sft.circuits.t_matrix_outliers` (module docstring).
    u, v Haar (independent of S). m = len(input_variances); search interval (edge, z_max_factor * edge) on
    ``n_grid`` points (an outlier beyond it, theta_k > ~ z_max_factor x the bulk edge, is not found: ValueError).

    >>> iso = isotropic_survival([6.0, 3.0], [1.0], n=4, m=9)
    >>> ani = anisotropic_survival([6.0, 3.0], [1.0], np.ones(9), n=4)
    >>> bool(np.allclose(ani.left, iso.left, atol=1e-9) and np.allclose(ani.output, iso.output, atol=1e-9))
    True
    """
    th = _thetas(thetas)
    tt = _temperatures(t)
    n = check_int("n", n, 1)
    gamma, rho = _gamma(gamma), _background(background)
    zf = check_real("z_max_factor", z_max_factor, minimum=1, strict=True)
    n_grid = check_int("n_grid", n_grid, 3)
    r = th.size
    m = np.size(input_variances)
    theta = np.block([[np.zeros((r, r)), np.diag(th)], [np.diag(th), np.zeros((r, r))]])
    fields = np.zeros((4, tt.size, r))
    for i, ti in enumerate(tt):
        tau = _anisotropic_tau(input_variances, ti, gamma, rho)
        w_edge, g_edge = column_background_edge(tau, n)
        z_edge = np.sqrt(w_edge)

        def M(z):
            gn = _stieltjes_above_edge(z * z, tau, n, g_edge)
            return np.diag(np.r_[np.full(r, z * gn), np.full(r, z * ((n / m) * gn + (1 - n / m) / (z * z)))])

        roots, comp = t_matrix_outliers(M, theta, (z_edge, zf * z_edge), n_grid=n_grid)
        fields[0, i] = z_edge                                # lost circuits: the bulk edge, no overlap
        if th.max() ** 2 * _d_transform(zf * z_edge, tau, n, m, g_edge) > 1:
            raise ValueError(f"z_max_factor={z_max_factor!r} is not allowed here: the strongest circuit's outlier "
                             f"lies beyond {zf:g} x the bulk edge at t={ti:g}; raise z_max_factor")
        for z, cvec in zip(roots, comp):
            k = int(np.argmax(cvec[:r] ** 2 + cvec[r:] ** 2))
            fields[:, i, k] = z, 2 * cvec[k] ** 2, 2 * cvec[r + k] ** 2, 2 * z * cvec[k] * cvec[r + k] / th[k]
    sv, left, right, out = fields
    return CircuitSurvival(sv, left, right, out, _score(th, sv, out), th, tt)


def anisotropic_threshold_temperature(thetas, input_variances, *, n, gamma=0.0, background=0.0):
    """t_k where theta_k^2 D(z_+) = 1, D(z) = z^2 g_n(z^2) g_m(z^2) the D-transform (BGN 2012, Thm 2.9) of the
    bulk at its edge z_+ (D decreases above the edge, so the circuit has an outlier iff theta_k^2 D(z_+) > 1).
    Root in log t by Brent's method on [1e-12, 1e12]; 0 / inf as in :func:`threshold_temperature`.

    >>> t_iso = threshold_temperature([6.0, 3.0], n=4, m=9)
    >>> bool(np.allclose(anisotropic_threshold_temperature([6.0, 3.0], np.ones(9), n=4), t_iso, rtol=1e-9))
    True
    """
    th = _thetas(thetas)
    n = check_int("n", n, 1)
    gamma, rho = _gamma(gamma), _background(background)
    m = np.size(input_variances)

    def excess(log_t, theta):
        tau = _anisotropic_tau(input_variances, np.exp(log_t), gamma, rho)
        w, g = column_background_edge(tau, n)
        return np.log(theta ** 2 * w * g * ((n / m) * g + (1 - n / m) / w))

    lo, hi = np.log(1e-12), np.log(1e12)
    out = []
    for theta in th:
        a, b = excess(lo, theta), excess(hi, theta)
        out.append(0.0 if a <= 0 else np.inf if b > 0 else
                   float(np.exp(optimize.brentq(excess, lo, hi, args=(theta,), xtol=1e-13, rtol=1e-13))))
    return np.array(out)


# ---------------------------------------------------------------------- model and samples
@limit_threads()
def planted_linear_layer(n_out, n_in, thetas, *, n_samples, seed, background=0.0, input_variances=None):
    """A linear layer W (n_out, n_in) trained on labels of a teacher with planted circuits (module docstring).

    Draws (numpy float64, ``default_rng(seed)``): U (n_out, r), V (n_in, r) Haar-orthonormal (QR of Gaussians),
    G_0 iid N(0, 1), teacher C + rho G_0; inputs X = sqrt(N) Q diag(sqrt(lambda)) with Q (N, n_in) orthonormal
    columns, so S = X^T X / N = diag(input_variances) exactly (default: whitened, S = 1); labels y = X W_teacher^T.
    w* = argmin L_N by the normal equations S W^T = X^T y / N (Cholesky after a definiteness check),
    equal to the teacher up to rounding. Returns :class:`LinearCircuitProblem`; its loss is a JAX function
    for :func:`sft.sim.sample_tlbp`.

    >>> p = planted_linear_layer(3, 5, [2.0, 1.0], n_samples=10, seed=0)
    >>> p.w_star.shape, p.data[0].shape, bool(np.allclose(p.w_star.reshape(3, 5), p.teacher))
    ((15,), (10, 5), True)
    """
    n, m = check_int("n_out", n_out, 1), check_int("n_in", n_in, 1)
    th = _thetas(thetas)
    N = check_int("n_samples", n_samples, 1)
    seed = check_int("seed", seed, 0)
    rho = _background(background)
    if th.size > min(n, m):
        raise ValueError(f"thetas={thetas!r} is not allowed: at most min(n_out, n_in) = {min(n, m)} circuits")
    if N < m:
        raise ValueError(f"n_samples={N!r} is not allowed: need n_samples >= n_in = {m} for a unique w*")
    lam = np.ones(m) if input_variances is None else check_array("input_variances", input_variances, ndim=1)
    if lam.shape != (m,) or np.any(lam <= 0):
        raise ValueError(f"input_variances={input_variances!r} is not allowed: give n_in = {m} positive variances")
    rng = np.random.default_rng(seed)
    U = np.linalg.qr(rng.standard_normal((n, th.size)))[0]
    V = np.linalg.qr(rng.standard_normal((m, th.size)))[0]
    teacher = (U * th) @ V.T + rho * rng.standard_normal((n, m))
    x = np.sqrt(N) * np.linalg.qr(rng.standard_normal((N, m)))[0] * np.sqrt(lam)
    y = x @ teacher.T
    S = x.T @ x / N
    w_star = (pd_inverse("input covariance X^T X / N", S) @ (x.T @ y / N)).T

    def loss(w, batch):
        xb, yb = batch
        return 0.5 * jnp.mean(jnp.sum((xb @ w.reshape(n, m).T - yb) ** 2, axis=-1))

    return LinearCircuitProblem(loss, w_star.ravel(), (x, y), U, V, th, S, teacher, rho, seed)


@limit_threads()  # one BLAS thread: no oversubscription next to XLA (sft.threads)
def tlbp_gaussian_draws(problem: LinearCircuitProblem, t, n_draws, *, gamma=0.0, seed):
    """Exact draws of the TLBP of the linear layer, W = w* + Z (S/t + gamma)^{-1/2} (Z iid N(0, 1), numpy
    float64, ``default_rng(seed)``; the inverse square root by :func:`sft.conventions.psd_eigh`).
    The finite-size reference for sampler checks. Returns (n_draws, n_out, n_in).

    >>> p = planted_linear_layer(3, 5, [2.0], n_samples=10, seed=0)
    >>> tlbp_gaussian_draws(p, 0.1, 4, seed=1).shape
    (4, 3, 5)
    """
    t = check_real("t", t, minimum=0, strict=True)
    gamma = _gamma(gamma)
    n_draws, seed = check_int("n_draws", n_draws, 1), check_int("seed", seed, 0)
    m = problem.covariance.shape[0]
    n = problem.w_star.size // m
    lam, O = psd_eigh("S/t + gamma", problem.covariance / t + gamma * np.eye(m), definite=True)
    A = (O / np.sqrt(lam)) @ O.T
    Z = np.random.default_rng(seed).standard_normal((n_draws, n, m))
    return problem.w_star.reshape(n, m) + Z @ A


@limit_threads()
def survival_statistics(weights, U, V, thetas):
    """Per-sample survival of each circuit from sampled weight matrices (numpy float64, batched SVD).

    weights: (..., n, m); U (n, r), V (m, r) the planted directions and thetas (r,), sorted by decreasing
    theta (as in :class:`LinearCircuitProblem`). Returns dict of (..., r) arrays: left = <u_hat_k, u_k>^2,
    right = <v_hat_k, v_k>^2 (u_hat_k, v_hat_k: the k-th singular pair), output = sigma_k <u_hat_k, u_k>
    <v_hat_k, v_k> / theta_k, score = S_K for K = k, 1 - |W_K - C|_F^2 / |C|_F^2 exactly (no cross terms dropped).

    >>> p = planted_linear_layer(3, 5, [2.0, 1.0], n_samples=10, seed=0)
    >>> st = survival_statistics(p.teacher, p.U, p.V, p.thetas)
    >>> [np.round(st[k], 12).tolist() for k in ("left", "output", "score")]
    [[1.0, 1.0], [1.0, 1.0], [0.8, 1.0]]
    """
    W = check_array("weights", weights)
    th = _thetas(thetas)
    if not np.array_equal(th, np.atleast_1d(np.asarray(thetas, dtype=np.float64))):
        raise ValueError(f"thetas={thetas!r} is not allowed: give them sorted by decreasing strength, "
                         "matching the columns of U and V")
    U, V = check_array("U", U, ndim=2), check_array("V", V, ndim=2)
    r = th.size
    if W.ndim < 2 or U.shape != (W.shape[-2], r) or V.shape != (W.shape[-1], r):
        raise ValueError(f"weights {W.shape}, U {U.shape}, V {V.shape}: need (..., n, m), (n, r), (m, r), r = {r}")
    Uh, s, Vht = np.linalg.svd(W, full_matrices=False)
    Uh, s, Vh = Uh[..., :r], s[..., :r], np.swapaxes(Vht, -1, -2)[..., :r]
    pu = np.einsum("...ik,ik->...k", Uh, U)
    pv = np.einsum("...ik,ik->...k", Vh, V)
    # u_hat_k^T C v_hat_k for C = U diag(theta) V^T, all circuits (the exact held-out error)
    cross = np.einsum("...ik,ij,j,lj,...lk->...k", Uh, U, th, V, Vh)
    score = np.cumsum(2 * s * cross - s ** 2, axis=-1) / np.sum(th ** 2)
    return dict(left=pu ** 2, right=pv ** 2, output=s * pu * pv / th, score=score, singular_value=s)
