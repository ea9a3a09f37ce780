"""Multi-input O(1/n^2) statistics (sft.finite.second_order_multi) against the single-input recursion, the
O(1/n) multi-input vertex, the exact one-hidden-layer cumulants, and Monte Carlo with error bars."""
import functools

import jax
import numpy as np
import pytest
import sympy as sp

from sft.conventions import Z_MAX
from sft.finite import (multi_input, neuron_cumulants, second_order_multi_input, second_order_multi_step,
                        second_order_single_input)
from sft.sim import jackknife, layer_kernels
from sft.sim.mixture_cumulants import output_cumulants_from_metrics, pair_sum

X3 = np.array([[1.0, 0.2], [-0.3, 0.9], [0.5, -0.7]])


@functools.lru_cache(maxsize=None)
def _multi(name, cw, cb, n_inputs, depth, widths=None):
    return second_order_multi_input(X3[:n_inputs], depth=depth, activation=name, C_W=cw, C_b=cb, widths=widths)


def test_library_step_equals_derived_tensor_recursion():
    """second_order_multi_step on generic symbols (P = 2 pair variables) equals the stored sympy derivation
    (derivations/second_order_multi.py, law of total cumulance with tensor indices) exactly."""
    from derivations import second_order_multi as dm
    state, tensors, r = dm.library_arguments()
    lib = second_order_multi_step(state, tensors, r, C_b=0)
    der = dm.load()
    for name, val in zip(dm.NAMES, lib):
        val = np.asarray(val, dtype=object)
        assert val.shape == der[name].shape, name
        assert all(sp.expand(a - b) == 0 for a, b in zip(val.ravel(), der[name].ravel())), name


@pytest.mark.parametrize("name, cw, cb, widths", [("tanh", 1.0, 0.1, (5, 7, 4)), ("relu", 2.0, 0.0, None)])
def test_one_input_equals_single_input_recursion(name, cw, cb, widths):
    m = second_order_multi_input(X3[:1], depth=3, activation=name, C_W=cw, C_b=cb, widths=widths)
    s = second_order_single_input(m.K[0, 0, 0], depth=3, activation=name, C_W=cw, C_b=cb, widths=widths)
    for key, power in (("K", 1), ("G1", 1), ("G2", 1), ("V", 2), ("V1", 2), ("U", 3)):
        np.testing.assert_allclose(getattr(m, key).reshape(4, -1)[:, 0], getattr(s, key), rtol=1e-10,
                                   atol=1e-12 * s.K.max() ** power, err_msg=key)


def test_first_order_part_equals_multi_input_vertex():
    m = _multi("tanh", 1.0, 0.1, 2, 2, (6, 4))
    ref = multi_input(X3[:2], depth=2, activation="tanh", C_W=1.0, C_b=0.1, widths=(6, 4))
    np.testing.assert_allclose(m.V, ref.V, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(m.G1, ref.G1, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("name, cw, cb, n_inputs", [("tanh", 1.0, 0.1, 2), ("relu", 2.0, 0.1, 3)])
def test_depth_one_equals_exact_one_layer_cumulants(name, cw, cb, n_inputs):
    """One hidden layer: G^(2) is a sum of n i.i.d. terms, so n^2 kappa_3(G) = U exactly and G2 = V1 = 0;
    kappa_6(f) = (1/n^2) sum over 15 pairings of U equals the set-partition cumulants of v sigma(z)."""
    m = _multi(name, cw, cb, n_inputs, 1)
    k = neuron_cumulants(X3[:n_inputs], 6, activation=name, C_W=cw, C_b=cb)
    np.testing.assert_allclose(pair_sum(m.U[-1], 3), k[5], rtol=1e-9, atol=1e-12 * np.abs(k[5]).max())
    np.testing.assert_allclose(pair_sum(m.V[-1], 2), k[3], rtol=1e-9, atol=1e-12 * np.abs(k[3]).max())
    assert np.all(m.G2 == 0) and np.all(m.V1 == 0)


def test_symmetries_and_input_permutation():
    m = _multi("tanh", 1.0, 0.1, 2, 2, (6, 4))
    U, V1 = m.U[-1], m.V1[-1]
    for perm in [(1, 0, 2, 3, 4, 5), (2, 3, 0, 1, 4, 5), (4, 5, 2, 3, 0, 1)]:
        np.testing.assert_allclose(U, U.transpose(perm), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(V1, V1.transpose(2, 3, 0, 1), rtol=1e-12, atol=1e-15)
    swapped = second_order_multi_input(X3[[1, 0]], depth=2, activation="tanh", C_W=1.0, C_b=0.1, widths=(6, 4))
    p = [1, 0]
    np.testing.assert_allclose(swapped.U[-1], U[np.ix_(p, p, p, p, p, p)], rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(swapped.G2[-1], m.G2[-1][np.ix_(p, p)], rtol=1e-10, atol=1e-14)


def test_two_inputs_against_monte_carlo():
    """Depth 2, widths (24, 24), tanh: the readout's kappa_4 and kappa_6 tensors on 2 inputs to O(1/n^2) vs
    30000 float64 networks (seed 21), conditional Gaussian estimator, jackknife errors, all entries |z| < Z_MAX."""
    n = 24
    m = _multi("tanh", 1.0, 0.1, 2, 2, (n, n))
    K, G1, G2, V, V1, U = (getattr(m, k)[-1] for k in ("K", "G1", "G2", "V", "V1", "U"))
    theory = np.concatenate([(K + G1 / n + G2 / n ** 2).ravel(), pair_sum(V / n + V1 / n ** 2, 2).ravel(),
                             pair_sum(U / n ** 2, 3).ravel()])
    np.testing.assert_allclose(np.concatenate([t.ravel() for t in m.output_cumulants(n)]), theory, rtol=1e-14)
    G = np.asarray(layer_kernels(jax.random.key(21), X3[:2], n_ensemble=30000, widths=[n, n], activation="tanh",
                                 C_W=1.0, C_b=0.1))[:, -1]
    est, err = jackknife(lambda g: np.concatenate([t.ravel() for t in output_cumulants_from_metrics(g)]), G)
    z = (est - theory) / err
    assert np.all(np.abs(z) < Z_MAX), np.abs(z).max()


@pytest.mark.parametrize("call, word", [
    (lambda: second_order_multi_input(np.eye(4), depth=2, activation="tanh", C_W=1.0, C_b=0.0), "N=4"),
    (lambda: second_order_multi_input(X3 * np.nan, depth=2, activation="tanh", C_W=1.0, C_b=0.0), "x1"),
    (lambda: second_order_multi_input(X3, depth=2, activation="tanh", C_W=1.0, C_b=0.0, widths=[3]), "widths"),
    (lambda: second_order_multi_input(np.array([[1.0, 0.0], [2.0, 0.0]]), depth=1, activation="relu", C_W=2.0,
                                      C_b=0.0), "K="),
    (lambda: second_order_multi_input(X3[:1], depth=1, activation="relu", C_W=2.0, C_b=0.0,
                                      widths=[4]).output_cumulants(5), "n"),
])
def test_bad_input(call, word):
    with pytest.raises(ValueError, match=word):
        call()
