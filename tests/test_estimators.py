"""Tests of sft.sim.estimators against exact results: unbiasedness, error-bar calibration, fits."""
import math

import jax
import numpy as np
import pytest

from sft.sim import estimators as est
from sft.finite import vertex as fw
from sft.kernels import get_activation
from sft.conventions import Z_MAX
from sft.sim import layer_kernels


def test_k_statistics_unbiased_on_small_samples():
    """Mean of k2, k4 over many samples of size 10 from Exp(1) (kappa_2 = 1, kappa_4 = 6)."""
    x = np.random.default_rng(0).exponential(size=(10, 200_000))
    k2, k4 = est.k2(x), est.k4(x)
    for vals, exact in ((k2, 1.0), (k4, 6.0)):
        assert abs(vals.mean() - exact) < Z_MAX * vals.std(ddof=1) / math.sqrt(vals.size)
    # the naive moment estimator of kappa_4 is visibly biased at S = 10 (a test that can fail)
    d = x - x.mean(0)
    naive = np.mean(d ** 4, 0) - 3 * np.mean(d ** 2, 0) ** 2
    assert abs(naive.mean() - 6.0) > 10 * naive.std(ddof=1) / math.sqrt(naive.size)


def test_k4_of_gaussian_is_zero_and_matches_formula():
    x = np.array([0.3, -1.2, 2.0, 0.7, -0.4, 1.1])
    S, d = x.size, x - x.mean()
    m2, m4 = np.mean(d ** 2), np.mean(d ** 4)
    want = S * S * ((S + 1) * m4 - 3 * (S - 1) * m2 ** 2) / ((S - 1) * (S - 2) * (S - 3))
    assert est.k4(x) == pytest.approx(want, rel=1e-14)
    g = np.random.default_rng(1).standard_normal((4000, 50))
    val = est.k4(g)
    assert abs(val.mean()) < Z_MAX * val.std(ddof=1) / math.sqrt(val.size)


def test_jackknife_error_is_calibrated():
    """Over 400 repeats of S = 2000 samples z = sqrt(chi2_20/20) g (excess kurtosis 6/20, the law of
    one neuron of a width-20 linear layer), the mean jackknife error matches the actual scatter."""
    rng = np.random.default_rng(2)
    x = np.sqrt(rng.chisquare(20, size=(400, 2000)) / 20) * rng.standard_normal((400, 2000))
    est_err = np.array([est.excess_kurtosis(r, n_blocks=20) for r in x])
    scatter = est_err[:, 0].std(ddof=1)
    # relative error of `scatter` from 400 repeats: ~ sqrt(1/(2*399)) (x ~1.5 for non-Gaussian spread)
    assert abs(est_err[:, 1].mean() / scatter - 1) < Z_MAX * 1.5 / math.sqrt(2 * 399)
    assert abs(est_err[:, 0].mean() - 0.3) < Z_MAX * scatter / math.sqrt(400)


def test_vertex_from_metrics_against_theory_and_kurtosis():
    """n Cov(G) from per-network metrics agrees with V and with the (noisier) output-kurtosis estimate."""
    x = np.array([[0.9, -0.3]])
    n, S = 128, 2000
    G = np.asarray(layer_kernels(jax.random.key(7), x, n_ensemble=S, widths=[n, n], activation="tanh",
                                 C_W=1.5, C_b=0.1))
    th = fw.single_input(G[0, 0, 0, 0], depth=2, activation="tanh", C_W=1.5, C_b=0.1)
    V, err = est.vertex_from_metrics(G[:, 2], n)
    assert abs(V[0, 0, 0, 0] - th.V[2]) < Z_MAX * err[0, 0, 0, 0]
    # same vertex from the kurtosis of outputs z ~ N(0, G): 3 Var(G)/E[G]^2 (noisier by far)
    z = np.sqrt(G[:, 2, 0, 0]) * np.random.default_rng(3).standard_normal(S)
    kurt, kerr = est.excess_kurtosis(z)
    assert kerr > 5 * 3 * err[0, 0, 0, 0] / (n * th.K[2] ** 2)
    assert abs(kurt - 3 * th.V[2] / (n * th.K[2] ** 2)) < Z_MAX * kerr


def test_fit_inverse_width_recovers_coefficients():
    rng = np.random.default_rng(4)
    n = np.array([8.0, 16, 32, 64])
    err = np.full(4, 0.01)
    y = 2.0 / n - 3.0 / n ** 2 + err * rng.standard_normal(4)
    c, e, chi2 = est.fit_inverse_width(n, y, err, powers=(1, 2))
    assert np.all(np.abs(c - [2.0, -3.0]) < Z_MAX * e)
    assert chi2 < 20


def test_conditional_next_metric_quadrature_matches_closed_form():
    G = np.array([[[1.2, 0.4], [0.4, 0.8]], [[0.5, -0.2], [-0.2, 0.9]]])
    act = get_activation("erf")
    closed = est.conditional_next_metric(G, activation=act, C_W=1.3, C_b=0.1)
    quad = est.conditional_next_metric(G, activation=get_activation(act.fn), C_W=1.3, C_b=0.1, n_nodes=64)
    np.testing.assert_allclose(quad, closed, atol=1e-12)  # same function without closed form


def test_bad_input():
    with pytest.raises(ValueError, match="at least 4"):
        est.k4(np.ones(3))
    with pytest.raises(ValueError, match="at least 8"):
        est.excess_kurtosis(np.ones(5))
    with pytest.raises(ValueError, match="n_blocks"):
        est.jackknife(np.mean, np.ones(10), n_blocks=11)
    with pytest.raises(ValueError, match="too few"):
        est.fit_inverse_width([8, 16], [1.0, 2.0], [0.1, 0.1], powers=(0, 1))
    with pytest.raises(ValueError, match="equal length"):
        est.fit_inverse_width([8, 16, 32], [1.0, 2.0], [0.1, 0.1])
    with pytest.raises(ValueError, match="n_prev"):
        est.vertex_from_metrics(np.ones((5, 2, 2)), 0)
    with pytest.raises(ValueError, match="at least 3"):
        est.vertex_from_metrics(np.ones((2, 2, 2)), 10)
