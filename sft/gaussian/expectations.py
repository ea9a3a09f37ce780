"""Gaussian expectations of activations: the numerics tier of sft.

One-dimensional:  E[f(sqrt(q) z)], z ~ N(0, 1), for a vector of variances q.
Two-dimensional:  E[sigma(u) sigma(v)] and E[sigma'(u) sigma'(v)] over (u, v) ~ N(0, [[q1, c], [c, q2]]).

Activations with closed forms (:mod:`sft.kernels.activations`) use them. Every other JAX-differentiable
activation goes through the Mehler (Hermite) series (Mehler 1866; O'Donnell, *Analysis of Boolean
Functions* (2014) sec. 11.2; Daniely, Frostig & Singer 2016 sec. 4 for its use on NNGP kernels):

    E[sigma(u) sigma(v)]   = sum_k rho^k a_k(q1) a_k(q2),     rho = c / sqrt(q1 q2),
    E[sigma'(u) sigma'(v)] = sum_k rho^k b_k(q1) b_k(q2),
    a_k(q) = E[sigma(sqrt(q) z) h_k(z)],  b_k(q) = E[sigma'(sqrt(q) z) h_k(z)],  h_k = He_k / sqrt(k!),

with He_k the probabilists' Hermite polynomials (orthonormal: E[h_j h_k] = delta_jk).

Numerics (all float64):
- coefficients: Gauss-Hermite quadrature with n nodes, a_k = sum_j [sqrt(w_j) h_k(z_j)] [sqrt(w_j) sigma(sqrt(q) z_j)],
  the bracket built by the stable three-term recurrence h_{k+1} = (z h_k - sqrt(k) h_{k-1}) / sqrt(k+1)
  started from sqrt(w_j) (entries of the orthogonal Golub-Welsch eigenvector matrix, all |.| <= 1).
  sigma' is taken by forward-mode autodiff (jax.jvp). Rows k < n/2 are kept; n grows by x1.25 until
  the coefficients in [3n/8, n/2) carry less than tol/20 of E[sigma^2] (and of E[sigma'^2]) for every q.
  Rows k < n/2 are then free of Gauss-Hermite aliasing (which enters through k + j >= 2n), and the
  unmeasured tail k >= n/2 is below tol/20 (fast decay) or, for coefficients decaying no slower
  than k^(-3/4) (a kink in sigma'), below 6.5 tol/20.
- many distinct q: a_k, b_k are analytic in s = sqrt(q) for Re s > 0 (tanh, sigmoid, softplus, swish;
  |arg s| < pi/4 for gelu), so on bands s_max/s_min <= sqrt 2 they are interpolated in s from 9, 17 or
  33 Chebyshev points, accepted only when the degree-m and degree-2m interpolants agree within tol/16
  (Trefethen, *Approximation Theory and Approximation Practice*, ch. 8); otherwise computed directly.
- truncation: with e_k = max_i |a_k(q_i)| / sqrt(E[sigma(sqrt(q_i) z)^2]) over a block of inputs, an
  (i, j) tile of entries with max |rho| = r keeps the first K terms, K the smallest with
  sum_{k >= K} r^k e_k(block i) e_k(block j) <= tol/2 (and the same for b). Hence, entrywise,

      |error of E[sigma sigma]|   <= (tol + n eps) * sqrt(E[sigma(u)^2]   E[sigma(v)^2]),
      |error of E[sigma' sigma']| <= (tol + n eps) * sqrt(E[sigma'(u)^2] E[sigma'(v)^2]),

  n eps (n Gauss-Hermite nodes, eps = 2.2e-16) bounding the rounding of the n-term sums and of the
  recurrence (measured: up to ~7e-13 for erf' at q = 30, n ~ 5000; ~5e-14 for tanh at q ~ 1).

- evaluation: Horner over k inside one jitted XLA loop per tile, tiles over (N1, N2); symmetric
  input (q1 == q2, c == c.T) computes the upper tiles only.

Non-smooth activations (kinks) have algebraically decaying coefficients: the series then cannot
reach ``tol`` within ``n_max`` nodes and a ValueError says so (give closed forms, or a larger tol).
At tol = 1e-13 and n_max = 32768 (measured): the series converges for tanh at q <= 60, sigmoid and
swish q <= 300, gelu q <= 200, softplus q <= 400; beyond, a ValueError (never a silently truncated
series). Cost grows like q (number of terms K ~ 100 q for tanh, ~25 q for the others).
"""
from __future__ import annotations

import dataclasses
import concurrent.futures
import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
import scipy.special

from ..conventions import check_flag, require_x64

__all__ = ["gaussian_expectation", "diag_expectations", "pair_expectations", "HermiteCoefficients",
           "hermite_coefficients", "mehler_expectations", "pair_and_diag_expectations", "TOL", "N_MAX"]

#: Default truncation tolerance of the Mehler series, relative to sqrt(E[sigma(u)^2] E[sigma(v)^2]).
TOL = 1e-13
#: Default largest number of Gauss-Hermite nodes for the Hermite coefficients.
N_MAX = 32768
_N_MIN = 64
_TILE = 64  # largest tile side of the (N1, N2) Horner evaluation


# ---------------------------------------------------------------- one-dimensional ------------------

_PANEL_EDGES = (0.0, 0.25, 0.5, 1, 1.5, 2, 3, 4, 5, 6, 8, 10, 13, 17, 22, 30, 40)


@functools.lru_cache(maxsize=None)
def _half_line_rule(n: int):
    """Composite Gauss-Legendre rule on [0, 40] (16 panels, finest near 0, n // 16 nodes each) folded
    with the standard normal density.

    Splitting at z = 0 makes kinks at the origin (ReLU family) harmless; the cut at 40 leaves a tail
    below exp(-800). With n = 400, E[tanh^2] and E[sech^4] agree with mpmath to 1e-15 for 0 <= q <= 400.
    """
    x, w = scipy.special.roots_legendre(max(n // 16, 2))
    a, b = np.array(_PANEL_EDGES[:-1])[:, None], np.array(_PANEL_EDGES[1:])[:, None]
    z = (0.5 * (b - a) * (x + 1) + a).ravel()
    w = (0.5 * (b - a) * w).ravel() * np.exp(-0.5 * z * z) / np.sqrt(2 * np.pi)
    return z, w


def _check_variances(q, name="q"):
    q = np.asarray(q, dtype=np.float64)
    if not np.all(np.isfinite(q)) or np.any(q < 0):
        bad = q[~(np.isfinite(q) & (q >= 0))].ravel()[0]
        raise ValueError(f"{name} contains {bad!r}: variances must be finite and >= 0")
    return q


def gaussian_expectation(f, q, n_nodes: int = 400):
    """E[f(sqrt(q) z)] for z ~ N(0, 1), vectorized over the variances q (any shape, q >= 0).

    ``f`` is elementwise (numpy or JAX). Quadrature: composite Gauss-Legendre on each half line (split
    at the origin, cut at |z| = 40), ``n_nodes`` per half (see _half_line_rule).
    """
    require_x64("sft.gaussian.gaussian_expectation")
    q = _check_variances(q)
    z, w = _half_line_rule(int(n_nodes))
    s = np.sqrt(q)[..., None]
    vals = np.asarray(f(s * z), dtype=np.float64) + np.asarray(f(-s * z), dtype=np.float64)
    return vals @ w


def diag_expectations(activation, q):
    """(E[sigma(u)^2], E[sigma'(u)^2]) for u ~ N(0, q), vectorized over q (closed form or 1-D quadrature).

    This is the rho = 1, q1 = q2 case of :func:`pair_expectations`, computed independently of it.
    Under JAX tracing: differentiable in q to any order (d<f(u)>_q/dq = <f''(u)>_q / 2), values unchecked.
    """
    require_x64("sft.gaussian.diag_expectations")
    if _is_traced(q):
        q = jnp.asarray(q, dtype=jnp.float64)
        if activation.has_closed_form:
            return activation.gauss_ss(q, q, q), activation.gauss_dd(q, q, q)
        return _diag_traced(activation, 0, 0, q)
    q = _check_variances(q)
    if activation.has_closed_form:
        return activation.gauss_ss(q, q, q), activation.gauss_dd(q, q, q)
    f = activation.fn
    return (gaussian_expectation(lambda z: f(z) ** 2, q),
            gaussian_expectation(lambda z: activation.derivative(z) ** 2, q))


# ---------------------------------------------------------------- Hermite coefficients -------------

@functools.lru_cache(maxsize=32)
def _gauss_hermite(n: int):
    """Nodes z_j and sqrt(w_j) of the n-point Gauss-Hermite rule for the standard normal density."""
    z, w = scipy.special.roots_hermitenorm(n)
    return z, np.sqrt(w / np.sqrt(2 * np.pi))


def _hermite_function_blocks(z, sw, m, block=512):
    """Row blocks of Q[k, j] = sqrt(w_j) h_k(z_j), k < m, by the normalized three-term recurrence
    h_{k+1} = (z h_k - sqrt(k) h_{k-1}) / sqrt(k+1) (|Q| <= 1: rows of an orthogonal matrix).
    z, sw may be a subset of the Gauss-Hermite nodes (columns are independent)."""
    prev, cur = np.zeros_like(z), sw.copy()
    for start in range(0, m, block):
        Q = np.empty((min(block, m - start), z.size))
        for i in range(Q.shape[0]):
            k = start + i
            Q[i] = cur
            prev, cur = cur, (z * cur - np.sqrt(k) * prev) / np.sqrt(k + 1)
        yield Q


def _hermite_functions(z, sw, m):
    return np.concatenate(list(_hermite_function_blocks(z, sw, m)))


@functools.lru_cache(maxsize=8)
def _cached_hermite_functions(n: int):
    Q = _hermite_functions(*_gauss_hermite(n), n // 2)
    Q.flags.writeable = False
    return Q


def _node_ladder(n_start: int):
    """The node counts tried: 64 * 1.25^j rounded up to a multiple of 8, from the largest <= n_start."""
    n = _N_MIN
    while int(np.ceil(1.25 * n / 8) * 8) <= n_start:
        n = int(np.ceil(1.25 * n / 8) * 8)
    while True:
        yield n
        n = int(np.ceil(1.25 * n / 8) * 8)


@functools.lru_cache(maxsize=64)
def _jitted_value_and_slope(fn):
    return jax.jit(lambda x: jax.jvp(fn, (x,), (jnp.ones_like(x),)))


def _value_and_slope(fn, x):
    """(sigma(x), sigma'(x)) for an elementwise JAX function, by forward-mode autodiff (jax.jvp).

    x is flattened and padded to a power-of-two length so that few shapes get compiled.
    """
    flat = x.ravel()
    size = max(4096, 1 << int(np.ceil(np.log2(max(flat.size, 1)))))
    s, d = _jitted_value_and_slope(fn)(jnp.asarray(np.pad(flat, (0, size - flat.size))))
    return np.asarray(s)[:flat.size].reshape(x.shape), np.asarray(d)[:flat.size].reshape(x.shape)


@dataclasses.dataclass(frozen=True)
class HermiteCoefficients:
    """Normalized Hermite coefficients of sigma and sigma' at a vector of variances q (N,).

    a[k, i] = E[sigma(sqrt(q_i) z) h_k(z)], b[k, i] = E[sigma'(sqrt(q_i) z) h_k(z)], k < a.shape[0];
    ss[i] = E[sigma^2], dd[i] = E[sigma'^2] (the same Gauss-Hermite rule, n_nodes nodes).
    """

    q: np.ndarray
    a: np.ndarray
    b: np.ndarray
    ss: np.ndarray
    dd: np.ndarray
    n_nodes: int

    def take(self, index) -> "HermiteCoefficients":
        """The coefficients of a subset of the variances (numpy index into q)."""
        return HermiteCoefficients(self.q[index], self.a[:, index], self.b[:, index], self.ss[index],
                                   self.dd[index], self.n_nodes)


def _coefficients_at(activation, q, n):
    """HermiteCoefficients for the unique variances q at n Gauss-Hermite nodes, and the relative
    weight of the top quarter of the kept rows, max over q of sum_{3n/8 <= k < n/2} a_k^2 / E (also b)."""
    z, sw = _gauss_hermite(n)
    s, d = _value_and_slope(activation.fn, np.sqrt(q)[None, :] * z[:, None])
    s, d = sw[:, None] * s, sw[:, None] * d
    if not (np.all(np.isfinite(s)) and np.all(np.isfinite(d))):
        raise ValueError(f"activation={activation.name!r} gives NaN or inf (or an infinite slope) at "
                         f"Gauss-Hermite nodes for q in [{q.min():g}, {q.max():g}]: it must be finite "
                         "and differentiable on the real line")
    ss, dd = np.sum(s * s, axis=0), np.sum(d * d, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        scale = np.sqrt(np.maximum(ss, dd))
        keep = np.max(np.maximum(np.abs(s), np.abs(d)) / np.where(scale > 0, scale, np.inf), axis=1) > 1e-18
    s, d = s[keep], d[keep]
    if n <= 2560:
        Q = _cached_hermite_functions(n)[:, keep]
        a, b = Q @ s, Q @ d
    else:  # row blocks: memory O(512 n) instead of O(n^2)
        a, b = (np.concatenate(x) for x in zip(*((Q @ s, Q @ d) for Q in
                                                 _hermite_function_blocks(z[keep], sw[keep], n // 2))))
    top = slice(3 * n // 8, n // 2)  # the top quarter of the kept rows
    with np.errstate(invalid="ignore", divide="ignore"):
        ra = np.where(ss > 0, np.sum(a[top] ** 2, axis=0) / ss, 0.0)
        rb = np.where(dd > 0, np.sum(b[top] ** 2, axis=0) / dd, 0.0)
    return HermiteCoefficients(q, a, b, ss, dd, n), float(max(ra.max(), rb.max()))


def _chebyshev_points(lo, hi, m):
    """m + 1 Chebyshev points of the second kind on [lo, hi] and their barycentric weights."""
    j = np.arange(m + 1)
    w = (-1.0) ** j
    w[0] *= 0.5
    w[-1] *= 0.5
    return 0.5 * (lo + hi) + 0.5 * (hi - lo) * np.cos(np.pi * j / m), w


def _lagrange_matrix(x, nodes, w):
    """L[i, j] = l_j(x_i), the barycentric Lagrange basis (Berrut & Trefethen 2004, eq. 4.2)."""
    diff = x[:, None] - nodes[None, :]
    exact = diff == 0
    with np.errstate(divide="ignore", invalid="ignore"):
        t = w / diff
        L = t / t.sum(axis=1, keepdims=True)
    hit = exact.any(axis=1)
    L[hit] = exact[hit]
    return L


def _interpolated_band(activation, s, n, tol):
    """Coefficients at s = sqrt(q) (sorted, one band with s_max / s_min <= sqrt 2) by Chebyshev
    interpolation in s (a_k is analytic in s for Re s > 0 for the activations here), or None.

    Degrees m = 4, 8, 16: accepted when the interpolants through m + 1 and 2m + 1 points (nested) agree
    within tol/16 of sqrt(E) in the 2-norm over k (chebfun's criterion) at up to 129 of the band's s
    spread over it (their difference is a polynomial of degree 2m <= 32, so this bounds it over the band
    to within a small factor).
    """
    check = s[np.unique(np.linspace(0, s.size - 1, 129).round().astype(int))]
    for m in (4, 8, 16):
        if s.size <= 2 * m + 1:
            return None
        nodes, w = _chebyshev_points(s[0], s[-1], 2 * m)
        coef, _ = _coefficients_at(activation, nodes ** 2, n)
        L_fine = _lagrange_matrix(check, nodes, w)
        L_coarse = _lagrange_matrix(check, *_chebyshev_points(s[0], s[-1], m))
        ok = True
        for x, e in ((coef.a, coef.ss), (coef.b, coef.dd)):
            fine, coarse = x @ L_fine.T, x[:, ::2] @ L_coarse.T
            scale = np.sqrt(np.maximum(e @ L_fine.T, 0.0))
            ok &= bool(np.all(np.linalg.norm(fine - coarse, axis=0) <= tol / 16 * scale))
        if ok:
            L = _lagrange_matrix(s, nodes, w)
            return HermiteCoefficients(s ** 2, coef.a @ L.T, coef.b @ L.T, coef.ss @ L.T, coef.dd @ L.T, n)
    return None


def _all_coefficients(activation, q, n, tol):
    """Coefficients at the sorted unique variances q at n nodes: Chebyshev interpolation in sqrt(q)
    over bands s_max / s_min <= sqrt 2 where that converges, direct quadrature elsewhere. Returns
    (HermiteCoefficients, top-quarter weight as in _coefficients_at)."""
    s = np.sqrt(q)
    with np.errstate(divide="ignore"):
        band = np.where(s > 0, np.floor(2 * np.log2(s[-1] / np.where(s > 0, s, 1.0))), -1).astype(int)
    parts = []
    for b in np.unique(band):
        sb = s[band == b]
        part = _interpolated_band(activation, sb, n, tol) if b >= 0 else None
        parts.append(part if part is not None else _coefficients_at(activation, sb ** 2, n)[0])
    order = np.argsort(np.concatenate([p.q for p in parts]), kind="stable")
    coef = HermiteCoefficients(*(np.concatenate([getattr(p, f) for p in parts], axis=-1)[..., order]
                                 for f in ("q", "a", "b", "ss", "dd")), n)
    coef = dataclasses.replace(coef, q=q)
    top = slice(3 * n // 8, n // 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        ra = np.where(coef.ss > 0, np.sum(coef.a[top] ** 2, axis=0) / coef.ss, 0.0)
        rb = np.where(coef.dd > 0, np.sum(coef.b[top] ** 2, axis=0) / coef.dd, 0.0)
    return coef, float(max(ra.max(), rb.max()))


def hermite_coefficients(activation, q, *, tol: float = TOL, n_max: int = N_MAX,
                         n_start: int = 64) -> HermiteCoefficients:
    """Hermite coefficients of sigma and sigma' at variances q (N,), converged for truncation at ``tol``.

    The node count n grows (x1.25 from ``n_start``) until, for every q, the coefficients k in [3n/8, n/2) hold
    less than tol/20 of E[sigma^2] and of E[sigma'^2]; raises ValueError if n would exceed ``n_max``
    (non-smooth activation, or q too large for this activation at this tol). Many distinct q are
    handled by Chebyshev interpolation in sqrt(q) (checked, see _interpolated_band), few directly.
    """
    require_x64("sft.gaussian.hermite_coefficients")
    q = _check_variances(np.atleast_1d(q))
    if not (0 < tol < 1):
        raise ValueError(f"tol={tol!r} is not allowed: 0 < tol < 1")
    qu, inverse = np.unique(q, return_inverse=True)
    probe = np.unique(np.quantile(qu, [0.0, 0.5, 0.9, 1.0], method="nearest"))
    top = np.nan
    for n in _node_ladder(int(n_start)):
        if n > n_max:
            raise ValueError(
                f"activation={activation.name!r}: its Hermite series does not converge to tol={tol:g} "
                f"with n_max={n_max} Gauss-Hermite nodes for q up to {qu.max():g} (coefficient tail "
                f"{top:.1e}). The activation is not smooth (a kink or jump), or q is too large for it; "
                "give closed forms (Activation.gauss_ss/gauss_dd), a larger tol, or a larger n_max")
        coef, top = _coefficients_at(activation, probe, n)
        if top <= tol / 20:
            coef, top = _all_coefficients(activation, qu, n, tol)
            if top <= tol / 20:
                return coef.take(inverse.ravel())


# ---------------------------------------------------------------- Mehler series --------------------

def _tile_side(n: int) -> int:
    return min(_TILE, 1 << max(0, int(np.ceil(np.log2(n)))))


def _blocks(x, t):
    """(K, N) -> (N_pad / t, K, t), zero padded."""
    pad = (-x.shape[1]) % t
    x = np.pad(x, ((0, 0), (0, pad)))
    return x.reshape(x.shape[0], -1, t).transpose(1, 0, 2)


@functools.partial(jax.jit, static_argnames="symmetric")
def _horner_tiles(rho4, a1, b1, a2, b2, ti, tj, tk, symmetric):
    """Horner sums over k < tk[t] of rho^k a1_k a2_k and rho^k b1_k b2_k on tiles t = (ti, tj).

    rho4 (n1, T1, n2, T2); a1, b1 (n1, K, T1); a2, b2 (n2, K, T2); ti, tj, tk (n_tiles,).
    Returns two (n1 T1, n2 T2) arrays (``symmetric``: tiles (ti, tj) also fill (tj, ti) transposed).
    """
    def tile(args):
        i, j, kmax = args
        r, A1, B1, A2, B2 = rho4[i, :, j, :], a1[i], b1[i], a2[j], b2[j]

        def step(n, sd):
            k = kmax - 1 - n
            return (sd[0] * r + A1[k][:, None] * A2[k][None, :],
                    sd[1] * r + B1[k][:, None] * B2[k][None, :])

        zero = jnp.zeros_like(r)
        return jax.lax.fori_loop(0, kmax, step, (zero, zero))

    n1, t1, n2, t2 = rho4.shape
    out = []
    for tiles in jax.lax.map(tile, (ti, tj, tk)):
        full = jnp.zeros((n1, n2, t1, t2)).at[ti, tj].set(tiles)
        if symmetric:
            full = full.at[tj, ti].set(tiles.transpose(0, 2, 1))
        out.append(full.transpose(0, 2, 1, 3).reshape(n1 * t1, n2 * t2))
    return out


def _terms_needed(r, e1, e2, tol):
    """Smallest K per tile with sum_{k >= K} r^k e1_k e2_k <= tol; r (n,), e1, e2 (n, K)."""
    k = np.arange(e1.shape[1])
    with np.errstate(under="ignore"):
        terms = r[:, None] ** k * e1 * e2
    tail = np.cumsum(terms[:, ::-1], axis=1)[:, ::-1]  # tail[:, K] = sum_{k >= K}
    ok = tail <= tol
    return np.where(ok.any(axis=1), np.argmax(ok, axis=1), e1.shape[1])


def mehler_expectations(coef1: HermiteCoefficients, coef2: HermiteCoefficients, c, *, tol: float = TOL,
                        symmetric: bool = False):
    """(E[sigma(u)sigma(v)], E[sigma'(u)sigma'(v)]), each (N1, N2), by the Mehler series.

    coef1, coef2: Hermite coefficients at q1 (N1,) and q2 (N2,) with the same number of rows (e.g.
    one :func:`hermite_coefficients` call on the concatenated variances, then :meth:`take`);
    c (N1, N2): covariances, |c| <= sqrt(q1 q2). ``symmetric``: coef1 is coef2 and c == c.T (only the
    upper tiles are computed). Entries with q1 q2 = 0 use rho = 0 (then only k = 0 survives).
    """
    require_x64("sft.gaussian.mehler_expectations")
    symmetric = check_flag("symmetric", symmetric)
    s = np.sqrt(np.outer(coef1.q, coef2.q))
    c = np.asarray(c, dtype=np.float64)
    if c.shape != s.shape or not np.all(np.isfinite(c)):
        raise ValueError(f"c has shape {c.shape} or non-finite entries: it must be finite with shape {s.shape}")
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = c / s
    zero = s == 0
    rho[zero] = 0.0
    bad = np.abs(rho) > 1 + 1e-8
    bad |= zero & (c != 0)
    if np.any(bad):
        i, j = np.argwhere(bad)[0]
        raise ValueError(f"c[{i}, {j}] = {c[i, j]!r} is not allowed: |c| must be <= sqrt(q1 q2) = {s[i, j]!r}")
    del s, zero, bad
    np.clip(rho, -1.0, 1.0, out=rho)
    (N1, N2), K = rho.shape, coef1.a.shape[0]
    t1, t2 = _tile_side(N1), _tile_side(N2)
    if symmetric:
        t1 = t2 = max(t1, t2)
    n1, n2 = -(-N1 // t1), -(-N2 // t2)
    rho4 = np.pad(rho, ((0, n1 * t1 - N1), (0, n2 * t2 - N2))).reshape(n1, t1, n2, t2)
    ti, tj = (x.ravel() for x in np.meshgrid(np.arange(n1), np.arange(n2), indexing="ij"))
    if symmetric:
        ti, tj = ti[ti <= tj], tj[ti <= tj]
    r = np.abs(rho4).max(axis=(1, 3))[ti, tj]
    def envelope(x, e, t):  # (n_blocks, K): max over a block of |coefficient| / sqrt(E)
        return np.maximum.reduceat(np.abs(x) * (1 / np.sqrt(np.where(e > 0, e, 1.0))),
                                   np.arange(0, x.shape[1], t), axis=1).T

    env = [envelope(coef1.a, coef1.ss, t1), envelope(coef1.b, coef1.dd, t1)]
    env += env if symmetric else [envelope(coef2.a, coef2.ss, t2), envelope(coef2.b, coef2.dd, t2)]
    kt = np.maximum(_terms_needed(r, env[0][ti], env[2][tj], tol / 2),
                    _terms_needed(r, env[1][ti], env[3][tj], tol / 2))
    kpad = min(K, max(8, 1 << int(np.ceil(np.log2(max(kt.max(), 1))))))  # few shapes -> few compiles
    a1, b1 = _blocks(coef1.a[:kpad], t1), _blocks(coef1.b[:kpad], t1)
    a2, b2 = (a1, b1) if symmetric else (_blocks(coef2.a[:kpad], t2), _blocks(coef2.b[:kpad], t2))
    out = _horner_tiles(rho4, a1, b1, a2, b2, ti, tj, kt.astype(np.int32), symmetric)
    del rho, rho4
    ess = np.array(np.asarray(out[0])[:N1, :N2])
    return ess, np.array(np.asarray(out.pop())[:N1, :N2])


def _check_pair(q1, q2, c):
    q1 = _check_variances(q1, "q1")
    q2 = _check_variances(q2, "q2")
    c = np.asarray(c, dtype=np.float64)
    if q1.ndim != 1 or q2.ndim != 1 or c.shape != (q1.size, q2.size):
        raise ValueError(f"shapes q1 {q1.shape}, q2 {q2.shape}, c {c.shape} are not allowed: "
                         "need q1 (N1,), q2 (N2,), c (N1, N2)")
    if not np.all(np.isfinite(c)):
        raise ValueError("c contains NaN or inf: covariances must be finite")
    return q1, q2, c


def _closed_form_pairs(activation, q1, q2, c, symmetric, rows=128):
    """Closed forms evaluated in blocks of rows (bounded temporaries; upper blocks only if symmetric).

    Blocks write disjoint regions, and numpy releases the GIL in ufuncs, so they run on a thread pool
    with one worker per core.
    """
    ess, edd = np.empty_like(c), np.empty_like(c)

    def block(r0):
        r1, c0 = min(r0 + rows, c.shape[0]), (r0 if symmetric else 0)
        args = (q1[r0:r1, None], q2[None, c0:], c[r0:r1, c0:])
        for out, values in zip((ess, edd), activation.gauss_both(*args)):
            out[r0:r1, c0:] = values
            if symmetric:
                out[r0:, r0:r1] = values.T

    starts = range(0, c.shape[0], rows)
    if len(starts) < 4:
        for r0 in starts:
            block(r0)
    else:
        list(_thread_pool().map(block, starts))
    return ess, edd


@functools.lru_cache(maxsize=1)
def _thread_pool():
    return concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 1)


def pair_and_diag_expectations(activation, q1, q2, c, *, tol: float = TOL, n_max: int = N_MAX,
                               n_start: int = 64, symmetric=None):
    """Pair expectations (E[sigma sigma], E[sigma' sigma']) (N1, N2) and the diagonals
    (E[sigma^2], E[sigma'^2]) at q1 and at q2, from one set of Hermite coefficients.

    Returns ``(ess, edd, (ss1, dd1), (ss2, dd2), n_nodes)`` (n_nodes = 0 for closed forms).
    ``symmetric``: q1 == q2 and c == c.T (then only upper blocks are computed); None detects it.
    ``n_start``: first Gauss-Hermite node count tried (e.g. the previous layer's, divided by 1.5).
    Accuracy: see the module docstring.

    Under JAX tracing (jit, vmap, grad, jacfwd) the same numbers come back as JAX arrays, and the
    derivatives are the Gaussian expectations of derivatives (Price's theorem; see
    :func:`_traced_pair_and_diag`), so the result is differentiable in q1, q2 and c to any order.
    ``symmetric`` is then taken as given (None counts as False); value checks (|c| <= sqrt(q1 q2),
    finiteness) raise inside the host callback instead of as a plain ValueError.

    >>> import jax, jax.numpy as jnp
    >>> from sft.kernels import get_activation
    >>> tanh = get_activation("tanh")
    >>> f = lambda c: pair_and_diag_expectations(tanh, jnp.ones(1), jnp.ones(1), c[None, None])[0][0, 0]
    >>> slope = jax.grad(f)(0.3)                    # d E[s s] / dc = E[s' s'] (Price's theorem)
    >>> edd = pair_and_diag_expectations(tanh, np.ones(1), np.ones(1), np.full((1, 1), 0.3))[1][0, 0]
    >>> bool(abs(slope - edd) < 1e-13)
    True
    """
    require_x64("sft.gaussian.pair_and_diag_expectations")
    if symmetric is not None:
        symmetric = check_flag("symmetric", symmetric)
    if _is_traced(q1, q2, c):
        return _traced_pair_and_diag(activation, q1, q2, c, tol, n_max, bool(symmetric))
    q1, q2, c = _check_pair(q1, q2, c)
    if symmetric is None:
        symmetric = q1.shape == q2.shape and np.array_equal(q1, q2) and np.array_equal(c, c.T)
    if activation.has_closed_form:
        d1 = diag_expectations(activation, q1)
        return (*_closed_form_pairs(activation, q1, q2, c, symmetric), d1,
                d1 if symmetric else diag_expectations(activation, q2), 0)
    coef = hermite_coefficients(activation, q1 if symmetric else np.concatenate([q1, q2]),
                                tol=tol, n_max=n_max, n_start=n_start)
    c1 = coef.take(slice(0, q1.size))
    c2 = c1 if symmetric else coef.take(slice(q1.size, None))
    ess, edd = mehler_expectations(c1, c2, c, tol=tol, symmetric=symmetric)
    return ess, edd, (c1.ss, c1.dd), (c2.ss, c2.dd), coef.n_nodes


# ---------------------------------------------------------------- traced (JAX) path ----------------
#
# The Mehler numbers are computed on the host (numpy, adaptive truncation) through jax.pure_callback.
# Their derivatives follow from Price's theorem / the Gaussian heat equation, with
# P_ij(q1, q2, c) = E[sigma^(i)(u) sigma^(j)(v)] and D_ij(q) = E[sigma^(i)(u) sigma^(j)(u)], u ~ N(0, q):
#
#     dP_ij = P_{i+1,j+1} dc + (1/2) P_{i+2,j} dq1 + (1/2) P_{i,j+2} dq2,
#     dD_ij = (1/2) (D_{i+2,j} + 2 D_{i+1,j+1} + D_{i,j+2}) dq,
#
# (d/dc of a bivariate Gaussian density = d^2/du dv of it; d/dq = (1/2) d^2/du^2; integrate by parts),
# so every derivative is again a Gaussian expectation of the same kind, to any order.

def _is_traced(*args) -> bool:
    """True if any leaf of args is a JAX tracer (inside jit, vmap, grad, ...)."""
    return any(isinstance(a, jax.core.Tracer) for a in jax.tree_util.tree_leaves(args))


def _derivative_fn(fn):
    return lambda z: jax.jvp(fn, (z,), (jnp.ones_like(z),))[1]


@functools.lru_cache(maxsize=64)
def _derivative_activation(activation, order: int):
    """sigma^(order) (elementwise, by forward-mode autodiff) as an activation without closed forms."""
    fn = activation.fn
    for _ in range(order):
        fn = _derivative_fn(fn)
    name = activation.name + ("" if order == 0 else f"^({order})")
    return dataclasses.replace(activation, name=name, fn=fn, gauss_ss=None, gauss_dd=None, gauss_joint=None)


def _host_pairs(activation, i, j, symmetric, tol, n_max, q1, q2, c):
    """(P_ij, P_{i+1,j+1}) (N1, N2) in numpy by the Mehler series (host side of the callback)."""
    q1, q2, c = _check_pair(q1, q2, c)
    ai, aj = _derivative_activation(activation, i), _derivative_activation(activation, j)
    if i == j:
        ess, edd, *_ = pair_and_diag_expectations(ai, q1, q2, c, tol=tol, n_max=n_max, symmetric=symmetric)
        return ess, edd
    qs = np.concatenate([q1, q2])
    ci = hermite_coefficients(ai, qs, tol=tol, n_max=n_max)
    cj = hermite_coefficients(aj, qs, tol=tol, n_max=n_max)
    rows = min(ci.a.shape[0], cj.a.shape[0])  # both converged (tails < tol/20) beyond the shorter one
    ci, cj = (dataclasses.replace(x, a=x.a[:rows], b=x.b[:rows]) for x in (ci, cj))
    return mehler_expectations(ci.take(slice(0, q1.size)), cj.take(slice(q1.size, None)), c, tol=tol)


def _host_diag(activation, i, j, q):
    """(D_ij, D_{i+1,j+1}) (N,) by the 1-D quadrature of :func:`gaussian_expectation`."""
    f = [_derivative_activation(activation, k).fn for k in (i, j, i + 1, j + 1)]
    return (np.asarray(gaussian_expectation(lambda z: f[0](z) * f[1](z), q), dtype=np.float64),
            np.asarray(gaussian_expectation(lambda z: f[2](z) * f[3](z), q), dtype=np.float64))


def _callback(host, shape, *args):
    out = jax.ShapeDtypeStruct(shape, jnp.float64)
    return jax.pure_callback(host, (out, out), *args, vmap_method="sequential")


@functools.partial(jax.custom_jvp, nondiff_argnums=(0, 1, 2, 3, 4, 5))
def _pairs_traced(activation, i, j, symmetric, tol, n_max, q1, q2, c):
    host = functools.partial(_host_pairs, activation, i, j, symmetric, tol, n_max)
    return _callback(host, c.shape, q1, q2, c)


@_pairs_traced.defjvp
def _pairs_traced_jvp(activation, i, j, symmetric, tol, n_max, primals, tangents):
    (q1, q2, c), (dq1, dq2, dc) = primals, tangents
    p = functools.partial(_pairs_traced, activation)
    value, slope = p(i, j, symmetric, tol, n_max, q1, q2, c)
    _, curvature = p(i + 1, j + 1, symmetric, tol, n_max, q1, q2, c)  # P_{i+2, j+2}
    a = p(i + 2, j, False, tol, n_max, q1, q2, c)  # (P_{i+2,j}, P_{i+3,j+1})
    b = tuple(x.T for x in a) if symmetric else p(i, j + 2, False, tol, n_max, q1, q2, c)
    return (value, slope), (slope * dc + 0.5 * (a[0] * dq1[:, None] + b[0] * dq2[None, :]),
                            curvature * dc + 0.5 * (a[1] * dq1[:, None] + b[1] * dq2[None, :]))


@functools.partial(jax.custom_jvp, nondiff_argnums=(0, 1, 2))
def _diag_traced(activation, i, j, q):
    return _callback(functools.partial(_host_diag, activation, i, j), q.shape, q)


@_diag_traced.defjvp
def _diag_traced_jvp(activation, i, j, primals, tangents):
    (q,), (dq,) = primals, tangents
    value, slope = _diag_traced(activation, i, j, q)
    mid, mid2 = _diag_traced(activation, i + 1, j + 1, q)
    a, a2 = _diag_traced(activation, i + 2, j, q)
    b, b2 = (a, a2) if i == j else _diag_traced(activation, i, j + 2, q)
    return (value, slope), (0.5 * (a + 2 * mid + b) * dq, 0.5 * (a2 + 2 * mid2 + b2) * dq)


def _traced_pair_and_diag(activation, q1, q2, c, tol, n_max, symmetric):
    """pair_and_diag_expectations for traced arguments (shape checks only; see its docstring)."""
    q1, q2, c = (jnp.asarray(x, dtype=jnp.float64) for x in (q1, q2, c))
    if q1.ndim != 1 or q2.ndim != 1 or c.shape != (q1.size, q2.size):
        raise ValueError(f"shapes q1 {q1.shape}, q2 {q2.shape}, c {c.shape} are not allowed: "
                         "need q1 (N1,), q2 (N2,), c (N1, N2)")
    if activation.has_closed_form:
        ess, edd = activation.gauss_both(q1[:, None], q2[None, :], c)
        d1, d2 = ((activation.gauss_ss(q, q, q), activation.gauss_dd(q, q, q)) for q in (q1, q2))
        return ess, edd, d1, d2, 0
    ess, edd = _pairs_traced(activation, 0, 0, symmetric, tol, n_max, q1, q2, c)
    d1 = _diag_traced(activation, 0, 0, q1)
    return ess, edd, d1, d1 if symmetric else _diag_traced(activation, 0, 0, q2), 0


def pair_expectations(activation, q1, q2, c, *, tol: float = TOL, n_max: int = N_MAX):
    """(E[sigma(u)sigma(v)], E[sigma'(u)sigma'(v)]) of shape (N1, N2).

    q1: (N1,) variances of u, q2: (N2,) variances of v, c: (N1, N2) covariances (|c| <= sqrt(q1 q2)).
    Closed forms where the activation has them, otherwise the Mehler series (module docstring), with
    |error| <= tol * sqrt(E[sigma(u)^2] E[sigma(v)^2]) entrywise (resp. sigma'), or a ValueError when
    the series cannot reach ``tol`` within ``n_max`` Gauss-Hermite nodes.
    """
    return pair_and_diag_expectations(activation, q1, q2, c, tol=tol, n_max=n_max)[:2]
