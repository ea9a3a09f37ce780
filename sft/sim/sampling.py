"""Bayesian posterior sampling of finite networks: Metropolis-adjusted Langevin (MALA) and diagnostics.

Target (network posterior at temperature T, :func:`network_log_posterior`). The trained parameters
theta = (omega, beta) of the NTK parameterization (:mod:`sft.sim.networks`) have the standard-normal prior
of the initialization; labels y_a = f_theta(x_a) + eps_a, eps_a ~ N(0, sigma^2); the likelihood is
tempered by 1/T:

    log p(theta | X, y) = -|theta|^2 / 2 - (1/T) sum_{a=1..P} (f_theta(x_a) - y_a)^2 / (2 sigma^2) + const.

At T = 1 this is the Bayesian posterior; for any T it equals the T = 1 posterior with noise variance
sigma^2 T. ``noise`` is the variance sigma^2. Layers may be frozen (held at given values, shared by all
chains): the density is then the posterior of the trainable layers conditioned on the frozen ones.

Sampler (:func:`mala`; Roberts & Tweedie 1996, Bernoulli 2, 341, eqs. for the "MALA" algorithm). With
h = ``step_size`` (the variance of the proposal noise), from x the proposal is

    x' = x + (h/2) grad log p(x) + sqrt(h) xi,   xi ~ N(0, I),

accepted with probability min(1, p(x') q(x | x') / (p(x) q(x' | x))), where
q(x' | x) ∝ exp(-|x' - x - (h/2) grad log p(x)|^2 / (2h)). This leaves p exactly invariant (no
step-size bias). Chain c draws its randomness from ``jax.random.fold_in(key, c)`` and step s of it from
``fold_in(that, s)``. Chains are ``vmap``-ed, steps run in ``lax.scan`` under one ``jit``.

Diagnostics (pure numpy functions on (chains, draws) arrays): :func:`split_rhat` and
:func:`effective_sample_size`, both as in Vehtari, Gelman, Simpson, Carpenter & Buerkner 2021,
"Rank-normalization, folding, and localization: an improved R-hat" (Bayesian Analysis 16, 667),
eqs. (3)-(4) and (10)-(11) without rank normalization, with Geyer's (1992) initial positive sequence.
"""
from __future__ import annotations

import math
import warnings
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from ..conventions import check_array, check_int, check_key, check_real, check_widths, layer_constants, require_x64
from .networks import apply, init_params

__all__ = ["MALAResult", "mala", "network_log_posterior", "sample_network_posterior",
           "effective_sample_size", "split_rhat"]


class MALAResult(NamedTuple):
    """samples: (chains, draws, ...) the recorded quantity (``record(x)``, default x itself) after
    burn-in, every ``thin``-th step; acceptance_rate: (chains,) fraction of accepted proposals after
    burn-in."""
    samples: jax.Array
    acceptance_rate: jax.Array


# ------------------------------------------------------------------------------------- checks
def _check_chain_cost(what, init, record, total_steps, draws):
    """ValueError, with the estimate, for chains that cannot run: step s draws its key from
    ``fold_in(chain_key, s)`` with a uint32 index (so burn_in + n_steps <= 2**32), and the recorded draws
    (chains x draws x record size, float64) must fit in ``sft.sim.networks.MAX_BYTES``."""
    from . import networks
    if total_steps > networks.MAX_NETWORKS:
        raise ValueError(f"{what}: burn_in + n_steps = {total_steps} is not allowed: step s uses "
                         f"jax.random.fold_in(key, s) with a uint32 index, so at most 2**32 steps per call")
    size = math.prod(jax.eval_shape(record, jax.ShapeDtypeStruct(init.shape[1:], init.dtype)).shape)
    n_bytes = 8.0 * init.shape[0] * draws * size
    if n_bytes > networks.MAX_BYTES:
        raise ValueError(f"{what} is too large: the recorded draws would take ~{n_bytes:.3g} bytes "
                         f"({init.shape[0]} chains x {draws} draws x {size} values), above the limit "
                         f"{networks.MAX_BYTES:.3g} (sft.sim.networks.MAX_BYTES); raise thin or record less")


def _count(name, value, minimum):
    return check_int(name, value, minimum)


def _positive(name, value):
    return check_real(name, value, minimum=0, strict=True)


def _key(key):
    return check_key("key", key)


def _data(xname, x, yname, y, n_0=None, rows="P", dtype=jnp.float64):
    """Inputs x (rows, n_0), rows >= 1 when labels y (rows,) are given; finite when concrete (not traced).
    ``dtype=None`` keeps the dtypes of x and y."""
    x = x if isinstance(x, jax.core.Tracer) else jnp.asarray(check_array(xname, x, dtype=None, min_size=0), dtype)
    if x.ndim != 2 or (yname is not None and x.shape[0] < 1) or (n_0 is not None and x.shape[1] != n_0):
        want = f"({rows}, n_0)" if n_0 is None else f"({rows}, {n_0}) (n_0 = the input dimension)"
        raise ValueError(f"{xname} has shape {x.shape}: it must be {want}"
                         + (f" with {rows} >= 1" if yname is not None else ""))
    arrays = [(xname, x)]
    if yname is not None:
        y = y if isinstance(y, jax.core.Tracer) else jnp.asarray(check_array(yname, y, dtype=None, min_size=0), dtype)
        if y.shape != (x.shape[0],):
            raise ValueError(f"{yname} has shape {y.shape}: it must be (P,) = ({x.shape[0]},), one "
                             f"label per row of {xname}")
        arrays.append((yname, y))
    for name, a in arrays:
        if not isinstance(a, jax.core.Tracer) and not np.all(np.isfinite(np.asarray(a))):
            raise ValueError(f"{name} contains NaN or inf: {name} must be finite")
    return x, y


# ---------------------------------------------------------------------------------------- MALA
def _mala_chain(logdensity, record, x0, key, h, burn_in, n_draws, thin):
    """One chain: burn_in steps, then n_draws x thin steps recording every thin-th state. Returns
    (samples, acceptance rate after burn-in, number of proposals with a non-finite log density or
    gradient over all steps; those are rejected)."""
    value_and_grad = jax.value_and_grad(logdensity)

    def step(state, s):
        x, lp, g = state
        k_noise, k_accept = jax.random.split(jax.random.fold_in(key, s))
        mean_fwd = x + 0.5 * h * g
        xp = mean_fwd + math.sqrt(h) * jax.random.normal(k_noise, x.shape, x.dtype)
        lpp, gp = value_and_grad(xp)
        mean_bwd = xp + 0.5 * h * gp
        log_ratio = (lpp - lp - jnp.sum((x - mean_bwd) ** 2) / (2 * h)
                     + jnp.sum((xp - mean_fwd) ** 2) / (2 * h))
        bad = ~(jnp.isfinite(lpp) & jnp.all(jnp.isfinite(gp)))
        accept = ~bad & (jnp.log(jax.random.uniform(k_accept, dtype=x.dtype)) < log_ratio)
        new = jax.tree_util.tree_map(lambda a, b: jnp.where(accept, a, b), (xp, lpp, gp), (x, lp, g))
        return new, (accept, bad)

    lp0, g0 = value_and_grad(x0)
    state, (_, bad_burn) = jax.lax.scan(step, (x0, lp0, g0), jnp.arange(burn_in, dtype=jnp.uint32))

    def draw(state, d):
        steps = burn_in + d * thin + jnp.arange(thin, dtype=jnp.uint32)
        state, (acc, bad) = jax.lax.scan(step, state, steps)
        return state, (record(state[0]), acc.sum(), bad.sum())

    _, (samples, n_acc, n_bad) = jax.lax.scan(draw, state, jnp.arange(n_draws, dtype=jnp.uint32))
    return samples, n_acc.sum() / (n_draws * thin), n_bad.sum() + bad_burn.sum()


def mala(logdensity, init, key, *, step_size, n_steps, burn_in=0, thin=1, record=None) -> MALAResult:
    """Metropolis-adjusted Langevin sampling of ``logdensity`` with many chains (module docstring).

    logdensity: JAX-differentiable function of one flat vector x (D,) -> scalar log p(x) + const.
    init: (chains, D) starting points. step_size: h > 0, the proposal-noise variance. n_steps: steps
    after burn-in, a multiple of ``thin``; draws = n_steps // thin. burn_in: steps discarded first.
    record: function x -> array recorded at each draw (default: x).
    Returns :class:`MALAResult` with samples (chains, draws, ...) and acceptance_rate (chains,).
    ValueError if a starting point, its log density or its gradient is not finite (the chain could
    never move). Proposals whose log density or gradient is NaN or inf are rejected, and a
    RuntimeWarning gives their number (e.g. the step size overshoots into an overflow region).

    >>> r = mala(lambda x: -0.5 * x @ x, jnp.zeros((2, 3)), jax.random.key(0), step_size=0.5, n_steps=4)
    >>> r.samples.shape, r.acceptance_rate.shape
    ((2, 4, 3), (2,))
    """
    require_x64("sft.sim.mala")
    h = _positive("step_size", step_size)
    n_steps = _count("n_steps", n_steps, 1)
    burn_in = _count("burn_in", burn_in, 0)
    thin = _count("thin", thin, 1)
    if n_steps % thin:
        raise ValueError(f"n_steps={n_steps} is not allowed: it must be a multiple of thin={thin}")
    if not callable(logdensity):
        raise ValueError(f"logdensity={logdensity!r} is not allowed: give a function x (D,) -> log p(x)")
    if record is not None and not callable(record):
        raise ValueError(f"record={record!r} is not allowed: give a function x (D,) -> array, or None")
    key = _key(key)
    init = jnp.asarray(check_array("init", init, dtype=None, min_size=0))
    if init.ndim != 2 or init.shape[0] < 1 or init.shape[1] < 1:
        raise ValueError(f"init has shape {init.shape}: it must be (chains, D) with chains, D >= 1")
    if not jnp.issubdtype(init.dtype, jnp.floating):
        init = init.astype(jnp.float64)
    lp0, g0 = jax.jit(jax.vmap(jax.value_and_grad(logdensity)))(init)
    if jnp.ndim(lp0) != 1:
        raise ValueError(f"logdensity returns shape {jnp.shape(lp0)[1:]}: it must return a scalar")
    bad = np.nonzero(~np.isfinite(np.asarray(lp0)) | ~np.all(np.isfinite(np.asarray(g0)), axis=1))[0]
    if bad.size:
        raise ValueError(f"init is not allowed: the log density or its gradient is NaN or inf at the "
                         f"starting point of chain(s) {bad.tolist()} (log density {np.asarray(lp0)[bad].tolist()}); "
                         "start every chain where log p and grad log p are finite")
    record = (lambda x: x) if record is None else record
    _check_chain_cost("mala", init, record, burn_in + n_steps, n_steps // thin)
    keys = jax.vmap(lambda c: jax.random.fold_in(key, c))(jnp.arange(init.shape[0], dtype=jnp.uint32))
    run = jax.jit(jax.vmap(lambda x0, k: _mala_chain(logdensity, record, x0, k, h, burn_in,
                                                      n_steps // thin, thin)))
    samples, rate, n_bad = run(init, keys)
    n_bad = int(np.sum(np.asarray(n_bad)))
    if n_bad:
        total = init.shape[0] * (burn_in + n_steps)
        warnings.warn(f"mala: {n_bad} of {total} proposals ({n_bad / total:.3g} of all, chains x steps "
                      "including burn-in) had a NaN or inf log density or gradient and were rejected; "
                      f"lower step_size={h:g} or check logdensity", RuntimeWarning, stacklevel=2)
    return MALAResult(samples, rate)


# -------------------------------------------------------------------------- network posterior
def network_log_posterior(params, x, y, *, activation, C_W, C_b, noise, temperature):
    """log p(theta | x, y) + const = -|theta|^2/2 - (1/T) sum_a (f_theta(x_a) - y_a)^2 / (2 sigma^2).

    params: ONE network's parameters (list over layers of (omega, beta), :func:`sft.sim.apply`);
    x: (P, n_0); y: (P,) labels of the single output; noise = sigma^2 > 0; temperature = T > 0.
    The prior term runs over all of ``params`` (standard normal, the initialization distribution).
    ValueError when x is not (P, n_0) with P >= 1 and n_0 the input dimension of ``params``, y is not
    (P,), or (when not traced) x or y contain NaN or inf.
    """
    require_x64("sft.sim.network_log_posterior")
    noise, temperature = _positive("noise", noise), _positive("temperature", temperature)
    if not any(isinstance(c, jax.core.Tracer) for c in (C_W, C_b)):
        layer_constants(len(params) - 1, C_W, C_b)
    x, y = _data("x", x, "y", y, params[0][0].shape[-2], dtype=None)
    f = apply(params, x, activation=activation, C_W=C_W, C_b=C_b)[:, 0]
    prior = sum(jnp.sum(w ** 2) + jnp.sum(b ** 2) for w, b in params)
    return -0.5 * prior - jnp.sum((f - y) ** 2) / (2 * noise * temperature)


def sample_network_posterior(key, x_train, y_train, x_test, *, widths, activation, C_W, C_b, noise,
                             temperature, n_chains, step_size, n_steps, burn_in=0, thin=1,
                             trainable=None, init=None) -> MALAResult:
    """MALA samples of the test predictions f_theta(x_test) under :func:`network_log_posterior`.

    x_train (P, n_0), y_train (P,), x_test (M, n_0); one output. Chains start at ``init`` (a list over
    layers l = 1 .. depth+1 of (omega (chains, n_{l-1}, n_l), beta (chains, n_l)), as
    :func:`sft.sim.init_params`), by default drawn from the prior with
    ``init_params(jax.random.fold_in(key, 1), n_ensemble=n_chains, ...)``; the sampler uses
    ``jax.random.fold_in(key, 0)``. ``trainable``: layer numbers l (1-based, readout = depth+1) that are
    sampled, default all; the other layers are frozen at chain 0's ``init`` values for every chain,
    and the prior covers only trainable layers. Returns :class:`MALAResult` with samples
    (chains, draws, M) and acceptance_rate (chains,).
    """
    require_x64("sft.sim.sample_network_posterior")
    n_chains = _count("n_chains", n_chains, 1)
    noise, temperature = _positive("noise", noise), _positive("temperature", temperature)
    _positive("step_size", step_size), _count("n_steps", n_steps, 1), _count("burn_in", burn_in, 0)
    _count("thin", thin, 1)
    widths = check_widths(widths)
    layer_constants(len(widths), C_W, C_b)
    key = _key(key)
    x_train, y_train = _data("x_train", x_train, "y_train", y_train)
    x_test = _data("x_test", x_test, None, None, x_train.shape[1], rows="M")[0]
    if x_test.shape[0] < 1:
        raise ValueError(f"x_test has shape {x_test.shape}: it must be (M, {x_train.shape[1]}) with M >= 1")
    n_layers = len(tuple(widths)) + 1
    trainable = tuple(range(1, n_layers + 1)) if trainable is None else tuple(trainable)
    if not trainable or any(isinstance(l, bool) or l not in range(1, n_layers + 1) for l in trainable):
        raise ValueError(f"trainable={trainable!r} is not allowed: give a non-empty set of layer "
                         f"numbers in 1 .. {n_layers}")
    if init is None:
        init = init_params(jax.random.fold_in(key, 1), n_ensemble=n_chains, in_dim=x_train.shape[1],
                           widths=widths)
    if len(init) != n_layers or any(w.shape[0] != n_chains for w, _ in init):
        raise ValueError(f"init must be a list of {n_layers} layers (omega, beta) with leading axis "
                         f"n_chains={n_chains}")
    if init[0][0].shape[1] != x_train.shape[1]:
        raise ValueError(f"init[0] has omega of shape {init[0][0].shape}: its input dimension "
                         f"{init[0][0].shape[1]} must equal x_train's n_0 = {x_train.shape[1]}")
    frozen = {l: (init[l - 1][0][0], init[l - 1][1][0]) for l in range(1, n_layers + 1)
              if l not in trainable}
    _, unravel = ravel_pytree([(w[0], b[0]) for l, (w, b) in enumerate(init, 1) if l in trainable])
    start = jnp.stack([ravel_pytree([(w[c], b[c]) for l, (w, b) in enumerate(init, 1)
                                     if l in trainable])[0] for c in range(n_chains)])

    def full(theta):
        it = iter(unravel(theta))
        return [frozen[l] if l in frozen else next(it) for l in range(1, n_layers + 1)]

    def logdensity(theta):
        f = apply(full(theta), x_train, activation=activation, C_W=C_W, C_b=C_b)[:, 0]
        return -0.5 * theta @ theta - jnp.sum((f - y_train) ** 2) / (2 * noise * temperature)

    return mala(logdensity, start, jax.random.fold_in(key, 0), step_size=step_size, n_steps=n_steps,
                burn_in=burn_in, thin=thin,
                record=lambda th: apply(full(th), x_test, activation=activation, C_W=C_W, C_b=C_b)[:, 0])


# ---------------------------------------------------------------------------------- diagnostics
def _chains(x, min_draws):
    x = check_array("chains", x, min_size=0)
    if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < min_draws:
        raise ValueError(f"chains has shape {x.shape}: it must be (chains, draws) with chains >= 1 and "
                         f"draws >= {min_draws}")
    scale = np.max(np.abs(x))
    if np.all(np.abs(x - x[:, :1]) <= 1e-12 * scale):
        raise ValueError(f"chains is constant along every chain (within 1e-12 x max|draw| = {1e-12 * scale:.3g}): "
                         "R-hat and the effective sample size are undefined; the chains never moved")
    return x


def split_rhat(chains) -> float:
    """Split-R-hat of (chains, draws) samples of a scalar (Vehtari et al. 2021, eqs. (3)-(4)).

    Each chain is cut into halves (a middle draw dropped when odd), giving m chains of n draws;
    W = mean within-chain variance (ddof=1), B = n var(chain means, ddof=1),
    var+ = (n-1)/n W + B/n, R-hat = sqrt(var+ / W). Near 1 when the chains agree; >> 1 when not.
    """
    x = _chains(chains, 4)
    n = x.shape[1] // 2
    halves = np.concatenate([x[:, :n], x[:, -n:]])
    W = halves.var(axis=1, ddof=1).mean()
    B = n * halves.mean(axis=1).var(ddof=1)
    return float(np.sqrt(((n - 1) / n * W + B / n) / W))


def _autocovariance(x):
    """Biased autocovariance per chain, lags 0 .. n-1, by FFT: (chains, n)."""
    n = x.shape[1]
    d = x - x.mean(axis=1, keepdims=True)
    f = np.fft.rfft(d, n=2 * n, axis=1)
    return np.fft.irfft(f * np.conj(f), n=2 * n, axis=1)[:, :n] / n


def effective_sample_size(chains) -> float:
    """Effective sample size of (chains, draws) samples of a scalar (Vehtari et al. 2021, eqs. (10)-(11)).

    With m chains of n draws, per-chain autocovariances c_{j,t}, W and var+ as :func:`split_rhat`
    (unsplit), the combined autocorrelation is rho_t = 1 - (W - mean_j c_{j,t}) / var+. Geyer's (1992)
    initial positive sequence: pair sums P_k = rho_{2k} + rho_{2k+1} are summed while positive, made
    monotone non-increasing, and tau = -1 + 2 sum_k P_k; ESS = m n / tau, with tau floored at
    1 / log10(m n) as in Stan. For an AR(1) chain with coefficient phi, tau = (1 + phi) / (1 - phi).
    """
    x = _chains(chains, 4)
    m, n = x.shape
    acov = _autocovariance(x)
    W = x.var(axis=1, ddof=1).mean()
    var_plus = (n - 1) / n * W + (x.mean(axis=1).var(ddof=1) if m > 1 else 0.0)
    rho = 1.0 - (W - acov.mean(axis=0)) / var_plus
    pairs = rho[:2 * (n // 2)].reshape(-1, 2).sum(axis=1)
    k = np.argmax(pairs <= 0) if np.any(pairs <= 0) else len(pairs)
    tau = -1.0 + 2.0 * np.minimum.accumulate(pairs[:k]).sum()
    return float(m * n / max(tau, 1.0 / np.log10(m * n)))
