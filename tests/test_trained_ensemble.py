"""trained_ensemble_gd / trained_ensemble_flow: the O(1/n) mean and covariance of trained ensembles.

(a) one hidden layer, smooth sigma: with the single-neuron meta-kernels on the quadrature of
    sft.predict.gd_correction (_one_layer_meta_kernels below: every meta-kernel is a single-neuron
    average there), the mean correction equals the independent derivation gd_mean_correction to 1e-10,
    part by part (NTK / dNTK / ddNTK).
(b) trained ensembles (sft.sim.train_ensemble, float64): see the tests below.
"""
import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sft.predict import gd_correction as gdc
from sft.predict import gd_mean_correction, trained_ensemble_flow, trained_ensemble_gd
from sft.predict.trained_ensemble import _Toy, _toy_meta_kernels

X_TRAIN = np.array([[-1.0, 1.0], [0.4, 1.0], [1.3, 1.0]])
X_TEST = np.array([[0.1, 1.0], [2.0, 1.0]])
Y = np.array([0.3, -0.2, 0.5])
NET = dict(activation="tanh", C_W=1.5, C_b=0.1)


def _one_layer_meta_kernels(x_train, y_train, x_test, activation, C_W, C_b, n_nodes):
    """Meta-kernels of a one-hidden-layer network on the quadrature of gd_correction (neurons p = (a, xi)
    drawn from the rule, h(p, x) = sqrt(C_W2) a sigma(z), f = sqrt(C_b2) beta + n^{-1/2} sum_i h(p_i)):
    Theta = C_b2 + <J J>, K = C_b2 + <h h>, ntk_cov = Cov(J_a.J_b, J_c.J_d), ntk_f2 = Cov(J_a.J_b, h_c h_d),
    dntk_f = <J_a . Hess_x J_b h_c>, ddntk_I = <d^3 h_x [J_a, J_b, J_c]>, ddntk_II = <(Hess_x J_a).(Hess_y J_b)>
    (<.> over the rule); Theta1 = G1 = dntk_f3 = 0 at O(1/n) for one hidden layer."""
    cfg = gdc._setup(x_train, y_train, x_test, activation, C_W, C_b, 0.1, 1, 1, n_nodes)
    act, c, B, w, cb2 = cfg["act"], math.sqrt(cfg["cw2"]), cfg["B"], cfg["w"], cfg["cb2"]
    h = lambda p: gdc._h(act, c, B, p)  # noqa: E731
    nodes = cfg["nodes"]
    J, Hs = jax.vmap(jax.jacfwd(h))(nodes), jax.vmap(jax.hessian(h))(nodes)
    T3, hv = jax.vmap(jax.jacfwd(jax.hessian(h)))(nodes), jax.vmap(h)(nodes)
    avg = lambda s, *a: np.asarray(jnp.einsum(s, w, *a))  # noqa: E731
    th, hh = jnp.einsum("qai,qbi->qab", J, J), jnp.einsum("qa,qb->qab", hv, hv)
    Theta, K = cb2 + avg("q,qab->ab", th), cb2 + avg("q,qab->ab", hh)
    ntk_cov = avg("q,qab,qcd->abcd", th, th) - np.einsum("ab,cd->abcd", Theta - cb2, Theta - cb2)
    ntk_f2 = avg("q,qab,qcd->abcd", th, hh) - np.einsum("ab,cd->abcd", Theta - cb2, K - cb2)
    dntk_f = avg("q,qai,qxij,qbj,qc->xabc", J, Hs, J, hv)
    dd1 = avg("q,qxijk,qai,qbj,qck->xabc", T3, J, J, J)
    dd2 = avg("q,qxij,qaj,qyik,qbk->xyab", Hs, J, Hs, J)
    N = K.shape[0]
    z = np.zeros((N, N))
    return _Toy(K, z, Theta, z, ntk_cov, ntk_f2, dntk_f, np.zeros((N,) * 6), dd1, dd2)


def test_one_layer_mean_equals_gd_correction():
    """(a): equal to 1e-10 (relative to max |c|), part by part; c_0 = 0; the parts add up."""
    nodes = (6, 8)
    mk = _one_layer_meta_kernels(X_TRAIN, Y, X_TEST, n_nodes=nodes, **NET)
    r = trained_ensemble_gd(mk, Y, n_train=3, learning_rate=0.3, n_steps=10)
    g = gd_mean_correction(X_TRAIN, Y, X_TEST, learning_rate=0.3, n_steps=10, n_nodes=nodes, **NET)
    scale = np.abs(g.correction).max()
    assert scale > 0.1
    np.testing.assert_allclose(r.mean_correction[:, 3:], g.correction, rtol=0, atol=1e-10 * scale)
    for part in ("ntk", "dntk", "ddntk"):
        assert np.abs(getattr(g, part)).max() > 1e-3
        np.testing.assert_allclose(r.mean_parts[part][:, 3:], getattr(g, part), rtol=0, atol=1e-10 * scale)
    np.testing.assert_allclose(r.mean[:, 3:], g.mean, rtol=0, atol=1e-12)
    assert np.abs(r.mean_correction[0]).max() <= 1e-14 and np.abs(r.cov_correction[0]).max() <= 1e-14
    np.testing.assert_allclose(r.cov_correction, sum(r.cov_parts.values()), rtol=1e-13, atol=0)
    # the infinite-width covariance is B K B^T with B the linearized GD map (ntk_gradient_descent)
    np.testing.assert_allclose(r.cov[0], mk.K, rtol=1e-13)


def test_bad_input_and_divergent_rate():
    mk = _toy_meta_kernels(3, seed=0)
    y = np.array([0.5, -0.3])
    ok = dict(n_train=2, learning_rate=0.2, n_steps=2)
    with pytest.raises(ValueError, match="n_train"):
        trained_ensemble_gd(mk, y, **{**ok, "n_train": 4})
    with pytest.raises(ValueError, match="y_train"):
        trained_ensemble_gd(mk, np.ones(3), **ok)
    with pytest.raises(ValueError, match="learning_rate"):
        trained_ensemble_gd(mk, y, **{**ok, "learning_rate": -1.0})
    with pytest.raises(ValueError, match="meta_kernels.ntk_cov"):
        trained_ensemble_gd(mk._replace(ntk_cov=np.ones((3, 3))), y, **ok)
    with pytest.raises(ValueError, match="meta_kernels.Theta"):
        trained_ensemble_gd(mk._replace(Theta=-np.eye(3)), y, **ok)
    with pytest.raises(ValueError, match="lacks the fields"):
        trained_ensemble_gd(object(), y, **ok)
    with pytest.raises(ValueError, match="times"):
        trained_ensemble_flow(mk, y, n_train=2, times=[1.0, 0.5])
    limit = 2 / np.linalg.eigvalsh(mk.Theta[:2, :2])[-1]
    with pytest.warns(RuntimeWarning, match=f"{limit:.6g}"):
        trained_ensemble_gd(mk, y, **{**ok, "learning_rate": 1.01 * limit})
