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


def test_all_layers_and_per_layer_constants():
    rng = np.random.default_rng(1)
    x1, x2 = rng.normal(size=(3, 5)), rng.normal(size=(2, 5))
    cw, cb = [1.0, 2.0, 1.5], [0.1, 0.0, 0.3]
    ks = nngp(x1, x2, depth=2, activation="erf", C_W=cw, C_b=cb, all_layers=True)
    assert ks.shape == (3, 3, 2)
    # layer by layer by hand with the erf closed form
    act = sft.kernels.get_activation("erf")
    q1 = cb[0] + cw[0] * (x1 * x1).sum(1) / 5
    q2 = cb[0] + cw[0] * (x2 * x2).sum(1) / 5
    k = cb[0] + cw[0] * x1 @ x2.T / 5
    for l in range(3):
        np.testing.assert_allclose(ks[l], k, rtol=1e-14)
        if l < 2:
            k = cb[l + 1] + cw[l + 1] * act.gauss_ss(q1[:, None], q2[None, :], k)
            q1 = cb[l + 1] + cw[l + 1] * act.gauss_ss(q1, q1, q1)
            q2 = cb[l + 1] + cw[l + 1] * act.gauss_ss(q2, q2, q2)
    # cross kernel is the off-diagonal block of the joint kernel
    joint = nngp(np.vstack([x1, x2]), depth=2, activation="erf", C_W=cw, C_b=cb)
    np.testing.assert_allclose(joint[:3, 3:], ks[-1], rtol=1e-13)
    tj = ntk(np.vstack([x1, x2]), depth=2, activation="erf", C_W=cw, C_b=cb)
    np.testing.assert_allclose(tj[:3, 3:], ntk(x1, x2, depth=2, activation="erf", C_W=cw, C_b=cb), rtol=1e-13)


def test_relu_ntk_single_input_closed_form():
    """ReLU at criticality, single input with K^(1) = q: K^(l) = q and, since chi_perp = 1, Theta^(l+1) = q + Theta^(l) = (l+1) q."""
    x = np.array([[1.0, 2.0, -0.5]])
    q = 2.0 * (x ** 2).sum() / 3
    t = ntk(x, depth=4, activation="relu", C_W=2.0, C_b=0.0, all_layers=True)
    np.testing.assert_allclose(t[:, 0, 0], q * np.arange(1, 6), rtol=1e-14)


BAD = [
    (dict(depth=0), "depth"),
    (dict(depth=2.5), "depth"),
    (dict(C_W=0.0), "C_W"),
    (dict(C_W=-1.0), "C_W"),
    (dict(C_b=-0.1), "C_b"),
    (dict(C_b=np.nan), "C_b"),
    (dict(C_W=[1.0, 2.0]), "C_W"),
    (dict(activation="nope"), "relu"),
]


@pytest.mark.parametrize("kw, match", BAD)
@pytest.mark.parametrize("fn", [nngp, ntk])
def test_bad_arguments(fn, kw, match):
    args = dict(depth=2, activation="relu", C_W=2.0, C_b=0.0) | kw
    with pytest.raises(ValueError, match=match):
        fn(np.ones((2, 3)), **args)


@pytest.mark.parametrize("x1, x2, match", [
    (np.ones((2, 3)), np.ones((2, 4)), "feature dimension"),
    (np.array([[1.0, np.nan]]), None, "NaN"),
    (np.array([[1.0, np.inf]]), None, "NaN or inf"),
    (np.ones(3), None, "shape"),
])
def test_bad_inputs(x1, x2, match):
    with pytest.raises(ValueError, match=match):
        nngp(x1, x2, depth=1, activation="relu", C_W=2.0, C_b=0.0)
