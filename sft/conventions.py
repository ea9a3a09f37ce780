"""Conventions of sft, stated once and used everywhere.

Network (a fully-connected MLP of ``depth`` hidden layers and a linear readout):

    z^(1)_a   = b^(1) + W^(1) x_a,                  W^(1)_ij ~ N(0, C_W^(1) / n_0)
    z^(l+1)_a = b^(l+1) + W^(l+1) sigma(z^(l)_a),   W^(l+1)_ij ~ N(0, C_W^(l+1) / n_l)
    b^(l)_i ~ N(0, C_b^(l)),   l = 1 .. depth + 1,   f(x) = z^(depth+1)(x)  (the readout).

``depth`` counts nonlinearities (hidden layers); layer ``depth + 1`` is the readout, with its own
(C_W, C_b) (by default the same as the hidden layers). n_0 is the input dimension.

NTK parameterization (neural-tangents' default): every weight is W = sqrt(C_W / n) * omega and every
bias b = sqrt(C_b) * beta with omega, beta ~ N(0, 1) the trained parameters. The NTK is
Theta(x, x') = sum_params df(x)/dp df(x')/dp, i.e. learning rates lambda_W = C_W, lambda_b = C_b.

Kernels (infinite width), K^(l)_{ab} = E[z_a z_b] for one neuron of layer l:

    K^(1)_{ab}     = C_b^(1) + C_W^(1) x_a . x_b / n_0
    K^(l+1)_{ab}   = C_b^(l+1) + C_W^(l+1) <sigma(z_a) sigma(z_b)>_{K^(l)}
    Theta^(1)      = K^(1)
    Theta^(l+1)    = K^(l+1) + C_W^(l+1) <sigma'(z_a) sigma'(z_b)>_{K^(l)} Theta^(l)

These equal neural-tangents' ``stax.serial([Dense(w, W_std=sqrt(C_W), b_std=sqrt(C_b)), act] * depth
+ [Dense(1, W_std=sqrt(C_W), b_std=sqrt(C_b))])`` kernels (PDLT ch. 4 and 7 in the same notation).

Numerics: theory in float64. ``import sft`` switches on ``jax_enable_x64`` for the whole process
(JAX's default is float32). Every sft entry point that computes with JAX arrays calls
:func:`require_x64` first and raises a ``RuntimeError`` if the flag is off at call time (for example
after ``jax.config.update("jax_enable_x64", False)`` or inside ``jax.enable_x64(False)``), instead of
silently returning float32 or failing later with an obscure error. Fix: call
``jax.config.update("jax_enable_x64", True)`` (or wrap the call in ``with jax.enable_x64(True):``).
Simulations that want float32 pass ``dtype=jnp.float32`` explicitly; the flag must still be on.

Opt-out: set the environment variable ``SFT_NO_X64=1`` before the first ``import sft`` and sft leaves
the global flag alone. Consequence: sft's JAX entry points (``sft.sim``, ``sft.kernels`` ...) then
raise until you enable x64 yourself, globally or with ``with jax.enable_x64(True): ...`` around the
sft calls; your own JAX code keeps JAX's float32 default. Pure numpy/sympy parts of sft are unaffected.

Random networks: a parameter is drawn by ``jax.random.normal(key, shape, dtype)``, so the SAME key
with ``dtype=float32`` and ``dtype=float64`` gives DIFFERENT networks (different samples, not a
rounded copy); compare dtypes statistically, never network by network.
"""
from __future__ import annotations

import numbers

import numpy as np

#: Relative tolerances of deterministic comparisons, keyed by dtype. Statistical comparisons use
#: z-scores from error bars instead (see ``Z_MAX``).
RTOL = {np.dtype("float64"): 1e-10, np.dtype("float32"): 1e-5}
#: Largest |z| accepted by the statistical tests at a fixed seed.
Z_MAX = 4.0


def require_x64(name: str) -> None:
    """Raise ``RuntimeError`` unless JAX's ``jax_enable_x64`` is on now (module docstring).

    ``name`` is the calling entry point, quoted in the message. Reads the effective value, so
    ``with jax.enable_x64(True):`` around a call also satisfies it.

    >>> require_x64("sft.sim.layer_kernels")  # x64 is on after ``import sft``
    """
    import jax  # noqa: PLC0415  (conventions stays importable without loading JAX)

    if not jax.config.jax_enable_x64:
        raise RuntimeError(
            f"{name} needs JAX float64, but jax_enable_x64 is off (JAX would silently compute in "
            "float32). Fix: jax.config.update(\"jax_enable_x64\", True), or call it inside "
            "`with jax.enable_x64(True):`. (sft turns the flag on at import unless SFT_NO_X64=1.)")


def check_depth(depth) -> int:
    """Validate ``depth`` (number of hidden layers): an integer >= 1."""
    if isinstance(depth, bool) or not isinstance(depth, numbers.Integral) or depth < 1:
        raise ValueError(f"depth={depth!r} is not allowed: depth must be an integer >= 1 "
                         "(the number of hidden layers / nonlinearities)")
    return int(depth)


def check_widths(widths) -> tuple[int, ...]:
    """Validate a sequence of hidden-layer widths (integers >= 1)."""
    try:
        ws = tuple(widths)
    except TypeError:
        ws = (widths,)
    if len(ws) == 0:
        raise ValueError("widths=() is not allowed: give at least one hidden-layer width")
    for w in ws:
        if isinstance(w, bool) or not isinstance(w, numbers.Integral) or w < 1:
            raise ValueError(f"widths={ws!r} is not allowed: every width must be an integer >= 1")
    return tuple(int(w) for w in ws)


def layer_constants(depth, C_W, C_b) -> tuple[np.ndarray, np.ndarray]:
    """Per-layer (C_W, C_b) as float64 arrays of length ``depth + 1`` (layers 1 .. depth+1, readout last).

    ``C_W`` and ``C_b`` are scalars (the same in every layer) or sequences of length ``depth + 1``.
    C_W must be > 0 and C_b >= 0, all finite.
    """
    depth = check_depth(depth)
    out = []
    for name, val, lo_ok in (("C_W", C_W, False), ("C_b", C_b, True)):
        arr = np.asarray(val, dtype=np.float64)
        if arr.ndim == 0:
            arr = np.full(depth + 1, float(arr))
        if arr.ndim != 1 or arr.shape[0] != depth + 1:
            raise ValueError(f"{name}={val!r} is not allowed: give a scalar or a sequence of length "
                             f"depth + 1 = {depth + 1} (hidden layers then readout)")
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name}={val!r} is not allowed: values must be finite")
        bad = arr < 0 if lo_ok else arr <= 0
        if np.any(bad):
            rule = ">= 0" if lo_ok else "> 0"
            raise ValueError(f"{name}={val!r} is not allowed: {name} must be {rule}")
        out.append(arr)
    return out[0], out[1]


def check_inputs(x1, x2=None) -> tuple[np.ndarray, np.ndarray]:
    """Validate inputs of shape (N, d): float64, finite, equal feature dimensions. ``x2=None`` -> x1."""
    arrays = []
    for name, x in (("x1", x1), ("x2", x1 if x2 is None else x2)):
        a = np.asarray(x, dtype=np.float64)
        if a.ndim != 2 or a.shape[0] < 1 or a.shape[1] < 1:
            raise ValueError(f"{name} has shape {a.shape}: inputs must have shape (N, d) with N, d >= 1")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{name} contains NaN or inf: inputs must be finite")
        arrays.append(a)
    if arrays[0].shape[1] != arrays[1].shape[1]:
        raise ValueError(f"x1 has feature dimension {arrays[0].shape[1]} but x2 has "
                         f"{arrays[1].shape[1]}: they must be equal")
    return arrays[0], arrays[1]
