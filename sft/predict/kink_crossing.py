r"""Kinked activations under gradient descent: the O(n^{-1/2}) mean NTK change and mean output shift from
self-crossings of the kink.

For a kinked activation (ReLU, leaky ReLU, abs: sigma' jumps at z = 0) the O(1/n) trained-ensemble theory
of :mod:`sft.predict.trained_ensemble` does not apply (its ddNTK contains delta(z)^2 and is +inf at
coinciding inputs). The leading finite-width change of the NTK is larger, O(n^{-1/2}), and comes from
neurons whose training preactivation crosses the kink while it is pushed by its own gradient. Derived
here (lead's analysis, issue 13, checked against trained ensembles in tests/test_kink_crossing.py).

Network and training (one hidden layer, :mod:`sft.conventions`, trained as :func:`sft.sim.train_ensemble`):

    z_{i;a} = sqrt(C_b1) beta_i + sqrt(C_W1 / n0) omega_i . x_a,     i = 1..n,
    f_a     = sqrt(C_b2) beta_0 + sqrt(C_W2 / n) sum_i v_i sigma(z_{i;a}),
    L = 1/2 sum_{a in train} r_a^2,  r = f(X) - y,   theta <- theta - eta grad L,
    Theta_ab = C_b2 + (C_W2/n) sum_i sigma_{i;a} sigma_{i;b} + (C_W2/n) sum_i v_i^2 sigma'_{i;a} sigma'_{i;b} K1_ab,

K1_ab = C_b1 + C_W1 x_a.x_b / n0. sigma is scale-invariant with slopes s+ (z > 0) and s- (z < 0),
s+ != s- (relu: 1, 0; leaky_relu(alpha): 1, alpha; abs: 1, -1).

Derivation. One GD step moves the preactivations (linear in (omega, beta)) by

    Delta z_{i;a} = -(eta sqrt(C_W2) / sqrt(n)) v_i sum_{b in train} sigma'(z_{i;b}) K1_ab r_b,

O(n^{-1/2}); v_i moves by O(n^{-1/2}) with a mean of v_i Delta v_i that is O(1/n). The hidden-layer NTK
changes at O(n^{-1/2}) only through sigma'(z_{i;a}) jumping, i.e. through neurons with z_{i;a} within
O(n^{-1/2}) of the kink: probability O(n^{-1/2}), change O(1). (The readout term (C_W2/n) sum sigma sigma
changes by E[sigma' Delta z sigma] = O(1/n): Delta z is odd in v_i; for a smooth sigma the same parity
makes the whole NTK change O(1/n).) In u = sqrt(n) z_{i;a} near 0, with everything else frozen at its
initial value to leading order (v_i, the signs sigma'_{i;b} of the other inputs, which are away from
their kinks with probability 1 - O(n^{-1/2}), and the infinite-width residual r(s) = (1 - eta Theta)^s
(f0 - y) with f0 ~ N(0, K) the GP draw at initialization, independent of neuron i at leading order):

    u_{s+1} = u_s + v (delta_s + gamma_s sigma'(u_s)),                                          (1)
    delta_s = -eta sqrt(C_W2) sum_{b in train, b != a} sigma'_b K1_ab r_b(s),
    gamma_s = -eta sqrt(C_W2) K1_aa r_a(s)                    (the SELF term: it jumps with u).

If gamma = 0 the change of theta(u) integrates to the total shift v sum_s delta_s, odd in v: no O(n^{-1/2})
term (test inputs, whose preactivations have no self term, never contribute one). With the self term the
crossing measure is not odd. (1) is a piecewise translation; u = |v| w scales v out, so with
J_+- = int dw [theta(w_k(w)) - theta(w)] for the map w <- w +- (delta_s + gamma_s sigma'(w)) and
E[v^2 |v| 1(v > 0)] = sqrt(2/pi):

    E[v^2 (theta(z_k) - theta(z_0)) g(z_{-a}) | z_{-a}, r] = p_a(0) n^{-1/2} sqrt(2/pi) (J_+ + J_-) g + o(n^{-1/2}),

p_a(0) = 1 / sqrt(2 pi K1_aa) the density of z_a at 0. Since sigma'(u) = s- + (s+ - s-) theta(u), and
two preactivations of one neuron are near the kink together only with probability O(1/n),

    sqrt(n) E[Theta_k - Theta_0]_ab -> C_W2 K1_ab [c_{a->b} + c_{b->a}],          a != b,
    sqrt(n) E[Theta_k - Theta_0]_aa -> C_W2 K1_aa (s+^2 - s-^2) p_a(0) E[sqrt(2/pi)(J_+ + J_-) | z_a = 0],
    c_{a->b} = (s+ - s-) p_a(0) E[sigma'_b sqrt(2/pi) (J_+ + J_-) | z_a = 0]   (a in train; 0 for a a test input),

the expectation over z_{-a} ~ N(0, K1 | z_a = 0) (all other inputs, train and test) and over f0 ~ N(0, K)
(the readout NNGP on the training inputs), jointly, since delta, gamma depend on both.
For k = 1, J_+ + J_- = |delta + gamma s-| - |delta + gamma s+| (closed form; lead's analysis).

Mean output (derived here). The exact GD step of the outputs is f_{s+1} = f_s - eta Theta_s r_s + rho_s with
Theta_s the NTK at step s and rho_s the remainder. Its O(n^{-1/2}) mean has two sources: (i) the NTK change
above, which is correlated with f0 through r, so E[dTheta_s r_s] is averaged jointly over (f0, z_{-a});
(ii) the kink's convexity remainder sqrt(C_W2/n) sum_i v_i [sigma(z + dz) - sigma(z) - sigma'(z) dz] =
sqrt(C_W2/n) sum_i v_i (sigma'(z') - sigma'(z)) z' (sigma(z) = sigma'(z) z), nonzero only for crossing
neurons: per training output a, sqrt(n) E[rho_{s,a}] -> sqrt(C_W2) p_a(0) sqrt(2/pi) E[Rem_+ - Rem_-],
Rem_+- = int dw (sigma'(w_{s+1}) - sigma'(w_s)) w_{s+1} for the +- maps (u = |v| w: v u^2 -> sign(v) |v|^3).
Test outputs get no remainder (no self term: the integrand is even in v). Smooth second-order terms
(dv dsigma, the dNTK) and the O(n^{-1/2}) NTK fluctuations enter the mean at O(1/n) (odd in v given f0).
With m_s = sqrt(n) (E[f_s] - f_s^inf), m_0 = 0 (E f0 = 0 exactly):

    m_{s+1} = m_s - eta Theta_{.X} m_{s,X} - eta sqrt(n) E[dTheta_{s,.X} r_s] + sqrt(n) E[rho_s].
    For k = 1: m_1 = sqrt(C_W2) p_a(0) sqrt(2/pi) (s+ - s-) E[A|A| - B|B|] / 2 on training input a,
    A, B = delta + gamma s-, delta + gamma s+ (the NTK term starts at step 2).

Numerics. Monte Carlo over (f0, z_{-a}) (``n_samples`` draws, float64, numpy Generator from ``seed``;
the same seed gives the same result), J_+- on a midpoint grid of ``n_grid`` points in w over [-R, R],
R = sum_s |delta_s| + |gamma_s| max(|s+|, |s-|) (no trajectory from outside reaches 0); J is the integral of
a step function with a few jumps, so the grid error per sample is at most (number of jumps) x R / n_grid
and averages towards zero over samples. ``ntk_stderr`` and ``mean_stderr`` are Monte Carlo standard
errors (grid error not included; compare two n_grid to see it).

Scope: one hidden layer; GD with a constant step (any number of steps; chattering across the kink
included); the ensemble mean of the NTK and of the outputs. Not derived here: the O(n^{-1/2}) part of the
output covariance, gradient flow (its eta -> 0 limit, where GD's chattering across the kink becomes a
sliding motion, is not treated), deeper networks.

Checks (tests/test_kink_crossing.py): relu trained ensembles (widths 256..2048, fit a + b / sqrt(n)) for
the NTK change and the mean output; tanh intercepts consistent with 0; k = 1 against closed forms (relu,
abs); the grid against exact enumeration of the sign sequences. Measured once, longer (3 training + 1 test
input of that file, C_W = 2, C_b = 0.1, k = 4, eta lambda_max(Theta_XX) = 1.29, float64, n = 128..4096,
6000-8000 networks per width, fits a + b / sqrt(n)): relu, leaky_relu(0.2) and abs, all 9 NTK entries
within |z| <= 1.8 of the theory (relu sqrt(n) E[dTheta_11] = -0.225 +- 0.004, theory -0.2295 +- 0.0008);
mean outputs within |z| <= 2.9 (relu f(x_2): 0.1093 +- 0.0014 vs 0.1134; with a c/n term in the fit
0.1127 +- 0.0029).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from ..conventions import check_array, check_int, check_real, layer_constants, psd_eigh

__all__ = ["KinkNTKChange", "kink_ntk_change", "crossing_integral"]


class KinkNTKChange(NamedTuple):
    """Result of :func:`kink_ntk_change` (N = P + M inputs, training inputs first).

    ntk: (N, N), sqrt(n) E[Theta_k - Theta_0] at n -> inf (test-test block 0 at this order).
    ntk_stderr: (N, N), its Monte Carlo standard error.
    mean: (N,), sqrt(n) (E[f_k] - f_k^inf), f_k^inf the infinite-width (linear-model) mean.
    mean_stderr: (N,), its Monte Carlo standard error.
    n_samples, n_grid: the Monte Carlo size and the grid in w used.
    """

    ntk: np.ndarray
    ntk_stderr: np.ndarray
    mean: np.ndarray
    mean_stderr: np.ndarray
    n_samples: int
    n_grid: int


def _inputs(x_train, y_train, x_test):
    xt = np.asarray(x_train, dtype=np.float64)
    if xt.ndim != 2 or xt.shape[0] < 1 or not np.all(np.isfinite(xt)):
        raise ValueError(f"x_train has shape {xt.shape}: it must be a finite (P, n0) array with P >= 1")
    y = np.asarray(y_train, dtype=np.float64)
    if y.shape != (xt.shape[0],) or not np.all(np.isfinite(y)):
        raise ValueError(f"y_train has shape {y.shape}: it must be finite with shape ({xt.shape[0]},)")
    xs = np.zeros((0, xt.shape[1])) if x_test is None else np.asarray(x_test, dtype=np.float64)
    if xs.ndim != 2 or xs.shape[1] != xt.shape[1] or not np.all(np.isfinite(xs)):
        raise ValueError(f"x_test has shape {xs.shape}: it must be a finite (M, {xt.shape[1]}) array or None")
    return np.concatenate([xt, xs]), y


def _slopes(activation):
    from ..kernels.activations import get_activation  # noqa: PLC0415

    act = get_activation(activation)
    if act.slopes is None or abs(act.slopes[0] - act.slopes[1]) <= 1e-12 * max(map(abs, act.slopes)):
        raise ValueError(f"activation={activation!r} is not allowed: it must be kinked and scale-invariant "
                         "(relu, leaky_relu, abs, scale_invariant with a_plus != a_minus); for smooth "
                         "activations the NTK change is O(1/n): use sft.predict.ntk_change_gd")
    return act, act.slopes


def _setup(x_train, y_train, x_test, activation, depth, C_W, C_b, learning_rate, n_steps, n_samples, n_grid, seed):
    """Checked arguments shared by the one- and two-layer routines, and the first layer's kernel K1.

    K1_aa = C_b1 + C_W1 |x_a|^2 / n0 must be positive relative to its scale (a zero-variance preactivation
    sits on the kink): K1_aa <= 1e-12 * max(C_b1, C_W1 max_a |x_a|^2 / n0) is refused."""
    x, y = _inputs(x_train, y_train, x_test)
    act, slopes = _slopes(activation)
    cw, cb = layer_constants(depth, C_W, C_b)
    eta = check_real("learning_rate", learning_rate, minimum=0, strict=True)
    k = check_int("n_steps", n_steps, 1)
    S = check_int("n_samples", n_samples, 2)
    G = check_int("n_grid", n_grid, 2)
    rng = np.random.default_rng(check_int("seed", seed, 0))
    sq = np.sum(x * x, axis=1) / x.shape[1]
    K1 = cb[0] + cw[0] * (x @ x.T) / x.shape[1]
    scale = max(cb[0], cw[0] * sq.max())
    if not scale > 0 or np.min(cb[0] + cw[0] * sq) <= 1e-12 * scale:
        raise ValueError("an input has zero first-layer variance K1_aa = C_b1 + C_W1 |x_a|^2 / n0 (<= 1e-12 of "
                         "the largest): its preactivation sits on the kink; give nonzero inputs or C_b > 0")
    return x, y, act, slopes, cw, cb, eta, k, S, G, rng, K1


def crossing_integral(delta, gamma, slopes, n_grid):
    """Crossing integrals of the kink map w <- w + delta_s + gamma_s sigma'(w), s = 0..k-1 (w_0 = w).

    Returns (J, Rem), each (S, k): J[:, s] = int dw [theta(w_{s+1}) - theta(w_0)] (the change of the
    measure on the positive side after s + 1 steps) and Rem[:, s] = int dw [sigma(w_{s+1}) - sigma(w_s) -
    sigma'(w_s)(w_{s+1} - w_s)] = int dw (sigma'(w_{s+1}) - sigma'(w_s)) w_{s+1} (the convexity remainder
    of step s; sigma(w) = sigma'(w) w). delta, gamma: (S, k); sigma'(w) = slopes[0] (w > 0) or slopes[1]
    (w <= 0). Midpoint grid of ``n_grid`` points on [-R, R], R = sum_s |delta_s| + |gamma_s| max|slopes| per
    row (outside, no trajectory reaches 0). Grid error of J: at most h/2 per jump of the integrand,
    h = 2R / n_grid (Rem: h^2 R-sized terms per jump).

    >>> d, g = np.array([[0.3]]), np.array([[-1.0]])       # one step: J = (d + g s-)_+ - (-d - g s+)_+
    >>> J, Rem = crossing_integral(d, g, (1.0, 0.0), 1000)  # exact: 0.3 - 0.7 = -0.4; two jumps, h = 0.0026
    >>> bool(abs(J[0, 0] + 0.4) <= 0.0026), bool(abs(Rem[0, 0] - (0.3**2 + 0.7**2) / 2) < 1e-4)
    (True, True)
    """
    delta, gamma = check_array("delta", delta, ndim=2), check_array("gamma", gamma, ndim=2)
    if gamma.shape != delta.shape:
        raise ValueError(f"gamma has shape {gamma.shape}: it must equal delta's shape {delta.shape} (S, k)")
    if np.shape(slopes) != (2,):
        raise ValueError(f"slopes={slopes!r} is not allowed: give (s+, s-), the slopes of sigma for z > 0 and z < 0")
    sp, sm = (float(v) for v in check_array("slopes", slopes, ndim=1))
    n_grid = check_int("n_grid", n_grid, 2)
    R = np.sum(np.abs(delta) + np.abs(gamma) * max(abs(sp), abs(sm)), axis=1)
    h = 2 * R / n_grid
    w = -R[:, None] + h[:, None] * (np.arange(n_grid) + 0.5)
    pos0 = np.count_nonzero(w > 0, axis=1)
    J, Rem = np.zeros(delta.shape), np.zeros(delta.shape)
    d0 = np.where(w > 0, sp, sm)
    for s in range(delta.shape[1]):
        w = w + delta[:, s, None] + gamma[:, s, None] * d0
        d1 = np.where(w > 0, sp, sm)
        J[:, s] = h * (np.count_nonzero(w > 0, axis=1) - pos0)
        Rem[:, s] = h * np.sum((d1 - d0) * w, axis=1)
        d0 = d1
    return J, Rem


def kink_ntk_change(x_train, y_train, x_test=None, *, activation="relu", C_W, C_b, learning_rate, n_steps,
                    n_samples=20000, n_grid=512, seed=0) -> KinkNTKChange:
    """sqrt(n) E[Theta_k - Theta_0] and sqrt(n) (E[f_k] - f_k^inf) at n -> inf after k = ``n_steps`` GD steps,
    one hidden layer, kinked sigma.

    E_n[Theta_k - Theta_0]_ab = ntk_ab / sqrt(n) + O(1/n), E_n[f_k(x_a)] = f_k^inf(x_a) + mean_a / sqrt(n)
    + O(1/n) (module docstring: derivation, source, conventions). x_train (P, n0), y_train (P,), x_test
    (M, n0) or None; C_W, C_b scalars or (hidden, readout) pairs; learning_rate eta as
    :func:`sft.sim.train_ensemble` (L = 1/2 sum r^2, no 1/P). Monte Carlo over (f0, z_{-a}) with
    ``n_samples`` draws (float64, numpy Generator from ``seed``), crossing integrals on ``n_grid`` points.
    Returns :class:`KinkNTKChange`, N = P + M inputs, training first.

    >>> x = np.array([[1.0, 0.0], [0.6, 0.8]])
    >>> r = kink_ntk_change(x, np.array([0.5, -0.5]), activation="relu", C_W=2.0, C_b=0.1,
    ...                     learning_rate=0.5, n_steps=3, n_samples=4000, seed=0)
    >>> r.ntk.shape, r.mean.shape, bool(abs(r.ntk[0, 0]) > 5 * r.ntk_stderr[0, 0])
    ((2, 2), (2,), True)
    """
    from ..kernels.recursion import nngp_and_ntk  # noqa: PLC0415

    x, y, act, (sp, sm), cw, cb, eta, k, S, G, rng, K1 = _setup(
        x_train, y_train, x_test, activation, 1, C_W, C_b, learning_rate, n_steps, n_samples, n_grid, seed)
    N, P = x.shape[0], y.shape[0]
    K, Theta = nngp_and_ntk(x, x[:P], depth=1, activation=act, C_W=cw, C_b=cb)     # (N, P)
    lam = psd_eigh("Theta_XX", Theta[:P], vectors=False)
    if eta * lam[-1] >= 2:
        raise ValueError(f"learning_rate={learning_rate!r} is not allowed: GD diverges at infinite width for "
                         f"eta >= 2 / lambda_max(Theta_XX) = {2 / lam[-1]:.6g}")
    lk, Vk = psd_eigh("K_XX", K[:P])
    r = [(rng.standard_normal((S, P)) * np.sqrt(lk)) @ Vk.T - y]      # r(0) = f0 - y, f0 ~ N(0, K_XX)
    step = np.eye(P) - eta * Theta[:P]
    for _ in range(k - 1):
        r.append(r[-1] @ step.T)
    r = np.stack(r, axis=1)                                            # (S, k, P): r(s), s = 0..k-1
    ntk = np.zeros((S, N, N))                                          # sqrt(n) dTheta after k steps
    drive = np.zeros((S, k, N))    # sqrt(n) [-eta dTheta_s r_s + rho_s], the sources of the mean shift
    scale = math.sqrt(cw[1]) * K1[:, :P]                               # K1 sqrt(C_W2): Delta z per unit v r
    chunk = max(1, 2 ** 22 // G)
    for a in range(P):
        o = np.array([b for b in range(N) if b != a], dtype=int)
        cond = K1[np.ix_(o, o)] - np.outer(K1[o, a], K1[a, o]) / K1[a, a]
        rel = np.diag(cond) / np.diag(K1)[o]
        if o.size and np.min(rel) <= 1e-10:
            b = int(o[np.argmin(rel)])
            raise ValueError(f"inputs {a} and {b} have perfectly correlated first-layer preactivations "
                             "(one is a positive or negative multiple of the other in (x, sqrt(C_b1 n0 / C_W1))): "
                             "they cross the kink together, which this leading-order theory excludes")
        lc, Vc = psd_eigh("K1 | z_a = 0", cond) if o.size else (np.zeros(0), np.zeros((0, 0)))
        dprime = np.zeros((S, N))                                              # sigma'_b, b != a
        dprime[:, o] = np.where((rng.standard_normal((S, o.size)) * np.sqrt(lc)) @ Vc.T > 0, sp, sm)
        others = [b for b in range(P) if b != a]
        delta = -eta * np.einsum("mb,msb->ms", dprime[:, others] * scale[a, others], r[:, :, others])
        gamma = -eta * scale[a, a] * r[:, :, a]
        plus, minus = zip(*[(crossing_integral(delta[i:i + chunk], gamma[i:i + chunk], (sp, sm), G),
                             crossing_integral(-delta[i:i + chunk], -gamma[i:i + chunk], (sp, sm), G))
                            for i in range(0, S, chunk)])                      # v > 0 and v < 0 maps
        (Jp, Rp), (Jm, Rm) = ([np.concatenate(q) for q in zip(*half)] for half in (plus, minus))
        # u = |v| w: E[v^2 int du dtheta] = E[|v|^3; v > 0] (J_+ + J_-), E[v int du rho] = E[|v|^3; v > 0]
        # (Rem_+ - Rem_-), E[|v|^3; v > 0] = sqrt(2/pi)
        pa = math.sqrt(2 / math.pi) / math.sqrt(2 * math.pi * K1[a, a])        # E|v|^3/2 x p_a(0)
        cross = pa * (Jp + Jm)                                                      # (S, k)
        # sqrt(n) dTheta_s from a's crossing: row/column a (sigma'_a sigma'_b, b != a) and the diagonal
        row = cw[1] * K1[a] * (sp - sm) * dprime                                # (S, N) per unit cross
        diag = cw[1] * K1[a, a] * (sp ** 2 - sm ** 2)
        ntk[:, a, :] += row * cross[:, -1, None]
        ntk[:, :, a] += row * cross[:, -1, None]
        ntk[:, a, a] += diag * cross[:, -1]
        # mean-shift sources: -eta dTheta_s r_s for s = 1..k-1 (dTheta_0 = 0), and the remainder of f_a
        cs = cross[:, :-1]                                                      # (S, k-1): after s steps
        rs = r[:, 1:, :]                                                        # r(s), s = 1..k-1
        drive[:, 1:, :] -= eta * (row[:, None, :] * cs[:, :, None] * rs[:, :, a, None])
        drive[:, 1:, a] -= eta * np.einsum("msb,mb,ms->ms", rs, row[:, :P], cs) + eta * diag * cs * rs[:, :, a]
        drive[:, :, a] += math.sqrt(cw[1]) * pa * (Rp - Rm)
    shift = np.zeros((S, N))
    for s in range(k):
        shift = shift - eta * shift[:, :P] @ Theta.T + drive[:, s]
    return KinkNTKChange(ntk.mean(0), ntk.std(0, ddof=1) / math.sqrt(S), shift.mean(0),
                         shift.std(0, ddof=1) / math.sqrt(S), S, G)
