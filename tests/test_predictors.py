"""sft.predict.infinite_width against independent results.

Kernels: relu, depth 2, C_W = 2, C_b = 0.1 (sft.kernels.recursion) on P = 10 training and M = 3 test inputs,
computed once on all 13 inputs and sliced, so the joint prior is exactly consistent.
Deterministic checks use a tolerance of 1e-9 relative to the largest entry: the matrices solved have
condition numbers <= ~1e3 (eigenvalues of K + 0.01 I and of Theta in [0.02, 25]), so the float64
round-off is <= ~1e3 x 1e-16, far below. Statistical checks: every entry |z| < Z_MAX at a fixed seed,
error bar = std(ddof=1)/sqrt(S) of the per-sample products.
"""
import numpy as np
import pytest
import scipy.linalg
from scipy.integrate import solve_ivp
from scipy.stats import multivariate_normal

from sft import kernels
from sft.conventions import Z_MAX
from sft.predict import gd_stability_limit, gp_posterior, ntk_flow, ntk_gradient_descent

P, M, TOL = 10, 3, 1e-9
X = np.random.default_rng(0).normal(size=(P + M, 3))
K_ALL, T_ALL = kernels.nngp_and_ntk(X, depth=2, activation="relu", C_W=2.0, C_b=0.1)
KTR, KX, KTE = K_ALL[:P, :P], K_ALL[P:, :P], K_ALL[P:, P:]
TTR, TX = T_ALL[:P, :P], T_ALL[P:, :P]
Y = np.sin(X[:P, 0]) + 0.3 * X[:P, 1]
NOISE = 0.01


def close(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return np.max(np.abs(a - b)) <= TOL * max(np.max(np.abs(b)), 1.0)


def cov_z(a, b, theory):
    """z-scores of the sample cross-covariance E[a b^T] of zero-mean samples a (S, m), b (S, n)."""
    prod = a[:, :, None] * b[:, None, :]
    return (prod.mean(0) - theory) / (prod.std(0, ddof=1) / np.sqrt(len(a)))


def flow_lee_dense(t, eta=1.0):
    """Lee et al. (2019) eqs. (15)-(16) with scipy.linalg.expm and a dense inverse (no eigenbasis)."""
    T = TX @ np.linalg.inv(TTR) @ (np.eye(P) - scipy.linalg.expm(-eta * t * TTR))
    return T @ Y, KTE + T @ KTR @ T.T - T @ KX.T - KX @ T.T


# ------------------------------------------------------------------------------------ GP posterior
def test_gp_posterior_equals_dense_inverse_and_scipy_logpdf():
    post = gp_posterior(KTR, KX, KTE, Y, noise=NOISE)
    Ainv = np.linalg.inv(KTR + NOISE * np.eye(P))
    assert close(post.mean, KX @ Ainv @ Y)
    assert close(post.cov, KTE - KX @ Ainv @ KX.T)
    ref = multivariate_normal(np.zeros(P), KTR + NOISE * np.eye(P)).logpdf(Y)
    assert abs(post.log_marginal_likelihood - ref) <= TOL * abs(ref)
    two = gp_posterior(KTR, KX, KTE, np.stack([Y, 2 * Y], 1), noise=NOISE)  # k = 2 columns
    assert close(two.mean[:, 1], 2 * post.mean) and close(two.cov, post.cov)
    ref2 = ref + multivariate_normal(np.zeros(P), KTR + NOISE * np.eye(P)).logpdf(2 * Y)
    assert abs(two.log_marginal_likelihood - ref2) <= TOL * abs(ref2)


def test_gp_posterior_is_conditioning_of_the_joint_prior_monte_carlo():
    """Sample (y, f*) from the joint prior; the residual f* - mean(y) of exact conditioning is
    independent of y (E[r y^T] = 0) with covariance cov (E[r r^T] = cov)."""
    S = 200_000
    joint = K_ALL + NOISE * np.diag(np.r_[np.ones(P), np.zeros(M)])
    z = np.random.default_rng(1).normal(size=(S, P + M)) @ np.linalg.cholesky(joint).T
    y, fstar = z[:, :P], z[:, P:]
    post = gp_posterior(KTR, KX, KTE, y.T, noise=NOISE)  # S label columns at once
    r = fstar - post.mean.T
    assert np.max(np.abs(cov_z(r, y, 0.0))) < Z_MAX
    assert np.max(np.abs(cov_z(r, r, post.cov))) < Z_MAX
    # and the check has power: a wrong noise level is detected
    wrong = gp_posterior(KTR, KX, KTE, y.T, noise=10 * NOISE)
    assert np.max(np.abs(cov_z(fstar - wrong.mean.T, y, 0.0))) > 10


# ----------------------------------------------------------------------------------- NTK gradient flow
def test_ntk_flow_limits_t0_and_tinf():
    start = ntk_flow(TTR, TX, KTR, KX, KTE, Y, t=0.0)
    assert np.all(start.mean == 0) and close(start.cov, KTE)
    end = ntk_flow(TTR, TX, KTR, KX, KTE, Y, t=np.inf)
    R = TX @ np.linalg.inv(TTR)
    assert close(end.mean, np.linalg.solve(TTR, TX.T).T @ Y)
    assert close(end.cov, KTE + R @ KTR @ R.T - R @ KX.T - KX @ R.T)
    late = ntk_flow(TTR, TX, KTR, KX, KTE, Y, t=1e4)  # e^{-lam_min t} ~ e^{-1900}
    assert close(late.mean, end.mean) and close(late.cov, end.cov)


@pytest.mark.parametrize("t,eta", [(0.3, 1.0), (2.0, 0.7), (40.0, 1.0)])
def test_ntk_flow_equals_expm_propagation(t, eta):
    out = ntk_flow(TTR, TX, KTR, KX, KTE, Y, t=t, learning_rate=eta)
    mean, cov = flow_lee_dense(t, eta)
    assert close(out.mean, mean) and close(out.cov, cov)


def test_ntk_flow_mean_equals_ode_integration():
    """df/dt = -eta Theta (f - y) on the training set, df*/dt = -eta Theta* (f - y), f_0 = 0 (the mean)."""
    eta, ts = 0.5, [0.1, 1.0, 10.0]
    rhs = lambda _, z: -eta * np.concatenate([TTR, TX]) @ (z[:P] - Y)
    sol = solve_ivp(rhs, (0, ts[-1]), np.zeros(P + M), method="Radau", t_eval=ts, rtol=1e-12, atol=1e-14)
    for i, t in enumerate(ts):
        mean = ntk_flow(TTR, TX, KTR, KX, KTE, Y, t=t, learning_rate=eta).mean
        assert np.max(np.abs(sol.y[P:, i] - mean)) < 1e-8  # ODE solver tolerance, not round-off


def test_ntk_flow_covariance_monte_carlo_over_initializations():
    """f_0 ~ N(0, K) on train + test, each propagated by the exact linear flow (Euler-free: expm)."""
    S, t, eta = 100_000, 1.5, 1.0
    A = np.zeros((P + M, P + M))
    A[:, :P] = np.concatenate([TTR, TX])
    G = scipy.linalg.expm(-eta * t * A)  # acts on (f - y, f*); y only shifts the mean
    rng = np.random.default_rng(2)
    f0 = rng.normal(size=(S, P + M)) @ np.linalg.cholesky(K_ALL).T
    shift = np.r_[Y, np.zeros(M)]
    ft = (f0 - shift) @ G.T + shift
    out = ntk_flow(TTR, TX, KTR, KX, KTE, Y, t=t, learning_rate=eta)
    fs = ft[:, P:]
    z_mean = (fs.mean(0) - out.mean) / (fs.std(0, ddof=1) / np.sqrt(S))
    assert np.max(np.abs(z_mean)) < Z_MAX
    assert np.max(np.abs(cov_z(fs - out.mean, fs - out.mean, out.cov))) < Z_MAX
    assert np.max(np.abs(cov_z(fs - out.mean, fs - out.mean, KTE))) > 10  # power: differs from prior


# ---------------------------------------------------------------------------------- gradient descent
def test_gd_closed_form_equals_explicit_iteration():
    eta, steps = 0.9 * gd_stability_limit(TTR), 37
    f, fs = np.zeros(P), np.zeros(M)
    G = np.block([[np.eye(P) - eta * TTR, np.zeros((P, M))], [-eta * TX, np.eye(M)]])
    C = K_ALL.copy()
    for _ in range(steps):
        f, fs = f - eta * TTR @ (f - Y), fs - eta * TX @ (f - Y)
        C = G @ C @ G.T
    out = ntk_gradient_descent(TTR, TX, KTR, KX, KTE, Y, steps=steps, learning_rate=eta)
    assert close(out.mean, fs) and close(out.cov, C[P:, P:])


def test_gd_approaches_flow_with_error_linear_in_eta():
    t = 2.0
    flow = ntk_flow(TTR, TX, KTR, KX, KTE, Y, t=t)
    errs = []
    for eta in (2e-3, 1e-3):
        gd = ntk_gradient_descent(TTR, TX, KTR, KX, KTE, Y, steps=round(t / eta), learning_rate=eta)
        errs.append(max(np.max(np.abs(gd.mean - flow.mean)), np.max(np.abs(gd.cov - flow.cov))))
    assert 1e-6 < errs[1] < 1e-2 and 1.9 < errs[0] / errs[1] < 2.1
    conv = ntk_gradient_descent(TTR, TX, KTR, KX, KTE, Y, steps=np.inf, learning_rate=0.01)
    end = ntk_flow(TTR, TX, KTR, KX, KTE, Y, t=np.inf)
    assert close(conv.mean, end.mean) and close(conv.cov, end.cov)


def test_gd_stability_limit_warns_and_diverges():
    limit = gd_stability_limit(TTR)
    assert close(limit, 2 / np.linalg.eigvalsh(TTR)[-1])
    stable = ntk_gradient_descent(TTR, TX, KTR, KX, KTE, Y, steps=2000, learning_rate=0.99 * limit)
    assert np.max(np.abs(stable.mean)) < 10
    with pytest.warns(RuntimeWarning, match=f"{limit:.6g}"):
        bad = ntk_gradient_descent(TTR, TX, KTR, KX, KTE, Y, steps=2000, learning_rate=1.01 * limit)
    assert np.max(np.abs(bad.mean)) > 1e6
    f = np.zeros(P)  # explicit iteration diverges too
    for _ in range(2000):
        f = f - 1.01 * limit * TTR @ (f - Y)
    assert np.max(np.abs(f)) > 1e6
    for kw in ({"steps": 5, "unstable": "raise"}, {"steps": np.inf}):
        with pytest.raises(ValueError, match="stability limit"):
            ntk_gradient_descent(TTR, TX, KTR, KX, KTE, Y, learning_rate=1.01 * limit, **kw)


# ---------------------------------------------------------------------------------------- bad input
def _sym_bad():
    A = KTR.copy()
    A[0, 1] += 1e-3
    return A


@pytest.mark.parametrize("args,kw,match", [
    ((np.zeros((0, 0)), np.zeros((M, 0)), KTE, np.zeros(0)), {}, "K_train.*empty"),
    ((KTR, KX, KTE, Y[:-1]), {}, "y has shape"),
    ((KTR, KX[:, :-1], KTE, Y), {}, "K_cross has shape"),
    ((KTR, KX, KTE[:2, :2], Y), {}, "K_test has shape"),
    ((KTR, KX, KTE, np.where(np.arange(P) == 3, np.nan, Y)), {}, "y contains NaN"),
    ((_sym_bad(), KX, KTE, Y), {}, "K_train is not symmetric"),
    ((KTR, KX, KTE, Y), {"noise": -0.1}, "noise=-0.1"),
    ((np.ones((P, P)), KX, KTE, Y), {"noise": 0.0}, "not positive definite: its smallest eigenvalue"),
])
def test_gp_posterior_bad_input(args, kw, match):
    with pytest.raises(ValueError, match=match):
        gp_posterior(*args, **{"noise": NOISE, **kw})


@pytest.mark.parametrize("theta,kw,match", [
    ((np.ones((P, P)), TX), {"t": np.inf}, "Theta_train is not positive definite: its smallest eigenvalue"),
    ((TTR, TX[:, :-1]), {}, "Theta_cross has shape"),
    ((TTR[:-1, :-1], TX), {}, "Theta_train has shape"),
    ((TTR, TX), {"t": -1.0}, "t=-1.0"),
    ((TTR, TX), {"learning_rate": 0.0}, "learning_rate=0"),
    ((TTR, TX), {"t": np.nan}, "t=nan"),
])
def test_ntk_flow_bad_input(theta, kw, match):
    with pytest.raises(ValueError, match=match):
        ntk_flow(*theta, KTR, KX, KTE, Y, **{"t": 1.0, **kw})


@pytest.mark.parametrize("kw,match", [({"steps": 2.5}, "steps=2.5"), ({"steps": -1}, "steps=-1"),
                                      ({"unstable": "ignore"}, "unstable='ignore'")])
def test_ntk_gradient_descent_bad_input(kw, match):
    with pytest.raises(ValueError, match=match):
        ntk_gradient_descent(TTR, TX, KTR, KX, KTE, Y, **{"steps": 3, "learning_rate": 0.01, **kw})
