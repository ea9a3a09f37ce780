import numpy as np
import pytest

import sft
from sft.kernels import nngp, ntk


def test_relu_one_layer_arccos():
    x = np.array([[1.0, 0.0], [0.0, 1.0]])
    k = nngp(x, depth=1, activation="relu", C_W=2.0, C_b=0.0)
    np.testing.assert_allclose(k, [[1.0, 1 / np.pi], [1 / np.pi, 1.0]], rtol=1e-14)


def test_linear_network_is_product_of_cw():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 3))
    k = nngp(x, depth=3, activation="linear", C_W=1.5, C_b=0.0)
    np.testing.assert_allclose(k, 1.5 ** 4 * x @ x.T / 3, rtol=1e-13)
    t = ntk(x, depth=3, activation="linear", C_W=1.5, C_b=0.0)
    np.testing.assert_allclose(t, 4 * 1.5 ** 4 * x @ x.T / 3, rtol=1e-13)
