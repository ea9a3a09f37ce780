"""Tests of sft.finite.deep_linear: exact moments vs Monte Carlo and vs finite networks; 1/n expansion vs the vertex."""
import jax
import numpy as np
import pytest
import sympy as sp

from sft.finite import deep_linear as dl
from sft.finite import vertex as fw
from sft.kernels import get_activation
from sft.conventions import Z_MAX
from sft.sim import jackknife
from sft.sim import ensemble_outputs, layer_kernels


def test_moments_against_exact_law_samples():
    widths, K1, cw = (3, 7, 5), 0.8, (1.0, 1.3, 0.7, 2.0)
    f = dl.sample_outputs(np.random.default_rng(0), 400_000, K1=K1, widths=widths, C_W=cw)
    for order in (2, 4):
        want = dl.output_moment(order, K1=K1, widths=widths, C_W=cw)
        est = np.mean(f ** order)
        err = np.std(f ** order, ddof=1) / np.sqrt(f.size)
        assert abs(est - want) < Z_MAX * err
    assert dl.output_moment(2, K1=K1, widths=widths, C_W=cw) == pytest.approx(K1 * 1.3 * 0.7 * 2.0, rel=1e-15)
    assert dl.output_moment(3, K1=K1, widths=widths) == 0.0


def test_exact_law_against_finite_linear_networks():
    """Networks from sft.sim.networks: E[f^4]/E[f^2]^2 - 3 and Var(G)/E[G]^2 of the readout metric."""
    widths, S = (4, 6), 40_000
    x = np.array([[0.6, -1.1]])
    G = np.asarray(layer_kernels(jax.random.key(3), x, n_ensemble=S, widths=widths, activation="linear",
                                 C_W=1.4, C_b=0.0))[:, -1, 0, 0]
    K = 1.4 ** 3 * np.sum(x ** 2) / 2
    assert abs(G.mean() - K) < Z_MAX * G.std(ddof=1) / np.sqrt(S)
    rel_var, err = jackknife(lambda g: np.var(g, ddof=1) / np.mean(g) ** 2, G)
    assert abs(rel_var - dl.metric_relative_variance(widths)) < Z_MAX * err
    f = np.asarray(ensemble_outputs(jax.random.key(4), x, n_ensemble=S, widths=widths, activation="linear",
                                    C_W=1.4, C_b=0.0))[:, 0, 0]
    m4 = dl.output_moment(4, K1=1.4 * np.sum(x ** 2) / 2, widths=widths, C_W=1.4)
    assert abs(np.mean(f ** 4) - m4) < Z_MAX * np.std(f ** 4, ddof=1) / np.sqrt(S)


def test_relu_exact_law_against_networks():
    """ReLU, C_W = 2: Var(G)/E[G]^2 = prod (1 + 5/n_l) - 1 (Binomial mixture), any width."""
    widths, S = (3, 5), 40_000
    x = np.array([[0.6, -1.1]])
    G = np.asarray(layer_kernels(jax.random.key(5), x, n_ensemble=S, widths=widths, activation="relu",
                                 C_W=2.0, C_b=0.0))[:, -1, 0, 0]
    K = 2.0 * np.sum(x ** 2) / 2
    m2, m2_err = np.mean(G ** 2), np.std(G ** 2, ddof=1) / np.sqrt(S)
    assert abs(m2 - K ** 2 * (1 + dl.metric_relative_variance(widths, a_plus=1.0, a_minus=0.0))) < Z_MAX * m2_err


def test_first_order_matches_vertex_recursion_and_remainder_is_second_order():
    """exact - first order = O(1/n^2): symbolic series, then the vertex recursion's kurtosis."""
    eps = sp.symbols("epsilon", positive=True)
    c = (sp.Integer(1), sp.Rational(3, 2), sp.Rational(1, 3))  # n_l = c_l / eps
    exact = 3 * (sp.prod([1 + 2 * eps / cl for cl in c]) - 1)
    series = sp.series(exact, eps, 0, 2).removeO()
    assert sp.simplify(series - 6 * eps * sum(1 / cl for cl in c)) == 0
    for n in (50, 100, 200, 400):
        widths = tuple(int(round(float(cl) * 3 * n)) for cl in c)
        out = fw.single_input(1.1, depth=3, activation="linear", C_W=0.9, C_b=0.0, widths=widths)
        first = fw.neuron_excess_kurtosis(out.V[-1], out.K[-1], widths[-1])
        assert first == pytest.approx(dl.first_order_excess_kurtosis(widths), rel=1e-12)
        remainder = dl.excess_kurtosis(widths) - first
        # expanding the product: remainder = 12 sum_{l<m} 1/(n_l n_m) + 24 / (n_1 n_2 n_3) = O(1/n^2)
        second = 12 * sum(1 / (widths[i] * widths[j]) for i in range(3) for j in range(i + 1, 3))
        assert remainder == pytest.approx(second + 24 / np.prod(widths), rel=1e-9)
        assert 0 < remainder * n ** 2 < 12 * sum(1 / float(c[i] * c[j] * 9) for i in range(3)
                                                 for j in range(i + 1, 3)) * 1.1


def test_scale_invariant_first_order_matches_recursion():
    widths = (20, 35, 15, 60)
    for slopes in ((1.0, 0.0), (1.0, -0.3)):
        a2 = (slopes[0] ** 2 + slopes[1] ** 2) / 2
        act = get_activation("scale_invariant", a_plus=slopes[0], a_minus=slopes[1])
        out = fw.single_input(0.7, depth=4, activation=act, C_W=1 / a2, C_b=0.0, widths=widths)
        first = fw.neuron_excess_kurtosis(out.V[-1], out.K[-1], widths[-1])
        assert first == pytest.approx(dl.first_order_excess_kurtosis(widths, a_plus=slopes[0],
                                                                     a_minus=slopes[1]), rel=1e-12)


@pytest.mark.parametrize("kwargs", [dict(widths=()), dict(widths=(3, 0)), dict(widths=(3,), K1=-1.0),
                                    dict(widths=(3,), C_W=(1.0, 1.0, 1.0))])
def test_bad_input(kwargs):
    args = dict(K1=1.0, widths=(3,), C_W=1.0) | kwargs
    with pytest.raises(ValueError):
        dl.output_moment(4, **args)
