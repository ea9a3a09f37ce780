"""Multi-input O(1/n^2) statistics (sft.finite.second_order_multi) against the single-input recursion, the
O(1/n) multi-input vertex, the exact one-hidden-layer cumulants, closed forms (Wick at linear activation,
erf's arcsine kernel, JAX derivatives of the Gaussian density), and Monte Carlo with error bars."""
import functools
import itertools

import jax
import numpy as np
import pytest
import sympy as sp

from sft.conventions import Z_MAX
from sft.finite import (multi_input, neuron_cumulants, second_order_multi_input, second_order_multi_step,
                        second_order_single_input)
from sft.finite import second_order_multi as som
from sft.kernels import get_activation, nngp
from sft.sim import jackknife, layer_kernels
from sft.sim.mixture_cumulants import output_cumulants_from_metrics, pair_sum

X3 = np.array([[1.0, 0.2], [-0.3, 0.9], [0.5, -0.7]])


@functools.lru_cache(maxsize=None)
def _multi(name, cw, cb, n_inputs, depth, widths=None):
    return second_order_multi_input(X3[:n_inputs], depth=depth, activation=name, C_W=cw, C_b=cb, widths=widths)


def test_library_step_equals_derived_tensor_recursion():
    """second_order_multi_step on generic symbols (P = 2 pair variables) equals the stored sympy derivation
    (derivations/second_order_multi.py, law of total cumulance with tensor indices) exactly."""
    from derivations import second_order_multi as dm
    state, tensors, r = dm.library_arguments()
    lib = second_order_multi_step(state, tensors, r, C_b=0)
    der = dm.load()
    for name, val in zip(dm.NAMES, lib):
        val = np.asarray(val, dtype=object)
        assert val.shape == der[name].shape, name
        assert all(sp.expand(a - b) == 0 for a, b in zip(val.ravel(), der[name].ravel())), name


@pytest.mark.parametrize("name, cw, cb, widths", [("tanh", 1.0, 0.1, (5, 7, 4)), ("relu", 2.0, 0.0, None)])
def test_one_input_equals_single_input_recursion(name, cw, cb, widths):
    m = second_order_multi_input(X3[:1], depth=3, activation=name, C_W=cw, C_b=cb, widths=widths)
    s = second_order_single_input(m.K[0, 0, 0], depth=3, activation=name, C_W=cw, C_b=cb, widths=widths)
    for key, power in (("K", 1), ("G1", 1), ("G2", 1), ("V", 2), ("V1", 2), ("U", 3)):
        np.testing.assert_allclose(getattr(m, key).reshape(4, -1)[:, 0], getattr(s, key), rtol=1e-10,
                                   atol=1e-12 * s.K.max() ** power, err_msg=key)


def test_first_order_part_equals_multi_input_vertex():
    m = _multi("tanh", 1.0, 0.1, 2, 2, (6, 4))
    ref = multi_input(X3[:2], depth=2, activation="tanh", C_W=1.0, C_b=0.1, widths=(6, 4))
    np.testing.assert_allclose(m.K, ref.K, rtol=1e-12, atol=0)   # pair-rule K vs sft.kernels.nngp
    np.testing.assert_allclose(m.V, ref.V, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(m.G1, ref.G1, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("name, cw, cb, n_inputs", [("tanh", 1.0, 0.1, 2), ("relu", 2.0, 0.1, 3)])
def test_depth_one_equals_exact_one_layer_cumulants(name, cw, cb, n_inputs):
    """One hidden layer: G^(2) is a sum of n i.i.d. terms, so n^2 kappa_3(G) = U exactly and G2 = V1 = 0;
    kappa_6(f) = (1/n^2) sum over 15 pairings of U equals the set-partition cumulants of v sigma(z)."""
    m = _multi(name, cw, cb, n_inputs, 1)
    k = neuron_cumulants(X3[:n_inputs], 6, activation=name, C_W=cw, C_b=cb)
    np.testing.assert_allclose(pair_sum(m.U[-1], 3), k[5], rtol=1e-9, atol=1e-12 * np.abs(k[5]).max())
    np.testing.assert_allclose(pair_sum(m.V[-1], 2), k[3], rtol=1e-9, atol=1e-12 * np.abs(k[3]).max())
    assert np.all(m.G2 == 0) and np.all(m.V1 == 0)


def test_symmetries_and_input_permutation():
    m = _multi("tanh", 1.0, 0.1, 2, 2, (6, 4))
    U, V1 = m.U[-1], m.V1[-1]
    for perm in [(1, 0, 2, 3, 4, 5), (2, 3, 0, 1, 4, 5), (4, 5, 2, 3, 0, 1)]:
        np.testing.assert_allclose(U, U.transpose(perm), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(V1, V1.transpose(2, 3, 0, 1), rtol=1e-12, atol=1e-15)
    swapped = second_order_multi_input(X3[[1, 0]], depth=2, activation="tanh", C_W=1.0, C_b=0.1, widths=(6, 4))
    p = [1, 0]
    np.testing.assert_allclose(swapped.U[-1], U[np.ix_(p, p, p, p, p, p)], rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(swapped.G2[-1], m.G2[-1][np.ix_(p, p)], rtol=1e-10, atol=1e-14)


def _perfect_matchings(ix):
    if not ix:
        yield []
        return
    for k in range(1, len(ix)):
        for rest in _perfect_matchings(ix[1:k] + ix[k + 1:]):
            yield [(ix[0], ix[k])] + rest


def _wick(K, ix):
    """E[z_i1 .. z_ik], z ~ N(0, K) (Isserlis)."""
    return sum(np.prod([K[ix[i], ix[j]] for i, j in m]) for m in _perfect_matchings(list(range(len(ix)))))


def _linear_layer_tensors(K, cw):
    """(k1, F2, F2', F2'', F3) of sigma(z) = z in closed form (Wick): k1 = C_W K_P, F2_(ab)(cd) = C_W^2 (K_ac K_bd +
    K_ad K_bc) and its derivatives along the unit pair matrices, F3 the third cumulant of C_W z_a z_b, .."""
    N = K.shape[0]
    pairs = som._pairs(N)
    P = len(pairs)
    E = np.zeros((P, N, N))
    for p, (a, b) in enumerate(pairs):
        E[p, a, b] = E[p, b, a] = 1.0
    k1 = [cw * np.array([K[a, b] for a, b in pairs]), cw * np.eye(P)] + [np.zeros((P,) * j) for j in (3, 4, 5)]
    F2, F2p, F2pp, F3 = np.zeros((P, P)), np.zeros((P,) * 3), np.zeros((P,) * 4), np.zeros((P,) * 3)
    for (p, (a, b)), (q, (c, d)) in itertools.product(enumerate(pairs), repeat=2):
        F2[p, q] = K[a, c] * K[b, d] + K[a, d] * K[b, c]
        F2p[p, q] = E[:, a, c] * K[b, d] + K[a, c] * E[:, b, d] + E[:, a, d] * K[b, c] + K[a, d] * E[:, b, c]
        F2pp[p, q] = (np.outer(E[:, a, c], E[:, b, d]) + np.outer(E[:, b, d], E[:, a, c])
                      + np.outer(E[:, a, d], E[:, b, c]) + np.outer(E[:, b, c], E[:, a, d]))
        for r, (e, f) in enumerate(pairs):
            m = [K[a, b], K[c, d], K[e, f]]
            m4 = [_wick(K, (c, d, e, f)), _wick(K, (a, b, e, f)), _wick(K, (a, b, c, d))]
            F3[p, q, r] = _wick(K, (a, b, c, d, e, f)) - sum(m4[i] * m[i] for i in range(3)) + 2 * np.prod(m)
    return k1, cw ** 2 * F2, cw ** 2 * F2p, cw ** 2 * F2pp, cw ** 3 * F3


def _linear_exact(x, depth, cw, cb, widths):
    """G1, G2, V, V1, U of a deep linear network on N inputs: second_order_multi_step on the Wick tensors."""
    Ks = nngp(x, depth=depth, activation="linear", C_W=cw, C_b=cb, all_layers=True)
    rows, cols, _, idx = som._pair_layout(x.shape[0])
    P = rows.size
    r = som.width_ratios(widths, depth)
    state = (Ks[0][rows, cols], np.zeros(P), np.zeros(P), np.zeros((P, P)), np.zeros((P, P)), np.zeros((P,) * 3))
    for l in range(depth):
        state = second_order_multi_step(state, _linear_layer_tensors(Ks[l], cw), r[l], C_b=cb)
    i4 = (idx[:, :, None, None], idx[None, None, :, :])
    i6 = (idx[:, :, None, None, None, None], idx[None, None, :, :, None, None], idx[None, None, None, None, :, :])
    return dict(G1=state[1][idx], G2=state[2][idx], V=state[3][i4], V1=state[4][i4], U=state[5][i6])


def _norm_z(diff, stderr, floor):
    """|diff| / sqrt(sum stderr^2) over a tensor's entries (floor: rounding level added in quadrature): E[|diff|^2] =
    sum of the entries' variances whatever their correlations, so this is ~1 for a correct estimate; one statistic
    per tensor, since max |t| over hundreds of entries with 8 scrambles (t, 7 dof) is not a 4-sigma event."""
    return float(np.linalg.norm(diff) / np.sqrt(np.sum(stderr ** 2) + diff.size * floor ** 2))


X4 = np.array([[1.0, 0.2, 0.0], [-0.3, 0.9, 0.4], [0.5, -0.7, 0.2], [0.1, 0.3, -1.0]])


def test_rule_route_exact_at_linear_activation():
    """Linear activation, N = 3, depth 3, unequal widths: the nested-rule route equals the Wick closed forms to the
    rule's accuracy (2e-8 of each tensor's scale: the |u| <= 8 truncation of the 64^3-node rule, He_4 weights)."""
    widths = (5, 7, 4)
    m = second_order_multi_input(X4[:3], depth=3, activation="linear", C_W=1.2, C_b=0.1, widths=widths)
    ex = _linear_exact(X4[:3], 3, 1.2, 0.1, widths)
    scale = {"G1": ex["V"], "G2": ex["V1"]}   # G1 = G2 = 0 exactly at linear activation (k1 is linear in K)
    for key, val in ex.items():
        np.testing.assert_allclose(getattr(m, key)[-1], val, rtol=0,
                                   atol=2e-8 * np.abs(scale.get(key, val)).max(), err_msg=key)


def test_qmc_route_linear_four_inputs_within_its_error():
    """N = 4, linear, depth 2: the randomized route agrees with the exact Wick recursion within 4 of its own
    standard errors (norm statistic :func:`_norm_z`) (every entry of G1, G2, V, V1, U; the error floored at 1e-12 of V's scale: at linear activation
    G1 = G2 = 0 and the by-parts terms have no integration error, only rounding)."""
    m = second_order_multi_input(X4, depth=2, activation="linear", C_W=1.0, C_b=0.1, n_points=2 ** 11, seed=3)
    assert m.integration == "qmc"
    ex = _linear_exact(X4, 2, 1.0, 0.1, None)
    for key, val in ex.items():   # G1 = G2 = 0 and (Stein) F2':g1, F2'':V exact: errors at rounding, 1e-12 of V
        z = _norm_z(getattr(m, key)[-1] - val, m.stderr[key][-1], 1e-12 * np.abs(ex["V"]).max())
        assert z < Z_MAX, (key, z)


def test_qmc_route_equals_rule_within_its_error():
    """N = 3, tanh, depth 2: randomized (8 scrambles of 2^11 Sobol points, seed 5) vs nested rule within 4 of its
    standard errors (norm statistic per tensor, all layers); same seed -> identical result."""
    kw = dict(depth=2, activation="tanh", C_W=1.0, C_b=0.1, widths=(6, 4))
    rule = _multi("tanh", 1.0, 0.1, 3, 2, (6, 4))
    q = second_order_multi_input(X3, integration="qmc", n_points=2 ** 11, seed=5, **kw)
    for key in ("G1", "G2", "V", "V1", "U"):   # G1, G2, V1 = 0 at layer 2 (one hidden layer): error floor 1e-12
        ref = getattr(rule, key)
        z = _norm_z(getattr(q, key) - ref, q.stderr[key], 1e-12 * np.abs(ref).max())
        assert z < Z_MAX, (key, z)
    np.testing.assert_array_equal(second_order_multi_input(X3, integration="qmc", n_points=2 ** 11, seed=5, **kw).U,
                                  q.U)


def _sympy_derivatives(f, variables, at, order):
    """[d^j f at the point ``at`` as (p,)*j float arrays, j = 0..order] (sympy, distinct derivatives once)."""
    ders, out = {(): f}, [np.array(float(f.subs(at)))]
    for j in range(1, order + 1):
        T = np.zeros((len(variables),) * j)
        for ps in itertools.combinations_with_replacement(range(len(variables)), j):
            ders[ps] = sp.diff(ders[ps[:-1]], variables[ps[-1]])
            val = float(ders[ps].subs(at))
            for perm in set(itertools.permutations(ps)):
                T[perm] = val
        out.append(T)
    return out


def test_pair_derivatives_against_erf_closed_form():
    """k1 = C_W <erf(z_a) erf(z_b)> and its derivatives to 4th order in (K_aa, K_ab, K_bb) from the Hermite weights on
    the pair rule vs sympy derivatives of the closed form (2/pi) arcsin(2 K_ab / sqrt((1 + 2 K_aa)(1 + 2 K_bb)))."""
    K = np.array([[0.8, 0.3], [0.3, 0.5]])
    data = som._pair_data(get_activation("erf"), K, 1.5)     # pairs (0,0), (0,1), (1,1)
    q1, c, q2 = sp.symbols("q1 c q2")
    f = sp.Rational(3, 2) * 2 / sp.pi * sp.asin(2 * c / sp.sqrt((1 + 2 * q1) * (1 + 2 * q2)))
    ref = _sympy_derivatives(f, (q1, c, q2), {q1: sp.Rational(4, 5), c: sp.Rational(3, 10), q2: sp.Rational(1, 2)}, 4)
    p = 1
    np.testing.assert_array_equal(data.loc[p], [0, 1, 2])
    for j, (ours, tol) in enumerate(zip([data.a[p], data.B[p], data.C[p], data.D[p], data.E[p]],
                                        (1e-12, 1e-11, 1e-10, 1e-9, 1e-8))):
        np.testing.assert_allclose(ours, ref[j], rtol=tol, atol=tol * np.abs(ref[j]).max(), err_msg=f"order {j}")


def test_hermite_weights_equal_derivatives_of_density_ratio():
    """d^j rho / d theta^j (j <= 3) over the 3 pair variables of a 2x2 K, rho = phi_{K+theta}(z) / phi_K(z) at a
    node: the Hermite recursion vs sympy derivatives of the closed-form ratio."""
    K, z = np.array([[1.3, 0.4], [0.4, 0.9]]), np.array([0.7, -1.2])
    th = sp.symbols("t0:3")
    Kt = sp.Matrix([[K[0, 0] + th[0], K[0, 1] + th[1]], [K[0, 1] + th[1], K[1, 1] + th[2]]])
    quad = (sp.Matrix(z).T * (Kt.inv() - sp.Matrix(np.linalg.inv(K))) * sp.Matrix(z))[0]
    rho = sp.exp(-quad / 2) * sp.sqrt(np.linalg.det(K) / Kt.det())
    ref = _sympy_derivatives(rho, th, {t: 0 for t in th}, 3)
    Lam = np.linalg.inv(K)
    ours = som._pair_ratio_derivatives((z @ Lam)[None, None], Lam[None], 3)
    for j in range(4):
        np.testing.assert_allclose(ours[j][0, 0], ref[j], rtol=1e-11, atol=1e-12, err_msg=f"order {j}")


def test_contractions_equal_full_tensor_step():
    """One layer, N = 2 (diagonal and off-diagonal pairs), tanh, random state: the contracted route (closed-form rho_V, centred node sums, local k1
    coefficients) equals second_order_multi_step on the full tensors F2', F2'' (Hermite weights), E to 1e-10; the
    by-parts contractions equal the Hermite-weight ones to the rule's accuracy (1e-9; measured 4e-11)."""
    rng = np.random.default_rng(1)
    act = get_activation("tanh")
    K = nngp(X3[:2], depth=1, activation=act, C_W=1.0, C_b=0.1)
    P = 3
    A = rng.normal(size=(P, P))
    sym3 = lambda T: sum(np.transpose(T, p) for p in itertools.permutations(range(3)))  # noqa: E731
    state = (np.zeros(P), rng.normal(size=P), rng.normal(size=P), A @ A.T, (A + A.T) / 2,
             sym3(rng.normal(size=(P,) * 3)))
    pd = som._pair_data(act, K, 1.3)
    z, w = som.gaussian_rule(K)
    con = som._global_contractions(act, K, 1.3, z, w, state[1], state[3], pd.B @ state[3])
    contracted = som._step(state, pd.a, pd.B, (pd.C, pd.D, pd.E, pd.loc), con, 0.7, 0.1)
    dense = [np.zeros((P,) * j) for j in (3, 4, 5)]
    for p, l in enumerate(pd.loc):
        for T, local in zip(dense, (pd.C, pd.D, pd.E)):
            T[(p,) + np.ix_(*([l] * local[p].ndim))] = local[p]
    # full tensors from the Hermite weights on the same nodes, uncentred formulas of the module docstring
    rows, cols, _, _ = som._pair_layout(2)
    s = np.tanh(z)
    X = 1.3 * (s[:, rows] * s[:, cols]).T
    Lam = np.linalg.inv(K)
    d = som._pair_ratio_derivatives((z @ Lam)[None], Lam[None], 2)
    m2 = [np.einsum("pm,m,m...->p...", X, w, dj[0]) for dj in d]
    m4 = [np.einsum("pm,qm,m,m...->pq...", X, X, w, dj[0]) for dj in d]
    F2 = m4[0] - np.outer(m2[0], m2[0])
    F2p = m4[1] - np.einsum("pa,q->pqa", m2[1], m2[0]) - np.einsum("p,qa->pqa", m2[0], m2[1])
    F2pp = (m4[2] - np.einsum("pab,q->pqab", m2[2], m2[0]) - np.einsum("p,qab->pqab", m2[0], m2[2])
            - np.einsum("pa,qb->pqab", m2[1], m2[1]) - np.einsum("pb,qa->pqab", m2[1], m2[1]))
    xyz = np.einsum("pm,qm,rm,m->pqr", X, X, X, w)
    mx = m2[0]
    F3 = (xyz - np.einsum("pq,r->pqr", m4[0], mx) - np.einsum("pr,q->pqr", m4[0], mx)
          - np.einsum("qr,p->pqr", m4[0], mx) + 2 * np.einsum("p,q,r->pqr", mx, mx, mx))
    full = second_order_multi_step(state, ([pd.a, pd.B] + dense, F2, F2p, F2pp, F3), 0.7, C_b=0.1)
    for k, (a, b) in enumerate(zip(contracted[1:], full[1:])):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-10 * np.abs(b).max(), err_msg=str(k))
    # by parts (Stein, the randomized route's form) on the same rule: equal to the rule's accuracy
    stein = som._global_contractions(act, K, 1.3, z, w, state[1], state[3], pd.B @ state[3], stein=True)
    for a, b in zip(stein, con):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-9 * np.abs(b).max())


def test_four_inputs_against_monte_carlo():
    """Depth 2, widths (24, 24), tanh, N = 4: kappa_2, kappa_4 (all distinct entries) and the kappa_6 slice of the
    entries involving all four inputs, theory to O(1/n^2) (randomized route, its error added in quadrature) vs
    8000 float64 networks (seed 21), conditional Gaussian estimator, jackknife errors, |z| < Z_MAX."""
    n = 24
    m = second_order_multi_input(X4, depth=2, activation="tanh", C_W=1.0, C_b=0.1, widths=(n, n), n_points=2 ** 11,
                                 seed=1)
    theory = m.output_cumulants(n)
    s = m.stderr
    theory_err = [np.abs(s["G1"][-1]) / n + np.abs(s["G2"][-1]) / n ** 2,
                  pair_sum(s["V"][-1] / n + s["V1"][-1] / n ** 2, 2), pair_sum(s["U"][-1] / n ** 2, 3)]
    keys = [sorted(set(itertools.combinations_with_replacement(range(4), k))) for k in (2, 4)]
    keys.append([c for c in itertools.combinations_with_replacement(range(4), 6) if len(set(c)) == 4])

    def pick(ts):
        return np.concatenate([[t[c] for c in cs] for t, cs in zip(ts, keys)])
    G = np.asarray(layer_kernels(jax.random.key(21), X4, n_ensemble=8000, widths=[n, n], activation="tanh",
                                 C_W=1.0, C_b=0.1))[:, -1]
    est, err = jackknife(lambda g: pick(output_cumulants_from_metrics(g)), G)
    z = (est - pick(theory)) / np.sqrt(err ** 2 + pick(theory_err) ** 2)
    assert np.all(np.abs(z) < Z_MAX), np.abs(z).max()


@pytest.mark.parametrize("call, word", [
    (lambda: second_order_multi_input(np.eye(40), depth=2, activation="tanh", C_W=1.0, C_b=0.0), "N=40.*~"),
    (lambda: second_order_multi_input(np.eye(5), depth=2, activation="tanh", C_W=1.0, C_b=0.0, integration="rule"),
     "N=5.*rule"),
    (lambda: second_order_multi_input(X3, depth=2, activation="tanh", C_W=1.0, C_b=0.0, integration="mc"),
     "integration"),
    (lambda: second_order_multi_input(X3, depth=2, activation="tanh", C_W=1.0, C_b=0.0, n_points=1000), "n_points"),
    (lambda: second_order_multi_input(X3, depth=2, activation="tanh", C_W=1.0, C_b=0.0, n_scrambles=1),
     "n_scrambles"),
    (lambda: second_order_multi_input(X3 * np.nan, depth=2, activation="tanh", C_W=1.0, C_b=0.0), "x1"),
    (lambda: second_order_multi_input(X3, depth=2, activation="tanh", C_W=1.0, C_b=0.0, widths=[3]), "widths"),
    (lambda: second_order_multi_input(np.array([[1.0, 0.0], [2.0, 0.0]]), depth=1, activation="relu", C_W=2.0,
                                      C_b=0.0), "K="),
    (lambda: second_order_multi_input(X3[:1], depth=1, activation="relu", C_W=2.0, C_b=0.0,
                                      widths=[4]).output_cumulants(5), "n"),
])
def test_bad_input(call, word):
    with pytest.raises(ValueError, match=word):
        call()
