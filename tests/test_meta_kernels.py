"""Tests of sft.finite.meta_kernels (dNTK and ddNTKs at O(1/n)).

(a) Monte Carlo over finite networks (float64, JAX derivatives: H = J J^T, dH_abc = J_b . Hess_a J_c,
    ddHI_abcd = third directional derivative of f_a along J_b, J_c, J_d, ddHII_abcd = (Hess_a J_c).(Hess_b J_d),
    no full Hessian). The O(1/n^2) bias of n * E is large for the small mixed-input entries (erf, depth 2,
    nearly orthogonal inputs: n E[ddHI_0111] = -0.0078(4), -0.0040(1) at n = 32, 128 against -0.0028,
    the gap scaling as 1/n), so the test extrapolates two widths, c0 = 2 m(2n) - m(n), |z| < Z_MAX.
(b) Deep linear networks: the exact law (derivations/meta_kernels.py) to O(1/n).
(c) One hidden layer: every quantity is (1/n) x a single-neuron Gaussian average, written out directly
    here from the chain rule and integrated on an independent Gauss-Hermite product rule (rtol 1e-10).
Kinked sigma: the delta rules of the Gaussian means against a steep softplus on a fine grid. ReLU Monte
Carlo (measured once, not a test: autodiff gives sigma'' = 0 per network, so dH was estimated by central
differences of the gradient along J_c, step h = 0.05): depth 2, C_W = 2, C_b = 0.1, n = 32, 4000 networks,
key(32): all 16 entries of n E[dH f] within |z| < 2.8 of the theory (relative errors ~8%); at n = 16 max
|z| = 3.4, all deviations positive (the O(1/n^2) bias). Tested here (seed 1, 2): erf depth 2 and tanh
depth 3, max |z| over all entries 0.94 / 0.97 / 1.12 / 0.81 (erf: dntk_f, ddntk_I, ddntk_II, dntk_f3) and
1.50 / 1.96 / 1.77 / 1.64 (tanh).
"""
import functools
import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from sft.conventions import Z_MAX
from sft.finite import meta_kernels as mk
from sft.kernels import get_activation

X2 = np.array([[1.0, 0.2, -0.4], [0.6, -0.5, 0.5]])  # two inputs, n_0 = 3


# ------------------------------------------------------------------------------- Monte Carlo
@functools.lru_cache(maxsize=None)
def _network_stats(depth, n_max, n0, activation, cw, cb):
    """Per-network (f (N,), dH (N,)*3, ddHI (N,)*4, ddHII (N,)*4) for networks of ``depth`` hidden layers
    of width n <= n_max, drawn from a key. The width is traced: units j >= n of each hidden layer are
    masked out (they neither feed forward nor receive gradient), so one compilation serves all widths."""
    sizes = (n0,) + (n_max,) * depth + (1,)
    fn = get_activation(activation).fn

    def init(key):
        ks = jax.random.split(key, 2 * (len(sizes) - 1))
        return [(jax.random.normal(ks[2 * i], (a, b)), jax.random.normal(ks[2 * i + 1], (b,)))
                for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:]))]
    unravel = ravel_pytree(init(jax.random.key(0)))[1]

    def f(theta, x, n):
        mask = (jnp.arange(n_max) < n).astype(jnp.float64)
        h, fan_in, ps = x, float(n0), unravel(theta)
        for l, (om, be) in enumerate(ps):
            z = math.sqrt(cb) * be + jnp.sqrt(cw / fan_in) * h @ om
            h, fan_in = (fn(z) * mask, n) if l < len(ps) - 1 else (z, fan_in)
        return h[0]

    def stats(key, X, n):
        theta = ravel_pytree(init(key))[0]
        fa = jax.vmap(lambda x: f(theta, x, n))(X)
        J = jax.vmap(lambda x: jax.grad(f)(theta, x, n))(X)

        def hvp(t, x, v):  # Hess_x(t) v
            return jax.jvp(lambda s: jax.grad(f)(s, x, n), (t,), (v,))[1]
        over_J = lambda fun: jax.vmap(fun)(J)  # noqa: E731
        HV = jax.vmap(lambda x: over_J(lambda v: hvp(theta, x, v)))(X)              # [a, c] = Hess_a J_c
        D3 = jax.vmap(lambda x: over_J(lambda v: over_J(                              # [a, c, d] = d/dt Hess_a(theta + t J_d) J_c
            lambda w: jax.jvp(lambda s: hvp(s, x, v), (theta,), (w,))[1])))(X)
        return (fa, jnp.einsum("bp,acp->abc", J, HV), jnp.einsum("bp,acdp->abcd", J, D3),
                jnp.einsum("acp,bdp->abcd", HV, HV))
    return jax.jit(jax.vmap(stats, in_axes=(0, None, None)))


@functools.lru_cache(maxsize=None)
def _mc(activation, cw, cb, depth, n, n_max, S, seed):
    """n * sample means and standard errors of E[dH f], E[ddHI], E[ddHII] and the connected E[dH f f f]
    over S networks of ``depth`` hidden layers of width n (float64)."""
    stats = _network_stats(depth, n_max, X2.shape[1], activation, cw, cb)
    keys = jax.random.split(jax.random.key(seed), S)
    f, dH, ddI, ddII = (np.concatenate(c) for c in zip(*[[np.asarray(o) for o in stats(keys[i:i + 500], X2, float(n))]
                                                         for i in range(0, S, 500)]))
    dHf = np.einsum("sabc,sd->sabcd", dH, f)
    ff = np.einsum("sa,sb->sab", f, f)
    m_dHf, m_ff = dHf.mean(0), ff.mean(0)
    dHf3 = np.einsum("sabcd,sef->sabcdef", dHf, ff)
    disc = (np.einsum("abcd,ef->abcdef", m_dHf, m_ff) + np.einsum("abce,df->abcdef", m_dHf, m_ff)
            + np.einsum("abcf,de->abcdef", m_dHf, m_ff))
    out = {}
    for name, s in (("dntk_f", dHf), ("ddntk_I", ddI), ("ddntk_II", ddII)):
        out[name] = (n * s.mean(0), n * s.std(0, ddof=1) / math.sqrt(S))
    # error bar of the connected part: that of the plain mean of dH f f f (the subtracted products fluctuate less)
    out["dntk_f3"] = (n * (dHf3.mean(0) - disc), n * dHf3.std(0, ddof=1) / math.sqrt(S))
    return out


@pytest.mark.parametrize("activation, cw, cb, depth, n, S", [("erf", 1.2, 0.05, 2, 16, 1500),
                                                            ("tanh", 1.5, 0.1, 3, 16, 1500)])
def test_monte_carlo_two_widths(activation, cw, cb, depth, n, S):
    """n E[dH f], n E[ddHI], n E[ddHII] extrapolated from widths n, 2n (c0 = 2 m(2n) - m(n)): |z| < Z_MAX
    on every entry; the connected n E[dH f f f] is consistent with zero at O(1/n) (the library's dntk_f3)."""
    th = mk.output_meta_kernels(X2, depth=depth, activation=activation, C_W=cw, C_b=cb)
    lo = _mc(activation, cw, cb, depth, n, 2 * n, S, 1)
    hi = _mc(activation, cw, cb, depth, 2 * n, 2 * n, S, 2)
    for name in ("dntk_f", "ddntk_I", "ddntk_II", "dntk_f3"):
        c0 = 2 * hi[name][0] - lo[name][0]
        err = np.sqrt(4 * hi[name][1] ** 2 + lo[name][1] ** 2)
        z = (c0 - getattr(th, name)) / err
        assert np.max(np.abs(z)) < Z_MAX, (name, np.round(z, 2), c0, getattr(th, name))


# ------------------------------------------------------------------------------- one hidden layer, independent
def _erf_derivatives(z):
    """erf and its first three derivatives in closed form (independent of JAX autodiff)."""
    from scipy.special import erf
    d = 2 / math.sqrt(math.pi) * np.exp(-z * z)
    return erf(z), d, -2 * z * d, (4 * z * z - 2) * d


def test_one_hidden_layer_single_neuron_averages():
    """Depth 1: f = b + sum_j W_j sigma(z_j) with layer-1 preactivations exactly N(0, K1). The chain rule per
    neuron (W_j ~ N(0, C/n), E W^2 = C/n, E W^4 = 3 C^2/n^2) gives, <.> over one neuron, K = K1:
      n E[dH_abc f_d]  = C^2 [K_ac <d_a d_c s_b s_d> + K_ab <d_a d_b s_c s_d> + 3 K_ab K_ac <e_a d_b d_c s_d>],
      n E[ddHI_abcd]   = C^2 [K_ac K_ad <e_a s_b d_c d_d> + K_ab K_ad <e_a s_c d_b d_d> + K_ab K_ac <e_a s_d d_b d_c>
                              + 3 K_ab K_ac K_ad <t_a d_b d_c d_d>],
      n E[ddHII_abcd]  = C^2 [K_ac K_bd <d_a d_b d_c d_d> + K_ab <d_a d_b s_c s_d> + K_ab K_bd <d_a e_b s_c d_d>
                              + K_ab K_ac <e_a d_b d_c s_d> + 3 K_ab K_ac K_bd <e_a e_b d_c d_d>];
    integrated on a 2-d Gauss-Hermite product rule (200^2 nodes; 80^2 is off by 3e-10) with erf's derivatives in closed form."""
    cw, cb = 1.3, 0.2
    out = mk.output_meta_kernels(X2, depth=1, activation="erf", C_W=cw, C_b=cb)
    K = cb + cw * X2 @ X2.T / X2.shape[1]
    u, w = np.polynomial.hermite_e.hermegauss(200)
    w = w / w.sum()
    U = np.stack(np.meshgrid(u, u, indexing="ij"), -1).reshape(-1, 2)
    W = np.outer(w, w).ravel()
    z = U @ np.linalg.cholesky(K).T
    s, d, e, t = _erf_derivatives(z)  # (P, 2) each: value at input a in column a

    def avg(*cols):
        return float(np.sum(W * np.prod(cols, axis=0)))
    dntk, ddI, ddII = np.empty((2,) * 4), np.empty((2,) * 4), np.empty((2,) * 4)
    for a, b, c, q in itertools.product(range(2), repeat=4):
        dntk[a, b, c, q] = cw ** 2 * (K[a, c] * avg(d[:, a], d[:, c], s[:, b], s[:, q])
                                      + K[a, b] * avg(d[:, a], d[:, b], s[:, c], s[:, q])
                                      + 3 * K[a, b] * K[a, c] * avg(e[:, a], d[:, b], d[:, c], s[:, q]))
        ddI[a, b, c, q] = cw ** 2 * (K[a, c] * K[a, q] * avg(e[:, a], s[:, b], d[:, c], d[:, q])
                                     + K[a, b] * K[a, q] * avg(e[:, a], s[:, c], d[:, b], d[:, q])
                                     + K[a, b] * K[a, c] * avg(e[:, a], s[:, q], d[:, b], d[:, c])
                                     + 3 * K[a, b] * K[a, c] * K[a, q] * avg(t[:, a], d[:, b], d[:, c], d[:, q]))
        ddII[a, b, c, q] = cw ** 2 * (K[a, c] * K[b, q] * avg(d[:, a], d[:, b], d[:, c], d[:, q])
                                      + K[a, b] * avg(d[:, a], d[:, b], s[:, c], s[:, q])
                                      + K[a, b] * K[b, q] * avg(d[:, a], e[:, b], s[:, c], d[:, q])
                                      + K[a, b] * K[a, c] * avg(e[:, a], d[:, b], d[:, c], s[:, q])
                                      + 3 * K[a, b] * K[a, c] * K[b, q] * avg(e[:, a], e[:, b], d[:, c], d[:, q]))
    for name, want in (("dntk_f", dntk), ("ddntk_I", ddI), ("ddntk_II", ddII)):
        np.testing.assert_allclose(getattr(out, name), want, rtol=1e-10, atol=1e-10 * np.abs(want).max(), err_msg=name)


# ------------------------------------------------------------------------------- deep linear, exact
def _derivation():
    import importlib.util
    import pathlib
    path = pathlib.Path(__file__).resolve().parents[1] / "derivations" / "meta_kernels.py"
    spec = importlib.util.spec_from_file_location("derivation_meta_kernels", path)
    dm = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(dm)
    return dm


@pytest.mark.parametrize("widths", [(1,), (1, 1), (1, 1, 1), (1, 2, 3), (3, 1, 2, 1)])
def test_deep_linear_exact_law(widths):
    """n_L E[dH f] of the exact deep-linear law (derivations/meta_kernels.py, Stein identity) to first order,
    equal and unequal widths, against the recursion (linear sigma: P = R = U = 0); ddHI = 0 at O(1/n)."""
    want = float(_derivation().dH_f_first_order(widths))
    out = mk.output_meta_kernels(np.ones((1, 1)), depth=len(widths), activation="linear", C_W=1.0, C_b=0.0,
                                 widths=tuple(10 * w for w in widths))
    assert out.dntk_f[0, 0, 0, 0] == pytest.approx(want, rel=1e-12)
    assert np.all(np.abs(out.ddntk_I) <= 1e-12 * want)


def test_linear_closed_form_of_the_recursion():
    """The sympy closed form of the linear-sigma recursion (derivations/meta_kernels.py): n E[dH f] =
    L (L+1) (L+2) / 3, n E[ddHII] = L (L+1)^2 (L+2) / 6, against the library for L = 1..4."""
    dhf, ddii = _derivation().linear_recursion_closed_form()
    L = sorted(dhf.free_symbols, key=str)[0]
    for depth in range(1, 5):
        out = mk.output_meta_kernels(np.ones((1, 1)), depth=depth, activation="linear", C_W=1.0, C_b=0.0)
        assert out.dntk_f.ravel()[0] == pytest.approx(float(dhf.subs(L, depth)), rel=1e-12)
        assert out.ddntk_II.ravel()[0] == pytest.approx(float(ddii.subs(L, depth)), rel=1e-12)


# ------------------------------------------------------------------------------- structure
def test_entries_depend_only_on_their_inputs_and_symmetries():
    """Entries on one input equal the N = 1 result; dH_abc f_d symmetric in (b, c), ddHI in (b, c, d);
    ddHII symmetric under (a, c) <-> (b, d); dntk_f3 is the zero of O(1/n) with shape (N,)*6."""
    kw = dict(depth=2, activation="tanh", C_W=1.5, C_b=0.1, widths=(30, 50))
    two = mk.output_meta_kernels(X2, **kw)
    for a in range(2):
        one = mk.output_meta_kernels(X2[a:a + 1], **kw)
        for name in ("dntk_f", "ddntk_I", "ddntk_II"):
            np.testing.assert_allclose(getattr(two, name)[(a,) * 4], getattr(one, name).ravel()[0], rtol=1e-9)
    np.testing.assert_allclose(two.dntk_f, two.dntk_f.transpose(0, 2, 1, 3), rtol=1e-9, atol=1e-12)
    for p in itertools.permutations((1, 2, 3)):
        np.testing.assert_allclose(two.ddntk_I, two.ddntk_I.transpose((0,) + p), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(two.ddntk_II, two.ddntk_II.transpose(1, 0, 3, 2), rtol=1e-9, atol=1e-12)
    assert two.dntk_f3.shape == (2,) * 6 and two.widths == (30, 50)


# ------------------------------------------------------------------------------- kinked sigma
@pytest.mark.parametrize("activation, slopes", [("relu", (1.0, 0.0)), ("abs", (1.0, -1.0))])
def test_kinked_gaussian_means_are_the_smooth_limit(activation, slopes):
    """The delta rules (e d^k, e s, t, two deltas at two inputs, <d_c psi>) against sigma_beta = the
    scale-invariant sigma smoothed by a logistic of width 1/beta, integrated on a fine 2-d grid (z = c sinh(u));
    the gap closes like 1/beta (beta = 2000: agreement to 2e-3 relative)."""
    ap, am = slopes
    beta = 2000.0
    K = np.array([[1.1, 0.4], [0.4, 0.8]])
    # grid z = c sinh(u), u uniform: spacing c du ~ 4e-6 at the kink, 0.1 at |z| = 9 (trapezoid in u)
    c = 1e-4
    u = np.linspace(-np.arcsinh(9 / c), np.arcsinh(9 / c), 1601)
    grid, jac = c * np.sinh(u), c * np.cosh(u) * (u[1] - u[0])
    Z0, Z1 = np.meshgrid(grid, grid, indexing="ij")
    Kinv = np.linalg.inv(K)
    dens = np.exp(-0.5 * (Kinv[0, 0] * Z0 ** 2 + 2 * Kinv[0, 1] * Z0 * Z1 + Kinv[1, 1] * Z1 ** 2))
    dens *= np.outer(jac, jac) / (2 * math.pi * math.sqrt(np.linalg.det(K)))

    def fns(z):
        p = 0.5 * (1 + np.tanh(0.5 * beta * z))  # logistic(beta z), no overflow
        sp_ = np.logaddexp(0, beta * z) / beta
        return {"s": am * z + (ap - am) * sp_, "d": am + (ap - am) * p,
                "e": (ap - am) * beta * p * (1 - p), "t": (ap - am) * beta ** 2 * p * (1 - p) * (1 - 2 * p)}
    F = (fns(Z0), fns(Z1))
    Y = (Kinv[0, 0] * Z0 + Kinv[0, 1] * Z1, Kinv[1, 0] * Z0 + Kinv[1, 1] * Z1)
    cases = [((("e", 0),), None), ((("e", 0), ("d", 0)), None), ((("e", 0), ("d", 0), ("d", 0)), None),
             ((("e", 0), ("s", 0)), None), ((("e", 0), ("d", 1)), None), ((("e", 0), ("e", 1)), None),
             ((("t", 0), ("d", 1), ("s", 1)), None), ((("e", 0), ("d", 1)), 1), ((("d", 0), ("s", 1)), 0),
             ((("e", 0), ("s", 1), ("d", 1)), 0)]
    for factors, weight in cases:
        got = mk.gaussian_factor_mean(factors, K, activation=activation, weight=weight)
        integrand = dens * np.prod([F[a][k] for k, a in factors], axis=0)
        want = float(np.sum(integrand * (1.0 if weight is None else Y[weight])))
        assert got == pytest.approx(want, rel=2e-3, abs=2e-3 * max(1.0, abs(want))), (factors, weight, got, want)
    assert mk.gaussian_factor_mean([("e", 0), ("e", 0)], K, activation=activation) == np.inf


def test_relu_dntk_finite_ddntk_divergent_on_coinciding_inputs():
    """ReLU: the dNTK is finite everywhere; ddHII_0101 (distinct inputs in the sigma'' slots) is finite,
    ddHII_0000 diverges (+inf)."""
    out = mk.output_meta_kernels(X2, depth=2, activation="relu", C_W=2.0, C_b=0.1)
    assert np.all(np.isfinite(out.dntk_f))
    assert np.isfinite(out.ddntk_II[0, 1, 0, 1]) and out.ddntk_II[0, 0, 0, 0] == np.inf
    assert np.isfinite(out.ddntk_I[0, 1, 1, 1]) and out.ddntk_I[0, 0, 0, 0] == np.inf


# ------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("kwargs, match", [
    (dict(x=np.ones((5, 2))), "x"), (dict(x=np.ones(3)), "x"), (dict(depth=0), "depth"),
    (dict(activation="nope"), "activation"), (dict(widths=(10,)), "widths"), (dict(C_W=-1.0), "C_W"),
    (dict(x=np.array([[1.0, np.nan]])), "x")])
def test_bad_input(kwargs, match):
    args = dict(x=X2, depth=2, activation="tanh", C_W=1.5, C_b=0.1) | kwargs
    with pytest.raises(ValueError, match=match):
        mk.output_meta_kernels(**args)


def test_bad_factor_weight_and_step_arguments():
    with pytest.raises(ValueError, match="factors"):
        mk.gaussian_factor_mean([("q", 0)], np.eye(2), activation="tanh")
    with pytest.raises(ValueError, match="weight"):
        mk.gaussian_factor_mean([("s", 0)], np.eye(2), activation="tanh", weight=5)
    z4 = np.zeros((2,) * 4)
    with pytest.raises(ValueError, match="r="):
        mk.meta_kernel_step(np.eye(2), np.eye(2), *(z4,) * 8, -1.0, activation="tanh", C_W=1.0)
    with pytest.raises(ValueError, match="Q with shape"):
        mk.meta_kernel_step(np.eye(2), np.eye(2), z4, z4, z4, np.zeros(3), z4, z4, z4, z4, 1.0,
                            activation="tanh", C_W=1.0)
