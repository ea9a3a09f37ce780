"""Tempered local Bayesian posterior (TLBP) around a trained solution w*: SGLD and MALA, many chains.

Target. For a loss that is a MEAN over the n training samples, L_n(w) = (1/n) sum_i l(w; z_i), a
reference point w* (D,) (a trained solution) and a localization strength gamma >= 0,

    p_t(w) ∝ exp(-L_n(w)/t - (gamma/2) |w - w*|^2),     1/t = n beta   ("nbeta" in the code).

So t = 1/(n beta): the Bayesian posterior (unit noise, flat prior) is beta = 1, t = 1/n; Watanabe's
WBIC temperature beta = 1/log n (the default, :func:`default_nbeta`) is nbeta = n / log n,
t = log n / n. n is the number of training samples, never the minibatch size. For networks
(:func:`network_loss`) l(w; x, y) = |f_w(x) - y|^2 / 2, the negative log-likelihood of unit-variance
Gaussian noise up to a constant.

Samplers (chain c draws its randomness from ``jax.random.fold_in(key, c)``, step s of it from
``fold_in(that, s)``; chains are ``vmap``-ed, steps run in ``lax.scan`` under one ``jit``; all chains
start at w* unless ``init`` is given; SGLD compiles once per ``loss`` function object, ``record``,
minibatch size, schedule and shapes: nbeta, gamma and step_size are traced, so a scan over them
reuses the program):

- "sgld" (stochastic-gradient Langevin; Welling & Teh 2011, in the LLC form of Lau, Furman, Wang,
  Murfet & Wei 2023, "The local learning coefficient", arXiv:2308.12108, the SGLD update of their
  estimation section; the same step-size convention as Welling & Teh: noise variance eps, drift
  eps/2 times the gradient of the log density), with
  eps = ``step_size`` (the variance of the injected noise):

      w_{k+1} = w_k - (eps/2) [nbeta grad L_B(w_k) + gamma (w_k - w*)] + sqrt(eps) xi_k,   xi ~ N(0, I),

  L_B the mean loss over a minibatch B of ``batch_size`` samples drawn without replacement, fresh at
  each step (full batch when ``batch_size`` is None: the unadjusted Langevin algorithm). Not exact:
  its stationary law has an O(eps) bias; on a quadratic L_n it is known in closed form
  (:func:`sft.sim.quadratic_llc` with ``step_size``, derivations/llc_gaussian.py).
- "mala" (:func:`sft.sim.mala`, exact, full batch) on log p_t, with the same step-size convention.

Recorded: the full-batch L_n(w) at every ``thin``-th step after ``burn_in`` (the input of the LLC
estimator :func:`sft.sim.llc_from_samples`), and ``record(w)`` if given.

Warnings (:class:`TLBPWarning`) after sampling, with the criteria:
- diverged: some recorded L_n(w) is NaN or inf (reduce ``step_size``);
- left the basin: a chain's mean of nbeta (L_n(w) - L_n(w*)) exceeds D, twice the largest learning
  coefficient a D-parameter model can have (Watanabe: lambda <= D/2; the factor 2 leaves room for
  the fluctuations of one chain's mean and for SGLD's step-size bias), so the chain is not sampling
  the neighbourhood of w* (raise ``gamma`` or lower ``step_size``);
- not a minimum: some draw has nbeta (L_n(w) - L_n(w*)) < -1, a loss lower than at w* by more than
  one unit of the temperature t;
- stuck (MALA): a chain accepted fewer than 5% of its proposals (reduce ``step_size``; from w*, the
  mode, MALA accepts with probability ~ exp(-(eps gamma)^2 D / 8) in the gamma-dominated directions,
  so eps gamma should not exceed ~ sqrt(8/D)).
SGLD refuses (ValueError) a step size that makes the quadratic approximation at w* diverge:
eps (nbeta h_max + gamma) >= 4, with h_max the largest |eigenvalue| of the Hessian of L_n at w*
(30 steps of power iteration with Hessian-vector products).
"""
from __future__ import annotations

import functools
import math
import numbers
import warnings
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from .networks import apply
from .sampling import mala
from ..conventions import require_x64

__all__ = ["TLBPResult", "TLBPWarning", "NetworkLoss", "default_nbeta", "network_loss", "sample_tlbp"]

_METHODS = ("sgld", "mala")
_POWER_ITERATIONS = 30


class TLBPWarning(RuntimeWarning):
    """A TLBP chain diverged, left the basin of w*, or found a loss below L_n(w*) (module docstring)."""


class TLBPResult(NamedTuple):
    """Samples of the tempered local posterior (:func:`sample_tlbp`).

    loss: (chains, draws) float64, full-batch L_n(w) at the recorded steps; loss_star: L_n(w*);
    nbeta = n beta = 1/t; gamma; dim: D, the number of sampled parameters; method: "sgld" or "mala";
    step_size; acceptance_rate: (chains,) for MALA, None for SGLD; samples: ``record(w)`` stacked as
    (chains, draws, ...), or None.
    """
    loss: np.ndarray
    loss_star: float
    nbeta: float
    gamma: float
    dim: int
    method: str
    step_size: float
    acceptance_rate: Any
    samples: Any


class NetworkLoss(NamedTuple):
    """A network as a TLBP problem (:func:`network_loss`): loss(w, (x, y)) the mean of
    |f_w(x_a) - y_a|^2 / 2 over the rows of the batch; w_star (D,) the flat parameters; data (x, y)
    with x (n, n_0), y (n, n_out); unravel: (D,) -> the list of layers (omega, beta)."""
    loss: Callable
    w_star: jax.Array
    data: tuple
    unravel: Callable


# ----------------------------------------------------------------------------------- checks
def _real(name, value, lo, lo_open, hi=math.inf):
    ok = (not isinstance(value, bool) and isinstance(value, numbers.Real) and math.isfinite(value)
          and (value > lo if lo_open else value >= lo) and value < hi)
    if not ok:
        rng = f"{'>' if lo_open else '>='} {lo}" + (f" and < {hi}" if hi < math.inf else "")
        raise ValueError(f"{name}={value!r} is not allowed: {name} must be a finite number {rng}")
    return float(value)


def _int(name, value, lo, hi=None):
    if (isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < lo
            or (hi is not None and value > hi)):
        rng = f">= {lo}" + (f" and <= {hi}" if hi is not None else "")
        raise ValueError(f"{name}={value!r} is not allowed: {name} must be an integer {rng}")
    return int(value)


def default_nbeta(n) -> float:
    """Watanabe's WBIC inverse temperature times n: nbeta = n / log n (beta = 1/log n), n >= 2 the
    number of TRAINING samples (not the minibatch size). Watanabe (2013), "A widely applicable
    Bayesian information criterion", JMLR 14, 867, Theorem 4.

    >>> round(default_nbeta(100), 4)
    21.7147
    """
    n = _int("n", n, 2)
    return n / math.log(n)


def _resolve_nbeta(n, nbeta, temperature):
    if nbeta is not None and temperature is not None:
        raise ValueError(f"nbeta={nbeta!r} and temperature={temperature!r}: give one of them "
                         "(nbeta = 1/temperature), not both")
    if temperature is not None:
        return 1.0 / _real("temperature", temperature, 0, True)
    if nbeta is not None:
        return _real("nbeta", nbeta, 0, True)
    if n is None:
        raise ValueError("nbeta, temperature and n are all None: give nbeta (= 1/t) or temperature, "
                         "or the number of training samples n for the default nbeta = n / log n")
    return default_nbeta(n)


def _check_data(data):
    """(n, data as jnp arrays): a pytree of arrays with a common leading axis n >= 1, finite."""
    leaves, tree = jax.tree_util.tree_flatten(data)
    if not leaves:
        raise ValueError("data is empty: give a pytree of arrays with the samples along axis 0")
    arrays = []
    for i, a in enumerate(leaves):
        a = np.asarray(a)
        if a.ndim < 1 or a.shape[0] < 1:
            raise ValueError(f"data leaf {i} has shape {a.shape}: every leaf needs a leading sample "
                             "axis with n >= 1 samples")
        if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
            raise ValueError(f"data leaf {i} contains NaN or inf: data must be finite")
        arrays.append(jnp.asarray(a))
    ns = {a.shape[0] for a in arrays}
    if len(ns) != 1:
        raise ValueError(f"data leaves have different numbers of samples {sorted(ns)}: they must share "
                         "the leading axis n")
    return ns.pop(), jax.tree_util.tree_unflatten(tree, arrays)


def _check_points(name, w):
    w = jnp.asarray(w)
    if not jnp.issubdtype(w.dtype, jnp.floating):
        w = w.astype(jnp.float64)
    if not np.all(np.isfinite(np.asarray(w))):
        raise ValueError(f"{name} contains NaN or inf: it must be finite")
    return w


# --------------------------------------------------------------------------------- networks
def network_loss(params, x, y, *, activation, C_W, C_b) -> NetworkLoss:
    """The squared loss of one network of :mod:`sft.sim.networks` as a TLBP problem.

    params: ONE network's parameters (list over layers of (omega (n_{l-1}, n_l), beta (n_l,))), the
    reference point w*; x: (n, n_0); y: (n,) or (n, n_out). loss(w, (xb, yb)) = mean over rows a of
    |f_w(xb_a) - yb_a|^2 / 2, so loss(w_star, data) = L_n(w*).

    >>> from sft.sim import init_params
    >>> p = [(w[0], b[0]) for w, b in init_params(jax.random.key(0), n_ensemble=1, in_dim=2, widths=[3])]
    >>> prob = network_loss(p, jnp.ones((4, 2)), jnp.zeros(4), activation="tanh", C_W=1.0, C_b=0.0)
    >>> prob.w_star.shape, prob.data[1].shape
    ((13,), (4, 1))
    """
    require_x64("sft.sim.network_loss")
    n, (x, y) = _check_data((x, y))
    n_out = params[-1][0].shape[-1]
    if y.ndim == 1:
        y = y[:, None]
    if x.ndim != 2 or y.shape != (n, n_out):
        raise ValueError(f"x has shape {x.shape} and y {y.shape}: they must be (n, n_0) and (n,) or "
                         f"(n, n_out) with n_out = {n_out}")
    w_star, unravel = ravel_pytree([tuple(layer) for layer in params])
    x, y = x.astype(w_star.dtype), y.astype(w_star.dtype)

    def loss(w, batch):
        xb, yb = batch
        f = apply(unravel(w), xb, activation=activation, C_W=C_W, C_b=C_b)
        return 0.5 * jnp.mean(jnp.sum((f - yb) ** 2, axis=-1))

    return NetworkLoss(loss, w_star, (x, y), unravel)


# ---------------------------------------------------------------------------------- sampling
def _no_record(w):
    return jnp.zeros(0, w.dtype)


def _evaluate(loss, w, data):
    """L_n(w): loss(w, data) for a data loss, loss(w) for a potential (data None)."""
    return loss(w) if data is None else loss(w, data)


@functools.partial(jax.jit, static_argnums=0)
def _top_curvature(loss, w_star, data):
    """Largest |eigenvalue| of the Hessian of L_n at w* by power iteration (Hessian-vector products).
    Compiled once per loss function and shapes (the loss is a static argument)."""
    grad = jax.grad(lambda w: _evaluate(loss, w, data))
    hvp = lambda v: jax.jvp(grad, (w_star,), (v,))[1]

    def body(_, v):
        u = hvp(v)
        return u / jnp.maximum(jnp.linalg.norm(u), jnp.finfo(v.dtype).tiny)

    v0 = jax.random.normal(jax.random.key(0), w_star.shape, w_star.dtype)
    v = jax.lax.fori_loop(0, _POWER_ITERATIONS, body, v0 / jnp.linalg.norm(v0))
    return jnp.abs(v @ hvp(v))


@functools.partial(jax.jit, static_argnames=("loss", "record", "b", "burn_in", "n_draws", "thin"))
def _sgld(init, keys, w_star, data, nbeta, gamma, eps, *, loss, record, b, burn_in, n_draws, thin):
    """All chains ((chains, D) init, (chains,) keys): (losses (chains, draws), records). Compiled once
    per loss, record, minibatch size, schedule and shapes; nbeta, gamma, eps are traced."""
    def chain(w0, key):
        grad_full = jax.grad(lambda w: _evaluate(loss, w, data))
        grad_batch = jax.grad(loss)

        def step(w, s):
            k_batch, k_noise = jax.random.split(jax.random.fold_in(key, s))
            if b is None:
                g = grad_full(w)
            else:
                n = jax.tree_util.tree_leaves(data)[0].shape[0]
                idx = jax.random.choice(k_batch, n, (b,), replace=False)
                g = grad_batch(w, jax.tree_util.tree_map(lambda a: a[idx], data))
            w = w - 0.5 * eps * (nbeta * g + gamma * (w - w_star))
            return w + jnp.sqrt(eps) * jax.random.normal(k_noise, w.shape, w.dtype), None

        w, _ = jax.lax.scan(step, w0, jnp.arange(burn_in, dtype=jnp.uint32))

        def draw(w, d):
            w, _ = jax.lax.scan(step, w, burn_in + d * thin + jnp.arange(thin, dtype=jnp.uint32))
            return w, (_evaluate(loss, w, data), record(w))

        return jax.lax.scan(draw, w, jnp.arange(n_draws, dtype=jnp.uint32))[1]

    return jax.vmap(chain)(init, keys)


def sample_tlbp(loss, w_star, key, *, gamma, step_size, n_chains, n_steps, data=None, n=None,
                nbeta=None, temperature=None, method="sgld", burn_in=0, thin=1, batch_size=None,
                init=None, record=None) -> TLBPResult:
    """Sample p_t(w) ∝ exp(-nbeta L_n(w) - (gamma/2)|w - w*|^2) with SGLD or MALA (module docstring).

    loss: with ``data``, loss(w, batch) -> the MEAN loss over the samples of ``batch`` (a pytree
    sliced along axis 0 of ``data``), and n = the leading size of ``data``; without ``data``, a
    potential loss(w) -> L_n(w). w_star: (D,) the reference point. nbeta (= n beta) or temperature
    (= 1/nbeta), default n / log n (n required then). gamma >= 0; step_size > 0 (noise variance);
    n_steps recorded steps after ``burn_in``, a multiple of ``thin``; batch_size (SGLD only) in
    1 .. n, None for full batch. init: (n_chains, D), default w* for every chain. record: w -> array
    stored at every draw. float64 unless w_star is float32. Returns :class:`TLBPResult`.

    >>> r = sample_tlbp(lambda w: 0.5 * w @ w, jnp.zeros(2), jax.random.key(0), nbeta=10.0,
    ...                 gamma=1.0, step_size=0.01, n_chains=3, n_steps=20, thin=2)
    >>> r.loss.shape, r.dim
    ((3, 10), 2)
    """
    require_x64("sft.sim.sample_tlbp")
    if method not in _METHODS:
        raise ValueError(f"method={method!r} is not allowed: use one of {_METHODS}")
    gamma = _real("gamma", gamma, 0, False)
    eps = _real("step_size", step_size, 0, True)
    n_chains = _int("n_chains", n_chains, 1)
    n_steps, burn_in, thin = _int("n_steps", n_steps, 1), _int("burn_in", burn_in, 0), _int("thin", thin, 1)
    if n_steps % thin:
        raise ValueError(f"n_steps={n_steps} is not allowed: it must be a multiple of thin={thin}")
    w_star = _check_points("w_star", w_star)
    if w_star.ndim != 1 or w_star.shape[0] < 1:
        raise ValueError(f"w_star has shape {w_star.shape}: it must be (D,) with D >= 1")
    if data is not None:
        n_data, data = _check_data(data)
        if n is not None and n != n_data:
            raise ValueError(f"n={n!r} but data has {n_data} samples: leave n=None with data")
        n = n_data
    elif batch_size is not None:
        raise ValueError(f"batch_size={batch_size!r} needs data: a potential has no minibatches")
    nbeta = _resolve_nbeta(n, nbeta, temperature)
    if batch_size is not None:
        batch_size = _int("batch_size", batch_size, 1, n)
        if method == "mala":
            raise ValueError(f"batch_size={batch_size!r} is not allowed with method='mala': MALA is "
                             "exact and uses the full batch")
        batch_size = None if batch_size == n else batch_size
    loss_star = float(_evaluate(loss, w_star, data))
    if not math.isfinite(loss_star):
        raise ValueError(f"the loss at w_star is {loss_star}: L_n(w*) must be finite")
    D = w_star.shape[0]
    if init is None:
        init = jnp.broadcast_to(w_star, (n_chains, D))
    init = _check_points("init", init).astype(w_star.dtype)
    if init.shape != (n_chains, D):
        raise ValueError(f"init has shape {init.shape}: it must be (n_chains, D) = ({n_chains}, {D})")
    user_record = record
    record = _no_record if user_record is None else user_record
    scalars = [jnp.asarray(v, w_star.dtype) for v in (nbeta, gamma, eps)]

    if method == "sgld":
        h_max = float(_top_curvature(loss, w_star, data))
        if eps * (nbeta * h_max + gamma) >= 4:
            raise ValueError(f"step_size={eps!r} is not allowed: SGLD diverges on the quadratic "
                             f"approximation at w* when step_size (nbeta h_max + gamma) >= 4; here "
                             f"nbeta={nbeta:.4g}, h_max={h_max:.4g} (top Hessian eigenvalue of L_n at "
                             f"w*), gamma={gamma:.4g}: use step_size < {4 / (nbeta * h_max + gamma):.3g}")
        keys = jax.vmap(lambda c: jax.random.fold_in(key, c))(jnp.arange(n_chains, dtype=jnp.uint32))
        trace, samples = _sgld(init, keys, w_star, data, *scalars, loss=loss, record=record,
                               b=batch_size, burn_in=burn_in, n_draws=n_steps // thin, thin=thin)
        rate = None
    else:
        def logdensity(w):
            return -nbeta * _evaluate(loss, w, data) - 0.5 * gamma * jnp.sum((w - w_star) ** 2)
        shape = jax.eval_shape(record, w_star).shape      # mala records one array: [L_n, record(w)]
        res = mala(logdensity, init, key, step_size=eps, n_steps=n_steps, burn_in=burn_in, thin=thin,
                   record=lambda w: jnp.concatenate([_evaluate(loss, w, data)[None],
                                                     jnp.ravel(record(w)).astype(w.dtype)]))
        trace, rate = res.samples[..., 0], np.asarray(res.acceptance_rate)
        samples = res.samples[..., 1:].reshape(res.samples.shape[:2] + shape)
    trace = np.asarray(trace, dtype=np.float64)
    _warn(trace, loss_star, nbeta, D, eps)
    if rate is not None and np.any(rate < 0.05):
        warnings.warn(f"MALA chains {np.flatnonzero(rate < 0.05).tolist()} accepted < 5% of proposals "
                      f"(min {rate.min():.3g}): step_size={eps!r} is too large (keep step_size * gamma "
                      f"below ~ sqrt(8/D) = {math.sqrt(8 / D):.3g})", TLBPWarning, stacklevel=2)
    return TLBPResult(trace, loss_star, nbeta, gamma, D, method, eps, rate,
                      None if user_record is None else samples)


def _warn(trace, loss_star, nbeta, D, eps):
    """The three warnings of the module docstring."""
    finite = np.all(np.isfinite(trace), axis=1)
    if not finite.all():
        warnings.warn(f"TLBP diverged: L_n(w) is NaN or inf in chains {np.flatnonzero(~finite).tolist()}"
                      f" (step_size={eps!r} is too large; reduce it)", TLBPWarning, stacklevel=3)
    excess = nbeta * (trace[finite] - loss_star)
    if excess.size == 0:
        return
    far = excess.mean(axis=1) > D
    if far.any():
        warnings.warn(f"TLBP chains {np.flatnonzero(finite)[far].tolist()} left the basin of w*: their "
                      f"mean nbeta (L_n(w) - L_n(w*)) = {excess.mean(axis=1)[far].max():.4g} exceeds "
                      f"D = {D}, twice the largest learning coefficient (raise gamma or lower step_size={eps!r})", TLBPWarning,
                      stacklevel=3)
    if excess.min() < -1:
        warnings.warn(f"w* is not a local minimum: a chain reached nbeta (L_n(w) - L_n(w*)) = "
                      f"{excess.min():.4g} < -1 (a loss lower than L_n(w*) by more than the temperature "
                      "t = 1/nbeta)", TLBPWarning, stacklevel=3)
