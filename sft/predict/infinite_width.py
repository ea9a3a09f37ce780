"""Infinite-width predictors: the NNGP Bayesian posterior and the NTK gradient-descent ensemble.

Pure functions on float64 kernel blocks (e.g. from :mod:`sft.kernels.recursion`). Blocks and shapes, P
training points, M test points, k outputs:

    K_train (P, P)   NNGP kernel on the training inputs     Theta_train (P, P)  NTK, training inputs
    K_cross (M, P)   NNGP kernel, test x train              Theta_cross (M, P)  NTK, test x train
    K_test  (M, M)   NNGP kernel on the test inputs         y (P,) or (P, k)    training labels

Outputs with k columns share one (M, M) covariance (the k readout neurons are independent and
identically distributed at infinite width). Passing the training blocks as the "test" blocks
(K_cross = K_test = K_train, Theta_cross = Theta_train) gives the predictions on the training set.

Loss normalization (gradient descent): L = 1/2 sum_{i=1..P} (f(x_i) - y_i)^2, summed (not averaged)
over the training set, parameters p updated by dp/dt = -eta dL/dp with the NTK parameterization of
:mod:`sft.conventions` (so Theta = sum_p df/dp df/dp). Then the linearized network obeys
df(X)/dt = -eta Theta (f(X) - y) (Lee et al. 2019, "Wide neural networks of any depth evolve as
linear models under gradient descent", eqs. (10)-(11)); with L averaged over P, replace eta by eta/P.
"""
from __future__ import annotations

import warnings
from typing import NamedTuple

import jax
import jax.numpy as jnp
import jax.scipy.linalg  # noqa: F401  (cho_solve, solve_triangular)
import numpy as np
import scipy.linalg

from ..conventions import RTOL, psd_eigh
from ..gaussian.expectations import _is_traced

__all__ = ["GPPosterior", "EnsemblePrediction", "gp_posterior", "ntk_flow", "ntk_gradient_descent",
           "gd_stability_limit"]


class GPPosterior(NamedTuple):
    """NNGP posterior: mean (M,) or (M, k), covariance (M, M), log marginal likelihood (float)."""
    mean: np.ndarray
    cov: np.ndarray
    log_marginal_likelihood: float


class EnsemblePrediction(NamedTuple):
    """Mean (M,) or (M, k) and covariance (M, M) of the test outputs over initializations."""
    mean: np.ndarray
    cov: np.ndarray


# ----------------------------------------------------------------------------------------- checks
def _finite_array(name, a, ndim):
    arr = np.asarray(a, dtype=np.float64)
    if arr.ndim not in ndim:
        raise ValueError(f"{name} has shape {arr.shape}: it must have {' or '.join(map(str, ndim))} "
                         "dimensions")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or inf: kernel blocks and labels must be finite")
    return arr


def _symmetric(name, a, size=None):
    """A finite square symmetric matrix (symmetric within RTOL[float64] of its largest entry)."""
    arr = _finite_array(name, a, (2,))
    if arr.shape[0] != arr.shape[1] or (size is not None and arr.shape[0] != size):
        want = f"({size}, {size})" if size is not None else "square"
        raise ValueError(f"{name} has shape {arr.shape}: it must be {want}")
    if name.endswith("train") and arr.shape[0] == 0:
        raise ValueError(f"{name} has shape {arr.shape}: the training set is empty (need P >= 1)")
    scale = np.max(np.abs(arr), initial=0.0)
    asym = np.max(np.abs(arr - arr.T), initial=0.0)
    if asym > RTOL[np.dtype("float64")] * scale:
        raise ValueError(f"{name} is not symmetric: max |A - A^T| = {asym:.3g} exceeds "
                         f"{RTOL[np.dtype('float64')]:g} x max |A| = {scale:.3g}; kernel matrices "
                         "must be symmetric")
    return 0.5 * (arr + arr.T)


def _blocks(K_train, K_cross, K_test, y):
    """Validated (K_train, K_cross, K_test, y) with consistent P and M."""
    K_train = _symmetric("K_train", K_train)
    P = K_train.shape[0]
    K_cross = _finite_array("K_cross", K_cross, (2,))
    if K_cross.shape[1] != P:
        raise ValueError(f"K_cross has shape {K_cross.shape}: it must be (M, P) = (M, {P}) "
                         "(test x train)")
    K_test = _symmetric("K_test", K_test, K_cross.shape[0])
    y = _finite_array("y", y, (1, 2))
    if y.shape[0] != P:
        raise ValueError(f"y has shape {y.shape}: its first axis must be P = {P}, the number of "
                         "training points of K_train")
    return K_train, K_cross, K_test, y


def _traced_blocks(K_train, K_cross, K_test, y):
    """JAX float64 blocks with the shape checks of :func:`_blocks` (values unchecked under tracing)."""
    K_train, K_cross, K_test, y = (jnp.asarray(a, dtype=jnp.float64) for a in (K_train, K_cross, K_test, y))
    P, M = K_train.shape[0], K_cross.shape[0]
    for name, a, shape in (("K_train", K_train, (P, P)), ("K_cross", K_cross, (M, P)), ("K_test", K_test, (M, M))):
        if a.shape != shape:
            raise ValueError(f"{name} has shape {a.shape}: it must be {shape} (P = {P} training, M = {M} test points)")
    if y.ndim not in (1, 2) or y.shape[0] != P:
        raise ValueError(f"y has shape {y.shape}: it must be (P,) or (P, k) with P = {P}")
    return K_train, K_cross, K_test, y


def _ntk_blocks(Theta_train, Theta_cross, P, M):
    Theta_train = _symmetric("Theta_train", Theta_train, P)
    Theta_cross = _finite_array("Theta_cross", Theta_cross, (2,))
    if Theta_cross.shape != (M, P):
        raise ValueError(f"Theta_cross has shape {Theta_cross.shape}: it must be (M, P) = ({M}, {P})")
    return Theta_train, Theta_cross


def _eigh(name, A, definite, hint, vectors=True):
    """(lam, V) of a PSD (``definite=False``) or PD matrix, tolerance of :func:`sft.conventions.psd_eigh`."""
    try:
        return psd_eigh(name, A, definite=definite, vectors=vectors)
    except ValueError as err:
        raise ValueError(f"{err}; {hint}") from None


_PD_HINT = "use distinct inputs, add observation noise, or a bias C_b > 0"
_COV_HINT = "it is the covariance of the initial outputs f_0 and must be PSD"


def _nonnegative(name, value, allow_inf=True):
    v = float(value)
    if np.isnan(v) or v < 0 or (not allow_inf and np.isinf(v)):
        rule = ">= 0" + ("" if allow_inf else " and finite")
        raise ValueError(f"{name}={value!r} is not allowed: {name} must be {rule}")
    return v


# ------------------------------------------------------------------------------------ GP posterior
def gp_posterior(K_train, K_cross, K_test, y, *, noise) -> GPPosterior:
    """NNGP Bayesian posterior of the test outputs given noisy training labels.

    Model: f ~ GP(0, K), y = f(X) + eps, eps ~ N(0, noise I) (``noise`` = sigma^2, a variance >= 0).
    With A = K_train + sigma^2 I = L L^T (Cholesky),

        mean = K_cross A^{-1} y,         cov = K_test - K_cross A^{-1} K_cross^T,
        log p(y) = -1/2 tr(y^T A^{-1} y) - (k/2) log det A - (k P / 2) log(2 pi)

    (Rasmussen & Williams 2006, eqs. (2.22)-(2.24), (2.30); summed over the k independent columns of
    y). Raises ValueError with the smallest eigenvalue when A is not positive definite within the
    tolerance of :func:`sft.conventions.psd_eigh` (10 P eps lam_max): a singular A has no posterior.
    Then A = L L^T (Cholesky, backward stable for positive-definite A; more accurate than the
    eigenbasis when A is ill-conditioned, e.g. a low-rank K plus small noise).

    JAX: traceable in every argument (jit, vmap, grad; outputs then JAX arrays). Under tracing only
    shapes are checked (not positive definiteness, symmetry or finiteness), and the same formulas are
    evaluated with the Cholesky factor of A (:func:`_gp_posterior_cholesky`; eigh's derivative is NaN for
    degenerate eigenvalues, Cholesky's is not). For gradient-based fitting see
    :mod:`sft.predict.hyperparameters`.

    >>> import numpy as np
    >>> post = gp_posterior(np.eye(2), np.array([[0.5, 0.0]]), np.eye(1), np.array([1.0, 2.0]), noise=0.0)
    >>> post.mean, post.cov
    (array([0.5]), array([[0.75]]))
    >>> import jax
    >>> dL = jax.grad(lambda s2: gp_posterior(np.eye(2), np.eye(2), np.eye(2), np.array([1.0, 2.0]),
    ...                                        noise=s2).log_marginal_likelihood)(0.5)
    >>> round(float(dL), 12)    # d/ds2 [-|y|^2 / (2 (1 + s2)) - log(1 + s2)] = 5/(2 (1.5)^2) - 1/1.5
    0.444444444444
    """
    if _is_traced(K_train, K_cross, K_test, y, noise):
        K_train, K_cross, K_test, y = _traced_blocks(K_train, K_cross, K_test, y)
        return _gp_posterior_cholesky(K_train, K_cross, K_test, y, noise)
    K_train, K_cross, K_test, y = _blocks(K_train, K_cross, K_test, y)
    noise = _nonnegative("noise", noise, allow_inf=False)
    _eigh(f"K_train + noise I (noise = {noise:g})", K_train + noise * np.eye(K_train.shape[0]), True,
          _PD_HINT, vectors=False)
    post = _gp_posterior_cholesky(K_train, K_cross, K_test, y, noise, xp=np, linalg=scipy.linalg)
    return post._replace(log_marginal_likelihood=float(post.log_marginal_likelihood))


def _gp_posterior_cholesky(K_train, K_cross, K_test, y, noise, xp=jnp, linalg=jax.scipy.linalg):
    """gp_posterior's formulas with A = K_train + noise I = L L^T, written once for numpy/scipy (plain calls,
    after the PD check) and jax.numpy/jax.scipy (traced; differentiable wherever A is positive definite):
    A^{-1} y by two triangular solves, W = L^{-1} K_cross^T, cov = K_test - W^T W, log det A = 2 sum log L_ii."""
    L = linalg.cholesky(K_train + noise * xp.eye(K_train.shape[0]), lower=True)
    alpha = linalg.cho_solve((L, True), y)                             # A^{-1} y
    W = linalg.solve_triangular(L, K_cross.T, lower=True)              # L^{-1} K_cross^T  (P, M)
    cov = K_test - W.T @ W
    k, P = (1 if y.ndim == 1 else y.shape[1]), K_train.shape[0]
    logml = -0.5 * xp.sum(y * alpha) - k * xp.sum(xp.log(xp.diag(L))) - 0.5 * k * P * np.log(2 * np.pi)
    return GPPosterior(K_cross @ alpha, 0.5 * (cov + cov.T), logml)


# ------------------------------------------------------------------------- NTK ensemble (linear)
def _spectral(lam, numerator, at_zero):
    """numerator / lam, with the limit ``at_zero`` on exactly-zero eigenvalues (psd_eigh clips the
    rounding-level ones to 0; tiny positive ones divide accurately since numerator ~ lam at_zero)."""
    return np.divide(numerator, lam, out=np.full_like(lam, at_zero), where=lam > 0)


def _linear_ensemble(g, V, Theta_cross, K_train, K_cross, K_test, y):
    """Mean and covariance of f(x*) = f_0(x*) - T (f_0(X) - y), f_0 ~ N(0, K), T = Theta_cross g(Theta).

    g(Theta) = V diag(g) V^T is the spectral function of the training NTK (g = (1 - e^{-eta lam t})/lam
    for gradient flow, (1 - (1 - eta lam)^k)/lam for gradient descent). Lee et al. 2019 eqs. (15)-(16):
        mean = T y,   cov = K_test + T K_train T^T - (T K_cross^T + K_cross T^T).
    """
    return _ensemble((Theta_cross @ V * g) @ V.T, K_train, K_cross, K_test, y)


def _ensemble(T, K_train, K_cross, K_test, y):
    """Mean T y and covariance K_test + T K_train T^T - T K_cross^T - K_cross T^T of the linear ensemble."""
    cov = K_test + T @ K_train @ T.T - T @ K_cross.T - K_cross @ T.T
    return EnsemblePrediction(T @ y, 0.5 * (cov + cov.T))


def ntk_flow(Theta_train, Theta_cross, K_train, K_cross, K_test, y, *, t, learning_rate=1.0
             ) -> EnsemblePrediction:
    """Test outputs of the infinite-width network trained by gradient flow on MSE, over initializations.

    With L = 1/2 sum_i (f(x_i) - y_i)^2 and df(X)/dt = -eta Theta (f(X) - y) (module docstring), the
    linearized network is f_t(x*) = f_0(x*) - Theta* Theta^{-1} (I - e^{-eta Theta t}) (f_0(X) - y) and,
    with f_0 ~ GP(0, K) (Lee et al. 2019, eqs. (14)-(16)),

        mean_t = Theta* Theta^{-1} (I - e^{-eta Theta t}) y,
        cov_t  = K** + T_t K T_t^T - (T_t K*^T + K* T_t^T),   T_t = Theta* Theta^{-1} (I - e^{-eta Theta t}),

    evaluated in the eigenbasis of Theta_train (so any t costs one eigendecomposition; t = inf is
    exact: T = Theta* Theta^{-1}, the NTK kernel regression). ``t`` >= 0 (float or np.inf),
    ``learning_rate`` = eta > 0. Theta_train and K_train must be positive semi-definite; at finite t a
    zero mode of Theta_train (e.g. more training points than features) is frozen,
    (1 - e^{-eta lam t}) / lam -> eta t, while t = inf needs Theta_train positive definite. "Zero" and
    "definite" are within the tolerance of :func:`sft.conventions.psd_eigh` (10 P eps lam_max);
    ValueError otherwise, with the smallest eigenvalue.

    JAX: traceable in every argument, t and learning_rate included (jit, vmap, grad), then with shape
    checks only and finite t (t = inf needs a plain call). The spectral function is then
    :func:`_flow_function`: the same eigenbasis formula with a custom derivative that stays finite for
    degenerate eigenvalues (where eigh's own derivative is NaN).

    >>> import numpy as np
    >>> out = ntk_flow(np.eye(1), np.eye(1), np.eye(1), np.eye(1), np.eye(1), np.array([2.0]), t=np.inf)
    >>> out.mean, out.cov        # the training point itself: interpolated exactly, no variance left
    (array([2.]), array([[0.]]))
    """
    if _is_traced(Theta_train, Theta_cross, K_train, K_cross, K_test, y, t, learning_rate):
        K_train, K_cross, K_test, y = _traced_blocks(K_train, K_cross, K_test, y)
        Theta_train, Theta_cross = _traced_blocks(Theta_train, Theta_cross, K_test, y)[:2]
        return _ensemble(Theta_cross @ _flow_function(Theta_train, learning_rate * t), K_train, K_cross, K_test, y)
    K_train, K_cross, K_test, y = _blocks(K_train, K_cross, K_test, y)
    Theta_train, Theta_cross = _ntk_blocks(Theta_train, Theta_cross, *K_cross.shape[::-1])
    t = _nonnegative("t", t)
    eta = _nonnegative("learning_rate", learning_rate, allow_inf=False)
    if eta == 0:
        raise ValueError("learning_rate=0 is not allowed: learning_rate must be > 0 and finite")
    lam, V = _eigh("Theta_train", Theta_train, np.isinf(t), _PD_HINT + " (or a finite t)")
    _eigh("K_train", K_train, False, _COV_HINT)
    g = 1.0 / lam if np.isinf(t) else _spectral(lam, -np.expm1(-eta * lam * t), eta * t)
    return _linear_ensemble(g, V, Theta_cross, K_train, K_cross, K_test, y)


def _flow_spectrum(lam, s):
    """g(lam) = (1 - e^{-s lam}) / lam (-> s at lam = 0) and g'(lam) = s^2 psi(s lam),
    psi(x) = (x e^{-x} + expm1(-x)) / x^2 = sum_{n >= 2} (-1)^(n-1) (n-1)/n! x^(n-2) (series for |x| < 1e-2,
    truncation < 1e-13; direct beyond, rounding < eps / x^2 < 3e-12)."""
    x = s * lam
    small = jnp.abs(x) < 1e-2
    xs = jnp.where(small, 1.0, x)
    g = s * jnp.where(small, 1 - x / 2 + x * x / 6 - x ** 3 / 24 + x ** 4 / 120, -jnp.expm1(-xs) / xs)
    psi = jnp.where(small, -0.5 + x / 3 - x * x / 8 + x ** 3 / 30 - x ** 4 / 144,
                    (xs * jnp.exp(-xs) + jnp.expm1(-xs)) / (xs * xs))
    return g, s * s * psi


@jax.custom_jvp
def _flow_function(Theta, s):
    """Theta^{-1} (I - e^{-s Theta}) = V diag(g(lam)) V^T (JAX; symmetric Theta, zero modes give s).

    Custom derivative (Daleckii-Krein; Higham, *Functions of Matrices* (2008), thm. 3.11):
    dF = V (Gamma o (V^T dTheta V)) V^T + V diag(e^{-s lam}) V^T ds, Gamma_ij = (g_i - g_j)/(lam_i - lam_j),
    -> (g'_i + g'_j)/2 where s |lam_i - lam_j| < 1e-5 max(1, s |lam_i|) (relative error ~1e-11), so that
    degenerate eigenvalues (where eigh's own derivative is NaN) are fine."""
    lam, V = jnp.linalg.eigh(Theta)
    return (V * _flow_spectrum(lam, s)[0]) @ V.T


@_flow_function.defjvp
def _flow_function_jvp(primals, tangents):
    (Theta, s), (dTheta, ds) = primals, tangents
    lam, V = jnp.linalg.eigh(Theta)
    g, dg = _flow_spectrum(lam, s)
    x = s * lam
    close = jnp.abs(x[:, None] - x[None, :]) < 1e-5 * jnp.maximum(1.0, jnp.abs(x))[:, None]
    gap = jnp.where(close, 1.0, lam[:, None] - lam[None, :])
    Gamma = jnp.where(close, 0.5 * (dg[:, None] + dg[None, :]), (g[:, None] - g[None, :]) / gap)
    dT = V.T @ (0.5 * (dTheta + dTheta.T)) @ V
    return (V * g) @ V.T, V @ (Gamma * dT) @ V.T + (V * (jnp.exp(-x) * ds)) @ V.T


def gd_stability_limit(Theta_train) -> float:
    """Largest stable learning rate of full-batch gradient descent on L = 1/2 sum (f - y)^2: 2 / lam_max.

    f_{k+1}(X) - y = (I - eta Theta)(f_k(X) - y) contracts every eigenmode iff |1 - eta lam| < 1 for all
    eigenvalues lam of Theta_train, i.e. eta < 2 / lam_max (Lee et al. 2019, sec. 2.4 / app. on
    discrete time; the "catapult" regime lies above it).

    Only lam_max is needed, so Theta_train may be singular (it is PSD, checked within the tolerance of
    :func:`sft.conventions.psd_eigh`); it must not vanish.

    >>> gd_stability_limit([[2.0, 0.0], [0.0, 0.5]])
    1.0
    """
    Theta_train = _symmetric("Theta_train", Theta_train)
    lam_max = float(_eigh("Theta_train", Theta_train, False, "the NTK is PSD")[0][-1])
    if not lam_max > 0:
        raise ValueError("Theta_train is zero: every learning rate is stable (no largest eigenvalue > 0)")
    return 2.0 / lam_max


def ntk_gradient_descent(Theta_train, Theta_cross, K_train, K_cross, K_test, y, *, steps, learning_rate,
                         unstable="warn") -> EnsemblePrediction:
    """Test outputs after ``steps`` full-batch gradient-descent steps of the linearized network.

    f_{k+1}(X) = f_k(X) - eta Theta (f_k(X) - y),  f_{k+1}(x*) = f_k(x*) - eta Theta* (f_k(X) - y)
    (the discrete-time version of Lee et al. 2019 eq. (11), same loss as :func:`ntk_flow`), solved as
    f_k(x*) = f_0(x*) - Theta* Theta^{-1} (I - (I - eta Theta)^k) (f_0(X) - y): the mean and covariance of
    :func:`ntk_flow` with e^{-eta Theta t} replaced by (I - eta Theta)^k. As eta -> 0 at fixed k eta = t
    it approaches the flow with an O(eta) error.

    ``steps``: integer >= 0 or np.inf (the converged kernel regression, only when stable). Theta_train
    and K_train must be PSD; a zero mode of Theta_train is frozen ((1 - (1 - eta lam)^k) / lam -> k eta),
    ``steps=np.inf`` needs Theta_train positive definite (tolerances as in :func:`ntk_flow`).
    Stability: eta < 2 / lam_max(Theta_train) (:func:`gd_stability_limit`). At or above it the top
    eigenmode does not contract and the prediction grows like |1 - eta lam_max|^k: with
    ``unstable="warn"`` (default) a RuntimeWarning states the limit and the result is returned; with
    ``unstable="raise"`` a ValueError is raised instead. ``steps=np.inf`` with an unstable rate raises.
    """
    if unstable not in ("warn", "raise"):
        raise ValueError(f"unstable={unstable!r} is not allowed: use 'warn' or 'raise'")
    K_train, K_cross, K_test, y = _blocks(K_train, K_cross, K_test, y)
    Theta_train, Theta_cross = _ntk_blocks(Theta_train, Theta_cross, *K_cross.shape[::-1])
    k = _nonnegative("steps", steps)
    if not (np.isinf(k) or k == int(k)):
        raise ValueError(f"steps={steps!r} is not allowed: steps must be an integer >= 0 or np.inf")
    eta = _nonnegative("learning_rate", learning_rate, allow_inf=False)
    if eta == 0:
        raise ValueError("learning_rate=0 is not allowed: learning_rate must be > 0 and finite")
    lam, V = _eigh("Theta_train", Theta_train, np.isinf(k), _PD_HINT + " (or finite steps)")
    _eigh("K_train", K_train, False, _COV_HINT)
    limit = 2.0 / lam[-1] if lam[-1] > 0 else np.inf
    if eta >= limit:
        msg = (f"learning_rate={eta:g} is at or above the gradient-descent stability limit "
               f"2/lambda_max(Theta_train) = {limit:.6g}: the top eigenmode grows like "
               f"|1 - eta lambda_max|^k = {abs(1 - eta * lam[-1]):.6g}^k")
        if unstable == "raise" or np.isinf(k):
            raise ValueError(msg)
        warnings.warn(msg, RuntimeWarning, stacklevel=2)
    if np.isinf(k):
        g = 1.0 / lam
    else:  # 1 - (1 - eta lam)^k, accurate for small eta lam (expm1/log1p) and for negative bases
        b = 1.0 - eta * lam
        with np.errstate(over="ignore"):
            num = np.where(b > 0, -np.expm1(k * np.log1p(np.where(b > 0, -eta * lam, 0.0))), 1.0 - b ** k)
        g = _spectral(lam, num, k * eta)
    return _linear_ensemble(g, V, Theta_cross, K_train, K_cross, K_test, y)
