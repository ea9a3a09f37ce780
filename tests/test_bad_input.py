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


# ======================================================================================================
# Part 2. The reported cases, then a sweep: every public function of the modules below gets one bad
# argument at a time and must raise a ValueError that names that argument.
import jax.numpy as jnp  # noqa: E402
import sympy as sp  # noqa: E402

from sft.circuits import gaussian_equivalence as ge, impurity as im, planted as pl  # noqa: E402
from sft.circuits import residual_gp as rg, sparse_synapses as ss  # noqa: E402
from sft.conventions import check_array, check_flag, check_int, check_key, check_real  # noqa: E402
from sft.finite import deep_linear as dl, relu_exact as rx, vertex as vx  # noqa: E402
from sft.gaussian import expectations as gx  # noqa: E402
from sft.kernels import get_activation  # noqa: E402
from sft.sim import estimators as est, sampling as smp  # noqa: E402
from sft.symbolic import cumulants as cu, edgeworth as ed, feynman as fe, wick as wi  # noqa: E402

NAN, INF = float("nan"), float("inf")
HALF = lambda x: -0.5 * x @ x  # noqa: E731  (standard normal log density)


# ---------------------------------------------------------------- reported cases, one test each
def test_mala_rejects_a_non_finite_start():
    init = np.zeros((3, 2))
    init[1, 0] = np.nan
    with pytest.raises(ValueError, match="init contains NaN or inf"):
        smp.mala(HALF, init, KEY, step_size=0.1, n_steps=2)
    # a finite point where the log density is NaN (here: outside its domain x > 0) is rejected too
    with pytest.raises(ValueError, match=r"init is not allowed: .*NaN or inf.*chain\(s\) \[0, 1\]"):
        smp.mala(lambda x: jnp.sum(jnp.log(x)), -np.ones((2, 2)), KEY, step_size=0.1, n_steps=2)


def test_mala_warns_with_the_count_of_non_finite_proposals():
    """log p is finite only at the starting point x = 0, so every proposal (continuous Gaussian noise)
    has log p = NaN: all 2 chains x (1 burn-in + 3) steps = 8 proposals are rejected, counted and the
    chains stay at the start."""
    logp = lambda x: jnp.where(jnp.all(x == 0), -0.5 * x @ x, jnp.nan)  # noqa: E731
    with pytest.warns(RuntimeWarning, match=r"mala: 8 of 8 proposals .*NaN or inf log density"):
        r = smp.mala(logp, np.zeros((2, 3)), KEY, step_size=0.5, n_steps=3, burn_in=1)
    assert np.all(np.asarray(r.samples) == 0) and np.all(np.asarray(r.acceptance_rate) == 0)


def test_random_features_rejects_nan_inputs_and_negative_scales():
    x, om, be = np.ones((2, 2)), np.ones((2, 3)), np.zeros(3)
    kw = dict(activation="relu", input_scale=1.0, C_b=0.0)
    with pytest.raises(ValueError, match="x contains NaN"):
        rg.random_features(np.full((2, 2), np.nan), om, be, **kw)
    with pytest.raises(ValueError, match=r"input_scale=-1.0 is not allowed: .*> 0"):
        rg.random_features(x, om, be, **dict(kw, input_scale=-1.0))
    with pytest.raises(ValueError, match=r"C_b=-0.5 is not allowed: .*>= 0"):
        rg.random_features(x, om, be, **dict(kw, C_b=-0.5))


def test_t_matrix_rejects_nan():
    with pytest.raises(ValueError, match="strengths contains NaN"):
        im.t_matrix([np.nan], [[0.1 - 0.2j]])
    with pytest.raises(ValueError, match="G0_imp contains NaN"):
        im.t_matrix([1.0], [[complex(np.nan, 0.0)]])


@pytest.mark.parametrize("call", [
    lambda: rg.fit_residual_gp(X, Y, key=KEY, n_features=4, learn_input="no"),
    lambda: vx.multi_input(X[:2], depth=1, activation="relu", C_W=2.0, C_b=0.0, kernel_shift="no"),
    lambda: fe.draw(fe.diagrams(2, 1)[0], None, title="no"),
    lambda: rg.default_feature_count(100, 3, warn="no"),
    lambda: gx.pair_and_diag_expectations(get_activation("tanh"), np.ones(1), np.ones(1), np.full((1, 1), 0.3),
                                          symmetric="no"),
    lambda: gx.mehler_expectations(*(gx.hermite_coefficients(get_activation("tanh"), np.ones(1)),) * 2,
                                   np.full((1, 1), 0.3), symmetric="no"),
], ids=["learn_input", "kernel_shift", "title", "warn", "symmetric-pair_and_diag", "symmetric-mehler"])
def test_flags_must_be_bool(call):
    with pytest.raises(ValueError, match=r"='no' is not allowed: \w+ is a flag, give True or False"):
        call()


def test_check_flag_accepts_only_bools():
    assert check_flag("f", True) is True and check_flag("f", np.bool_(False)) is False
    for bad in ("no", "False", 0, 1, None, 1.0):
        with pytest.raises(ValueError, match=f"f={bad!r} is not allowed"):
            check_flag("f", bad)


@pytest.mark.parametrize("bad", ["1", None, 1j, np.array([1.0, 2.0]), True], ids=repr)
def test_scale_invariant_slopes_must_be_real_numbers(bad):
    for arg in ("a_plus", "a_minus"):
        for fn in (lambda **kw: dl.excess_kurtosis([4, 8], **kw),
                   lambda **kw: rx.output_cumulant_ratios([4, 8], **kw)):
            with pytest.raises(ValueError, match=rf"{arg}=.* is not allowed: {arg} must be a finite real number"):
                fn(**{arg: bad})
    assert dl.scale_invariant_nu(np.float32(1.0), 0) == 5.0          # numpy scalars are numbers (ReLU: nu = 5)
    with pytest.raises(ValueError, match=r"a_plus=0, a_minus=0\) are not allowed: not both 0"):
        dl.scale_invariant_nu(0.0, 0)


def test_neuron_excess_kurtosis_rejects_a_boolean_width():
    with pytest.raises(ValueError, match=r"n_prev=True is not allowed: widths are integers >= 1 \(not booleans\)"):
        vx.neuron_excess_kurtosis(1.0, 1.0, True)
    assert vx.neuron_excess_kurtosis(1.0, 2.0, 3) == pytest.approx(0.25, rel=1e-15)   # 3 V / (n K^2)


def test_perfect_matchings_checks_its_argument_at_call_time():
    with pytest.raises(ValueError, match=r"items=3 is not allowed: give a sequence"):
        wi.perfect_matchings(3)                                    # raises before any iteration
    assert len(list(wi.perfect_matchings(range(6)))) == 15         # 5!! pairings
    assert list(wi.perfect_matchings("abc")) == []                 # odd: none


def test_negative_theta_is_rejected_by_the_outlier_simulators():
    """A negative theta puts the outlier below the bulk; the simulators record the top eigenvalues, which
    would be the bulk edge (the reported wrong answer)."""
    for sim in (lambda t: pl.simulate_wigner_outliers(4, t, 1, seed=0),
                lambda t: pl.simulate_wigner_outliers_jax(4, t, 1, key=KEY),
                lambda t: pl.simulate_rectangular_outliers(3, 4, t, 1, seed=0)):
        with pytest.raises(ValueError, match=r"thetas=\[-3.0\] is not allowed: .*needs thetas > 0"):
            sim([-3.0])
    # the closed form handles either sign: theta = -3 has its outlier at -(3 + 1/3)
    assert pl.wigner_outlier(-3.0)[0] == pytest.approx(-(3 + 1 / 3), rel=1e-15)


def test_single_input_rejects_an_array_K1():
    with pytest.raises(ValueError, match=r"K1=array\(\[1., 2.\]\) is not allowed: K1 must be a finite real number > 0"):
        vx.single_input(np.array([1.0, 2.0]), depth=2, activation="relu", C_W=2.0, C_b=0.0)
    ref = vx.single_input(1.5, depth=2, activation="relu", C_W=2.0, C_b=0.0)
    np.testing.assert_array_equal(vx.single_input(np.float32(1.5), depth=2, activation="relu", C_W=2.0, C_b=0.0).K,
                                  ref.K)  # numpy scalars are numbers


@pytest.mark.parametrize("call, match", [
    (lambda: ed.edgeworth_density(1, [NAN]), r"lambdas\[0\]=nan is not allowed"),
    (lambda: ed.edgeworth_density(1, [INF]), r"lambdas\[0\]=inf is not allowed"),
    (lambda: ed.edgeworth_density(1, [sp.oo]), r"lambdas\[0\]=oo is not allowed"),
    (lambda: ed.edgeworth_density(1, [1j]), r"lambdas\[0\]=1j is not allowed"),
    (lambda: ed.nearly_gaussian_density(1, [0, NAN, 1]), r"cumulants\[1\]=nan is not allowed"),
    (lambda: ed.cornish_fisher_quantile(1, [NAN]), r"lambdas\[0\]=nan is not allowed"),
    (lambda: ed.edgeworth_cdf(1, [0.5], eps=NAN), "eps=nan is not allowed"),
    (lambda: cu.gamma_cumulants(-2, 3), "shape=-2 is not allowed: shape must be > 0"),
    (lambda: cu.gamma_cumulants(2, 3, scale=0), "scale=0 is not allowed: scale must be > 0"),
    (lambda: cu.moments_from_cumulants([sp.Symbol("k"), sp.nan]), r"cumulants\[1\]=nan is not allowed"),
], ids=["nan", "inf", "oo", "complex", "nearly_gaussian", "cornish_fisher", "eps", "gamma shape",
        "gamma scale", "symbolic nan"])
def test_symbolic_inputs(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_symbolic_inputs_still_take_symbols_and_exact_numbers():
    k = sp.Symbol("k", positive=True)
    assert cu.gamma_cumulants(k, 2) == [k, k]
    assert cu.gamma_cumulants(2, 3) == [2, 2, 4]
    assert ed.standardized_cumulants([0, 4, 8]) == [1]
    assert ed.edgeworth_density(1, [sp.Rational(1, 2)]).free_symbols == {ed.X, ed.EPS}


def test_entry_helpers():
    assert check_int("n", np.int64(3), 1) == 3 and check_real("q", np.array(2.0), minimum=0) == 2.0
    assert check_array("a", [1, 2]).dtype == np.float64
    assert check_array("G", [1j], dtype=np.complex128).dtype == np.complex128
    for call, match in ((lambda: check_int("n", 2.0, 1), "n=2.0 is not allowed: n must be an integer >= 1"),
                        (lambda: check_int("n", True), "n=True is not allowed"),
                        (lambda: check_real("q", "1"), "q='1' is not allowed: q must be a finite real number"),
                        (lambda: check_real("q", 1.0, minimum=0, maximum=1, strict=True), "q must be .* > 0 and < 1"),
                        (lambda: check_array("a", "1.5"), "a='1.5' is not allowed: give a numeric array"),
                        (lambda: check_array("a", [1j]), "a is complex: it must be real"),
                        (lambda: check_array("a", [[1.0]], ndim=1), r"a has shape \(1, 1\): it must have 1"),
                        (lambda: check_key("key", 0), "key=0 is not allowed: give one JAX PRNG key")):
        with pytest.raises(ValueError, match=match):
            call()


def test_zero_variance_and_constant_chains_raise():
    with pytest.raises(ValueError, match="the variance k2 of x is zero"):
        est.excess_kurtosis(np.ones(40), n_blocks=4)
    with pytest.raises(ValueError, match="the mean of x is zero"):
        est.relative_variance(np.array([-1.0, 1.0] * 10), n_blocks=4)
    for diag in (smp.split_rhat, smp.effective_sample_size):
        with pytest.raises(ValueError, match="chains is constant along every chain"):
            diag(np.ones((2, 10)))


def test_fit_inverse_width_rank_deficient_and_against_exact_solution():
    """Degenerate powers raise; a consistent system is solved exactly (chi2 ~ 0, c = the generating
    coefficients) with errors equal to sqrt(diag((A^T A)^-1)) computed independently."""
    with pytest.raises(ValueError, match=r"powers=\(1, 1\) .* degenerate"):
        est.fit_inverse_width([2.0, 4.0, 8.0], [1.0, 2.0, 3.0], [0.1] * 3, powers=(1, 1))
    n = np.array([2.0, 4.0, 8.0, 16.0])
    e = np.array([0.1, 0.2, 0.1, 0.3])
    c, err, chi2 = est.fit_inverse_width(n, 3.0 - 5.0 / n, e, powers=(0, 1))
    A = n[:, None] ** -np.array([0.0, 1.0]) / e[:, None]
    np.testing.assert_allclose(c, [3.0, -5.0], rtol=1e-12)
    np.testing.assert_allclose(err, np.sqrt(np.diag(np.linalg.inv(A.T @ A))), rtol=1e-12)
    assert chi2 < 1e-20


# ------------------------------------------------------------------------------------- the sweep
# (function, valid arguments (the first `npos` positional)); each numeric argument is then broken in
# turn: NaN, inf, a string, and a float for an integer; each flag: the string 'no'. The error must be
# a ValueError that names the broken argument.
G3 = np.array([[[2.0, 0.5], [0.5, 1.0]]] * 4)
FIT = rg.fit_residual_gp(X, Y, key=KEY, n_features=4, learn_input=False, noise_floor=0.01)
LAW = ss.lognormal_synapses(1.0, 0.5)
LAYER = ss.SparseLayer(1.0, LAW, "erf", 1.0)
D_MC, G_MC = RNG.normal(size=(16, 1)), np.ones((16, 1, 1))
SWEEP = [
    (smp.mala, dict(logdensity=HALF, init=np.zeros((2, 2)), key=KEY, step_size=0.5, n_steps=2, burn_in=0,
                    thin=1), 3),
    (smp.network_log_posterior, dict(params=[(np.ones((2, 3)), np.zeros(3)), (np.ones((3, 1)), np.zeros(1))],
                                     x=X, y=Y, activation="tanh", C_W=1.5, C_b=0.1, noise=0.1,
                                     temperature=1.0), 3),
    (smp.sample_network_posterior, dict(key=KEY, x_train=X, y_train=Y, x_test=XS, widths=[4],
                                        activation="tanh", C_W=1.5, C_b=0.1, noise=0.1, temperature=1.0,
                                        n_chains=2, step_size=1e-3, n_steps=2, burn_in=0, thin=1), 4),
    (smp.effective_sample_size, dict(chains=RNG.normal(size=(2, 8))), 1),
    (smp.split_rhat, dict(chains=RNG.normal(size=(2, 8))), 1),
    (est.k2, dict(x=RNG.normal(size=5)), 1),
    (est.k4, dict(x=RNG.normal(size=5)), 1),
    (est.jackknife, dict(statistic=lambda s: s.mean(0), x=RNG.normal(size=8), n_blocks=4), 2),
    (est.excess_kurtosis, dict(x=RNG.normal(size=16), n_blocks=4), 1),
    (est.vertex_from_metrics, dict(G=G3, n_prev=4), 2),
    (est.conditional_next_metric, dict(G=G3, activation="tanh", C_W=1.5, C_b=0.1, n_nodes=8), 1),
    (est.fit_inverse_width, dict(widths=[4.0, 8.0, 16.0], values=[1.0, 0.5, 0.25], errors=[0.1] * 3,
                                 powers=(0, 1)), 3),
    (est.relative_variance, dict(x=RNG.chisquare(10, size=16), n_blocks=4), 1),
    (est.nu_from_relative_variance, dict(R=0.2, widths=[10, 20]), 2),
    (rg.random_features, dict(x=X, omega=np.ones((2, 3)), beta=np.zeros(3), activation="relu",
                              input_scale=1.0, C_b=0.1), 3),
    (rg.feature_log_marginal_likelihood, dict(Phi=np.ones((4, 2)), r=Y, amplitude=1.0, noise=0.1), 2),
    (rg.fit_residual_gp, dict(x=X, r=Y, key=KEY, activation="relu", n_features=4, noise_floor=0.01,
                              learn_input=False, input_scale=1.0, C_b=0.0), 2),
    (rg.heldout_diagnostics, dict(fit=FIT, x_test=RNG.normal(size=(8, 2)), r_test=RNG.normal(size=8),
                                  x_fit=X), 3),
    (rg.diagnose_interpretation, dict(network=(Y, RNG.normal(size=8)), interpretation=(0 * Y, np.zeros(8)),
                                      x_fit=X, x_test=RNG.normal(size=(8, 2)), key=KEY, n_features=4,
                                      noise_floor=0.01, learn_input=False), 4),
    (rg.background_variance, dict(activation="relu", a_var=1.0, q=1.0), 1),
    (rg.standardized_moments, dict(z=RNG.normal(size=8)), 1),
    (rg.neuron_contributions, dict(x=X, W=np.ones((3, 2)), a=np.ones(3), activation="relu", scale=1.0), 3),
    (pl.semicircle_stieltjes, dict(z=2.5), 1),
    (pl.marchenko_pastur_stieltjes, dict(w=5.0, c=0.5), 2),
    (pl.stieltjes_transform, dict(density=lambda x: np.sqrt(4 - x * x) / (2 * np.pi), support=(-2.0, 2.0),
                                  z=2.5), 3),
    (pl.t_matrix_outliers, dict(circuit_resolvent=lambda z: np.eye(1) * pl.semicircle_stieltjes(z),
                                coupling=[[3.0]], interval=(2.0, 50.0), n_grid=20, h=1e-4), 3),
    (pl.wigner_outlier, dict(theta=2.0), 1),
    (pl.rectangular_outlier, dict(theta=2.0, c=0.5), 2),
    (pl.wigner_outliers_t_matrix, dict(thetas=[3.0], z_max=100.0), 1),
    (pl.rectangular_outliers_t_matrix, dict(thetas=[2.0], c=0.5, z_max=100.0), 2),
    (pl.planted_wigner, dict(n=5, thetas=[2.0], rng=0), 2),
    (pl.planted_rectangular, dict(n=4, m=5, thetas=[2.0], rng=0), 3),
    (pl.simulate_wigner_outliers, dict(n=5, thetas=[2.0], n_draws=2, seed=0), 3),
    (pl.simulate_rectangular_outliers, dict(n=4, m=5, thetas=[2.0], n_draws=2, seed=0), 4),
    (pl.simulate_wigner_outliers_jax, dict(n=5, thetas=[2.0], n_draws=2, key=KEY, batch=2), 3),
    (pl.simulate_rectangular_outliers_jax, dict(n=4, m=5, thetas=[2.0], n_draws=2, key=KEY, batch=2), 4),
    (ss.lognormal_synapses, dict(J0=1.0, s=0.5, p_plus=0.5), 3),
    (ss.strength_moments, dict(law=LAW, r_max=4), 2),
    (ss.input_moments, dict(layer=LAYER, r_max=4, n_g=16), 2),
    (ss.preactivation_cumulants, dict(layer=LAYER, order=4, n_g=16), 2),
    (ss.next_layer_cumulants, dict(layer=LAYER, lam_next=1.0, law_next=LAW, order=4, C_W=1.0, C_b=0.0), 4),
    (ss.predicted_densities, dict(layer=LAYER, methods=[("exact",)], n_grid=64, n_sd=14.0, n_g=16, n_u=4,
                                  chunk=256), 2),
    (ss.sample_strengths, dict(law=LAW, key=KEY, shape=(3,)), 3),
    (ss.simulate_conditionals, dict(layer=LAYER, n=4, key=KEY, n_samples=10, batch=5), 4),
    (ss.simulate_limit, dict(layer=LAYER, key=KEY, n_samples=10, n_g=16), 3),
    (ss.mc_cumulants, dict(D=D_MC, G=G_MC, order=4, n_blocks=4), 3),
    (ss.mc_excess_kurtosis, dict(D=D_MC, G=G_MC, n_blocks=4), 2),
    (ss.mc_expectation, dict(f=lambda z: z[..., 0] ** 2, D=D_MC, G=G_MC, n_nodes=4, block=16), 3),
    (ss.mc_next_kernel, dict(layer=LAYER, D=D_MC, G=G_MC, n_nodes=4, block=16), 3),
    (ge.equivalence_constants, dict(activation="tanh", q=1.0), 1),
    (ge.hermite_coefficients_1d, dict(g=np.tanh, q=1.0, order=3), 3),
    (ge.background_conditional_moments, dict(activation="tanh", s=[0.5, 1.0], beta=0.5, q_perp=0.5,
                                             a_mean=0.0, a_var=1.0, width=1), 2),
    (ge.background_moments_hermite, dict(activation="tanh", s=[0.5, 1.0], beta=0.5, q_perp=0.5, order=4,
                                         a_mean=0.0, a_var=1.0, width=1), 2),
    (ge.background_moments_multi, dict(activation="tanh", s=[[1.0, 2.0]], tilt=[[0.5, 0.0], [0.0, 0.5]],
                                       q_perp=0.3, a_mean=0.0, a_var=1.0, n_nodes=20), 2),
    (ge.background_moments_hermite_multi, dict(activation="tanh", s=[[1.0, 2.0]], tilt=[[0.5, 0.0], [0.0, 0.5]],
                                               q_perp=0.3, order=3, a_mean=0.0, a_var=1.0), 2),
    (ge.simulate_background, dict(key=KEY, activation="tanh", x=np.ones((3, 2)), circuits=np.eye(2)[:, :1],
                                  width=4, gamma=1.0, a_mean=0.0, a_var=1.0, n_replicas=2, batch_size=2), 3),
    (im.ring_hamiltonian, dict(L=4, t=1.0, eps0=0.0), 1),
    (im.ring_green, dict(z=0.3 + 0.1j, L=4, t=1.0, eps0=0.0), 2),
    (im.chain_green, dict(z=0.3 + 0.1j, r=np.arange(3), t=1.0, eps0=0.0), 2),
    (im.gaussian_field_covariance, dict(L=4, mass=1.0), 2),
    (im.exact_green, dict(H=np.eye(3), z=0.3 + 0.1j), 2),
    (im.t_matrix, dict(strengths=[1.0], G0_imp=[[0.2 - 0.3j]]), 2),
    (im.impurity_green, dict(z=0.3 + 0.1j, L=4, sites=[0], strengths=[1.0], t=1.0, eps0=0.0), 4),
    (im.alloy_self_energy, dict(z=0.3 + 0.1j, c=0.2, V=1.0, method="cpa", L=None, t=1.0, eps0=0.0,
                                damping=0.5, tol=1e-12, max_iter=10000), 3),
    (im.alloy_local_green, dict(z=0.3 + 0.1j, c=0.2, V=1.0, method="ata", t=1.0, eps0=0.0), 3),
    (im.cpa_residual, dict(sigma=0.1 - 0.1j, z=0.3 + 0.1j, c=0.2, V=1.0, t=1.0, eps0=0.0), 4),
    (im.alloy_local_green_mc, dict(zs=[0.3 + 0.1j], c=0.2, V=1.0, L=4, n_real=2, key=KEY, t=1.0, eps0=0.0), 3),
    (ed.standardized_cumulants, dict(cumulants=[1.0, 1.0, 2.0, 6.0]), 1),
    (ed.edgeworth_density, dict(order=1, lambdas=[0.5]), 2),
    (ed.edgeworth_cdf, dict(order=1, lambdas=[0.5]), 2),
    (ed.edgeworth_cf, dict(order=1, lambdas=[0.5]), 2),
    (ed.nearly_gaussian_density, dict(order=1, cumulants=[0, 1, 0.5]), 2),
    (ed.nearly_gaussian_cdf, dict(order=1, cumulants=[0, 1, 0.5]), 2),
    (ed.cornish_fisher_quantile, dict(order=1, lambdas=[0.5]), 2),
    (ed.multivariate_edgeworth_density, dict(order=0, x=np.zeros((1, 2)), mean=[0.0, 0.0], cov=np.eye(2),
                                             cumulants=[]), 5),
    (ed.density_minimum, dict(density=lambda x: np.exp(-x * x), lo=-1.0, hi=1.0, num=11), 3),
    (cu.moments_from_cumulants, dict(cumulants=[0.0, 1.0, 0.0]), 1),
    (cu.cumulants_from_moments, dict(moments=[0.0, 1.0, 0.0]), 1),
    (cu.gamma_cumulants, dict(shape=2.0, order=4, scale=1.0), 3),
    (cu.cumulant_symbols, dict(order=4, name="kappa", start=1), 3),
    (wi.gaussian_moment, dict(indices=[0, 0, 1, 1], cov=[[1.0, 0.2], [0.2, 1.0]]), 2),
    (wi.gaussian_moment_of_linear_forms, dict(vectors=[[1.0, 1.0]] * 4, cov=np.eye(2)), 2),
    (fe.diagrams, dict(n_external=2, order=1), 2),
    (fe.one_component_series, dict(n_external=2, order=1, A=1.0), 2),
    (fe.propagator, dict(A=np.eye(2) * 2), 1),
    (vx.single_input, dict(K1=1.0, depth=2, activation="tanh", C_W=1.5, C_b=0.1), 1),
    (vx.multi_input, dict(x=X[:2], depth=1, activation="relu", C_W=2.0, C_b=0.1, kernel_shift=True), 1),
    (vx.single_input_step, dict(K=1.0, V=0.5, G1=0.1, r=1.0, activation="tanh", C_W=1.5, C_b=0.1), 4),
    (vx.neuron_excess_kurtosis, dict(V=1.0, K=1.0, n_prev=10), 3),
    (vx.gaussian_rule, dict(K=1.0, n_nodes=20), 2),
    (vx.nu_scale_invariant, dict(a_plus=1.0, a_minus=0.5), 2),
    (vx.width_ratios, dict(widths=[4, 8], depth=2), 2),
    (dl.output_moment, dict(order=2, K1=1.0, widths=[3, 4], C_W=1.0), 1),
    (dl.scale_invariant_nu, dict(a_plus=1.0, a_minus=0.5), 2),
    (dl.metric_relative_variance, dict(widths=[4, 8], a_plus=1.0, a_minus=0.5), 1),
    (dl.sample_outputs, dict(rng=np.random.default_rng(0), n_samples=4, K1=1.0, widths=[3, 4], C_W=1.0), 2),
    (rg.default_feature_count, dict(n=100, d=3, warn=False), 2),
    (rx.output_moment, dict(order=2, K1=1.0, widths=[3, 4], C_W=2.0, a_plus=1.0, a_minus=0.0), 1),
    (rx.layer_gain_moment, dict(k=2, width=3, a_plus=1.0, a_minus=0.5), 2),
]


def _breakings(value):
    """Bad replacements for a valid argument value, by its type: {label: bad value}."""
    if isinstance(value, bool):
        return {"str flag": "no"}
    if isinstance(value, int):
        return {"float for int": 1.5, "str": "3", "nan": NAN}
    if isinstance(value, (float, complex)):
        return {"nan": NAN, "inf": INF, "str": "1"}
    if isinstance(value, (list, np.ndarray)) and not (isinstance(value, list) and value
                                                      and isinstance(value[0], tuple)):
        a = np.asarray(value)
        if a.size == 0:
            return {}
        if a.dtype.kind not in "fc" and not (a.dtype.kind == "i" and a.ndim == 1 and a.size > 1):
            return {}
        if a.dtype.kind == "i":  # integer sequences (widths, sites, indices): a float entry
            return {"float entry": a.astype(float) + 0.5, "str": "x"}
        bad = a.astype(complex if a.dtype.kind == "c" else float)
        bad.flat[0] = NAN
        return {"nan entry": bad, "str": "x"}
    return {}


CASES = [pytest.param(fn, kw, npos, arg, bad, id=f"{fn.__name__}-{arg}-{label}")
         for fn, kw, npos in SWEEP for arg, value in kw.items()
         for label, bad in _breakings(value).items()]


@pytest.mark.parametrize("fn, kw, npos, arg, bad", CASES)
def test_bad_argument_gets_a_named_value_error(fn, kw, npos, arg, bad):
    names = list(kw)
    kw = dict(kw, **{arg: bad})
    with pytest.raises(ValueError, match=arg):
        fn(*(kw[n] for n in names[:npos]), **{n: kw[n] for n in names[npos:]})


def test_mala_refuses_step_counts_past_uint32_and_oversized_records():
    """Step s draws its key by fold_in(chain_key, s) with a uint32 index: more steps would wrap, and
    a record larger than sft.sim.networks.MAX_BYTES is refused up front (an XLA abort otherwise)."""
    import jax
    import jax.numpy as jnp

    from sft.sim import mala
    with pytest.raises(ValueError, match="burn_in \\+ n_steps = 1000000000000 is not allowed"):
        mala(lambda x: -0.5 * x @ x, jnp.zeros((2, 3)), jax.random.key(0), step_size=0.5, n_steps=10**12)
    with pytest.raises(ValueError, match="recorded draws would take"):
        mala(lambda x: -0.5 * x @ x, jnp.zeros((2, 3)), jax.random.key(0), step_size=0.5, n_steps=2**31,
             record=lambda x: jnp.tile(x, 4))
