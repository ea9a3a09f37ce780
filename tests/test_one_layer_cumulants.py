"""Exact one-hidden-layer cumulants (sft.finite.one_layer_cumulants) against the NNGP kernel, the O(1/n)
vertex, the exact ReLU/linear laws, closed forms vs quadrature, and Monte Carlo with error bars."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sft.conventions import Z_MAX
from sft.finite import (multi_input, neuron_cumulants, one_hidden_layer_cumulant, one_hidden_layer_cumulants,
                        relu_exact)
from sft.kernels import nngp
from sft.sim import jackknife, layer_kernels
from sft.sim.mixture_cumulants import output_cumulants_from_metrics, pair_sum

X3 = np.array([[1.0, 0.2], [-0.3, 0.9], [0.5, -0.7]])


@functools.lru_cache(maxsize=None)
def _neuron(name, cw, cb):
    return neuron_cumulants(X3, 6, activation=name, C_W=cw, C_b=cb)


def _cumulants(name, cw, cb, width):
    """kappa_r(f) = n^(1 - r/2) kappa_r(Y) + C_b [r = 2], checked against the public function once."""
    k = [width ** (1 - r / 2) * t for r, t in enumerate(_neuron(name, cw, cb), start=1)]
    k[1] = k[1] + cb
    return k


def test_public_function_scales_the_neuron_cumulants():
    k = one_hidden_layer_cumulants(X3[:2], 4, width=5, activation="erf", C_W=1.5, C_b=0.2)
    y = neuron_cumulants(X3[:2], 4, activation="erf", C_W=1.5, C_b=0.2)
    np.testing.assert_allclose(k[1], y[1] + 0.2, rtol=1e-15)
    np.testing.assert_allclose(k[3], y[3] / 5, rtol=1e-15)
    np.testing.assert_allclose(one_hidden_layer_cumulant(X3[:2], 4, width=5, activation="erf", C_W=1.5, C_b=0.2),
                               k[3], rtol=1e-15)


@pytest.mark.parametrize("name, cw, cb", [("relu", 2.0, 0.1), ("tanh", 1.2, 0.3)])
def test_two_and_four_point_equal_kernel_and_vertex(name, cw, cb):
    """kappa_2 = K^(2) (nngp, depth 1) and kappa_4 = (1/n)(V_(12)(34) + 2 perms), V = V^(2) of multi_input."""
    k = _cumulants(name, cw, cb, 7)
    np.testing.assert_allclose(k[1], nngp(X3, depth=1, activation=name, C_W=cw, C_b=cb), rtol=1e-12)
    x = X3[:2]   # the entries on inputs {0, 1}: multi_input's values depend only on the inputs involved
    V = multi_input(x, depth=1, activation=name, C_W=cw, C_b=cb, kernel_shift=False).V[-1]
    k4 = (V + V.transpose(0, 2, 1, 3) + V.transpose(0, 3, 2, 1)) / 7
    np.testing.assert_allclose(k[3][:2, :2, :2, :2], k4, rtol=1e-9, atol=1e-12 * np.abs(k4).max())
    assert np.all(k[0] == 0) and np.all(k[2] == 0)   # odd cumulants vanish by v -> -v, exactly


@pytest.mark.parametrize("name, slopes, cw", [("relu", (1, 0), 2.0), ("linear", (1, 1), 1.0), ("abs", (1, -1), 1.0)])
def test_single_input_equals_exact_scale_invariant_law(name, slopes, cw):
    """One input, C_b = 0: kappa_4/kappa_2^2 and kappa_6/kappa_2^3 equal the exact binomial/chi-square law."""
    k = one_hidden_layer_cumulants(np.array([[0.8, 0.6]]), 6, width=5, activation=name, C_W=cw, C_b=0.0)
    ratios = [k[3].item() / k[1].item() ** 2, k[5].item() / k[1].item() ** 3]
    np.testing.assert_allclose(ratios, relu_exact.output_cumulant_ratios([5], a_plus=slopes[0], a_minus=slopes[1]),
                               rtol=1e-12)


def test_linear_is_wishart():
    """Linear, C_b = 0: G = (C_W/n) sum_i z_i z_i^T is Wishart, so kappa_4 = (2 C_W^2/n)(K_ab K_cd + 2 perms)
    and kappa_6 = (8 C_W^3/n^2) (sum over the 15 pairings of K K K) (8 = 15 - 9 + 2 by partitions; one input:
    120/n^2, the deep-linear law)."""
    cw, n = 1.3, 4
    k = one_hidden_layer_cumulants(X3, 6, width=n, activation="linear", C_W=cw, C_b=0.0)
    K = cw * X3 @ X3.T / 2
    np.testing.assert_allclose(k[3], 2 * cw ** 2 / n * pair_sum(np.einsum("ab,cd->abcd", K, K), 2), rtol=1e-12)
    np.testing.assert_allclose(k[5], 8 * cw ** 3 / n ** 2 * pair_sum(np.einsum("ab,cd,ef->abcdef", K, K, K), 3),
                               rtol=1e-12)


def test_closed_forms_equal_quadrature():
    """ReLU through its closed forms vs the same function as a plain callable (quadrature only), order 6."""
    a = _cumulants("relu", 2.0, 0.1, 3)[5][:2, :2, :2, :2, :2, :2]
    b = one_hidden_layer_cumulant(X3[:2], 6, width=3, activation=lambda z: jnp.maximum(z, 0.0), C_W=2.0, C_b=0.1)
    np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-13 * np.abs(a).max())


def test_symmetric_tensor():
    k6 = _cumulants("tanh", 1.2, 0.3, 7)[5]
    for perm in [(1, 0, 2, 3, 4, 5), (5, 1, 2, 3, 4, 0), (2, 3, 4, 5, 0, 1)]:
        assert np.array_equal(k6, k6.transpose(perm))


@pytest.mark.parametrize("name, cw, cb", [("relu", 2.0, 0.1), ("tanh", 1.2, 0.3)])
def test_against_monte_carlo(name, cw, cb):
    """Width n = 3 (exact at any width): kappa_4 and kappa_6 on 3 inputs vs 40000 float64 networks (seed 7),
    conditional Gaussian estimator from the readout metrics, jackknife errors; all entries |z| < Z_MAX."""
    k = _cumulants(name, cw, cb, 3)
    G = np.asarray(layer_kernels(jax.random.key(7), X3, n_ensemble=40000, widths=[3], activation=name,
                                 C_W=cw, C_b=cb))[:, -1]
    est, err = jackknife(lambda g: np.concatenate([t.ravel() for t in output_cumulants_from_metrics(g)]), G)
    theory = np.concatenate([k[1].ravel(), k[3].ravel(), k[5].ravel()])
    z = (est - theory) / err
    assert np.all(np.abs(z) < Z_MAX), np.abs(z).max()


@pytest.mark.parametrize("call, word", [
    (lambda: one_hidden_layer_cumulant(X3, 1, width=3, activation="relu", C_W=2.0, C_b=0.0), "order"),
    (lambda: one_hidden_layer_cumulant(X3, 2.0, width=3, activation="relu", C_W=2.0, C_b=0.0), "order"),
    (lambda: one_hidden_layer_cumulant(X3, 4, width=0, activation="relu", C_W=2.0, C_b=0.0), "width"),
    (lambda: one_hidden_layer_cumulant(X3 * np.nan, 4, width=3, activation="relu", C_W=2.0, C_b=0.0), "x1"),
    (lambda: one_hidden_layer_cumulant(X3, 4, width=3, activation="relu", C_W=[2.0, 1.0, 1.0], C_b=0.0), "C_W"),
    (lambda: one_hidden_layer_cumulant(X3, 4, width=3, activation="relu", C_W=2.0, C_b=-1.0), "C_b"),
    (lambda: one_hidden_layer_cumulant(np.array([[1.0, 0.0], [2.0, 0.0]]), 4, width=3, activation="relu",
                                       C_W=2.0, C_b=0.0), "K="),   # parallel inputs, no bias: singular K
    (lambda: one_hidden_layer_cumulant(np.eye(5), 6, width=3, activation="tanh", C_W=1.0, C_b=0.0), "order"),
])
def test_bad_input(call, word):
    with pytest.raises(ValueError, match=word):
        call()
