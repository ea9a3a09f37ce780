"""Tests of sft.symbolic.edgeworth.edgeworth_density_numeric: equal to the symbolic Edgeworth density
evaluated numerically, converging to the exact density of a standardized sum of n Exp(1) (a Gamma law)
at the rate n^{-(order+1)/2}, and consistent with a Monte Carlo histogram of such sums.

Tolerances: symbolic vs numeric 1e-13 of the density's scale (rounding only); the convergence rate
within 25% of 2^{order+1} per quadrupling of n; Monte Carlo bin probabilities |z| < Z_MAX at a fixed seed.
"""
import numpy as np
import pytest
import scipy.integrate
import scipy.stats

from sft.conventions import Z_MAX
from sft.symbolic import EPS, X, edgeworth_density, to_numeric
from sft.symbolic.edgeworth import edgeworth_density_numeric

EXP_LAMBDAS = [2.0, 6.0, 24.0, 120.0, 720.0, 5040.0]  # Exp(1): lambda_r = (r - 1)!


def _gamma_density(x, n):
    """Exact density of (sum of n Exp(1) - n) / sqrt(n)."""
    return np.sqrt(n) * scipy.stats.gamma.pdf(n + np.sqrt(n) * x, a=n)


def test_equals_symbolic_density():
    rng = np.random.default_rng(1)
    x = np.linspace(-6, 6, 301)
    for order in range(7):
        lam = list(rng.normal(size=order + 1))  # one extra entry: ignored
        for eps in (0.3, 1.0):
            want = to_numeric(edgeworth_density(order, lam), X, EPS)(x, eps) * np.ones_like(x)
            got = edgeworth_density_numeric(x, order, lam, eps=eps)
            assert got.shape == x.shape and got.dtype == np.float64
            assert np.max(np.abs(got - want)) < 1e-13 * np.max(np.abs(want)), (order, eps)
    grid = edgeworth_density_numeric(x[:300].reshape(3, -1), 2, [0.5, 0.1], eps=0.2)
    assert grid.shape == (3, 100)


def test_converges_to_gamma_at_the_edgeworth_rate():
    """max_x |f_order - exact| falls by 2^{order+1} per quadrupling of n (error O(n^{-(order+1)/2}))."""
    x = np.linspace(-5, 5, 2001)
    for order in range(5):
        err = [np.max(np.abs(edgeworth_density_numeric(x, order, EXP_LAMBDAS, eps=n ** -0.5) - _gamma_density(x, n)))
               for n in (160, 640)]
        assert err[0] / err[1] == pytest.approx(2.0 ** (order + 1), rel=0.25), order


def test_monte_carlo_histogram():
    """Standardized sums of n = 100 Exp(1) (float64, seed 3, 4e5 sums drawn as Gamma(n, 1), the law of the
    sum): bin probabilities of the order-3 density (error ~n^{-2}, far below the Monte Carlo error) agree,
    |z| < Z_MAX per bin; the Gaussian (order 0) is rejected."""
    n, N = 100, 400_000
    s = (np.random.default_rng(3).standard_gamma(n, size=N) - n) / np.sqrt(n)
    edges = np.linspace(-3.5, 4.5, 17)
    counts = np.histogram(s, edges)[0]
    fine = np.linspace(-3.5, 4.5, 16 * 64 + 1)
    for order, should_pass in ((3, True), (0, False)):
        f = edgeworth_density_numeric(fine, order, EXP_LAMBDAS, eps=n ** -0.5)
        cdf = scipy.integrate.cumulative_simpson(f, x=fine, initial=0.0)[::64]
        p = np.diff(cdf)
        z = (counts / N - p) / np.sqrt(p * (1 - p) / N)
        assert (np.max(np.abs(z)) < Z_MAX) == should_pass, (order, z)


@pytest.mark.parametrize("kw, match", [
    (dict(x=[0.0, np.nan]), "x contains nan"),
    (dict(lambdas=[1.0]), "lambdas=.*length >= 2"),
    (dict(lambdas=[1.0, np.inf]), "lambdas=.* finite"),
    (dict(lambdas=2.0), "lambdas="),
    (dict(eps=-0.1), "eps=-0.1"),
    (dict(eps=np.nan), "eps=nan"),
    (dict(order=-1), "order=-1"),
    (dict(order=1.5), "order=1.5"),
])
def test_bad_input(kw, match):
    args = dict(x=[0.0, 1.0], order=2, lambdas=[0.5, 0.2], eps=0.1) | kw
    with pytest.raises(ValueError, match=match):
        edgeworth_density_numeric(args.pop("x"), args.pop("order"), args.pop("lambdas"), **args)
