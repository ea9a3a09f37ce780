"""trained_ensemble_gd / trained_ensemble_flow: the O(1/n) mean and covariance of trained ensembles.

(a) one hidden layer, smooth sigma: with the single-neuron meta-kernels on the quadrature of
    sft.predict.gd_correction (tests/one_layer_meta_kernels.py: every meta-kernel is a single-neuron
    average there), the mean correction equals the independent derivation gd_mean_correction to 1e-10,
    part by part (NTK / dNTK / ddNTK).
(b) trained ensembles (sft.sim.train_ensemble, float64): see the tests below.
"""

import jax
import numpy as np
import pytest

from sft.predict import (ensemble_test_error, gd_mean_correction, ntk_change_gd, trained_ensemble_flow,
                         trained_ensemble_gd)
from sft.predict.trained_ensemble import _toy_meta_kernels

from one_layer_meta_kernels import one_layer_meta_kernels

X_TRAIN = np.array([[-1.0, 1.0], [0.4, 1.0], [1.3, 1.0]])
X_TEST = np.array([[0.1, 1.0], [2.0, 1.0]])
Y = np.array([0.3, -0.2, 0.5])
NET = dict(activation="tanh", C_W=1.5, C_b=0.1)


def test_one_layer_mean_equals_gd_correction():
    """(a): equal to 1e-10 (relative to max |c|), part by part; c_0 = 0; the parts add up."""
    nodes = (6, 8)
    mk = one_layer_meta_kernels(X_TRAIN, Y, X_TEST, n_nodes=nodes, **NET)
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
        r = trained_ensemble_gd(mk, y, **{**ok, "learning_rate": 1.01 * limit})
    with pytest.raises(ValueError, match="prediction"):
        ensemble_test_error(mk, np.ones(1), n_train=2)
    with pytest.raises(ValueError, match="y_test"):
        ensemble_test_error(r, np.ones(2), n_train=2)
    with pytest.raises(ValueError, match="n_train"):
        ensemble_test_error(r, np.ones(1), n_train=3)
    with pytest.raises(ValueError, match="ddntk_I contains NaN or inf.*relu"):
        trained_ensemble_gd(mk._replace(ddntk_I=np.full((3,) * 4, np.inf)), y, **ok)


# ----------------------------------------------------------------------------- trained deep ensembles
X3 = np.array([[-1.0, 0.5, 0.3], [1.3, -0.3, 0.2], [0.1, 0.8, 0.9]])  # 2 train, 1 test
Y2 = np.array([0.5, -0.4])
Y_STAR = np.array([0.2])  # label of the test input, for the test error


def _measure(mk, widths, S, eta, k, depth, net):
    """n (MC - infinite width) per width, jackknife errors (20 blocks): the mean (N), the covariance
    (upper triangle, 6), the NTK change E[H_k - H_0] on the training block (upper triangle, 3) and the
    squared test error E[(f_k(x*) - y*)^2] (1; E[(f_lin - y*)^2] is exact, as the covariance).
    Control variate: D = f_k - (a_k + B_k f_0) with the infinite-width GD map (E D = E f_k - a_k; the
    covariance of a_k + B_k f_0 is B_k (K + G1/n) B_k^T, G1 known), as in tests/test_gd_correction.py."""
    from sft.sim import jackknife, train_ensemble
    P, N = 2, 3
    Bk, ak = np.eye(N), np.zeros(N)
    for _ in range(k):
        Bk, ak = Bk - eta * mk.Theta[:, :P] @ Bk[:P], ak - eta * mk.Theta[:, :P] @ (ak[:P] - Y2)
    iu, iuN = np.triu_indices(P), np.triu_indices(N)
    out = []
    for n in widths:
        tr = train_ensemble(jax.random.key(n), X3[:P], Y2, X3[P:], n_ensemble=S, widths=[n] * depth,
                            learning_rate=eta, n_steps=k, record_every=k, record_ntk=True, **net)
        f = [np.concatenate([np.asarray(tr.train_predictions[:, t]), np.asarray(tr.test_predictions[:, t])], 1)
             for t in (0, -1)]
        flin = ak + f[0] @ Bk.T
        dH = np.asarray(tr.ntk[:, -1] - tr.ntk[:, 0])[:, iu[0], iu[1]]

        def stat(z):
            u, d, h = z[:, :N], z[:, N:2 * N], z[:, 2 * N:]
            C = np.cov(np.concatenate([u, d], 1).T)
            cc = C[:N, N:] + C[N:, :N] + C[N:, N:]
            sq = np.mean(2 * (u[:, 2] - Y_STAR[0]) * d[:, 2] + d[:, 2] ** 2)
            return n * np.concatenate([d.mean(0), cc[iuN], h.mean(0), [sq]])
        out.append(jackknife(stat, np.concatenate([flin, f[1] - flin, dH], 1)))
    return out


def _theory(mk, eta, k):
    r = trained_ensemble_gd(mk, Y2, n_train=2, learning_rate=eta, n_steps=k, record_every=k)
    _, dl, _ = ntk_change_gd(mk, Y2, n_train=2, learning_rate=eta, n_steps=k, record_every=k)
    c = r.cov_correction[-1] - r.cov_parts["kernel"][-1]  # B G1 B^T is exact in the control variate
    e1 = ensemble_test_error(r, Y_STAR, n_train=2)[1][-1] - r.cov_parts["kernel"][-1, 2, 2]
    return np.concatenate([r.mean_correction[-1], c[np.triu_indices(3)], dl[-1][np.triu_indices(2)], [e1]])


def test_depth2_tanh_against_trained_ensembles():
    """(b) depth 2, tanh, n = 32 and 64 (4000 networks each, float64, seeds n), eta = 0.3 x limit, k = 10:
    n (MC - infinite width) = c1 + c2/n fitted through the two widths (c1 = 2 X_64 - X_32, error
    propagated); |c1 - theory| < Z_MAX sigma for all 13 numbers (mean, covariance, NTK change, test
    error bias^2 + variance), and
    dropping the dNTK or the ddNTK from the meta-kernels gives max |z| > Z_MAX."""
    from sft.conventions import Z_MAX
    from sft.finite import output_meta_kernels
    from sft.predict import gd_stability_limit
    net = dict(activation="tanh", C_W=1.5, C_b=0.1)
    mk = output_meta_kernels(X3, depth=2, **net)
    eta, k = 0.3 * gd_stability_limit(mk.Theta[:2, :2]), 10
    (x32, e32), (x64, e64) = _measure(mk, [32, 64], 4000, eta, k, 2, net)
    c1, err = 2 * x64 - x32, np.sqrt(4 * e64 ** 2 + e32 ** 2)
    z = (c1 - _theory(mk, eta, k)) / err
    assert np.abs(z).max() < Z_MAX, z
    for drop in ("dntk_f", "ddntk_I"):
        zero = {drop: 0 * getattr(mk, drop)} | ({"ddntk_II": 0 * mk.ddntk_II} if drop == "ddntk_I" else {})
        z_drop = (c1 - _theory(mk._replace(**zero), eta, k)) / err
        assert np.abs(z_drop).max() > Z_MAX, (drop, z_drop)


def test_flow_is_the_small_step_limit_and_interpolates():
    """Gradient flow (RK4 on the effective dynamics) equals the eta -> 0 limit of GD at k eta = t:
    Richardson 2 c(eta/2) - c(eta) leaves O(eta^2), so |flow - Richardson| <= 0.05 |c(eta/2) - c(eta)|
    (the O(eta) step, eta lam_max <= 0.2). At t = inf every network interpolates the training
    labels, so on the training inputs both corrections vanish (to 1e-9 of their scale)."""
    mk, y, t = _toy_meta_kernels(3, seed=1), np.array([0.5, -0.3]), 1.0
    mk = mk._replace(Theta=mk.Theta + np.eye(3))  # condition number ~3 on the training block: short run to inf
    res = []
    for eta in (0.04, 0.02):
        k = int(round(t / eta))
        r = trained_ensemble_gd(mk, y, n_train=2, learning_rate=eta, n_steps=k, record_every=k)
        res.append((r.mean_correction[-1], r.cov_correction[-1]))
    f = trained_ensemble_flow(mk, y, n_train=2, times=[t, np.inf])
    for i, fl in enumerate((f.mean_correction[0], f.cov_correction[0])):
        step = np.abs(res[1][i] - res[0][i]).max()
        assert step > 1e-4
        assert np.abs(fl - (2 * res[1][i] - res[0][i])).max() <= 0.05 * step
    scale = np.abs(f.mean_correction[0]).max() + np.abs(f.cov_correction[0]).max()
    assert np.abs(f.mean_correction[1, :2]).max() <= 1e-9 * scale
    assert np.abs(f.cov_correction[1, :2, :]).max() <= 1e-9 * scale
    assert np.abs(f.mean[1, :2] - y).max() <= 1e-9 and np.abs(f.mean_correction[1, 2]) > 1e-3
