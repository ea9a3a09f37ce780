"""Tests of sft.finite.ntk_fluctuations_multi: single-input limit, exact linear results,
Gaussian derivative tensors against finite differences, and Monte Carlo over finite networks.

Monte Carlo: two inputs, depth 2, S = 3000 networks at n = 96, readout NTK by
sft.sim.empirical_ntk (method="backprop") and readout metric by sft.sim.layer_kernels (same
networks, same key); jackknife error bars, |z| < Z_MAX at a fixed seed. Every unique entry of
n Cov(Theta_hat_ab, Theta_hat_cd) is checked (relative errors 2-7%); the (00)(11) and (01)(01) entries
resolve the pairing of B (B_{(ac)(bd)}, not B_{(ab)(cd)}: z = 9.9, -83 (relu), 34, -135 (tanh)).
O(1/n^2) bias, measured once (seed 7, n = 32, 64, 96, fit n Cov = c0 + c1/n): z of c0 against the
theory, entries in the order (00)(00), (00)(01), (00)(11), (01)(01), (01)(11), (11)(11):
relu -2.6 -1.7 -2.6 -0.1 -1.7 -2.1, tanh -1.0 -0.3 -1.2 -0.6 0.5 -0.8; at n = 96 alone: relu -1.4 -1.0
-1.4 0.6 0.3 0.6, tanh -0.4 0.1 -0.9 0.8 1.0 0.2, so n = 96 is used alone here (test time).
"""
import functools
import itertools

import jax
import numpy as np
import pytest

from sft.sim import estimators as est
from sft.finite import vertex as fw
from sft.finite import ntk_variance as nf
from sft.kernels import get_activation
from sft.conventions import Z_MAX
from sft.sim import empirical_ntk, layer_kernels

X2 = np.array([[1.0, 0.2, -0.4], [0.3, -0.8, 0.5]])  # two inputs, n_0 = 3
X3 = np.vstack([X2, [[0.5, 0.5, 0.1]]])
PAIRS = [(0, 0), (0, 1), (1, 1)]
UNIQUE = [(p, q) for i, p in enumerate(PAIRS) for q in PAIRS[i:]]  # unique ((ab), (cd))


# ------------------------------------------------------------------------------- deterministic
@pytest.mark.parametrize("name, cw, cb", [("tanh", 1.5, 0.1), ("relu", 2.0, 0.0), ("erf", 1.2, 0.05)])
def test_single_input_limit(name, cw, cb):
    """N = 1 reproduces ntk_fluctuations (all of K, Theta, V, G1, A, B, D, F, Theta1), unequal widths."""
    widths = (40, 100, 70)
    m = nf.ntk_fluctuations_multi(X2[:1], depth=3, activation=name, C_W=cw, C_b=cb, widths=widths)
    s = nf.ntk_fluctuations(m.K[0, 0, 0], depth=3, activation=name, C_W=cw, C_b=cb, widths=widths)
    for f in ("K", "Theta", "V", "G1", "A", "B", "D", "F", "Theta1"):
        got = getattr(m, f).reshape(4, -1)[:, 0]
        np.testing.assert_allclose(got, getattr(s, f), rtol=1e-10, atol=1e-10 * np.max(np.abs(s.A)), err_msg=f)


@functools.lru_cache(maxsize=None)
def _three_inputs(name, widths):
    return nf.ntk_fluctuations_multi(X3, depth=2, activation=name, C_W=1.5, C_b=0.1, widths=widths)


def test_single_input_entries_of_several_inputs():
    """Entries on one input a of the N = 3 tensors equal the single-input result for x_a alone."""
    m = _three_inputs("tanh", (30, 50))
    for a in range(3):
        s = nf.ntk_fluctuations(m.K[0, a, a], depth=2, activation="tanh", C_W=1.5, C_b=0.1, widths=(30, 50))
        for f in ("Theta", "A", "B", "D", "F", "Theta1"):
            got = getattr(m, f)[(slice(None),) + (a,) * getattr(m, f)[0].ndim]
            np.testing.assert_allclose(got, getattr(s, f), rtol=1e-9, atol=1e-12, err_msg=f)


def test_symmetries():
    """A, D, V: symmetric within each pair; A, V under (ab) <-> (cd); B_{(xy)(zw)} = B_{(zw)(xy)} = B_{(yx)(wz)};
    the readout covariance is a symmetric matrix over the pairs (ab)."""
    m = _three_inputs("tanh", (30, 50))
    for l in range(3):
        A, B, D = m.A[l], m.B[l], m.D[l]
        for T in (A, D):
            np.testing.assert_allclose(T, T.transpose(1, 0, 2, 3), atol=1e-11)
            np.testing.assert_allclose(T, T.transpose(0, 1, 3, 2), atol=1e-11)
        np.testing.assert_allclose(A, A.transpose(2, 3, 0, 1), atol=1e-11)
        np.testing.assert_allclose(B, B.transpose(2, 3, 0, 1), atol=1e-11)
        np.testing.assert_allclose(B, B.transpose(1, 0, 3, 2), atol=1e-11)
        C = nf.readout_ntk_covariance(A, B)
        np.testing.assert_allclose(C, C.transpose(2, 3, 0, 1), atol=1e-11)
        np.testing.assert_allclose(C, C.transpose(1, 0, 2, 3), atol=1e-11)


@pytest.mark.parametrize("x, depth", [(X3, 1), (X2, 4)])
def test_linear_closed_form(x, depth):
    """Linear sigma, C_b = 0: <d..> = 1, (C_W/2) <d_c d_d (z_a z_b)> symmetrizes, Y_{xy;c} = d_yc, so with
    Q_{abcd} = K_ac K_bd + K_ad K_bc (K = K^(1)) and s_l = sum_{m<l} m^2 = (l-1) l (2l-1)/6 the recursion
    solves to A^(l) = C_W^{2(l-1)} s_l Q, B^(l)_{(xy)(zw)} = C_W^{2(l-1)} s_l K_xz K_yw, D^(l) = C_W^{2(l-1)}
    l (l-1)/2 Q, F^(l)_{(xy)(zw)} = C_W^{2(l-1)} l (l-1)/2 K_xz K_yw, Theta1 = 0. At depth 1 the readout law
    n Cov = C_W^2 (K_ac K_bd + K_ad K_bc + 2 K_ab K_cd) is exact: Theta_hat_ab = (C_W/n)(z_a.z_b + |omega|^2 K_ab)
    with z_k ~ N(0, K) and omega ~ N(0, 1) i.i.d. over the n neurons (direct Wick contraction)."""
    cw = 1.3
    m = nf.ntk_fluctuations_multi(x, depth=depth, activation="linear", C_W=cw, C_b=0.0)
    K = m.K[0]
    Q = np.einsum("ac,bd->abcd", K, K) + np.einsum("ad,bc->abcd", K, K)
    KK = np.einsum("xz,yw->xyzw", K, K)
    for l in range(1, depth + 2):
        c, s, h = cw ** (2 * (l - 1)), (l - 1) * l * (2 * l - 1) / 6, l * (l - 1) / 2
        tol = dict(rtol=1e-11, atol=1e-11 * c * np.max(np.abs(Q)) * max(s, 1))
        np.testing.assert_allclose(m.A[l - 1], c * s * Q, **tol)
        np.testing.assert_allclose(m.B[l - 1], c * s * KK, **tol)
        np.testing.assert_allclose(m.D[l - 1], c * h * Q, **tol)
        np.testing.assert_allclose(m.F[l - 1], c * h * KK, **tol)
        np.testing.assert_allclose(m.Theta1[l - 1], 0.0, atol=1e-11 * np.max(m.Theta[l - 1]))
    if depth == 1:
        exact = cw ** 2 * (Q + 2 * np.einsum("ab,cd->abcd", K, K))
        np.testing.assert_allclose(nf.readout_ntk_covariance(m.A[-1], m.B[-1]), exact, rtol=1e-11)


@pytest.mark.parametrize("name", ["tanh", "relu"])
def test_gaussian_derivative_tensors_against_finite_differences(name):
    """Price's theorem, d<f>_K/dK_cd = <d_c d_d f> (c != d) and (1/2) <d_c^2 f> (c = d), by central
    differences of the quadrature in K; Stein's lemma <z_e g> = sum_c K_ec <d_c g> for the first
    derivatives Y_{xy;c} = <d_c (sigma'_x sigma_y)>."""
    act = get_activation(name)
    K = np.array([[1.1, 0.4], [0.4, 0.8]])
    g = nf._GaussianLayer(act, K)
    Hs, Hd, Y = g.derivative("ss", 2), g.derivative("dd", 2), g.derivative("ds", 1)
    h = 1e-5

    def mean(kinds, a, b, KK):
        z, w = fw.gaussian_rule(KK)
        f = {"s": act.fn, "d": act.derivative}
        return w @ (np.asarray(f[kinds[0]](z[:, a])) * np.asarray(f[kinds[1]](z[:, b])))

    for (a, b), (c, d) in itertools.product(PAIRS, PAIRS):
        E = np.zeros((2, 2))
        E[c, d] = E[d, c] = h
        for kinds, H in (("ss", Hs), ("dd", Hd)):
            fd = (mean(kinds, a, b, K + E) - mean(kinds, a, b, K - E)) / (2 * h)
            want = H[a, b, c, d] * (0.5 if c == d else 1.0)
            assert abs(fd - want) < 1e-6 * max(1.0, abs(want)), (kinds, a, b, c, d, fd, want)
    z, w = fw.gaussian_rule(K)
    for x, y, e in itertools.product(range(2), repeat=3):
        lhs = w @ (z[:, e] * np.asarray(act.derivative(z[:, x])) * np.asarray(act.fn(z[:, y])))
        assert abs(lhs - K[e] @ Y[x, y]) < 1e-10


def test_bad_input():
    with pytest.raises(ValueError, match="depth"):
        nf.ntk_fluctuations_multi(X2, depth=0, activation="tanh", C_W=1.0, C_b=0.0)
    with pytest.raises(ValueError, match="widths"):
        nf.ntk_fluctuations_multi(X2, depth=2, activation="tanh", C_W=1.0, C_b=0.0, widths=(10,))
    with pytest.raises(ValueError, match="C_W"):
        nf.ntk_fluctuations_multi(X2, depth=2, activation="tanh", C_W=-1.0, C_b=0.0)
    with pytest.raises(ValueError, match="x with shape"):
        nf.ntk_fluctuations_multi(np.eye(5), depth=1, activation="tanh", C_W=1.0, C_b=0.1)
    with pytest.raises(ValueError, match="x with shape"):
        nf.ntk_fluctuations_multi(X2[0], depth=1, activation="tanh", C_W=1.0, C_b=0.1)


# ------------------------------------------------------------------------------- Monte Carlo
WIDTHS, S_MC, SEED = (96,), 3000, 7
MC_CASES = [("relu", 2.0, 0.0, 2), ("tanh", 1.5, 0.1, 2)]


@functools.lru_cache(maxsize=None)
def _networks(name, cw, cb, depth, n):
    """(S, 6): readout NTK (00, 01, 11) and readout metric G^(L+1) (00, 01, 11) of the same networks."""
    kw = dict(n_ensemble=S_MC, widths=[n] * depth, activation=name, C_W=cw, C_b=cb)
    t = np.asarray(empirical_ntk(jax.random.key(SEED), X2, method="backprop", **kw))
    g = np.asarray(layer_kernels(jax.random.key(SEED), X2, **kw))[:, -1]
    return np.stack([t[:, a, b] for a, b in PAIRS] + [g[:, a, b] for a, b in PAIRS], 1)


def _unique(C):
    return np.array([C[p + q] for p, q in UNIQUE])


@pytest.mark.parametrize("name, cw, cb, depth", MC_CASES)
def test_readout_ntk_covariance_against_monte_carlo(name, cw, cb, depth):
    """n Cov(Theta_hat_ab, Theta_hat_cd) = A_{(ab)(cd)} + B_{(ac)(bd)} + B_{(ad)(bc)} for all six unique
    pairs at n = 96; the wrong pairing A + 2 B_{(ab)(cd)} is excluded by the (00)(11), (01)(01) entries."""
    n = WIDTHS[-1]
    th = nf.ntk_fluctuations_multi(X2, depth=depth, activation=name, C_W=cw, C_b=cb)
    want = _unique(nf.readout_ntk_covariance(th.A[-1], th.B[-1]))
    v, e = est.jackknife(lambda s: np.cov(s[:, :3].T)[np.triu_indices(3)], _networks(name, cw, cb, depth, n))
    z = (n * v - want) / (n * e)
    assert np.max(np.abs(z)) < Z_MAX, z
    assert np.max(n * e / np.abs(want)) < 0.1  # every entry resolved to 10%
    wrong = _unique(th.A[-1] + 2 * th.B[-1])
    assert np.max(np.abs((n * v - wrong) / (n * e))) > 2 * Z_MAX


@pytest.mark.parametrize("name, cw, cb, depth", MC_CASES)
def test_metric_ntk_cross_covariance_against_monte_carlo(name, cw, cb, depth):
    """n Cov(G^(L+1)_ab, Theta_hat_cd) = D_{(ab)(cd)} for all nine (ab), (cd) at n = 96."""
    n = WIDTHS[-1]
    th = nf.ntk_fluctuations_multi(X2, depth=depth, activation=name, C_W=cw, C_b=cb)
    want = np.array([[th.D[-1][p + q] for q in PAIRS] for p in PAIRS])
    v, e = est.jackknife(lambda s: np.cov(s.T)[3:, :3], _networks(name, cw, cb, depth, n))
    z = (n * v - want) / (n * e)
    assert np.max(np.abs(z)) < Z_MAX, z


# ------------------------------------------------------------------------------- derivation
def test_derivation_multi_input_steps_hold():
    """derivations/ntk_fluctuations.py items 4, 5: the multi-input Wick pairings and Stein's lemma."""
    from derivations import ntk_fluctuations as dn
    assert dn.wick_step_multi() and dn.stein_step_multi()


@pytest.mark.slow
def test_ntk_mean_shift_off_diagonal_against_monte_carlo():
    """tanh at criticality (C_W = 1, C_b = 0), depth 3, two overlapping inputs: n (E[Theta_hat_ab] - Theta_ab)
    = Theta1_ab + c/n, fit over n = 8, 16, 32; the off-diagonal intercept equals Theta1_01 (= -0.152) and
    is resolved from zero. Measured at this seed: c0 = -0.152 +- 0.029 (z = -0.01); with S = 30000,
    c0 = -0.133 +- 0.021 (z = 0.9). Marked slow (~13 s)."""
    x = np.array([[1.0, 0.2, -0.4], [0.8, 0.6, 0.1]])
    depth, ns, S = 3, (8, 16, 32), 15000
    th = nf.ntk_fluctuations_multi(x, depth=depth, activation="tanh", C_W=1.0, C_b=0.0)
    vals, errs = [], []
    for n in ns:
        t = np.asarray(empirical_ntk(jax.random.key(6), x, n_ensemble=S, widths=[n] * depth, activation="tanh",
                                     C_W=1.0, C_b=0.0, method="backprop"))[:, 0, 1]
        vals.append(n * (t.mean() - th.Theta[-1][0, 1]))
        errs.append(n * t.std(ddof=1) / np.sqrt(S))
    c, e, _ = est.fit_inverse_width(ns, vals, errs)
    assert abs(c[0] - th.Theta1[-1][0, 1]) < Z_MAX * e[0], (c, e, th.Theta1[-1][0, 1])
    assert abs(c[0]) > 2 * e[0]
