"""Symbolic derivation of the single-input finite-width recursions to O(1/n^2) (sympy).

Run from the repository root: ``python -m derivations.second_order_recursion``; writes
derivations/out/second_order_recursion.md. tests/test_second_order.py asserts that the one-layer map
of sft.finite.second_order (evaluated on sympy symbols) equals the recursion derived here, exactly.

Derivation (extends derivations/vertex_recursion.py one order further; Yaida 2020, PDLT ch. 4 app.):

1. Layer law. Given G = G^(l), the n_l neurons of layer l are i.i.d. N(0, G), and
   G' = G^(l+1) = C_b + (C_W/n_l) sum_j sigma(z_j)^2 is C_b plus a sum of n_l i.i.d. terms, so its
   conditional cumulants are exactly  kappa_k(G' | G) = (C_W/n_l)^k n_l c_k(G),  c_k the k-th
   cumulant of sigma(z)^2, z ~ N(0, G):  c_1 = m2, c_2 = m4 - m2^2, c_3 = m6 - 3 m4 m2 + 2 m2^3,
   m_k(G) = <sigma^k>_G.  Conditional moments follow (mu_1 = k1, mu_2 = k2 + k1^2,
   mu_3 = k3 + 3 k2 k1 + k1^3).
2. Hypothesis on layer l (eps = 1/n_{l-1}; true at l = 1 where G^(1) is fixed, and reproduced below):
   delta = G - K has cumulants kappa_1 = eps g1 + eps^2 g2, kappa_2 = eps v + eps^2 v1,
   kappa_3 = eps^2 u, kappa_k = O(eps^(k-1)) for k >= 4. Its moments (sft.symbolic.cumulants) are then
   E[delta^k] = O(eps^2) for k = 3, 4 and O(eps^3) for k >= 5, so m_k(K + delta) is Taylor-expanded to
   delta^4.
3. Total moments E[G'^k] = E[mu_k(K + delta)], k = 1..3, truncated at eps^2 with n_l = r / eps
   (r = n_l / n_{l-1}); cumulants of G' from them. Reading off with eps' = 1/n_l = eps / r:
   E[G'] = K' + eps' G1' + eps'^2 G2',  Var(G') = eps' V' + eps'^2 V1',  kappa_3(G') = eps'^2 U'
   (and checking Var(G') = O(eps), kappa_3(G') = O(eps^2): the hypothesis propagates).
4. Gaussian derivatives d^j<g>_K/dK^j = <g(sqrt(K) u) He_2j(u)>/(2K)^j, j <= 4, checked on a generic
   polynomial (what sft.finite.second_order evaluates numerically).
5. Cross-check: the same kappa's from the law of total cumulance (Brillinger 1969)
   kappa_2 = E[k2] + Var(k1), kappa_3 = E[k3] + 3 Cov(k1, k2) + kappa_3(k1).

The output's cumulants follow from its conditional Gaussianity: f | G ~ N(0, G) gives
log E[e^{t f}] = K_G(t^2/2), i.e. kappa_{2k}(f) = (2k-1)!! kappa_k(G): kappa_2 = E[G],
kappa_4 = 3 Var(G), kappa_6 = 15 kappa_3(G) (checked here on the cumulant generating function).
"""
from __future__ import annotations

import pathlib

import sympy as sp

from sft.symbolic.cumulants import cumulants_from_moments, moments_from_cumulants

K, g1, g2, v, v1, u3, eps, r, C_W, C_b = sp.symbols("K g1 g2 v v1 u eps r C_W C_b", real=True)
delta = sp.Symbol("delta", real=True)
m2, m4, m6 = sp.Function("m2"), sp.Function("m4"), sp.Function("m6")
TAYLOR = 4  # order of the Taylor expansion in delta (E[delta^5] = O(eps^3))

OUT = pathlib.Path(__file__).resolve().parent / "out" / "second_order_recursion.md"


def _truncate(expr, order=2):
    """expr as a polynomial in eps, truncated after eps^order."""
    poly = sp.Poly(sp.expand(expr), eps)
    return sum(c * eps ** k[0] for k, c in zip(poly.monoms(), poly.coeffs()) if k[0] <= order)


def delta_moments():
    """E[delta^k], k = 0..TAYLOR, to O(eps^2), from the cumulants of step 2."""
    kap = [eps * g1 + eps ** 2 * g2, eps * v + eps ** 2 * v1, eps ** 2 * u3] + [0] * (TAYLOR - 3)
    return [sp.Integer(1)] + [_truncate(m) for m in moments_from_cumulants(kap)]


def _expect(expr, moments):
    """E over delta of a polynomial in delta, truncated at eps^2."""
    poly = sp.Poly(sp.expand(expr), delta)
    return _truncate(sum(c * moments[k[0]] for k, c in zip(poly.monoms(), poly.coeffs())
                         if k[0] <= TAYLOR))


def _taylor(f):
    return sum(sp.diff(f(K), K, k) * delta ** k / sp.factorial(k) for k in range(TAYLOR + 1))


def conditional_cumulants():
    """(k1, k2, k3) of G' given G = K + delta, as polynomials in delta (Taylor to delta^4)."""
    M2, M4, M6 = _taylor(m2), _taylor(m4), _taylor(m6)
    n_l = r / eps
    k1 = C_b + C_W * M2
    k2 = C_W ** 2 / n_l * (M4 - M2 ** 2)
    k3 = C_W ** 3 / n_l ** 2 * (M6 - 3 * M4 * M2 + 2 * M2 ** 3)
    return k1, k2, k3


def derive_second_order_step():
    """dict of K', G1', G2', V', V1', U' in terms of (K, g1, g2, v, v1, u), r, C_W, C_b, m_k and derivatives."""
    dm = delta_moments()
    k1, k2, k3 = conditional_cumulants()
    mu = [k1, k2 + k1 ** 2, k3 + 3 * k2 * k1 + k1 ** 3]
    moments = [_expect(m, dm) for m in mu]
    kap = [_truncate(c) for c in cumulants_from_moments(moments)]
    coeff = lambda e, k: sp.expand(e).coeff(eps, k)  # noqa: E731
    assert sp.simplify(coeff(kap[1], 0)) == 0, "Var(G') must be O(eps)"
    assert sp.simplify(coeff(kap[2], 0)) == 0 and sp.simplify(coeff(kap[2], 1)) == 0, "kappa_3 must be O(eps^2)"
    out = {"K": coeff(kap[0], 0), "G1": r * coeff(kap[0], 1), "G2": r ** 2 * coeff(kap[0], 2),
           "V": r * coeff(kap[1], 1), "V1": r ** 2 * coeff(kap[1], 2), "U": r ** 2 * coeff(kap[2], 2)}
    return {k: sp.expand(e) for k, e in out.items()}


def total_cumulance_check(out=None):
    """The same kappa_2, kappa_3 of G' by the law of total cumulance; True if equal to ``out`` (default:
    derive_second_order_step())."""
    dm = delta_moments()
    k1, k2, k3 = conditional_cumulants()
    E = lambda e: _expect(e, dm)  # noqa: E731
    var1 = E(k1 ** 2) - E(k1) ** 2
    kap2 = _truncate(E(k2) + var1)
    kap3 = _truncate(E(k3) + 3 * (E(k1 * k2) - E(k1) * E(k2))
                     + E(k1 ** 3) - 3 * E(k1 ** 2) * E(k1) + 2 * E(k1) ** 3)
    out = derive_second_order_step() if out is None else out
    return (sp.expand(r * kap2.coeff(eps, 1) + r ** 2 * kap2.coeff(eps, 2) * eps - out["V"] - out["V1"] * eps) == 0
            and sp.expand(r ** 2 * kap3.coeff(eps, 2) - out["U"]) == 0)


def output_cumulants_from_metric(order=3):
    """kappa_{2k}(f) = (2k-1)!! kappa_k(G) for f | G ~ N(0, G): [(2k-1)!! k-th coefficient check] per k."""
    t = sp.Symbol("t")
    kap_G = sp.symbols(f"kappa1:{order + 1}")
    cgf_G = sum(kap_G[k - 1] * (t ** 2 / 2) ** k / sp.factorial(k) for k in range(1, order + 1))
    series = sp.expand(cgf_G)
    return {2 * k: sp.simplify(series.coeff(t, 2 * k) * sp.factorial(2 * k) / kap_G[k - 1])
            for k in range(1, order + 1)}


def check_gaussian_derivative_identity(degree=10, orders=(1, 2, 3, 4)):
    """d^j <g>_K / dK^j = <g(sqrt(K) u) He_2j(u)> / (2K)^j for a generic polynomial g of the given degree."""
    a = sp.symbols(f"a0:{degree + 1}")
    Kp, x = sp.Symbol("K", positive=True), sp.Symbol("x", real=True)

    def gauss(expr):  # E[p(x)], x ~ N(0, 1), for a polynomial p
        poly = sp.Poly(sp.expand(expr), x)
        return sum(c * (sp.factorial2(k[0] - 1) if k[0] % 2 == 0 else 0) for k, c in zip(poly.monoms(), poly.coeffs()))
    g = sum(a[k] * (sp.sqrt(Kp) * x) ** k for k in range(degree + 1))
    mean = gauss(g)
    return all(sp.expand(sp.diff(mean, Kp, j) - gauss(g * sp.hermite_prob(2 * j, x)) / (2 * Kp) ** j) == 0
               for j in orders)


def main():
    out = derive_second_order_step()
    ident = check_gaussian_derivative_identity()
    tc = total_cumulance_check(out)
    fac = output_cumulants_from_metric()
    names = {"K": "K", "G1": "G_1", "G2": "G_2", "V": "V", "V1": "V_1", "U": "U"}
    lines = ["# Single-input recursion to O(1/n^2) (derived by derivations/second_order_recursion.py)", "",
             "Layer $\\ell$: $E[G]=K+G_1/n_{\\ell-1}+G_2/n_{\\ell-1}^2$, "
             "$\\mathrm{Var}(G)=V/n_{\\ell-1}+V_1/n_{\\ell-1}^2$,"
             " $\\kappa_3(G)=U/n_{\\ell-1}^2$ (symbols g1, g2, v, v1, u); $r=n_\\ell/n_{\\ell-1}$;"
             " $m_k=\\langle\\sigma^k\\rangle_K$.", ""]
    for key, e in out.items():
        lines.append(f"$${names[key]}^{{(\\ell+1)}} = {sp.latex(sp.collect(e, [v, v1, u3, g1, g2]))}$$")
    lines += ["", f"Law of total cumulance gives the same $V$, $V_1$, $U$: {tc}.",
              "Gaussian derivatives $d^j\\langle g\\rangle_K/dK^j=\\langle g\\,He_{2j}(u)\\rangle/(2K)^j$, "
              f"$j\\le 4$, generic degree-10 polynomial: {ident}.",
              f"Output: $\\kappa_{{2k}}(f)=(2k-1)!!\\,\\kappa_k(G)$, factors {fac}."]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
