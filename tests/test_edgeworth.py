"""Edgeworth / Cornish-Fisher: textbook coefficients, an independent series derivation, exact laws
(Gamma = sums of Exp(1), Irwin-Hall = sums of Uniform(0,1), sums of Gamma vectors) with the error
rate in n fitted, negativity, numeric backends and bad input.

Rate tests: a truncation at order r leaves an error C n^{-(r+1)/2} (1 + O(n^{-1/2})) (Hall 1992
Thm 2.1); the exponent fitted between n and 2n..4n with n >= 80 differs from -(r+1)/2 by
O(n^{-1/2}) / log 2-ish, so we accept |fitted - predicted| < 0.1 (fixed before measuring)."""
import math

import jax
import mpmath as mp
import numpy as np
import pytest
import scipy.integrate as si
import scipy.special
import scipy.stats as st
import sympy as sp

from sft.symbolic import edgeworth as E
from sft.symbolic import hermite_he

x, eps = E.X, E.EPS
lam = sp.symbols("lambda3:9", real=True)
He = [hermite_he(k, x) for k in range(13)]
EXP_LAMBDAS = [sp.factorial(r - 1) for r in range(3, 9)]            # Exp(1): kappa_r = (r-1)!
UNIF_LAMBDAS = E.standardized_cumulants([sp.Rational(1, 2)] + [sp.bernoulli(r) / r for r in range(2, 9)])
RATE_TOL = 0.1


def _slope(ns, errs):
    return np.polyfit(np.log(ns), np.log(errs), 1)[0]


def test_textbook_polynomials_to_n_minus_2():
    """Hall (1992) sec. 2.2 for p_1, p_2; Blinnikov & Moessner (1998) eq. (44) for p_3, p_4."""
    l3, l4, l5, l6 = lam[:4]
    p = E.edgeworth_polynomials(4)
    ref = [l3 * He[3] / 6,
           l4 * He[4] / 24 + l3 ** 2 * He[6] / 72,
           l5 * He[5] / 120 + l3 * l4 * He[7] / 144 + l3 ** 3 * He[9] / 1296,
           l6 * He[6] / 720 + (l3 * l5 / 720 + l4 ** 2 / 1152) * He[8] + l3 ** 2 * l4 * He[10] / 1728
           + l3 ** 4 * He[12] / 31104]
    assert all(sp.expand(a - b) == 0 for a, b in zip(p, ref))


def test_density_equals_independent_series_derivation():
    """Independent route: sympy.series of exp(sum_r lambda_r eps^{r-2} s^r / r!) in eps, then
    s^k exp(-t^2/2) -> (-d/dx)^k phi(x) by differentiation (no Hermite code, no partitions)."""
    order = 4
    s = sp.Symbol("s")
    phi = sp.exp(-x ** 2 / 2) / sp.sqrt(2 * sp.pi)
    expo = sum(lam[r - 3] * eps ** (r - 2) * s ** r / sp.factorial(r) for r in range(3, order + 3))
    series = sp.expand(sp.series(sp.exp(expo), eps, 0, order + 1).removeO())
    derivs = [phi]
    for _ in range(3 * order):
        derivs.append(-sp.diff(derivs[-1], x))
    ref = sum(c * eps ** j * derivs[k] for (j, k), c in sp.Poly(series, eps, s).terms())
    assert sp.simplify(sp.expand(E.edgeworth_density(order) - ref) / phi) == 0


def test_cdf_derivative_is_density():
    assert sp.simplify(sp.diff(E.edgeworth_cdf(4), x) - E.edgeworth_density(4)) == 0


def test_cf_matches_series_of_exact_exp_sum_cf():
    """S_n for Exp(1) sums: log E e^{itS} = -it/eps - log(1 - it eps)/eps^2, eps = n^{-1/2}."""
    t = E.T
    exact = sp.exp(-sp.I * t / eps - sp.log(1 - sp.I * t * eps) / eps ** 2)
    ref = sp.series(exact, eps, 0, 4).removeO()
    assert sp.simplify(sp.expand(E.edgeworth_cf(3, EXP_LAMBDAS) - ref)) == 0


def test_exp_sums_against_gamma_density_rate_in_n_and_order():
    xs = np.linspace(-6, 6, 1201)
    ns = np.array([256, 512, 1024])
    errs = np.empty((5, len(ns)))
    for r in range(5):
        f = E.to_numeric(E.edgeworth_density(r, EXP_LAMBDAS[:r]), x, eps)
        for i, n in enumerate(ns):
            exact = np.sqrt(n) * st.gamma.pdf(n + np.sqrt(n) * xs, n)
            errs[r, i] = np.max(np.abs(f(xs, n ** -0.5) - exact))
        assert abs(_slope(ns, errs[r]) + (r + 1) / 2) < RATE_TOL, (r, _slope(ns, errs[r]))
    assert np.all(np.diff(errs[:, 0]) < 0)  # better with each order at fixed n


def test_scipy_irwinhall_is_exact():
    mp.mp.dps = 60
    n = 20
    for y in (3.3, 9.7, 10.0, 15.2):
        exact = sum((-1) ** k * mp.binomial(n, k) * (mp.mpf(y) - k) ** (n - 1)
                    for k in range(int(y) + 1)) / mp.factorial(n - 1)
        assert abs(st.irwinhall.pdf(y, n) - float(exact)) < 1e-14


def test_uniform_sums_against_irwin_hall_rate():
    """Symmetric law: odd lambdas vanish, so even order r leaves an error ~ n^{-(r+2)/2}."""
    assert UNIF_LAMBDAS == [0, sp.Rational(-6, 5), 0, sp.Rational(48, 7), 0, sp.Rational(-432, 5)]
    xs = np.linspace(-5, 5, 1001)
    ns = np.array([16, 32, 64])
    prev = np.inf
    for r in (0, 2, 4):
        f = E.to_numeric(E.edgeworth_density(r, UNIF_LAMBDAS[:r]), x, eps)
        errs = np.array([np.max(np.abs(f(xs, n ** -0.5) - np.sqrt(n / 12) * st.irwinhall.pdf(
            n / 2 + np.sqrt(n / 12) * xs, n))) for n in ns])
        assert abs(_slope(ns, errs) + (r + 2) / 2) < RATE_TOL, (r, _slope(ns, errs))
        assert errs[0] < prev
        prev = errs[0]


def test_nearly_gaussian_density_is_iid_sum_in_own_units():
    n, y = sp.Symbol("n", positive=True), sp.Symbol("y", real=True)
    kap = [sp.Rational(1, 2), sp.Rational(1, 12), 0, sp.Rational(-1, 120), 0]
    got = E.nearly_gaussian_density(3, [n * k for k in kap], y=y)
    sd = sp.sqrt(n / 12)
    ref = E.edgeworth_density(3, UNIF_LAMBDAS[:3], x=(y - n / 2) / sd, eps=1 / sp.sqrt(n)) / sd
    assert sp.simplify(got - ref) == 0
    F = E.nearly_gaussian_cdf(3, [n * k for k in kap], y=y)
    assert sp.simplify(sp.diff(F, y) - got) == 0


def test_cornish_fisher_textbook():
    """Hall (1992) eq. (2.49)-(2.50); Abramowitz & Stegun 26.2.51 (l3 = gamma_1, l4 = gamma_2)."""
    z = E.Z
    l3, l4, l5 = lam[:3]
    h = E.cornish_fisher_polynomials(3)
    ref = [l3 * (z ** 2 - 1) / 6,
           l4 * (z ** 3 - 3 * z) / 24 - l3 ** 2 * (2 * z ** 3 - 5 * z) / 36,
           l5 * (z ** 4 - 6 * z ** 2 + 3) / 120 - l3 * l4 * (z ** 4 - 5 * z ** 2 + 2) / 24
           + l3 ** 3 * (12 * z ** 4 - 53 * z ** 2 + 17) / 324]
    assert all(sp.expand(a - b) == 0 for a, b in zip(h, ref))


def test_cornish_fisher_inverts_edgeworth_cdf():
    """F_edgeworth(x_CF(z)) - Phi(z) = O(eps^{order+1}): halving eps divides the residual by
    2^{order+1} (checked at 50 digits with mpmath, so rounding plays no role)."""
    z, order = E.Z, 3
    F = E.edgeworth_cdf(order, EXP_LAMBDAS[:order], x=E.cornish_fisher_quantile(order, EXP_LAMBDAS[:order]))
    resid = sp.lambdify((z, eps), F - (1 + sp.erf(z / sp.sqrt(2))) / 2, modules="mpmath")
    mp.mp.dps = 50
    for zv in (-2.0, 0.4, 1.7):
        ratio = resid(mp.mpf(zv), mp.mpf("1e-3")) / resid(mp.mpf(zv), mp.mpf("5e-4"))
        assert abs(ratio / 2 ** (order + 1) - 1) < 0.01, (zv, ratio)


def test_cornish_fisher_against_gamma_quantiles():
    p = np.array([0.005, 0.05, 0.5, 0.95, 0.995])
    zp = st.norm.ppf(p)
    ns = np.array([100, 200, 400])
    errs = np.empty((4, len(ns)))
    for r in range(4):
        q = E.to_numeric(E.cornish_fisher_quantile(r, EXP_LAMBDAS[:r]), E.Z, eps)
        for i, n in enumerate(ns):
            errs[r, i] = np.max(np.abs(q(zp, n ** -0.5) - (st.gamma.ppf(p, n) - n) / np.sqrt(n)))
        assert abs(_slope(ns, errs[r]) + (r + 1) / 2) < RATE_TOL, (r, _slope(ns, errs[r]))
    assert np.all(np.diff(errs[:, 0]) < 0)


def test_negativity_detected_and_located():
    f = E.to_numeric(E.edgeworth_density(1, [2]), x, eps)
    assert not E.is_nonnegative(lambda v: f(v, 0.5), -4, 4)          # n = 4
    assert E.is_nonnegative(lambda v: f(v, 1000 ** -0.5), -4, 4)     # n = 1000
    x_min, f_min = E.density_minimum(lambda v: f(v, 0.5), -4, 4)
    dens = E.edgeworth_density(1, [2], eps=sp.Rational(1, 2))
    root = sp.nsolve(sp.diff(dens, x), x, x_min, prec=30)
    assert abs(x_min - float(root)) < 1e-6 and f_min < 0
    assert abs(f_min - float(dens.subs(x, root))) < 1e-12


def test_jax_backend_matches_numpy_and_differentiates():
    dens = E.edgeworth_density(3, EXP_LAMBDAS[:3])
    fn, fj = E.to_numeric(dens, x, eps), E.to_numeric(dens, x, eps, backend="jax")
    pts = np.linspace(-3, 3, 7)
    np.testing.assert_allclose(np.asarray(fj(pts, 0.1)), fn(pts, 0.1), rtol=1e-13, atol=1e-15)
    dfdx = E.to_numeric(sp.diff(dens, x), x, eps)
    g = jax.vmap(jax.grad(lambda v: fj(v, 0.1)))(pts)
    np.testing.assert_allclose(np.asarray(g), dfdx(pts, 0.1), rtol=1e-12, atol=1e-14)
    cdf = E.to_numeric(E.edgeworth_cdf(2, EXP_LAMBDAS[:2]), x, eps, backend="jax")
    ref = float(E.edgeworth_cdf(2, EXP_LAMBDAS[:2]).subs({x: 0.3, eps: 0.1}))
    assert abs(float(cdf(0.3, 0.1)) - ref) < 1e-14


# ------------------------------------------------------------------ multivariate ----------------

_A = np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]])
_BASE = np.array([1.0, 1.5, 0.7])


def _gamma_vector_cumulant(shapes, r):
    """kappa_r of X = A G, G_k ~ Gamma(shapes_k) independent: sum_k a_k (r-1)! A_k^{(x) r}."""
    out = 0
    for k, a in enumerate(shapes):
        t = _A[:, k]
        for _ in range(r - 1):
            t = np.multiply.outer(t, _A[:, k])
        out = out + a * math.factorial(r - 1) * t
    return out


def _gamma_vector_density(pts, shapes, nodes=400):
    """Exact density of (G1 + G3, G2 + G3) at pts (N, 2): int_0^{min x} g1(x1-g) g2(x2-g) g3(g) dg,
    by Gauss-Legendre with ``nodes`` nodes (checked against adaptive quad below)."""
    z, w = scipy.special.roots_legendre(nodes)
    up = np.clip(pts.min(axis=1), 0, None)[:, None]
    g, wg = up * (z + 1) / 2, up * w / 2
    return np.sum(wg * st.gamma.pdf(pts[:, :1] - g, shapes[0]) * st.gamma.pdf(pts[:, 1:] - g, shapes[1])
                  * st.gamma.pdf(g, shapes[2]), axis=1)


def test_gamma_vector_density_quadrature():
    shapes = 80 * _BASE
    pts = np.array([[130.0, 150.0], [120.0, 175.0], [160.0, 140.0]])
    for pt, val in zip(pts, _gamma_vector_density(pts, shapes)):
        def f(g):
            return (st.gamma.pdf(pt[0] - g, shapes[0]) * st.gamma.pdf(pt[1] - g, shapes[1])
                    * st.gamma.pdf(g, shapes[2]))
        ref = si.quad(f, 0, min(pt), epsabs=1e-16, epsrel=1e-12, limit=200)[0]
        assert abs(val - ref) < 1e-12 * max(abs(ref), 1e-4)


def test_multivariate_against_sum_of_gamma_vectors():
    u = np.random.default_rng(0).uniform(-3, 3, size=(25, 2))  # fixed standardized points
    ns = np.array([80, 160])
    errs = np.empty((4, len(ns)))
    for i, n in enumerate(ns):
        shapes = n * _BASE
        mu, K = _gamma_vector_cumulant(shapes, 1), _gamma_vector_cumulant(shapes, 2)
        pts = mu + u @ np.linalg.cholesky(K).T
        exact = _gamma_vector_density(pts, shapes)
        kaps = [_gamma_vector_cumulant(shapes, r) for r in range(3, 6)]
        for r in range(4):
            approx = E.multivariate_edgeworth_density(r, pts, mu, K, kaps)
            errs[r, i] = np.sqrt(np.linalg.det(K)) * np.max(np.abs(approx - exact))
    for r in range(4):
        assert abs(_slope(ns, errs[r]) + (r + 1) / 2) < RATE_TOL, (r, _slope(ns, errs[r]))
    assert np.all(np.diff(errs[:, 0]) < 0)


def test_multivariate_moments_reproduced_by_quadrature():
    """Order 2 (kappa_3, kappa_4): integrates to 1, mean mu, covariance K, third cumulant kappa_3,
    fourth cumulant kappa_4, by 2-D Gauss-Hermite quadrature (exact: polynomial x Gaussian)."""
    shapes = 5 * _BASE
    mu, K = _gamma_vector_cumulant(shapes, 1), _gamma_vector_cumulant(shapes, 2)
    k3, k4 = _gamma_vector_cumulant(shapes, 3), _gamma_vector_cumulant(shapes, 4)
    z, w = np.polynomial.hermite_e.hermegauss(12)
    Z = np.stack(np.meshgrid(z, z, indexing="ij"), -1).reshape(-1, 2)
    W = np.outer(w, w).reshape(-1) / w.sum() ** 2
    u = Z @ np.linalg.cholesky(K).T
    gauss = st.multivariate_normal(mu, K).pdf(mu + u)
    weight = W * E.multivariate_edgeworth_density(2, mu + u, mu, K, [k3, k4]) / gauss
    assert abs(weight.sum() - 1) < 1e-12
    np.testing.assert_allclose(weight @ u, 0, atol=1e-10)
    np.testing.assert_allclose(np.einsum("n,ni,nj->ij", weight, u, u), K, rtol=1e-12)
    np.testing.assert_allclose(np.einsum("n,ni,nj,nk->ijk", weight, u, u, u), k3, rtol=1e-11)
    m4 = np.einsum("n,ni,nj,nk,nl->ijkl", weight, u, u, u, u)
    gauss4 = np.einsum("ij,kl->ijkl", K, K)
    gauss4 = gauss4 + gauss4.transpose(0, 2, 1, 3) + gauss4.transpose(0, 3, 2, 1)
    np.testing.assert_allclose(m4 - gauss4, k4, rtol=1e-10)


def test_multivariate_reduces_to_univariate():
    pts = np.linspace(-3, 3, 9)
    lam_num = [0.7, -0.4, 0.3]
    ref = E.to_numeric(E.edgeworth_density(3, lam_num, eps=1), x)(pts)
    got = E.multivariate_edgeworth_density(3, pts[:, None], [0.0], [[1.0]],
                                           [np.full((1,) * r, v) for r, v in zip((3, 4, 5), lam_num)])
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-15)


# ------------------------------------------------------------------ bad input -------------------

@pytest.mark.parametrize("order", [-1, 1.5, "2", True])
def test_bad_orders(order):
    with pytest.raises(ValueError, match="order"):
        E.edgeworth_density(order)
    with pytest.raises(ValueError, match="order"):
        E.multivariate_edgeworth_density(order, np.zeros((1, 2)), np.zeros(2), np.eye(2), [])


def test_bad_cumulants_and_covariances():
    with pytest.raises(ValueError, match="lambdas has length 1"):
        E.edgeworth_density(2, [1.0])
    with pytest.raises(ValueError, match="lambdas"):
        E.edgeworth_density(1, [[1.0, 2.0]])
    with pytest.raises(ValueError, match="cumulants"):
        E.nearly_gaussian_density(2, [0, 1, 0.5])
    with pytest.raises(ValueError, match="variance"):
        E.standardized_cumulants([0, -1, 2])
    with pytest.raises(ValueError, match=r"cumulants\[1\] has shape"):
        E.multivariate_edgeworth_density(2, np.zeros((1, 2)), np.zeros(2), np.eye(2),
                                         [np.zeros((2, 2, 2)), np.zeros((2, 2, 2))])
    with pytest.raises(ValueError, match="needs a list"):
        E.multivariate_edgeworth_density(2, np.zeros((1, 2)), np.zeros(2), np.eye(2), [np.zeros((2,) * 3)])
    with pytest.raises(ValueError, match="cov.*positive definite"):
        E.multivariate_edgeworth_density(1, np.zeros((1, 2)), np.zeros(2), [[1.0, 1.0], [1.0, 1.0]],
                                         [np.zeros((2,) * 3)])
    with pytest.raises(ValueError, match="mean has shape"):
        E.multivariate_edgeworth_density(0, np.zeros((1, 2)), np.zeros(3), np.eye(2), [])
    with pytest.raises(ValueError, match="backend"):
        E.to_numeric(x, x, backend="torch")
    with pytest.raises(ValueError, match="lo="):
        E.density_minimum(np.cos, 1.0, 0.0)
