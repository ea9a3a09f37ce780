"""Moments <-> cumulants: exact symbolic round trips, known laws (scipy.stats), exact multivariate
moments of sums of independent Gammas, Monte Carlo with error bars, bad input."""
import itertools
import math

import numpy as np
import pytest
import scipy.stats as st
import sympy as sp

from sft.conventions import Z_MAX
from sft.symbolic import (cumulant_symbols, cumulant_tensors_from_moments, cumulants_from_moments,
                           gamma_cumulants, moment_tensors_from_cumulants, moments_from_cumulants,
                           set_partitions)


def test_set_partitions_count_bell_numbers():
    assert [sum(1 for _ in set_partitions(r)) for r in range(1, 8)] == [sp.bell(r) for r in range(1, 8)]


def test_univariate_symbolic_round_trip_exact():
    kap = cumulant_symbols(8)
    mom = moments_from_cumulants(kap)
    assert cumulants_from_moments(mom) == kap
    # m_4 = k4 + 4 k3 k1 + 3 k2^2 + 6 k2 k1^2 + k1^4 (McCullagh 1987 (2.9))
    k1, k2, k3, k4 = kap[:4]
    assert sp.expand(mom[3] - (k4 + 4 * k3 * k1 + 3 * k2 ** 2 + 6 * k2 * k1 ** 2 + k1 ** 4)) == 0


def test_gamma_moments_are_rising_factorials_exact():
    a = sp.Symbol("a", positive=True)
    mom = moments_from_cumulants(gamma_cumulants(a, 7))
    assert all(sp.expand(m - sp.expand_func(sp.rf(a, r))) == 0 for r, m in enumerate(mom, start=1))


@pytest.mark.parametrize("law, cumulants", [
    (st.gamma(2.5, scale=0.7), [2.5 * 0.7 ** r * math.factorial(r - 1) for r in range(1, 9)]),
    (st.poisson(3.2), [3.2] * 8),
    (st.norm(0.4, 1.3), [0.4, 1.3 ** 2] + [0.0] * 6),
])
def test_numeric_against_scipy_moments(law, cumulants):
    m_scipy = np.array([law.moment(r) for r in range(1, 9)])
    np.testing.assert_allclose(moments_from_cumulants(cumulants), m_scipy, rtol=1e-12)
    np.testing.assert_allclose(cumulants_from_moments(m_scipy), cumulants, rtol=1e-9, atol=1e-9)


def test_gamma_cumulants_from_scipy_moments():
    k = cumulants_from_moments([st.gamma(3.0).moment(r) for r in range(1, 7)])
    np.testing.assert_allclose(k, [3.0 * math.factorial(r - 1) for r in range(1, 7)], rtol=1e-10)


def _gamma_sum_cumulants(shapes, A, order):
    """Cumulant tensors of X = A G, G_k ~ Gamma(shapes[k]) independent: sum_k a_k (r-1)! A_k^{(x) r}."""
    A = np.asarray(A, dtype=object)
    out = []
    for r in range(1, order + 1):
        tens = 0
        for k, a in enumerate(shapes):
            col = A[:, k]
            t = col
            for _ in range(r - 1):
                t = np.multiply.outer(t, col)
            tens = tens + a * math.factorial(r - 1) * t
        out.append(tens)
    return out


def test_multivariate_moments_of_gamma_sums_exact():
    """X = (G1 + G3, G2 + 2 G3): every moment of order <= 4 equals the exact expectation of the
    expanded polynomial in independent Gammas, E[G^p] = a (a+1) .. (a+p-1)."""
    shapes = [sp.Rational(3, 2), sp.Rational(5, 2), sp.Rational(2, 3)]
    A = [[1, 0, 1], [0, 1, 2]]
    g = sp.symbols("g1:4")
    Xs = [sum(A[i][k] * g[k] for k in range(3)) for i in range(2)]
    moms = moment_tensors_from_cumulants(_gamma_sum_cumulants(shapes, A, 4))
    for r in range(1, 5):
        for idx in itertools.product(range(2), repeat=r):
            poly = sp.Poly(sp.expand(sp.Mul(*[Xs[i] for i in idx])), *g)
            exact = sum(c * sp.Mul(*[sp.rf(shapes[k], p) for k, p in enumerate(powers)])
                        for powers, c in poly.terms())
            assert sp.simplify(moms[r - 1][idx] - exact) == 0


def test_multivariate_symbolic_round_trip_and_d1_reduction():
    kap = [np.array([sp.Symbol("a")]), np.array([[sp.Symbol("b")]]),
           np.full((1,) * 3, sp.Symbol("c"), dtype=object), np.full((1,) * 4, sp.Symbol("e"), dtype=object)]
    mom = moment_tensors_from_cumulants(kap)
    uni = moments_from_cumulants([sp.Symbol(s) for s in "abce"])
    assert [m.reshape(-1)[0] for m in mom] == uni
    back = cumulant_tensors_from_moments(mom)
    assert all(np.array_equal(b, k) for b, k in zip(back, kap))
    # d = 2, symmetric symbolic tensors of order <= 3
    sym = [np.array(sp.symbols("m1:3"), dtype=object)]
    s2 = sp.symbols("s11 s12 s22")
    sym.append(np.array([[s2[0], s2[1]], [s2[1], s2[2]]], dtype=object))
    t3 = np.empty((2, 2, 2), dtype=object)
    for idx in itertools.product(range(2), repeat=3):
        t3[idx] = sp.Symbol("t" + "".join(map(str, sorted(idx))))
    sym.append(t3)
    back = cumulant_tensors_from_moments(moment_tensors_from_cumulants(sym))
    assert all(np.array_equal(b, k) for b, k in zip(back, sym))


def test_multivariate_moments_vs_monte_carlo():
    """Numeric path: moments from exact cumulants of X = A G agree with sample moments (|z| < Z_MAX)."""
    shapes, A = [2.0, 3.0, 0.5], np.array([[1.0, 0.0, 1.0], [0.3, 1.0, -1.0]])
    kap = [np.asarray(t, dtype=np.float64) for t in _gamma_sum_cumulants(shapes, A.tolist(), 4)]
    moms = moment_tensors_from_cumulants(kap)
    rng = np.random.default_rng(0)
    x = rng.gamma(np.array(shapes), size=(200_000, 3)) @ A.T
    for r in range(1, 5):
        for idx in itertools.product(range(2), repeat=r):
            prod = np.prod(x[:, list(idx)], axis=1)
            z = (prod.mean() - moms[r - 1][idx]) / (prod.std(ddof=1) / np.sqrt(len(prod)))
            assert abs(z) < Z_MAX, (idx, z)
    # numeric round trip
    for b, k in zip(cumulant_tensors_from_moments(moms), kap):
        np.testing.assert_allclose(b, k, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("bad", [[], [[1.0, 2.0]], [1.0, np.nan], "abc"])
def test_bad_univariate_input(bad):
    with pytest.raises(ValueError, match="cumulants"):
        moments_from_cumulants(bad)


def test_bad_tensor_shapes_and_orders():
    with pytest.raises(ValueError, match=r"cumulants\[1\] has shape"):
        moment_tensors_from_cumulants([np.zeros(2), np.zeros((2, 3))])
    with pytest.raises(ValueError, match=r"moments\[2\] has shape"):
        cumulant_tensors_from_moments([np.zeros(2), np.eye(2), np.zeros((2, 2))])
    for order in (-1, 2.5, True):
        with pytest.raises(ValueError, match="order"):
            gamma_cumulants(1.0, order)
