"""Single-input O(1/n^2) statistics (sft.finite.second_order) against the derivation, the exact deep-linear
and ReLU laws (sft.finite.relu_exact, sft.finite.deep_linear) and Monte Carlo with error bars."""
import functools

import jax
import numpy as np
import pytest
import sympy as sp

from derivations import second_order_recursion as dsr
from sft.conventions import Z_MAX
from sft.finite import deep_linear, relu_exact, second_order, single_input
from sft.kernels.activations import scale_invariant
from sft.sim import jackknife, layer_kernels
from sft.sim.mixture_cumulants import output_cumulants_from_metrics

_derived = functools.lru_cache(maxsize=None)(dsr.derive_second_order_step)


def test_library_step_equals_derived_recursion():
    """second_order_step on sympy symbols is exactly the recursion derived by the law of total cumulance."""
    out = _derived()
    K = dsr.K
    derivs = (dsr.m2(K), *(sp.diff(dsr.m2(K), K, j) for j in range(1, 5)),
              dsr.m4(K), sp.diff(dsr.m4(K), K), sp.diff(dsr.m4(K), K, 2), dsr.m6(K))
    state = (K, dsr.g1, dsr.g2, dsr.v, dsr.v1, dsr.u3)
    lib = second_order.second_order_step(state, derivs, dsr.r, C_W=dsr.C_W, C_b=dsr.C_b)
    for key, val in zip(("K", "G1", "G2", "V", "V1", "U"), lib):
        assert sp.expand(val - out[key]) == 0, key


def test_output_cumulants_from_metric_cumulants():
    """kappa_{2k}(f) = (2k-1)!! kappa_k(G) for f | G ~ N(0, G), from the cumulant generating function.
    (The derivation's law-of-total-cumulance cross-check runs in its main(); its output records it.)"""
    assert dsr.output_cumulants_from_metric() == {2: 1, 4: 3, 6: 15}


@pytest.mark.parametrize("name, cw, cb, widths", [("tanh", 1.0, 0.0, None), ("erf", 1.3, 0.1, [4, 8, 6]),
                                                  ("relu", 2.0, 0.2, [5, 3, 9])])
def test_first_order_part_equals_vertex_module(name, cw, cb, widths):
    out = second_order.second_order_single_input(0.8, depth=3, activation=name, C_W=cw, C_b=cb, widths=widths)
    ref = single_input(0.8, depth=3, activation=name, C_W=cw, C_b=cb, widths=widths)
    scale = ref.K.max()
    for a, b, power in ((out.K, ref.K, 1), (out.V, ref.V, 2), (out.G1, ref.G1, 1)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13 * scale ** power)


def test_gaussian_derivatives_against_erf_closed_form():
    """m2(K) = (2/pi) arcsin(2K / (1 + 2K)) (Williams 1997): its four derivatives by sympy vs the quadrature."""
    K = sp.Symbol("K", positive=True)
    m2 = 2 / sp.pi * sp.asin(2 * K / (1 + 2 * K))
    for k in (0.3, 1.7):
        num = second_order.gaussian_moment_derivatives(k, activation="erf")[:5]
        ref = [float(sp.diff(m2, K, j).subs(K, k)) for j in range(5)]
        np.testing.assert_allclose(num, ref, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("depth", [1, 2, 3, 4])
def test_deep_linear_exact_to_second_order(depth):
    """Linear: kappa_4/kappa_2^2 and kappa_6/kappa_2^3 of the exact law (chi-square products), expanded in 1/n,
    equal the recursion's coefficients; closed forms 6 L, 6 L (L - 1), 60 L (3 L - 1)."""
    out = second_order.second_order_single_input(1.3, depth=depth, activation="linear", C_W=1.0, C_b=0.0)
    series = relu_exact.cumulant_ratio_series([1] * depth, order=2, a_plus=1, a_minus=1)
    L = depth
    assert series == {4: [6 * L, 6 * L * (L - 1)], 6: [0, 60 * L * (3 * L - 1)]}
    np.testing.assert_allclose(out.kappa4[-1], [6 * L, 6 * L * (L - 1)], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(out.kappa6[-1], 60 * L * (3 * L - 1), rtol=1e-12)


def test_exact_law_moments_equal_deep_linear_module():
    """relu_exact at slopes (1, 1) (binomial/Stirling polynomials) equals deep_linear's chi-square moments."""
    for order in (2, 4, 6):
        a = relu_exact.output_moment(order, K1=1.3, widths=[3, 7, 5], C_W=[1.0, 0.9, 1.2, 0.7], a_plus=1, a_minus=1)
        b = deep_linear.output_moment(order, K1=1.3, widths=[3, 7, 5], C_W=[1.0, 0.9, 1.2, 0.7])
        np.testing.assert_allclose(a, b, rtol=1e-13)


def test_relu_exact_law_small_cases_by_hand():
    """One ReLU layer: E[Y^2]/E[Y]^2 = 1 + 5/n (nu = 5); E[Y^3] = E[(chi^2_B)^3] / n^3, B ~ Bin(n, 1/2),
    summed over B directly."""
    from math import comb
    n = 6
    e3 = sum(comb(n, b) * b * (b + 2) * (b + 4) for b in range(n + 1)) / 2 ** n / n ** 3
    np.testing.assert_allclose(relu_exact.layer_gain_moment(3, n), e3, rtol=1e-14)
    np.testing.assert_allclose(relu_exact.layer_gain_moment(2, n) / relu_exact.layer_gain_moment(1, n) ** 2,
                               1 + 5 / n, rtol=1e-14)
    m = sp.Symbol("m", positive=True)   # the exact rational function of the width
    assert sp.simplify(relu_exact.layer_gain_moment(2, m) - (sp.Rational(1, 4) + sp.Rational(5, 4) / m)) == 0


@pytest.mark.parametrize("slopes, factors", [((1, 0), [1]), ((1, 0), [1, 1]), ((1, 0), [1, 1, 1, 1]),
                                             ((1, 0), [2, 1, 3]), ((1, -1), [1, 2]), ((1, 0.5), [1, 1, 1])])
def test_scale_invariant_exact_series_equals_recursion(slopes, factors):
    """ReLU (abs, leaky) at C_b = 0: the exact law's 1/n series to O(1/n^2) (widths n_l = rho_l n) equals the
    recursion's kappa_4 and kappa_6 coefficients (normalized by n_L = rho_L n)."""
    ap, am = slopes
    cw = 2.0 / (ap ** 2 + am ** 2)
    widths = [10 * f for f in factors]
    out = second_order.second_order_single_input(0.7, depth=len(factors), activation=scale_invariant(ap, am),
                                                 C_W=cw, C_b=0.0, widths=widths)
    series = relu_exact.cumulant_ratio_series(factors, order=2, a_plus=ap, a_minus=am)
    rl = factors[-1]
    a1, a2 = out.kappa4[-1]
    np.testing.assert_allclose([a1 / rl, a2 / rl ** 2, out.kappa6[-1] / rl ** 2],
                               [float(series[4][0]), float(series[4][1]), float(series[6][1])], rtol=1e-11)
    assert series[6][0] == 0


def test_cumulant_ratios_method():
    out = second_order.second_order_single_input(1.0, depth=2, activation="tanh", C_W=1.0, C_b=0.0,
                                                 widths=[30, 20])
    (a1, a2), b2 = out.kappa4[-1], out.kappa6[-1]
    np.testing.assert_allclose(out.cumulant_ratios(20), [a1 / 20 + a2 / 400, b2 / 400], rtol=1e-14)


def _quadratic_exact_series(depth, K1, C_W, C_b):
    """Exact 1/n series of E[G], Var G, kappa_3(G) of the readout for sigma(z) = z^2, equal widths n.

    Given G, sigma(z_j)^2 = G^2 u_j^4, so G' = C_b + C_W G^2 Y with Y = (1/n) sum_j u_j^4 independent of G:
    E[G'^k] = sum_i C(k, i) C_b^(k-i) C_W^i E[G^(2i)] E[Y^i], with kappa_m(Y) = n^(1-m) kappa_m(u^4) and
    E[u^(4m)] = (4m-1)!!. Exact rational arithmetic in eps = 1/n, truncated at eps^2 (enough for cumulants
    to eps^2)."""
    from sft.symbolic.cumulants import cumulants_from_moments, moments_from_cumulants
    eps = sp.Symbol("eps", positive=True)
    trunc = lambda e: sum(sp.expand(e).coeff(eps, k) * eps ** k for k in range(3))  # noqa: E731
    J = 3 * 2 ** depth
    mom = [sp.Integer(1)] + [K1 ** j for j in range(1, J + 1)]   # G^(1) = K1 is fixed
    for _ in range(depth):
        J //= 2
        kY = [eps ** (m - 1) * k for m, k in enumerate(
            cumulants_from_moments([sp.factorial2(4 * m - 1) for m in range(1, J + 1)]), start=1)]
        mY = [sp.Integer(1)] + [trunc(m) for m in moments_from_cumulants(kY)]
        mom = [sp.Integer(1)] + [trunc(sum(sp.binomial(k, i) * C_b ** (k - i) * C_W ** i * mom[2 * i] * mY[i]
                                          for i in range(k + 1))) for k in range(1, J + 1)]
    kap = [sp.expand(trunc(c)) for c in cumulants_from_moments(mom[1:4])]
    assert kap[1].coeff(eps, 0) == 0 and kap[2].coeff(eps, 0) == 0 and kap[2].coeff(eps, 1) == 0
    return [float(kap[0].coeff(eps, k)) for k in range(3)] + [float(kap[1].coeff(eps, k)) for k in (1, 2)] \
        + [float(kap[2].coeff(eps, 2))]


@pytest.mark.parametrize("depth", [2, 3])
def test_quadratic_activation_exact_law(depth):
    """sigma(z) = z^2 with biases (K, G1, G2, V, V1, U all nonzero at depth 3): the recursion (quadrature of
    Hermite-weighted moments) equals the exact law's 1/n series (independent: moments of G^2-products)."""
    ex = _quadratic_exact_series(depth, sp.Rational(7, 10), sp.Rational(1, 2), sp.Rational(1, 10))
    out = second_order.second_order_single_input(0.7, depth=depth, activation=lambda z: z * z, C_W=0.5, C_b=0.1)
    got = [getattr(out, k)[-1] for k in ("K", "G1", "G2", "V", "V1", "U")]
    np.testing.assert_allclose(got, ex, rtol=1e-11, atol=1e-12 * ex[0])   # atol: G2 = 0 at depth 2


# ----------------------------------------------------------------------------- Monte Carlo
def _ratios(G):
    k2, k4, k6 = output_cumulants_from_metrics(G)
    return np.array([k4[0, 0, 0, 0] / k2[0, 0] ** 2, k6[(0,) * 6] / k2[0, 0] ** 3])


def _metrics(name, cw, cb, widths, S, seed):
    x = np.array([[1.0, 0.0]])   # K^(1) = C_b + C_W / 2
    return np.asarray(layer_kernels(jax.random.key(seed), x, n_ensemble=S, widths=widths, activation=name,
                                    C_W=cw, C_b=cb))[:, -1]


def test_relu_exact_law_against_monte_carlo():
    """The exact finite-n ReLU law (depth 2, n = 6: far from the 1/n regime) vs float64 ensembles, conditional
    Gaussian estimator (kappa_4 = 3 Var G, kappa_6 = 15 kappa_3(G) of the readout metric), jackknife errors."""
    G = _metrics("relu", 2.0, 0.0, [6, 6], 40000, seed=3)
    est, err = jackknife(_ratios, G)
    z = (est - relu_exact.output_cumulant_ratios([6, 6])) / err
    assert np.all(np.abs(z) < Z_MAX), (est, err, z)


@pytest.mark.parametrize("name, cw, cb", [("tanh", 1.0, 0.0), ("erf", 1.0, 0.1), ("relu", 2.0, 0.1)])
def test_depth_one_is_exact_against_monte_carlo(name, cw, cb):
    """Depth 1: G^(2) is a sum of n i.i.d. terms, so kappa_4/kappa_2^2 and kappa_6/kappa_2^3 have no terms beyond
    1/n and 1/n^2: the second order is exact at n = 4 (float64 ensembles, seed 5)."""
    out = second_order.second_order_single_input(cb + cw / 2, depth=1, activation=name, C_W=cw, C_b=cb)
    G = _metrics(name, cw, cb, [4], 40000, seed=5)
    est, err = jackknife(_ratios, G)
    z = (est - np.array(out.cumulant_ratios(4))) / err
    assert np.all(np.abs(z) < Z_MAX), (est, err, z)


@pytest.mark.parametrize("name, cw, cb, depth", [("tanh", 1.0, 0.0, 2)])
def test_six_point_coefficient_against_monte_carlo_fit(name, cw, cb, depth):
    """n^2 kappa_6/kappa_2^3 = b2 + b3/n + ..: fit b2 + b3/n to float64 ensembles at n = 8, 16, 32 (conditional
    Gaussian estimator, jackknife errors) and compare b2 with 15 U / K^3 of the recursion."""
    from sft.sim import fit_inverse_width
    ns, vals, errs = [8, 16, 32], [], []
    for i, n in enumerate(ns):
        est, err = jackknife(_ratios, _metrics(name, cw, cb, [n] * depth, 10000, seed=11 + i))
        vals.append(n ** 2 * est[1])
        errs.append(n ** 2 * err[1])
    c, c_err, chi2 = fit_inverse_width(ns, vals, errs, powers=(0, 1))
    b2 = second_order.second_order_single_input(cb + cw / 2, depth=depth, activation=name, C_W=cw, C_b=cb).kappa6[-1]
    assert abs(c[0] - b2) < Z_MAX * c_err[0], (c, c_err, b2, chi2)


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("call, word", [
    (lambda: second_order.second_order_single_input(float("nan"), depth=2, activation="relu", C_W=2.0, C_b=0.0), "K1"),
    (lambda: second_order.second_order_single_input(-1.0, depth=2, activation="relu", C_W=2.0, C_b=0.0), "K1"),
    (lambda: second_order.second_order_single_input(1.0, depth=2, activation="relu", C_W=2.0, C_b=0.0,
                                                    widths=[4, 5, 6]), "widths"),
    (lambda: second_order.second_order_single_input(1.0, depth=0, activation="relu", C_W=2.0, C_b=0.0), "depth"),
    (lambda: second_order.second_order_single_input(1.0, depth=2, activation="relu", C_W=[2.0, 1.0], C_b=0.0), "C_W"),
    (lambda: second_order.second_order_single_input(1.0, depth=1, activation="relu", C_W=2.0, C_b=0.0,
                                                    widths=[4]).cumulant_ratios(5), "n"),
    (lambda: second_order.gaussian_moment_derivatives(0.0, activation="tanh"), "K"),
    (lambda: relu_exact.output_moment(3, K1=1.0, widths=[4]), "order"),
    (lambda: relu_exact.output_moment(0, K1=1.0, widths=[4]), "order"),
    (lambda: relu_exact.output_moment(4, K1=float("nan"), widths=[4]), "K1"),
    (lambda: relu_exact.output_moment(4, K1=1.0, widths=[4, 0]), "widths"),
    (lambda: relu_exact.output_cumulant_ratios([4], max_order=5), "max_order"),
    (lambda: relu_exact.output_cumulant_ratios([4], a_plus=float("nan")), "a_plus"),
    (lambda: relu_exact.cumulant_ratio_series([1, -1]), "width_factors"),
    (lambda: relu_exact.cumulant_ratio_series([1], max_order=2), "max_order"),
])
def test_bad_input(call, word):
    with pytest.raises(ValueError, match=word):
        call()
