"""Output cumulants from ensembles (sft.sim.mixture_cumulants): the conditional-Gaussian (per-network
metric) estimator and the plain sample estimator, and the layer-by-layer metric sampler, against an
exact mixture, the exact ReLU law at finite width and real networks (sft.sim.layer_kernels). All float64, fixed seeds, |z| < Z_MAX from jackknife error bars."""
import itertools

import jax
import numpy as np
import pytest

from sft.conventions import Z_MAX
from sft.finite.relu_exact import output_cumulant_ratios
from sft.sim import (jackknife, layer_kernels, output_cumulants_from_metrics,
                     output_cumulants_from_samples, pair_sum, sample_metrics)

X2 = np.array([[1.0, 0.0], [0.6, 0.8]])


def _unique(tensors):
    """Entries with sorted indices (the independent components) of [k2, k4, k6]."""
    out = []
    for t in tensors:
        out += [t[i] for i in itertools.combinations_with_replacement(range(t.shape[0]), t.ndim)]
    return np.array(out)


def test_metric_estimator_exact_mixture():
    """G = chi^2_nu / nu (nu = 10, seed 3, 4e4 draws): kappa4 = 3 * 2/nu, kappa6 = 15 * 8/nu^2."""
    nu = 10
    G = np.random.default_rng(3).chisquare(nu, size=(40_000, 1, 1)) / nu
    est, err = jackknife(lambda s: _unique(output_cumulants_from_metrics(s)), G)
    exact = np.array([1.0, 6 / nu, 120 / nu ** 2])
    assert np.all(np.abs(est - exact) < Z_MAX * err)
    assert float(pair_sum(np.ones((2,) * 4), 2)[0, 1, 0, 1]) == 3.0


@pytest.mark.parametrize("name,C_W,slopes", [("relu", 2.0, (1.0, 0.0)), ("linear", 1.0, (1.0, 1.0))])
def test_sample_metrics_exact_scale_invariant_law(name, C_W, slopes):
    """kappa4/kappa2^2 and kappa6/kappa2^3 of depth-3, width-8 networks (1e5 sampled networks, seed 1)
    against the exact finite-width law (sft.finite.relu_exact)."""
    G = sample_metrics(np.random.default_rng(1), 1.0, widths=[8] * 3, activation=name, C_W=C_W,
                       C_b=0.0, n_networks=100_000)[:, -1]
    def ratios(s):
        k2, k4, k6 = (t.ravel()[0] for t in output_cumulants_from_metrics(s))
        return np.array([k4 / k2 ** 2, k6 / k2 ** 3])
    est, err = jackknife(ratios, G)
    exact = output_cumulant_ratios([8] * 3, max_order=6, a_plus=slopes[0], a_minus=slopes[1])
    assert np.all(np.abs(est - exact) < Z_MAX * err), (est, err, exact)


def test_sample_metrics_match_real_networks():
    """Two inputs, tanh, C_W = 1.5, C_b = 0.1, widths (6, 6): the readout metrics of 2e4 real networks
    (layer_kernels, key 5) and of 2e4 sampled ones (seed 5) give the same kappa2, kappa4, kappa6
    (every independent component; two-sample z from jackknife errors). The plain sample estimator on
    outputs f = G^(1/2) u of the real networks (u ~ N(0, 1), seed 6: the exact law of the outputs given
    the metrics) agrees for kappa2 and kappa4, with larger error bars."""
    kw = dict(widths=[6, 6], activation="tanh", C_W=1.5, C_b=0.1)
    real = np.asarray(layer_kernels(jax.random.key(5), X2, n_ensemble=20_000, dtype="float64", **kw))
    K1 = 0.1 + 1.5 * X2 @ X2.T / 2
    assert np.allclose(real[0, 0], K1, rtol=1e-12)
    samp = sample_metrics(np.random.default_rng(5), K1, n_networks=20_000, **kw)
    stat = lambda s: _unique(output_cumulants_from_metrics(s))
    a, ea = jackknife(stat, real[:, -1])
    b, eb = jackknife(stat, samp[:, -1])
    assert np.all(np.abs(a - b) < Z_MAX * np.hypot(ea, eb)), (a - b) / np.hypot(ea, eb)
    f = np.einsum("sab,sb->sa", np.linalg.cholesky(real[:, -1]),
                  np.random.default_rng(6).standard_normal((20_000, 2)))
    c, ec = jackknife(lambda s: _unique(output_cumulants_from_samples(s)[:2]), f)
    assert np.all(np.abs(c - a[:8]) < Z_MAX * np.hypot(ec, ea[:8]))
    assert np.all(ec[3:8] > 2 * ea[3:8])  # the metric estimator is the less noisy one


def test_bad_input():
    with pytest.raises(ValueError, match="G of shape"):
        output_cumulants_from_metrics(np.ones((5, 2, 3)))
    with pytest.raises(ValueError, match="f of shape"):
        output_cumulants_from_samples(np.full((10, 1), np.nan))
    with pytest.raises(ValueError, match="n_pairs"):
        pair_sum(np.ones((1,) * 8), 4)
    with pytest.raises(ValueError, match="rng"):
        sample_metrics(0, 1.0, widths=[4], activation="relu", C_W=2.0, C_b=0.0, n_networks=3)
    with pytest.raises(ValueError, match="K1"):
        sample_metrics(np.random.default_rng(0), -np.eye(2), widths=[4], activation="relu", C_W=2.0,
                       C_b=0.0, n_networks=3)
    with pytest.raises(ValueError, match="n_networks"):
        sample_metrics(np.random.default_rng(0), 1.0, widths=[4], activation="relu", C_W=2.0,
                       C_b=0.0, n_networks=0)
