"""Hermite polynomials: against sympy, exact orthogonality, the tensor definition by derivatives,
the multivariate generating function (exact), Gauss-Hermite orthogonality in 2-D, bad input."""
import itertools
import math

import numpy as np
import pytest
import sympy as sp

from sft.symbolic import hermite_he, hermite_he_numeric, hermite_tensor

x = sp.Symbol("x", real=True)


def _normal_expectation(poly):
    """E[poly(Z)] exactly, E[Z^m] = (m-1)!! for even m, 0 for odd m."""
    return sum(c * (sp.factorial2(m - 1) if m % 2 == 0 else 0) for (m,), c in sp.Poly(poly, x).terms())


def test_he_matches_sympy_and_numeric():
    pts = np.linspace(-3, 3, 13)
    for k in range(12):
        assert sp.expand(hermite_he(k, x) - sp.hermite_prob(k, x)) == 0
        ref = np.array([float(sp.hermite_prob(k, p)) for p in pts])
        np.testing.assert_allclose(hermite_he_numeric(k, pts), ref, rtol=1e-12, atol=1e-9)


def test_he_orthogonality_exact():
    for j in range(9):
        for k in range(9):
            val = _normal_expectation(sp.expand(hermite_he(j, x) * hermite_he(k, x)))
            assert val == (sp.factorial(k) if j == k else 0)


def test_tensor_hermite_is_derivative_of_density():
    """H_{i1..ir} phi_K = (-1)^r d_{i1}..d_{ir} phi_K, exact, d = 2, r <= 4."""
    K = [[sp.Integer(2), sp.Rational(1, 2)], [sp.Rational(1, 2), sp.Integer(1)]]
    xs = sp.symbols("x1 x2", real=True)
    Kinv = sp.Matrix(K).inv()
    v = sp.Matrix(xs)
    Q = (v.T * Kinv * v)[0]
    phi = sp.exp(-Q / 2)
    for r in range(5):
        H = hermite_tensor(np.array(xs, dtype=object), K, r)
        for idx in itertools.product(range(2), repeat=r):
            deriv = sp.diff(phi, *[xs[i] for i in idx]) if r else phi
            ratio = sp.expand(sp.powsimp(sp.expand(deriv * sp.exp(Q / 2))))  # polynomial in x
            assert sp.expand((-1) ** r * ratio - H[idx]) == 0


def test_tensor_hermite_generating_function_exact():
    """phi_K(x - e s)/phi_K(x) = exp(e s.Kinv x - e^2 s.Kinv s/2) = sum_r e^r <s^(x)r, H_r>/r!."""
    K = [[sp.Integer(3), sp.Integer(-1)], [sp.Integer(-1), sp.Rational(1, 2)]]
    xs, ss, e = sp.symbols("x1 x2", real=True), sp.symbols("s1 s2"), sp.Symbol("e")
    Kinv = sp.Matrix(K).inv()
    s, v = sp.Matrix(ss), sp.Matrix(xs)
    gen = sp.series(sp.exp(e * (s.T * Kinv * v)[0] - e ** 2 * (s.T * Kinv * s)[0] / 2), e, 0, 6).removeO()
    for r in range(6):
        H = hermite_tensor(np.array(xs, dtype=object), K, r)
        contraction = sum(H[idx] * sp.Mul(*[ss[i] for i in idx])
                          for idx in itertools.product(range(2), repeat=r))
        assert sp.expand(gen.coeff(e, r) * math.factorial(r) - contraction) == 0


def test_tensor_hermite_reduces_to_he_and_is_symmetric():
    pts = np.linspace(-2, 2, 7)[:, None]
    for r in range(7):
        np.testing.assert_allclose(hermite_tensor(pts, [[1.0]], r).reshape(-1),
                                   hermite_he_numeric(r, pts[:, 0]),
                                   rtol=1e-12, atol=1e-12)
    H = hermite_tensor(np.random.default_rng(1).normal(size=(4, 3)), np.diag([1.0, 2.0, 0.5]) + 0.1, 3)
    for perm in itertools.permutations(range(3)):
        np.testing.assert_allclose(H, np.transpose(H, (0,) + tuple(p + 1 for p in perm)), rtol=0, atol=1e-13)


def test_tensor_hermite_orthogonality_gauss_hermite():
    """E[H_r (x) H_s] under N(0, K): 0 for r != s, sum over permutations of Kinv products for r = s
    (McCullagh 1987 sec. 5.6); 2-D Gauss-Hermite with 12 nodes per axis is exact for these degrees."""
    K = np.array([[1.5, 0.6], [0.6, 0.8]])
    Kinv = np.linalg.inv(K)
    z, w = np.polynomial.hermite_e.hermegauss(12)
    w = w / w.sum()
    Z = np.array(list(itertools.product(z, z)))
    W = np.prod(np.array(list(itertools.product(w, w))), axis=1)
    pts = Z @ np.linalg.cholesky(K).T
    Hs = [hermite_tensor(pts, K, r) for r in range(4)]
    for r in range(4):
        for q in range(4):
            E = np.tensordot(W, np.einsum("n...,n...->n...", Hs[r][(...,) + (None,) * q],
                                          Hs[q][(slice(None),) + (None,) * r]), axes=1)
            if r != q:
                np.testing.assert_allclose(E, 0, atol=1e-12)
                continue
            ref = np.zeros((2,) * (2 * r))
            for idx in itertools.product(range(2), repeat=2 * r):
                ref[idx] = sum(np.prod([Kinv[idx[a], idx[r + p[a]]] for a in range(r)])
                               for p in itertools.permutations(range(r)))
            np.testing.assert_allclose(E, ref, rtol=1e-11, atol=1e-12)


def test_bad_input():
    with pytest.raises(ValueError, match="positive definite"):
        hermite_tensor(np.zeros(2), [[1.0, 2.0], [2.0, 1.0]], 2)
    with pytest.raises(ValueError, match="symmetric"):
        hermite_tensor(np.zeros(2), [[1.0, 0.2], [0.0, 1.0]], 2)
    with pytest.raises(ValueError, match="x has shape"):
        hermite_tensor(np.zeros(3), np.eye(2), 2)
    for k in (-1, 1.5):
        with pytest.raises(ValueError, match="k="):
            hermite_he(k)
        with pytest.raises(ValueError, match="order="):
            hermite_tensor(np.zeros(2), np.eye(2), k)
