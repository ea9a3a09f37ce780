"""Maximum-marginal-likelihood fitting of (C_W, C_b, noise) (sft.predict.hyperparameters) and the
traced (JAX) paths of the GP posterior and the NTK flow it relies on. float64, CPU, fixed seeds."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from sft.conventions import Z_MAX
from sft.kernels import nngp, nngp_and_ntk
from sft.predict import gp_posterior, ntk_flow
from sft.predict.hyperparameters import fit_hyperparameters, log_marginal_likelihood

RNG = np.random.default_rng(0)
X = RNG.normal(size=(6, 3))
XT = RNG.normal(size=(2, 3))
Y = RNG.normal(size=6)


def _gp_data(activation, depth, truth, P, k, seed):
    """Inputs with varied norms (so that C_W and C_b are separately identifiable) and k label columns
    drawn from the GP with hyperparameters truth = (C_W, C_b, noise)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(P, 3)) * np.exp(rng.normal(scale=0.5, size=(P, 1)))
    K = nngp(x, depth=depth, activation=activation, C_W=truth[0], C_b=truth[1])
    return x, np.linalg.cholesky(K + truth[2] * np.eye(P)) @ rng.normal(size=(P, k))


def test_fit_recovers_the_hyperparameters_of_data_drawn_from_the_gp():
    """relu, depth 3: truth (1.8, 0.3, 0.05), P = 50 inputs, k = 16 label columns, seed 3; every fitted
    parameter within Z_MAX of the truth in units of sqrt(diag H^{-1}) (observed information). Also:
    all starts reach the same optimum, which is a maximum (log p lower at theta +- 2 stderr)."""
    truth = np.array([1.8, 0.3, 0.05])
    x, y = _gp_data("relu", 3, truth, P=50, k=16, seed=3)
    fit = fit_hyperparameters(x, y, depth=3, activation="relu", n_starts=2, seed=1)
    z = (fit.theta - truth) / fit.stderr
    assert np.all(np.abs(z) < Z_MAX), (fit.theta, fit.stderr, z)
    assert not fit.on_bound.any()
    np.testing.assert_allclose(fit.values, fit.log_marginal_likelihood, rtol=1e-9)
    for i in range(3):
        for sign in (-1, 1):
            th = fit.theta.copy()
            th[i] += 2 * sign * fit.stderr[i]
            assert log_marginal_likelihood(x, y, depth=3, activation="relu", C_W=th[0], C_b=th[1],
                                           noise=th[2]) < fit.log_marginal_likelihood


def test_log_marginal_likelihood_vs_scipy_and_its_gradient_vs_finite_differences():
    """Value: scipy.stats.multivariate_normal (independent); gradient in noise and C_W (jax) vs central
    differences with step 1e-5 (relative agreement 1e-7)."""
    y2 = np.stack([Y, Y[::-1]], 1)
    K = nngp(X, depth=2, activation="erf", C_W=1.5, C_b=0.2)
    ref = sum(stats.multivariate_normal(np.zeros(6), K + 0.1 * np.eye(6)).logpdf(c) for c in y2.T)
    f = lambda cw, s2: log_marginal_likelihood(X, y2, depth=2, activation="erf", C_W=cw, C_b=0.2, noise=s2)
    assert abs(f(1.5, 0.1) - ref) < 1e-12 * abs(ref)
    g = jax.jit(jax.grad(f, argnums=(0, 1)))(1.5, 0.1)
    h = 1e-5
    fd = ((f(1.5 + h, 0.1) - f(1.5 - h, 0.1)) / (2 * h), (f(1.5, 0.1 + h) - f(1.5, 0.1 - h)) / (2 * h))
    np.testing.assert_allclose(g, fd, rtol=1e-7)


def test_traced_gp_posterior_and_ntk_flow_equal_the_plain_calls_and_differentiate():
    """jit(gp_posterior) and jit(ntk_flow) (expm form) equal the plain calls; the derivative of the flow's
    mean in C_W matches central differences (step 1e-5, relative 1e-7); degenerate eigenvalues (identity
    kernel) give the exact finite gradient of the log marginal likelihood."""
    def blocks(cw):
        K, T = nngp_and_ntk(X, depth=2, activation="erf", C_W=cw, C_b=0.1)
        Kc, Tc = nngp_and_ntk(XT, X, depth=2, activation="erf", C_W=cw, C_b=0.1)
        return T, Tc, K, Kc, nngp(XT, depth=2, activation="erf", C_W=cw, C_b=0.1)

    @jax.jit
    def traced(cw, t):  # one compilation: posterior, flow, and the flow's C_W-derivative (forward mode)
        flow, dflow = jax.jvp(lambda c: ntk_flow(*blocks(c), Y, t=t), (cw,), (jnp.ones_like(cw),))
        return gp_posterior(*blocks(cw)[2:], Y, noise=0.1), flow, dflow

    for t in (0.3, 5.0):
        post, flow, dflow = traced(1.5, t)
        for plain, tr in zip((gp_posterior(*blocks(1.5)[2:], Y, noise=0.1), ntk_flow(*blocks(1.5), Y, t=t)),
                             (post, flow)):
            for a, b in zip(plain, tr):
                np.testing.assert_allclose(b, a, rtol=1e-11, atol=1e-13)
        slope = dflow.mean.sum()
        f, h = (lambda cw: ntk_flow(*blocks(cw), Y, t=t).mean.sum()), 1e-5
        assert abs(slope - (f(1.5 + h) - f(1.5 - h)) / (2 * h)) < 1e-7 * abs(slope), (t, slope)
    eye = np.eye(2)  # degenerate eigenvalues: mean = (1 - e^{-c t}) y for Theta = c I, d/dc = t e^{-c t} y
    dm, dL = jax.jit(lambda c, t, s2: (
        jax.grad(lambda c, t: ntk_flow(c * eye, c * eye, eye, eye, eye, np.ones(2), t=t).mean.sum(),
                 argnums=(0, 1))(c, t),
        jax.grad(lambda s2: gp_posterior(eye, eye, eye, np.ones(2), noise=s2).log_marginal_likelihood)(s2)))(
        1.0, 1.0, 0.5)
    np.testing.assert_allclose(dm, [2 * np.exp(-1.0)] * 2, rtol=1e-12)
    assert abs(dL - (2 / (2 * 1.5 ** 2) - 2 / (2 * 1.5))) < 1e-14


def test_bad_input():
    with pytest.raises(ValueError, match="y has shape"):
        fit_hyperparameters(X, Y[:5], depth=1, activation="erf")
    with pytest.raises(ValueError, match="n_starts=0"):
        fit_hyperparameters(X, Y, depth=1, activation="erf", n_starts=0)
    with pytest.raises(ValueError, match="starts has shape"):
        fit_hyperparameters(X, Y, depth=1, activation="erf", starts=[[1.0, 0.1]])
    with pytest.raises(ValueError, match="bounds"):
        fit_hyperparameters(X, Y, depth=1, activation="erf", bounds=((1, 0.5),) * 3)


def test_flat_direction_gives_an_infinite_error_bar_and_a_saddle_raises(monkeypatch):
    """The observed information is a finite difference (relative error ~1e-8): an eigenvalue within
    1e-6 max|lam| of zero is a direction the data do not determine (infinite error bar + warning, as
    for erf at depth 20 near criticality, where it came out -4.5e-3 against 7.5e6); a clearly negative
    one means the optimum is a saddle (ValueError)."""
    import sft.predict.hyperparameters as hp
    rot = np.linalg.qr(np.random.default_rng(1).normal(size=(3, 3)))[0]
    x, y = _gp_data("erf", 1, np.array([1.5, 0.2, 0.05]), P=20, k=4, seed=0)
    for lam_min, expect in ((-4.5e-3, "flat"), (-1e2, "saddle")):
        H = rot @ np.diag([7.5e6, 3e4, lam_min]) @ rot.T
        monkeypatch.setattr(hp, "_observed_information", lambda *a, H=H: H)
        if expect == "flat":
            with pytest.warns(RuntimeWarning, match="flat direction"):
                fit = fit_hyperparameters(x, y, depth=1, activation="erf", n_starts=1)
            assert not fit.on_bound.any()
            assert np.all(np.isinf(fit.stderr[np.abs(rot[:, 2]) > 1e-3]))
        else:
            with pytest.raises(ValueError, match="not positive semi-definite"):
                fit_hyperparameters(x, y, depth=1, activation="erf", n_starts=1)
