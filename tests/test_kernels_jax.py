"""Kernels as JAX functions: jit, vmap and grad through sft.kernels.nngp / ntk / nngp_and_ntk and the
Gaussian expectations under them.

Derivatives are checked three ways: central finite differences of the plain (numpy) call, the
independent derivation of the arc-cosine kernel's derivative (sympy differentiation of the closed form),
and Price's theorem (dE[s s]/dc = E[s' s'], dE[s s]/dq1 = E[s'' s]/2) against 2-D quadrature and
Monte Carlo with an error bar. All in float64 on the CPU.

Finite differences: step h = 1e-5 max(1, |p|). Truncation error ~ h^2 |f'''| / 6 ~ 1e-10 |f|, rounding
~ eps |f| / h ~ 2e-11 |f|, plus the Mehler series' own 1e-13 (relative) divided by h ~ 1e-8: we ask for
relative agreement 1e-7 (the requirement is 1e-6).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import sympy as sp

from sft.conventions import Z_MAX
from sft.gaussian import pair_and_diag_expectations, polar_expectation
from sft.finite.vertex import single_input
from sft.kernels import chi_parallel, chi_perp, get_activation, kernel_map, nngp, nngp_and_ntk, ntk

FD_RTOL = 1e-7
X = np.random.default_rng(0).normal(size=(4, 3))
X2 = np.random.default_rng(1).normal(size=(3, 3))
KW = dict(depth=2, C_b=0.1)


def _fd(f, p, h_rel=1e-5):
    h = h_rel * max(1.0, abs(p))
    return (f(p + h) - f(p - h)) / (2 * h)


@pytest.mark.parametrize("act", ["relu", "tanh"])
def test_grad_in_hyperparameters_matches_finite_differences(act):
    """d(sum NTK)/dC_W (scalar) and d(sum NTK)/dC_b (per-layer array) vs central differences."""
    def f(cw, cb):
        return ntk(X, X2, depth=2, activation=act, C_W=cw, C_b=cb).sum()

    cb = np.array([0.1, 0.2, 0.05])
    g_w, g_b = jax.jit(jax.grad(f, argnums=(0, 1)))(1.3, cb)
    fd_w = _fd(lambda w: float(f(w, cb)), 1.3)
    fd_b = _fd(lambda b: float(f(1.3, np.array([0.1, b, 0.05]))), 0.2)
    assert g_b.shape == (3,)
    assert abs(g_w - fd_w) <= FD_RTOL * abs(g_w), (act, g_w, fd_w)
    assert abs(g_b[1] - fd_b) <= FD_RTOL * abs(g_b[1]), (act, g_b, fd_b)


@pytest.mark.parametrize("act", ["relu", "tanh"])
def test_grad_in_inputs_matches_finite_differences(act):
    """Symmetric call (diagonal included: rho = 1 exactly there) and cross call, gradient in x."""
    w = np.random.default_rng(2).normal(size=(4, 4))
    f_sym = lambda x: (w * ntk(x, activation=act, C_W=1.6, **KW)).sum()
    f_cross = lambda x: (w[:, :3] * nngp(x, X2, activation=act, C_W=1.6, **KW)).sum()
    grads = jax.jit(lambda x: (jax.grad(f_sym)(x), jax.grad(f_cross)(x)))(X)
    for f, g in zip((f_sym, f_cross), grads):
        g = np.asarray(g)
        assert np.all(np.isfinite(g))
        for i, j in ((0, 0), (2, 1)):
            e = np.zeros_like(X)
            e[i, j] = 1.0
            fd = _fd(lambda s: float(f(X + s * e)), 0.0)
            assert abs(g[i, j] - fd) <= FD_RTOL * np.abs(g).max(), (act, i, j, g[i, j], fd)


def test_jit_and_vmap_equal_the_plain_call():
    """jit: same numbers as the numpy path (closed form exactly up to rounding; the Mehler series
    through the host callback within its tolerance); vmap over C_W equals a loop."""
    for act in ("relu", "tanh"):
        plain = nngp_and_ntk(X, X2, activation=act, C_W=1.4, all_layers=True, **KW)
        jitted = jax.jit(lambda a, b: nngp_and_ntk(a, b, activation=act, C_W=1.4, all_layers=True, **KW))(X, X2)
        for p, j in zip(plain, jitted):
            assert isinstance(p, np.ndarray) and p.dtype == np.float64 and j.dtype == jnp.float64
            assert p.shape == j.shape == (3, 4, 3)
            np.testing.assert_allclose(j, p, rtol=1e-12, atol=1e-12 * np.abs(p).max())
    plain = nngp_and_ntk(X, activation="relu", C_W=1.4, all_layers=True, **KW)  # symmetric: packed triangle
    jitted = jax.jit(lambda a: nngp_and_ntk(a, activation="relu", C_W=1.4, all_layers=True, **KW))(X)
    for p, j in zip(plain, jitted):
        np.testing.assert_allclose(j, p, rtol=1e-13, atol=1e-14 * np.abs(p).max())
        np.testing.assert_array_equal(j, np.swapaxes(j, 1, 2))
    cws = np.array([1.0, 1.5, 2.0])
    batched = jax.jit(jax.vmap(lambda cw: nngp(X, activation="erf", C_W=cw, **KW)))(cws)
    loop = np.stack([nngp(X, activation="erf", C_W=cw, **KW) for cw in cws])
    np.testing.assert_allclose(batched, loop, rtol=1e-13)


def test_arc_cosine_derivative_matches_sympy_including_rho_to_one():
    """Custom JVP of the scale-invariant closed forms vs sympy's derivative of the same closed form
    (an independent derivation), at |rho| < 1, and its limits at rho = 1 and at q1 = 0."""
    q1, q2, c = sp.symbols("q1 q2 c", positive=True)
    A, B = sp.Rational(3, 4), sp.Rational(1, 4)  # a+ = 1, a- = 1/2
    th = sp.acos(c / sp.sqrt(q1 * q2))
    ss = A**2 * c + B**2 * 2 / sp.pi * (sp.sqrt(q1 * q2 - c**2) + (sp.pi / 2 - th) * c)
    dd = A**2 + B**2 * (1 - 2 * th / sp.pi)
    act = get_activation("scale_invariant", a_plus=1.0, a_minus=0.5)
    point = {q1: 1.3, q2: 0.7, c: 0.4}
    for k, expr in enumerate((ss, dd)):
        auto = jax.jit(jax.grad(lambda v: act.gauss_both(*v)[k]))(jnp.array([1.3, 0.7, 0.4]))
        exact = [float(sp.diff(expr, s).subs(point)) for s in (q1, q2, c)]
        np.testing.assert_allclose(auto, exact, rtol=1e-13)
    # rho = 1 (q1 = q2 = c = q): d ss = (A^2 + B^2) dc and no q-terms (their limit R/q -> 0); along the
    # diagonal dd is constant (A^2 + B^2) so its derivative there is 0
    near = {q1: 1, q2: 1, c: 1 - sp.Rational(1, 10**30)}  # the limit rho -> 1-, to 1e-15, in 60 digits
    limit_c = float(sp.diff(ss, c).evalf(60, subs=near))
    limit_q1 = float(sp.diff(ss, q1).evalf(60, subs=near))
    auto = jax.jit(jax.grad(lambda v: act.gauss_both(*v)[0]))(jnp.array([1.0, 1.0, 1.0]))
    np.testing.assert_allclose(auto, [limit_q1, limit_q1, limit_c], rtol=1e-14, atol=1e-15)
    diag = jax.jit(jax.grad(lambda q: act.gauss_both(q, q, q)[1]))(0.8)
    assert diag == 0.0 and np.isfinite(diag)
    # zero-norm input (C_b = 0): finite gradients in x and C_W, equal to the one-sided finite difference
    x = np.array([[0.0, 0.0], [0.6, 0.8], [1.0, -0.2]])
    g, gw = jax.jit(jax.grad(lambda x, cw: ntk(x, depth=2, activation="relu", C_W=cw, C_b=0.0).sum(),
                             argnums=(0, 1)))(x, 2.0)
    assert np.all(np.isfinite(g)) and np.isfinite(gw)
    f = lambda cw: float(ntk(x, depth=2, activation="relu", C_W=cw, C_b=0.0).sum())
    assert abs(gw - _fd(f, 2.0)) <= FD_RTOL * abs(gw)


def test_mehler_derivatives_are_prices_theorem_vs_quadrature_and_monte_carlo():
    """tanh at (q1, q2, c): autodiff of E[s s] in c and q1 vs E[s' s'] and E[s'' s]/2 by independent
    2-D polar quadrature, and the c-derivative also vs Monte Carlo (seed 0, 2e5 samples, |z| < Z_MAX)."""
    tanh = get_activation("tanh")
    q1, q2, c = 0.9, 1.7, 0.6

    def ess(v):
        return pair_and_diag_expectations(tanh, v[0][None], v[1][None], v[2][None, None], symmetric=False)[0][0, 0]

    g = jax.jit(jax.grad(ess))(jnp.array([q1, q2, c]))
    d1 = lambda z: 1 / np.cosh(z) ** 2
    d2 = lambda z: -2 * np.tanh(z) / np.cosh(z) ** 2
    quad_c = polar_expectation(d1, d1, q1, q2, c, n=400)
    quad_q1 = 0.5 * polar_expectation(d2, np.tanh, q1, q2, c, n=400)
    assert abs(g[2] - quad_c) < 1e-12 and abs(g[0] - quad_q1) < 1e-12, (g, quad_c, quad_q1)
    L = np.linalg.cholesky([[q1, c], [c, q2]])
    u, v = L @ np.random.default_rng(0).normal(size=(2, 200_000))
    samples = d1(u) * d1(v)
    z = (g[2] - samples.mean()) / (samples.std() / np.sqrt(samples.size))
    assert abs(z) < Z_MAX, z
    # second derivative (jacfwd of grad) in c: E[s'' s''] by quadrature
    h = jax.jit(jax.jacfwd(jax.grad(ess)))(jnp.array([q1, q2, c]))[2, 2]
    assert abs(h - polar_expectation(d2, d2, q1, q2, c, n=400)) < 1e-11


def test_bad_input_still_raises():
    """Plain calls keep their ValueErrors; flags are checked by type; traced shape errors are ValueErrors;
    x64 off is refused."""
    with pytest.raises(ValueError, match="all_layers='no'"):
        nngp(X, activation="relu", C_W=2.0, all_layers="no", **KW)
    with pytest.raises(ValueError, match="C_W"):
        nngp(X, activation="relu", C_W=-1.0, **KW)
    with pytest.raises(ValueError, match="C_W has shape"):
        jax.jit(lambda cw: nngp(X, activation="relu", C_W=cw, **KW))(jnp.ones(5))
    with pytest.raises(ValueError, match="feature dimension"):
        jax.jit(lambda x: nngp(x, X2[:, :2], activation="relu", C_W=2.0, **KW))(X)
    with jax.enable_x64(False), pytest.raises(RuntimeError, match="jax_enable_x64"):
        nngp(X, activation="relu", C_W=2.0, **KW)


@pytest.mark.parametrize("act", ["tanh", "erf"])
def test_chi_parallel_by_autodiff_equals_the_analytic_form(act):
    """C_W d(kernel_map)/dK by autodiff (vmapped over K) = chi_par(K) = C_W <u s s'>_K / K, which
    chi_parallel evaluates by its own quadrature (no Hermite series, no Price rule); chi_perp agrees
    between its traced and plain forms."""
    K = np.array([0.3, 1.0, 2.5])
    auto = jax.jit(jax.vmap(jax.grad(lambda k: kernel_map(k, activation=act, C_W=1.3, C_b=0.1))))(K)
    np.testing.assert_allclose(auto, chi_parallel(K, activation=act, C_W=1.3), rtol=1e-12)
    perp = jax.jit(lambda k: chi_perp(k, activation=act, C_W=1.3))(K)
    np.testing.assert_allclose(perp, chi_perp(K, activation=act, C_W=1.3), rtol=1e-12)


@pytest.mark.parametrize("act", ["tanh", "relu"])
def test_single_input_vertex_gradients_match_finite_differences(act):
    """d(V, G1 of the readout)/d(C_W, C_b) of the finite-width single-input recursion vs central
    differences of the plain call (relu: G1 = 0 identically, so only V is compared)."""
    def out(p):
        s = single_input(0.8, depth=3, activation=act, C_W=p[0], C_b=p[1])
        return jnp.stack([s.V[-1], s.G1[-1]])

    p0 = np.array([1.2, 0.1])
    jac = np.asarray(jax.jit(jax.jacfwd(out))(p0))
    for k in range(2):
        e = np.eye(2)[k]
        fd = _fd(lambda h: np.asarray(out(p0 + h * e)), 0.0)
        for m in range(2 if act == "tanh" else 1):
            assert abs(jac[m, k] - fd[m]) <= FD_RTOL * abs(jac[m, k]), (act, m, k, jac[m, k], fd[m])
