"""Tests of sft.circuits.residual_gp: exact feature-space / low-rank forms vs dense linear algebra, the ranking of
complete vs incomplete interpretations of a planted network, the skewness/kurtosis flags (null: a true
GP draw; alternative: a missed sparse circuit), and bad input.

Statistical tolerances: held-out log-likelihoods per point carry the error bar std(z^2/2)/sqrt(M); a
difference of two is compared with 4 sqrt(e1^2 + e2^2). Skewness/kurtosis z-scores use the null errors
sqrt(6/M), sqrt(24/M).
"""
import jax
import numpy as np
import pytest
import scipy.stats

from sft.circuits import residual_gp as rg
from sft.conventions import Z_MAX
from sft.kernels import nngp
from sft.predict import gp_posterior


def _dense_lml(K, r, noise):
    return gp_posterior(K, K[:1], K[:1, :1], r, noise=noise).log_marginal_likelihood


def test_feature_lml_equals_dense():
    rng = np.random.default_rng(0)
    for n, m in ((50, 10), (30, 60)):  # rank-deficient and full-rank kernels
        Phi, r = rng.normal(size=(n, m)), rng.normal(size=n)
        for s, noise in ((0.7, 0.3), (2.0, 1e-4)):
            want = _dense_lml(s * Phi @ Phi.T, r, noise)
            got = rg.feature_log_marginal_likelihood(Phi, r, amplitude=s, noise=noise)
            assert got == pytest.approx(want, rel=1e-10, abs=1e-10)


def test_user_kernel_route_matches_dense():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(150, 4))
    kern = lambda a, b: nngp(a, b, depth=1, activation="relu", C_W=[1.0, 1.0], C_b=[0.1, 0.0])
    K = kern(x, x)
    r = np.linalg.cholesky(0.8 * K + 0.05 * np.eye(150)) @ rng.normal(size=150)
    fit = rg.fit_residual_gp(x[:100], r[:100], kernel=kern)
    assert fit.log_marginal_likelihood == pytest.approx(_dense_lml(fit.amplitude * K[:100, :100], r[:100],
                                                                   fit.noise), rel=1e-10)
    # maximum: nudging either parameter lowers the likelihood
    for ds, dn in ((1.05, 1), (0.95, 1), (1, 1.05), (1, 0.95)):
        assert _dense_lml(fit.amplitude * ds * K[:100, :100], r[:100], fit.noise * dn) < fit.log_marginal_likelihood
    d = rg.heldout_diagnostics(fit, x[100:], r[100:])
    A = fit.amplitude * K[:100, :100] + fit.noise * np.eye(100)
    Kx = fit.amplitude * K[100:, :100]
    C = fit.amplitude * K[100:, 100:] + fit.noise * np.eye(50) - Kx @ np.linalg.solve(A, Kx.T)
    want = scipy.stats.multivariate_normal(Kx @ np.linalg.solve(A, r[:100]), C).logpdf(r[100:]) / 50
    assert d.heldout_loglik == pytest.approx(want, rel=1e-10)


def test_random_feature_kernel_vs_nngp_monte_carlo():
    """Phi Phi^T is a Monte Carlo estimate of the NNGP kernel (sft.kernels.recursion): |z| < 4 entrywise; the
    predicted background variance equals the NNGP diagonal; a wrong C_b is detected."""
    rng = np.random.default_rng(8)
    x = rng.normal(size=(4, 3))
    m = 20000
    om, be = rng.normal(size=(3, m)), rng.normal(size=m)
    for act, cw, cb in (("relu", 1.0, 0.0), ("erf", 2.0, 0.3)):
        terms = np.asarray(rg.random_features(x, om, be, activation=act, input_scale=cw, C_b=cb)) * np.sqrt(m)
        prod = terms[:, None, :] * terms[None, :, :]  # (4, 4, m) per-feature products
        est, err = prod.mean(-1), prod.std(-1) / np.sqrt(m)
        want = nngp(x, depth=1, activation=act, C_W=[cw, 1.0], C_b=[cb, 0.0])
        assert np.max(np.abs(est - want) / err) < Z_MAX
        wrong = nngp(x, depth=1, activation=act, C_W=[cw, 1.0], C_b=[cb + 1.0, 0.0])
        assert np.max(np.abs(est - wrong) / err) > Z_MAX
    xn = x / np.linalg.norm(x, axis=1, keepdims=True) * np.sqrt(3)  # |x|^2 / d = 1
    k = nngp(xn, depth=1, activation="erf", C_W=[1.0, 2.0], C_b=[0.0, 0.0])
    assert float(rg.background_variance("erf", a_var=2.0)) == pytest.approx(k[0, 0], rel=1e-10)


def _planted(seed, n, d=16, width=600):
    """Inputs, background (relu, a ~ N(0, 1), w ~ N(0, I/d)) and one sparse strong relu circuit."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    bg = rg.neuron_contributions(x, rng.normal(size=(width, d)) / np.sqrt(d), rng.normal(size=width),
                                 activation="relu", scale=width ** -0.5).sum(1)
    circ = 3.0 * np.maximum(3.0 * x[:, 0] - 4.5, 0.0)  # fires on 7% of inputs
    return x, bg, circ


@pytest.fixture(scope="module")
def planted_diagnostics():
    x, bg, circ = _planted(0, 1000)
    f = bg + circ
    kw = dict(x_fit=x[:500], x_test=x[500:], key=jax.random.key(3), n_features=128, learn_input=False)
    return (rg.diagnose_interpretation((f[:500], f[500:]), (circ[:500], circ[500:]), **kw),
            rg.diagnose_interpretation((f[:500], f[500:]), (0 * f[:500], 0 * f[500:]), **kw), x, bg)


def test_heldout_predictive_equals_dense_gaussian(planted_diagnostics):
    """Low-rank whitening and log det (thin SVD) and the fit's log p(r) vs dense linear algebra at the
    fitted hyperparameters."""
    full, _, x, r = planted_diagnostics
    fit = full.fit
    assert (fit.input_scale, fit.C_b) == (1.0, 0.0)
    Phi = np.asarray(rg.random_features(x, fit.omega, fit.beta, activation="relu", input_scale=1.0, C_b=0.0))
    K = fit.amplitude * Phi @ Phi.T
    assert fit.log_marginal_likelihood == pytest.approx(_dense_lml(K[:500, :500], r[:500], fit.noise), rel=1e-10)
    K += fit.noise * np.eye(1000)
    A = K[:500, :500]
    mean = K[500:, :500] @ np.linalg.solve(A, r[:500])
    C = K[500:, 500:] - K[500:, :500] @ np.linalg.solve(A, K[:500, 500:])
    want = scipy.stats.multivariate_normal(mean, C).logpdf(r[500:]) / 500
    assert full.heldout_loglik == pytest.approx(want, rel=1e-10)
    assert np.sum(full.z ** 2) == pytest.approx((r[500:] - mean) @ np.linalg.solve(C, r[500:] - mean), rel=1e-10)


def test_complete_interpretation_scores_above_missing(planted_diagnostics):
    full, empty = planted_diagnostics[:2]
    margin = Z_MAX * np.hypot(full.heldout_loglik_err, empty.heldout_loglik_err)
    assert full.heldout_loglik - empty.heldout_loglik > margin
    assert empty.noise > full.noise  # the missed circuit shows up as excess noise
    assert not full.flagged


def test_missed_circuit_flagged(planted_diagnostics):
    empty = planted_diagnostics[1]
    assert empty.flagged and max(abs(empty.skewness_z), abs(empty.kurtosis_z)) > 2 * Z_MAX


def test_gaussian_residual_not_flagged():
    """Null: the residual is an exact draw of the relu NNGP (dense Cholesky), fitted with random features."""
    rng = np.random.default_rng(4)
    x = rng.normal(size=(1000, 16))
    K = nngp(x, depth=1, activation="relu", C_W=[1.0, 1.0], C_b=[0.0, 0.0])
    r = np.linalg.cholesky(K + 0.01 * np.eye(1000)) @ rng.normal(size=1000)
    d = rg.diagnose_interpretation((r[:500], r[500:]), (0 * r[:500], 0 * r[500:]), x[:500], x[500:],
                                   key=jax.random.key(3), n_features=128, learn_input=False)
    assert abs(d.skewness_z) < Z_MAX and abs(d.kurtosis_z) < Z_MAX and not d.flagged


def test_input_parameters_learnt():
    """erf features: input_scale and C_b are learnt and the profile maximum beats the starting values."""
    rng = np.random.default_rng(7)
    x = rng.normal(size=(120, 4))
    r = np.sin(2 * x[:, 0]) + 0.1 * rng.normal(size=120)
    kw = dict(key=jax.random.key(0), activation="erf", n_features=16)
    fixed = rg.fit_residual_gp(x, r, learn_input=False, **kw)
    learnt = rg.fit_residual_gp(x, r, **kw)
    assert learnt.log_marginal_likelihood > fixed.log_marginal_likelihood
    assert learnt.input_scale != 1.0 and learnt.C_b > 0


def test_standardized_moments_null_errors():
    """The null error bars sqrt(6/M), sqrt(24/M) match the spread over Gaussian samples (|z| < 4)."""
    rng = np.random.default_rng(5)
    R, M = 400, 2000
    zs = np.array([rg.standardized_moments(rng.normal(size=M))[1::2] for _ in range(R)])
    sd = zs.std(0, ddof=1)  # should be 1; error of a sample sd ~ 1/sqrt(2 (R - 1))
    assert np.all(np.abs(sd - 1) * np.sqrt(2 * (R - 1)) < Z_MAX)
    # and it can fail: a uniform sample has excess kurtosis -1.2
    assert rg.standardized_moments(rng.uniform(size=M))[3] < -Z_MAX


def test_bad_input():
    rng = np.random.default_rng(6)
    x = rng.normal(size=(40, 3))
    f = x[:, 0]
    kw = dict(key=jax.random.key(0), n_features=8)
    with pytest.raises(ValueError, match="interpretation"):  # wrong shape
        rg.diagnose_interpretation((f[:20], f[20:]), (f[:20], f[20:35]), x[:20], x[20:], **kw)
    with pytest.raises(ValueError, match="NaN"):
        rg.diagnose_interpretation((f[:20], np.where(f[20:] > 0, np.nan, 0)), (f[:20], f[20:]), x[:20], x[20:],
                                   **kw)
    with pytest.raises(ValueError, match="zero variance"):  # the interpretation is exact: r = 0
        rg.diagnose_interpretation((f[:20], f[20:]), (f[:20], f[20:]), x[:20], x[20:], **kw)
    with pytest.raises(ValueError, match="singular fit"):  # r in the span of a rank-3 kernel, no noise floor
        rg.fit_residual_gp(x, x @ np.array([1.0, -2.0, 0.5]), kernel=lambda a, b: a @ b.T)
    fit = rg.fit_residual_gp(x, x @ np.array([1.0, -2.0, 0.5]), kernel=lambda a, b: a @ b.T, noise_floor=1e-6)
    assert fit.noise == pytest.approx(1e-6)
    with pytest.raises(ValueError, match="noise_floor"):
        rg.fit_residual_gp(x, f, noise_floor=-1.0, **kw)
    with pytest.raises(ValueError, match="n_features"):
        rg.fit_residual_gp(x, f, key=jax.random.key(0), n_features=0)
    with pytest.raises(ValueError, match="key"):
        rg.fit_residual_gp(x, f)
    with pytest.raises(ValueError, match="amplitude"):
        rg.feature_log_marginal_likelihood(np.ones((2, 1)), np.ones(2), amplitude=0.0, noise=1.0)
    with pytest.raises(ValueError, match="x_test"):
        rg.heldout_diagnostics(fit, np.ones((10, 2)), np.ones(10))
