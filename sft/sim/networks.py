"""Finite-width fully-connected networks in JAX: ensembles, stochastic metrics, empirical NNGP and NTK.

Conventions (:mod:`sft.conventions`, NTK parameterization). Trained parameters omega, beta ~ N(0, 1);
layer l = 1 .. depth+1 has weight W^(l) = sqrt(C_W^(l) / n_{l-1}) omega^(l) and bias
b^(l) = sqrt(C_b^(l)) beta^(l), with

    z^(1)_a = b^(1) + W^(1) x_a,      z^(l+1)_a = b^(l+1) + W^(l+1) sigma(z^(l)_a),

``widths = (n_1, .., n_depth)`` the hidden widths and layer depth+1 a linear readout of ``n_out``
outputs, f(x) = z^(depth+1)(x). Parameters of one network are a list over layers of
``(omega (n_{l-1}, n_l), beta (n_l,))``, so z = sqrt(C_b) beta + sqrt(C_W / n_{l-1}) h @ omega for a
batch of inputs h of shape (N, n_{l-1}).

Stochastic metric (PDLT eq. (4.70); THEORY.md), per network, shape (N, N):

    G^(1)_{ab}   = C_b^(1) + C_W^(1) x_a . x_b / n_0,
    G^(l+1)_{ab} = C_b^(l+1) + (C_W^(l+1) / n_l) sum_j sigma(z^(l)_{j;a}) sigma(z^(l)_{j;b}).

Given layer l, each neuron of layer l+1 is exactly Gaussian with covariance G^(l+1), hence
E[G^(l)] = E[z^(l) z^(l)] at any width, and E[G^(l)] -> K^(l) (:func:`sft.kernels.nngp`) as n -> inf.

Empirical NTK (one output): Theta_{ab} = sum_p df(x_a)/dp df(x_b)/dp over all p in (omega, beta).
With delta^(l)_{i;a} = df(x_a)/dz^(l)_{i;a} (backprop: delta^(depth+1) = 1,
delta^(l) = sigma'(z^(l)) * (sqrt(C_W^(l+1)/n_l) omega^(l+1) delta^(l+1))), the chain rule gives

    Theta_{ab} = sum_{l=1}^{depth+1} (delta^(l)_a . delta^(l)_b) G^(l)_{ab}

(PDLT eq. (8.12)-(8.13) in NTK parameterization); ``method="backprop"`` evaluates this, the default
``method="autodiff"`` contracts the full Jacobian from ``jax.jacrev``. Both are tested equal.

Ensembles. Network i takes its parameters from ``jax.random.fold_in(key, i)``, so results are
bitwise independent of ``chunk_size`` and of the number of devices. The ensemble is evaluated in
chunks of ``chunk_size`` networks: one ``jit`` draws a chunk's parameters (``vmap`` over network
indices), a second loops over its networks (``lax.map``: the same per-network program whatever the
chunk size). The default chunk keeps the working memory near :data:`MEMORY_BUDGET_BYTES`. With
several devices (``jax.device_count() > 1``) each chunk is sharded over all devices along the
ensemble axis (a 1-d ``Mesh`` named ``"ensemble"``, ``shard_map``); a chunk is rounded up to a
multiple of the device count with >= 2 networks per device, the last chunk padded with networks
that are computed and dropped. Outputs are ``jax.Array`` s, ensemble axis first.

Limits (checked up front, before anything is compiled; ValueError stating the estimate and the
limit). Network indices are uint32 (``fold_in``), so ``n_ensemble <= MAX_NETWORKS = 2**32``: an index
never wraps. A request is refused if the results it returns, or the smallest working set (two
networks' parameters, x2 for RNG temporaries, plus one network's activations / Jacobian), exceed
``MAX_BYTES`` (64 GiB), or if its arithmetic exceeds ``MAX_FLOPS`` (1e17 floating-point operations,
estimated as 2 N sum_l n_{l-1} n_l per forward pass, x3 for backprop, x3N for the autodiff NTK, plus
2 N^2 n_{l-1} per layer metric): days on a 2-core CPU, hours on a GPU. Legitimate big runs fit (e.g.
10^6 networks of width 1000, depth 3, N = 100: 6e14 flop, 4e8 bytes of outputs); to go further, set
the module attributes (``sft.sim.networks.MAX_FLOPS = ...``) deliberately.

dtype: float64 (default) or float32 for the simulation; JAX's ``jax_enable_x64`` must be on in both
cases (:func:`sft.conventions.require_x64`). The same key with float32 and float64 draws DIFFERENT
networks (``jax.random.normal`` samples differently per dtype), not rounded copies.
"""
from __future__ import annotations

import functools
import math
import numbers
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from ..kernels.activations import get_activation
from ..conventions import check_widths, layer_constants, require_x64

__all__ = ["init_params", "apply", "ensemble_outputs", "layer_kernels", "empirical_nngp",
           "empirical_ntk", "EmpiricalNNGP", "MEMORY_BUDGET_BYTES", "MAX_NETWORKS", "MAX_BYTES",
           "MAX_FLOPS"]

#: Working-memory target (bytes) of one chunk of networks when ``chunk_size`` is None.
MEMORY_BUDGET_BYTES = 2 ** 28
#: Most networks in one call: network i uses ``fold_in(key, i)`` with i a uint32 (module docstring).
MAX_NETWORKS = 2 ** 32
#: Largest result, and largest smallest-working-set, of one call in bytes (module docstring).
MAX_BYTES = 2 ** 36
#: Largest estimated number of floating-point operations of one call (module docstring).
MAX_FLOPS = 10 ** 17
_DTYPES = (np.dtype("float64"), np.dtype("float32"))
_NTK_METHODS = ("autodiff", "backprop")


# ----------------------------------------------------------------------------------- validation
def _check_count(name, value) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name}={value!r} is not allowed: {name} must be an integer >= 1")
    return int(value)


def _check_dtype(dtype) -> np.dtype:
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt not in _DTYPES:
        raise ValueError(f"dtype={dtype!r} is not allowed: use float64 (default) or float32")
    return dt


def _check_cost(what, n_networks, flops, result_bytes, working_bytes):
    """ValueError (stating the estimate and the limit) if a request breaks MAX_NETWORKS, MAX_BYTES or
    MAX_FLOPS (module docstring); ``n_networks`` None for requests that draw no network keys."""
    if n_networks is not None and n_networks > MAX_NETWORKS:
        raise ValueError(f"{what}: n_ensemble={n_networks} is not allowed: network i uses "
                         f"jax.random.fold_in(key, i) with a uint32 index, so at most MAX_NETWORKS = "
                         f"2**32 = {MAX_NETWORKS} networks per call (use several keys)")
    for label, value, limit, unit in (("its results", result_bytes, MAX_BYTES, "bytes"),
                                      ("its smallest working set", working_bytes, MAX_BYTES, "bytes"),
                                      ("its arithmetic", flops, MAX_FLOPS, "floating-point operations")):
        if value > limit:
            raise ValueError(f"{what} is too large: {label} would take ~{value:.3g} {unit}, above the limit "
                             f"{limit:.3g} (sft.sim.networks.MAX_{'BYTES' if unit == 'bytes' else 'FLOPS'}; "
                             "module docstring); reduce the number of networks or chains, the widths or the number of inputs")


def _network_cost(kind, sizes, n_inputs):
    """(flops, result entries, working entries beyond parameters) of one network (module docstring)."""
    N = n_inputs
    fwd = 2 * N * sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))
    gram = 2 * N * N * sum(sizes[:-1])
    n_params = sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))
    flops = {"outputs": fwd, "metrics": fwd + gram, "nngp": fwd + 2 * N * N * sizes[-2],
             "ntk_backprop": 3 * fwd + gram, "ntk_autodiff": 3 * N * fwd + 2 * N * N * n_params}[kind]
    result = {"outputs": N * sizes[-1], "metrics": (len(sizes) - 1) * N * N,
              "nngp": N * sizes[-1] + N * N}.get(kind, N * N)
    live = 4 * N * sum(sizes) + (2 * N * n_params if kind == "ntk_autodiff" else 0)
    return flops, result, live


def _check_chunk(chunk_size):
    return None if chunk_size is None else _check_count("chunk_size", chunk_size)


def _check_x(x, dtype) -> jax.Array:
    """Inputs (N, n_0): finite (when concrete), cast to ``dtype``."""
    if not isinstance(x, jax.core.Tracer):
        x = np.asarray(x, dtype=np.float64)
        if not np.all(np.isfinite(x)):
            raise ValueError("x contains NaN or inf: inputs must be finite")
    if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"x has shape {x.shape}: inputs must have shape (N, n_0) with N, n_0 >= 1")
    return jnp.asarray(x, dtype=dtype)


# ----------------------------------------------------------------------------- one network
def _layer_sizes(in_dim, widths, n_out):
    return (in_dim,) + tuple(widths) + (n_out,)


def _init_one(key, sizes, dtype):
    """Parameters of one network: [(omega (n_{l-1}, n_l), beta (n_l,)) for l = 1 .. depth+1], i.i.d.
    N(0, 1), cut in this order from ONE normal vector drawn with ``key`` (one RNG call: fast to compile)."""
    shapes = [s for a, b in zip(sizes[:-1], sizes[1:]) for s in ((a, b), (b,))]
    flat = jax.random.normal(key, (sum(math.prod(s) for s in shapes),), dtype)
    ends = np.cumsum([math.prod(s) for s in shapes])
    leaves = [flat[e - math.prod(s):e].reshape(s) for s, e in zip(shapes, ends)]
    return list(zip(leaves[::2], leaves[1::2]))


def _preactivations(params, x, sigma, cw, cb):
    """[z^(1), .., z^(depth+1)], each (N, n_l): z = sqrt(C_b) beta + sqrt(C_W / n_{l-1}) h @ omega."""
    zs, h = [], x
    for l, (omega, beta) in enumerate(params):
        z = math.sqrt(cb[l]) * beta + math.sqrt(cw[l] / h.shape[-1]) * (h @ omega)
        zs.append(z)
        h = sigma(z)
    return zs


def _metrics(x, zs, sigma, cw, cb):
    """Stochastic metrics [G^(1), .., G^(depth+1)], each (N, N): G = C_b + (C_W / n) h h^T."""
    hs = [x] + [sigma(z) for z in zs[:-1]]
    return [cb[l] + (cw[l] / h.shape[-1]) * (h @ h.T) for l, h in enumerate(hs)]


def _ntk_backprop(params, x, act, cw, cb):
    """Theta_{ab} = sum_l (delta^(l)_a . delta^(l)_b) G^(l)_{ab} (module docstring), one output."""
    zs = _preactivations(params, x, act.fn, cw, cb)
    gs = _metrics(x, zs, act.fn, cw, cb)
    delta = jnp.ones_like(zs[-1])  # df/dz^(depth+1), (N, 1)
    theta = (delta @ delta.T) * gs[-1]
    for l in range(len(zs) - 2, -1, -1):
        omega = params[l + 1][0]
        delta = act.derivative(zs[l]) * (math.sqrt(cw[l + 1] / omega.shape[0]) * (delta @ omega.T))
        theta = theta + (delta @ delta.T) * gs[l]
    return theta


def _ntk_autodiff(params, x, act, cw, cb):
    """Theta_{ab} = sum_p J_{a p} J_{b p} with J = d f(x_a) / d(omega, beta) from jax.jacrev."""
    jac = jax.jacrev(lambda p: _preactivations(p, x, act.fn, cw, cb)[-1][:, 0])(params)
    leaves = [j.reshape(x.shape[0], -1) for j in jax.tree_util.tree_leaves(jac)]
    return sum(j @ j.T for j in leaves)


def init_params(key, *, n_ensemble, in_dim, widths, n_out=1, dtype=jnp.float64):
    """Parameters of ``n_ensemble`` networks; network i uses ``jax.random.fold_in(key, i)``.

    Returns a list over layers l = 1 .. depth+1 of ``(omega (S, n_{l-1}, n_l), beta (S, n_l))`` with
    i.i.d. N(0, 1) entries, S = n_ensemble, n_0 = in_dim, n_{depth+1} = n_out.

    >>> p = init_params(jax.random.key(0), n_ensemble=2, in_dim=3, widths=[5, 4])
    >>> [w.shape for w, b in p]
    [(2, 3, 5), (2, 5, 4), (2, 4, 1)]
    """
    require_x64("sft.sim.init_params")
    S = _check_count("n_ensemble", n_ensemble)
    sizes = _layer_sizes(_check_count("in_dim", in_dim), check_widths(widths),
                         _check_count("n_out", n_out))
    dt = _check_dtype(dtype)
    n_params = sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))
    _check_cost("init_params", S, 0, S * n_params * dt.itemsize, 2 * n_params * dt.itemsize)
    return _init_chunk(_indices(0, S), key, sizes, dt)


def apply(params, x, *, activation, C_W, C_b):
    """Outputs f(x) (N, n_out) of ONE network (``params`` without the ensemble axis, as
    ``[p[i] for p in ...]`` of :func:`init_params`). Differentiable in ``params`` and ``x``.

    >>> p = [(w[0], b[0]) for w, b in init_params(jax.random.key(0), n_ensemble=1, in_dim=2, widths=[3])]
    >>> apply(p, jnp.ones((4, 2)), activation="relu", C_W=2.0, C_b=0.0).shape
    (4, 1)
    """
    require_x64("sft.sim.apply")
    act = get_activation(activation)
    cw, cb = (tuple(map(float, c)) for c in layer_constants(len(params) - 1, C_W, C_b))
    omega0 = params[0][0]
    if omega0.ndim != 2:
        raise ValueError(f"params[0][0] has shape {omega0.shape}: give ONE network's parameters "
                         "(drop the ensemble axis), omega of shape (n_in, n_out)")
    x = _check_x(x, omega0.dtype)
    if x.shape[1] != omega0.shape[0]:
        raise ValueError(f"x has feature dimension {x.shape[1]} but the network's input dimension is "
                         f"{omega0.shape[0]}: they must be equal")
    return _preactivations(params, x, act.fn, cw, cb)[-1]


# ------------------------------------------------------------------------------- ensembles
def _indices(start, count) -> jax.Array:
    """Network indices start .. start+count-1 as uint32; indices past 2**32 - 1 (only the padding of a
    last chunk, computed and dropped, since n_ensemble <= MAX_NETWORKS) wrap instead of overflowing."""
    return jnp.asarray(np.arange(start, start + count, dtype=np.uint64) % (2 ** 32), dtype=jnp.uint32)


@functools.partial(jax.jit, static_argnums=(2, 3))
def _init_chunk(idx, key, sizes, dtype):
    """Parameters of networks ``idx`` (uint32 (C,)): network i from ``jax.random.fold_in(key, i)``."""
    return jax.vmap(lambda i: _init_one(jax.random.fold_in(key, i), sizes, dtype))(idx)


def _per_network(kind, act, cw, cb):
    """The function (params, x) -> result of one network, for each ``kind`` of ensemble computation."""
    def fn(params, x):
        if kind == "ntk_autodiff":
            return _ntk_autodiff(params, x, act, cw, cb)
        if kind == "ntk_backprop":
            return _ntk_backprop(params, x, act, cw, cb)
        zs = _preactivations(params, x, act.fn, cw, cb)
        if kind == "outputs":
            return zs[-1]
        gs = _metrics(x, zs, act.fn, cw, cb)
        if kind == "metrics":
            return jnp.stack(gs)
        return zs[-1], gs[-1]  # "nngp"
    return fn


@functools.lru_cache(maxsize=128)
def _compiled(kind, activation, cw, cb, n_dev):
    """jit of ``lax.map`` of :func:`_per_network` over the ensemble axis of params; cached per
    configuration. A loop (not vmap) runs the same per-network program whatever the chunk size, so
    results do not change by a bit with ``chunk_size``; with ``n_dev > 1`` devices each device
    loops over its own shard of the chunk (``shard_map`` over the mesh axis "ensemble")."""
    fn = _per_network(kind, get_activation(activation), cw, cb)

    def loop(params, x):
        return jax.lax.map(lambda p: fn(p, x), params)
    if n_dev > 1:
        loop = jax.shard_map(loop, mesh=_mesh(), in_specs=(PartitionSpec("ensemble"), PartitionSpec()),
                             out_specs=PartitionSpec("ensemble"))
    return jax.jit(loop)


def _mesh():
    """1-d mesh of all devices along the ensemble axis."""
    return Mesh(np.array(jax.devices()), ("ensemble",))


def _default_chunk(kind, sizes, n_inputs, itemsize):
    """Networks per chunk that keep the working memory near MEMORY_BUDGET_BYTES: each network of a
    chunk holds its parameters (x2 for RNG temporaries) and result; one network at a time holds its
    activations and, for the autodiff NTK, its Jacobian (N x #params)."""
    n_params = sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))
    per_network = 2 * n_params + len(sizes) * n_inputs ** 2
    live = 4 * n_inputs * sum(sizes) + (2 * n_inputs * n_params if kind == "ntk_autodiff" else 0)
    return max(1, (MEMORY_BUDGET_BYTES // itemsize - live) // per_network)


def _ensemble(kind, key, x, *, n_ensemble, widths, activation, C_W, C_b, n_out, chunk_size, dtype):
    """Validate, then evaluate network i = 0 .. S-1 (key fold_in(key, i)) in chunks, sharded over
    all devices along the ensemble axis; returns the results stacked along a leading axis S."""
    require_x64("sft.sim." + {"outputs": "ensemble_outputs", "metrics": "layer_kernels",
                              "nngp": "empirical_nngp"}.get(kind, "empirical_ntk"))
    S = _check_count("n_ensemble", n_ensemble)
    widths = check_widths(widths)
    act = get_activation(activation)
    cw, cb = (tuple(map(float, c)) for c in layer_constants(len(widths), C_W, C_b))  # weak types
    dt = _check_dtype(dtype)
    chunk = _check_chunk(chunk_size)
    x = _check_x(x, dt)
    sizes = _layer_sizes(x.shape[1], widths, _check_count("n_out", n_out))
    flops, result, live = _network_cost(kind, sizes, x.shape[0])
    n_params = sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))
    _check_cost(f"this ensemble ({kind})", S, S * flops, S * result * dt.itemsize,
                (4 * n_params + live) * dt.itemsize)
    if chunk is None:
        chunk = _default_chunk(kind, sizes, x.shape[0], dt.itemsize)
    n_dev = jax.device_count()
    # >= 2 networks per device: XLA inlines a loop of one trip, which may round differently.
    chunk = max(2, -(-min(chunk, S) // n_dev)) * n_dev
    try:
        f = _compiled(kind, activation, cw, cb, n_dev)
    except TypeError:  # unhashable activation spec: compile without the cache
        f = _compiled.__wrapped__(kind, act, cw, cb, n_dev)
    sharding = NamedSharding(_mesh(), PartitionSpec("ensemble")) if n_dev > 1 else None
    chunks = []
    for start in range(0, S, chunk):
        idx = _indices(start, chunk)
        if sharding is not None:
            idx = jax.device_put(idx, sharding)
        chunks.append(f(_init_chunk(idx, key, sizes, dt), x))
    if len(chunks) == 1 and chunk == S:
        return chunks[0]
    return jax.tree_util.tree_map(lambda *a: jnp.concatenate(a)[:S], *chunks)


def ensemble_outputs(key, x, *, n_ensemble, widths, activation, C_W, C_b, n_out=1, chunk_size=None,
                     dtype=jnp.float64):
    """Outputs f_i(x_a) of ``n_ensemble`` independent networks: shape (S, N, n_out).

    x: (N, n_0) inputs. Network s has parameters from ``jax.random.fold_in(key, s)`` (as
    :func:`init_params`), so ``ensemble_outputs(...)[s] == apply(init_params(...)[s], x)``.

    >>> f = ensemble_outputs(jax.random.key(0), jnp.ones((3, 2)), n_ensemble=5, widths=[8, 8],
    ...                      activation="tanh", C_W=1.0, C_b=0.0)
    >>> f.shape, f.dtype
    ((5, 3, 1), dtype('float64'))
    """
    return _ensemble("outputs", key, x, n_ensemble=n_ensemble, widths=widths, activation=activation,
                     C_W=C_W, C_b=C_b, n_out=n_out, chunk_size=chunk_size, dtype=dtype)


def layer_kernels(key, x, *, n_ensemble, widths, activation, C_W, C_b, chunk_size=None,
                  dtype=jnp.float64):
    """Stochastic metrics G^(l)_{ab}, l = 1 .. depth+1, of each network: shape (S, depth+1, N, N).

    G^(1) = C_b + C_W x.x / n_0 (the same for all networks), G^(l+1) = C_b + (C_W/n_l) sigma.sigma
    (module docstring); the last is the readout's covariance given the last hidden layer, and
    E[G^(l)] = E[z^(l)_a z^(l)_b] exactly. Same networks as :func:`ensemble_outputs` with the same key.
    """
    return _ensemble("metrics", key, x, n_ensemble=n_ensemble, widths=widths, activation=activation,
                     C_W=C_W, C_b=C_b, n_out=1, chunk_size=chunk_size, dtype=dtype)


class EmpiricalNNGP(NamedTuple):
    """Ensemble estimate of the output covariance E[f_a f_b] (the NNGP kernel at finite width).

    Attributes:
      covariance: (N, N), mean over networks s of C_s = (1/n_out) sum_i f_{s,i}(x_a) f_{s,i}(x_b)
        (second moment: E[f] = 0 exactly, so this is unbiased for the covariance).
      stderr: (N, N), standard error of ``covariance`` (std of C_s over s, ddof=1, / sqrt(S)).
      feature_kernel: (S, N, N), per network the readout metric G^(depth+1) =
        C_b + (C_W/n_depth) sigma(z_a).sigma(z_b) of the last hidden layer; its ensemble mean is a
        lower-variance unbiased estimator of the same E[f_a f_b].
      n_ensemble, widths, dtype, key_data: the configuration that produced it (key as raw uint32 data).
    """

    covariance: jax.Array
    stderr: jax.Array
    feature_kernel: jax.Array
    n_ensemble: int
    widths: tuple
    dtype: np.dtype
    key_data: np.ndarray


def empirical_nngp(key, x, *, n_ensemble, widths, activation, C_W, C_b, n_out=1, chunk_size=None,
                   dtype=jnp.float64) -> EmpiricalNNGP:
    """Output covariance over an ensemble of ``n_ensemble >= 2`` networks, with its standard error,
    and each network's last-layer feature kernel; see :class:`EmpiricalNNGP`. Same networks as
    :func:`ensemble_outputs` with the same key."""
    if _check_count("n_ensemble", n_ensemble) < 2:
        raise ValueError("n_ensemble=1 is not allowed: a standard error needs n_ensemble >= 2")
    f, g = _ensemble("nngp", key, x, n_ensemble=n_ensemble, widths=widths, activation=activation,
                     C_W=C_W, C_b=C_b, n_out=n_out, chunk_size=chunk_size, dtype=dtype)
    c = jnp.einsum("sai,sbi->sab", f, f) / f.shape[-1]
    key_data = np.asarray(jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
                          else key)
    return EmpiricalNNGP(c.mean(0), c.std(0, ddof=1) / math.sqrt(c.shape[0]), g, int(n_ensemble),
                         check_widths(widths), np.dtype(dtype), key_data)


def empirical_ntk(key, x, *, n_ensemble, widths, activation, C_W, C_b, chunk_size=None,
                  dtype=jnp.float64, method="autodiff"):
    """Empirical NTK Theta_{ab} = sum_p df(x_a)/dp df(x_b)/dp of each network: shape (S, N, N).

    One output (n_out = 1); p runs over all trained parameters (omega, beta) of all layers, so the
    learning rates are lambda_W = C_W, lambda_b = C_b (:mod:`sft.conventions`). ``method``:
    "autodiff" (full Jacobian by ``jax.jacrev``, memory N x #params per network) or "backprop"
    (the layer sum of the module docstring, memory N x width; equal to autodiff, tested).
    Same networks as :func:`ensemble_outputs` with the same key.
    """
    if method not in _NTK_METHODS:
        raise ValueError(f"method={method!r} is not allowed: use one of {_NTK_METHODS}")
    return _ensemble("ntk_" + method, key, x, n_ensemble=n_ensemble, widths=widths,
                     activation=activation, C_W=C_W, C_b=C_b, n_out=1, chunk_size=chunk_size,
                     dtype=dtype)
