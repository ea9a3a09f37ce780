"""Activation functions and their closed-form Gaussian two-point expectations.

An :class:`Activation` carries a JAX-traceable elementwise function ``fn`` and, where one exists, the
closed forms

    gauss_ss(q1, q2, c) = E[sigma(u) sigma(v)],     gauss_dd(q1, q2, c) = E[sigma'(u) sigma'(v)],

for (u, v) jointly Gaussian with mean 0, Var u = q1, Var v = q2, Cov(u, v) = c (numpy broadcasting,
float64). Activations without closed forms are integrated numerically by :mod:`sft.gaussian.expectations`
(Mehler/Hermite series), which also accepts any user-supplied JAX-differentiable function.

Closed forms (cited; each is tested against independent quadrature and Monte Carlo in tests/):
- scale-invariant sigma(z) = a+ z (z > 0), a- z (z < 0) = A z + B |z|, A = (a+ + a-)/2, B = (a+ - a-)/2,
  theta = arccos(c / sqrt(q1 q2)):
      E[sigma sigma]   = A^2 c + B^2 sqrt(q1 q2) (2/pi) (sin theta + (pi/2 - theta) cos theta)
      E[sigma' sigma'] = A^2 + B^2 (1 - 2 theta / pi)
  (ReLU: Cho & Saul 2009, arc-cosine kernels of order 1 and 0; PDLT sec. 5.2.)
- erf: E = (2/pi) arcsin(2c / sqrt((1+2q1)(1+2q2)))  (Williams 1997);
       E[erf' erf'] = (4/pi) / sqrt((1+2q1)(1+2q2) - 4c^2)  (Gaussian integral of exp(-u^2-v^2)).
- sin, cos: E[sin u sin v] = exp(-(q1+q2)/2) sinh c,  E[cos u cos v] = exp(-(q1+q2)/2) cosh c.

Each closed form is written once and evaluated in numpy for numpy inputs (the plain, fast path) or in
jax.numpy for JAX inputs (jit, vmap, grad). Only the arc-cosine family needs a custom derivative: its
naive derivative is NaN at |rho| = 1 and at zero variance (:func:`_arc_cosine_jax`); erf, sin, cos and
linear are smooth for finite q.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["Activation", "get_activation", "scale_invariant", "leaky_relu", "ACTIVATION_NAMES"]


@dataclasses.dataclass(frozen=True)
class Activation:
    """An elementwise nonlinearity with optional closed-form Gaussian expectations.

    Attributes:
      name: a short label.
      fn: JAX-traceable elementwise function z -> sigma(z).
      gauss_ss, gauss_dd: closed forms of E[sigma(u)sigma(v)] and E[sigma'(u)sigma'(v)] as functions of
        (q1, q2, c), or None (then sft integrates numerically).
      slopes: (a_plus, a_minus) for the scale-invariant family, else None.
    """

    name: str
    fn: Callable
    gauss_ss: Optional[Callable] = None
    gauss_dd: Optional[Callable] = None
    slopes: Optional[tuple] = None
    gauss_joint: Optional[Callable] = None

    def __call__(self, z):
        return self.fn(z)

    def derivative(self, z):
        """sigma'(z), elementwise, by automatic differentiation."""
        z = jnp.asarray(z)
        return jnp.vectorize(jax.grad(self.fn))(z)

    def gauss_both(self, q1, q2, c):
        """(E[sigma sigma], E[sigma' sigma']) from the closed forms, sharing work where possible."""
        if self.gauss_joint is not None:
            return self.gauss_joint(q1, q2, c)
        return self.gauss_ss(q1, q2, c), self.gauss_dd(q1, q2, c)

    @property
    def has_closed_form(self) -> bool:
        return self.gauss_ss is not None and self.gauss_dd is not None


def _xp(*args):
    """The array namespace of the closed forms: jax.numpy if any argument is a JAX array (traced or
    not), numpy otherwise. One formula serves both; numpy inputs keep today's numpy speed."""
    return jnp if any(isinstance(a, jax.Array) for a in args) else np


def _correlation(q1, q2, c):
    s = np.sqrt(q1 * q2)
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = c / s
    rho = np.clip(rho, -1.0, 1.0, out=rho if isinstance(rho, np.ndarray) else None)
    return s, np.where(s > 0, rho, 0.0) if np.any(s == 0) else rho


def _arc_cosine(A, B, q1, q2, c):
    """(E[sigma sigma], E[sigma' sigma']) of sigma = A z + B |z| (numpy; Cho & Saul 2009)."""
    s, rho = _correlation(q1, q2, c)
    th = np.arccos(rho)
    ss = A * A * c + (B * B * 2 / np.pi) * s * (np.sqrt(1 - rho * rho) + (np.pi / 2 - th) * rho)
    return ss, (A * A + B * B) - (2 * B * B / np.pi) * th


@functools.partial(jax.custom_jvp, nondiff_argnums=(0, 1))
def _arc_cosine_jax(A, B, q1, q2, c):
    """JAX form of :func:`_arc_cosine` with the derivatives of Price's theorem (custom JVP):

        d E[ss] = E[s's'] dc + (B^2 R / (pi q1)) dq1 + (B^2 R / (pi q2)) dq2,
        d E[s's'] = (2 B^2 / pi) (dc - c dq1 / (2 q1) - c dq2 / (2 q2)) / R,     R = sqrt(q1 q2 - c^2),

    (tests/test_kernels_jax.py checks both against sympy derivatives of the closed form). The naive derivative of the
    arccos / sqrt form is NaN at |rho| = 1 and at q = 0. Where R = 0 (|rho| = 1, or a zero variance)
    the R/q terms are their limits 0, and the E[s's'] derivative is its value along |rho| = 1, which is 0
    (off that line it is infinite: E[sigma'' sigma''] = B^2 / (2 pi R) diverges as rho -> 1). At q1 = 0
    the one-sided derivative in q1 is +inf (E[ss] ~ sqrt(q1)); it is reported as 0 (its finite part).
    """
    q1, q2, c = jnp.broadcast_arrays(q1, q2, c)
    s = jnp.sqrt(q1 * q2)
    rho = jnp.clip(c / jnp.where(s > 0, s, 1.0), -1.0, 1.0)
    rho = jnp.where(s > 0, rho, 0.0)
    th = jnp.arccos(rho)
    ss = A * A * c + (B * B * 2 / jnp.pi) * s * (jnp.sqrt(1 - rho * rho) + (jnp.pi / 2 - th) * rho)
    return ss, (A * A + B * B) - (2 * B * B / jnp.pi) * th


@_arc_cosine_jax.defjvp
def _arc_cosine_jvp(A, B, primals, tangents):
    q1, q2, c = jnp.broadcast_arrays(*primals)
    dq1, dq2, dc = jnp.broadcast_arrays(*tangents)
    ss, dd = _arc_cosine_jax(A, B, q1, q2, c)
    s = jnp.sqrt(q1 * q2)
    rho = jnp.where(s > 0, jnp.clip(c / jnp.where(s > 0, s, 1.0), -1.0, 1.0), 0.0)
    R = s * jnp.sqrt(1 - rho * rho)
    live = R > 0  # R = 0 exactly: |rho| = 1 after clipping, or a zero variance (see docstring)
    Rs, q1s, q2s = jnp.where(live, R, 1.0), jnp.where(live, q1, 1.0), jnp.where(live, q2, 1.0)
    dss = dd * dc + jnp.where(live, B * B / jnp.pi * Rs * (dq1 / q1s + dq2 / q2s), 0.0)
    ddd = jnp.where(live, (2 * B * B / jnp.pi) * (dc - 0.5 * c * (dq1 / q1s + dq2 / q2s)) / Rs, 0.0)
    return (ss, dd), (dss, ddd)


def scale_invariant(a_plus: float = 1.0, a_minus: float = 0.0, name: Optional[str] = None) -> Activation:
    """sigma(z) = a_plus * z for z >= 0 and a_minus * z for z < 0 (ReLU: (1, 0); abs: (1, -1); linear: (1, 1)).

    The closed forms take numpy arrays (numpy speed) or JAX arrays (jit/vmap/grad, with the custom
    derivatives of :func:`_arc_cosine_jax` at |rho| = 1 and zero variances).
    """
    a_plus, a_minus = float(a_plus), float(a_minus)
    if not (np.isfinite(a_plus) and np.isfinite(a_minus)):
        raise ValueError(f"slopes (a_plus={a_plus}, a_minus={a_minus}) must be finite")
    A, B = 0.5 * (a_plus + a_minus), 0.5 * (a_plus - a_minus)

    def fn(z):
        return jnp.where(z >= 0, a_plus * z, a_minus * z)

    def gauss_joint(q1, q2, c):  # both at the cost of one arccos
        if _xp(q1, q2, c) is jnp:
            return _arc_cosine_jax(A, B, q1, q2, c)
        return _arc_cosine(A, B, q1, q2, c)

    return Activation(name or f"scale_invariant({a_plus:g},{a_minus:g})", fn,
                      lambda q1, q2, c: gauss_joint(q1, q2, c)[0],
                      lambda q1, q2, c: gauss_joint(q1, q2, c)[1] + 0 * c, (a_plus, a_minus), gauss_joint)


def leaky_relu(slope: float = 0.01) -> Activation:
    """Leaky ReLU: z for z >= 0, slope * z for z < 0 (scale-invariant with a+ = 1, a- = slope)."""
    return scale_invariant(1.0, slope, name=f"leaky_relu({float(slope):g})")


def _erf() -> Activation:
    def ss(q1, q2, c):  # |argument| < 1 for finite q (no clip needed for the derivative)
        xp = _xp(q1, q2, c)
        return (2 / np.pi) * xp.arcsin(xp.clip(2 * c / xp.sqrt((1 + 2 * q1) * (1 + 2 * q2)), -1, 1))

    def dd(q1, q2, c):
        xp = _xp(q1, q2, c)
        return (4 / np.pi) / xp.sqrt((1 + 2 * q1) * (1 + 2 * q2) - 4 * c * c)

    return Activation("erf", jax.scipy.special.erf, ss, dd)


def _sin() -> Activation:
    def ss(q1, q2, c):
        xp = _xp(q1, q2, c)
        return xp.exp(-(q1 + q2) / 2) * xp.sinh(c)

    def dd(q1, q2, c):
        xp = _xp(q1, q2, c)
        return xp.exp(-(q1 + q2) / 2) * xp.cosh(c)

    return Activation("sin", jnp.sin, ss, dd)


def _cos() -> Activation:
    def ss(q1, q2, c):
        xp = _xp(q1, q2, c)
        return xp.exp(-(q1 + q2) / 2) * xp.cosh(c)

    def dd(q1, q2, c):
        xp = _xp(q1, q2, c)
        return xp.exp(-(q1 + q2) / 2) * xp.sinh(c)

    return Activation("cos", jnp.cos, ss, dd)


def _linear() -> Activation:
    return Activation("linear", lambda z: z, lambda q1, q2, c: c + 0 * (q1 + q2),
                      lambda q1, q2, c: _xp(q1, q2, c).ones_like(c + 0 * (q1 + q2)), (1.0, 1.0))


def _gelu(z):
    return jax.nn.gelu(z, approximate=False)


_FACTORIES = {
    "relu": lambda: scale_invariant(1.0, 0.0, name="relu"),
    "leaky_relu": leaky_relu,
    "abs": lambda: scale_invariant(1.0, -1.0, name="abs"),
    "linear": _linear,
    "scale_invariant": scale_invariant,
    "erf": _erf,
    "sin": _sin,
    "cos": _cos,
    "tanh": lambda: Activation("tanh", jnp.tanh),
    "sigmoid": lambda: Activation("sigmoid", jax.nn.sigmoid),
    "gelu": lambda: Activation("gelu", _gelu),
    "swish": lambda: Activation("swish", jax.nn.silu),
    "silu": lambda: Activation("silu", jax.nn.silu),
    "softplus": lambda: Activation("softplus", jax.nn.softplus),
}
#: Names accepted by :func:`get_activation`.
ACTIVATION_NAMES = tuple(sorted(_FACTORIES))


def get_activation(activation, **params) -> Activation:
    """Return an :class:`Activation` from a name, an Activation, or a JAX-differentiable callable.

    ``params`` go to parameterized families: ``get_activation("leaky_relu", slope=0.1)``,
    ``get_activation("scale_invariant", a_plus=1.0, a_minus=-0.5)``.

    >>> get_activation("relu").slopes
    (1.0, 0.0)
    """
    if isinstance(activation, Activation):
        if params:
            raise ValueError(f"parameters {sorted(params)} given with an Activation object; "
                             "parameters are only allowed with a name")
        return activation
    if isinstance(activation, str):
        key = activation.lower()
        if key not in _FACTORIES:
            raise ValueError(f"activation={activation!r} is unknown; known names: "
                             f"{', '.join(ACTIVATION_NAMES)} (or pass a JAX-differentiable function)")
        try:
            return _FACTORIES[key](**params)
        except TypeError as e:
            raise ValueError(f"activation={activation!r} does not take parameters {sorted(params)}: {e}")
    if callable(activation):
        if params:
            raise ValueError("parameters are only allowed with an activation name")
        with jax.ensure_compile_time_eval():  # concrete even inside jit
            probe = np.asarray(activation(jnp.linspace(-2.0, 2.0, 5)))
        if probe.shape != (5,) or not np.all(np.isfinite(probe)):
            raise ValueError(f"activation={activation!r} must map an array elementwise to finite values "
                             f"of the same shape; got shape {probe.shape}")
        return Activation(getattr(activation, "__name__", "custom"), activation)
    raise ValueError(f"activation={activation!r} is not allowed: give a name ({', '.join(ACTIVATION_NAMES)}), "
                     "an sft.kernels.Activation, or a JAX-differentiable callable")
