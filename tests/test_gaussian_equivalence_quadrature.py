"""The kink-split quadrature of sft.circuits.gaussian_equivalence against independent references.

E_r[sigma(m + r)^p], r ~ N(0, v), for the relu family has the closed forms (a = m / sqrt(v))

    E[relu(m + r)]   = m Phi(a) + sqrt(v) phi(a),
    E[relu(m + r)^2] = (m^2 + v) Phi(a) + m sqrt(v) phi(a),

and sigma = a_+ relu(u) - a_- relu(-u) for the scale-invariant family (cross term zero). Smooth
activations: mpmath quadrature at 30 digits. Tolerance 1e-13 of the scale (|m| + sqrt v)^p: rounding
only (the former rule, split at r = 0 instead of at the kink r = -m, was off by ~1e-5).
"""
import mpmath
import numpy as np
import scipy.stats

from sft.circuits import background_conditional_moments, background_moments_multi


def _relu_moments(m, v):
    sd = np.sqrt(v)
    a = m / sd
    cdf, pdf = scipy.stats.norm.cdf(a), scipy.stats.norm.pdf(a)
    return m * cdf + sd * pdf, (m * m + v) * cdf + m * sd * pdf


def _scale_invariant_moments(m, v, a_plus, a_minus):
    p1, p2 = _relu_moments(m, v)
    n1, n2 = _relu_moments(-m, v)
    return a_plus * p1 - a_minus * n1, a_plus ** 2 * p2 + a_minus ** 2 * n2


def test_relu_family_exact():
    rng = np.random.default_rng(0)
    s, q = 3 * rng.normal(size=400), rng.uniform(0.01, 3.0, size=400)
    for act, slopes in (("relu", (1.0, 0.0)), ("abs", (1.0, -1.0)), ("leaky_relu", (1.0, 0.01))):
        for beta in (0.0, 0.7, 3.0):
            e1, e2 = _scale_invariant_moments(beta * s, q, *slopes)
            scale = np.abs(beta * s) + np.sqrt(q)
            m1, _ = background_conditional_moments(act, s, beta=beta, q_perp=q, a_mean=1.0, a_var=0.0)
            _, m2 = background_conditional_moments(act, s, beta=beta, q_perp=q, a_mean=0.0, a_var=1.0)
            assert np.max(np.abs(m1 - e1) / scale) < 1e-13, (act, beta)
            assert np.max(np.abs(m2 - e2) / scale ** 2) < 1e-13, (act, beta)
    # q_perp = 0: no randomness, sigma(beta s) itself
    m1, m2 = background_conditional_moments("relu", [-1.0, 2.0], beta=0.5, q_perp=0.0, a_mean=1.0, a_var=0.0)
    np.testing.assert_allclose(m1, [0.0, 1.0], rtol=1e-14, atol=1e-14)


def test_multi_relu_exact():
    """Several circuits: per-neuron shifts B_i . s, combined over rows (module docstring)."""
    rng = np.random.default_rng(1)
    s = rng.normal(size=(300, 2))
    B = np.array([[0.5, 0.3], [0.0, 1.2], [0.5, 0.3], [-2.0, 0.1]])
    mean, var = background_moments_multi("relu", s, tilt=B, q_perp=0.4, a_mean=0.7, a_var=1.3)
    e1, e2 = _relu_moments(s @ B.T, 0.4)
    want_mean = 0.7 * e1.sum(1) / 2.0
    want_var = ((1.3 + 0.49) * e2 - 0.49 * e1 ** 2).sum(1) / 4
    scale = (np.abs(s @ B.T) + np.sqrt(0.4)).max(1)
    assert np.max(np.abs(mean - want_mean) / scale) < 1e-13
    assert np.max(np.abs(var - want_var) / scale ** 2) < 1e-13


def test_smooth_activation_against_mpmath():
    for shift, v in ((0.3, 0.5), (-2.0, 3.0), (5.0, 0.01)):
        with mpmath.workdps(30):
            f = lambda z, p: mpmath.tanh(shift + mpmath.sqrt(v) * z) ** p * mpmath.npdf(z)  # noqa: E731
            want = [float(mpmath.quad(lambda z: f(z, p), [-mpmath.inf, 0, mpmath.inf])) for p in (1, 2)]
        m1, _ = background_conditional_moments("tanh", 1.0, beta=shift, q_perp=v, a_mean=1.0, a_var=0.0)
        _, m2 = background_conditional_moments("tanh", 1.0, beta=shift, q_perp=v, a_mean=0.0, a_var=1.0)
        assert abs(float(m1) - want[0]) < 1e-14 and abs(float(m2) - want[1]) < 1e-14
