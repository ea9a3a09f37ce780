"""Sparse strong synapses on a dense Gaussian background (sft.circuits.sparse_synapses): cumulants at finite and
infinite width vs Monte Carlo, the predictors (keep-k, keep-k + Edgeworth, low density) vs the exact law
and vs simulation, independent checks (real-space Edgeworth, direct quadrature), bad input."""
import functools

import jax
import numpy as np
import pytest
import scipy.stats

import sft  # noqa: F401  (x64)
from sft.circuits import sparse_synapses as ss
from sft.symbolic import X, nearly_gaussian_density, to_numeric

LAW = ss.lognormal_synapses(1.0, 0.5)
LAYER = ss.SparseLayer(3.0, LAW, "erf", 1.0, C_W=1.0)
KS = [0.0, 0.5, 1.0, 2.0, 3.0]


@functools.lru_cache(maxsize=None)
def limit_mc(n_samples=60_000, seed=0):
    return ss.simulate_limit(LAYER, jax.random.key(seed), n_samples)


@functools.lru_cache(maxsize=None)
def sweep():
    methods = [("exact",)] + [("keep", k, o) for k in KS for o in (0, 2)] + [("low_density", M) for M in range(9)]
    axes, p = ss.predicted_densities(LAYER, methods)
    return methods, axes, np.array([ss.next_kernel(LAYER, axes, q)[0, 0] for q in p]), p


def test_quadrature_moments_are_exact():
    mJ = ss.strength_moments(LAW, 6)
    exact = [(r % 2 == 0) * np.exp(r * r * 0.5 ** 2 / 2) for r in range(1, 7)]
    np.testing.assert_allclose(mJ, exact, rtol=1e-7, atol=1e-12)
    mx = ss.input_moments(LAYER, 2)          # E erf(g)^2 = (2/pi) arcsin(2q/(1+2q)), q = 1 (Williams 1997)
    assert abs(mx[1] - 2 / np.pi * np.arcsin(2 / 3)) < 1e-12 and abs(mx[0]) < 1e-14


def test_finite_width_cumulants_vs_mc():
    """Exact eq. (1) at n = 16 (sparse + dense) and n = 8 (dense only) against the Rao-Blackwell MC."""
    for layer, n in ((LAYER, 16), (ss.SparseLayer(0.0, LAW, "erf", 1.0), 8)):
        D, G = ss.simulate_conditionals(layer, n, jax.random.key(1), 20_000, batch=20_000)
        est, err = ss.mc_cumulants(D, G, 4)
        theory = ss.preactivation_cumulants(layer, 4, n=n)
        z = (est - theory)[[1, 3]] / err[[1, 3]]      # kappa_2, kappa_4 (kappa_3 = 0 exactly if lam = 0)
        assert np.all(np.abs(z) < 4), (n, est, err, theory)
    # the n -> inf value of the dense-only kappa_4 is 0: at n = 8 the MC sees the 1/n vertex (can fail)
    assert abs(est[3]) / err[3] > 8


def test_nongaussianity_survives_width():
    kinf = ss.preactivation_cumulants(LAYER, 4)
    for n in (10 ** 3, 10 ** 5, 10 ** 7):        # (1) -> (2) like 1/n
        kn = ss.preactivation_cumulants(LAYER, 4, n=n)
        assert abs(kn[3] / kinf[3] - 1) < 30.0 / n
    assert kinf[3] / kinf[1] ** 2 > 0.5          # O(1) excess kurtosis at n = inf
    dense = ss.SparseLayer(0.0, LAW, "erf", 1.0)
    mx = ss.input_moments(dense, 4)
    for n in (10, 1000):                         # dense only: 3 Var(x^2) / (n E[x^2]^2), exactly
        k = ss.preactivation_cumulants(dense, 4, n=n)
        assert np.isclose(k[3] / k[1] ** 2, 3 * (mx[3] - mx[1] ** 2) / (n * mx[1] ** 2), rtol=1e-9)
    D, G = limit_mc()
    est, err = ss.mc_cumulants(D, G, 4)
    assert np.all(np.abs(est[1:] - kinf[1:]) < 4 * err[1:]), (est, err, kinf)


def test_next_layer_stays_non_gaussian():
    """Two sparse layers at infinite width: z'' = z_G'' + sum_{i<=m'} J'_i erf(z^(i)), z^(i) i.i.d. from the
    first layer's simulated law (a two-layer Monte Carlo), against next_layer_cumulants."""
    theory = ss.next_layer_cumulants(LAYER, 3.0, LAW, 4)
    assert theory[3] / theory[1] ** 2 > 0.3
    D, G = limit_mc()
    keys = jax.random.split(jax.random.key(7), 4)
    S, slots = 40_000, 20
    pick = np.asarray(jax.random.randint(keys[0], (S, slots), 0, len(D)))
    eps = np.asarray(jax.random.normal(keys[1], (S, slots)))
    x2 = np.asarray(LAYER.activation.fn(D[pick, 0] + np.sqrt(G[pick, 0, 0]) * eps))
    J2 = ss.sample_strengths(LAW, keys[2], (S, slots))
    m2 = scipy.stats.poisson.ppf(np.asarray(jax.random.uniform(keys[3], (S,))), 3.0)
    D2 = np.sum(np.where(np.arange(slots) < m2[:, None], J2 * x2, 0.0), axis=1)[:, None]
    G2 = np.full((S, 1, 1), 1.0 * ss.mc_next_kernel(LAYER, D, G)[0][0, 0])   # C_W E[erf(z)^2]
    est, err = ss.mc_cumulants(D2, G2, 4)
    assert np.all(np.abs(est - theory)[[1, 3]] < 4 * err[[1, 3]]), (est, err, theory)
    assert abs(est[3]) / err[3] > 8                 # a Gaussian next layer (kappa_4 = 0) is rejected


def test_exact_law_vs_simulation_and_gaussian_fails():
    methods, axes, K, p = sweep()
    D, G = limit_mc()
    est, err = ss.mc_next_kernel(LAYER, D, G)
    assert abs(K[0] - est[0, 0]) < 4 * err[0, 0], (K[0], est, err)
    Dn, Gn = ss.simulate_conditionals(LAYER, 128, jax.random.key(2), 8_000, batch=8_000)
    est_n, err_n = ss.mc_next_kernel(LAYER, Dn, Gn)
    assert abs(K[0] - est_n[0, 0]) < 4 * err_n[0, 0]
    gauss = K[methods.index(("keep", 0.0, 0))]    # everything Gaussian: wrong at any width
    assert abs(gauss - est[0, 0]) / err[0, 0] > 20
    # the law, not only the kernel: the fourth moment and a tail probability
    for f in (lambda z: z ** 4, lambda z: 1 / (1 + np.exp(-4 * (z - 3.0)))):   # smooth: Riemann sum on the grid
        pred = ss.expectation(f, axes, p[0])
        m, e = ss.mc_expectation(lambda z: f(z[..., 0]), D, G, n_nodes=40)
        assert abs(pred - m) < 4 * e, (pred, m, e)


def test_low_density_expansion_converges():
    methods, axes, K, p = sweep()
    exact = K[0]
    errs = [abs(K[methods.index(("low_density", M))] - exact) for M in range(9)]
    assert all(b < a for a, b in zip(errs, errs[1:]))
    for M, e in enumerate(errs):                  # |E_M - E| <= P(m > M) sup sigma^2, sup erf^2 = 1
        assert e <= scipy.stats.poisson.sf(M, LAYER.lam) + 1e-9
    _, p40 = ss.predicted_densities(LAYER, [("exact",), ("low_density", 40)])
    assert np.max(np.abs(p40[0] - p40[1])) < 1e-12


def test_keep_k_errors_decrease_and_keep_all_is_exact():
    methods, axes, K, p = sweep()
    exact = K[0]
    for order in (0, 2):
        errs = [abs(K[methods.index(("keep", k, order))] - exact) for k in KS]
        assert all(b < a for a, b in zip(errs[:-1], errs[1:-1])), (order, errs)
        assert errs[-1] < 1e-12                     # k = lam keeps all: exact
    for k in (0.5, 1.0, 2.0):                       # the Edgeworth term helps once the rest is weak
        assert abs(K[methods.index(("keep", k, 2))] - exact) < abs(K[methods.index(("keep", k, 0))] - exact)


def test_edgeworth_predictor_equals_real_space_edgeworth():
    """keep-0 + Edgeworth(2) in Fourier space == sft.symbolic.nearly_gaussian_density of the whole z."""
    axes, p = ss.predicted_densities(LAYER, [("keep", 0.0, 2)])
    kap = ss.preactivation_cumulants(LAYER, 4)
    f = to_numeric(nearly_gaussian_density(2, list(kap)), X)
    ref = f(axes[0])
    assert np.max(np.abs(p[0] - ref)) < 1e-6 * np.max(ref)   # limited by the |J|-quadrature moments


def test_deposition_matches_direct_sum():
    methods = [("exact",), ("keep", 1.0, 0)]
    axes, p = ss.predicted_densities(LAYER, methods)
    axes2, q = ss.predicted_densities(LAYER, methods, _deposit=False)
    for a, b in zip(p, q):
        assert abs(ss.next_kernel(LAYER, axes, a)[0, 0] - ss.next_kernel(LAYER, axes2, b)[0, 0]) < 2e-5


def test_two_inputs_kernel_vs_mc():
    layer = ss.SparseLayer(3.0, LAW, "erf", [[1.0, 0.6], [0.6, 1.5]], C_W=1.0)
    axes, p = ss.predicted_densities(layer, [("exact",)])
    K = ss.next_kernel(layer, axes, p[0])
    D, G = ss.simulate_limit(layer, jax.random.key(3), 20_000)
    est, err = ss.mc_next_kernel(layer, D, G, n_nodes=12)
    assert np.all(np.abs(K - est) < 4 * err), (K, est, err)
    assert abs(K[0, 0] - sweep()[2][0]) < 1e-4      # marginal of the 2-D law == the 1-D law


def test_same_key_same_result():
    a = ss.simulate_conditionals(LAYER, 16, jax.random.key(5), 50, batch=20_000)   # shape compiled above
    b = ss.simulate_conditionals(LAYER, 16, jax.random.key(5), 50, batch=20_000)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


@pytest.mark.parametrize("make", [
    lambda: ss.SparseLayer(-1.0, LAW, "erf", 1.0),
    lambda: ss.SparseLayer(float("nan"), LAW, "erf", 1.0),
    lambda: ss.SparseLayer(1.0, "lognormal", "erf", 1.0),
    lambda: ss.SparseLayer(1.0, LAW, "erf", [[1.0, 2.0], [2.0, 1.0]]),
    lambda: ss.SparseLayer(1.0, LAW, "erf", float("nan")),
    lambda: ss.SparseLayer(1.0, LAW, "erf", 1.0, C_W=0.0, C_b=0.0),
    lambda: ss.SynapseLaw(scipy.stats.norm()),                  # support not in [0, inf)
    lambda: ss.SynapseLaw(scipy.stats.pareto(3.0)),             # E|J|^4 infinite
    lambda: ss.SynapseLaw(scipy.stats.lognorm(0.5), p_plus=1.5),
    lambda: ss.SynapseLaw(lambda u: u),
    lambda: ss.lognormal_synapses(s=-1.0),
    lambda: ss.predicted_densities(LAYER, [("keep", -1.0, 0)]),
    lambda: ss.predicted_densities(LAYER, [("keep", 4.0, 0)]),   # k > lam
    lambda: ss.predicted_densities(LAYER, [("keep", 1.0, -1)]),
    lambda: ss.predicted_densities(LAYER, [("low_density", -1)]),
    lambda: ss.predicted_densities(LAYER, [("magic",)]),
    lambda: ss.predicted_densities(LAYER, [("exact",)], n_sd=float("nan")),
    lambda: ss.preactivation_cumulants(LAYER, 4, n=0),
    lambda: ss.simulate_conditionals(LAYER, 0, jax.random.key(0), 10),
    lambda: ss.mc_cumulants(np.full((10, 1), np.nan), np.ones((10, 1, 1)), 4),
])
def test_bad_input_raises(make):
    with pytest.raises(ValueError):
        make()
