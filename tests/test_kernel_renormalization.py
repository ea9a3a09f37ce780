"""Tests of sft.predict.kernel_renormalization: BPKR saddle point, exact finite-width posterior, Gibbs sampler."""
import jax
import numpy as np
import pytest
import scipy.optimize

import sft  # noqa: F401  (x64)
from sft.predict import kernel_renormalization as kr
from sft.conventions import Z_MAX
from sft.kernels import nngp
from sft.predict import gp_posterior
from sft.sim import effective_sample_size


def teacher_data(P, n0, M=3, scale=2.0, seed=0):
    """Linear teacher y = scale w.x / sqrt(n0) on Gaussian inputs."""
    rng = np.random.default_rng(seed)
    X, Xt, w = rng.normal(size=(P, n0)), rng.normal(size=(M, n0)), rng.normal(size=n0)
    return X, X @ w * scale / np.sqrt(n0), Xt


@pytest.mark.parametrize("L", [1, 2])
def test_alpha_to_zero_is_nngp(L):
    X, y, Xt = teacher_data(8, 12)
    C_W = [1.3, 0.7, 1.1][:L + 1]
    kw = dict(depth=L, activation="linear", C_W=C_W, C_b=0.0)
    gp = gp_posterior(nngp(X, **kw), nngp(Xt, X, **kw), nngp(Xt, **kw), y, noise=0.3)
    p = kr.bpkr_posterior(X, y, Xt, widths=[10 ** 12] * L, C_W=C_W, temperature=0.3)
    np.testing.assert_allclose(p.U, 1.0, atol=1e-9)
    np.testing.assert_allclose(p.mean, gp.mean, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(p.cov, gp.cov, rtol=1e-9, atol=1e-12)


def test_one_layer_zero_temperature_closed_form():
    """L = 1, T = 0: u^2 + (alpha - 1) u - alpha y^T K^-1 y / P = 0; the mean is the NNGP mean."""
    X, y, Xt = teacher_data(30, 60)
    for n in (15, 30, 90):
        p = kr.bpkr_posterior(X, y, Xt, widths=[n], C_W=1.0, temperature=0.0)
        K = nngp(X, depth=1, activation="linear", C_W=1.0, C_b=0.0)
        a, r = 30 / n, y @ np.linalg.solve(K, y) / 30
        u = (1 - a + np.sqrt((1 - a) ** 2 + 4 * a * r)) / 2
        np.testing.assert_allclose(p.U, u, rtol=1e-12)
        Kx = nngp(Xt, X, depth=1, activation="linear", C_W=1.0, C_b=0.0)
        np.testing.assert_allclose(p.mean, Kx @ np.linalg.solve(K, y), rtol=1e-9)


def test_unequal_widths_saddle_maximizes_action():
    """Independent check: maximize sum_l (n_l/2)(log u_l - u_l) + log N(y; 0, U K + T) over (u_1, u_2, u_3)."""
    X, y, _ = teacher_data(40, 80, scale=3.0)
    widths, T = (20, 50, 35), 0.4
    K = nngp(X, depth=3, activation="linear", C_W=1.0, C_b=0.0)
    s = kr.saddle_point(K, y, widths=widths, temperature=T)
    n = np.array(widths, float)
    np.testing.assert_allclose(n * (1 - s.u), s.lam, rtol=1e-10)
    k, V = np.linalg.eigh(K)
    yt = V.T @ y

    def minus_action(logu):
        U = np.exp(logu.sum())
        return -(np.sum(0.5 * n * (logu - np.exp(logu))) - 0.5 * np.sum(np.log(U * k + T) + yt ** 2 / (U * k + T)))
    res = scipy.optimize.minimize(minus_action, np.zeros(3), method="BFGS", options=dict(gtol=1e-10))
    np.testing.assert_allclose(np.exp(res.x), s.u, rtol=1e-5)
    assert s.U > 1.3  # the data renormalize the kernel by O(1)


def test_exact_posterior_approaches_bpkr_as_one_over_width():
    """Replicating a data set c times (orthogonal copies, widths c n) keeps alpha and the saddle point
    fixed; the exact finite-width posterior must approach it with c (E[U] - U*) -> const."""
    X0, y0, Xt0 = teacher_data(6, 6, M=1)
    dev, devU = [], []
    for c in (8, 16, 32):
        X = np.kron(np.eye(c), X0)
        Xt = np.concatenate([Xt0, np.zeros((1, 6 * (c - 1)))], axis=1)
        kw = dict(widths=[4 * c, 4 * c], C_W=[float(c), 1.0, 1.0], temperature=0.5)
        b = kr.bpkr_posterior(X, np.tile(y0, c), Xt, **kw)
        e = kr.exact_posterior(X, np.tile(y0, c), Xt, **kw)
        dev.append(c * (e.cov[0, 0] - b.cov[0, 0]))
        devU.append(c * (e.U - b.U))
    assert b.U > 1.5 and abs(dev[0]) > 1e-3
    for d in (dev, devU):   # c * deviation converges: successive changes shrink ~ 1/c
        assert abs(d[2] - d[1]) < 0.6 * abs(d[1] - d[0]) and abs(d[2] / d[1] - 1) < 0.1


def test_exact_posterior_quadrature_converged():
    X, y, Xt = teacher_data(20, 40)
    kw = dict(widths=[20, 30], C_W=1.0, temperature=0.5)
    a = kr.exact_posterior(X, y, Xt, **kw)
    b = kr.exact_posterior(X, y, Xt, points_per_sd=80, n_sd=20.0, **kw)
    np.testing.assert_allclose(a.mean, b.mean, rtol=1e-10)
    np.testing.assert_allclose(a.cov, b.cov, rtol=1e-10)


@pytest.mark.parametrize("widths", [(40,), (30, 50)])
def test_gibbs_matches_exact_and_bpkr_not_nngp(widths):
    """Gibbs sampler (independent: uses only the network) vs exact quadrature and BPKR, P = 40 (alpha_l ~ 1)."""
    P, T, L = 40, 0.5, len(widths)
    X, y, Xt = teacher_data(P, 2 * P)
    kw = dict(widths=widths, C_W=1.0, temperature=T)
    r = kr.gibbs_sample(jax.random.key(L), X, y, Xt, n_chains=4, n_sweeps=400, burn_in=50, **kw)
    f, U = np.asarray(r.f), np.asarray(r.U)
    exact, bpkr = kr.exact_posterior(X, y, Xt, **kw), kr.bpkr_posterior(X, y, Xt, **kw)
    gp = kr.bpkr_posterior(X, y, Xt, widths=[10 ** 12] * L, C_W=1.0, temperature=T)

    def z(samples, value):
        return (samples.mean() - value) / (samples.std() / np.sqrt(effective_sample_size(samples)))
    z_nngp = []
    for m in range(Xt.shape[0]):
        fm = f[:, :, m]
        assert abs(z(fm, exact.mean[m])) < Z_MAX
        assert abs(z(fm ** 2, exact.cov[m, m] + exact.mean[m] ** 2)) < Z_MAX
        assert abs(z(fm, bpkr.mean[m])) < Z_MAX          # O(1/N) bias below the MC error here
        z_nngp.append(z(fm ** 2, gp.cov[m, m] + gp.mean[m] ** 2))
    assert abs(z(U, exact.U)) < Z_MAX
    assert max(np.abs(z_nngp)) > Z_MAX                 # the NNGP (alpha = 0) fails the same test


def test_bad_input():
    X, y, Xt = teacher_data(5, 8)
    kw = dict(widths=[5], C_W=1.0)
    with pytest.raises(ValueError, match="temperature"):
        kr.bpkr_posterior(X, y, Xt, temperature=-1.0, **kw)
    with pytest.raises(ValueError, match="temperature"):
        kr.gibbs_sample(jax.random.key(0), X, y, Xt, temperature=0.0, n_chains=1, n_sweeps=1, **kw)
    with pytest.raises(ValueError, match="widths"):
        kr.bpkr_posterior(X, y, Xt, widths=[0], C_W=1.0, temperature=1.0)
    with pytest.raises(ValueError, match="y has shape"):
        kr.bpkr_posterior(X, y[:3], Xt, temperature=1.0, **kw)
    with pytest.raises(ValueError, match="x_test"):
        kr.exact_posterior(X, y, Xt[:, :3], temperature=1.0, **kw)
    with pytest.raises(ValueError, match="positive definite"):   # P > n_0 at T = 0: K singular
        kr.bpkr_posterior(X[:, :3], y, Xt[:, :3], temperature=0.0, **kw)
    with pytest.raises(ValueError, match="n_sweeps"):
        kr.gibbs_sample(jax.random.key(0), X, y, Xt, temperature=1.0, n_chains=1, n_sweeps=0, **kw)
    with pytest.raises(ValueError, match="finite"):
        kr.saddle_point(np.eye(5), np.full(5, np.nan), widths=[5], temperature=1.0)


def test_exact_posterior_refuses_unresolvable_grid():
    X, y, Xt = teacher_data(5, 8)
    with pytest.raises(ValueError, match="quadrature grid"):
        kr.exact_posterior(X, y, Xt, widths=[5, 10 ** 9], C_W=1.0, temperature=1.0)
