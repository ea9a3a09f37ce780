"""Infinite-width NNGP and NTK kernels of deep fully-connected networks.

Recursions (conventions in :mod:`sft.conventions`; PDLT eqs. (4.118), (9.5); neural-tangents stax):

    K^(1)_{ab}   = C_b + C_W x_a.x_b / n_0,                       Theta^(1) = K^(1)
    K^(l+1)_{ab} = C_b + C_W <sigma_a sigma_b>_{K^(l)}
    Theta^(l+1)  = K^(l+1) + C_W <sigma'_a sigma'_b>_{K^(l)} Theta^(l),   l = 1 .. depth.

The readout kernel is layer depth + 1. Two input sets x1 (N1, d), x2 (N2, d) are carried as the
diagonal variances of each set plus the (N1, N2) cross block, so the cost is O(N1 N2) per layer.

One recursion serves numpy (plain calls: float64 numpy arrays, in-place updates, threaded closed forms)
and JAX (jit / vmap / grad in x1, x2, C_W, C_b: the same lines on jax arrays); see :func:`nngp_and_ntk`.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .activations import get_activation
from ..conventions import check_depth, check_flag, check_inputs, layer_constants, require_x64
from ..gaussian.expectations import _is_traced, pair_and_diag_expectations

__all__ = ["nngp", "ntk", "nngp_and_ntk"]


def _traced_constants(depth, C_W, C_b):
    """Per-layer (C_W, C_b) as JAX arrays (depth + 1,) under tracing: shapes checked, values not."""
    depth = check_depth(depth)
    out = []
    for name, val in (("C_W", C_W), ("C_b", C_b)):
        arr = jnp.asarray(val, dtype=jnp.float64)
        if arr.ndim == 0:
            arr = jnp.full(depth + 1, arr)
        if arr.shape != (depth + 1,):
            raise ValueError(f"{name} has shape {jnp.shape(val)}: give a scalar or a sequence of length "
                             f"depth + 1 = {depth + 1} (hidden layers then readout)")
        out.append(arr)
    return out


def _traced_inputs(x1, x2):
    """Inputs as JAX float64 arrays (N, d) under tracing: shapes checked, values (finiteness) not."""
    arrays = [jnp.asarray(x, dtype=jnp.float64) for x in (x1, x1 if x2 is None else x2)]
    for name, a in zip(("x1", "x2"), arrays):
        if a.ndim != 2 or a.shape[0] < 1 or a.shape[1] < 1:
            raise ValueError(f"{name} has shape {a.shape}: inputs must have shape (N, d) with N, d >= 1")
    if arrays[0].shape[1] != arrays[1].shape[1]:
        raise ValueError(f"x1 has feature dimension {arrays[0].shape[1]} but x2 has "
                         f"{arrays[1].shape[1]}: they must be equal")
    return arrays


def _with_diagonal(m, d):
    """m with its diagonal replaced by d (in place for numpy, functional for JAX)."""
    if isinstance(m, np.ndarray):
        np.fill_diagonal(m, d)
        return m
    i = jnp.arange(m.shape[0])
    return m.at[i, i].set(d)


class _UpperTriangle:
    """A symmetric (N, N) matrix as the vector of its upper triangle (i <= j): under JAX the closed
    forms are evaluated on it (half the work; XLA cannot skip the mirror half by itself)."""

    def __init__(self, N):
        self.rows, self.cols = np.triu_indices(N)
        self.diagonal = np.flatnonzero(self.rows == self.cols)
        self.N = N

    def pack(self, m):
        return m[self.rows, self.cols]

    def unpack(self, v):
        m = jnp.zeros((self.N, self.N), v.dtype).at[self.rows, self.cols].set(v)
        return m + jnp.triu(m, 1).T


def _next_layer(act, q1, q2, k, symmetric, n_start, packed=None):
    """One layer of the recursion: (E[s s], E[s' s']) (N1, N2), the diagonals (E[s^2], E[s'^2]) of both
    input sets and the node count, from one set of Hermite coefficients (pair_and_diag_expectations).
    ``packed`` (an _UpperTriangle): k and the outputs are upper triangles, closed forms only."""
    if packed is not None:
        ess, edd = act.gauss_both(q1[packed.rows], q1[packed.cols], k)
        d1 = act.gauss_ss(q1, q1, q1), act.gauss_dd(q1, q1, q1)
        return ess.at[packed.diagonal].set(d1[0]), edd.at[packed.diagonal].set(d1[1]), d1, d1, 0
    if symmetric:
        ess, edd, d1, _, n = pair_and_diag_expectations(act, q1, q1, k, n_start=n_start, symmetric=True)
        return ess, edd, d1, d1, n
    return pair_and_diag_expectations(act, q1, q2, k, n_start=n_start, symmetric=False)


def nngp_and_ntk(x1, x2=None, *, depth, activation, C_W, C_b, all_layers=False, ntk=True):
    """NNGP kernel K and NTK Theta between x1 (N1, d) and x2 (N2, d) (x2=None: x1 with itself).

    Returns ``(K, Theta)``, float64 arrays of shape (N1, N2) for the readout layer, or of shape
    (depth + 1, N1, N2) for layers 1 .. depth+1 when ``all_layers`` (``Theta`` is None if not ``ntk``).
    ``C_W``, ``C_b``: scalars or per-layer sequences of length depth + 1.

    Activations without closed forms use the Mehler series of :mod:`sft.gaussian.expectations`: each layer's
    expectations are within 1e-13 of sqrt(E[s_a^2] E[s_b^2]) (resp. s'), which keeps depth-10 kernels
    within ~1e-12 relative to sqrt(K_aa K_bb) (see tests/test_gaussian.py); a ValueError is raised when
    the series cannot reach that (kinked activation, or variances too large, e.g. tanh q > ~60).

    JAX: works under ``jax.jit``, ``jax.vmap``, ``jax.grad`` / ``jax.jacfwd`` in x1, x2, C_W and C_b (then
    the outputs are JAX float64 arrays; plain calls return numpy float64 arrays). The same code runs
    both ways: closed forms in jax.numpy (custom derivatives at |rho| = 1 and zero variances, see
    :mod:`sft.kernels.activations`), the Mehler series on the host through ``jax.pure_callback`` with
    derivatives from Price's theorem (:mod:`sft.gaussian.expectations`), so the series part runs on
    the CPU even when JAX uses a GPU. Under tracing only what the shapes and static arguments show is
    checked (shapes, depth, flags, activation); value checks (C_W > 0, C_b >= 0, finite inputs) need
    a plain call. JAX's x64 flag must be on (RuntimeError otherwise): there is no float32 mode.

    >>> import jax, numpy as np
    >>> x = np.array([[1.0, 0.0], [0.6, 0.8]])
    >>> dK = jax.jit(jax.grad(lambda cw: nngp(x, depth=2, activation="relu", C_W=cw, C_b=0.0)[0, 1]))(2.0)
    >>> K3 = nngp(x, depth=2, activation="relu", C_W=2.0, C_b=0.0)[0, 1]  # K is C_W^3 (...) at C_b = 0
    >>> bool(abs(dK - 3 * K3 / 2.0) < 1e-12)
    True
    """
    all_layers, ntk = check_flag("all_layers", all_layers), check_flag("ntk", ntk)
    require_x64("sft.kernels.nngp_and_ntk")
    act = get_activation(activation)
    symmetric = x2 is None
    if _is_traced(x1, x2, C_W, C_b):
        cw, cb = _traced_constants(depth, C_W, C_b)
        x1, x2 = _traced_inputs(x1, x2)
        xp = jnp
    else:
        cw, cb = layer_constants(depth, C_W, C_b)
        x1, x2 = check_inputs(x1, x2)
        xp = np
    n0 = x1.shape[1]
    q1 = cb[0] + cw[0] * xp.einsum("ad,ad->a", x1, x1) / n0
    q2 = q1 if symmetric else cb[0] + cw[0] * xp.einsum("ad,ad->a", x2, x2) / n0
    k = cb[0] + cw[0] * (x1 @ x2.T) / n0
    if symmetric:  # exact symmetry (upper tiles only in the series) and exact rho = 1 on the diagonal
        k = _with_diagonal(0.5 * (k + k.T), q1)
    packed = _UpperTriangle(k.shape[0]) if symmetric and xp is jnp and act.has_closed_form else None
    if packed is not None:
        k = packed.pack(k)
    t1, t2, t = q1, q2, k  # NTK diagonals and cross block
    ks, ts, n_nodes = [k], [t], 64
    for l in range(1, len(cw)):
        ess, edd, (s1, d1), (s2, d2), n_nodes = _next_layer(act, q1, q2, k, symmetric, int(n_nodes / 1.6),
                                                            packed)
        if symmetric and packed is None:  # the diagonal from the diagonal rule (equal within tol): K_aa = q_a
            ess, edd = _with_diagonal(ess, s1), _with_diagonal(edd, d1)
        knew = ess  # in place for numpy (N1 x N2 temporaries are the memory bottleneck); JAX rebinds
        knew *= cw[l]
        knew += cb[l]
        if ntk:
            edd *= cw[l]
            edd *= t
            edd += knew
            t = edd
            t1 = cb[l] + cw[l] * s1 + cw[l] * d1 * t1
            t2 = cb[l] + cw[l] * s2 + cw[l] * d2 * t2
        q1, q2, k = cb[l] + cw[l] * s1, cb[l] + cw[l] * s2, knew
        if all_layers:  # otherwise keep only the current layer (memory)
            ks.append(k)
            ts.append(t)
    if packed is not None:
        k, t = packed.unpack(k), (packed.unpack(t) if ntk else None)
        ks, ts = [packed.unpack(m) for m in ks], [packed.unpack(m) for m in ts]
    if all_layers:
        return xp.stack(ks), (xp.stack(ts) if ntk else None)
    return k, (t if ntk else None)


def nngp(x1, x2=None, *, depth, activation, C_W, C_b, all_layers=False):
    """NNGP kernel of the readout (N1, N2), or all layers (depth+1, N1, N2). See :func:`nngp_and_ntk`.

    >>> import numpy as np
    >>> x = np.array([[1.0, 0.0], [0.0, 1.0]])
    >>> k = nngp(x, depth=1, activation="relu", C_W=2.0, C_b=0.0)   # = [[1, 1/pi], [1/pi, 1]]
    >>> k.shape, round(float(k[0, 1]) * np.pi, 12)
    ((2, 2), 1.0)
    """
    return nngp_and_ntk(x1, x2, depth=depth, activation=activation, C_W=C_W, C_b=C_b,
                        all_layers=all_layers, ntk=False)[0]


def ntk(x1, x2=None, *, depth, activation, C_W, C_b, all_layers=False):
    """Neural tangent kernel of the readout (N1, N2), or all layers. See :func:`nngp_and_ntk`."""
    return nngp_and_ntk(x1, x2, depth=depth, activation=activation, C_W=C_W, C_b=C_b,
                        all_layers=all_layers)[1]
