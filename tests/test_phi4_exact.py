"""Tests of sft.symbolic.phi4_exact: the Bessel closed forms of zero-dimensional phi^4 theory against
mpmath quadrature of the defining integrals, Monte Carlo with error bars, and the diagram series.

Convention: S = x^2/2 + lam x^4/4!. Tolerances: quadrature 1e-13 relative (plus 1e-15/lam for <x^2>,
the cancellation stated in the module); Monte Carlo |z| < Z_MAX at a fixed seed; the asymptotic series
of a Stieltjes function brackets the exact value (error below the first omitted term, same sign).
"""
import mpmath
import numpy as np
import pytest
import sympy

from sft.conventions import Z_MAX
from sft.symbolic import moment_series, one_component_series, phi4_partition_function, phi4_second_moment

LAMS = (1e-3, 0.01, 0.1, 1.0, 3.0, 10.0, 100.0)


def _quadrature(lam, power):
    """int x^power exp(-x^2/2 - lam x^4/24) dx by mpmath at 30 digits (split where the integrand bends)."""
    with mpmath.workdps(30):
        lam = mpmath.mpf(lam)
        f = lambda x: x ** power * mpmath.exp(-x ** 2 / 2 - lam * x ** 4 / 24)  # noqa: E731
        return 2 * mpmath.quad(f, [0, 0.5, 1, 2, 4, 8, mpmath.inf])


def test_closed_forms_equal_quadrature():
    for lam in LAMS:
        Z = _quadrature(lam, 0)
        m2 = _quadrature(lam, 2) / Z
        assert float(phi4_partition_function(lam)) == pytest.approx(float(Z), rel=1e-13, abs=0)
        assert float(phi4_second_moment(lam)) == pytest.approx(float(m2), rel=1e-13 + 1e-15 / lam, abs=0)
    got = phi4_second_moment(np.array([[0.0, 1.0], [10.0, 0.1]]))
    assert got.shape == (2, 2) and got.dtype == np.float64 and got[0, 0] == 1.0
    assert float(phi4_partition_function(0.0)) == pytest.approx(np.sqrt(2 * np.pi), rel=1e-15)


def test_monte_carlo():
    """x ~ N(0, 1), w = exp(-lam x^4 / 24): Z / sqrt(2 pi) = E[w], <x^2> = E[x^2 w] / E[w] (ratio estimator,
    delta-method error bar). float64, seed 0, 2e5 samples. The Gaussian-plus-first-order guess 1 - lam/2 is
    rejected at lam = 1 (so the test can fail)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=200_000)
    n = x.size
    for lam in (0.3, 1.0):
        w = np.exp(-lam * x ** 4 / 24)
        mean_w, err_w = w.mean(), w.std() / np.sqrt(n)
        assert abs(mean_w - phi4_partition_function(lam) / np.sqrt(2 * np.pi)) / err_w < Z_MAX
        ratio = np.mean(x ** 2 * w) / mean_w
        err = np.std((x ** 2 - ratio) * w) / mean_w / np.sqrt(n)
        assert abs(ratio - phi4_second_moment(lam)) / err < Z_MAX
    assert abs(ratio - (1 - lam / 2)) / err > Z_MAX


def test_diagram_series_brackets_exact():
    """Partial sums S_K of the diagram series (kind "no_vacuum", equal to the Schwinger-Dyson series) at
    small lam: for a Stieltjes series the error exact - S_K has the sign of the first omitted term a_{K+1}
    lam^{K+1} and a smaller size. Same for log(Z / sqrt(2 pi)) and the connected vacuum diagrams."""
    g4, lam, K = sympy.Symbol("g4"), 0.05, 5
    series = one_component_series(2, K + 1, kind="no_vacuum")
    a = [series.coeff(g4, k) for k in range(K + 2)]
    assert a == moment_series(2, K + 1)
    exact = float(phi4_second_moment(lam))
    vac = one_component_series(0, K + 1, kind="connected")
    b = [vac.coeff(g4, k) for k in range(K + 2)]
    log_z = float(np.log(phi4_partition_function(lam) / np.sqrt(2 * np.pi)))
    for coeffs, value in ((a, exact), (b, log_z)):
        for k in range(1, K + 1):
            partial = sum(float(c) * lam ** j for j, c in enumerate(coeffs[:k + 1]))
            nxt = float(coeffs[k + 1]) * lam ** (k + 1)
            err = value - partial
            assert np.sign(err) == np.sign(nxt) and abs(err) < abs(nxt), (k, err, nxt)
            assert abs(err) > 1e-3 * abs(nxt)  # the bound is not vacuous: the next term is the error's scale


@pytest.mark.parametrize("bad", [-0.1, np.nan, np.inf, [1.0, -1.0]])
def test_bad_coupling(bad):
    for fn in (phi4_partition_function, phi4_second_moment):
        with pytest.raises(ValueError, match="lam contains .* lam >= 0"):
            fn(bad)
