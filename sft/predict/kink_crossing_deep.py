r"""Kinked activations under gradient descent, two hidden layers: the O(n^{-1/2}) mean change of the NTK of
each layer's parameters, from self-crossings of the kink in both layers.

The one-hidden-layer theory is :mod:`sft.predict.kink_crossing` (read its docstring first: the kink map,
the crossing integrals J, the scaling argument). This module carries it to depth 2 (issue 13).

Network and training (:mod:`sft.conventions`, trained as :func:`sft.sim.train_ensemble`; equal widths n;
C_W^(l), C_b^(l) for layers l = 1, 2, 3 = readout; omega, beta, v ~ N(0, 1)):

    z1_{i;a} = sqrt(C_b1) beta1_i + sqrt(C_W1/n0) omega1_i . x_a,
    z2_{j;a} = sqrt(C_b2) beta2_j + sqrt(C_W2/n) sum_i omega_{ji} sigma(z1_{i;a}),
    f_a      = sqrt(C_b3) beta3 + sqrt(C_W3/n) sum_j v_j sigma(z2_{j;a}),
    L = 1/2 sum_{a in train} r_a^2, r = f(X) - y, theta <- theta - eta grad L.

Per-layer NTK, Theta = Theta^(1) + Theta^(2) + Theta^(3) (the parameters of layer 1, 2, readout), with the
backward signal B_{i;a} = df_a / d sigma(z1_{i;a}) = (sqrt(C_W3 C_W2) / n) sum_j v_j sigma'(z2_{j;a}) omega_{ji}:

    Theta^(3)_ab = C_b3 + (C_W3/n) sum_j sigma(z2_{j;a}) sigma(z2_{j;b}),
    Theta^(2)_ab = (C_W3/n) sum_j v_j^2 sigma'(z2_{j;a}) sigma'(z2_{j;b}) G2_ab,   G2 = C_b2 + (C_W2/n) sum_i sigma1 sigma1,
    Theta^(1)_ab = K1_ab sum_i sigma'(z1_{i;a}) sigma'(z1_{i;b}) B_{i;a} B_{i;b},   K1_ab = C_b1 + C_W1 x_a.x_b / n0.

Kernels at infinite width: K2 = C_b2 + C_W2 <sigma sigma>_K1, K3 = C_b3 + C_W3 <sigma sigma>_K2 (the NNGP of f),
Q_l = <sigma' sigma'>_Kl, Theta_inf the depth-2 NTK; H = K2 + C_W2 Q1 * K1 (elementwise) is the NTK of z2.

Derivation (this module; lead's notes on issue 13, verified and completed here). sigma' = s- + (s+ - s-) theta
is piecewise constant, so at O(n^{-1/2}) the mean NTK moves only through neurons whose preactivation on a
training input a crosses the kink under its own gradient (the self term); everything else is frozen at
its initial value to leading order, r(s) = (1 - eta Theta_inf)^s (f0 - y), f0 ~ N(0, K3_XX). In u = sqrt(n) z:

(a) Layer-1 neuron i at input a. sqrt(n) dz1_{i;a}(s) = -eta sum_{c in train} K1_ac sigma'(z1_{i;c}) beta_{i;c} r_c(s),
    beta_i = sqrt(n) B_i ~ N(0, C_W3 C_W2 Q2) (over all inputs; independent of z1_i and of f0 at leading order):
    the one-layer map (1) of kink_crossing.py with v -> beta: delta_s = -eta sum_{c != a} K1_ac sigma'_c beta_c
    r_c(s), gamma_s = -eta K1_aa beta_a r_a(s). Its crossings change Theta^(1) only:
        sqrt(n) dTheta^(1)_ab += K1_ab (s+ - s-) p1_a(0) E[sigma'_b beta_a beta_b J] (+ a <-> b; diagonal:
        K1_aa (s+^2 - s-^2) p1_a(0) E[beta_a^2 J]),  p_a(0) = 1 / sqrt(2 pi K_aa).
(b) Layer-2 neuron j at input a. One step moves z2_j through its own (omega_j, beta2_j) and through the move
    of layer 1. The part of layer 1's move driven by neuron j itself (the j-th term of B) gives, with the
    direct part, the self drift -eta sqrt(C_W3/n) v_j sum_c sigma'(z2_{j;c}) H_ac r_c (the full path kernel H);
    the part driven by all other layer-2 neurons is a COLLECTIVE DRIFT, even in v_j:
        sqrt(n) xi_{j;a}(s) = -eta sum_{c in train} r_c(s) sqrt(C_W2) K1_ac g_c,
        g_b = n^{-1/2} sum_i omega_{ji} sigma'(z1_{i;a}) sigma'(z1_{i;b}) beta^{(-j)}_{i;b},
        g ~ N(0, C_W3 C_W2 M_a * Q2),  M_a,bc = <sigma'_a^2 sigma'_b sigma'_c>_K1 (three-input orthants),
    independent of v_j and of z2_j at leading order. The map: u <- u + v delta_s + xi_s + v gamma_s sigma'(u),
    delta_s = -eta sqrt(C_W3) sum_{c != a} sigma'_c H_ac r_c(s), gamma_s = -eta sqrt(C_W3) H_aa r_a(s); v and xi do
    not scale out together, so J is averaged over v ~ N(0, 1) and g directly. A crossing of neuron j changes
    (b1) Theta^(2) through v_j^2 sigma' sigma':   sqrt(n) dTheta^(2)_ab += C_W3 K2_ab (s+ - s-) p2_a(0) E[sigma'_b v^2 J];
    (b2) Theta^(1) through the j = j' (diagonal) part of B B, sum_i omega_ji^2 sigma'1 sigma'1 / n -> Q1:
         the same with K2_ab -> C_W2 Q1_ab K1_ab (lead's note);
    (b3) Theta^(1) through the CROSS TERM 2 B^{(-j)} dB_j: dB_{i;a} = (sqrt(C_W3 C_W2)/n) v_j omega_ji dsigma'_{j;a},
         whose mean is not zero because the crossing is driven by xi, i.e. by g:
         sqrt(n) dTheta^(1)_ab += K1_ab sqrt(C_W3 C_W2) (s+ - s-) p2_a(0) E[v J g_b] (+ a <-> b; diagonal x 2).
    (Diagonals: (s+^2 - s-^2) in place of (s+ - s-) sigma'_b in (b1), (b2).)
(c) Theta^(3) contains sigma, not sigma': its change is O(1/n) (returned as exactly 0 at this order).
Test inputs have no self term: they contribute only through their row/column (sigma'_b, beta_b, g_b), and
the test-test block is 0 at this order. All expectations are over f0 ~ N(0, K3_XX), the other inputs' signs
given the crossing one is at 0 (N(0, K_l | z_a = 0)), and (beta | v, g) jointly.

Numerics. Monte Carlo over all of these (``n_samples`` draws per training input and layer, float64, numpy
Generator from ``seed``: same seed, same result); J by :func:`sft.predict.crossing_integral` on ``n_grid``
points (grid error averages out over samples; compare two n_grid to see it). ``ntk_stderr`` is the Monte
Carlo standard error.

Checks (tests/test_kink_crossing_deep.py): trained depth-2 relu ensembles (float64), per layer; k = 1
against Gaussian closed forms (dropping (b3), xi or the layer-1 part of H fails it). Measured once, longer
(2-core CPU, float64, that file's X, Y: 3 training + 1 test input, C_W = 2, C_b = 0.1, eta = 0.25 (eta
lambda_max(Theta_XX) = 1.30), k = 4; widths 128, 256, 512, 1024, 2048 with 4000, 4000, 3000, 1600, 800 networks;
weighted fits a + b / sqrt(n), chi^2 per entry mean 4.2, max 10.3 for 3 dof): all 30 upper-triangle entries of the three layers
within |z| <= 1.6 of the theory (n_samples 60000), e.g. sqrt(n) E[dTheta^(1)_00] = -0.699 +- 0.022 (theory
-0.712 +- 0.015), E[dTheta^(2)_00] = -0.322 +- 0.015 (-0.335 +- 0.010), readout entries +0.002..+0.006, se 0.003..0.005 (|z| <= 1.3 from 0).
The same data reject each dropped term: without (b3) the Theta^(1) diagonal becomes -0.44 (max |z| 9.8),
without xi -0.49 (|z| 7.3; Theta^(2) |z| 3.9), without the layer-1 part of H Theta^(2) becomes -0.09 (|z| 12.5).
Same inputs, 4 GD steps, widths 128, 256, 512, 1024 (3000, 3000, 2000, 1000-1500 networks): leaky_relu(0.2) (C_W = 2,
eta = 0.25) all 30 entries within |z| <= 3.0 (hidden layers <= 2.2; the readout's 2-parameter intercepts are
+0.013..+0.024 +- 0.007, with a c/n term tr Theta^(3)_XX = +0.035 +- 0.062); abs (C_W = 1, eta = 0.4) within
|z| <= 1.9. For abs sigma'^2 = 1, so the Theta^(1) diagonal comes from the cross term (b3) alone: measured
-0.171 +- 0.009, theory -0.169 +- 0.005; without (b3) the theory gives 0 (|z| 18.7).
Grid: n_grid 128, 512, 2048 agree within 1e-3 (same seed).

Scope: two hidden layers of equal width, GD with a constant step, the ensemble mean of the NTK per layer.
Checked against trained ensembles for relu, leaky_relu(0.2) and abs, at one set of inputs each (above).
Not derived: the mean output shift at depth 2, gradient flow, deeper networks (each further layer adds its
own collective drift and cross terms), unequal widths.
"""
from __future__ import annotations

import itertools
import math
from typing import NamedTuple

import numpy as np

from ..conventions import psd_eigh
from .kink_crossing import _setup, crossing_integral

__all__ = ["KinkNTKChangeDeep", "kink_ntk_change_deep"]


class KinkNTKChangeDeep(NamedTuple):
    """Result of :func:`kink_ntk_change_deep` (N = P + M inputs, training inputs first).

    ntk: (3, N, N), sqrt(n) E[Theta^(l)_k - Theta^(l)_0] at n -> inf for l = 1, 2, 3 (layer-1, layer-2 and
        readout parameters; the readout block is 0 at this order, as is every test-test entry).
    ntk_stderr: (3, N, N), the Monte Carlo standard errors.
    parts: (3, N, N), the pieces of ntk: layer-1 crossings on Theta^(1); layer-2 crossings on Theta^(1)
        (path and cross terms (b2) + (b3)); layer-2 crossings on Theta^(2) (module docstring).
    n_samples, n_grid: the Monte Carlo size and the grid used.
    """

    ntk: np.ndarray
    ntk_stderr: np.ndarray
    parts: np.ndarray
    n_samples: int
    n_grid: int


def _orthant(K, idx):
    """E[prod_{i in idx} theta(z_i)], z ~ N(0, K), for at most 3 distinct indices (Sheppard's formula and
    the trivariate orthant probability 1/8 + (asin r12 + asin r13 + asin r23) / (4 pi))."""
    idx = sorted(set(idx))
    d = np.sqrt(np.diag(K))

    def asin(i, j):
        return math.asin(min(1.0, max(-1.0, K[i, j] / (d[i] * d[j]))))

    if len(idx) <= 1:
        return 0.5 ** len(idx)
    if len(idx) == 2:
        return 0.25 + asin(*idx) / (2 * math.pi)
    i, j, k = idx
    return 0.125 + (asin(i, j) + asin(i, k) + asin(j, k)) / (4 * math.pi)


def _slope_moment(K, factors):
    """E[prod_m (alpha_m + beta_m theta(z_{i_m}))], z ~ N(0, K); factors = [(alpha, beta, i), ...]."""
    total = 0.0
    for pick in itertools.product((0, 1), repeat=len(factors)):
        coef = math.prod(f[1] if p else f[0] for f, p in zip(factors, pick))
        total += coef * _orthant(K, [f[2] for f, p in zip(factors, pick) if p])
    return total


def _signs_given_kink(rng, K, a, S, slopes, name):
    """sigma'(z_b) for b != a with z ~ N(0, K | z_a = 0) (column a left 0), (S, N)."""
    N = K.shape[0]
    o = np.array([b for b in range(N) if b != a], dtype=int)
    out = np.zeros((S, N))
    if not o.size:
        return out
    cond = K[np.ix_(o, o)] - np.outer(K[o, a], K[a, o]) / K[a, a]
    rel = np.diag(cond) / np.diag(K)[o]
    if np.min(rel) <= 1e-10:
        raise ValueError(f"inputs {a} and {int(o[np.argmin(rel)])} have perfectly correlated {name} "
                         "preactivations: they cross the kink together, which this leading-order theory excludes")
    lc, Vc = psd_eigh(f"{name} | z_a = 0", cond)
    out[:, o] = np.where((rng.standard_normal((S, o.size)) * np.sqrt(lc)) @ Vc.T > 0, *slopes)
    return out


def _gaussian(rng, name, C, S):
    lam, V = psd_eigh(name, C)
    return (rng.standard_normal((S, C.shape[0])) * np.sqrt(lam)) @ V.T


def _crossings(delta, gamma, slopes, G):
    """J after the last step (crossing_integral), in chunks that keep the grid arrays near 32 MiB."""
    chunk = max(1, 2 ** 22 // G)
    return np.concatenate([crossing_integral(delta[i:i + chunk], gamma[i:i + chunk], slopes, G)[0][:, -1]
                           for i in range(0, delta.shape[0], chunk)])


def kink_ntk_change_deep(x_train, y_train, x_test=None, *, activation="relu", C_W, C_b, learning_rate, n_steps,
                         n_samples=20000, n_grid=512, seed=0, _drop=()) -> KinkNTKChangeDeep:
    """sqrt(n) E[Theta^(l)_k - Theta^(l)_0] per layer at n -> inf after k = ``n_steps`` GD steps, two hidden
    layers of equal width n, kinked sigma.

    E_n[Theta^(l)_k - Theta^(l)_0] = ntk[l - 1] / sqrt(n) + O(1/n) (module docstring: derivation, conventions).
    x_train (P, n0), y_train (P,), x_test (M, n0) or None; C_W, C_b scalars or (layer 1, layer 2, readout)
    triples; learning_rate eta as :func:`sft.sim.train_ensemble` (L = 1/2 sum r^2, no 1/P). Monte Carlo with
    ``n_samples`` draws per training input and layer (float64, numpy Generator from ``seed``), crossing
    integrals on ``n_grid`` points. ``_drop`` (tests only): names of terms to leave out, a subset of
    {"cross", "xi", "path"} (module docstring (b3), the collective drift, the layer-1 part of H).

    >>> x = np.array([[1.0, 0.0], [0.6, 0.8]])
    >>> r = kink_ntk_change_deep(x, np.array([0.5, -0.5]), activation="relu", C_W=2.0, C_b=0.1,
    ...                          learning_rate=0.2, n_steps=3, n_samples=4000, seed=0)
    >>> r.ntk.shape, bool(np.all(r.ntk[2] == 0)), bool(abs(r.ntk[0, 0, 0]) > 5 * r.ntk_stderr[0, 0, 0])
    ((3, 2, 2), True, True)
    """
    from ..kernels.recursion import nngp_and_ntk  # noqa: PLC0415

    if not set(_drop) <= {"cross", "xi", "path"}:
        raise ValueError(f"_drop={_drop!r} is not allowed: a subset of ('cross', 'xi', 'path')")
    x, y, act, (sp, sm), cw, cb, eta, k, S, G, rng, K1 = _setup(
        x_train, y_train, x_test, activation, 2, C_W, C_b, learning_rate, n_steps, n_samples, n_grid, seed)
    N, P = x.shape[0], y.shape[0]
    Ks, Th = nngp_and_ntk(x, depth=2, activation=act, C_W=cw, C_b=cb, all_layers=True)
    K2, K3, Theta = Ks[1], Ks[2], Th[2]
    lam = psd_eigh("Theta_XX", Theta[:P, :P], vectors=False)
    if eta * lam[-1] >= 2:
        raise ValueError(f"learning_rate={learning_rate!r} is not allowed: GD diverges at infinite width for "
                         f"eta >= 2 / lambda_max(Theta_XX) = {2 / lam[-1]:.6g}")
    D, D2 = sp - sm, sp ** 2 - sm ** 2
    Q1, Q2 = (np.array([[_slope_moment(K, [(sm, D, a), (sm, D, b)]) for b in range(N)] for a in range(N)])
              for K in (K1, K2))
    H = K2 + (0.0 if "path" in _drop else cw[1] * Q1 * K1)
    r = [_gaussian(rng, "K3_XX", K3[:P, :P], S) - y]                   # r(0) = f0 - y, f0 ~ N(0, K3_XX)
    step = np.eye(P) - eta * Theta[:P, :P]
    for _ in range(k - 1):
        r.append(r[-1] @ step.T)
    r = np.stack(r, axis=1)                                            # (S, k, P)
    A1, A2, X1 = (np.zeros((S, N, N)) for _ in range(3))              # (a), (b1)/(b2) per unit, (b3)

    def add(A, a, row, diag):                                          # crossing at a: row/column a, diagonal
        A[:, a, :] += row
        A[:, :, a] += row
        A[:, a, a] += diag

    for a in range(P):
        oth = [c for c in range(P) if c != a]
        # (a) layer-1 neuron crossing at input a; beta = sqrt(n) B over all N inputs
        dp = _signs_given_kink(rng, K1, a, S, (sp, sm), "first-layer")
        beta = _gaussian(rng, "C_W3 C_W2 Q2", cw[2] * cw[1] * Q2, S)
        delta = -eta * np.einsum("sc,skc->sk", dp[:, oth] * K1[a, oth] * beta[:, oth], r[:, :, oth])
        gamma = -eta * K1[a, a] * beta[:, a, None] * r[:, :, a]
        w = _crossings(delta, gamma, (sp, sm), G) / math.sqrt(2 * math.pi * K1[a, a])
        add(A1, a, (D * dp * beta * beta[:, a, None]) * w[:, None], D2 * beta[:, a] ** 2 * w)
        # (b) layer-2 neuron crossing at input a: own v, collective drift xi from g
        dp = _signs_given_kink(rng, K2, a, S, (sp, sm), "second-layer")
        v = rng.standard_normal(S)
        M = np.array([[_slope_moment(K1, [(sm ** 2, D2, a), (sm, D, b), (sm, D, c)]) for c in range(N)]
                      for b in range(N)])
        g = _gaussian(rng, "C_W3 C_W2 M * Q2", cw[2] * cw[1] * M * Q2, S)
        xi = 0.0 if "xi" in _drop else -eta * math.sqrt(cw[1]) * np.einsum("skc,sc->sk", r, K1[a, :P] * g[:, :P])
        delta = -eta * math.sqrt(cw[2]) * np.einsum("sc,skc->sk", dp[:, oth] * H[a, oth], r[:, :, oth])
        gamma = -eta * math.sqrt(cw[2]) * H[a, a] * r[:, :, a]
        J = _crossings(v[:, None] * delta + xi, v[:, None] * gamma, (sp, sm), G) / math.sqrt(2 * math.pi * K2[a, a])
        add(A2, a, D * dp * (v ** 2 * J)[:, None], D2 * v ** 2 * J)
        if "cross" not in _drop:
            add(X1, a, math.sqrt(cw[2] * cw[1]) * D * (v * J)[:, None] * g * K1[a], 0.0)
    parts = np.stack([K1 * A1, cw[2] * cw[1] * Q1 * K1 * A2 + X1, cw[2] * K2 * A2], axis=1)   # (S, 3, N, N)
    layers = np.stack([parts[:, 0] + parts[:, 1], parts[:, 2], np.zeros((S, N, N))], axis=1)
    return KinkNTKChangeDeep(layers.mean(0), layers.std(0, ddof=1) / math.sqrt(S), parts.mean(0), S, G)
