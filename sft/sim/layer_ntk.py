"""The NTK of finite networks layer by layer, during full-batch gradient descent (representation learning).

The NTK of a one-output MLP (:mod:`sft.conventions`, NTK parameterization) is a sum over layers,

    Theta_ab = sum_{l=1}^{L+1} Theta^(l)_ab,   Theta^(l)_ab = sum_{p in layer l} df(x_a)/dp df(x_b)/dp
             = (delta^(l)_a . delta^(l)_b) G^(l)_ab,

with delta^(l) = df/dz^(l) (backpropagation) and G^(l)_ab = C_b + (C_W / n_{l-1}) sigma(z^(l-1)_a) .
sigma(z^(l-1)_b) the stochastic metric of layer l (weights and biases of layer l; z^(0) = x, no sigma).
The sum over l is :func:`sft.sim.empirical_ntk`. Training is that of :func:`sft.sim.train_ensemble`
(same initial networks for the same key: network s from ``jax.random.fold_in(key, s)``; theta <- theta
- eta grad 1/2 sum_a (f(x_a) - y_a)^2 over the P training pairs), with the per-layer NTK recorded on any
N inputs. Compare with :func:`sft.predict.ntk_change_by_layer_gd` (the O(1/n) mean change).
"""
from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from . import networks as _nw
from .training import _check_data, _check_int, _check_schedule
from ..kernels.activations import get_activation
from ..conventions import check_widths, layer_constants, require_x64

__all__ = ["layer_ntk", "train_layer_ntk"]


def _layer_ntk(params, x, act, cw, cb):
    """(L + 1, N, N): Theta^(l)_ab = (delta^(l)_a . delta^(l)_b) G^(l)_ab (module docstring)."""
    zs = _nw._preactivations(params, x, act.fn, cw, cb)
    gs = _nw._metrics(x, zs, act.fn, cw, cb)
    delta = jnp.ones_like(zs[-1])
    out = [(delta @ delta.T) * gs[-1]]
    for l in range(len(zs) - 2, -1, -1):
        omega = params[l + 1][0]
        delta = act.derivative(zs[l]) * (math.sqrt(cw[l + 1] / omega.shape[0]) * (delta @ omega.T))
        out.append((delta @ delta.T) * gs[l])
    return jnp.stack(out[::-1])


def layer_ntk(params, x, *, activation, C_W, C_b):
    """Per-layer NTK (L + 1, N, N) of ONE network (``params`` as :func:`sft.sim.apply`), readout last;
    the sum over layers is the empirical NTK.

    >>> p = [(w[0], b[0]) for w, b in _nw.init_params(jax.random.key(0), n_ensemble=1, in_dim=2, widths=[8, 8])]
    >>> t = layer_ntk(p, jnp.eye(2), activation="tanh", C_W=1.0, C_b=0.1)
    >>> J = jax.jacrev(lambda q: _nw.apply(q, jnp.eye(2), activation="tanh", C_W=1.0, C_b=0.1)[:, 0])(p)
    >>> l2 = sum(j.reshape(2, -1) @ j.reshape(2, -1).T for j in J[1])   # layer 2 from autodiff
    >>> t.shape, bool(jnp.abs(t[1] - l2).max() < 1e-12)
    ((3, 2, 2), True)
    """
    require_x64("sft.sim.layer_ntk")
    act = get_activation(activation)
    cw, cb = (tuple(map(float, c)) for c in layer_constants(len(params) - 1, C_W, C_b))
    x = _nw._check_x(x, params[0][0].dtype)
    return _layer_ntk(params, x, act, cw, cb)


def _train_one(params, x_train, y_train, x, eta, *, act, cw, cb, n_records, record_every):
    def f(p):
        return _nw._preactivations(p, x_train, act.fn, cw, cb)[-1][:, 0]

    def loss(p):
        r = f(p) - y_train
        return 0.5 * (r @ r)

    def step(p, _):
        g = jax.grad(loss)(p)
        return jax.tree_util.tree_map(lambda a, b: a - eta * b, p, g), None

    def block(p, _):
        p, _ = jax.lax.scan(step, p, None, length=record_every)
        return p, _layer_ntk(p, x, act, cw, cb)

    first = _layer_ntk(params, x, act, cw, cb)
    _, rest = jax.lax.scan(block, params, None, length=n_records - 1)
    return jnp.concatenate([first[None], rest])


@functools.lru_cache(maxsize=32)
def _compiled(activation, cw, cb, n_records, record_every):
    one = functools.partial(_train_one, act=get_activation(activation), cw=cw, cb=cb, n_records=n_records,
                            record_every=record_every)
    return jax.jit(jax.vmap(one, in_axes=(0, None, None, None, None)))


def train_layer_ntk(key, x_train, y_train, x, *, n_ensemble, widths, activation, C_W, C_b, learning_rate,
                    n_steps, record_every, chunk_size=256, dtype=jnp.float64):
    """Per-layer NTK on the inputs x (N, n_0) of ``n_ensemble`` networks trained by full-batch GD.

    Networks, loss and update as :func:`sft.sim.train_ensemble` (same key: same networks, same
    trajectories); recorded at steps 0, r, .., n_steps (r = ``record_every``). Returns (steps (T,),
    ntk (S, T, L + 1, N, N)) as numpy arrays, layers 1 .. L + 1 (readout last). dtype float64 by default.

    >>> steps, t = train_layer_ntk(jax.random.key(0), np.eye(2), np.ones(2), np.eye(2), n_ensemble=3,
    ...                            widths=[16], activation="tanh", C_W=1.0, C_b=0.1, learning_rate=0.5,
    ...                            n_steps=4, record_every=2)
    >>> steps.tolist(), t.shape
    ([0, 2, 4], (3, 3, 2, 2, 2))
    """
    require_x64("sft.sim.train_layer_ntk")
    S = _check_int("n_ensemble", n_ensemble, 1)
    widths = check_widths(widths)
    get_activation(activation)
    cw, cb = (tuple(map(float, c)) for c in layer_constants(len(widths), C_W, C_b))
    dt = _nw._check_dtype(dtype)
    lr, n_steps, record_every = _check_schedule(learning_rate, n_steps, record_every)
    chunk = max(2, min(_check_int("chunk_size", chunk_size, 1), S))
    x_train, y_train, x = _check_data(x_train, y_train, x, dt)
    sizes = _nw._layer_sizes(x_train.shape[1], widths, 1)
    n_rec = n_steps // record_every + 1
    dense = sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))
    N = x.shape[0]
    flops = S * (6 * x_train.shape[0] * dense * max(n_steps, 1) + n_rec * 6 * N * dense)
    _nw._check_cost("train_layer_ntk", S, flops, S * n_rec * (len(widths) + 1) * N * N * dt.itemsize,
                    8 * (dense + sum(sizes[1:])) * dt.itemsize)
    train = _compiled(activation, cw, cb, n_rec, record_every)
    eta = jnp.asarray(lr, dtype=dt)
    out = [np.asarray(train(_nw._init_chunk(_nw._indices(s, chunk), key, sizes, dt), x_train, y_train, x, eta))
           for s in range(0, S, chunk)]
    return np.arange(n_rec) * record_every, np.concatenate(out)[:S]
