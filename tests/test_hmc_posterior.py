"""sft.predict.hmc_network_posterior: split HMC over the hidden weights, readout integrated out, against
independent routes: importance sampling of the metrics (sampled_network_posterior) for tanh, and the exact
scale-mixture posterior of a linear network (exact_posterior). Power: the same z-test rejects the n = infinity
(GP) posterior and a target with sigma^2 doubled. All float64; seeds fixed."""
import jax
import numpy as np
import pytest

from sft.conventions import Z_MAX
from sft.kernels import nngp
from sft.predict import (HMCWarning, exact_posterior, gp_posterior, hmc_network_posterior,
                         sampled_network_posterior)

WIDTH, NOISE = 4, 0.2
TANH = dict(activation="tanh", C_W=1.5, C_b=0.1)
LINEAR = dict(activation="linear", C_W=1.5, C_b=0.0)      # exact_posterior's network has no biases
RUN = dict(n_chains=32, n_draws=1024, burn_in=16, n_batches=16)


@pytest.fixture(scope="module")
def task():
    """P = 3 training points with labels, M = 2 test points, d = 3."""
    x = np.random.default_rng(3).standard_normal((5, 3))
    return x[:3], np.array([1.2, -0.8, 0.5]), x[3:]


def _zmax(r, mean, cov, mean_err=0.0, cov_err=0.0):
    """Largest |z| over the posterior mean and the upper triangle of the covariance."""
    iu = np.triu_indices(len(mean))
    z_mean = (r.mean - mean) / np.hypot(r.mean_err, mean_err)
    z_cov = ((r.cov - cov) / np.hypot(r.cov_err, cov_err))[iu]
    return float(np.max(np.abs(np.concatenate([z_mean, z_cov]))))


def _gp(task, net, noise):
    xtr, y, xte = task
    K = np.asarray(nngp(np.concatenate([xtr, xte]), depth=1, **net))
    g = gp_posterior(K[:3, :3], K[3:, :3], K[3:, 3:], y, noise=noise)
    return g.mean, g.cov


def test_tanh_agrees_with_importance_sampling_rejects_wrong_targets_and_is_reproducible(task):
    xtr, y, xte = task
    r = hmc_network_posterior(*task, widths=[WIDTH], noise=NOISE, key=jax.random.key(1), **TANH, **RUN)
    assert r.acceptance.mean() > 0.9 and r.rhat < 1.05 and r.tau < 3
    s = sampled_network_posterior(np.concatenate([xtr, xte]), y, train=[0, 1, 2], test=[3, 4], widths=[WIDTH],
                                  noise=NOISE, n_networks=30_000, rng=np.random.default_rng(0), **TANH)
    assert _zmax(r, s.mean, s.cov, s.mean_err, s.cov_err) < Z_MAX
    # power: the n = infinity posterior and a target with sigma^2 off by 2x fail the same test
    assert _zmax(r, *_gp(task, TANH, NOISE)) > Z_MAX
    wrong = hmc_network_posterior(*task, widths=[WIDTH], noise=2 * NOISE, key=jax.random.key(1), **TANH, **RUN)
    assert _zmax(wrong, s.mean, s.cov, s.mean_err, s.cov_err) > Z_MAX
    # same key -> same draws (same compiled program, so run here: one compilation per test process)
    again = hmc_network_posterior(*task, widths=[WIDTH], noise=NOISE, key=jax.random.key(1), **TANH, **RUN)
    np.testing.assert_array_equal(again.m_draws, r.m_draws)
    np.testing.assert_array_equal(again.cov, r.cov)
    # one leapfrog step of size 2.5 (a near half turn): most proposals rejected -> HMCWarning
    with pytest.warns(HMCWarning, match="acceptance"):
        hmc_network_posterior(*task, widths=[WIDTH], noise=NOISE, key=jax.random.key(1), n_leapfrog=1,
                              step_size=2.5, **TANH, **RUN)


def test_linear_network_equals_the_exact_scale_mixture(task):
    r = hmc_network_posterior(*task, widths=[WIDTH], noise=NOISE, key=jax.random.key(2), **LINEAR, **RUN)
    # the scale U = chi^2_4 / 4 reaches near 0: a wider quadrature window than the default 14 sd
    ex = exact_posterior(*task, widths=[WIDTH], C_W=LINEAR["C_W"], temperature=NOISE, n_sd=40)
    assert _zmax(r, ex.mean, ex.cov) < Z_MAX
    assert _zmax(r, *_gp(task, LINEAR, NOISE)) > Z_MAX


def test_target_and_its_hand_coded_gradient(task):
    """log N(y; 0, A(theta)) + P/2 log 2 pi (Cholesky route) against numpy's slogdet and solve at a random theta
    (two hidden layers), and its vjp-built gradient against jax.grad of that direct Gaussian log density."""
    import jax.numpy as jnp
    from sft.predict.hmc_posterior import _features, _loglik_and_grad
    xtr, y, _ = task
    widths, cw, cb = (4, 3), jnp.array([1.5, 1.2, 0.8]), jnp.array([0.1, 0.2, 0.3])
    theta = jnp.asarray(np.random.default_rng(0).standard_normal(4 * 4 + 3 * 5))

    def metric(th):
        s = _features(th, jnp.asarray(xtr), jnp.tanh, widths, cw, cb)
        return cb[-1] + cw[-1] / widths[-1] * s @ s.T + NOISE * jnp.eye(3)

    def both(th):   # one compilation: the library's value and gradient, the metric, jax.grad of the direct density
        ll, g, _ = _loglik_and_grad(th, jnp.asarray(xtr), jnp.asarray(y), NOISE, jnp.tanh, widths, cw, cb)
        direct = jax.grad(lambda u: -0.5 * y @ jnp.linalg.solve(metric(u), y) - 0.5 * jnp.linalg.slogdet(metric(u))[1])
        return ll, g, metric(th), direct(th)

    ll, g, A, g_ref = jax.jit(both)(theta)
    A = np.asarray(A)
    ref = -0.5 * y @ np.linalg.solve(A, y) - 0.5 * np.linalg.slogdet(A)[1]
    assert abs(float(ll) - ref) < 1e-12 * max(1.0, abs(ref))
    assert float(jnp.max(jnp.abs(g - g_ref))) < 1e-10 * float(jnp.max(jnp.abs(g_ref)))


@pytest.mark.parametrize("change, match", [
    (dict(noise=0.0), "noise"), (dict(noise=float("nan")), "noise"), (dict(widths=[0]), "widths"),
    (dict(key=0), "key"), (dict(n_draws=100, n_batches=8), "n_draws"), (dict(n_chains=1), "n_chains"),
    (dict(step_size=-1.0), "step_size"), (dict(C_W=-1.0), "C_W"), (dict(y_train=[1.0, np.nan, 0.0]), "y_train"),
    (dict(y_train=[1.0, 0.0]), "y_train"), (dict(x_test=np.zeros((2, 4))), "x_test"),
    (dict(activation="nope"), "nope")])
def test_bad_input(task, change, match):
    xtr, y, xte = task
    kw = dict(x_train=xtr, y_train=y, x_test=xte, widths=[WIDTH], noise=NOISE, key=jax.random.key(0), **TANH)
    kw.update(change)
    with pytest.raises(ValueError, match=match):
        hmc_network_posterior(**kw)
