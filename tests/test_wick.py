"""Wick's theorem (sft.symbolic.wick) against the pairing count, the moment generating function
(symbolic differentiation, an independent route) and Monte Carlo with an error bar."""
import math

import numpy as np
import pytest
import sympy

from sft.conventions import Z_MAX
from sft.symbolic import (double_factorial, gaussian_moment, gaussian_moment_of_linear_forms,
                      number_of_pairings, perfect_matchings)


@pytest.mark.parametrize("n", range(0, 13))
def test_pairings_are_all_distinct_perfect_matchings_and_number_2k_minus_1_double_factorial(n):
    ps = list(perfect_matchings(range(n)))
    expected = 0 if n % 2 else math.factorial(n) // (2 ** (n // 2) * math.factorial(n // 2))
    assert len(ps) == expected == number_of_pairings(n)
    assert len({frozenset(frozenset(p) for p in m) for m in ps}) == len(ps)
    assert all(sorted(i for pair in m for i in pair) == list(range(n)) for m in ps)


def _mgf_moment(vectors, cov):
    """prod_i (a_i . grad_s) exp(s^T C s / 2) at s = 0: the moment generating function route."""
    d = cov.rows
    s = sympy.symbols(f"s0:{d}")
    f = sympy.exp((sympy.Matrix([s]) * cov * sympy.Matrix(s))[0, 0] / 2)
    for a in vectors:
        f = sum(a[m] * sympy.diff(f, s[m]) for m in range(d))
    return sympy.expand(f.subs({si: 0 for si in s}))


@pytest.mark.parametrize("n", [2, 4, 6])
def test_symbolic_moment_of_linear_forms_equals_mgf_derivative(n):
    a, b, c = sympy.symbols("a b c")
    cov = sympy.Matrix([[a, c], [c, b]])
    rng = np.random.default_rng(n)
    vectors = [[int(v) for v in rng.integers(-2, 3, size=2)] for _ in range(n)]
    assert sympy.expand(gaussian_moment_of_linear_forms(vectors, cov) - _mgf_moment(vectors, cov)) == 0


def test_symbolic_vectors_and_odd_moments():
    u, v, c = sympy.symbols("u v c")
    # E[(u x0 + v x1)^2] = u^2 + v^2 + 2 u v c  for unit variances and correlation c
    got = gaussian_moment_of_linear_forms([[u, v], [u, v]], sympy.Matrix([[1, c], [c, 1]]))
    assert sympy.expand(got - (u ** 2 + v ** 2 + 2 * u * v * c)) == 0
    assert gaussian_moment_of_linear_forms([[1.0, 2.0]] * 3, np.eye(2)) == 0.0


@pytest.mark.parametrize("k", range(0, 6))
def test_univariate_moments_are_double_factorials(k):
    expected = double_factorial(2 * k - 1) * 2.5 ** k
    assert gaussian_moment([0] * (2 * k), [[2.5]]) == pytest.approx(expected, rel=1e-13)


def test_component_moment_equals_linear_form_moment_with_unit_vectors():
    rng = np.random.default_rng(1)
    m = rng.normal(size=(3, 3))
    cov = m @ m.T + 0.5 * np.eye(3)
    idx = [0, 2, 1, 1, 2, 2]
    assert gaussian_moment(idx, cov) == pytest.approx(
        gaussian_moment_of_linear_forms(np.eye(3)[idx], cov), rel=1e-13)


@pytest.mark.parametrize("n", [4, 6])
def test_numeric_moment_against_monte_carlo(n):
    rng = np.random.default_rng(2024 + n)
    m = rng.normal(size=(3, 3))
    cov = m @ m.T / 3 + 0.3 * np.eye(3)
    vectors = rng.normal(size=(n, 3))
    exact = gaussian_moment_of_linear_forms(vectors, cov)
    x = rng.multivariate_normal(np.zeros(3), cov, size=400_000)
    samples = np.prod(x @ vectors.T, axis=1)
    z = (samples.mean() - exact) / (samples.std(ddof=1) / np.sqrt(len(samples)))
    assert abs(z) < Z_MAX, (exact, samples.mean(), z)


@pytest.mark.parametrize("cov, match", [
    ([[1.0, 0.5], [0.0, 1.0]], "symmetric"),
    ([[1.0, 2.0], [2.0, 1.0]], "positive semi-definite"),
    ([1.0, 2.0], "square"),
    (sympy.Matrix([[1, 2], [3, 1]]), "symmetric"),
])
def test_bad_covariance_raises(cov, match):
    with pytest.raises(ValueError, match=match):
        gaussian_moment([0, 0], cov)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="indices"):
        gaussian_moment([0, 2], np.eye(2))
    with pytest.raises(ValueError, match="vectors"):
        gaussian_moment_of_linear_forms([[1.0, 2.0, 3.0]] * 2, np.eye(2))
    with pytest.raises(ValueError, match="n=-3"):
        double_factorial(-3)
    with pytest.raises(ValueError, match="n=1.5"):
        number_of_pairings(1.5)
