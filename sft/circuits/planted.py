"""Planted low-rank circuits in a Gaussian background: outliers from the bulk resolvent (T-matrix).

A weight matrix is a Gaussian background plus a few planted circuits of strengths theta_k with unit
(orthonormal) directions independent of the background:

    symmetric (Wigner):  W = X + sum_k theta_k u_k u_k^T,   X = G_sym / sqrt(n),
                         G_sym symmetric, G_ij ~ N(0, 1) (i < j), G_ii ~ N(0, 2)  (GOE),
                         bulk: semicircle on [-2, 2],  g(z) = int rho(x) / (z - x) dx = (z - sqrt(z^2 - 4)) / 2.
    rectangular n x m:   W = X + sum_k theta_k u_k v_k^T,   X = G / sqrt(m),  G_ij ~ N(0, 1),
                         c = n / m in (0, 1] (n <= m: rows are the short side; transpose otherwise),
                         bulk singular values on [1 - sqrt(c), 1 + sqrt(c)];  X X^T has the
                         Marchenko-Pastur law of ratio c and mean 1.

T-matrix in the circuit subspace (Benaych-Georges & Nadakuditi 2011, Thm 2.1-2.3; 2012, Thm 2.8-2.10).
For a self-adjoint bulk operator X with resolvent R(z) = (z - X)^{-1} and a perturbation P Theta P^T
(P: orthonormal basis of the circuit subspace, r columns; Theta: symmetric r x r coupling),
z outside the bulk is an eigenvalue of X + P Theta P^T iff

    det(1 - Theta M(z)) = 0,     M(z) = P^T R(z) P  ->  deterministic r x r block as n -> oo.

If psi is its unit eigenvector and a a null vector of (1 - Theta M(z)) normalised by -a^T M'(z) a = 1,
then P^T psi = M(z) a  (from psi = R(z) P Theta P^T psi and psi^T psi = -a^T M'(z) a).
Wigner: M(z) = g(z) 1, so lambda = theta + 1/theta for |theta| > 1 and |<psi, u>|^2 = -1/(theta^2 g'(lambda))
= 1 - 1/theta^2 (BBP; Peche 2006; Feral & Peche 2007; BGN 2011 Sec. 3.1).
Rectangular: the Hermitisation H = [[0, X], [X^T, 0]] with basis e_u = (u, 0), e_v = (0, v) and
Theta = [[0, theta], [theta, 0]] gives M(z) = diag(phi(z), phi~(z)), phi(z) = z g_n(z^2),
phi~(z) = z g_m(z^2) (g_n, g_m: Stieltjes transforms of X X^T and X^T X), so 1 = theta^2 D(z)
with D = phi phi~ the D-transform of BGN 2012; the eigenvector of H is (u~, v~)/sqrt(2), so the
singular-vector overlaps are twice the squared components of P^T psi. Closed forms (BGN 2012 Sec. 3.1):

    threshold theta_c = c^(1/4),   sigma = sqrt((1 + theta^2)(c + theta^2)) / theta,
    |<u~, u>|^2 = 1 - c (1 + theta^2) / (theta^2 (theta^2 + c)),
    |<v~, v>|^2 = 1 - (c + theta^2) / (theta^2 (theta^2 + 1)).

Below threshold the top eigenvalue / singular value sticks to the bulk edge and the overlaps -> 0.
Finite n: outlier fluctuations are O(n^{-1/2}) (Gaussian, Capitaine-Donati-Martin-Feral 2009);
the bias of the mean is O(1/n) away from threshold.
Checks (tests/test_planted.py, figure ``planted_outliers``): simulations at n = 300-400 agree with the
closed forms and the T-matrix roots within |z| <= 2; deviations shrink with n. Below threshold the top
eigenvalue sticks to the bulk edge and the overlap vanishes as n grows.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from scipy import integrate, optimize

from ..conventions import check_array, check_int, check_key, check_real, psd_eigh, require_x64
from ..threads import limit_threads

__all__ = ["semicircle_stieltjes", "marchenko_pastur_stieltjes", "stieltjes_transform",
           "t_matrix_outliers", "wigner_outlier", "rectangular_outlier", "wigner_outliers_t_matrix",
           "rectangular_outliers_t_matrix", "planted_wigner", "planted_rectangular",
           "simulate_wigner_outliers", "simulate_rectangular_outliers", "simulate_wigner_outliers_jax",
           "simulate_rectangular_outliers_jax"]


def _check_thetas(thetas, name="thetas", positive=False):
    t = np.atleast_1d(check_array(name, thetas, ndim=(0, 1)))
    if np.any(t == 0) or (positive and np.any(t < 0)):
        raise ValueError(f"{name}={thetas!r} is not allowed: give a non-empty 1-d sequence of finite, "
                         f"{'positive' if positive else 'non-zero'} circuit strengths")
    return t


def _check_c(c):
    try:
        c_ok = check_real("c", c, minimum=0, maximum=1)
    except ValueError:
        c_ok = 0.0
    if c_ok <= 0:
        raise ValueError(f"c={c!r} is not allowed: the aspect ratio c = n/m must be in (0, 1] "
                         "(put the short side first; transpose otherwise)")
    return c_ok


def _check_int(name, v, lo):
    return check_int(name, v, lo)


def _check_seed(name, seed):
    """A reproducible numpy seed: an integer >= 0 or a numpy Generator (not None: same seed, same result)."""
    if isinstance(seed, np.random.Generator):
        return seed
    return check_int(name, seed, 0)


def _sorted_positive(thetas, what):
    """thetas (r,) > 0 sorted descending; negative strengths put their outlier below the bulk (or,
    rectangular, are a sign absorbed in u), where the top-r eigenvalues/singular values would miss it."""
    t = _check_thetas(thetas)
    if np.any(t < 0):
        raise ValueError(f"thetas={thetas!r} is not allowed: {what} needs thetas > 0 (it records the r "
                         "largest eigenvalues/singular values; a negative theta's outlier lies below the "
                         "bulk and would be reported as the bulk edge). Flip the sign of W (Wigner) or of "
                         "u (rectangular) instead")
    return t


def semicircle_stieltjes(z):
    """g(z) = int rho(x) dx / (z - x) for the semicircle rho(x) = sqrt(4 - x^2) / (2 pi) on [-2, 2].

    g(z) = (z - sign(z) sqrt(z^2 - 4)) / 2 for real |z| > 2 (the branch with g ~ 1/z).

    >>> round(float(semicircle_stieltjes(2.5)), 12)
    0.5
    """
    z = check_array("z", z)
    if np.any(np.abs(z) <= 2):
        raise ValueError(f"z={z!r} is not allowed: need real |z| > 2 (outside the semicircle bulk)")
    return (z - np.sign(z) * np.sqrt(z * z - 4)) / 2


def marchenko_pastur_stieltjes(w, c):
    """Stieltjes transform of the eigenvalue law of X X^T (X = G / sqrt(m), n x m, c = n/m in (0, 1]).

    Density sqrt((b - x)(x - a)) / (2 pi c x) on [a, b] = [(1 - sqrt c)^2, (1 + sqrt c)^2] (mean 1), and
    g(w) = (w - 1 + c - sqrt((w - 1 - c)^2 - 4c)) / (2 c w) for real w > b (Marchenko & Pastur 1967;
    Bai & Silverstein 2010, eq. 3.1.2 with sigma^2 = 1, y = c).

    >>> round(float(marchenko_pastur_stieltjes(1e6, 0.5) * 1e6), 5)  # w g(w) -> 1 as w -> oo
    1.0
    """
    c = _check_c(c)
    w = check_array("w", w)
    if np.any(w <= (1 + np.sqrt(c)) ** 2):
        raise ValueError(f"w={w!r} is not allowed: need real w > (1 + sqrt(c))^2 = {(1 + np.sqrt(c)) ** 2}")
    return (w - 1 + c - np.sqrt((w - 1 - c) ** 2 - 4 * c)) / (2 * c * w)


def stieltjes_transform(density, support, z):
    """g(z) = int_support density(x) / (z - x) dx by adaptive quadrature (scipy.integrate.quad, Cauchy weight), real z outside.

    ``density``: callable, integrable on ``support = (lo, hi)``; z: float outside [lo, hi].
    Independent of the closed forms: used in the tests to check them and the T-matrix root finder.

    >>> rho = lambda x: np.sqrt(4 - x * x) / (2 * np.pi)
    >>> round(stieltjes_transform(rho, (-2, 2), 2.5), 9)
    0.5
    """
    if not callable(density):
        raise ValueError(f"density={density!r} is not allowed: give a callable x -> rho(x)")
    sup = check_array("support", support, ndim=1)
    if sup.shape != (2,) or not sup[0] < sup[1]:
        raise ValueError(f"support={support!r} is not allowed: need (lo, hi) with lo < hi, finite")
    lo, hi = map(float, sup)
    z = check_real("z", z)
    if lo <= z <= hi:
        raise ValueError(f"z={z!r} is not allowed: z must lie outside the support {support!r}")
    # QUADPACK QAWC (Cauchy weight 1/(x - z)) stays accurate for z just outside the support
    val, _ = integrate.quad(density, lo, hi, weight="cauchy", wvar=float(z), epsabs=1e-13, epsrel=1e-12, limit=500)
    return -val


def _derivative(f, z, h):
    """Five-point central difference, error O(h^4 f^(5)) + O(eps / h)."""
    return (8 * (f(z + h) - f(z - h)) - (f(z + 2 * h) - f(z - 2 * h))) / (12 * h)


def t_matrix_outliers(circuit_resolvent, coupling, interval, *, n_grid: int = 400, h: float = 1e-4):
    """Outliers of X + P Theta P^T in a real interval outside the bulk, from the circuit-block resolvent.

    circuit_resolvent(z) -> (r, r) symmetric M(z) = lim P^T (z - X)^{-1} P, definite on ``interval``
    (positive above the bulk, negative below). coupling: symmetric (r, r) Theta.
    Roots of det(1 - Theta M(z)) = 0 are where an eigenvalue of s |M|^{1/2} Theta |M|^{1/2} (s = sign M)
    equals 1; each sorted eigenvalue branch is scanned on a grid of ``n_grid`` points and refined by
    Brent's method (so degenerate circuits give repeated roots). For each root the circuit-subspace
    components of the unit eigenvector are P^T psi = M(z) a, a = null vector of 1 - Theta M(z)
    with -a^T M'(z) a = 1 (M' by a five-point difference with step ``h``; step reduced near the interval ends).
    Returns (roots (k,), components (k, r)); overlaps are components**2. Source: module docstring.

    >>> z, comp = t_matrix_outliers(lambda z: np.eye(1) * semicircle_stieltjes(z), [[3.0]], (2.0, 50.0))
    >>> np.round(z, 10).tolist(), np.round(comp ** 2, 10).tolist()  # theta + 1/theta, 1 - 1/theta^2
    ([3.3333333333], [[0.8888888889]])
    """
    if not callable(circuit_resolvent):
        raise ValueError(f"circuit_resolvent={circuit_resolvent!r} is not allowed: give a callable z -> M(z) (r, r)")
    theta = check_array("coupling", coupling, ndim=2)
    if theta.shape[0] != theta.shape[1] or not np.array_equal(theta, theta.T):
        raise ValueError(f"coupling={coupling!r} is not allowed: give a symmetric square (r, r) matrix")
    iv = check_array("interval", interval, ndim=1)
    if iv.shape != (2,) or not iv[0] < iv[1]:
        raise ValueError(f"interval={interval!r} is not allowed: need (a, b) with a < b, finite")
    a, b = map(float, iv)
    n_grid = _check_int("n_grid", n_grid, 3)
    h = check_real("h", h, minimum=0, strict=True)
    eps = 1e-9 * max(1.0, abs(a), abs(b))
    # geometric spacing toward the edge nearer the bulk is not known here: use a grid dense at both ends
    grid = a + (b - a) * (1 - np.cos(np.linspace(0, np.pi, n_grid))) / 2
    grid[0], grid[-1] = a + eps, b - eps

    def branches(z):
        M = np.asarray(circuit_resolvent(z), dtype=np.float64)
        s = np.sign(M.trace())
        try:  # definite within the psd_eigh tolerance (10 r eps max|w|), not against exact zero
            w, V = psd_eigh("s M(z)", s * M, definite=True)
        except ValueError as err:
            raise ValueError(f"interval={interval!r} is not allowed: M(z) is not definite at z={z} ({err})") from None
        half = (V * np.sqrt(w)) @ V.T
        return np.linalg.eigvalsh(s * half @ theta @ half) - 1

    vals = np.array([branches(z) for z in grid])
    roots = []
    for j in range(theta.shape[0]):
        for i in np.nonzero(np.sign(vals[:-1, j]) * np.sign(vals[1:, j]) < 0)[0]:
            roots.append(optimize.brentq(lambda z: branches(z)[j], grid[i], grid[i + 1], xtol=1e-14, rtol=1e-14))
    roots = np.sort(np.array(roots))
    comps = []
    for z in roots:
        M = np.asarray(circuit_resolvent(z), dtype=np.float64)
        step = min(h, (z - a) / 500, (b - z) / 500)  # stay inside the interval (away from the bulk edge)
        Mp = _derivative(lambda t: np.asarray(circuit_resolvent(t), dtype=np.float64), z, step)
        _, _, vt = np.linalg.svd(np.eye(len(theta)) - theta @ M)
        null = vt[-1]
        null = null / np.sqrt(-null @ Mp @ null)
        comps.append(M @ null)
    return roots, np.array(comps).reshape(len(roots), theta.shape[0])


def wigner_outlier(theta):
    """Closed form, W = X + theta u u^T (semicircle bulk on [-2, 2]): (lambda, |<psi, u>|^2).

    |theta| > 1: lambda = theta + 1/theta, overlap 1 - 1/theta^2; |theta| <= 1: lambda = 2 sign(theta)
    (bulk edge), overlap 0 (BGN 2011 Sec. 3.1; Peche 2006; Feral & Peche 2007). Vectorised over theta.

    >>> wigner_outlier(2.0)
    (2.5, 0.75)
    """
    t = _check_thetas(theta, "theta")
    out = np.abs(t) > 1
    lam = np.where(out, t + 1 / t, 2 * np.sign(t))
    ov = np.where(out, 1 - 1 / t ** 2, 0.0)
    return (float(lam[0]), float(ov[0])) if np.ndim(theta) == 0 else (lam, ov)


def rectangular_outlier(theta, c):
    """Closed form, W = X + theta u v^T (X = G/sqrt(m), n x m, c = n/m): (sigma, |<u~,u>|^2, |<v~,v>|^2).

    theta > c^(1/4): sigma = sqrt((1 + theta^2)(c + theta^2)) / theta,
    left = 1 - c (1 + theta^2) / (theta^2 (theta^2 + c)), right = 1 - (c + theta^2) / (theta^2 (theta^2 + 1));
    else sigma = 1 + sqrt(c) and overlaps 0 (BGN 2012 Sec. 3.1). theta > 0 (the sign goes into u or v).

    >>> [round(x, 12) for x in rectangular_outlier(2.0, 1.0)]
    [2.5, 0.75, 0.75]
    """
    t = _check_thetas(theta, "theta")
    if np.any(t < 0):
        raise ValueError(f"theta={theta!r} is not allowed: singular-value strengths must be > 0")
    c = _check_c(c)
    out = t > c ** 0.25
    t2 = t * t
    sig = np.where(out, np.sqrt((1 + t2) * (c + t2)) / t, 1 + np.sqrt(c))
    left = np.where(out, 1 - c * (1 + t2) / (t2 * (t2 + c)), 0.0)
    right = np.where(out, 1 - (c + t2) / (t2 * (t2 + 1)), 0.0)
    if np.ndim(theta) == 0:
        return float(sig[0]), float(left[0]), float(right[0])
    return sig, left, right


def wigner_outliers_t_matrix(thetas, g=semicircle_stieltjes, *, z_max: float = 1e3):
    """Outliers of X + sum_k theta_k u_k u_k^T by the T-matrix, M(z) = g(z) 1 with any bulk Stieltjes g.

    Searches (2, z_max) and (-z_max, -2) (the semicircle's edges). Returns (eigenvalues (k,), overlaps (k, r))
    with overlaps[i, j] = |<psi_i, u_j>|^2, eigenvalues ascending.

    >>> lam, ov = wigner_outliers_t_matrix([3.0, -1.5, 0.5])
    >>> np.round(lam, 10).tolist()
    [-2.1666666667, 3.3333333333]
    """
    t = _check_thetas(thetas)
    z_max = check_real("z_max", z_max, minimum=2, strict=True)
    theta, r = np.diag(t), t.size
    res = [t_matrix_outliers(lambda z: g(z) * np.eye(r), theta, iv) for iv in ((-z_max, -2.0), (2.0, z_max))]
    return np.concatenate([res[0][0], res[1][0]]), np.concatenate([res[0][1], res[1][1]]) ** 2


def rectangular_outliers_t_matrix(thetas, c, g_n=None, *, z_max: float = 1e3):
    """Outlier singular values of X + sum_k theta_k u_k v_k^T by the T-matrix of the Hermitisation.

    M(z) = diag(phi(z) 1_r, phi~(z) 1_r), phi(z) = z g_n(z^2), phi~(z) = z (c g_n(z^2) + (1 - c)/z^2),
    Theta = [[0, diag theta], [diag theta, 0]]; g_n: Stieltjes transform of X X^T (default: Marchenko-Pastur).
    Returns (sigmas (k,), left (k, r), right (k, r)) with left[i, j] = |<u~_i, u_j>|^2 = 2 (P^T psi)_j^2.

    >>> s, l, r = rectangular_outliers_t_matrix([2.0], 1.0)
    >>> np.round([s[0], l[0, 0], r[0, 0]], 9)
    array([2.5 , 0.75, 0.75])
    """
    t = _check_thetas(thetas)
    if np.any(t < 0):
        raise ValueError(f"thetas={thetas!r} is not allowed: singular-value strengths must be > 0")
    c = _check_c(c)
    z_max = check_real("z_max", z_max, minimum=1 + np.sqrt(c), strict=True)
    g_n = g_n or (lambda w: marchenko_pastur_stieltjes(w, c))
    r = t.size

    def M(z):
        gn = g_n(z * z)
        return np.diag(np.r_[np.full(r, z * gn), np.full(r, z * (c * gn + (1 - c) / (z * z)))])

    theta = np.block([[np.zeros((r, r)), np.diag(t)], [np.diag(t), np.zeros((r, r))]])
    z, comp = t_matrix_outliers(M, theta, (1 + np.sqrt(c), z_max))
    return z, 2 * comp[:, :r] ** 2, 2 * comp[:, r:] ** 2


def planted_wigner(n, thetas, *, rng):
    """Draw W = G_sym/sqrt(n) + U diag(theta) U^T (GOE background, U: (n, r) Haar-orthonormal). Returns (W, U).
    ``rng``: an integer seed >= 0 or a numpy Generator."""
    n = _check_int("n", n, 2)
    t = _check_thetas(thetas)
    if t.size > n:
        raise ValueError(f"thetas={thetas!r} is not allowed: at most n = {n} circuits")
    rng = np.random.default_rng(_check_seed("rng", rng))
    A = rng.standard_normal((n, n))
    U = np.linalg.qr(rng.standard_normal((n, t.size)))[0]
    return (A + A.T) / np.sqrt(2 * n) + (U * t) @ U.T, U


def planted_rectangular(n, m, thetas, *, rng):
    """Draw W = G/sqrt(m) + U diag(theta) V^T, G (n, m) iid N(0, 1), n <= m; U, V Haar-orthonormal. Returns (W, U, V).
    ``rng``: an integer seed >= 0 or a numpy Generator."""
    n, m = _check_int("n", n, 1), _check_int("m", m, 1)
    if n > m:
        raise ValueError(f"n={n}, m={m} is not allowed: need n <= m (c = n/m <= 1); transpose the matrix")
    t = _check_thetas(thetas)
    if t.size > n:
        raise ValueError(f"thetas={thetas!r} is not allowed: at most n = {n} circuits")
    rng = np.random.default_rng(_check_seed("rng", rng))
    G = rng.standard_normal((n, m))
    U = np.linalg.qr(rng.standard_normal((n, t.size)))[0]
    V = np.linalg.qr(rng.standard_normal((m, t.size)))[0]
    return G / np.sqrt(m) + (U * t) @ V.T, U, V


@limit_threads()  # one BLAS thread per pool: no oversubscription next to XLA
def simulate_wigner_outliers(n, thetas, n_draws, *, seed: int):
    """Top eigenvalues and overlaps over ``n_draws`` draws (numpy float64, eigh).

    Returns dict(seed, n, n_draws, dtype, eigenvalues (n_draws, r) — the r largest, descending —,
    overlaps (n_draws, r) = |<psi_k, u_k>|^2 with u_k sorted by decreasing theta). thetas > 0 (ValueError
    otherwise: a negative theta's outlier lies below the bulk). ``seed``: an integer >= 0.
    """
    t = _sorted_positive(thetas, "simulate_wigner_outliers")
    n_draws = _check_int("n_draws", n_draws, 1)
    order = np.argsort(-t)
    rng = np.random.default_rng(_check_int("seed", seed, 0))
    lam, ov = [], []
    for _ in range(n_draws):
        W, U = planted_wigner(n, t[order], rng=rng)
        w, V = np.linalg.eigh(W)
        top = V[:, ::-1][:, :t.size]
        lam.append(w[::-1][:t.size])
        ov.append(np.einsum("ik,ik->k", top, U) ** 2)
    return dict(seed=seed, n=n, n_draws=n_draws, dtype="float64", eigenvalues=np.array(lam), overlaps=np.array(ov))


@limit_threads()  # one BLAS thread per pool: no oversubscription next to XLA
def simulate_rectangular_outliers(n, m, thetas, n_draws, *, seed: int):
    """Top singular values and left/right overlaps over ``n_draws`` draws (eigh of W W^T, v~ = W^T u~ / sigma).

    Returns dict(seed, n, m, n_draws, dtype, singular_values (n_draws, r) descending, left, right (n_draws, r)),
    u_k, v_k sorted by decreasing theta. thetas > 0; ``seed``: an integer >= 0.
    """
    t = _sorted_positive(thetas, "simulate_rectangular_outliers")
    n_draws = _check_int("n_draws", n_draws, 1)
    order = np.argsort(-t)
    rng = np.random.default_rng(_check_int("seed", seed, 0))
    sv, left, right = [], [], []
    for _ in range(n_draws):
        W, U, V = planted_rectangular(n, m, t[order], rng=rng)
        w, L = np.linalg.eigh(W @ W.T)
        s = np.sqrt(w[::-1][:t.size])
        Lt = L[:, ::-1][:, :t.size]
        R = (W.T @ Lt) / s
        sv.append(s)
        left.append(np.einsum("ik,ik->k", Lt, U) ** 2)
        right.append(np.einsum("ik,ik->k", R, V) ** 2)
    return dict(seed=seed, n=n, m=m, n_draws=n_draws, dtype="float64", singular_values=np.array(sv),
                left=np.array(left), right=np.array(right))



def _batched(draws, key, n_draws, batch, *args):
    """Concatenate draws(keys, *args) over n_draws keys split from ``key``, ``batch`` keys at a time."""
    keys = jax.random.split(key, n_draws)
    outs = [draws(keys[i:i + batch], *args) for i in range(0, n_draws, batch)]
    return [np.concatenate([np.asarray(o[j]) for o in outs]) for j in range(len(outs[0]))]


@functools.partial(jax.jit, static_argnums=2)
def _wigner_draws(keys, t, n):
    def draw(k):
        ka, ku = jax.random.split(k)
        A = jax.random.normal(ka, (n, n), dtype=jnp.float64)
        U = jnp.linalg.qr(jax.random.normal(ku, (n, t.size), dtype=jnp.float64))[0]
        w, V = jnp.linalg.eigh((A + A.T) / np.sqrt(2 * n) + (U * t) @ U.T)
        top = V[:, ::-1][:, :t.size]
        return w[::-1][:t.size], jnp.einsum("ik,ik->k", top, U) ** 2
    return jax.vmap(draw)(keys)


@functools.partial(jax.jit, static_argnums=(2, 3))
def _rectangular_draws(keys, t, n, m):
    def draw(k):
        kg, ku, kv = jax.random.split(k, 3)
        U = jnp.linalg.qr(jax.random.normal(ku, (n, t.size), dtype=jnp.float64))[0]
        V = jnp.linalg.qr(jax.random.normal(kv, (m, t.size), dtype=jnp.float64))[0]
        W = jax.random.normal(kg, (n, m), dtype=jnp.float64) / np.sqrt(m) + (U * t) @ V.T
        w, L = jnp.linalg.eigh(W @ W.T)
        s = jnp.sqrt(w[::-1][:t.size])
        Lt = L[:, ::-1][:, :t.size]
        R = (W.T @ Lt) / s
        return s, jnp.einsum("ik,ik->k", Lt, U) ** 2, jnp.einsum("ik,ik->k", R, V) ** 2
    return jax.vmap(draw)(keys)


def simulate_wigner_outliers_jax(n, thetas, n_draws, *, key, batch: int = 8):
    """JAX version of :func:`simulate_wigner_outliers` (float64; jit + vmap over ``batch`` draws at a time;
    compiled once per (n, number of circuits, batch), so sweeps over theta reuse it).

    Draw: A ~ N(0, 1)^{n x n}, X = (A + A^T) / sqrt(2 n) (GOE), U = Q of the QR of an (n, r) Gaussian (Haar
    subspace; signs are irrelevant to the squared overlaps), W = X + U diag(theta) U^T, eigh(W).
    Returns the same dict as the numpy version (key instead of seed). Same key -> same result.
    """
    require_x64("sft.circuits.simulate_wigner_outliers_jax")
    n = _check_int("n", n, 2)
    t = -np.sort(-_sorted_positive(thetas, "simulate_wigner_outliers_jax"))
    n_draws, batch = _check_int("n_draws", n_draws, 1), _check_int("batch", batch, 1)
    key = check_key("key", key)
    if t.size > n:
        raise ValueError(f"thetas={thetas!r} is not allowed: at most n = {n} circuits")
    lam, ov = _batched(_wigner_draws, key, n_draws, batch, jnp.asarray(t), n)
    return dict(n=n, n_draws=n_draws, dtype="float64", eigenvalues=lam, overlaps=ov)


def simulate_rectangular_outliers_jax(n, m, thetas, n_draws, *, key, batch: int = 8):
    """JAX version of :func:`simulate_rectangular_outliers` (float64; jit + vmap over ``batch`` draws at a time).

    W = G / sqrt(m) + U diag(theta) V^T, n <= m; top singular triplets from eigh(W W^T), v~ = W^T u~ / sigma.
    Returns dict(n, m, n_draws, dtype, singular_values, left, right), each (n_draws, r), thetas descending.
    """
    require_x64("sft.circuits.simulate_rectangular_outliers_jax")
    n, m = _check_int("n", n, 1), _check_int("m", m, 1)
    if n > m:
        raise ValueError(f"n={n}, m={m} is not allowed: need n <= m (c = n/m <= 1); transpose the matrix")
    t = -np.sort(-_sorted_positive(thetas, "simulate_rectangular_outliers_jax"))
    n_draws, batch = _check_int("n_draws", n_draws, 1), _check_int("batch", batch, 1)
    key = check_key("key", key)
    if t.size > n:
        raise ValueError(f"thetas={thetas!r} is not allowed: at most n = {n} circuits")
    sv, left, right = _batched(_rectangular_draws, key, n_draws, batch, jnp.asarray(t), n, m)
    return dict(n=n, m=m, n_draws=n_draws, dtype="float64", singular_values=sv, left=left, right=right)
