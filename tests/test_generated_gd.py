"""generated_gd: the O(1/n) GD ensemble mean and covariance from the generated term lists
(sft/predict/generated_gd.py).

(a) one hidden layer: the mean equals the independent neuron-population derivation gd_mean_correction to
    1e-10 relative to max |c| over steps and inputs, part by part (tanh and erf, P = 2..4 training and
    M = 1..2 test inputs, feature rank 1 and 2 -- gd_mean_correction refuses rank > 2 --, eta = 0.2..0.5,
    all steps up to k = 6..15);
(b) depth 2 (tanh, meta-kernels of sft.finite.output_meta_kernels): mean and covariance equal
    trained_ensemble_gd (nested jvp of the same dynamics, no term list) to 1e-10, part by part; the same on
    synthetic meta-kernels with every cumulant block nonzero; there every single generated term matters
    (dropping any one moves the result by far more than 1e-10);
(c) dropping any one term class (kernel / ntk / dntk / ddntk) breaks (a) and (b) by many orders of magnitude;
(d) the scalar dynamics unrolled in sympy (derivations/gd_series.py, an explicit joint law of f0, dTheta,
    dH) gives the same mean and variance;
bad input. Monte Carlo: inherited through (b) from tests/test_trained_ensemble.py (trained depth-2 tanh
ensembles against trained_ensemble_gd within Z_MAX sigma: mean, covariance, test error).
"""
import itertools

import numpy as np
import pytest

from sft.predict import (gd_cov_series, gd_mean_correction, gd_mean_series, gd_series_latex, generated_gd_cov,
                         generated_gd_mean, trained_ensemble_gd)
from sft.predict.trained_ensemble import _toy_meta_kernels

from one_layer_meta_kernels import one_layer_meta_kernels

TOL = 1e-10  # relative to max |c| (the scale of the correction)


# (x_train, y_train, x_test, activation, C_W, C_b, eta, k): feature rank 2 ((x, 1) inputs) unless C_b = 0
CASES = [
    (np.array([[-1.0, 1.0], [0.4, 1.0], [1.3, 1.0]]), np.array([0.3, -0.2, 0.5]),
     np.array([[0.1, 1.0], [2.0, 1.0]]), "tanh", 1.5, 0.1, 0.3, 10),
    (np.array([[-0.8, 1.0], [1.1, 1.0]]), np.array([0.4, -0.5]), np.array([[0.3, 1.0]]), "erf", 2.0, 0.2, 0.5, 6),
    (np.array([[-1.2], [-0.3], [0.5], [1.4]]), np.array([0.2, -0.3, 0.1, 0.6]), np.array([[0.9], [-2.0]]),
     "erf", 1.2, 0.0, 0.2, 15),  # feature rank 1
]
NODES = (6, 8)


def _case(i):
    xt, y, xs, act, cw, cb, eta, k = CASES[i]
    mk = one_layer_meta_kernels(xt, y, xs, act, cw, cb, NODES)
    g = gd_mean_correction(xt, y, xs, activation=act, C_W=cw, C_b=cb, learning_rate=eta, n_steps=k,
                           n_nodes=NODES)
    return mk, y, len(xt), eta, k, g


@pytest.mark.parametrize("i", range(len(CASES)))
def test_equals_gd_mean_correction_and_every_class_matters(i):
    """(a) + (c): |generated - gd_mean_correction| <= 1e-10 max |c| for the total and each part (NTK, dNTK,
    ddNTK) on the test inputs; c_0 = 0 exactly; the infinite-width means agree to 1e-12; leaving out any
    one class moves the result by > 1e-3 max |c| (10^7 x the tolerance)."""
    mk, y, P, eta, k, g = _case(i)
    r = generated_gd_mean(mk, y, n_train=P, learning_rate=eta, n_steps=k)
    scale = np.abs(g.correction).max()
    assert scale > 1e-2
    np.testing.assert_allclose(r.correction[:, P:], g.correction, rtol=0, atol=TOL * scale)
    for part in ("ntk", "dntk", "ddntk"):
        np.testing.assert_allclose(r.parts[part][:, P:], getattr(g, part), rtol=0, atol=TOL * scale)
        assert np.abs(r.parts[part][:, P:]).max() > 1e-3 * scale, part  # dropping it breaks (a)
    assert not np.any(r.correction[0])
    np.testing.assert_allclose(r.mean[:, P:], g.mean, rtol=0, atol=1e-12)


def _symmetric_dntk_f3(N, seed):
    """A synthetic dntk_f3 with the meta-kernel symmetries (dNTK slots 1, 2; f slots 3, 4, 5)."""
    d = 0.05 * np.random.default_rng(seed).normal(size=(N,) * 6)
    d = (d + d.transpose(0, 2, 1, 3, 4, 5)) / 2
    return sum(d.transpose(0, 1, 2, *[3 + i for i in p]) for p in itertools.permutations(range(3))) / 6


def _assert_equal_to_trained_ensemble(mk, y, kw):
    r, c, t = generated_gd_mean(mk, y, **kw), generated_gd_cov(mk, y, **kw), trained_ensemble_gd(mk, y, **kw)
    for mine, theirs, parts, mine_parts in ((r.correction, t.mean_correction, t.mean_parts, r.parts),
                                            (c.correction, t.cov_correction, t.cov_parts, c.parts)):
        scale = np.abs(theirs).max()
        assert scale > 1e-2
        np.testing.assert_allclose(mine, theirs, rtol=0, atol=TOL * scale)
        for part, value in parts.items():
            np.testing.assert_allclose(mine_parts[part], value, rtol=0, atol=TOL * scale)
            assert np.abs(value).max() > 1e-3 * scale, part  # (c): dropping the class breaks the agreement
    np.testing.assert_allclose(c.cov, t.cov, rtol=0, atol=1e-13 * np.abs(t.cov).max())


def test_equals_trained_ensemble_gd_at_depth_2():
    """(b): depth 2, tanh, 2 training + 1 test input in d = 3: the generated mean and covariance equal
    trained_ensemble_gd (total and every part, all inputs, all steps) to 1e-10 of their max; each part is
    larger than 1e-3 of it. The same on synthetic meta-kernels of the same size with every cumulant block
    nonzero (ntk_f2 and dntk_f3 enter the covariance; dntk_f3 vanishes at this order for real networks)."""
    from sft.finite import output_meta_kernels
    x = np.array([[-1.0, 0.5, 0.3], [1.3, -0.3, 0.2], [0.1, 0.8, 0.9]])
    y, kw = np.array([0.5, -0.4]), dict(n_train=2, learning_rate=0.4, n_steps=12)
    _assert_equal_to_trained_ensemble(output_meta_kernels(x, depth=2, activation="tanh", C_W=1.5, C_b=0.1), y, kw)
    toy = _toy_meta_kernels(3, seed=2)
    _assert_equal_to_trained_ensemble(toy._replace(dntk_f3=_symmetric_dntk_f3(3, 0)), y, kw)


def test_every_generated_term_matters():
    """On synthetic meta-kernels (generic tensors with the meta-kernel symmetries, 3 train + 2 test inputs),
    every one of the 50 mean terms and of the 161 covariance terms alone contributes more than 1e-6 of the
    max of the correction (10^4 x the tolerance of (a), (b)): leaving out any single term breaks the agreement."""
    mk, y = _toy_meta_kernels(5, seed=3), np.array([0.5, -0.3, 0.2])
    mk = mk._replace(dntk_f3=_symmetric_dntk_f3(5, 1))
    kw = dict(n_train=3, learning_rate=0.3, n_steps=5)
    for series, run in ((gd_mean_series(), generated_gd_mean), (gd_cov_series(), generated_gd_cov)):
        assert len(series) == {generated_gd_mean: 50, generated_gd_cov: 161}[run]
        scale = np.abs(run(mk, y, **kw).correction).max()
        assert scale > 1e-2
        for j, term in enumerate(series):
            assert np.abs(run(mk, y, **kw, terms=[term]).correction).max() > 1e-6 * scale, (j, term)


def test_scalar_dynamics_unrolled_in_sympy():
    """(d): derivations/gd_series.py unrolls k = 3 GD steps of the N = P = 1 dynamics in sympy with f0, dTheta,
    dH realized by explicit polynomials of independent Gaussians (no cumulant rules, no term list); the
    1/n coefficients of the exact mean and variance equal the generated series to 1e-12 of their max."""
    from derivations.gd_series import scalar_check
    em, gm, ev, gv = scalar_check(n_steps=3)
    for exact, generated in ((em, gm), (ev, gv)):
        assert np.abs(exact).max() > 1e-2
        np.testing.assert_allclose(generated, exact, rtol=0, atol=1e-12 * np.abs(exact).max())


def test_bad_input():
    mk, y = _toy_meta_kernels(3, seed=0), np.array([0.5, -0.3])
    ok = dict(n_train=2, learning_rate=0.2, n_steps=3)
    with pytest.raises(ValueError, match="learning_rate=0.0"):
        generated_gd_mean(mk, y, **{**ok, "learning_rate": 0.0})
    with pytest.raises(ValueError, match="learning_rate"):
        generated_gd_mean(mk, y, **{**ok, "learning_rate": float("nan")})
    with pytest.raises(ValueError, match="n_steps=-1"):
        generated_gd_mean(mk, y, **{**ok, "n_steps": -1})
    with pytest.raises(ValueError, match="y_train has shape"):
        generated_gd_mean(mk, np.array([0.5, np.nan]), **ok)
    with pytest.raises(ValueError, match="y_train has shape"):
        generated_gd_mean(mk, np.ones(3), **ok)
    with pytest.raises(ValueError, match="n_train=4"):
        generated_gd_mean(mk, y, **{**ok, "n_train": 4})
    with pytest.raises(ValueError, match=r"meta_kernels.dntk_f has shape \(3, 3, 3\)"):
        generated_gd_mean(mk._replace(dntk_f=np.ones((3, 3, 3))), y, **ok)
    with pytest.raises(ValueError, match="meta_kernels.ddntk_II contains NaN"):
        generated_gd_mean(mk._replace(ddntk_II=np.full((3,) * 4, np.nan)), y, **ok)
    bad = mk.dntk_f.copy()
    bad[0, 0, 1, 2] += 1.0
    with pytest.raises(ValueError, match=r"meta_kernels.dntk_f is not symmetric under the axes permutation "
                                         r"\(0, 2, 1, 3\)"):
        generated_gd_mean(mk._replace(dntk_f=bad), y, **ok)
    with pytest.raises(ValueError, match="terms contains"):
        generated_gd_mean(mk, y, **ok, terms=["Theta1"])
    with pytest.raises(ValueError, match="terms contains"):
        generated_gd_cov(mk, y, **ok, terms=gd_mean_series()[:1])
    with pytest.raises(ValueError, match="kind='variance'"):
        gd_series_latex("variance")
