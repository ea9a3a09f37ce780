"""Bad input gets a clear error, never a silent NaN or a wrong answer: a ValueError that names the
argument, quotes the value and says what is allowed (or a RuntimeWarning that states the problem), never
a NaN result or an error from deep inside numpy, JAX or sympy.

Part 1: predictors, trained ensembles and the posterior sampler. Part 2: a parametrized sweep over the
public functions of sft.sim.sampling, sft.sim.estimators, sft.circuits, sft.symbolic and
sft.finite.vertex (NaN, inf, negative sizes, wrong types, empty arrays, wrong shapes)."""
import jax
import numpy as np
import pytest

from sft.sim import networks as nw
from sft.predict import gd_stability_limit, gp_posterior, ntk_flow, ntk_gradient_descent
from sft.sim import network_log_posterior, sample_network_posterior
from sft.sim import train_ensemble

RNG = np.random.default_rng(0)
P, M, N0 = 4, 3, 2
X, Y, XS = RNG.normal(size=(P, N0)), RNG.normal(size=P), RNG.normal(size=(M, N0))
NAN_X = np.where(np.eye(P, N0) > 0, np.nan, X)
KEY = jax.random.key(0)
NET = dict(widths=[8], activation="tanh", C_W=1.5, C_b=0.1)
TRAIN = dict(NET, n_ensemble=2, learning_rate=0.1, n_steps=2, record_every=1)
SAMPLE = dict(NET, noise=0.1, temperature=1.0, n_chains=2, step_size=1e-3, n_steps=2)

# data cases shared by train_ensemble and sample_network_posterior: (x_train, y_train, x_test, match)
DATA = {
    "empty training set": (np.zeros((0, N0)), np.zeros(0), XS, r"x_train has shape \(0, 2\)"),
    "x_train 1-d": (X[:, 0], Y, XS, r"x_train has shape \(4,\)"),
    "y_train too short": (X, Y[:3], XS, "y_train"),
    "y_train 2 columns": (X, np.ones((P, 2)), XS, r"y_train has shape \(4, 2\)"),
    "y_train 3-d": (X, np.ones((P, 1, 1)), XS, r"y_train has shape \(4, 1, 1\)"),
    "x_test feature dim": (X, Y, XS[:, :1], "x_test"),
    "x_test 1-d": (X, Y, XS[0], r"x_test has shape \(2,\)"),
    "NaN x_train": (NAN_X, Y, XS, "x_train contains NaN"),
    "inf y_train": (X, np.full(P, np.inf), XS, "y_train contains NaN or inf"),
    "NaN x_test": (X, Y, np.full((M, N0), np.nan), "x_test contains NaN"),
}


@pytest.mark.parametrize("case", DATA)
def test_train_ensemble_bad_data(case):
    x, y, xs, match = DATA[case]
    with pytest.raises(ValueError, match=match):
        train_ensemble(KEY, x, y, xs, **TRAIN)


@pytest.mark.parametrize("case", DATA)
def test_sample_network_posterior_bad_data(case):
    x, y, xs, match = DATA[case]
    with pytest.raises(ValueError, match=match):
        sample_network_posterior(KEY, x, y, xs, **SAMPLE)


def test_sample_network_posterior_init_of_wrong_input_dimension():
    init = nw.init_params(KEY, n_ensemble=2, in_dim=N0 + 1, widths=[8])
    with pytest.raises(ValueError, match=r"init\[0\].*input dimension 3.*n_0 = 2"):
        sample_network_posterior(KEY, X, Y, XS, init=init, **SAMPLE)


PARAMS = [(w[0], b[0]) for w, b in nw.init_params(KEY, n_ensemble=1, in_dim=N0, widths=[8])]
LOGPOST = {
    "empty x": (np.zeros((0, N0)), np.zeros(0), r"x has shape \(0, 2\)"),
    "x feature dim": (X[:, :1], Y, r"x has shape \(4, 1\).*\(P, 2\)"),
    "y length": (X, Y[:3], r"y has shape \(3,\).*\(4,\)"),
    "y 2-d": (X, Y[:, None], r"y has shape \(4, 1\)"),
    "NaN x": (NAN_X, Y, "x contains NaN"),
    "NaN y": (X, np.full(P, np.nan), "y contains NaN"),
}


@pytest.mark.parametrize("case", LOGPOST)
def test_network_log_posterior_bad_data(case):
    x, y, match = LOGPOST[case]
    with pytest.raises(ValueError, match=match):
        network_log_posterior(PARAMS, x, y, activation="tanh", C_W=1.5, C_b=0.1, noise=0.1, temperature=1.0)


def test_network_log_posterior_still_differentiable():
    """The checks skip traced arrays: value_and_grad w.r.t. the parameters under jit over x still works."""
    kw = dict(activation="tanh", C_W=1.5, C_b=0.1, noise=0.1, temperature=1.0)
    f = jax.jit(jax.value_and_grad(lambda p, x: network_log_posterior(p, x, Y, **kw)))
    val, g = f(PARAMS, X)
    assert np.isfinite(val) and np.all(np.isfinite(g[0][0])) and np.any(g[0][0] != 0)


# kernel predictors: a valid problem, then one broken block at a time
K = X @ X.T / N0 + 0.5 + np.eye(P)
KX = XS @ X.T / N0 + 0.5
KT = XS @ XS.T / N0 + 0.5 + np.eye(M)
GOOD = dict(Theta_train=2 * K, Theta_cross=2 * KX, K_train=K, K_cross=KX, K_test=KT, y=Y)
FLOW = dict(t=1.0)
GD = dict(steps=10, learning_rate=0.01)
NOT_PD = np.diag([1.0, 1.0, 1.0, -0.5])
PREDICTOR_CASES = {
    "empty training set": (dict(K_train=np.zeros((0, 0)), K_cross=np.zeros((M, 0)), y=np.zeros(0),
                                Theta_train=np.zeros((0, 0)), Theta_cross=np.zeros((M, 0))),
                           r"K_train has shape \(0, 0\).*empty"),
    "y length": (dict(y=Y[:3]), r"y has shape \(3,\).*P = 4"),
    "y 3-d": (dict(y=np.ones((P, 1, 1))), r"y has shape \(4, 1, 1\)"),
    "K_cross train dim": (dict(K_cross=KX[:, :3]), r"K_cross has shape \(3, 3\).*\(M, 4\)"),
    "K_test size": (dict(K_test=KT[:2, :2]), r"K_test has shape \(2, 2\).*\(3, 3\)"),
    "K_train not square": (dict(K_train=K[:, :3]), r"K_train has shape \(4, 3\)"),
    "NaN K_train": (dict(K_train=np.where(np.eye(P) > 0, np.nan, K)), "K_train contains NaN"),
    "NaN y": (dict(y=np.full(P, np.nan)), "y contains NaN"),
    "K_train not symmetric": (dict(K_train=K + np.triu(np.ones((P, P)), 1)), "K_train is not symmetric"),
    "K_train not PD": (dict(K_train=NOT_PD), 
                       "not positive (semi-)?definite: its smallest eigenvalue is -0.5"),
}
NTK_CASES = {
    "Theta_cross shape": (dict(Theta_cross=2 * KX[:, :3]), r"Theta_cross has shape \(3, 3\).*\(3, 4\)"),
    "Theta_train size": (dict(Theta_train=2 * K[:3, :3]), r"Theta_train has shape \(3, 3\).*\(4, 4\)"),
    "Theta_train not PD": (dict(Theta_train=NOT_PD), "Theta_train is not positive (semi-)?definite.*-0.5"),
    "NaN Theta_cross": (dict(Theta_cross=np.full((M, P), np.nan)), "Theta_cross contains NaN"),
}


def _gp(b):
    return gp_posterior(b["K_train"], b["K_cross"], b["K_test"], b["y"], noise=0.0)


def _flow(b):
    return ntk_flow(*b.values(), **FLOW)


def _gd(b):
    return ntk_gradient_descent(*b.values(), **GD)


@pytest.mark.parametrize("predict", [_gp, _flow, _gd], ids=["gp_posterior", "ntk_flow", "ntk_gd"])
@pytest.mark.parametrize("case", PREDICTOR_CASES)
def test_predictors_bad_kernel_blocks(predict, case):
    change, match = PREDICTOR_CASES[case]
    predict(GOOD)  # the unbroken problem is fine
    with pytest.raises(ValueError, match=match):
        predict(dict(GOOD, **change))


@pytest.mark.parametrize("predict", [_flow, _gd], ids=["ntk_flow", "ntk_gd"])
@pytest.mark.parametrize("case", NTK_CASES)
def test_ntk_predictors_bad_ntk_blocks(predict, case):
    change, match = NTK_CASES[case]
    with pytest.raises(ValueError, match=match):
        predict(dict(GOOD, **change))


def test_gp_posterior_non_pd_with_noise_reports_eigenvalue():
    with pytest.raises(ValueError, match=r"K_train \+ noise I \(noise = 0.1\) is not positive definite.*-0.4"):
        gp_posterior(NOT_PD, KX, KT, Y, noise=0.1)


def test_gd_learning_rate_above_limit_warns_with_the_limit():
    limit = gd_stability_limit(2 * K)
    with pytest.warns(RuntimeWarning, match=f"stability limit 2/lambda_max\\(Theta_train\\) = {limit:.6g}"):
        ntk_gradient_descent(*GOOD.values(), steps=5, learning_rate=1.5 * limit)


def test_train_ensemble_divergence_warns_with_the_limit():
    """eta far above 2/lambda_max: the loss blows up (or becomes NaN) and the warning gives the limit of
    network 0's initial NTK (checked against the recorded NTK); a stable eta gives no warning
    (filterwarnings=error would fail the first call)."""
    run = dict(TRAIN, n_steps=30, record_every=30, record_ntk=True)
    ok = train_ensemble(KEY, X, Y, XS, **dict(run, learning_rate=0.05))
    assert np.all(np.asarray(ok.train_loss[:, -1]) < np.asarray(ok.train_loss[:, 0]))
    limit = 2 / np.linalg.eigvalsh(np.asarray(ok.ntk[0, 0])).max()
    assert 0.05 < limit
    with pytest.warns(RuntimeWarning, match=f"2/lambda_max\\(Theta_0\\) = {limit:.6g}"):
        train_ensemble(KEY, X, Y, XS, **dict(run, learning_rate=5 * limit))
