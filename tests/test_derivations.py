"""Derivations are code: re-run each derivation in derivations/ and assert that the library implements
what it derives."""
import functools

import numpy as np
import pytest
import sympy as sp

import sft  # noqa: F401
from derivations import criticality_exponents as ce
from sft.kernels import criticality
_k0_class = functools.lru_cache(maxsize=None)(ce.k0_class)


@pytest.mark.parametrize("name", ["tanh", "erf", "sin", "gelu", "swish"])
def test_k0_class_coefficients_match_library(name):
    """a1, a2 derived symbolically (in sigma_p = sigma^(p)(0)) equal the library's small-K expansion."""
    out = _k0_class()
    sig = criticality.taylor_coefficients(name, order=5)
    if sig[1] == 0:
        pytest.skip("sigma'(0) = 0")
    subs = {sp.Symbol(f"sigma{p}", real=True): sig[p] for p in range(1, 6)}
    a1 = float(sp.sympify(out["a1"], locals={f"sigma{p}": sp.Symbol(f"sigma{p}", real=True) for p in range(6)}).subs(subs))
    a2 = float(sp.sympify(out["a2"], locals={f"sigma{p}": sp.Symbol(f"sigma{p}", real=True) for p in range(6)}).subs(subs))
    c = criticality.small_K_expansion(name, C_W=1 / sig[1] ** 2, order=3)
    np.testing.assert_allclose([c[2], c[3]], [a1, a2], rtol=1e-10, atol=1e-12)


def test_erf_susceptibilities_match_library():
    out = ce.erf_susceptibilities()
    Ks = np.array([0.05, 0.7, 3.0])
    K, C_W = sp.symbols("K C_W", positive=True)
    for key, fn in (("chi_parallel", criticality.chi_parallel), ("chi_perp", criticality.chi_perp)):
        f = sp.lambdify((K, C_W), sp.sympify(out[key], locals={"K": K, "C_W": C_W}))
        np.testing.assert_allclose(fn(Ks, activation="erf", C_W=1.3), f(Ks, 1.3), rtol=1e-10)


def test_gelu_critical_point_matches_library():
    out = ce.gelu_nontrivial_fixed_point()
    crit = criticality.critical_initialization("gelu")
    assert crit.universality_class == "K*>0"
    np.testing.assert_allclose(crit.K_star, (3 + np.sqrt(17)) / 2, rtol=1e-10)
    np.testing.assert_allclose(crit.K_star, out["K_star_float"], rtol=1e-10)
