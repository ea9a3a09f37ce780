"""sft.sim.sgld (TLBP sampling) against exact tempered posteriors; warnings and bad input.

Statistical checks: the LLC-type average nbeta (E[L_n] - L_n(w*)) (sft.sim.llc_from_samples, error bar
from the spread of independent chains) against an exact value, |z| < Z_MAX at fixed seeds, float64.
- full-batch SGLD on a quadratic with a gradient at w*: the exact stationary law of the discretized
  chain (an AR(1) process, derivations/llc_gaussian.py items 1 and 3); the continuous-time value
  differs by the step-size bias, which the run resolves (MALA, exact, is checked in test_llc.py);
- minibatch SGLD on realizable linear regression (zero residuals, so the minibatch gradient at w* is
  exact; the remaining minibatch noise comes from H_B - H and adds a relative variance of order
  eps nbeta^2 Var(H_B) / (4 A) ~ 1e-3, below the error bar): the full-batch SGLD value.
"""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sft.conventions import Z_MAX
from sft.sim import (TLBPWarning, default_nbeta, estimate_llc, init_params, llc_from_samples, network_loss,
                     quadratic_llc, sample_tlbp)

ROT = np.linalg.qr(np.random.default_rng(3).normal(size=(3, 3)))[0]
HESS = ROT @ np.diag([0.25, 1.0, 4.0]) @ ROT.T


def quadratic(grad=None):
    g = np.zeros(3) if grad is None else grad
    H, gj = jnp.asarray(HESS), jnp.asarray(g)
    return lambda w: 0.7 + gj @ w + 0.5 * w @ H @ w


def z_score(est, exact):
    return (est.llc - exact) / est.stderr


def test_sgld_quadratic_matches_discretized_stationary_law():
    """Quadratic with a gradient at w*: the AR(1) law of the discretized chain (mean -nbeta A^-1 g as
    in the exact posterior, variance 1/(A (1 - eps A/4))), not the continuous-time value."""
    nbeta, gamma, eps = 20.0, 1.0, 0.02
    g = np.array([0.05, -0.05, 0.05])   # nbeta g.H^-1.g / 2 < 1: no draw can fall a temperature below L*
    r = sample_tlbp(quadratic(g), jnp.zeros(3), jax.random.key(1), nbeta=nbeta, gamma=gamma,
                    step_size=eps, n_chains=64, n_steps=1000, burn_in=300, thin=2, record=lambda w: w)
    est = llc_from_samples(r)
    exact = quadratic_llc(HESS, nbeta=nbeta, gamma=gamma, gradient=g, step_size=eps)
    continuous = quadratic_llc(HESS, nbeta=nbeta, gamma=gamma, gradient=g)
    assert abs(z_score(est, exact)) < Z_MAX, (est, exact)
    assert abs(z_score(est, continuous)) > Z_MAX, (est, continuous)   # the O(eps) bias is resolved
    assert est.rhat < 1.05 and est.ess > 500, est
    # the two error bars (between chains; pooled draws with ESS) agree within 25%
    assert abs(est.stderr_ess / est.stderr - 1) < 0.25, est
    assert r.samples.shape == (64, 500, 3) and r.acceptance_rate is None


def test_minibatch_sgld_on_linear_regression():
    rng = np.random.default_rng(4)
    n, d, b = 64, 3, 8
    x = rng.normal(size=(n, d))
    w_true = np.array([1.0, -0.5, 0.3])
    y = x @ w_true                                      # realizable: w* = w_true, zero residuals
    loss = lambda w, batch: 0.5 * jnp.mean((batch[0] @ w - batch[1]) ** 2)
    nbeta, gamma, eps = default_nbeta(n), 1.0, 0.01
    r = sample_tlbp(loss, jnp.asarray(w_true), jax.random.key(5), data=(x, y), gamma=gamma,
                    step_size=eps, batch_size=b, n_chains=32, n_steps=800, burn_in=200, thin=2)
    assert r.nbeta == pytest.approx(n / math.log(n))
    est = llc_from_samples(r)
    exact = quadratic_llc(x.T @ x / n, nbeta=nbeta, gamma=gamma, step_size=eps)
    assert abs(z_score(est, exact)) < Z_MAX, (est, exact)


def test_network_loss_and_determinism():
    p = [(w[0], b[0]) for w, b in init_params(jax.random.key(0), n_ensemble=1, in_dim=2, widths=[4])]
    x = np.random.default_rng(0).normal(size=(5, 2))
    y = np.arange(5.0)
    prob = network_loss(p, x, y, activation="tanh", C_W=1.5, C_b=0.1)
    from sft.sim import apply
    f = np.asarray(apply(p, x, activation="tanh", C_W=1.5, C_b=0.1))[:, 0]
    assert float(prob.loss(prob.w_star, prob.data)) == pytest.approx(0.5 * np.mean((f - y) ** 2), rel=1e-12)
    kw = dict(data=prob.data, nbeta=5.0, gamma=10.0, step_size=1e-3, n_chains=2, n_steps=8,
              batch_size=2)
    with pytest.warns(TLBPWarning, match="not a local minimum"):   # w* is the init, not trained
        r1 = sample_tlbp(prob.loss, prob.w_star, jax.random.key(7), **kw)
    with pytest.warns(TLBPWarning, match="not a local minimum"):
        r2 = sample_tlbp(prob.loss, prob.w_star, jax.random.key(7), **kw)
    np.testing.assert_array_equal(r1.loss, r2.loss)             # same seed, same result
    with pytest.warns(TLBPWarning, match="not a local minimum"):
        est = estimate_llc(prob.loss, prob.w_star, jax.random.key(7), **kw)
    assert est.llc == llc_from_samples(r1).llc and est.nbeta == 5.0
    kw_t = {k: v for k, v in kw.items() if k != "nbeta"}
    with pytest.warns(TLBPWarning, match="not a local minimum"):   # temperature t = 1/nbeta
        r3 = sample_tlbp(prob.loss, prob.w_star, jax.random.key(7), temperature=0.2, **kw_t)
    np.testing.assert_array_equal(r1.loss, r3.loss)
    assert r1.loss.dtype == np.float64 and r1.dim == prob.w_star.shape[0] == 17


def test_warnings_divergence_and_basin():
    quartic = lambda w: jnp.sum(w ** 4)                        # zero Hessian at w* = 0
    with pytest.warns(TLBPWarning, match="diverged"):
        sample_tlbp(quartic, jnp.zeros(1), jax.random.key(0), nbeta=100.0, gamma=0.0,
                    step_size=10.0, n_chains=2, n_steps=20)
    with pytest.warns(TLBPWarning, match="accepted < 5%"):      # MALA from the mode, eps gamma >> sqrt(8/D)
        sample_tlbp(lambda w: 0.5 * w @ w, jnp.zeros(50), jax.random.key(0), nbeta=1.0, gamma=1.0,
                    method="mala", step_size=2.0, n_chains=2, n_steps=20)
    well = lambda w: jnp.sum(1 - jnp.exp(-w ** 2))             # a basin of depth 1 per coordinate
    with pytest.warns(TLBPWarning, match="left the basin"):      # gamma = 0: p_t is flat far out
        sample_tlbp(well, jnp.zeros(2), jax.random.key(0), nbeta=3.0, gamma=0.0, step_size=0.5,
                    n_chains=2, n_steps=400, thin=4)


@pytest.mark.parametrize("kw, match", [
    (dict(temperature=0.0), "temperature=0.0"),
    (dict(temperature=-1.0), "temperature=-1.0"),
    (dict(nbeta=float("nan")), "nbeta=nan"),
    (dict(nbeta=1.0, temperature=1.0), "not both"),
    (dict(gamma=-0.1), "gamma=-0.1"),
    (dict(step_size=0.0), "step_size=0.0"),
    (dict(step_size=1.0), "step_size=1.0 is not allowed: SGLD diverges"),
    (dict(method="hmc"), "method='hmc'"),
    (dict(n_steps=7, thin=2), "multiple of thin"),
    (dict(init=jnp.full((2, 3), jnp.nan)), "init contains NaN"),
    (dict(batch_size=2), "needs data"),
])
def test_bad_input(kw, match):
    args = dict(nbeta=10.0, gamma=1.0, step_size=0.01, n_chains=2, n_steps=4)
    args.update(kw)
    if "temperature" in kw and "nbeta" not in kw:
        args.pop("nbeta")
    with pytest.raises(ValueError, match=match):
        sample_tlbp(quadratic(), jnp.zeros(3), jax.random.key(0), **args)


def test_bad_data_and_reference_point():
    loss = lambda w, batch: jnp.mean(batch[0] @ w)
    kw = dict(nbeta=1.0, gamma=1.0, step_size=0.01, n_chains=2, n_steps=4)
    with pytest.raises(ValueError, match="n >= 1"):
        sample_tlbp(loss, jnp.zeros(2), jax.random.key(0), data=(np.zeros((0, 2)),), **kw)
    with pytest.raises(ValueError, match="data leaf 0 contains NaN"):
        sample_tlbp(loss, jnp.zeros(2), jax.random.key(0), data=(np.full((3, 2), np.nan),), **kw)
    with pytest.raises(ValueError, match="w_star contains NaN"):
        sample_tlbp(loss, jnp.array([0.0, np.nan]), jax.random.key(0), data=(np.ones((3, 2)),), **kw)
    with pytest.raises(ValueError, match="batch_size=4"):
        sample_tlbp(loss, jnp.zeros(2), jax.random.key(0), data=(np.ones((3, 2)),), batch_size=4, **kw)
    with pytest.raises(ValueError, match="n are all None"):
        sample_tlbp(lambda w: w @ w, jnp.zeros(2), jax.random.key(0), gamma=1.0, step_size=0.01,
                    n_chains=2, n_steps=4)
    with pytest.raises(ValueError, match="n=1 is not allowed"):
        default_nbeta(1)
