"""Exact finite-width Bayesian posterior of an MLP at real sizes (P ~ 100) by Hamiltonian Monte Carlo over its
hidden weights, with the Gaussian readout integrated out exactly.

Model (:mod:`sft.conventions`, NTK parameterization, as :func:`sft.predict.sampled_network_posterior`): hidden
layers l = 1 .. L of widths n_l, z^(l) = sqrt(C_b^(l)) beta_l + sqrt(C_W^(l) / n_{l-1}) sigma(z^(l-1)) omega_l
(z^(0) = x, no sigma on the input), theta = (omega_l, beta_l)_l ~ N(0, I) the hidden parameters; the readout
(weights N(0, C_W^(L+1) / n_L), bias N(0, C_b^(L+1))) and the observation noise eps ~ N(0, sigma^2) on the P
training labels. Given theta the outputs are exactly Gaussian with the readout metric

    G(theta)_ab = C_b^(L+1) + (C_W^(L+1) / n_L) sum_i sigma(z^(L)_ia) sigma(z^(L)_ib),

so integrating the readout out leaves the target (the marginal posterior of the hidden parameters)

    log p(theta | y) = -|theta|^2 / 2 + log N(y; 0, A(theta)) + const,   A = G_train,train + sigma^2 I,

and the posterior of the test outputs is the Rao-Blackwellized mixture (as in sampled_posterior's docstring)

    <f_*> = E[m(G)],   Cov(f_*) = E[C(G) + m m^T] - <f_*><f_*>^T,
    m(G) = G_*,train A^{-1} y,   C(G) = G_** - G_*,train A^{-1} G_train,*,

expectations over p(theta | y). A = L L^T by Cholesky (positive definite: sigma^2 > 0).

Sampler: HMC with the Gaussian prior split off and integrated exactly (Beskos, Pinski, Sanz-Serna & Stuart
2011, "Hybrid Monte Carlo on Hilbert spaces", Stoch. Proc. Appl. 121, 2201, sec. 3; Shahbaba, Lan, Johnson &
Neal 2014, "Split Hamiltonian Monte Carlo", Stat. Comput. 24, 339, sec. 3.1). With H = |theta|^2/2 + |p|^2/2
- ell(theta), ell = log N(y; 0, A), one step of size eps is

    p += (eps/2) grad ell;  (theta, p) <- (theta cos eps + p sin eps, p cos eps - theta sin eps);  p += (eps/2) grad ell

volume preserving and reversible; the rotation conserves the prior part of H exactly, so the energy error
(hence the rejection rate) comes from ell alone, which is weak at large width: the acceptance does not
decay with the number of parameters. ``n_leapfrog`` steps of size eps = ``step_size`` x U(0.8, 1.2) (jittered
per trajectory, against periodic orbits); the default step_size = pi / (2 n_leapfrog) makes a trajectory a
quarter turn of the prior's rotation, after which theta is (for the prior part) independent of its start.
Accept with probability min(1, exp(H_old - H_new)); a non-finite H or gradient is rejected and counted.
Chains start from the prior; chain c uses ``jax.random.fold_in(key, c)``, iteration s of it
``fold_in(that, s)``; chains are ``vmap``-ed, iterations run in ``lax.scan`` under one ``jit`` (compiled once
per activation, shapes, widths and batch layout; noise, C_W, C_b, data and step size are traced).

Error bars and diagnostics. Each chain's draws after burn-in are cut into ``n_batches`` consecutive batches;
the standard errors are the standard deviations of the chains x n_batches batch means over sqrt(their
number) (batch means: honest for autocorrelated draws when a batch is much longer than the integrated
autocorrelation time tau), the covariance's by the delta method on (E[C + m m^T], <f_*>). Reported: the
acceptance rate per chain, the largest split-R-hat and the smallest effective sample size
(:func:`sft.sim.split_rhat`, :func:`sft.sim.effective_sample_size`, Vehtari et al. 2021) over the recorded
scalars (log-likelihood and m(G) at each test point), and tau = draws / ESS. :class:`HMCWarning` when the mean
acceptance < 0.6, R-hat > 1.05, tau > batch length / 5 (batch means would understate the error), or any
proposal had a non-finite energy.

float64 throughout (:func:`sft.conventions.require_x64`); same key -> same result. Tested
(tests/test_hmc_posterior.py) against importance sampling of the metrics (:func:`sft.predict.sampled_network_posterior`,
tanh, P = 3, M = 2, n = 4: mean and covariance within |z| < 4, while the GP posterior and the target with sigma^2
doubled are > 20 sigma off) and, for a linear network without biases, against the exact scale-mixture posterior
(:func:`sft.predict.exact_posterior`); the hand-coded gradient against jax.grad. Two hidden layers (tanh, n = 4, 4)
agreed with importance sampling within |z| < 0.6 in a one-off check (not a test: compile time).

Measured at real size (sims/fig_posterior_real_size.py; this 2-core machine shared with other jobs, load 3-5):
P = M = 100, d = 50, one tanh layer, C_W = 1.5, C_b = 0.1, sigma^2 = 1, 16 chains x (16 + 1024) trajectories of
8 steps: acceptance 0.98 (n = 16) to 0.996 (n = 256), split-R-hat <= 1.001, tau = 1.0-1.15 draws (one trajectory
nearly decorrelates the chain); 23-35 s wall for n = 16-64, 48 s for n = 128, 118 s for n = 256, compilation
(~2-5 s) included. Error bars at that size: two runs with different keys (n = 32, 16 chains x 512 draws, 8
batches) differ by chi^2/dof = 0.88 (100 means), 0.92 (100 variances), 1.07 (4950 off-diagonal covariances) in
units of their combined standard errors, and the batch-means errors of the means equal sd / sqrt(ESS) within
0.86-1.21 (median 1.01).
"""
from __future__ import annotations

import functools
import math
import warnings
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..conventions import check_int, check_key, check_real, check_widths, layer_constants, require_x64
from ..kernels.activations import get_activation
from ..sim.sampling import effective_sample_size, split_rhat
from .posterior_correction import _finite, _inputs

__all__ = ["HMCPosterior", "HMCWarning", "hmc_network_posterior"]

#: warning thresholds (module docstring)
MIN_ACCEPTANCE, MAX_RHAT, MAX_TAU_FRACTION = 0.6, 1.05, 0.2


class HMCWarning(RuntimeWarning):
    """The HMC chains mixed badly: low acceptance, R-hat too large, autocorrelation too long for the batches,
    or non-finite energies (module docstring)."""


class HMCPosterior(NamedTuple):
    """Posterior of the test outputs: mean (M,), cov (M, M), their batch-means standard errors mean_err (M,),
    cov_err (M, M); diagnostics: acceptance (chains,), rhat (largest split-R-hat), ess (smallest effective
    sample size), tau (largest integrated autocorrelation time, in draws), n_rejected_nonfinite; the draws
    of m(G) (chains, draws, M) and of log N(y; 0, A) (chains, draws); run settings (dtype float64)."""

    mean: np.ndarray
    cov: np.ndarray
    mean_err: np.ndarray
    cov_err: np.ndarray
    acceptance: np.ndarray
    rhat: float
    ess: float
    tau: float
    n_rejected_nonfinite: int
    m_draws: np.ndarray
    loglik_draws: np.ndarray
    settings: dict


# ---------------------------------------------------------------------------------- the network
def _features(theta, x, fn, widths, cw, cb):
    """sigma(z^(L)) (N, n_L) of the hidden layers for the flat parameters theta (D,)."""
    h, k, fan_in = x, 0, x.shape[1]
    for l, n in enumerate(widths):
        w = theta[k:k + fan_in * n].reshape(fan_in, n)
        b = theta[k + fan_in * n:k + fan_in * n + n]
        k += fan_in * n + n
        h = fn(jnp.sqrt(cb[l]) * b + h @ w * jnp.sqrt(cw[l] / fan_in))
        fan_in = n
    return h


def _loglik_and_grad(theta, x_train, y, noise, fn, widths, cw, cb):
    """ell = log N(y; 0, A) + P/2 log 2 pi and its gradient: with alpha = A^{-1} y, d ell / dA =
    (alpha alpha^T - A^{-1}) / 2, pulled back through A = C_b + c S S^T (c = C_W / n_L) by the features' vjp
    with cotangent c (alpha (S^T alpha)^T - A^{-1} S) (cheaper to compile and run than differentiating the
    Cholesky factorization). One Cholesky solve A^{-1} [y, 1, S]; returns also (alpha, A^{-1} 1, A^{-1} S, S)."""
    s, pullback = jax.vjp(lambda th: _features(th, x_train, fn, widths, cw, cb), theta)
    c, P = cw[-1] / widths[-1], y.shape[0]
    chol = jnp.linalg.cholesky(cb[-1] + c * s @ s.T + noise * jnp.eye(P))
    sol = jax.scipy.linalg.cho_solve((chol, True), jnp.concatenate([y[:, None], jnp.ones((P, 1)), s], 1))
    alpha, ainv_1, ainv_s = sol[:, 0], sol[:, 1], sol[:, 2:]
    ll = -0.5 * y @ alpha - jnp.sum(jnp.log(jnp.diag(chol)))
    return ll, pullback(c * (jnp.outer(alpha, alpha @ s) - ainv_s))[0], (alpha, ainv_1, ainv_s, s)


def _predict(theta, parts, x_test, fn, widths, cw, cb):
    """m(G) = G_*t alpha (M,) and C(G) + m m^T (M, M) at the test inputs from the training parts of
    _loglik_and_grad, with A^{-1} G_t* = C_b A^{-1} 1 1^T + c A^{-1} S T^T (T the test features): matrix
    products only."""
    alpha, ainv_1, ainv_s, s = parts
    t = _features(theta, x_test, fn, widths, cw, cb)
    c = cw[-1] / widths[-1]
    k = cb[-1] + c * t @ s.T                                                                 # G_*t (M, P)
    m = k @ alpha
    C = cb[-1] + c * t @ t.T - k @ (cb[-1] * ainv_1[:, None] + c * ainv_s @ t.T)
    return m, C + jnp.outer(m, m)


# ---------------------------------------------------------------------------------- the sampler
def _trajectory(theta, ll, g, parts, key, eps0, n_leapfrog, loglik_grad):
    """One split-HMC proposal and its Metropolis test: (theta, ll, g, parts), accepted, non-finite
    (parts: what :func:`_loglik_and_grad` computed at theta, reused by the prediction)."""
    k_eps, k_p, k_u = jax.random.split(key, 3)
    eps = eps0 * jax.random.uniform(k_eps, dtype=theta.dtype, minval=0.8, maxval=1.2)
    p = jax.random.normal(k_p, theta.shape, theta.dtype)
    c, s = jnp.cos(eps), jnp.sin(eps)

    def leap(_, state):
        th, p, _, g, _ = state
        p = p + 0.5 * eps * g
        th, p = th * c + p * s, p * c - th * s
        ll, g, parts = loglik_grad(th)
        return th, p + 0.5 * eps * g, ll, g, parts

    th1, p1, ll1, g1, parts1 = jax.lax.fori_loop(0, n_leapfrog, leap, (theta, p, ll, g, parts))
    log_ratio = (ll1 - 0.5 * th1 @ th1 - 0.5 * p1 @ p1) - (ll - 0.5 * theta @ theta - 0.5 * p @ p)
    bad = ~(jnp.isfinite(log_ratio) & jnp.all(jnp.isfinite(g1)))
    accept = ~bad & (jnp.log(jax.random.uniform(k_u, dtype=theta.dtype)) < log_ratio)
    new = jax.tree_util.tree_map(lambda a, b: jnp.where(accept, a, b), (th1, ll1, g1, parts1),
                                 (theta, ll, g, parts))
    return new, accept, bad


@functools.partial(jax.jit, static_argnums=(1, 2))
def _start(key, n_chains, D):
    """Prior draws theta_c ~ N(0, I_D) (from fold_in(k_init, c)) and the chain keys fold_in(k_run, c)."""
    k_init, k_run = jax.random.split(key)
    chains = jnp.arange(n_chains, dtype=jnp.uint32)
    theta0 = jax.vmap(lambda c: jax.random.normal(jax.random.fold_in(k_init, c), (D,), jnp.float64))(chains)
    return theta0, jax.vmap(lambda c: jax.random.fold_in(k_run, c))(chains)


@functools.partial(jax.jit, static_argnames=("fn", "widths", "n_batches"))
def _run(theta0, keys, x_train, x_test, y, noise, cw, cb, eps0, n_leapfrog, burn_in, batch_len, steps, *, fn,
         widths, n_batches):
    """All chains, burn_in + n_batches x batch_len iterations in one scan (one copy of the trajectory in the
    program). Returns per iteration m(G) and the log-likelihood, the per-batch sums of C + m m^T over the
    recorded iterations, the acceptances and the non-finite counts. steps: the iteration numbers 0 .. burn_in +
    n_draws - 1 (their length fixes the scan; everything else but fn, widths, n_batches is traced)."""
    def loglik_grad(th):
        return _loglik_and_grad(th, x_train, y, noise, fn, widths, cw, cb)

    def chain(th0, key):
        def step(carry, s):
            state, sums = carry
            state, acc, bad = _trajectory(*state, jax.random.fold_in(key, s), eps0, n_leapfrog, loglik_grad)
            m, second = _predict(state[0], state[3], x_test, fn, widths, cw, cb)
            b = jnp.maximum(s.astype(jnp.int32) - burn_in, 0) // batch_len
            sums = sums.at[b].add(jnp.where(s >= burn_in, second, 0.0))
            return (state, sums), (m, state[1], acc, bad)

        M = x_test.shape[0]
        init = ((th0,) + tuple(loglik_grad(th0)), jnp.zeros((n_batches, M, M), th0.dtype))
        (_, sums), out = jax.lax.scan(step, init, steps)
        return (sums,) + out

    return jax.vmap(chain)(theta0, keys)


# ---------------------------------------------------------------------------------- public
def hmc_network_posterior(x_train, y_train, x_test, *, widths, activation, C_W, C_b, noise, key, n_chains=16,
                          n_draws=256, burn_in=32, n_batches=8, n_leapfrog=8, step_size=None) -> HMCPosterior:
    """Posterior mean and covariance of a finite network's outputs at x_test given y_train at x_train, by
    split HMC over the hidden parameters with the readout integrated out (module docstring).

    x_train (P, n_0), y_train (P,), x_test (M, n_0); widths (n_1, .., n_L); C_W, C_b scalars or per layer
    (L + 1, readout last); noise sigma^2 > 0; key a JAX PRNG key; n_chains chains of burn_in + n_draws
    trajectories (n_draws a multiple of n_batches, each batch >= 2 draws); n_leapfrog steps per trajectory
    of size step_size (default pi / (2 n_leapfrog)). float64. Cost per trajectory and chain:
    n_leapfrog gradients of O(P n_0 n_1 + P n_L^2 + P^2 n_L + P^3); memory O(chains (n_batches M^2 + n_draws M)).

    >>> x = np.random.default_rng(3).standard_normal((5, 3))
    >>> r = hmc_network_posterior(x[:3], np.array([1.2, -0.8, 0.5]), x[3:], widths=[4], activation="tanh",
    ...                           C_W=1.5, C_b=0.1, noise=0.2, key=jax.random.key(1), n_chains=32, n_draws=1024,
    ...                           burn_in=16, n_batches=16)   # the configuration of tests/test_hmc_posterior.py
    >>> r.mean.shape, r.cov.shape, bool(np.all(r.mean_err < 0.01)), bool(r.acceptance.mean() > 0.9)
    ((2,), (2, 2), True, True)
    """
    require_x64("sft.predict.hmc_network_posterior")
    x_train = _inputs("x_train", x_train)
    x_test = _inputs("x_test", x_test, x_train.shape[1])
    y = _finite("y_train", y_train, 1)
    if y.shape != (x_train.shape[0],):
        raise ValueError(f"y_train has shape {y.shape}: it must be ({x_train.shape[0]},), one per row of x_train")
    widths = check_widths(widths)
    cw, cb = layer_constants(len(widths), C_W, C_b)
    noise = check_real("noise", noise, minimum=0, strict=True)
    key = check_key("key", key)
    n_chains = check_int("n_chains", n_chains, 2)
    n_batches = check_int("n_batches", n_batches, 2)
    n_draws = check_int("n_draws", n_draws, 2 * n_batches)
    if n_draws % n_batches:
        raise ValueError(f"n_draws={n_draws} is not allowed: it must be a multiple of n_batches={n_batches}")
    burn_in = check_int("burn_in", burn_in, 0)
    n_leapfrog = check_int("n_leapfrog", n_leapfrog, 1)
    step_size = math.pi / (2 * n_leapfrog) if step_size is None else \
        check_real("step_size", step_size, minimum=0, strict=True)
    if burn_in + n_draws >= 2 ** 32:
        raise ValueError(f"burn_in + n_draws = {burn_in + n_draws} is not allowed: iteration s uses "
                         "jax.random.fold_in(key, s) with a uint32 index (< 2**32)")
    act = get_activation(activation)
    n0 = x_train.shape[1]
    D = sum(n * (fan_in + 1) for fan_in, n in zip((n0,) + widths[:-1], widths))
    M = x_test.shape[0]
    n_bytes = 8.0 * n_chains * (n_batches * M * M + n_draws * (M + 1))
    if n_bytes > 2e9:
        raise ValueError(f"n_chains={n_chains}, n_batches={n_batches}, n_draws={n_draws} at M={M} test points "
                         f"would record ~{n_bytes:.3g} bytes (> 2e9): use fewer chains, batches or draws")
    theta0, keys = _start(key, n_chains, D)
    batch_len = n_draws // n_batches
    sums, m, ll, acc, bad = _run(theta0, keys, jnp.asarray(x_train), jnp.asarray(x_test), jnp.asarray(y), noise,
                                 jnp.asarray(cw), jnp.asarray(cb), step_size, n_leapfrog, burn_in, batch_len,
                                 jnp.arange(burn_in + n_draws, dtype=jnp.uint32), fn=act.fn, widths=widths,
                                 n_batches=n_batches)
    m, ll = (np.asarray(a, dtype=np.float64)[:, burn_in:] for a in (m, ll))
    acc = np.asarray(acc)[:, burn_in:].mean(1)
    n_bad = int(np.sum(np.asarray(bad)))
    groups = n_chains * n_batches
    bm = m.reshape(n_chains, n_batches, batch_len, M).mean(2).reshape(groups, M)
    bs = np.asarray(sums, dtype=np.float64).reshape(groups, M, M) / batch_len
    mean, second = bm.mean(0), bs.mean(0)
    cov = second - np.outer(mean, mean)
    lin = bs - mean[None, :, None] * bm[:, None, :] - bm[:, :, None] * mean[None, None, :]
    mean_err = bm.std(0, ddof=1) / math.sqrt(groups)
    cov_err = lin.std(0, ddof=1) / math.sqrt(groups)
    scalars = [ll] + [m[:, :, j] for j in range(M)]
    rhat = max(split_rhat(s) for s in scalars)
    ess = min(effective_sample_size(s) for s in scalars)
    tau = n_chains * n_draws / ess
    problems = []
    if acc.mean() < MIN_ACCEPTANCE:
        problems.append(f"mean acceptance {acc.mean():.3f} < {MIN_ACCEPTANCE} (raise n_leapfrog={n_leapfrog} "
                        f"at fixed trajectory length, i.e. lower step_size={step_size:.3g})")
    if rhat > MAX_RHAT:
        problems.append(f"split-R-hat {rhat:.3f} > {MAX_RHAT} (the chains disagree: more burn_in or draws)")
    if tau > MAX_TAU_FRACTION * batch_len:
        problems.append(f"autocorrelation time tau = {tau:.3g} draws > {MAX_TAU_FRACTION} x batch length "
                        f"{batch_len} (batch means understate the error: fewer, longer batches or more draws)")
    if n_bad:
        problems.append(f"{n_bad} proposals had a non-finite energy or gradient and were rejected")
    if problems:
        warnings.warn("hmc_network_posterior: " + "; ".join(problems), HMCWarning, stacklevel=2)
    settings = dict(widths=widths, activation=act.name, n_chains=n_chains, n_draws=n_draws, burn_in=burn_in,
                    n_batches=n_batches, n_leapfrog=n_leapfrog, step_size=step_size, dtype="float64")
    return HMCPosterior(mean, 0.5 * (cov + cov.T), mean_err, 0.5 * (cov_err + cov_err.T), acc, float(rhat),
                        float(ess), float(tau), n_bad, m, ll, settings)
