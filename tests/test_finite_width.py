"""Tests of sft.finite.vertex: quadrature, limits, exact results, and Monte Carlo over finite networks.

Monte Carlo uses sft.sim.layer_kernels (per-network metric G^(l)); statistics are z-scores with
|z| < Z_MAX at fixed seeds. Widths are chosen so that the O(1/n) relative bias of n Cov(G) (exact for
ReLU: (nu l)^{-1} (l choose 2) nu^2 / n) is below ~1/3 of the relative error bar.
"""
import functools
import itertools
import math

import jax
import numpy as np
import pytest

from sft.finite import deep_linear
from sft.sim import estimators as est
from sft.finite import vertex as fw
from sft.kernels import get_activation
from sft.conventions import Z_MAX
from sft.sim import layer_kernels

X2 = np.array([[1.0, 0.2, -0.4], [0.3, -0.8, 0.5]])  # two inputs, n_0 = 3
# six correlated inputs, n_0 = 7, each 4x4 block of K^(l) with condition number < 20 (tanh, relu, erf, linear):
# the d = 4 rule's error grows with it (Isserlis: ~1e-10 at 20, ~1e-5 at 100).
_RNG = np.random.default_rng(3)
X6 = np.linalg.qr(_RNG.normal(size=(7, 7)))[0][:6] * math.sqrt(7) + 0.6 * _RNG.normal(size=(6, 7))


# ------------------------------------------------------------------------------- deterministic
@pytest.mark.parametrize("name", ["relu", "erf"])
@pytest.mark.parametrize("d", [1, 2])
def test_gaussian_rule_matches_closed_form_pairs(name, d):
    act = get_activation(name)
    K = np.array([[1.3, 0.7], [0.7, 0.9]])[:d, :d]
    z, w = fw.gaussian_rule(K)
    s = np.asarray(act.fn(z))
    got = w @ (s[:, 0] * s[:, -1])
    want = act.gauss_ss(K[0, 0], K[-1, -1], K[0, -1])
    assert abs(got - want) < 1e-13


@pytest.mark.parametrize("d, tol", [(3, 1e-11), (4, 1e-8)])
def test_gaussian_rule_isserlis_and_relu(d, tol):
    """Polynomial moments (Isserlis) and a ReLU product over 3-4 inputs against 2-D closed forms."""
    K = np.array([[1.3, 0.7, 0.2, 0.1], [0.7, 0.9, -0.3, 0.2], [0.2, -0.3, 1.1, 0.4],
                  [0.1, 0.2, 0.4, 1.0]])[:d, :d]
    z, w = fw.gaussian_rule(K)
    # Isserlis: E[z0 z0 z1 z2] = K00 K12 + 2 K01 K02
    isserlis = K[0, 0] * K[1, 2] + 2 * K[0, 1] * K[0, 2]
    assert abs(w @ (z[:, 0] ** 2 * z[:, 1] * z[:, 2]) - isserlis) < tol
    # relu(z0) relu(z1): the other coordinates are integrated out by the rule
    relu = get_activation("relu")
    got = w @ (np.maximum(z[:, 0], 0) * np.maximum(z[:, 1], 0))
    assert abs(got - relu.gauss_ss(K[0, 0], K[1, 1], K[0, 1])) < tol


def test_batched_moments_equal_gaussian_rule_sums():
    """All <s_a1..s_a4> and <s_a s_b> of 5 inputs (nested, batched, padded path) = sums on gaussian_rule."""
    act = get_activation("tanh")
    K = np.cov(np.random.default_rng(0).normal(size=(5, 9))) + 0.2
    s2, s4 = fw._symmetric_moments(act, K)
    for idx in [(0, 1, 2, 4), (1, 1, 3, 4), (2, 0, 2, 3), (4, 4, 4, 1), (0, 3, 3, 0), (2, 2, 2, 2)]:
        sub = sorted(set(idx))
        z, w = fw.gaussian_rule(K[np.ix_(sub, sub)])
        s = np.asarray(act.fn(z))
        assert s4[idx] == pytest.approx(w @ np.prod(s[:, [sub.index(i) for i in idx]], 1), rel=1e-13, abs=1e-15)
    for a, b in [(0, 0), (1, 3), (4, 2)]:
        sub = sorted({a, b})
        z, w = fw.gaussian_rule(K[np.ix_(sub, sub)])
        s = np.asarray(act.fn(z))
        assert s2[a, b] == pytest.approx(w @ (s[:, sub.index(a)] * s[:, sub.index(b)]), rel=1e-13)


def test_gaussian_rule_rejects_singular_covariance():
    with pytest.raises(ValueError, match="positive definite"):
        fw.gaussian_rule(np.ones((2, 2)))


@pytest.mark.parametrize("name, cw, cb", [("tanh", 1.5, 0.1), ("relu", 2.0, 0.0), ("erf", 1.2, 0.05)])
def test_multi_input_at_one_input_is_single_input(name, cw, cb):
    widths = (40, 100, 70)
    x = X2[:1]
    multi = fw.multi_input(x, depth=3, activation=name, C_W=cw, C_b=cb, widths=widths)
    single = fw.single_input(multi.K[0, 0, 0], depth=3, activation=name, C_W=cw, C_b=cb, widths=widths)
    np.testing.assert_allclose(multi.K[:, 0, 0], single.K, rtol=1e-12)
    np.testing.assert_allclose(multi.V[:, 0, 0, 0, 0], single.V, rtol=1e-9, atol=1e-14)
    np.testing.assert_allclose(multi.G1[:, 0, 0], single.G1, rtol=1e-8, atol=1e-13)


def test_vertex_symmetries():
    V = fw.multi_input(np.vstack([X2, [[0.5, 0.5, 0.1]]]), depth=2, activation="tanh", C_W=1.3,
                       C_b=0.2, kernel_shift=False).V
    for l in range(3):
        np.testing.assert_allclose(V[l], V[l].transpose(1, 0, 2, 3), atol=1e-13)
        np.testing.assert_allclose(V[l], V[l].transpose(2, 3, 0, 1), atol=1e-13)


@pytest.mark.parametrize("x", [np.vstack([X2, [[0.5, 0.5, 0.1]]]), X6], ids=["N3", "N6"])
def test_multi_input_linear_is_wishart(x):
    """Linear sigma: G^(l+1) = (C_W/n) sum_j z_j z_j^T is Wishart given G^(l), so exactly
    V^(l+1) = C_W^2 (K_13 K_24 + K_14 K_23) + r C_W^2 V^(l), G1 = 0 (tests the (C_W^2/4) D V D index structure)."""
    widths, cw = (20, 50, 30), 1.3
    out = fw.multi_input(x, depth=3, activation="linear", C_W=cw, C_b=0.2, widths=widths)
    r = fw.width_ratios(widths, 3)
    for l in range(3):
        Kl = out.K[l]
        want = cw ** 2 * (np.einsum("ac,bd->abcd", Kl, Kl) + np.einsum("ad,bc->abcd", Kl, Kl)) + \
            r[l] * cw ** 2 * out.V[l]
        # 3-input quadrature (~1e-11), 4-input (~1e-8: module docstring), summed over layers
        np.testing.assert_allclose(out.V[l + 1], want, rtol=1e-10 if len(x) == 3 else 1e-8)
    assert np.all(np.abs(out.G1) < 1e-11)


def test_linear_vertex_matches_exact_law_first_order():
    """Linear network: 3 V^(L+1) / (n_L K^2) = 6 sum_l 1/n_l, the O(1/n) part of the exact law."""
    widths = (30, 70, 50)
    out = fw.single_input(0.8, depth=3, activation="linear", C_W=1.7, C_b=0.0, widths=widths)
    kurt = fw.neuron_excess_kurtosis(out.V[-1], out.K[-1], widths[-1])
    assert kurt == pytest.approx(deep_linear.first_order_excess_kurtosis(widths), rel=1e-12)
    assert np.all(np.abs(out.G1) < 1e-13)


@pytest.mark.parametrize("slopes", [(1.0, 0.0), (1.0, -0.5), (0.3, 1.2)])
def test_scale_invariant_vertex_and_nu(slopes):
    """Any scale-invariant sigma at criticality: V^(l) = nu (l-1) K^2, G1 = 0, nu = 3 A4/A2^2 - 1."""
    a2 = (slopes[0] ** 2 + slopes[1] ** 2) / 2
    act = get_activation("scale_invariant", a_plus=slopes[0], a_minus=slopes[1])
    out = fw.single_input(1.3, depth=6, activation=act, C_W=1 / a2, C_b=0.0)
    nu = fw.nu_scale_invariant(*slopes)
    np.testing.assert_allclose(out.V, nu * np.arange(7) * 1.3 ** 2, rtol=1e-12, atol=1e-13)
    assert np.all(np.abs(out.G1) < 1e-12)
    assert fw.nu_from_recursion(act, C_W=1 / a2, depth=40) == pytest.approx(nu, rel=1e-12)
    if slopes == (1.0, 0.0):
        assert nu == pytest.approx(5.0, rel=1e-15)


@pytest.mark.parametrize("name, cw", [("tanh", 1.0), ("erf", math.pi / 4)])
def test_nu_of_K0_class_tends_to_two_thirds(name, cw):
    """K* = 0 class at criticality (C_W = 1/sigma_1^2): V/(L K^2) -> 2/3 with O(log L / L) corrections."""
    errs = [abs(fw.nu_from_recursion(name, C_W=cw, depth=L) - 2 / 3) for L in (125, 500, 2000)]
    assert errs[2] < errs[1] / 2.5 < errs[0] / 2.5 ** 2
    assert errs[2] < 2e-3


def test_tanh_kernel_shift_is_nonzero():
    out = fw.single_input(1.0, depth=3, activation="tanh", C_W=1.5, C_b=0.1)
    assert out.G1[1] == 0.0 and np.all(out.G1[2:] < -1e-2)


def test_width_ratio_convention():
    """r_l = n_l / n_{l-1} multiplies the carried-over vertex: V^(3) = fresh + (n_2/n_1) chi^2 V^(2)."""
    eq = fw.single_input(0.9, depth=2, activation="tanh", C_W=1.2, C_b=0.1)
    un = fw.single_input(0.9, depth=2, activation="tanh", C_W=1.2, C_b=0.1, widths=(10, 30))
    fresh = eq.V[2] - eq.chi_par[1] ** 2 * eq.V[1]
    assert un.V[2] == pytest.approx(fresh + 3.0 * eq.chi_par[1] ** 2 * eq.V[1], rel=1e-13)
    assert un.G1[2] == pytest.approx(3.0 * eq.G1[2], rel=1e-13)


@pytest.mark.parametrize("bad", [(10, 20), (10, 20, 30, 40), (10, 0, 5)])
def test_bad_widths(bad):
    with pytest.raises(ValueError, match="widths"):
        fw.single_input(1.0, depth=3, activation="tanh", C_W=1.0, C_b=0.0, widths=bad)
    with pytest.raises(ValueError, match="widths"):
        fw.multi_input(X2, depth=3, activation="tanh", C_W=1.0, C_b=0.0, widths=bad)


@pytest.mark.parametrize("name, cw, cb, sub", [("tanh", 1.5, 0.1, (0, 1, 2, 3)), ("relu", 2.0, 0.0, (1, 3, 4, 5))])
def test_many_inputs_sub_tensor_equals_those_inputs_alone(name, cw, cb, sub):
    """N = 6: V, G1 restricted to 4 of the inputs equal multi_input on those 4 alone (same integrals);
    V keeps the pair symmetries V_(a1a2)(a3a4) = V_(a2a1)(a3a4) = V_(a3a4)(a1a2)."""
    kw = dict(depth=2, activation=name, C_W=cw, C_b=cb, widths=(30, 60))
    full, alone = fw.multi_input(X6, **kw), fw.multi_input(X6[list(sub)], **kw)
    for Vl in full.V:
        np.testing.assert_allclose(Vl, Vl.transpose(1, 0, 2, 3), rtol=0, atol=1e-13)
        np.testing.assert_allclose(Vl, Vl.transpose(2, 3, 0, 1), rtol=0, atol=1e-13)
    ix = np.ix_(range(3), sub, sub)
    np.testing.assert_allclose(full.K[ix], alone.K, rtol=1e-13)
    V = full.V[(slice(None),) + np.ix_(sub, sub, sub, sub)]
    np.testing.assert_allclose(V, alone.V, rtol=0, atol=1e-12 * np.abs(alone.V).max())
    np.testing.assert_allclose(full.G1[ix], alone.G1, rtol=0, atol=1e-12 * np.abs(alone.G1).max())
    assert np.abs(alone.V[-1]).max() > 0.1 and np.abs(alone.G1[-1]).max() > 1e-3  # nontrivial


# ------------------------------------------------------------------------------- Monte Carlo
@functools.lru_cache(maxsize=None)
def _metrics(name, cw, cb, widths, S, seed):
    G = layer_kernels(jax.random.key(seed), X2, n_ensemble=S, widths=list(widths), activation=name,
                      C_W=cw, C_b=cb)
    return np.asarray(G)


def _unique_pairs_of_pairs():
    pairs = [(0, 0), (0, 1), (1, 1)]
    return [p + q for p, q in itertools.combinations_with_replacement(pairs, 2)]


@pytest.mark.parametrize("name, cw, cb, widths, S", [
    ("relu", 2.0, 0.0, (256, 256), 1500),
    ("tanh", 1.5, 0.1, (192, 192, 192), 1500),
    ("erf", 1.2, 0.05, (192, 192, 192), 1500),
    ("linear", 1.0, 0.0, (256, 256), 1500),
    ("tanh", 1.5, 0.1, (96, 320, 160), 1500),   # unequal widths
])
def test_vertex_against_monte_carlo(name, cw, cb, widths, S):
    depth = len(widths)
    G = _metrics(name, cw, cb, widths, S, 11)
    th = fw.multi_input(X2, depth=depth, activation=name, C_W=cw, C_b=cb, widths=widths, kernel_shift=False)
    zs = []
    for l in range(2, depth + 2):
        V, err = est.vertex_from_metrics(G[:, l - 1], widths[l - 2])
        zs += [(V[i] - th.V[l - 1][i]) / err[i] for i in _unique_pairs_of_pairs()]
    assert np.max(np.abs(zs)) < Z_MAX, np.round(zs, 2)


def test_vertex_against_monte_carlo_five_inputs():
    """N = 5 (C(5, 4) = 5 four-input integrals per layer): every unique entry V_{(a1a2)(a3a4)}, l = 2, 3."""
    x, widths, S = X6[:5], (192, 192), 1500
    G = np.asarray(layer_kernels(jax.random.key(13), x, n_ensemble=S, widths=list(widths), activation="tanh",
                                 C_W=1.5, C_b=0.1))
    th = fw.multi_input(x, depth=2, activation="tanh", C_W=1.5, C_b=0.1, widths=widths, kernel_shift=False)
    pairs = list(itertools.combinations_with_replacement(range(5), 2))
    zs = []
    for l in (2, 3):
        V, err = est.vertex_from_metrics(G[:, l - 1], widths[l - 2])
        zs += [(V[p + q] - th.V[l - 1][p + q]) / err[p + q]
               for p, q in itertools.combinations_with_replacement(pairs, 2)]
    assert len(zs) == 240 and np.max(np.abs(zs)) < Z_MAX, np.round(zs, 2)


@pytest.mark.parametrize("name, cw, cb", [("tanh", 1.5, 0.1), ("erf", 1.2, 0.05), ("relu", 2.0, 0.0)])
def test_kernel_shift_and_vertex_scale_as_one_over_n(name, cw, cb):
    """n (E[G^(4)] - K) = G1 + c/n and n Cov(G^(3)) = V + c'/n: fit over n = 8, 16, 32; intercepts vs theory.

    E[G^(4)] uses the conditional (Rao-Blackwell) estimator from G^(3) (sft.sim.estimators).
    """
    depth, ns = 3, (8, 16, 32)
    th = fw.multi_input(X2, depth=depth, activation=name, C_W=cw, C_b=cb)
    shift, shift_err, vert, vert_err = [], [], [], []
    for n in ns:
        G = _metrics(name, cw, cb, (n,) * depth, 12000, 5)
        m = est.conditional_next_metric(G[:, depth - 1], activation=name, C_W=cw, C_b=cb, n_nodes=32)
        shift.append(n * (m.mean(0) - th.K[depth]))
        shift_err.append(n * m.std(0, ddof=1) / math.sqrt(m.shape[0]))
        V, err = est.vertex_from_metrics(G[:, depth - 1], n)
        vert.append(V), vert_err.append(err)
    zs = []
    for i in [(0, 0), (0, 1), (1, 1)]:
        c, e, _ = est.fit_inverse_width(ns, [s[i] for s in shift], [s[i] for s in shift_err])
        zs.append((c[0] - th.G1[depth][i]) / e[0])
    for i in _unique_pairs_of_pairs():
        c, e, _ = est.fit_inverse_width(ns, [v[i] for v in vert], [v[i] for v in vert_err])
        zs.append((c[0] - th.V[depth - 1][i]) / e[0])
    assert np.max(np.abs(zs)) < Z_MAX, np.round(zs, 2)
    if name == "relu":  # the off-diagonal kernel shift is resolved (G1 = -0.51, error ~0.05)
        c, e, _ = est.fit_inverse_width(ns, [s[0, 1] for s in shift], [s[0, 1] for s in shift_err])
        assert abs(c[0]) > Z_MAX * e[0]


# ------------------------------------------------------------------------------- derivation
def _derived_numbers(m2_expr, m4_expr, K_, V_, G1_, r_, cw, cb):
    from derivations import vertex_recursion as dv
    out = dv.step_for(m2_expr, m4_expr)
    subs = {dv.K: K_, dv.v: V_, dv.g1: G1_, dv.r: r_, dv.C_W: cw, dv.C_b: cb}
    return [float(sp_expr.subs(subs).evalf(30)) for sp_expr in out]


def test_library_step_equals_derived_recursion_polynomial_and_linear():
    import sympy as sp
    from derivations import vertex_recursion as dv
    # linear: exact symbolic form
    _, V1, G1 = dv.step_for(*dv.polynomial_moments([0, 1]))
    assert sp.simplify(V1 - dv.C_W ** 2 * (2 * dv.K ** 2 + dv.r * dv.v)) == 0
    assert sp.simplify(G1 - dv.C_W * dv.r * dv.g1) == 0
    # cubic polynomial sigma = z + 3/10 z^2 - 1/5 z^3: library quadrature vs exact symbolic moments
    args = (0.7, 1.3, -0.4, 1.7, 1.2, 0.1)
    want = _derived_numbers(*dv.polynomial_moments([0, 1, sp.Rational(3, 10), -sp.Rational(1, 5)]), *args)
    got = fw.single_input_step(*args[:4], activation=lambda z: z + 0.3 * z ** 2 - 0.2 * z ** 3,
                               C_W=args[4], C_b=args[5])[:3]
    np.testing.assert_allclose(got, want, rtol=1e-12)


@pytest.mark.parametrize("name", ["relu", "erf"])
def test_library_step_equals_derived_recursion_closed_forms(name):
    import mpmath
    import sympy as sp
    from derivations import vertex_recursion as dv
    K = dv.K
    if name == "relu":
        m2, m4 = K / 2, 3 * K ** 2 / 2
    else:  # Williams (1997) closed form for m2; m4 by mpmath quadrature (a constant: only m4(K0) enters)
        m2 = 2 / sp.pi * sp.asin(2 * K / (1 + 2 * K))
        k0 = mpmath.mpf("0.7")
        m4_val = mpmath.quad(lambda t: mpmath.erf(mpmath.sqrt(k0) * t) ** 4 * mpmath.npdf(t), [-mpmath.inf, 0,
                                                                                                mpmath.inf])
        m4 = sp.Float(str(m4_val), 30) + 0 * K
    args = (0.7, 1.3, -0.4, 1.7, 1.2, 0.1)
    want = _derived_numbers(m2, m4, *args)
    got = fw.single_input_step(*args[:4], activation=name, C_W=args[4], C_b=args[5])[:3]
    np.testing.assert_allclose(got, want, rtol=1e-11, atol=1e-14)
