"""Representation learning layer by layer: sft.finite.layer_meta_kernels, sft.predict.ntk_change_by_layer_gd.

(a) sum rule: the per-layer meta-kernels and the per-layer NTK change sum to output_meta_kernels and
    ntk_change_gd (1e-10 relative), depth 3, unequal widths;
(b) independent method, one hidden layer: the per-layer meta-kernels equal single-neuron averages of
    the parameter derivatives (D^(m) restricted to the readout weight or the first-layer weights) by a
    Gauss-Hermite product rule (linear sigma: exact rule; erf: converged rule), to 1e-8;
(c) Monte Carlo: trained ensembles (sft.sim.train_layer_ntk, float64), depth 2 tanh at criticality,
    n E[Theta^(l)_k - Theta^(l)_0] fitted as c1 + c2/n through n = 32, 64 (seeds n), |z| < Z_MAX for
    all 18 numbers, while an equal split of the total over the layers is rejected (|z| > Z_MAX);
(d) bad input.
"""
import math

import jax
import numpy as np
import pytest

from sft.conventions import Z_MAX
from sft.finite import layer_meta_kernels, output_meta_kernels
from sft.predict import gd_stability_limit, ntk_change_by_layer_gd, ntk_change_gd

X3 = np.array([[-1.0, 0.5, 0.3], [1.3, -0.3, 0.2], [0.1, 0.8, 0.9]])  # 2 train, 1 test
Y2 = np.array([0.5, -0.4])
TANH = dict(activation="tanh", C_W=1.0, C_b=0.0)  # criticality (K* = 0 class)
FIELDS = ("Theta", "dntk_f", "ddntk_I", "ddntk_II_nu", "ddntk_II_mu")


@pytest.fixture(scope="module")
def depth3():
    """Depth 3, unequal widths (ratios 1 : 2 : 1.5), erf at C_W = 1.2, C_b = 0.1, two training inputs."""
    net = dict(depth=3, activation="erf", C_W=1.2, C_b=0.1, widths=(2, 4, 3))
    mk, lm = output_meta_kernels(X3[:2], **net), layer_meta_kernels(X3[:2], **net)
    return mk, lm, 0.3 * gd_stability_limit(mk.Theta)


def test_layers_sum_to_the_total(depth3):
    """(a) fields and the NTK change after 10 steps: sum over the 4 layers = total (1e-10 x scale);
    each layer's share is not small (the split is not trivial)."""
    mk, lm, eta = depth3
    for name in FIELDS:
        full = getattr(mk, "ddntk_II" if name.startswith("ddntk_II") else name)
        np.testing.assert_allclose(getattr(lm, name).sum(0), full, rtol=0, atol=1e-10 * np.abs(full).max())
    steps, layers, parts = ntk_change_by_layer_gd(mk, lm, Y2, n_train=2, learning_rate=eta, n_steps=10)
    assert layers.shape == (4, 11, 2, 2)
    _, total, tparts = ntk_change_gd(mk, Y2, n_train=2, learning_rate=eta, n_steps=10)
    scale = np.abs(total).max()
    assert scale > 0.1
    np.testing.assert_allclose(layers.sum(0), total, rtol=0, atol=1e-10 * scale)
    for p in ("dntk", "ddntk"):
        np.testing.assert_allclose(parts[p].sum(0), tparts[p], rtol=0, atol=1e-10 * scale)
    assert all(np.abs(layers[m, -1]).max() > 0.05 * scale for m in range(4))


def _single_neuron(derivs, C_W, n_xi):
    """Per-layer meta-kernels of one hidden layer (C_b = 0, inputs x (2, 2)) as single-neuron averages:
    f = n^{-1/2} sum_i h(p_i), h(p, x) = c a sigma(u), u = s omega.x, c = sqrt(C_W), s = sqrt(C_W/2),
    p = (a, omega) ~ N(0, I_3); D^(2) = d/da (readout weight), D^(1) = d/domega (first layer). The
    derivatives of h by hand (a enters linearly): J = (c sigma, c a sigma' s x); second: (a, omega_k)
    c sigma' s x_k, (omega_k, omega_l) c a sigma'' s^2 x_k x_l; third: (a, omega, omega) c sigma'' s^2 x x,
    (omega, omega, omega) c a sigma''' s^3 x x x. Gauss-Hermite rule: 3 nodes in a (the integrands are
    polynomials of degree <= 4 in a), n_xi x n_xi in omega. derivs(u) -> (sigma, sigma', sigma'', sigma''')
    """
    x = X3[:2, :2]
    ga, wa = np.polynomial.hermite_e.hermegauss(3)
    gx, wx = np.polynomial.hermite_e.hermegauss(n_xi)
    A, O1, O2 = (g.ravel() for g in np.meshgrid(ga, gx, gx, indexing="ij"))
    w = np.einsum("i,j,k->ijk", wa / wa.sum(), wx / wx.sum(), wx / wx.sum()).ravel()
    c, s = math.sqrt(C_W), math.sqrt(C_W / 2)
    u = s * np.stack([O1, O2], 1) @ x.T  # (Q, N)
    s0, s1, s2, s3 = derivs(u)
    Q, N = u.shape
    xs = np.broadcast_to(x, (Q, N, 2))
    xx = np.einsum("qak,qal->qakl", xs, xs)
    J = np.concatenate([c * s0[..., None], c * (A[:, None] * s1)[..., None] * s * xs], 2)  # (Q, N, 3)
    H = np.zeros((Q, N, 3, 3))
    H[:, :, 0, 1:] = H[:, :, 1:, 0] = c * s1[..., None] * s * xs
    H[:, :, 1:, 1:] = c * (A[:, None] * s2)[..., None, None] * s ** 2 * xx
    T = np.zeros((Q, N, 3, 3, 3))
    for i, j, k in ((0, slice(1, 3), slice(1, 3)), (slice(1, 3), 0, slice(1, 3)), (slice(1, 3), slice(1, 3), 0)):
        T[:, :, i, j, k] = c * s2[..., None, None] * s ** 2 * xx
    T[:, :, 1:, 1:, 1:] = (c * (A[:, None] * s3)[..., None, None, None] * s ** 3
                           * np.einsum("qakl,qam->qaklm", xx, xs))
    hv = c * A[:, None] * s0
    out = []
    for mask in (np.array([0.0, 1.0, 1.0]), np.array([1.0, 0.0, 0.0])):  # layer 1, layer 2
        avg = lambda sub, *a: np.einsum(sub, w, mask, *a, optimize=True)  # noqa: E731
        out.append((avg("q,i,qai,qbi->ab", J, J), avg("q,i,qxij,qai,qbj,qc->xabc", H, J, J, hv),
                    avg("q,i,qxijk,qyi,qaj,qbk->xyab", T, J, J, J),
                    avg("q,j,qxij,qykj,qai,qbk->xyab", H, H, J, J),
                    avg("q,i,qxij,qykj,qai,qbk->xyab", H, H, J, J)))
    return [np.stack(c) for c in zip(*out)]


def _erf_derivs(u):
    d1 = 2 / math.sqrt(math.pi) * np.exp(-u ** 2)
    return np.vectorize(math.erf)(u), d1, -2 * u * d1, (4 * u ** 2 - 2) * d1


def _linear_derivs(u):
    return u, np.ones_like(u), np.zeros_like(u), np.zeros_like(u)


@pytest.mark.parametrize("activation, n_xi", [("linear", 4), ("erf", 96)])
def test_one_hidden_layer_against_single_neuron_averages(activation, n_xi):
    """(b) agreement to 1e-8 of each field's scale (measured: linear, exact rule, <= 1.2e-9, the
    library's Gaussian quadrature of Theta; erf with 96 x 96 nodes <= 6e-10, the rule converging
    geometrically: 32 -> 64 -> 96 nodes gave 4e-3 -> 2e-6 -> 6e-10); for erf the layers differ by O(1)."""
    derivs = {"linear": _linear_derivs, "erf": _erf_derivs}[activation]
    C_W = 1.5
    lm = layer_meta_kernels(X3[:2, :2], depth=1, activation=activation, C_W=C_W, C_b=0.0)
    ref = _single_neuron(derivs, C_W, n_xi)
    differ = 0
    for name, r in zip(FIELDS, ref):
        got = getattr(lm, name)
        scale = np.abs(got).max()
        if activation == "linear" and name == "ddntk_I":  # no third derivatives for linear sigma
            assert np.abs(got).max() <= 1e-14 and np.abs(r).max() <= 1e-14
            continue
        differ += bool(np.abs(r[0] - r[1]).max() > 0.1 * scale)
        np.testing.assert_allclose(got, r, rtol=0, atol=1e-8 * scale, err_msg=name)
    if activation == "erf":  # (linear sigma: f is bilinear in (a, omega) and the two layers come out alike)
        assert differ >= 3


def test_per_layer_change_against_trained_ensembles():
    """(c) 2000 networks per width, k = 10 steps at eta = 0.3 x the stability limit, float64, seeds n;
    n (Theta^(l)_k - Theta^(l)_0) on all 3 inputs (upper triangle, 6 entries x 3 layers), mean and
    standard error per width; c1 = 2 X_64 - X_32 (error propagated)."""
    from sft.sim import train_layer_ntk
    mk, lm = output_meta_kernels(X3, depth=2, **TANH), layer_meta_kernels(X3, depth=2, **TANH)
    eta, k = 0.3 * gd_stability_limit(mk.Theta[:2, :2]), 10
    _, delta, _ = ntk_change_by_layer_gd(mk, lm, Y2, n_train=2, learning_rate=eta, n_steps=k, record_every=k)
    iu = np.triu_indices(3)
    theory = delta[:, -1][:, iu[0], iu[1]]
    est = []
    for n in (32, 64):
        _, H = train_layer_ntk(jax.random.key(n), X3[:2], Y2, X3, n_ensemble=2000, widths=[n, n],
                               learning_rate=eta, n_steps=k, record_every=k, **TANH)
        d = n * (H[:, -1] - H[:, 0])[:, :, iu[0], iu[1]]
        est.append((d.mean(0), d.std(0, ddof=1) / math.sqrt(len(d))))
    (x32, e32), (x64, e64) = est
    c1, err = 2 * x64 - x32, np.sqrt(4 * e64 ** 2 + e32 ** 2)
    z = (c1 - theory) / err
    assert np.abs(z).max() < Z_MAX, z
    z_equal = (c1 - theory.sum(0) / 3) / err  # the total split equally over the layers
    assert np.abs(z_equal).max() > Z_MAX, z_equal


def test_bad_input(depth3):
    mk, lm, eta = depth3
    ok = dict(n_train=2, learning_rate=eta, n_steps=2)
    with pytest.raises(ValueError, match="activation='relu'.*smooth"):
        layer_meta_kernels(X3, depth=2, activation="relu", C_W=2.0, C_b=0.0)
    with pytest.raises(ValueError, match="x with shape"):
        layer_meta_kernels(np.ones((5, 2)), depth=1, **TANH)
    with pytest.raises(ValueError, match="layer_meta_kernels lacks the fields"):
        ntk_change_by_layer_gd(mk, mk, Y2, **ok)
    with pytest.raises(ValueError, match=r"layer_meta_kernels.dntk_f has shape"):
        ntk_change_by_layer_gd(mk, lm._replace(dntk_f=lm.dntk_f[:, :1]), Y2, **ok)
    with pytest.raises(ValueError, match=r"layer_meta_kernels.ddntk_I contains NaN"):
        ntk_change_by_layer_gd(mk, lm._replace(ddntk_I=lm.ddntk_I * np.nan), Y2, **ok)
    with pytest.raises(ValueError, match=r"layer_meta_kernels.Theta sums to"):
        ntk_change_by_layer_gd(mk, lm._replace(Theta=2 * lm.Theta), Y2, **ok)
    with pytest.raises(ValueError, match="n_steps"):
        ntk_change_by_layer_gd(mk, lm, Y2, **{**ok, "n_steps": -1})
    with pytest.raises(ValueError, match="n_train"):
        ntk_change_by_layer_gd(mk, lm, Y2, **{**ok, "n_train": 3})
