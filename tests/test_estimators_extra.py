"""Tests of sft.sim.relative_variance and nu_from_relative_variance against exact laws."""
import math

import jax
import numpy as np
import pytest

from sft.finite import deep_linear
from sft.sim import estimators as est
from sft.conventions import Z_MAX
from sft.sim import layer_kernels


def test_relative_variance_of_chi_square_and_error_calibration():
    """x = chi2_k / k has Var/mean^2 = 2/k exactly; over 200 repeats the jackknife error matches the scatter."""
    x = np.random.default_rng(0).chisquare(8, size=(200, 1000)) / 8
    out = np.array([est.relative_variance(r) for r in x])
    scatter = out[:, 0].std(ddof=1)
    assert abs(out[:, 0].mean() - 0.25) < Z_MAX * scatter / math.sqrt(200)
    assert abs(out[:, 1].mean() / scatter - 1) < Z_MAX * 1.5 / math.sqrt(2 * 199)


def test_relative_variance_broadcasts_over_trailing_axes():
    x = np.random.default_rng(1).exponential(size=(500, 3, 2))
    R, err = est.relative_variance(x)
    assert R.shape == err.shape == (3, 2)
    np.testing.assert_allclose(R[1, 0], est.relative_variance(x[:, 1, 0])[0], rtol=1e-13)


@pytest.mark.parametrize("widths", [(10, 10, 10), (12, 40, 7)])
@pytest.mark.parametrize("slopes", [(1.0, 0.0), (1.0, 1.0), (0.5, -0.2)])
def test_nu_inverts_the_exact_scale_invariant_law(widths, slopes):
    R = deep_linear.metric_relative_variance(widths, a_plus=slopes[0], a_minus=slopes[1])
    nu = est.nu_from_relative_variance(R, widths)
    assert nu == pytest.approx(deep_linear.scale_invariant_nu(*slopes), rel=1e-12)
    both = est.nu_from_relative_variance(np.array([R, R]), widths)
    assert both.shape == (2,) and np.allclose(both, nu, rtol=1e-12)


def test_relu_network_metric_obeys_the_exact_law():
    """Per-network readout metric of ReLU networks (C_W = 2, C_b = 0): Var(G)/E[G]^2 = (1 + 5/n)^L - 1
    exactly, and the inverted nu is 5 at any width."""
    n, L, S = 16, 3, 4000
    G = np.asarray(layer_kernels(jax.random.key(11), np.ones((1, 3)), n_ensemble=S, widths=[n] * L,
                                 activation="relu", C_W=2.0, C_b=0.0))[:, :, 0, 0]
    R, err = est.relative_variance(G)
    exact = [deep_linear.metric_relative_variance([n] * l, a_minus=0.0) if l else 0.0 for l in range(L + 1)]
    assert R[0] == 0.0 and err[0] == 0.0  # layer 1 is deterministic
    assert np.all(np.abs(R[1:] - exact[1:]) < Z_MAX * err[1:])
    nu, nu_err = est.jackknife(lambda g: est.nu_from_relative_variance(est.k2(g) / g.mean() ** 2,
                                                                      [n] * L), G[:, -1])
    assert abs(nu - 5.0) < Z_MAX * nu_err


def test_bad_input():
    with pytest.raises(ValueError, match="R="):
        est.nu_from_relative_variance(-1.5, [10])
    with pytest.raises(ValueError, match="widths"):
        est.nu_from_relative_variance(0.3, [10, 0])
    with pytest.raises(ValueError, match="at least 3"):
        est.relative_variance(np.ones(2))
