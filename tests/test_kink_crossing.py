"""The O(n^{-1/2}) NTK change and mean output shift of kinked-activation networks under GD
(sft.predict.kink_crossing).

Checks: (a) relu trained ensembles (one hidden layer, float64, widths 256..2048, 2000 networks each, numpy
GD in preactivation space, equal to sft.sim.train_ensemble's GD: test_gd_loop_equals_train_ensemble), fit
sqrt(n) E[Theta_k - Theta_0] and sqrt(n) (E f_k - f_k^inf) = a + b / sqrt(n), a against the theory,
|z| < Z_MAX; (b) tanh: the same a is consistent with 0 (and relu's is not); (c) k = 1 against an
independent closed form (Gaussian E|A| - E|B|, E A|A| - E B|B| and exact orthant probabilities), and the
grid crossing integrals against exact enumeration of sign sequences.
Variance reduction in (a), (b): the mean output is measured as f_k - f_k^lin (each network's own linearized
GD, mean f_k^inf + O(1/n)) with the monomials of degree <= 3 in f0 (exactly known means) as regression
control variates. Per-network std of sqrt(n)(f_k - f_k^inf) / sqrt(n)(f_k - f_k^lin) / with control variates,
relu, output 2, n = 256: 2.17 / 0.242 / 0.187, n = 2048: 5.84 / 0.118 / 0.072 (32000 networks per width).
Offline (not in this file): a wrong sign of the self term or dropping it fails (a) and (c); dropping the
remainder fails (a) (max |z| over the outputs 17.6..21.7) and (c); dropping the NTK-change drive of the
mean fails (a), max |z| 14.9..17.7, and so does dropping only its off-diagonal (row) part, 4.3..6.8 (fit
seeds 1..11; the full theory passes (a) at all 11, max |z| over the outputs <= 1.8).
"""
import itertools
import math

import numpy as np
import pytest
from scipy.linalg import solve_triangular
from scipy.special import erf

from sft.conventions import Z_MAX
from sft.kernels import nngp_and_ntk
from sft.predict import crossing_integral, kink_ntk_change

X = np.array([[1.0, 0.0, 0.0], [0.6, 0.8, 0.0], [0.0, 0.6, 0.8], [0.5, 0.5, 0.7071]])  # 3 train, 1 test
Y = np.array([0.8, -0.5, 0.3])
CW, CB, ETA, K_STEPS = 2.0, 0.1, 0.4, 4  # eta lambda_max(Theta_XX) = 1.29 (limit 2); <= 1.76 at n = 256
ENTRIES = [(0, 0), (1, 1), (2, 2), (0, 1), (1, 2), (0, 2), (3, 0), (3, 1), (3, 2)]
WIDTHS = np.array([256, 512, 1024, 2048])


def _kernel1(x):
    return CB + CW * (x @ x.T) / x.shape[1]


def _gd_ntk(z, v, b2, *, x, y, activation, n_steps):
    """Full-batch GD (L = 1/2 |f(X) - y|^2, step ETA) of S one-hidden-layer networks, tracked exactly in
    preactivation space (z is linear in (omega, beta): one step moves z_a by -ETA sum_b K1_ab dL/dz_b).
    z (S, N, n) on all N inputs (training first), v (S, n) readout weights, b2 (S,) readout bias.
    Returns the NTKs (S, N, N) and the outputs (S, N) before and after."""
    P, n = y.shape[0], z.shape[-1]
    K1 = _kernel1(x)
    sig, dsig = ((lambda u: np.maximum(u, 0.0), lambda u: (u > 0) * 1.0) if activation == "relu"
                 else (np.tanh, lambda u: 1.0 / np.cosh(u) ** 2))
    cn = math.sqrt(CW / n)

    def ntk(z, v):
        s, g = sig(z), dsig(z) * v[:, None, :]
        return CB + (CW / n) * (s @ s.transpose(0, 2, 1) + (g @ g.transpose(0, 2, 1)) * K1)

    def out(z, v, b2):
        return math.sqrt(CB) * b2[:, None] + cn * np.einsum("sai,si->sa", sig(z), v)

    theta0, f0 = ntk(z, v), out(z, v, b2)
    for _ in range(n_steps):
        s = sig(z[:, :P])
        r = out(z[:, :P], v, b2) - y
        dz = cn * v[:, None, :] * dsig(z[:, :P]) * r[:, :, None]          # dL/dz_{i;b}, (S, P, n)
        z = z - ETA * np.einsum("ab,sbi->sai", K1[:, :P], dz)
        v, b2 = v - ETA * cn * np.einsum("sai,sa->si", s, r), b2 - ETA * math.sqrt(CB) * r.sum(1)
    return theta0, ntk(z, v), f0, out(z, v, b2)


def _fit_intercept(means, errs):
    """Weighted least squares of means (W,) = a + b / sqrt(n) over the widths: (a, sigma_a)."""
    w = 1 / errs
    A = np.stack([np.ones(len(WIDTHS)), 1 / np.sqrt(WIDTHS)], 1) * w[:, None]
    coef, *_ = np.linalg.lstsq(A, means * w, rcond=None)                   # QR/SVD of the whitened design
    return coef[0], math.sqrt(np.linalg.pinv(A.T @ A, hermitian=True)[0, 0])


def _f0_control_variates(f0, K):
    """Control variates with exactly known means: the monomials of degree 1..3 of the training outputs at
    initialization f0 (S, P), minus their means. For one hidden layer, at any width, E f0 = 0 and E f0^3 = 0
    (f0 is odd under (v, b2) -> -(v, b2)) and E f0 f0^T = K, the NNGP (P, P) (an average over one neuron).
    Returns (S, 19) for P = 3."""
    idx = [c for deg in (1, 2, 3) for c in itertools.combinations_with_replacement(range(K.shape[0]), deg)]
    return np.stack([np.prod(f0[:, list(c)], axis=1) - (K[c] if len(c) == 2 else 0.0) for c in idx], 1)


def _cv_mean(d, h):
    """Regression estimator of the mean of d (S, C) with control variates h (S, p) of mean 0: least squares
    d = c + h beta (Glasserman, Monte Carlo Methods in Financial Engineering, sec. 4.1, multiple controls),
    by QR of the design.
    Returns c (C,) and its standard error (C,) from the residual variance (S - 1 - p degrees of freedom)."""
    A = np.concatenate([np.ones((d.shape[0], 1)), h], 1)
    Q, R = np.linalg.qr(A)
    coef = solve_triangular(R, Q.T @ d)
    r0 = solve_triangular(R, np.eye(A.shape[1]))[0]                   # (A^T A)^-1_00 = |row 0 of R^-1|^2
    return coef[0], np.sqrt(np.sum((d - A @ coef) ** 2, 0) / (A.shape[0] - A.shape[1]) * (r0 @ r0))


def _measured_intercepts(activation, n_networks, seed, chunk=100):
    """sqrt(n) E[Theta_k - Theta_0] and sqrt(n) E[f_k - f_k^lin] (f^lin: linear GD with each network's own
    f0 and Theta_0, whose mean is f_k^inf + O(1/n): E f0 = 0, E Theta_0 = Theta exactly for one hidden layer,
    Cov(f0, Theta_0) = 0 by v -> -v; the O(n^-1/2) fluctuations of f0 and Theta_0 drop out of f_k - f_k^lin),
    each width's mean by :func:`_cv_mean` with :func:`_f0_control_variates`, fitted as a + b / sqrt(n):
    (a, sigma_a) for the NTK (N, N) and the outputs (N,). Networks are trained ``chunk`` at a time (speed)."""
    assert n_networks % chunk == 0, (n_networks, chunk)
    rng = np.random.default_rng(seed)
    L = np.linalg.cholesky(_kernel1(X))
    K, _ = nngp_and_ntk(X[:3], depth=1, activation=activation, C_W=CW, C_b=CB)
    stats = []
    for n in WIDTHS:
        d, h = [], []
        for _ in range(n_networks // chunk):
            z = np.einsum("ab,sbi->sai", L, rng.standard_normal((chunk, X.shape[0], n)))
            t0, t1, f0, fk = _gd_ntk(z, rng.standard_normal((chunk, n)), rng.standard_normal(chunk), x=X, y=Y,
                                     activation=activation, n_steps=K_STEPS)
            lin, res, th0 = f0.copy(), f0[:, :3] - Y, t0[:, :, :3]  # each network's own Theta_0: its O(n^-1/2)
            for _ in range(K_STEPS):                                 # fluctuation drops out of f_k - lin
                step = np.einsum("sab,sb->sa", th0, res)
                lin, res = lin - ETA * step, res - ETA * step[:, :3]
            d.append(math.sqrt(n) * np.concatenate([(t1 - t0).reshape(chunk, -1), fk - lin], 1))
            h.append(_f0_control_variates(f0[:, :3], K))
        stats.append(_cv_mean(np.concatenate(d), np.concatenate(h)))
    fits = np.array([_fit_intercept(*(np.array([q[j][c] for q in stats]) for j in (0, 1)))
                     for c in range(stats[0][0].size)])
    N = X.shape[0]
    return (fits[:N * N, 0].reshape(N, N), fits[:N * N, 1].reshape(N, N)), (fits[N * N:, 0], fits[N * N:, 1])


@pytest.fixture(scope="module")
def relu_fit():
    return _measured_intercepts("relu", 2000, seed=11)


def test_relu_ensemble_matches_theory(relu_fit):
    (a, sa), (m, sm) = relu_fit
    th = kink_ntk_change(X[:3], Y, X[3:], activation="relu", C_W=CW, C_b=CB, learning_rate=ETA,
                         n_steps=K_STEPS, n_samples=10000, seed=3)
    for i, j in ENTRIES:
        z = (a[i, j] - th.ntk[i, j]) / math.hypot(sa[i, j], th.ntk_stderr[i, j])
        assert abs(z) < Z_MAX, (f"relu sqrt(n) E[dTheta_{i}{j}]: measured intercept {a[i, j]:.4f} +- {sa[i, j]:.4f}, "
                                f"theory {th.ntk[i, j]:.4f} +- {th.ntk_stderr[i, j]:.4f}, z = {z:.2f}")
    z = (m - th.mean) / np.hypot(sm, th.mean_stderr)
    assert np.all(np.abs(z) < Z_MAX), (f"relu sqrt(n) (E f_k - f_k^inf): measured {m.round(4)} +- {sm.round(4)}, "
                                       f"theory {th.mean.round(4)} +- {th.mean_stderr.round(4)}")
    # the effect is resolved: the O(1/n) theory (intercept 0) is excluded
    assert np.all(np.abs(np.diag(a)[:3]) > Z_MAX * np.diag(sa)[:3]), (np.diag(a), np.diag(sa))
    assert abs(m[1]) > Z_MAX * sm[1], (m, sm)


def test_tanh_intercept_is_zero():
    (a, sa), (m, sm) = _measured_intercepts("tanh", 1000, seed=12)
    for i, j in ENTRIES:
        assert abs(a[i, j]) < Z_MAX * sa[i, j], (f"tanh sqrt(n) E[dTheta_{i}{j}] intercept {a[i, j]:.4f} +- "
                                                 f"{sa[i, j]:.4f} is not consistent with 0")
    assert np.all(np.abs(m) < Z_MAX * sm), (f"tanh sqrt(n) (E f_k - f_k^inf) intercept {m.round(4)} +- "
                                            f"{sm.round(4)} is not consistent with 0")


def test_gd_loop_equals_train_ensemble():
    """The preactivation-space GD of this file is sft.sim.train_ensemble's GD (same networks, 1e-10)."""
    import jax

    from sft.sim import init_params, train_ensemble
    n, S = 16, 2
    run = train_ensemble(jax.random.key(5), X[:3], Y, X[3:], n_ensemble=S, widths=[n], activation="relu",
                         C_W=CW, C_b=CB, learning_rate=ETA, n_steps=K_STEPS, record_every=K_STEPS,
                         record_ntk=True)
    (om1, be1), (om2, be2) = init_params(jax.random.key(5), n_ensemble=S, in_dim=3, widths=[n])
    z = math.sqrt(CB) * np.asarray(be1)[:, None, :] + math.sqrt(CW / 3) * np.einsum("ad,sdi->sai", X, om1)
    t0, t1, _, fk = _gd_ntk(z, np.asarray(om2)[:, :, 0], np.asarray(be2)[:, 0], x=X, y=Y, activation="relu",
                            n_steps=K_STEPS)
    f_ref = np.concatenate([np.asarray(run.train_predictions)[:, -1], np.asarray(run.test_predictions)[:, -1]], 1)
    assert np.max(np.abs(fk - f_ref)) < 1e-10 * np.max(np.abs(f_ref))
    ref = np.asarray(run.ntk)
    scale = np.max(np.abs(ref))
    assert np.max(np.abs(t0[:, :3, :3] - ref[:, 0])) < 1e-10 * scale
    assert np.max(np.abs(t1[:, :3, :3] - ref[:, -1])) < 1e-10 * scale, np.max(np.abs(t1[:, :3, :3] - ref[:, -1]))


def _signed_square_gauss(mu, s):
    """E[X |X|], X ~ N(mu, s^2) (s = None: the point mass at mu)."""
    if s is None:
        return mu * abs(mu)
    return (mu ** 2 + s ** 2) * erf(mu / (s * math.sqrt(2))) + mu * s * math.sqrt(2 / math.pi) * np.exp(
        -mu ** 2 / (2 * s ** 2))


def _abs_gauss(mu, s):
    """E|N(mu, s^2)| (s = None: the point mass at mu)."""
    if s is None:
        return abs(mu)
    return s * math.sqrt(2 / math.pi) * np.exp(-mu ** 2 / (2 * s ** 2)) + mu * erf(mu / (s * math.sqrt(2)))


def _one_step_closed_form(x, y, slopes, eta):
    """k = 1, P = 2 training inputs + 1 test input: sqrt(n) E[Theta_1 - Theta_0] (3, 3) and sqrt(n) (E f_1 -
    f_1^inf) on the training inputs (2,), no Monte Carlo. Per crossing input a and sign pattern of the other
    two preactivations given z_a = 0 (orthant probabilities 1/4 +- arcsin(rho)/(2 pi)): with A, B = -eta
    sqrt(C_W) w.r Gaussian in r = f0 - y ~ N(-y, K), w_b = sigma'_b K1_ab (b != a), w_a = s-|s+ K1_aa,
    E_v[v^2 J] = sqrt(2/pi) (E|A| - E|B|) and E_v[v Rem] = sqrt(2/pi) (s+ - s-) (E A|A| - E B|B|) / 2."""
    sp, sm = slopes
    act = "relu" if slopes == (1.0, 0.0) else ("abs" if slopes == (1.0, -1.0) else None)
    K1 = _kernel1(x)
    K, _ = nngp_and_ntk(x[:2], depth=1, activation=act, C_W=CW, C_b=CB)
    out, mean = np.zeros((3, 3)), np.zeros(2)
    for a in range(2):
        o = [b for b in range(3) if b != a]
        C = K1[np.ix_(o, o)] - np.outer(K1[o, a], K1[a, o]) / K1[a, a]
        rho = C[0, 1] / math.sqrt(C[0, 0] * C[1, 1])
        for signs in itertools.product((1, -1), repeat=2):
            prob = 0.25 + signs[0] * signs[1] * math.asin(rho) / (2 * math.pi)
            dp = {b: (sp if s > 0 else sm) for b, s in zip(o, signs)}
            val = rem = 0.0
            for self_slope, sgn in ((sm, 1), (sp, -1)):
                w = np.zeros(2)
                w[a] = self_slope * K1[a, a]
                w[1 - a] = dp[1 - a] * K1[a, 1 - a]
                w *= -eta * math.sqrt(CW)
                sd = math.sqrt(w @ K @ w) if np.any(w) else None
                val += sgn * _abs_gauss(-w @ y, sd)
                rem += sgn * (sp - sm) / 2 * _signed_square_gauss(-w @ y, sd)
            val *= math.sqrt(2 / math.pi) * prob / math.sqrt(2 * math.pi * K1[a, a])
            mean[a] += math.sqrt(CW) * math.sqrt(2 / math.pi) * prob / math.sqrt(2 * math.pi * K1[a, a]) * rem
            out[a, a] += (sp ** 2 - sm ** 2) * val
            for b in o:
                out[a, b] += (sp - sm) * dp[b] * val
                out[b, a] += (sp - sm) * dp[b] * val
    return CW * K1 * out, mean


@pytest.mark.parametrize("activation, slopes", [("relu", (1.0, 0.0)), ("abs", (1.0, -1.0))])
def test_one_step_closed_form(activation, slopes):
    x, y = X[[0, 1, 3]], Y[:2]
    ref, ref_mean = _one_step_closed_form(x, y, slopes, 0.4)
    th = kink_ntk_change(x[:2], y, x[2:], activation=activation, C_W=CW, C_b=CB, learning_rate=0.4, n_steps=1,
                         n_samples=20000, seed=4)
    pairs = [(0, 1), (2, 0), (2, 1)] + ([(0, 0), (1, 1)] if activation == "relu" else [])  # abs: sigma'^2 = 1
    for i, j in pairs:
        z = (th.ntk[i, j] - ref[i, j]) / th.ntk_stderr[i, j]
        assert abs(z) < Z_MAX, (i, j, th.ntk[i, j], ref[i, j], th.ntk_stderr[i, j])
    assert abs(ref[0, 1]) > 10 * th.ntk_stderr[0, 1]                   # a nonzero closed form is tested
    z = (th.mean[:2] - ref_mean) / th.mean_stderr[:2]
    assert np.all(np.abs(z) < Z_MAX), (th.mean, ref_mean, th.mean_stderr)
    assert np.max(np.abs(ref_mean)) > 10 * np.max(th.mean_stderr[:2])


def _crossing_exact(delta, gamma, slopes):
    """(J (k,), Rem (k,)) of :func:`crossing_integral` by enumerating the 2^(k+1) sign sequences of
    (w_0, .., w_k): each is followed on an interval [lo, hi] of w, where w_s = w + off_s is a translation."""
    k = delta.shape[0]
    R = np.sum(np.abs(delta) + np.abs(gamma) * max(map(abs, slopes)))
    J, Rem = np.zeros(k), np.zeros(k)
    for seq in itertools.product((1, 0), repeat=k + 1):             # 1: w_s > 0
        lo, hi, offs = -R, R, [0.0]
        for s, up in enumerate(seq):
            lo, hi = (max(lo, -offs[s]), hi) if up else (lo, min(hi, -offs[s]))
            if s < k:
                offs.append(offs[s] + delta[s] + gamma[s] * slopes[0 if up else 1])
        if hi <= lo:
            continue
        for s in range(k):
            J[s] += (seq[s + 1] - seq[0]) * (hi - lo)
            jump = slopes[0 if seq[s + 1] else 1] - slopes[0 if seq[s] else 1]
            Rem[s] += jump * ((hi ** 2 - lo ** 2) / 2 + offs[s + 1] * (hi - lo))   # int (w + off_{s+1}) dw
    return J, Rem


def test_crossing_integral_exact_enumeration():
    rng = np.random.default_rng(0)
    k, G = 3, 4096
    d, g = rng.normal(size=(200, k)), 2 * rng.normal(size=(200, k))
    for slopes in ((1.0, 0.0), (1.0, 0.2), (1.0, -1.0)):
        J, Rem = crossing_integral(d, g, slopes, G)
        exact = [_crossing_exact(d[m], g[m], slopes) for m in range(200)]
        J_ex, Rem_ex = (np.array([e[j] for e in exact]) for j in (0, 1))
        R = np.sum(np.abs(d) + np.abs(g) * max(map(abs, slopes)), axis=1)[:, None]
        h = 2 * R / G                    # at most 2^(k+1) jumps, each costs <= h/2 (x the integrand's size)
        assert np.all(np.abs(J - J_ex) <= 2 ** k * h), np.max(np.abs(J - J_ex) / h)
        assert np.all(np.abs(Rem - Rem_ex) <= 2 ** (k + 1) * h * R), np.max(np.abs(Rem - Rem_ex) / (h * R))
        assert np.std(J_ex[:, -1]) > 0.1 * np.mean(R) and np.std(Rem_ex[:, -1]) > 0.02 * np.mean(R) ** 2


@pytest.mark.parametrize("kwargs, match", [
    (dict(activation="tanh"), "activation='tanh' is not allowed"),
    (dict(learning_rate=5.0), "learning_rate=5.0 is not allowed"),
    (dict(n_steps=0), "n_steps=0 is not allowed"),
    (dict(y_train=np.ones(2)), "y_train has shape"),
    (dict(x_test=np.array([[2.0, 0.0, 0.0]])), "perfectly correlated"),
    (dict(x_test=np.zeros((1, 3))), "zero first-layer variance"),
])
def test_bad_input(kwargs, match):
    args = dict(x_train=X[:3], y_train=Y, x_test=X[3:], activation="relu", C_W=CW, C_b=0.0, learning_rate=ETA,
                n_steps=2, n_samples=10)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        kink_ntk_change(**args)


@pytest.mark.parametrize("args, match", [
    ((np.ones((2, 3)), np.ones((2, 2)), (1.0, 0.0), 16), "gamma has shape"),
    ((np.ones((2, 3)), np.ones((2, 3)), (1.0,), 16), "slopes="),
    ((np.ones((2, 3)), np.ones((2, 3)), (1.0, np.nan), 16), "slopes contains NaN"),
    ((np.ones((2, 3)), np.ones((2, 3)), (1.0, 0.0), 1), "n_grid=1 is not allowed"),
])
def test_crossing_integral_bad_input(args, match):
    with pytest.raises(ValueError, match=match):
        crossing_integral(*args)
