"""The feature-count rule of sft.circuits.residual_gp for wide inputs (d = 200): the default warns when
random features cannot resolve the kernel, and the exact-kernel route it recommends recovers the
amplitude and noise of a GP draw within error bars, where m = 512 random features do not.

Error bars: inverse Fisher information of (amplitude s, noise) in the spectral form, v_j = s lam_j + noise
over the eigenvalues lam_j of the kernel on the fitting inputs, I_ab = 1/2 sum_j d_a v_j d_b v_j / v_j^2.
|z| < Z_MAX at a fixed seed (float64).
"""
import jax
import numpy as np
import pytest

from sft.circuits import residual_gp as rg
from sft.conventions import Z_MAX
from sft.kernels import nngp

KERNEL = lambda a, b: nngp(a, b, depth=1, activation="relu", C_W=[1.0, 1.0], C_b=[0.0, 0.0])  # noqa: E731


def _z_scores(fit, lam, amplitude, noise):
    v = fit.amplitude * lam + fit.noise
    J = np.stack([lam, np.ones_like(lam)]) / v
    err = np.sqrt(np.diag(np.linalg.inv(0.5 * J @ J.T)))
    return (fit.amplitude - amplitude) / err[0], (fit.noise - noise) / err[1]


def test_rule_and_warning(monkeypatch):
    assert rg.default_feature_count(2000, 16) == 2448 and rg.default_feature_count(50, 2) == 512
    assert rg.default_feature_count(2000, 200) == rg.MAX_FEATURES
    with pytest.warns(RuntimeWarning, match=r"n_features: 4096 .* n = 300 inputs in d = 30"):
        rg.default_feature_count(300, 30, warn=True)
    # the default of fit_residual_gp goes through the rule (cap lowered to keep the test small)
    monkeypatch.setattr(rg, "MAX_FEATURES", 64)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 30))
    with pytest.warns(RuntimeWarning, match="n_features: 64 .*under-resolve"):
        fit = rg.fit_residual_gp(x, rng.normal(size=40), key=jax.random.key(0), learn_input=False)
    assert fit.omega.shape == (30, 64)


def test_wide_inputs_exact_kernel_recovers_amplitude_and_noise():
    """d = 200, n = 400: r = GP draw of the relu NNGP (amplitude 1) + white noise 0.05 (seed 0)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 200))
    K = KERNEL(x, x)
    r = np.linalg.cholesky(K + 1e-10 * np.eye(400)) @ rng.normal(size=400) + np.sqrt(0.05) * rng.normal(size=400)
    lam = np.clip(np.linalg.eigvalsh(K), 0, None)
    za, zn = _z_scores(rg.fit_residual_gp(x, r, kernel=KERNEL), lam, 1.0, 0.05)
    assert abs(za) < Z_MAX and abs(zn) < Z_MAX, (za, zn)
    few = rg.fit_residual_gp(x, r, key=jax.random.key(100), n_features=512, learn_input=False)
    Phi = np.asarray(rg.random_features(x, few.omega, few.beta, activation="relu", input_scale=1.0, C_b=0.0))
    za, zn = _z_scores(few, np.clip(np.linalg.eigvalsh(Phi @ Phi.T), 0, None), 1.0, 0.05)
    assert zn > Z_MAX, (za, zn)  # 512 features under-resolve: the fitted noise is too high
