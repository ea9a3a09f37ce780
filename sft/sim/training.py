"""Ensembles of finite-width networks trained by full-batch gradient descent on the squared loss.

Networks are those of :mod:`sft.sim.networks` (NTK parameterization, :mod:`sft.conventions`): network i
of an ensemble starts from the parameters drawn with ``jax.random.fold_in(key, i)``, so at step 0
they are exactly the networks of :func:`sft.sim.ensemble_outputs` with the same key.

Loss and update (one output, P training pairs (x_a, y_a), no 1/P):

    L(theta) = 1/2 sum_{a=1}^{P} (f(x_a; theta) - y_a)^2,
    theta_{k+1} = theta_k - eta grad L(theta_k),        theta = all (omega, beta) of all layers.

In NTK parameterization the trained parameters are O(1) and the NTK Theta_{ab} = sum_p df_a/dp df_b/dp
(:func:`sft.sim.empirical_ntk`) is O(1), so the learning rate eta is O(1): to first order
f_{k+1} = f_k - eta Theta (f_k - y), stable for eta < 2 / lambda_max(Theta). As the widths grow the
NTK stays at its initial value (lazy training) and the ensemble approaches the linear model
(Jacot, Gabriel & Hongler 2018; Lee et al. 2019, eq. (9) in discrete time; PDLT ch. 10):

    f_k(X)  = (I - (I - eta Theta)^k) y + (I - eta Theta)^k f_0(X),
    f_k(x*) = f_0(x*) + Theta_{*X} Theta^{-1} (I - (I - eta Theta)^k) (y - f_0(X)).

Execution. The S networks are trained in chunks of ``chunk_size``: one ``jit`` draws a chunk's
initial parameters (as :mod:`sft.sim.networks`) and a second ``jit`` trains it, ``vmap`` over the
networks of the chunk and ``lax.scan`` over the steps (an outer scan over recordings, an inner one
over the ``record_every`` steps between them). Every chunk has the same size, >= 2 (the last one is
padded with networks that are trained and dropped), so a call compiles once; results are bitwise
independent of ``chunk_size`` (tested). One device only (no sharding over devices).

Limits: as :mod:`sft.sim.networks` (checked up front): n_ensemble <= 2**32 (uint32 network indices,
never wrapped), recordings <= ``MAX_BYTES``, and ~6 P sum_l n_{l-1} n_l flop per network and step
(forward and backward on the P training inputs, plus the test predictions at each recording)
<= ``MAX_FLOPS``. float64 by default; ``jax_enable_x64`` must be on (:func:`sft.conventions.require_x64`).
"""
from __future__ import annotations

import dataclasses
import functools
import numbers
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from . import networks as _nw
from ..kernels.activations import get_activation
from ..conventions import check_widths, layer_constants, require_x64

__all__ = ["TrainedEnsemble", "train_ensemble"]


@dataclasses.dataclass(frozen=True)
class TrainedEnsemble:
    """Recordings of an ensemble of S networks trained by gradient descent (:func:`train_ensemble`).

    Attributes (T = number of recorded steps, P training inputs, M test inputs):
      steps: (T,) int, the recorded step numbers 0, r, 2r, .., n_steps (r = ``record_every``).
      test_predictions: (S, T, M), f_s(x*_m) after ``steps[t]`` steps.
      train_predictions: (S, T, P), f_s(x_a) after ``steps[t]`` steps.
      train_loss: (S, T), L = 1/2 sum_a (f_s(x_a) - y_a)^2.
      ntk: (S, T, P, P) empirical NTK on the training inputs, or None unless ``record_ntk``.
      learning_rate: eta.
    """

    steps: np.ndarray
    test_predictions: jax.Array
    train_predictions: jax.Array
    train_loss: jax.Array
    ntk: jax.Array | None
    learning_rate: float


# ----------------------------------------------------------------------------------- validation
def _check_int(name, value, lo) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < lo:
        raise ValueError(f"{name}={value!r} is not allowed: {name} must be an integer >= {lo}")
    return int(value)


def _check_schedule(learning_rate, n_steps, record_every):
    """(learning_rate, n_steps, record_every) validated: eta > 0 finite, n_steps >= 0, record_every >= 1 dividing it."""
    lr = learning_rate
    if isinstance(lr, bool) or not isinstance(lr, numbers.Real) or not np.isfinite(lr) or lr <= 0:
        raise ValueError(f"learning_rate={learning_rate!r} is not allowed: it must be a finite number > 0")
    n_steps = _check_int("n_steps", n_steps, 0)
    record_every = _check_int("record_every", record_every, 1)
    if n_steps % record_every:
        raise ValueError(f"n_steps={n_steps} is not allowed with record_every={record_every}: "
                         "n_steps must be a multiple of record_every")
    return lr, n_steps, record_every


def _check_array(name, a, ndim_allowed, dtype):
    a = np.asarray(a, dtype=np.float64)
    if a.ndim not in ndim_allowed or a.shape[0] < 1 or (a.ndim == 2 and a.shape[1] < 1):
        raise ValueError(f"{name} has shape {a.shape}: {name} must have shape "
                         + (" or ".join({1: "(P,)", 2: "(N, n_0)"}[d] for d in ndim_allowed))
                         + " with nonzero sizes")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or inf: {name} must be finite")
    return jnp.asarray(a, dtype=dtype)


def _check_data(x_train, y_train, x_test, dtype):
    """x_train (P, n_0), y_train (P,) or (P, 1), x_test (M, n_0): finite, consistent shapes."""
    x_train = _check_array("x_train", x_train, (2,), dtype)
    x_test = _check_array("x_test", x_test, (2,), dtype)
    y = np.asarray(y_train, dtype=np.float64)
    if y.ndim == 2 and y.shape[1:] == (1,):
        y = y[:, 0]
    y_train = _check_array("y_train", y, (1,), dtype)
    if y_train.shape[0] != x_train.shape[0]:
        raise ValueError(f"y_train has {y_train.shape[0]} labels but x_train has {x_train.shape[0]} "
                         "inputs: they must be equal (one scalar label per training input)")
    if x_test.shape[1] != x_train.shape[1]:
        raise ValueError(f"x_test has feature dimension {x_test.shape[1]} but x_train has "
                         f"{x_train.shape[1]}: they must be equal")
    return x_train, y_train, x_test


def _warn_if_diverged(losses, key, sizes, dt, x_train, activation, cw, cb, lr):
    """RuntimeWarning, with the stability limit 2 / lambda_max of network 0's initial empirical NTK,
    when a training loss became NaN/inf or ended above twice its initial value (no extra cost otherwise)."""
    losses = np.asarray(losses)
    bad = ~np.isfinite(losses).all(axis=1) | (losses[:, -1] > 2 * losses[:, 0])
    if losses.shape[1] < 2 or not bad.any():
        return
    params = jax.tree_util.tree_map(lambda a: a[0], _nw._init_chunk(jnp.arange(2, dtype=jnp.uint32),
                                                                     key, sizes, dt))
    act = get_activation(activation)
    ntk = jax.jit(lambda p, x: _nw._ntk_backprop(p, x, act, cw, cb))
    limit = 2.0 / np.linalg.eigvalsh(np.asarray(ntk(params, x_train), np.float64))[-1]
    warnings.warn(f"gradient descent diverged for {int(bad.sum())} of {len(bad)} networks (training "
                  f"loss NaN/inf or more than doubled from step 0 to the end) with learning_rate={lr!r}: "
                  f"the stability limit of the linearized network 0 is 2/lambda_max(Theta_0) = "
                  f"{limit:.6g} (its initial empirical NTK on x_train); use a smaller learning_rate",
                  RuntimeWarning, stacklevel=3)


# ----------------------------------------------------------------------------- one network
def _train_one(params, x_train, y_train, x_test, eta, *, act, cw, cb, n_records, record_every,
               record_ntk):
    """Gradient descent on L = 1/2 |f(X) - y|^2 for ONE network; returns per recording
    (f(x*) (T, M), f(X) (T, P), L (T,), Theta (T, P, P) or None)."""
    def f(p, x):
        return _nw._preactivations(p, x, act.fn, cw, cb)[-1][:, 0]

    def loss(p):
        r = f(p, x_train) - y_train
        return 0.5 * (r @ r)

    def record(p):
        ftr = f(p, x_train)
        r = ftr - y_train
        theta = _nw._ntk_backprop(p, x_train, act, cw, cb) if record_ntk else None
        return f(p, x_test), ftr, 0.5 * (r @ r), theta

    def step(p, _):
        g = jax.grad(loss)(p)
        return jax.tree_util.tree_map(lambda a, b: a - eta * b, p, g), None

    def block(p, _):
        p, _ = jax.lax.scan(step, p, None, length=record_every)
        return p, record(p)

    first = record(params)
    _, rest = jax.lax.scan(block, params, None, length=n_records - 1)
    return jax.tree_util.tree_map(lambda a, b: jnp.concatenate([a[None], b]), first, rest)


@functools.lru_cache(maxsize=64)
def _compiled(activation, cw, cb, n_records, record_every, record_ntk):
    """jit of ``vmap`` over a chunk's networks of :func:`_train_one`; cached per configuration."""
    one = functools.partial(_train_one, act=get_activation(activation), cw=cw, cb=cb,
                            n_records=n_records, record_every=record_every, record_ntk=record_ntk)
    return jax.jit(jax.vmap(one, in_axes=(0, None, None, None, None)))


def train_ensemble(key, x_train, y_train, x_test, *, n_ensemble, widths, activation, C_W, C_b,
                   learning_rate, n_steps, record_every, chunk_size=None, dtype=jnp.float64,
                   record_ntk=False) -> TrainedEnsemble:
    """Train ``n_ensemble`` networks by full-batch gradient descent on L = 1/2 sum_a (f(x_a) - y_a)^2.

    Network s starts from ``jax.random.fold_in(key, s)`` (as :func:`sft.sim.ensemble_outputs`)
    and takes ``n_steps`` steps theta <- theta - learning_rate * grad L (module docstring); the
    predictions are recorded every ``record_every`` steps (``n_steps`` must be a multiple of it),
    step 0 included. x_train (P, n_0), y_train (P,) or (P, 1), x_test (M, n_0); one output.
    ``record_ntk``: also record the empirical NTK on x_train (the layer sum of :mod:`sft.sim.networks`,
    equal to its ``empirical_ntk``). Returns a :class:`TrainedEnsemble`, ensemble axis first.
    If a network's training loss becomes NaN/inf or ends above twice its initial value (learning rate
    above the stability limit), a RuntimeWarning states the limit 2 / lambda_max of network 0's
    initial empirical NTK on x_train.

    >>> r = train_ensemble(jax.random.key(0), np.eye(2), np.ones(2), np.ones((3, 2)), n_ensemble=4,
    ...                    widths=[16], activation="relu", C_W=2.0, C_b=0.1, learning_rate=0.5,
    ...                    n_steps=20, record_every=10)
    >>> r.steps.tolist(), r.test_predictions.shape, r.train_loss.shape
    ([0, 10, 20], (4, 3, 3), (4, 3))
    """
    require_x64("sft.sim.train_ensemble")
    S = _check_int("n_ensemble", n_ensemble, 1)
    widths = check_widths(widths)
    get_activation(activation)
    cw, cb = (tuple(map(float, c)) for c in layer_constants(len(widths), C_W, C_b))
    dt = _nw._check_dtype(dtype)
    lr, n_steps, record_every = _check_schedule(learning_rate, n_steps, record_every)
    chunk = None if chunk_size is None else _check_int("chunk_size", chunk_size, 1)
    if not isinstance(record_ntk, bool):
        raise ValueError(f"record_ntk={record_ntk!r} is not allowed: use True or False")
    x_train, y_train, x_test = _check_data(x_train, y_train, x_test, dt)

    sizes = _nw._layer_sizes(x_train.shape[1], widths, 1)
    P, M, n_rec = x_train.shape[0], x_test.shape[0], n_steps // record_every + 1
    dense = sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))
    n_params = dense + sum(sizes[1:])
    flops = S * (6 * P * dense * max(n_steps, 1) + 2 * (P + M) * dense * n_rec
                 + (n_rec * 3 * 2 * P * dense if record_ntk else 0))
    result = S * n_rec * (M + P + 1 + (P * P if record_ntk else 0)) * dt.itemsize
    _nw._check_cost("train_ensemble", S, flops, result, 8 * n_params * dt.itemsize)
    if chunk is None:  # params, gradients and updated params live together: a quarter of the budget
        n_inputs = x_train.shape[0] + x_test.shape[0]
        chunk = max(1, _nw._default_chunk("ntk_backprop", sizes, n_inputs, dt.itemsize) // 4)
    chunk = max(2, min(chunk, S))  # vmap over a batch of 1 is simplified and may round differently
    n_records = n_steps // record_every + 1
    try:
        train = _compiled(activation, cw, cb, n_records, record_every, record_ntk)
    except TypeError:  # unhashable activation spec: compile without the cache
        train = _compiled.__wrapped__(activation, cw, cb, n_records, record_every, record_ntk)
    eta = jnp.asarray(lr, dtype=dt)
    chunks = []
    for start in range(0, S, chunk):
        idx = _nw._indices(start, chunk)
        chunks.append(train(_nw._init_chunk(idx, key, sizes, dt), x_train, y_train, x_test, eta))
    out = jax.tree_util.tree_map(lambda *a: jnp.concatenate(a)[:S], *chunks)
    f_test, f_train, losses, theta = out if record_ntk else (*out[:3], None)
    _warn_if_diverged(losses, key, sizes, dt, x_train, activation, cw, cb, lr)
    return TrainedEnsemble(np.arange(n_records) * record_every, f_test, f_train, losses, theta,
                           float(lr))
