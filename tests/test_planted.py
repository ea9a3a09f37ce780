"""Tests of sft.circuits.planted: T-matrix root finder vs BBP / Benaych-Georges-Nadakuditi closed forms, and vs simulation.

Statistical tests: the error bar is the standard error of the mean over R independent draws.
Per-draw fluctuations of outliers and overlaps are O(n^{-1/2}) and the finite-n bias of the mean is
O(1/n), so the bias enters the z-score as ~ sqrt(R / n); with R = 20 draws at n >= 300 it is < 0.3 sigma.
"""
import numpy as np
import pytest

from sft.circuits import planted as pl
from sft.conventions import Z_MAX


def semicircle_density(x):
    return np.sqrt(4 - x * x) / (2 * np.pi)


def mp_density(c):
    a, b = (1 - np.sqrt(c)) ** 2, (1 + np.sqrt(c)) ** 2
    return (lambda x: np.sqrt(max((b - x) * (x - a), 0.0)) / (2 * np.pi * c * x)), (a, b)


def test_stieltjes_closed_forms_match_quadrature():
    for z in (2.1, 3.0, -2.7, 10.0):
        assert pl.semicircle_stieltjes(z) == pytest.approx(pl.stieltjes_transform(semicircle_density, (-2, 2), z),
                                                           rel=1e-10)
    rho, supp = mp_density(0.3)
    for w in (supp[1] + 0.05, 4.0, 20.0):
        assert pl.marchenko_pastur_stieltjes(w, 0.3) == pytest.approx(pl.stieltjes_transform(rho, supp, w), rel=1e-10)


def test_wigner_t_matrix_reproduces_closed_form():
    thetas = np.array([3.0, 1.5, 1.5, -2.0, 0.8, -0.5, 1.05])
    lam, ov = pl.wigner_outliers_t_matrix(thetas)
    sup = np.abs(thetas) > 1
    want_lam, want_ov = pl.wigner_outlier(thetas)
    order = np.argsort(want_lam[sup])
    np.testing.assert_allclose(lam, want_lam[sup][order], rtol=1e-12)
    # each outlier overlaps only with its own circuit(s): degenerate pair shares 1 - 1/theta^2 in total
    idx = np.nonzero(sup)[0][order]
    for i, (row, k) in enumerate(zip(ov, idx)):
        same = np.isclose(thetas, thetas[k])
        assert row[same].sum() == pytest.approx(want_ov[k], rel=1e-9)
        np.testing.assert_allclose(row[~same], 0.0, atol=1e-12)


def test_wigner_t_matrix_with_numerical_stieltjes_reproduces_closed_form():
    g = lambda z: pl.stieltjes_transform(semicircle_density, (-2, 2), z)  # noqa: E731
    lam, ov = pl.wigner_outliers_t_matrix([2.0, -1.3], g=g, z_max=50.0)
    np.testing.assert_allclose(lam, [-1.3 - 1 / 1.3, 2.5], rtol=1e-10)
    np.testing.assert_allclose(ov, [[0, 1 - 1 / 1.3 ** 2], [0.75, 0]], atol=1e-8)


@pytest.mark.parametrize("c", [0.25, 0.5, 1.0])
def test_rectangular_t_matrix_reproduces_closed_form(c):
    thetas = np.array([2.5, 1.2, 0.9 * c ** 0.25, 1.02 * c ** 0.25])
    s, left, right = pl.rectangular_outliers_t_matrix(thetas, c)
    want = pl.rectangular_outlier(thetas, c)
    sup = thetas > c ** 0.25
    assert s.size == sup.sum()
    order = np.argsort(want[0][sup])
    np.testing.assert_allclose(s, want[0][sup][order], rtol=1e-12)
    idx = np.nonzero(sup)[0][order]
    np.testing.assert_allclose(left[np.arange(s.size), idx], want[1][idx], rtol=1e-8)
    np.testing.assert_allclose(right[np.arange(s.size), idx], want[2][idx], rtol=1e-8)


def test_rectangular_t_matrix_with_numerical_mp_stieltjes():
    c = 0.5
    rho, supp = mp_density(c)
    g_n = lambda w: pl.stieltjes_transform(rho, supp, w)  # noqa: E731
    s, left, right = pl.rectangular_outliers_t_matrix([2.0], c, g_n=g_n, z_max=30.0)
    want = pl.rectangular_outlier(2.0, c)
    assert s[0] == pytest.approx(want[0], rel=1e-10)
    assert left[0, 0] == pytest.approx(want[1], rel=1e-7)
    assert right[0, 0] == pytest.approx(want[2], rel=1e-7)


def test_thresholds():
    assert pl.wigner_outliers_t_matrix([0.99])[0].size == 0
    assert pl.wigner_outliers_t_matrix([1.01])[0].size == 1
    for c in (0.1, 0.6):
        assert pl.rectangular_outliers_t_matrix([0.99 * c ** 0.25], c)[0].size == 0
        assert pl.rectangular_outliers_t_matrix([1.01 * c ** 0.25], c)[0].size == 1
    # at threshold the closed forms meet the bulk edge with zero overlap (continuity)
    assert pl.wigner_outlier(1.0 + 1e-9)[0] == pytest.approx(2.0, abs=1e-8)
    s, lo, ro = pl.rectangular_outlier(0.3 ** 0.25 * (1 + 1e-9), 0.3)
    assert (s, lo, ro) == pytest.approx((1 + np.sqrt(0.3), 0.0, 0.0), abs=1e-6)


def _z(x, want):
    err = x.std(0, ddof=1) / np.sqrt(x.shape[0])
    return (x.mean(0) - want) / err


def test_wigner_simulation_matches_theory():
    thetas = np.array([3.0, 1.5])
    d = pl.simulate_wigner_outliers(400, thetas, 20, seed=11)
    lam, ov = pl.wigner_outlier(thetas)
    assert np.all(np.abs(_z(d["eigenvalues"], lam)) < Z_MAX)
    assert np.all(np.abs(_z(d["overlaps"], ov)) < Z_MAX)


def test_rectangular_simulation_matches_theory():
    thetas, c = np.array([2.0, 1.2]), 0.5
    d = pl.simulate_rectangular_outliers(300, 600, thetas, 20, seed=12)
    s, left, right = pl.rectangular_outlier(thetas, c)
    assert np.all(np.abs(_z(d["singular_values"], s)) < Z_MAX)
    assert np.all(np.abs(_z(d["left"], left)) < Z_MAX)
    assert np.all(np.abs(_z(d["right"], right)) < Z_MAX)


def test_jax_simulations_match_theory():
    """JAX versions, smaller: Wigner n = 120, rectangular 100 x 200, 16 draws (keys 5, 6); wrong theory fails."""
    import jax
    thetas = np.array([3.0, 1.5])
    d = pl.simulate_wigner_outliers_jax(120, thetas, 16, key=jax.random.key(5), batch=16)
    lam, ov = pl.wigner_outlier(thetas)
    assert np.all(np.abs(_z(d["eigenvalues"], lam)) < Z_MAX)
    assert np.all(np.abs(_z(d["overlaps"], ov)) < Z_MAX)
    assert np.max(np.abs(_z(d["eigenvalues"], pl.wigner_outlier(thetas * 1.1)[0]))) > Z_MAX
    d = pl.simulate_rectangular_outliers_jax(100, 200, thetas, 16, key=jax.random.key(6), batch=16)
    s, left, right = pl.rectangular_outlier(thetas, 0.5)
    for k, pred in (("singular_values", s), ("left", left), ("right", right)):
        assert np.all(np.abs(_z(d[k], pred)) < Z_MAX)
    again = pl.simulate_rectangular_outliers_jax(100, 200, thetas, 16, key=jax.random.key(6), batch=16)
    np.testing.assert_array_equal(again["singular_values"], d["singular_values"])


def test_outlier_deviation_shrinks_like_inverse_sqrt_n():
    """Mean squared deviation of the outlier eigenvalue ~ 1/n: ln(MSD(100)/MSD(400)) = ln 4 +- sqrt(4/R).

    sd of ln(chi^2_R / R) ~ sqrt(2/R) per width; no shrinkage would give z ~ -ln4 / sqrt(4/R) = -5.4 at R = 60.
    """
    R, theta = 60, 3.0
    msd = [np.mean((pl.simulate_wigner_outliers(n, [theta], R, seed=20 + n)["eigenvalues"][:, 0]
                    - pl.wigner_outlier(theta)[0]) ** 2) for n in (100, 400)]
    z = (np.log(msd[0] / msd[1]) - np.log(4.0)) / np.sqrt(4.0 / R)
    assert abs(z) < Z_MAX


def test_planted_draws_have_stated_structure():
    W, U = pl.planted_wigner(50, [2.0, 1.0], rng=0)
    np.testing.assert_allclose(W, W.T, atol=0)
    np.testing.assert_allclose(U.T @ U, np.eye(2), atol=1e-12)
    W, U, V = pl.planted_rectangular(20, 40, [2.0], rng=1)
    assert W.shape == (20, 40) and U.shape == (20, 1) and V.shape == (40, 1)


@pytest.mark.parametrize("call, arg", [
    (lambda: pl.wigner_outlier(0.0), "theta"),
    (lambda: pl.wigner_outlier([np.nan]), "theta"),
    (lambda: pl.rectangular_outlier(1.0, 1.5), "c="),
    (lambda: pl.rectangular_outlier(-1.0, 0.5), "theta"),
    (lambda: pl.planted_rectangular(40, 20, [1.0], rng=0), "n=40"),
    (lambda: pl.planted_wigner(3, [1.0] * 4, rng=0), "thetas"),
    (lambda: pl.planted_wigner(1.5, [1.0], rng=0), "n="),
    (lambda: pl.semicircle_stieltjes(1.0), "z="),
    (lambda: pl.t_matrix_outliers(lambda z: np.eye(2), [[0, 1], [2, 0]], (2, 3)), "coupling"),
    (lambda: pl.t_matrix_outliers(lambda z: np.eye(1), [[1.0]], (3, 2)), "interval"),
    (lambda: pl.simulate_wigner_outliers(10, [2.0], 0, seed=0), "n_draws"),
])
def test_bad_input_raises(call, arg):
    with pytest.raises(ValueError, match=arg):
        call()
