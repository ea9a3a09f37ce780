"""Numerical robustness: PSD/PD tolerances instead of exact-zero tests, stable or residual-checked linear
solves, up-front cost guards for huge requests, and float64 under the user's JAX flag.

Every "works" case is checked against an exact or independent computation (block-matrix exponential,
power sums, the spectral norm from the SVD, an LU solve, the ring's Fourier modes, Sherman-Morrison);
every "raises" case matches the message that names the argument and the tolerance or limit.
"""
import math
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
import sympy

import sft.circuits.impurity as im
import sft.circuits.sparse_synapses as ss
import sft.conventions as cv
import sft.sim.networks as nw
import sft.gaussian.expectations as gx
from sft.circuits import residual_gp as rg
from sft.finite import gaussian_moment_derivatives, gaussian_rule, multi_input, neuron_cumulants, \
    one_hidden_layer_cumulants, second_order_multi_input, second_order_single_input
from sft.kernels import get_activation
from sft.predict.hyperparameters import log_marginal_likelihood
from sft.sim import estimate_llc, sample_metrics
from sft.symbolic import cumulants_from_couplings, to_numeric
from sft.predict import gd_mean_correction, gd_stability_limit, gibbs_sample, gp_posterior, \
    kernel_shift_correction, ntk_flow, ntk_gradient_descent, posterior_cov_correction, \
    posterior_mean_correction, saddle_point
from sft.symbolic import check_covariance, cornish_fisher_polynomials, diagrams, edgeworth_density, \
    edgeworth_density_numeric, gaussian_moment, gaussian_moment_of_linear_forms, hermite_tensor, \
    multivariate_edgeworth_density, propagator, wick_contraction_counts

EPS = np.finfo(np.float64).eps
RNG = np.random.default_rng(20261202)
X_TR = RNG.normal(size=(6, 2))             # 6 training inputs in 2 dimensions: Gram matrices of rank 2
X_TE = RNG.normal(size=(3, 2))
GRAM = X_TR @ X_TR.T                       # exactly PSD and singular (up to the rounding of the product)
_S = RNG.normal(size=(6, 6))
_S = (_S + _S.T) / np.linalg.norm(_S + _S.T, 2)          # random symmetric direction, ||S||_2 = 1


def _perturbed(G):
    """G, G +- eps lam_max I, G +- eps lam_max S: singular PSD matrices at the rounding level."""
    e = EPS * np.linalg.norm(G, 2)
    return {"exact": G, "+epsI": G + e * np.eye(len(G)), "-epsI": G - e * np.eye(len(G)),
            "+epsS": G + e * _S[:len(G), :len(G)], "-epsS": G - e * _S[:len(G), :len(G)]}


PERTURBED = _perturbed(GRAM)
CASES = sorted(PERTURBED)


# ----------------------------------------------------------------------------- the shared PSD rule
def test_psd_eigh_tolerance_rule_is_n_eps_lambda_max():
    n = 3
    tol = cv.PSD_RTOL_FACTOR * n * EPS                   # lam_max = 1
    lam = cv.psd_eigh("A", np.diag([-0.5 * tol, 0.3, 1.0]), vectors=False)
    assert lam[0] == 0.0 and lam[-1] == 1.0              # within tolerance: clipped to exactly 0
    with pytest.raises(ValueError, match=r"A is not positive semi-definite: its smallest eigenvalue is .* "
                                         r"< -tol = .*max\|lambda\|"):
        cv.psd_eigh("A", np.diag([-2 * tol, 0.3, 1.0]))
    assert cv.psd_eigh("A", np.diag([2 * tol, 0.3, 1.0]), definite=True)[0][0] == 2 * tol
    with pytest.raises(ValueError, match=r"A is not positive definite: .* <= tol = "):
        cv.psd_eigh("A", np.diag([0.5 * tol, 0.3, 1.0]), definite=True)
    with pytest.raises(ValueError, match="not symmetric"):
        cv.psd_eigh("A", [[1.0, 0.1], [0.0, 1.0]])
    with pytest.raises(ValueError, match=r"matrix \(1,\) of the stack"):          # stacks name the culprit
        cv.psd_eigh("K", np.stack([np.eye(2), np.ones((2, 2))]), definite=True)


@pytest.mark.parametrize("case", CASES)
def test_singular_psd_plus_minus_eps_accepted_as_psd_rejected_as_pd(case):
    G = PERTURBED[case]
    lam, V = cv.psd_eigh("G", G)
    assert lam.min() >= 0 and np.allclose((V * lam) @ V.T, G, rtol=0, atol=1e-13 * lam[-1])
    with pytest.raises(ValueError, match="G is not positive definite"):
        cv.psd_eigh("G", G, definite=True)
    with pytest.raises(ValueError, match="G is not positive definite"):
        cv.pd_inverse("G", G)


def test_pd_inverse_against_lu_on_a_well_conditioned_matrix():
    A = GRAM + 0.5 * np.eye(6)
    assert np.max(np.abs(cv.pd_inverse("A", A) @ A - np.eye(6))) < 1e-13
    assert np.allclose(cv.pd_inverse("A", A), np.linalg.inv(A), rtol=0, atol=1e-13)


# ------------------------------------------------ public functions fed singular PSD matrices +- eps
def _phi_block(A):
    """phi(A) = int_0^1 e^{-s A} ds from one block exponential (Van Loan 1978): independent of eigh."""
    n = len(A)
    M = np.zeros((2 * n, 2 * n))
    M[:n, :n], M[:n, n:] = -A, np.eye(n)
    return scipy.linalg.expm(M)[:n, n:]


def _ensemble_reference(T, K_tr, K_x, K_te, y):
    cov = K_te + T @ K_tr @ T.T - T @ K_x.T - K_x @ T.T
    return T @ y, cov


@pytest.mark.parametrize("case", CASES)
def test_ntk_predictors_accept_a_singular_ntk_and_match_independent_formulas(case):
    """A rank-2 NTK (6 points in 2 dimensions), perturbed by +- eps: finite t / steps work (zero modes
    frozen) and agree with the block exponential / the power sum; t = inf / steps = inf raise."""
    Th = PERTURBED[case]
    Th_x, K_te = X_TE @ X_TR.T, X_TE @ X_TE.T
    y = RNG.normal(size=6) if case == "exact" else np.linspace(-1, 1, 6)
    eta, t, k = 0.05, 3.0, 7
    assert abs(gd_stability_limit(Th) - 2 / np.linalg.norm(Th, 2)) < 1e-13 * gd_stability_limit(Th)

    flow = ntk_flow(Th, Th_x, Th, Th_x, K_te, y, t=t, learning_rate=eta)
    mean, cov = _ensemble_reference(Th_x @ (eta * t * _phi_block(eta * t * Th)), Th, Th_x, K_te, y)
    assert np.max(np.abs(flow.mean - mean)) < 1e-12 and np.max(np.abs(flow.cov - cov)) < 1e-12

    gd = ntk_gradient_descent(Th, Th_x, Th, Th_x, K_te, y, steps=k, learning_rate=eta)
    power_sum = eta * sum(np.linalg.matrix_power(np.eye(6) - eta * Th, j) for j in range(k))
    mean, cov = _ensemble_reference(Th_x @ power_sum, Th, Th_x, K_te, y)
    assert np.max(np.abs(gd.mean - mean)) < 1e-12 and np.max(np.abs(gd.cov - cov)) < 1e-12

    with pytest.raises(ValueError, match="Theta_train is not positive definite"):
        ntk_flow(Th, Th_x, Th, Th_x, K_te, y, t=np.inf)
    with pytest.raises(ValueError, match="Theta_train is not positive definite"):
        ntk_gradient_descent(Th, Th_x, Th, Th_x, K_te, y, steps=np.inf, learning_rate=eta)


def test_gd_stability_limit_on_the_reported_rank_deficient_ntk():
    """The failure on another CPU: lam_min of an exactly rank-deficient training NTK rounded to -3.9e-16."""
    Q = np.linalg.qr(RNG.normal(size=(3, 3)))[0]
    Th = (Q * np.array([-3.9e-16, 0.7, 2.5])) @ Q.T
    assert abs(gd_stability_limit(Th) - 2 / 2.5) < 1e-14
    out = ntk_gradient_descent(Th, Th[:1], Th, Th[:1], Th[:1, :1], np.ones(3), steps=10,
                               learning_rate=0.3 * gd_stability_limit(Th))
    assert np.all(np.isfinite(out.mean)) and np.all(np.isfinite(out.cov))


@pytest.mark.parametrize("case", CASES)
def test_gp_posterior_singular_kernel_raises_without_noise_and_matches_lu_with_noise(case):
    K = PERTURBED[case]
    K_x, K_te, y = X_TE @ X_TR.T, X_TE @ X_TE.T, np.linspace(-1, 1, 6)
    with pytest.raises(ValueError, match=r"K_train \+ noise I \(noise = 0\) is not positive definite.*tol ="):
        gp_posterior(K, K_x, K_te, y, noise=0.0)
    post = gp_posterior(K, K_x, K_te, y, noise=0.3)
    A = K + 0.3 * np.eye(6)
    assert np.max(np.abs(post.mean - K_x @ np.linalg.solve(A, y))) < 1e-12
    assert np.max(np.abs(post.cov - (K_te - K_x @ np.linalg.solve(A, K_x.T)))) < 1e-12
    logml = -0.5 * y @ np.linalg.solve(A, y) - 0.5 * np.linalg.slogdet(A)[1] - 3 * np.log(2 * np.pi)
    assert abs(post.log_marginal_likelihood - logml) < 1e-12


@pytest.mark.parametrize("case", CASES)
def test_kernel_consumers_raise_when_pd_is_required_and_work_when_psd_is_allowed(case):
    K = PERTURBED[case]
    y = np.linspace(-1, 1, 6)
    K9 = np.block([[K, X_TR @ X_TE.T], [X_TE @ X_TR.T, X_TE @ X_TE.T]])   # 9 points, train = first 6
    split = dict(train=np.arange(6), test=np.arange(6, 9), noise=0.0)
    for fn, second in ((posterior_mean_correction, np.zeros((9,) * 4)), (posterior_cov_correction, np.zeros((9,) * 4)),
                       (kernel_shift_correction, np.zeros((9, 9)))):
        with pytest.raises(ValueError, match=r"K_train \+ noise I \(noise = 0\) is not positive definite"):
            fn(K9, second, y, **split)
    with pytest.raises(ValueError, match="K is not positive definite.*temperature=0"):
        saddle_point(K, y, widths=[50], temperature=0.0)
    warm = saddle_point(K, y, widths=[50], temperature=0.5, n_grid=400)
    ref = saddle_point(PERTURBED["exact"], y, widths=[50], temperature=0.5, n_grid=400)
    assert np.allclose(warm.u, ref.u, rtol=1e-9, atol=0)                # continuous in eps-perturbations
    rank1 = _perturbed(np.outer([1.0, 2.0], [1.0, 2.0]))[case]          # 2 x 2, singular +- eps
    for fn in (gaussian_rule, propagator, check_covariance, lambda c: hermite_tensor(np.zeros(2), c, 2),
               lambda c: multivariate_edgeworth_density(0, np.zeros((1, 2)), np.zeros(2), c, []),
               lambda c: ss.SparseLayer(1.0, ss.lognormal_synapses(), "tanh", c)):
        with pytest.raises(ValueError, match="positive definite"):
            fn(rank1)
    c3 = K[:3, :3]                                                       # PSD allowed: Wick's theorem
    expected = c3[0, 0] * c3[1, 1] + 2 * c3[0, 1] ** 2
    assert abs(float(gaussian_moment([0, 0, 1, 1], c3)) - expected) < 1e-12 * expected
    a, b = np.array([1.0, -2.0, 0.5]), np.array([0.3, 0.0, 1.0])
    assert abs(float(gaussian_moment_of_linear_forms([a, b], c3)) - a @ c3 @ b) < 1e-12 * np.abs(c3).max()


# ------------------------------------------------------------------------------- linear solves
def _flux_ring(L, phi):
    S = np.roll(np.eye(L), 1, axis=1)
    return -(np.exp(1j * phi) * S + np.exp(-1j * phi) * S.T)


def _flux_ring_green(L, phi, z):
    """G_{i+r, i} = (1/L) sum_k e^{i k r} / (z + 2 cos(k + phi)) (Fourier modes of the flux ring)."""
    g = np.fft.ifft(1.0 / (z + 2 * np.cos(2 * np.pi * np.arange(L) / L + phi)))
    r = (np.arange(L)[:, None] - np.arange(L)[None, :]) % L
    return g[r]


def test_exact_green_on_the_flux_ring_matches_fourier_modes_where_lu_fails():
    """The reported case (hopping -e^{+-0.3 i}, z = 0.3 + 0.05 i) at L = 800: partial-pivoting LU has
    growth factor ~3e8 here (O(1) errors at L = 2000), so its backward error is far above 10 n eps;
    exact_green (eigendecomposition) matches the Fourier-mode Green's function to 1e-12."""
    L, phi, z = 800, 0.3, 0.3 + 0.05j
    H = _flux_ring(L, phi)
    A, B = z * np.eye(L) - H, np.eye(L, dtype=complex)[:, :2]
    assert cv.solve_residual(A, scipy.linalg.solve(A, B), B) > 1e3 * 10 * L * EPS
    G, res = im.exact_green(H, z)
    assert res < 1e-12
    assert np.max(np.abs(G - _flux_ring_green(L, phi, z))) < 1e-12


def test_solve_checked_falls_back_to_qr_where_lu_fails():
    """Non-Hermitian solves go through solve_checked: at L = 600 on the flux ring LU's backward error is
    ~1e2 above 10 n eps, the Householder-QR retry is backward stable and matches the Fourier modes."""
    L, phi, z = 600, 0.3, 0.3 + 0.05j
    A, B = z * np.eye(L) - _flux_ring(L, phi), np.eye(L, dtype=complex)[:, :3]
    assert cv.solve_residual(A, scipy.linalg.solve(A, B), B) > 10 * 10 * L * EPS
    X = cv.solve_checked("z - H", A, B)
    assert cv.solve_residual(A, X, B) <= 10 * L * EPS
    assert np.max(np.abs(X - _flux_ring_green(L, phi, z)[:, :3])) < 1e-12


def test_exact_green_real_ring_and_non_hermitian_residual_path(monkeypatch):
    L, z = 60, 0.7 + 0.05j
    H0 = im.ring_hamiltonian(L, t=0.8, eps0=0.3)
    G0, res = im.exact_green(H0, z)                                     # Hermitian path: Bloch sum
    assert res < 1e-13 and np.max(np.abs(G0[0] - im.ring_green(z, L, t=0.8, eps0=0.3))) < 1e-13
    u, v = np.zeros(L), np.zeros(L)
    u[3], v[10] = 1.5, 0.8                                              # non-Hermitian rank-1 coupling
    sm = G0 + np.outer(G0 @ u, v @ G0) / (1 - v @ G0 @ u)             # Sherman-Morrison, independent
    G, res = im.exact_green(H0 + np.outer(u, v), z)                    # general path: checked LU
    assert res < 1e-12 and np.max(np.abs(G - sm)) < 1e-12
    real_solve, real_qr = scipy.linalg.solve, scipy.linalg.qr
    monkeypatch.setattr(scipy.linalg, "solve", lambda A, B: real_solve(A, B) * (1 + 1e-7))   # a bad LU
    G, res = im.exact_green(H0 + np.outer(u, v), z)                    # caught, redone by QR
    assert res < 1e-12 and np.max(np.abs(G - sm)) < 1e-12
    monkeypatch.setattr(scipy.linalg, "qr", lambda A: (lambda q, r: (q, r * (1 + 1e-7)))(*real_qr(A)))
    with pytest.raises(np.linalg.LinAlgError, match="z - H .*inaccurate: normwise backward error .* after LU and"):
        im.exact_green(H0 + np.outer(u, v), z)
    with pytest.raises(np.linalg.LinAlgError, match="1 - V G0_imp .*inaccurate"):
        im.t_matrix([2.0, -1.0], G0[np.ix_([3, 10], [3, 10])])


def test_solve_residual_is_the_normwise_backward_error():
    A, B = np.array([[2.0, 1.0], [0.0, 4.0]]), np.array([1.0, 2.0])
    assert cv.solve_residual(A, np.array([0.25, 0.5]), B) == 0.0
    # ||A X - B||_inf / (||A||_inf ||X||_inf + ||B||_inf) by hand for X = (0.3, 0.5): r = (0.1, 0)
    assert abs(cv.solve_residual(A, np.array([0.3, 0.5]), B) - 0.1 / (4 * 0.5 + 2)) < 1e-16
    with pytest.raises(np.linalg.LinAlgError, match="singular"):
        cv.solve_checked("A", np.zeros((2, 2)), B)


# ------------------------------------------------------------------------------- huge requests
def test_network_indices_never_wrap_and_huge_ensembles_are_refused_up_front():
    assert nw._indices(2 ** 32 - 2, 4).tolist() == [2 ** 32 - 2, 2 ** 32 - 1, 0, 1]  # only padding wraps
    nw._check_cost("x", nw.MAX_NETWORKS, 0, 0, 0)                      # 2**32 networks: indices fit
    x = np.ones((3, 2))
    kw = dict(widths=[4], activation="tanh", C_W=1.5, C_b=0.1)
    for n in (2 ** 32 + 1, 10 ** 12):
        with pytest.raises(ValueError, match=rf"n_ensemble={n} is not allowed: .*MAX_NETWORKS = 2\*\*32"):
            nw.ensemble_outputs(jax.random.key(0), x, n_ensemble=n, **kw)
        with pytest.raises(ValueError, match=rf"n_ensemble={n} is not allowed"):
            sft_train(n_ensemble=n)
    with pytest.raises(ValueError, match=r"smallest working set would take ~.* bytes, above the limit"):
        nw.layer_kernels(jax.random.key(0), x, n_ensemble=2, widths=[10 ** 9], activation="tanh", C_W=1.5, C_b=0.1)
    with pytest.raises(ValueError, match=r"gibbs_sample is too large: its smallest working set would take ~3.84e\+11"):
        gibbs_sample(jax.random.key(0), np.eye(2), np.ones(2), np.ones((1, 2)), widths=[10 ** 9], C_W=1.0,
                     temperature=0.1, n_chains=4, n_sweeps=10)           # 4 chains x 3e9 weights x 4 x 8 bytes
    with pytest.raises(ValueError, match=r"its arithmetic would take ~4.\d+e\+17 floating-point operations"):
        nw.ensemble_outputs(jax.random.key(0), np.ones((10, 100)), n_ensemble=10 ** 8, widths=[10 ** 4] * 3,
                            activation="tanh", C_W=1.5, C_b=0.1)
    # the documented legitimate big run fits: 1e6 networks of width 1000, depth 3, N = 100 inputs
    sizes = (100, 1000, 1000, 1000, 1)
    flops, result, live = nw._network_cost("outputs", sizes, 100)
    assert flops == 2 * 100 * (100 * 1000 + 2 * 1000 ** 2 + 1000)      # 2 N sum_l n_{l-1} n_l
    n_params = sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))
    nw._check_cost("x", 10 ** 6, 10 ** 6 * flops, 10 ** 6 * result * 8, (4 * n_params + live) * 8)


def sft_train(**kw):
    from sft.sim import train_ensemble
    args = dict(n_ensemble=2, widths=[4], activation="tanh", C_W=1.5, C_b=0.1, learning_rate=0.1,
                n_steps=2, record_every=1)
    return train_ensemble(jax.random.key(0), np.eye(2), np.ones(2), np.ones((3, 2)), **{**args, **kw})


def test_huge_symbolic_and_quadrature_requests_are_refused_with_the_estimate():
    with pytest.raises(ValueError, match=r"N = 60 inputs .* ~1\.26e\+12 node evaluations, above the limit 1e\+12"):
        multi_input(np.ones((60, 3)), depth=1, activation="tanh", C_W=1.5, C_b=0.1)
    terms = sum(int(sympy.functions.combinatorial.numbers.partition(j)) for j in range(1, 61))
    for fn in (edgeworth_density, cornish_fisher_polynomials):
        with pytest.raises(ValueError, match=rf"order=60 .* needs {terms:.3g} partition terms".replace("+", r"\+")):
            fn(60)
    dens = edgeworth_density_numeric(np.array([0.0]), 60, [0.0] * 60, eps=0.1)  # the numeric route has no limit
    assert abs(dens[0] - 1 / math.sqrt(2 * math.pi)) < 1e-15
    weight = math.prod(range(39, 0, -2)) / (math.factorial(9) * math.factorial(4) ** 9)
    with pytest.raises(ValueError, match=rf"Wick weight sum_G 1/S_G = {weight:.3g}".replace("+", r"\+")):
        diagrams(4, 9)
    with pytest.raises(ValueError, match=r"\(N - 1\)!! = 3\.2e\+23 pairings"):
        wick_contraction_counts(4, (4,) * 9)


# ---------------------------------------------------------------------------------- float64
def _mehler():
    """mehler_expectations on Hermite coefficients computed while x64 was on."""
    with jax.enable_x64(True):
        coef = gx.hermite_coefficients(get_activation("tanh"), np.ones(1))
    return gx.mehler_expectations(coef, coef, np.full((1, 1), 0.3))


def _after_to_numeric():
    """A to_numeric(backend='jax') function made while x64 was on, called after it was switched off."""
    with jax.enable_x64(True):
        f = to_numeric(sympy.Symbol("x") ** 2, sympy.Symbol("x"), backend="jax")
    return f(1.0)


_Q = np.ones(1)
X64_ENTRY_POINTS = {
    "gaussian_expectation": lambda: gx.gaussian_expectation(jnp.tanh, 1.0),
    "diag_expectations": lambda: gx.diag_expectations(get_activation("tanh"), _Q),
    "hermite_coefficients": lambda: gx.hermite_coefficients(get_activation("tanh"), _Q),
    "mehler_expectations": _mehler,
    "pair_and_diag_expectations": lambda: gx.pair_and_diag_expectations(get_activation("tanh"), _Q, _Q,
                                                                        np.full((1, 1), 0.3)),
    "to_numeric(jax)": lambda: to_numeric(sympy.Symbol("x") ** 2, sympy.Symbol("x"), backend="jax"),
    "to_numeric(jax) function": _after_to_numeric,
    "gaussian_moment_derivatives": lambda: gaussian_moment_derivatives(1.0, activation="tanh"),
    "second_order_single_input": lambda: second_order_single_input(1.0, depth=1, activation="tanh", C_W=1.0,
                                                                   C_b=0.0),
    "second_order_multi_input": lambda: second_order_multi_input(np.eye(2), depth=1, activation="tanh", C_W=1.0,
                                                                 C_b=0.0),
    "neuron_cumulants": lambda: neuron_cumulants(np.eye(2), 4, activation="tanh", C_W=1.0, C_b=0.0),
    "one_hidden_layer_cumulants": lambda: one_hidden_layer_cumulants(np.eye(2), 4, width=3, activation="tanh",
                                                                     C_W=1.0, C_b=0.0),
    "sample_metrics": lambda: sample_metrics(np.random.default_rng(0), 1.0, widths=[3], activation="tanh",
                                             C_W=1.0, C_b=0.0, n_networks=2),
    "estimate_llc": lambda: estimate_llc(lambda w: 0.5 * w @ w, np.zeros(2), jax.random.key(0), gamma=1.0,
                                         step_size=0.01, n_chains=1, n_steps=2, nbeta=10.0),
    "log_marginal_likelihood": lambda: log_marginal_likelihood(np.eye(2), np.ones(2), depth=1, activation="tanh",
                                                               C_W=1.0, C_b=0.0, noise=0.1),

    "layer_kernels": lambda: nw.layer_kernels(jax.random.key(0), np.ones((2, 2)), n_ensemble=2, widths=[3],
                                              activation="tanh", C_W=1.5, C_b=0.1),
    "init_params": lambda: nw.init_params(jax.random.key(0), n_ensemble=2, in_dim=2, widths=[3]),
    "train_ensemble": lambda: sft_train(),
    "multi_input": lambda: multi_input(np.eye(3), depth=1, activation="tanh", C_W=1.5, C_b=0.1),
    "gd_mean_correction": lambda: gd_mean_correction(np.eye(2), np.ones(2), np.ones((1, 2)), activation="erf",
                                                     C_W=1.5, C_b=0.1, learning_rate=0.1, n_steps=1),
    "gibbs_sample": lambda: gibbs_sample(jax.random.key(0), np.eye(2), np.ones(2), np.ones((1, 2)), widths=[3],
                                         C_W=1.0, temperature=0.1, n_chains=1, n_sweeps=1),
    "alloy_local_green_mc": lambda: im.alloy_local_green_mc(0.1j, 0.5, 1.0, L=4, n_real=2, key=jax.random.key(0)),
}


@pytest.mark.parametrize("name", sorted(X64_ENTRY_POINTS))
def test_entry_points_refuse_float32_jax_with_the_fix(name):
    with jax.enable_x64(False):
        with pytest.raises(RuntimeError, match=r"needs JAX float64, but jax_enable_x64 is off .*"
                                               r"jax.config.update\(\"jax_enable_x64\", True\)"):
            X64_ENTRY_POINTS[name]()
    with jax.enable_x64(True):                                          # the context manager satisfies it
        cv.require_x64(name)


def test_same_key_float32_and_float64_draw_different_networks():
    key = jax.random.key(3)
    p64 = nw.init_params(key, n_ensemble=2, in_dim=3, widths=[4])
    p32 = nw.init_params(key, n_ensemble=2, in_dim=3, widths=[4], dtype=jnp.float32)
    again = nw.init_params(key, n_ensemble=2, in_dim=3, widths=[4])
    assert p32[0][0].dtype == jnp.float32 and p64[0][0].dtype == jnp.float64
    assert all(np.array_equal(a, b) for (a, _), (b, _) in zip(p64, again))          # same seed, same result
    assert np.max(np.abs(np.asarray(p32[0][0], np.float64) - np.asarray(p64[0][0]))) > 1e-2  # not a rounding


def test_sft_no_x64_opt_out_leaves_the_flag_and_entry_points_then_raise():
    code = ("import jax, numpy as np, sft, sft.sim\n"
            "assert not jax.config.jax_enable_x64\n"
            "try:\n    sft.sim.init_params(jax.random.key(0), n_ensemble=2, in_dim=2, widths=[3])\n"
            "except RuntimeError as e:\n    print('raised:', 'jax_enable_x64' in str(e))\n"
            "with jax.enable_x64(True):\n    sft.conventions.require_x64('x')\n    print('context: ok')\n")
    env = {**os.environ, "SFT_NO_X64": "1", "JAX_PLATFORMS": "cpu"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["raised:", "True", "context:", "ok"]


# ------------------------------------- issue-10 leftovers: residual GP, sample_metrics, effective action
@pytest.mark.parametrize("case", CASES)
def test_residual_gp_user_kernel_singular_psd_plus_minus_eps_fits_and_matches_dense_lu(case):
    """A rank-2 user kernel perturbed by +- eps is PSD within psd_eigh's tolerance: the fit works and its
    log p(r) equals the dense LU / slogdet form at the fitted amplitude and noise."""
    K = PERTURBED[case]
    r = np.linspace(-1, 1, 6) + 0.1 * RNG.normal(size=6)
    fit = rg.fit_residual_gp(X_TR, r, kernel=lambda a, b: K, noise_floor=0.01)
    A = fit.amplitude * K + fit.noise * np.eye(6)
    ref = -0.5 * r @ np.linalg.solve(A, r) - 0.5 * np.linalg.slogdet(A)[1] - 3 * np.log(2 * np.pi)
    assert fit.noise >= 0.01 and abs(fit.log_marginal_likelihood - ref) < 1e-12 * max(1.0, abs(ref))


def test_residual_gp_user_kernel_not_psd_names_the_tolerance():
    bad = GRAM - 1e-6 * np.linalg.norm(GRAM, 2) * np.eye(6)
    with pytest.raises(ValueError, match=r"kernel\(x, x\) is not positive semi-definite: .* < -tol = "):
        rg.fit_residual_gp(X_TR, np.ones(6), kernel=lambda a, b: bad, noise_floor=0.01)


def test_feature_log_marginal_likelihood_cholesky_matches_dense_lu_and_jax():
    """Woodbury form by Cholesky (numpy and traced JAX paths) against log N(r; 0, s Phi Phi^T + noise I)
    by LU, for rank-deficient features (duplicated columns, m > n)."""
    Phi = np.repeat(RNG.normal(size=(5, 4)), 2, axis=1)           # (5, 8), rank 4
    r, s, noise = RNG.normal(size=5), 0.7, 0.2
    A = s * Phi @ Phi.T + noise * np.eye(5)
    ref = -0.5 * r @ np.linalg.solve(A, r) - 0.5 * np.linalg.slogdet(A)[1] - 2.5 * np.log(2 * np.pi)
    val = rg.feature_log_marginal_likelihood(Phi, r, amplitude=s, noise=noise)
    traced = float(jax.jit(lambda p: rg._feature_lml(p, r, s, noise, jnp)[0])(Phi))
    assert abs(val - ref) < 1e-12 * abs(ref) and abs(traced - ref) < 1e-12 * abs(ref)


def test_standardized_moments_constant_data_with_rounding_raises():
    """np.full(12, 0.1) - its mean is not exactly 0 (m2 = 1.9e-34): an exact-zero test let it through."""
    z = np.full(12, 0.1)
    assert np.mean((z - z.mean()) ** 2) > 0                       # the case is real on this machine
    with pytest.raises(ValueError, match=r"z has zero variance \(m2 = .* <= .* = \(10 M eps max\|z\|\)\^2"):
        rg.standardized_moments(z)


GRAM3 = _perturbed(X_TR[:3] @ X_TR[:3].T)                         # 3 inputs in 2 dimensions: rank 2


@pytest.mark.parametrize("case", CASES)
def test_sample_metrics_singular_k1_plus_minus_eps_against_the_exact_mean(case):
    """Linear activation, C_b = 0: E[G^(2)] = C_W K1 exactly; the sample mean over S = 2000 networks
    (float64, seed 0) within Z_MAX error bars entrywise, from a singular K1 perturbed by +- eps."""
    K1 = GRAM3[case]
    G = sample_metrics(np.random.default_rng(0), K1, widths=[4], activation="linear", C_W=1.5, C_b=0.0,
                       n_networks=2000)[:, 1]
    z = (G.mean(0) - 1.5 * K1) / (G.std(0, ddof=1) / np.sqrt(len(G)))
    assert np.max(np.abs(z)) < cv.Z_MAX


def test_sample_metrics_rejects_a_k1_that_is_not_psd_within_tolerance():
    K1 = GRAM3["exact"] - 1e-6 * np.linalg.norm(GRAM3["exact"], 2) * np.eye(3)
    with pytest.raises(ValueError, match=r"K1 is not positive semi-definite: .* < -tol = "):
        sample_metrics(np.random.default_rng(0), K1, widths=[4], activation="linear", C_W=1.0, C_b=0.0,
                       n_networks=2)
    with pytest.raises(ValueError, match=r"(?s)K1=.* is not allowed: it must be nonzero"):
        sample_metrics(np.random.default_rng(0), np.zeros((2, 2)), widths=[4], activation="linear", C_W=1.0,
                       C_b=0.0, n_networks=2)


@pytest.mark.parametrize("case", CASES)
def test_effective_action_rejects_a_singular_propagator_with_the_tolerance(case):
    g4 = np.ones((3,) * 4)
    with pytest.raises(ValueError, match=r"(?s)K=.* is not allowed: it is no propagator .*K is not positive "
                                         r"definite: .* <= tol = "):
        cumulants_from_couplings(GRAM3[case], {(4, 1): g4}, order=1)


def test_effective_action_tree_level_four_point_against_einsum():
    """k4[1] = -g4[1] contracted with K on every leg (tree level; module docstring) at a PD K."""
    K = GRAM3["exact"] + 0.5 * np.eye(3)
    g4 = sum(np.einsum("a,b,c,d->abcd", v, v, v, v) for v in RNG.normal(size=(3, 3)))   # symmetric
    k4 = cumulants_from_couplings(K, {(4, 1): g4}, order=1)[(4, 1)]
    ref = -np.einsum("abcd,ai,bj,ck,dl->ijkl", g4, K, K, K, K)
    assert np.max(np.abs(k4 - ref)) < 1e-12 * np.max(np.abs(ref))
