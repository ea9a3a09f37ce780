"""Meta-kernels for many inputs (issue 13, item 6): the exact linear-sigma pair-product terms and their
contractions (sft.finite.meta_kernel_contractions), and the batched smooth-sigma recursion
(sft.finite.meta_kernels_batched), both against sft.finite.output_meta_kernels (whose Monte Carlo and
deep-linear tests they inherit through this agreement); bad input."""
import numpy as np
import pytest

from sft.finite.meta_kernel_contractions import contract_meta_kernel, dense_meta_kernel, linear_meta_kernels
from sft.finite.meta_kernels import output_meta_kernels
from sft.finite.meta_kernels_batched import batched_gaussian_means, batched_meta_kernels

TOL = 1e-10  # relative to the largest entry of the reference tensor
FIELDS = ("dntk_f", "ddntk_I", "ddntk_II")


def _rel(a, b):
    scale = np.abs(b).max()
    return np.abs(a - b).max() / (scale if scale > 0 else 1.0)


@pytest.mark.parametrize("N, depth, widths", [(3, 1, None), (2, 3, (4, 7, 3))])
def test_linear_terms_equal_output_meta_kernels(N, depth, widths):
    x = np.random.default_rng(N).normal(size=(N, 5))
    kw = dict(depth=depth, C_W=[1.3, 0.9, 1.1, 1.2][:depth + 1], C_b=0.2, widths=widths)
    ref = output_meta_kernels(x, activation="linear", **kw)
    mk = linear_meta_kernels(x, **kw)
    assert _rel(mk.K[-1], ref.K) < TOL and _rel(mk.Theta[-1], ref.Theta) < TOL
    for name in FIELDS:
        dense = dense_meta_kernel(getattr(mk, name), mk)
        assert _rel(dense, getattr(ref, name)) < TOL, (name, _rel(dense, getattr(ref, name)))
    assert np.abs(ref.ddntk_I).max() < TOL * np.abs(ref.ddntk_II).max()  # linear sigma: sigma'' = 0
    # contractions with residual-like vectors (two slots contracted, two free) equal the dense einsum
    u, v = np.random.default_rng(7).normal(size=(2, N))
    for name, vecs, spec in (("dntk_f", (None, u, v, None), "xabd,a,b->xd"),
                             ("ddntk_II", (None, None, u, v), "xyab,a,b->xy"),
                             ("ddntk_II", (None, u, v, u), "xabc,a,b,c->x")):
        got = contract_meta_kernel(getattr(mk, name), mk, vecs)
        want = np.einsum(spec, getattr(ref, name), *[w for w in vecs if w is not None])
        assert _rel(got, want) < TOL, (name, spec)


def test_linear_scales_to_many_inputs():
    """N = 100, depth 10: contraction of the ddNTK with two vectors is the dense einsum on a random
    subset of 4 inputs (each entry depends only on its own inputs)."""
    x = np.random.default_rng(0).normal(size=(100, 20))
    mk = linear_meta_kernels(x, depth=10, C_W=1.0, C_b=0.1)
    idx = np.array([3, 41, 77, 98])
    sub = linear_meta_kernels(x[idx], depth=10, C_W=1.0, C_b=0.1)
    u = np.zeros(100)
    u[idx] = [1.0, -0.5, 0.25, 2.0]
    big = contract_meta_kernel(mk.ddntk_II, mk, (None, None, u, u))[np.ix_(idx, idx)]
    small = np.einsum("xyab,a,b->xy", dense_meta_kernel(sub.ddntk_II, sub), u[idx], u[idx])
    assert _rel(big, small) < 1e-12


@pytest.mark.parametrize("activation, N, depth, widths", [("erf", 3, 1, None), ("tanh", 2, 2, (3, 5))])
def test_batched_equals_output_meta_kernels(activation, N, depth, widths):
    x = np.random.default_rng(11).normal(size=(N, 5))
    kw = dict(depth=depth, activation=activation, C_W=1.3, C_b=0.2, widths=widths)
    ref = output_meta_kernels(x, **kw)
    out = batched_meta_kernels(x, ntk_nodes={1: 48, 2: 32}, **kw)  # the rules of ntk_fluctuations_multi
    assert _rel(out.K, ref.K) < TOL and _rel(out.Theta, ref.Theta) < TOL
    for name in FIELDS:
        assert _rel(getattr(out, name), getattr(ref, name)) < TOL, (name, _rel(getattr(out, name), getattr(ref, name)))


def test_bad_input():
    x = np.eye(2)
    with pytest.raises(ValueError, match="activation='tanh'"):
        linear_meta_kernels(x, depth=1, C_W=1.0, C_b=0.0, activation="tanh")
    with pytest.raises(ValueError, match="activation='relu'"):
        batched_meta_kernels(x, depth=1, activation="relu", C_W=2.0, C_b=0.0)
    with pytest.raises(ValueError, match="n_nodes"):
        batched_gaussian_means(np.eye(2), activation="tanh", n_nodes={5: 3})
    with pytest.raises(ValueError, match="n_nodes\\[4\\]"):
        batched_gaussian_means(np.eye(2), activation="tanh", n_nodes={4: 0})
    mk = linear_meta_kernels(x, depth=1, C_W=1.0, C_b=0.0)
    with pytest.raises(ValueError, match="vectors\\[1\\] has shape"):
        contract_meta_kernel(mk.dntk_f, mk, (None, np.ones(3), None, None))
    with pytest.raises(ValueError, match="4"):
        contract_meta_kernel(mk.dntk_f, mk, (None, None))
    with pytest.raises(ValueError, match="mk="):
        contract_meta_kernel(mk.dntk_f, None, (None,) * 4)
    with pytest.raises(ValueError, match="depth"):
        linear_meta_kernels(x, depth=0, C_W=1.0, C_b=0.0)


def test_linear_terms_equal_the_exact_deep_linear_law():
    """One input, K1 = 1, C_W = 1, C_b = 0: n E[dH f] = L (L+1) (L+2) / 3, the exact law of the deep linear
    network (derived from the network itself in derivations/meta_kernels.py, dH_f_first_order), and
    n E[ddHII] = the closed form of the recursion there, for L = 1..10; unequal widths (1, 2, 3) against
    the exact law's limit."""
    import importlib.util
    import pathlib
    path = pathlib.Path(__file__).resolve().parents[1] / "derivations" / "meta_kernels.py"
    spec = importlib.util.spec_from_file_location("derivation_meta_kernels", path)
    dm = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(dm)
    dhf, ddii = dm.linear_recursion_closed_form()
    L = sorted(dhf.free_symbols, key=str)[0]
    for depth in range(1, 11):
        mk = linear_meta_kernels(np.ones((1, 1)), depth=depth, C_W=1.0, C_b=0.0)
        assert dense_meta_kernel(mk.dntk_f, mk).item() == pytest.approx(depth * (depth + 1) * (depth + 2) / 3,
                                                                        rel=1e-13)
        assert dense_meta_kernel(mk.ddntk_II, mk).item() == pytest.approx(float(ddii.subs(L, depth)), rel=1e-13)
    mk = linear_meta_kernels(np.ones((1, 1)), depth=3, C_W=1.0, C_b=0.0, widths=(10, 20, 30))
    assert dense_meta_kernel(mk.dntk_f, mk).item() == pytest.approx(float(dm.dH_f_first_order([1, 2, 3])),
                                                                    rel=1e-13)
