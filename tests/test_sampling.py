"""sft.sim.sampling against exact results.

Diagnostics: on AR(1) chains x_t = phi x_{t-1} + sqrt(1 - phi^2) eps_t (stationary start), whose ESS
is m n (1 - phi) / (1 + phi); the replica mean of the estimator is compared with |z| < Z_MAX. (The
estimator has a known O(tau / n) downward bias from subtracting each chain's mean, ~2% here: at
phi = 0.6 the 40-replica mean is 1956 vs 2000, z = -2.3; far more replicas would resolve it.)
Sampler: (i) a Gaussian posterior known exactly (linear readout on fixed random features = Bayesian
linear regression = GP with the feature kernel, sft.predict.gp_posterior); (ii) a 1-D double well
with moments by quadrature. Error bars of the MCMC means are std / sqrt(ESS).
"""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import quad

from sft.conventions import Z_MAX
from sft.sim import apply, init_params
from sft.predict import gp_posterior
from sft.sim import (effective_sample_size, mala, network_log_posterior, sample_network_posterior,
                          split_rhat)


def ar1(rng, phi, shape):
    """Stationary AR(1) chains with unit marginal variance, shape (chains, draws)."""
    x = np.empty(shape)
    x[:, 0] = rng.normal(size=shape[0])
    eps = rng.normal(size=shape) * math.sqrt(1 - phi ** 2)
    for t in range(1, shape[1]):
        x[:, t] = phi * x[:, t - 1] + eps[:, t]
    return x


def mcmc_z(samples, theory):
    """z-score of the mean of (chains, draws) samples against ``theory``, error bar std / sqrt(ESS)."""
    s = np.asarray(samples)
    return (s.mean() - theory) / (s.std() / math.sqrt(effective_sample_size(s)))


@pytest.mark.parametrize("phi", [0.0, 0.6])
def test_ess_of_ar1_chains(phi):
    rng = np.random.default_rng(1)
    m, n, replicas = 4, 2000, 40
    ess = np.array([effective_sample_size(ar1(rng, phi, (m, n))) for _ in range(replicas)])
    theory = m * n * (1 - phi) / (1 + phi)
    z = (ess.mean() - theory) / (ess.std(ddof=1) / math.sqrt(replicas))
    assert abs(z) < Z_MAX, (ess.mean(), theory, z)


def test_rhat_iid_and_mismatched():
    rng = np.random.default_rng(2)
    iid = rng.normal(size=(8, 4000))
    # iid: R^2 - 1 = (F - 1)/n with F = B/W ~ chi2_{15}/15 <= 4 with overwhelming probability, n = 2000.
    assert abs(split_rhat(iid) - 1) < 3 / 2000
    # chain means 0, 0.5, .., 3.5: var(means) = 1.5 (ddof=1 over 16 halves), R -> sqrt(2.5) = 1.58.
    shifted = iid + np.arange(8)[:, None] * 0.5
    assert split_rhat(shifted) > 1.5
    # linear drift 0 -> 3 within every chain: half means 0.75 and 2.25, W -> 1 + 1.5^2/12, var of the
    # 16 half means -> 0.6, R -> sqrt(1 + 0.6 / 1.1875) = 1.23 (only split-R-hat sees this).
    trend = iid + np.linspace(0, 3, 4000)
    assert split_rhat(trend) > 1.2


def test_diagnostics_reject_bad_input():
    with pytest.raises(ValueError, match="chains"):
        effective_sample_size(np.zeros(10))
    with pytest.raises(ValueError, match="NaN"):
        split_rhat(np.full((2, 10), np.nan))


def test_mala_double_well_moments():
    """log p = -x^4/4 + x^2 (modes at +-sqrt(2), barrier 1): E[x^2], E[x^4] by quadrature."""
    logp = lambda x: -x[0] ** 4 / 4 + x[0] ** 2
    Z = quad(lambda x: math.exp(-x ** 4 / 4 + x ** 2), -np.inf, np.inf)[0]
    moments = {k: quad(lambda x: x ** k * math.exp(-x ** 4 / 4 + x ** 2), -np.inf, np.inf)[0] / Z
               for k in (2, 4)}
    init = jax.random.normal(jax.random.key(3), (16, 1))
    r = mala(logp, init, jax.random.key(4), step_size=0.3, n_steps=4000, burn_in=500, thin=2)
    x = np.asarray(r.samples[..., 0])
    assert x.shape == (16, 2000)
    assert 0.5 < float(r.acceptance_rate.mean()) < 1.0
    assert split_rhat(x ** 2) < 1.05
    for k, exact in moments.items():
        z = mcmc_z(x ** k, exact)
        assert abs(z) < Z_MAX, (k, exact, z)
    assert abs(mcmc_z(x, 0.0)) < Z_MAX


def test_network_posterior_readout_on_fixed_features_is_the_gp_posterior():
    """Readout (omega, beta) of a one-hidden-layer network, first layer frozen: f = phi . theta with
    phi = (sqrt(C_W/n) tanh(z^(1)), sqrt(C_b)), prior theta ~ N(0, I), so the tempered posterior is the
    GP posterior with kernel K = C_b + (C_W/n) h h^T and noise variance sigma^2 T."""
    n, C_W, C_b, noise, T = 20, 1.5, 0.1, 0.1, 2.0
    xtr, xte = np.linspace(-2, 2, 6)[:, None], np.array([[-0.3], [1.7]])
    y = np.sin(2 * xtr[:, 0])
    chains = 16
    init = init_params(jax.random.key(5), n_ensemble=chains, in_dim=1, widths=[n])
    r = sample_network_posterior(jax.random.key(6), xtr, y, xte, widths=[n], activation="tanh",
                                 C_W=C_W, C_b=C_b, noise=noise, temperature=T, n_chains=chains,
                                 step_size=0.02, n_steps=6000, burn_in=1000, thin=2, trainable=[2],
                                 init=init)
    f = np.asarray(r.samples)
    assert f.shape == (chains, 3000, 2)
    assert 0.4 < float(r.acceptance_rate.mean()) < 1.0
    w1, b1 = np.asarray(init[0][0][0]), np.asarray(init[0][1][0])
    h = lambda xs: np.tanh(math.sqrt(C_b) * b1 + math.sqrt(C_W) * xs @ w1)
    K = lambda a, b: C_b + C_W / n * h(a) @ h(b).T
    post = gp_posterior(K(xtr, xtr), K(xte, xtr), K(xte, xte), y, noise=noise * T)
    for i in range(2):
        assert split_rhat(f[..., i]) < 1.05
        assert abs(mcmc_z(f[..., i], post.mean[i])) < Z_MAX
        assert abs(mcmc_z((f[..., i] - post.mean[i]) ** 2, post.cov[i, i])) < Z_MAX


def test_network_log_posterior_formula():
    p = [(w[0], b[0]) for w, b in init_params(jax.random.key(7), n_ensemble=1, in_dim=2, widths=[3])]
    x, y = jnp.array([[0.1, 0.2], [0.3, -1.0]]), jnp.array([0.5, -0.2])
    f = apply(p, x, activation="relu", C_W=2.0, C_b=0.1)[:, 0]
    sq = sum(float(jnp.sum(w ** 2) + jnp.sum(b ** 2)) for w, b in p)
    expected = -sq / 2 - float(jnp.sum((f - y) ** 2)) / (2 * 0.3 * 1.5)
    got = network_log_posterior(p, x, y, activation="relu", C_W=2.0, C_b=0.1, noise=0.3,
                                temperature=1.5)
    assert abs(float(got) - expected) <= 1e-12 * abs(expected)


def test_network_posterior_all_layers_runs():
    x = np.array([[0.0], [1.0], [-1.0]])
    r = sample_network_posterior(jax.random.key(8), x, np.array([0.0, 1.0, -1.0]), x[:2], widths=[4, 4],
                                 activation="tanh", C_W=1.0, C_b=0.1, noise=0.1, temperature=1.0,
                                 n_chains=3, step_size=0.01, n_steps=20, thin=5)
    assert r.samples.shape == (3, 4, 2) and r.acceptance_rate.shape == (3,)
    assert np.all(np.isfinite(np.asarray(r.samples)))


@pytest.mark.parametrize("kw, name", [(dict(step_size=0.0), "step_size"), (dict(n_steps=0), "n_steps"),
                                      (dict(thin=3), "n_steps"), (dict(burn_in=-1), "burn_in")])
def test_mala_rejects_bad_input(kw, name):
    args = dict(step_size=0.1, n_steps=4, burn_in=0, thin=1) | kw
    with pytest.raises(ValueError, match=name):
        mala(lambda x: -x @ x, jnp.zeros((2, 2)), jax.random.key(0), **args)
    with pytest.raises(ValueError, match="init"):
        mala(lambda x: -x @ x, jnp.zeros(2), jax.random.key(0), step_size=0.1, n_steps=1)


@pytest.mark.parametrize("kw, name", [(dict(noise=0.0), "noise"), (dict(temperature=-1.0), "temperature"),
                                      (dict(y=np.zeros(2)), "y_train"), (dict(trainable=[3]), "trainable")])
def test_network_posterior_rejects_bad_input(kw, name):
    x = np.zeros((3, 1))
    args = dict(widths=[2], activation="tanh", C_W=1.0, C_b=0.0, noise=0.1, temperature=1.0,
                n_chains=2, step_size=0.1, n_steps=1) | kw
    y = args.pop("y", np.zeros(3))
    with pytest.raises(ValueError, match=name):
        sample_network_posterior(jax.random.key(0), x, y, x, **args)
