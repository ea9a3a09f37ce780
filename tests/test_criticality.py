"""Tests of sft.kernels.criticality against closed forms, independent quadrature (mpmath) and asymptotics.

Independent values: Cho-Saul / Williams closed forms in sft.kernels.activations (differentiated by finite
differences here), hand/sympy-derived results in derivations/criticality_exponents.py (a1, a2, the
ReLU correlation coefficient 9 pi^2/2, GELU K* = (3 + sqrt 17)/2), and mpmath quadrature at 30 digits.
Tolerances: sft.gaussian.expectations's quadrature is good to ~1e-12 relative (measured: 1.5e-14 for <sigma^2>,
up to 8e-12 for <sigma'^2> of tanh at K = 100, where jax's tanh' = 1 - tanh^2 cancels).
"""
import math

import jax
import jax.numpy as jnp
import mpmath as mp
import numpy as np
import pytest

import sft  # noqa: F401  (enables float64)
from sft.kernels import criticality as cr
from sft.kernels import get_activation, scale_invariant
from sft.gaussian import gaussian_expectation

QUAD_RTOL = 1e-11
KS = np.array([0.0, 1e-6, 0.05, 0.5, 1.0, 3.0, 10.0])


def mp_gauss(f, K, dps=30):
    """<f(u)>_K, u ~ N(0, K), by mpmath quadrature (independent of sft.gaussian.expectations)."""
    with mp.workdps(dps):
        s = mp.sqrt(mp.mpf(K))
        val = mp.quad(lambda z: f(s * z) * mp.exp(-z * z / 2), [-mp.inf, -6, 0, 6, mp.inf])
        return val / mp.sqrt(2 * mp.pi)


def richardson_derivative(fun, K, h):
    """f'(K) by Richardson-extrapolated central differences (error O(h^4))."""
    d1 = (fun(K + h) - fun(K - h)) / (2 * h)
    d2 = (fun(K + 2 * h) - fun(K - 2 * h)) / (4 * h)
    return (4 * d1 - d2) / 3


# ----------------------------------------------------------------------------- susceptibilities
@pytest.mark.parametrize("slopes", [(1.0, 0.0), (1.0, 0.1), (1.0, -0.5), (2.0, 0.3)])
def test_scale_invariant_chi_equals_cw_a2_by_finite_differences_of_cho_saul(slopes):
    act = scale_invariant(*slopes)
    C_W = 1.7
    K = np.array([0.3, 1.0, 4.0])
    g = lambda k: act.gauss_ss(k, k, k)  # closed-form <sigma^2>_K (Cho & Saul)
    expected_par = C_W * richardson_derivative(g, K, 1e-3)
    expected_perp = C_W * act.gauss_dd(K, K, K)
    np.testing.assert_allclose(cr.chi_parallel(K, activation=act, C_W=C_W), expected_par, rtol=1e-10)
    np.testing.assert_allclose(cr.chi_perp(K, activation=act, C_W=C_W), expected_perp, rtol=1e-12)


def test_relu_chi_is_half_cw():
    K = np.array([0.0, 0.5, 2.0])
    np.testing.assert_allclose(cr.chi_parallel(K, activation="relu", C_W=3.0), 1.5, rtol=1e-15)
    np.testing.assert_allclose(cr.chi_perp(K, activation="relu", C_W=3.0), 1.5, rtol=1e-15)


def test_erf_chi_closed_forms():
    # derivations/criticality_exponents.py item 4, from <erf^2>_K = (2/pi) arcsin(2K/(1+2K))
    C_W = 1.3
    par = C_W * 4 / (np.pi * (1 + 2 * KS) * np.sqrt(1 + 4 * KS))
    perp = C_W * (4 / np.pi) / np.sqrt(1 + 4 * KS)
    np.testing.assert_allclose(cr.chi_parallel(KS, activation="erf", C_W=C_W), par, rtol=QUAD_RTOL)
    np.testing.assert_allclose(cr.chi_perp(KS, activation="erf", C_W=C_W), perp, rtol=QUAD_RTOL)


def test_sin_chi_closed_forms():
    # <sin^2>_K = (1 - e^{-2K})/2  =>  chi_par = C_W e^{-2K};  <cos^2>_K = (1 + e^{-2K})/2.
    # chi_par(K = 10) = 0.9 e^{-20} comes from cancellations in an O(1) integrand: absolute error ~ 1e-11 C_W.
    np.testing.assert_allclose(cr.chi_parallel(KS, activation="sin", C_W=0.9), 0.9 * np.exp(-2 * KS),
                               rtol=QUAD_RTOL, atol=QUAD_RTOL * 0.9)
    np.testing.assert_allclose(cr.chi_perp(KS, activation="sin", C_W=0.9), 0.9 * (1 + np.exp(-2 * KS)) / 2,
                               rtol=QUAD_RTOL)


@pytest.mark.parametrize("activation", ["tanh", "swish", "gelu", "sigmoid", "softplus",
                                        lambda z: jnp.tanh(z) + 0.3 * jnp.tanh(z) ** 2])
def test_chi_parallel_is_derivative_of_the_recursion_map(activation):
    K = np.array([0.2, 1.0, 5.0])
    fd = richardson_derivative(lambda k: cr.kernel_map(k, activation=activation, C_W=1.4, C_b=0.2), K, 1e-3)
    # O(h^4) truncation ~1e-12 and roundoff ~1e-16/h ~ 1e-13
    np.testing.assert_allclose(cr.chi_parallel(K, activation=activation, C_W=1.4), fd, rtol=1e-9)


@pytest.mark.parametrize("name", ["tanh", "gelu", "swish"])
def test_chi_parallel_integration_by_parts_forms_agree(name):
    """C_W <sigma^2 (u^2 - K)>/(2K^2) and C_W <sigma'^2 + sigma sigma''> (autodiff) vs the library's form."""
    act = get_activation(name)
    K = np.array([0.1, 1.0, 4.0])
    ibp2 = gaussian_expectation(lambda u: act.fn(u) ** 2 * (u * u - K[:, None]), K) / (2 * K ** 2)
    d2 = jnp.vectorize(jax.grad(jax.grad(act.fn)))
    second = gaussian_expectation(lambda u: act.derivative(u) ** 2 + act.fn(u) * d2(u), K)
    got = cr.chi_parallel(K, activation=act, C_W=1.0)
    np.testing.assert_allclose(got, ibp2, rtol=1e-10)
    np.testing.assert_allclose(got, second, rtol=1e-10)


@pytest.mark.parametrize("name,K", [("tanh", 2.0), ("swish", 14.0), ("gelu", 0.3)])
def test_chi_against_mpmath(name, K):
    f = {"tanh": (mp.tanh, lambda z: mp.sech(z) ** 2),
         "swish": (lambda z: z / (1 + mp.exp(-z)),
                   lambda z: (1 + mp.exp(-z) + z * mp.exp(-z)) / (1 + mp.exp(-z)) ** 2),
         "gelu": (lambda z: z * mp.ncdf(z), lambda z: mp.ncdf(z) + z * mp.npdf(z))}[name]
    par = float(mp_gauss(lambda u: u * f[0](u) * f[1](u), K) / K)
    perp = float(mp_gauss(lambda u: f[1](u) ** 2, K))
    assert cr.chi_parallel(K, activation=name, C_W=1.0) == pytest.approx(par, rel=QUAD_RTOL)
    assert cr.chi_perp(K, activation=name, C_W=1.0) == pytest.approx(perp, rel=QUAD_RTOL)


def test_chi_parallel_small_K_matches_series():
    # tanh, C_W = 1: chi_par = d/dK (K - 2K^2 + 17/3 K^3) = 1 - 4K + 17 K^2 (derivation item 2)
    K = np.array([0.0, 1e-10, 1e-8, 1e-6, 1e-4])
    np.testing.assert_allclose(cr.chi_parallel(K, activation="tanh", C_W=1.0), 1 - 4 * K + 17 * K ** 2,
                               rtol=1e-10, atol=0)


# ----------------------------------------------------------------------------- universality classes
@pytest.mark.parametrize("activation,slopes", [("relu", (1.0, 0.0)), ("abs", (1.0, -1.0)), ("linear", (1.0, 1.0)),
                                               (get_activation("leaky_relu", slope=0.1), (1.0, 0.1)),
                                               (scale_invariant(1.5, -0.25), (1.5, -0.25)),
                                               (lambda z: jnp.maximum(z, 0.0), (1.0, 0.0))])
def test_scale_invariant_criticality(activation, slopes):
    c = cr.critical_initialization(activation)
    assert c.universality_class == "scale-invariant"
    assert c.C_b == 0.0
    assert c.C_W == pytest.approx(2.0 / (slopes[0] ** 2 + slopes[1] ** 2), rel=1e-15)
    fps = cr.fixed_points(activation=activation, C_W=c.C_W, C_b=0.0)
    assert len(fps) == 1 and fps[0].line and fps[0].stability == "marginal"


def test_relu_critical_values():
    c = cr.critical_initialization("relu")
    assert (c.C_b, c.C_W) == (0.0, 2.0)


@pytest.mark.parametrize("name,C_W,a1", [("tanh", 1.0, -2.0), ("erf", np.pi / 4, -2.0), ("sin", 1.0, -1.0)])
def test_k0_class(name, C_W, a1):
    # tanh = z - z^3/3: sigma_1 = 1, sigma_3 = -2; erf = (2/sqrt pi)(z - z^3/3): sigma_1 = 2/sqrt pi,
    # sigma_3 = -4/sqrt pi; sin: sigma_1 = 1, sigma_3 = -1; a1 = sigma_3/sigma_1 + (3/4)(sigma_2/sigma_1)^2.
    c = cr.critical_initialization(name)
    assert c.universality_class == "K*=0" and cr.universality_class(name) == "K*=0"
    assert (c.C_b, c.K_star) == (0.0, 0.0)
    assert c.C_W == pytest.approx(C_W, rel=1e-15)
    assert c.a1 == pytest.approx(a1, rel=1e-13)
    assert cr.chi_parallel(0.0, activation=name, C_W=c.C_W) == pytest.approx(1.0, rel=1e-15)
    assert cr.chi_perp(0.0, activation=name, C_W=c.C_W) == pytest.approx(1.0, rel=1e-12)


def test_k0_class_user_function_a1_matches_pdlt_formula():
    # sigma = tanh z + 0.3 tanh^2 z: sigma_1 = 1, sigma_2 = 0.6, sigma_3 = -2 -> a1 = -2 + 0.75 * 0.36 = -1.73
    f = lambda z: jnp.tanh(z) + 0.3 * jnp.tanh(z) ** 2
    s = cr.taylor_coefficients(f, order=3)
    np.testing.assert_allclose(s, [0.0, 1.0, 0.6, -2.0], atol=1e-14)
    c = cr.critical_initialization(f)
    assert c.universality_class == "K*=0"
    assert c.a1 == pytest.approx(-1.73, rel=1e-13)
    assert c.a1 == pytest.approx(s[3] / s[1] + 0.75 * (s[2] / s[1]) ** 2, rel=1e-13)


@pytest.mark.parametrize("name", ["sigmoid", "softplus", "cos"])
def test_no_criticality_when_sigma0_nonzero_and_no_nontrivial_point(name):
    # sigmoid = 1/2 + tanh(z/2)/2: <sigma sigma''> = <t t''> < 0 (t = tanh(z/2)/2); softplus: sigma, sigma'' > 0;
    # cos: sigma sigma'' = -cos^2 <= 0. So chi_par != chi_perp at every K > 0.
    c = cr.critical_initialization(name)
    assert c.universality_class == "none"
    assert "sigma(0)" in c.reason and math.isnan(c.C_W)
    K = np.geomspace(1e-3, 100, 30)
    diff = cr.chi_parallel(K, activation=name, C_W=1.0) - cr.chi_perp(K, activation=name, C_W=1.0)
    assert np.all(diff < 0) or np.all(diff > 0)


def test_gelu_nontrivial_critical_point_exact():
    # derivations item 5: <sigma sigma''>_K = 0 at K* = (3 + sqrt 17)/2; C_W, C_b by mpmath at that K*.
    c = cr.critical_initialization("gelu")
    assert c.universality_class == "K*>0"
    K = (3 + math.sqrt(17)) / 2
    # quadrature error ~1e-13 in <sigma sigma''>, divided by its slope at K*, moves K* by ~1e-11
    assert c.K_star == pytest.approx(K, rel=1e-9)
    s = lambda z: z * mp.ncdf(z)
    ds = lambda z: mp.ncdf(z) + z * mp.npdf(z)
    C_W = 1 / mp_gauss(lambda u: ds(u) ** 2, K)
    C_b = K - C_W * mp_gauss(lambda u: s(u) ** 2, K)
    assert c.C_W == pytest.approx(float(C_W), rel=1e-9)
    assert c.C_b == pytest.approx(float(C_b), rel=1e-9)


def test_swish_nontrivial_critical_point_defining_equations():
    # PDLT sec. 5.3 reports a K* > 0 critical point for SWISH; we check its defining equations by mpmath.
    c = cr.critical_initialization("swish")
    assert c.universality_class == "K*>0" and c.C_b > 0 and c.K_star > 0
    sg = lambda z: 1 / (1 + mp.exp(-z))
    s = lambda z: z * sg(z)
    ds = lambda z: sg(z) * (1 + z * (1 - sg(z)))
    K = c.K_star
    g = mp_gauss(lambda u: s(u) ** 2, K)
    dg = mp_gauss(lambda u: u * s(u) * ds(u), K) / K
    dd = mp_gauss(lambda u: ds(u) ** 2, K)
    assert float(c.C_b + c.C_W * g) == pytest.approx(K, rel=1e-11)       # fixed point
    assert float(c.C_W * dd) == pytest.approx(1.0, rel=1e-11)            # chi_perp = 1
    assert float(c.C_W * dg) == pytest.approx(1.0, rel=1e-10)            # chi_par = 1
    fps = cr.fixed_points(activation="swish", C_W=c.C_W, C_b=c.C_b)
    assert any(abs(p.K - K) < 1e-6 * K and p.stability == "marginal" for p in fps)


# ----------------------------------------------------------------------------- fixed points
def test_fixed_points_relu_linear_map():
    # K' = 0.1 + 0.75 K  =>  K* = 0.4, chi_par = 0.75
    (p,) = cr.fixed_points(activation="relu", C_W=1.5, C_b=0.1)
    assert p.K == pytest.approx(0.4, rel=1e-15) and p.stability == "stable"
    assert cr.fixed_points(activation="relu", C_W=2.5, C_b=0.1) == []  # K* = 0.1/(1 - 1.25) < 0


def test_fixed_points_tanh_phases():
    (p,) = cr.fixed_points(activation="tanh", C_W=0.8, C_b=0.0)
    assert p.K == 0.0 and p.stability == "stable" and p.chi_parallel == pytest.approx(0.8, rel=1e-15)
    (p,) = cr.fixed_points(activation="tanh", C_W=1.0, C_b=0.0)
    assert p.K == 0.0 and p.stability == "marginal"
    p0, p1 = cr.fixed_points(activation="tanh", C_W=1.5, C_b=0.0)
    assert p0.K == 0.0 and p0.stability == "unstable"
    assert p1.stability == "stable" and p1.K > 0
    # independent: 1.5 <tanh^2>_{K*} = K* by mpmath
    assert float(1.5 * mp_gauss(lambda u: mp.tanh(u) ** 2, p1.K)) == pytest.approx(p1.K, rel=1e-11)


def test_fixed_points_erf_against_closed_form_root():
    from scipy.optimize import brentq
    C_W, C_b = 1.0, 0.1
    F = lambda K: C_b + C_W * (2 / np.pi) * np.arcsin(2 * K / (1 + 2 * K)) - K
    K_exact = brentq(F, 1e-6, 10, xtol=1e-15)
    (p,) = cr.fixed_points(activation="erf", C_W=C_W, C_b=C_b)
    assert p.K == pytest.approx(K_exact, rel=1e-11)
    assert p.chi_parallel == pytest.approx(C_W * 4 / (np.pi * (1 + 2 * K_exact) * np.sqrt(1 + 4 * K_exact)),
                                           rel=1e-10)


# ----------------------------------------------------------------------------- depth behaviour
def test_tanh_critical_kernel_power_law():
    """1/K^(l) = (-a1) l + [(a1^2 - a2)/(-a1)] log l + O(1) (derivations item 2); tanh: a1 = -2, a2 = 17/3."""
    K = cr.kernel_flow(1.0, activation="tanh", C_W=1.0, C_b=0.0, depth=10000)
    c = cr.small_K_expansion("tanh", C_W=1.0, order=3)
    a1, a2 = c[2], c[3]
    assert (a1, a2) == (pytest.approx(-2.0, rel=1e-13), pytest.approx(17 / 3, rel=1e-12))
    l = np.arange(1, K.size + 1, dtype=float)
    m = l >= 100
    L = l[m]
    basis = np.stack([L, np.log(L), np.ones_like(L), np.log(L) / L, 1 / L], axis=1)
    alpha, beta = np.linalg.lstsq(basis, 1 / K[m], rcond=None)[0][:2]
    # terms left out are O(log^2 l / l^2) in 1/K, below 3e-3 at l = 100
    assert alpha == pytest.approx(-a1, rel=1e-6)
    assert beta == pytest.approx((a1 ** 2 - a2) / (-a1), abs=1e-3)
    # exponent of K ~ l^p with the log corrections in the fit; left out: O((log l / l)^2) <= 2e-3
    basis = np.stack([np.log(L), np.ones_like(L), np.log(L) / L, 1 / L], axis=1)
    p = np.linalg.lstsq(basis, np.log(K[m]), rcond=None)[0][0]
    assert p == pytest.approx(-1.0, abs=1e-3)


@pytest.mark.parametrize("name,C_W,C_b", [("tanh", 0.8, 0.0), ("tanh", 1.5, 0.0), ("erf", 1.0, 0.1),
                                          ("swish", 1.5, 0.2)])
def test_off_critical_exponential_approach_rate_is_chi_parallel(name, C_W, C_b):
    """(K^(l+1) - K*)/(K^(l) - K*) = chi + (chi'/2) delta + O(delta^2), chi = chi_par(K*)."""
    K_star = [p for p in cr.fixed_points(activation=name, C_W=C_W, C_b=C_b) if p.stability == "stable"][0].K
    chi = float(cr.chi_parallel(K_star, activation=name, C_W=C_W))
    dchi = richardson_derivative(lambda k: float(cr.chi_parallel(k, activation=name, C_W=C_W)),
                                 max(K_star, 1e-2), 1e-3) if K_star > 0 else 0.0
    K = cr.kernel_flow(1.0, activation=name, C_W=C_W, C_b=C_b, depth=400)
    delta = K - K_star
    sel = (np.abs(delta[:-1]) < 1e-3) & (np.abs(delta[:-1]) > 1e-7)
    assert sel.sum() >= 5
    ratio = delta[1:][sel] / delta[:-1][sel]
    d = delta[:-1][sel]
    # K* = 0 (tanh): K' = C_W (K - 2K^2 + ...), ratio = C_W (1 - 2K)
    predicted = chi + dchi / 2 * d if K_star > 0 else C_W * (1 - 2 * d)
    assert np.all(np.abs(ratio - predicted) <= 50 * d ** 2 + 1e-9), np.abs(ratio - predicted).max()


def test_relu_off_critical_exponential():
    K = cr.kernel_flow(np.array([1.0, 3.0]), activation="relu", C_W=1.5, C_b=0.1, depth=50)
    assert K.shape == (51, 2)
    np.testing.assert_allclose((K[1:] - 0.4) / (K[:-1] - 0.4), 0.75, rtol=1e-9)


def test_relu_critical_correlation_power_law():
    """1 - rho^(l) ~ 9 pi^2 / (2 l^2): (1 - rho)^(-1/2) grows by sqrt(2)/(3 pi) per layer (derivations item 3)."""
    x = np.array([[1.0, 0.0], [0.6, 0.8]])
    rho = cr.correlation_flow(x, activation="relu", C_W=2.0, C_b=0.0, depth=1000)
    l = np.arange(1, rho.size + 1, dtype=float)
    m = l >= 100
    L = l[m]
    basis = np.stack([L, np.log(L), np.ones_like(L), np.log(L) / L, 1 / L], axis=1)
    alpha = np.linalg.lstsq(basis, (1 - rho[m]) ** -0.5, rcond=None)[0][0]
    assert alpha == pytest.approx(math.sqrt(2) / (3 * math.pi), rel=1e-4)
    basis = np.stack([np.log(L), np.ones_like(L), np.log(L) / L, 1 / L], axis=1)
    p = np.linalg.lstsq(basis, np.log(1 - rho[m]), rcond=None)[0][0]
    assert p == pytest.approx(-2.0, abs=1e-2)  # left out: O((log l / l)^2), ~2e-3 at l = 100


@pytest.mark.parametrize("name,C_W,C_b", [("relu", 1.5, 0.1), ("erf", 1.0, 0.1)])
def test_off_critical_correlation_approach_rate_is_chi_perp(name, C_W, C_b):
    (p,) = cr.fixed_points(activation=name, C_W=C_W, C_b=C_b)
    assert p.chi_perp < 1  # ordered phase: rho -> 1
    x = np.array([[1.0, 0.0], [0.6, 0.8]]) * math.sqrt(2 * (p.K - C_b) / C_W)  # start on K^(1) = K*
    rho = cr.correlation_flow(x, activation=name, C_W=C_W, C_b=C_b, depth=120)
    eps = 1 - rho
    ratio = eps[1:] / eps[:-1]
    sel = (eps[:-1] < 1e-4) & (eps[:-1] > 1e-8)
    assert sel.sum() >= 5
    # corrections: O(eps^(1/2)) for ReLU (kink), O(eps) for smooth erf; roundoff of 1 - rho: ~1e-15/eps
    e = eps[:-1][sel]
    tol = (np.sqrt(e) if name == "relu" else 10 * e) + 1e-15 / e
    assert np.all(np.abs(ratio[sel] - p.chi_perp) <= tol), np.abs(ratio[sel] - p.chi_perp).max()


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("kwargs,match", [
    (dict(K=1.0, activation="nope", C_W=1.0), "activation"),
    (dict(K=1.0, activation="tanh", C_W=0.0), "C_W"),
    (dict(K=1.0, activation="tanh", C_W=-1.0), "C_W"),
    (dict(K=1.0, activation="tanh", C_W=float("nan")), "C_W"),
    (dict(K=-1.0, activation="tanh", C_W=1.0), "K"),
    (dict(K=np.array([1.0, np.nan]), activation="tanh", C_W=1.0), "K"),
])
def test_chi_bad_input(kwargs, match):
    for fn in (cr.chi_parallel, cr.chi_perp):
        with pytest.raises(ValueError, match=match):
            fn(kwargs["K"], activation=kwargs["activation"], C_W=kwargs["C_W"])


def test_bad_input_fixed_points_and_flows():
    with pytest.raises(ValueError, match="C_b"):
        cr.fixed_points(activation="tanh", C_W=1.0, C_b=-0.1)
    with pytest.raises(ValueError, match="C_b"):
        cr.kernel_flow(1.0, activation="tanh", C_W=1.0, C_b=float("nan"), depth=3)
    with pytest.raises(ValueError, match="K1"):
        cr.kernel_flow(-1.0, activation="tanh", C_W=1.0, C_b=0.0, depth=3)
    with pytest.raises(ValueError, match="depth"):
        cr.kernel_flow(1.0, activation="tanh", C_W=1.0, C_b=0.0, depth=0)
    with pytest.raises(ValueError, match="K_max"):
        cr.fixed_points(activation="tanh", C_W=1.0, C_b=0.0, K_max=0.0)
    with pytest.raises(ValueError, match="activation"):
        cr.critical_initialization("nope")
    with pytest.raises(ValueError, match="shape"):
        cr.correlation_flow(np.ones((3, 2)), activation="relu", C_W=2.0, C_b=0.0, depth=2)
