"""Generated perturbative posterior (sft.predict.nearly_gaussian_posterior): O(1/n) against the hand derivation
of sft.predict.posterior_correction, O(1/n^2) against exact Bayes for Gaussian scale-mixture priors; the
connected-graph series against the unlinked expansion (linked clusters), the JAX backend against numpy and its
gradient against central differences, and the bad-input checks (issue 12, items 1 and 6)."""
import itertools
import math
from fractions import Fraction

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
    assert {k: len(v) for k, v in s.items()} == {(1, 1): 3, (1, 2): 3, (1, 4): 1, (2, 1): 19, (2, 2): 20, (2, 4): 8}
    assert all(len(t.graphs) == 1 and pp._is_connected(t.graphs[0]) for v in s.values() for t in v)
    assert posterior_series(0) == {}
    assert r"S_{m" in posterior_series_latex(2, 1)


def test_bad_input():
    """Issue 12 item 6: wrong symmetry or shape of a cumulant tensor, non-positive-definite K~, NaN or inf,
    an order the prior data does not support, an unknown backend: ValueError naming the argument (numpy and
    concrete JAX inputs share the checks; under jax.grad the shapes are still checked)."""
    _, K, dK, U, y, train, test = _random_case(0)
    S = np.zeros((6,) * 6)
    kw = dict(train=train, test=test, noise=0.3, n=10.0)
    first = dict(kw, order=1, dK=[dK], kappa4=[U])
    second = dict(kw, order=2, dK=[dK, dK], kappa4=[U, U], kappa6=S)
    cases = [  # (message pattern, overrides of ``second``)
        ("order=3", dict(order=3)), ("order=1.5", dict(order=1.5)), ("order=True", dict(order=True)),
        ("kappa6", dict(kappa6=None)), (r"dK \(1 given\)", dict(dK=[dK])), (r"kappa4 \(1 given\)", dict(kappa4=[U])),
        (r"kappa4\[0\] is not symmetric", dict(kappa4=[U + 0.1 * np.eye(6)[:, :, None, None] * U[0, 0], U])),
        (r"dK\[1\] is not symmetric", dict(dK=[dK, dK + np.triu(np.ones((6, 6)))])),
        ("kappa6 is not symmetric", dict(kappa6=np.arange(6.0 ** 6).reshape((6,) * 6))),
        (r"kappa4\[0\] has shape", dict(kappa4=[U[:3, :3, :3, :3], U])),
        ("kappa6 has shape", dict(kappa6=S[:5])), ("kappa6 has shape", dict(kappa6=np.zeros((6,) * 4))),
        (r"dK\[0\] contains NaN", dict(dK=[dK * np.nan, dK])), ("kappa6 contains NaN", dict(kappa6=S + np.nan)),
        ("y contains NaN", dict(y=np.full(4, np.nan))), ("K contains NaN", dict(K=K + np.inf)),
        ("n = -1", dict(n=-1.0)), ("noise = nan", dict(noise=np.nan)), ("backend='torch'", dict(backend="torch")),
        # K~ = K_train + noise I singular: rank-one K, no noise
        (r"K_train \+ noise I \(noise = 0\) is not positive definite", dict(K=np.ones((6, 6)), noise=0.0)),
    ]
    for pattern, over in cases:
        args = {**second, "K": K, "y": y, **over}
        for backend in ("numpy", "jax"):
            with pytest.raises(ValueError, match=pattern):
                perturbative_posterior(**dict(args, backend=args.get("backend", backend)))
    with pytest.raises(ValueError, match=r"kappa4\[0\] is not symmetric"):
        bad = U.copy()
        bad[0, 1, 2, 3] += 1.0
        perturbative_posterior(K, y, **dict(first, kappa4=[bad]))
    # under jax.grad (values unknown) the order, the shapes and the indices are still checked
    import jax
    for pattern, over in [(r"kappa4\[0\] has shape", dict(kappa4=[U[:3, :3, :3, :3], U])),
                          ("kappa6", dict(kappa6=None)), ("y has shape", dict(y=y[:3])), (r"test = \[9\]", dict(test=[9]))]:
        args = {**second, "K": K, "y": y, **over}
        with pytest.raises(ValueError, match=pattern):
            jax.grad(lambda s: perturbative_posterior(**dict(args, noise=s, backend="jax")).mean.sum())(0.3)


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


def _components(g):
    """Connected components of a contraction graph (K~^-1 lines between vertices), each canonicalized."""
    comps = [{i} for i in range(len(g.vertices))]
    for i, j, _ in g.edges:
        a, b = next(c for c in comps if i in c), next(c for c in comps if j in c)
        if a is not b:
            comps.remove(b)
            a |= b
    out = []
    for comp in comps:
        idx = sorted(comp)
        new = {old: k for k, old in enumerate(idx)}
        edges = {(new[i], new[j]): c for i, j, c in g.edges if i in new}
        out.append(pp._canonical([g.vertices[i] for i in idx], edges))
    return out


def _unlinked_series(order):
    """Independent route (the generator before the linked-cluster reduction): X = L[exp(sum of vertices)] - 1
    with EVERY graph of a product (connected or not), then log(1 + X) = X - X^2/2 + ... in exact rationals.
    {(j, m): {tuple of graphs: Fraction}} for m = 1, 2, 4."""
    X = {}
    for count in range(1, order + 1):
        for multi in itertools.combinations_with_replacement(list(pp.VERTICES), count):
            j = sum(pp.VERTICES[nm][1] for nm in multi)
            if j > order:
                continue
            weight = Fraction(1, math.prod(math.factorial(multi.count(nm)) for nm in set(multi)))
            for tests in itertools.product(*[range(min(pp.VERTICES[nm][0], 4) + 1) for nm in multi]):
                if sum(tests) > 4:
                    continue
                w = weight * math.prod(Fraction(math.comb(pp.VERTICES[nm][0], k), math.factorial(pp.VERTICES[nm][0]))
                                       for nm, k in zip(multi, tests))
                for g, c in pp._graphs_of_product(multi, tests).items():
                    key = (j, sum(tests), (g,))
                    X[key] = X.get(key, 0) + w * c
    log, power = dict(X), dict(X)
    for k in range(2, order + 1):
        power = _times(power, X, order)
        for key, c in power.items():
            log[key] = log.get(key, 0) + Fraction((-1) ** (k + 1), k) * c
    out = {}
    for (j, m, graphs), c in log.items():
        if c != 0 and m in (1, 2, 4):
            out.setdefault((j, m), {})[graphs] = c
    return out


def _times(a, b, order):
    """Product of two truncated series {(j, m, graphs): Fraction}: eps^j <= order, v^m <= 4."""
    out = {}
    for (j1, m1, g1), c1 in a.items():
        for (j2, m2, g2), c2 in b.items():
            if j1 + j2 <= order and m1 + m2 <= 4:
                key = (j1 + j2, m1 + m2, tuple(sorted(g1 + g2)))
                out[key] = out.get(key, 0) + c1 * c2
    return out


def test_connected_terms_are_the_log_of_the_unlinked_expansion():
    """Item 1, linked clusters: the unlinked expansion (3/3/1 and 49/62/36 terms at orders 1 and 2), its graphs
    split into connected components and merged, is term by term (exact rationals) the generated connected series
    (3/3/1 and 19/20/8: all products of disconnected pieces cancel), and numerically (random tensors, N = 6,
    P = 4, M = 2) the unlinked series evaluated term by term equals perturbative_posterior to 1e-12 relative."""
    rng, K, dK, U, y, train, test = _random_case(4)
    prior = dict(dK=[dK, _symmetrize(rng.normal(size=(6, 6)))], kappa4=[U, _symmetrize(rng.normal(size=(6,) * 4))],
                 kappa6=_symmetrize(rng.normal(size=(6,) * 6)))
    noise = 0.4
    _, _, _, Kinv, yt, R = pp._setup(K, y, train, test, noise)
    y_full, Kinv_full = np.zeros(6), np.zeros((6, 6))
    y_full[train], Kinv_full[np.ix_(train, train)] = yt, Kinv
    tensors = {"dK1": prior["dK"][0], "dK2": prior["dK"][1], "U1": prior["kappa4"][0], "U2": prior["kappa4"][1],
               "S": prior["kappa6"]}
    for order, counts in ((1, (3, 3, 1)), (2, (49, 62, 36))):
        full = _unlinked_series(order)
        assert [len(full[(order, m)]) for m in (1, 2, 4)] == list(counts), {k: len(v) for k, v in full.items()}
        merged = {}
        for key, terms in full.items():
            acc = merged.setdefault(key, {})
            for graphs, c in terms.items():
                comps = tuple(sorted(cg for g in graphs for cg in _components(g)))
                acc[comps] = acc.get(comps, 0) + c
        merged = {key: {g: c for g, c in acc.items() if c != 0} for key, acc in merged.items()}
        generated = {key: {t.graphs: t.coefficient for t in terms} for key, terms in posterior_series(order).items()}
        assert merged == generated
        assert [len(generated[(order, m)]) for m in (1, 2, 4)] == [[3, 3, 1], [19, 20, 8]][order - 1]
        p = perturbative_posterior(K, y, train=train, test=test, noise=noise, n=1.0, order=order, four_point=True,
                                   **{k: (v[:order] if k != "kappa6" else v) for k, v in prior.items()})
        for (j, m), terms in full.items():
            total = sum(pp._einsum_term(pp.PosteriorTerm(c, graphs), tensors, y_full, Kinv_full, R.T)
                        for graphs, c in terms.items())
            want = math.factorial(m) * _symmetrize(np.asarray(total))
            got = {1: p.mean, 2: p.cov, 4: p.four_point}[m][j]
            assert np.max(np.abs(got - want)) <= 1e-12 * np.max(np.abs(want)), (order, j, m)


def test_jax_backend_equals_numpy_compiles_once_and_differentiates():
    """Item 1, JAX backend (float64): the same program through jax.jit equals numpy to 1e-12 relative (orders
    0..2, mean, covariance, four-point), a second call with other values (same shapes) reuses the one compiled
    program, and jax.grad with respect to the noise sigma^2 and the labels y of a weighted sum of every output
    equals the central difference of the numpy backend (h = 1e-5: truncation h^2 f''' ~ 1e-10, rounding
    eps |f| / h ~ 1e-11) to 1e-7 x the largest gradient component."""
    import jax
    rng, K, dK, U, y, train, test = _random_case(5, N=5, P=3)
    prior = dict(dK=[dK, _symmetrize(rng.normal(size=(5, 5)))], kappa4=[U, _symmetrize(rng.normal(size=(5,) * 4))],
                 kappa6=_symmetrize(rng.normal(size=(5,) * 6)))
    kw = dict(train=train, test=test, n=1.0, order=2, four_point=True, **prior)
    ref = perturbative_posterior(K, y, noise=0.3, **kw)
    got = perturbative_posterior(K, y, noise=0.3, backend="jax", **kw)
    for a, b in zip(ref, got):
        assert b.dtype == np.float64
        assert np.max(np.abs(np.asarray(b) - a)) <= 1e-12 * np.max(np.abs(a)), (a, b)
    perturbative_posterior(K, 2 * y, noise=0.7, backend="jax", **kw)
    series = tuple((key, tuple(terms)) for key, terms in posterior_series(2).items())
    assert pp._jax_posterior(pp._program(series, 5, 2), 2)._cache_size() == 1   # compiled once for these shapes

    weights = [rng.normal(size=a.shape) for a in ref[:2]]

    def objective(noise, labels, backend):
        p = perturbative_posterior(K, labels, noise=noise, backend=backend, **dict(kw, four_point=False))
        return sum((w * a).sum() for w, a in zip(weights, p[:2]))
    g_noise, g_y = jax.jit(jax.grad(objective, argnums=(0, 1)), static_argnums=2)(0.3, y, "jax")  # one compile
    h = 1e-5
    fd_noise = (objective(0.3 + h, y, "numpy") - objective(0.3 - h, y, "numpy")) / (2 * h)
    fd_y = [(objective(0.3, y + h * e, "numpy") - objective(0.3, y - h * e, "numpy")) / (2 * h) for e in np.eye(3)]
    grad, fd = np.array([g_noise, *g_y]), np.array([fd_noise, *fd_y])
    assert np.max(np.abs(grad - fd)) <= 1e-7 * np.max(np.abs(fd)), (grad, fd)
