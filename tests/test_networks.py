"""Finite-width networks (sft.sim.networks): shapes, reproducibility, sharding, NTK, bad inputs, dtype.

Independent references: a numpy forward pass written from the conventions, central finite
differences of the output with respect to every parameter, and the explicit one-hidden-layer NTK.
"""
import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sft.sim import networks as nw
from sft.conventions import RTOL

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
X = np.random.default_rng(0).normal(size=(4, 3))
CFG = dict(widths=[7, 5, 6], activation="tanh", C_W=[1.5, 1.2, 2.0, 0.8], C_b=[0.1, 0.0, 0.3, 0.2])
KEY = jax.random.key(3)


def numpy_forward(params, x, sigma, cw, cb):
    """z^(l+1) = sqrt(C_b) beta + sqrt(C_W / n_l) sigma(z^(l)) @ omega, written from the conventions."""
    h = x
    for l, (omega, beta) in enumerate(params):
        z = np.sqrt(cb[l]) * beta + np.sqrt(cw[l] / h.shape[1]) * h @ omega
        h = sigma(z)
    return z


def one_network(params, s):
    return [(np.asarray(w[s]), np.asarray(b[s])) for w, b in params]


def test_shapes_and_dtype():
    S, N = 4, X.shape[0]
    p = nw.init_params(KEY, n_ensemble=S, in_dim=3, widths=CFG["widths"], n_out=2)
    assert [(w.shape, b.shape) for w, b in p] == [((S, 3, 7), (S, 7)), ((S, 7, 5), (S, 5)),
                                                  ((S, 5, 6), (S, 6)), ((S, 6, 2), (S, 2))]
    assert nw.ensemble_outputs(KEY, X, n_ensemble=S, n_out=2, **CFG).shape == (S, N, 2)
    assert nw.layer_kernels(KEY, X, n_ensemble=S, **CFG).shape == (S, 4, N, N)
    assert nw.empirical_ntk(KEY, X, n_ensemble=S, **CFG).shape == (S, N, N)
    e = nw.empirical_nngp(KEY, X, n_ensemble=S, **CFG)
    assert e.covariance.shape == e.stderr.shape == (N, N) and e.feature_kernel.shape == (S, N, N)
    assert (e.n_ensemble, e.widths, e.dtype) == (S, (7, 5, 6), np.dtype("float64"))
    for dtype in (jnp.float32, jnp.float64):
        for arr in (nw.ensemble_outputs(KEY, X, n_ensemble=S, n_out=2, dtype=dtype, **CFG),
                    nw.layer_kernels(KEY, X, n_ensemble=S, dtype=dtype, **CFG),
                    nw.empirical_ntk(KEY, X, n_ensemble=S, dtype=dtype, **CFG),
                    nw.init_params(KEY, n_ensemble=S, in_dim=3, widths=[4], dtype=dtype)[0][0]):
            assert arr.dtype == dtype
        e = nw.empirical_nngp(KEY, X, n_ensemble=S, dtype=dtype, **CFG)
        assert e.dtype == np.dtype(dtype) and e.covariance.dtype == e.feature_kernel.dtype == dtype


@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32])
def test_outputs_match_numpy_forward_of_init_params(dtype):
    """ensemble_outputs[s] is network s of init_params, evaluated by an independent numpy forward."""
    S = 4
    f = np.asarray(nw.ensemble_outputs(KEY, X, n_ensemble=S, n_out=2, dtype=dtype, **CFG))
    p = nw.init_params(KEY, n_ensemble=S, in_dim=3, widths=CFG["widths"], n_out=2, dtype=dtype)
    for s in range(S):
        ps = [(w.astype(np.float64), b.astype(np.float64)) for w, b in one_network(p, s)]
        ref = numpy_forward(ps, X, np.tanh, CFG["C_W"], CFG["C_b"])
        np.testing.assert_allclose(f[s], ref, rtol=RTOL[np.dtype(dtype)] * 10, atol=0)
        out = nw.apply(one_network(p, s), X, activation="tanh", C_W=CFG["C_W"], C_b=CFG["C_b"])
        np.testing.assert_allclose(out, ref, rtol=RTOL[np.dtype(dtype)] * 10, atol=0)


def test_layer_kernels_are_the_stochastic_metric():
    """G^(1) = C_b + C_W x.x/n_0; G^(l+1) = C_b + C_W/n_l sigma.sigma from the numpy forward."""
    S, cw, cb = 4, CFG["C_W"], CFG["C_b"]
    g = np.asarray(nw.layer_kernels(KEY, X, n_ensemble=S, **CFG))
    p = nw.init_params(KEY, n_ensemble=S, in_dim=3, widths=CFG["widths"])
    for s in range(S):
        ps, h = one_network(p, s), X
        ref = [cb[0] + cw[0] * X @ X.T / 3]
        for l in range(3):
            h = np.tanh(numpy_forward(ps[:l + 1], X, np.tanh, cw, cb))
            ref.append(cb[l + 1] + cw[l + 1] * h @ h.T / h.shape[1])
        np.testing.assert_allclose(g[s], np.stack(ref), rtol=1e-12, atol=0)


def test_empirical_nngp_is_consistent_with_outputs_and_metrics():
    S, n_out = 4, 2
    e = nw.empirical_nngp(KEY, X, n_ensemble=S, n_out=n_out, **CFG)
    f = np.asarray(nw.ensemble_outputs(KEY, X, n_ensemble=S, n_out=n_out, **CFG))
    c = np.einsum("sai,sbi->sab", f, f) / n_out
    np.testing.assert_allclose(e.covariance, c.mean(0), rtol=1e-13)
    np.testing.assert_allclose(e.stderr, c.std(0, ddof=1) / np.sqrt(S), rtol=1e-12)
    g = nw.layer_kernels(KEY, X, n_ensemble=S, **CFG)[:, -1]
    np.testing.assert_array_equal(e.feature_kernel, g)
    np.testing.assert_array_equal(e.key_data, jax.random.key_data(KEY))


@pytest.mark.parametrize("fn", [nw.ensemble_outputs, nw.layer_kernels, nw.empirical_ntk])
def test_reproducible_and_chunk_size_independent(fn):
    """Same key -> same bits; chunk_size (incl. a padded last chunk) does not change a single bit;
    the first S' networks of a larger ensemble are the S' networks of a smaller one."""
    ref = np.asarray(fn(KEY, X, n_ensemble=7, **CFG))
    np.testing.assert_array_equal(np.asarray(fn(KEY, X, n_ensemble=7, **CFG)), ref)
    for chunk in (1, 4, 100):  # 7 chunks of 1; 4 + a padded 4; one chunk of 7
        np.testing.assert_array_equal(np.asarray(fn(KEY, X, n_ensemble=7, chunk_size=chunk, **CFG)), ref)
    np.testing.assert_array_equal(np.asarray(fn(KEY, X, n_ensemble=4, **CFG)), ref[:4])
    assert not np.array_equal(np.asarray(fn(jax.random.key(4), X, n_ensemble=7, **CFG)), ref)


def test_default_chunk_follows_the_memory_budget(monkeypatch):
    """A tiny budget forces one network per chunk; the results are the same bits."""
    ref = np.asarray(nw.empirical_ntk(KEY, X, n_ensemble=4, **CFG))
    monkeypatch.setattr(nw, "MEMORY_BUDGET_BYTES", 1)
    np.testing.assert_array_equal(np.asarray(nw.empirical_ntk(KEY, X, n_ensemble=4, **CFG)), ref)


def test_autodiff_ntk_matches_finite_differences():
    """Theta_ab = sum_p df_a/dp df_b/dp with df/dp from central differences of apply (step h = 1e-5:
    truncation ~ h^2 f''' ~ 1e-10, rounding ~ eps/h ~ 1e-11, so rtol 1e-7 is safe yet sharp)."""
    cfg = CFG
    theta = np.asarray(nw.empirical_ntk(KEY, X, n_ensemble=4, **cfg))[0]
    p = one_network(nw.init_params(KEY, n_ensemble=4, in_dim=3, widths=cfg["widths"]), 0)
    flat = np.concatenate([a.ravel() for wb in p for a in wb])
    shapes = [a.shape for wb in p for a in wb]

    def f(v):
        leaves, i = [], 0
        for s in shapes:
            leaves.append(v[i:i + int(np.prod(s))].reshape(s))
            i += int(np.prod(s))
        return numpy_forward(list(zip(leaves[::2], leaves[1::2])), X, np.tanh, cfg["C_W"], cfg["C_b"])[:, 0]

    h = 1e-5
    jac = np.stack([(f(flat + h * e) - f(flat - h * e)) / (2 * h) for e in np.eye(flat.size)], axis=1)
    np.testing.assert_allclose(theta, jac @ jac.T, rtol=1e-7)


def test_ntk_one_hidden_layer_explicit_formula():
    """f = sqrt(cb2) b2 + sqrt(cw2/n) w2.sigma(z), z = sqrt(cb1) b1 + sqrt(cw1/n0) x w1:
    Theta_ab = cb2 + cw2/n sigma_a.sigma_b + (cw2/n) sum_i w2_i^2 sigma'_ia sigma'_ib (cb1 + cw1 x_a.x_b/n0)."""
    n, (cw1, cw2), (cb1, cb2) = 50, (1.3, 1.7), (0.2, 0.4)
    theta = nw.empirical_ntk(KEY, X, n_ensemble=2, widths=[n], activation="erf", C_W=[cw1, cw2],
                             C_b=[cb1, cb2])
    back = nw.empirical_ntk(KEY, X, n_ensemble=2, widths=[n], activation="erf", C_W=[cw1, cw2],
                            C_b=[cb1, cb2], method="backprop")
    p = nw.init_params(KEY, n_ensemble=2, in_dim=3, widths=[n])  # the same networks
    from scipy.special import erf
    for s in range(2):
        (w1, b1), (w2, b2) = one_network(p, s)
        z = np.sqrt(cb1) * b1 + np.sqrt(cw1 / 3) * X @ w1
        d = 2 / np.sqrt(np.pi) * np.exp(-z * z)  # erf'
        ref = (cb2 + cw2 / n * erf(z) @ erf(z).T
               + cw2 / n * (d * w2[:, 0] ** 2) @ d.T * (cb1 + cw1 * X @ X.T / 3))
        np.testing.assert_allclose(theta[s], ref, rtol=1e-12)
        np.testing.assert_allclose(back[s], ref, rtol=1e-12)


@pytest.mark.parametrize("activation", ["relu", "tanh", "gelu"])
def test_backprop_ntk_equals_autodiff_ntk(activation):
    cfg = dict(CFG, activation=activation)
    a = nw.empirical_ntk(KEY, X, n_ensemble=4, **cfg)
    b = nw.empirical_ntk(KEY, X, n_ensemble=4, method="backprop", **cfg)
    np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-14 * float(np.abs(a).max()))


_SHARDED_SCRIPT = textwrap.dedent("""
    import json, sys
    import jax, numpy as np
    import sft
    from sft.sim import networks as nw
    cfg = json.loads(sys.argv[2]); x = np.array(cfg.pop("x"))
    key = jax.random.key(3)
    out, n_shards = {}, {}
    for name, fn, kw in [("outputs", nw.ensemble_outputs, {}), ("metrics", nw.layer_kernels, {}),
                         ("ntk", nw.empirical_ntk, {})]:
        for S, chunk in [(8, 8), (12, 8)]:  # one sharded chunk; two chunks, the last padded
            a = fn(key, x, n_ensemble=S, chunk_size=chunk, **cfg, **kw)
            out[f"{name}_{S}_{chunk}"] = np.asarray(a)
            if (S, chunk) == (8, 8):  # a single chunk is returned as computed: sharded over devices
                n_shards[name] = [len(a.sharding.device_set),
                                  sorted(s.data.shape[0] for s in a.addressable_shards)]
    np.savez(sys.argv[1], **out)
    print(json.dumps({"device_count": jax.device_count(), "n_shards": n_shards}))
""")


def test_sharded_over_four_cpu_devices_matches_one_device(tmp_path):
    """In a subprocess with 4 host devices the ensemble axis is split over all 4 (2 networks each)
    and every result equals the single-device one (bitwise or to 1e-14)."""
    cfg = dict(CFG, x=X.tolist())
    script = tmp_path / "sharded.py"
    script.write_text(_SHARDED_SCRIPT)
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4",
               PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    res = subprocess.run([sys.executable, str(script), str(tmp_path / "out.npz"), json.dumps(cfg)],
                         env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    info = json.loads(res.stdout.strip().splitlines()[-1])
    assert info["device_count"] == 4
    for name, (n_dev, shard_sizes) in info["n_shards"].items():
        assert n_dev == 4 and shard_sizes == [2, 2, 2, 2], (name, n_dev, shard_sizes)
    sharded = np.load(tmp_path / "out.npz")
    fns = {"outputs": (nw.ensemble_outputs, {}), "metrics": (nw.layer_kernels, {}),
           "ntk": (nw.empirical_ntk, {})}
    for key in sharded.files:
        name, S, _ = key.rsplit("_", 2)
        fn, kw = fns[name]
        ref = np.asarray(fn(KEY, X, n_ensemble=int(S), chunk_size=4, **CFG, **kw))
        np.testing.assert_allclose(sharded[key], ref, rtol=1e-14, atol=1e-14 * np.abs(ref).max(),
                                   err_msg=key)


@pytest.mark.parametrize("change, match", [
    (dict(widths=[3, 0]), "widths"),
    (dict(widths=[]), "widths"),
    (dict(n_ensemble=0), "n_ensemble"),
    (dict(n_ensemble=2.0), "n_ensemble"),
    (dict(C_W=-1.0), "C_W"),
    (dict(C_W=[1.0, 1.0]), "C_W"),
    (dict(C_b=np.nan), "C_b"),
    (dict(activation="relux"), "relux"),
    (dict(chunk_size=0), "chunk_size"),
    (dict(dtype=jnp.int32), "dtype"),
    (dict(dtype=jnp.float16), "dtype"),
    (dict(x=np.array([[1.0, np.nan]])), "x contains NaN"),
    (dict(x=np.ones(3)), "x has shape"),
])
def test_bad_inputs_raise_value_error(change, match):
    kw = dict(dict(CFG, n_ensemble=4, x=X), **change)
    x = kw.pop("x")
    for fn in (nw.ensemble_outputs, nw.layer_kernels, nw.empirical_ntk, nw.empirical_nngp):
        with pytest.raises(ValueError, match=match):
            fn(KEY, x, **kw)


def test_bad_inputs_specific_functions():
    with pytest.raises(ValueError, match="n_out"):
        nw.ensemble_outputs(KEY, X, n_ensemble=2, n_out=0, **CFG)
    with pytest.raises(ValueError, match="n_ensemble=1"):
        nw.empirical_nngp(KEY, X, n_ensemble=1, **CFG)
    with pytest.raises(ValueError, match="method"):
        nw.empirical_ntk(KEY, X, n_ensemble=2, method="numeric", **CFG)
    with pytest.raises(ValueError, match="in_dim"):
        nw.init_params(KEY, n_ensemble=2, in_dim=0, widths=[3])
    p = one_network(nw.init_params(KEY, n_ensemble=1, in_dim=3, widths=[4]), 0)
    with pytest.raises(ValueError, match="feature dimension 2"):
        nw.apply(p, np.ones((5, 2)), activation="relu", C_W=2.0, C_b=0.0)
    with pytest.raises(ValueError, match="ONE network"):
        nw.apply(nw.init_params(KEY, n_ensemble=1, in_dim=3, widths=[4]), X, activation="relu",
                 C_W=2.0, C_b=0.0)


def test_apply_is_differentiable_in_params_and_inputs():
    """jax.grad through apply (tracers skip the value checks) agrees with a difference quotient."""
    p = [(jnp.asarray(w), jnp.asarray(b))
         for w, b in one_network(nw.init_params(KEY, n_ensemble=4, in_dim=3, widths=[5]), 0)]
    def loss(x):
        return nw.apply(p, x, activation="tanh", C_W=1.5, C_b=0.1).sum()
    g = jax.grad(loss)(jnp.asarray(X))
    e = np.zeros_like(X); e[1, 2] = 1e-6
    fd = (loss(X + e) - loss(X - e)) / 2e-6
    np.testing.assert_allclose(g[1, 2], fd, rtol=1e-7)
