"""O(1/n^2) posterior at depth 1 without cumulant tensors (sft.predict.large_posterior(order=2)), checked against
the full-tensor route: sft.predict.perturbative_posterior(order=2) with the exact kappa_4, kappa_6 of
sft.finite.one_hidden_layer_cumulants (kernel shifts and the 1/n^2 part of kappa_4 vanish at depth 1)."""
import math

import numpy as np
import pytest

import sft.predict.neuron_sampling_posterior as lp
from sft.finite import one_hidden_layer_cumulants
from sft.predict import perturbative_posterior
from sft.predict.nearly_gaussian_posterior import _Graph
from sft.predict.posterior_correction import _setup
from sft.symbolic.wick import perfect_matchings


def _case(seed, P, M, d=5):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((P + M, d)), rng.standard_normal(P)


def _full_tensor(x, y, P, noise, activation, C_W, C_b, kappa4=True, kappa6=True, k=None):
    """perturbative_posterior at order 2 with the exact one-hidden-layer cumulant coefficients (width 1), or with
    ``k`` = those cumulants already computed; kappa4 / kappa6 = False leaves that vertex out."""
    if k is None:
        k = one_hidden_layer_cumulants(x, 6, width=1, activation=activation, C_W=C_W, C_b=C_b)
    N = x.shape[0]
    zero = np.zeros((N, N))
    return perturbative_posterior(k[1], y, train=np.arange(P), test=np.arange(P, N), noise=noise, n=1.0, order=2,
                                  dK=[zero, zero], kappa4=[k[3] * kappa4, 0 * k[3]], kappa6=k[5] * kappa6)


def _rel(got, want):
    return np.max(np.abs(got - want)) / np.max(np.abs(want))


def test_linear_exact():
    """Linear sigma: Isserlis, no sampling (sum_15 E[X X X] = 8 C_W^3 sum_15 K1 K1 K1); equal to the full-tensor route
    to 1e-10 relative at O(1/n) and O(1/n^2), error bars exactly zero, and mean[2] scales as n^-2."""
    P, M = 3, 2
    x, y = _case(6, P, M)
    kw = dict(depth=1, activation="linear", C_W=1.3, C_b=0.2, noise=0.3, order=2, samples=8, n_batches=2)
    out = lp.large_posterior(x[:P], y, x[P:], **kw)
    ref = _full_tensor(x, y, P, 0.3, "linear", 1.3, 0.2)
    for j in (1, 2):
        assert _rel(out.mean[j], ref.mean[j]) < 1e-10 and _rel(out.cov[j], ref.cov[j]) < 1e-10, j
    assert not np.any(out.mean_err) and not np.any(out.cov_err)
    wide = lp.large_posterior(x[:P], y, x[P:], n=4.0, **kw)
    assert _rel(16 * wide.mean[2], out.mean[2]) < 1e-12 and _rel(16 * wide.cov[2], out.cov[2]) < 1e-12


def _gram(u, v):
    """s_ip Kinv s'_jq (B_u, p, B_v, q) of two row sets."""
    N = u.pool.shape[2]
    return (u.KP.reshape(-1, N) @ v.pool.reshape(-1, N).T).reshape(u.KP.shape[:2] + v.pool.shape[:2])


def _sum_over_pairings(X, r):
    """sum over the perfect matchings of r legs of the row mean of X (x) .. (x) X (X (B, N, N))."""
    L = "abcdef"[:r]
    T = 0.0
    for mt in perfect_matchings(range(r)):
        legs = ["i" + L[a] + L[b] for a, b in mt]
        T = T + np.einsum(",".join(legs) + "->" + L, *[X] * (r // 2)) / X.shape[0]
    return T


@pytest.mark.parametrize("B, M", [(7, 2), (300, 2), (2, 7)])
def test_row_evaluation_exact_for_a_fixed_pool(B, M):
    """The row evaluation of the generated kappa_6 and kappa_4^2 graphs, with BOTH vertices of the two-vertex graphs
    given the same pool (so the product of row averages is the graph of the empirical tensor), equals
    perturbative_posterior with the empirical tensors sum_pairings mean_i X_i^(x r/2), X_i = s_0 s_0^T - s_1 s_1^T, to
    1e-12 relative, with the rows x rows matrix computed inside or given. The three shapes run every two-vertex route
    (rows x rows matrix, averaged vertex, one line factorized or through the given matrix)."""
    rng = np.random.default_rng(1)
    P, cw = 3, 1.4
    N = P + M
    A = rng.standard_normal((N, N))
    K = A @ A.T / N + 0.2 * np.eye(N)
    y = rng.standard_normal(P)
    s = rng.standard_normal((B, 2, N))
    X = cw * (np.einsum("ia,ib->iab", s[:, 0], s[:, 0]) - np.einsum("ia,ib->iab", s[:, 1], s[:, 1]))
    w4, w6 = 0.37, 0.21
    zero = np.zeros((N, N))
    T4 = w4 * _sum_over_pairings(X, 4)
    ref = perturbative_posterior(K, y, train=np.arange(P), test=np.arange(P, N), noise=0.3, n=1.0, order=2,
                                 dK=[zero, zero], kappa4=[T4, 0 * T4], kappa6=w6 * _sum_over_pairings(X, 6))
    _, _, _, Kinv_t, yt_t, R = _setup(K, y, np.arange(P), np.arange(P, N), 0.3)
    yt, Kinv = np.zeros(N), np.zeros((N, N))
    yt[:P], Kinv[:P, :P] = yt_t, Kinv_t
    rows, diff = lp._rows(s, yt, Kinv, R), ((1, 0), (-1, 1))
    verts = {"S": (w6 * cw ** 3, rows, (diff,) * 3), "U1": (w4 * cw ** 2, rows, (diff,) * 2)}
    for gram in (None, _gram(rows, rows)):
        for m, want in ((1, ref.mean[2]), (2, ref.cov[2])):
            got = 0.0
            for t in lp._second_order_terms(m):
                vs = [verts[v[0]] for v in t.graphs[0].vertices]
                got = got + float(t.coefficient) * lp._row_graph_value(t.graphs[0], vs, gram if len(vs) == 2 else None)
            assert _rel(math.factorial(m) * lp._symmetrize(np.asarray(got)), want) < 1e-12, (m, gram is None)


def test_two_vertex_orientation():
    """A two-vertex graph with its vertices listed in the other order (the other vertex carried to the first, and
    the test axes moved back) gives the same value for two different pools, every route, rows x rows matrix computed
    inside or given, to 1e-12."""
    rng = np.random.default_rng(2)
    P, M = 3, 2
    N = P + M
    Kinv, yt, R = np.diag(rng.uniform(0.5, 1.5, N)), rng.standard_normal(N), rng.standard_normal((M, N))
    diff = ((1, 0), (-1, 1))
    for B in (3, 200):  # rows x rows matrix / averaged vertex (few points)
        a, b = [(0.7, lp._rows(rng.standard_normal((B, 2, N)), yt, Kinv, R), (diff,) * 2) for _ in range(2)]
        for m in (1, 2):
            for t in lp._second_order_terms(m):
                g = t.graphs[0]
                if len(g.vertices) != 2:
                    continue
                x0, x1 = g.vertices[0][1], g.vertices[1][1]
                flipped = _Graph(g.vertices[::-1], g.edges)
                for gram in (False, True):
                    got = lp._row_graph_value(flipped, [b, a], _gram(b[1], a[1]) if gram else None)
                    want = lp._row_graph_value(g, [a, b], _gram(a[1], b[1]) if gram else None)
                    want = np.transpose(want, list(range(x0, x0 + x1)) + list(range(x0)))
                    assert _rel(got, want) < 1e-12, (B, g, gram)


@pytest.mark.parametrize("activation, C_W", [("tanh", 1.5), ("relu", 2.0)])
def test_sampled_agrees_with_full_tensor_route(activation, C_W):
    """Nonlinear sigma at P = M = 2 (N = 4: kappa_6 needs Gaussian integrals over up to min(N, 6) inputs, and
    sft.finite.one_hidden_layer_cumulants integrates at most 4): mean[2], cov[2] within |z| < 4 of the exact
    full-tensor route (seed 0, 10000 rows of four neurons, 20 batches, float64), and not vacuously: leaving out the
    kappa_6 graphs or the kappa_4^2 graphs moves the reference by more than 4 error bars in some entry."""
    P, M = 2, 2
    x, y = _case(3, P, M)
    kw = dict(activation=activation, C_W=C_W, C_b=0.1)
    out = lp.large_posterior(x[:P], y, x[P:], depth=1, noise=0.2, order=2, samples=10000, n_batches=20, seed=0,
                             **kw)
    k = one_hidden_layer_cumulants(x, 6, width=1, **kw)
    ref = _full_tensor(x, y, P, 0.2, **kw, k=k)
    iu = np.triu_indices(M)
    z = np.concatenate([(out.mean[2] - ref.mean[2]) / out.mean_err[2],
                        ((out.cov[2] - ref.cov[2]) / out.cov_err[2])[iu]])
    assert np.max(np.abs(z)) < 4, z
    err = np.concatenate([out.mean_err[2], out.cov_err[2][iu]])
    for drop in (dict(kappa6=False), dict(kappa4=False)):
        part = _full_tensor(x, y, P, 0.2, **kw, **drop, k=k)
        shift = np.concatenate([ref.mean[2] - part.mean[2], (ref.cov[2] - part.cov[2])[iu]])
        assert np.max(np.abs(shift) / err) > 4, (drop, shift / err)


def test_same_seed_same_result_order_one_unchanged():
    """Same seed -> bitwise the same O(1/n^2) part; its own random stream leaves the O(1/n) part of the order-2
    call bitwise equal to order=1."""
    P, M = 3, 2
    x, y = _case(4, P, M)
    kw = dict(depth=1, activation="tanh", C_W=1.5, C_b=0.1, noise=0.3, samples=400, n_batches=4, seed=7)
    a = lp.large_posterior(x[:P], y, x[P:], order=2, **kw)
    b = lp.large_posterior(x[:P], y, x[P:], order=2, **kw)
    one = lp.large_posterior(x[:P], y, x[P:], order=1, **kw)
    assert np.array_equal(a.mean, b.mean) and np.array_equal(a.cov_err, b.cov_err)
    assert np.array_equal(a.mean[:2], one.mean) and np.array_equal(a.cov[:2], one.cov)
    assert a.mean.shape == (3, M) and a.cov_err.shape == (3, M, M) and np.all(a.mean_err[2] > 0)


@pytest.mark.parametrize("kwargs, match", [
    (dict(order=2, depth=2), "order=2 with depth=2"), (dict(order=3), "order=3"), (dict(order=0), "order=0"),
    (dict(order=2.0), "order=2.0"), (dict(order=True), "order=True")])
def test_bad_order(kwargs, match):
    x, y = _case(5, 3, 2)
    args = dict(depth=1, activation="tanh", C_W=1.5, C_b=0.1, noise=0.3, samples=8, n_batches=2)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        lp.large_posterior(x[:3], y, x[3:], **args)
