"""Analytic infinite-width kernels (sft.kernels.recursion) against ensembles of finite networks (sft.sim.networks).

Estimators (unbiased for the finite-width means): the ensemble mean of the stochastic metric
G^(l) (E[G^(l)] = E[z^(l) z^(l)] exactly) for the NNGP kernel of every layer, and the ensemble mean
of the empirical NTK. Error bar: std over networks (ddof=1) / sqrt(S). Criterion: every entry of the
upper triangle (N = 4 inputs of different norms, 10 entries per layer) has |z| < Z_MAX = 4 at a fixed
seed (max-|z| criterion).

Choice of width n and ensemble size S. At finite width the ensemble means differ from the
infinite-width kernels by a bias b/n (the 1/n corrections, b ~ depth), while the error bar is
sd / sqrt(n S) (per-network fluctuations sd / sqrt(n), sd^2 ~ depth). The bias therefore shifts z by
(b / sd) sqrt(S / n). Measured once with S = 20000 networks of width 32 at depth 3 (these inputs and
constants), |b / sd| <= 0.6 for every entry of relu and erf, NNGP and NTK. With n = 512, S = 48,
depth 3 the shift is <= 0.6 sqrt(48/512) = 0.18, small against the threshold 4, while the relative
error bar ~ 3 / sqrt(n S) ~ 2 % still resolves the kernels. Runtime ~ 2-4 s per activation.
"""
import jax
import numpy as np
import pytest

from sft import kernels
from sft.sim import networks as nw
from sft.conventions import Z_MAX

DEPTH, WIDTH, S = 3, 512, 48
X = np.random.default_rng(0).normal(size=(4, 3)) * np.array([[1.0], [0.5], [1.5], [1.0]])
ACTIVATIONS = {"relu": (2.0, 0.1), "erf": (1.5, 0.05), "tanh": (1.2, 0.1)}
IU = np.triu_indices(X.shape[0])


def z_scores(samples, theory):
    """(mean - theory) / (std(ddof=1) / sqrt(S)) over axis 0, upper-triangle entries of the last two axes."""
    mean = samples.mean(0)
    err = samples.std(0, ddof=1) / np.sqrt(samples.shape[0])
    return ((mean - theory) / err)[..., IU[0], IU[1]]


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_nngp_and_ntk_match_ensemble_means(activation):
    cw, cb = ACTIVATIONS[activation]
    kw = dict(n_ensemble=S, widths=[WIDTH] * DEPTH, activation=activation, C_W=cw, C_b=cb)
    key = jax.random.key(2024)
    k_theory, t_theory = kernels.nngp_and_ntk(X, depth=DEPTH, activation=activation, C_W=cw, C_b=cb,
                                              all_layers=True)
    g = np.asarray(nw.layer_kernels(key, X, **kw))  # (S, depth+1, N, N)
    np.testing.assert_allclose(g[:, 0], np.broadcast_to(k_theory[0], g[:, 0].shape), rtol=1e-13)
    z_nngp = z_scores(g[:, 1:], k_theory[1:])  # layers 2 .. depth+1
    theta = np.asarray(nw.empirical_ntk(key, X, method="backprop", **kw))
    z_ntk = z_scores(theta, t_theory[-1])
    assert np.abs(z_nngp).max() < Z_MAX, z_nngp
    assert np.abs(z_ntk).max() < Z_MAX, z_ntk


def test_output_covariance_matches_nngp():
    """empirical_nngp's output covariance (mean over S networks and n_out = 16 readouts of f_a f_b)
    against K^(depth+1); the same width argument as above applies (the estimator's mean is E[G^(L+1)])."""
    cw, cb = ACTIVATIONS["erf"]
    e = nw.empirical_nngp(jax.random.key(7), X, n_ensemble=S, widths=[WIDTH] * DEPTH, activation="erf",
                          C_W=cw, C_b=cb, n_out=16)
    k = kernels.nngp(X, depth=DEPTH, activation="erf", C_W=cw, C_b=cb)
    z = ((np.asarray(e.covariance) - k) / np.asarray(e.stderr))[IU]
    assert np.abs(z).max() < Z_MAX, z
