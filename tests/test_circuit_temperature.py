"""Tests of sft.circuits.survival: planted circuits against TLBP temperature.

References: (i) the sympy derivation derivations/circuit_survival.py; (ii) the independent T-matrix root
finder of sft.circuits.planted (threshold, overlaps); (iii) exact Gaussian draws of the TLBP of the linear
layer (numpy float64) for the large-size theory; (iv) MALA samples of the actual loss (sft.sim.sample_tlbp,
JAX float64) against the exact draws of the SAME finite problem.

Finite size. Away from the threshold the bias of a mean overlap is O(1/n) (test_planted), so the
theory is compared with the Richardson extrapolation 2 X(2n) - X(n) of independent draws at sizes n and
2n (error bar sqrt(4 se_2n^2 + se_n^2)); the remainder is O(1/n^2). Inside the critical window
|t/t_k - 1| ~ n^{-1/3} the corrections are not a power series in 1/n, and just above it the measured
size exponent is still -0.76 (t = 2 t_k) or -0.93 (4 t_k) (figure circuit_temperature (f)), so the tested
temperatures keep t/t_k <= 0.5 (kept circuits) or >= 16 (lost ones, exponent -1.01) for every circuit.
All z-scores |z| < Z_MAX = 4 at fixed seeds.
"""
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import sympy as sp

from derivations import circuit_survival as der
from sft.circuits import planted, survival as sv
from sft.conventions import Z_MAX
from sft.sim import TLBPWarning, sample_tlbp

T_K = np.array([4.0, 1.5, 0.5])          # threshold temperatures of the three circuits (whitened, gamma = rho = 0)
TWO_LEVEL = (1.0, 0.25)                   # non-whitened input variances: half of the inputs each


def thetas_for(n, m, tk=T_K):
    """Strengths with threshold temperatures tk at gamma = rho = 0: theta^2 = t_k sqrt(n m)."""
    return np.sqrt(tk * np.sqrt(n * m))


def two_level(m):
    return np.where(np.arange(m) < m // 2, *TWO_LEVEL)


def test_derivation_matches_library():
    a, want = der.output_coefficient()
    assert sp.simplify(a - want) == 0
    res, comps = der.null_vector_components()
    assert res == sp.zeros(2, 1)
    sol, tk = der.threshold_temperature()
    assert sp.simplify(sol[0] - tk) == 0
    f = sp.lambdify((der.theta, der.n, der.m, der.gamma, der.rho), tk)
    for th, n, m, g, rho in [(5.0, 10, 40, 0.0, 0.0), (7.0, 6, 9, 0.05, 0.3)]:
        got = sv.threshold_temperature([th], n=n, m=m, gamma=g, background=rho)[0]
        assert got == pytest.approx(f(th, n, m, g, rho), rel=1e-12)
    x = np.array([1.0, 1.3, 2.5])
    c = 0.3
    n, m, t = 30, 100, 0.7
    th = x * np.sqrt(m * t)
    got = sv.isotropic_survival(th, t, n=n, m=m).output[0]
    np.testing.assert_allclose(got, sp.lambdify((der.x, der.c), want)(np.sort(x)[::-1], c), rtol=1e-12)


@pytest.mark.parametrize("n, m, gamma, rho", [(20, 80, 0.0, 0.0), (50, 30, 0.3, 0.05)])
def test_threshold_and_overlaps_match_planted_t_matrix(n, m, gamma, rho):
    """x_k = theta_k / s(t) crosses c^(1/4) at t_k: the T-matrix of sft.circuits.planted finds an outlier just
    below t_k and none just above; away from it the closed forms equal its roots and overlaps."""
    th = np.array([9.0, 5.0])
    tk = sv.threshold_temperature(th, n=n, m=m, gamma=gamma, background=rho)
    assert np.all((tk > 0) & np.isfinite(tk))
    L, c = max(n, m), min(n, m) / max(n, m)
    scale = lambda t: np.sqrt(L * (rho ** 2 + t / (1 + gamma * t)))
    for k, t in enumerate(tk):
        assert th[k] / scale(t) == pytest.approx(c ** 0.25, rel=1e-12)
        for factor, count in ((1 - 1e-2, 1), (1 + 1e-2, 0)):
            roots, _, _ = planted.rectangular_outliers_t_matrix([th[k] / scale(factor * t)], c, z_max=10.0)
            assert roots.size == count
    for t in (0.3 * tk[1], 0.5 * (tk[0] + tk[1])):
        want_s, short, long_ = planted.rectangular_outliers_t_matrix(th / scale(t), c)
        got = sv.isotropic_survival(th, t, n=n, m=m, gamma=gamma, background=rho)
        k = want_s.size
        left, right = (short, long_) if n <= m else (long_, short)
        np.testing.assert_allclose(got.singular_value[0, :k], scale(t) * want_s[::-1], rtol=1e-9)
        np.testing.assert_allclose(got.left[0, :k], np.diag(left[::-1]), rtol=1e-8, atol=1e-12)
        np.testing.assert_allclose(got.right[0, :k], np.diag(right[::-1]), rtol=1e-8, atol=1e-12)
        assert np.all(got.left[0, k:] == 0) and np.all(got.output[0, k:] == 0)


@pytest.mark.parametrize("n, m, gamma, rho", [(8, 20, 0.0, 0.0), (20, 8, 0.2, 0.1)])
def test_anisotropic_route_reduces_to_closed_form(n, m, gamma, rho):
    """Equal input variances: T-matrix with the Silverstein resolvent == BGN closed forms (all fields)."""
    th = thetas_for(n, m)
    ts = [0.3, 1.0, 3.0]
    iso = sv.isotropic_survival(th, ts, n=n, m=m, gamma=gamma, background=rho)
    ani = sv.anisotropic_survival(th, ts, np.ones(m), n=n, gamma=gamma, background=rho)
    for field in ("singular_value", "left", "right", "output", "score"):
        np.testing.assert_allclose(getattr(ani, field), getattr(iso, field), rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(sv.anisotropic_threshold_temperature(th, np.ones(m), n=n, gamma=gamma, background=rho),
                               sv.threshold_temperature(th, n=n, m=m, gamma=gamma, background=rho), rtol=1e-9)


def test_background_stieltjes_against_empirical_resolvent():
    """g_n(w) of a two-level column-variance background vs (1/n) tr (w - B B^T)^{-1} of 10 draws (200 x 400);
    the constant-variance case vs the Marchenko-Pastur closed form."""
    n, m = 200, 400
    tau = two_level(m) / m
    w_edge, _ = sv.column_background_edge(tau, n)
    rng = np.random.default_rng(0)
    eig = np.array([np.linalg.eigvalsh((B := rng.standard_normal((n, m)) * np.sqrt(tau)) @ B.T) for _ in range(10)])
    assert eig.max() < w_edge * (1 + 0.05)          # TW fluctuations at the edge are O(n^{-2/3}) ~ 3%
    for w in (1.2 * w_edge, 2.0 * w_edge):
        emp = np.mean(1 / (w - eig), axis=1)
        z = (emp.mean() - sv.column_background_stieltjes(w, tau, n)) / (emp.std(ddof=1) / np.sqrt(emp.size))
        assert abs(z) < Z_MAX, (w, z)
    assert sv.column_background_edge(np.full(m, 1 / m), n)[0] == pytest.approx((1 + np.sqrt(n / m)) ** 2, rel=1e-12)
    for w in (3.0, 10.0):
        assert sv.column_background_stieltjes(w, np.full(m, 1 / m), n) == pytest.approx(
            planted.marchenko_pastur_stieltjes(w, n / m), rel=1e-12)


def _extrapolated(n, t, instances, draws, seed, input_variances=None, tk=T_K):
    """Richardson 2 X(2n) - X(n) (and its error bar) of each statistic. Per size, ``instances`` independent
    problems (fresh U, V, inputs: the theory averages over Haar directions, and with non-whitened inputs a
    lost circuit's finite-size overlap depends on how v_k projects on the input covariance) with ``draws``
    exact TLBP draws each; mean and standard error over the instance means (over the draws for one instance)."""
    out = []
    for j, size in enumerate((n, 2 * n)):
        m = 2 * size
        lam = None if input_variances is None else input_variances(m)
        per = {}
        for i in range(instances):
            p = sv.planted_linear_layer(size, m, thetas_for(size, m, tk), n_samples=m, seed=seed + 1000 * j + i,
                                        input_variances=lam)
            st = sv.survival_statistics(sv.tlbp_gaussian_draws(p, t, draws, seed=seed + 1000 * j + i), p.U, p.V,
                                        p.thetas)
            for k, v in st.items():     # one instance: every draw; several: the instance means
                per.setdefault(k, []).extend(v if instances == 1 else [v.mean(0)])
        out.append({k: (np.mean(v, 0), np.std(v, 0, ddof=1) / np.sqrt(len(v))) for k, v in per.items()})
    return {k: (2 * out[1][k][0] - out[0][k][0], np.hypot(2 * out[1][k][1], out[0][k][1])) for k in out[0]}


@pytest.mark.parametrize("t, fields", [(0.2, ("left", "right", "output", "score")), (64.0, ("left", "right"))])
def test_isotropic_theory_against_exact_tlbp_draws(t, fields):
    """Whitened inputs, sizes 24 x 48 and 48 x 96, 300 draws each (one instance: the noise is rotation invariant,
    so the law of the overlaps does not depend on U, V): overlaps, output, score vs BGN
    theory (c = 1/2; size-independent in these units since theta^2 = t_k sqrt(n m)). t = 0.2: every circuit
    kept (t/t_k <= 0.4). t = 64: every circuit lost (t/t_k >= 16, where the measured finite-size overlap
    scales as n^-1.01, figure circuit_temperature (f)); only the overlaps, whose n -> oo value is 0: the
    output and score of a lost pair carry its singular value, s/theta ~ sqrt(t/t_k), and its n^{-2/3} edge
    shift, which the 1/n extrapolation does not remove."""
    n = 24
    ext = _extrapolated(n, t, 1, 300, seed=1)
    theory = sv.isotropic_survival(thetas_for(n, 2 * n), t, n=n, m=2 * n)
    for field in fields:
        mean, se = ext[field]
        z = (mean - getattr(theory, field)[0]) / se
        assert np.all(np.abs(z) < Z_MAX), (field, z, mean, getattr(theory, field)[0])


def test_anisotropic_theory_against_exact_tlbp_draws():
    """Non-whitened inputs (variances 1 and 1/4): the T-matrix overlaps with the Silverstein resolvent vs exact
    draws (30 instances x 10 draws per size), at a temperature where circuits 1, 2 survive (t <= t_k / 2) and
    circuit 3 is lost (t >= 16 t_k; its output is not tested, see the isotropic test)."""
    n = 24
    tk_iso = np.array([8.0, 4.0, 0.1])
    th = thetas_for(n, 2 * n, tk_iso)
    tk = sv.anisotropic_threshold_temperature(th, two_level(2 * n), n=n)
    assert tk[0] > tk[1] > tk[2] and np.all(tk < tk_iso)      # weaker curvature on half the inputs: more noise
    t = 0.5 * tk[1]
    assert t >= 16 * tk[2]
    ext = _extrapolated(n, t, 30, 10, seed=5, input_variances=two_level, tk=tk_iso)
    theory = sv.anisotropic_survival(th, t, two_level(2 * n), n=n)
    assert theory.left[0, 2] == 0 and theory.left[0, 1] > 0.1
    for field, keep in (("left", slice(None)), ("right", slice(None)), ("output", slice(0, 2))):
        mean, se = ext[field]
        z = (mean[keep] - getattr(theory, field)[0, keep]) / se[keep]
        assert np.all(np.abs(z) < Z_MAX), (field, z, mean, getattr(theory, field)[0])


def test_mala_tlbp_of_the_loss_matches_exact_gaussian():
    """sample_tlbp (MALA, exact) on the loss L_N of two linear layers, whitened and non-whitened inputs
    (variances 1 and 1/4), sampled as one product density (the sum of the two losses on a shared sample
    axis: independent blocks, one compilation). Survival statistics per chain (mean over 10 draws),
    1 sigma over 32 chains, vs 3000 exact draws of the same problems; t = 1 lies between the thresholds
    (circuit 1 kept, 2 near its threshold, 3 lost). n, m = 12, 24; D = 2 x 288; float64."""
    n, m, t = 12, 24, 1.0
    probs = [sv.planted_linear_layer(n, m, thetas_for(n, m), n_samples=m, seed=3 + j, input_variances=lam)
             for j, lam in enumerate((None, two_level(m)))]
    D = n * m

    def loss(w, batch):
        return probs[0].loss(w[:D], batch[:2]) + probs[1].loss(w[D:], batch[2:])

    data = probs[0].data + probs[1].data
    w_star = jnp.asarray(np.concatenate([p.w_star for p in probs]))
    with warnings.catch_warnings():
        warnings.simplefilter("error", TLBPWarning)
        r = sample_tlbp(loss, w_star, jax.random.key(7), data=data, temperature=t, gamma=0.0, method="mala",
                        step_size=0.15 * t, n_chains=32, n_steps=400, burn_in=400, thin=40, record=lambda w: w)
    assert r.acceptance_rate.min() > 0.3      # largest curvature 1 in both blocks: step 0.15 t
    samples = np.asarray(r.samples)
    for j, p in enumerate(probs):
        # the sampled law is the Gaussian of the module docstring: per-entry variance 1/(lambda_j / t) by input
        dw2 = ((samples[..., j * D:(j + 1) * D] - p.w_star).reshape(32, -1, n, m) ** 2).mean(axis=(1, 2))
        lam = np.round(np.diag(p.covariance), 12)     # S = diag(1 or 1/4) up to rounding
        for level in np.unique(lam):
            per_chain = dw2[:, lam == level].mean(axis=1)
            want = sv.tlbp_noise_variance(t, curvature=level)
            z = (per_chain.mean() - want) / (per_chain.std(ddof=1) / np.sqrt(32))
            assert abs(z) < Z_MAX, (j, level, z)
        mc = sv.survival_statistics(samples[..., j * D:(j + 1) * D].reshape(32, -1, n, m), p.U, p.V, p.thetas)
        ex = sv.survival_statistics(sv.tlbp_gaussian_draws(p, t, 3000, seed=4), p.U, p.V, p.thetas)
        for field in ("left", "right", "output", "score"):
            per_chain = mc[field].mean(axis=1)
            se = np.hypot(per_chain.std(0, ddof=1) / np.sqrt(32), ex[field].std(0, ddof=1) / np.sqrt(3000))
            z = (per_chain.mean(0) - ex[field].mean(0)) / se
            assert np.all(np.abs(z) < Z_MAX), (j, field, z)


def test_bad_input():
    with pytest.raises(ValueError, match="t="):
        sv.isotropic_survival([2.0], 0.0, n=4, m=8)
    with pytest.raises(ValueError, match="t="):
        sv.isotropic_survival([2.0], [1.0, -1.0], n=4, m=8)
    with pytest.raises(ValueError, match="gamma"):
        sv.isotropic_survival([2.0], 1.0, n=4, m=8, gamma=-0.1)
    with pytest.raises(ValueError, match="thetas"):
        sv.threshold_temperature([2.0, -1.0], n=4, m=8)
    with pytest.raises(ValueError, match="thetas"):
        sv.threshold_temperature([2.0, 2.0], n=4, m=8)
    with pytest.raises(ValueError, match="thetas"):
        sv.isotropic_survival([np.nan], 1.0, n=4, m=8)
    with pytest.raises(ValueError, match="t contains NaN"):
        sv.isotropic_survival([2.0], np.nan, n=4, m=8)
    with pytest.raises(ValueError, match="background"):
        sv.threshold_temperature([2.0], n=4, m=8, background=np.nan)
    with pytest.raises(ValueError, match="input_variances"):
        sv.anisotropic_survival([2.0], 1.0, [1.0, 0.0, 1.0], n=2)
    with pytest.raises(ValueError, match="gamma"):
        sv.tlbp_noise_variance(1.0, gamma=-1.0)
    with pytest.raises(ValueError, match="n_samples"):
        sv.planted_linear_layer(3, 5, [1.0], n_samples=4, seed=0)
    p = sv.planted_linear_layer(3, 5, [2.0, 1.0], n_samples=10, seed=0)
    with pytest.raises(ValueError, match="t="):
        sv.tlbp_gaussian_draws(p, -1.0, 2, seed=0)
    with pytest.raises(ValueError, match="thetas"):
        sv.survival_statistics(p.teacher, p.U, p.V, [1.0, 2.0])
    with pytest.raises(ValueError, match="weights"):
        sv.survival_statistics(np.full((3, 5), np.nan), p.U, p.V, p.thetas)
