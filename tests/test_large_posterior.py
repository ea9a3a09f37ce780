"""O(1/n) posterior at large N without cumulant tensors (sft.predict.large_posterior, module
neuron_sampling_posterior), checked on small cases against the full-tensor route: sft.predict.perturbative_posterior
with V, G1 from sft.finite.multi_input, and against the exact (Isserlis) vertex of a linear network."""
import numpy as np
import pytest

import sft.predict.neuron_sampling_posterior as lp
from sft.finite import multi_input
from sft.kernels import nngp
from sft.predict import perturbative_posterior
from sft.predict.nearly_gaussian_posterior import posterior_series
from sft.predict.posterior_correction import _setup, quartic_cumulant_from_vertex

P, M, D = 3, 2, 5


def _case(seed):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((P + M, D)), rng.standard_normal(P)


def _full_tensor(x, y, noise, **kw):
    mi = multi_input(x, **kw)
    return mi, perturbative_posterior(mi.K[-1], y, train=np.arange(P), test=np.arange(P, P + M), noise=noise, n=1.0,
                                      order=1, dK=[mi.G1[-1]], kappa4=[quartic_cumulant_from_vertex(mi.V[-1], 1.0)])


def _z(est, ref, err):
    """Distinct entries (upper triangle for a covariance) of (est - ref) / err."""
    idx = np.triu_indices(est.shape[0]) if est.ndim == 2 else slice(None)
    return ((est - ref) / err)[idx]


@pytest.mark.parametrize("activation, depth, C_W, samples", [("tanh", 1, 1.5, 10000), ("relu", 2, 2.0, 40000)])
def test_agrees_with_full_tensor_route(activation, depth, C_W, samples):
    """Sampled O(1/n) mean and covariance within |z| < 4 of the full-tensor route (seed 0, float64), and
    the exact kernel shift (depth 2) equal to multi_input's G1 to 1e-8 relative."""
    x, y = _case(3)
    kw = dict(depth=depth, activation=activation, C_W=C_W, C_b=0.1)
    mi, ref = _full_tensor(x, y, 0.2, **kw)
    out = lp.large_posterior(x[:P], y, x[P:], noise=0.2, samples=samples, n_batches=20, seed=0, **kw)
    assert np.allclose(out.mean[0], ref.mean[0], rtol=1e-12, atol=0) and np.allclose(out.cov[0], ref.cov[0], rtol=1e-12)
    z = np.concatenate([_z(out.mean[1], ref.mean[1], out.mean_err[1]), _z(out.cov[1], ref.cov[1], out.cov_err[1])])
    assert np.max(np.abs(z)) < 4, (z, out.mean[1], ref.mean[1], out.cov[1], ref.cov[1])
    # the error bars are not vacuous: relative error below 20% on the largest entries
    assert np.max(out.cov_err[1]) < 0.2 * np.max(np.abs(ref.cov[1])), (out.cov_err[1], ref.cov[1])
    if depth == 2:
        K, _, _, Kinv, yt, R = _setup(mi.K[-1], y, np.arange(P), np.arange(P, P + M), 0.2)
        G1 = mi.G1[-1]
        assert np.max(np.abs(out.shift_mean - R @ G1[:, :P] @ yt)) <= 1e-8 * np.max(np.abs(R @ G1[:, :P] @ yt))
        assert np.max(np.abs(out.shift_cov - R @ G1 @ R.T)) <= 1e-8 * np.max(np.abs(R @ G1 @ R.T))


def test_graph_contraction_exact_for_fixed_atoms():
    """The einsum compilation of the generated graphs, with X = a fixed matrix C (U = sum over pairings of
    C C, no sampling), equals perturbative_posterior with the explicit tensor to 1e-12 relative."""
    rng = np.random.default_rng(1)
    N = P + M
    A = rng.standard_normal((N, N))
    K, C = A @ A.T / N + 0.2 * np.eye(N), rng.standard_normal((N, N))
    C = C + C.T
    U = np.einsum("ab,cd->abcd", C, C) + np.einsum("ac,bd->abcd", C, C) + np.einsum("ad,bc->abcd", C, C)
    y = rng.standard_normal(P)
    train, test = np.arange(P), np.arange(P, N)
    ref = perturbative_posterior(K, y, train=train, test=test, noise=0.3, n=1.0, order=1, dK=[np.zeros((N, N))],
                                 kappa4=[U])
    _, _, _, Kinv_t, yt_t, R = _setup(K, y, train, test, 0.3)
    yt, Kinv = np.zeros(N), np.zeros((N, N))
    yt[train], Kinv[np.ix_(train, train)] = yt_t, Kinv_t
    atoms = [(1.0, [[(1.0, C, None, None)], [(1.0, C, None, None)]])]
    for m, want in ((1, ref.mean[1]), (2, ref.cov[1])):
        got = sum(float(t.coefficient) * lp._graph_value(t.graphs[0], [atoms], yt, Kinv, R)
                  for t in posterior_series(1)[(1, m)] if t.graphs[0].vertices[0][0] == "U1")
        got = lp._symmetrize(np.asarray(got)) * (1 if m == 1 else 2)
        assert np.max(np.abs(got - want)) <= 1e-12 * np.max(np.abs(want)), (got, want)


def test_same_seed_same_result_and_width_scaling():
    x, y = _case(4)
    kw = dict(depth=1, activation="tanh", C_W=1.5, C_b=0.1, noise=0.3, samples=400, n_batches=4)
    a = lp.large_posterior(x[:P], y, x[P:], seed=7, **kw)
    b = lp.large_posterior(x[:P], y, x[P:], seed=7, **kw)
    c = lp.large_posterior(x[:P], y, x[P:], seed=7, n=8.0, **kw)
    assert np.array_equal(a.mean, b.mean) and np.array_equal(a.cov_err, b.cov_err)
    assert np.allclose(c.mean[1] * 8.0, a.mean[1], rtol=1e-12) and np.allclose(c.cov_err[1] * 8.0, a.cov_err[1])


@pytest.mark.parametrize("kwargs, match", [
    (dict(depth=3), "depth=3"), (dict(order=3), "order=3"), (dict(order=2, depth=2), "order=2 with depth=2"), (dict(samples=3, n_batches=4), "samples=3"),
    (dict(n_batches=1), "n_batches"), (dict(n=0.0), "n = 0.0"), (dict(noise=-1.0), "noise"),
    (dict(y_train=np.ones(2)), "y_train"), (dict(x_test=np.ones((2, 4))), "x_test"),
    (dict(x_train=np.full((P, D), np.nan)), "x_train"), (dict(seed=-1), "seed")])
def test_bad_input(kwargs, match):
    x, y = _case(5)
    args = dict(x_train=x[:P], y_train=y, x_test=x[P:], depth=1, activation="tanh", C_W=1.5, C_b=0.1, noise=0.3,
                samples=8, n_batches=2)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        lp.large_posterior(**args)


def _pairings(A):
    return np.einsum("ac,bd->abcd", A, A) + np.einsum("ad,bc->abcd", A, A)


@pytest.mark.parametrize("depth", [1, 2])
def test_linear_activation_exact(depth):
    """Linear sigma: the route is exact (Isserlis, no sampling): equal to perturbative_posterior with the exact
    vertex V^(2) = C_W^2 (K1 K1 + K1 K1), V^(3) = C_W^2 (K2 K2 + K2 K2) + V^(2) (B = 1) to 1e-12 relative. (Against
    the multi_input route the agreement is 3.5e-7 at depth 1: its 4-input quadrature, ~1e-8 per entry, amplified
    by the K~^{-1} contractions.)"""
    x, y = _case(6)
    cw, cb = 1.3, 0.2
    kw = dict(depth=depth, activation="linear", C_W=cw, C_b=cb)
    Ks = nngp(x, **kw, all_layers=True)
    V = cw ** 2 * _pairings(Ks[0])
    if depth == 2:
        V = cw ** 2 * _pairings(Ks[1]) + cw ** 2 * V
    ref = perturbative_posterior(Ks[-1], y, train=np.arange(P), test=np.arange(P, P + M), noise=0.3, n=1.0, order=1,
                                 dK=[np.zeros((P + M,) * 2)], kappa4=[quartic_cumulant_from_vertex(V, 1.0)])
    out = lp.large_posterior(x[:P], y, x[P:], noise=0.3, samples=8, n_batches=2, **kw)
    assert np.all(out.mean_err == 0) and np.all(out.cov_err == 0)
    # the kernel shift G1^(3) vanishes for a linear sigma; the route's (quadrature) value is ~1e-9 of the U part
    assert np.max(np.abs(out.shift_mean)) <= 1e-7 * np.max(np.abs(ref.mean[1])), out.shift_mean
    for got, want in ((out.mean[1] - out.shift_mean, ref.mean[1]), (out.cov[1] - out.shift_cov, ref.cov[1])):
        assert np.max(np.abs(got - want)) <= 1e-12 * np.max(np.abs(want)), (got, want)
