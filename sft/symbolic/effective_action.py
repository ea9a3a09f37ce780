"""Effective action of a wide network's output field to O(1/n^2): couplings <-> connected cumulants.

Convention (Euclidean, the weight of the output f in R^N on N inputs is e^{-S[f]}, couplings carry
1/k! as in :mod:`sft.symbolic.feynman`):

    S[f] = 1/2 f^T K^{-1} f + (1/2!) g2_ab f_a f_b + (1/4!) g4_abcd f_a..f_d + (1/6!) g6_a..f f_a..f_f,

with the propagator the infinite-width kernel K = K^(L+1) (symmetric positive definite, (N, N)) and
symmetric coupling tensors expanded in eps = 1/n (n the width; for unequal widths, any fixed
reference width):

    g2 = eps g2[1] + eps^2 g2[2],   g4 = eps g4[1] + eps^2 g4[2],   g6 = eps^2 g6[2].

g2 is the quadratic-coupling correction (the kernel shift plus the one-loop tadpole of g4). The
connected cumulants of f have the matching expansion (odd ones vanish for networks, f -> -f):

    kappa2 = K + eps k2[1] + eps^2 k2[2],   kappa4 = eps k4[1] + eps^2 k4[2],   kappa6 = eps^2 k6[2].

Both are stored as dicts {(points, power of eps): tensor of shape (N,)*points} with keys
(2, 1), (4, 1) at order 1 and also (2, 2), (4, 2), (6, 2) at order 2; a missing key means zero.

Forward map (couplings -> cumulants, :func:`cumulants_from_couplings`): the connected k-point function
is the sum of connected Feynman diagrams with vertices -g and propagators K (linked-cluster theorem;
diagrams, symmetry factors and tensor contractions from :func:`sft.symbolic.feynman.diagrams` and
:func:`sft.symbolic.feynman.evaluate`, nothing typed by hand). At eps^1 only one-vertex diagrams with
the eps^1 couplings contribute; at eps^2, one-vertex diagrams with the eps^2 couplings (g6 trees and
loops included) and two-vertex diagrams with the eps^1 couplings (g2 g2, g2 g4, g4 g4: the sunset,
double tadpoles and the six-point tree of two quartic vertices). Diagrams with three or more vertices
are O(eps^3) and dropped. Examples: k4[1] = -g4[1] K K K K (tree), k2[1] = -K g2[1] K - (1/2) K
(g4[1] : K) K (tadpole), and the quartic-only six-point tree

    k6_tree[2] = sum over the 10 splits {abc|def} of (-g4[1]_abc.)(K ... K)(-g4[1]_.def),
    single input: k6_tree = 10 k4^2 / K.

Inverse map (cumulants -> couplings, :func:`couplings_from_cumulants`, the Legendre transform order by
order): at each power of eps, subtract the diagrams of the couplings already known (lower powers, and
higher-degree vertices of the same power), then amputate the tree: g_k[m] = -(residual k-point
function) contracted with K^{-1} on every leg; done for k = 6, 4, 2 in that order. The two maps are
exact inverses of each other on the truncated series (round trip to rounding, tested to 1e-10).

What it answers (tests/test_effective_action.py, figure sims/fig_six_point.py): the quartic coupling
alone does NOT reproduce the connected six-point function at O(1/n^2). One input with K^(1) = 1,
one hidden layer: kappa6 / k6_tree = 1/3 (linear), 0.29 (ReLU, C_W = 2), 0.07 (tanh, C_W = 1); deep
linear networks: 1/2 - 1/(6L) and g6 K^3 / (g4 K^2)^2 = 5 + 5/(3L) (exact law, L hidden layers);
ReLU: 7.07, 6.03, 5.69, 5.52 at L = 1..4; tanh: 9.3, 8.0, 7.5, 7.2. The sextic coupling is of the same order as the quartic
one squared, and larger than it by a factor 5-10 in these units. On several inputs the couplings are
not local in input space (two inputs 53 degrees apart, one hidden layer: 83-98 % of the Frobenius
norm of g4 and g6 off the diagonal a = b = ..), so a local ansatz cannot carry them.

Sources: Zee, *QFT in a Nutshell*, ch. I.7 (Feynman rules, symmetry factors); Halverson, Maiti &
Stoner, "Neural networks and quantum field theory", Mach. Learn.: Sci. Technol. 2, 035002 (2021)
(quartic couplings from the connected four-point function at tree level; couplings fitted to
finite-width ensembles); Roberts, Yaida & Hanin, *The Principles of Deep Learning Theory* (2022),
sec. 1.3 and ch. 4 (nearly-Gaussian actions of the preactivations, couplings from cumulants).
"""
from __future__ import annotations

import numbers

import numpy as np

from ..conventions import pd_inverse
from .feynman import diagrams, evaluate

__all__ = ["coupling_keys", "cumulants_from_couplings", "couplings_from_cumulants",
           "quartic_tree_six_point", "whitened_coupling_ratio"]


def coupling_keys(order: int = 2) -> tuple[tuple[int, int], ...]:
    """Keys (points, power of 1/n) of the truncated series at ``order`` (1 or 2) in 1/n.

    >>> coupling_keys(2)
    ((2, 1), (4, 1), (2, 2), (4, 2), (6, 2))
    """
    if isinstance(order, bool) or not isinstance(order, numbers.Integral) or order not in (1, 2):
        raise ValueError(f"order={order!r} is not allowed: the effective action is implemented to "
                         "order 1 or 2 in 1/n")
    return ((2, 1), (4, 1)) + (((2, 2), (4, 2), (6, 2)) if order == 2 else ())


def _as_float_array(name, value):
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name}={value!r} is not allowed: give real numbers (float64 array)") from None


def _check_kernel(K):
    """(K as (N, N) float64, K^{-1} by Cholesky) for a finite symmetric positive-definite K."""
    k = np.atleast_2d(_as_float_array("K", K))
    if k.ndim != 2 or k.shape[0] != k.shape[1] or not np.all(np.isfinite(k)):
        raise ValueError(f"K of shape {np.shape(K)} is not allowed: give a finite symmetric positive-"
                         "definite (N, N) kernel (a scalar for one input)")
    scale = np.max(np.abs(k))
    if not np.allclose(k, k.T, rtol=0.0, atol=1e-12 * scale):
        raise ValueError(f"K={K!r} is not allowed: the kernel must be symmetric (to 1e-12 of max|K|)")
    try:  # positive definite within psd_eigh's tolerance 10 N eps max|lambda|, then Cholesky
        return k, pd_inverse("K", k)
    except ValueError as err:
        raise ValueError(f"K={K!r} is not allowed: it is no propagator (drop duplicate inputs): {err}") from None


def _check_series(series, N: int, order: int, name: str) -> dict:
    keys = coupling_keys(order)
    if not isinstance(series, dict):
        raise ValueError(f"{name}={series!r} is not allowed: give a dict {{(points, power of 1/n): "
                         f"tensor}} with keys among {keys}")
    out = {}
    for key in keys:
        out[key] = np.zeros((N,) * key[0])
    for key, t in series.items():
        if key not in keys:
            raise ValueError(f"{name} key {key!r} is not allowed at order {order}: use keys among {keys} "
                             "(points, power of 1/n); kappa6 and g6 start at 1/n^2")
        a = _as_float_array(f"{name}[{key}]", t)
        if a.ndim == 0 and N == 1:
            a = a.reshape((1,) * key[0])
        if a.shape != (N,) * key[0] or not np.all(np.isfinite(a)):
            raise ValueError(f"{name}[{key}] of shape {a.shape} is not allowed: it must be a finite "
                             f"tensor of shape {(N,) * key[0]}")
        scale = max(np.max(np.abs(a)), np.finfo(np.float64).tiny)
        for ax in range(key[0] - 1):
            if not np.allclose(a, np.swapaxes(a, ax, ax + 1), rtol=0.0, atol=1e-10 * scale):
                raise ValueError(f"{name}[{key}] is not allowed: it is not a symmetric tensor (changes "
                                 f"under swapping axes {ax} and {ax + 1} by more than 1e-10 of its "
                                 "largest entry)")
        out[key] = a
    return out


def _sum_diagrams(points: int, n_vertices: int, Kinv, couplings: dict):
    """Sum of the connected diagrams with ``points`` legs and ``n_vertices`` vertices whose degrees are
    the keys of ``couplings`` (each vertex -g, each propagator K = inverse of ``Kinv``)."""
    total = np.zeros((len(Kinv),) * points)
    for d in diagrams(points, n_vertices, tuple(sorted(couplings)), kind="connected"):
        total = total + evaluate(d, Kinv, couplings)
    return total


def _forward(Kinv, g: dict, order: int) -> dict:
    out = {}
    for points, m in coupling_keys(order):
        same = {k: g[(k, m)] for k in (2, 4, 6) if (k, m) in g}
        total = _sum_diagrams(points, 1, Kinv, same)
        if m == 2:
            total = total + _sum_diagrams(points, 2, Kinv, {2: g[(2, 1)], 4: g[(4, 1)]})
        out[(points, m)] = total
    return out


def cumulants_from_couplings(K, couplings: dict, *, order: int = 2) -> dict:
    """Connected 2-, 4- and 6-point functions of f from the couplings, order by order in 1/n
    (module docstring: one-vertex diagrams at each order, two-vertex diagrams of the 1/n couplings at
    1/n^2). Returns {(points, m): tensor}; the 1/n^0 two-point function is K itself.

    Args:
      K: (N, N) propagator (infinite-width kernel), symmetric positive definite; scalar for N = 1.
      couplings: {(k, m): g_k[m] of shape (N,)*k}, keys from :func:`coupling_keys` (missing = 0).

    >>> out = cumulants_from_couplings(2.0, {(4, 1): -3.0})   # tree: -g4 K^4, tadpole: -g4 K^3 / 2
    >>> round(float(out[(4, 1)][0, 0, 0, 0]), 10), round(float(out[(2, 1)][0, 0]), 10)
    (48.0, 12.0)
    """
    k, Kinv = _check_kernel(K)
    return _forward(Kinv, _check_series(couplings, len(k), order, "couplings"), order)


def _amputate(t, Kinv):
    """Contract every leg of the tensor t with K^{-1}."""
    for ax in range(t.ndim):
        t = np.moveaxis(np.tensordot(t, Kinv, axes=([ax], [0])), -1, ax)
    return t


def _symmetrize(t):
    """Average over all permutations of the axes (exact projector, 2 + 3 + .. + k transposes: axes
    0..k-2 made symmetric first, then the k cosets of S_k / S_(k-1)); removes the rounding
    asymmetry of the contractions."""
    for k in range(2, t.ndim + 1):
        t = (t + sum(np.swapaxes(t, j, k - 1) for j in range(k - 1))) / k
    return t


def couplings_from_cumulants(K, cumulants: dict, *, order: int = 2) -> dict:
    """Couplings g2, g4, g6 of the effective action from the connected cumulants, order by order in
    1/n (the inverse of :func:`cumulants_from_couplings`; module docstring).

    Args:
      K: (N, N) infinite-width kernel (the propagator), symmetric positive definite.
      cumulants: {(k, m): coefficient of 1/n^m in the connected k-point function, shape (N,)*k},
        keys from :func:`coupling_keys` (missing = 0); kappa2 = K + k2[1]/n + k2[2]/n^2.

    Returns {(k, m): g_k[m]}. Single input, one-hidden-layer linear network (K = C_W^2 |x|^2/n_0 = 1):
    k4[1] = 6, k6[2] = 120 (neuron cumulants), kappa2 = K exactly:

    >>> g = couplings_from_cumulants(1.0, {(4, 1): 6.0, (6, 2): 120.0})
    >>> float(g[(4, 1)][0, 0, 0, 0]), float(g[(2, 1)][0, 0]), float(g[(6, 2)][(0,) * 6])
    (-6.0, 3.0, 240.0)
    """
    k, Kinv = _check_kernel(K)
    kap = _check_series(cumulants, len(k), order, "cumulants")
    g = {}
    for m in range(1, order + 1):
        for points in (6, 4, 2):
            if (points, m) not in kap:
                continue
            residual = kap[(points, m)]
            if m == 2:  # two-vertex diagrams of the 1/n couplings
                residual = residual - _sum_diagrams(points, 2, Kinv, {2: g[(2, 1)], 4: g[(4, 1)]})
            higher = {j: g[(j, m)] for j in (4, 6) if j > points and (j, m) in g}
            if higher:  # one-vertex loop diagrams of the higher-degree couplings of the same order
                residual = residual - _sum_diagrams(points, 1, Kinv, higher)
            g[(points, m)] = _symmetrize(-_amputate(residual, Kinv))
    return {key: g[key] for key in coupling_keys(order)}


def quartic_tree_six_point(K, kappa4) -> np.ndarray:
    """The connected six-point function at O(1/n^2) predicted by the quartic coupling alone: the tree
    diagrams of two vertices g4 = -kappa4 K^{-4} (amputated) joined by one propagator,

        k6_tree_{a..f} = sum over the 10 splits {abc|def} of kappa4_{abc p} K^{-1}_{pq} kappa4_{q def},

    (single input: 10 kappa4^2 / K). ``kappa4`` is the leading four-point coefficient k4[1] (or the
    four-point function itself, then the result is the six-point function itself), shape (N,)*4.

    >>> float(quartic_tree_six_point(1.0, 6.0)[(0,) * 6])   # one-layer linear: 360, exact is 120
    360.0
    """
    k, Kinv = _check_kernel(K)
    g4 = couplings_from_cumulants(k, {(4, 1): kappa4}, order=1)[(4, 1)]
    return _sum_diagrams(6, 2, Kinv, {4: g4})


def whitened_coupling_ratio(K, g4, g6) -> float:
    """Size of the sextic coupling next to the quartic one squared, both made dimensionless by
    contracting every leg with K^{1/2} (symmetric square root):

        r = ||g6~|| / ||g4~||^2,   g~_{a..} = g_{b..} (K^{1/2})_{ba} ..,   ||.|| Frobenius norm,

    single input: |g6| K^3 / (g4 K^2)^2. Both g6 ~ 1/n^2 and g4^2 ~ 1/n^2, so r is O(1) in n:
    r = O(1) means the sextic term matters as much as the quartic tree at O(1/n^2).

    >>> whitened_coupling_ratio(1.0, -6.0, 240.0)   # one-layer linear network: 20/3
    6.666666666666667
    """
    k, _ = _check_kernel(K)
    lam, vec = np.linalg.eigh(k)
    root = (vec * np.sqrt(lam)) @ vec.T
    N = len(k)
    t4, t6 = _as_float_array("g4", g4), _as_float_array("g6", g6)
    for name, t, k in (("g4", t4, 4), ("g6", t6, 6)):
        if t.size != N ** k or not np.all(np.isfinite(t)):
            raise ValueError(f"{name} of shape {t.shape} is not allowed: a finite tensor of shape {(N,) * k}")
    t4, t6 = t4.reshape((N,) * 4), t6.reshape((N,) * 6)
    n4 = np.linalg.norm(_amputate(t4, root))
    if not np.isfinite(n4) or not n4 > 0:
        raise ValueError(f"g4 with norm {n4!r} is not allowed: the quartic coupling must be finite and "
                         "nonzero to normalise by it")
    return float(np.linalg.norm(_amputate(t6, root)) / n4 ** 2)
