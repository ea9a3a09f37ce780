"""Gaussian-equivalence constants against closed forms and Monte Carlo; the background's conditional
moments given a circuit input against exact forms, the Mehler series and a simulation in bins of s."""
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import erf

import sft  # noqa: F401  (float64)
from sft.conventions import Z_MAX
from sft.gaussian_equivalence import (background_conditional_moments, background_moments_hermite,
                                      equivalence_constants)

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
    from sft.activations import get_activation
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


def test_bad_input():
    with pytest.raises(ValueError, match="q="):
        equivalence_constants("relu", q=-1.0)
    with pytest.raises(ValueError, match="width="):
        background_conditional_moments("relu", 0.0, beta=0.5, q_perp=1.0, width=0)
    with pytest.raises(ValueError, match="order="):
        background_moments_hermite("tanh", 0.0, beta=0.5, q_perp=1.0, order=0)
    with pytest.raises(ValueError, match="activation="):
        equivalence_constants("nope")
