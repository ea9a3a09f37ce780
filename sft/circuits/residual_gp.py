"""Interpretation residual as a Gaussian process: score a discrete interpretation of a network by how
well "interpretation + Gaussian background" predicts the network's outputs.

Network and interpretation. A network f (outputs on inputs x, shape (n,)) is read as a few discrete
circuits plus a background, e.g. one hidden layer

    f(x) = sum_k b_k sigma(u_k . x + c_k)  [circuits]  +  N^{-1/2} sum_i a_i sigma(w_i . x)  [background].

An interpretation is a subset of circuits, given by its outputs g(x); the residual r = f - g is what
the interpretation leaves unexplained. Given the weights, r is a deterministic function; we model it by
the *prior over background draws*, a Gaussian process. For a background of N neurons with a_i iid,
Var a_i = a_var, w_i ~ N(0, C_W I / d), biases ~ N(0, C_b), that prior has covariance (the NNGP kernel
of one hidden layer, :mod:`sft.conventions`, readout C_W = a_var, readout C_b = 0)

    k(x, x') = a_var E[sigma(h) sigma(h')],   (h, h') Gaussian, E[h h'] = C_b + C_W x . x' / d.

Model (finite-rank kernel: a Gaussian readout over m random features, which is the NNGP kernel
above in the limit m -> oo with Monte Carlo error O(m^{-1/2}); for finite m it is itself the exact
prior of an m-neuron background with Gaussian readout):

    r = Phi w + eps,   w ~ N(0, s I_m),   eps ~ N(0, noise I_n),
    Phi_{aj} = sigma(sqrt(C_W / d) omega_j . x_a + sqrt(C_b) beta_j) / sqrt(m),  omega_j ~ N(0, I_d),
    beta_j ~ N(0, 1) drawn once (fixed by ``key``),   K = s Phi Phi^T + noise I.

Hyperparameters theta = (s = amplitude, noise, C_W = input_scale, C_b) maximise the log marginal
likelihood on the fitting set (Rasmussen & Williams 2006, eq. 2.30), evaluated exactly in feature space
(Woodbury and the matrix determinant lemma; R&W sec. 2.1.2), with B = Phi^T Phi + (noise / s) I_m:

    w_hat = B^{-1} Phi^T r,      r^T K^{-1} r = |r - Phi w_hat|^2 / noise + |w_hat|^2 / s,
    log det K = (n - m) log noise + m log s + log det B,
    log p(r) = -1/2 r^T K^{-1} r - 1/2 log det K - (n/2) log 2 pi,

O(n m^2) per evaluation. The fit uses the equivalent spectral form: with the thin SVD Phi = U S V^T,
lam = S^2, y = U^T r,

    -log p(r) = 1/2 [sum_j y_j^2 / (s lam_j + noise) + (|r|^2 - |y|^2) / noise + sum_j log(s lam_j + noise)
                     + (n - k) log noise + n log 2 pi],   k = min(n, m),

so (s, noise) are maximised at O(k) per evaluation with analytic gradients (L-BFGS-B on their logs),
and (input_scale, C_b) by maximising that profile (one decomposition per evaluation: eigh of Phi^T Phi
for m <= n, else the SVD; finite-difference gradients).
Held-out points x* (M of them): the predictive law of r* is Gaussian with mean Phi* w_hat and covariance
C = Phi* S Phi*^T + noise I, S = s (I - V V^T) + V diag(s noise / (s lam + noise)) V^T the weight
posterior (= noise B^{-1} for m <= n); it is whitened *symmetrically*, z = C^{-1/2} (r* - mean), via
the thin SVD Phi* S^{1/2} = Q D V'^T (by QR, then the SVD of the m x m factor): C^{-1/2} = (I - Q Q^T) / sqrt(noise) + Q (D^2 + noise)^{-1/2} Q^T
and log det C = M log noise + sum log(1 + D^2 / noise); O(M m^2), exact, no M x M matrix. A user kernel
(``kernel=callable``) instead uses the dense form: one eigendecomposition K_fit = V diag(lam) V^T,
then the same spectral form with y = V^T r and k = n, O(n) per evaluation (only s and noise are fitted).

Diagnostics (:func:`diagnose_interpretation`):
- held-out log-likelihood per point, l = log N(r*; mean, C) / M, error bar std_a(z_a^2 / 2) / sqrt(M);
  a better interpretation scores higher.
- fitted noise against its prediction. Prediction for a *complete* interpretation: the residual is the
  background, a draw from the GP itself, so amplitude -> a_var, input_scale -> C_W (1 for w ~ N(0, I/d)),
  prior variance s k(x, x) -> a_var E[sigma(h)^2], noise -> 0 (up to the part of the background outside
  the span of the m random features, which shrinks as m grows). A missed circuit is a term the
  background prior cannot produce at this sample size: it shows up as excess noise, lower held-out
  log-likelihood, and a non-Gaussian z.
- non-Gaussianity of z (M whitened held-out residuals, iid N(0, 1) if the model is right): sample
  skewness g1 = m3 / m2^{3/2} and excess kurtosis g2 = m4 / m2^2 - 3, null standard errors sqrt(6/M) and
  sqrt(24/M) (Gaussian sample, large M; Kendall & Stuart vol. 1, sec. 12.18), z-scores, and ``flagged``
  when either |z| > Z_MAX = 4.
How to read a diagnosis. The held-out log-likelihood per point is the score: the network's outputs on fresh
inputs under "interpretation + Gaussian background"; compare interpretations on the same inputs, a difference
counts when it exceeds ~4x the combined error bars. If the interpretation is complete the residual is the
background itself, so the fitted amplitude should approach a_var and the noise should be small (not exactly 0
at finite m: a background of N neurons is only approximately in the span of m random features). A missed
circuit is something the background prior cannot produce: excess noise, a lower score, and non-Gaussian
whitened residuals (skewness and excess-kurtosis z-scores with null errors sqrt(6/M), sqrt(24/M); ``flagged``
means |z| > 4 for either; a sparse strong circuit gives large positive skewness/kurtosis). Caveats: the flags
test Gaussianity relative to the fitted model, so a smooth deterministic residual in few input dimensions,
poorly covered by too few features, can also be flagged (increase ``n_features`` and n_fit before concluding);
a small or nearly linear circuit is legitimately absorbed by the background; the amplitude prediction assumes
a background much wider than the data (N >> n_fit); with M >~ 5000 held-out points even a complete
interpretation can show a small kurtosis flag (z ~ 4-6, against hundreds for a missed sparse circuit): read
the z-scores comparatively. Worked example on a trained network: README.md.
"""
from __future__ import annotations

import warnings
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import jax.scipy.linalg
import numpy as np
import scipy.linalg
import scipy.optimize

from ..kernels.activations import get_activation
from ..conventions import Z_MAX, check_array, check_flag, check_int, check_key, check_real, psd_eigh, require_x64
from .gaussian_equivalence import equivalence_constants

__all__ = ["ResidualGP", "InterpretationDiagnostics", "random_features", "feature_log_marginal_likelihood",
           "default_feature_count", "fit_residual_gp", "heldout_diagnostics", "diagnose_interpretation", "background_variance",
           "standardized_moments", "neuron_contributions"]

_LOG2PI = float(np.log(2 * np.pi))


class ResidualGP(NamedTuple):
    """A fitted residual GP. ``omega`` (d, m), ``beta`` (m,) are the random-feature draws (None for a
    user kernel); ``weights`` (m,) = w_hat and ``weights_sqrt_cov`` (m, m) = S^{1/2} (symmetric) for the
    feature form, or the fitting inputs and alpha = K^{-1} r for a user kernel (in ``x_fit``, ``alpha``)."""
    amplitude: float
    noise: float
    input_scale: float
    C_b: float
    log_marginal_likelihood: float
    n_fit: int
    activation: object
    omega: np.ndarray | None
    beta: np.ndarray | None
    weights: np.ndarray | None
    weights_sqrt_cov: np.ndarray | None
    kernel: Callable | None
    x_fit: np.ndarray | None
    alpha: np.ndarray | None
    chol_fit: np.ndarray | None


class InterpretationDiagnostics(NamedTuple):
    """Held-out diagnostics of interpretation + residual GP (module docstring).

    heldout_loglik, heldout_loglik_err: log N(r*; mean, C) / M and its error bar.
    amplitude, noise, input_scale, C_b: fitted hyperparameters; prior_variance = amplitude * mean k(x, x)
    on the fitting inputs (compare :func:`background_variance`); noise_fraction = noise / (noise +
    prior_variance). skewness, excess_kurtosis and their null z-scores; flagged = max |z| > Z_MAX.
    z: (M,) whitened held-out residuals. fit: the :class:`ResidualGP`.
    """
    heldout_loglik: float
    heldout_loglik_err: float
    amplitude: float
    noise: float
    input_scale: float
    C_b: float
    prior_variance: float
    noise_fraction: float
    skewness: float
    skewness_z: float
    excess_kurtosis: float
    kurtosis_z: float
    flagged: bool
    z: np.ndarray
    fit: ResidualGP


# ------------------------------------------------------------------------------------------ checks
def _array(name, a, ndim):
    """Finite float64 array with ``ndim`` dimensions and every axis non-empty."""
    arr = check_array(name, a, ndim=ndim, min_size=0)
    if 0 in arr.shape:
        raise ValueError(f"{name} has shape {arr.shape}: it must not be empty")
    return arr


def _outputs(name, v, x):
    """Outputs (n,) of a network/interpretation given as an array or a callable on x (n, d)."""
    out = v(x) if callable(v) else v
    arr = check_array(name, out, min_size=0)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    arr = _array(name, arr, 1)
    if arr.shape[0] != x.shape[0]:
        raise ValueError(f"{name} has shape {arr.shape}: it must be ({x.shape[0]},), one output per "
                         f"input (the inputs have shape {x.shape})")
    return arr


def _positive(name, v, allow_zero=False):
    return check_real(name, v, minimum=0, strict=not allow_zero)


# ---------------------------------------------------------------------------------- feature form
def random_features(x, omega, beta, *, activation, input_scale, C_b):
    """Phi (n, m) = sigma(sqrt(input_scale / d) x omega + sqrt(C_b) beta) / sqrt(m) (module docstring).

    x (n, d); omega (d, m), beta (m,) standard normal draws. (Phi Phi^T)_{ab} = (1/m) sum_j sigma sigma has
    mean (over the draws) the one-hidden-layer NNGP kernel E[sigma(h) sigma(h')] with
    E[h h'] = C_b + input_scale x . x' / d (:mod:`sft.kernels.recursion`, readout C_W = 1, C_b = 0).
    JAX-traceable in input_scale and C_b.

    >>> x = np.array([[1.0, 0.0]]); om = np.array([[1.0, 2.0], [0.0, 0.0]])
    >>> np.asarray(random_features(x, om, np.zeros(2), activation="relu", input_scale=2.0, C_b=0.0)).round(6).tolist()
    [[0.707107, 1.414214]]
    """
    require_x64("sft.circuits.random_features")
    act = get_activation(activation)
    x, omega, beta = _array("x", x, 2), _array("omega", omega, 2), _array("beta", beta, 1)
    d, m = omega.shape
    if x.shape[1] != d or beta.shape != (m,):
        raise ValueError(f"x {x.shape}, omega {omega.shape}, beta {beta.shape}: need x (n, d), omega (d, m), "
                         "beta (m,)")
    traced = isinstance(input_scale, jax.core.Tracer) or isinstance(C_b, jax.core.Tracer)
    if not traced:
        input_scale = check_real("input_scale", input_scale, minimum=0, strict=True)
        C_b = check_real("C_b", C_b, minimum=0)
    xp = jnp if traced else np
    h = xp.sqrt(input_scale / d) * (x @ omega) + xp.sqrt(C_b) * beta
    return act(h) / np.sqrt(m)


def _feature_lml(Phi, r, s, noise, xp=jnp):
    """(log p(r), w_hat, chol(B)) for K = s Phi Phi^T + noise I, exact in feature space (module docstring);
    ``xp`` = jax.numpy (traced, differentiable) or numpy (one evaluation, no compilation)."""
    n, m = Phi.shape
    B = Phi.T @ Phi + (noise / s) * xp.eye(m)     # positive definite for noise / s > 0: Cholesky
    L = xp.linalg.cholesky(B)
    w = (jax.scipy.linalg if xp is jnp else scipy.linalg).cho_solve((L, True), Phi.T @ r)
    quad = xp.sum((r - Phi @ w) ** 2) / noise + xp.sum(w ** 2) / s
    logdet = (n - m) * xp.log(noise) + m * xp.log(s) + 2 * xp.sum(xp.log(xp.diag(L)))
    return -0.5 * quad - 0.5 * logdet - 0.5 * n * _LOG2PI, w, L


def feature_log_marginal_likelihood(Phi, r, *, amplitude, noise):
    """log N(r; 0, amplitude Phi Phi^T + noise I) in O(n m^2) (Woodbury; module docstring).

    Phi (n, m), r (n,); amplitude, noise > 0. Equal to the dense Cholesky form
    (:func:`sft.predict.gp_posterior`) to rounding (tests/test_residual_gp.py).

    >>> round(feature_log_marginal_likelihood(np.ones((1, 1)), np.zeros(1), amplitude=1.0, noise=1.0), 10)
    -1.2655121235
    """
    Phi = _array("Phi", Phi, 2)
    r = _array("r", r, 1)
    if r.shape[0] != Phi.shape[0]:
        raise ValueError(f"r has shape {r.shape}: it must be ({Phi.shape[0]},), one entry per row of Phi")
    s, noise = _positive("amplitude", amplitude), _positive("noise", noise)
    try:
        return float(_feature_lml(Phi, r, s, noise, np)[0])
    except np.linalg.LinAlgError:
        raise ValueError(f"Phi^T Phi + (noise / amplitude) I is not positive definite (noise={noise:g}, "
                         f"amplitude={s:g}): increase noise") from None


# ------------------------------------------------------------------------------------------- fit
def _spectral_nll(t, lam, y2, rest, n):
    """-log p(r) / n and its gradient in t = (log s, log noise) for K = s A + noise I, where A has
    eigenvalues lam (k,) on an orthonormal set carrying r-components y2 = (u_j . r)^2, and rest = |r|^2 -
    sum y2 lies in the (n - k)-dim complement (A = 0 there):
    -log p = 1/2 [sum y2/(s lam + noise) + rest/noise + sum log(s lam + noise) + (n-k) log noise + n log 2pi]."""
    s, noise = np.exp(t)
    den = s * lam + noise
    k = lam.shape[0]
    v = 0.5 * (np.sum(y2 / den) + rest / noise + np.sum(np.log(den)) + (n - k) * np.log(noise) + n * _LOG2PI)
    dv = 0.5 * (1 / den - y2 / den ** 2)
    g = np.array([np.sum(dv * s * lam), np.sum(dv) * noise + 0.5 * (n - k - rest / noise)])
    return v / n, g / n


def _fit_spectrum(lam, y2, rest, n, floor, scale):
    """Maximum-likelihood (s, noise, log p) for the spectral form, L-BFGS-B on log parameters, noise >= floor."""
    kd = max(float(np.sum(lam)) / n, 1e-300)
    lo_n = np.log(max(floor, 1e-14 * scale))
    t0 = np.array([np.log(scale / kd), np.log(max(0.1 * scale, np.exp(lo_n)))])
    bounds = [(np.log(1e-12 * scale / kd), np.log(1e6 * scale / kd)), (lo_n, np.log(1e3 * scale))]
    res = scipy.optimize.minimize(_spectral_nll, t0, args=(lam, y2, rest, n), jac=True, method="L-BFGS-B",
                                  bounds=bounds, options=dict(maxiter=500))
    return float(np.exp(res.x[0])), float(np.exp(res.x[1])), -n * float(res.fun)


def _feature_spectrum(Phi, r):
    """(lam, y2 = y^2, rest = |r|^2 - |y|^2, V, y) of Phi = U diag(sqrt lam) V^T, y = U^T r: from the
    eigendecomposition of Phi^T Phi = V diag(lam) V^T when m <= n (one BLAS-3 product, y = V^T Phi^T r /
    sqrt(lam), 0 on numerically null directions), else from the thin SVD."""
    n, m = Phi.shape
    if m > n:
        U, S, Vt = np.linalg.svd(Phi, full_matrices=False)
        lam, V, y = S ** 2, Vt.T, U.T @ r
    else:
        lam, V = np.linalg.eigh(Phi.T @ Phi)
        lam = np.maximum(lam, 0.0)
        ok = lam > 1e-13 * lam[-1]
        y = np.where(ok, (V.T @ (Phi.T @ r)) / np.sqrt(np.where(ok, lam, 1.0)), 0.0)
    return lam, y ** 2, max(float(r @ r - y @ y), 0.0), V, y


MAX_FEATURES = 4096  # cap of the default feature count (an SVD of (n, m) per evaluation)


def default_feature_count(n, d, *, warn=False) -> int:
    """Number of random features m for n inputs in d dimensions: m = clip(16 n_eff, 512, MAX_FEATURES),

        n_eff = min(n, (d + 1)(d + 2) / 2).

    Why. On n inputs the one-layer NNGP kernel is a sum over Hermite / spherical-harmonic degrees; the
    degrees <= 2 span (d + 1)(d + 2)/2 functions, and for n below that number the higher-degree part acts
    on the data like a multiple of the identity (Gaussian equivalence; El Karoui, Ann. Stat. 38, 1 (2010)),
    so the kernel matrix has ~n_eff effective directions. m random features estimate it with a Wishart
    (Marchenko-Pastur) spread of relative size ~sqrt(n_eff / m): 16 n_eff features keep it near 1/4. At
    the cap the spread is larger; with ``warn=True`` a RuntimeWarning then says so (measured, d = 200,
    n = 400, GP draw with amplitude 1 and noise 0.05: m = 1600 gives amplitude 0.76 +- 0.12 and noise
    0.124 +- 0.021; m = 512 gives 0.59 and 0.206; the exact kernel 0.98 and 0.065). Fix: pass the exact
    kernel, e.g. ``kernel=lambda a, b: sft.kernels.nngp(a, b, depth=1, activation=..., C_W=[C_W, 1],
    C_b=[C_b, 0])`` (dense, O(n^3) once), or n_features explicitly.

    >>> default_feature_count(2000, 16), default_feature_count(100, 3)
    (2448, 512)
    """
    n, d = check_int("n", n, 1), check_int("d", d, 1)
    warn = check_flag("warn", warn)
    n_eff = min(n, (d + 1) * (d + 2) // 2)
    m = int(min(max(512, 16 * n_eff), MAX_FEATURES))
    if warn and m < 16 * n_eff:
        warnings.warn(f"n_features: {m} random features (the cap MAX_FEATURES) under-resolve the kernel on "
                      f"n = {n} inputs in d = {d} dimensions (n_eff = {n_eff} effective directions, relative "
                      f"error ~sqrt(n_eff/m) = {np.sqrt(n_eff / m):.2f}): the fitted amplitude comes out low "
                      "and the noise high. Pass kernel=<the exact NNGP kernel> (sft.kernels.nngp with "
                      "depth=1) or n_features explicitly.", RuntimeWarning, stacklevel=3)
    return m


def fit_residual_gp(x, r, *, key=None, activation="relu", n_features=None, kernel=None, noise_floor=0.0,
                    learn_input=True, input_scale=1.0, C_b=0.0) -> ResidualGP:
    """Fit the residual GP to residuals r (n,) at inputs x (n, d) by maximum marginal likelihood.

    Feature form (default): ``n_features`` = m random features of ``activation`` drawn from ``key``;
    None (default) chooses m from (n, d) by :func:`default_feature_count`, with a RuntimeWarning when
    that is too few to resolve the kernel (wide inputs: use ``kernel=`` the exact NNGP instead).
    Amplitude and noise are maximised exactly for given features in the spectral form of Phi = U S V^T
    (one O(n m min(n, m)) decomposition, then O(m) per evaluation with analytic gradients); if
    ``learn_input``, input_scale and C_b are set by maximising that profile likelihood (L-BFGS-B on their
    logs, finite-difference gradients), else fixed at the given values (C_b = 0 starts at 1e-3 when learnt).
    For scale-invariant activations (relu, leaky relu, ...) input_scale only rescales the features
    (degenerate with the amplitude) and stays fixed; only the ratio C_b / input_scale is learnt.
    User kernel: ``kernel(x1, x2) -> (n1, n2)`` positive semi-definite, amplitude and noise fitted by the
    same spectral form of its eigendecomposition (dense, n <= a few 1000).
    ``noise_floor`` >= 0: lower bound on the noise variance. Raises ValueError for a zero-variance residual
    with noise_floor = 0, or when the fitted noise collapses to 0 (the GP interpolates r exactly: a
    singular fit; set noise_floor > 0). Equations: module docstring.
    """
    require_x64("sft.circuits.fit_residual_gp")
    learn_input = check_flag("learn_input", learn_input)
    x = _array("x", x, 2)
    r = _outputs("r", r, x)
    n = x.shape[0]
    floor = _positive("noise_floor", noise_floor, allow_zero=True)
    var = float(np.var(r))
    if var == 0 and floor == 0:
        raise ValueError("r has zero variance and noise_floor=0: the interpretation reproduces the network "
                         "exactly on these inputs (constant residual), so the GP fit is singular; set "
                         "noise_floor > 0 or drop the GP")
    scale = max(var, floor, float(np.mean(r ** 2)))
    if kernel is not None:
        return _fit_dense(x, r, kernel, floor, scale)
    if key is None:
        raise ValueError("key=None is not allowed with the random-feature kernel: pass key=jax.random.key(seed)")
    key = check_key("key", key)
    act = get_activation(activation)
    m = default_feature_count(*x.shape, warn=True) if n_features is None else check_int("n_features", n_features, 1)
    cw0 = _positive("input_scale", input_scale)
    cb0 = _positive("C_b", C_b, allow_zero=True)
    k1, k2 = jax.random.split(key)
    omega = np.asarray(jax.random.normal(k1, (x.shape[1], m), dtype=jnp.float64))
    beta = np.asarray(jax.random.normal(k2, (m,), dtype=jnp.float64))
    features = lambda cw, cb: np.asarray(random_features(x, omega, beta, activation=act, input_scale=cw, C_b=cb))

    def profile(cw, cb):
        Phi = features(cw, cb)
        lam, y2, rest, V, y = _feature_spectrum(Phi, r)
        if not np.any(Phi):  # exactly zero features (e.g. relu with every pre-activation < 0)
            raise ValueError(f"the random features of activation={act.name!r} vanish on x at input_scale={cw}, "
                             f"C_b={cb}: choose another activation or scale")
        return _fit_spectrum(lam, y2, rest, n, floor, scale), (lam, V, y)

    learn = (bool(learn_input) and act.slopes is None, bool(learn_input))
    cw, cb = cw0, cb0
    if any(learn):
        u0 = np.log([cw0, max(cb0, 1e-3)])[list(learn)]
        unpack = lambda u: (np.exp(u[0]) if learn[0] else cw0, np.exp(u[-1]) if learn[1] else cb0)
        bounds = ([(np.log(1e-4), np.log(1e4))] if learn[0] else []) + [(np.log(1e-8), np.log(1e4))]
        # ftol: changes of log p / n below 1e-6 are far inside the held-out error bars
        res = scipy.optimize.minimize(lambda u: -profile(*unpack(u))[0][2] / n, u0, method="L-BFGS-B",
                                      bounds=bounds, options=dict(maxiter=100, ftol=1e-6))
        cw, cb = (float(v) for v in unpack(res.x))
    (s, noise, lml), (lam, V, y) = profile(cw, cb)
    try:  # the reported log p(r) from the stable Woodbury form at the optimum
        lml = float(_feature_lml(features(cw, cb), r, s, noise, np)[0])
    except np.linalg.LinAlgError:
        lml = float("nan")
    _check_fit(lml, noise, floor, scale)
    # weight posterior: mean w = V diag(s S / (s lam + noise)) U^T r, covariance
    # S_w = s (I - V V^T) + V diag(s noise / (s lam + noise)) V^T, stored as its symmetric square root
    den = s * lam + noise
    w = V @ (s * np.sqrt(lam) * y / den)
    root = np.sqrt(s) * (np.eye(m) - V @ V.T) + (V * np.sqrt(s * noise / den)) @ V.T
    return ResidualGP(s, noise, cw, cb, lml, n, act, omega, beta, w, root, None, None, None, None)


def _check_fit(lml, noise, floor, scale):
    if not np.isfinite(float(lml)):
        raise ValueError(f"the residual GP fit is singular (log marginal likelihood {float(lml)}): "
                         "set noise_floor > 0 or use fewer features")
    if floor == 0 and noise <= 1e-12 * scale:
        raise ValueError(f"singular fit: the fitted noise collapsed to {noise:.3g} (<= 1e-12 x the residual's "
                         f"mean square {scale:.3g}), i.e. the GP interpolates the residual exactly; set "
                         "noise_floor > 0")


def _fit_dense(x, r, kernel, floor, scale):
    K = _array("kernel(x, x)", kernel(x, x), 2)
    n = x.shape[0]
    if K.shape != (n, n) or np.max(np.abs(K - K.T)) > 1e-10 * np.max(np.abs(K)):
        raise ValueError(f"kernel(x, x) has shape {K.shape}: it must be a symmetric ({n}, {n}) matrix")
    if not np.any(K):
        raise ValueError("kernel(x, x) is zero: the GP has no signal part")
    lam, V = psd_eigh("kernel(x, x)", K)     # ValueError unless PSD within 10 n eps max|lambda|
    s, noise, lml = _fit_spectrum(lam, (V.T @ r) ** 2, 0.0, n, floor, scale)
    _check_fit(lml, noise, floor, scale)
    c = np.linalg.cholesky(s * K + noise * np.eye(n))
    alpha = scipy.linalg.cho_solve((c, True), r)
    return ResidualGP(s, noise, float("nan"), float("nan"), float(lml), n, None, None, None, None, None,
                      kernel, x, alpha, c)


# ------------------------------------------------------------------------------------ diagnostics
def standardized_moments(z):
    """(g1, g1 / sqrt(6/M), g2, g2 / sqrt(24/M)): sample skewness m3/m2^1.5 and excess kurtosis
    m4/m2^2 - 3 of z (M,), with their null z-scores (iid Gaussian z, large M).

    >>> g1, zs, g2, zk = standardized_moments(np.array([-1.0, 1.0] * 50))
    >>> round(g1, 12), round(g2, 12), round(zk, 6)   # two-point law: excess kurtosis -2
    (0.0, -2.0, -4.082483)
    """
    z = _array("z", z, 1)
    M = z.shape[0]
    if M < 8:
        raise ValueError(f"z has {M} entries: need at least 8 held-out points for skewness and kurtosis")
    c = z - z.mean()
    m2, m3, m4 = (np.mean(c ** k) for k in (2, 3, 4))
    tol = (10 * M * np.finfo(np.float64).eps * np.max(np.abs(z))) ** 2  # rounding level of z - mean(z), squared
    if m2 <= tol:
        raise ValueError(f"z has zero variance (m2 = {m2:.3g} <= {tol:.3g} = (10 M eps max|z|)^2, the rounding "
                         "level of z - mean(z)): skewness and kurtosis are undefined")
    g1, g2 = m3 / m2 ** 1.5, m4 / m2 ** 2 - 3
    return float(g1), float(g1 / np.sqrt(6 / M)), float(g2), float(g2 / np.sqrt(24 / M))


def _predictive(fit, x):
    """(mean (M,), C^{-1/2} as a function, log det C) of the held-out predictive law."""
    M = x.shape[0]
    if fit.kernel is None:
        Phi = np.asarray(random_features(x, fit.omega, fit.beta, activation=fit.activation,
                                         input_scale=fit.input_scale, C_b=fit.C_b))
        Qa, Ra = np.linalg.qr(Phi @ fit.weights_sqrt_cov)  # thin SVD via QR (faster for M >> m)
        Ur, D, _ = np.linalg.svd(Ra)
        Q = Qa @ Ur
        lam = D ** 2
        whiten = lambda v: (v - Q @ (Q.T @ v)) / np.sqrt(fit.noise) + Q @ ((Q.T @ v) / np.sqrt(lam + fit.noise))
        return Phi @ fit.weights, whiten, M * np.log(fit.noise) + np.sum(np.log1p(lam / fit.noise))
    Kx = fit.amplitude * _array("kernel(x_test, x_fit)", fit.kernel(x, fit.x_fit), 2)
    W = scipy.linalg.solve_triangular(fit.chol_fit, Kx.T, lower=True)
    C = fit.amplitude * _array("kernel(x_test, x_test)", fit.kernel(x, x), 2) - W.T @ W + fit.noise * np.eye(M)
    lam, V = np.linalg.eigh(0.5 * (C + C.T))
    lam = np.maximum(lam, fit.noise)  # C >= noise I exactly; clip rounding
    return Kx @ fit.alpha, lambda v: V @ ((V.T @ v) / np.sqrt(lam)), np.sum(np.log(lam))


def heldout_diagnostics(fit: ResidualGP, x_test, r_test, *, x_fit=None) -> InterpretationDiagnostics:
    """Held-out log-likelihood per point, whitened residuals and their skewness/kurtosis (module docstring).

    x_test (M, d), r_test (M,) residuals on held-out inputs; ``x_fit``: the fitting inputs, used for
    the prior variance amplitude * mean k(x, x) (else NaN).
    """
    if not isinstance(fit, ResidualGP):
        raise ValueError(f"fit={type(fit).__name__} is not allowed: give the ResidualGP of fit_residual_gp")
    x = _array("x_test", x_test, 2)
    r = _outputs("r_test", r_test, x)
    d_fit = fit.omega.shape[0] if fit.kernel is None else fit.x_fit.shape[1]
    for name, a in (("x_test", x), ("x_fit", None if x_fit is None else _array("x_fit", x_fit, 2))):
        if a is not None and a.shape[1] != d_fit:
            raise ValueError(f"{name} has shape {a.shape}: its feature dimension must be {d_fit}, as in the fit")
    mean, whiten, logdet = _predictive(fit, x)
    z = whiten(r - mean)
    M = x.shape[0]
    ll = (-0.5 * np.sum(z ** 2) - 0.5 * logdet - 0.5 * M * _LOG2PI) / M
    g1, zs, g2, zk = standardized_moments(z)
    if x_fit is None:
        pv = float("nan")
    elif fit.kernel is None:
        Phi = np.asarray(random_features(_array("x_fit", x_fit, 2), fit.omega, fit.beta, activation=fit.activation,
                                         input_scale=fit.input_scale, C_b=fit.C_b))
        pv = fit.amplitude * float(np.mean(np.sum(Phi ** 2, axis=1)))
    else:
        pv = fit.amplitude * float(np.mean(np.diag(fit.kernel(x_fit, x_fit))))
    return InterpretationDiagnostics(float(ll), float(np.std(z ** 2 / 2) / np.sqrt(M)), fit.amplitude, fit.noise,
                                     fit.input_scale, fit.C_b, pv, fit.noise / (fit.noise + pv), g1, zs, g2, zk,
                                     bool(max(abs(zs), abs(zk)) > Z_MAX), z, fit)


def diagnose_interpretation(network, interpretation, x_fit, x_test, *, key=None, activation="relu",
                            n_features=None, kernel=None, noise_floor=0.0, learn_input=True, input_scale=1.0,
                            C_b=0.0) -> InterpretationDiagnostics:
    """Score an interpretation: fit the residual GP on x_fit, diagnose on held-out x_test.

    ``network``: callable x -> (n,) outputs, or a pair (f_fit (n,), f_test (M,)) of output arrays.
    ``interpretation``: the same for g (e.g. the kept circuits' summed outputs); a callable or pair.
    Other arguments: :func:`fit_residual_gp`. Returns :class:`InterpretationDiagnostics`.

    >>> import jax
    >>> rng = np.random.default_rng(0)
    >>> x, W, a = rng.normal(size=(400, 8)), rng.normal(size=(300, 8)) / np.sqrt(8), rng.normal(size=300)
    >>> background = lambda x: np.maximum(x @ W.T, 0) @ a / np.sqrt(300)
    >>> circuit = lambda x: 3.0 * np.maximum(3 * x[:, 0] - 4.5, 0)           # sparse and strong
    >>> net = lambda x: background(x) + circuit(x)
    >>> kw = dict(x_fit=x[:200], x_test=x[200:], key=jax.random.key(1), n_features=32, learn_input=False)
    >>> full = diagnose_interpretation(net, circuit, **kw)                    # complete interpretation
    >>> empty = diagnose_interpretation(net, lambda x: np.zeros(len(x)), **kw)  # misses the circuit
    >>> full.heldout_loglik > empty.heldout_loglik, empty.flagged
    (True, True)
    """
    require_x64("sft.circuits.diagnose_interpretation")
    x_fit = _array("x_fit", x_fit, 2)
    x_test = _array("x_test", x_test, 2)
    if x_fit.shape[1] != x_test.shape[1]:
        raise ValueError(f"x_test has shape {x_test.shape} but x_fit has {x_fit.shape}: feature dimensions differ")

    def pair(name, v):
        if callable(v):
            return _outputs(name, v, x_fit), _outputs(name, v, x_test)
        try:
            a, b = v
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be a callable x -> outputs or a pair (outputs on x_fit, outputs on "
                             f"x_test); got {type(v).__name__}") from None
        return _outputs(f"{name}[0] (on x_fit)", a, x_fit), _outputs(f"{name}[1] (on x_test)", b, x_test)

    f_fit, f_test = pair("network", network)
    g_fit, g_test = pair("interpretation", interpretation)
    fit = fit_residual_gp(x_fit, f_fit - g_fit, key=key, activation=activation, n_features=n_features,
                          kernel=kernel, noise_floor=noise_floor, learn_input=learn_input,
                          input_scale=input_scale, C_b=C_b)
    return heldout_diagnostics(fit, x_test, f_test - g_test, x_fit=x_fit)


def neuron_contributions(x, W, a, *, activation, bias=None, scale=1.0):
    """Per-neuron contributions (n, K) of a one-hidden-layer network, scale * a_k sigma(w_k . x + bias_k).

    x (n, d), W (K, d), a (K,), bias (K,) or None. The network is the row sum; an interpretation that
    keeps circuits S is the sum over columns S (scale = N^{-1/2} for a background of N neurons).

    >>> neuron_contributions(np.ones((1, 2)), np.array([[1.0, 1.0], [1.0, -0.5]]), np.array([2.0, 1.0]),
    ...                      activation="relu").tolist()
    [[4.0, 0.5]]
    """
    require_x64("sft.circuits.neuron_contributions")
    x = _array("x", x, 2)
    W = _array("W", W, 2)
    a = _array("a", a, 1)
    scale = check_real("scale", scale)
    if W.shape[1] != x.shape[1] or a.shape[0] != W.shape[0]:
        raise ValueError(f"W has shape {W.shape} and a {a.shape}: need W (K, d = {x.shape[1]}) and a (K,)")
    if bias is not None and _array("bias", bias, 1).shape != a.shape:
        raise ValueError(f"bias has shape {np.shape(bias)}: it must be (K,) = {a.shape}, one per neuron")
    h = x @ W.T + (0.0 if bias is None else _array("bias", bias, 1))
    return scale * a * np.asarray(get_activation(activation)(jnp.asarray(h)))


def background_variance(activation, *, a_var=1.0, q=1.0):
    """Predicted prior variance of the background, a_var E[sigma(sqrt(q) z)^2] = a_var (mu0^2 + mu1^2 +
    mu*^2) (:func:`sft.circuits.equivalence_constants`); q = C_b + C_W |x|^2 / d.

    >>> round(float(background_variance("relu", a_var=2.0)), 10)   # 2 * E[relu(z)^2] = 2 * 1/2
    1.0
    """
    a_var = _positive("a_var", a_var, allow_zero=True)
    q = check_real("q", q, minimum=0)
    mu0, mu1, mus = equivalence_constants(activation, q=q)
    return a_var * (mu0 ** 2 + mu1 ** 2 + mus ** 2)
