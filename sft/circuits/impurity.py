"""Exact impurity physics on a tight-binding ring, and the disorder-averaged propagator of a binary alloy.

Conventions. A ring of ``L`` sites, hopping ``t``, on-site energy ``eps0``:

    H0 = eps0 - t sum_i (|i><i+1| + |i+1><i|)   (indices mod L),   eps(k) = eps0 - 2 t cos k,
    G0(z) = (z - H0)^{-1},   z = E + i eta,  eta > 0  (retarded).

A Gaussian lattice field with covariance (m^2 + Delta)^{-1}, Delta the lattice Laplacian
(Delta phi)_i = 2 phi_i - phi_{i+1} - phi_{i-1}, is the same object at real z outside the band:
(m^2 + Delta)^{-1} = -G0(z = -(m^2 + 2)) with t = 1, eps0 = 0 (see :func:`gaussian_field_covariance`).

Point impurities V = sum_k V_k |r_k><r_k|. In the impurity subspace (n x n, n = number of impurities):

    T = (1 - V G0_imp)^{-1} V,    G = G0 + G0[:, r] T G0[r, :]            (Economou, ch. 4 and 5.3)

Binary alloy: each site independently has V_i = V with probability c, else 0. Single-site
approximations replace the random V_i by a local self-energy Sigma, so G_loc(z) = g(z - Sigma), with
g(z) = G0(z)_{ii} the clean local Green's function (Economou ch. 6; Elliott, Krumhansl & Leath,
Rev. Mod. Phys. 46, 465 (1974), section III):

    first Born:             Sigma = c V
    self-consistent Born:   Sigma = c V + c (1 - c) V^2 g(z - Sigma)
    average T-matrix (ATA): Sigma = <t> / (1 + <t> g(z)),   <t> = c V / (1 - V g(z))
    CPA (Soven, Phys. Rev. 156, 809 (1967)):  < (V_i - Sigma) / (1 - (V_i - Sigma) g(z - Sigma)) > = 0.

ATA is the exact single-impurity T-matrix resummed to first order in c; CPA is exact to O(c), and at
c = 0 and c = 1; Born theories expand t in V and fail for dilute strong impurities.
Checks (tests/test_impurity.py, figure ``impurity_alloy``): the T-matrix against exact inversion; alloy
approximations against exact disorder Monte Carlo on a ring. Dilute strong impurities (c = 0.02, V = 4t):
ATA and CPA within |z| < 2.7, Born and SCBA off by 5-130 sigma; ATA and CPA are exact to O(c) but miss 1-D
impurity-pair and impurity-band structure at larger c (8-110 sigma at c = 0.05).
"""
from __future__ import annotations

import numbers

import jax
import jax.numpy as jnp
import numpy as np

from ..conventions import check_array, check_int, check_key, check_real, require_x64, solve_checked
from ..threads import limit_threads

__all__ = ["ring_hamiltonian", "ring_green", "chain_green", "gaussian_field_covariance",
           "exact_green", "t_matrix", "impurity_green", "alloy_self_energy", "alloy_local_green",
           "cpa_residual", "alloy_local_green_mc"]


def _complex_scalar(name, z):
    """A finite complex scalar (Python/numpy number or 0-d array), else ValueError naming ``name``."""
    v = z.item() if isinstance(z, np.ndarray) and z.ndim == 0 else z
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Number):
        raise ValueError(f"{name}={z!r} is not allowed: {name} must be one finite (complex) number")
    v = complex(v)
    if not (np.isfinite(v.real) and np.isfinite(v.imag)):
        raise ValueError(f"{name}={z!r} is not allowed: {name} must be finite")
    return v


def _check_z(z):
    z = _complex_scalar("z", z)
    if not z.imag > 0:
        raise ValueError(f"z={z!r} is not allowed: z = E + i eta needs finite E and eta > 0 (retarded)")
    return z


def _check_L(L):
    return check_int("L", L, 1)


def _check_c(c):
    try:
        return check_real("c", c, minimum=0, maximum=1)
    except ValueError:
        raise ValueError(f"c={c!r} is not allowed: the concentration must satisfy 0 <= c <= 1") from None


def _check_t(t):
    t_ok = check_real("t", t)
    if t_ok == 0:
        raise ValueError(f"t={t!r} is not allowed: the hopping must be finite and nonzero")
    return t_ok


def _check_eps0(eps0):
    return check_real("eps0", eps0)


def ring_hamiltonian(L, *, t=1.0, eps0=0.0):
    """Dense (L, L) clean ring Hamiltonian H0 = eps0 - t (S + S^T), S the cyclic shift (float64).

    Written as a sum of circulants, so L = 1, 2 keep the Bloch spectrum eps0 - 2 t cos(2 pi k / L).
    """
    L, t, eps0 = _check_L(L), _check_t(t), _check_eps0(eps0)
    S = np.roll(np.eye(L), 1, axis=1)
    return eps0 * np.eye(L) - t * (S + S.T)


def ring_green(z, L, *, t=1.0, eps0=0.0):
    """Clean ring propagator G0(z)_{i, i+r} for r = 0 .. L-1, shape (L,), complex128.

    Bloch sum (exact for the finite ring): G0(r) = (1/L) sum_k e^{i k r} / (z - eps0 + 2 t cos k),
    k = 2 pi n / L; computed by one FFT.
    """
    z, L, t, eps0 = _check_z(z), _check_L(L), _check_t(t), _check_eps0(eps0)
    return _ring_green(z, L, t, eps0)


def _ring_green(z, L, t, eps0):
    k = 2 * np.pi * np.arange(L) / L
    return np.fft.ifft(1.0 / (z - eps0 + 2 * t * np.cos(k)))


def chain_green(z, r, *, t=1.0, eps0=0.0):
    """Infinite-chain propagator G0(z; r) = rho^{|r|} / (2 tau sqrt(u^2 - 1)), tau = -t, u = (z - eps0)/(2 tau),

    rho = u - sqrt(u^2 - 1) with the branch |rho| < 1 (Economou eq. (5.34)). Inside the band
    (|E - eps0| < 2|t|, eta -> 0+) this is G0(r) = -i e^{i q |r|} / (2 |t| sin q) with
    E - eps0 = -2 t cos q, 0 < q < pi. ``r``: integer array of any shape; returns complex128 of that shape.
    """
    z, t, eps0 = _check_z(z), _check_t(t), _check_eps0(eps0)
    r = np.asarray(r)
    if not np.issubdtype(r.dtype, np.integer):
        raise ValueError(f"r={r!r} is not allowed: site separations must be integers")
    tau = -t
    u = (z - eps0) / (2 * tau)
    s = np.sqrt(u - 1) * np.sqrt(u + 1)
    if abs(u - s) > 1:
        s = -s
    return (u - s) ** np.abs(r) / (2 * tau * s)


def gaussian_field_covariance(L, mass):
    """Covariance (m^2 + Delta)^{-1}_{i, i+r}, r = 0 .. L-1, of the massive Gaussian field on a ring (float64).

    Equals -G0(z = -(m^2 + 2)) for t = 1, eps0 = 0 (real z below the band), by the Bloch sum
    C(r) = (1/L) sum_k e^{i k r} / (m^2 + 2 - 2 cos k).
    """
    L = _check_L(L)
    if not (isinstance(mass, numbers.Real) and mass > 0 and np.isfinite(mass)):
        raise ValueError(f"mass={mass!r} is not allowed: the mass must be finite and > 0")
    return -_ring_green(-(mass ** 2 + 2.0), L, 1.0, 0.0).real


def exact_green(H, z):
    """G = (z - H)^{-1} of a dense (L, L) Hamiltonian; returns (G, residual), residual = max |(z - H) G - 1|.

    Hermitian H (max |H - H^dagger| <= 10 L eps max |H|, real symmetric or complex): eigendecomposition
    H = U diag(lam) U^dagger, G = U diag(1 / (z - lam)) U^dagger, backward stable and ||G|| <= 1/Im z.
    (LU with partial pivoting is not: on a ring, z - H is cyclic banded and its fill-in grows like
    e^{eta L / v}; for L = 2000 with flux it returned G off by O(1), residual 1e6, with no error.)
    General H: :func:`sft.conventions.solve_checked` (LU, redone by Householder QR if LU's normwise
    backward error exceeds 10 L eps; ``numpy.linalg.LinAlgError``, a ValueError, if QR's does too). The returned residual
    is also checked: ``LinAlgError`` if max |(z - H) G - 1| exceeds 10 L eps (|z| + max |H|) max |G|.

    >>> G, res = exact_green(ring_hamiltonian(4), 0.5j)
    >>> bool(np.allclose(G[0], ring_green(0.5j, 4))), res < 1e-14
    (True, True)
    """
    z = _check_z(z)
    H = np.asarray(H)
    if H.ndim != 2 or H.shape[0] != H.shape[1] or H.shape[0] < 1:
        raise ValueError(f"H has shape {H.shape}: it must be square (L, L) with L >= 1")
    if not np.all(np.isfinite(H)):
        raise ValueError("H contains NaN or inf: the Hamiltonian must be finite")
    n, eye = H.shape[0], np.eye(H.shape[0])
    A = z * eye - H
    scale = np.max(np.abs(H))
    if np.max(np.abs(H - H.conj().T)) <= 10 * n * np.finfo(np.float64).eps * scale:  # Hermitian to rounding
        lam, U = np.linalg.eigh(0.5 * (H + H.conj().T))
        G = (U / (z - lam)) @ U.conj().T
    else:
        G = solve_checked("z - H", A, eye.astype(complex))
    res = float(np.max(np.abs(A @ G - eye)))
    limit = 10 * n * np.finfo(np.float64).eps * (abs(z) + scale) * max(float(np.max(np.abs(G))), 1.0)
    if not res <= limit:
        raise np.linalg.LinAlgError(f"exact_green: residual max |(z - H) G - 1| = {res:.3g} exceeds "
                                    f"{limit:.3g} (10 L eps (|z| + max|H|) max|G|); G is not accurate")
    return G, res


def t_matrix(strengths, G0_imp):
    """T = (1 - V G0_imp)^{-1} V in the impurity subspace, V = diag(strengths), by a linear solve.

    ``strengths`` (n,), ``G0_imp`` (n, n) = G0[r_a, r_b]. Single impurity: T = V / (1 - V G0(0)).
    """
    V = check_array("strengths", strengths, ndim=1)
    G0_imp = check_array("G0_imp", G0_imp, ndim=2, dtype=np.complex128)
    if G0_imp.shape != (V.size, V.size):
        raise ValueError(f"G0_imp has shape {G0_imp.shape}: it must be ({V.size}, {V.size}), one row per impurity")
    return solve_checked("1 - V G0_imp", np.eye(V.size) - V[:, None] * G0_imp, np.diag(V).astype(complex))


def impurity_green(z, L, sites, strengths, *, t=1.0, eps0=0.0):
    """Full (L, L) propagator of the ring with point impurities, G = G0 + G0[:, r] T G0[r, :].

    ``sites``: distinct integers in [0, L); ``strengths``: same length, finite. Costs O(L^2 + n^3);
    G0 is the circulant built from :func:`ring_green`.
    """
    z, L, t, eps0 = _check_z(z), _check_L(L), _check_t(t), _check_eps0(eps0)
    r = np.asarray(sites)
    if r.ndim != 1 or not np.issubdtype(r.dtype, np.integer) or np.any((r < 0) | (r >= L)) \
            or len(set(r.tolist())) != r.size:
        raise ValueError(f"sites={sites!r} is not allowed: give distinct integers in [0, {L})")
    V = check_array("strengths", strengths, min_size=0)
    if V.shape != r.shape:
        raise ValueError(f"strengths has shape {V.shape} but sites has shape {r.shape}: one strength per site")
    g = _ring_green(z, L, t, eps0)
    idx = np.arange(L)
    G0 = g[(idx[None, :] - idx[:, None]) % L]
    return G0 + G0[:, r] @ t_matrix(V, G0[np.ix_(r, r)]) @ G0[r, :]


def _g_clean(L, t, eps0):
    """Local clean Green's function g(z) = G0(z)_{ii}: the ring's if L is an int, the infinite chain's if None."""
    if L is None:
        return lambda w: chain_green(w, 0, t=t, eps0=eps0)[()]
    return lambda w: _ring_green(w, L, t, eps0)[0]


def _check_alloy(z, c, V, L, t, eps0=0.0):
    z, c, t = _check_z(z), _check_c(c), _check_t(t)
    V = check_real("V", V)
    _check_eps0(eps0)
    if L is not None:
        _check_L(L)
    return z, c, V, t


def cpa_residual(sigma, z, c, V, *, L=None, t=1.0, eps0=0.0):
    """Soven's single-site condition <t_i> = c t_V + (1 - c) t_0, t_v = (v - Sigma)/(1 - (v - Sigma) g(z - Sigma)).

    Zero at the CPA self-energy. ``L=None``: infinite chain; an integer: the ring of L sites.
    """
    z, c, V, t = _check_alloy(z, c, V, L, t, eps0)
    sigma = _complex_scalar("sigma", sigma)
    gb = _g_clean(L, t, eps0)(z - sigma)
    tv = lambda v: (v - sigma) / (1 - (v - sigma) * gb)
    return c * tv(V) + (1 - c) * tv(0.0)


def alloy_self_energy(z, c, V, *, method, L=None, t=1.0, eps0=0.0, damping=0.5, tol=1e-12, max_iter=10_000):
    """Local self-energy Sigma(z) of the binary alloy (V_i = V w.p. c, else 0) by ``method``:

    "born":  Sigma = c V
    "scba":  Sigma = c V + c (1 - c) V^2 g(z - Sigma)        (damped fixed-point iteration)
    "ata":   Sigma = <t> / (1 + <t> g(z)),  <t> = c V / (1 - V g(z))   (EKL 1974 eq. (3.19))
    "cpa":   <(V_i - Sigma)/(1 - (V_i - Sigma) g(z - Sigma))> = 0   (Soven 1967), iterated as
             cavity  G_c^{-1} = 1/g(z - Sigma) + Sigma,  Sigma_new = G_c^{-1} - 1/<1/(G_c^{-1} - V_i)>,
             Sigma <- (1 - damping) Sigma + damping Sigma_new, until |Sigma_new - Sigma| < tol.

    Self-consistent methods raise RuntimeError if not converged in ``max_iter`` steps.
    ``L=None``: g is the infinite chain's (:func:`chain_green`); an integer: the ring's (:func:`ring_green`).
    """
    z, c, V, t = _check_alloy(z, c, V, L, t, eps0)
    damping = check_real("damping", damping, minimum=0, maximum=1)
    if damping == 0:
        raise ValueError(f"damping={damping!r} is not allowed: need 0 < damping <= 1")
    tol = check_real("tol", tol, minimum=0, strict=True)
    max_iter = check_int("max_iter", max_iter, 1)
    g = _g_clean(L, t, eps0)
    if method == "born":
        return complex(c * V)
    if method == "ata":
        tav = c * V / (1 - V * g(z))
        return complex(tav / (1 + tav * g(z)))
    if method == "scba":
        step = lambda s: c * V + c * (1 - c) * V ** 2 * g(z - s)
    elif method == "cpa":
        def step(s):
            gc_inv = 1 / g(z - s) + s
            return gc_inv - 1 / (c / (gc_inv - V) + (1 - c) / gc_inv)
    else:
        raise ValueError(f"method={method!r} is not allowed: choose 'born', 'scba', 'ata' or 'cpa'")
    s = complex(c * V)
    for _ in range(max_iter):
        new = step(s)
        if abs(new - s) < tol:
            return complex(new)
        s = (1 - damping) * s + damping * new
    raise RuntimeError(f"{method} self-energy did not converge in {max_iter} iterations at z={z}, c={c}, V={V}; "
                       "lower damping or raise max_iter")


def alloy_local_green(z, c, V, *, method, L=None, t=1.0, eps0=0.0):
    """Disorder-averaged local Green's function G_loc(z) = g(z - Sigma(z)), Sigma from :func:`alloy_self_energy`.

    The local density of states is -Im G_loc(E + i eta) / pi.
    """
    sigma = alloy_self_energy(z, c, V, method=method, L=L, t=t, eps0=eps0)
    return complex(_g_clean(L, t, eps0)(complex(z) - sigma))


@jax.jit
def _local_green_batch(H, zs):
    lam, U = jnp.linalg.eigh(H)                                   # (R, L), (R, L, L)
    w = U ** 2                                                    # w[r, i, n] = U_in^2
    return jnp.einsum("rin,rzn->rzi", w, 1.0 / (zs[None, :, None] - lam[:, None, :]))   # (R, nz, L)


@limit_threads()  # one BLAS thread per pool: no oversubscription next to XLA
def alloy_local_green_mc(zs, c, V, *, L, n_real, key, t=1.0, eps0=0.0):
    """Monte Carlo disorder average of the exact local Green's function on a ring of L sites.

    Realization r: V_i ~ V * Bernoulli(c) i.i.d. (jax.random.bernoulli with ``key``), H = H0 + diag(V_i),
    G_ii(z) = sum_n U_in^2 / (z - lambda_n) from one symmetric eigendecomposition (exact, no inverse).
    Returns (mean, stderr), each complex (nz,): mean over realizations of the site-averaged G_ii, and the
    standard error over the n_real independent realizations (separately for the real and imaginary parts:
    stderr = se(Re) + i se(Im)).
    """
    require_x64("sft.circuits.alloy_local_green_mc")
    zs = np.atleast_1d(check_array("zs", zs, ndim=(0, 1), dtype=np.complex128))
    if not np.all(zs.imag > 0):
        raise ValueError(f"zs={zs!r} is not allowed: every z = E + i eta needs eta > 0 (retarded)")
    L, c, t = _check_L(L), _check_c(c), _check_t(t)
    V, eps0, key = check_real("V", V), _check_eps0(eps0), check_key("key", key)
    if isinstance(n_real, bool) or not isinstance(n_real, numbers.Integral) or n_real < 2:
        raise ValueError(f"n_real={n_real!r} is not allowed: need an integer >= 2 for an error bar")
    occ = jax.random.bernoulli(key, c, (n_real, L)).astype(jnp.float64)
    H = jnp.asarray(ring_hamiltonian(L, t=t, eps0=eps0))[None] + V * jax.vmap(jnp.diag)(occ)
    per_real = np.asarray(_local_green_batch(H, jnp.asarray(zs))).mean(axis=2)     # (R, nz)
    se = lambda a: a.std(axis=0, ddof=1) / np.sqrt(n_real)
    return per_real.mean(axis=0), se(per_real.real) + 1j * se(per_real.imag)
