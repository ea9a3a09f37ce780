"""Criticality of the infinite-width kernel recursion (PDLT = Roberts, Yaida & Hanin 2022, ch. 5).

Single input, conventions of :mod:`sft.conventions` (hidden layers with the same C_W, C_b):

    K^(l+1) = C_b + C_W g(K^(l)),      g(K) = <sigma(u)^2>_K,  u ~ N(0, K)          (PDLT ch. 4)

Susceptibilities (PDLT sec. 5.1):

    chi_par(K)  = C_W g'(K) = C_W <sigma(u)^2 (u^2 - K)> / (2 K^2) = C_W <u sigma(u) sigma'(u)> / K
                = C_W <sigma'(u)^2 + sigma(u) sigma''(u)>_K             (Gaussian integration by parts)
    chi_perp(K) = C_W <sigma'(u)^2>_K

chi_par governs the single-input kernel (K^(l+1) - K* ~ chi_par(K*) (K^(l) - K*)), chi_perp the
difference of two nearby inputs. Criticality (PDLT sec. 5.2-5.3): a fixed point K* of the recursion with
chi_par(K*) = chi_perp(K*) = 1. Universality classes found by :func:`critical_initialization`:

- "scale-invariant": sigma(z) = a+ z (z > 0), a- z (z < 0). g(K) = A2 K with A2 = (a+^2 + a-^2)/2, so
  chi_par = chi_perp = C_W A2 for every K; critical at C_b = 0, C_W = 1/A2 (every K is a fixed point).
- "K*=0": sigma(0) = 0, sigma_1 = sigma'(0) != 0, C_b = 0, C_W = 1/sigma_1^2. Then
  K' = K + a1 K^2 + O(K^3); K* = 0 is approached from K > 0 only if a1 < 0, and then
  K^(l) ~ 1/((-a1) l). a1 is computed from the Gaussian smoothing series
  g(K) = sum_n (sigma^2)^(2n)(0) K^n / (2^n n!) by jax autodiff (:func:`small_K_expansion`);
  derivations/criticality_exponents.py shows a1 = sigma_3/sigma_1 + (3/4)(sigma_2/sigma_1)^2 with
  sigma_p = sigma^(p)(0) (PDLT sec. 5.3.3). tanh, erf, sin: a1 = -2, -2, -1.
- "K*>0": a fixed point K* > 0 with chi_par = chi_perp = 1, i.e. <sigma sigma''>_{K*} = 0
  (equivalently g'(K*) = <sigma'^2>_{K*}), C_W = 1/<sigma'^2>_{K*}, C_b = K* - C_W g(K*) >= 0
  (PDLT sec. 5.3 finds this for SWISH and GELU).
- "none": none of the above (e.g. sigmoid, softplus: sigma(0) != 0 and <sigma sigma''>_K never vanishes).

Gaussian expectations use :func:`sft.gaussian.gaussian_expectation`; derivatives of sigma use jax
autodiff, so any JAX-differentiable callable works.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import numbers

import jax
import jax.numpy as jnp
import numpy as np
from scipy import optimize

from .activations import Activation, get_activation
from ..conventions import check_depth
from ..gaussian.expectations import _is_traced, diag_expectations, gaussian_expectation
from .recursion import nngp

__all__ = ["kernel_map", "chi_parallel", "chi_perp", "taylor_coefficients", "small_K_expansion",
           "FixedPoint", "fixed_points", "Criticality", "nontrivial_critical_points",
           "critical_initialization", "universality_class", "kernel_flow", "correlation_flow"]

#: |chi_par - 1| below this counts as marginal (chi_par = 1) in :func:`fixed_points`.
MARGINAL_TOL = 1e-9
_ZERO_TOL = 1e-12  # |sigma(0)|, |a1| below this (relative to O(1) coefficients) count as zero


# ----------------------------------------------------------------------------- input checks
def _check_scalar(name, value, *, positive):
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}={value!r} is not allowed: give a finite real number")
    ok = math.isfinite(v) and (v > 0 if positive else v >= 0)
    if not ok:
        raise ValueError(f"{name}={value!r} is not allowed: {name} must be finite and "
                         f"{'> 0' if positive else '>= 0'}")
    return v


def _check_kernel(K, name="K"):
    k = np.asarray(K, dtype=np.float64)
    if not np.all(np.isfinite(k)) or np.any(k < 0):
        raise ValueError(f"{name}={K!r} is not allowed: kernel values must be finite and >= 0")
    return k


# ----------------------------------------------------------------------------- Gaussian moments
@functools.lru_cache(maxsize=64)
def _integrands(fn):
    """Jitted sigma^2, u sigma sigma', sigma'^2 for the quadrature (cached per function)."""
    dfn = jnp.vectorize(jax.grad(fn))
    return (jax.jit(lambda u: fn(u) ** 2), jax.jit(lambda u: u * fn(u) * dfn(u)),
            jax.jit(lambda u: dfn(u) ** 2))


def _slopes(act: Activation):
    """(a+, a-) if sigma is scale-invariant (declared, or detected on a probe grid), else None."""
    if act.slopes is not None:
        return tuple(float(a) for a in act.slopes)
    return _detected_slopes(act.fn)


@functools.lru_cache(maxsize=64)
def _detected_slopes(fn):
    """(a+, a-) if fn(0) = 0 and fn(z) = a+ z, fn(-z) = -a- z to 1e-12 on z in [1e-3, 1e3], else None."""
    z = np.geomspace(1e-3, 1e3, 13)
    with jax.ensure_compile_time_eval():  # concrete even when first called inside jit
        ap, am = float(fn(jnp.asarray(1.0))), -float(fn(jnp.asarray(-1.0)))
        vp, vm = np.asarray(fn(jnp.asarray(z))), np.asarray(fn(jnp.asarray(-z)))
        f0 = float(fn(jnp.asarray(0.0)))
    if (f0 == 0.0 and np.allclose(vp, ap * z, rtol=1e-12, atol=0)
            and np.allclose(vm, -am * z, rtol=1e-12, atol=0)):
        return ap, am
    return None


def _A2(slopes):
    return 0.5 * (slopes[0] ** 2 + slopes[1] ** 2)


def _mean_sq(act, K):
    """g(K) = <sigma(u)^2>_K (scale-invariant: A2 K exactly)."""
    sl = _slopes(act)
    if sl is not None:
        return _A2(sl) * K
    return gaussian_expectation(_integrands(act.fn)[0], K)


def _dmean_sq(act, K):
    """g'(K) = <u sigma sigma'>_K / K (one Gaussian integration by parts); K = 0: sigma'(0)^2 + sigma(0)sigma''(0).

    The first-derivative form needs no sigma'' (kinks are fine) and loses only ~1e-16/sqrt(K) at small K.
    """
    sl = _slopes(act)
    if sl is not None:
        return _A2(sl) * np.ones_like(K)
    Kp = np.where(K > 0, K, 1.0)
    val = gaussian_expectation(_integrands(act.fn)[1], Kp) / Kp
    if np.any(K == 0):
        s = taylor_coefficients(act, order=2)
        val = np.where(K > 0, val, s[1] ** 2 + s[0] * s[2])
    return val


def _mean_dsq(act, K):
    """<sigma'(u)^2>_K (scale-invariant: A2)."""
    sl = _slopes(act)
    if sl is not None:
        return _A2(sl) * np.ones_like(K)
    return gaussian_expectation(_integrands(act.fn)[2], K)


def _traced_moments(act, K):
    """(<sigma^2>_K, <sigma'^2>_K) as JAX functions of K (jit, vmap, grad; any order).

    Scale-invariant: (A2 K, A2). Otherwise :func:`sft.gaussian.diag_expectations`, whose K-derivative is
    the Gaussian heat equation d<f(u)>_K/dK = <f''(u)>_K / 2, so that d<sigma^2>/dK = <sigma'^2 + sigma
    sigma''> (the analytic chi_par / C_W of PDLT sec. 5.1) by construction, and
    tests/test_kernels_jax.py checks autodiff against :func:`chi_parallel`'s independent quadrature.
    Values (K >= 0, C_W > 0) are not checked under tracing.
    """
    K = jnp.asarray(K, dtype=jnp.float64)
    sl = _slopes(act)
    if sl is not None:
        return _A2(sl) * K, _A2(sl) * jnp.ones_like(K)
    return diag_expectations(act, K)


# ----------------------------------------------------------------------------- one-layer quantities
def kernel_map(K, *, activation, C_W, C_b):
    """One layer of the single-input recursion: C_b + C_W <sigma(u)^2>_K, u ~ N(0, K). Vectorized over K.

    JAX: traceable in K, C_W and C_b (jit, vmap, grad); then C_W d(kernel_map)/dK = chi_par.

    >>> float(kernel_map(1.0, activation="relu", C_W=2.0, C_b=0.0))
    1.0
    >>> slope = jax.grad(lambda K: kernel_map(K, activation="tanh", C_W=1.0, C_b=0.0))(0.5)
    >>> bool(abs(slope - chi_parallel(0.5, activation="tanh", C_W=1.0)) < 1e-13)
    True
    """
    act = get_activation(activation)
    if _is_traced(K, C_W, C_b):  # jit / grad / vmap: values unchecked (see below)
        return C_b + C_W * _traced_moments(act, K)[0]
    C_W = _check_scalar("C_W", C_W, positive=True)
    C_b = _check_scalar("C_b", C_b, positive=False)
    return C_b + C_W * _mean_sq(act, _check_kernel(K))


def chi_parallel(K, *, activation, C_W):
    """Parallel susceptibility chi_par(K) = C_W d<sigma^2>_K/dK = C_W <sigma^2 (u^2 - K)>/(2K^2) (PDLT sec. 5.1).

    Evaluated as C_W <u sigma(u) sigma'(u)>_K / K; at K = 0 the limit C_W [sigma'(0)^2 + sigma(0) sigma''(0)]
    (assumes sigma is C^2 at 0; scale-invariant sigma use the exact C_W A2). Vectorized over K (any shape).

    >>> float(chi_parallel(0.7, activation="relu", C_W=2.0))
    1.0
    """
    act = get_activation(activation)
    C_W = _check_scalar("C_W", C_W, positive=True)
    return C_W * _dmean_sq(act, _check_kernel(K))


def chi_perp(K, *, activation, C_W):
    """Perpendicular susceptibility chi_perp(K) = C_W <sigma'(u)^2>_K (PDLT sec. 5.1). Vectorized over K.

    >>> float(chi_perp(0.7, activation="relu", C_W=2.0))
    1.0
    """
    act = get_activation(activation)
    if _is_traced(K, C_W):
        return C_W * _traced_moments(act, K)[1]
    C_W = _check_scalar("C_W", C_W, positive=True)
    return C_W * _mean_dsq(act, _check_kernel(K))


def taylor_coefficients(activation, order=3):
    """[sigma(0), sigma'(0), ..., sigma^(order)(0)] by jax autodiff (PDLT's sigma_p = sigma^(p)(0)).

    >>> taylor_coefficients("tanh", order=3)
    array([ 0.,  1.,  0., -2.])
    """
    act = get_activation(activation)
    if isinstance(order, bool) or not isinstance(order, numbers.Integral) or order < 0:
        raise ValueError(f"order={order!r} is not allowed: give an integer >= 0")
    out, g = [], act.fn
    for _ in range(int(order) + 1):
        out.append(float(g(jnp.asarray(0.0))))
        g = jax.grad(g)
    return np.array(out)


def small_K_expansion(activation, *, C_W, order=3):
    """Coefficients c_n of C_W <sigma^2>_K = sum_n c_n K^n near K = 0, n = 0 .. order.

    Gaussian smoothing series (derivations/criticality_exponents.py, item 1):
    <f(u)>_K = sum_n f^(2n)(0) K^n / (2^n n!), applied to f = sigma^2 with jax autodiff. Valid for sigma
    smooth at 0. At the K*=0 critical point (C_W = 1/sigma_1^2, sigma(0) = 0) c_1 = 1 and c_2 = a1.

    >>> np.round(small_K_expansion("tanh", C_W=1.0, order=3), 6)
    array([ 0.      ,  1.      , -2.      ,  5.666667])
    """
    act = get_activation(activation)
    C_W = _check_scalar("C_W", C_W, positive=True)
    d = taylor_coefficients(lambda z: act.fn(z) ** 2, order=2 * int(order))
    return np.array([C_W * d[2 * n] / (2 ** n * math.factorial(n)) for n in range(int(order) + 1)])


# ----------------------------------------------------------------------------- fixed points
@dataclasses.dataclass(frozen=True)
class FixedPoint:
    """A fixed point K* of K' = C_b + C_W <sigma^2>_K with its susceptibilities.

    stability: "stable" (chi_par < 1), "marginal" (|chi_par - 1| <= MARGINAL_TOL), "unstable" (chi_par > 1).
    line: True when every K >= 0 is a fixed point (scale-invariant sigma at C_b = 0, C_W = 1/A2); then
    ``K`` is 0.0 as a representative.
    """

    K: float
    chi_parallel: float
    chi_perp: float
    stability: str
    line: bool = False


def _classify(act, K, C_W, line=False):
    cp = float(C_W * _dmean_sq(act, np.asarray(K)))
    cq = float(C_W * _mean_dsq(act, np.asarray(K)))
    stab = "marginal" if abs(cp - 1) <= MARGINAL_TOL else ("stable" if cp < 1 else "unstable")
    return FixedPoint(float(K), cp, cq, stab, line)


def _roots_on_grid(fun, grid, vals):
    """Roots of fun by brentq on each sign change of vals = fun(grid), plus exact zeros on the grid."""
    roots = [float(k) for k, v in zip(grid, vals) if v == 0]
    for i in np.nonzero(vals[:-1] * vals[1:] < 0)[0]:
        roots.append(optimize.brentq(fun, grid[i], grid[i + 1], xtol=1e-300, rtol=4 * np.finfo(float).eps))
    return roots


def fixed_points(*, activation, C_W, C_b, K_max=100.0, n_grid=400):
    """All fixed points K* = C_b + C_W <sigma^2>_{K*} in [0, K_max], ascending, with their stability.

    Method: F(K) = C_b + C_W g(K) - K on a grid {0} U geomspace(1e-8 K_max, K_max, n_grid); simple roots
    from sign changes (brentq), double roots (tangencies, chi_par = 1) from the zeros of chi_par - 1 where
    |F| <= 1e-12 max(1, K). Roots in (0, 1e-8 K_max) other than K = 0 are not resolved.
    Scale-invariant sigma: F is linear, solved exactly.

    >>> [(round(p.K, 12), p.stability) for p in fixed_points(activation="relu", C_W=1.5, C_b=0.1)]
    [(0.4, 'stable')]
    """
    act = get_activation(activation)
    C_W = _check_scalar("C_W", C_W, positive=True)
    C_b = _check_scalar("C_b", C_b, positive=False)
    K_max = _check_scalar("K_max", K_max, positive=True)
    sl = _slopes(act)
    if sl is not None:
        chi = C_W * _A2(sl)
        if abs(chi - 1) <= MARGINAL_TOL:
            return [_classify(act, 0.0, C_W, line=True)] if C_b == 0 else []
        K = C_b / (1 - chi)
        return [_classify(act, K, C_W)] if 0 <= K <= K_max else []

    def F(K):
        return C_b + C_W * _mean_sq(act, np.asarray(K, dtype=np.float64)) - K

    def dF(K):
        return C_W * _dmean_sq(act, np.asarray(K, dtype=np.float64)) - 1

    grid = np.concatenate([[0.0], np.geomspace(1e-8 * K_max, K_max, int(n_grid))])
    roots = _roots_on_grid(F, grid, F(grid))
    for Ke in _roots_on_grid(dF, grid, dF(grid)):
        if abs(F(Ke)) <= 1e-12 * max(1.0, Ke):
            roots.append(Ke)
    roots = sorted(roots)
    unique = [r for i, r in enumerate(roots) if i == 0 or r - roots[i - 1] > 1e-9 * max(1.0, r)]
    return [_classify(act, K, C_W) for K in unique]


# ----------------------------------------------------------------------------- critical initialization
@dataclasses.dataclass(frozen=True)
class Criticality:
    """A critical initialization: chi_par(K*) = chi_perp(K*) = 1 at a fixed point K* of the recursion.

    universality_class: "scale-invariant", "K*=0", "K*>0" or "none".
    K_star: the fixed point (nan for "scale-invariant", where every K is fixed, and for "none").
    a1: K*=0 class only, K' = K + a1 K^2 + O(K^3); K^(l) ~ 1/((-a1) l) (nan otherwise).
    reason: why, in words.
    """

    universality_class: str
    C_b: float
    C_W: float
    K_star: float
    a1: float = math.nan
    reason: str = ""


def nontrivial_critical_points(activation, *, K_max=100.0, n_grid=400):
    """All K* in [1e-6 K_max, K_max] with chi_par = chi_perp = 1 at a fixed point with C_b >= 0 (class "K*>0").

    chi_par/chi_perp does not depend on C_W, so K* solves h(K) = g'(K) - <sigma'^2>_K = <sigma sigma''>_K = 0
    (sign changes on a geometric grid, then brentq); then C_W = 1/<sigma'^2>_{K*} and
    C_b = K* - C_W <sigma^2>_{K*}; solutions with C_b < 0 are dropped.
    """
    act = get_activation(activation)
    K_max = _check_scalar("K_max", K_max, positive=True)
    if _slopes(act) is not None:
        return []  # h == 0 identically: the scale-invariant class

    def h(K):
        K = np.asarray(K, dtype=np.float64)
        return _dmean_sq(act, K) - _mean_dsq(act, K)

    grid = np.geomspace(1e-6 * K_max, K_max, int(n_grid))
    out = []
    for K in _roots_on_grid(h, grid, h(grid)):
        C_W = 1.0 / float(_mean_dsq(act, np.asarray(K)))
        C_b = K - C_W * float(_mean_sq(act, np.asarray(K)))
        if C_b >= 0:
            out.append(Criticality("K*>0", C_b, C_W, K, reason=(
                f"nontrivial fixed point K*={K:.12g} with <sigma sigma''>_K* = 0, C_W = 1/<sigma'^2>_K*, "
                "C_b = K* - C_W <sigma^2>_K*")))
    return out


def critical_initialization(activation, *, K_max=100.0):
    """The critical (C_b, C_W, K*) of an activation and its universality class (PDLT sec. 5.2-5.3).

    Order of the checks: scale-invariant (declared slopes or detected), then K*=0 (sigma(0) = 0,
    sigma'(0) != 0, a1 < 0), then the smallest K* > 0 of :func:`nontrivial_critical_points`, else "none"
    with the reason.

    >>> c = critical_initialization("tanh"); (c.universality_class, c.C_b, c.C_W, c.K_star, round(c.a1, 12))
    ('K*=0', 0.0, 1.0, 0.0, -2.0)
    """
    act = get_activation(activation)
    sl = _slopes(act)
    if sl is not None:
        A2 = _A2(sl)
        if A2 == 0:
            return Criticality("none", math.nan, math.nan, math.nan, reason="sigma is identically zero")
        return Criticality("scale-invariant", 0.0, 1.0 / A2, math.nan, reason=(
            f"scale-invariant slopes (a+, a-) = {sl}: chi_par = chi_perp = C_W A2 for all K, "
            f"A2 = {A2:.12g}; at C_b = 0, C_W = 1/A2 every K is a fixed point"))
    s = taylor_coefficients(act, order=1)
    why = []
    if abs(s[0]) <= _ZERO_TOL and s[1] != 0:
        C_W = float(1.0 / s[1] ** 2)
        a1 = float(small_K_expansion(act, C_W=C_W, order=2)[2])
        if a1 < -_ZERO_TOL:
            return Criticality("K*=0", 0.0, C_W, 0.0, a1, reason=(
                f"sigma(0) = 0, C_W = 1/sigma'(0)^2; K* = 0 is half-stable (a1 = {a1:.12g} < 0): "
                f"K^(l) ~ 1/({-a1:.12g} l)"))
        why.append(f"K* = 0 at C_W = 1/sigma'(0)^2 is not approached from K > 0 (a1 = {a1:.3g} >= 0)")
    elif abs(s[0]) > _ZERO_TOL:
        why.append(f"sigma(0) = {s[0]:.6g} != 0, so K = 0 is not a fixed point")
    else:
        why.append("sigma(0) = sigma'(0) = 0: chi_perp(0) = 0 for every C_W")
    nontrivial = nontrivial_critical_points(act, K_max=K_max)
    if nontrivial:
        return dataclasses.replace(nontrivial[0], reason="; ".join(why + [nontrivial[0].reason]))
    why.append(f"no K* in (0, {K_max:g}] with <sigma sigma''>_K* = 0 and C_b >= 0")
    return Criticality("none", math.nan, math.nan, math.nan, reason="; ".join(why))


def universality_class(activation, *, K_max=100.0):
    """"scale-invariant", "K*=0", "K*>0" or "none" (see :func:`critical_initialization` for the reason).

    >>> universality_class("relu"), universality_class("sin")
    ('scale-invariant', 'K*=0')
    """
    return critical_initialization(activation, K_max=K_max).universality_class


# ----------------------------------------------------------------------------- depth behaviour
def kernel_flow(K1, *, activation, C_W, C_b, depth):
    """K^(l) for l = 1 .. depth + 1 (single input), K^(1) = K1 (any shape): array (depth + 1,) + K1.shape.

    Iterates :func:`kernel_map` ``depth`` times (the layers of :func:`sft.kernels.nngp`, diagonal).

    >>> kernel_flow(1.0, activation="relu", C_W=1.5, C_b=0.0, depth=2)
    array([1.    , 0.75  , 0.5625])
    """
    act = get_activation(activation)
    C_W = _check_scalar("C_W", C_W, positive=True)
    C_b = _check_scalar("C_b", C_b, positive=False)
    depth = check_depth(depth)
    K = _check_kernel(K1, "K1")
    out = [K]
    for _ in range(depth):
        K = C_b + C_W * _mean_sq(act, K)
        out.append(K)
    return np.stack(out)


def correlation_flow(x, *, activation, C_W, C_b, depth):
    """rho^(l) = K^(l)_12 / sqrt(K^(l)_11 K^(l)_22) for two inputs x of shape (2, d), l = 1 .. depth + 1.

    Uses :func:`sft.kernels.nngp` (``all_layers=True``), so it needs the activation's two-point
    expectations (closed forms, or the numerical bivariate tier of sft.gaussian.expectations). Returns (depth + 1,).
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] != 2:
        raise ValueError(f"x has shape {x.shape}: give exactly two inputs, shape (2, d)")
    K = nngp(x, depth=depth, activation=activation, C_W=C_W, C_b=C_b, all_layers=True)
    return K[:, 0, 1] / np.sqrt(K[:, 0, 0] * K[:, 1, 1])
