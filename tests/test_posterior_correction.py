"""posterior_mean_correction against exact Bayes for Gaussian scale-mixture priors.

Prior f = sqrt(s) g, g ~ N(0, K), s ~ Gamma(shape 1/eps, scale eps): E[s] = 1, Var(s) = eps, so
Cov(f) = K and the fourth cumulant is exactly U = eps (K_ab K_cd + K_ac K_bd + K_ad K_bc); higher
cumulants and U^2 effects are O(eps^2). Given s, (y, f) is Gaussian, so the exact posterior mean is a
1-D quadrature over s. Then (exact - GP mean)/eps - formula(U/eps) = O(eps): it must halve with eps.
"""
import itertools

import numpy as np
import pytest
import scipy.integrate
import scipy.stats

from sft.predict import posterior_mean_correction, quartic_cumulant_from_vertex


def _kk_sym(K):
    return (np.einsum("ab,cd->abcd", K, K) + np.einsum("ac,bd->abcd", K, K)
            + np.einsum("ad,bc->abcd", K, K))


def _exact_mean(K, y, train, test, noise, eps):
    """E[f_test | y] for the scale mixture, by adaptive quadrature over s."""
    s_dist = scipy.stats.gamma(a=1 / eps, scale=eps)
    Ktt, Kst = K[np.ix_(train, train)], K[np.ix_(test, train)]
    A0 = Ktt + noise * np.eye(len(train))
    logw0 = scipy.stats.multivariate_normal(cov=A0).logpdf(y)

    def w(s):  # prior(s) p(y | s), scaled by p(y | s = 1) for range
        A = s * Ktt + noise * np.eye(len(train))
        return s_dist.pdf(s) * np.exp(scipy.stats.multivariate_normal(cov=A).logpdf(y) - logw0)

    def m(s):
        A = s * Ktt + noise * np.eye(len(train))
        return s * Kst @ np.linalg.solve(A, y)

    lo, hi = s_dist.ppf(1e-16), s_dist.isf(1e-16)
    opts = dict(points=[1.0], epsabs=0.0, epsrel=1e-13, limit=200)
    Z = scipy.integrate.quad(w, lo, hi, **opts)[0]
    return np.array([scipy.integrate.quad(lambda s: w(s) * m(s)[j], lo, hi, **opts)[0] / Z
                     for j in range(len(test))])


def _residuals(K, y, train, test, noise, eps_values):
    U1 = _kk_sym(K)  # U / eps
    formula = posterior_mean_correction(K, U1, y, train=train, test=test, noise=noise)
    A = K[np.ix_(train, train)] + noise * np.eye(len(train))
    gp = K[np.ix_(test, train)] @ np.linalg.solve(A, y)
    res = [(_exact_mean(K, y, train, test, noise, e) - gp) / e - formula for e in eps_values]
    return formula, res


CASES = {
    "P1M1": (np.array([[1.0, 0.6], [0.6, 0.8]]), np.array([1.7]), [0], [1], 0.5),
    "P2M2": (None, np.array([1.5, -0.9]), [0, 2], [1, 3], 0.5),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_exact_bayes_for_scale_mixture(case):
    K, y, train, test, noise = CASES[case]
    if K is None:
        B = np.random.default_rng(0).normal(size=(4, 4))
        K = B @ B.T / 4 + 0.3 * np.eye(4)
    eps = 0.01
    formula, (r1, r2) = _residuals(K, y, train, test, noise, [eps, eps / 2])
    assert np.all(np.abs(formula) > 0.05)  # the correction is not trivially small here
    # residual O(eps): much smaller than the correction, and halving with eps
    assert np.all(np.abs(r1) < 0.1 * np.abs(formula))
    np.testing.assert_allclose(r1 / r2, 2.0, atol=0.2)


def test_vanishes_for_zero_cumulant_and_is_linear():
    rng = np.random.default_rng(1)
    B = rng.normal(size=(5, 5))
    K = B @ B.T / 5 + 0.1 * np.eye(5)
    y, tr, te = rng.normal(size=3), [0, 1, 4], [2, 3]
    U1, U2 = _kk_sym(K), _kk_sym(np.eye(5) + 0.1 * K)
    f = lambda U: posterior_mean_correction(K, U, y, train=tr, test=te, noise=0.05)
    np.testing.assert_array_equal(f(np.zeros((5,) * 4)), 0.0)
    np.testing.assert_allclose(f(2.0 * U1 - 0.5 * U2), 2.0 * f(U1) - 0.5 * f(U2), rtol=1e-12)


def test_noiseless_correction_vanishes_at_training_points():
    """With noise 0 the posterior is pinned at f_train = y: a test point equal to a training point has
    a = e_b, so U_{*cde} - a_b U_{bcde} = 0 exactly."""
    K = np.array([[1.0, 0.3, 0.2], [0.3, 1.0, 0.4], [0.2, 0.4, 1.0]])
    T = np.random.default_rng(3).normal(size=(3,) * 4)
    U = sum(np.transpose(T, p) for p in itertools.permutations(range(4)))  # generic symmetric U
    d = posterior_mean_correction(K, U, np.array([0.7, -1.2]), train=[0, 1], test=[1, 0, 2], noise=0.0)
    np.testing.assert_allclose(d[:2], 0.0, atol=1e-12)
    assert abs(d[2]) > 1e-3


def test_quartic_cumulant_from_vertex_gaussian_mixture_of_kernels():
    """If G = K + dG with n Cov(dG_ab, dG_cd) = V, then z|G ~ N(0, G) has fourth cumulant
    Cov(G_ab,G_cd) + Cov(G_ac,G_bd) + Cov(G_ad,G_bc). For G = s K, Var(s) = v/n: V = v K K and U = v/n K⊗K sym."""
    K = np.array([[1.0, 0.5], [0.5, 2.0]])
    V = 0.7 * np.einsum("ab,cd->abcd", K, K)
    np.testing.assert_allclose(quartic_cumulant_from_vertex(V, 10), 0.07 * _kk_sym(K), rtol=1e-14)
    # the explicit index placement: U_0011 = (V_0011 + 2 V_0101) / n
    V = np.random.default_rng(2).normal(size=(2, 2, 2, 2))
    U = quartic_cumulant_from_vertex(V, 4.0)
    assert U[0, 0, 1, 1] == pytest.approx((V[0, 0, 1, 1] + 2 * V[0, 1, 0, 1]) / 4)


@pytest.mark.parametrize("kwargs, match", [
    (dict(noise=-1.0), "noise"),
    (dict(noise=np.nan), "noise"),
    (dict(train=[]), "train"),
    (dict(train=[0, 5]), "train"),
    (dict(train=[0, 0]), "train"),
    (dict(test=[0.5]), "test"),
    (dict(y=np.ones(3)), "y"),
    (dict(U=np.zeros((2, 2, 2, 2))), "U"),
    (dict(K=np.array([[1.0, 0.2, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])), "symmetric"),
    (dict(K=-np.eye(3), noise=0.0), "positive definite"),
])
def test_bad_inputs(kwargs, match):
    args = dict(K=np.eye(3), U=np.zeros((3,) * 4), y=np.ones(2), train=[0, 1], test=[2], noise=0.1)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        posterior_mean_correction(args.pop("K"), args.pop("U"), args.pop("y"), **args)


@pytest.mark.parametrize("V, n, match", [
    (np.zeros((2, 2, 2)), 1.0, "V"),
    (np.zeros((2, 2, 2, 3)), 1.0, "V"),
    (np.zeros((2, 2, 2, 2)), 0.0, "n"),
    (np.zeros((2, 2, 2, 2)), np.inf, "n"),
])
def test_vertex_bad_inputs(V, n, match):
    with pytest.raises(ValueError, match=match):
        quartic_cumulant_from_vertex(V, n)


def test_cumulant_from_network_vertex_is_fully_symmetric():
    """V from sft.finite.multi_input has only the pair symmetries; the sum of the three pairings is
    symmetric under all 24 permutations of (a, b, c, d)."""
    from sft.finite import multi_input
    x = np.random.default_rng(0).normal(size=(4, 4))
    V = multi_input(x, depth=1, activation="tanh", C_W=1.5, C_b=0.1, kernel_shift=False).V[-1]
    assert np.max(np.abs(V - np.einsum("acbd->abcd", V))) > 1e-4  # V itself is not fully symmetric
    U = quartic_cumulant_from_vertex(V, 100)
    for p in itertools.permutations(range(4)):
        np.testing.assert_allclose(np.transpose(U, p), U, rtol=0, atol=1e-14 * np.abs(U).max())
