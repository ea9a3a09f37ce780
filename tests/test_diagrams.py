"""Feynman diagrams of zero-dimensional field theory (sft.symbolic.feynman) against independent routes:
exact perturbative coefficients from Gaussian moments of the expanded integrand, numerical integrals
(scipy.integrate.quad), brute-force Wick enumeration, a Schwinger-Dyson recursion, the phi^4 vacuum
sequence (4k-1)!!/((4!)^k k!), Dyson's equation for the 1PI subset, and, for a 3-component theory with
tensor couplings, the Wick expansion of sft.symbolic.wick and importance-sampling Monte Carlo."""
import itertools
import math
from fractions import Fraction

import matplotlib
import numpy as np
import pytest
import scipy.integrate
import sympy

from sft.conventions import Z_MAX
from sft.symbolic.feynman import (contraction_multiplicity, correlator, diagram_key, diagrams, draw, evaluate,
                          one_component_series, propagator, symbolic_value, wick_contraction_counts)
from sft.symbolic import double_factorial, perfect_matchings

matplotlib.use("Agg")
g3, g4, t = sympy.symbols("g3 g4 t")


def _truncate(expr, order):
    """Terms of total degree <= order in (g3, g4)."""
    poly = sympy.Poly(sympy.expand(expr), g3, g4)
    return sum((c * g3 ** i * g4 ** j for (i, j), c in poly.terms() if i + j <= order), sympy.Integer(0))


def _exact_numerator(m, order, cubic=True):
    """Z <x^m> / Z_0 to total order `order`, from expanding e^{-V} under the Gaussian integral:
    sum (-g3)^a (-g4)^b / (a! b! 3!^a 4!^b) (m + 3a + 4b - 1)!!  (zero for odd m + 3a + 4b)."""
    out = sympy.Integer(0)
    for a in range(order + 1 if cubic else 1):
        for b in range(order + 1 - a):
            p = m + 3 * a + 4 * b
            if p % 2 == 0:
                out += sympy.Rational(double_factorial(p - 1), math.factorial(a) * math.factorial(b)
                                      * 6 ** a * 24 ** b) * (-g3) ** a * (-g4) ** b
    return out


def _exact_series(f, order):
    """Series of f(g3, g4) to total order `order` (g -> t g, expand in t)."""
    s = sympy.series(f.subs({g3: t * g3, g4: t * g4}, simultaneous=True), t, 0, order + 1).removeO()
    return sympy.expand(s.subs(t, 1))


# ---------------------------------------------------------------- counting and symmetry factors

@pytest.mark.parametrize("k", range(0, 6))
def test_phi4_vacuum_inverse_symmetry_factors_sum_to_known_sequence(k):
    total = sum(Fraction(1, d.symmetry_factor) for d in diagrams(0, k, kind="all"))
    assert total == Fraction(double_factorial(4 * k - 1), 24 ** k * math.factorial(k))


@pytest.mark.parametrize("n_external, vertex_degrees", [
    (2, (4, 4)), (0, (4, 4, 4)), (4, (4, 4)), (0, (3, 3, 3, 3)), (1, (3, 4, 4)), (0, (3, 3, 6)),
])
def test_symmetry_factors_against_brute_force_wick_enumeration(n_external, vertex_degrees):
    counts = wick_contraction_counts(n_external, vertex_degrees)
    order = len(vertex_degrees)
    found = [d for d in diagrams(n_external, order, set(vertex_degrees), kind="all")
             if sorted(d.vertex_degrees) == sorted(vertex_degrees)]
    assert sum(counts.values()) == double_factorial(n_external + sum(vertex_degrees) - 1)
    assert len(found) == len(counts)
    for d in found:
        assert counts[diagram_key(d)] == contraction_multiplicity(d)


@pytest.mark.parametrize("k", range(0, 5))
def test_loop_number_of_connected_phi4_two_point_diagrams_is_the_order(k):
    """Euler: E = 2k + 1 propagators, k + 2 nodes, one component, so L = E - N + 1 = k."""
    assert all(d.n_loops == k and len(d.edges) == 2 * k + 1 for d in diagrams(2, k, kind="connected"))


def test_numeric_one_component_evaluation_equals_symbolic_value():
    A, lam3, lam4 = 2.0, 0.3, 0.7
    for d in diagrams(2, 3, (3, 4), kind="all"):
        sym = symbolic_value(d, sympy.Rational(1, 2)).subs({g3: lam3, g4: lam4})
        assert evaluate(d, A, {3: lam3, 4: lam4}) == pytest.approx(float(sym), rel=1e-13)


# ---------------------------------------------------------------- one-component series, exact

@pytest.mark.parametrize("cubic, order", [(False, 5), (True, 4)])
def test_series_equal_exact_coefficients_of_the_expanded_integrand(cubic, order):
    degrees = (3, 4) if cubic else (4,)
    Z = _exact_numerator(0, order, cubic)
    assert sympy.expand(one_component_series(0, order, degrees, "all") - Z) == 0
    assert sympy.expand(one_component_series(0, order, degrees, "connected")
                        - _exact_series(sympy.log(Z), order)) == 0
    x1 = _exact_series(_exact_numerator(1, order + 1, cubic) / Z, order)
    x2 = _exact_series(_exact_numerator(2, order + 1, cubic) / Z, order)
    assert sympy.expand(one_component_series(2, order, degrees, "no_vacuum") - x2) == 0
    assert sympy.expand(one_component_series(2, order, degrees, "connected")
                        - _truncate(x2 - x1 ** 2, order)) == 0
    if cubic:
        assert sympy.expand(one_component_series(1, order, degrees, "no_vacuum") - x1) == 0


def test_schwinger_dyson_recursion_for_phi4_moments():
    """<x^{n+1}> = n <x^{n-1}> - (lambda/6) <x^{n+3}> (integration by parts), order by order:
    c[m][j] = (2m - 1) c[m-1][j] - c[m+1][j-1] / 6 for <x^{2m}> = sum_j c[m][j] lambda^j."""
    order, mmax = 5, 12
    c = [[Fraction(int(m == 0 and j == 0)) for j in range(order + 1)] for m in range(mmax + order + 2)]
    for j in range(order + 1):
        for m in range(1, mmax + order + 1 - j):
            c[m][j] = (2 * m - 1) * c[m - 1][j] - (c[m + 1][j - 1] / 6 if j else 0)
    for n, m, order in ((2, 1, 5), (4, 2, 4)):
        series = sympy.Poly(one_component_series(n, order, (4,), "no_vacuum"), g4)
        assert [series.coeff_monomial(g4 ** j) for j in range(order + 1)] == \
            [sympy.Rational(v.numerator, v.denominator) for v in c[m][:order + 1]]


def test_one_pi_subset_satisfies_dyson_equation():
    """<x x>_c = 1 / (A - Sigma) with Sigma the amputated 1PI two-point series (phi^4, A = 1)."""
    order = 5
    sigma = one_component_series(2, order, (4,), "1pi")  # external propagators are 1 at A = 1
    lam = sympy.Symbol("g4")
    dyson = sympy.series(1 / (1 - sigma.subs(lam, t * lam)), t, 0, order + 1).removeO().subs(t, 1)
    assert sympy.expand(dyson - one_component_series(2, order, (4,), "connected")) == 0
    assert len(diagrams(2, 2, kind="1pi")) == 2  # sunset and double scoop; not the tadpole chain


# ---------------------------------------------------------------- one-component series vs quad

def _quad_moments(lam3, lam4):
    def w(x):
        return np.exp(-x * x / 2 - lam3 * x ** 3 / 6 - lam4 * x ** 4 / 24)
    z = scipy.integrate.quad(w, -np.inf, np.inf, epsabs=0, epsrel=1e-13)[0]
    x1 = scipy.integrate.quad(lambda x: x * w(x), -np.inf, np.inf, epsabs=0, epsrel=1e-13)[0] / z
    x2 = scipy.integrate.quad(lambda x: x * x * w(x), -np.inf, np.inf, epsabs=0, epsrel=1e-13)[0] / z
    return np.log(z / np.sqrt(2 * np.pi)), x2 - x1 ** 2


@pytest.mark.parametrize("lam3, lam4", [(0.0, 0.05), (0.05, 0.05)])
def test_partial_sums_against_numerical_integral_with_predicted_truncation_error(lam3, lam4):
    """|exact - partial sum to order K| is the first omitted term up to a factor 1 +- 0.3 (at these
    small couplings each term is ~ 10x the next)."""
    degrees = (3, 4) if lam3 else (4,)
    exact = _quad_moments(lam3, lam4)
    K = 4
    for n, ex in zip((0, 2), exact):
        terms = [float(sum((symbolic_value(d, 1) for d in diagrams(n, k, degrees, "connected")),
                           sympy.Integer(0)).subs({g3: lam3, g4: lam4})) for k in range(K + 2)]
        for k in range(1, K + 1):
            err, nxt = ex - sum(terms[:k + 1]), terms[k + 1]
            assert 0.7 < err / nxt < 1.3, (n, k, err, nxt)


# ---------------------------------------------------------------- tensor couplings, d = 3

def _random_theory(seed=0, d=3, scale=1.0):
    rng = np.random.default_rng(seed)
    m = rng.normal(size=(d, d))
    A = m @ m.T / d + np.eye(d)
    u = rng.normal(size=(5, d))
    quartic = scale * 0.02 * np.einsum("ra,rb,rc,rd->abcd", u, u, u, u)  # >= 0 quartic form
    c = rng.normal(size=(d,) * 3)
    cubic = scale * 0.05 * sum(np.transpose(c, p) for p in itertools.permutations(range(3))) / 6
    return A, cubic, quartic


def _moment_tensor(P, n):
    """E0[x_{a1} .. x_{an}] as a (d,)*n array: Wick's sum over pairings, one outer product each."""
    out = 0.0
    for pairing in perfect_matchings(range(n)):
        ops = [a for pair in pairing for a in (P, list(pair))]
        out = out + np.einsum(*ops, list(range(n)))
    return out


def test_tensor_two_point_function_against_wick_expansion():
    """<x_i x_j> to first order in g4 and to second order in g3, from expanding e^{-V}:
    N_ij = E0[x_i x_j (1 - V + V^2/2)], Z/Z0 = E0[1 - V + V^2/2], moments by sft.symbolic.wick."""
    A, cubic, quartic = _random_theory()
    P = propagator(A)
    M2, M4, M6, M8 = (_moment_tensor(P, n) for n in (2, 4, 6, 8))
    first_g4 = (M2 - np.einsum("abcd,ijabcd->ij", quartic, M6) / 24
                + M2 * np.einsum("abcd,abcd", quartic, M4) / 24)
    assert np.allclose(correlator(2, 1, A, {4: quartic}, "no_vacuum"), first_g4, rtol=1e-12, atol=0)
    z3 = np.einsum("abc,def,abcdef", cubic, cubic, M6) / 72
    second_g3 = M2 + np.einsum("abc,def,ijabcdef->ij", cubic, cubic, M8) / 72 - M2 * z3
    assert np.allclose(correlator(2, 2, A, {3: cubic}, "no_vacuum"), second_g3, rtol=1e-12, atol=0)
    logz = correlator(0, 2, A, {3: cubic}, "connected")
    assert np.isclose(logz, z3, rtol=1e-12, atol=0)


def test_tensor_two_point_function_against_importance_sampling_monte_carlo():
    """<x_i x_j>_c - P_ij by self-normalised importance sampling from N(0, P) with weights e^{-V}
    (error bar by the delta method) against diagrams through third order (cubic + quartic); the
    free theory (zero correction) must be rejected by the same test."""
    A, cubic, quartic = _random_theory(seed=3)
    P = propagator(A)
    theory = correlator(2, 3, A, {3: cubic, 4: quartic}, "connected") - P
    rng = np.random.default_rng(7)
    x = rng.multivariate_normal(np.zeros(3), P, size=400_000)
    V = (np.einsum("abc,na,nb,nc->n", cubic, x, x, x) / 6
         + np.einsum("abcd,na,nb,nc,nd->n", quartic, x, x, x, x) / 24)
    w = np.exp(-V)
    mean = (w[:, None] * x).sum(0) / w.sum()
    z_theory, z_free = [], []
    for i, j in itertools.combinations_with_replacement(range(3), 2):
        f = (x[:, i] - mean[i]) * (x[:, j] - mean[j]) - P[i, j]
        est = np.sum(w * f) / np.sum(w)
        err = np.std(w * (f - est), ddof=1) / np.mean(w) / np.sqrt(len(w))
        z_theory.append((est - theory[i, j]) / err)
        z_free.append(est / err)
    assert max(np.abs(z_theory)) < Z_MAX, z_theory
    assert max(np.abs(z_free)) > Z_MAX, z_free


# ---------------------------------------------------------------- export, drawing, bad input

def test_export_and_drawing(tmp_path):
    import matplotlib.pyplot as plt
    ds = diagrams(2, 2, kind="connected")
    fig, axes = plt.subplots(1, len(ds), figsize=(3 * len(ds), 3))
    for d, ax in zip(ds, axes):
        degree = [0] * (d.n_external + d.n_vertices)
        for u, w in d.edges:
            degree[u] += 1
            degree[w] += 1
        assert degree == [1] * d.n_external + list(d.vertex_degrees)
        draw(d, ax)
        assert len(ax.patches) == len(d.edges)  # one arc or loop per propagator
    fig.savefig(tmp_path / "phi4_two_point_order2.png")
    plt.close(fig)


@pytest.mark.parametrize("kwargs, match", [
    (dict(n_external=2, order=-1), "order=-1"),
    (dict(n_external=2, order=1.5), "order=1.5"),
    (dict(n_external=-2, order=1), "n_external=-2"),
    (dict(n_external=2, order=1, degrees=(0,)), "degrees"),
    (dict(n_external=2, order=1, kind="tree"), "kind='tree'"),
])
def test_bad_diagram_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        diagrams(**kwargs)


def test_bad_theory_raises():
    A, cubic, quartic = _random_theory()
    d = diagrams(2, 1, (4,))[0]
    with pytest.raises(ValueError, match="singular or not positive definite"):
        evaluate(d, np.diag([1.0, 0.0, 1.0]), {4: quartic})
    with pytest.raises(ValueError, match="singular or not positive definite"):
        evaluate(d, np.diag([1.0, -1.0, 1.0]), {4: quartic})
    with pytest.raises(ValueError, match="symmetric"):
        evaluate(d, A + np.triu(np.ones((3, 3)), 1), {4: quartic})
    bad = quartic.copy()
    bad[0, 1, 2, 2] += 0.1
    with pytest.raises(ValueError, match="not a symmetric tensor"):
        evaluate(d, A, {4: bad})
    with pytest.raises(ValueError, match="shape"):
        evaluate(d, A, {4: quartic[0]})
    with pytest.raises(ValueError, match="needs degrees"):
        evaluate(d, A, {3: cubic})
    with pytest.raises(ValueError, match="A=-1"):
        one_component_series(2, 1, A=-1)
