"""Symbolic derivations (derivations/edgeworth.py, derivations/phi4_two_point.py) re-run and asserted
equal to the library, and the Schwinger-Dyson series of sft.symbolic.schwinger_dyson against the diagram sum
and the exact Gaussian-moment series."""
import math
from fractions import Fraction

import numpy as np
import pytest
import scipy.integrate
import sympy as sp

import sft  # noqa: F401
from derivations import edgeworth as der_edgeworth
from derivations import phi4_two_point as der_phi4
from sft.symbolic import one_component_series
from sft.symbolic import edgeworth_polynomials
from sft.symbolic import moment_series


def test_edgeworth_polynomials_equal_derivation_to_order_n_minus_2():
    derived = der_edgeworth.density_polynomials(4)
    library = edgeworth_polynomials(4, lambdas=der_edgeworth.LAMBDAS, x=der_edgeworth.x)
    assert len(library) == 4
    for j, (d, lib) in enumerate(zip(derived, library), 1):
        assert sp.expand(d - lib) == 0, f"p_{j} differs"
    assert der_edgeworth.moment_check(derived)


def test_edgeworth_derivation_detects_a_wrong_coefficient():
    """The moment check is not vacuous: perturbing p_2 breaks it."""
    ps = der_edgeworth.density_polynomials(2)
    assert der_edgeworth.moment_check(ps, order=2)
    ps[1] = ps[1] + der_edgeworth.LAMBDAS[1] * der_edgeworth.x ** 4 / 1000
    assert not der_edgeworth.moment_check(ps, order=2)


def test_phi4_two_point_diagrams_equal_derivation():
    coeffs = der_phi4.two_point_series(3)
    assert coeffs == [1, sp.Rational(-1, 2), sp.Rational(2, 3), sp.Rational(-11, 8)]
    series = one_component_series(2, 3, kind="no_vacuum")
    g4 = sp.Symbol("g4")
    assert [series.coeff(g4, k) for k in range(4)] == coeffs
    table = der_phi4.diagram_table(3)
    assert [sum(1 for r in table if r[0] == k) for k in range(4)] == [1, 1, 3, 10]
    for k in range(4):
        assert sp.expand(sum(r[3] for r in table if r[0] == k) - coeffs[k] * der_phi4.lam ** k) == 0
    assert moment_series(2, 3) == coeffs


def _exact_moment_series(n, order, p):
    """<x^n> for S = x^2/2 + g x^p/p! as a formal series: ratio of sum_k (-g/p!)^k E[x^{n+pk}]/k!
    and sum_k (-g/p!)^k E[x^{pk}]/k! (Gaussian moments E x^m = (m-1)!!), by series division."""
    def gauss(m):
        return 0 if m % 2 else math.prod(range(m - 1, 0, -2))

    def term(m, k):
        return Fraction((-1) ** k * gauss(m + p * k), math.factorial(p) ** k * math.factorial(k))
    num = [term(n, k) for k in range(order + 1)]
    den = [term(0, k) for k in range(order + 1)]
    out = []
    for k in range(order + 1):  # den[0] = 1
        out.append(num[k] - sum(out[j] * den[k - j] for j in range(k)))
    return out


@pytest.mark.parametrize("n, order, degree", [(2, 40, 4), (4, 25, 4), (0, 10, 4), (1, 20, 3), (2, 20, 3),
                                              (3, 12, 6)])
def test_schwinger_dyson_equals_exact_gaussian_moment_series(n, order, degree):
    sd = moment_series(n, order, degree)
    exact = _exact_moment_series(n, order, degree)
    assert [Fraction(int(c.p), int(c.q)) for c in sd] == exact


@pytest.mark.parametrize("n, order, degree", [(2, 4, 4), (4, 3, 4), (1, 3, 3), (2, 4, 3), (3, 3, 3)])
def test_schwinger_dyson_equals_diagram_sum(n, order, degree):
    series = one_component_series(n, order, degrees=(degree,), kind="no_vacuum")
    g = sp.Symbol(f"g{degree}")
    assert [series.coeff(g, k) for k in range(order + 1)] == moment_series(n, order, degree)


@pytest.mark.parametrize("lam", [0.1, 0.2])
def test_phi4_series_against_exact_integral(lam):
    """Truncated at K <= optimal order ~ 3/(2 lam), the series differs from the exact <x^2> (scipy
    quad) by less than the first omitted term (the alternating-sign asymptotic series of phi^4)."""
    w = lambda x, m: x ** m * np.exp(-x ** 2 / 2 - lam * x ** 4 / 24)  # noqa: E731
    num = scipy.integrate.quad(w, -np.inf, np.inf, args=(2,), epsabs=0, epsrel=1e-13)[0]
    den = scipy.integrate.quad(w, -np.inf, np.inf, args=(0,), epsabs=0, epsrel=1e-13)[0]
    exact = num / den
    coeffs = [float(c) for c in moment_series(2, 20)]
    terms = [c * lam ** k for k, c in enumerate(coeffs)]
    assert all(terms[k] * terms[k + 1] < 0 for k in range(20))  # alternating
    for K in range(int(1.5 / lam) - 1):
        assert abs(sum(terms[:K + 1]) - exact) <= abs(terms[K + 1]), K


@pytest.mark.parametrize("kwargs", [dict(n=-1, order=3), dict(n=2, order=1.5), dict(n=2, order=-1),
                                    dict(n=2, order=3, degree=2), dict(n=True, order=3)])
def test_moment_series_rejects_bad_input(kwargs):
    name = next(k for k, v in kwargs.items() if v in (-1, 1.5, 2, True) and not (k == "n" and v == 2))
    with pytest.raises(ValueError, match=name):
        moment_series(**kwargs)


@pytest.mark.parametrize("module", [der_edgeworth, der_phi4])
def test_derivation_scripts_write_their_output(module, tmp_path, monkeypatch, capsys):
    """``python -m derivations.<name>`` end to end, into a temporary file; its own check reads True."""
    monkeypatch.setattr(module, "OUT", tmp_path / "out.md")
    module.main()
    text = (tmp_path / "out.md").read_text()
    assert text.rstrip().endswith("True.")


def test_edgeworth_phi4_figure_quick():
    """The figure's pieces: Edgeworth error falls with the order at the centre, and the phi^4 error
    is least at the optimal truncation order near 3/(2 lambda), growing beyond it."""
    from sft.workflow import discover
    fig = discover()["edgeworth_phi4"]
    params = dict(fig.quick)
    res = {label: fig.compute(**kw) for label, kw in fig.pieces(params).items()}
    e = res["edgeworth"]
    err = np.max(np.abs(e["approx"] - e["exact"]), axis=1)
    assert np.all(np.diff(err[:4]) < 0), err
    for lam in params["lambdas"]:
        r = res[f"phi4_lam{lam:g}"]
        rel = np.abs(r["partial"] - r["exact"]) / r["exact"]
        k_best = int(np.argmin(rel))
        assert abs(k_best - 1.5 / lam) <= 2, (lam, k_best)
        assert np.all(np.diff(rel[k_best + 2:]) > 0)  # diverges beyond the optimal order
    assert fig.plot(res, params) is not None
