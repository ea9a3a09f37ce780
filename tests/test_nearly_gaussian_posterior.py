"""Generated perturbative posterior (sft.predict.nearly_gaussian_posterior): O(1/n) against the hand derivation
of sft.predict.posterior_correction, O(1/n^2) against exact Bayes for Gaussian scale-mixture priors."""
import itertools

import numpy as np
import pytest

import sft.predict.nearly_gaussian_posterior as pp
from sft.predict.nearly_gaussian_posterior import perturbative_posterior, posterior_series, posterior_series_latex
from sft.predict.posterior_correction import (kernel_shift_correction, posterior_cov_correction,
                                              posterior_mean_correction)


def _symmetrize(T):
    perms = list(itertools.permutations(range(T.ndim)))
    return sum(np.transpose(T, p) for p in perms) / len(perms)


def _random_case(seed, N=6, P=4):
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(N, N))
    K = A @ A.T / N + 0.1 * np.eye(N)
    B = rng.normal(size=(N, N))
    perm = rng.permutation(N)
    return (rng, K, B + B.T, _symmetrize(rng.normal(size=(N,) * 4)), rng.normal(size=P),
            np.sort(perm[:P]), np.sort(perm[P:]))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_first_order_equals_hand_derivation(seed):
    """(a) O(1/n) mean and covariance == posterior_correction (independent derivation) to 1e-10."""
    rng, K, dK, U, y, train, test = _random_case(seed)
    noise = [0.3, 0.05, 1.0][seed]
    p = perturbative_posterior(K, y, train=train, test=test, noise=noise, n=1.0, order=1, dK=[dK], kappa4=[U])
    dm, dc = kernel_shift_correction(K, dK, y, train=train, test=test, noise=noise)
    m = posterior_mean_correction(K, U, y, train=train, test=test, noise=noise) + dm
    c = posterior_cov_correction(K, U, y, train=train, test=test, noise=noise) + dc
    assert np.max(np.abs(p.mean[1] - m)) <= 1e-10 * np.max(np.abs(m)), (p.mean[1], m)
    assert np.max(np.abs(p.cov[1] - c)) <= 1e-10 * np.max(np.abs(c)), (p.cov[1], c)


def _pairings_sum(K, r):
    """sum over the (r-1)!! pairings of r slots of prod K (fully symmetric tensor (N,)*r)."""
    letters = "abcdef"[:r]
    out = 0
    from sft.symbolic.wick import perfect_matchings
    for pm in perfect_matchings(letters):
        out = out + np.einsum(",".join(a + b for a, b in pm) + "->" + letters, *[K] * (r // 2))
    return out


def _mixture_prior(K, c, d1, d2):
    """Cumulant coefficients of f = sqrt(s) g, g ~ N(0, K), s = mu Gamma(alpha = n/c, scale 1/alpha),
    mu = 1 + d1/n + d2/n^2: cumulants of s are mu^r kappa_r(Gamma) = mu^r (r-1)! (c/n)^(r-1), and
    log E exp(s t.K.t/2) = sum_r kappa_r(s) (t.K.t/2)^r / r! gives kappa_{2r}(f) = kappa_r(s) x (pairings of K).
    To O(1/n^2): kernel K + d1 K/n + d2 K/n^2, kappa_4 = c (1 + 2 d1/n) P4 / n, kappa_6 = 2 c^2 P6 / n^2."""
    P4, P6 = _pairings_sum(K, 4), _pairings_sum(K, 6)
    return dict(dK=[d1 * K, d2 * K], kappa4=[c * P4, 2 * c * d1 * P4], kappa6=2 * c ** 2 * P6)


def _mixture_exact(K, y, train, test, noise, n, c, d1, d2, nodes=801):
    """Exact posterior mean (M,) and covariance (M, M): trapezoid rule in u = log s over +-20 standard
    deviations (the integrand is analytic and decays like exp(-alpha e^u): exponential convergence)."""
    alpha = n / c
    mu = 1 + d1 / n + d2 / n ** 2
    u = np.log(mu) + np.linspace(-20, 20, nodes) / np.sqrt(alpha)
    s = np.exp(u)
    logw = alpha * u - alpha * s / mu                      # Gamma(alpha, mu / alpha) density in u = log s
    Ktt, Kst, Kss = K[np.ix_(train, train)], K[np.ix_(test, train)], K[np.ix_(test, test)]
    lw, ms, cs = [], [], []
    for si, lwi in zip(s, logw):
        A = si * Ktt + noise * np.eye(len(train))
        L = np.linalg.cholesky(A)
        z = np.linalg.solve(L, y)
        lw.append(lwi - 0.5 * z @ z - np.log(np.diag(L)).sum())
        Ai = np.linalg.solve(A, np.eye(len(train)))
        ms.append(si * Kst @ Ai @ y)
        cs.append(si * Kss - si ** 2 * Kst @ Ai @ Kst.T)
    lw = np.array(lw)
    pw = np.exp(lw - lw.max())
    pw /= pw.sum()
    ms, cs = np.array(ms), np.array(cs)
    mean = pw @ ms
    d = ms - mean                                          # mixture of N(m_s, C_s): central moments
    cov = np.einsum("s,smk->mk", pw, cs + np.einsum("sm,sk->smk", d, d))
    mu4 = np.einsum("s,sa,sb,sc,sd->abcd", pw, d, d, d, d) + _symmetrize(
        6 * np.einsum("s,sab,sc,sd->abcd", pw, cs, d, d) + 3 * np.einsum("s,sab,scd->abcd", pw, cs, cs))
    return mean, cov, mu4 - 3 * _symmetrize(np.einsum("ab,cd->abcd", cov, cov))


CASES = {  # name: (K builder, c, d1, d2, noise)
    "chi2_linear_net": (lambda rng: np.outer(*[rng.normal(size=5)] * 2), 2.0, 0.0, 0.0, 0.2),
    "gamma_shifted": (lambda rng: (lambda A: A @ A.T / 5 + 0.2 * np.eye(5))(rng.normal(size=(5, 5))), 1.5, 0.7, -0.4, 0.3),
}


def _errors(case, widths, mutate=None):
    """max |series - exact| of the mean, covariance and connected four-point function (axis 1) at orders
    0, 1, 2 (axis 2) for each width (axis 0)."""
    build, c, d1, d2, noise = CASES[case]
    rng = np.random.default_rng(7)
    K = build(rng)
    train, test = np.array([0, 2, 3]), np.array([1, 4])
    y = np.array([0.9, -0.4, 0.6])
    prior = _mixture_prior(K, c, d1, d2)
    if mutate is not None:
        prior = mutate(prior)
    out = []
    for n in widths:
        p = perturbative_posterior(K, y, train=train, test=test, noise=noise, n=n, order=2, four_point=True,
                                   **prior)
        exact = _mixture_exact(K, y, train, test, noise, n, c, d1, d2)
        out.append([[np.abs(series[:j + 1].sum(0) - ex).max() for j in range(3)] for series, ex in zip(p, exact)])
    return np.array(out)


WIDTHS = np.array([40.0, 80.0, 160.0, 320.0])


def _slope(err):
    return np.polyfit(np.log(WIDTHS), np.log(err), 1)[0]


def _falls_as(err, power):
    """The acceptance rule of the scaling tests: log-log slope of err against WIDTHS within 0.25 of -power."""
    return abs(_slope(err) + power) < 0.25


@pytest.mark.parametrize("case", list(CASES))
def test_second_order_scale_mixture_residual_falls_as_n_cubed(case):
    """(b) exact Bayes for a scale mixture: the order-j error falls as n^-(j+1); at order 2 as n^-3."""
    err = _errors(case, WIDTHS)
    for q, quantity in enumerate(["mean", "cov", "four_point"]):
        slopes = [_slope(err[:, q, j]) for j in range(3)]
        for j in (1, 2):
            assert _falls_as(err[:, q, j], j + 1), (case, quantity, slopes, err[:, q])
        assert np.all(err[:, q, 2] < err[:, q, 1]), (case, quantity, err[:, q])


@pytest.mark.parametrize("quantity", [1, 2, 4])
def test_a_wrong_sign_or_a_dropped_term_fails(quantity):
    """The n^-3 check discriminates: flipping the sign of kappa_6 leaves an n^-2 residual, and dropping one
    generated O(1/n^2) term (first, middle, last) of the mean (c_1), covariance (c_2) or four-point
    function (c_4) makes the n^-3 rule of the test above fail."""
    q = {1: 0, 2: 1, 4: 2}[quantity]
    flipped = _errors("gamma_shifted", WIDTHS, mutate=lambda p: dict(p, kappa6=-p["kappa6"]))
    assert _falls_as(flipped[:, q, 2], 2) and not _falls_as(flipped[:, q, 2], 3), flipped[:, q]
    series = posterior_series(2)
    orig = pp.posterior_series
    for drop in [0, len(series[(2, quantity)]) // 2, -1]:
        dropped = dict(series)
        dropped[(2, quantity)] = [t for i, t in enumerate(series[(2, quantity)])
                                  if i != drop % len(series[(2, quantity)])]
        pp.posterior_series = lambda order: dropped
        try:
            err = _errors("gamma_shifted", WIDTHS)
        finally:
            pp.posterior_series = orig
        assert not _falls_as(err[:, q, 2], 3), (drop, _slope(err[:, q, 2]), err[:, q])


def test_series_structure_and_latex():
    """Term counts of the generated series and its LaTeX."""
    s = posterior_series(2)
    assert {k: len(v) for k, v in s.items()} == {(1, 1): 3, (1, 2): 3, (1, 4): 1, (2, 1): 49, (2, 2): 62, (2, 4): 36}
    assert posterior_series(0) == {}
    assert r"S_{m" in posterior_series_latex(2, 1)


def test_bad_input():
    _, K, dK, U, y, train, test = _random_case(0)
    kw = dict(train=train, test=test, noise=0.3, n=10.0)
    with pytest.raises(ValueError, match="order=3"):
        perturbative_posterior(K, y, order=3, **kw)
    with pytest.raises(ValueError, match="kappa6"):
        perturbative_posterior(K, y, order=2, dK=[dK, dK], kappa4=[U, U], **kw)
    bad = U.copy()
    bad[0, 1, 2, 3] += 1.0
    with pytest.raises(ValueError, match=r"kappa4\[0\] is not symmetric"):
        perturbative_posterior(K, y, order=1, dK=[dK], kappa4=[bad], **kw)
    with pytest.raises(ValueError, match=r"kappa4\[0\] has shape"):
        perturbative_posterior(K, y, order=1, dK=[dK], kappa4=[U[:3, :3, :3, :3]], **kw)
    with pytest.raises(ValueError, match="NaN"):
        perturbative_posterior(K, y, order=1, dK=[dK * np.nan], kappa4=[U], **kw)
    with pytest.raises(ValueError, match="n = -1"):
        perturbative_posterior(K, y, order=1, dK=[dK], kappa4=[U], **dict(kw, n=-1.0))


def test_kernel_shift_only_is_the_shifted_gaussian_process():
    """Only kernel shifts (kappa_4 = kappa_6 = 0): the exact posterior is the GP of K + dK1/n + dK2/n^2 with
    arbitrary symmetric dK's; the order-2 series leaves an n^-3 residual and no four-point function."""
    rng, K, dK1, _, y, train, test = _random_case(3)
    dK2 = 0.5 * dK1 @ dK1
    zero4, zero6 = np.zeros((6,) * 4), np.zeros((6,) * 6)
    err = []
    for n in WIDTHS:
        p = perturbative_posterior(K, y, train=train, test=test, noise=0.4, n=n, order=2, dK=[dK1, dK2],
                                   kappa4=[zero4, zero4], kappa6=zero6, four_point=True)
        Kn = K + dK1 / n + dK2 / n ** 2
        A = Kn[np.ix_(train, train)] + 0.4 * np.eye(train.size)
        mean = Kn[np.ix_(test, train)] @ np.linalg.solve(A, y)
        cov = Kn[np.ix_(test, test)] - Kn[np.ix_(test, train)] @ np.linalg.solve(A, Kn[np.ix_(train, test)])
        err.append([np.abs(p.mean.sum(0) - mean).max(), np.abs(p.cov.sum(0) - cov).max()])
        assert np.abs(p.four_point).max() <= 1e-12 * np.abs(cov).max() ** 2, p.four_point
    err = np.array(err)
    for q in range(2):
        assert _falls_as(err[:, q], 3), err


def _deep_linear_scale_cumulants(depth):
    """1/n and 1/n^2 coefficients of kappa_2(U), kappa_3(U) for U = prod_l chi^2_n / n (depth layers):
    E U^k = (prod_{j<k} (1 + 2 j / n))^depth, cumulants by sft.symbolic.cumulants, series in 1/n by sympy."""
    import sympy as sp
    from sft.symbolic.cumulants import cumulants_from_moments
    e = sp.Symbol("e")  # 1/n
    moments = [sp.prod([1 + 2 * j * e for j in range(k)]) ** depth for k in range(1, 4)]
    k = cumulants_from_moments(moments)
    coef = lambda expr, p: float(sp.expand(expr).coeff(e, p))
    assert sp.expand(k[0]) == 1
    return coef(k[1], 1), coef(k[1], 2), coef(k[2], 1), coef(k[2], 2)


def test_second_order_deep_linear_network_exact_posterior():
    """(b) depth-2 linear network at finite width: sft.predict.exact_posterior (independent quadrature over
    the kernel scale U) against the series with kappa_4 = kappa_2(U) P4(K), kappa_6 = kappa_3(U) P6(K);
    the order-2 residual falls as n^-3."""
    from sft.kernels.recursion import nngp
    from sft.predict.kernel_renormalization import exact_posterior
    rng = np.random.default_rng(11)
    xtr, xte = rng.normal(size=(3, 4)), rng.normal(size=(2, 4))
    y, T = np.array([0.8, -0.5, 0.3]), 0.3
    x = np.concatenate([xtr, xte])
    K = np.asarray(nngp(x, depth=2, activation="linear", C_W=1.0, C_b=0.0))
    a1, a2, b1, b2 = _deep_linear_scale_cumulants(2)
    assert b1 == 0.0 and (a1, a2, b2) == (4.0, 4.0, 40.0)
    P4, P6 = _pairings_sum(K, 4), _pairings_sum(K, 6)
    train, test = np.arange(3), np.arange(3, 5)
    err = []
    for n in WIDTHS:
        p = perturbative_posterior(K, y, train=train, test=test, noise=T, n=n, order=2, dK=[0 * K, 0 * K],
                                   kappa4=[a1 * P4, a2 * P4], kappa6=b2 * P6)
        ex = exact_posterior(xtr, y, xte, widths=[int(n)] * 2, C_W=1.0, temperature=T)
        err.append([[np.abs(s[:j + 1].sum(0) - e).max() for j in range(3)] for s, e in ((p.mean, ex.mean), (p.cov, ex.cov))])
    err = np.array(err)
    for q in range(2):
        for j in (1, 2):
            assert _falls_as(err[:, q, j], j + 1), (q, j, err[:, q])


def test_one_hidden_layer_linear_network_from_its_exact_cumulants():
    """(b) one-hidden-layer linear network, 5 inputs in general position: prior data from
    sft.finite.one_hidden_layer_cumulants (exact, width-independent coefficients n kappa_4, n^2 kappa_6);
    its output is exactly sqrt(s) g with s = chi^2_n / n (f = n^-1/2 sum_i v_i h_i, h_i ~ N(0, K), so each
    neuron is |v_i| times a Gaussian and kappa_2r(f) = kappa_r(s) P_2r(K)), whose posterior is a 1-D
    quadrature (_mixture_exact, c = 2). The order-2 residual of mean, covariance and four-point falls as n^-3."""
    from sft.finite.one_layer_cumulants import one_hidden_layer_cumulants
    x = np.random.default_rng(5).normal(size=(5, 6))
    k = one_hidden_layer_cumulants(x, 6, width=1, activation="linear", C_W=1.0, C_b=0.0)
    K, U, S = k[1], k[3], k[5]
    assert np.max(np.abs(U - 2 * _pairings_sum(K, 4))) <= 1e-12 * np.max(np.abs(U))
    train, test, y, noise = np.array([0, 2, 3]), np.array([1, 4]), np.array([0.9, -0.4, 0.6]), 0.2
    err = []
    for n in WIDTHS:
        p = perturbative_posterior(K, y, train=train, test=test, noise=noise, n=n, order=2, dK=[0 * K, 0 * K],
                                   kappa4=[U, 0 * U], kappa6=S, four_point=True)
        exact = _mixture_exact(K, y, train, test, noise, n, 2.0, 0.0, 0.0)
        err.append([[np.abs(s[:j + 1].sum(0) - e).max() for j in range(3)] for s, e in zip(p, exact)])
    err = np.array(err)
    for q in range(3):
        for j in (1, 2):
            assert _falls_as(err[:, q, j], j + 1), (q, j, err[:, q])
