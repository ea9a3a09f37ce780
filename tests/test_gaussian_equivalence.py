"""Gaussian-equivalence constants against closed forms and Monte Carlo; the background's conditional
moments given a circuit input against exact forms, the Mehler series and a simulation in bins of s."""
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import erf

import sft  # noqa: F401  (float64)
from sft.conventions import Z_MAX
from sft.circuits import (background_conditional_moments, background_moments_hermite,
                                      background_moments_hermite_multi, background_moments_multi,
                                      equivalence_constants, simulate_background)

Q = np.array([0.3, 1.0, 2.5])


def test_closed_forms():
    # relu: E[relu(h)] = sqrt(q/2pi), E[z relu(sqrt q z)] = sqrt q / 2, E[relu^2] = q/2.
    mu0, mu1, mus = equivalence_constants("relu", q=Q)
    np.testing.assert_allclose(mu0, np.sqrt(Q / (2 * np.pi)), rtol=1e-12)
    np.testing.assert_allclose(mu1, np.sqrt(Q) / 2, rtol=1e-12)
    np.testing.assert_allclose(mus ** 2, Q * (0.25 - 1 / (2 * np.pi)), rtol=1e-12)
    # erf: Stein, mu1 = sqrt q E[erf'] = sqrt q (2/sqrt pi) / sqrt(1 + 2q); E[erf^2] (Williams 1997).
    mu0, mu1, mus = equivalence_constants("erf", q=Q)
    np.testing.assert_allclose(mu0, 0.0, atol=1e-14)
    np.testing.assert_allclose(mu1, 2 * np.sqrt(Q / (np.pi * (1 + 2 * Q))), rtol=1e-12)
    np.testing.assert_allclose(mus ** 2, (2 / np.pi) * np.arcsin(2 * Q / (1 + 2 * Q)) - mu1 ** 2, rtol=1e-11)
    mu0, mu1, mus = equivalence_constants("linear", q=Q)
    np.testing.assert_allclose((mu0, mu1, mus ** 2), (0 * Q, np.sqrt(Q), 0 * Q), atol=1e-12)


def test_constants_against_monte_carlo():
    act = lambda t: jnp.tanh(t) + 0.3 * t ** 2  # a JAX callable with mu0, mu1, mu* all nonzero
    q = 1.7
    mu0, mu1, mus = equivalence_constants(act, q=q)
    z = np.random.default_rng(0).standard_normal(400_000)
    h = np.asarray(act(np.sqrt(q) * z))
    for samples, pred in ((h, mu0), (z * h, mu1), (h * h, mu0 ** 2 + mu1 ** 2 + mus ** 2)):
        assert abs(samples.mean() - pred) / (samples.std() / np.sqrt(z.size)) < Z_MAX


def test_erf_conditional_mean_closed_form_and_mehler():
    # E_r[erf(beta s + r)] = erf(beta s / sqrt(1 + 2 q_perp)) for r ~ N(0, q_perp).
    s = np.linspace(-3, 3, 13)
    m, v = background_conditional_moments("erf", s, beta=0.7, q_perp=0.5, a_mean=1.0, a_var=0.0)
    np.testing.assert_allclose(m, erf(0.7 * s / np.sqrt(2.0)), atol=1e-13)
    for act in ("erf", "tanh"):
        exact = background_conditional_moments(act, s, beta=0.7, q_perp=0.5, a_mean=0.4, width=9)
        series = background_moments_hermite(act, s, beta=0.7, q_perp=0.5, order=60, a_mean=0.4, width=9)
        np.testing.assert_allclose(series, exact, atol=1e-7)
    # order 2 of the mean is the Gaussian-equivalence line mu0 + mu1 rho s
    mu0, mu1, _ = equivalence_constants("tanh", q=0.49 + 0.5)
    line, _ = background_moments_hermite("tanh", s, beta=0.7, q_perp=0.5, order=2, a_mean=1.0)
    np.testing.assert_allclose(line, mu0 + mu1 * 0.7 / np.sqrt(0.99) * s, atol=1e-13)


def _simulate(activation, *, beta, gamma, a_mean, n_inputs, width, d, seed):
    """x ~ N(0, I_d), circuit u = e_1, s = x_1; fresh background per input: w_i = beta u + gamma
    P_perp g_i / sqrt(d) (gamma = 1, beta = 0 is NOT the untilted model; untilted uses w_i ~ N(0, I/d))."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n_inputs, d))
    g = rng.standard_normal((n_inputs, width, d)) / np.sqrt(d)
    if beta is None:  # untilted
        w = g
    else:
        g[..., 0] = 0.0
        w = gamma * g
        w[..., 0] = beta
    a = a_mean + rng.standard_normal((n_inputs, width))
    f = np.sum(a * np.asarray(activation(np.einsum("pnd,pd->pn", w, x))), axis=1) / np.sqrt(width)
    return x, f


@pytest.mark.parametrize("name, beta, a_mean", [("relu", None, 0.0), ("tanh", 0.9, 0.6), ("erf", 1.2, 0.0)])
def test_conditional_moments_in_bins_against_simulation(name, beta, a_mean):
    from sft.kernels import get_activation
    act, d, width, gamma = get_activation(name), 24, 16, 0.8
    x, f = _simulate(act, beta=beta, gamma=gamma, a_mean=a_mean, n_inputs=20_000, width=width, d=d, seed=1)
    s = x[:, 0]
    if beta is None:
        m, v = background_conditional_moments(act, s, beta=0.0, q_perp=np.sum(x * x, 1) / d,
                                              a_mean=a_mean, width=width)
    else:
        m, v = background_conditional_moments(act, s, beta=beta, q_perp=gamma ** 2 * np.sum(x[:, 1:] ** 2, 1) / d,
                                              a_mean=a_mean, width=width)
    edges = np.quantile(s, np.linspace(0, 1, 9))
    which = np.clip(np.searchsorted(edges, s, side="right") - 1, 0, 7)
    spread = []
    for b in range(8):
        sel = which == b
        r1, r2 = f[sel] - m[sel], (f[sel] - m[sel]) ** 2 - v[sel]
        for r in (r1, r2):
            assert abs(r.mean()) / (r.std() / np.sqrt(sel.sum())) < Z_MAX
        spread.append(v[sel].mean())
    if beta is not None:  # polarized: the conditional variance varies across bins of s
        assert max(spread) / min(spread) > 1.5


# two circuits; 8 neurons lean toward u_1, 4 away from u_2, 4 toward both (a general tilt matrix)
B2 = np.array([[0.9, 0.0]] * 8 + [[0.0, -0.7]] * 4 + [[0.5, 0.5]] * 4)


@pytest.mark.parametrize("act, atol", [("tanh", 1e-6), ("erf", 1e-6), ("relu", 1e-4)])
def test_multi_quadrature_matches_multivariate_mehler_series(act, atol):
    s = np.random.default_rng(0).uniform(-3, 3, (40, 2))
    exact = background_moments_multi(act, s, tilt=B2, q_perp=0.6, a_mean=0.4)
    series = background_moments_hermite_multi(act, s, tilt=B2, q_perp=0.6, order=40, a_mean=0.4)
    np.testing.assert_allclose(series, exact, atol=atol)
    # K = 1 with identical rows is the single-circuit model
    if act == "tanh":  # the coarse rule of the Monte Carlo test is accurate enough for it
        coarse = background_moments_multi(act, s, tilt=B2, q_perp=0.6, a_mean=0.4, n_nodes=100)
        np.testing.assert_allclose(coarse, exact, atol=1e-9)
    one = background_moments_multi(act, s[:, :1], tilt=np.full((5, 1), 0.7), q_perp=0.5, a_mean=0.4)
    np.testing.assert_allclose(one, background_conditional_moments(act, s[:, 0], beta=0.7, q_perp=0.5,
                                                                    a_mean=0.4, width=5), atol=1e-13)


def _bin_z(s, f, m, v):
    """max |z| of the residual mean (f - m) and variance ((f - m)^2 - v) over 4 x 2 bins of (s_1, sign s_2)."""
    e = np.quantile(s[:, 0], [0.25, 0.5, 0.75])
    which = np.searchsorted(e, s[:, 0]) + 4 * (s[:, 1] > 0)
    z = []
    for b in range(8):
        sel = which == b
        for r in (f[sel] - m[sel], (f[sel] - m[sel]) ** 2 - v[sel]):
            z.append(abs(r.mean()) / (r.std() / np.sqrt(sel.sum())))
    return max(z)


def test_two_circuit_tilt_against_jax_simulation_in_bins():
    """d = 24, circuits e_1, e_2, x ~ N(0, I), 20000 inputs with fresh backgrounds (key 3), tanh, gamma 0.8."""
    import jax
    d, gamma, a_mean = 24, 0.8, 0.4
    x = np.random.default_rng(2).standard_normal((20_000, d))
    U = np.eye(d)[:, :2]
    f = simulate_background(jax.random.key(3), "tanh", x, circuits=U, tilt=B2, gamma=gamma, a_mean=a_mean)[0]
    q_perp = gamma ** 2 * np.sum(x[:, 2:] ** 2, 1) / d
    theory = lambda B: background_moments_multi("tanh", x[:, :2], tilt=B, q_perp=q_perp, a_mean=a_mean, n_nodes=100)
    assert _bin_z(x[:, :2], f, *theory(B2)) < Z_MAX
    assert _bin_z(x[:, :2], f, *theory(B2[:, ::-1])) > 3 * Z_MAX    # can fail: circuits swapped in the tilt
    # same key -> same draws
    f2 = simulate_background(jax.random.key(3), "tanh", x[:5], circuits=U, tilt=B2, gamma=gamma, a_mean=a_mean)
    f3 = simulate_background(jax.random.key(3), "tanh", x[:5], circuits=U, tilt=B2, gamma=gamma, a_mean=a_mean)
    np.testing.assert_array_equal(f2, f3)


def test_untilted_jax_simulation_against_zero_tilt_theory():
    """tilt=None (w_i ~ N(0, I/d)) is the zero tilt row with q_perp = |x|^2 / d; relu, a_mean 0.5, 2 replicas."""
    import jax
    d, width = 16, 8
    x = np.random.default_rng(4).standard_normal((5000, d))
    f = simulate_background(jax.random.key(7), "relu", x, circuits=np.eye(d)[:, :2], width=width, a_mean=0.5,
                            n_replicas=2)
    theory = background_moments_multi("relu", x[:, :2], tilt=np.zeros((width, 2)), q_perp=np.sum(x * x, 1) / d,
                                      a_mean=0.5)
    assert _bin_z(np.tile(x[:, :2], (2, 1)), f.ravel(), *(np.tile(t, 2) for t in theory)) < Z_MAX


def test_bad_input():
    with pytest.raises(ValueError, match="tilt="):
        background_moments_multi("tanh", np.zeros((3, 2)), tilt=[0.5, 0.5], q_perp=1.0)
    with pytest.raises(ValueError, match="s has shape"):
        background_moments_multi("tanh", np.zeros((3, 3)), tilt=B2, q_perp=1.0)
    with pytest.raises(ValueError, match="q_perp="):
        background_moments_hermite_multi("tanh", np.zeros((3, 2)), tilt=B2, q_perp=0.0, order=5)
    with pytest.raises(ValueError, match="circuits"):
        simulate_background(None, "tanh", np.zeros((3, 4)), circuits=np.ones((4, 1)), tilt=[[1.0]])
    with pytest.raises(ValueError, match="width="):
        simulate_background(None, "tanh", np.zeros((3, 4)), circuits=np.eye(4)[:, :1])
    with pytest.raises(ValueError, match="batch_size="):
        simulate_background(None, "tanh", np.zeros((3, 4)), circuits=np.eye(4)[:, :1], width=2, batch_size=0)

    with pytest.raises(ValueError, match="q="):
        equivalence_constants("relu", q=-1.0)
    with pytest.raises(ValueError, match="width="):
        background_conditional_moments("relu", 0.0, beta=0.5, q_perp=1.0, width=0)
    with pytest.raises(ValueError, match="order="):
        background_moments_hermite("tanh", 0.0, beta=0.5, q_perp=1.0, order=0)
    with pytest.raises(ValueError, match="activation="):
        equivalence_constants("nope")
