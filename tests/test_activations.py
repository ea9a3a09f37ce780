"""Closed-form Gaussian expectations of activations, checked twice: against independent adaptive 2-D
quadrature (scipy) and against Monte Carlo with an error bar."""
import jax.numpy as jnp
import numpy as np
import pytest

import sft  # noqa: F401  (enables float64)
from sft.gaussian import polar_expectation
from sft.kernels import ACTIVATION_NAMES, Activation, get_activation, scale_invariant

CLOSED = ["relu", "abs", "linear", "erf", "sin", "cos", "leaky_relu", "scale_invariant"]
CASES = [(1.0, 1.0, 0.3), (0.5, 2.0, -0.7), (1.3, 0.4, 0.7), (2.0, 2.0, 1.999)]


def _act(name):
    if name == "leaky_relu":
        return get_activation(name, slope=0.2)
    if name == "scale_invariant":
        return get_activation(name, a_plus=1.3, a_minus=-0.4)
    return get_activation(name)


# Independent numpy implementations (not the library's) of each activation and its derivative.
def _numpy_pair(name):
    from scipy.special import erf
    slopes = {"relu": (1, 0), "abs": (1, -1), "linear": (1, 1), "leaky_relu": (1, 0.2),
              "scale_invariant": (1.3, -0.4)}
    if name in slopes:
        ap, am = slopes[name]
        return (lambda z: np.where(z > 0, ap * z, am * z)), (lambda z: np.where(z > 0, ap, am) + 0 * z)
    return {"erf": (erf, lambda z: 2 / np.sqrt(np.pi) * np.exp(-z * z)),
            "sin": (np.sin, np.cos), "cos": (np.cos, lambda z: -np.sin(z))}[name]


@pytest.mark.parametrize("name", CLOSED)
def test_closed_forms_against_quadrature(name):
    act = _act(name)
    f, df = _numpy_pair(name)
    for q1, q2, c in CASES[:3]:
        ss = act.gauss_ss(np.float64(q1), np.float64(q2), np.float64(c))
        dd = act.gauss_dd(np.float64(q1), np.float64(q2), np.float64(c))
        np.testing.assert_allclose(ss, polar_expectation(f, f, q1, q2, c), rtol=1e-9, atol=1e-11)
        np.testing.assert_allclose(dd, polar_expectation(df, df, q1, q2, c), rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("name", CLOSED)
def test_closed_forms_against_monte_carlo(name):
    """E[sigma sigma] and E[sigma' sigma'] vs 2e5 Gaussian samples (seed 0): |z| < 4."""
    act = _act(name)
    rng = np.random.default_rng(0)
    z = rng.standard_normal((2, 200_000))
    for q1, q2, c in CASES:
        L = np.linalg.cholesky(np.array([[q1, c], [c, q2]]))
        u, v = L @ z
        for sample, theory in ((np.asarray(act.fn(u)) * np.asarray(act.fn(v)), act.gauss_ss(q1, q2, c)),
                               (np.asarray(act.derivative(u)) * np.asarray(act.derivative(v)),
                                act.gauss_dd(q1, q2, c))):
            err = sample.std(ddof=1) / np.sqrt(sample.size)
            if err == 0:  # deterministic product (linear activation derivative)
                np.testing.assert_allclose(sample.mean(), theory, rtol=1e-12)
            else:
                assert abs(sample.mean() - theory) / err < 4


def test_diagonal_limit_is_continuous():
    """At c = sqrt(q1 q2) (rho = 1) the closed forms equal their limits from rho < 1."""
    for name in CLOSED:
        act = _act(name)
        q1, q2 = 0.7, 1.9
        c1 = np.sqrt(q1 * q2)
        for fn in (act.gauss_ss, act.gauss_dd):
            if name in ("relu", "abs", "leaky_relu", "scale_invariant") and fn is act.gauss_dd:
                continue  # E[sigma' sigma'] of a kinked function has a sqrt(1 - rho) cusp; checked below
            np.testing.assert_allclose(fn(q1, q2, c1), fn(q1, q2, c1 * (1 - 1e-12)), rtol=1e-5)
    relu = get_activation("relu")
    np.testing.assert_allclose(relu.gauss_dd(1.0, 1.0, 1.0), 0.5, rtol=1e-15)


def test_relu_matches_arccos_kernel():
    """ReLU from the general scale-invariant formula equals Cho & Saul's arc-cosine kernel."""
    relu = get_activation("relu")
    for q1, q2, c in CASES:
        th = np.arccos(c / np.sqrt(q1 * q2))
        ref = np.sqrt(q1 * q2) / (2 * np.pi) * (np.sin(th) + (np.pi - th) * np.cos(th))
        np.testing.assert_allclose(relu.gauss_ss(q1, q2, c), ref, rtol=1e-14)
        np.testing.assert_allclose(relu.gauss_dd(q1, q2, c), (np.pi - th) / (2 * np.pi), rtol=1e-14)


def test_every_name_resolves_and_is_finite():
    z = jnp.linspace(-3, 3, 7)
    for name in ACTIVATION_NAMES:
        act = get_activation(name)
        assert np.all(np.isfinite(np.asarray(act(z))))
        assert np.all(np.isfinite(np.asarray(act.derivative(z))))


def test_named_functions():
    z = jnp.array([-1.5, 0.3, 2.0])
    np.testing.assert_allclose(get_activation("relu")(z), [0, 0.3, 2.0])
    np.testing.assert_allclose(get_activation("abs")(z), [1.5, 0.3, 2.0])
    np.testing.assert_allclose(get_activation("leaky_relu", slope=0.1)(z), [-0.15, 0.3, 2.0])
    np.testing.assert_allclose(get_activation("softplus")(z), np.log1p(np.exp(np.asarray(z))))
    np.testing.assert_allclose(get_activation("swish")(z), z / (1 + np.exp(-np.asarray(z))))
    assert scale_invariant(2.0, -0.5).slopes == (2.0, -0.5)


def test_user_callable():
    act = get_activation(lambda z: jnp.tanh(z) + 0.1 * z)
    assert isinstance(act, Activation) and not act.has_closed_form
    np.testing.assert_allclose(act.derivative(jnp.array([0.0])), [1.1])


@pytest.mark.parametrize("bad, match", [("relux", "unknown"), (3.0, "not allowed"),
                                        (lambda z: jnp.ones(2), "elementwise")])
def test_bad_activation(bad, match):
    with pytest.raises(ValueError, match=match):
        get_activation(bad)


def test_bad_parameters():
    with pytest.raises(ValueError, match="does not take"):
        get_activation("tanh", slope=0.3)
    with pytest.raises(ValueError, match="finite"):
        get_activation("scale_invariant", a_plus=np.nan)
